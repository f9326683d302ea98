//! Request guards for web APIs: [`ApiCaller`] and [`ApiAccess`], over identity-core's
//! [`ApiAuth`](identity_core::web::ApiAuth), which holds every rule (audiences, scopes
//! against app roles, on-behalf-of, problem JSON with `WWW-Authenticate`).

use crate::auth::Auth;
use crate::guards::request_state;
use crate::response::to_rocket;
use identity_core::web::{self, ApiAuth};
use identity_core::{Scopes, TokenForUser};
use rocket::http::Status;
use rocket::outcome::Outcome;
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

impl std::fmt::Display for ApiRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ApiRejection {}

impl<'r> Responder<'r, 'static> for ApiRejection {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Ok(to_rocket(self.0.to_response()))
    }
}

fn fail<T>(req: &Request<'_>, rejection: web::ApiRejection) -> request::Outcome<T, ApiRejection> {
    let status = Status::new(rejection.status());
    request_state(req).set_failure(rejection.to_response());
    Outcome::Error((status, ApiRejection(rejection)))
}

fn api<'r>(req: &'r Request<'_>) -> Result<&'r ApiAuth, web::ApiRejection> {
    match req.rocket().state::<Auth>() {
        Some(auth) => Ok(auth.api()),
        None => Err(web::ApiRejection::MissingSetup(
            "The sign-in fairing is missing: add `.attach(identity_rocket::IdentityFairing::new())` \
             to the Rocket.",
        )),
    }
}

/// The caller of a web API: the request carries `Authorization: Bearer <token>` with an
/// access token the provider signed for this API (signature, issuer, audience, lifetime
/// checked; audiences from the `api_audience` setting, else the client id and
/// `api://{client id}`). Derefs to the engine's [`web::ApiCaller`] and so to the claims.
///
/// ```
/// use identity_core::Scopes;
/// use identity_rocket::{ApiCaller, ApiRejection};
///
/// #[rocket::get("/api/me")]
/// async fn me(caller: ApiCaller) -> Result<String, ApiRejection> {
///     caller.require_scopes(&["access_as_user"])?;
///     let graph = caller.on_behalf_of(&Scopes::parse("User.Read")).await?;
///     Ok(format!("{:?} may call Graph until {}", caller.oid(), graph.expires_at))
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ApiCaller(pub web::ApiCaller);

impl Deref for ApiCaller {
    type Target = web::ApiCaller;
    fn deref(&self) -> &web::ApiCaller {
        &self.0
    }
}

impl ApiCaller {
    /// Requires every delegated scope in `scopes`; else 403 `insufficient_scope`.
    pub fn require_scopes(&self, scopes: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.0.require_scopes(scopes)?)
    }

    /// Requires one of the app `roles`; else 403 `insufficient_scope`.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.0.require_any_role(roles)?)
    }

    /// An access token to `scopes` of a downstream API on behalf of this caller (cached);
    /// when the user must do more (consent, MFA), a 401 whose `WWW-Authenticate` tells the
    /// calling client what to ask for.
    pub async fn on_behalf_of(&self, scopes: &Scopes) -> Result<TokenForUser, ApiRejection> {
        Ok(self.0.on_behalf_of(scopes).await?)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ApiCaller {
    type Error = ApiRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiRejection> {
        let authorization = req.headers().get_one("Authorization");
        let caller = match api(req) {
            Ok(api) => api.authenticate(authorization).await,
            Err(rejection) => Err(rejection),
        };
        match caller {
            Ok(caller) => Outcome::Success(ApiCaller(caller)),
            Err(rejection) => fail(req, rejection),
        }
    }
}

/// What an [`ApiAccess`] guard requires: every delegated scope of `SCOPES` (user tokens),
/// or one of `APP_ROLES` (app-only tokens, and user tokens carrying app roles). Both
/// empty: any valid token.
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

/// An [`ApiCaller`] whose token meets `R`; otherwise 403 problem JSON.
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

impl<R: ApiRequirement> std::fmt::Debug for ApiAccess<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAccess")
            .field("scopes", &R::SCOPES)
            .field("app_roles", &R::APP_ROLES)
            .field("caller", &self.caller)
            .finish()
    }
}

#[rocket::async_trait]
impl<'r, R: ApiRequirement> FromRequest<'r> for ApiAccess<R> {
    type Error = ApiRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiRejection> {
        let authorization = req.headers().get_one("Authorization");
        let caller = match api(req) {
            Ok(api) => {
                api.authorize(authorization, R::SCOPES, R::APP_ROLES)
                    .await
            }
            Err(rejection) => Err(rejection),
        };
        match caller {
            Ok(caller) => Outcome::Success(ApiAccess {
                caller: ApiCaller(caller),
                requirement: PhantomData,
            }),
            Err(rejection) => fail(req, rejection),
        }
    }
}
