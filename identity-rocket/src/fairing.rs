//! [`IdentityFairing`]: reads the settings at ignite, validates them, manages [`Auth`],
//! mounts the routes the engine names, registers the catchers, and writes the session
//! back as each response leaves.

use crate::auth::{Auth, Options};
use crate::guards::request_state;
use crate::response::{catchers, render};
use crate::session::Session;
use identity_core::sessions::{
    SessionBackend, StoreUrl, DEFAULT_COMMAND_TIMEOUT, DEFAULT_MEMORY_CAPACITY,
};
use identity_core::web::api::split_audiences;
use identity_core::web::SESSION_SECRET_VAR;
use identity_core::{Error, Identity, IdentityConfig, Pages};
use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::figment::Figment;
use rocket::{Build, Request, Response, Rocket};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The name of the settings table in the figment (`[default.identity]` in `Rocket.toml`).
pub const TABLE: &str = "identity";

/// The settings keys, as environment variable names. In the figment table they are the
/// same names in lower case (`client_id`, `authority`, ...).
pub const SETTINGS: &[&str] = &[
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CLIENT_CERTIFICATE",
    "CLIENT_PRIVATE_KEY",
    "AUTHORITY",
    "OIDC_AUTHORITY",
    "B2C_TENANT_NAME",
    "SIGNUPSIGNIN_USER_FLOW",
    "EDITPROFILE_USER_FLOW",
    "RESETPASSWORD_USER_FLOW",
    "B2C_DOMAIN",
    "REDIRECT_URI",
    "SESSION_STORE",
    "SESSION_SECRET",
    "API_AUDIENCE",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Figment,
    FigmentAndEnv,
}

/// Sets up sign-in on a Rocket app (see the crate docs for the settings). At ignite it
/// reads the `[default.identity]` table of the figment (and, with
/// [`from_env`](Self::from_env), the environment), validates it, opens the session store,
/// and **aborts launch** with a precise message when something is wrong, unless
/// [`show_config_page_when_unconfigured`](Self::show_config_page_when_unconfigured). It
/// manages the [`Auth`], mounts the routes the engine names, registers the catchers
/// ([`catchers`](crate::catchers)), derives Rocket's `secret_key` from `SESSION_SECRET`, and
/// writes each request's session back as its response leaves.
#[must_use]
pub struct IdentityFairing {
    source: Source,
    prepared: Option<Auth>,
    options: Options,
    config_page: bool,
    catchers: bool,
    reserved: Vec<String>,
}

impl fmt::Debug for IdentityFairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityFairing")
            .field("source", &self.source)
            .field("prepared", &self.prepared)
            .field("config_page", &self.config_page)
            .field("catchers", &self.catchers)
            .finish_non_exhaustive()
    }
}

impl Default for IdentityFairing {
    fn default() -> Self {
        Self::new()
    }
}

impl Auth {
    /// The fairing that sets up sign-in from the `[default.identity]` table:
    /// [`IdentityFairing::new`].
    pub fn fairing() -> IdentityFairing {
        IdentityFairing::new()
    }
}

/// The lookup of one setting by its environment variable name.
struct Lookup<'a> {
    figment: &'a Figment,
    source: Source,
}

impl Lookup<'_> {
    fn get(&self, key: &str) -> Option<String> {
        let from_env = || std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        if self.source == Source::FigmentAndEnv {
            if let Some(v) = from_env() {
                return Some(v);
            }
        }
        let path = format!("{TABLE}.{}", key.to_ascii_lowercase());
        let text = self.figment.find_value(&path).ok().and_then(|value| {
            match &value {
                rocket::figment::value::Value::String(_, s) => Some(s.clone()),
                other => other
                    .to_i128()
                    .map(|n| n.to_string())
                    .or_else(|| other.to_bool().map(|b| b.to_string())),
            }
        });
        // The secret is the one setting always honoured from the environment.
        text.filter(|v| !v.trim().is_empty())
            .or_else(|| (key == SESSION_SECRET_VAR).then(from_env).flatten())
    }
}

impl IdentityFairing {
    /// Reads the settings from the `[default.identity]` table of the figment (in
    /// `Rocket.toml`, or `ROCKET_IDENTITY={client_id="..",...}`) and aborts launch when
    /// they are missing or wrong. `SESSION_SECRET` is also read from the environment.
    pub fn new() -> Self {
        Self {
            source: Source::Figment,
            prepared: None,
            options: Options::default(),
            config_page: false,
            catchers: true,
            reserved: Vec::new(),
        }
    }

    /// Like [`new`](Self::new), and environment variables (`CLIENT_ID`, `AUTHORITY`, ...,
    /// the names in [`SETTINGS`]) override the table: the samples' way, with a `.env` file
    /// loaded by the app.
    pub fn from_env() -> Self {
        Self {
            source: Source::FigmentAndEnv,
            ..Self::new()
        }
    }

