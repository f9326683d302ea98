//! Server-side session stores: [`MemoryStore`] and [`SessionBackend`] (memory or Redis).

use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore as ActixStore, UpdateError,
};
use actix_web::cookie::time::Duration as CookieDuration;
use identity_core::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type State = HashMap<String, String>;

/// How often, at most, a write sweeps expired sessions out of a [`MemoryStore`].
const PURGE_EVERY: Duration = Duration::from_secs(30);

/// An in-process session store for actix-session (which has none built in): sessions
/// live in this process's memory, expire after the session TTL, and are swept out
/// periodically by writes (and by [`MemoryStore::purge_expired`]).
///
/// One instance, one process: sessions vanish on restart and are not seen by other
/// instances. For several instances use Redis (`SESSION_STORE=redis://...`, feature
/// `redis`).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    sessions: HashMap<String, Entry>,
    last_purge: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    state: State,
    expires: Instant,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many live sessions the store holds (expired ones are swept first).
    pub fn len(&self) -> usize {
        self.purge_expired();
        self.lock().sessions.len()
    }

    /// Whether the store holds no live session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes expired sessions; returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let mut inner = self.lock();
        purge(&mut inner, Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, key: String, state: State, ttl: &CookieDuration) {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.last_purge.is_none_or(|at| now - at >= PURGE_EVERY) {
            purge(&mut inner, now);
        }
        let expires = now + to_std(ttl);
        inner.sessions.insert(key, Entry { state, expires });
    }
}

fn purge(inner: &mut MemoryInner, now: Instant) -> usize {
    let before = inner.sessions.len();
    inner.sessions.retain(|_, e| e.expires > now);
    inner.last_purge = Some(now);
    before - inner.sessions.len()
}

fn to_std(ttl: &CookieDuration) -> Duration {
    Duration::from_secs(u64::try_from(ttl.whole_seconds()).unwrap_or(0))
}

impl ActixStore for MemoryStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<State>, LoadError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.sessions.get(session_key.as_ref()) {
            Some(e) if e.expires > now => Ok(Some(e.state.clone())),
            Some(_) => {
                inner.sessions.remove(session_key.as_ref());
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn save(
        &self,
        session_state: State,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        let key = generate_session_key();
        self.write(key.as_ref().to_owned(), session_state, ttl);
        Ok(key)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: State,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let exists = {
            let inner = self.lock();
            inner
                .sessions
                .get(session_key.as_ref())
                .is_some_and(|e| e.expires > Instant::now())
        };
        if exists {
            self.write(session_key.as_ref().to_owned(), session_state, ttl);
            Ok(session_key)
        } else {
            // The session expired meanwhile: store the state under a fresh key.
            let key = generate_session_key();
            self.write(key.as_ref().to_owned(), session_state, ttl);
            Ok(key)
        }
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        let mut inner = self.lock();
        if let Some(e) = inner.sessions.get_mut(session_key.as_ref()) {
            e.expires = Instant::now() + to_std(ttl);
        }
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        self.lock().sessions.remove(session_key.as_ref());
        Ok(())
    }
}

/// The session store the samples use, chosen by `SESSION_STORE`: `memory` (default; a
/// [`MemoryStore`]) or a `redis://` / `rediss://` URL (feature `redis`; actix-session's
/// `RedisSessionStore`, keys prefixed `identity-actix:`).
///
/// Several instances of one app share sessions only through Redis, and only when they
/// also share `SESSION_SECRET`.
#[derive(Clone)]
#[non_exhaustive]
pub enum SessionBackend {
    /// In this process.
    Memory(MemoryStore),
    /// In Redis.
    #[cfg(feature = "redis")]
    Redis(actix_session::storage::RedisSessionStore),
}

impl std::fmt::Debug for SessionBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionBackend::Memory(m) => f.debug_tuple("Memory").field(m).finish(),
            #[cfg(feature = "redis")]
            SessionBackend::Redis(_) => f.write_str("Redis"),
        }
    }
}

impl SessionBackend {
    /// A new in-process store.
    pub fn memory() -> Self {
        SessionBackend::Memory(MemoryStore::new())
    }

