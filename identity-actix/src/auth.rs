//! [`Auth`]: the adapter's handle, its options, its routes and its cookie keys.

use actix_web::cookie::Key;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use identity_core::{
    ConfigPage, DefaultPages, Error, ErrorPage, Identity, IdentityConfig, LogInStart, LoginPage,
    Pages, RoutePlan,
};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable holding the secret the cookie keys derive from.
pub const SESSION_SECRET_VAR: &str = "SESSION_SECRET";

/// The sign-in handle of an actix-web app: built once from an [`Identity`] (or from the
/// environment with [`Auth::from_env`]) and cloned freely (it is an `Arc`).
///
/// It gives the app
///
/// * its routes, through [`Auth::configure`] (for `App::configure`): the callback at the
///   redirect URI's path, `login`, `logout` and (B2C) `edit_profile` beside it; it also
///   registers itself as `web::Data<Auth>` so handlers can read the paths for links;
/// * its session middleware, through [`Auth::middleware`]: actix-session over a
///   server-side store, the encrypted pending-sign-in cookie, and the pages the
///   extractors answer with.
///
/// An `Auth` may be *unconfigured* ([`Auth::unconfigured`], or [`Auth::from_env`] when
/// settings are missing): the middleware then answers every request with the
/// configuration page, which names the missing settings.
#[derive(Clone)]
pub struct Auth {
    pub(crate) inner: Arc<AuthInner>,
}

pub(crate) struct AuthInner {
    pub(crate) mode: Mode,
    pub(crate) pages: Arc<dyn Pages>,
    pub(crate) session_key: Key,
    pub(crate) pending_key: Key,
    pub(crate) secure: bool,
    pub(crate) paths: RoutePlan,
    pub(crate) pending_ttl: Duration,
    pub(crate) consent_window: Duration,
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
        d.field("callback", &inner.paths.callback)
            .field("login", &inner.paths.login)
            .field("logout", &inner.paths.logout)
            .field("home", &inner.paths.home)
            .field("secure_cookies", &inner.secure)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// An `Auth` with the default options: routes beside the redirect URI's path, home
    /// page `/`, the built-in pages, and cookie keys derived from `SESSION_SECRET`
    /// (random per process when unset, with a warning).
    pub fn new(identity: Identity) -> Result<Auth, Error> {
        Self::builder(identity).build()
    }

    /// Starts building an `Auth` with options.
    pub fn builder(identity: Identity) -> AuthBuilder {
        AuthBuilder::from_result(Ok(identity))
    }

    /// Reads the configuration from the environment ([`IdentityConfig::from_env`] and
    /// `SESSION_SECRET`). It never fails: when settings are missing or wrong, the result
    /// is an unconfigured `Auth` (see [`Auth::unconfigured`]).
    pub fn from_env() -> Auth {
        let built = IdentityConfig::from_env().and_then(Identity::new);
        match AuthBuilder::from_result(built).build() {
            Ok(auth) => auth,
            Err(error) => Self::unconfigured(error),
        }
    }

