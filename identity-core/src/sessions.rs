//! Server-side session storage shared by every adapter: [`SessionBackend`], the bounded
//! in-process [`MemoryBackend`], Redis (`RedisBackend`, feature `redis`), the
//! `SESSION_STORE` setting ([`StoreUrl`]) and the lifetimes ([`SessionPolicy`]).
//!
//! Adapters plug a backend into their framework's session machinery (tower-sessions,
//! actix-session, the Rocket adapter's own sessions); the rules live here once:
//!
//! * **A deleted session stays deleted.** [`SessionBackend::save`] only ever updates a
//!   session that still exists; it never re-creates one. A request that was in flight
//!   while the user signed out (a slow page, a token refresh) therefore cannot bring the
//!   session back when it saves at its end: the deletion acts as a tombstone. New
//!   sessions are made only by [`SessionBackend::create`], under a fresh random id.
//! * **Bounded memory.** [`MemoryBackend`] holds at most a fixed number of sessions,
//!   removes expired ones when read and sweeps them at most every
//!   [`MemoryBackend::PURGE_EVERY`], and evicts the session closest to expiry when full.
//! * **Bounded waits.** Every Redis command has a timeout (`RedisBackend`,
//!   [`DEFAULT_COMMAND_TIMEOUT`]); an outage gives [`StoreError`] quickly, which the
//!   engine answers with a 503 page saying the session store is unreachable, and the
//!   same session works again when Redis is back.
//! * **TLS when asked for.** `rediss://` connects with TLS (rustls, the system's roots and
//!   `SSL_CERT_FILE`); it is never silently downgraded.
//! * **Single sign-out finds sessions without their cookie.** A session whose record
//!   holds [`KEY_SSO`] (written at sign-in: the ID token's `iss`, `sid`, `sub`) is listed,
//!   whenever a backend creates or saves it, in two indexes: by `sid`
//!   ([`SignInRef::sid_index`]) and by `iss` + `sub` ([`SignInRef::sub_index`]). A
//!   front- or back-channel logout notification received by any instance looks the
//!   sessions up there and deletes them ([`SessionBackend::index_members`]). Index
//!   members may outlive their session (a deleted session is simply not found); an index
//!   expires with the last session written into it.
//! * **Side records.** Small values with their own expiry, outside any session:
//!   the replay cache of logout tokens (`jti`) and the cluster-wide refresh lease and its
//!   sealed result ([`SessionBackend::put_record`] with `only_if_absent`).
//! * **One read per request.** An adapter may read the signed-in user straight from the
//!   stored record, beside its session layer, which would otherwise load the same record
//!   again. Within [`request_scope`], a record read that way (or the error of reading it)
//!   is handed to the session layer's load ([`load_in_request`]), so a remote store
//!   is read at most once per request whichever of the two reads first.
//! * **Copies of Redis sessions stay coherent.** An instance serves repeated reads of a
//!   Redis session from its copy only while Redis would have told it of any change
//!   (`CLIENT TRACKING` notices on a live connection; the rules and their bounds are in
//!   `copies`, feature `redis`), so a sign-out anywhere ends the session everywhere.
//! * **No secret in messages.** A `SESSION_STORE` URL is shown and logged only as
//!   [`StoreUrl::redacted`], also when it does not parse.

use crate::error::Error;
use crate::store::{StoreError, KEY_SSO};
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The environment variable that selects the session store.
pub const SESSION_STORE_VAR: &str = "SESSION_STORE";
/// Default inactivity after which a session ends: 4 hours.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
/// Default longest life of a sign-in, active or not: 7 days. After it the user signs in
/// again, whatever the refresh token's lifetime.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default most sessions an in-process store holds.
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;
/// How many Redis sessions an instance keeps copies of (see [`copies`]); past it, views of
/// further sessions read the store.
#[cfg(feature = "redis")]
pub const DEFAULT_COPY_CAPACITY: usize = 10_000;
/// Default timeout of one Redis command (and of connecting).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How long sessions live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
    /// A sign-in ends this long after it completed, however active the user is.
    pub absolute_timeout: Duration,
}

impl SessionPolicy {
    /// How often, at most, a session that is only read has its expiry pushed: a tenth of
    /// [`idle_timeout`](Self::idle_timeout) (24 minutes by default).
    pub fn touch_interval(&self) -> Duration {
        self.idle_timeout / 10
    }

    /// Whether a loaded session that expires at `expires_at` (seconds since the epoch)
    /// must be written back with its expiry pushed to `now` + idle timeout. Every adapter
    /// asks this one rule: a read-only page view writes nothing until less than
    /// `idle_timeout − touch_interval` remains, so a session costs one store read per
    /// view and at most one write per [`touch_interval`](Self::touch_interval), and ends
    /// between `idle_timeout − touch_interval` and `idle_timeout` after its last request.
    pub fn needs_touch(&self, expires_at: i64, now: i64) -> bool {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
        let keep = secs(self.idle_timeout).saturating_sub(secs(self.touch_interval()));
        expires_at.saturating_sub(now) < keep
    }
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            absolute_timeout: DEFAULT_ABSOLUTE_TIMEOUT,
        }
    }
}

/// One session as a backend stores it: its values (JSON text per key) and when it expires
/// (seconds since the epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredSession {
    /// The values, by key.
    pub data: HashMap<String, String>,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
}

