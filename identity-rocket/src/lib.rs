//! # identity-rocket
//!
#![doc = include_str!("docs/guide.md")]

mod api;
mod auth;
mod fairing;
mod guards;
#[cfg(feature = "redis")]
mod redis;
mod response;
mod routes;
pub mod session;

pub use api::{ApiAccess, ApiCaller, ApiRejection, ApiRequirement};
pub use auth::Auth;
pub use fairing::{IdentityFairing, DEFAULT_SESSION_TTL, SESSION_SECRET_VAR, SETTINGS, TABLE};
pub use guards::{
    Authorized, IdentitySession, Rejection, RequiredScopes, Requirement, TokenFor, User,
};
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use response::{catchers, failure_response, IdentityResponse, CAUGHT_STATUSES};
pub use session::{MemoryStore, SessionBackend};

/// The core crate, re-exported.
pub use identity_core;
