//! [`Auth`]: the adapter's handle, its options, and the layer that hands it to extractors.

use crate::rejection::html;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use identity_core::{
    ConfigPage, DefaultPages, Error, ErrorPage, Identity, IdentityConfig, LoginPage, Pages,
    RoutePlan,
};
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
    pub(crate) paths: RoutePlan,
    pub(crate) router_paths: RouterPaths,
    pub(crate) pending_ttl: Duration,
}

pub(crate) enum Mode {
    Configured(Identity),
    Unconfigured(Error),
}

/// Where the routes sit inside the router returned by [`Auth::router`]: their public
/// paths ([`RoutePlan`]) without the nesting prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouterPaths {
    pub(crate) callback: String,
    pub(crate) login: String,
    pub(crate) logout: String,
    pub(crate) edit_profile: Option<String>,
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
        let (paths, router_paths) = nested_plan(Some(&redirect), "", None, false)
            .or_else(|_| nested_plan(None, "", None, false))
            .unwrap_or_else(|_| {
                let plan = RoutePlan::fallback();
                let router = RouterPaths {
                    callback: plan.callback.clone(),
                    login: plan.login.clone(),
                    logout: plan.logout.clone(),
                    edit_profile: None,
                };
                (plan, router)
            });
        tracing::error!(error = %error, "identity is not configured; every page shows the configuration page");
        Auth {
            inner: Arc::new(AuthInner {
                mode: Mode::Unconfigured(error),
                pages: Arc::new(DefaultPages),
                cookie_key: cookie::Key::from(&[0u8; 64]),
                secure: false,
                paths,
                router_paths,
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
        &self.inner.paths.callback
    }

    /// The public path of the sign-in route (`…/login`).
    pub fn login_path(&self) -> &str {
        &self.inner.paths.login
    }

    /// The public path of the sign-out route (`…/logout`).
    pub fn logout_path(&self) -> &str {
        &self.inner.paths.logout
    }

    /// The public path of the B2C edit-profile route, when an edit-profile user flow is
    /// configured. Templates show the link only then.
    pub fn edit_profile_path(&self) -> Option<&str> {
        self.inner.paths.edit_profile.as_deref()
    }

    /// The public path of the app's home page.
    pub fn home_path(&self) -> &str {
        &self.inner.paths.home
    }

    /// The absolute URL of the home page (the `post_logout_redirect_uri`).
    pub fn home_url(&self) -> &str {
        &self.inner.paths.home_url
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
        let page =
            ErrorPage::for_error(error, &self.inner.paths.home, Some(&self.inner.paths.login));
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
        let (paths, router_paths) = nested_plan(redirect, &nested, self.home.as_deref(), has_edit)?;
        paths.warn_if_insecure();
        let secure = paths.secure_cookies;
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
            callback = %paths.callback,
            login = %paths.login,
            logout = %paths.logout,
            "identity routes"
        );
        Ok(Auth {
            inner: Arc::new(AuthInner {
                mode: Mode::Configured(identity),
                pages: self.pages.unwrap_or_else(|| Arc::new(DefaultPages)),
                cookie_key,
                secure,
                paths,
                router_paths,
                pending_ttl,
            }),
        })
    }
}

