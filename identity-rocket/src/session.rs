//! Server-side sessions: a private cookie holding only a session id, the identity record
//! in a [`SessionBackend`].
//!
//! Rocket has no server-side session, so this crate brings a small one:
//!
//! * the `identity_session` cookie holds a random 256-bit id, encrypted and authenticated
//!   with Rocket's `secret_key` (a private cookie), `HttpOnly`, `SameSite=Lax`, `Secure`
//!   unless the redirect URI is plain `http`;
//! * the record (signed-in user, tokens) lives in a [`SessionBackend`]: [`MemoryStore`] by
//!   default, `RedisStore` (feature `redis`) for several instances;
//! * pending sign-ins never touch the backend: they travel in their own small private
//!   cookie, `identity_pending` (Max-Age 10 minutes), so anonymous traffic creates no
//!   server-side record at all;
//! * the id is cycled when a sign-in completes (new id, data moved, old id deleted).

use async_trait::async_trait;
use identity_core::store::{SessionStore, StoreError, KEY_PENDING};
use rocket::http::{Cookie, CookieJar, SameSite};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Name of the cookie that holds the session id (over plain http on loopback).
pub const SESSION_COOKIE: &str = "identity_session";
/// Name of the session cookie when cookies are `Secure`: the `__Host-` prefix pins it to
/// this host, path `/` and https.
pub const SECURE_SESSION_COOKIE: &str = "__Host-identity_session";
/// Name of the cookie that holds pending sign-ins (over plain http on loopback).
pub const PENDING_COOKIE: &str = "identity_pending";
/// Name of the pending sign-ins cookie when cookies are `Secure`.
pub const SECURE_PENDING_COOKIE: &str = "__Host-identity_pending";
/// Name of the cookie that counts consent round trips (the consent-loop guard).
const CONSENT_COOKIE: &str = "identity_consent";
const SECURE_CONSENT_COOKIE: &str = "__Host-identity_consent";

/// Largest JSON kept in the pending cookie; older sign-ins are dropped beyond it so the
/// encrypted cookie stays well under the 4 KB browsers accept.
const MAX_PENDING_JSON: usize = 2800;

/// Where session records live. Each session is a small map from key to JSON value with
/// an idle expiry that every write renews.
///
/// Implement it to keep sessions elsewhere (a database); the crate ships
/// [`MemoryStore`] and, with feature `redis`, `RedisStore`.
#[async_trait]
pub trait SessionBackend: Send + Sync + 'static {
    /// Reads one value (JSON text) of session `id`.
    async fn get(&self, id: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes one value of session `id` (creating the session) and sets its expiry to
    /// `ttl` from now.
    async fn insert(
        &self,
        id: &str,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// Removes one value of session `id`.
    async fn remove(&self, id: &str, key: &str) -> Result<(), StoreError>;
    /// Deletes session `id` entirely.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;
    /// Moves the data of session `from` to the new id `to` (expiring `ttl` from now) and
    /// deletes `from`. Nothing happens when `from` does not exist.
    async fn rename(&self, from: &str, to: &str, ttl: Duration) -> Result<(), StoreError>;
}

/// The default [`SessionBackend`]: sessions in process memory.
///
/// Bounded: expired sessions are purged as writes go by, and when the store holds its
/// maximum number of sessions the one closest to expiry is evicted to make room. Sessions
/// are lost on restart and are not shared between instances: use Redis for that.
///
/// Cheap to clone (an `Arc`); clones share the sessions.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    map: Mutex<HashMap<String, MemoryEntry>>,
    max_sessions: usize,
    writes: AtomicU64,
}

