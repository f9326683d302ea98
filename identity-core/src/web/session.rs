//! [`RequestSession`]: the identity record of one request — the adapter's server-side
//! session plus the sealed pending sign-in cookie.
//!
//! Why a cookie for pending sign-ins: one is created for every anonymous visit of a
//! protected page. In the server-side store that would create a session per anonymous
//! request (memory and Redis grow with a flood). In a sealed, HttpOnly, SameSite=Lax
//! cookie that lives as long as a sign-in may take, the server keeps nothing until a user
//! has signed in.

use super::cookies::{CookiePolicy, PendingSeal};
use crate::sessions::SessionBackend;
use crate::store::{SessionStore, StoreError, KEY_DEVICE, KEY_PENDING, KEY_TOKENS};
use async_trait::async_trait;
use std::sync::Mutex;

/// Session values sealed at rest (AES-256-GCM, keyed from `SESSION_SECRET`, the key name
/// bound into the seal): the tokens (refresh, access, ID token) and a pending device code.
/// Whoever reads the store (a backup, a replica) sees no token.
pub const SEALED_KEYS: [&str; 2] = [KEY_TOKENS, KEY_DEVICE];

#[derive(Default)]
struct PendingSlot {
    /// The pending sign-ins as JSON text; `None`: not read yet.
    value: Option<Option<String>>,
    changed: bool,
}

/// The identity record of one request, as the core's operations see it: every key but
/// the pending sign-ins goes to the adapter's session; the pending sign-ins go to a
/// sealed cookie, whose change [`set_cookies`](RequestSession::set_cookies) gives back.
pub struct RequestSession<'a> {
    store: &'a dyn SessionStore,
    policy: &'a CookiePolicy,
    seal: &'a PendingSeal,
    record_seal: &'a PendingSeal,
    incoming: Option<String>,
    pending: Mutex<PendingSlot>,
    backend: Option<&'a dyn SessionBackend>,
}

impl std::fmt::Debug for RequestSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSession")
            .field("pending_cookie", &self.incoming.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> RequestSession<'a> {
    pub(crate) fn new(
        store: &'a dyn SessionStore,
        policy: &'a CookiePolicy,
        seal: &'a PendingSeal,
        record_seal: &'a PendingSeal,
        incoming: Option<String>,
    ) -> Self {
        RequestSession {
            store,
            policy,
            seal,
            record_seal,
            incoming,
            pending: Mutex::default(),
            backend: None,
        }
    }

    /// The shared backend behind the adapter's session (see
    /// [`SessionStore::shared_backend`]).
    pub(crate) fn with_backend(mut self, backend: Option<&'a dyn SessionBackend>) -> Self {
        self.backend = backend;
        self
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, PendingSlot> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The adapter's session.
    pub fn store(&self) -> &'a dyn SessionStore {
        self.store
    }

    /// The `Set-Cookie` values this request must send: the pending sign-in cookie, when it
    /// changed (sealed anew, or removed).
    pub fn set_cookies(&self) -> Vec<String> {
        let slot = self.slot();
        if !slot.changed {
            return Vec::new();
        }
        let name = self.policy.pending_name();
        let value = slot.value.clone().flatten();
        match value.and_then(|v| self.seal.seal_json(name, v)) {
            Some(sealed) => {
                vec![self
                    .policy
                    .set_cookie(name, &sealed, Some(self.policy.pending_ttl()))]
            }
            None if self.incoming.is_some() => {
                vec![self
                    .policy
                    .set_cookie(name, "", Some(std::time::Duration::ZERO))]
            }
            None => Vec::new(),
        }
    }
}

#[async_trait]
impl SessionStore for RequestSession<'_> {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        if key == KEY_PENDING {
            let mut slot = self.slot();
            if slot.value.is_none() {
                let opened = self
                    .incoming
                    .as_deref()
                    .and_then(|raw| self.seal.open_json(self.policy.pending_name(), raw));
                slot.value = Some(opened);
            }
            return Ok(slot.value.clone().flatten());
        }
        let value = self.store.get(key).await?;
        if !SEALED_KEYS.contains(&key) {
            return Ok(value);
        }
        Ok(value.and_then(|v| {
            // Records written before sealing was introduced hold plain JSON objects; a
            // sealed value is a JSON string (the store seam carries JSON text).
            if v.starts_with('{') {
                return Some(v);
            }
            let sealed: String = serde_json::from_str(&v).ok()?;
            let opened = self.record_seal.open_text(key, &sealed);
            if opened.is_none() {
                tracing::warn!(
                    key,
                    "a sealed part of the session does not open (SESSION_SECRET changed \
                     without SESSION_SECRET_PREVIOUS, or the store was tampered with); \
                     ignoring it"
                );
            }
            opened
        }))
    }

    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError> {
        if key == KEY_PENDING {
            let mut slot = self.slot();
            slot.value = Some(Some(value));
            slot.changed = true;
            return Ok(());
        }
        if SEALED_KEYS.contains(&key) {
            let sealed = self
                .record_seal
                .seal_text(key, &value)
                .ok_or_else(|| StoreError("cannot seal a session value".into()))?;
            let text = serde_json::to_string(&sealed).map_err(|e| StoreError(e.to_string()))?;
            return self.store.insert(key, text).await;
        }
        self.store.insert(key, value).await
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
        self.store.remove(key).await
    }

    async fn cycle_id(&self) -> Result<(), StoreError> {
        self.store.cycle_id().await
    }

    async fn destroy(&self) -> Result<(), StoreError> {
        self.store.destroy().await
    }

    fn shared_backend(&self) -> Option<&dyn SessionBackend> {
        self.backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemorySession;

    #[tokio::test]
    async fn tokens_are_sealed_at_rest_and_open_after_a_secret_rotation() {
        let store = MemorySession::new();
        let policy = CookiePolicy::new(true, std::time::Duration::from_secs(600));
        let pending = PendingSeal::new(&[1; 64]);
        let old = PendingSeal::new(&[2; 64]);
        let tokens = r#"{"refresh_token":"0.AAAA-secret-refresh","access":{}}"#;
        let session = RequestSession::new(&store, &policy, &pending, &old, None);
        session.insert(KEY_TOKENS, tokens.to_owned()).await.unwrap();
        let raw = store.get(KEY_TOKENS).await.unwrap().unwrap();
        assert!(
            !raw.contains("secret-refresh") && !raw.contains("refresh_token"),
            "{raw}"
        );
        assert_eq!(
            session.get(KEY_TOKENS).await.unwrap().as_deref(),
            Some(tokens)
        );

        // The secret rotates: the old one is listed as previous.
        let rotated = PendingSeal::with_previous(&[3; 64], &[[2; 64]]);
        let session = RequestSession::new(&store, &policy, &pending, &rotated, None);
        assert_eq!(
            session.get(KEY_TOKENS).await.unwrap().as_deref(),
            Some(tokens)
        );
        // An unknown secret, or a tampered value, opens nothing.
        let other = PendingSeal::new(&[4; 64]);
        let session = RequestSession::new(&store, &policy, &pending, &other, None);
        assert_eq!(session.get(KEY_TOKENS).await.unwrap(), None);
        store
            .insert(KEY_TOKENS, format!("{}x\"", &raw[..raw.len() - 2]))
            .await
            .unwrap();
        let session = RequestSession::new(&store, &policy, &pending, &rotated, None);
        assert_eq!(session.get(KEY_TOKENS).await.unwrap(), None);
    }
}