/// Where session records live. Implementations must keep the two rules of the module
/// docs: `save` never re-creates a deleted or expired session, and every call is bounded
/// in time.
#[async_trait]
pub trait SessionBackend: Send + Sync + fmt::Debug + 'static {
    /// The session `id`, unless it does not exist or expired.
    async fn load(&self, id: &str) -> Result<Option<StoredSession>, StoreError>;
    /// [`load`](Self::load), sharing the backend's own copy where it has one (the memory
    /// backend hands out its record without copying it); by default, a load.
    async fn load_shared(&self, id: &str) -> Result<Option<Arc<StoredSession>>, StoreError> {
        Ok(self.load(id).await?.map(Arc::new))
    }
    /// Whether the records live in this process, so that reading one costs no round
    /// trip (the memory backend). Adapters then may read a record directly besides their
    /// session layer; for a remote store they keep to one load per request.
    fn is_in_process(&self) -> bool {
        false
    }
    /// The backend as the [`MemoryBackend`] it is, whose records are read without
    /// awaiting; `None` for any other backend.
    fn as_memory(&self) -> Option<&MemoryBackend> {
        None
    }
    /// Stores a new session under `id`; `false` (nothing written) when the id is taken.
    async fn create(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError>;
    /// Replaces the session `id` if it still exists; `false` (nothing written) when it
    /// was deleted or expired in the meantime.
    async fn save(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError>;
    /// Deletes the session `id`.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;
    /// The ids listed in the sign-out index `index` (see [`SignInRef`]); `create` and
    /// `save` add a session to its indexes when its record holds [`KEY_SSO`].
    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError>;
    /// Removes the sign-out index `index`.
    async fn delete_index(&self, index: &str) -> Result<(), StoreError>;
    /// A side record (not a session), unless absent or expired.
    async fn get_record(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes a side record living `ttl`; with `only_if_absent`, writes only when no live
    /// record has that key (a lease, a replay cache) and says whether it wrote.
    async fn put_record(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, StoreError>;
    /// Deletes a side record.
    async fn delete_record(&self, key: &str) -> Result<(), StoreError>;
}

/// A shared backend is a backend: `Arc<dyn SessionBackend>` (what
/// [`StoreUrl::open`] gives) can be handed to APIs that take a backend by value.
#[async_trait]
impl<T: SessionBackend + ?Sized> SessionBackend for Arc<T> {
    async fn load(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        (**self).load(id).await
    }
    async fn load_shared(&self, id: &str) -> Result<Option<Arc<StoredSession>>, StoreError> {
        (**self).load_shared(id).await
    }
    fn is_in_process(&self) -> bool {
        (**self).is_in_process()
    }
    fn as_memory(&self) -> Option<&MemoryBackend> {
        (**self).as_memory()
    }
    async fn create(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError> {
        (**self).create(id, session).await
    }
    async fn save(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError> {
        (**self).save(id, session).await
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        (**self).delete(id).await
    }
    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        (**self).index_members(index).await
    }
    async fn delete_index(&self, index: &str) -> Result<(), StoreError> {
        (**self).delete_index(index).await
    }
    async fn get_record(&self, key: &str) -> Result<Option<String>, StoreError> {
        (**self).get_record(key).await
    }
    async fn put_record(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        (**self).put_record(key, value, ttl, only_if_absent).await
    }
    async fn delete_record(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete_record(key).await
    }
}

/// What single sign-out finds a session by: the ID token's issuer, session id (`sid`,
/// present when the provider sends it; at Entra only with the `sid` optional claim) and
/// subject. Kept in the session under [`KEY_SSO`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignInRef {
    /// `iss` of the ID token.
    pub iss: String,
    /// `sid` of the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// `sub` of the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

fn digest(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SignInRef {
    /// The index of the sessions of provider session `sid`. Keyed by `sid` alone: Entra's
    /// front-channel logout sends no `iss`; the issuer is checked against each session's
    /// [`SignInRef`] when a notification names one.
    pub fn sid_index(sid: &str) -> String {
        format!("sid:{}", digest(&["sid", sid]))
    }

    /// The index of the sessions of user `sub` at issuer `iss` (`sub` is unique per issuer).
    pub fn sub_index(iss: &str, sub: &str) -> String {
        format!("sub:{}", digest(&["sub", iss, sub]))
    }

    /// The indexes this sign-in is listed in.
    pub fn indexes(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if let Some(sid) = self.sid.as_deref().filter(|s| !s.is_empty()) {
            out.push(Self::sid_index(sid));
        }
        if let Some(sub) = self.sub.as_deref().filter(|s| !s.is_empty()) {
            out.push(Self::sub_index(&self.iss, sub));
        }
        out
    }

    /// The sign-in a session record holds, if any. Adapters keep values as JSON text,
    /// some wrapped once more in a JSON string (tower-sessions, actix-session): both read.
    pub fn of(data: &HashMap<String, String>) -> Option<SignInRef> {
        let raw = data.get(KEY_SSO)?;
        serde_json::from_str(raw).ok().or_else(|| {
            let inner: String = serde_json::from_str(raw).ok()?;
            serde_json::from_str(&inner).ok()
        })
    }
}

fn now() -> i64 {
    crate::flow::now()
}

/// What one request read of a session: its id and the result of the load.
type ReadInRequest = Option<(Box<str>, Result<Option<Arc<StoredSession>>, StoreError>)>;

tokio::task_local! {
    static READ_IN_REQUEST: std::cell::RefCell<ReadInRequest>;
}

/// Runs `fut`, the handling of one request, with a handoff of one session record
/// between a direct read of the signed-in user
/// ([`WebAuth::user_in_backend`](crate::web::WebAuth::user_in_backend)) and the session
/// layer's load of the same session ([`load_in_request`]). Within it, direct reads
/// are made from remote stores too, still at most one read of the store per request;
/// outside it, only from in-process backends. The handoff lives in the request's task:
/// a task the handler spawns does not see it and loads normally.
pub async fn request_scope<F: std::future::Future>(fut: F) -> F::Output {
    READ_IN_REQUEST
        .scope(std::cell::RefCell::new(None), fut)
        .await
}

/// A session layer's load of session `id` from `backend`: what a direct read of the
/// same session in this request found (the record, its absence, or the store's error),
/// taken so that the store is not read again; without such a read,
/// [`SessionBackend::load_shared`].
pub async fn load_in_request(
    backend: &dyn SessionBackend,
    id: &str,
) -> Result<Option<Arc<StoredSession>>, StoreError> {
    match take_read_in_request(id) {
        Some(read) => read,
        None => backend.load_shared(id).await,
    }
}

fn take_read_in_request(id: &str) -> Option<Result<Option<Arc<StoredSession>>, StoreError>> {
    READ_IN_REQUEST
        .try_with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_some_and(|(read, _)| **read == *id) {
                slot.take().map(|(_, result)| result)
            } else {
                None
            }
        })
        .ok()
        .flatten()
}

/// The record of session `id` for a direct read: from an in-process backend, read; from
/// a remote one only within [`request_scope`], read once and kept for the session
/// layer's load. `None`: no record, a failed read (the session layer's load reports it),
/// or a remote store outside a request scope.
#[cfg(feature = "pages")]
pub(crate) async fn read_directly(
    backend: &dyn SessionBackend,
    id: &str,
) -> Option<Arc<StoredSession>> {
    if backend.is_in_process() {
        return backend.load_shared(id).await.ok()?;
    }
    let earlier = READ_IN_REQUEST
        .try_with(|cell| match &*cell.borrow() {
            Some((read, result)) if **read == *id => Some(result.clone()),
            _ => None,
        })
        .ok()?;
    if let Some(result) = earlier {
        return result.ok()?;
    }
    let result = backend.load_shared(id).await;
    let record = result.as_ref().ok().cloned().flatten();
    let _ = READ_IN_REQUEST.try_with(|cell| *cell.borrow_mut() = Some((id.into(), result)));
    record
}

/// Ends the sessions a logout notification names, on every instance that shares
/// `backend`; returns how many it deleted.
///
/// With a `sid`, the sessions of that provider session (and of user `sub`, when given);
/// without one, every session of user `sub` at issuer `iss`. When `iss` is given a
/// session must have been signed in by that issuer; `iss` may be left out only where
/// `sid` is unique across issuers (Entra, whose front-channel logout sends no `iss`).
/// Sessions are found through the sign-out indexes, never through a cookie: a
/// front-channel logout runs in a third-party iframe, where the browser sends no
/// `SameSite=Lax` cookie.
pub async fn end_sign_ins(
    backend: &dyn SessionBackend,
    iss: Option<&str>,
    sid: Option<&str>,
    sub: Option<&str>,
) -> Result<usize, StoreError> {
    let index = match (sid, iss, sub) {
        (Some(sid), _, _) => SignInRef::sid_index(sid),
        (None, Some(iss), Some(sub)) => SignInRef::sub_index(iss, sub),
        _ => return Ok(0),
    };
    let mut ended = 0;
    for id in backend.index_members(&index).await? {
        let Some(session) = backend.load(&id).await? else {
            continue;
        };
        let Some(sign_in) = SignInRef::of(&session.data) else {
            continue;
        };
        let named = sid.is_none_or(|s| sign_in.sid.as_deref() == Some(s))
            && iss.is_none_or(|i| sign_in.iss == i)
            && sub.is_none_or(|s| sign_in.sub.as_deref() == Some(s));
        if named {
            backend.delete(&id).await?;
            ended += 1;
        }
    }
    Ok(ended)
}

/// The in-process [`SessionBackend`]: one instance only (sessions vanish on restart and
/// are not seen by other instances). Bounded and purged; cloning shares the store.
///
/// A session costs its record and, once a page view has read its user directly
/// ([`WebAuth::user_in_backend`](crate::web::WebAuth::user_in_backend)), the parsed user
/// kept beside it (shared with the engine's cache of parsed users while that holds it:
/// about the size of the user part, under a kilobyte for Entra users).
#[derive(Clone)]
pub struct MemoryBackend {
    /// Read-mostly: page views of live sessions share the read lock.
    inner: Arc<std::sync::RwLock<MemoryInner>>,
}

struct MemoryInner {
    /// Keyed by ids the session layer generated at random: the fast hash suffices (no
    /// client chooses a key that is stored).
    sessions: HashMap<String, MemorySlot, foldhash::fast::RandomState>,
    /// Sign-out indexes: members and expiry.
    indexes: HashMap<String, (Vec<String>, i64)>,
    /// Side records: value and expiry.
    records: HashMap<String, (String, i64)>,
    capacity: usize,
    last_purge: Instant,
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryBackend")
            .field("sessions", &inner.sessions.len())
            .field("capacity", &inner.capacity)
            .finish()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// How often, at most, a write sweeps out expired sessions.
    pub const PURGE_EVERY: Duration = Duration::from_secs(60);

    /// A store of at most [`DEFAULT_MEMORY_CAPACITY`] sessions.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MEMORY_CAPACITY)
    }

    /// A store of at most `capacity` sessions (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryBackend {
            inner: Arc::new(std::sync::RwLock::new(MemoryInner {
                sessions: HashMap::default(),
                indexes: HashMap::new(),
                records: HashMap::new(),
                capacity: capacity.max(1),
                last_purge: Instant::now(),
            })),
        }
    }

    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, MemoryInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The live session `id` under the read lock; an expired one is removed under the
    /// write lock.
    fn live_session(&self, id: &str) -> Option<Arc<StoredSession>> {
        let now = now();
        {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            match inner.sessions.get(id) {
                Some(s) if s.record.expires_at > now => return Some(s.record.clone()),
                None => return None,
                Some(_) => {}
            }
        }
        let mut inner = self.lock();
        inner
            .live(id, now)
            .then(|| inner.sessions.get(id).map(|s| s.record.clone()))
            .flatten()
    }

    /// `read` of the session `id` and its memo if it is live at `now`, under the read
    /// lock: no copy of the record, no count taken on it. What a page view of a
    /// signed-in user reads from a record is parsed once per record (the memo), and
    /// reading it again writes nothing but the store's read lock. An expired session is
    /// removed.
    #[cfg(feature = "pages")]
    pub(crate) fn read_live<R>(
        &self,
        id: &str,
        now: i64,
        read: impl FnOnce(&StoredSession, &UserMemo) -> R,
    ) -> Option<R> {
        {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            match inner.sessions.get(id) {
                Some(s) if s.record.expires_at > now => return Some(read(&s.record, &s.memo)),
                None => return None,
                Some(_) => {}
            }
        }
        self.lock().live(id, now);
        None
    }

    /// Sessions held (expired ones not swept yet included).
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired session now; returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        self.lock().purge(now())
    }
}

