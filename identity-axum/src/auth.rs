//! [`Auth`]: the adapter's handle, its options, and the layer that hands it to extractors.

use crate::rejection::html;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use identity_core::{
    ConfigPage, DefaultPages, Error, ErrorPage, Identity, IdentityConfig, LoginPage, Pages,
};
use sha2::{Digest, Sha512};
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The environment variable holding the key of the encrypted cookies.
pub const SESSION_SECRET_VAR: &str = "SESSION_SECRET";

/// The sign-in handle of an axum app: built once from an [`Identity`], cloned freely (it
/// is an `Arc`). It gives the app its routes ([`Auth::router`]) and, through
/// [`Auth::layer`], makes itself available to the extractors ([`User`](crate::User),
/// [`IdentitySession`](crate::IdentitySession), ...).
///
/// An `Auth` may also be *unconfigured* ([`Auth::unconfigured`], or [`Auth::from_env`]
/// when settings are missing): every request then answers with the configuration page,
/// which names the missing settings.
#[derive(Clone)]
pub struct Auth {
    pub(crate) inner: Arc<AuthInner>,
}

pub(crate) struct AuthInner {
    pub(crate) mode: Mode,
    pub(crate) pages: Arc<dyn Pages>,
    pub(crate) cookie_key: cookie::Key,
    pub(crate) secure: bool,
    pub(crate) paths: Paths,
    pub(crate) pending_ttl: Duration,
}

pub(crate) enum Mode {
    Configured(Identity),
    Unconfigured(Error),
}

