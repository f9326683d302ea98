//! [`WebAuth`]: every rule of a web sign-in, framework-free.

use super::cookies::{find_cookie, CookiePolicy, PendingSeal};
use super::direct::BackendUser;
use super::response::{Outcome, WebResponse};
use super::session::RequestSession;
use crate::pages::{ConfigPage, DefaultPages, ErrorPage, LoginPage, Pages};
use crate::sessions::{SessionBackend, SessionPolicy, SignInRef};
use crate::store::{SessionStore, KEY_CONSENT, KEY_SINCE, KEY_SSO};
use crate::{
    safe_next_link, ClaimsChallenge, DevicePoll, Error, Identity, IdentityConfig, LogInOptions,
    LogInStart, LoggedIn, Purpose, RoutePlan, Scopes, TokenForUser, User,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The environment variable holding the secret that keys the app's cookies.
pub const SESSION_SECRET_VAR: &str = "SESSION_SECRET";
/// The environment variable listing previous session secrets (comma or space separated):
/// what they sealed (session records' tokens, pending sign-ins) still opens, nothing new
/// is sealed with them. Rotate by moving the old `SESSION_SECRET` here.
pub const SESSION_SECRET_PREVIOUS_VAR: &str = "SESSION_SECRET_PREVIOUS";
/// Most interactive round trips for one scope set within [`CONSENT_GUARD_WINDOW`].
pub const CONSENT_GUARD_MAX: usize = 2;
/// The consent-loop guard's window.
pub const CONSENT_GUARD_WINDOW: Duration = Duration::from_secs(300);

/// One of the sign-in routes of [`RoutePlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// The redirect URI's path: GET (query) and POST (`form_post`).
    Callback,
    /// `…/login`: GET; `?next=/path` is kept only if it is a same-site path.
    Login,
    /// `…/logout`: GET.
    Logout,
    /// `…/edit_profile` (B2C): GET.
    EditProfile,
    /// `…/frontchannel_logout`: GET, loaded by the provider's sign-out page in a hidden
    /// iframe (`?sid=…`, and `iss` from providers that follow the specification).
    FrontChannelLogout,
    /// `…/backchannel_logout`: POST from the provider, a `logout_token` form field.
    BackChannelLogout,
}

impl Route {
    /// Whether the route answers GET (every route but the back-channel logout).
    pub fn answers_get(self) -> bool {
        !matches!(self, Route::BackChannelLogout)
    }

    /// Whether the route answers POST: the callback (`form_post`) and the back-channel
    /// logout.
    pub fn answers_post(self) -> bool {
        matches!(self, Route::Callback | Route::BackChannelLogout)
    }
}

/// The facts of one request the engine needs, borrowed from the framework's request.
#[derive(Clone, Debug, Default)]
pub struct WebRequest<'a> {
    link: &'a str,
    cookies: Vec<&'a str>,
    accept: Option<&'a str>,
}

impl<'a> WebRequest<'a> {
    /// A request for `link`: the path and query the browser asked for (before any
    /// nesting stripped a prefix), e.g. `/call_api?x=1`.
    pub fn new(link: &'a str) -> Self {
        WebRequest {
            link,
            cookies: Vec::new(),
            accept: None,
        }
    }

    /// Adds a `Cookie` header value (call once per header).
    #[must_use]
    pub fn cookie_header(mut self, value: &'a str) -> Self {
        self.cookies.push(value);
        self
    }

    /// The `Accept` header, if any.
    #[must_use]
    pub fn accept(mut self, value: Option<&'a str>) -> Self {
        self.accept = value;
        self
    }

    /// The path and query.
    pub fn link(&self) -> &str {
        self.link
    }

    /// Whether the caller prefers JSON to a page (`fetch`/XHR callers that send
    /// `Accept: application/json` without `text/html`): such callers get a JSON 401
    /// instead of a login page, and no sign-in is started for them.
    pub fn wants_json(&self) -> bool {
        self.accept.is_some_and(|a| {
            let a = a.to_ascii_lowercase();
            (a.contains("application/json") || a.contains("+json")) && !a.contains("text/html")
        })
    }

    fn cookie(&self, name: &str) -> Option<&'a str> {
        find_cookie(self.cookies.iter().copied(), name)
    }
}

/// How an unauthenticated page view is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignInAnswer {
    /// `401` with the login page, which sends the browser on to the provider (a
    /// `meta refresh` and a link) and `WWW-Authenticate: Cookie realm=…, form-action=…`
    /// naming the login route. The default: it works from any extractor and keeps the
    /// status honest for crawlers and monitors.
    #[default]
    LoginPage,
    /// `302 Found` straight to the provider, as Microsoft.Identity.Web does.
    Redirect,
}

/// The web sign-in engine of one app: its [`Identity`] (or why it is unconfigured), its
/// routes, cookie policy, session lifetimes and pages. Built once, cloned freely (an
/// `Arc`). Adapters call it with plain request facts ([`WebRequest`]) and their
/// session ([`SessionStore`]), and turn the [`WebResponse`] it decides into their
/// framework's response.
#[derive(Clone)]
pub struct WebAuth {
    inner: Arc<Inner>,
}

struct Inner {
    mode: Result<Identity, Error>,
    pages: Arc<dyn Pages>,
    plan: RoutePlan,
    cookies: CookiePolicy,
    seal: PendingSeal,
    record_seal: PendingSeal,
    secret: Vec<u8>,
    session: SessionPolicy,
    sign_in_answer: SignInAnswer,
    /// The adapter's session backend, for single sign-out and the cluster-wide refresh.
    backend: OnceLock<Arc<dyn SessionBackend>>,
    /// The `WWW-Authenticate` value of a sign-in answer (fixed by the routes).
    sign_in_challenge: String,
}

impl fmt::Debug for WebAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut d = f.debug_struct("WebAuth");
        match &inner.mode {
            Ok(identity) => d.field("identity", identity),
            Err(error) => d.field("unconfigured", error),
        };
        d.field("routes", &inner.plan)
            .field("cookies", &inner.cookies)
            .field("session", &inner.session)
            .finish_non_exhaustive()
    }
}

/// Options of a [`WebAuth`]; from [`WebAuth::builder`].
#[must_use]
pub struct WebAuthBuilder {
    identity: Result<Identity, Error>,
    pages: Option<Arc<dyn Pages>>,
    home: Option<String>,
    route_prefix: String,
    secret: Option<Vec<u8>>,
    previous_secrets: Option<Vec<Vec<u8>>>,
    session: SessionPolicy,
    sign_in_answer: SignInAnswer,
}

