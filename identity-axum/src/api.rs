//! Web APIs: [`ApiAuth`] (the API's handle and its layer), the [`ApiCaller`] and
//! [`ApiAccess`] extractors, and [`ApiRejection`].
//!
//! Failures answer as an API should, never with HTML: `401` with
//! `WWW-Authenticate: Bearer error="invalid_token", ...` for a missing or invalid token,
//! `403` with `error="insufficient_scope"` for a missing scope or role, `503` when the
//! provider cannot be reached, `500` when the API is not configured, each with an
//! RFC 7807 problem JSON body (`application/problem+json`).

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use identity_core::web_api::{bearer_token, default_audiences, ApiError};
use identity_core::{Caller, Error, Identity, IdentityConfig, Scopes, TokenForUser};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The environment variable listing the accepted audiences (comma or space separated).
pub const API_AUDIENCE_VAR: &str = "API_AUDIENCE";

/// The handle of a web API: the core [`Identity`] and the `aud` values its bearer tokens
/// must carry. Built once, cloned freely (it is an `Arc`); [`ApiAuth::layer`] hands it to
/// the [`ApiCaller`] and [`ApiAccess`] extractors.
///
/// An API needs no redirect URI, no session and no cookie key, so it does not need an
/// [`Auth`](crate::Auth); a web app that also serves an API adds both layers
/// ([`ApiAuth::for_auth`]).
///
/// An `ApiAuth` may be *unconfigured* ([`ApiAuth::unconfigured`], or
/// [`ApiAuth::from_env`] when settings are missing): its layer then answers every request
/// with HTTP 500 and a problem JSON naming the missing settings.
#[derive(Clone)]
pub struct ApiAuth {
    inner: Arc<ApiInner>,
}

struct ApiInner {
    mode: ApiMode,
    audiences: Vec<String>,
}

enum ApiMode {
    Configured(Identity),
    Unconfigured(Error),
}

impl fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ApiAuth");
        match &self.inner.mode {
            ApiMode::Configured(identity) => d.field("identity", identity),
            ApiMode::Unconfigured(error) => d.field("unconfigured", error),
        };
        d.field("audiences", &self.inner.audiences).finish()
    }
}