    /// An `Auth` whose middleware answers every request with the configuration page
    /// (HTTP 500) built from `error`; for [`Error::Config`] the page lists its `missing`
    /// settings. Routes stay where `REDIRECT_URI` (or its default) puts them.
    pub fn unconfigured(error: Error) -> Auth {
        let redirect = std::env::var("REDIRECT_URI")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| identity_core::config::DEFAULT_REDIRECT_URI.to_owned());
        let paths = RoutePlan::from_redirect_uri(Some(&redirect), None, false)
            .or_else(|_| RoutePlan::from_redirect_uri(None, None, false))
            .unwrap_or_else(|_| RoutePlan::fallback());
        tracing::error!(error = %error, "identity is not configured; every page shows the configuration page");
        Auth {
            inner: Arc::new(AuthInner {
                mode: Mode::Unconfigured(error),
                pages: Arc::new(DefaultPages),
                session_key: Key::generate(),
                pending_key: Key::generate(),
                secure: false,
                paths,
                pending_ttl: Duration::from_secs(600),
                consent_window: Duration::from_secs(300),
                api_audiences: Vec::new(),
            }),
        }
    }

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
        self.inner.secure
    }

    /// The path of the callback (the redirect URI's path).
    pub fn callback_path(&self) -> &str {
        &self.inner.paths.callback
    }

    /// The path of the sign-in route (`…/login`).
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

    /// The absolute URL of the home page (the `post_logout_redirect_uri`), on the
    /// redirect URI's origin.
    pub fn home_url(&self) -> &str {
        &self.inner.paths.home_url
    }

    /// The audiences a bearer token must carry for [`ApiCaller`](crate::ApiCaller):
    /// [`AuthBuilder::api_audiences`], else `API_AUDIENCE` (comma or space separated),
    /// else the client id and `api://{client id}`.
    pub fn api_audiences(&self) -> &[String] {
        &self.inner.api_audiences
    }

    pub(crate) fn pages(&self) -> &dyn Pages {
        &*self.inner.pages
    }

    /// The error page for `error`, with its status.
    pub(crate) fn error_response(&self, error: &Error) -> HttpResponse {
        let status =
            StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %error, "sign-in failed");
        } else {
            tracing::warn!(error = %error, "sign-in failed");
        }
        if let Error::Config { .. } = error {
            return self.config_response(error);
        }
        let page =
            ErrorPage::for_error(error, &self.inner.paths.home, Some(&self.inner.paths.login));
        html(status, self.pages().error(&page))
    }

    /// The configuration page for `error` (HTTP 500).
    pub(crate) fn config_response(&self, error: &Error) -> HttpResponse {
        html(
            StatusCode::INTERNAL_SERVER_ERROR,
            self.pages().config(&config_page(error)),
        )
    }

    /// An error page with a free text (missing middleware, loops, forbidden).
    pub(crate) fn message_page(
        &self,
        status: StatusCode,
        title: &str,
        error: Option<&str>,
        description: String,
    ) -> HttpResponse {
        let page = ErrorPage {
            title: title.to_owned(),
            error: error.map(str::to_owned),
            description: Some(description),
            redirect_uri: None,
            home_uri: self.inner.paths.home.clone(),
            retry_uri: None,
        };
        html(status, self.pages().error(&page))
    }

    /// The login page (a meta refresh to the provider, or device-code instructions).
    pub(crate) fn login_response(&self, status: StatusCode, start: LogInStart) -> HttpResponse {
        let page = LoginPage {
            auth_uri: start.auth_uri,
            user_code: start.user_code,
            device_poll_uri: self.inner.paths.callback.clone(),
            reset_password_uri: None,
        };
        html(status, self.pages().login(&page))
    }
}

/// An HTML answer that no cache keeps.
pub(crate) fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
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

/// Options of an [`Auth`]; from [`Auth::builder`].
#[must_use]
pub struct AuthBuilder {
    identity: Result<Identity, Error>,
    pages: Option<Arc<dyn Pages>>,
    home: Option<String>,
    secret: Option<Vec<u8>>,
    consent_window: Duration,
    api_audiences: Option<Vec<String>>,
}

impl fmt::Debug for AuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthBuilder")
            .field("home", &self.home)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("consent_window", &self.consent_window)
            .field("api_audiences", &self.api_audiences)
            .finish_non_exhaustive()
    }
}

impl AuthBuilder {
    fn from_result(identity: Result<Identity, Error>) -> Self {
        Self {
            identity,
            pages: None,
            home: None,
            secret: None,
            consent_window: Duration::from_secs(300),
            api_audiences: None,
        }
    }

    /// Renders the login, error and configuration pages with your own templates.
    pub fn pages(mut self, pages: impl Pages) -> Self {
        self.pages = Some(Arc::new(pages));
        self
    }

