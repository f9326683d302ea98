//! # identity-rocket
//!
#![doc = include_str!("docs/guide.md")]

mod api;
mod auth;
mod fairing;
mod guards;
mod response;
mod routes;
mod session;

pub use api::{ApiAccess, ApiCaller, ApiRejection, ApiRequirement};
pub use auth::{Auth, AuthBuilder};
pub use fairing::{IdentityFairing, SETTINGS, TABLE};
pub use guards::{Group, HasRole, IdentitySession, InGroup, Role, ScopeSet, Token, User};
pub use identity_core::web::ApiAuth;
pub use response::{catchers, failure_response, AuthRejection, CAUGHT_STATUSES};

/// The core crate, re-exported.
pub use identity_core;
