//! What the adapter answers: pages, redirects and problem JSON, and the catchers that
//! turn a failed guard into one of them.

use crate::auth::{request_state, Auth, Ctx};
use crate::session::CookieOp;
use identity_core::web_api::ApiError;
use identity_core::{ClaimsChallenge, LogInOptions, LoginPage, Scopes};
use rocket::catcher::{self, Catcher};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::Request;
use serde_json::{Map, Value};
use std::io::Cursor;
use std::time::Duration;

/// The statuses whose catchers [`IdentityFairing`](crate::IdentityFairing) registers.
pub const CAUGHT_STATUSES: [u16; 6] = [400, 401, 403, 500, 502, 503];

/// How long consent round trips for one scope set are counted.
pub(crate) const CONSENT_WINDOW: Duration = Duration::from_secs(300);
/// Consent round trips allowed within [`CONSENT_WINDOW`] for one scope set.
pub(crate) const MAX_CONSENT_ROUND_TRIPS: usize = 2;

/// An answer of the identity layer: the login page (HTTP 401, a `meta refresh` to the
/// provider), an error or forbidden page, a redirect, or RFC 7807 problem JSON for web
/// APIs. Every one carries `Cache-Control: no-store`.
///
/// Handlers return it as the error side of a `Result`, e.g. from
/// [`IdentitySession::token_for`](crate::IdentitySession::token_for):
///
/// ```
/// use identity_rocket::{IdentityResponse, IdentitySession};
/// use identity_core::Scopes;
///
/// #[rocket::get("/mail")]
/// async fn mail(session: IdentitySession<'_>) -> Result<String, IdentityResponse> {
///     let token = session.token_for(&Scopes::parse("Mail.Read")).await?;
///     Ok(format!("a token that expires at {}", token.expires_at))
/// }
/// ```
#[derive(Clone, Debug)]
pub struct IdentityResponse {
    status: Status,
    body: Body,
    location: Option<String>,
    www_authenticate: Option<String>,
}

#[derive(Clone, Debug)]
enum Body {
    Html(String),
    Json(String),
    Empty,
}

impl IdentityResponse {
    /// The HTTP status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The `Location` of a redirect.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The body (HTML or JSON text; empty for a redirect).
    pub fn body(&self) -> &str {
        match &self.body {
            Body::Html(s) | Body::Json(s) => s,
            Body::Empty => "",
        }
    }

    pub(crate) fn html(status: Status, body: String) -> Self {
        Self {
            status,
            body: Body::Html(body),
            location: None,
            www_authenticate: None,
        }
    }

    pub(crate) fn redirect(location: String) -> Self {
        Self {
            status: Status::Found,
            body: Body::Empty,
            location: Some(location),
            www_authenticate: None,
        }
    }

    /// The answer a web API owes its client for `error`: its status, `WWW-Authenticate`
    /// and problem JSON.
    pub fn problem(error: &ApiError) -> Self {
        Self {
            status: Status::from_code(error.status_code()).unwrap_or(Status::Unauthorized),
            body: Body::Json(error.problem_json().to_string()),
            location: None,
            www_authenticate: error.www_authenticate(),
        }
    }

    pub(crate) fn error(auth: &Auth, error: &identity_core::Error) -> Self {
        let (status, body) = auth.error_page(error);
        Self::html(status, body)
    }

    /// The 403 page: "This page requires {requirement}."
    pub(crate) fn forbidden(auth: &Auth, requirement: &str) -> Self {
        tracing::info!(%requirement, "access denied");
        let page = identity_core::ErrorPage::forbidden(requirement, auth.home_path());
        Self::html(Status::Forbidden, auth.render_error(&page))
    }

    pub(crate) fn config(auth: &Auth, error: &identity_core::Error) -> Self {
        Self::html(Status::InternalServerError, auth.config_page(error))
    }

