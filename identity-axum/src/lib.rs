#![doc = include_str!("docs/guide.md")]

mod api;
mod auth;
mod extract;
mod rejection;
mod seam;
pub mod sessions;

pub use api::{
    ApiAccess, ApiAuth, ApiAuthBuilder, ApiAuthLayer, ApiAuthService, ApiCaller, ApiRequirement,
};
pub use api::{ApiRejection, API_AUDIENCE_VAR};
pub use auth::{
    Auth, AuthBuilder, AuthLayer, AuthService, IdentityLayer, IdentityService, LoginRequired,
    LoginRequiredLayer, SESSION_SECRET_VAR,
};
pub use extract::{Group, HasRole, IdentitySession, InGroup, Role, ScopeSet, Token, User};
pub use rejection::AuthRejection;
pub use sessions::{SessionBackendStore, SessionSettings};

/// The core crate, re-exported so that apps use the same version.
pub use identity_core;
/// tower-sessions, re-exported so that apps use the version this crate was built with.
pub use tower_sessions;
