//! The web sign-in engine: every rule of a browser sign-in, once, without a web
//! framework (feature `pages`, on by default: the engine answers with pages).
//!
//! Adapters (`identity-axum`, `identity-actix`, `identity-rocket`) translate their
//! framework's request into a [`WebRequest`] (the path and query, the `Cookie` and
//! `Accept` headers), hand [`WebAuth`] their session as a [`SessionStore`](crate::SessionStore),
//! and copy the [`WebResponse`] it decides (status, headers, body) into their response.
//! They hold no rule of their own. What lives here:
//!
//! | rule | where |
//! |---|---|
//! | the sign-in routes (callback, login, logout, edit profile) and the home page, from the redirect URI | [`WebAuth::handle`], [`RoutePlan`](crate::RoutePlan) |
//! | pending sign-ins in a sealed cookie: name (`__Host-` over https), budget, lifetime, several tabs | [`cookies`], [`RequestSession`] |
//! | the session cookie: name, flags, idle and absolute lifetime, id cycled at sign-in | [`CookiePolicy`], [`SessionPolicy`](crate::sessions::SessionPolicy) |
//! | the login-required answer (login page, redirect, or JSON 401 for `fetch` callers) | [`WebAuth::require_user`], [`SignInAnswer`] |
//! | tokens for APIs, incremental consent, claims challenges, the consent-loop guard | [`WebAuth::token_for`], [`WebAuth::challenge`] |
//! | single sign-out: front- and back-channel logout, found through the shared store | `…/frontchannel_logout`, `…/backchannel_logout` ([`Route`]), [`crate::sessions::end_sign_ins`] |
//! | role and group checks | [`WebAuth::require_role`], [`WebAuth::require_group`] |
//! | the unconfigured state and its page | [`WebAuth::from_env`], [`WebAuth::not_configured_response`] |
//! | errors as pages: provider errors escaped, an unreachable session store as 503 | [`WebAuth::error_response`] |
//! | web APIs: audiences, scopes against app roles, on-behalf-of | [`api`] |
//! | session stores: memory (bounded, deletions final), Redis (TLS, timeouts), `SESSION_STORE` | [`crate::sessions`] |
//!
//! ## Deployment caveats
//!
//! Behind a TLS-terminating proxy the app listens on http while the browser sees https:
//! the cookie flags follow the configured `REDIRECT_URI`, never the connection, so set it
//! to the public https URL and the cookies are `Secure` with the `__Host-` prefix. See
//! `docs/deployment.md` for proxies, several instances and Redis.

pub mod api;
pub mod cookies;
mod direct;
mod engine;
pub mod logout;
mod response;
mod session;

pub use api::{ApiAuth, ApiAuthBuilder, ApiCaller, ApiRejection, API_AUDIENCE_VAR};
pub use cookies::{find_cookie, CookiePolicy, PendingSeal};
pub use direct::{BackendUser, SessionIdText};
pub use engine::{
    missing_setup_page, Route, SignInAnswer, WebAuth, WebAuthBuilder, WebRequest,
    CONSENT_GUARD_MAX, CONSENT_GUARD_WINDOW, SESSION_SECRET_PREVIOUS_VAR, SESSION_SECRET_VAR,
};
pub use logout::FRAMEABLE;
pub use response::{Outcome, WebResponse};
pub use session::{RequestSession, SEALED_KEYS};