impl fmt::Debug for WebAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebAuthBuilder")
            .field("home", &self.home)
            .field("route_prefix", &self.route_prefix)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl WebAuthBuilder {
    /// Renders the login, error and configuration pages with your own templates.
    pub fn pages(mut self, pages: impl Pages) -> Self {
        self.pages = Some(Arc::new(pages));
        self
    }

    /// Renders pages with a shared [`Pages`].
    pub fn shared_pages(mut self, pages: Arc<dyn Pages>) -> Self {
        self.pages = Some(pages);
        self
    }

    /// The public path of the home page: where the browser goes after a sign-in without
    /// a next link, after a cancelled sign-in, and after sign-out. Default: `/`.
    pub fn home(mut self, path: impl Into<String>) -> Self {
        self.home = Some(path.into());
        self
    }

    /// Where the app is mounted: the home page defaults to `{prefix}/`, and without a
    /// redirect URI (device code sign-in) the routes sit under the prefix.
    pub fn route_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.route_prefix = prefix.into();
        self
    }

    /// The secret that keys the app's cookies; every instance of one app must use the
    /// same. Default: `SESSION_SECRET`; unset, a random key per process (with a warning).
    pub fn session_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Previous secrets, still accepted for opening what they sealed (rotation). Default:
    /// `SESSION_SECRET_PREVIOUS`.
    pub fn previous_session_secrets<I, S>(mut self, secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.previous_secrets = Some(secrets.into_iter().map(|s| s.as_ref().to_vec()).collect());
        self
    }

    /// Ends sessions after `idle` without a request. Default 4 hours.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.session.idle_timeout = idle;
        self
    }

    /// Ends a sign-in this long after it completed. Default 7 days.
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.session.absolute_timeout = absolute;
        self
    }

    /// How an unauthenticated page view is answered. Default [`SignInAnswer::LoginPage`].
    pub fn sign_in_answer(mut self, answer: SignInAnswer) -> Self {
        self.sign_in_answer = answer;
        self
    }

    /// Builds the engine. Fails with [`Error::Config`] when the redirect URI has no
    /// usable path (see [`RoutePlan::from_redirect_uri`]).
    pub fn build(self) -> Result<WebAuth, Error> {
        let identity = self.identity?;
        let config = identity.config();
        let redirect = config.redirect_uri.as_deref();
        let prefix = self.route_prefix.trim_end_matches('/');
        let home = self
            .home
            .or_else(|| (!prefix.is_empty()).then(|| format!("{prefix}/")));
        let mut plan = RoutePlan::from_redirect_uri(
            redirect,
            home.as_deref(),
            config.b2c.edit_profile.is_some(),
        )?;
        if redirect.is_none() {
            let routes = [
                &mut plan.callback,
                &mut plan.login,
                &mut plan.logout,
                &mut plan.frontchannel_logout,
                &mut plan.backchannel_logout,
            ];
            for path in routes.into_iter().chain(plan.edit_profile.as_mut()) {
                path.insert_str(0, prefix);
            }
        }
        plan.warn_if_insecure();
        let secret = resolve_secret(self.secret);
        let cookies = CookiePolicy::new(plan.secure_cookies, config.pending_login_ttl);
        tracing::info!(
            redirect_uri = redirect.unwrap_or("(none: device code sign-in)"),
            callback = %plan.callback,
            login = %plan.login,
            logout = %plan.logout,
            session_cookie = cookies.session_name(),
            "identity routes"
        );
        let previous = self.previous_secrets.unwrap_or_else(|| {
            std::env::var(SESSION_SECRET_PREVIOUS_VAR)
                .map(|v| {
                    v.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(|s| s.as_bytes().to_vec())
                        .collect()
                })
                .unwrap_or_default()
        });
        let seal_for = |label: &[u8]| {
            let old: Vec<[u8; 64]> = previous
                .iter()
                .map(|p| crate::derive_key(label, p))
                .collect();
            PendingSeal::with_previous(&crate::derive_key(label, &secret), &old)
        };
        let sign_in_challenge = sign_in_challenge(&plan);
        Ok(WebAuth {
            inner: Arc::new(Inner {
                sign_in_challenge,
                seal: seal_for(PENDING_LABEL),
                record_seal: seal_for(RECORD_LABEL),
                secret,
                mode: Ok(identity),
                pages: self.pages.unwrap_or_else(|| Arc::new(DefaultPages)),
                plan,
                cookies,
                session: self.session,
                sign_in_answer: self.sign_in_answer,
                backend: OnceLock::new(),
            }),
        })
    }
}

const PENDING_LABEL: &[u8] = b"identity-rs pending sign-in cookie v1";
const RECORD_LABEL: &[u8] = b"identity-rs session record seal v1";

fn resolve_secret(given: Option<Vec<u8>>) -> Vec<u8> {
    let secret = given.or_else(|| {
        std::env::var(SESSION_SECRET_VAR)
            .ok()
            .filter(|s| !s.is_empty())
            .map(String::into_bytes)
    });
    match secret {
        Some(s) => {
            if s.len() < 32 {
                tracing::warn!(
                    "SESSION_SECRET is shorter than 32 characters; use a long random value"
                );
            }
            s
        }
        None => {
            tracing::warn!(
                "SESSION_SECRET is not set: using a random key for this process. Sessions and \
                 sign-ins in progress will not survive a restart and will fail on other \
                 instances; set SESSION_SECRET (the same value on every instance)"
            );
            let mut key = vec![0u8; 64];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            key
        }
    }
}

fn now() -> i64 {
    crate::flow::now()
}

impl WebAuth {
    /// The engine with default options for `identity`.
    pub fn new(identity: Identity) -> Result<WebAuth, Error> {
        Self::builder(identity).build()
    }

    /// Starts building an engine with options.
    pub fn builder(identity: Identity) -> WebAuthBuilder {
        Self::builder_from(Ok(identity))
    }

    /// Starts building from the result of building an [`Identity`]: an error makes the
    /// built engine unconfigured only through [`WebAuthBuilder::build_or_unconfigured`].
    pub fn builder_from(identity: Result<Identity, Error>) -> WebAuthBuilder {
        WebAuthBuilder {
            identity,
            pages: None,
            home: None,
            route_prefix: String::new(),
            secret: None,
            previous_secrets: None,
            session: SessionPolicy::default(),
            sign_in_answer: SignInAnswer::default(),
        }
    }

