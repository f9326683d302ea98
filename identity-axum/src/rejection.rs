//! [`AuthRejection`]: the one answer of every extractor of this crate when it cannot give
//! the handler what it asked for, and the conversion of the engine's answers.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use identity_core::web::{Outcome, WebResponse};

/// Copies an answer of the engine into an axum response.
pub(crate) fn respond(res: WebResponse) -> Response {
    res.log();
    let mut out = Response::new(Body::from(res.body));
    *out.status_mut() =
        StatusCode::from_u16(res.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    for (name, value) in res.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(HeaderName::from_static(name), v);
        }
    }
    out
}

/// Why an extractor of this crate did not run the handler: a sign-in to start (the
/// login page, or a JSON 401 for JSON callers), a 403 for a missing role or group or a
/// consent loop, the error page, the configuration page, or a missing layer. Each knows
/// its status and renders the core's page (with the app's [`Pages`](identity_core::Pages)).
///
/// Return it from a handler with `?` (handlers returning `Result<_, AuthRejection>`, or
/// your own error type with a `From<AuthRejection>`).
#[derive(Debug)]
pub struct AuthRejection(pub(crate) WebResponse);

impl AuthRejection {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// What kind of answer it is.
    pub fn outcome(&self) -> &Outcome {
        &self.0.outcome
    }

    /// The answer as the engine decided it.
    pub fn into_web_response(self) -> WebResponse {
        self.0
    }
}

impl From<WebResponse> for AuthRejection {
    fn from(res: WebResponse) -> Self {
        AuthRejection(res)
    }
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({})", self.0.outcome, self.0.status)
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        respond(self.0)
    }
}