/// Splits a list of audiences on commas and white space.
fn split_audiences(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl ApiAuth {
    /// An `ApiAuth` accepting the default audiences (see [`ApiAuthBuilder::audiences`]).
    pub fn new(identity: Identity) -> ApiAuth {
        Self::builder(identity).build()
    }

    /// Starts building an `ApiAuth` with options.
    pub fn builder(identity: Identity) -> ApiAuthBuilder {
        ApiAuthBuilder {
            identity,
            audiences: None,
        }
    }

    /// Reads the configuration from the environment: [`IdentityConfig::from_env`]
    /// (`CLIENT_ID`, `CLIENT_SECRET`, `AUTHORITY` / `OIDC_AUTHORITY` / `B2C_*`, with
    /// `SSL_CERT_FILE` and `IDENTITY_RESOLVE` for the HTTP client) and `API_AUDIENCE`.
    /// `REDIRECT_URI` is ignored: an API signs nobody in. When settings are missing or
    /// wrong, the result is unconfigured (see [`ApiAuth::unconfigured`]); it never fails.
    pub fn from_env() -> ApiAuth {
        let built = IdentityConfig::from_env()
            .map(|config| config.with_redirect_uri(None::<String>))
            .and_then(Identity::new);
        match built {
            Ok(identity) => Self::new(identity),
            Err(error) => Self::unconfigured(error),
        }
    }

    /// The `ApiAuth` of a web app that also serves an API: the same [`Identity`] as
    /// `auth` (unconfigured when `auth` is), default audiences.
    pub fn for_auth(auth: &crate::Auth) -> ApiAuth {
        match (auth.identity(), auth.configuration_error()) {
            (Some(identity), _) => Self::new(identity.clone()),
            (None, Some(error)) => Self::unconfigured(error.clone()),
            (None, None) => Self::unconfigured(Error::config("the app is not configured")),
        }
    }

    /// An `ApiAuth` whose layer answers every request with HTTP 500 and a problem JSON
    /// built from `error` (for [`Error::Config`], its `missing` settings are listed).
    pub fn unconfigured(error: Error) -> ApiAuth {
        tracing::error!(error = %error, "the web API is not configured; every request answers 500");
        ApiAuth {
            inner: Arc::new(ApiInner {
                mode: ApiMode::Unconfigured(error),
                audiences: Vec::new(),
            }),
        }
    }

    /// The core handle, unless this `ApiAuth` is unconfigured.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.inner.mode {
            ApiMode::Configured(identity) => Some(identity),
            ApiMode::Unconfigured(_) => None,
        }
    }

    /// Why this `ApiAuth` is unconfigured, if it is.
    pub fn configuration_error(&self) -> Option<&Error> {
        match &self.inner.mode {
            ApiMode::Configured(_) => None,
            ApiMode::Unconfigured(error) => Some(error),
        }
    }

    /// The `aud` values a bearer token must carry (one of them).
    pub fn audiences(&self) -> &[String] {
        &self.inner.audiences
    }

    /// A layer that makes this `ApiAuth` available to [`ApiCaller`] and [`ApiAccess`] on
    /// every route it wraps. When the `ApiAuth` is unconfigured it answers every request
    /// with the 500 problem JSON instead.
    pub fn layer(&self) -> ApiAuthLayer {
        ApiAuthLayer { api: self.clone() }
    }

    fn configured(&self) -> Result<&Identity, ApiRejection> {
        match &self.inner.mode {
            ApiMode::Configured(identity) => Ok(identity),
            ApiMode::Unconfigured(error) => Err(ApiRejection::NotConfigured(error.clone())),
        }
    }

    /// Validates the value of an `Authorization` header (what the extractors do), for code
    /// outside handlers (middleware, WebSocket upgrades).
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<ApiCaller, ApiRejection> {
        let identity = self.configured()?;
        let token = bearer_token(authorization)?;
        let caller = identity
            .validate_access_token(token, &self.inner.audiences)
            .await?;
        Ok(ApiCaller {
            caller,
            token: token.to_owned(),
            api: self.clone(),
        })
    }

    /// A token for `scopes` of a downstream API, on behalf of `caller` (the OAuth 2.0
    /// on-behalf-of exchange of its bearer token); cached per caller and scopes by the
    /// core. When the user must come back to the provider (consent for the downstream
    /// scopes, MFA, conditional access), the rejection is `401` with
    /// `WWW-Authenticate: Bearer error="interaction_required", scope="…"` (or
    /// `error="insufficient_claims", claims="…"` with the provider's claims challenge),
    /// which the calling client acts on by getting a new token interactively.
    pub async fn on_behalf_of(
        &self,
        caller: &ApiCaller,
        scopes: &Scopes,
    ) -> Result<TokenForUser, ApiRejection> {
        let identity = self.configured()?;
        match identity
            .acquire_token_on_behalf_of(&caller.caller, &caller.token, scopes)
            .await
        {
            Ok(token) => Ok(token),
            Err(error @ Error::Config { .. }) => Err(ApiRejection::NotConfigured(error)),
            Err(error) => {
                let api_error = ApiError::from_obo(error);
                if let ApiError::Unavailable(why) = &api_error {
                    tracing::warn!(%why, scopes = %scopes, "on-behalf-of exchange failed");
                }
                Err(ApiRejection::Api(api_error))
            }
        }
    }
}

/// Options of an [`ApiAuth`]; from [`ApiAuth::builder`].
#[must_use]
#[derive(Debug)]
pub struct ApiAuthBuilder {
    identity: Identity,
    audiences: Option<Vec<String>>,
}

impl ApiAuthBuilder {
    /// The `aud` values a bearer token must carry (one of them). Default: `API_AUDIENCE`
    /// (comma or space separated) when set, else the client id and `api://{client id}`
    /// ([`default_audiences`]).
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = Some(audiences.into_iter().map(Into::into).collect());
        self
    }

    /// Builds the `ApiAuth`.
    pub fn build(self) -> ApiAuth {
        let audiences = match self.audiences {
            Some(a) if !a.is_empty() => a,
            _ => match std::env::var(API_AUDIENCE_VAR).map(|v| split_audiences(&v)) {
                Ok(a) if !a.is_empty() => a,
                _ => default_audiences(self.identity.config().client_id.as_str()),
            },
        };
        tracing::info!(audiences = ?audiences, "web API accepts bearer tokens for these audiences");
        ApiAuth {
            inner: Arc::new(ApiInner {
                mode: ApiMode::Configured(self.identity),
                audiences,
            }),
        }
    }
}