struct MemoryEntry {
    values: HashMap<String, String>,
    expires_at: Instant,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.lock().len())
            .field("max_sessions", &self.inner.max_sessions)
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// The default bound on the number of sessions.
    pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

    /// An empty store holding at most [`Self::DEFAULT_MAX_SESSIONS`] sessions.
    pub fn new() -> Self {
        Self::with_max_sessions(Self::DEFAULT_MAX_SESSIONS)
    }

    /// An empty store holding at most `max_sessions` sessions (at least 1).
    pub fn with_max_sessions(max_sessions: usize) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                map: Mutex::default(),
                max_sessions: max_sessions.max(1),
                writes: AtomicU64::new(0),
            }),
        }
    }

    /// The number of live (unexpired) sessions.
    pub fn len(&self) -> usize {
        let mut map = self.lock();
        purge(&mut map, Instant::now());
        map.len()
    }

    /// Whether no live session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MemoryEntry>> {
        self.inner.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for one more session: purges expired ones every so often, and evicts the
    /// session closest to expiry when the store is full.
    fn make_room(&self, map: &mut HashMap<String, MemoryEntry>, now: Instant) {
        let writes = self.inner.writes.fetch_add(1, Ordering::Relaxed);
        if writes & 1023 == 0 || map.len() >= self.inner.max_sessions {
            purge(map, now);
        }
        while map.len() >= self.inner.max_sessions {
            let Some(victim) = map
                .iter()
                .min_by_key(|(_, e)| e.expires_at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            tracing::warn!(
                max_sessions = self.inner.max_sessions,
                "the memory session store is full; evicting the session closest to expiry"
            );
            map.remove(&victim);
        }
    }
}

fn purge(map: &mut HashMap<String, MemoryEntry>, now: Instant) {
    map.retain(|_, e| e.expires_at > now);
}

#[async_trait]
impl SessionBackend for MemoryStore {
    async fn get(&self, id: &str, key: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let mut map = self.lock();
        match map.get(id) {
            Some(e) if e.expires_at > now => Ok(e.values.get(key).cloned()),
            Some(_) => {
                map.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn insert(
        &self,
        id: &str,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut map = self.lock();
        let live = map.get(id).is_some_and(|e| e.expires_at > now);
        if !live {
            map.remove(id);
            self.make_room(&mut map, now);
        }
        let entry = map.entry(id.to_owned()).or_insert_with(|| MemoryEntry {
            values: HashMap::new(),
            expires_at: now,
        });
        entry.values.insert(key.to_owned(), value);
        entry.expires_at = now + ttl;
        Ok(())
    }

    async fn remove(&self, id: &str, key: &str) -> Result<(), StoreError> {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(id) {
            e.values.remove(key);
            if e.values.is_empty() {
                map.remove(id);
            }
        }
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.lock().remove(id);
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut map = self.lock();
        if let Some(mut entry) = map.remove(from) {
            if entry.expires_at > now {
                entry.expires_at = now + ttl;
                map.insert(to.to_owned(), entry);
            }
        }
        Ok(())
    }
}

/// A cookie change made during a request, kept so that it can be replayed on an error
/// response (Rocket discards cookie changes before running a catcher).
#[derive(Clone, Debug)]
pub(crate) enum CookieOp {
    Set(Cookie<'static>),
    Remove(&'static str),
}

impl CookieOp {
    pub(crate) fn apply(&self, jar: &CookieJar<'_>) {
        match self {
            CookieOp::Set(c) => jar.add_private(c.clone()),
            CookieOp::Remove(name) => jar.remove_private(Cookie::build(*name).path("/")),
        }
    }
}

/// Cookie attributes shared by every cookie of this crate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) secure: bool,
    pub(crate) session_ttl: Duration,
    pub(crate) pending_ttl: Duration,
}

impl CookieSettings {
    pub(crate) fn session_name(&self) -> &'static str {
        if self.secure {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    pub(crate) fn pending_name(&self) -> &'static str {
        if self.secure {
            SECURE_PENDING_COOKIE
        } else {
            PENDING_COOKIE
        }
    }

    pub(crate) fn consent_name(&self) -> &'static str {
        if self.secure {
            SECURE_CONSENT_COOKIE
        } else {
            CONSENT_COOKIE
        }
    }

    pub(crate) fn build(
        &self,
        name: &'static str,
        value: String,
        max_age: Duration,
    ) -> Cookie<'static> {
        let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX / 2);
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .max_age(rocket::time::Duration::seconds(secs))
            .expires(
                rocket::time::OffsetDateTime::now_utc() + rocket::time::Duration::seconds(secs),
            )
            .build()
    }
}

/// Per-request state: what was read from the cookies and the backend, the cookie
/// changes to send, and the failure a guard left for the catcher.
#[derive(Default)]
pub(crate) struct RequestState {
    inner: Mutex<StateInner>,
}

#[derive(Default)]
struct StateInner {
    /// `None`: the cookie was not read yet.
    id: Option<Option<String>>,
    values: HashMap<String, Option<String>>,
    pending: Option<Option<Value>>,
    cookie_refreshed: bool,
    ops: Vec<(&'static str, CookieOp)>,
    failure: Option<crate::response::Failure>,
}

impl RequestState {
    fn lock(&self) -> std::sync::MutexGuard<'_, StateInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a cookie change (the last change per cookie wins) and applies it.
    pub(crate) fn set_cookie(&self, jar: &CookieJar<'_>, name: &'static str, op: CookieOp) {
        op.apply(jar);
        let mut inner = self.lock();
        inner.ops.retain(|(n, _)| *n != name);
        inner.ops.push((name, op));
    }

