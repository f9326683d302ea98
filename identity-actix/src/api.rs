//! Extractors for web APIs over the core's [`ApiAuth`]: [`ApiCaller`], [`ApiAccess`].

use crate::rejection::respond;
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use identity_core::web::{api, ApiAuth};
use identity_core::{Scopes, TokenForUser};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

/// Why a web API did not run its handler (the core's
/// [`ApiRejection`](identity_core::web::ApiRejection)): problem JSON with the status and
/// `WWW-Authenticate` the core decides, never HTML.
#[derive(Clone, Debug)]
pub struct ApiRejection(pub api::ApiRejection);

impl fmt::Display for ApiRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ApiRejection {}

impl From<api::ApiRejection> for ApiRejection {
    fn from(rejection: api::ApiRejection) -> Self {
        ApiRejection(rejection)
    }
}

impl ResponseError for ApiRejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        respond(&self.0.to_response())
    }
}

/// The caller of a web API: the request carries `Authorization: Bearer <token>` with an
/// access token the provider signed for this API (signature, issuer, audience, lifetime
/// checked by the core's [`ApiAuth`]). The claims are reachable through `Deref`.
///
/// It needs `web::Data<ApiAuth>` in the app, not the session middleware.
///
/// ```
/// use actix_web::{get, HttpResponse};
/// use identity_actix::{ApiCaller, ApiRejection};
/// use identity_actix::identity_core::Scopes;
///
/// #[get("/api/me")]
/// async fn me(caller: ApiCaller) -> Result<HttpResponse, ApiRejection> {
///     caller.require_scopes(&["access_as_user"])?; // else 403 insufficient_scope
///     // A token for a downstream API, on behalf of the caller (cached).
///     let token = caller.on_behalf_of(&Scopes::parse("User.Read")).await?;
///     Ok(HttpResponse::Ok().json(serde_json::json!({
///         "oid": caller.oid(),
///         "downstream_token_until": token.expires_at,
///     })))
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ApiCaller(pub api::ApiCaller);

impl Deref for ApiCaller {
    type Target = api::ApiCaller;
    fn deref(&self) -> &api::ApiCaller {
        &self.0
    }
}

impl ApiCaller {
    /// Requires every delegated scope in `scopes`; else `403 insufficient_scope`.
    pub fn require_scopes(&self, scopes: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.0.require_scopes(scopes)?)
    }

    /// Requires one of the app `roles`; else `403 insufficient_scope`.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.0.require_any_role(roles)?)
    }

    /// An access token to `scopes` of a downstream API, on behalf of this caller (cached
    /// per caller, incoming token and scopes). When the user must satisfy more (consent,
    /// MFA), the rejection is a `401` whose `WWW-Authenticate` tells the client what to
    /// ask for.
    pub async fn on_behalf_of(&self, scopes: &Scopes) -> Result<TokenForUser, ApiRejection> {
        Ok(self.0.on_behalf_of(scopes).await?)
    }
}

/// Validates the request's bearer token against `web::Data<ApiAuth>` and the requirement.
fn authorize(
    req: &HttpRequest,
    scopes: &'static [&'static str],
    roles: &'static [&'static str],
) -> impl std::future::Future<Output = Result<ApiCaller, ApiRejection>> + 'static {
    let api = req.app_data::<web::Data<ApiAuth>>().cloned();
    let authorization = req.headers().get(header::AUTHORIZATION).map(|v| {
        // UTF-8 is checked word at a time; the token's own syntax is checked after.
        std::str::from_utf8(v.as_bytes())
            .map(str::to_owned)
            .unwrap_or_default()
    });
    async move {
        let api = api.ok_or(api::ApiRejection::MissingSetup(
            "The web API's handle is missing: register it with \
             App::app_data(web::Data::new(identity_actix::ApiAuth::from_env()))",
        ))?;
        let caller = api
            .authorize(authorization.as_deref(), scopes, roles)
            .await?;
        Ok(ApiCaller(caller))
    }
}

impl FromRequest for ApiCaller {
    type Error = ApiRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let call = authorize(req, &[], &[]);
        Box::pin(call)
    }
}

/// What an [`ApiAccess`] extractor requires: every delegated scope of `SCOPES` (user
/// tokens), or one of `APP_ROLES` (app-only tokens, and user tokens carrying app roles);
/// the rule is the core's [`meets`](identity_core::web::api::meets). Both empty: any
/// valid token. The crate docs (*Web APIs*) show one in an app.
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

impl<R: ApiRequirement> FromRequest for ApiAccess<R> {
    type Error = ApiRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let call = authorize(req, R::SCOPES, R::APP_ROLES);
        Box::pin(async move {
            Ok(ApiAccess {
                caller: call.await?,
                requirement: PhantomData,
            })
        })
    }
}