/// The 64-byte cookie key from the secret ([`identity_core::derive_key`]: SHA-512 over a
/// domain label, a zero byte and the secret).
fn derive_key(secret: &[u8]) -> cookie::Key {
    cookie::Key::from(&identity_core::derive_key(
        b"identity-axum pending-sign-in cookie key v1",
        secret,
    ))
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

/// The routes from the redirect URI ([`RoutePlan`]), for a router nested at `nested_at`
/// (normalized: empty or `/x` without a trailing `/`): the public paths keep the prefix,
/// the router's paths lose it. The home page defaults to the prefix plus `/`; without a
/// redirect URI (device code sign-in) the routes sit under the prefix.
pub(crate) fn nested_plan(
    redirect_uri: Option<&str>,
    nested_at: &str,
    home: Option<&str>,
    edit_profile: bool,
) -> Result<(RoutePlan, RouterPaths), Error> {
    let default_home = format!("{nested_at}/");
    let home = home.unwrap_or(&default_home);
    let mut plan = RoutePlan::from_redirect_uri(redirect_uri, Some(home), edit_profile)?;
    if redirect_uri.is_none() {
        let routes = [&mut plan.callback, &mut plan.login, &mut plan.logout];
        for path in routes.into_iter().chain(plan.edit_profile.as_mut()) {
            path.insert_str(0, nested_at);
        }
    }
    let route = |public: &str| -> Result<String, Error> {
        public
            .strip_prefix(nested_at)
            .filter(|r| r.starts_with('/'))
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::config(format!(
                    "the route {public:?} (from REDIRECT_URI) is not under the nesting prefix \
                     {nested_at:?}: the redirect URI's path must start with the prefix"
                ))
            })
    };
    let router = RouterPaths {
        callback: route(&plan.callback)?,
        login: route(&plan.login)?,
        logout: route(&plan.logout)?,
        edit_profile: plan.edit_profile.as_deref().map(route).transpose()?,
    };
    Ok((plan, router))
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
        let (p, r) = nested_plan(Some("http://localhost:5000/getAToken"), "", None, false).unwrap();
        assert_eq!(r.callback, "/getAToken");
        assert_eq!(r.login, "/login");
        assert_eq!(p.logout, "/logout");
        assert_eq!(p.home, "/");
        assert_eq!(p.home_url, "http://localhost:5000/");
        assert!(p.edit_profile.is_none());

        let (p, r) = nested_plan(Some("https://h.example/auth/callback"), "", None, true).unwrap();
        assert_eq!(r.callback, "/auth/callback");
        assert_eq!(r.login, "/auth/login");
        assert_eq!(r.edit_profile.unwrap(), "/auth/edit_profile");
        assert_eq!(p.home_url, "https://h.example/");
    }

    #[test]
    fn nesting_strips_the_prefix_from_routes_only() {
        let (p, r) = nested_plan(Some("http://h:8000/app/getAToken"), "/app", None, false).unwrap();
        assert_eq!(r.callback, "/getAToken");
        assert_eq!(p.callback, "/app/getAToken");
        assert_eq!(r.login, "/login");
        assert_eq!(p.login, "/app/login");
        assert_eq!(p.home, "/app/");
        assert_eq!(p.home_url, "http://h:8000/app/");
        assert!(nested_plan(Some("http://h/other/getAToken"), "/app", None, false).is_err());
        assert!(nested_plan(Some("http://h/appx/getAToken"), "/app", None, false).is_err());
    }

    #[test]
    fn device_code_routes_sit_under_the_prefix() {
        let (p, r) = nested_plan(None, "/app", None, true).unwrap();
        assert_eq!(p.callback, "/app/auth_response");
        assert_eq!(r.callback, "/auth_response");
        assert_eq!(p.login, "/app/login");
        assert_eq!(r.login, "/login");
        assert_eq!(p.edit_profile.as_deref(), Some("/app/edit_profile"));
        assert_eq!(r.edit_profile.as_deref(), Some("/edit_profile"));
        assert_eq!(p.home, "/app/");
        assert_eq!(p.home_url, "/app/");
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
            assert!(nested_plan(Some(bad), "", None, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn cookie_key_is_the_one_earlier_releases_derived() {
        use sha2::{Digest, Sha512};
        let mut h = Sha512::new();
        h.update(b"identity-axum pending-sign-in cookie key v1\0");
        h.update(b"a long random session secret");
        let earlier = cookie::Key::from(&h.finalize());
        assert_eq!(
            derive_key(b"a long random session secret").master(),
            earlier.master()
        );
    }
}
