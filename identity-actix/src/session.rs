//! The two session seams: [`BackendStore`] (actix-session's store over the core's
//! [`SessionBackend`]) and `Bridge` (the core's [`SessionStore`] over one request's
//! actix-session `Session`).

use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore as ActixStore, UpdateError,
};
use actix_session::Session;
use actix_web::cookie::time::Duration as CookieDuration;
use async_trait::async_trait;
use identity_core::sessions::{SessionBackend, SessionPolicy, StoredSession};
use identity_core::store::{StoreError, KEYS};
use identity_core::SessionStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// actix-session's [`SessionStore`](ActixStore) over a core [`SessionBackend`]
/// ([`MemoryBackend`](identity_core::sessions::MemoryBackend), Redis, or yours), which
/// [`Auth::middleware`](crate::Auth::middleware) plugs in for you.
///
/// A session is created only under a fresh key, and an update never re-creates a session
/// that was deleted in the meantime: a request still in flight when the user signed out
/// cannot bring the session back when it saves at its end (its cookie then opens an empty
/// session).
///
/// A session that is only read costs one store read: its expiry is pushed (one write)
/// only when [`SessionPolicy::needs_touch`] says so, at most once per touch interval.
#[derive(Clone, Debug)]
pub struct BackendStore(pub Arc<dyn SessionBackend>, pub SessionPolicy);

fn expiry(ttl: &CookieDuration) -> i64 {
    let now = actix_web::cookie::time::OffsetDateTime::now_utc();
    now.checked_add(*ttl)
        .map_or(i64::MAX, |t| t.unix_timestamp())
}

fn failed(e: StoreError) -> anyhow::Error {
    anyhow::Error::msg(format!("the session store failed: {e}"))
}

impl ActixStore for BackendStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let stored = self.0.load(key.as_ref()).await;
        let Some(mut stored) = stored.map_err(|e| LoadError::Other(failed(e)))? else {
            return Ok(None);
        };
        let now = actix_web::cookie::time::OffsetDateTime::now_utc().unix_timestamp();
        if self.1.needs_touch(stored.expires_at, now) {
            // The idle-timeout touch (the cookie is a browser-session cookie: nothing to
            // renew there). `save` still refuses a session deleted in between.
            let idle = i64::try_from(self.1.idle_timeout.as_secs()).unwrap_or(i64::MAX / 4);
            stored.expires_at = now.saturating_add(idle);
            self.0
                .save(key.as_ref(), &stored)
                .await
                .map_err(|e| LoadError::Other(failed(e)))?;
        }
        Ok(Some(stored.data))
    }

    async fn save(
        &self,
        data: HashMap<String, String>,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        let session = StoredSession {
            data,
            expires_at: expiry(ttl),
        };
        // A taken key (64 random characters: never in practice) is not overwritten.
        let key = generate_session_key();
        match self.0.create(key.as_ref(), &session).await {
            Ok(true) => Ok(key),
            Ok(false) => Err(SaveError::Other(anyhow::Error::msg("session key taken"))),
            Err(e) => Err(SaveError::Other(failed(e))),
        }
    }

    async fn update(
        &self,
        key: SessionKey,
        data: HashMap<String, String>,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let session = StoredSession {
            data,
            expires_at: expiry(ttl),
        };
        let saved = self.0.save(key.as_ref(), &session).await;
        if !saved.map_err(|e| UpdateError::Other(failed(e)))? {
            tracing::info!("the session was deleted while this request ran; not re-creating it");
        }
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &CookieDuration) -> anyhow::Result<()> {
        // The backend has no "touch": read and write back with the new expiry (`save`
        // still refuses a session deleted in between).
        if let Some(mut session) = self.0.load(key.as_ref()).await.map_err(failed)? {
            session.expires_at = expiry(ttl);
            self.0.save(key.as_ref(), &session).await.map_err(failed)?;
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        self.0.delete(key.as_ref()).await.map_err(failed)
    }
}

/// One request's identity record for the core. actix-session's `Session` is `Rc`-based
/// while the core's store is `Send + Sync`, so an engine call runs on a copy of the
/// `identity.*` entries, written back when it returns.
pub(crate) struct Bridge(Mutex<State>);

#[derive(Default)]
struct State {
    values: HashMap<String, String>,
    /// Written (`Some`) or removed (`None`) by the engine.
    changed: HashMap<String, Option<String>>,
    cycled: bool,
    destroyed: bool,
}

impl Bridge {
    pub(crate) fn load(session: &Session) -> Bridge {
        let values = session
            .entries()
            .iter()
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Bridge(Mutex::new(State {
            values,
            ..State::default()
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the engine's writes to `session`.
    pub(crate) fn write_back(&self, session: &Session) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.destroyed {
            session.purge();
            return Ok(());
        }
        for (key, value) in state.changed.drain() {
            match value {
                // actix-session stores the JSON text of what it is given: the raw value
                // keeps the core's text as it is.
                Some(text) => {
                    let raw = serde_json::value::RawValue::from_string(text)
                        .map_err(|e| StoreError(format!("{key} is not JSON: {e}")))?;
                    session
                        .insert(key, raw)
                        .map_err(|e| StoreError(e.to_string()))?;
                }
                // `remove` marks the session changed even for an absent key, which would
                // store an empty session for an anonymous visitor.
                None if session.contains_key(&key) => drop(session.remove(&key)),
                None => {}
            }
        }
        if std::mem::take(&mut state.cycled) {
            session.renew();
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for Bridge {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let state = self.lock();
        match state.changed.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(state.values.get(key).cloned()),
        }
    }

    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError> {
        self.lock().changed.insert(key.to_owned(), Some(value));
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.lock().changed.insert(key.to_owned(), None);
        Ok(())
    }

    async fn cycle_id(&self) -> Result<(), StoreError> {
        self.lock().cycled = true;
        Ok(())
    }

    async fn destroy(&self) -> Result<(), StoreError> {
        *self.lock() = State {
            destroyed: true,
            ..State::default()
        };
        Ok(())
    }
}
