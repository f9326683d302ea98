//! [`Auth`]: the adapter's handle, its options, its routes and its layers.

use crate::extract::{request_facts, Ctx};
use crate::rejection::{respond, AuthRejection};
use crate::sessions::{SessionBackendStore, SessionSettings};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use futures_util::future::BoxFuture;
use identity_core::web::{Route, WebAuth, WebAuthBuilder};
use identity_core::{Error, Identity, Pages};
use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_sessions::SessionManagerLayer;

pub use identity_core::web::SESSION_SECRET_VAR;

/// Largest `form_post` callback body accepted.
const MAX_CALLBACK_BODY: usize = 64 * 1024;

/// The sign-in handle of an axum app: the core's [`WebAuth`] engine plus where its
/// routes sit in the app's router. Built once, cloned freely. It gives the app its routes
/// ([`Auth::router`]) and layers ([`Auth::layer`], [`Auth::identity_layer`],
/// [`Auth::login_required`]).
///
/// An `Auth` may be *unconfigured* ([`Auth::unconfigured`], or [`Auth::from_env`] with
/// settings missing): every request then answers with the configuration page naming the
/// missing settings.
#[derive(Clone)]
pub struct Auth {
    pub(crate) core: WebAuth,
    nested_at: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("core", &self.core)
            .field("nested_at", &self.nested_at)
            .finish()
    }
}

/// Options of an [`Auth`]; from [`Auth::builder`].
#[must_use]
#[derive(Debug)]
pub struct AuthBuilder {
    core: WebAuthBuilder,
    nested_at: String,
}

/// Builder methods that hand their arguments to the same method of [`WebAuthBuilder`].
macro_rules! mirror {
    ($($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty);)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $arg: $ty) -> Self {
            self.core = self.core.$name($arg);
            self
        }
    )*};
}

impl AuthBuilder {
    mirror! {
        /// Renders the login, error and configuration pages with your own templates.
        pages(pages: impl Pages);
        /// The public path of the app's home page (default: the nesting prefix plus `/`).
        home(path: impl Into<String>);
        /// The secret keying the cookies. Default: `SESSION_SECRET` (see [`WebAuthBuilder`]).
        session_secret(secret: impl AsRef<[u8]>);
        /// Ends sessions after `idle` without a request (default 4 hours).
        idle_timeout(idle: Duration);
        /// Ends a sign-in this long after it completed (default 7 days).
        absolute_timeout(absolute: Duration);
        /// How unauthenticated page views are answered (login page or redirect).
        sign_in_answer(answer: identity_core::web::SignInAnswer);
    }

    /// Declares that the router of [`Auth::router`] will be nested at `prefix`
    /// (`Router::new().nest(prefix, auth.router())`): the routes inside it lose the
    /// prefix, their public paths keep it. The redirect URI's path must start with it.
    pub fn nested_at(mut self, prefix: impl Into<String>) -> Self {
        self.nested_at = prefix.into().trim_end_matches('/').to_owned();
        self
    }

    /// Builds the `Auth`. Fails with [`Error::Config`] when the redirect URI has no usable
    /// path or is not under the nesting prefix.
    pub fn build(self) -> Result<Auth, Error> {
        let nested = self.nested_at;
        if !nested.is_empty() && !nested.starts_with('/') {
            return Err(Error::config(format!(
                "the nesting prefix {nested:?} must start with '/'"
            )));
        }
        let core = self.core.route_prefix(nested.clone()).build()?;
        let auth = Auth {
            core,
            nested_at: nested,
        };
        for (_, path) in auth.core.all_routes() {
            auth.inner_path(path)?;
        }
        Ok(auth)
    }
}

impl Auth {
    /// An `Auth` with the default options: routes beside the redirect URI's path, merged
    /// at the root of the app, home page `/`, the built-in pages, `SESSION_SECRET`.
    pub fn new(identity: Identity) -> Result<Auth, Error> {
        Self::builder(identity).build()
    }