    /// Uses a prepared [`Auth`] (custom HTTP client, certificate credential, ... see
    /// [`Auth::builder`]); the session store is the `Auth`'s, else the one `session_store`
    /// (table) or `SESSION_STORE` (environment) names.
    pub fn with_auth(auth: Auth) -> Self {
        Self {
            source: Source::FigmentAndEnv,
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

    /// Renders the login, error and configuration pages with your own templates.
    pub fn pages(mut self, pages: impl Pages) -> Self {
        self.options.pages = Some(Arc::new(pages));
        self
    }

    /// Keeps sessions in `backend` instead of the store `session_store` names.
    pub fn session_backend(mut self, backend: impl SessionBackend) -> Self {
        self.options.backend = Some(Arc::new(backend));
        self
    }

    /// The path of the app's home page (after sign-in without a next link, after
    /// sign-out). Default `/`.
    pub fn home(mut self, path: impl Into<String>) -> Self {
        self.options.home = Some(path.into());
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
        self.catchers = false;
        self
    }

    /// Checks the settings in `figment` as ignite will, opening the session store: the
    /// error is the message launch aborts with.
    pub async fn validate(&self, figment: &Figment) -> Result<(), Error> {
        self.build(figment).await.map(|_| ())
    }

    /// Names the settings as the source spells them, and says where to set missing ones.
    fn explain(&self, error: Error) -> Error {
        let Error::Config { message, missing } = error else {
            return error;
        };
        let table = self.source == Source::Figment;
        let missing: Vec<String> = match table {
            true => missing.iter().map(|m| m.to_ascii_lowercase()).collect(),
            false => missing,
        };
        let message = if message.starts_with("missing settings") && !missing.is_empty() {
            let hint = match table {
                true => "set them in the [default.identity] table of Rocket.toml",
                false => {
                    "set them as environment variables (or in a .env file), or in lower case \
                     in the [default.identity] table of Rocket.toml"
                }
            };
            format!("missing settings: {}; {hint}", missing.join(", "))
        } else if table {
            let mut names = SETTINGS.to_vec();
            names.sort_by_key(|n| std::cmp::Reverse(n.len()));
            names
                .iter()
                .fold(message, |m, n| m.replace(n, &n.to_ascii_lowercase()))
        } else {
            message
        };
        Error::Config { message, missing }
    }

    async fn build(&self, figment: &Figment) -> Result<Auth, Error> {
        let lookup = Lookup {
            figment,
            source: self.source,
        };
        let auth = match &self.prepared {
            Some(auth) => auth.clone(),
            None => {
                let identity = IdentityConfig::from_lookup(|k| lookup.get(k))
                    .and_then(Identity::new)
                    .map_err(|e| self.explain(e))?;
                let mut options = self.options.clone();
                options.secret = lookup.get(SESSION_SECRET_VAR).map(String::into_bytes);
                if let Some(list) = lookup.get("API_AUDIENCE") {
                    options.audiences = split_audiences(&list);
                }
                options.build(identity).map_err(|e| self.explain(e))?
            }
        };
        for (_, path) in auth.core().all_routes() {
            if self.reserved.iter().any(|r| r == path) {
                return Err(self.explain(Error::config(format!(
                    "the sign-in route {path:?} (derived from REDIRECT_URI) is one of the app's \
                     own pages; use a redirect URI such as http://localhost:5000/getAToken"
                ))));
            }
            if crate::routes::unroutable(path) {
                return Err(self.explain(Error::config(format!(
                    "REDIRECT_URI gives the route {path:?}, which Rocket cannot mount as given \
                     (no '%', '<', '>' or '//' in its path)"
                ))));
            }
        }
        if auth.session_backend().is_some() {
            return Ok(auth);
        }
        let backend = match &self.options.backend {
            Some(backend) => backend.clone(),
            None => {
                let setting = lookup.get("SESSION_STORE").unwrap_or_default();
                let url = StoreUrl::parse(&setting).map_err(|e| self.explain(e))?;
                url.open(DEFAULT_MEMORY_CAPACITY, DEFAULT_COMMAND_TIMEOUT)
                    .await
                    .map_err(|e| self.explain(e))?
            }
        };
        Ok(auth.with_backend(backend))
    }

    /// Rocket's `secret_key` (private cookies of the app) from `SESSION_SECRET`, unless the
    /// app configured its own and no `SESSION_SECRET` is set.
    fn secret_key(&self, figment: &Figment, auth: &Auth) -> Option<String> {
        use base64::Engine;
        let lookup = Lookup {
            figment,
            source: self.source,
        };
        // Rocket's defaults carry a zeroed key: only a non-zero one was configured.
        let configured = figment
            .extract_inner::<rocket::config::SecretKey>(rocket::Config::SECRET_KEY)
            .is_ok_and(|k| !k.is_zero());
        if configured && lookup.get(SESSION_SECRET_VAR).is_none() {
            return None;
        }
        let key = auth.core().derive_key(b"identity-rocket secret_key v1");
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
                self.options.clone().unconfigured(error)
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
        if self.catchers {
            rocket = rocket.register("/", catchers());
        }
        Ok(rocket)
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Some(auth) = req.rocket().state::<Auth>() else {
            return;
        };
        if let Some(page) = auth.core().not_configured_response() {
            *res = render(page);
            return;
        }
        let Some(backend) = auth.session_backend() else {
            return;
        };
        let name = auth.core().cookies().session_name();
        let cookie = identity_core::web::find_cookie(req.headers().get("Cookie"), name);
        let session = Session::new(auth, &**backend, request_state(req), cookie);
        match session.commit().await {
            Ok(Some(set_cookie)) => res.adjoin_raw_header("Set-Cookie", set_cookie),
            Ok(None) => {}
            Err(e) => *res = render(auth.core().error_response(&Error::Store(e.0))),
        }
    }
}
