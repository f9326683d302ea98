//! Rocket has no server-side session, so this crate keeps a small one (see the crate
//! docs, "Sessions"): a sealed cookie holding a random id, the record in a
//! [`SessionBackend`], loaded once per request and written back as the response leaves.

use crate::auth::{Auth, CookieId};
use async_trait::async_trait;
use identity_core::sessions::{SessionBackend, StoredSession};
use identity_core::store::{SessionStore, StoreError};
use identity_core::web::{find_cookie, WebResponse};
use rand::RngCore;
use rocket::Request;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// The request-local state of this crate: the session as loaded and changed, and the
/// answer of a failed guard, for the catchers.
#[derive(Default)]
pub(crate) struct RequestState {
    slot: Mutex<Slot>,
    pub(crate) failure: std::sync::Mutex<Option<WebResponse>>,
    /// Set by the sign-in routes when their answer must be framed (the front-channel
    /// logout page): the fairing then removes Shield's `X-Frame-Options`.
    pub(crate) frameable: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Slot {
    loaded: bool,
    /// The id the session is stored under; `None`: not stored (new, cycled or ended).
    id: Option<String>,
    data: HashMap<String, String>,
    expires_at: i64,
    changed: bool,
    /// The id to delete once the session is stored under its new one.
    cycled_from: Option<String>,
}

impl Slot {
    /// Whether there may be something to write back: not when this request never
    /// loaded the session, or loaded none and changed nothing.
    fn may_commit(&self) -> bool {
        self.loaded && (self.changed || self.id.is_some())
    }
}

impl RequestState {
    /// [`Slot::may_commit`] without waiting: when it is `false`, [`Session::commit`] has
    /// nothing to do and the response is left as it is.
    pub(crate) fn may_commit(&self) -> bool {
        match self.slot.try_lock() {
            Ok(slot) => slot.may_commit(),
            // Held by a task of this request still running: let `commit` wait for it.
            Err(_) => true,
        }
    }
}

/// The request-local state of this crate.
pub(crate) fn request_state<'r>(req: &'r Request<'_>) -> &'r RequestState {
    req.local_cache(RequestState::default)
}

/// The session of one request, as identity-core's [`SessionStore`].
pub(crate) struct Session<'r> {
    auth: &'r Auth,
    backend: &'r dyn SessionBackend,
    state: &'r RequestState,
    /// The session cookie's value as the browser sent it.
    cookie: Option<&'r str>,
    /// The request's `Cookie` headers, as read for the session cookie.
    pub(crate) cookie_headers: CookieHeaders<'r>,
}

/// The `Cookie` headers of a request, read once: browsers send one.
#[derive(Clone, Copy)]
pub(crate) enum CookieHeaders<'r> {
    /// One header (or none).
    One(Option<&'r str>),
    /// Several: read them again where all are needed.
    Several,
}

impl<'r> CookieHeaders<'r> {
    fn of(req: &'r Request<'_>) -> Self {
        let mut headers = req.headers().get("Cookie");
        match (headers.next(), headers.next()) {
            (first, None) => CookieHeaders::One(first),
            _ => CookieHeaders::Several,
        }
    }

    /// Every `Cookie` header of `req`.
    pub(crate) fn all(self, req: &'r Request<'_>) -> Vec<&'r str> {
        match self {
            CookieHeaders::One(header) => header.into_iter().collect(),
            CookieHeaders::Several => req.headers().get("Cookie").collect(),
        }
    }
}