    /// Starts building an `Auth` with options.
    pub fn builder(identity: Identity) -> AuthBuilder {
        AuthBuilder {
            core: WebAuth::builder(identity),
            nested_at: String::new(),
        }
    }

    /// From the environment ([`WebAuth::from_env`]). Never fails: with settings missing
    /// or wrong, the `Auth` shows the configuration page on every request.
    pub fn from_env() -> Auth {
        Auth::from_core(WebAuth::from_env())
    }

    /// An `Auth` over an engine built elsewhere (merged at the root of the app).
    pub fn from_core(core: WebAuth) -> Auth {
        Auth {
            core,
            nested_at: String::new(),
        }
    }

    /// An `Auth` answering every request with the configuration page built from `error`.
    pub fn unconfigured(error: Error) -> Auth {
        Auth::from_core(WebAuth::unconfigured(error))
    }

    /// The core engine.
    pub fn core(&self) -> &WebAuth {
        &self.core
    }

    /// The core handle, unless this `Auth` is unconfigured.
    pub fn identity(&self) -> Option<&Identity> {
        self.core.identity()
    }

    /// Why this `Auth` is unconfigured, if it is.
    pub fn configuration_error(&self) -> Option<&Error> {
        self.core.configuration_error()
    }

    fn inner_path(&self, public: &str) -> Result<String, Error> {
        public
            .strip_prefix(self.nested_at.as_str())
            .filter(|r| r.starts_with('/'))
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::config(format!(
                    "the route {public:?} (from REDIRECT_URI) is not under the nesting prefix \
                     {:?}: the redirect URI's path must start with the prefix",
                    self.nested_at
                ))
            })
    }

    /// The sign-in routes, at the paths the engine derives from the redirect URI: the
    /// callback (GET, and POST for `form_post`), `login`, `logout`, for B2C with an
    /// edit-profile user flow `edit_profile`, and the single sign-out routes
    /// `frontchannel_logout` (GET) and `backchannel_logout` (POST). Merge it into the app, or nest it at the
    /// prefix given to [`AuthBuilder::nested_at`].
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let mut router = Router::new();
        for (route, public) in self.core.all_routes() {
            let Ok(path) = self.inner_path(public) else {
                continue;
            };
            let handler = move |State(auth): State<Auth>, req: Request| run_route(auth, route, req);
            let methods = match (route.answers_get(), route.answers_post()) {
                (true, true) => get(handler).post(handler),
                (false, _) => post(handler),
                (true, false) => get(handler),
            };
            router = router.route(&path, methods);
        }
        router.with_state(self.clone())
    }

    /// A layer that makes this `Auth` available to the extractors of every route it
    /// wraps; unconfigured, it answers every request with the configuration page. Put the
    /// session layer around it (or use [`Auth::identity_layer`], which does both).
    pub fn layer(&self) -> AuthLayer {
        AuthLayer { auth: self.clone() }
    }

    /// The identity layer and the session layer in one: sessions from `SESSION_STORE`
    /// (memory or Redis) with the engine's cookie policy, this `Auth` for the extractors,
    /// and a session store failure answered with the 503 page instead of a bare 500.
    pub async fn identity_layer(&self) -> Result<IdentityLayer, Error> {
        let settings = SessionSettings::from_env(self)?;
        Ok(self.identity_layer_with(settings.layer().await?))
    }

    /// [`Auth::identity_layer`] with a session layer you built ([`SessionSettings`]).
    pub fn identity_layer_with(
        &self,
        sessions: SessionManagerLayer<SessionBackendStore>,
    ) -> IdentityLayer {
        IdentityLayer {
            auth: self.clone(),
            sessions,
        }
    }

    /// A route layer that requires a signed-in user for every route of a router, as
    /// `login_required` does for a view: anonymous visitors get the sign-in answer and
    /// come back to the URL they asked for. Use it with `Router::route_layer`:
    pub fn login_required(&self) -> LoginRequiredLayer {
        LoginRequiredLayer { auth: self.clone() }
    }
}

