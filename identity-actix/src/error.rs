//! [`AuthError`]: why an extractor or a check refused a request.

use crate::auth::html;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use identity_core::{ClaimsChallenge, DefaultPages, Error, ErrorPage, Pages, Scopes};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

static MISSING_LOGGED: AtomicBool = AtomicBool::new(false);

/// Why an extractor or a check refused a request. It implements [`ResponseError`], so a
/// handler can return it with `?`; the [`IdentityMiddleware`](crate::IdentityMiddleware)
/// turns it into the matching page:
///
/// | variant | answer |
/// |---|---|
/// | [`SignInRequired`](AuthError::SignInRequired) | a sign-in is started; 401 login page (meta refresh to the provider), `Cache-Control: no-store` |
/// | [`InteractionRequired`](AuthError::InteractionRequired) | the same, asking for the scopes (and claims): incremental consent |
/// | [`ConsentNotObtained`](AuthError::ConsentNotObtained) | 403 error page: two round trips for those scopes within minutes did not get a token |
/// | [`Forbidden`](AuthError::Forbidden) | 403 error page: a role or group is missing |
/// | [`Identity`](AuthError::Identity) | the core's error page, with [`Error::status_code`] |
/// | [`MissingMiddleware`](AuthError::MissingMiddleware) | 500 error page saying what to add to the `App` |
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AuthError {
    /// Nobody is signed in.
    SignInRequired {
        /// Where to come back after sign-in (a relative path); `None`: the current
        /// request's path and query.
        next: Option<String>,
    },
    /// The user must come back to the provider for these scopes: not consented yet,
    /// refresh token gone, or a claims challenge (MFA, conditional access, CAE).
    InteractionRequired {
        /// Scopes to ask for.
        scopes: Scopes,
        /// Claims challenge to send along.
        claims: Option<ClaimsChallenge>,
        /// Where to come back (a relative path); `None`: the current request's.
        next: Option<String>,
    },
    /// The user was already sent to the provider twice for these scopes within the guard
    /// window, and the app still has no token: the provider refuses, or something drops
    /// the consent. Shown instead of a third round trip.
    ConsentNotObtained {
        /// The scopes.
        scopes: Scopes,
    },
    /// The signed-in user lacks a required app role or group.
    Forbidden {
        /// What was required, for the page (e.g. `app role "Admin"`).
        requirement: String,
    },
    /// The core failed (provider, configuration, store, tampered callback…).
    Identity(Error),
    /// The request did not pass through [`Auth::middleware`](crate::Auth::middleware).
    MissingMiddleware,
}

/// What to tell a developer who forgot the middleware.
pub(crate) const MISSING_MIDDLEWARE: &str = "identity-actix: this route uses a sign-in \
extractor, but the request did not pass through the identity session middleware. Add it \
to your App: `App::new().wrap(auth.middleware(store.clone())).configure(|cfg| \
auth.configure(cfg))`, where `auth` is your identity_actix::Auth and `store` comes from \
`identity_actix::SessionBackend::from_env().await` (or any server-side actix-session \
store). It must wrap every route that uses User, IdentitySession or the sign-in routes; \
if you already wrap actix_session::SessionMiddleware, replace it with auth.middleware(...)";

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::SignInRequired { .. } => f.write_str("sign-in required"),
            AuthError::InteractionRequired { scopes, .. } => write!(
                f,
                "the user must sign in again for the scope(s) {}",
                scopes.to_wire()
            ),
            AuthError::ConsentNotObtained { scopes } => write!(
                f,
                "The app asked the identity provider several times within a few minutes for \
                 the permission(s) {} and still could not get a token, so it stopped asking to \
                 avoid a sign-in loop. The permission may need an administrator's consent, or \
                 a policy of your organisation blocks it. Try again in a few minutes, or \
                 contact the app's administrator.",
                scopes.to_wire()
            ),
            AuthError::Forbidden { requirement } => write!(
                f,
                "You are signed in, but this page requires {requirement}. Ask an administrator \
                 of the app to assign it to you, then sign out and in again."
            ),
            AuthError::Identity(e) => e.fmt(f),
            AuthError::MissingMiddleware => f.write_str(MISSING_MIDDLEWARE),
        }
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthError::Identity(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for AuthError {
    fn from(error: Error) -> Self {
        AuthError::Identity(error)
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::SignInRequired { .. } | AuthError::InteractionRequired { .. } => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::ConsentNotObtained { .. } | AuthError::Forbidden { .. } => {
                StatusCode::FORBIDDEN
            }
            AuthError::Identity(e) => {
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            AuthError::MissingMiddleware => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stand-in that the middleware replaces with the page (it needs the [`Auth`]'s
    /// pages, and starting a sign-in is async). Only [`AuthError::MissingMiddleware`]
    /// reaches the browser like this: as the built-in error page.
    ///
    /// [`Auth`]: crate::Auth
    fn error_response(&self) -> HttpResponse {
        if let AuthError::MissingMiddleware = self {
            if !MISSING_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::error!("{MISSING_MIDDLEWARE}");
            }
            let page = ErrorPage {
                title: "The app is not set up correctly".to_owned(),
                error: Some("missing_middleware".to_owned()),
                description: Some(MISSING_MIDDLEWARE.to_owned()),
                redirect_uri: None,
                home_uri: "/".to_owned(),
                retry_uri: None,
            };
            return html(self.status_code(), DefaultPages.error(&page));
        }
        HttpResponse::build(self.status_code())
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(self.to_string())
    }
}