    pub(crate) fn into_response(self) -> Response<'static> {
        let mut b = Response::build();
        b.status(self.status)
            .raw_header("Cache-Control", "no-store");
        if let Some(l) = self.location {
            b.raw_header("Location", l);
        }
        if let Some(w) = self.www_authenticate {
            b.raw_header("WWW-Authenticate", w);
        }
        match self.body {
            Body::Html(s) => {
                b.header(ContentType::HTML)
                    .sized_body(s.len(), Cursor::new(s));
            }
            Body::Json(s) => {
                b.header(ContentType::new("application", "problem+json"))
                    .sized_body(s.len(), Cursor::new(s));
            }
            Body::Empty => {}
        }
        b.finalize()
    }
}

impl<'r> Responder<'r, 'static> for IdentityResponse {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Ok(self.into_response())
    }
}

/// What a failed guard leaves for the catcher.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// Start a sign-in (only when the catcher runs, so `Option<User>` starts nothing).
    SignIn(SignIn),
    /// A prepared answer.
    Ready(IdentityResponse),
}

/// A sign-in to start.
#[derive(Clone, Debug, Default)]
pub(crate) struct SignIn {
    pub(crate) scopes: Scopes,
    pub(crate) claims: Option<ClaimsChallenge>,
    pub(crate) next: Option<String>,
    /// A consent round trip for a signed-in user: counted by the loop guard.
    pub(crate) consent: bool,
}

/// The current path and query, as a next link.
pub(crate) fn current_link(req: &Request<'_>) -> Option<String> {
    identity_core::safe_next_link(&req.uri().to_string())
}