/// The layer of [`ApiAuth::layer`].
#[derive(Clone, Debug)]
pub struct ApiAuthLayer {
    api: ApiAuth,
}

impl<S> tower::Layer<S> for ApiAuthLayer {
    type Service = ApiAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiAuthService {
            inner,
            api: self.api.clone(),
        }
    }
}

/// The service of [`ApiAuthLayer`]: puts the [`ApiAuth`] in the request extensions.
#[derive(Clone, Debug)]
pub struct ApiAuthService<S> {
    inner: S,
    api: ApiAuth,
}

impl<S, B> tower::Service<Request<B>> for ApiAuthService<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(error) = self.api.configuration_error() {
            let res = ApiRejection::NotConfigured(error.clone()).into_response();
            return futures_util::future::Either::Left(std::future::ready(Ok(res)));
        }
        req.extensions_mut().insert(self.api.clone());
        futures_util::future::Either::Right(self.inner.call(req))
    }
}

/// Why a web-API extractor (or a check in a handler) refused a request. Answers with
/// problem JSON and, for `401`/`403`, `WWW-Authenticate`; never HTML.
///
/// Return it from a handler with `?` (handlers returning `Result<_, ApiRejection>`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ApiRejection {
    /// The token is missing or invalid, lacks a scope or role, the downstream API needs
    /// the user back at the provider, or the provider is unreachable: the core's
    /// [`ApiError`] with its status (401, 403, 503).
    Api(ApiError),
    /// The API is not configured: HTTP 500 naming the missing settings.
    NotConfigured(Error),
    /// [`ApiAuth::layer`] is missing around the route: HTTP 500 with the fix.
    MissingLayer,
}

static MISSING_LAYER_LOGGED: AtomicBool = AtomicBool::new(false);
const MISSING_LAYER_TEXT: &str = "identity-axum's web-API extractors need the ApiAuth layer \
    around this route: add `.layer(api.layer())` (with `let api = ApiAuth::from_env();` or \
    `ApiAuth::new(identity)`) to the Router, after the routes";

impl ApiRejection {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiRejection::Api(e) => {
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiRejection::NotConfigured(_) | ApiRejection::MissingLayer => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The core's API error, for the variants that carry one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ApiRejection::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` value of the answer (RFC 6750), if any.
    pub fn www_authenticate(&self) -> Option<String> {
        self.api_error().and_then(ApiError::www_authenticate)
    }

    /// The RFC 7807 body of the answer.
    pub fn problem_json(&self) -> Value {
        match self {
            ApiRejection::Api(e) => e.problem_json(),
            ApiRejection::NotConfigured(error) => {
                let (detail, missing) = match error {
                    Error::Config { message, missing } => (message.clone(), missing.clone()),
                    other => (other.to_string(), Vec::new()),
                };
                json!({
                    "type": "urn:identity-rs:problem:not_configured",
                    "title": "The API is not configured",
                    "status": 500,
                    "detail": detail,
                    "missing": missing,
                })
            }
            ApiRejection::MissingLayer => json!({
                "type": "urn:identity-rs:problem:missing_layer",
                "title": "The API is not set up correctly",
                "status": 500,
                "detail": MISSING_LAYER_TEXT,
            }),
        }
    }

    fn missing_layer() -> Self {
        if !MISSING_LAYER_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::error!("{MISSING_LAYER_TEXT}");
        }
        ApiRejection::MissingLayer
    }
}

impl fmt::Display for ApiRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiRejection::Api(e) => e.fmt(f),
            ApiRejection::NotConfigured(e) => e.fmt(f),
            ApiRejection::MissingLayer => f.write_str(MISSING_LAYER_TEXT),
        }
    }
}

impl std::error::Error for ApiRejection {}

