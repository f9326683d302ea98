//! [`Auth`]: the adapter's handle over identity-core's web engine, and its builder.

use identity_core::sessions::{MemoryBackend, SessionBackend};
use identity_core::web::{ApiAuth, SignInAnswer, WebAuth};
use identity_core::{Error, Identity, IdentityConfig, Pages};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The sign-in handle of a Rocket app, managed by [`IdentityFairing`](crate::IdentityFairing):
/// identity-core's web engine ([`WebAuth`], through [`core`](Auth::core)), the web-API
/// rules ([`ApiAuth`], through [`api`](Auth::api)) and the session store. Cheap to clone.
///
/// Handlers reach it as `&State<Auth>`, e.g. for the paths of the routes:
/// `auth.core().route_path(Route::Logout)`.
///
/// An `Auth` may be *unconfigured* ([`Auth::from_env`] with settings missing, or the
/// fairing's [`show_config_page_when_unconfigured`](crate::IdentityFairing::show_config_page_when_unconfigured)):
/// every page then answers with the configuration page naming what is missing.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    core: WebAuth,
    api: ApiAuth,
    backend: Option<Arc<dyn SessionBackend>>,
    cookie_key: cookie::Key,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("core", &self.inner.core)
            .field("api", &self.inner.api)
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

/// The label of the key that seals the session cookie (derived from the session secret).
const SESSION_COOKIE_LABEL: &[u8] = b"identity-rocket session cookie v1";

impl Auth {
    /// From the environment (`CLIENT_ID`, `AUTHORITY`, ..., `SESSION_SECRET`,
    /// `API_AUDIENCE`). Never fails: with settings missing or wrong the result is
    /// unconfigured.
    pub fn from_env() -> Auth {
        Self::builder_from(IdentityConfig::from_env().and_then(Identity::new))
            .build_or_unconfigured()
    }

    /// The handle for `identity` with default options.
    pub fn new(identity: Identity) -> Result<Auth, Error> {
        Self::builder(identity).build()
    }

    /// Starts building a handle with options.
    pub fn builder(identity: Identity) -> AuthBuilder {
        Self::builder_from(Ok(identity))
    }

    fn builder_from(identity: Result<Identity, Error>) -> AuthBuilder {
        AuthBuilder {
            identity,
            options: Options::default(),
        }
    }

    /// A handle that answers every request with the configuration page built from `error`.
    pub fn unconfigured(error: Error) -> Auth {
        Options::default().unconfigured(error)
    }

    /// identity-core's web engine: routes, cookies, pages, every sign-in decision.
    pub fn core(&self) -> &WebAuth {
        &self.inner.core
    }

    /// The web-API rules (accepted audiences, bearer-token validation, on-behalf-of).
    pub fn api(&self) -> &ApiAuth {
        &self.inner.api
    }

    /// The session store, once chosen (by the builder, or by the fairing at ignite).
    pub fn session_backend(&self) -> Option<&Arc<dyn SessionBackend>> {
        self.inner.backend.as_ref()
    }

    pub(crate) fn with_backend(self, backend: Arc<dyn SessionBackend>) -> Auth {
        let inner = &self.inner;
        Auth {
            inner: Arc::new(Inner {
                core: inner.core.clone(),
                api: inner.api.clone(),
                backend: Some(backend),
                cookie_key: inner.cookie_key.clone(),
            }),
        }
    }

    pub(crate) fn cookie_key(&self) -> &cookie::Key {
        &self.inner.cookie_key
    }

    fn assemble(core: WebAuth, api: ApiAuth, backend: Option<Arc<dyn SessionBackend>>) -> Auth {
        let cookie_key = cookie::Key::from(&core.derive_key(SESSION_COOKIE_LABEL));
        Auth {
            inner: Arc::new(Inner {
                core,
                api,
                backend,
                cookie_key,
            }),
        }
    }
}

/// The options of an [`Auth`], shared by [`AuthBuilder`] and the fairing.
#[derive(Clone, Default)]
pub(crate) struct Options {
    pub(crate) pages: Option<Arc<dyn Pages>>,
    pub(crate) home: Option<String>,
    pub(crate) route_prefix: Option<String>,
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) idle: Option<Duration>,
    pub(crate) absolute: Option<Duration>,
    pub(crate) answer: Option<SignInAnswer>,
    pub(crate) audiences: Vec<String>,
    pub(crate) backend: Option<Arc<dyn SessionBackend>>,
}

