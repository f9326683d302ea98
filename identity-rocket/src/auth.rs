//! [`Auth`]: the adapter's handle over identity-core's web engine, and its builder.

use identity_core::sessions::SessionBackend;
use identity_core::web::{ApiAuth, WebAuth, WebAuthBuilder};
use identity_core::{Error, Identity, IdentityConfig};
use std::fmt;
use std::sync::Arc;

/// The sign-in handle of a Rocket app, managed by [`IdentityFairing`](crate::IdentityFairing):
/// identity-core's web engine ([`core`](Auth::core)), the web-API rules
/// ([`api`](Auth::api)) and the session store. Cheap to clone. Handlers reach it as
/// `&State<Auth>`, e.g. `auth.core().route_path(Route::Logout)`.
///
/// It may be *unconfigured* ([`Auth::from_env`] with settings missing): every page then
/// answers with the configuration page naming what is missing.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    core: WebAuth,
    api: ApiAuth,
    backend: Option<Arc<dyn SessionBackend>>,
    /// The key sealing the session cookie (derived once from the session secret).
    cookie_key: cookie::Key,
    /// Sealed session cookie values opened before, and the session id each holds: a
    /// value authenticated once opens the same way every time, so a page view looks it
    /// up instead of decoding and decrypting it again. Bounded ([`MAX_OPENED`]).
    /// Keyed by values that were authenticated: the fast hash suffices.
    opened: std::sync::RwLock<
        std::collections::HashMap<Box<str>, CookieId, foldhash::fast::RandomState>,
    >,
}

/// A session id as the session cookie carries it (43 URL-safe base64 characters: 32
/// random bytes), held without an allocation.
#[derive(Clone, Copy)]
pub(crate) struct CookieId([u8; 43]);

impl CookieId {
    /// `id`, if it has the form of a session id.
    pub(crate) fn parse(id: &str) -> Option<Self> {
        let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        let bytes: [u8; 43] = id.as_bytes().try_into().ok()?;
        bytes.iter().all(|b| valid(*b)).then_some(CookieId(bytes))
    }

    /// The id.
    pub(crate) fn as_str(&self) -> &str {
        // Only URL-safe ASCII was accepted.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Most sealed cookie values [`Auth`] remembers; when full, it starts over.
const MAX_OPENED: usize = 10_000;

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (core, api) = (&self.inner.core, &self.inner.api);
        f.debug_struct("Auth")
            .field("core", core)
            .field("api", api)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// From the environment (`CLIENT_ID`, `AUTHORITY`, ..., `SESSION_SECRET`,
    /// `API_AUDIENCE`). Never fails: with settings missing or wrong it is unconfigured.
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

    pub(crate) fn builder_from(identity: Result<Identity, Error>) -> AuthBuilder {
        AuthBuilder {
            core: WebAuth::builder_from(identity.clone()),
            identity,
            audiences: Vec::new(),
            backend: None,
        }
    }

    /// identity-core's web engine: routes, cookies, pages, every sign-in decision.
    pub fn core(&self) -> &WebAuth {
        &self.inner.core
    }

    /// The web-API rules (accepted audiences, bearer tokens, on-behalf-of).
    pub fn api(&self) -> &ApiAuth {
        &self.inner.api
    }

    /// The session store, once chosen (by the builder, or by the fairing at ignite).
    pub fn session_backend(&self) -> Option<&Arc<dyn SessionBackend>> {
        self.inner.backend.as_ref()
    }

    pub(crate) fn with_backend(&self, backend: Arc<dyn SessionBackend>) -> Auth {
        let (core, api) = (self.inner.core.clone(), self.inner.api.clone());
        // The engine ends sessions of logout notifications and coordinates refreshes in it.
        core.use_session_backend(backend.clone());
        Auth::assemble(core, api, Some(backend))
    }

    fn assemble(core: WebAuth, api: ApiAuth, backend: Option<Arc<dyn SessionBackend>>) -> Auth {
        let cookie_key = cookie::Key::from(&core.derive_key(crate::fairing::SECRET_KEY_LABEL));
        let inner = Arc::new(Inner {
            core,
            api,
            backend,
            cookie_key,
            opened: Default::default(),
        });
        Auth { inner }
    }

    /// The session id a sealed cookie value opened to before ([`Auth::remember_opened`]).
    pub(crate) fn opened(&self, sealed: &str) -> Option<CookieId> {
        let map = self.inner.opened.read();
        let map = map.unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(sealed).copied()
    }

    /// Remembers that `sealed`, authenticated by the cookie key, holds session `id`.
    pub(crate) fn remember_opened(&self, sealed: &str, id: CookieId) {
        let map = self.inner.opened.write();
        let mut map = map.unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_OPENED {
            map.clear();
        }
        map.insert(sealed.into(), id);
    }

    /// The key that seals the session cookie: the one the fairing gives Rocket as
    /// `secret_key`, so the cookie is a Rocket private cookie (`jar.get_private`) too.
    pub(crate) fn cookie_key(&self) -> &cookie::Key {
        &self.inner.cookie_key
    }
}

/// Options of an [`Auth`]; from [`Auth::builder`]: identity-core's [`WebAuthBuilder`]
/// options ([`core`](AuthBuilder::core)), the web API's audiences, the session store.
#[must_use]
pub struct AuthBuilder {
    core: WebAuthBuilder,
    identity: Result<Identity, Error>,
    audiences: Vec<String>,
    backend: Option<Arc<dyn SessionBackend>>,
}

impl AuthBuilder {
    /// Sets options of the engine with identity-core's [`WebAuthBuilder`]: your own pages,
    /// the home page, the session secret, idle and absolute timeouts, the sign-in answer:
    /// `Auth::builder(identity).core(|web| web.pages(MyPages).idle_timeout(hour))`.
    pub fn core(mut self, f: impl FnOnce(WebAuthBuilder) -> WebAuthBuilder) -> Self {
        self.core = f(self.core);
        self
    }

    /// The `aud` values bearer tokens must carry. Default `API_AUDIENCE`, else the client
    /// id and `api://{client id}`.
    pub fn audiences<S: Into<String>>(mut self, audiences: impl IntoIterator<Item = S>) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps sessions in `backend` instead of the store `session_store` names.
    pub fn session_backend(mut self, backend: impl SessionBackend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// Builds the handle; fails with [`Error::Config`] on a wrong identity or redirect URI.
    pub fn build(self) -> Result<Auth, Error> {
        let identity = self.identity?;
        let core = self.core.build()?;
        let api = ApiAuth::builder(identity).audiences(self.audiences).build();
        Ok(Auth::assemble(core, api, self.backend))
    }

    /// Builds the handle, or an unconfigured one that shows the configuration page.
    pub fn build_or_unconfigured(self) -> Auth {
        let core = self.core.build_or_unconfigured();
        let api = match (core.configuration_error(), self.identity) {
            (None, Ok(identity)) => ApiAuth::builder(identity).audiences(self.audiences).build(),
            (Some(error), _) => ApiAuth::unconfigured(error.clone()),
            (None, Err(error)) => ApiAuth::unconfigured(error),
        };
        Auth::assemble(core, api, self.backend)
    }
}