    /// The store named by the `SESSION_STORE` environment variable (unset: memory).
    pub async fn from_env() -> Result<Self, Error> {
        let spec = std::env::var("SESSION_STORE").unwrap_or_default();
        Self::from_spec(&spec).await
    }

    /// The store named by `spec`: empty or `memory`, or a `redis://` / `rediss://` URL.
    /// Fails with [`Error::Config`] on anything else, on a Redis URL when the crate was
    /// built without the `redis` feature, and when Redis cannot be reached.
    pub async fn from_spec(spec: &str) -> Result<Self, Error> {
        let spec = spec.trim();
        if spec.is_empty() || spec.eq_ignore_ascii_case("memory") {
            return Ok(Self::memory());
        }
        if spec.starts_with("redis://") || spec.starts_with("rediss://") {
            return Self::redis(spec).await;
        }
        Err(Error::config(format!(
            "SESSION_STORE {spec:?} is not `memory` or a redis:// URL"
        )))
    }

    #[cfg(feature = "redis")]
    async fn redis(url: &str) -> Result<Self, Error> {
        let store = actix_session::storage::RedisSessionStore::builder(url)
            .cache_keygen(|key| format!("identity-actix:{key}"))
            .build()
            .await
            .map_err(|e| Error::config(format!("SESSION_STORE: cannot connect to Redis: {e}")))?;
        Ok(SessionBackend::Redis(store))
    }

    #[cfg(not(feature = "redis"))]
    async fn redis(_url: &str) -> Result<Self, Error> {
        Err(Error::config(
            "SESSION_STORE is a redis:// URL, but identity-actix was built without its `redis` \
             feature; enable it (identity-actix = { features = [\"redis\"] })",
        ))
    }

    /// The memory store, if this is one (tests use it to count sessions).
    pub fn as_memory(&self) -> Option<&MemoryStore> {
        match self {
            SessionBackend::Memory(m) => Some(m),
            #[cfg(feature = "redis")]
            SessionBackend::Redis(_) => None,
        }
    }
}

impl ActixStore for SessionBackend {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<State>, LoadError> {
        match self {
            SessionBackend::Memory(m) => m.load(session_key).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(r) => r.load(session_key).await,
        }
    }

    async fn save(
        &self,
        session_state: State,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        match self {
            SessionBackend::Memory(m) => m.save(session_state, ttl).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(r) => r.save(session_state, ttl).await,
        }
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: State,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        match self {
            SessionBackend::Memory(m) => m.update(session_key, session_state, ttl).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(r) => r.update(session_key, session_state, ttl).await,
        }
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        match self {
            SessionBackend::Memory(m) => m.update_ttl(session_key, ttl).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(r) => r.update_ttl(session_key, ttl).await,
        }
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        match self {
            SessionBackend::Memory(m) => m.delete(session_key).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(r) => r.delete(session_key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn sessions_expire_and_are_purged() {
        let store = MemoryStore::new();
        let key = store
            .save(
                State::from([("a".into(), "1".into())]),
                &CookieDuration::seconds(0),
            )
            .await
            .unwrap();
        assert_eq!(store.load(&key).await.unwrap(), None, "expired at once");
        let live = store
            .save(State::new(), &CookieDuration::seconds(60))
            .await
            .unwrap();
        assert!(store.load(&live).await.unwrap().is_some());
        assert_eq!(store.len(), 1);
        store.delete(&live).await.unwrap();
        assert!(store.is_empty());
    }

    #[actix_web::test]
    async fn unknown_specs_are_refused() {
        assert!(SessionBackend::from_spec("")
            .await
            .unwrap()
            .as_memory()
            .is_some());
        assert!(SessionBackend::from_spec("memory").await.is_ok());
        assert!(SessionBackend::from_spec("memcached://x").await.is_err());
        #[cfg(not(feature = "redis"))]
        assert!(matches!(
            SessionBackend::from_spec("redis://127.0.0.1:1").await,
            Err(Error::Config { .. })
        ));
    }
}
