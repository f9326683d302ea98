//! Web APIs: [`ApiAuth`] and its layer, the [`ApiCaller`] and [`ApiAccess`] extractors,
//! and [`ApiRejection`]. The rules (audiences, scopes against app roles, on-behalf-of,
//! the answers) are identity-core's ([`identity_core::web::api`]).

use crate::rejection::respond;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use identity_core::web::api as core;
use identity_core::{ApiError, Error, Identity, Scopes, TokenForUser};
use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::task::{Context, Poll};

pub use identity_core::web::api::API_AUDIENCE_VAR;

/// The handle of a web API ([`identity_core::web::ApiAuth`], through `Deref`) with the
/// layer that hands it to the [`ApiCaller`] and [`ApiAccess`] extractors.
#[derive(Clone, Debug)]
pub struct ApiAuth(core::ApiAuth);

impl Deref for ApiAuth {
    type Target = core::ApiAuth;
    fn deref(&self) -> &core::ApiAuth {
        &self.0
    }
}

impl From<core::ApiAuth> for ApiAuth {
    fn from(api: core::ApiAuth) -> Self {
        ApiAuth(api)
    }
}

impl ApiAuth {
    /// An API accepting the default audiences (`API_AUDIENCE`, else the client id and
    /// `api://{client id}`).
    pub fn new(identity: Identity) -> ApiAuth {
        ApiAuth(core::ApiAuth::new(identity))
    }

    /// Starts building an API handle with options.
    pub fn builder(identity: Identity) -> ApiAuthBuilder {
        ApiAuthBuilder(core::ApiAuth::builder(identity))
    }

    /// From the environment; unconfigured (every request answers 500) when settings are
    /// missing.
    pub fn from_env() -> ApiAuth {
        ApiAuth(core::ApiAuth::from_env())
    }

    /// An API for the web app's own [`Auth`](crate::Auth) (a web app that also serves an
    /// API).
    pub fn for_auth(auth: &crate::Auth) -> ApiAuth {
        match (auth.identity(), auth.configuration_error()) {
            (Some(identity), _) => Self::new(identity.clone()),
            (None, Some(error)) => Self::unconfigured(error.clone()),
            (None, None) => Self::unconfigured(Error::config("the app is not configured")),
        }
    }

    /// An API answering every request with 500 and the configuration problem.
    pub fn unconfigured(error: Error) -> ApiAuth {
        ApiAuth(core::ApiAuth::unconfigured(error))
    }

    /// The layer that makes this API handle available to the extractors.
    pub fn layer(&self) -> ApiAuthLayer {
        ApiAuthLayer { api: self.clone() }
    }
}

/// Options of an [`ApiAuth`] ([`core::ApiAuthBuilder`]); from [`ApiAuth::builder`].
#[must_use]
#[derive(Debug)]
pub struct ApiAuthBuilder(core::ApiAuthBuilder);

impl ApiAuthBuilder {
    /// The accepted `aud` values (default: `API_AUDIENCE`, else the client id and
    /// `api://{client id}`).
    pub fn audiences<I, S>(self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ApiAuthBuilder(self.0.audiences(audiences))
    }

    /// Builds the handle.
    pub fn build(self) -> ApiAuth {
        ApiAuth(self.0.build())
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

/// The service of [`ApiAuthLayer`].
#[derive(Clone, Debug)]
pub struct ApiAuthService<S> {
    inner: S,
    api: ApiAuth,
}

impl<S> tower::Service<Request> for ApiAuthService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if let Some(error) = self.api.configuration_error() {
            let res = ApiRejection(core::ApiRejection::NotConfigured(error.clone()));
            return futures_util::future::Either::Left(std::future::ready(Ok(res.into_response())));
        }
        req.extensions_mut().insert(self.api.clone());
        futures_util::future::Either::Right(self.inner.call(req))
    }
}

/// Why a web API extractor did not run the handler ([`core::ApiRejection`], through
/// `Deref`): problem JSON with the status and `WWW-Authenticate` challenge it owes.
#[derive(Clone, Debug)]
pub struct ApiRejection(pub core::ApiRejection);

impl Deref for ApiRejection {
    type Target = core::ApiRejection;
    fn deref(&self) -> &core::ApiRejection {
        &self.0
    }
}

impl fmt::Display for ApiRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ApiRejection {}

impl From<core::ApiRejection> for ApiRejection {
    fn from(r: core::ApiRejection) -> Self {
        ApiRejection(r)
    }
}

impl From<ApiError> for ApiRejection {
    fn from(e: ApiError) -> Self {
        ApiRejection(core::ApiRejection::Api(e))
    }
}

impl IntoResponse for ApiRejection {
    fn into_response(self) -> Response {
        respond(self.0.to_response())
    }
}

const MISSING_LAYER: &str = "identity-axum's web-API extractors need the ApiAuth layer around \
    this route: add `.layer(api.layer())` (with `let api = ApiAuth::from_env();`) to the \
    Router, after the routes";

/// The authenticated caller of a web API ([`core::ApiCaller`], through `Deref`): claims,
/// bearer token, and [`on_behalf_of`](core::ApiCaller::on_behalf_of).
#[derive(Clone, Debug)]
pub struct ApiCaller(core::ApiCaller);

impl Deref for ApiCaller {
    type Target = core::ApiCaller;
    fn deref(&self) -> &core::ApiCaller {
        &self.0
    }
}

impl ApiCaller {
    /// The core's caller.
    pub fn into_inner(self) -> core::ApiCaller {
        self.0
    }

    /// Requires every delegated scope in `scopes`; else 403.
    pub fn require_scopes(&self, scopes: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.0.require_scopes(scopes)?)
    }

    /// Requires one of the app `roles`; else 403.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.0.require_any_role(roles)?)
    }

    /// A token to `scopes` of a downstream API on behalf of this caller.
    pub async fn on_behalf_of(&self, scopes: &Scopes) -> Result<TokenForUser, ApiRejection> {
        Ok(self.0.on_behalf_of(scopes).await?)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ApiCaller {
    type Rejection = ApiRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(api) = parts.extensions.get::<ApiAuth>() else {
            return Err(ApiRejection(core::ApiRejection::MissingSetup(
                MISSING_LAYER,
            )));
        };
        let authorization = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            // UTF-8 is checked word at a time; the token's own syntax is checked after.
            Some(v) => Some(std::str::from_utf8(v.as_bytes()).map_err(|_| ApiError::MissingToken)?),
        };
        Ok(ApiCaller(api.authenticate(authorization).await?))
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

/// What an [`ApiAccess`] requires: delegated scopes that are all required, or app roles of
/// which one suffices (app-only tokens are judged by their roles; see
/// [`identity_core::web::api::meets`]).
pub trait ApiRequirement: Send + Sync + 'static {
    /// Delegated scopes that are all required.
    const SCOPES: &'static [&'static str] = &[];
    /// App roles of which one suffices.
    const APP_ROLES: &'static [&'static str] = &[];
}

/// An [`ApiCaller`] whose token meets `R`; otherwise `403` `insufficient_scope`.
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

impl<S: Send + Sync, R: ApiRequirement> FromRequestParts<S> for ApiAccess<R> {
    type Rejection = ApiRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = <ApiCaller as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        core::meets(&caller, R::SCOPES, R::APP_ROLES)?;
        Ok(ApiAccess {
            caller,
            requirement: PhantomData,
        })
    }
}
