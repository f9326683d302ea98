//! [`RequestSession`]: the identity record of one request — the adapter's server-side
//! session plus the sealed pending sign-in cookie.
//!
//! Why a cookie for pending sign-ins: one is created for every anonymous visit of a
//! protected page. In the server-side store that would create a session per anonymous
//! request (memory and Redis grow with a flood). In a sealed, HttpOnly, SameSite=Lax
//! cookie that lives as long as a sign-in may take, the server keeps nothing until a user
//! has signed in.

use super::cookies::{CookiePolicy, PendingSeal};
use crate::store::{SessionStore, StoreError, KEY_PENDING, KEY_USER};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Mutex;

#[derive(Default)]
struct PendingSlot {
    /// `None`: not read yet.
    value: Option<Option<Value>>,
    changed: bool,
}

/// The identity record of one request, as the core's operations see it: every key but
/// the pending sign-ins goes to the adapter's session; the pending sign-ins go to a
/// sealed cookie, whose change [`set_cookies`](RequestSession::set_cookies) gives back.
pub struct RequestSession<'a> {
    store: &'a dyn SessionStore,
    policy: &'a CookiePolicy,
    seal: &'a PendingSeal,
    incoming: Option<String>,
    pending: Mutex<PendingSlot>,
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
        incoming: Option<String>,
    ) -> Self {
        RequestSession {
            store,
            policy,
            seal,
            incoming,
            pending: Mutex::default(),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, PendingSlot> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The adapter's session.
    pub fn store(&self) -> &'a dyn SessionStore {
        self.store
    }

    /// Whether the session holds a signed-in user (one lookup; no token work).
    pub async fn is_signed_in(&self) -> Result<bool, StoreError> {
        Ok(self.store.get(KEY_USER).await?.is_some())
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
        match value.and_then(|v| self.seal.seal(name, v)) {
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
                    .and_then(|raw| self.seal.open(self.policy.pending_name(), raw));
                slot.value = Some(opened);
            }
            return Ok(slot.value.clone().flatten().map(|v| v.to_string()));
        }
        self.store.get(key).await
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
}