/// Starts a sign-in and answers with the login page (HTTP 401), or an error page.
pub(crate) async fn start_sign_in(ctx: Ctx<'_>, sign_in: SignIn) -> IdentityResponse {
    let auth = ctx.auth;
    let identity = match auth.identity() {
        Some(i) => i,
        None => {
            let error = auth
                .configuration_error()
                .cloned()
                .unwrap_or_else(|| identity_core::Error::config("identity is not configured"));
            return IdentityResponse::config(auth, &error);
        }
    };
    if sign_in.consent {
        if let Err(stop) = count_consent_round_trip(ctx, &sign_in.scopes) {
            return stop;
        }
    }
    let session = ctx.session();
    let options = LogInOptions {
        scopes: sign_in.scopes,
        claims: sign_in.claims,
        next_link: sign_in.next,
        ..LogInOptions::default()
    };
    match identity.log_in(&session, options).await {
        Ok(start) => {
            let page = LoginPage {
                auth_uri: start.auth_uri,
                user_code: start.user_code,
                device_poll_uri: auth.callback_path().to_owned(),
                reset_password_uri: None,
            };
            IdentityResponse::html(Status::Unauthorized, auth.pages().login(&page))
        }
        Err(e) => IdentityResponse::error(auth, &e),
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn consent_counts(ctx: Ctx<'_>) -> Map<String, Value> {
    ctx.jar
        .get_private(ctx.auth.inner.cookies.consent_name())
        .and_then(|c| serde_json::from_str::<Map<String, Value>>(c.value()).ok())
        .unwrap_or_default()
}

fn write_consent_counts(ctx: Ctx<'_>, counts: Map<String, Value>) {
    let name = ctx.auth.inner.cookies.consent_name();
    if counts.is_empty() {
        ctx.state.set_cookie(ctx.jar, name, CookieOp::Remove(name));
    } else {
        let cookie =
            ctx.auth
                .inner
                .cookies
                .build(name, Value::Object(counts).to_string(), CONSENT_WINDOW);
        ctx.state.set_cookie(ctx.jar, name, CookieOp::Set(cookie));
    }
}

/// The consent-loop guard: at most [`MAX_CONSENT_ROUND_TRIPS`] round trips for the same
/// scopes within [`CONSENT_WINDOW`]; the next one answers with an error page instead.
fn count_consent_round_trip(ctx: Ctx<'_>, scopes: &Scopes) -> Result<(), IdentityResponse> {
    let auth = ctx.auth;
    let now = now_secs();
    let window = CONSENT_WINDOW.as_secs() as i64;
    let key = scopes.cache_key();
    let mut counts = consent_counts(ctx);
    // Forget round trips outside the window, for every scope set.
    counts.retain(|_, v| {
        if let Some(list) = v.as_array_mut() {
            list.retain(|t| {
                t.as_i64()
                    .is_some_and(|t| now - t < window && t <= now + 60)
            });
            !list.is_empty()
        } else {
            false
        }
    });
    let recent = counts
        .get(&key)
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if recent >= MAX_CONSENT_ROUND_TRIPS {
        tracing::warn!(scopes = %scopes, round_trips = recent, "consent loop stopped");
        let page = identity_core::ErrorPage::consent_not_obtained(
            &scopes.to_wire(),
            auth.home_path(),
            Some(auth.login_path()),
        );
        let body = auth.render_error(&page);
        return Err(IdentityResponse::html(Status::Forbidden, body));
    }
    if let Some(list) = counts
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
    {
        list.push(Value::from(now));
    }
    write_consent_counts(ctx, counts);
    Ok(())
}

/// A token for `scopes` was obtained: forget their consent round trips.
pub(crate) fn consent_succeeded(ctx: Ctx<'_>, scopes: &Scopes) {
    if ctx.jar.get(ctx.auth.inner.cookies.consent_name()).is_none() {
        return;
    }
    let mut counts = consent_counts(ctx);
    if counts.remove(&scopes.cache_key()).is_some() {
        write_consent_counts(ctx, counts);
    }
}

/// The answer for the failure a guard of this crate left on the request, if any; with
/// the cookie changes of the request applied again.
///
/// Rocket drops the cookie changes of a request before it runs a catcher; this puts back
/// those of this crate (a renewed session, a pending sign-in). Call it from your own
/// catchers when you register them instead of this crate's (see
/// [`IdentityFairing::without_catchers`](crate::IdentityFairing::without_catchers)):
///
/// ```
/// use rocket::{catch, Request};
/// use identity_rocket::IdentityResponse;
///
/// #[catch(401)]
/// async fn unauthorized(req: &Request<'_>) -> Result<IdentityResponse, &'static str> {
///     identity_rocket::failure_response(req).await.ok_or("please sign in")
/// }
/// ```
pub async fn failure_response(req: &Request<'_>) -> Option<IdentityResponse> {
    let state = request_state(req);
    let failure = state.take_failure()?;
    state.replay_cookies(req.cookies());
    Some(match failure {
        Failure::Ready(r) => r,
        Failure::SignIn(sign_in) => {
            let auth = req.rocket().state::<Auth>()?;
            start_sign_in(auth.ctx(req), sign_in).await
        }
    })
}

#[derive(Clone, Copy)]
struct IdentityCatcher;

#[rocket::async_trait]
impl catcher::Handler for IdentityCatcher {
    async fn handle<'r>(&self, status: Status, req: &'r Request<'_>) -> catcher::Result<'r> {
        match failure_response(req).await {
            Some(r) => Ok(r.into_response()),
            None => Ok(plain_error(status, req)),
        }
    }
}

/// The catchers of this crate, for the statuses in [`CAUGHT_STATUSES`]: each answers with
/// [`failure_response`] when a guard of this crate failed, else with a plain error page
/// (JSON when the client prefers it) like Rocket's default.
pub fn catchers() -> Vec<Catcher> {
    CAUGHT_STATUSES
        .iter()
        .map(|code| Catcher::new(*code, IdentityCatcher))
        .collect()
}

fn plain_error<'r>(status: Status, req: &'r Request<'_>) -> Response<'r> {
    let reason = status.reason().unwrap_or("Error");
    let wants_json = req.accept().is_some_and(|a| a.preferred().is_json());
    let (ct, body) = if wants_json {
        (
            ContentType::JSON,
            serde_json::json!({ "error": { "code": status.code, "reason": reason } }).to_string(),
        )
    } else {
        (
            ContentType::HTML,
            format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\
                 <body><h1>{code} {reason}</h1></body></html>",
                code = status.code
            ),
        )
    };
    Response::build()
        .status(status)
        .header(ct)
        .header(Header::new("Cache-Control", "no-store"))
        .sized_body(body.len(), Cursor::new(body))
        .finalize()
}