async fn run_route(auth: Auth, route: Route, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form = if parts.method == Method::POST {
        match axum::body::to_bytes(body, MAX_CALLBACK_BODY).await {
            Ok(b) => Some(b),
            Err(_) => {
                let e = Error::InvalidCallback("the form body is unreadable or too large".into());
                return respond(auth.core.error_response(&e));
            }
        }
    } else {
        None
    };
    let ctx = match Ctx::with_auth(&auth, &parts) {
        Ok(ctx) => ctx,
        Err(rejection) => return respond(rejection.0),
    };
    let facts = request_facts(&parts);
    respond(
        auth.core
            .handle(route, &facts, &ctx.seam(), form.as_deref())
            .await,
    )
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

impl<S> tower::Service<Request> for AuthService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        futures_util::future::Either<Ready, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if let Some(res) = self.auth.core.not_configured_response() {
            return futures_util::future::Either::Left(std::future::ready(Ok(respond(res))));
        }
        req.extensions_mut().insert(self.auth.clone());
        let used = crate::sessions::SessionUsed::default();
        req.extensions_mut().insert(used.clone());
        let session = req.extensions().get::<tower_sessions::Session>().cloned();
        let policy = self.auth.core.session_policy();
        let fut = self.inner.call(req);
        // One read of a remote store per request (`request_scope`).
        futures_util::future::Either::Right(Box::pin(identity_core::sessions::request_scope(
            async move {
                let res = fut.await?;
                // Not after a failure (an unreachable store answers 503: no second wait).
                if let Some(session) = session.filter(|_| used.marked()) {
                    if !res.status().is_server_error() {
                        crate::sessions::after_use(&session, &used, &policy).await;
                    }
                }
                Ok(res)
            },
        )))
    }
}

/// The layer of [`Auth::identity_layer`]: sessions, the [`Auth`], and session store
/// failures answered with the 503 page.
#[derive(Clone, Debug)]
pub struct IdentityLayer {
    auth: Auth,
    sessions: SessionManagerLayer<SessionBackendStore>,
}

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = IdentityService<
        <SessionManagerLayer<SessionBackendStore> as tower::Layer<AuthService<S>>>::Service,
    >;

    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            inner: self.sessions.layer(self.auth.layer().layer(inner)),
            auth: self.auth.clone(),
        }
    }
}

/// The service of [`IdentityLayer`].
#[derive(Clone, Debug)]
pub struct IdentityService<S> {
    inner: S,
    auth: Auth,
}

impl<S> tower::Service<Request> for IdentityService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let fut = self.inner.call(req);
        let auth = self.auth.clone();
        Box::pin(async move {
            let res = fut.await?;
            // tower-sessions answers a failed save with an empty 500: say what happened.
            if res.status() == axum::http::StatusCode::INTERNAL_SERVER_ERROR
                && res.headers().is_empty()
            {
                let e = Error::Store("the session could not be saved".into());
                return Ok(respond(auth.core.error_response(&e)));
            }
            Ok(res)
        })
    }
}

/// The layer of [`Auth::login_required`].
#[derive(Clone, Debug)]
pub struct LoginRequiredLayer {
    auth: Auth,
}

impl<S> tower::Layer<S> for LoginRequiredLayer {
    type Service = LoginRequired<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginRequired {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service of [`LoginRequiredLayer`]: runs the route only for a signed-in user, whom
/// it puts in the request extensions (the [`User`](crate::User) extractor reads it again
/// at no cost).
#[derive(Clone, Debug)]
pub struct LoginRequired<S> {
    inner: S,
    auth: Auth,
}

impl<S> tower::Service<Request<Body>> for LoginRequired<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let user = match crate::extract::signed_in_user(&auth, &parts).await {
                Ok(user) => user,
                Err(AuthRejection(res)) => return Ok(respond(res)),
            };
            parts.extensions.insert(user);
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}