/// What a direct read of a record found, kept with the record (see
/// [`MemoryBackend::read_live`]): the user part and the sign-in time, parsed; `None`
/// when they do not read.
pub(crate) type UserMemo = std::sync::OnceLock<Option<(crate::User, Option<i64>)>>;

/// One session of a [`MemoryBackend`]: its record, shared with loads, and what direct
/// reads parsed from it. A save replaces both.
struct MemorySlot {
    record: Arc<StoredSession>,
    /// Read by the web engine's direct reads (feature `pages`).
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    memo: UserMemo,
}

impl MemorySlot {
    fn new(session: &StoredSession) -> Self {
        MemorySlot {
            record: Arc::new(session.clone()),
            memo: UserMemo::new(),
        }
    }
}

impl MemoryInner {
    fn purge(&mut self, now: i64) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| s.record.expires_at > now);
        self.indexes.retain(|_, (_, exp)| *exp > now);
        self.records.retain(|_, (_, exp)| *exp > now);
        self.last_purge = Instant::now();
        before - self.sessions.len()
    }

    /// Lists session `id` in the sign-out indexes its record names.
    fn index(&mut self, id: &str, session: &StoredSession) {
        let Some(sign_in) = SignInRef::of(&session.data) else {
            return;
        };
        for index in sign_in.indexes() {
            let (members, exp) = self.indexes.entry(index).or_default();
            if !members.iter().any(|m| m == id) {
                // Bounded: the oldest members go first (they are the likeliest gone).
                if members.len() >= 64 {
                    members.remove(0);
                }
                members.push(id.to_owned());
            }
            *exp = (*exp).max(session.expires_at);
        }
    }

    fn make_room(&mut self, now: i64) {
        if self.last_purge.elapsed() >= MemoryBackend::PURGE_EVERY {
            self.purge(now);
        }
        if self.sessions.len() < self.capacity {
            return;
        }
        self.purge(now);
        if self.sessions.len() >= self.capacity {
            let soonest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.record.expires_at)
                .map(|(id, _)| id.clone());
            if let Some(id) = soonest {
                tracing::warn!(
                    capacity = self.capacity,
                    "the memory session store is full; evicting the session closest to expiry"
                );
                self.sessions.remove(&id);
            }
        }
    }

    fn live(&mut self, id: &str, now: i64) -> bool {
        match self.sessions.get(id) {
            Some(s) if s.record.expires_at > now => true,
            Some(_) => {
                self.sessions.remove(id);
                false
            }
            None => false,
        }
    }
}

