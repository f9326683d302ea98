//! The core's [`SessionStore`] over one request's actix-session and pending-sign-in cookie.
//!
//! actix-session's `Session` is `Rc`-based and the core's store must be `Send + Sync`, so
//! an operation runs against a snapshot: the `identity.*` entries of the session are
//! copied in (as raw JSON, parsed only when read), the operation runs, and the changed
//! keys are written back. `identity.pending` never touches the session: it lives in the
//! encrypted cookie of [`RequestCtx`](crate::middleware::RequestCtx), so an anonymous
//! visitor who is sent to sign in gets no server-side session.

use crate::middleware::RequestCtx;
use actix_session::Session;
use async_trait::async_trait;
use identity_core::store::{StoreError, KEY_PENDING};
use identity_core::SessionStore;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries of the session that belong to the identity record.
const PREFIX: &str = "identity.";

/// A snapshot of one request's identity record.
pub(crate) struct Bridge {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Raw JSON strings read from the session.
    raw: HashMap<String, String>,
    /// JSON text written or removed by the operation (`None`: removed).
    overlay: HashMap<String, Option<String>>,
    pending: Option<Value>,
    pending_changed: bool,
    cycled: bool,
}

impl Bridge {
    /// Copies the identity entries of `session` and the pending sign-ins of `ctx`.
    pub(crate) fn load(session: &Session, ctx: &RequestCtx) -> Self {
        let raw = session
            .entries()
            .iter()
            .filter(|(k, _)| k.starts_with(PREFIX) && k.as_str() != KEY_PENDING)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self {
            state: Mutex::new(State {
                raw,
                pending: ctx.pending(),
                ..State::default()
            }),
        }
    }

    /// Writes what the operation changed back into `session` and `ctx`; renews the
    /// session id if the core cycled it.
    pub(crate) fn write_back(&self, session: &Session, ctx: &RequestCtx) -> Result<(), StoreError> {
        let mut state = self.lock();
        for (key, value) in state.overlay.drain() {
            match value {
                Some(text) => {
                    // actix-session serialises what it is given: hand it the value, not
                    // the text, so the entry holds the JSON itself.
                    let v: Value = serde_json::from_str(&text)
                        .map_err(|e| StoreError(format!("session entry {key} is not JSON: {e}")))?;
                    session
                        .insert(key, v)
                        .map_err(|e| StoreError(e.to_string()))?
                }
                None => {
                    // `Session::remove` marks the session changed even for an absent key,
                    // which would save an empty session for an anonymous visitor.
                    if session.contains_key(&key) {
                        session.remove(&key);
                    }
                }
            }
        }
        if state.pending_changed {
            ctx.set_pending(state.pending.take());
            state.pending_changed = false;
        }
        if std::mem::take(&mut state.cycled) {
            session.renew();
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SessionStore for Bridge {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let state = self.lock();
        if key == KEY_PENDING {
            return Ok(state.pending.as_ref().map(Value::to_string));
        }
        if let Some(v) = state.overlay.get(key) {
            return Ok(v.clone());
        }
        Ok(state.raw.get(key).cloned())
    }

    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError> {
        let mut state = self.lock();
        if key == KEY_PENDING {
            let value: Value =
                serde_json::from_str(&value).map_err(|e| StoreError(e.to_string()))?;
            state.pending = Some(value);
            state.pending_changed = true;
        } else {
            state.overlay.insert(key.to_owned(), Some(value));
        }
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        if key == KEY_PENDING {
            if state.pending.is_some() {
                state.pending = None;
                state.pending_changed = true;
            }
        } else if state.raw.contains_key(key) || state.overlay.contains_key(key) {
            state.overlay.insert(key.to_owned(), None);
        }
        Ok(())
    }

    async fn cycle_id(&self) -> Result<(), StoreError> {
        self.lock().cycled = true;
        Ok(())
    }
}