    /// From the environment ([`IdentityConfig::from_env`] and `SESSION_SECRET`). Never
    /// fails: when settings are missing or wrong, the engine is unconfigured and every
    /// page shows the configuration page naming them.
    pub fn from_env() -> WebAuth {
        Self::env_builder().build_or_unconfigured()
    }

    /// A builder over the configuration from the environment, for options such as your
    /// own [`Pages`]; finish with [`WebAuthBuilder::build_or_unconfigured`].
    pub fn env_builder() -> WebAuthBuilder {
        Self::builder_from(IdentityConfig::from_env().and_then(Identity::new))
    }

    /// An engine that answers every request with the configuration page (HTTP 500) built
    /// from `error`. Its routes and cookie names follow `REDIRECT_URI` when it is usable.
    pub fn unconfigured(error: Error) -> WebAuth {
        Self::unconfigured_with(error, Arc::new(DefaultPages))
    }

    fn unconfigured_with(error: Error, pages: Arc<dyn Pages>) -> WebAuth {
        let redirect = std::env::var("REDIRECT_URI")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| crate::config::DEFAULT_REDIRECT_URI.to_owned());
        let plan = RoutePlan::from_redirect_uri(Some(&redirect), None, false)
            .unwrap_or_else(|_| RoutePlan::fallback());
        tracing::error!(error = %error, "identity is not configured; every page shows the configuration page");
        let secret = vec![0u8; 64];
        WebAuth {
            inner: Arc::new(Inner {
                sign_in_challenge: sign_in_challenge(&plan),
                seal: PendingSeal::new(&crate::derive_key(PENDING_LABEL, &secret)),
                record_seal: PendingSeal::new(&crate::derive_key(RECORD_LABEL, &secret)),
                secret,
                mode: Err(error),
                pages,
                cookies: CookiePolicy::new(plan.secure_cookies, Duration::from_secs(600)),
                plan,
                session: SessionPolicy::default(),
                sign_in_answer: SignInAnswer::default(),
                backend: OnceLock::new(),
            }),
        }
    }

    /// The core handle, unless unconfigured.
    pub fn identity(&self) -> Option<&Identity> {
        self.inner.mode.as_ref().ok()
    }

    /// Why the engine is unconfigured, if it is.
    pub fn configuration_error(&self) -> Option<&Error> {
        self.inner.mode.as_ref().err()
    }

    /// The routes and home page.
    pub fn routes(&self) -> &RoutePlan {
        &self.inner.plan
    }

    /// Which route `path` (public) is, if any.
    pub fn route_for(&self, path: &str) -> Option<Route> {
        let p = &self.inner.plan;
        if path == p.callback {
            Some(Route::Callback)
        } else if path == p.login {
            Some(Route::Login)
        } else if path == p.logout {
            Some(Route::Logout)
        } else if p.edit_profile.as_deref() == Some(path) {
            Some(Route::EditProfile)
        } else if path == p.frontchannel_logout {
            Some(Route::FrontChannelLogout)
        } else if path == p.backchannel_logout {
            Some(Route::BackChannelLogout)
        } else {
            None
        }
    }

    /// The public path of `route`, if the app has it.
    pub fn route_path(&self, route: Route) -> Option<&str> {
        let p = &self.inner.plan;
        match route {
            Route::Callback => Some(&p.callback),
            Route::Login => Some(&p.login),
            Route::Logout => Some(&p.logout),
            Route::EditProfile => p.edit_profile.as_deref(),
            Route::FrontChannelLogout => Some(&p.frontchannel_logout),
            Route::BackChannelLogout => Some(&p.backchannel_logout),
        }
    }

    /// Every route the app has, with its public path.
    pub fn all_routes(&self) -> Vec<(Route, &str)> {
        [
            Route::Callback,
            Route::Login,
            Route::Logout,
            Route::EditProfile,
            Route::FrontChannelLogout,
            Route::BackChannelLogout,
        ]
        .into_iter()
        .filter_map(|r| self.route_path(r).map(|p| (r, p)))
        .collect()
    }

    /// Gives the engine the session backend the adapter stores sessions in (adapters call
    /// it when they set up their sessions; the first one given stays). With it, logout
    /// notifications end sessions on every instance that shares the backend, and token
    /// refreshes of one session are coordinated across those instances.
    pub fn use_session_backend(&self, backend: Arc<dyn SessionBackend>) {
        let _ = self.inner.backend.set(backend);
    }

    /// The session backend given with [`WebAuth::use_session_backend`], if any.
    pub fn session_backend(&self) -> Option<&Arc<dyn SessionBackend>> {
        self.inner.backend.get()
    }

    /// The cookie names and flags.
    pub fn cookies(&self) -> &CookiePolicy {
        &self.inner.cookies
    }

    /// The session lifetimes.
    pub fn session_policy(&self) -> SessionPolicy {
        self.inner.session
    }

    /// The pages.
    pub fn pages(&self) -> &dyn Pages {
        &*self.inner.pages
    }

    /// 64 bytes of key material for `label` (e.g. an adapter's session cookie key),
    /// derived from the session secret ([`crate::derive_key`]). Every instance sharing
    /// `SESSION_SECRET` derives the same.
    pub fn derive_key(&self, label: &[u8]) -> [u8; 64] {
        crate::derive_key(label, &self.inner.secret)
    }

    /// The configuration page when the engine is unconfigured; adapters answer every
    /// request with it.
    pub fn not_configured_response(&self) -> Option<WebResponse> {
        self.configuration_error().map(|e| self.config_response(e))
    }

    fn config_response(&self, error: &Error) -> WebResponse {
        let page = match error {
            Error::Config { message, missing } => ConfigPage {
                message: message.clone(),
                missing: missing.clone(),
            },
            other => ConfigPage {
                message: other.to_string(),
                missing: Vec::new(),
            },
        };
        WebResponse::html(Outcome::NotConfigured, 500, self.pages().config(&page))
    }

    /// The page for `error`: the configuration page for [`Error::Config`], a 503 page for
    /// an unreachable session store, the error page (escaped, with the error's status)
    /// otherwise. Logged once here.
    pub fn error_response(&self, error: &Error) -> WebResponse {
        let status = error.status_code();
        if status >= 500 {
            tracing::error!(error = %error, "sign-in failed");
        } else {
            tracing::warn!(error = %error, "sign-in failed");
        }
        match error {
            Error::Config { .. } => self.config_response(error),
            Error::Store(_) => {
                let page = ErrorPage {
                    title: "The session store is unreachable".to_owned(),
                    error: Some("session_store_unavailable".to_owned()),
                    description: Some(
                        "The app cannot reach the store that keeps sessions. Try again in a \
                         moment; if it persists, the app's administrator should check the \
                         session store (SESSION_STORE)."
                            .to_owned(),
                    ),
                    redirect_uri: None,
                    home_uri: self.inner.plan.home.clone(),
                    retry_uri: None,
                };
                WebResponse::html(Outcome::StoreUnavailable, 503, self.pages().error(&page))
                    .with_header("retry-after", "5")
            }
            _ => {
                let page = ErrorPage::for_error(
                    error,
                    &self.inner.plan.home,
                    Some(&self.inner.plan.login),
                );
                WebResponse::html(Outcome::Failed, status, self.pages().error(&page))
            }
        }
    }

    /// The page for a piece of the app's setup that is missing (HTTP 500): `what` names
    /// it, `fix` the code to add. Adapters log it once.
    pub fn missing_setup_response(&self, what: &str, fix: &str) -> WebResponse {
        missing_setup_page(self.pages(), &self.inner.plan.home, what, fix)
    }

    fn configured(&self) -> Result<&Identity, WebResponse> {
        self.inner
            .mode
            .as_ref()
            .map_err(|e| self.config_response(e))
    }

    fn session<'s>(
        &'s self,
        req: &WebRequest<'_>,
        store: &'s dyn SessionStore,
    ) -> RequestSession<'s> {
        let incoming = req
            .cookie(self.inner.cookies.pending_name())
            .map(str::to_owned);
        RequestSession::new(
            store,
            &self.inner.cookies,
            &self.inner.seal,
            &self.inner.record_seal,
            incoming,
        )
        .with_backend(self.inner.backend.get().map(|b| &**b))
    }

    /// Runs a sign-in route. `form` is the body of a `form_post` callback (POST), else
    /// `None` and the callback reads the query.
    pub async fn handle(
        &self,
        route: Route,
        req: &WebRequest<'_>,
        store: &dyn SessionStore,
        form: Option<&[u8]>,
    ) -> WebResponse {
        let identity = match self.configured() {
            Ok(i) => i,
            Err(res) => return res,
        };
        let session = self.session(req, store);
        let res = match route {
            Route::Callback => {
                let query = req.link.split_once('?').map(|(_, q)| q).unwrap_or("");
                let raw = form.unwrap_or(query.as_bytes());
                self.callback(identity, &session, raw).await
            }
            Route::Login => {
                let query = req.link.split_once('?').map(|(_, q)| q).unwrap_or("");
                let next = form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "next")
                    .and_then(|(_, v)| safe_next_link(&v));
                let options = LogInOptions {
                    next_link: next,
                    ..Default::default()
                };
                match identity.log_in(&session, options).await {
                    Ok(start) if start.user_code.is_some() => {
                        let (body, _) = self.start_page(&session, start).await;
                        WebResponse::html(Outcome::Page, 200, body)
                    }
                    Ok(start) => WebResponse::redirect(&start.auth_uri),
                    Err(e) => self.error_response(&e),
                }
            }
            Route::Logout => match identity.log_out(&session, &self.inner.plan.home_url).await {
                Ok(target) => {
                    // Ends the whole session in the store, not only the identity keys.
                    if let Err(e) = session.destroy().await {
                        tracing::warn!(error = %e, "could not delete the session from the store");
                    }
                    WebResponse::redirect(&target)
                }
                Err(e) => self.error_response(&e),
            },
            Route::FrontChannelLogout => {
                let query = req.link.split_once('?').map(|(_, q)| q).unwrap_or("");
                self.front_channel_logout(identity, query).await
            }
            Route::BackChannelLogout => self.back_channel_logout(identity, form).await,
            Route::EditProfile => {
                let options = LogInOptions {
                    purpose: Some(Purpose::EditProfile),
                    ..Default::default()
                };
                match identity.log_in(&session, options).await {
                    Ok(start) => WebResponse::redirect(&start.auth_uri),
                    Err(e) => self.error_response(&e),
                }
            }
        };
        res.with_cookies(session.set_cookies())
    }

    async fn callback(
        &self,
        identity: &Identity,
        session: &RequestSession<'_>,
        raw: &[u8],
    ) -> WebResponse {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw).into_owned().collect();
        if identity.config().redirect_uri.is_none() && pairs.is_empty() {
            // Device code sign-in: the callback route is where the waiting page reloads
            // itself, and each reload polls (at most once per interval).
            return match identity.poll_device_code(session).await {
                Ok(DevicePoll::SignedIn(done)) => self.signed_in(session, done).await,
                Ok(DevicePoll::Pending {
                    retry_after,
                    instructions,
                }) => self.device_waiting(instructions, retry_after),
                Err(e) => self.error_response(&e),
            };
        }
        let result = identity
            .complete_log_in(session, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .await;
        match result {
            Ok(done) => self.signed_in(session, done).await,
            Err(Error::Provider(p)) if p.is_password_reset() => {
                if identity.config().b2c.reset_password.is_none() {
                    return self.error_response(&Error::Provider(p));
                }
                tracing::info!(
                    "the user forgot their password; starting the reset-password user flow"
                );
                let options = LogInOptions {
                    purpose: Some(Purpose::ResetPassword),
                    ..Default::default()
                };
                match identity.log_in(session, options).await {
                    Ok(start) => WebResponse::redirect(&start.auth_uri),
                    Err(e) => self.error_response(&e),
                }
            }
            // B2C's "cancelled a self-asserted page" (sign-up, edit profile): back home, as
            // the Python sample does. Entra's `access_denied` gets the error page, which
            // offers to sign in again.
            Err(Error::Provider(p)) if p.has_code("AADB2C90091") => {
                tracing::info!(error = %p, "the user cancelled the user flow");
                WebResponse::redirect(&self.inner.plan.home)
            }
            Err(e) => self.error_response(&e),
        }
    }

    /// The answer to a completed sign-in: the session's sign-in time, then the next link.
    async fn signed_in(&self, session: &RequestSession<'_>, done: LoggedIn) -> WebResponse {
        if let Err(e) = session.insert(KEY_SINCE, now().to_string()).await {
            return self.error_response(&Error::Store(e.0));
        }
        // What single sign-out finds this session by (the backend indexes it on save).
        if let Some(iss) = done.user.claim("iss") {
            let sign_in = SignInRef {
                iss: iss.to_owned(),
                sid: done.user.claim("sid").map(str::to_owned),
                sub: done.user.claim("sub").map(str::to_owned),
            };
            if sign_in.sid.is_none()
                && self
                    .identity()
                    .is_some_and(super::logout::is_entra_authority)
            {
                tracing::warn!(
                    "the ID token has no sid claim: Entra's front-channel logout cannot end                      this session; add the sid optional claim to the app registration"
                );
            }
            if let Ok(text) = serde_json::to_string(&sign_in) {
                if let Err(e) = session.insert(KEY_SSO, text).await {
                    return self.error_response(&Error::Store(e.0));
                }
            }
        }
        let target = done.next_link.as_deref().unwrap_or(&self.inner.plan.home);
        WebResponse::redirect(target)
    }

    /// A device code sign-in still waiting for the user: the code again, on a page that
    /// reloads itself at the callback after `retry_after` (200, never cached).
    fn device_waiting(&self, instructions: LogInStart, retry_after: Duration) -> WebResponse {
        let page = self.login_page(instructions.auth_uri, instructions.user_code);
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        WebResponse::html(
            Outcome::Page,
            200,
            self.pages().device_code(&page, retry_after),
        )
        .with_header("retry-after", secs.max(1).to_string())
    }

    /// The page that starts a sign-in: for device code, the code and a page that polls
    /// at the provider's interval; otherwise the login page. Its provider URL comes back
    /// with it (for the answer's outcome, without a copy).
    async fn start_page(&self, session: &dyn SessionStore, start: LogInStart) -> (String, String) {
        let device = start.user_code.is_some();
        let page = self.login_page(start.auth_uri, start.user_code);
        let interval = if device {
            crate::flow::device_poll_interval(session).await
        } else {
            None
        };
        let body = match interval {
            Some(interval) => self.pages().device_code(&page, interval),
            None => self.pages().login(&page),
        };
        (body, page.auth_uri)
    }

    fn login_page(&self, auth_uri: String, user_code: Option<String>) -> LoginPage {
        LoginPage {
            auth_uri,
            user_code,
            device_poll_uri: self.inner.plan.callback.clone(),
            reset_password_uri: None,
        }
    }

    /// The signed-in user, or `None`. Reads the user part of the session (no token
    /// parsing, no provider call unless the ID token expired and must be renewed). A
    /// sign-in older than the absolute lifetime ends here.
    pub async fn user(
        &self,
        req: &WebRequest<'_>,
        store: &dyn SessionStore,
    ) -> Result<Option<User>, WebResponse> {
        let identity = self.configured()?;
        let session = self.session(req, store);
        let user = identity
            .get_user(&session)
            .await
            .map_err(|e| self.error_response(&e))?;
        if user.is_some() && self.sign_in_expired(store).await? {
            tracing::info!("the sign-in reached the absolute session lifetime; signing out");
            if let Err(e) = store.destroy().await {
                return Err(self.error_response(&Error::Store(e.0)));
            }
            return Ok(None);
        }
        Ok(user)
    }

    /// The signed-in user as a stored session record shows it, when the answer of
    /// [`user`](Self::user) would be that user with nothing else to do: the user part
    /// reads, the ID token is within its lifetime (no renewal due) and the sign-in within
    /// the absolute lifetime. `None` otherwise: then [`user`](Self::user) decides
    /// (renewal, expiry, sign-out, errors). Adapters whose session layer would copy the
    /// whole record to read the user call it with a record the backend shares
    /// ([`SessionBackend::load_shared`](crate::sessions::SessionBackend::load_shared)).
    pub fn user_in_record(&self, record: &crate::sessions::StoredSession) -> Option<User> {
        let value = |key| record.data.get(key).map(String::as_str);
        self.user_in_values(value(crate::store::KEY_USER), value(KEY_SINCE))
    }

    /// [`user_in_record`](Self::user_in_record) over the two stored values it reads, the
    /// user part ([`KEY_USER`](crate::store::KEY_USER)) and the sign-in time
    /// ([`KEY_SINCE`](crate::store::KEY_SINCE)), for adapters whose session layer holds
    /// them loaded already (actix-session loads every session before the handler runs).
    pub fn user_in_values(&self, user: Option<&str>, since: Option<&str>) -> Option<User> {
        let (user, since) = self.parse_user_parts(user, since)?;
        self.current_user(user, since, crate::flow::now())
    }

    /// The stored user part, parsed (or known by its text), and the sign-in time; `None`
    /// when either does not read (the user part must be there, the time may be absent).
    fn parse_user_parts(
        &self,
        user: Option<&str>,
        since: Option<&str>,
    ) -> Option<(User, Option<i64>)> {
        let user = self.identity()?.parse_user(user?)?;
        let since = match since {
            Some(text) => Some(parse_since(text)?),
            None => None,
        };
        Some((user, since))
    }

    /// `user`, signed in at `since`, unless at `now` its ID token is due for renewal or
    /// the sign-in is past the absolute lifetime (then the full path decides).
    fn current_user(&self, user: User, since: Option<i64>, now: i64) -> Option<User> {
        let renewal_due = self.identity()?.renewal_due_at(&user, now);
        let expired = since.is_some_and(|since| self.past_absolute_lifetime_at(since, now));
        (!renewal_due && !expired).then_some(user)
    }

    /// [`user_in_record`](Self::user_in_record) for the session `id` of `backend`, with
    /// whether its idle-timeout touch is due. From an in-process
    /// backend always (a read costs no round trip); from a remote store only within
    /// [`request_scope`](crate::sessions::request_scope), which hands the record read
    /// here to the session layer's load, so that the store is read once per request.
    ///
    /// From the [`MemoryBackend`](crate::sessions::MemoryBackend), the user and sign-in
    /// time are parsed once per record and kept with it (a save replaces both); the ID
    /// token's lifetime and the session lifetimes are checked against the clock on every
    /// read.
    pub async fn user_in_backend(
        &self,
        backend: &dyn SessionBackend,
        id: &str,
    ) -> Option<BackendUser> {
        let parse = |record: &crate::sessions::StoredSession| {
            let value = |key| record.data.get(key).map(String::as_str);
            self.parse_user_parts(value(crate::store::KEY_USER), value(KEY_SINCE))
        };
        // One clock reading serves the record's expiry and the user's lifetimes.
        let (user, since, expires_at, now) = match backend.as_memory() {
            Some(memory) => {
                let now = crate::flow::now();
                memory.read_live(id, now, |record, memo| {
                    let (user, since) = memo.get_or_init(|| parse(record)).as_ref()?;
                    Some((user.clone(), *since, record.expires_at, now))
                })??
            }
            None => {
                let record = crate::sessions::read_directly(backend, id).await?;
                let (user, since) = parse(&record)?;
                (user, since, record.expires_at, crate::flow::now())
            }
        };
        Some(BackendUser {
            user: self.current_user(user, since, now)?,
            touch_due: self.inner.session.needs_touch(expires_at, now),
        })
    }

    /// Whether a sign-in completed at `since` (the stored `identity.since`) is past the
    /// absolute session lifetime; `None` when `since` does not read.
    fn past_absolute_lifetime(&self, since: &str) -> Option<bool> {
        Some(self.past_absolute_lifetime_at(parse_since(since)?, crate::flow::now()))
    }

    fn past_absolute_lifetime_at(&self, since: i64, now: i64) -> bool {
        let limit =
            i64::try_from(self.inner.session.absolute_timeout.as_secs()).unwrap_or(i64::MAX);
        now.saturating_sub(since) > limit
    }

    async fn sign_in_expired(&self, store: &dyn SessionStore) -> Result<bool, WebResponse> {
        let since = store
            .get(KEY_SINCE)
            .await
            .map_err(|e| self.error_response(&Error::Store(e.0)))?;
        Ok(since
            .and_then(|s| self.past_absolute_lifetime(&s))
            .unwrap_or(false))
    }

    /// The signed-in user; when nobody is, the answer that starts a sign-in returning to
    /// this request's URL (see [`SignInAnswer`]; JSON callers get a JSON 401).
    pub async fn require_user(
        &self,
        req: &WebRequest<'_>,
        store: &dyn SessionStore,
    ) -> Result<User, WebResponse> {
        match self.user(req, store).await? {
            Some(user) => Ok(user),
            // Boxed: the sign-in's state machine is large, and a signed-in request
            // would otherwise carry (and move) it too.
            None => Err(Box::pin(self.sign_in(req, store, Scopes::default(), None)).await),
        }
    }

    /// Starts a sign-in for `scopes` (and a claims challenge) that returns to this
    /// request's URL, and gives the answer that sends the browser to the provider.
    pub async fn sign_in(
        &self,
        req: &WebRequest<'_>,
        store: &dyn SessionStore,
        scopes: Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> WebResponse {
        let identity = match self.configured() {
            Ok(i) => i,
            Err(res) => return res,
        };
        let plan = &self.inner.plan;
        let challenge = self.inner.sign_in_challenge.clone();
        if req.wants_json() {
            let login_uri = format!(
                "{}?{}",
                plan.login,
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", req.link)
                    .finish()
            );
            let body = serde_json::json!({
                "error": "sign_in_required",
                "error_description": "Sign in first: open login_uri in the browser.",
                "login_uri": login_uri,
            });
            return WebResponse::json(
                Outcome::SignInRequired { auth_uri: None },
                401,
                "application/json",
                body.to_string(),
            )
            .with_header("www-authenticate", challenge);
        }
        let session = self.session(req, store);
        let options = LogInOptions {
            scopes,
            claims,
            next_link: safe_next_link(req.link),
            ..Default::default()
        };
        let res = match identity.log_in(&session, options).await {
            Ok(start) => {
                let outcome = |auth_uri| Outcome::SignInRequired {
                    auth_uri: Some(auth_uri),
                };
                match (self.inner.sign_in_answer, &start.user_code) {
                    (SignInAnswer::Redirect, None) => {
                        let res = WebResponse::redirect(&start.auth_uri);
                        WebResponse {
                            outcome: outcome(start.auth_uri),
                            ..res
                        }
                    }
                    _ => {
                        let (body, auth_uri) = self.start_page(&session, start).await;
                        WebResponse::html(outcome(auth_uri), 401, body)
                            .with_header("www-authenticate", challenge)
                    }
                }
            }
            Err(e) => self.error_response(&e),
        };
        res.with_cookies(session.set_cookies())
    }

    /// A fresh access token for `scopes`: from the session's cache, else refreshed. When
    /// the user must come back to the provider (not signed in, consent for new scopes,
    /// conditional access, a refused refresh), the answer starts a sign-in asking for
    /// `scopes` that returns to this URL — at most [`CONSENT_GUARD_MAX`] times per scope
    /// set within [`CONSENT_GUARD_WINDOW`] for a signed-in user; then a 403 page explains
    /// that consent could not be obtained instead of looping. A token obtained clears the
    /// count.
    pub async fn token_for(
        &self,
        req: &WebRequest<'_>,
        store: &dyn SessionStore,
        scopes: &Scopes,
    ) -> Result<TokenForUser, WebResponse> {
        let identity = self.configured()?;
        let session = self.session(req, store);
        match identity.get_token_for_user(&session, scopes).await {
            Ok(token) => {
                consent_clear(store, scopes).await;
                Ok(token)
            }
            Err(Error::InteractionRequired {
                scopes: wanted,
                claims,
                reason,
            }) => Err(self.interactive(req, store, wanted, claims, &reason).await),
            // A provider may refuse to widen a refresh token's scopes (RFC 6749 §6,
            // `invalid_scope`): the new scopes need an interactive sign-in, like consent.
            Err(Error::Provider(p)) if p.error == "invalid_scope" => {
                let reason = p.summary();
                Err(self
                    .interactive(req, store, scopes.clone(), None, &reason)
                    .await)
            }
            Err(e) => Err(self.error_response(&e)),
        }
    }

    /// Sends the user back to the provider for `scopes` with a claims challenge, e.g. after
    /// an API answered `401` with `WWW-Authenticate: Bearer error="insufficient_claims",
    /// claims="…"` (see [`ClaimsChallenge::from_www_authenticate`]). Subject to the same
    /// loop guard as [`token_for`](Self::token_for).
    pub async fn challenge(
        &self,
        req: &WebRequest<'_>,
        store: &dyn SessionStore,
        scopes: &Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> WebResponse {
        self.interactive(
            req,
            store,
            scopes.clone(),
            claims,
            "the API asked for more claims",
        )
        .await
    }

    async fn interactive(
        &self,
        req: &WebRequest<'_>,
        store: &dyn SessionStore,
        scopes: Scopes,
        claims: Option<ClaimsChallenge>,
        reason: &str,
    ) -> WebResponse {
        // Anonymous visitors simply sign in (with the scopes); the guard counts only the
        // round trips of signed-in users, so anonymous requests create no session.
        let signed_in = matches!(store.get(crate::store::KEY_USER).await, Ok(Some(_)));
        if signed_in && !consent_allows(store, &scopes).await {
            return self.consent_not_obtained(&scopes, reason);
        }
        tracing::info!(scopes = %scopes, %reason, "asking the user to come back to the provider");
        self.sign_in(req, store, scopes, claims).await
    }

    fn consent_not_obtained(&self, scopes: &Scopes, reason: &str) -> WebResponse {
        let page = ErrorPage {
            title: "Consent could not be obtained".to_owned(),
            error: Some("consent_not_obtained".to_owned()),
            description: Some(format!(
                "The app asked the identity provider several times within a few minutes for \
                 the permission(s) {} and still could not get a token, so it stopped asking to \
                 avoid a sign-in loop. Last reason: {reason}. The permission may need an \
                 administrator's consent, or a policy of your organisation blocks it. Try \
                 again in a few minutes, or contact the app's administrator.",
                scopes.to_wire()
            )),
            redirect_uri: None,
            home_uri: self.inner.plan.home.clone(),
            retry_uri: None,
        };
        WebResponse::html(
            Outcome::ConsentNotObtained {
                scopes: scopes.to_wire(),
            },
            403,
            self.pages().error(&page),
        )
    }

    fn forbidden(&self, requirement: String) -> WebResponse {
        let page = ErrorPage {
            title: "You do not have access to this page".to_owned(),
            error: Some("forbidden".to_owned()),
            description: Some(format!(
                "You are signed in, but this page requires {requirement}. Ask an \
                 administrator of the app to assign it to you, then sign out and in again."
            )),
            redirect_uri: None,
            home_uri: self.inner.plan.home.clone(),
            retry_uri: None,
        };
        WebResponse::html(
            Outcome::Forbidden { requirement },
            403,
            self.pages().error(&page),
        )
    }

    /// Ok if `user` holds the app role `role` (`roles` claim), else the 403 page.
    pub fn require_role(&self, user: &User, role: &str) -> Result<(), WebResponse> {
        if user.has_role(role) {
            Ok(())
        } else {
            Err(self.forbidden(format!("the app role {role:?}")))
        }
    }

    /// Ok if the signed-in `user` is a member of the group `group` (object id,
    /// case-insensitive), else the 403 page. What a group guard (`InGroup<G>`) calls.
    ///
    /// * The ID token carries `groups`: answered from it, no call.
    /// * A group overage (`_claim_names`/`_claim_sources` or `hasgroups` instead of
    ///   `groups`, for users in more than 200 groups): resolved through Microsoft Graph
    ///   with [`Identity::is_member_of`] and cached in this session (see
    ///   [`crate::groups`]). The app needs the delegated Graph permission
    ///   `GroupMember.Read.All` (admin consent). Not consented yet: the answer starts the
    ///   incremental consent sign-in for it that returns to this URL, within the same
    ///   consent-loop guard as [`token_for`](Self::token_for).
    /// * Graph fails or does not answer within [`Timeouts::total`](crate::Timeouts): a
    ///   502 page (`Outcome::GroupsUnavailable`, `Retry-After`) that says what to check;
    ///   the check never passes when membership cannot be read.
    pub async fn require_group(
        &self,
        req: &WebRequest<'_>,
        store: &dyn SessionStore,
        user: &User,
        group: &str,
    ) -> Result<(), WebResponse> {
        let member = if user.has_group_overage() {
            let identity = self.configured()?;
            let session = self.session(req, store);
            match identity.is_member_of(&session, group).await {
                Ok(member) => member,
                Err(Error::InteractionRequired {
                    scopes,
                    claims,
                    reason,
                }) => return Err(self.interactive(req, store, scopes, claims, &reason).await),
                Err(Error::Provider(p)) if p.error == "invalid_scope" => {
                    let scopes = identity.config().group_scopes.clone();
                    let reason = p.summary();
                    return Err(self.interactive(req, store, scopes, None, &reason).await);
                }
                Err(e @ Error::Graph { .. }) => return Err(self.groups_unavailable(&e)),
                Err(e) => return Err(self.error_response(&e)),
            }
        } else {
            user.in_group(group.trim())
        };
        if member {
            Ok(())
        } else {
            Err(self.forbidden(format!("membership of the group {group:?}")))
        }
    }

    /// The 502 page for group memberships Microsoft Graph could not give.
    fn groups_unavailable(&self, error: &Error) -> WebResponse {
        tracing::error!(error = %error, "group memberships could not be read");
        let page = ErrorPage {
            title: error.title().to_owned(),
            error: Some("groups_unavailable".to_owned()),
            description: Some(format!(
                "This page is only for members of a group, and your memberships could not be \
                 read from Microsoft Graph ({error}). Reload the page in a moment. If it persists, \
                 the app's administrator should check that the app registration has the \
                 delegated Microsoft Graph permission GroupMember.Read.All with admin \
                 consent, and that Microsoft Graph (GRAPH_ENDPOINT) is reachable from the app."
            )),
            redirect_uri: None,
            home_uri: self.inner.plan.home.clone(),
            retry_uri: None,
        };
        WebResponse::html(Outcome::GroupsUnavailable, 502, self.pages().error(&page))
            .with_header("retry-after", "5")
    }
}

impl WebAuthBuilder {
    /// Builds the engine, or an unconfigured one (showing the configuration page) when
    /// the identity or the options are wrong.
    pub fn build_or_unconfigured(self) -> WebAuth {
        let pages = self.pages.clone();
        match self.build() {
            Ok(auth) => auth,
            Err(error) => {
                WebAuth::unconfigured_with(error, pages.unwrap_or_else(|| Arc::new(DefaultPages)))
            }
        }
    }
}

/// The page for a missing piece of an app's setup (HTTP 500), for adapters that cannot
/// reach their [`WebAuth`] (e.g. its layer is the missing piece).
pub fn missing_setup_page(pages: &dyn Pages, home: &str, what: &str, fix: &str) -> WebResponse {
    let page = ErrorPage {
        title: "The app is not set up correctly".to_owned(),
        error: Some("missing_setup".to_owned()),
        description: Some(format!("{what} is missing. {fix}")),
        redirect_uri: None,
        home_uri: home.to_owned(),
        retry_uri: None,
    };
    WebResponse::html(Outcome::MissingSetup, 500, pages.error(&page))
}

/// The stored sign-in time (`identity.since`, JSON: a number, or a string of one).
fn parse_since(text: &str) -> Option<i64> {
    text.trim_matches('"').parse().ok()
}

/// The `WWW-Authenticate` value of a sign-in answer: the app's origin and its login route.
fn sign_in_challenge(plan: &RoutePlan) -> String {
    format!(
        "Cookie realm=\"{}\", form-action=\"{}\"",
        origin_of(&plan.home_url),
        plan.login
    )
}

fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

type ConsentTimes = BTreeMap<String, Vec<i64>>;

/// Records a round trip for `scopes` unless [`CONSENT_GUARD_MAX`] happened within the
/// window.
async fn consent_allows(store: &dyn SessionStore, scopes: &Scopes) -> bool {
    let now = now();
    let window = CONSENT_GUARD_WINDOW.as_secs() as i64;
    let mut map: ConsentTimes = match store.get(KEY_CONSENT).await {
        Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_default(),
        _ => ConsentTimes::new(),
    };
    map.retain(|_, times| {
        times.retain(|t| now - *t < window);
        !times.is_empty()
    });
    let times = map.entry(scopes.cache_key()).or_default();
    if times.len() >= CONSENT_GUARD_MAX {
        return false;
    }
    times.push(now);
    if let Ok(v) = serde_json::to_string(&map) {
        if let Err(e) = store.insert(KEY_CONSENT, v).await {
            tracing::warn!(error = %e, "could not record a consent round trip");
        }
    }
    true
}

/// Forgets the round trips for `scopes` once a token was obtained.
async fn consent_clear(store: &dyn SessionStore, scopes: &Scopes) {
    let Ok(Some(v)) = store.get(KEY_CONSENT).await else {
        return;
    };
    let mut map: ConsentTimes = serde_json::from_str(&v).unwrap_or_default();
    if map.remove(&scopes.cache_key()).is_none() {
        return;
    }
    let result = if map.is_empty() {
        store.remove(KEY_CONSENT).await
    } else {
        match serde_json::to_string(&map) {
            Ok(v) => store.insert(KEY_CONSENT, v).await,
            Err(_) => Ok(()),
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not clear the consent guard");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemorySession;

    #[test]
    fn json_callers_are_told_apart_from_page_views() {
        let r = |a: &'static str| WebRequest::new("/").accept(Some(a)).wants_json();
        assert!(r("application/json"));
        assert!(r("application/problem+json, */*"));
        assert!(!r(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!r("*/*"));
        assert!(!WebRequest::new("/").wants_json());
    }

    #[tokio::test]
    async fn the_consent_guard_allows_two_round_trips_then_stops_until_a_token_clears_it() {
        let store = MemorySession::new();
        let scopes = Scopes::parse("Mail.Read");
        assert!(consent_allows(&store, &scopes).await);
        assert!(consent_allows(&store, &scopes).await);
        assert!(!consent_allows(&store, &scopes).await);
        assert!(consent_allows(&store, &Scopes::parse("Files.Read")).await);
        consent_clear(&store, &scopes).await;
        assert!(consent_allows(&store, &scopes).await);
    }

    fn engine(idle: u64, absolute: u64) -> WebAuth {
        let authority = crate::Authority::parse(
            "https://login.microsoftonline.com/aaaabbbb-0000-cccc-1111-dddd2222eeee",
        )
        .unwrap();
        let config = IdentityConfig::new("00001111-aaaa-2222-bbbb-3333cccc4444", authority)
            .with_client_secret("a secret")
            .with_redirect_uri(Some("http://localhost:5000/getAToken"));
        WebAuth::builder(Identity::new(config).unwrap())
            .session_secret("a test secret of at least thirty-two characters")
            .idle_timeout(Duration::from_secs(idle))
            .absolute_timeout(Duration::from_secs(absolute))
            .build()
            .unwrap()
    }

    fn record(name: &str, user_expires: i64, since: i64, expires_at: i64) -> StoredSession {
        let user = format!(r#"{{"expires_at":{user_expires},"name":"{name}","claims":{{}}}}"#);
        StoredSession {
            data: [
                (crate::store::KEY_USER.to_owned(), user),
                (KEY_SINCE.to_owned(), since.to_string()),
            ]
            .into(),
            expires_at,
        }
    }

    use crate::sessions::{MemoryBackend, StoredSession};

    #[tokio::test]
    async fn a_direct_read_checks_every_lifetime_on_every_read_of_a_known_record() {
        let now = crate::flow::now();
        let web = engine(3600, 7200);
        let backend = MemoryBackend::new();
        let name = |read: Option<BackendUser>| read.and_then(|r| r.user.name().map(str::to_owned));
        // Fresh: the user, twice (the second read from the remembered record).
        backend
            .create("s1", &record("Adele", now + 600, now - 10, now + 3600))
            .await
            .unwrap();
        for _ in 0..2 {
            let read = web
                .user_in_backend(&backend, "s1")
                .await
                .expect("signed in");
            assert_eq!(read.user.name(), Some("Adele"));
            assert!(!read.touch_due, "just written: no touch");
        }
        // A replaced record is read anew.
        backend
            .save("s1", &record("Alex", now + 600, now - 10, now + 3600))
            .await
            .unwrap();
        assert_eq!(
            name(web.user_in_backend(&backend, "s1").await).as_deref(),
            Some("Alex")
        );
        // A record whose touch is due says so.
        backend
            .create("s2", &record("Alex", now + 600, now - 10, now + 60))
            .await
            .unwrap();
        assert!(web.user_in_backend(&backend, "s2").await.unwrap().touch_due);
        // An ID token past its lifetime, or a sign-in past the absolute lifetime: the full
        // path decides (renewal, sign-out), on the first read and on every later one (the
        // record's user is parsed by then and kept with it: the lifetimes are not).
        backend
            .create("s3", &record("Old", now - 600, now - 10, now + 3600))
            .await
            .unwrap();
        backend
            .create("s4", &record("Old", now + 600, now - 7300, now + 3600))
            .await
            .unwrap();
        for id in ["s3", "s4", "s3", "s4"] {
            assert!(web.user_in_backend(&backend, id).await.is_none(), "{id}");
        }
        assert!(web.user_in_backend(&backend, "absent").await.is_none());
    }
}