    /// Applies every recorded cookie change again (after Rocket reset them for a catcher).
    pub(crate) fn replay_cookies(&self, jar: &CookieJar<'_>) {
        let ops = self.lock().ops.clone();
        for (_, op) in ops {
            op.apply(jar);
        }
    }

    pub(crate) fn set_failure(&self, failure: crate::response::Failure) {
        self.lock().failure = Some(failure);
    }

    pub(crate) fn take_failure(&self) -> Option<crate::response::Failure> {
        self.lock().failure.take()
    }
}

/// The [`SessionStore`] of one request: the seam identity-core writes the record through.
pub(crate) struct RequestSession<'r> {
    pub(crate) jar: &'r CookieJar<'r>,
    pub(crate) state: &'r RequestState,
    pub(crate) backend: &'r dyn SessionBackend,
    pub(crate) cookies: CookieSettings,
}

fn new_session_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn is_session_id(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl RequestSession<'_> {
    /// The session id from the cookie, if any (read once per request).
    pub(crate) fn id(&self) -> Option<String> {
        if let Some(id) = &self.state.lock().id {
            return id.clone();
        }
        let id = self
            .jar
            .get_private(self.cookies.session_name())
            .map(|c| c.value().to_owned())
            .filter(|v| is_session_id(v));
        self.state.lock().id = Some(id.clone());
        id
    }

    fn send_session_cookie(&self, id: &str) {
        let name = self.cookies.session_name();
        let cookie = self
            .cookies
            .build(name, id.to_owned(), self.cookies.session_ttl);
        self.state.set_cookie(self.jar, name, CookieOp::Set(cookie));
        self.state.lock().cookie_refreshed = true;
    }

    /// The id to write under, creating a session when there is none.
    fn id_for_write(&self) -> String {
        match self.id() {
            Some(id) => {
                // Every write renews the backend expiry; renew the cookie's too, once.
                if !self.state.lock().cookie_refreshed {
                    self.send_session_cookie(&id);
                }
                id
            }
            None => {
                let id = new_session_id();
                self.state.lock().id = Some(Some(id.clone()));
                self.send_session_cookie(&id);
                id
            }
        }
    }

    fn pending(&self) -> Option<Value> {
        if let Some(p) = &self.state.lock().pending {
            return p.clone();
        }
        let value = self
            .jar
            .get_private(self.cookies.pending_name())
            .and_then(|c| serde_json::from_str::<Value>(c.value()).ok());
        self.state.lock().pending = Some(value.clone());
        value
    }

    fn write_pending(&self, value: Value) {
        let value = fit_pending(value);
        let empty = value
            .get("logins")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        let name = self.cookies.pending_name();
        if empty {
            self.state.lock().pending = Some(None);
            self.state
                .set_cookie(self.jar, name, CookieOp::Remove(name));
            return;
        }
        let cookie = self
            .cookies
            .build(name, value.to_string(), self.cookies.pending_ttl);
        self.state.lock().pending = Some(Some(value));
        self.state.set_cookie(self.jar, name, CookieOp::Set(cookie));
    }

    /// Deletes the whole session (sign-out): backend record and cookie.
    pub(crate) async fn destroy(&self) -> Result<(), StoreError> {
        if let Some(id) = self.id() {
            self.backend.delete(&id).await?;
        }
        {
            let mut inner = self.state.lock();
            inner.id = Some(None);
            inner.values.clear();
        }
        let name = self.cookies.session_name();
        self.state
            .set_cookie(self.jar, name, CookieOp::Remove(name));
        Ok(())
    }
}

/// Keeps the pending cookie small: drops the oldest sign-ins while the JSON is too long.
fn fit_pending(mut value: Value) -> Value {
    while value.to_string().len() > MAX_PENDING_JSON {
        match value.get_mut("logins").and_then(Value::as_array_mut) {
            Some(logins) if logins.len() > 1 => {
                logins.remove(0);
            }
            _ => break,
        }
    }
    value
}

#[async_trait]
impl SessionStore for RequestSession<'_> {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        if key == KEY_PENDING {
            return Ok(self.pending().map(|v| v.to_string()));
        }
        let Some(id) = self.id() else {
            return Ok(None);
        };
        if let Some(v) = self.state.lock().values.get(key) {
            return Ok(v.clone());
        }
        let value = self.backend.get(&id, key).await?;
        self.state
            .lock()
            .values
            .insert(key.to_owned(), value.clone());
        Ok(value)
    }

    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError> {
        if key == KEY_PENDING {
            let value: Value =
                serde_json::from_str(&value).map_err(|e| StoreError(e.to_string()))?;
            self.write_pending(value);
            return Ok(());
        }
        let id = self.id_for_write();
        self.backend
            .insert(&id, key, value.clone(), self.cookies.session_ttl)
            .await?;
        self.state.lock().values.insert(key.to_owned(), Some(value));
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        if key == KEY_PENDING {
            if self.pending().is_some() {
                self.state.lock().pending = Some(None);
                let name = self.cookies.pending_name();
                self.state
                    .set_cookie(self.jar, name, CookieOp::Remove(name));
            }
            return Ok(());
        }
        if let Some(id) = self.id() {
            self.backend.remove(&id, key).await?;
            self.state.lock().values.insert(key.to_owned(), None);
        }
        Ok(())
    }

    async fn cycle_id(&self) -> Result<(), StoreError> {
        let new = new_session_id();
        if let Some(old) = self.id() {
            self.backend
                .rename(&old, &new, self.cookies.session_ttl)
                .await?;
        }
        self.state.lock().id = Some(Some(new.clone()));
        self.send_session_cookie(&new);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_is_bounded_and_expires() {
        let store = MemoryStore::with_max_sessions(3);
        let long = Duration::from_secs(60);
        for i in 0..5 {
            store
                .insert(
                    &format!("s{i}"),
                    "k",
                    i.to_string(),
                    long + Duration::from_secs(i),
                )
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.get("s0", "k").await.unwrap(), None, "evicted first");
        assert_eq!(store.get("s4", "k").await.unwrap(), Some("4".to_owned()));

        store
            .insert("short", "k", "1".to_owned(), Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.get("short", "k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn rename_moves_the_data_and_deletes_the_old_id() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(60);
        store.insert("old", "a", "1".to_owned(), ttl).await.unwrap();
        store.rename("old", "new", ttl).await.unwrap();
        assert_eq!(store.get("old", "a").await.unwrap(), None);
        assert_eq!(store.get("new", "a").await.unwrap(), Some("1".to_owned()));
        store.remove("new", "a").await.unwrap();
        assert!(store.is_empty(), "a session without values is dropped");
    }

    #[test]
    fn pending_cookie_keeps_the_newest_sign_ins() {
        let login =
            |i: usize| serde_json::json!({ "state": format!("{i}"), "next_link": "x".repeat(900) });
        let value = serde_json::json!({ "logins": (0..5).map(login).collect::<Vec<_>>() });
        let fitted = fit_pending(value);
        let logins = fitted["logins"].as_array().unwrap();
        assert!(fitted.to_string().len() <= MAX_PENDING_JSON);
        assert_eq!(logins.last().unwrap()["state"], "4");
        assert!(logins.len() < 5);
    }

    #[test]
    fn session_ids_are_checked() {
        assert!(is_session_id(&new_session_id()));
        assert!(!is_session_id("short"));
        assert!(!is_session_id(
            &"a".repeat(42).chars().chain(['/']).collect::<String>()
        ));
    }
}
