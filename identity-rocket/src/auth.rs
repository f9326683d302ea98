//! [`Auth`]: the managed state of the adapter, and the paths of its routes.

use crate::session::{CookieSettings, RequestSession, RequestState, SessionBackend};
use identity_core::{ConfigPage, Error, ErrorPage, Identity, Pages, RoutePlan};
use rocket::http::{CookieJar, Status};
use rocket::Request;
use std::fmt;
use std::sync::Arc;

/// The sign-in state of a Rocket app, managed by [`IdentityFairing`](crate::IdentityFairing):
/// the core [`Identity`], the session backend, the pages, and the paths of the routes.
///
/// Handlers and templates reach it as `&State<Auth>` or through the guards (e.g.
/// [`IdentitySession::auth`](crate::IdentitySession::auth)). Cheap to clone.
///
/// An `Auth` may be *unconfigured* (the fairing's
/// [`show_config_page_when_unconfigured`](crate::IdentityFairing::show_config_page_when_unconfigured)
/// mode): every page then answers with the configuration page naming what is missing.
#[derive(Clone)]
pub struct Auth {
    pub(crate) inner: Arc<AuthInner>,
}

pub(crate) struct AuthInner {
    pub(crate) mode: Mode,
    pub(crate) pages: Arc<dyn Pages>,
    pub(crate) backend: Arc<dyn SessionBackend>,
    pub(crate) cookies: CookieSettings,
    pub(crate) paths: RoutePlan,
    pub(crate) api_audiences: Vec<String>,
}

pub(crate) enum Mode {
    Configured(Identity),
    Unconfigured(Error),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut d = f.debug_struct("Auth");
        match &inner.mode {
            Mode::Configured(identity) => d.field("identity", identity),
            Mode::Unconfigured(error) => d.field("unconfigured", error),
        };
        d.field("paths", &inner.paths)
            .field("secure_cookies", &inner.cookies.secure)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The core handle, unless this `Auth` is unconfigured.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.inner.mode {
            Mode::Configured(identity) => Some(identity),
            Mode::Unconfigured(_) => None,
        }
    }

    /// Why this `Auth` is unconfigured, if it is.
    pub fn configuration_error(&self) -> Option<&Error> {
        match &self.inner.mode {
            Mode::Configured(_) => None,
            Mode::Unconfigured(error) => Some(error),
        }
    }

    /// Whether the cookies are marked `Secure` (false only for an `http` redirect URI).
    pub fn secure_cookies(&self) -> bool {
        self.inner.cookies.secure
    }

    /// The path of the callback (the redirect URI's path).
    pub fn callback_path(&self) -> &str {
        &self.inner.paths.callback
    }

    /// The path of the sign-in route (beside the callback: `…/login`).
    pub fn login_path(&self) -> &str {
        &self.inner.paths.login
    }

    /// The path of the sign-out route (`…/logout`).
    pub fn logout_path(&self) -> &str {
        &self.inner.paths.logout
    }

    /// The path of the B2C edit-profile route, when an edit-profile user flow is
    /// configured. Templates show the link only then.
    pub fn edit_profile_path(&self) -> Option<&str> {
        self.inner.paths.edit_profile.as_deref()
    }

    /// The path of the app's home page.
    pub fn home_path(&self) -> &str {
        &self.inner.paths.home
    }

    /// The absolute URL of the home page (the `post_logout_redirect_uri`).
    pub fn home_url(&self) -> &str {
        &self.inner.paths.home_url
    }

    /// The audiences a bearer token must carry for [`ApiCaller`](crate::ApiCaller).
    pub fn api_audiences(&self) -> &[String] {
        &self.inner.api_audiences
    }

    pub(crate) fn pages(&self) -> &dyn Pages {
        &*self.inner.pages
    }

    /// The context of this request.
    pub(crate) fn ctx<'r>(&'r self, req: &'r Request<'_>) -> Ctx<'r> {
        Ctx {
            auth: self,
            jar: req.cookies(),
            state: request_state(req),
        }
    }

    /// The page for `error`, with its status.
    pub(crate) fn error_page(&self, error: &Error) -> (Status, String) {
        let status = Status::from_code(error.status_code()).unwrap_or(Status::InternalServerError);
        if status.code >= 500 {
            tracing::error!(error = %error, "sign-in failed");
        } else {
            tracing::warn!(error = %error, "sign-in failed");
        }
        if let Error::Config { .. } = error {
            return (Status::InternalServerError, self.config_page(error));
        }
        let page =
            ErrorPage::for_error(error, &self.inner.paths.home, Some(&self.inner.paths.login));
        (status, self.pages().error(&page))
    }

    /// The configuration page for `error`.
    pub(crate) fn config_page(&self, error: &Error) -> String {
        self.pages().config(&config_page(error))
    }

    /// An error page built by the caller (forbidden, consent loop), on this app's home.
    pub(crate) fn render_error(&self, page: &ErrorPage) -> String {
        self.pages().error(page)
    }
}

