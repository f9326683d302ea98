//! Request guards for web APIs: a valid bearer token, scopes and app roles.
//!
//! Failures answer as an API should, never with HTML: `401` with
//! `WWW-Authenticate: Bearer error="invalid_token", ...` for a missing or invalid token,
//! `403` with `error="insufficient_scope"` for missing scopes or roles, each with an RFC
//! 7807 problem JSON body (`application/problem+json`).

use crate::auth::{request_state, Auth};
use crate::guards::Rejection;
use crate::response::{Failure, IdentityResponse};
use identity_core::web_api::{bearer_token, ApiError};
use identity_core::Caller;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest};
use rocket::Request;
use std::marker::PhantomData;
use std::ops::Deref;

/// Why an API guard failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ApiRejection {
    /// The token is missing, invalid, or lacks a scope or role; the catcher answers with
    /// [`IdentityResponse::problem`].
    Api(ApiError),
    /// The sign-in layer is missing or not configured.
    Setup(Rejection),
}

fn fail_api<T>(req: &Request<'_>, error: ApiError) -> request::Outcome<T, ApiRejection> {
    let response = IdentityResponse::problem(&error);
    let status = response.status();
    tracing::info!(%error, "bearer token refused");
    request_state(req).set_failure(Failure::Ready(response));
    Outcome::Error((status, ApiRejection::Api(error)))
}

/// The caller of a web API: the request carries `Authorization: Bearer <token>` with an
/// access token the provider signed for this API (signature, issuer, audience, lifetime
/// checked; audiences default to the client id and `api://{client id}`, or the
/// `api_audience` setting).
///
/// ```
/// use identity_rocket::ApiCaller;
/// use identity_rocket::IdentityResponse;
///
/// #[rocket::get("/api/me")]
/// fn me(caller: ApiCaller) -> Result<String, IdentityResponse> {
///     caller.require_scopes(&["access_as_user"])?;
///     Ok(format!("{{\"oid\":{:?}}}", caller.oid().unwrap_or("")))
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
    pub fn require_scopes(&self, scopes: &[&str]) -> Result<(), IdentityResponse> {
        self.0
            .require_scopes(scopes)
            .map_err(|e| IdentityResponse::problem(&e))
    }

    /// Requires one of the app `roles`; else the 403 answer.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), IdentityResponse> {
        self.0
            .require_any_role(roles)
            .map_err(|e| IdentityResponse::problem(&e))
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ApiCaller {
    type Error = ApiRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiRejection> {
        let Some(auth) = req.rocket().state::<Auth>() else {
            tracing::error!("ApiCaller was used but IdentityFairing is not attached");
            return fail_api(
                req,
                ApiError::Unavailable("the API's sign-in layer is not set up".into()),
            )
            .map_error(|(s, _)| (s, ApiRejection::Setup(Rejection::MissingFairing)));
        };
        let Some(identity) = auth.identity() else {
            return fail_api(
                req,
                ApiError::Unavailable("the API is not configured".into()),
            )
            .map_error(|(s, _)| (s, ApiRejection::Setup(Rejection::NotConfigured)));
        };
        let token = match bearer_token(req.headers().get_one("Authorization")) {
            Ok(t) => t,
            Err(e) => return fail_api(req, e),
        };
        match identity
            .validate_access_token(token, auth.api_audiences())
            .await
        {
            Ok(caller) => Outcome::Success(ApiCaller(caller)),
            Err(e) => fail_api(req, e),
        }
    }
}

/// What an [`ApiAccess`] guard requires: every delegated scope of `SCOPES` (tokens
/// issued for a user), or one of `APP_ROLES` (app-only tokens, and user tokens carrying
/// app roles). Both empty: any valid token.
///
/// ```
/// use identity_rocket::{ApiAccess, ApiRequirement};
///
/// struct ReadData;
/// impl ApiRequirement for ReadData {
///     const SCOPES: &'static [&'static str] = &["access_as_user"];
///     const APP_ROLES: &'static [&'static str] = &["Data.Read.All"];
/// }
///
/// #[rocket::get("/api/data")]
/// fn data(caller: ApiAccess<ReadData>) -> String {
///     format!("{:?}", caller.oid())
/// }
/// ```
pub trait ApiRequirement: Send + Sync + 'static {
    /// Delegated scopes that are all required.
    const SCOPES: &'static [&'static str] = &[];
    /// App roles of which one suffices.
    const APP_ROLES: &'static [&'static str] = &[];
}

/// An [`ApiCaller`] whose token meets `R`.
pub struct ApiAccess<R: ApiRequirement> {
    /// The caller.
    pub caller: ApiCaller,
    requirement: PhantomData<R>,
}

impl<R: ApiRequirement> Deref for ApiAccess<R> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller.0
    }
}

impl<R: ApiRequirement> std::fmt::Debug for ApiAccess<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    let by_role = || {
        if R::APP_ROLES.is_empty() {
            None
        } else {
            Some(caller.require_any_role(R::APP_ROLES))
        }
    };
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

#[rocket::async_trait]
impl<'r, R: ApiRequirement> FromRequest<'r> for ApiAccess<R> {
    type Error = ApiRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiRejection> {
        let caller = match ApiCaller::from_request(req).await {
            Outcome::Success(c) => c,
            Outcome::Error(e) => return Outcome::Error(e),
            Outcome::Forward(s) => return Outcome::Forward(s),
        };
        match check::<R>(&caller) {
            Ok(()) => Outcome::Success(ApiAccess {
                caller,
                requirement: PhantomData,
            }),
            Err(e) => fail_api(req, e),
        }
    }
}
