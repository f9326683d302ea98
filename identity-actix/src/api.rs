//! Extractors for web APIs: a valid bearer token, scopes and app roles.
//!
//! Failures answer as an API should, never with HTML: `401` with
//! `WWW-Authenticate: Bearer error="invalid_token", ...` for a missing or invalid token,
//! `403` with `error="insufficient_scope"` for a missing scope or role, each with an
//! RFC 7807 problem JSON body (`application/problem+json`).

use crate::auth::Auth;
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use identity_core::web_api::{bearer_token, ApiError};
use identity_core::Caller;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

/// Why an API extractor refused a request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ApiRejection {
    /// The token is missing or invalid, or lacks a scope or role.
    Api(ApiError),
    /// No `web::Data<Auth>` is registered: add `.app_data(web::Data::new(auth.clone()))`
    /// (or `.configure(|cfg| auth.configure(cfg))`) to the `App`.
    MissingAuth,
    /// The [`Auth`] is unconfigured.
    NotConfigured,
}

impl ApiRejection {
    /// The core's API error this rejection answers with.
    pub fn api_error(&self) -> ApiError {
        match self {
            ApiRejection::Api(e) => e.clone(),
            ApiRejection::MissingAuth => ApiError::Unavailable(
                "the API's sign-in setup is missing: register web::Data<identity_actix::Auth> \
                 with App::app_data"
                    .into(),
            ),
            ApiRejection::NotConfigured => {
                ApiError::Unavailable("the API is not configured".into())
            }
        }
    }
}

impl fmt::Display for ApiRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.api_error().fmt(f)
    }
}

impl std::error::Error for ApiRejection {}

impl From<ApiError> for ApiRejection {
    fn from(error: ApiError) -> Self {
        ApiRejection::Api(error)
    }
}

impl ResponseError for ApiRejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.api_error().status_code())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The problem JSON, with `WWW-Authenticate` when the status calls for one.
    fn error_response(&self) -> HttpResponse {
        let error = self.api_error();
        match self {
            ApiRejection::Api(_) => tracing::info!(%error, "bearer token refused"),
            _ => tracing::error!(%error, "API extractor used without a configured Auth"),
        }
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/problem+json")
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = error.www_authenticate() {
            res.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        res.body(error.problem_json().to_string())
    }
}

/// The caller of a web API: the request carries `Authorization: Bearer <token>` with an
/// access token the provider signed for this API (signature, issuer, audience, lifetime
/// checked; audiences from [`Auth::api_audiences`]).
///
/// It needs `web::Data<Auth>` in the app (registered by [`Auth::configure`], or with
/// `App::app_data(web::Data::new(auth.clone()))`), not the session middleware.
///
/// ```
/// use actix_web::{get, HttpResponse};
/// use identity_actix::{ApiCaller, ApiRejection};
///
/// #[get("/api/me")]
/// async fn me(caller: ApiCaller) -> Result<HttpResponse, ApiRejection> {
///     caller.require_scopes(&["access_as_user"])?; // else 403 insufficient_scope
///     Ok(HttpResponse::Ok().json(serde_json::json!({ "oid": caller.oid() })))
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ApiCaller(pub Caller);

impl Deref for ApiCaller {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl ApiCaller {
    /// Requires every scope in `scopes` (delegated tokens); else the 403
    /// `insufficient_scope` answer.
    pub fn require_scopes(&self, scopes: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.0.require_scopes(scopes)?)
    }

    /// Requires one of the app `roles`; else the 403 answer.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.0.require_any_role(roles)?)
    }
}

impl FromRequest for ApiCaller {
    type Error = ApiRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<Auth>>().cloned();
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned).unwrap_or_default());
        Box::pin(async move {
            let auth = auth.ok_or(ApiRejection::MissingAuth)?;
            let identity = auth.identity().ok_or(ApiRejection::NotConfigured)?;
            let token = bearer_token(authorization.as_deref())?;
            let caller = identity
                .validate_access_token(token, auth.api_audiences())
                .await?;
            Ok(ApiCaller(caller))
        })
    }
}

/// What an [`ApiAccess`] extractor requires: every delegated scope of `SCOPES` (tokens
/// issued for a user), or one of `APP_ROLES` (app-only tokens, and user tokens carrying
/// app roles). Both empty: any valid token.
///
/// ```
/// use actix_web::{get, HttpResponse};
/// use identity_actix::{ApiAccess, ApiRequirement};
///
/// struct ReadData;
/// impl ApiRequirement for ReadData {
///     const SCOPES: &'static [&'static str] = &["access_as_user"];
///     const APP_ROLES: &'static [&'static str] = &["Data.Read.All"];
/// }
///
/// #[get("/api/data")]
/// async fn data(caller: ApiAccess<ReadData>) -> HttpResponse {
///     HttpResponse::Ok().body(format!("{:?}", caller.oid()))
/// }
/// ```
pub trait ApiRequirement: 'static {
    /// Delegated scopes that are all required.
    const SCOPES: &'static [&'static str] = &[];
    /// App roles of which one suffices.
    const APP_ROLES: &'static [&'static str] = &[];
}

/// An [`ApiCaller`] whose token meets `R`.
pub struct ApiAccess<R: ApiRequirement> {
    /// The caller.
    pub caller: ApiCaller,
    requirement: PhantomData<fn() -> R>,
}

impl<R: ApiRequirement> Deref for ApiAccess<R> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller.0
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

/// Whether `caller` meets `R`, as the error to answer if not.
fn check<R: ApiRequirement>(caller: &Caller) -> Result<(), ApiError> {
    if R::SCOPES.is_empty() && R::APP_ROLES.is_empty() {
        return Ok(());
    }
    let by_role = || (!R::APP_ROLES.is_empty()).then(|| caller.require_any_role(R::APP_ROLES));
    if caller.is_app_only() || R::SCOPES.is_empty() {
        return by_role().unwrap_or_else(|| caller.require_scopes(R::SCOPES));
    }
    match caller.require_scopes(R::SCOPES) {
        Ok(()) => Ok(()),
        Err(scope_error) => match by_role() {
            Some(Ok(())) => Ok(()),
            _ => Err(scope_error),
        },
    }
}

impl<R: ApiRequirement> FromRequest for ApiAccess<R> {
    type Error = ApiRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = ApiCaller::from_request(req, payload);
        Box::pin(async move {
            let caller = caller.await?;
            check::<R>(&caller)?;
            Ok(ApiAccess {
                caller,
                requirement: PhantomData,
            })
        })
    }
}