fn now() -> i64 {
    let since_epoch = std::time::UNIX_EPOCH.elapsed().unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

fn new_id() -> String {
    use base64::Engine;
    let mut buf = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

impl<'r> Session<'r> {
    /// The session of `req`, once the fairing chose the store.
    pub(crate) fn of(req: &'r Request<'_>, auth: &'r Auth) -> Option<Self> {
        let name = auth.core().cookies().session_name();
        let cookie_headers = CookieHeaders::of(req);
        let cookie = match cookie_headers {
            CookieHeaders::One(header) => find_cookie(header, name),
            CookieHeaders::Several => find_cookie(req.headers().get("Cookie"), name),
        };
        Some(Session {
            auth,
            backend: &**auth.session_backend()?,
            state: request_state(req),
            cookie,
            cookie_headers,
        })
    }

    fn name(&self) -> &str {
        self.auth.core().cookies().session_name()
    }

    /// The key that seals the cookie (see [`Auth::cookie_key`]).
    fn key(&self) -> &cookie::Key {
        self.auth.cookie_key()
    }

    /// The session id the cookie carries, if it opens with this app's key (a value that
    /// opened before is remembered by the [`Auth`]).
    fn cookie_id(&self) -> Option<CookieId> {
        let value = self.cookie?;
        if let Some(id) = self.auth.opened(value) {
            return Some(id);
        }
        let sealed = cookie::Cookie::new(self.name().to_owned(), value.to_owned());
        let jar = cookie::CookieJar::new();
        let id = CookieId::parse(jar.private(self.key()).decrypt(sealed)?.value())?;
        self.auth.remember_opened(value, id);
        Some(id)
    }

    async fn slot(&self) -> Result<MutexGuard<'_, Slot>, StoreError> {
        let mut slot = self.state.slot.lock().await;
        if !slot.loaded {
            if let Some(id) = self.cookie_id() {
                if let Some(stored) = self.backend.load(id.as_str()).await? {
                    slot.id = Some(id.as_str().to_owned());
                    slot.data = stored.data;
                    slot.expires_at = stored.expires_at;
                }
            }
            slot.loaded = true;
        }
        Ok(slot)
    }

    /// The signed-in user straight from an in-process backend's shared record, without
    /// loading (copying) the session, when the engine says the record needs nothing else
    /// (`WebAuth::user_in_backend`) and no touch is due; `None`: the full path decides.
    /// Skipped for a remote store (one load per request) and once the session is loaded.
    pub(crate) async fn direct_user(&self) -> Option<identity_core::User> {
        let id = self.cookie_id()?;
        if self.state.slot.lock().await.loaded {
            return None;
        }
        let read = self
            .auth
            .core()
            .user_in_backend(self.backend, id.as_str())
            .await?;
        // A due touch is written by `commit`, which needs the session loaded.
        (!read.touch_due).then_some(read.user)
    }

    /// The `Set-Cookie` value naming session `id` (`None`: removing the cookie).
    fn set_cookie(&self, id: Option<&str>) -> String {
        let (policy, name) = (self.auth.core().cookies(), self.name());
        let Some(id) = id else {
            return policy.set_cookie(name, "", Some(Duration::ZERO));
        };
        let mut jar = cookie::CookieJar::new();
        let plain = cookie::Cookie::new(name.to_owned(), id.to_owned());
        jar.private_mut(self.key()).add(plain);
        let sealed = jar
            .get(name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        let idle = self.auth.core().session_policy().idle_timeout;
        policy.set_cookie(name, &sealed, Some(idle))
    }

    /// Writes the session back as the response leaves; the `Set-Cookie` value to send,
    /// if any.
    pub(crate) async fn commit(&self) -> Result<Option<String>, StoreError> {
        let mut slot = self.state.slot.lock().await;
        if !slot.may_commit() {
            return Ok(None);
        }
        if slot.data.is_empty() {
            // Ended: sign-out (already deleted) or every value removed.
            if let Some(id) = slot.id.take() {
                self.backend.delete(&id).await?;
            }
            return Ok(self.cookie.map(|_| self.set_cookie(None)));
        }
        let now = now();
        let policy = self.auth.core().session_policy();
        let ttl = i64::try_from(policy.idle_timeout.as_secs()).unwrap_or(i64::MAX / 2);
        let due = policy.needs_touch(slot.expires_at, now);
        if slot.id.is_some() && !slot.changed && !due {
            return Ok(None);
        }
        let record = StoredSession {
            data: std::mem::take(&mut slot.data),
            expires_at: now.saturating_add(ttl),
        };
        let Some(id) = slot.id.clone() else {
            // A new session, or one whose id was cycled: under a fresh random id.
            let id = new_id();
            if !self.backend.create(&id, &record).await? {
                return Err(StoreError("the session store refused a new session".into()));
            }
            if let Some(old) = slot.cycled_from.take() {
                self.backend.delete(&old).await?;
            }
            return Ok(Some(self.set_cookie(Some(&id))));
        };
        if self.backend.save(&id, &record).await? {
            return Ok(Some(self.set_cookie(Some(&id))));
        }
        // Ended (sign-out) or moved to a new id (a sign-in in another tab) meanwhile: not
        // re-created, and the browser's cookie, which may name the new session, left alone.
        tracing::info!("the session ended during this request; not re-creating it");
        Ok(None)
    }
}

#[async_trait]
impl SessionStore for Session<'_> {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.slot().await?.data.get(key).cloned())
    }

    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError> {
        let mut slot = self.slot().await?;
        slot.data.insert(key.to_owned(), value);
        slot.changed = true;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let mut slot = self.slot().await?;
        if slot.data.remove(key).is_some() {
            slot.changed = true;
        }
        Ok(())
    }

    async fn cycle_id(&self) -> Result<(), StoreError> {
        let mut slot = self.slot().await?;
        slot.cycled_from = slot.id.take().or(slot.cycled_from.take());
        slot.changed = true;
        Ok(())
    }

    async fn destroy(&self) -> Result<(), StoreError> {
        let mut slot = self.slot().await?;
        if let Some(id) = slot.id.take() {
            self.backend.delete(&id).await?;
        }
        if let Some(old) = slot.cycled_from.take() {
            self.backend.delete(&old).await?;
        }
        slot.data.clear();
        slot.changed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_random() {
        let a = new_id();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_id());
    }
}
