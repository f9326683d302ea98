//! [`IdentityFairing`]: reads the settings at ignite, validates them, mounts the routes,
//! registers the catchers and manages [`Auth`].

use crate::auth::{derive_paths, Auth, AuthInner, Mode};
use crate::response::catchers;
use crate::session::{CookieSettings, MemoryStore, SessionBackend};
use identity_core::config::DEFAULT_REDIRECT_URI;
use identity_core::web_api::default_audiences;
use identity_core::{DefaultPages, Error, Identity, IdentityConfig, Pages, RoutePlan};
use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::figment::Figment;
use rocket::http::Status;
use rocket::{Build, Request, Response, Rocket};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long a session lives without a write, by default.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(4 * 3600);

/// The name of the settings table in the figment (`[default.identity]` in `Rocket.toml`).
pub const TABLE: &str = "identity";

/// The environment variable (and `session_secret` key) from which Rocket's `secret_key`
/// is derived.
pub const SESSION_SECRET_VAR: &str = "SESSION_SECRET";

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

/// Sets up sign-in on a Rocket app (see the crate docs for the settings):
///
/// * at ignite, reads the `[default.identity]` table of the figment (and, with
///   [`from_env`](Self::from_env), the environment), validates it, and **aborts launch**
///   with a precise message when it is wrong, unless
///   [`show_config_page_when_unconfigured`](Self::show_config_page_when_unconfigured);
/// * derives Rocket's `secret_key` from `SESSION_SECRET` (private cookies);
/// * mounts the callback at the redirect URI's path (GET and POST), `/login`, `/logout`
///   and, for B2C with an edit-profile user flow, `/edit_profile`, beside it;
/// * registers catchers for 400, 401, 403, 500, 502 and 503 that render the pages of the
///   guards (see [`catchers`]);
/// * manages the [`Auth`] state.
#[must_use]
pub struct IdentityFairing {
    source: Source,
    config_page: bool,
    identity: Option<Identity>,
    pages: Option<Arc<dyn Pages>>,
    backend: Option<Arc<dyn SessionBackend>>,
    home: Option<String>,
    catchers: bool,
    session_ttl: Duration,
    reserved: Vec<String>,
}

impl fmt::Debug for IdentityFairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityFairing")
            .field("source", &self.source)
            .field("config_page", &self.config_page)
            .field("home", &self.home)
            .field("catchers", &self.catchers)
            .field("session_ttl", &self.session_ttl)
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
        let value = self.figment.find_value(&path).ok()?;
        let text = match &value {
            rocket::figment::value::Value::String(_, s) => s.clone(),
            other => other
                .to_i128()
                .map(|n| n.to_string())
                .or_else(|| other.to_bool().map(|b| b.to_string()))?,
        };
        Some(text).filter(|v| !v.trim().is_empty()).or_else(|| {
            // The secret is the one setting always honoured from the environment.
            (key == SESSION_SECRET_VAR).then(from_env).flatten()
        })
    }
}