impl Options {
    pub(crate) fn build(self, identity: Identity) -> Result<Auth, Error> {
        let mut b = WebAuth::builder(identity.clone());
        if let Some(p) = self.pages {
            b = b.shared_pages(p);
        }
        if let Some(h) = self.home {
            b = b.home(h);
        }
        if let Some(p) = self.route_prefix {
            b = b.route_prefix(p);
        }
        if let Some(s) = self.secret {
            b = b.session_secret(s);
        }
        if let Some(d) = self.idle {
            b = b.idle_timeout(d);
        }
        if let Some(d) = self.absolute {
            b = b.absolute_timeout(d);
        }
        if let Some(a) = self.answer {
            b = b.sign_in_answer(a);
        }
        let core = b.build()?;
        let api = ApiAuth::builder(identity).audiences(self.audiences).build();
        Ok(Auth::assemble(core, api, self.backend))
    }

    pub(crate) fn unconfigured(self, error: Error) -> Auth {
        let mut b = WebAuth::builder_from(Err(error.clone()));
        if let Some(p) = self.pages {
            b = b.shared_pages(p);
        }
        let backend: Arc<dyn SessionBackend> = Arc::new(MemoryBackend::with_capacity(1));
        Auth::assemble(
            b.build_or_unconfigured(),
            ApiAuth::unconfigured(error),
            Some(backend),
        )
    }
}

/// Options of an [`Auth`]; from [`Auth::builder`]. They mirror identity-core's
/// [`WebAuthBuilder`](identity_core::web::WebAuthBuilder) and add the web API's audiences
/// and the session store.
#[must_use]
pub struct AuthBuilder {
    identity: Result<Identity, Error>,
    options: Options,
}

impl fmt::Debug for AuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthBuilder")
            .field("home", &self.options.home)
            .field("audiences", &self.options.audiences)
            .field("secret", &self.options.secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl AuthBuilder {
    /// Renders the login, error and configuration pages with your own templates.
    pub fn pages(mut self, pages: impl Pages) -> Self {
        self.options.pages = Some(Arc::new(pages));
        self
    }

    /// The public path of the home page (after sign-in without a next link, after
    /// sign-out). Default `/`.
    pub fn home(mut self, path: impl Into<String>) -> Self {
        self.options.home = Some(path.into());
        self
    }

    /// Without a redirect URI (device code sign-in), the routes sit under this prefix.
    pub fn route_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.options.route_prefix = Some(prefix.into());
        self
    }

    /// The secret that keys the cookies; the same on every instance. Default:
    /// `SESSION_SECRET`; unset, a random key per process (with a warning).
    pub fn session_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.options.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Ends sessions after `idle` without a request. Default 4 hours.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.options.idle = Some(idle);
        self
    }

    /// Ends a sign-in this long after it completed. Default 7 days.
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.options.absolute = Some(absolute);
        self
    }

    /// How an unauthenticated page view is answered (login page or redirect).
    pub fn sign_in_answer(mut self, answer: SignInAnswer) -> Self {
        self.options.answer = Some(answer);
        self
    }

    /// The `aud` values bearer tokens must carry. Default: `API_AUDIENCE`, else the client
    /// id and `api://{client id}`.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps sessions in `backend` instead of the store the `session_store` setting names.
    pub fn session_backend(mut self, backend: impl SessionBackend) -> Self {
        self.options.backend = Some(Arc::new(backend));
        self
    }

    /// Builds the handle; fails with [`Error::Config`] when the redirect URI has no usable
    /// path.
    pub fn build(self) -> Result<Auth, Error> {
        self.options.build(self.identity?)
    }

    /// Builds the handle, or an unconfigured one showing the configuration page.
    pub fn build_or_unconfigured(self) -> Auth {
        let fallback = self.options.clone();
        match self.build() {
            Ok(auth) => auth,
            Err(error) => fallback.unconfigured(error),
        }
    }
}
