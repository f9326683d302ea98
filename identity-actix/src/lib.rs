#![doc = include_str!("docs/guide.md")]

mod api;
mod auth;
mod extract;
mod middleware;
mod rejection;
mod session;

pub use api::{ApiAccess, ApiCaller, ApiRejection, ApiRequirement};
pub use auth::{Auth, AuthBuilder};
pub use extract::{Group, HasRole, IdentitySession, InGroup, Role, ScopeSet, Token, User};
pub use identity_core::sessions::{MemoryBackend, SessionBackend, StoreUrl};
pub use identity_core::web::{ApiAuth, Outcome, SignInAnswer, WebResponse};
pub use middleware::IdentityMiddleware;
pub use rejection::AuthRejection;
pub use session::BackendStore;

/// The core crate, re-exported so that apps need one dependency.
pub use identity_core;