impl IdentityFairing {
    /// Reads the settings from the `[default.identity]` table of the figment (in
    /// `Rocket.toml`, or `ROCKET_IDENTITY={client_id="..",...}`) and aborts launch when
    /// they are missing or wrong. `SESSION_SECRET` is also read from the environment.
    pub fn new() -> Self {
        Self {
            source: Source::Figment,
            config_page: false,
            identity: None,
            pages: None,
            backend: None,
            home: None,
            catchers: true,
            session_ttl: DEFAULT_SESSION_TTL,
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

    /// Uses a prepared core handle (custom HTTP client, certificate credential, ...)
    /// instead of the identity settings; the table still supplies `session_store`,
    /// `session_secret` and `api_audience`.
    pub fn with_identity(identity: Identity) -> Self {
        Self {
            identity: Some(identity),
            ..Self::new()
        }
    }

    /// Instead of aborting launch on missing or wrong settings, launch and answer every
    /// request with the configuration page ("Almost there", naming the missing settings),
    /// as the samples do.
    pub fn show_config_page_when_unconfigured(mut self) -> Self {
        self.config_page = true;
        self
    }

    /// Renders the login, error and configuration pages with your own templates.
    pub fn pages(mut self, pages: impl Pages) -> Self {
        self.pages = Some(Arc::new(pages));
        self
    }

    /// Keeps sessions in `backend` instead of the one `session_store` names.
    pub fn session_backend(mut self, backend: impl SessionBackend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// The path of the app's home page: where the browser goes after sign-in without a
    /// next link, after a cancelled sign-in, and after sign-out (as an absolute URL on the
    /// redirect URI's origin). Default `/`.
    pub fn home(mut self, path: impl Into<String>) -> Self {
        self.home = Some(path.into());
        self
    }

    /// How long a session lives without a write (sign-in, token refresh, renewal of the
    /// ID token, roughly hourly while the user is active). Default
    /// [`DEFAULT_SESSION_TTL`] (4 hours).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
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

    /// Registers no catchers: the app registers its own for 400, 401, 403, 500, 502 and
    /// 503 and calls [`failure_response`](crate::failure_response) from them.
    pub fn without_catchers(mut self) -> Self {
        self.catchers = false;
        self
    }

    /// Checks the settings in `figment` as ignite will, connecting to the session store:
    /// the error is the message launch aborts with.
    pub async fn validate(&self, figment: &Figment) -> Result<(), Error> {
        self.build(figment).await.map(|_| ())
    }

    fn explain(&self, error: Error) -> Error {
        match error {
            Error::Config { message, missing } if !missing.is_empty() => {
                let (missing, hint): (Vec<String>, &str) = match self.source {
                    Source::Figment => (
                        missing.iter().map(|m| m.to_ascii_lowercase()).collect(),
                        "set them in the [default.identity] table of Rocket.toml",
                    ),
                    Source::FigmentAndEnv => (
                        missing,
                        "set them as environment variables (or in a .env file), or in lower \
                         case in the [default.identity] table of Rocket.toml",
                    ),
                };
                let _ = message;
                Error::Config {
                    message: format!("missing settings: {}; {hint}", missing.join(", ")),
                    missing,
                }
            }
            other => other,
        }
    }

    async fn build(&self, figment: &Figment) -> Result<Auth, Error> {
        let lookup = Lookup {
            figment,
            source: self.source,
        };
        let get = |k: &str| lookup.get(k);
        let identity = match &self.identity {
            Some(i) => i.clone(),
            None => IdentityConfig::from_lookup(get)
                .and_then(Identity::new)
                .map_err(|e| self.explain(e))?,
        };
        let config = identity.config();
        let redirect = config.redirect_uri.as_deref();
        let paths = derive_paths(
            redirect,
            self.home.as_deref(),
            config.b2c.edit_profile.is_some(),
        )?;
        let ours = [
            Some(&paths.callback),
            Some(&paths.login),
            Some(&paths.logout),
            paths.edit_profile.as_ref(),
        ];
        if let Some(clash) = ours
            .into_iter()
            .flatten()
            .find(|p| self.reserved.contains(p))
        {
            return Err(Error::config(format!(
                "the sign-in route {clash:?} (derived from redirect_uri) is one of the app's \
                 own pages; use a redirect URI such as http://localhost:5000/getAToken"
            )));
        }
        paths.warn_if_insecure();
        let secure = paths.secure_cookies;
        let backend = match &self.backend {
            Some(b) => b.clone(),
            None => backend_from(get("SESSION_STORE").as_deref()).await?,
        };
        let api_audiences = match get("API_AUDIENCE") {
            Some(list) => list
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => default_audiences(config.client_id.as_str()),
        };
        let cookies = CookieSettings {
            secure,
            session_ttl: self.session_ttl,
            pending_ttl: config.pending_login_ttl,
        };
        tracing::info!(
            redirect_uri = redirect.unwrap_or("(none)"),
            callback = %paths.callback,
            login = %paths.login,
            logout = %paths.logout,
            "identity routes"
        );
        Ok(Auth {
            inner: Arc::new(AuthInner {
                mode: Mode::Configured(identity),
                pages: self.pages.clone().unwrap_or_else(|| Arc::new(DefaultPages)),
                backend,
                cookies,
                paths,
                api_audiences,
            }),
        })
    }

    fn unconfigured(&self, figment: &Figment, error: Error) -> Auth {
        let lookup = Lookup {
            figment,
            source: self.source,
        };
        let redirect = lookup
            .get("REDIRECT_URI")
            .unwrap_or_else(|| DEFAULT_REDIRECT_URI.to_owned());
        let paths = derive_paths(Some(&redirect), self.home.as_deref(), false)
            .or_else(|_| derive_paths(Some(DEFAULT_REDIRECT_URI), None, false))
            .unwrap_or_else(|_| RoutePlan::fallback());
        Auth {
            inner: Arc::new(AuthInner {
                mode: Mode::Unconfigured(error),
                pages: self.pages.clone().unwrap_or_else(|| Arc::new(DefaultPages)),
                backend: Arc::new(MemoryStore::with_max_sessions(1)),
                cookies: CookieSettings {
                    secure: false,
                    session_ttl: self.session_ttl,
                    pending_ttl: Duration::from_secs(600),
                },
                paths,
                api_audiences: Vec::new(),
            }),
        }
    }

    /// Rocket's `secret_key` from `SESSION_SECRET`; else Rocket's own `secret_key`; else a
    /// random key for this process, with a warning.
    fn secret_key(&self, figment: &Figment) -> Option<String> {
        use base64::Engine;
        let lookup = Lookup {
            figment,
            source: self.source,
        };
        // Rocket's defaults carry a zeroed key: only a non-zero one was configured.
        let configured = figment
            .extract_inner::<rocket::config::SecretKey>(rocket::Config::SECRET_KEY)
            .is_ok_and(|k| !k.is_zero());
        let bytes: Vec<u8> = match lookup.get(SESSION_SECRET_VAR) {
            Some(secret) => {
                if secret.len() < 32 {
                    tracing::warn!(
                        "SESSION_SECRET is shorter than 32 characters; use a long random value"
                    );
                    warn_rocket(
                        "SESSION_SECRET is shorter than 32 characters; use a long random value",
                    );
                }
                if configured {
                    tracing::warn!(
                        "both SESSION_SECRET and Rocket's secret_key are set; SESSION_SECRET wins"
                    );
                }
                derive_secret_key(secret.as_bytes()).to_vec()
            }
            None if configured => return None,
            None => {
                let message = "SESSION_SECRET is not set: using a random key for this process. \
                               Sessions will not survive a restart and will not work across \
                               instances; set SESSION_SECRET (the same long random value on \
                               every instance)";
                tracing::warn!("{message}");
                warn_rocket(message);
                use rand::RngCore;
                let mut buf = [0u8; 64];
                rand::rngs::OsRng.fill_bytes(&mut buf);
                buf.to_vec()
            }
        };
        Some(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

/// The 64-byte key from the secret ([`identity_core::derive_key`]: SHA-512 over the
/// label, a zero byte and the secret).
fn derive_secret_key(secret: &[u8]) -> [u8; 64] {
    identity_core::derive_key(b"identity-rocket secret_key v1", secret)
}

fn warn_rocket(message: &str) {
    rocket::log::private::warn!(target: "identity_rocket", "{message}");
}

async fn backend_from(setting: Option<&str>) -> Result<Arc<dyn SessionBackend>, Error> {
    match setting.map(str::trim) {
        None | Some("") | Some("memory") => Ok(Arc::new(MemoryStore::new())),
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            redis_backend(url).await
        }
        Some(other) => Err(Error::config(format!(
            "session_store {other:?} is not supported: use \"memory\" or a redis:// URL"
        ))),
    }
}

#[cfg(feature = "redis")]
async fn redis_backend(url: &str) -> Result<Arc<dyn SessionBackend>, Error> {
    crate::redis::RedisStore::connect(url)
        .await
        .map(|s| Arc::new(s) as Arc<dyn SessionBackend>)
        .map_err(|e| Error::config(format!("session_store: {}", e.0)))
}

#[cfg(not(feature = "redis"))]
async fn redis_backend(url: &str) -> Result<Arc<dyn SessionBackend>, Error> {
    let _ = url;
    Err(Error::config(
        "session_store is a Redis URL but identity-rocket was built without its `redis` \
         feature; enable it (identity-rocket = { features = [\"redis\"] })",
    ))
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
            Err(error) if self.config_page => {
                tracing::error!(%error, "identity is not configured; every page shows the configuration page");
                rocket::log::private::error!(
                    target: "identity_rocket",
                    "identity is not configured; every page shows the configuration page: {error}"
                );
                self.unconfigured(&figment, error)
            }
            Err(error) => {
                tracing::error!(%error, "identity: launch aborted");
                rocket::log::private::error!(target: "identity_rocket", "identity: {error}");
                return Err(rocket);
            }
        };
        let mut rocket = rocket;
        if let Some(key) = self.secret_key(&figment) {
            rocket = rocket.configure(figment.merge((rocket::Config::SECRET_KEY, key)));
        }
        let routes = crate::routes::routes(&auth);
        let mut rocket = rocket.mount("/", routes).manage(auth);
        if self.catchers {
            rocket = rocket.register("/", catchers());
        }
        Ok(rocket)
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Some(auth) = req.rocket().state::<Auth>() else {
            return;
        };
        if let Some(error) = auth.configuration_error() {
            let page = auth.config_page(error);
            *res = Response::build()
                .status(Status::InternalServerError)
                .header(rocket::http::ContentType::HTML)
                .raw_header("Cache-Control", "no-store")
                .sized_body(page.len(), std::io::Cursor::new(page))
                .finalize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_stable_and_distinct() {
        assert_eq!(derive_secret_key(b"a"), derive_secret_key(b"a"));
        assert_ne!(derive_secret_key(b"a"), derive_secret_key(b"b"));
    }

    #[test]
    fn secret_key_is_the_one_earlier_releases_derived() {
        use sha2::{Digest, Sha512};
        let mut h = Sha512::new();
        h.update(b"identity-rocket secret_key v1\0");
        h.update(b"a long random session secret");
        let earlier: [u8; 64] = h.finalize().into();
        assert_eq!(derive_secret_key(b"a long random session secret"), earlier);
    }
}
