//! [`IdentityFairing`]: settings at ignite, the managed [`Auth`], routes, catchers, and
//! the session written back as each response leaves.

use crate::auth::{Auth, AuthBuilder};
use crate::response::{catchers, render};
use crate::session::{request_state, Session};
use identity_core::sessions::{
    MemoryBackend, SessionBackend, StoreUrl, DEFAULT_COMMAND_TIMEOUT, DEFAULT_MEMORY_CAPACITY,
};
use identity_core::web::api::split_audiences;
use identity_core::web::SESSION_SECRET_VAR;
use identity_core::{Error, Identity, IdentityConfig};
use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::figment::{value::Value, Figment};
use rocket::{Build, Request, Response, Rocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The name of the settings table in the figment (`[default.identity]` in `Rocket.toml`).
pub const TABLE: &str = "identity";

/// The settings keys, as environment variable names. In the figment table they are the
/// same names in lower case (`client_id`, `authority`, ...).
#[rustfmt::skip]
pub const SETTINGS: &[&str] = &[
    "CLIENT_ID", "CLIENT_SECRET", "CLIENT_CERTIFICATE", "CLIENT_PRIVATE_KEY", "AUTHORITY",
    "OIDC_AUTHORITY", "B2C_TENANT_NAME", "SIGNUPSIGNIN_USER_FLOW", "EDITPROFILE_USER_FLOW",
    "RESETPASSWORD_USER_FLOW", "B2C_DOMAIN", "REDIRECT_URI", "SESSION_STORE", "SESSION_SECRET",
    "API_AUDIENCE",
];

/// The label of Rocket's `secret_key` (also the session cookie's key) under the secret.
pub(crate) const SECRET_KEY_LABEL: &[u8] = b"identity-rocket secret_key v1";

type Configure = Arc<dyn Fn(AuthBuilder) -> AuthBuilder + Send + Sync>;

/// Sets up sign-in on a Rocket app (see the crate docs for the settings). At ignite it
/// reads the `[default.identity]` table of the figment (and, with
/// [`from_env`](Self::from_env), the environment), validates it, opens the session store,
/// and **aborts launch** with a precise message when something is wrong, unless
/// [`show_config_page_when_unconfigured`](Self::show_config_page_when_unconfigured). It
/// manages the [`Auth`], mounts the routes the engine names, registers the catchers
/// ([`catchers`](crate::catchers)), derives Rocket's `secret_key` from `SESSION_SECRET`, and
/// writes each request's session back as its response leaves.
#[must_use]
#[derive(Default)]
pub struct IdentityFairing {
    /// Environment variables override the table.
    env: bool,
    prepared: Option<Auth>,
    configure: Option<Configure>,
    backend: Option<Arc<dyn SessionBackend>>,
    config_page: bool,
    no_catchers: bool,
    reserved: Vec<String>,
}

impl IdentityFairing {
    /// The setting `key` (its environment variable name) from the figment's table, or the
    /// environment first with [`from_env`](Self::from_env); `SESSION_SECRET` always.
    fn setting(&self, figment: &Figment, key: &str) -> Option<String> {
        let env = || std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        let path = format!("{TABLE}.{}", key.to_ascii_lowercase());
        let table = || match figment.find_value(&path).ok()? {
            Value::String(_, s) => Some(s),
            other => (other.to_i128().map(|n| n.to_string()))
                .or_else(|| other.to_bool().map(|b| b.to_string())),
        };
        let from_table = || table().filter(|v| !v.trim().is_empty());
        match self.env {
            true => env().or_else(from_table),
            false => from_table().or_else(|| env().filter(|_| key == SESSION_SECRET_VAR)),
        }
    }

    /// Reads the settings from the `[default.identity]` table of the figment (in
    /// `Rocket.toml`, or `ROCKET_IDENTITY={client_id="..",...}`) and aborts launch when
    /// they are missing or wrong. `SESSION_SECRET` is also read from the environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Like [`new`](Self::new), and environment variables (`CLIENT_ID`, `AUTHORITY`, ...,
    /// the names in [`SETTINGS`]) override the table: the samples' way, with a `.env` file
    /// loaded by the app.
    pub fn from_env() -> Self {
        Self {
            env: true,
            ..Self::new()
        }
    }

    /// Uses a prepared [`Auth`] (custom HTTP client, certificate credential, ... see
    /// [`Auth::builder`]); the session store is the `Auth`'s, else the one `session_store`
    /// (table) or `SESSION_STORE` (environment) names.
    pub fn with_auth(auth: Auth) -> Self {
        Self {
            env: true,
            prepared: Some(auth),
            ..Self::new()
        }
    }

    /// Instead of aborting launch on missing or wrong settings, launch and answer every
    /// request with the configuration page ("Almost there", naming the missing settings),
    /// as the samples do. A session store that cannot be reached still aborts launch.
    pub fn show_config_page_when_unconfigured(mut self) -> Self {
        self.config_page = true;
        self
    }

    /// Sets options of the [`Auth`] built from the settings (pages, timeouts, the session
    /// store, ...): `IdentityFairing::new().configure(|auth| auth.core(|web| web.pages(MyPages)))`.
    pub fn configure(
        mut self,
        f: impl Fn(AuthBuilder) -> AuthBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(f));
        self
    }

    /// Keeps sessions in `backend` instead of the store `session_store` names.
    pub fn session_backend(mut self, backend: impl SessionBackend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// Declares paths the app serves itself: a sign-in route derived from the redirect URI
    /// that falls on one of them is a configuration error (instead of a route collision).
    pub fn app_paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.reserved.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Registers no catchers: the app registers its own for the statuses in
    /// [`CAUGHT_STATUSES`](crate::CAUGHT_STATUSES) and calls
    /// [`failure_response`](crate::failure_response) from them.
    pub fn without_catchers(mut self) -> Self {
        self.no_catchers = true;
        self
    }

    /// Checks the settings in `figment` as ignite will, opening the session store: the
    /// error is the message launch aborts with.
    pub async fn validate(&self, figment: &Figment) -> Result<(), Error> {
        self.build(figment).await.map(|_| ())
    }

    /// In table terms: the settings named in lower case, and where to set missing ones.
    fn explain(&self, error: Error) -> Error {
        let (false, Error::Config { message, missing }) = (self.env, &error) else {
            return error;
        };
        let missing: Vec<String> = missing.iter().map(|m| m.to_ascii_lowercase()).collect();
        let message = if message.starts_with("missing settings") && !missing.is_empty() {
            let table = "set them in the [default.identity] table of Rocket.toml";
            format!("missing settings: {}; {table}", missing.join(", "))
        } else {
            let mut names = SETTINGS.to_vec();
            names.sort_by_key(|n| std::cmp::Reverse(n.len()));
            let lower = |m: String, n: &&str| m.replace(n, &n.to_ascii_lowercase());
            names.iter().fold(message.clone(), lower)
        };
        Error::Config { message, missing }
    }

    /// The [`AuthBuilder`] for `identity` with the settings and [`configure`](Self::configure).
    fn builder(&self, figment: &Figment, identity: Result<Identity, Error>) -> AuthBuilder {
        let mut b = Auth::builder_from(identity);
        if let Some(secret) = self.setting(figment, SESSION_SECRET_VAR) {
            b = b.core(|web| web.session_secret(secret));
        }
        if let Some(list) = self.setting(figment, "API_AUDIENCE") {
            b = b.audiences(split_audiences(&list));
        }
        match &self.configure {
            Some(f) => f(b),
            None => b,
        }
    }

    async fn build(&self, figment: &Figment) -> Result<Auth, Error> {
        let auth = match &self.prepared {
            Some(auth) => auth.clone(),
            None => {
                let identity = IdentityConfig::from_lookup(|k| self.setting(figment, k))
                    .and_then(Identity::new);
                self.builder(figment, identity)
                    .build()
                    .map_err(|e| self.explain(e))?
            }
        };
        for (_, path) in auth.core().all_routes() {
            // Rocket reads `<…>` as a dynamic segment, decodes `%`, and collapses `//`.
            let unroutable = path.contains(['%', '<', '>']) || path.contains("//");
            if unroutable || self.reserved.iter().any(|r| r == path) {
                return Err(self.explain(Error::config(format!(
                    "REDIRECT_URI gives the sign-in route {path:?}, which is one of the app's own \
                     pages or cannot be routed (no '%', '<', '>' or '//'); use a redirect URI \
                     such as http://localhost:5000/getAToken"
                ))));
            }
        }
        match (auth.session_backend(), &self.backend) {
            (Some(_), _) => return Ok(auth),
            (None, Some(backend)) => return Ok(auth.with_backend(backend.clone())),
            (None, None) => {}
        }
        let setting = self.setting(figment, "SESSION_STORE").unwrap_or_default();
        let url = StoreUrl::parse(&setting).map_err(|e| self.explain(e))?;
        let opened = url.open(DEFAULT_MEMORY_CAPACITY, DEFAULT_COMMAND_TIMEOUT);
        Ok(auth.with_backend(opened.await.map_err(|e| self.explain(e))?))
    }

    /// The unconfigured [`Auth`] showing the configuration page for `error`.
    fn unconfigured(&self, figment: &Figment, error: Error) -> Auth {
        let auth = self.builder(figment, Err(error)).build_or_unconfigured();
        auth.with_backend(Arc::new(MemoryBackend::with_capacity(1)))
    }

    /// Rocket's `secret_key` (private cookies of the app) from `SESSION_SECRET`, unless the
    /// app configured its own and no `SESSION_SECRET` is set.
    fn secret_key(&self, figment: &Figment, auth: &Auth) -> Option<String> {
        use base64::Engine;
        // Rocket's defaults carry a zeroed key: only a non-zero one was configured.
        let configured = figment
            .extract_inner::<rocket::config::SecretKey>(rocket::Config::SECRET_KEY)
            .is_ok_and(|k| !k.is_zero());
        if configured && self.setting(figment, SESSION_SECRET_VAR).is_none() {
            return None;
        }
        let key = auth.core().derive_key(SECRET_KEY_LABEL);
        Some(base64::engine::general_purpose::STANDARD.encode(key))
    }
}

#[rocket::async_trait]
impl Fairing for IdentityFairing {
    fn info(&self) -> Info {
        Info {
            name: "identity",
            kind: Kind::Ignite | Kind::Response,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        let figment = rocket.figment().clone();
        let auth = match self.build(&figment).await {
            Ok(auth) => auth,
            // Settings to fix show on the page; a session store that cannot be reached is
            // not a setting: launching without it would lose every session.
            Err(error @ Error::Config { .. }) if self.config_page => {
                self.unconfigured(&figment, error)
            }
            Err(error) => {
                tracing::error!(%error, "identity: launch aborted");
                rocket::log::private::error!(target: "identity_rocket", "identity: {error}");
                return Err(rocket);
            }
        };
        let mut rocket = rocket;
        if let Some(key) = self.secret_key(&figment, &auth) {
            rocket = rocket.configure(figment.merge((rocket::Config::SECRET_KEY, key)));
        }
        let mut rocket = rocket.mount("/", crate::routes::routes(&auth)).manage(auth);
        if !self.no_catchers {
            rocket = rocket.register("/", catchers());
        }
        Ok(rocket)
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Some(auth) = req.rocket().state::<Auth>() else {
            return;
        };
        let state = request_state(req);
        // Rocket's Shield forbids framing; the front-channel logout page must be framed.
        if state.frameable.load(Ordering::Relaxed) {
            res.remove_header("X-Frame-Options");
        }
        if let Some(page) = auth.core().not_configured_response() {
            *res = render(page);
            return;
        }
        if !state.may_commit() {
            return;
        }
        let Some(session) = Session::of(req, auth) else {
            return;
        };
        match session.commit().await {
            Ok(Some(set_cookie)) => res.adjoin_raw_header("Set-Cookie", set_cookie),
            Ok(None) => {}
            Err(e) => *res = render(auth.core().error_response(&Error::Store(e.0))),
        }
    }
}