/// The public paths of the routes (what a browser sees) and where they sit inside the
/// router returned by [`Auth::router`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Paths {
    pub(crate) callback: Route,
    pub(crate) login: Route,
    pub(crate) logout: Route,
    pub(crate) edit_profile: Option<Route>,
    pub(crate) home: String,
    pub(crate) home_absolute: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// Path inside the router.
    pub(crate) route: String,
    /// Path the browser uses.
    pub(crate) public: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut d = f.debug_struct("Auth");
        match &inner.mode {
            Mode::Configured(identity) => d.field("identity", identity),
            Mode::Unconfigured(error) => d.field("unconfigured", error),
        };
        d.field("callback", &inner.paths.callback.public)
            .field("login", &inner.paths.login.public)
            .field("logout", &inner.paths.logout.public)
            .field("home", &inner.paths.home)
            .field("secure_cookies", &inner.secure)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// An `Auth` with the default options: routes beside the redirect URI's path, the
    /// router merged at the root of the app, home page `/`, the built-in pages, and the
    /// cookie key taken from `SESSION_SECRET` (random per process when unset).
    pub fn new(identity: Identity) -> Result<Auth, Error> {
        Self::builder(identity).build()
    }

    /// Starts building an `Auth` with options.
    pub fn builder(identity: Identity) -> AuthBuilder {
        AuthBuilder {
            identity: Ok(identity),
            pages: None,
            home: None,
            nested_at: String::new(),
            secret: None,
        }
    }

    /// Reads the configuration from the environment ([`IdentityConfig::from_env`] and
    /// `SESSION_SECRET`). When settings are missing or wrong, the result is an
    /// unconfigured `Auth` that shows the configuration page on every request (see
    /// [`Auth::unconfigured`]); it never fails.
    pub fn from_env() -> Auth {
        let built = IdentityConfig::from_env().and_then(Identity::new);
        let builder = AuthBuilder {
            identity: built,
            pages: None,
            home: None,
            nested_at: String::new(),
            secret: None,
        };
        match builder.build() {
            Ok(auth) => auth,
            Err(error) => Self::unconfigured(error),
        }
    }

    /// An `Auth` that answers every request with the configuration page (HTTP 500; see
    /// the crate docs) built from `error`: for [`Error::Config`] the page lists its
    /// `missing` settings.
    pub fn unconfigured(error: Error) -> Auth {
        let redirect = std::env::var("REDIRECT_URI")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| identity_core::config::DEFAULT_REDIRECT_URI.to_owned());
        let paths = derive_paths(Some(&redirect), "", None, false)
            .or_else(|_| derive_paths(None, "", None, false))
            .unwrap_or_else(|_| fallback_paths());
        tracing::error!(error = %error, "identity is not configured; every page shows the configuration page");
        Auth {
            inner: Arc::new(AuthInner {
                mode: Mode::Unconfigured(error),
                pages: Arc::new(DefaultPages),
                cookie_key: cookie::Key::from(&[0u8; 64]),
                secure: false,
                paths,
                pending_ttl: Duration::from_secs(600),
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

    /// The public path of the callback (the redirect URI's path).
    pub fn callback_path(&self) -> &str {
        &self.inner.paths.callback.public
    }

    /// The public path of the sign-in route (`…/login`).
    pub fn login_path(&self) -> &str {
        &self.inner.paths.login.public
    }

    /// The public path of the sign-out route (`…/logout`).
    pub fn logout_path(&self) -> &str {
        &self.inner.paths.logout.public
    }

    /// The public path of the B2C edit-profile route, when an edit-profile user flow is
    /// configured. Templates show the link only then.
    pub fn edit_profile_path(&self) -> Option<&str> {
        self.inner
            .paths
            .edit_profile
            .as_ref()
            .map(|r| r.public.as_str())
    }

    /// The public path of the app's home page.
    pub fn home_path(&self) -> &str {
        &self.inner.paths.home
    }

    /// The absolute URL of the home page (the `post_logout_redirect_uri`).
    pub fn home_url(&self) -> &str {
        &self.inner.paths.home_absolute
    }

    /// A layer that makes this `Auth` available to the extractors of every route it
    /// wraps. When the `Auth` is unconfigured it answers every request with the
    /// configuration page instead.
    pub fn layer(&self) -> AuthLayer {
        AuthLayer { auth: self.clone() }
    }

    pub(crate) fn pages(&self) -> &dyn Pages {
        &*self.inner.pages
    }

    /// The error page for `error`, with its status.
    pub(crate) fn error_response(&self, error: &Error) -> Response {
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
        let page = ErrorPage::for_error(
            error,
            &self.inner.paths.home,
            Some(&self.inner.paths.login.public),
        );
        html(status, self.pages().error(&page))
    }

    /// The configuration page for `error` (HTTP 500).
    pub(crate) fn config_response(&self, error: &Error) -> Response {
        html(
            StatusCode::INTERNAL_SERVER_ERROR,
            self.pages().config(&config_page(error)),
        )
    }

    pub(crate) fn login_page(&self, page: &LoginPage) -> String {
        self.pages().login(page)
    }
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
    nested_at: String,
    secret: Option<Vec<u8>>,
}

impl fmt::Debug for AuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthBuilder")
            .field("home", &self.home)
            .field("nested_at", &self.nested_at)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl AuthBuilder {
    /// Renders the login, error and configuration pages with your own templates.
    pub fn pages(mut self, pages: impl Pages) -> Self {
        self.pages = Some(Arc::new(pages));
        self
    }

    /// The public path of the app's home page: where the browser goes after sign-in
    /// without a next link, after a cancelled sign-in, and after sign-out (as an absolute
    /// URL on the redirect URI's origin). Default: the nesting prefix plus `/`.
    pub fn home(mut self, path: impl Into<String>) -> Self {
        self.home = Some(path.into());
        self
    }

    /// Declares that the router of [`Auth::router`] will be nested at `prefix`
    /// (`Router::new().nest(prefix, auth.router())`): the routes inside it lose the
    /// prefix, their public paths keep it. The redirect URI's path must start with it.
    pub fn nested_at(mut self, prefix: impl Into<String>) -> Self {
        self.nested_at = prefix.into();
        self
    }

    /// The key material of the encrypted cookies (pending sign-ins). Every instance of
    /// one app must use the same. Default: the `SESSION_SECRET` environment variable;
    /// unset, a random key per process (with a warning).
    pub fn session_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Builds the `Auth`. Fails with [`Error::Config`] when the redirect URI has no usable
    /// path or is not under the nesting prefix.
    pub fn build(self) -> Result<Auth, Error> {
        let identity = self.identity?;
        let config = identity.config();
        let redirect = config.redirect_uri.as_deref();
        let has_edit = config.b2c.edit_profile.is_some();
        let nested = normalize_prefix(&self.nested_at)?;
        let paths = derive_paths(redirect, &nested, self.home.as_deref(), has_edit)?;
        let secure = match redirect.and_then(|r| url::Url::parse(r).ok()) {
            Some(u) if u.scheme() == "http" => {
                if !is_loopback(&u) {
                    tracing::warn!(
                        redirect_uri = %u,
                        "the redirect URI is plain http on a non-loopback host: cookies are sent \
                         without the Secure flag and sign-ins can be intercepted; use https"
                    );
                }
                false
            }
            _ => true,
        };
        let secret = match self.secret {
            Some(s) => Some(s),
            None => std::env::var(SESSION_SECRET_VAR)
                .ok()
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
        };
        let cookie_key = match secret {
            Some(s) => {
                if s.len() < 32 {
                    tracing::warn!(
                        "SESSION_SECRET is shorter than 32 characters; use a long random value"
                    );
                }
                derive_key(&s)
            }
            None => {
                tracing::warn!(
                    "SESSION_SECRET is not set: using a random key for this process. Sign-ins in \
                     progress will not survive a restart and will fail on other instances; set \
                     SESSION_SECRET (the same value on every instance)"
                );
                cookie::Key::generate()
            }
        };
        let pending_ttl = config.pending_login_ttl;
        tracing::info!(
            redirect_uri = redirect.unwrap_or("(none: device code sign-in)"),
            callback = %paths.callback.public,
            login = %paths.login.public,
            logout = %paths.logout.public,
            "identity routes"
        );
        Ok(Auth {
            inner: Arc::new(AuthInner {
                mode: Mode::Configured(identity),
                pages: self.pages.unwrap_or_else(|| Arc::new(DefaultPages)),
                cookie_key,
                secure,
                paths,
                pending_ttl,
            }),
        })
    }
}

/// The 64-byte cookie key from the secret: SHA-512 over a domain label and the secret.
fn derive_key(secret: &[u8]) -> cookie::Key {
    let mut h = Sha512::new();
    h.update(b"identity-axum pending-sign-in cookie key v1\0");
    h.update(secret);
    let digest = h.finalize();
    cookie::Key::from(&digest)
}

pub(crate) fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn normalize_prefix(prefix: &str) -> Result<String, Error> {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    if !p.starts_with('/') {
        return Err(Error::config(format!(
            "the nesting prefix {prefix:?} must start with '/'"
        )));
    }
    Ok(p.to_owned())
}

fn fallback_paths() -> Paths {
    let r = |p: &str| Route {
        route: p.to_owned(),
        public: p.to_owned(),
    };
    Paths {
        callback: r("/getAToken"),
        login: r("/login"),
        logout: r("/logout"),
        edit_profile: None,
        home: "/".into(),
        home_absolute: "/".into(),
    }
}

/// Routes from the redirect URI, as the Python library derives them: the callback at its
/// path, `login`, `logout` and `edit_profile` beside it.
pub(crate) fn derive_paths(
    redirect_uri: Option<&str>,
    nested_at: &str,
    home: Option<&str>,
    edit_profile: bool,
) -> Result<Paths, Error> {
    let (callback, origin) = match redirect_uri {
        Some(uri) => {
            let u = url::Url::parse(uri).map_err(|e| {
                Error::config(format!("REDIRECT_URI {uri:?} is not an absolute URL: {e}"))
            })?;
            let path = u.path().to_owned();
            if path.is_empty() || path == "/" || path.ends_with('/') {
                return Err(Error::config(format!(
                    "REDIRECT_URI {uri:?} must contain a path that does not end with '/', \
                     e.g. http://localhost:5000/getAToken"
                )));
            }
            (path, Some(u.origin().ascii_serialization()))
        }
        // Device code sign-in: no redirect URI, the callback only polls.
        None => (format!("{nested_at}/auth_response"), None),
    };
    let dir = &callback[..callback.rfind('/').unwrap_or(0)];
    let route = |public: String| -> Result<Route, Error> {
        let inner = public
            .strip_prefix(nested_at)
            .filter(|r| r.starts_with('/'))
            .ok_or_else(|| {
                Error::config(format!(
                    "the route {public:?} (from REDIRECT_URI) is not under the nesting prefix \
                     {nested_at:?}: the redirect URI's path must start with the prefix"
                ))
            })?
            .to_owned();
        Ok(Route {
            route: inner,
            public,
        })
    };
    let home = match home {
        Some(h) if h.starts_with('/') => h.to_owned(),
        Some(h) => {
            return Err(Error::config(format!(
                "the home path {h:?} must start with '/'"
            )))
        }
        None => format!("{nested_at}/"),
    };
    let home_absolute = match &origin {
        Some(o) => format!("{o}{home}"),
        None => home.clone(),
    };
    let paths = Paths {
        callback: route(callback.clone())?,
        login: route(format!("{dir}/login"))?,
        logout: route(format!("{dir}/logout"))?,
        edit_profile: if edit_profile {
            Some(route(format!("{dir}/edit_profile"))?)
        } else {
            None
        },
        home,
        home_absolute,
    };
    let taken = [
        Some(&paths.login),
        Some(&paths.logout),
        paths.edit_profile.as_ref(),
    ];
    if taken
        .iter()
        .flatten()
        .any(|r| r.public == paths.callback.public)
    {
        return Err(Error::config(format!(
            "REDIRECT_URI's path {:?} is one of the sign-in routes; use e.g. /getAToken",
            paths.callback.public
        )));
    }
    Ok(paths)
}

/// The layer of [`Auth::layer`].
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Auth,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service of [`AuthLayer`]: puts the [`Auth`] in the request extensions.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    auth: Auth,
}

type Ready = std::future::Ready<Result<Response, Infallible>>;

impl<S, B> tower::Service<Request<B>> for AuthService<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::Either<Ready, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(error) = self.auth.configuration_error() {
            let mut res = self.auth.config_response(error);
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return futures_util::future::Either::Left(std::future::ready(Ok(res)));
        }
        req.extensions_mut().insert(self.auth.clone());
        futures_util::future::Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_sit_beside_the_redirect_uri() {
        let p = derive_paths(Some("http://localhost:5000/getAToken"), "", None, false).unwrap();
        assert_eq!(p.callback.route, "/getAToken");
        assert_eq!(p.login.route, "/login");
        assert_eq!(p.logout.public, "/logout");
        assert_eq!(p.home, "/");
        assert_eq!(p.home_absolute, "http://localhost:5000/");
        assert!(p.edit_profile.is_none());

        let p = derive_paths(Some("https://h.example/auth/callback"), "", None, true).unwrap();
        assert_eq!(p.callback.route, "/auth/callback");
        assert_eq!(p.login.route, "/auth/login");
        assert_eq!(p.edit_profile.unwrap().route, "/auth/edit_profile");
        assert_eq!(p.home_absolute, "https://h.example/");
    }

    #[test]
    fn nesting_strips_the_prefix_from_routes_only() {
        let p = derive_paths(Some("http://h:8000/app/getAToken"), "/app", None, false).unwrap();
        assert_eq!(p.callback.route, "/getAToken");
        assert_eq!(p.callback.public, "/app/getAToken");
        assert_eq!(p.login.route, "/login");
        assert_eq!(p.login.public, "/app/login");
        assert_eq!(p.home, "/app/");
        assert_eq!(p.home_absolute, "http://h:8000/app/");
        assert!(derive_paths(Some("http://h/other/getAToken"), "/app", None, false).is_err());
        assert!(derive_paths(Some("http://h/appx/getAToken"), "/app", None, false).is_err());
    }

    #[test]
    fn redirect_uri_needs_a_path() {
        for bad in [
            "http://h",
            "http://h/",
            "http://h/x/",
            "http://h/login",
            "http://h/a/logout",
        ] {
            assert!(derive_paths(Some(bad), "", None, false).is_err(), "{bad}");
        }
    }
}
