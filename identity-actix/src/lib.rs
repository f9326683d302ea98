#![doc = include_str!("docs/guide.md")]

mod api;
mod auth;
mod bridge;
mod error;
mod extract;
mod middleware;
mod routes;
mod store;

pub use api::{ApiAccess, ApiCaller, ApiRejection, ApiRequirement};
pub use auth::{Auth, AuthBuilder, SESSION_SECRET_VAR};
pub use error::AuthError;
pub use extract::{Group, HasRole, IdentitySession, InGroup, Role, ScopeSet, Token, User};
pub use middleware::{
    IdentityMiddleware, IdentityService, PENDING_COOKIE, PENDING_COOKIE_SECURE, SESSION_COOKIE,
};
pub use store::{MemoryStore, SessionBackend};

/// The core crate, re-exported so that apps need one dependency.
pub use identity_core;
