//! Rocket has no server-side session, so this crate keeps a small one: a sealed cookie
//! holding a random session id, the record in a [`SessionBackend`].
//!
//! * The cookie's name and flags come from the engine's [`CookiePolicy`](identity_core::web::CookiePolicy)
//!   (`__Host-identity`, `Secure` over an https redirect URI), its value is a random
//!   256-bit id sealed (AES-256-GCM, name bound) with a key derived from the session
//!   secret, its `Max-Age` the idle timeout.
//! * The record is loaded at most once per request (request-local), on first use, and
//!   written back once, when the response leaves ([`IdentityFairing`](crate::IdentityFairing)'s
//!   response hook): `create` under a fresh id for a new session, `save` for an existing
//!   one. `save` never re-creates a session deleted meanwhile, so a request in flight
//!   during sign-out cannot bring the session back.
//! * A session untouched by the request is written only to extend its life, when less
//!   than three quarters of the idle timeout remain: at most one write per quarter of the
//!   idle timeout while the user is active.
//! * Cycling the id (at sign-in) creates the session under a new id and deletes the old;
//!   ending it (sign-out) deletes it at once and clears the cookie.

use crate::auth::Auth;
use async_trait::async_trait;
use identity_core::sessions::{SessionBackend, StoredSession};
use identity_core::store::{SessionStore, StoreError};
use identity_core::web::WebResponse;
use rand::RngCore;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// The request-local state of this crate: the session as loaded and changed, and the
/// answer of a failed guard, for the catchers.
#[derive(Default)]
pub(crate) struct RequestState {
    slot: Mutex<Slot>,
    failure: std::sync::Mutex<Option<WebResponse>>,
}

impl RequestState {
    pub(crate) fn set_failure(&self, res: WebResponse) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(res);
    }

    pub(crate) fn take_failure(&self) -> Option<WebResponse> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[derive(Default)]
struct Slot {
    loaded: bool,
    /// The id the session is stored under; `None` when there is no stored session.
    id: Option<String>,
    data: HashMap<String, String>,
    expires_at: i64,
    changed: bool,
    /// Store under a fresh id (a new session, or the id was cycled).
    fresh: bool,
    /// The id to delete once the session is stored under its new one.
    cycled_from: Option<String>,
    /// The session was ended: clear the cookie.
    ended: bool,
}

/// The session of one request, as identity-core's [`SessionStore`].
pub(crate) struct Session<'r> {
    auth: &'r Auth,
    backend: &'r dyn SessionBackend,
    state: &'r RequestState,
    /// The session cookie's value as the browser sent it.
    cookie: Option<&'r str>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn new_id() -> String {
    use base64::Engine;
    let mut buf = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn is_id(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl<'r> Session<'r> {
    pub(crate) fn new(
        auth: &'r Auth,
        backend: &'r dyn SessionBackend,
        state: &'r RequestState,
        cookie: Option<&'r str>,
    ) -> Self {
        Session {
            auth,
            backend,
            state,
            cookie,
        }
    }

    fn name(&self) -> &str {
        self.auth.core().cookies().session_name()
    }

    /// The session id the cookie carries, if it opens with this app's key.
    fn cookie_id(&self) -> Option<String> {
        let raw = self.cookie?;
        let jar = cookie::CookieJar::new();
        let opened = jar
            .private(self.auth.cookie_key())
            .decrypt(cookie::Cookie::new(self.name().to_owned(), raw.to_owned()))?;
        Some(opened.value().to_owned()).filter(|id| is_id(id))
    }

    fn sealed(&self, id: &str) -> String {
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(self.auth.cookie_key())
            .add(cookie::Cookie::new(self.name().to_owned(), id.to_owned()));
        jar.get(self.name())
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    async fn slot(&self) -> Result<MutexGuard<'_, Slot>, StoreError> {
        let mut slot = self.state.slot.lock().await;
        if !slot.loaded {
            if let Some(id) = self.cookie_id() {
                if let Some(stored) = self.backend.load(&id).await? {
                    slot.id = Some(id);
                    slot.data = stored.data;
                    slot.expires_at = stored.expires_at;
                }
            }
            slot.loaded = true;
        }
        Ok(slot)
    }

    fn idle(&self) -> Duration {
        self.auth.core().session_policy().idle_timeout
    }

    fn set_cookie(&self, id: &str) -> String {
        let policy = self.auth.core().cookies();
        policy.set_cookie(self.name(), &self.sealed(id), Some(self.idle()))
    }

    fn clear_cookie(&self) -> Option<String> {
        let policy = self.auth.core().cookies();
        self.cookie
            .map(|_| policy.set_cookie(self.name(), "", Some(Duration::ZERO)))
    }

    /// Writes the session back as the response leaves; the `Set-Cookie` value to send,
    /// if any.
    pub(crate) async fn commit(&self) -> Result<Option<String>, StoreError> {
        let mut slot = self.state.slot.lock().await;
        if !slot.loaded {
            return Ok(None);
        }
        let now = now();
        let ttl = i64::try_from(self.idle().as_secs()).unwrap_or(i64::MAX / 2);
        if slot.data.is_empty() {
            let ended = slot.ended || (slot.changed && slot.id.is_some());
            if let Some(id) = slot.id.take().filter(|_| slot.changed) {
                self.backend.delete(&id).await?;
            }
            return Ok(if ended { self.clear_cookie() } else { None });
        }
        let record = StoredSession {
            data: std::mem::take(&mut slot.data),
            expires_at: now.saturating_add(ttl),
        };
        if slot.fresh || slot.id.is_none() {
            if !slot.changed {
                return Ok(None);
            }
            // A taken id (a 2^-256 chance) gets another; a store that refuses three times
            // is broken.
            let mut id = None;
            for _ in 0..3 {
                let candidate = new_id();
                if self.backend.create(&candidate, &record).await? {
                    id = Some(candidate);
                    break;
                }
            }
            let id = id.ok_or_else(|| StoreError("the session store refused a new session".into()))?;
            if let Some(old) = slot.cycled_from.take() {
                self.backend.delete(&old).await?;
            }
            return Ok(Some(self.set_cookie(&id)));
        }
        let due = slot.expires_at.saturating_sub(now) < ttl.saturating_mul(3) / 4;
        let Some(id) = slot.id.clone().filter(|_| slot.changed || due) else {
            return Ok(None);
        };
        if self.backend.save(&id, &record).await? {
            Ok(Some(self.set_cookie(&id)))
        } else {
            tracing::info!("the session ended during this request (sign-out); not re-creating it");
            Ok(self.clear_cookie())
        }
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
        if let Some(old) = slot.id.take() {
            slot.cycled_from = Some(old);
        }
        slot.fresh = true;
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
        slot.changed = false;
        slot.fresh = false;
        slot.ended = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_random_and_checked() {
        let a = new_id();
        assert!(is_id(&a));
        assert_ne!(a, new_id());
        assert!(!is_id("short"));
        assert!(!is_id(&format!("{}/", "a".repeat(42))));
    }
}
