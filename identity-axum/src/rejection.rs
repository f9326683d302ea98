//! [`AuthRejection`]: the one answer of every extractor of this crate when it cannot
//! give the handler what it asked for.

use crate::auth::{config_page, Auth};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use identity_core::{DefaultPages, Error, ErrorPage, Pages, Scopes};
use std::sync::atomic::{AtomicBool, Ordering};

/// An HTML page answer; never cached (it depends on the session).
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A rendered page, kept until the rejection becomes a response.
#[derive(Debug)]
struct Rendered {
    status: StatusCode,
    body: String,
    set_cookie: Option<HeaderValue>,
}

impl Rendered {
    fn into_response(self) -> Response {
        let mut res = html(self.status, self.body);
        if let Some(c) = self.set_cookie {
            res.headers_mut().append(header::SET_COOKIE, c);
        }
        res
    }
}

/// Why an extractor of this crate did not run the handler. Each variant knows its HTTP
/// status and renders one of the core's pages (with the [`Pages`] given to the [`Auth`]).
///
/// Return it from a handler with `?` (handlers returning `Result<_, AuthRejection>`, or
/// your own error type with a `From<AuthRejection>`).
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthRejection {
    /// Nobody is signed in, or the user must come back to the provider (more scopes,
    /// a claims challenge, an expired refresh token). A sign-in was started whose next
    /// link is the current URL; the answer is the login page (HTTP 401,
    /// `Cache-Control: no-store`), which sends the browser to the provider.
    SignInRequired(Box<SignInRequired>),
    /// The user is signed in but lacks an app role or group: HTTP 403.
    Forbidden(Box<Forbidden>),
    /// The provider was asked for the same scopes several times within minutes without
    /// the app getting a token: HTTP 403 with an explanation instead of another loop.
    ConsentNotObtained(Box<ConsentNotObtained>),
    /// An identity operation failed: the error page with [`Error::status_code`].
    Failed(Box<Failed>),
    /// The app is not configured: the configuration page (HTTP 500).
    NotConfigured(Box<NotConfigured>),
    /// A layer this crate needs is missing from the app: HTTP 500 with the fix.
    MissingLayer(Box<MissingLayer>),
}

impl AuthRejection {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthRejection::SignInRequired(r) => r.rendered.status,
            AuthRejection::Forbidden(r) => r.rendered.status,
            AuthRejection::ConsentNotObtained(r) => r.rendered.status,
            AuthRejection::Failed(r) => r.rendered.status,
            AuthRejection::NotConfigured(r) => r.rendered.status,
            AuthRejection::MissingLayer(r) => r.rendered.status,
        }
    }

    /// The core's error behind the rejection, if any.
    pub fn error(&self) -> Option<&Error> {
        match self {
            AuthRejection::Failed(r) => Some(&r.error),
            AuthRejection::NotConfigured(r) => Some(&r.error),
            _ => None,
        }
    }

    pub(crate) fn sign_in(auth_uri: String, body: String, set_cookie: Option<HeaderValue>) -> Self {
        AuthRejection::SignInRequired(Box::new(SignInRequired {
            auth_uri,
            rendered: Rendered {
                status: StatusCode::UNAUTHORIZED,
                body,
                set_cookie,
            },
        }))
    }

    pub(crate) fn forbidden(auth: &Auth, requirement: String) -> Self {
        let description = format!(
            "You are signed in, but this page requires {requirement}. Ask an administrator \
             of the app to assign it to you, then sign out and in again."
        );
        let res = page(
            auth,
            StatusCode::FORBIDDEN,
            "You do not have access to this page",
            Some("forbidden"),
            description,
        );
        AuthRejection::Forbidden(Box::new(Forbidden {
            requirement,
            rendered: res,
        }))
    }

    pub(crate) fn consent_not_obtained(auth: &Auth, scopes: Scopes, reason: &str) -> Self {
        let description = format!(
            "The app asked the identity provider several times within a few minutes for the \
             permission(s) {} and still could not get a token, so it stopped asking to avoid \
             a sign-in loop. Last reason: {reason}. The permission may need an \
             administrator's consent, or a policy of your organisation blocks it. Try again \
             in a few minutes, or contact the app's administrator.",
            scopes.to_wire()
        );
        let res = page(
            auth,
            StatusCode::FORBIDDEN,
            "Consent could not be obtained",
            Some("consent_not_obtained"),
            description,
        );
        AuthRejection::ConsentNotObtained(Box::new(ConsentNotObtained {
            scopes,
            rendered: res,
        }))
    }

    pub(crate) fn failed(auth: &Auth, error: Error) -> Self {
        if let Error::Config { .. } = &error {
            return Self::not_configured(auth, error);
        }
        let status =
            StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let page_data = ErrorPage::for_error(&error, auth.home_path(), Some(auth.login_path()));
        AuthRejection::Failed(Box::new(Failed {
            rendered: Rendered {
                status,
                body: auth.pages().error(&page_data),
                set_cookie: None,
            },
            error,
        }))
    }

    pub(crate) fn not_configured(auth: &Auth, error: Error) -> Self {
        AuthRejection::NotConfigured(Box::new(NotConfigured {
            rendered: Rendered {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: auth.pages().config(&config_page(&error)),
                set_cookie: None,
            },
            error,
        }))
    }

    pub(crate) fn missing(piece: MissingPiece, auth: Option<&Auth>) -> Self {
        let (flag, text) = match piece {
            MissingPiece::SessionLayer => (
                &MISSING_SESSION_LOGGED,
                "identity-axum needs the tower-sessions session layer around this route. Add \
                 `.layer(SessionManagerLayer::new(store))` to the Router (for example \
                 `.layer(identity_axum::SessionSettings::for_auth(&auth).layer().await?)`), \
                 after the routes and after `.layer(auth.layer())`.",
            ),
            MissingPiece::AuthLayer => (
                &MISSING_AUTH_LOGGED,
                "identity-axum's extractors need the Auth layer around this route. Add \
                 `.layer(auth.layer())` to the Router, after the routes (and the session \
                 layer `.layer(SessionManagerLayer::new(store))` after it).",
            ),
        };
        if !flag.swap(true, Ordering::Relaxed) {
            tracing::error!("{text}");
        }
        let title = "The app is not set up correctly";
        let rendered = match auth {
            Some(a) => page(
                a,
                StatusCode::INTERNAL_SERVER_ERROR,
                title,
                Some("missing_layer"),
                text.to_owned(),
            ),
            None => Rendered {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: DefaultPages.error(&ErrorPage {
                    title: title.to_owned(),
                    error: Some("missing_layer".to_owned()),
                    description: Some(text.to_owned()),
                    redirect_uri: None,
                    home_uri: "/".to_owned(),
                    retry_uri: None,
                }),
                set_cookie: None,
            },
        };
        AuthRejection::MissingLayer(Box::new(MissingLayer { piece, rendered }))
    }
}

