//! The session seam: identity-core's [`SessionStore`] over a tower-sessions [`Session`],
//! with pending sign-ins kept in an encrypted cookie instead of the server-side session.
//!
//! Why the cookie: a pending sign-in is created for every anonymous visitor of a protected
//! page. In the server-side store that would create a session per anonymous request
//! (memory grows with a flood). In an encrypted, HttpOnly, SameSite=Lax cookie with a
//! Max-Age of the sign-in's minutes, the server keeps nothing until a user has signed in.

use crate::auth::AuthInner;
use async_trait::async_trait;
use axum::http::{header, HeaderMap, HeaderValue};
use identity_core::store::{KEY_PENDING, KEY_USER};
use identity_core::{SessionStore, StoreError};
use serde_json::Value;
use std::sync::Mutex;
use tower_sessions::Session;

/// Name of the pending sign-in cookie over plain http (loopback development).
pub(crate) const PENDING_COOKIE: &str = "identity_pending";
/// Name of the pending sign-in cookie when cookies are `Secure` (`__Host-` pins it to
/// this host, path `/`, https).
pub(crate) const PENDING_COOKIE_SECURE: &str = "__Host-identity_pending";

/// Longest encrypted cookie value written: older pending sign-ins are dropped past it.
pub(crate) const PENDING_COOKIE_BUDGET: usize = 1536;
/// Hard limit for one pending sign-in (browsers refuse cookies over 4 KB).
const PENDING_COOKIE_MAX: usize = 3800;

pub(crate) fn pending_cookie_name(secure: bool) -> &'static str {
    if secure {
        PENDING_COOKIE_SECURE
    } else {
        PENDING_COOKIE
    }
}

/// The raw value of cookie `name` in the request's `Cookie` headers, without allocating
/// unless it is there.
pub(crate) fn find_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

#[derive(Default)]
struct PendingSlot {
    /// `None`: not read yet.
    value: Option<Option<Value>>,
    changed: bool,
}

/// The identity record of one request: the tower-sessions session plus the pending
/// sign-in cookie. Cookie changes are collected and turned into a `Set-Cookie` header by
/// [`Seam::set_cookie`].
pub(crate) struct Seam<'a> {
    session: &'a Session,
    auth: &'a AuthInner,
    incoming: Option<&'a str>,
    pending: Mutex<PendingSlot>,
}

fn store_error(e: tower_sessions::session::Error) -> StoreError {
    StoreError(e.to_string())
}