impl From<ApiError> for ApiRejection {
    fn from(error: ApiError) -> Self {
        ApiRejection::Api(error)
    }
}

impl IntoResponse for ApiRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiRejection::Api(e) if status.is_server_error() => {
                tracing::warn!(error = %e, "web API request failed")
            }
            ApiRejection::Api(e) => tracing::info!(error = %e, %status, "bearer token refused"),
            ApiRejection::NotConfigured(_) | ApiRejection::MissingLayer => {}
        }
        let mut res = (status, self.problem_json().to_string()).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self
            .www_authenticate()
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, challenge);
        }
        res
    }
}

/// The caller of a web API: the request carries `Authorization: Bearer <token>` with an
/// access token the provider signed for this API (signature, issuer, audience and
/// lifetime checked; audiences from [`ApiAuth::audiences`]). Dereferences to the core's
/// [`Caller`] (`oid()`, `tid()`, `scopes()`, `roles()`, `is_app_only()` ...).
///
/// It needs [`ApiAuth::layer`] around the route (not the session layer). Otherwise the
/// answer is `401` (missing or invalid token), `503` (provider unreachable) or `500`
/// (no layer, unconfigured), as problem JSON. `Option<ApiCaller>` is `None` when the
/// request has no `Authorization` header, and still refuses an invalid token.
///
/// ```
/// use axum::{routing::get, Json, Router};
/// use identity_axum::{ApiCaller, ApiRejection};
/// use identity_axum::identity_core::Scopes;
///
/// async fn me(caller: ApiCaller) -> Result<Json<serde_json::Value>, ApiRejection> {
///     caller.require_scopes(&["access_as_user"])?; // else 403 insufficient_scope
///     // A token for Microsoft Graph, on behalf of the caller.
///     let graph = caller.on_behalf_of(&Scopes::parse("User.Read")).await?;
///     # let _ = graph;
///     Ok(Json(serde_json::json!({ "oid": caller.oid() })))
/// }
/// # let _ = Router::<()>::new().route("/api/me", get(me));
/// ```
#[derive(Clone)]
pub struct ApiCaller {
    caller: Caller,
    token: String,
    api: ApiAuth,
}

impl fmt::Debug for ApiCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCaller")
            .field("caller", &self.caller)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl Deref for ApiCaller {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl ApiCaller {
    /// The core's caller (the validated claims).
    pub fn into_inner(self) -> Caller {
        self.caller
    }

    /// The bearer token the request carried (already validated). Keep it out of logs.
    pub fn bearer_token(&self) -> &str {
        &self.token
    }

    /// The [`ApiAuth`] that validated it.
    pub fn api(&self) -> &ApiAuth {
        &self.api
    }

    /// Requires every scope in `scopes` (delegated tokens; app-only tokens carry none);
    /// else the 403 `insufficient_scope` answer.
    pub fn require_scopes(&self, scopes: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.caller.require_scopes(scopes)?)
    }

    /// Requires one of the app `roles`; else the 403 answer.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.caller.require_any_role(roles)?)
    }

    /// A token for `scopes` of a downstream API on behalf of this caller; see
    /// [`ApiAuth::on_behalf_of`].
    pub async fn on_behalf_of(&self, scopes: &Scopes) -> Result<TokenForUser, ApiRejection> {
        self.api.on_behalf_of(self, scopes).await
    }
}

