//! # identity-core
//!
//! The framework-agnostic core of identity-rs: sign users in to a web app with
//! Microsoft Entra ID, Entra External ID (including custom domains), Azure AD B2C, or any
//! OpenID Connect provider, and get tokens to call web APIs.
//!
//! Web frameworks are served by thin adapters (`identity-axum`, `identity-actix`,
//! `identity-rocket`) that implement [`SessionStore`] over their sessions and map
//! [`Error`]s to [`pages`]. This crate compiles without any of them.
//!
//! ## The flow
//!
//! The operations keep the Python `identity` library's names:
//!
//! | operation | what it does |
//! |---|---|
//! | [`Identity::log_in`] | starts a sign-in (auth code + PKCE S256, state, nonce); returns the provider URL |
//! | [`Identity::complete_log_in`] | redeems the callback: state lookup, code redemption, full ID-token validation, granted-scope check, session id cycled |
//! | [`Identity::get_user`] | the signed-in user (no token parsing on this path); renews an expired ID token |
//! | [`Identity::get_token_for_user`] | an access token: cache, else refresh (single-flight), else [`Error::InteractionRequired`] |
//! | [`Identity::log_out`] | clears the record; returns the end-session URL |
//! | [`Identity::get_token_for_client`] | app-only token (client credentials), cached process-wide |
//! | [`Identity::user_groups`], [`Identity::is_member_of`] | group ids and group checks, resolving a group overage through Microsoft Graph (see `groups` below) |
//!
//! ```no_run
//! use identity_core::{Authority, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes};
//!
//! # async fn demo() -> Result<(), identity_core::Error> {
//! let authority = Authority::parse("https://login.microsoftonline.com/contoso.onmicrosoft.com")?;
//! let identity = Identity::new(
//!     IdentityConfig::new("00001111-aaaa-2222-bbbb-3333cccc4444", authority)
//!         .with_client_secret("...")
//!         .with_redirect_uri(Some("http://localhost:5000/getAToken")),
//! )?;
//! // An adapter gives you the request's session; MemorySession stands in for it here.
//! let session = MemorySession::new();
//! let start = identity.log_in(&session, LogInOptions::default()).await?;
//! println!("send the browser to {}", start.auth_uri);
//! // ... the provider redirects back to the redirect URI with ?code=...&state=...
//! # let callback_params: Vec<(&str, &str)> = vec![];
//! let signed_in = identity.complete_log_in(&session, callback_params).await?;
//! println!("hello {:?}", signed_in.user.name());
//! let token = identity.get_token_for_user(&session, &Scopes::parse("User.Read")).await?;
//! # let _ = token;
//! # Ok(()) }
//! ```
//!
//! ## What is validated
//!
//! Every ID token: signature against the provider's JWKS (only asymmetric algorithms the
//! provider advertises; `none` and HMAC are refused), `iss` by the Entra-aware
//! [`IssuerPolicy`](issuer::IssuerPolicy) (the error names the rule that failed), `aud`
//! equal to the client id (`azp` when several audiences), `exp`/`nbf`/`iat` with a clock
//! skew of at most 5 minutes (default 120 s), and the sign-in's `nonce`. Refreshed ID
//! tokens carry no nonce; they must name the same user.
//!
//! ## Limits and deployment caveats
//!
//! * **Redirect URI and proxies.** The redirect URI is configured, never derived from the
//!   `Host` header. Behind a reverse proxy, configure the public URL.
//! * **Several instances.** Pending sign-ins live in the session: instances behind one
//!   load balancer must share the session store and its secret, or a callback that lands
//!   on another instance fails with [`Error::UnknownState`] (whose message says so).
//! * **SameSite.** The session cookie must be `SameSite=Lax`: `Strict` drops it on the
//!   provider's redirect back.
//! * **Single-flight refresh** holds within one process. Two instances refreshing the
//!   same session at the same instant both succeed at Entra (old refresh tokens stay
//!   valid there); the session keeps the last one written.
//! * **Provider down.** A signed-in user keeps working on the claims validated at
//!   sign-in while renewal fails for a transport reason; a refused refresh token signs the
//!   user out locally.

pub mod authority;
pub mod challenge;
pub mod config;
pub mod credential;
mod der;
pub mod error;
pub mod federated;
mod flow;
pub mod groups;
pub mod http;
pub mod issuer;
mod jwt;
pub mod metadata;
pub mod pages;
pub mod provider_error;
pub mod record;
pub mod routes;
pub mod scopes;
pub mod sessions;
pub mod store;
pub mod token_response;
pub mod types;
pub mod web;
pub mod web_api;

pub use authority::{Authority, AuthorityKind};
pub use challenge::ClaimsChallenge;
pub use config::{B2cUserFlows, IdentityConfig};
pub use credential::{AssertionProvider, Certificate, ClientCredential, SecretAuthMethod};
pub use error::{Error, FetchFailure, TokenRejection};
pub use flow::{safe_next_link, Identity, LogInOptions, LogInStart, LoggedIn, TokenForUser};
pub use http::{HttpClient, Timeouts};
pub use jwt::MAX_CLOCK_SKEW;
pub use pages::{ConfigPage, DefaultPages, ErrorPage, LoginPage, Pages};
pub use provider_error::ProviderError;
pub use record::{Purpose, User};
pub use routes::{derive_key, RoutePlan};
pub use scopes::Scopes;
pub use store::{MemorySession, SessionStore, StoreError};
pub use web::{WebAuth, WebRequest, WebResponse};
pub use web_api::{bearer_token, ApiError, Caller};