#[async_trait]
impl SessionBackend for MemoryBackend {
    async fn load(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.live_session(id).map(|s| (*s).clone()))
    }

    fn is_in_process(&self) -> bool {
        true
    }

    fn as_memory(&self) -> Option<&MemoryBackend> {
        Some(self)
    }

    async fn load_shared(&self, id: &str) -> Result<Option<Arc<StoredSession>>, StoreError> {
        Ok(self.live_session(id))
    }

    async fn create(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError> {
        let now = now();
        let mut inner = self.lock();
        if inner.live(id, now) {
            return Ok(false);
        }
        inner.make_room(now);
        inner.index(id, session);
        inner
            .sessions
            .insert(id.to_owned(), MemorySlot::new(session));
        Ok(true)
    }

    async fn save(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError> {
        let now = now();
        let mut inner = self.lock();
        if !inner.live(id, now) {
            return Ok(false);
        }
        inner.index(id, session);
        inner
            .sessions
            .insert(id.to_owned(), MemorySlot::new(session));
        Ok(true)
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.lock().sessions.remove(id);
        Ok(())
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let now = now();
        Ok(self
            .lock()
            .indexes
            .get(index)
            .filter(|(_, exp)| *exp > now)
            .map(|(m, _)| m.clone())
            .unwrap_or_default())
    }

    async fn delete_index(&self, index: &str) -> Result<(), StoreError> {
        self.lock().indexes.remove(index);
        Ok(())
    }

    async fn get_record(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = now();
        Ok(self
            .lock()
            .records
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone()))
    }

    async fn put_record(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let now = now();
        let mut inner = self.lock();
        if only_if_absent && inner.records.get(key).is_some_and(|(_, exp)| *exp > now) {
            return Ok(false);
        }
        if inner.records.len() >= inner.capacity {
            inner.purge(now);
        }
        if inner.records.len() >= inner.capacity {
            // Full of live records: the one closest to expiry goes.
            let soonest = inner
                .records
                .iter()
                .min_by_key(|(_, (_, exp))| *exp)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                inner.records.remove(&k);
            }
        }
        let ttl = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX / 2);
        inner
            .records
            .insert(key.to_owned(), (value.to_owned(), now.saturating_add(ttl)));
        Ok(true)
    }

    async fn delete_record(&self, key: &str) -> Result<(), StoreError> {
        self.lock().records.remove(key);
        Ok(())
    }
}

/// The `SESSION_STORE` setting: `memory` (the default) or a Redis URL. Its `Debug` and
/// [`redacted`](StoreUrl::redacted) forms never show a password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// [`MemoryBackend`]: one instance only.
    Memory,
    /// `redis://` (cleartext) or `rediss://` (TLS).
    Redis(RedisUrl),
}

/// A parsed `redis://` or `rediss://` URL; the password is kept but never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: url::Url,
}

impl RedisUrl {
    /// Whether the URL asks for TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.url.scheme() == "rediss"
    }

    /// The URL with any user name and password replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut u = self.url.clone();
        if !u.username().is_empty() || u.password().is_some() {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
        }
        u.to_string()
    }

    /// The full URL, password included: for the Redis client only.
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("Memory"),
            StoreUrl::Redis(u) => write!(f, "Redis({})", u.redacted()),
        }
    }
}

/// Redacts what could be a password in a setting that did not parse: everything before
/// the last `@` but the scheme.
pub fn redact_url_text(value: &str) -> String {
    let Some(at) = value.rfind('@') else {
        return value.to_owned();
    };
    match value.find("://") {
        Some(s) if s + 3 <= at => format!("{}***{}", &value[..s + 3], &value[at..]),
        _ => format!("***{}", &value[at..]),
    }
}

