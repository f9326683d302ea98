//! Sessions over tower-sessions: the session layer with the right cookie flags, a bounded
//! in-memory store that purges expired sessions, and Redis (feature `redis`).

use crate::auth::Auth;
use async_trait::async_trait;
use identity_core::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer};

/// The environment variable that selects the session store.
pub const SESSION_STORE_VAR: &str = "SESSION_STORE";
/// Default inactivity after which a session ends: 4 hours.
pub const DEFAULT_INACTIVITY: Duration = Duration::from_secs(4 * 3600);
/// Default most sessions the memory store holds.
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "id";
/// How often the memory store sweeps out expired sessions (on its next write).
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// An in-memory session store for one instance. Unlike a plain map it forgets: expired
/// sessions are removed (on read, and by a sweep at most every minute on writes), and it
/// holds at most a fixed number of sessions (the ones closest to expiry are evicted
/// first). Cloning shares the store.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug)]
struct MemoryInner {
    records: HashMap<Id, Record>,
    capacity: usize,
    last_purge: Instant,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn expired(record: &Record, now: time::OffsetDateTime) -> bool {
    record.expiry_date <= now
}

impl MemoryStore {
    /// A store of at most [`DEFAULT_MEMORY_CAPACITY`] sessions.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MEMORY_CAPACITY)
    }

    /// A store of at most `capacity` sessions (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(MemoryInner {
                records: HashMap::new(),
                capacity: capacity.max(1),
                last_purge: Instant::now(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions held (expired ones not swept yet included).
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired session now; returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let mut inner = self.lock();
        inner.purge(time::OffsetDateTime::now_utc())
    }
}

impl MemoryInner {
    fn purge(&mut self, now: time::OffsetDateTime) -> usize {
        let before = self.records.len();
        self.records.retain(|_, r| !expired(r, now));
        self.last_purge = Instant::now();
        before - self.records.len()
    }

    fn put(&mut self, record: &Record) {
        let now = time::OffsetDateTime::now_utc();
        if self.last_purge.elapsed() >= PURGE_EVERY {
            self.purge(now);
        }
        if !self.records.contains_key(&record.id) && self.records.len() >= self.capacity {
            self.purge(now);
            if self.records.len() >= self.capacity {
                let soonest = self
                    .records
                    .iter()
                    .min_by_key(|(_, r)| r.expiry_date)
                    .map(|(id, _)| *id);
                if let Some(id) = soonest {
                    tracing::warn!(
                        capacity = self.capacity,
                        "the memory session store is full; evicting the session closest to expiry"
                    );
                    self.records.remove(&id);
                }
            }
        }
        self.records.insert(record.id, record.clone());
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut inner = self.lock();
        while inner.records.contains_key(&record.id) {
            record.id = Id::default();
        }
        inner.put(record);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.lock().put(record);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let mut inner = self.lock();
        match inner.records.get(id) {
            Some(r) if expired(r, time::OffsetDateTime::now_utc()) => {
                inner.records.remove(id);
                Ok(None)
            }
            Some(r) => Ok(Some(r.clone())),
            None => Ok(None),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.lock().records.remove(id);
        Ok(())
    }
}

/// The session store chosen by [`SessionSettings`]: memory, or Redis (feature `redis`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SessionBackend {
    /// One instance's memory.
    Memory(MemoryStore),
    /// Redis, shared by every instance.
    #[cfg(feature = "redis")]
    Redis(tower_sessions_redis_store::RedisStore<tower_sessions_redis_store::fred::prelude::Pool>),
}

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            SessionBackend::Memory(s) => s.create(record).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            SessionBackend::Memory(s) => s.save(record).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            SessionBackend::Memory(s) => s.load(id).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            SessionBackend::Memory(s) => s.delete(id).await,
            #[cfg(feature = "redis")]
            SessionBackend::Redis(s) => s.delete(id).await,
        }
    }
}

/// Which store [`SessionSettings::layer`] builds.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// [`MemoryStore`] (one instance only).
    Memory,
    /// A `redis://` or `rediss://` URL (feature `redis`).
    Redis(String),
}

impl std::fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Memory => f.write_str("Memory"),
            // The URL may carry a password.
            StoreKind::Redis(url) => match url::Url::parse(url) {
                Ok(u) => write!(f, "Redis({}://{})", u.scheme(), u.host_str().unwrap_or("")),
                Err(_) => f.write_str("Redis([unparsable URL])"),
            },
        }
    }
}

impl StoreKind {
    /// Parses a `SESSION_STORE` value: empty or `memory`, or a `redis://` / `rediss://` URL.
    pub fn parse(value: &str) -> Result<StoreKind, Error> {
        let v = value.trim();
        if v.is_empty() || v.eq_ignore_ascii_case("memory") {
            return Ok(StoreKind::Memory);
        }
        if v.starts_with("redis://") || v.starts_with("rediss://") {
            return Ok(StoreKind::Redis(v.to_owned()));
        }
        Err(Error::Config {
            message: format!(
                "SESSION_STORE must be `memory` or a redis:// URL, not {:?}",
                v.split('@').next_back().unwrap_or("")
            ),
            missing: vec![SESSION_STORE_VAR.to_owned()],
        })
    }
}

/// How the session layer is built: the store, the cookie flags, the inactivity expiry.
///
/// The session cookie is `HttpOnly`, `SameSite=Lax` (`Strict` would drop it when the
/// provider redirects back), `Secure` unless the redirect URI is plain `http` (loopback
/// development), and expires after [`DEFAULT_INACTIVITY`] without requests.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// The store.
    pub store: StoreKind,
    /// The `Secure` cookie flag.
    pub secure: bool,
    /// Session lifetime without requests.
    pub inactivity: Duration,
    /// The session cookie's name.
    pub cookie_name: String,
    /// Capacity of the memory store.
    pub memory_capacity: usize,
}

