//! Sessions over tower-sessions, stored in identity-core's session backends (memory or
//! Redis, chosen by `SESSION_STORE`) with the engine's cookie policy.

use crate::auth::Auth;
use async_trait::async_trait;
use identity_core::sessions::{
    SessionBackend, SessionPolicy, StoreUrl, StoredSession, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_MEMORY_CAPACITY,
};
use identity_core::Error;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer};

pub use identity_core::sessions::SESSION_STORE_VAR;

/// A tower-sessions store over an identity-core [`SessionBackend`]: a deleted session is
/// never brought back by a late save, every Redis command is bounded, and the memory
/// store is bounded (see [`identity_core::sessions`]).
#[derive(Clone, Debug)]
pub struct SessionBackendStore(Arc<dyn SessionBackend>);

impl SessionBackendStore {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn SessionBackend>) -> Self {
        SessionBackendStore(backend)
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn SessionBackend> {
        &self.0
    }
}

fn backend_error(e: identity_core::StoreError) -> session_store::Error {
    session_store::Error::Backend(e.0)
}

/// The loaded session's expiry (seconds since the epoch), which [`SessionBackendStore`]
/// puts in the record it loads and never stores: tower-sessions does not show a loaded
/// record's expiry otherwise. A reserved key.
pub const EXPIRES_AT_KEY: &str = "identity.expires_at";

