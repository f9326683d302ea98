//! The engine's answers as Rocket responses: [`AuthRejection`], and the catchers that
//! render the answer a failed guard left on the request.

use identity_core::web::{Outcome, WebResponse};
use rocket::catcher::{self, Catcher};
use rocket::http::{ContentType, Status};
use rocket::response::{self, Responder, Response};
use rocket::Request;
use std::io::Cursor;
use std::sync::PoisonError;

/// The statuses whose catchers [`IdentityFairing`](crate::IdentityFairing) registers.
pub const CAUGHT_STATUSES: [u16; 6] = [400, 401, 403, 500, 502, 503];

/// Turns the engine's answer into a Rocket response (status, headers, body as given).
pub(crate) fn to_rocket(res: WebResponse) -> Response<'static> {
    let mut b = Response::build();
    b.status(Status::new(res.status));
    for (name, value) in res.headers {
        b.raw_header_adjoin(name, value);
    }
    b.sized_body(res.body.len(), Cursor::new(res.body));
    b.finalize()
}

/// Logs the answer once, then [`to_rocket`].
pub(crate) fn render(res: WebResponse) -> Response<'static> {
    res.log();
    to_rocket(res)
}

/// Why a guard of this crate did not let the request through, as the answer the engine
/// decided: the login page (401, the sign-in already started), a JSON 401 for `fetch`
/// callers, the 403 page, the error page, the 503 page of an unreachable session store,
/// the configuration page. A failed guard also leaves the answer for the catchers (see
/// [`catchers`]); handlers that take `Result<User, AuthRejection>`, or call
/// [`IdentitySession`](crate::IdentitySession), return it as a responder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRejection(pub WebResponse);

impl AuthRejection {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.0.status
    }

    /// What kind of answer it is.
    pub fn outcome(&self) -> &Outcome {
        &self.0.outcome
    }
}

impl From<WebResponse> for AuthRejection {
    fn from(res: WebResponse) -> Self {
        AuthRejection(res)
    }
}

impl From<AuthRejection> for WebResponse {
    fn from(rejection: AuthRejection) -> Self {
        rejection.0
    }
}

impl<'r> Responder<'r, 'static> for AuthRejection {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Ok(render(self.0))
    }
}

/// The answer a failed guard of this crate left on the request, if any.
///
/// Rocket hands a catcher only the status, and drops the cookies set so far: the answer
/// kept here carries its own (the pending sign-in cookie), and the session cookie is set
/// by the fairing as the response leaves. Call it from your own catchers when you register
/// them instead of this crate's (see
/// [`IdentityFairing::without_catchers`](crate::IdentityFairing::without_catchers)).
pub fn failure_response(req: &Request<'_>) -> Option<AuthRejection> {
    let failure = &crate::session::request_state(req).failure;
    let taken = failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    taken.map(AuthRejection)
}

#[derive(Clone, Copy)]
struct IdentityCatcher;

#[rocket::async_trait]
impl catcher::Handler for IdentityCatcher {
    async fn handle<'r>(&self, status: Status, req: &'r Request<'_>) -> catcher::Result<'r> {
        // A guard inside `Option<…>` may have failed earlier with another status.
        match failure_response(req).filter(|r| r.status() == status.code) {
            Some(r) => Ok(render(r.0)),
            None => Ok(plain_error(status)),
        }
    }
}

/// The catchers of this crate, for the statuses in [`CAUGHT_STATUSES`]: each answers with
/// [`failure_response`] when a guard of this crate failed with its status, else with a
/// plain error page.
pub fn catchers() -> Vec<Catcher> {
    CAUGHT_STATUSES
        .iter()
        .map(|code| Catcher::new(*code, IdentityCatcher))
        .collect()
}

fn plain_error<'r>(status: Status) -> Response<'r> {
    let (code, reason) = (status.code, status.reason().unwrap_or("Error"));
    let html = format!("<!DOCTYPE html><title>{code} {reason}</title><h1>{code} {reason}</h1>");
    Response::build()
        .status(status)
        .header(ContentType::HTML)
        .raw_header("Cache-Control", "no-store")
        .sized_body(html.len(), Cursor::new(html))
        .finalize()
}