impl StoreUrl {
    /// Parses a `SESSION_STORE` value: empty or `memory`, or a `redis://` / `rediss://`
    /// URL. The error names the setting and shows the value with its password redacted.
    pub fn parse(value: &str) -> Result<StoreUrl, Error> {
        let v = value.trim();
        if v.is_empty() || v.eq_ignore_ascii_case("memory") {
            return Ok(StoreUrl::Memory);
        }
        let bad = |why: String| Error::Config {
            message: format!(
                "SESSION_STORE must be `memory` or a redis:// or rediss:// URL \
                 (e.g. redis://:password@redis.internal:6379/0); {:?} {why}",
                redact_url_text(v)
            ),
            missing: vec![SESSION_STORE_VAR.to_owned()],
        };
        let url = url::Url::parse(v).map_err(|e| bad(format!("does not parse: {e}")))?;
        match url.scheme() {
            "redis" | "rediss" => {}
            other => return Err(bad(format!("has the scheme {other:?}"))),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("names no host".into()));
        }
        Ok(StoreUrl::Redis(RedisUrl { url }))
    }

    /// Reads `SESSION_STORE` from the environment.
    pub fn from_env() -> Result<StoreUrl, Error> {
        Self::parse(&std::env::var(SESSION_STORE_VAR).unwrap_or_default())
    }

    /// The setting with its password redacted.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Memory => "memory".into(),
            StoreUrl::Redis(u) => u.redacted(),
        }
    }

    /// Opens the store: a [`MemoryBackend`] of `memory_capacity` sessions, or a Redis
    /// connection (within `timeout`; every later command is bounded by it too).
    pub async fn open(
        &self,
        memory_capacity: usize,
        timeout: Duration,
    ) -> Result<Arc<dyn SessionBackend>, Error> {
        match self {
            StoreUrl::Memory => {
                tracing::info!(
                    "sessions are kept in this process's memory: several instances need a \
                     shared SESSION_STORE (redis://...) and the same SESSION_SECRET"
                );
                Ok(Arc::new(MemoryBackend::with_capacity(memory_capacity)))
            }
            #[cfg(feature = "redis")]
            StoreUrl::Redis(url) => Ok(Arc::new(RedisBackend::connect(url, timeout).await?)),
            #[cfg(not(feature = "redis"))]
            StoreUrl::Redis(url) => {
                let _ = timeout;
                Err(Error::Config {
                    message: format!(
                        "SESSION_STORE names a Redis server ({}), but this app was built \
                         without the `redis` feature: enable it on your adapter crate \
                         (e.g. `cargo add identity-axum --features redis`)",
                        url.redacted()
                    ),
                    missing: vec![SESSION_STORE_VAR.to_owned()],
                })
            }
        }
    }
}

/// Opens the store `SESSION_STORE` names, with the default capacity and command timeout:
/// what an app needs in one call.
pub async fn from_env() -> Result<Arc<dyn SessionBackend>, Error> {
    StoreUrl::from_env()?
        .open(DEFAULT_MEMORY_CAPACITY, DEFAULT_COMMAND_TIMEOUT)
        .await
}

#[cfg(feature = "redis")]
pub use self::redis::RedisBackend;

#[cfg(feature = "redis")]
pub mod copies;

#[cfg(feature = "redis")]
mod redis {
    use super::copies::{Copies, Lookup, Ticket};
    use super::*;
    use fred::bytes_utils::Str;
    use fred::interfaces::{ClientInterface, SetsInterface};
    use fred::prelude::{Client, ClientLike, Config, KeysInterface, ReconnectPolicy};
    use fred::types::{Builder, Expiration, RespVersion, SetOptions};
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    /// Sessions in Redis, shared by every instance of the app.
    ///
    /// Each session is one key, `identity:session:{id}`, holding its values and expiry
    /// (a load is one `GET`; the form is described at `RECORD_PREFIX` in the source),
    /// with a Redis expiry equal to the session's. `create` is `SET NX`, `save` is `SET XX`
    /// (a deleted or expired session is never re-created), every command is bounded by
    /// the timeout given to [`RedisBackend::connect`], and a failed command is not
    /// retried behind the caller's back. `rediss://` URLs connect with TLS.
    ///
    /// One connection carries every request of the process: commands issued while
    /// others are under way are written together and answered together (pipelined), so
    /// that under load a page view costs a fraction of a write and a read. Measured on
    /// loopback, one connection serves about a third more page views per second than a
    /// pool of four, whose connections each see too few commands to batch. Sessions are
    /// small (a few KB), so no command waits long behind another.
    ///
    /// A load is served from this instance's copy of the record when one may be served
    /// ([`copies`](super::copies): Redis pushes a notice when a record the instance read
    /// changes, and the copy goes), else it is one `GET` sent with `CLIENT TRACKING ON`
    /// in one round trip. At most [`DEFAULT_COPY_CAPACITY`] copies are kept.
    #[derive(Clone)]
    pub struct RedisBackend {
        client: Client,
        timeout: Duration,
        url: RedisUrl,
        copies: Arc<Copies>,
    }