/// The idle-timeout touch, after the handler ran: a session whose expiry is due
/// ([`SessionPolicy::needs_touch`]) is marked modified, so tower-sessions saves it with a
/// fresh expiry and renews the cookie's `Max-Age`; any other read-only request writes
/// nothing. Also drops [`EXPIRES_AT_KEY`] from a session that is saved anyway, so that a
/// session emptied by the handler stays empty.
///
/// Only sessions the identity extractors or routes used this request are touched: a
/// route that never read the session costs no session load for the touch.
pub(crate) async fn touch_if_due(session: &tower_sessions::Session, policy: &SessionPolicy) {
    let Ok(Some(value)) = session.get_value(EXPIRES_AT_KEY).await else {
        return;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let due = value.as_i64().is_none_or(|e| policy.needs_touch(e, now));
    if due || session.is_modified() {
        let _ = session.remove_value(EXPIRES_AT_KEY).await;
    }
}

/// Set in a request's extensions by the auth layer; marked when an identity extractor or
/// route uses the session, so that the idle-timeout touch loads nothing otherwise. When
/// the user was read straight from an in-process backend's record, it also keeps that
/// record's expiry, so the touch decides without loading the session either.
#[derive(Clone, Debug, Default)]
pub(crate) struct SessionUsed(std::sync::Arc<UsedState>);

#[derive(Debug, Default)]
struct UsedState {
    used: std::sync::atomic::AtomicBool,
    /// The user came from the stored record directly.
    direct: std::sync::atomic::AtomicBool,
    /// That record's idle-timeout touch was due.
    touch_due: std::sync::atomic::AtomicBool,
}

impl SessionUsed {
    pub(crate) fn mark(&self) {
        self.0
            .used
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn marked(&self) -> bool {
        self.0.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The user came from the stored record, whose touch was due or not.
    pub(crate) fn read_directly(&self, touch_due: bool) {
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.0.touch_due.store(touch_due, relaxed);
        self.0.direct.store(true, relaxed);
    }
}

/// After the handler: the idle-timeout touch for a session the request used
/// ([`touch_if_due`]); a session whose user was read directly and that nothing changed is
/// decided from that read, without loading it through tower-sessions.
pub(crate) async fn after_use(
    session: &tower_sessions::Session,
    used: &SessionUsed,
    policy: &SessionPolicy,
) {
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    if used.0.direct.load(relaxed) && !used.0.touch_due.load(relaxed) && !session.is_modified() {
        return;
    }
    touch_if_due(session, policy).await;
}

/// The identity record's keys. The seam stores each part as a string holding JSON text
/// (`Value::String`), which is kept as that text itself: a load hands the stored string
/// over without a JSON pass over it (the sealed tokens are kilobytes), and a save does
/// not escape it. Other keys hold any JSON value, stored as its JSON text.
const IDENTITY_PREFIX: &str = "identity.";

fn to_stored(record: &Record) -> StoredSession {
    StoredSession {
        data: record
            .data
            .iter()
            .filter(|(k, _)| k.as_str() != EXPIRES_AT_KEY)
            .map(|(k, v)| {
                let text = match v {
                    Value::String(json) if k.starts_with(IDENTITY_PREFIX) => json.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        expires_at: record.expiry_date.unix_timestamp(),
    }
}

/// The value of `key` as the session record holds it, from its stored text.
fn from_stored(key: &str, text: String) -> Value {
    // A part of the identity record written as a JSON string of its JSON text (the
    // stored form before the text itself was kept) starts with `"{`, `"["` or `"\"`;
    // the text itself never does (an object, array, number, or a sealed string).
    let double_encoded = ["\"{", "\"[", "\"\\\""].iter().any(|p| text.starts_with(p));
    if key.starts_with(IDENTITY_PREFIX) && !double_encoded {
        return Value::String(text);
    }
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[async_trait]
impl SessionStore for SessionBackendStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        while !self
            .0
            .create(&record.id.to_string(), &to_stored(record))
            .await
            .map_err(backend_error)?
        {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        // `false`: the session was deleted (signed out) meanwhile; it stays deleted.
        self.0
            .save(&record.id.to_string(), &to_stored(record))
            .await
            .map(|_| ())
            .map_err(backend_error)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let stored = identity_core::sessions::load_in_request(&*self.0, &id.to_string())
            .await
            .map_err(backend_error)?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let expires_at = stored.expires_at;
        // A remote store's record is ours alone: its values move instead of being copied.
        let values = Arc::try_unwrap(stored).map_or_else(|shared| shared.data.clone(), |s| s.data);
        let mut data: std::collections::HashMap<String, Value> = values
            .into_iter()
            .map(|(k, v)| {
                let value = from_stored(&k, v);
                (k, value)
            })
            .collect();
        data.insert(EXPIRES_AT_KEY.to_owned(), Value::from(expires_at));
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(expires_at)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.0.delete(&id.to_string()).await.map_err(backend_error)
    }
}

/// How the session layer is built: the store (`SESSION_STORE`), the cookie name and
/// flags and the idle lifetime (from the [`Auth`]'s engine).
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// The store.
    pub store: StoreUrl,
    /// Most sessions the memory store holds.
    pub memory_capacity: usize,
    /// Bound of each Redis command (and of connecting).
    pub command_timeout: Duration,
    auth: Auth,
}

impl SessionSettings {
    /// Memory store, cookie policy and lifetimes from the [`Auth`].
    pub fn for_auth(auth: &Auth) -> SessionSettings {
        SessionSettings {
            store: StoreUrl::Memory,
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            auth: auth.clone(),
        }
    }

    /// Like [`for_auth`](Self::for_auth) with the store from `SESSION_STORE`.
    pub fn from_env(auth: &Auth) -> Result<SessionSettings, Error> {
        Ok(SessionSettings {
            store: StoreUrl::from_env()?,
            ..Self::for_auth(auth)
        })
    }

    /// Uses `store`.
    #[must_use]
    pub fn with_store(mut self, store: StoreUrl) -> Self {
        self.store = store;
        self
    }

    /// Opens the store (connecting to Redis within the command timeout) and builds the
    /// layer.
    pub async fn layer(&self) -> Result<SessionManagerLayer<SessionBackendStore>, Error> {
        let backend = self
            .store
            .open(self.memory_capacity, self.command_timeout)
            .await?;
        // The engine ends sessions of logout notifications and coordinates refreshes in it.
        self.auth.core().use_session_backend(backend.clone());
        Ok(self.layer_with(SessionBackendStore::new(backend)))
    }

    /// The layer over any tower-sessions store, with the engine's cookie policy: name
    /// (`__Host-identity` over https), `HttpOnly`, `SameSite=Lax`, `Secure` over https,
    /// `Path=/`, and the idle lifetime.
    pub fn layer_with<S: SessionStore + Clone>(&self, store: S) -> SessionManagerLayer<S> {
        let core = self.auth.core();
        let cookies = core.cookies();
        let idle = core.session_policy().idle_timeout;
        let seconds = i64::try_from(idle.as_secs()).unwrap_or(i64::MAX);
        SessionManagerLayer::new(store)
            .with_name(cookies.session_name().to_owned())
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(cookies.secure())
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(time::Duration::seconds(seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[(&str, Value)]) -> Record {
        Record {
            id: Id::default(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            expiry_date: time::OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap(),
        }
    }

    #[test]
    fn identity_parts_are_stored_as_their_json_text_and_read_back_unchanged() {
        let user = r#"{"expires_at":1,"claims":{"name":"Adele \"A\" Vance"}}"#;
        let sealed = "\"v1.AbC-_dEf\"";
        let r = record(&[
            ("identity.user", Value::String(user.into())),
            ("identity.tokens", Value::String(sealed.into())),
            ("identity.since", Value::String("1700000000".into())),
            ("app.count", Value::from(3)),
            ("app.note", Value::String("hi".into())),
        ]);
        let stored = to_stored(&r);
        // The JSON text itself: the contract of `StoredSession` (and what the sign-out
        // index reads), with no second encoding.
        assert_eq!(stored.data["identity.user"], user);
        assert_eq!(stored.data["identity.tokens"], sealed);
        assert_eq!(stored.data["app.count"], "3");
        assert_eq!(stored.data["app.note"], "\"hi\"");
        for (k, v) in &r.data {
            let text = stored.data[k].clone();
            assert_eq!(&from_stored(k, text), v, "{k}");
        }
    }

    #[test]
    fn identity_parts_stored_as_json_strings_of_their_text_still_read() {
        let user = r#"{"expires_at":1}"#;
        let sealed = "\"v1.AbC\"";
        for (key, text) in [("identity.user", user), ("identity.tokens", sealed)] {
            let double = Value::String(text.into()).to_string();
            assert_eq!(from_stored(key, double), Value::String(text.into()));
        }
    }
}
