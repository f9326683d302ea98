//! The storage seam: the identity record of one browser session.
//!
//! identity-core knows no web framework and no session crate. Each adapter implements
//! [`SessionStore`] over its framework's session (tower-sessions, actix-session, the
//! Rocket adapter's own store). The record is kept under a few keys so that a signed-in
//! page view loads only the small user part, never the tokens:
//!
//! | key | content |
//! |---|---|
//! | [`KEY_USER`] | the signed-in user: a bounded set of ID-token claims and its expiry |
//! | [`KEY_TOKENS`] | refresh token, raw ID token (for sign-out), access tokens per scope set |
//! | [`KEY_PENDING`] | pending sign-ins keyed by `state` (several tabs; bounded; expire) |
//! | [`KEY_DEVICE`] | a pending device code sign-in |
//! | [`KEY_GROUPS`] | group ids resolved through Microsoft Graph after a group overage |
//! | [`KEY_SSO`] | the ID token's `iss`, `sid` and `sub`, for single sign-out |
//!
//! Values are JSON text: stores keep strings (cheap to copy when a store hands out a
//! record, and what Redis and actix-session hold anyway), and the core parses straight into
//! its typed parts. The record lives and dies with the session: clearing the session
//! clears it.

use async_trait::async_trait;

/// Session key of the signed-in user.
pub const KEY_USER: &str = "identity.user";
/// Session key of the tokens.
pub const KEY_TOKENS: &str = "identity.tokens";
/// Session key of the pending sign-ins.
pub const KEY_PENDING: &str = "identity.pending";
/// Session key of a pending device code sign-in.
pub const KEY_DEVICE: &str = "identity.device";
/// Session key of the time the sign-in completed (seconds since the epoch), for the
/// absolute session lifetime.
pub const KEY_SINCE: &str = "identity.since";
/// Session key of the consent-loop guard's record.
pub const KEY_CONSENT: &str = "identity.consent";
/// Session key of the group ids resolved after a group overage.
pub const KEY_GROUPS: &str = "identity.groups";
/// Session key of what single sign-out finds the session by: the ID token's `iss`, `sid`
/// and `sub` (see [`crate::sessions::SignInRef`]).
pub const KEY_SSO: &str = "identity.sso";
/// Every key the core writes; all start with `identity.`.
pub const KEYS: [&str; 8] = [
    KEY_USER,
    KEY_TOKENS,
    KEY_PENDING,
    KEY_DEVICE,
    KEY_SINCE,
    KEY_CONSENT,
    KEY_GROUPS,
    KEY_SSO,
];

/// A failure of the session backend, as a message (adapters map their own errors into it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The session of the current request, as identity-core needs it.
///
/// Implementations must be cheap to call repeatedly within one request (adapters usually
/// wrap a handle their framework already loaded).
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Reads a value (JSON text).
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes a value (JSON text).
    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError>;
    /// Removes a value.
    async fn remove(&self, key: &str) -> Result<(), StoreError>;
    /// Gives the session a new id, keeping its data (defeats session fixation). Called by
    /// the core right after a successful sign-in.
    async fn cycle_id(&self) -> Result<(), StoreError>;
    /// Ends the whole session (sign-out): the session is deleted from the store and its
    /// cookie removed. The default removes the identity keys only; adapters delete the
    /// session itself.
    async fn destroy(&self) -> Result<(), StoreError> {
        for key in KEYS {
            self.remove(key).await?;
        }
        Ok(())
    }
    /// The backend shared by every instance of the app, when this session lives in one
    /// the core may use: token refreshes of one session are then coordinated across
    /// instances (a lease and a shared result), so that a refresh token is redeemed once.
    /// `None` (the default): refreshes are single-flight within this process only.
    fn shared_backend(&self) -> Option<&dyn crate::sessions::SessionBackend> {
        None
    }
}

/// An in-memory [`SessionStore`] for one session: for tests, scripts and device-code apps.
#[derive(Debug, Default)]
pub struct MemorySession {
    inner: std::sync::Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    values: std::collections::HashMap<String, String>,
    cycles: u32,
}

impl MemorySession {
    /// An empty session.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times the id was cycled.
    pub fn cycles(&self) -> u32 {
        self.lock().cycles
    }

    /// Size in bytes of the JSON of every value (what a store would hold).
    pub fn serialized_len(&self) -> usize {
        self.lock()
            .values
            .values()
            .map(|v| v.to_string().len())
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemorySession {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().values.get(key).cloned())
    }
    async fn insert(&self, key: &str, value: String) -> Result<(), StoreError> {
        self.lock().values.insert(key.to_owned(), value);
        Ok(())
    }
    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.lock().values.remove(key);
        Ok(())
    }
    async fn cycle_id(&self) -> Result<(), StoreError> {
        self.lock().cycles += 1;
        Ok(())
    }
}