impl SessionSettings {
    /// Memory store, cookie flags from the [`Auth`]'s redirect URI, default expiry.
    pub fn for_auth(auth: &Auth) -> SessionSettings {
        SessionSettings {
            store: StoreKind::Memory,
            secure: auth.secure_cookies(),
            inactivity: DEFAULT_INACTIVITY,
            cookie_name: SESSION_COOKIE.to_owned(),
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
        }
    }

    /// Like [`for_auth`](Self::for_auth) with the store from `SESSION_STORE`.
    pub fn from_env(auth: &Auth) -> Result<SessionSettings, Error> {
        let store = StoreKind::parse(&std::env::var(SESSION_STORE_VAR).unwrap_or_default())?;
        Ok(SessionSettings {
            store,
            ..Self::for_auth(auth)
        })
    }

    /// Uses `store`.
    #[must_use]
    pub fn with_store(mut self, store: StoreKind) -> Self {
        self.store = store;
        self
    }

    /// Ends sessions after `inactivity` without requests.
    #[must_use]
    pub fn with_inactivity(mut self, inactivity: Duration) -> Self {
        self.inactivity = inactivity;
        self
    }

    /// Builds the store (connecting to Redis, within 10 seconds) and the layer.
    pub async fn layer(&self) -> Result<SessionManagerLayer<SessionBackend>, Error> {
        let backend = match &self.store {
            StoreKind::Memory => {
                SessionBackend::Memory(MemoryStore::with_capacity(self.memory_capacity))
            }
            StoreKind::Redis(url) => redis_backend(url).await?,
        };
        if matches!(backend, SessionBackend::Memory(_)) {
            tracing::info!(
                "sessions are kept in this process's memory: several instances need a shared \
                 SESSION_STORE (redis://...) and the same SESSION_SECRET"
            );
        }
        Ok(self.layer_with(backend))
    }

    /// The layer over any tower-sessions store, with these settings' cookie flags.
    pub fn layer_with<S: SessionStore + Clone>(&self, store: S) -> SessionManagerLayer<S> {
        let seconds = i64::try_from(self.inactivity.as_secs()).unwrap_or(i64::MAX);
        SessionManagerLayer::new(store)
            .with_name(self.cookie_name.clone())
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(self.secure)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(time::Duration::seconds(seconds)))
    }
}

#[cfg(feature = "redis")]
async fn redis_backend(url: &str) -> Result<SessionBackend, Error> {
    use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, ReconnectPolicy};
    use tower_sessions_redis_store::fred::types::Builder;
    let config = Config::from_url(url).map_err(|e| Error::Config {
        message: format!("SESSION_STORE is not a usable Redis URL: {e}"),
        missing: vec![SESSION_STORE_VAR.to_owned()],
    })?;
    let mut builder = Builder::from_config(config);
    builder.set_policy(ReconnectPolicy::new_exponential(0, 100, 10_000, 2));
    builder.with_connection_config(|c| {
        c.connection_timeout = Duration::from_secs(5);
    });
    let pool = builder
        .build_pool(4)
        .map_err(|e| Error::config(format!("cannot create the Redis pool: {e}")))?;
    match tokio::time::timeout(Duration::from_secs(10), pool.init()).await {
        Ok(Ok(_task)) => {}
        Ok(Err(e)) => {
            return Err(Error::Store(format!(
                "cannot connect to the Redis session store: {e}"
            )))
        }
        Err(_) => {
            return Err(Error::Store(
                "cannot connect to the Redis session store within 10 seconds".into(),
            ))
        }
    }
    tracing::info!("sessions are kept in Redis");
    Ok(SessionBackend::Redis(
        tower_sessions_redis_store::RedisStore::new(pool),
    ))
}

#[cfg(not(feature = "redis"))]
async fn redis_backend(_url: &str) -> Result<SessionBackend, Error> {
    Err(Error::Config {
        message: "SESSION_STORE names a Redis server, but this app was built without the \
                  `redis` feature of identity-axum"
            .into(),
        missing: vec![SESSION_STORE_VAR.to_owned()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(secs: i64) -> Record {
        Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::seconds(secs),
        }
    }

    #[tokio::test]
    async fn expired_sessions_are_removed() {
        let store = MemoryStore::new();
        let mut live = record(60);
        let mut dead = record(-1);
        store.create(&mut live).await.unwrap();
        store.create(&mut dead).await.unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.load(&dead.id).await.unwrap().is_none());
        assert_eq!(store.len(), 1, "an expired session is removed when read");
        let mut dead2 = record(-1);
        store.create(&mut dead2).await.unwrap();
        assert_eq!(store.purge_expired(), 1);
        assert!(store.load(&live.id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn capacity_is_bounded() {
        let store = MemoryStore::with_capacity(3);
        for i in 0..10 {
            let mut r = record(100 + i);
            store.create(&mut r).await.unwrap();
        }
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn store_kind_parsing() {
        assert_eq!(StoreKind::parse("").unwrap(), StoreKind::Memory);
        assert_eq!(StoreKind::parse("memory").unwrap(), StoreKind::Memory);
        assert!(matches!(
            StoreKind::parse("redis://h:6379").unwrap(),
            StoreKind::Redis(_)
        ));
        assert!(StoreKind::parse("postgres://x").is_err());
        let dbg = format!("{:?}", StoreKind::parse("redis://:hunter2@h:6379").unwrap());
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