impl<'a> Seam<'a> {
    pub(crate) fn new(
        session: &'a Session,
        auth: &'a AuthInner,
        incoming: Option<&'a str>,
    ) -> Self {
        Self {
            session,
            auth,
            incoming,
            pending: Mutex::default(),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, PendingSlot> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decrypt_incoming(&self) -> Option<Value> {
        let raw = self.incoming?;
        let name = pending_cookie_name(self.auth.secure);
        let jar = cookie::CookieJar::new();
        let plain = jar
            .private(&self.auth.cookie_key)
            .decrypt(cookie::Cookie::new(name, raw.to_owned()));
        let Some(plain) = plain else {
            tracing::info!(
                "the pending sign-in cookie does not decrypt (tampered, or SESSION_SECRET \
                 differs between instances or restarts); ignoring it"
            );
            return None;
        };
        serde_json::from_str(plain.value()).ok()
    }

    /// Whether the session holds a signed-in user (a map lookup; no token work).
    pub(crate) async fn is_signed_in(&self) -> bool {
        matches!(self.session.get_value(KEY_USER).await, Ok(Some(_)))
    }

    /// The `Set-Cookie` header for the pending sign-in cookie, if it changed.
    pub(crate) fn set_cookie(&self) -> Option<HeaderValue> {
        let slot = self.slot();
        if !slot.changed {
            return None;
        }
        let name = pending_cookie_name(self.auth.secure);
        let value = slot.value.clone().flatten();
        let encoded = value.and_then(|v| encode_pending(&self.auth.cookie_key, name, v));
        let cookie = match encoded {
            Some(enc) => cookie::Cookie::build((name, enc))
                .http_only(true)
                .secure(self.auth.secure)
                .same_site(cookie::SameSite::Lax)
                .path("/")
                .max_age(cookie::time::Duration::seconds(
                    self.auth.pending_ttl.as_secs().min(i64::MAX as u64) as i64,
                ))
                .build(),
            None => {
                self.incoming?;
                cookie::Cookie::build((name, ""))
                    .http_only(true)
                    .secure(self.auth.secure)
                    .same_site(cookie::SameSite::Lax)
                    .path("/")
                    .max_age(cookie::time::Duration::ZERO)
                    .build()
            }
        };
        HeaderValue::from_str(&cookie.to_string()).ok()
    }
}

/// Encrypts the pending sign-ins. Drops the oldest entries until the cookie fits
/// [`PENDING_COOKIE_BUDGET`]; gives `None` (remove the cookie) when none is left.
fn encode_pending(key: &cookie::Key, name: &'static str, mut value: Value) -> Option<String> {
    let logins_len = |v: &Value| {
        v.get("logins")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0)
    };
    if logins_len(&value) == 0 {
        return None;
    }
    loop {
        let plain = value.to_string();
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(key).add(cookie::Cookie::new(name, plain));
        let enc = jar.get(name)?.value().to_owned();
        let n = logins_len(&value);
        if enc.len() <= PENDING_COOKIE_BUDGET || (n <= 1 && enc.len() <= PENDING_COOKIE_MAX) {
            return Some(enc);
        }
        let logins = value.get_mut("logins")?.as_array_mut()?;
        if n > 1 {
            // Oldest first in the core's list: the newest tab's sign-in is kept.
            logins.remove(0);
        } else {
            // One sign-in with a very long next link: keep the sign-in, lose the link.
            let only = logins.first_mut()?.as_object_mut()?;
            if only.remove("next_link").is_none() {
                tracing::warn!("a pending sign-in does not fit in a cookie; dropping it");
                return None;
            }
        }
    }
}

#[async_trait]
impl SessionStore for Seam<'_> {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        if key == KEY_PENDING {
            let mut slot = self.slot();
            if slot.value.is_none() {
                slot.value = Some(self.decrypt_incoming());
            }
            return Ok(slot.value.clone().flatten().map(|v| v.to_string()));
        }
        // The parts are stored as JSON text: tower-sessions copies the whole record on
        // every load, and a page view, which reads only the user, then copies a couple of
        // strings instead of trees of values.
        match self.session.get_value(key).await.map_err(store_error)? {
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Ok(Some(other.to_string())),
            None => Ok(None),
        }
    }

    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError> {
        if key == KEY_PENDING {
            let value: Value =
                serde_json::from_str(&value).map_err(|e| StoreError(e.to_string()))?;
            let mut slot = self.slot();
            slot.value = Some(Some(value));
            slot.changed = true;
            return Ok(());
        }
        self.session
            .insert_value(key, Value::String(value))
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        if key == KEY_PENDING {
            let mut slot = self.slot();
            let had = match &slot.value {
                Some(v) => v.is_some(),
                None => self.incoming.is_some(),
            };
            slot.value = Some(None);
            slot.changed |= had;
            return Ok(());
        }
        // Removing a missing key would mark the session modified and make tower-sessions
        // save an empty record: look first.
        if self
            .session
            .get_value(key)
            .await
            .map_err(store_error)?
            .is_some()
        {
            self.session.remove_value(key).await.map_err(store_error)?;
        }
        Ok(())
    }

    async fn cycle_id(&self) -> Result<(), StoreError> {
        // A session without an id gets a fresh one when it is first saved.
        if self.session.id().is_some() {
            self.session.cycle_id().await.map_err(store_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(i: usize, next: &str) -> Value {
        serde_json::json!({
            "state": format!("{i:0>43}"),
            "nonce": "n".repeat(43),
            "verifier": "v".repeat(43),
            "redirect_uri": "http://localhost:5000/getAToken",
            "scopes": ["User.Read"],
            "next_link": next,
            "created_at": 1_700_000_000 + i,
            "purpose": "sign_in",
        })
    }

    #[test]
    fn pending_cookie_stays_within_budget_and_keeps_the_newest() {
        let key = cookie::Key::generate();
        let logins: Vec<Value> = (0..5).map(|i| login(i, "/call_api?x=1")).collect();
        let enc = encode_pending(
            &key,
            PENDING_COOKIE,
            serde_json::json!({ "logins": logins }),
        )
        .unwrap();
        assert!(enc.len() <= PENDING_COOKIE_BUDGET, "{}", enc.len());
        let jar = cookie::CookieJar::new();
        let plain = jar
            .private(&key)
            .decrypt(cookie::Cookie::new(PENDING_COOKIE, enc))
            .unwrap();
        let v: Value = serde_json::from_str(plain.value()).unwrap();
        let kept = v["logins"].as_array().unwrap();
        assert!(kept.len() >= 2);
        assert_eq!(kept.last().unwrap()["created_at"], 1_700_000_004);
    }

    #[test]
    fn a_huge_next_link_is_dropped_not_the_sign_in() {
        let key = cookie::Key::generate();
        let long = format!("/{}", "a".repeat(3000));
        let enc = encode_pending(
            &key,
            PENDING_COOKIE,
            serde_json::json!({ "logins": [login(1, &long)] }),
        )
        .unwrap();
        assert!(enc.len() <= PENDING_COOKIE_MAX);
        assert!(
            encode_pending(&key, PENDING_COOKIE, serde_json::json!({ "logins": [] })).is_none()
        );
    }

    #[test]
    fn cookie_lookup() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; identity_pending=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("id=2"));
        assert_eq!(find_cookie(&h, PENDING_COOKIE), Some("xyz"));
        assert_eq!(find_cookie(&h, "id"), Some("2"));
        assert_eq!(find_cookie(&h, "b"), None);
    }
}