    impl fmt::Debug for RedisBackend {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RedisBackend")
                .field("url", &self.url)
                .field("timeout", &self.timeout)
                .field("local_copies", &self.copies.is_on())
                .finish()
        }
    }

    fn key(id: &str) -> String {
        format!("identity:session:{id}")
    }

    /// A session as Redis holds it, with its expiry (the key's TTL is set to the same
    /// moment), so that a load is one `GET`:
    /// `identity-session/3;{expires_at};{number of values};` followed by each value as
    /// `{key length}:{key}{value length}:{value}` (lengths in bytes, values verbatim; the
    /// count tells a whole record from a cut one).
    /// Loading it copies each value once and reads none of their bytes: a session holds
    /// kilobytes of sealed tokens, which a JSON form made every page view scan. Values
    /// stay readable in `redis-cli GET`. Records of earlier versions still load: the
    /// JSON form with verbatim values (`{"expires_at":…,"json":{…},"text":{…}}`), the
    /// one with string values (`{"expires_at":…,"data":{…}}`), and the bare map of
    /// strings whose expiry is the key's `TTL`.
    const RECORD_PREFIX: &str = "identity-session/3;";

    /// `session` in the form of [`RECORD_PREFIX`].
    fn encode_record(session: &StoredSession) -> String {
        use std::fmt::Write;
        let size: usize = session
            .data
            .iter()
            .map(|(k, v)| k.len() + v.len() + 12)
            .sum();
        let mut out = String::with_capacity(RECORD_PREFIX.len() + 21 + size);
        out.push_str(RECORD_PREFIX);
        // Writing to a `String` cannot fail.
        let _ = write!(out, "{};{};", session.expires_at, session.data.len());
        for (k, v) in &session.data {
            let _ = write!(out, "{}:", k.len());
            out.push_str(k);
            let _ = write!(out, "{}:", v.len());
            out.push_str(v);
        }
        out
    }

    /// A record in the form of [`RECORD_PREFIX`]; `None` when `text` is not one (an
    /// earlier form), `Some(Err)` when it is one but does not read.
    fn decode_record(text: &str) -> Option<Result<StoredSession, StoreError>> {
        let rest = text.strip_prefix(RECORD_PREFIX)?;
        let broken =
            || StoreError("a stored session does not parse (its record is cut or altered)".into());
        /// The next length-prefixed string of `s`, and what follows it.
        fn take(s: &str) -> Option<(&str, &str)> {
            // A length has at most 20 digits: the search stops there.
            let colon = s.bytes().take(21).position(|b| b == b':')?;
            let len: usize = s[..colon].parse().ok()?;
            let rest = &s[colon + 1..];
            Some((rest.get(..len)?, rest.get(len..)?))
        }
        let read = || {
            let (expires_at, rest) = rest.split_once(';')?;
            let expires_at: i64 = expires_at.parse().ok()?;
            let (count, mut rest) = rest.split_once(';')?;
            let count: usize = count.parse().ok()?;
            let mut data = HashMap::with_capacity(count.min(64));
            while !rest.is_empty() {
                let (key, after_key) = take(rest)?;
                let (value, after_value) = take(after_key)?;
                data.insert(key.to_owned(), value.to_owned());
                rest = after_value;
            }
            (data.len() == count).then_some(StoredSession { data, expires_at })
        };
        Some(read().ok_or_else(broken))
    }

    /// The JSON form with verbatim values, before [`RECORD_PREFIX`].
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RedisRecord<'a> {
        expires_at: i64,
        #[serde(borrow, default)]
        json: HashMap<Cow<'a, str>, &'a RawValue>,
        #[serde(default)]
        text: HashMap<String, String>,
    }

    impl RedisRecord<'_> {
        fn into_session(self) -> StoredSession {
            let mut data = self.text;
            data.reserve(self.json.len());
            for (k, v) in self.json {
                data.insert(k.into_owned(), v.get().to_owned());
            }
            StoredSession {
                data,
                expires_at: self.expires_at,
            }
        }
    }

    /// The form before values were kept verbatim.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RedisRecordV1 {
        expires_at: i64,
        data: HashMap<String, String>,
    }

    fn index_key(index: &str) -> String {
        format!("identity:index:{index}")
    }

    fn record_key(key: &str) -> String {
        format!("identity:record:{key}")
    }

    impl RedisBackend {
        /// Connects (one pipelined connection, re-established after a failure) within
        /// `timeout`, speaking RESP3 so that the server can keep this instance's copies
        /// of sessions coherent ([`copies`](super::copies)); a server that does not
        /// speak RESP3 (older than Redis 6) is used without copies.
        pub async fn connect(url: &RedisUrl, timeout: Duration) -> Result<RedisBackend, Error> {
            let config = Config::from_url(url.expose()).map_err(|e| Error::Config {
                message: format!(
                    "SESSION_STORE {} is not a usable Redis URL: {e}",
                    url.redacted()
                ),
                missing: vec![SESSION_STORE_VAR.to_owned()],
            })?;
            if url.tls() && config.tls.is_none() {
                return Err(Error::config(
                    "SESSION_STORE is a rediss:// URL but TLS could not be set up for it",
                ));
            }
            let failed = |e: Option<fred::error::Error>| match e {
                Some(e) => Error::Store(format!(
                    "cannot connect to the Redis session store {}: {e}",
                    url.redacted()
                )),
                None => Error::Store(format!(
                    "cannot connect to the Redis session store {} within {timeout:?}",
                    url.redacted()
                )),
            };
            let (client, resp3) = match Self::start(&config, RespVersion::RESP3, timeout).await {
                Ok(client) => (client, true),
                // The server answered, but not to `HELLO 3`.
                Err(Some(e)) if Self::refused_resp3(&e) => {
                    tracing::warn!(
                        store = %url.redacted(),
                        "the Redis session store does not speak RESP3 ({e}): every page view reads the store"
                    );
                    let client = Self::start(&config, RespVersion::RESP2, timeout)
                        .await
                        .map_err(failed)?;
                    (client, false)
                }
                Err(e) => return Err(failed(e)),
            };
            let copies = Copies::new(&client, DEFAULT_COPY_CAPACITY);
            if !resp3 {
                copies.turn_off();
            }
            tracing::info!(store = %url.redacted(), tls = url.tls(), local_copies = resp3, "sessions are kept in Redis");
            Ok(RedisBackend {
                client,
                timeout,
                url: url.clone(),
                copies: Arc::new(copies),
            })
        }

        /// A connected client speaking `version`; `Err(None)` when `timeout` passed.
        async fn start(
            config: &Config,
            version: RespVersion,
            timeout: Duration,
        ) -> Result<Client, Option<fred::error::Error>> {
            let mut config = config.clone();
            config.version = version;
            let mut builder = Builder::from_config(config);
            builder.set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
            builder.with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
                c.max_command_buffer_len = 10_000;
            });
            builder.with_performance_config(|p| {
                p.default_command_timeout = timeout;
                // Invalidation notices wait here until the next lookup applies them; an
                // overflow drops every copy.
                p.broadcast_channel_capacity = 1024;
            });
            let client = builder.build().map_err(Some)?;
            match tokio::time::timeout(timeout, client.init()).await {
                Ok(Ok(_task)) => Ok(client),
                Ok(Err(e)) => Err(Some(e)),
                Err(_) => Err(None),
            }
        }

        /// Whether `e` is a server's refusal of RESP3 (rather than no server, a timeout,
        /// TLS or a wrong password, which a second attempt would not mend).
        fn refused_resp3(e: &fred::error::Error) -> bool {
            use fred::error::ErrorKind;
            let text = e.details().to_ascii_lowercase();
            !matches!(
                e.kind(),
                ErrorKind::IO
                    | ErrorKind::Timeout
                    | ErrorKind::Tls
                    | ErrorKind::Auth
                    | ErrorKind::Canceled
                    | ErrorKind::Config
                    | ErrorKind::Url
            ) && (text.contains("hello")
                || text.contains("protocol")
                || text.contains("unknown command"))
        }

        /// `fut` within the timeout. The client's futures are large (several KB):
        /// `fut` goes to the heap here, so that the futures of the backend's methods
        /// stay small and are not copied whole on every call.
        fn bounded<'a, T: 'a>(
            &self,
            what: &'static str,
            fut: impl std::future::Future<Output = Result<T, fred::error::Error>> + Send + 'a,
        ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'a {
            let fut = Box::pin(fut);
            let timeout = self.timeout;
            async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(StoreError(format!(
                        "the Redis session store failed to {what}: {e}"
                    ))),
                    Err(_) => Err(StoreError(format!(
                        "the Redis session store did not answer within {timeout:?} ({what})"
                    ))),
                }
            }
        }

        /// The record of session `id`, read with `CLIENT TRACKING ON` and kept as this
        /// instance's copy when `ticket` still stands ([`copies`](super::copies)).
        async fn read_tracked(
            &self,
            id: &str,
            ticket: Ticket,
        ) -> Result<Option<Arc<StoredSession>>, StoreError> {
            match self.read(id, true).await {
                Ok(record) => {
                    let record = record.map(Arc::new);
                    self.copies.settle(id, ticket, record.as_ref());
                    Ok(record)
                }
                Err(e) => {
                    self.copies.abandon(id, ticket);
                    Err(e)
                }
            }
        }

        /// The record of session `id`; `tracked`, the `GET` goes with
        /// `CLIENT TRACKING ON` (one round trip), and a refusal of tracking turns copies
        /// off.
        async fn read(&self, id: &str, tracked: bool) -> Result<Option<StoredSession>, StoreError> {
            let k = key(id);
            // `Str` shares the reply's buffer: no copy before parsing.
            let value: Option<Str> = if tracked {
                let mut replies = self
                    .bounded("read a session", async {
                        let pipe = self.client.pipeline();
                        let _: () = pipe
                            .client_tracking("on", None, (), false, false, false, false)
                            .await?;
                        let _: () = pipe.get(&k).await?;
                        Ok(pipe.try_all::<fred::types::Value>().await)
                    })
                    .await?
                    .into_iter();
                if let Some(Err(e)) = replies.next() {
                    tracing::warn!(
                        store = %self.url.redacted(),
                        "the Redis session store refuses CLIENT TRACKING ({e}): every page view reads the store"
                    );
                    self.copies.turn_off();
                }
                let failed = |e: fred::error::Error| {
                    StoreError(format!(
                        "the Redis session store failed to read a session: {e}"
                    ))
                };
                match replies.next() {
                    Some(reply) => reply.and_then(|value| value.convert()).map_err(failed)?,
                    None => {
                        return Err(StoreError(
                            "the Redis session store did not answer a read".into(),
                        ))
                    }
                }
            } else {
                // One command: the record carries its own expiry.
                self.bounded("read a session", self.client.get(&k)).await?
            };
            let Some(value) = value else { return Ok(None) };
            if let Some(record) = decode_record(&value) {
                return record.map(Some);
            }
            if let Ok(record) = serde_json::from_str::<RedisRecord>(&value) {
                return Ok(Some(record.into_session()));
            }
            if let Ok(record) = serde_json::from_str::<RedisRecordV1>(&value) {
                return Ok(Some(StoredSession {
                    data: record.data,
                    expires_at: record.expires_at,
                }));
            }
            // A record written before the expiry was kept in it: its TTL tells.
            let data = serde_json::from_str(&value)
                .map_err(|e| StoreError(format!("a stored session does not parse: {e}")))?;
            let ttl: i64 = self
                .bounded("read a session's expiry", self.client.ttl(&k))
                .await?;
            Ok(Some(StoredSession {
                data,
                expires_at: now() + ttl.max(0),
            }))
        }

        /// Writes `session` under `id` (`options`: `NX` or `XX`), dropping this
        /// instance's copy of it before and after.
        async fn set(
            &self,
            id: &str,
            session: &StoredSession,
            options: SetOptions,
        ) -> Result<bool, StoreError> {
            self.copies.forget(id);
            let written = self.write(id, session, options).await;
            self.copies.forget(id);
            written
        }

        /// [`set`](Self::set) without the copies.
        async fn write(
            &self,
            id: &str,
            session: &StoredSession,
            options: SetOptions,
        ) -> Result<bool, StoreError> {
            let ttl = session.expires_at - now();
            if ttl <= 0 {
                return Ok(false);
            }
            let json = encode_record(session);
            let indexes = SignInRef::of(&session.data)
                .map(|r| r.indexes())
                .unwrap_or_default();
            if indexes.is_empty() {
                let written: Option<String> = self
                    .bounded(
                        "write a session",
                        self.client.set(
                            key(id),
                            json,
                            Some(Expiration::EX(ttl)),
                            Some(options),
                            false,
                        ),
                    )
                    .await?;
                return Ok(written.is_some());
            }
            // One round trip: the session and its sign-out indexes.
            let results: Vec<fred::types::Value> = self
                .bounded("write a session", async {
                    let pipe = self.client.pipeline();
                    let _: () = pipe
                        .set(
                            key(id),
                            json,
                            Some(Expiration::EX(ttl)),
                            Some(options),
                            false,
                        )
                        .await?;
                    for index in &indexes {
                        let _: () = pipe.sadd(index_key(index), id).await?;
                        let _: () = pipe.expire(index_key(index), ttl, None).await?;
                    }
                    pipe.all().await
                })
                .await?;
            Ok(results.first().is_some_and(|v| !v.is_null()))
        }
    }

    #[async_trait]
    impl SessionBackend for RedisBackend {
        async fn load(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
            Ok(self.load_shared(id).await?.map(Arc::unwrap_or_clone))
        }

        async fn load_shared(&self, id: &str) -> Result<Option<Arc<StoredSession>>, StoreError> {
            match self.copies.lookup(id, now()) {
                Lookup::Copy(record, ping) => {
                    if let Some(ping) = ping {
                        let (client, copies, timeout) =
                            (self.client.clone(), Arc::clone(&self.copies), self.timeout);
                        tokio::spawn(async move {
                            let answer = tokio::time::timeout(timeout, client.ping::<()>(None));
                            let answered = matches!(answer.await, Ok(Ok(())));
                            copies.pinged(ping, answered);
                        });
                    }
                    Ok(Some(record))
                }
                Lookup::Read(ticket) => self.read_tracked(id, ticket).await,
                Lookup::Plain => Ok(self.read(id, false).await?.map(Arc::new)),
            }
        }

        async fn create(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError> {
            self.set(id, session, SetOptions::NX).await
        }

        async fn save(&self, id: &str, session: &StoredSession) -> Result<bool, StoreError> {
            self.set(id, session, SetOptions::XX).await
        }

        async fn delete(&self, id: &str) -> Result<(), StoreError> {
            self.copies.forget(id);
            let deleted = self
                .bounded("delete a session", self.client.del::<i64, _>(key(id)))
                .await;
            self.copies.forget(id);
            deleted.map(drop)
        }

        async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
            self.bounded(
                "read a sign-out index",
                self.client.smembers(index_key(index)),
            )
            .await
        }

        async fn delete_index(&self, index: &str) -> Result<(), StoreError> {
            let _: i64 = self
                .bounded("delete a sign-out index", self.client.del(index_key(index)))
                .await?;
            Ok(())
        }

        async fn get_record(&self, key: &str) -> Result<Option<String>, StoreError> {
            self.bounded("read a record", self.client.get(record_key(key)))
                .await
        }

        async fn put_record(
            &self,
            key: &str,
            value: &str,
            ttl: Duration,
            only_if_absent: bool,
        ) -> Result<bool, StoreError> {
            let ms = i64::try_from(ttl.as_millis().max(1)).unwrap_or(i64::MAX);
            let written: Option<String> = self
                .bounded(
                    "write a record",
                    self.client.set(
                        record_key(key),
                        value,
                        Some(Expiration::PX(ms)),
                        only_if_absent.then_some(SetOptions::NX),
                        false,
                    ),
                )
                .await?;
            Ok(written.is_some())
        }

        async fn delete_record(&self, key: &str) -> Result<(), StoreError> {
            let _: i64 = self
                .bounded("delete a record", self.client.del(record_key(key)))
                .await?;
            Ok(())
        }
    }

    #[cfg(test)]
    mod record_tests {
        use super::*;

        fn session(pairs: &[(&str, &str)]) -> StoredSession {
            StoredSession {
                data: pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                expires_at: 1_733_333_333,
            }
        }

        #[test]
        fn records_round_trip_whatever_their_values_hold() {
            for pairs in [
                &[][..],
                &[("identity.user", r#"{"name":"Adèle 例","n":[1,2]}"#)][..],
                &[
                    ("a:b;c", "12:34;"),
                    ("", ""),
                    ("lines", "one\ntwo\r\n"),
                    ("digits", "3:abc"),
                    ("identity.tokens", &"x".repeat(5000)),
                ][..],
            ] {
                let s = session(pairs);
                let text = encode_record(&s);
                let head = format!("identity-session/3;1733333333;{};", pairs.len());
                assert!(text.starts_with(&head), "{text}");
                assert_eq!(decode_record(&text).unwrap().unwrap(), s);
            }
        }

        #[test]
        fn a_cut_or_altered_record_is_an_error_and_json_is_an_earlier_form() {
            let text = encode_record(&session(&[("k", "välue"), ("other", "v")]));
            for n in 1..text.len() - RECORD_PREFIX.len() {
                let Some(cut) = text.get(..text.len() - n) else {
                    continue;
                };
                assert!(matches!(decode_record(cut), Some(Err(_))), "{cut}");
            }
            // A length that ends inside a character.
            let inside = text.replacen("6:välue", "2:välue", 1);
            assert!(matches!(decode_record(&inside), Some(Err(_))), "{inside}");
            assert!(decode_record(r#"{"expires_at":1,"json":{}}"#).is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(secs: i64) -> StoredSession {
        StoredSession {
            data: HashMap::from([("k".to_owned(), "\"v\"".to_owned())]),
            expires_at: now() + secs,
        }
    }

    #[tokio::test]
    async fn a_deleted_session_is_not_brought_back_by_a_late_save() {
        let store = MemoryBackend::new();
        assert!(store.create("a", &session(60)).await.unwrap());
        assert!(
            !store.create("a", &session(60)).await.unwrap(),
            "ids are never reused"
        );
        let loaded_before_sign_out = store.load("a").await.unwrap().unwrap();
        store.delete("a").await.unwrap();
        // The request that loaded the session before the sign-out saves at its end.
        assert!(!store.save("a", &loaded_before_sign_out).await.unwrap());
        assert!(store.load("a").await.unwrap().is_none());
    }

    #[cfg(feature = "pages")]
    #[tokio::test]
    async fn a_record_memo_lives_as_long_as_its_record() {
        let store = MemoryBackend::new();
        store.create("a", &session(60)).await.unwrap();
        let parses = std::cell::Cell::new(0);
        let read = || {
            store.read_live("a", now(), |record, memo| {
                memo.get_or_init(|| {
                    parses.set(parses.get() + 1);
                    None
                });
                record.data.len()
            })
        };
        assert_eq!(read(), Some(1));
        assert_eq!(read(), Some(1));
        assert_eq!(parses.get(), 1, "parsed once per record");
        let mut changed = session(60);
        changed.data.insert("more".into(), "1".into());
        assert!(store.save("a", &changed).await.unwrap());
        assert_eq!(read(), Some(2), "the saved record");
        assert_eq!(parses.get(), 2, "a saved record is parsed anew");
        // An expired record is not read, and is removed.
        store.create("old", &session(-1)).await.unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.read_live("old", now(), |_, _| ()).is_none());
        assert_eq!(store.len(), 1);
        assert!(store.read_live("absent", now(), |_, _| ()).is_none());
    }

    #[tokio::test]
    async fn expired_sessions_are_removed_and_capacity_is_bounded() {
        let store = MemoryBackend::with_capacity(3);
        store.create("dead", &session(-1)).await.unwrap();
        assert!(store.load("dead").await.unwrap().is_none());
        assert!(!store.save("dead", &session(60)).await.unwrap());
        for i in 0..10 {
            store
                .create(&format!("s{i}"), &session(100 + i))
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 3);
        assert!(
            store.load("s9").await.unwrap().is_some(),
            "the newest sessions stay"
        );
    }

    #[test]
    fn a_read_session_is_touched_only_once_per_interval() {
        let policy = SessionPolicy {
            idle_timeout: Duration::from_secs(1000),
            ..SessionPolicy::default()
        };
        assert_eq!(policy.touch_interval(), Duration::from_secs(100));
        // Just written: nothing to do for the next 100 s of views.
        assert!(!policy.needs_touch(2000, 1000));
        assert!(!policy.needs_touch(2000, 1100));
        assert!(policy.needs_touch(2000, 1101));
        assert!(
            policy.needs_touch(0, 1000),
            "expired or odd values are touched"
        );
    }

    #[test]
    fn store_urls_parse_and_never_show_a_password() {
        assert_eq!(StoreUrl::parse("").unwrap(), StoreUrl::Memory);
        assert_eq!(StoreUrl::parse(" Memory ").unwrap(), StoreUrl::Memory);
        let u = StoreUrl::parse("rediss://user:hunter2@cache.example:6380/0").unwrap();
        let StoreUrl::Redis(r) = &u else { panic!() };
        assert!(r.tls());
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(!u.redacted().contains("hunter2"));
        assert!(u.redacted().contains("cache.example:6380"));
        for bad in [
            "postgres://:hunter2@x/db",
            "redis://:hunter2@",
            "redis//:hunter2@host",
            "rediss://:hunter2@[::1",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
            assert!(e.contains("SESSION_STORE"), "{e}");
        }
    }
}