    /// The path of the app's home page: where the browser goes after sign-in without a
    /// next link, after a cancelled sign-in, and after sign-out (as an absolute URL on the
    /// redirect URI's origin). Default `/`.
    pub fn home(mut self, path: impl Into<String>) -> Self {
        self.home = Some(path.into());
        self
    }

    /// The secret the cookie keys derive from (the session cookie's and the pending
    /// sign-in cookie's). Every instance of one app must use the same. Default: the
    /// `SESSION_SECRET` environment variable; unset, a random key per process (with a
    /// warning).
    pub fn session_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// How long the consent-loop guard remembers interactive round trips for one scope
    /// set (at most two within this window, then an error page). Default 5 minutes.
    pub fn consent_window(mut self, window: Duration) -> Self {
        self.consent_window = window;
        self
    }

    /// The `aud` values a bearer token must carry for [`ApiCaller`](crate::ApiCaller).
    /// Default: `API_AUDIENCE` (comma or space separated), else the client id and
    /// `api://{client id}`.
    pub fn api_audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.api_audiences = Some(audiences.into_iter().map(Into::into).collect());
        self
    }

    /// Builds the `Auth`. Fails with [`Error::Config`] when the redirect URI has no usable
    /// path or the home path is not a path.
    pub fn build(self) -> Result<Auth, Error> {
        let identity = self.identity?;
        let config = identity.config();
        let redirect = config.redirect_uri.as_deref();
        let has_edit = config.b2c.edit_profile.is_some();
        let paths = RoutePlan::from_redirect_uri(redirect, self.home.as_deref(), has_edit)?;
        paths.warn_if_insecure();
        let secure = paths.secure_cookies;
        let secret = match self.secret {
            Some(s) => Some(s),
            None => std::env::var(SESSION_SECRET_VAR)
                .ok()
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
        };
        let (session_key, pending_key) = match secret {
            Some(s) => {
                if s.len() < 32 {
                    tracing::warn!(
                        "SESSION_SECRET is shorter than 32 characters; use a long random value"
                    );
                }
                (
                    derive_key(b"identity-actix session cookie key v1", &s),
                    derive_key(b"identity-actix pending sign-in cookie key v1", &s),
                )
            }
            None => {
                tracing::warn!(
                    "SESSION_SECRET is not set: using a random key for this process. Sessions \
                     and sign-ins in progress will not survive a restart and will fail on other \
                     instances; set SESSION_SECRET (the same value on every instance)"
                );
                (Key::generate(), Key::generate())
            }
        };
        tracing::info!(
            redirect_uri = redirect.unwrap_or("(none: device code sign-in)"),
            callback = %paths.callback,
            login = %paths.login,
            logout = %paths.logout,
            "identity routes"
        );
        let pending_ttl = config.pending_login_ttl;
        let api_audiences = match self.api_audiences {
            Some(list) => list,
            None => match std::env::var("API_AUDIENCE") {
                Ok(list) if !list.trim().is_empty() => list
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                _ => identity_core::web_api::default_audiences(config.client_id.as_str()),
            },
        };
        Ok(Auth {
            inner: Arc::new(AuthInner {
                mode: Mode::Configured(identity),
                pages: self.pages.unwrap_or_else(|| Arc::new(DefaultPages)),
                session_key,
                pending_key,
                secure,
                paths,
                pending_ttl,
                consent_window: self.consent_window,
                api_audiences,
            }),
        })
    }
}

/// A cookie key from the secret ([`identity_core::derive_key`]: SHA-512 over the purpose
/// label, a zero byte and the secret).
fn derive_key(label: &[u8], secret: &[u8]) -> Key {
    Key::from(&identity_core::derive_key(label, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_purpose_and_repeat_per_secret() {
        let a = derive_key(b"a", b"secret");
        let b = derive_key(b"b", b"secret");
        assert_ne!(a.master(), b.master());
        assert_eq!(a.master(), derive_key(b"a", b"secret").master());
    }
}