static MISSING_SESSION_LOGGED: AtomicBool = AtomicBool::new(false);
static MISSING_AUTH_LOGGED: AtomicBool = AtomicBool::new(false);

fn page(
    auth: &Auth,
    status: StatusCode,
    title: &str,
    error: Option<&str>,
    description: String,
) -> Rendered {
    let page = ErrorPage {
        title: title.to_owned(),
        error: error.map(str::to_owned),
        description: Some(description),
        redirect_uri: None,
        home_uri: auth.home_path().to_owned(),
        retry_uri: None,
    };
    Rendered {
        status,
        body: auth.pages().error(&page),
        set_cookie: None,
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::SignInRequired(r) => {
                tracing::debug!("sign-in required; answering with the login page");
                r.rendered.into_response()
            }
            AuthRejection::Forbidden(r) => {
                tracing::info!(requirement = %r.requirement, "forbidden");
                r.rendered.into_response()
            }
            AuthRejection::ConsentNotObtained(r) => {
                tracing::warn!(scopes = %r.scopes, "consent loop stopped");
                r.rendered.into_response()
            }
            AuthRejection::Failed(r) => {
                if r.rendered.status.is_server_error() {
                    tracing::error!(error = %r.error, "identity operation failed");
                } else {
                    tracing::warn!(error = %r.error, "identity operation failed");
                }
                r.rendered.into_response()
            }
            AuthRejection::NotConfigured(r) => r.rendered.into_response(),
            AuthRejection::MissingLayer(r) => r.rendered.into_response(),
        }
    }
}

/// See [`AuthRejection::SignInRequired`].
#[derive(Debug)]
pub struct SignInRequired {
    auth_uri: String,
    rendered: Rendered,
}

impl SignInRequired {
    /// The provider URL the login page sends the browser to.
    pub fn auth_uri(&self) -> &str {
        &self.auth_uri
    }
}

/// See [`AuthRejection::Forbidden`].
#[derive(Debug)]
pub struct Forbidden {
    requirement: String,
    rendered: Rendered,
}

impl Forbidden {
    /// What was required, e.g. `the app role "Admin"`.
    pub fn requirement(&self) -> &str {
        &self.requirement
    }
}

/// See [`AuthRejection::ConsentNotObtained`].
#[derive(Debug)]
pub struct ConsentNotObtained {
    scopes: Scopes,
    rendered: Rendered,
}

impl ConsentNotObtained {
    /// The scopes that could not be obtained.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }
}

/// See [`AuthRejection::Failed`].
#[derive(Debug)]
pub struct Failed {
    error: Error,
    rendered: Rendered,
}

impl Failed {
    /// The core's error.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

/// See [`AuthRejection::NotConfigured`].
#[derive(Debug)]
pub struct NotConfigured {
    error: Error,
    rendered: Rendered,
}

impl NotConfigured {
    /// The configuration error (its `missing` names the settings to set).
    pub fn error(&self) -> &Error {
        &self.error
    }
}

/// See [`AuthRejection::MissingLayer`].
#[derive(Debug)]
pub struct MissingLayer {
    piece: MissingPiece,
    rendered: Rendered,
}

impl MissingLayer {
    /// Which layer is missing.
    pub fn piece(&self) -> MissingPiece {
        self.piece
    }
}

/// A layer the extractors need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingPiece {
    /// tower-sessions' `SessionManagerLayer`.
    SessionLayer,
    /// [`Auth::layer`].
    AuthLayer,
}
