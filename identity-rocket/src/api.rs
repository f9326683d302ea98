//! Request guards for web APIs over identity-core's [`ApiAuth`](web::ApiAuth), which holds
//! every rule (audiences, scopes against app roles, on-behalf-of, problem JSON).

use crate::auth::Auth;
use crate::guards::outcome;
use crate::response::to_rocket;
use identity_core::web::{self, WebResponse};
use rocket::request::{self, FromRequest};
use rocket::response::{self, Responder};
use rocket::Request;
use std::marker::PhantomData;
use std::ops::Deref;

/// Why a web API did not serve a request: the engine's [`web::ApiRejection`], answered as
/// problem JSON (RFC 7807) with `WWW-Authenticate` where it applies; never HTML.
#[derive(Clone, Debug)]
pub struct ApiRejection(pub web::ApiRejection);

impl ApiRejection {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.0.status()
    }
}

impl From<web::ApiRejection> for ApiRejection {
    fn from(rejection: web::ApiRejection) -> Self {
        ApiRejection(rejection)
    }
}

impl From<ApiRejection> for WebResponse {
    fn from(rejection: ApiRejection) -> Self {
        rejection.0.to_response()
    }
}

impl<'r> Responder<'r, 'static> for ApiRejection {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Ok(to_rocket(self.0.to_response()))
    }
}

/// The caller, if its token meets `scopes` and `app_roles` (see [`ApiRequirement`]).
async fn caller(
    req: &Request<'_>,
    scopes: &[&str],
    roles: &[&str],
) -> Result<ApiCaller, ApiRejection> {
    let Some(auth) = req.rocket().state::<Auth>() else {
        let fix =
            "The sign-in fairing is missing: add `.attach(IdentityFairing::new())` to the Rocket.";
        return Err(ApiRejection(web::ApiRejection::MissingSetup(fix)));
    };
    let authorization = req.headers().get_one("Authorization");
    let caller = auth.api().authorize(authorization, scopes, roles).await?;
    Ok(ApiCaller(caller))
}

/// The caller of a web API: the request carries `Authorization: Bearer <token>` with an
/// access token the provider signed for this API (signature, issuer, audience, lifetime
/// checked; audiences from the `api_audience` setting, else the client id and
/// `api://{client id}`). Derefs to the engine's [`web::ApiCaller`], and so to the claims:
/// `require_scopes`, `require_any_role`, and `on_behalf_of(&Scopes)` for calls to further
/// APIs as the caller; their rejections convert into [`ApiRejection`] with `?`.
#[derive(Clone, Debug)]
pub struct ApiCaller(pub web::ApiCaller);

impl Deref for ApiCaller {
    type Target = web::ApiCaller;
    fn deref(&self) -> &web::ApiCaller {
        &self.0
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ApiCaller {
    type Error = ApiRejection;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiRejection> {
        outcome(req, caller(req, &[], &[]).await)
    }
}

/// What an [`ApiAccess`] guard requires: every delegated scope of `SCOPES` (user tokens),
/// or one of `APP_ROLES` (app-only tokens, and user tokens carrying app roles). Both
/// empty: any valid token.
pub trait ApiRequirement: Send + Sync + 'static {
    /// Delegated scopes that are all required.
    const SCOPES: &'static [&'static str] = &[];
    /// App roles of which one suffices.
    const APP_ROLES: &'static [&'static str] = &[];
}

/// An [`ApiCaller`] (through `Deref` or `.0`) whose token meets `R`; otherwise 403
/// problem JSON.
pub struct ApiAccess<R: ApiRequirement>(pub ApiCaller, pub PhantomData<fn() -> R>);

impl<R: ApiRequirement> Deref for ApiAccess<R> {
    type Target = ApiCaller;
    fn deref(&self) -> &ApiCaller {
        &self.0
    }
}

#[rocket::async_trait]
impl<'r, R: ApiRequirement> FromRequest<'r> for ApiAccess<R> {
    type Error = ApiRejection;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiRejection> {
        let caller = caller(req, R::SCOPES, R::APP_ROLES).await;
        outcome(req, caller.map(|caller| ApiAccess(caller, PhantomData)))
    }
}