fn authorization(parts: &Parts) -> Result<Option<&str>, ApiRejection> {
    match parts.headers.get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiRejection::Api(ApiError::MissingToken)),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ApiCaller {
    type Rejection = ApiRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let api = parts
            .extensions
            .get::<ApiAuth>()
            .cloned()
            .ok_or_else(ApiRejection::missing_layer)?;
        api.authenticate(authorization(parts)?).await
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ApiCaller {
    type Rejection = ApiRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if parts.headers.get(header::AUTHORIZATION).is_none() {
            return Ok(None);
        }
        <ApiCaller as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// What an [`ApiAccess`] extractor requires: every delegated scope of `SCOPES` (tokens
/// issued for a user), or one of `APP_ROLES` (app-only tokens, and user tokens carrying
/// app roles). Both empty: any valid token.
///
/// ```
/// use axum::{routing::get, Router};
/// use identity_axum::{ApiAccess, ApiRequirement};
///
/// struct ReadData;
/// impl ApiRequirement for ReadData {
///     const SCOPES: &'static [&'static str] = &["access_as_user"];
///     const APP_ROLES: &'static [&'static str] = &["Data.Read.All"];
/// }
///
/// async fn data(caller: ApiAccess<ReadData>) -> String {
///     format!("data for {:?}", caller.client_id())
/// }
/// # let _ = Router::<()>::new().route("/api/data", get(data));
/// ```
pub trait ApiRequirement: Send + Sync + 'static {
    /// Delegated scopes that are all required.
    const SCOPES: &'static [&'static str] = &[];
    /// App roles of which one suffices.
    const APP_ROLES: &'static [&'static str] = &[];
}

/// An [`ApiCaller`] whose token meets `R`; otherwise `403` with
/// `WWW-Authenticate: Bearer error="insufficient_scope"` (or the [`ApiCaller`] answers).
pub struct ApiAccess<R: ApiRequirement> {
    /// The caller.
    pub caller: ApiCaller,
    requirement: PhantomData<fn() -> R>,
}

impl<R: ApiRequirement> Deref for ApiAccess<R> {
    type Target = ApiCaller;
    fn deref(&self) -> &ApiCaller {
        &self.caller
    }
}

impl<R: ApiRequirement> fmt::Debug for ApiAccess<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiAccess")
            .field("scopes", &R::SCOPES)
            .field("app_roles", &R::APP_ROLES)
            .field("caller", &self.caller)
            .finish()
    }
}

/// Whether `caller` meets the requirement, as the error to answer if not. App-only
/// tokens are judged by their roles; user tokens by their scopes, a role standing in.
pub(crate) fn meets(caller: &Caller, scopes: &[&str], roles: &[&str]) -> Result<(), ApiError> {
    match (scopes.is_empty(), roles.is_empty()) {
        (true, true) => Ok(()),
        (true, false) => caller.require_any_role(roles),
        (false, true) => caller.require_scopes(scopes),
        (false, false) if caller.is_app_only() => caller.require_any_role(roles),
        (false, false) => caller
            .require_scopes(scopes)
            .or_else(|scope_error| caller.require_any_role(roles).map_err(|_| scope_error)),
    }
}

impl<S: Send + Sync, R: ApiRequirement> FromRequestParts<S> for ApiAccess<R> {
    type Rejection = ApiRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = <ApiCaller as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        meets(&caller, R::SCOPES, R::APP_ROLES)?;
        Ok(ApiAccess {
            caller,
            requirement: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(claims: Value) -> Caller {
        Caller {
            claims: claims.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn audiences_split_on_commas_and_spaces() {
        assert_eq!(
            split_audiences(" a, b  c,,"),
            vec!["a".to_owned(), "b".into(), "c".into()]
        );
        assert!(split_audiences(" , ").is_empty());
    }

    #[test]
    fn requirements() {
        let user = caller(json!({ "scp": "access_as_user" }));
        let app = caller(json!({ "roles": ["Data.Read.All"] }));
        let both = (&["access_as_user"][..], &["Data.Read.All"][..]);
        assert!(meets(&user, both.0, both.1).is_ok());
        assert!(meets(&app, both.0, both.1).is_ok());
        assert!(meets(&user, &[], both.1).is_err());
        assert!(meets(&app, both.0, &[]).is_err());
        assert!(meets(&user, &["Mail.Read"], both.1)
            .is_err_and(|e| matches!(e, ApiError::InsufficientScope { .. })));
        assert!(meets(&app, &[], &[]).is_ok());
    }

    #[test]
    fn rejections_are_problem_json() {
        let r = ApiRejection::NotConfigured(Error::Config {
            message: "missing settings: CLIENT_ID".into(),
            missing: vec!["CLIENT_ID".into()],
        });
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.problem_json()["missing"], json!(["CLIENT_ID"]));
        assert!(r.www_authenticate().is_none());
        let res = ApiRejection::Api(ApiError::MissingToken).into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(res.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }
}
