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
//! tokens carry no nonce; they must name the same user. An ID token without `sub` or `iat`
//! is refused (OpenID Connect Core §2).
//!
//! ## Against a hostile or broken provider
//!
//! Decisions that hold whatever the provider (or whatever answers in its place) sends:
//!
//! * **Discovery issuer.** With a generic OpenID Connect authority (`OIDC_AUTHORITY`) the
//!   discovery document's `issuer` must be the configured issuer (a terminating `/` aside),
//!   else every operation fails with an error naming both. Entra's `{tenantid}` template
//!   and the documented External ID custom URL domain form (`https://login.contoso.com/{tid}/v2.0`
//!   publishing `https://{tid}.ciamlogin.com/{tid}/v2.0`) keep their own rules; see
//!   [`issuer::check_discovery_issuer`].
//! * **RFC 9207.** An authorization response's `iss`, when present, must be the expected
//!   issuer ([`Error::CallbackIssuer`]); when the metadata promises `iss`
//!   (`authorization_response_iss_parameter_supported`), it must be present.
//! * **Retired signing keys** are trusted for [`metadata::DEFAULT_RETIRED_KEY_GRACE`]
//!   (5 minutes, [`metadata::MetadataConfig::retired_key_grace`]) after the first JWKS
//!   fetch that no longer lists them, then dropped.
//! * **Body size caps.** Discovery documents and JWKS are read up to 256 KiB, token
//!   responses up to 1 MiB, API responses fetched with [`HttpClient::get_with_bearer`]
//!   (userinfo, Graph) up to 4 MiB; beyond that the read stops and the call fails with
//!   [`FetchFailure::TooLarge`] (see [`http`]).
//! * **Backoff.** Requests waiting on a failing discovery or JWKS fetch share its error; a
//!   single failure is retried by the next request; after two in a row fetches wait 1 s,
//!   doubling up to 30 s, and the last good document keeps being served meanwhile (see
//!   [`metadata`]). A failed refresh (provider down, refresh token refused) is remembered
//!   for [`IdentityConfig::renewal_backoff`] (30 s): the session's page views keep the
//!   stale user without calling the provider again.
//! * **Numbers.** Lifetimes above ten years and times after the year 9999 in token
//!   responses are refused with an error naming the member; expiry arithmetic saturates
//!   everywhere, so nothing a provider sends can panic or wrap around.
//! * **Web APIs** accept only access tokens: ID tokens (`nonce`, `at_hash`/`c_hash`, no
//!   `scp` nor `roles`, or on Entra no `azp`/`appid`) are refused. App-only is decided as
//!   Microsoft.Identity.Web does: `idtyp` = `app` when the token has `idtyp`, else `roles`
//!   without `scp` ([`Caller::is_app_only`]). v1.0 access tokens are validated with the
//!   v1.0 issuer rules against the same keys. Refusals tell the caller the kind of failure
//!   only, never the accepted audiences or tenants ([`TokenRejection::public_description`]);
//!   the details are logged. See [`web_api`].
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
//! * **Single-flight refresh.** Within one process, every request of a session that needs
//!   a refresh (renewing the user, or any access token) waits for the one redeeming the
//!   session's refresh token, then uses its result; a request that needs other scopes
//!   continues with the new refresh token. Results are merged into the record, never
//!   written over it: the newest refresh token wins, each access token keeps its scopes.
//!   A finished refresh is remembered for two minutes, so a request that loaded the
//!   session before it (or a copy of the record written back late by a whole-record
//!   session store) uses the result instead of redeeming the old refresh token again,
//!   which providers that rotate refresh tokens answer by revoking the grant.
//!   Across instances sharing a session backend (the web engine gives the request's
//!   session its backend, [`SessionStore::shared_backend`]), a lease in the store elects
//!   one instance to redeem the refresh token; it leaves the sealed result there for the
//!   others, so a refresh token is redeemed once per cluster. On-behalf-of exchanges are
//!   single-flight per incoming token and scopes within one process.
//! * **Single sign-out.** [`Identity::validate_logout_token`] checks back-channel logout
//!   tokens; the web engine's front- and back-channel routes end the named sessions
//!   through the session store's sign-out index ([`sessions::end_sign_ins`]).
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
pub mod token_cache;
pub mod token_response;
pub mod types;
#[cfg(feature = "pages")]
pub mod web;
pub mod web_api;

pub use authority::{Authority, AuthorityKind};
pub use challenge::ClaimsChallenge;
pub use config::{B2cUserFlows, IdentityConfig};
pub use credential::{AssertionProvider, Certificate, ClientCredential, SecretAuthMethod};
pub use error::{Error, FetchFailure, TokenRejection};
pub use flow::{
    safe_next_link, DevicePoll, Identity, LogInOptions, LogInStart, LoggedIn, LogoutToken,
    TokenForUser, BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_MAX_AGE,
};
pub use http::{HttpClient, Timeouts};
pub use jwt::MAX_CLOCK_SKEW;
pub use pages::{ConfigPage, DefaultPages, ErrorPage, LoginPage, Pages};
pub use provider_error::ProviderError;
pub use record::{Purpose, User};
pub use routes::{derive_key, RoutePlan};
pub use scopes::Scopes;
pub use store::{MemorySession, SessionStore, StoreError};
pub use token_cache::AccessTokenCacheStats;
#[cfg(feature = "pages")]
pub use web::{WebAuth, WebRequest, WebResponse};
pub use web_api::{bearer_token, ApiError, Caller};