/// What the adapter needs of one request: its [`Auth`], cookies and local state.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'r> {
    pub(crate) auth: &'r Auth,
    pub(crate) jar: &'r CookieJar<'r>,
    pub(crate) state: &'r RequestState,
}

impl<'r> Ctx<'r> {
    /// The session seam of this request.
    pub(crate) fn session(&self) -> RequestSession<'r> {
        RequestSession {
            jar: self.jar,
            state: self.state,
            backend: &*self.auth.inner.backend,
            cookies: self.auth.inner.cookies,
        }
    }
}

/// The request-local state of this crate.
pub(crate) fn request_state<'r>(req: &'r Request<'_>) -> &'r RequestState {
    req.local_cache(RequestState::default)
}

pub(crate) fn config_page(error: &Error) -> ConfigPage {
    match error {
        Error::Config { message, missing } => ConfigPage {
            message: message.clone(),
            missing: missing.clone(),
        },
        other => ConfigPage {
            message: other.to_string(),
            missing: Vec::new(),
        },
    }
}

/// Routes from the redirect URI ([`RoutePlan`], with errors naming the `redirect_uri`
/// setting), refusing paths Rocket cannot route as given: Rocket reads `<...>` in a route
/// as a dynamic segment and decodes `%`, and `//` collapses.
pub(crate) fn derive_paths(
    redirect_uri: Option<&str>,
    home: Option<&str>,
    edit_profile: bool,
) -> Result<RoutePlan, Error> {
    if let Some(uri) = redirect_uri {
        // Checked where the shared derivation would accept the path, so that its own
        // errors keep their precedence.
        let path = url::Url::parse(uri).map(|u| u.path().to_owned());
        if let Ok(path) = path {
            let usable = !path.is_empty() && path != "/" && !path.ends_with('/');
            if usable && (path.contains('%') || path.contains("//")) {
                return Err(Error::config(format!(
                    "redirect_uri {uri:?} has a path this adapter cannot route (no '%', \
                     '<', '>' or '//')"
                )));
            }
        }
    }
    RoutePlan::from_setting("redirect_uri", redirect_uri, home, edit_profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_sit_beside_the_redirect_uri() {
        let p = derive_paths(Some("http://localhost:5000/getAToken"), None, false).unwrap();
        assert_eq!(p.callback, "/getAToken");
        assert_eq!(p.login, "/login");
        assert_eq!(p.logout, "/logout");
        assert_eq!(p.home, "/");
        assert_eq!(p.home_url, "http://localhost:5000/");
        assert!(p.edit_profile.is_none());

        let p = derive_paths(Some("https://h.example/auth/callback"), Some("/app"), true).unwrap();
        assert_eq!(p.login, "/auth/login");
        assert_eq!(p.edit_profile.as_deref(), Some("/auth/edit_profile"));
        assert_eq!(p.home_url, "https://h.example/app");
    }

    #[test]
    fn redirect_uri_needs_a_routable_path() {
        for bad in ["http://h", "http://h/", "http://h/x/", "http://h/a/<b>"] {
            assert!(derive_paths(Some(bad), None, false).is_err(), "{bad}");
        }
    }
}
