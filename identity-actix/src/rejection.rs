//! [`AuthRejection`]: the engine's answer when an extractor or a check refuses a request.

use crate::auth::Auth;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use identity_core::web::{Outcome, WebResponse};
use std::fmt;

/// Why an extractor or a check refused a request: the page (or JSON) the engine decided,
/// with its status and cookies. It implements [`ResponseError`], so handlers return it
/// with `?`.
///
/// | [`outcome`](AuthRejection::outcome) | answer |
/// |---|---|
/// | `SignInRequired` | `401` login page that sends the browser to the provider (and back to this URL); JSON callers get a JSON `401` naming the login route |
/// | `Forbidden` | `403` page: an app role or group is missing |
/// | `ConsentNotObtained` | `403` page: two round trips for the same scopes within minutes got no token |
/// | `Failed` | the error page with the error's status |
/// | `StoreUnavailable` | `503` page: the session store cannot be reached |
/// | `MissingSetup` | `500` page saying what to add to the `App` |
#[derive(Clone, Debug)]
pub struct AuthRejection(pub(crate) Rejection);

#[derive(Clone, Debug)]
pub(crate) enum Rejection {
    /// Decided.
    Answer(WebResponse),
    /// Nobody is signed in; the [`IdentityMiddleware`](crate::IdentityMiddleware) starts
    /// the sign-in when it renders the answer. Deferred so that `Option<User>`, which
    /// discards the rejection, starts nothing.
    SignIn(Auth),
}

impl AuthRejection {
    /// The engine's answer, as a rejection.
    pub fn new(response: WebResponse) -> AuthRejection {
        AuthRejection(Rejection::Answer(response))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match &self.0 {
            Rejection::Answer(res) => {
                StatusCode::from_u16(res.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Rejection::SignIn(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// What kind of answer it is.
    pub fn outcome(&self) -> Outcome {
        match &self.0 {
            Rejection::Answer(res) => res.outcome.clone(),
            Rejection::SignIn(_) => Outcome::SignInRequired { auth_uri: None },
        }
    }

    /// The engine's answer (`None` for a sign-in the middleware has yet to start).
    pub fn response(&self) -> Option<&WebResponse> {
        match &self.0 {
            Rejection::Answer(res) => Some(res),
            Rejection::SignIn(_) => None,
        }
    }
}

impl From<WebResponse> for AuthRejection {
    fn from(response: WebResponse) -> Self {
        AuthRejection::new(response)
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "identity answered {}: {:?}",
            self.status(),
            self.outcome()
        )
    }
}

impl std::error::Error for AuthRejection {}

impl ResponseError for AuthRejection {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        match &self.0 {
            Rejection::Answer(res) => respond(res),
            // Only reachable when the middleware that starts sign-ins did not run.
            Rejection::SignIn(auth) => respond(&missing_middleware(Some(auth))),
        }
    }
}

/// The engine's answer as an actix-web response (logged once here).
pub(crate) fn respond(res: &WebResponse) -> HttpResponse {
    res.log();
    let status = StatusCode::from_u16(res.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    for (name, value) in &res.headers {
        out.append_header((*name, value.as_str()));
    }
    out.body(res.body.clone())
}

/// What to tell a developer who forgot the middleware.
pub(crate) const MISSING_MIDDLEWARE: &str = "Add it to your App, registered after (below) \
everything else so that it runs first: `App::new().configure(|cfg| auth.configure(cfg))\
.service(...).wrap(auth.middleware(store.clone()))`, where `auth` is your \
identity_actix::Auth and `store` your session backend (`StoreUrl::from_env()?.open(...)`). \
It must wrap every route that uses User, IdentitySession, Token, HasRole, InGroup or the \
sign-in routes, and it contains actix-session's SessionMiddleware: do not add another one";

/// The page for a request that did not pass through [`Auth::middleware`].
pub(crate) fn missing_middleware(auth: Option<&Auth>) -> WebResponse {
    let what = "The identity middleware (identity_actix::Auth::middleware)";
    match auth {
        Some(auth) => auth.core().missing_setup_response(what, MISSING_MIDDLEWARE),
        None => identity_core::web::missing_setup_page(
            &identity_core::DefaultPages,
            "/",
            what,
            MISSING_MIDDLEWARE,
        ),
    }
}
