//! [`IdentityMiddleware`]: actix-session plus what the extractors need from each request.

use crate::auth::Auth;
use crate::bridge::Bridge;
use crate::error::AuthError;
use actix_session::config::{CookieContentSecurity, SessionMiddlewareBuilder};
use actix_session::{storage::SessionStore as ActixStore, Session, SessionExt, SessionMiddleware};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, CookieJar, SameSite};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use identity_core::{Error, LogInOptions, LogInStart};
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Name of the session cookie (it holds only the encrypted session id).
pub const SESSION_COOKIE: &str = "id";
/// Name of the encrypted cookie holding the pending sign-ins of a browser, over plain
/// `http` (loopback development).
pub const PENDING_COOKIE: &str = "identity_pending";
/// Name of that cookie when cookies are `Secure` (the `__Host-` prefix pins it to this
/// host, path `/` and https).
pub const PENDING_COOKIE_SECURE: &str = "__Host-identity_pending";
/// Longest encrypted pending-sign-in cookie written: the oldest sign-ins are dropped
/// beyond it (browsers refuse cookies over 4 KB).
const PENDING_COOKIE_MAX: usize = 3800;

fn pending_cookie_name(secure: bool) -> &'static str {
    if secure {
        PENDING_COOKIE_SECURE
    } else {
        PENDING_COOKIE
    }
}

/// The middleware of [`Auth::middleware`]: actix-session's `SessionMiddleware` over your
/// store, configured for sign-in, plus the per-request state the extractors need.
///
/// It
///
/// * keeps the session (signed-in user, tokens) in the server-side `store`, behind an
///   encrypted `HttpOnly`, `SameSite=Lax` cookie (`Secure` unless the redirect URI is
///   plain `http`), whose id is renewed at sign-in;
/// * keeps pending sign-ins in a separate encrypted cookie ([`PENDING_COOKIE`], or
///   [`PENDING_COOKIE_SECURE`] over https; `Max-Age` = the sign-in time limit), so an
///   anonymous visitor sent to sign in gets no server-side session;
/// * turns the extractors' rejections into pages: the login page after starting a
///   sign-in, the error page, the 403 page;
/// * answers every request with the configuration page when the [`Auth`] is
///   unconfigured, or when `store` is a cookie store (tokens must not be kept there).
pub struct IdentityMiddleware<S: ActixStore> {
    auth: Auth,
    session: SessionMiddleware<S>,
    refused: Option<Rc<Error>>,
}

impl<S: ActixStore> std::fmt::Debug for IdentityMiddleware<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityMiddleware")
            .field("auth", &self.auth)
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The session middleware of the app, over `store` (see
    /// [`SessionBackend::from_env`](crate::SessionBackend::from_env) for the memory and
    /// Redis stores). Register it with `App::wrap` so that it wraps every route that uses
    /// the extractors or the routes of [`Auth::configure`].
    ///
    /// A `CookieSessionStore` is refused: it would put the refresh and access tokens in a
    /// cookie. The refusal is logged at once and every request is answered with a
    /// configuration page that says so.
    pub fn middleware<S: ActixStore + 'static>(&self, store: S) -> IdentityMiddleware<S> {
        self.middleware_with(store, |b| b)
    }

    /// Like [`Auth::middleware`], with a hook to adjust actix-session's builder (session
    /// lifecycle, TTL, cookie domain or name). The cookie attributes that sign-in depends
    /// on (`HttpOnly`, `SameSite=Lax`, `Secure`, private content) are set before the hook
    /// runs; changing them is at your own risk.
    pub fn middleware_with<S: ActixStore + 'static>(
        &self,
        store: S,
        configure: impl FnOnce(SessionMiddlewareBuilder<S>) -> SessionMiddlewareBuilder<S>,
    ) -> IdentityMiddleware<S> {
        let refused = if std::any::type_name::<S>().ends_with("CookieSessionStore") {
            let error = Error::config(
                "the session store is actix-session's CookieSessionStore, which would keep the \
                 refresh and access tokens in a cookie the browser holds. Use a server-side \
                 store: identity_actix::SessionBackend::from_env() (SESSION_STORE=memory or \
                 redis://...), MemoryStore, or actix-session's RedisSessionStore",
            );
            tracing::error!(error = %error, "refusing a cookie session store");
            Some(Rc::new(error))
        } else {
            None
        };
        let builder = SessionMiddleware::builder(store, self.inner.session_key.clone())
            .cookie_name(SESSION_COOKIE.to_owned())
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_secure(self.inner.secure)
            .cookie_path("/".to_owned())
            .cookie_content_security(CookieContentSecurity::Private);
        IdentityMiddleware {
            auth: self.clone(),
            session: configure(builder).build(),
            refused,
        }
    }
}

impl<S, T, B> Transform<T, ServiceRequest> for IdentityMiddleware<S>
where
    S: ActixStore + 'static,
    T: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    T::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform =
        <SessionMiddleware<S> as Transform<IdentityService<T>, ServiceRequest>>::Transform;
    type InitError = ();
    type Future = <SessionMiddleware<S> as Transform<IdentityService<T>, ServiceRequest>>::Future;

    fn new_transform(&self, service: T) -> Self::Future {
        // The identity service runs inside the session middleware, so that it sees the
        // loaded session and can still change it when completing a response.
        self.session.new_transform(IdentityService {
            service: Rc::new(service),
            auth: self.auth.clone(),
            refused: self.refused.clone(),
        })
    }
}

/// The service inside the session middleware (see [`IdentityMiddleware`]).
#[doc(hidden)]
pub struct IdentityService<T> {
    service: Rc<T>,
    auth: Auth,
    refused: Option<Rc<Error>>,
}

impl<T, B> Service<ServiceRequest> for IdentityService<T>
where
    T: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    T::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let auth = self.auth.clone();
        if let Some(error) = auth.configuration_error().or(self.refused.as_deref()) {
            let res = auth.config_response(error);
            return Box::pin(async move { Ok(req.into_response(res).map_into_right_body()) });
        }
        let ctx = Rc::new(RequestCtx::new(auth, req.request()));
        req.extensions_mut().insert(Rc::clone(&ctx));
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let res = service.call(req).await?;
            let deferred = res
                .response()
                .error()
                .and_then(|e| e.as_error::<AuthError>())
                .cloned();
            let mut res = match deferred {
                Some(rejection) => {
                    let page = complete(&rejection, &ctx, res.request()).await;
                    res.into_response(page).map_into_right_body()
                }
                None => res.map_into_left_body(),
            };
            if let Some(cookie) = ctx.pending_cookie() {
                res.response_mut().add_cookie(&cookie)?;
            }
            Ok(res)
        })
    }
}

/// Turns a rejection into its page. Starting a sign-in is async, which is why this runs
/// here and not in `ResponseError::error_response`.
async fn complete(rejection: &AuthError, ctx: &RequestCtx, req: &HttpRequest) -> HttpResponse {
    let auth = &ctx.auth;
    let here = current_path(req);
    match rejection {
        AuthError::SignInRequired { next } => {
            let options = LogInOptions {
                next_link: next.clone().or(here),
                ..LogInOptions::default()
            };
            start_sign_in(ctx, req, options).await
        }
        AuthError::InteractionRequired {
            scopes,
            claims,
            next,
        } => {
            let options = LogInOptions {
                scopes: scopes.clone(),
                claims: claims.clone(),
                next_link: next.clone().or(here),
                ..LogInOptions::default()
            };
            start_sign_in(ctx, req, options).await
        }
        AuthError::Identity(Error::InteractionRequired { scopes, claims, .. }) => {
            let options = LogInOptions {
                scopes: scopes.clone(),
                claims: claims.clone(),
                next_link: here,
                ..LogInOptions::default()
            };
            start_sign_in(ctx, req, options).await
        }
        AuthError::Identity(error) => auth.error_response(error),
        AuthError::ConsentNotObtained { .. } => auth.message_page(
            StatusCode::FORBIDDEN,
            "Consent could not be obtained",
            Some("consent_not_obtained"),
            rejection.to_string(),
        ),
        AuthError::Forbidden { .. } => auth.message_page(
            StatusCode::FORBIDDEN,
            "You do not have access to this page",
            Some("forbidden"),
            rejection.to_string(),
        ),
        AuthError::MissingMiddleware => HttpResponse::from_error(rejection.clone()),
    }
}

/// Starts a sign-in and answers with the login page (401, a meta refresh to the
/// provider), or the error page if the sign-in cannot start.
async fn start_sign_in(ctx: &RequestCtx, req: &HttpRequest, options: LogInOptions) -> HttpResponse {
    match ctx.log_in(&req.get_session(), options).await {
        Ok(auth_uri) => ctx.auth.login_response(StatusCode::UNAUTHORIZED, auth_uri),
        Err(error) => ctx.auth.error_response(&error),
    }
}

/// The path and query of the request, as a next link.
pub(crate) fn current_path(req: &HttpRequest) -> Option<String> {
    req.uri().path_and_query().map(|pq| pq.as_str().to_owned())
}

/// What the middleware gives each request: the [`Auth`] and the pending-sign-in cookie.
pub(crate) struct RequestCtx {
    pub(crate) auth: Auth,
    pending: RefCell<PendingCookie>,
}

struct PendingCookie {
    /// The cookie as the request carried it (still encrypted).
    received: Option<Cookie<'static>>,
    /// The decrypted value, once read or written.
    value: Option<Option<Value>>,
    changed: bool,
}

impl RequestCtx {
    fn new(auth: Auth, req: &HttpRequest) -> Self {
        let received = req.cookie(pending_cookie_name(auth.inner.secure));
        Self {
            auth,
            pending: RefCell::new(PendingCookie {
                received,
                value: None,
                changed: false,
            }),
        }
    }

    /// The context the middleware put in the request, or the rejection saying it is
    /// missing.
    pub(crate) fn of(req: &HttpRequest) -> Result<Rc<RequestCtx>, AuthError> {
        req.extensions()
            .get::<Rc<RequestCtx>>()
            .cloned()
            .ok_or(AuthError::MissingMiddleware)
    }

    /// The pending sign-ins (decrypted on first use; a cookie that does not decrypt or
    /// parse counts as none).
    pub(crate) fn pending(&self) -> Option<Value> {
        let mut p = self.pending.borrow_mut();
        if p.value.is_none() {
            let decoded = p.received.clone().and_then(|c| {
                let mut jar = CookieJar::new();
                jar.add_original(c);
                let plain = jar
                    .private(&self.auth.inner.pending_key)
                    .get(PENDING_COOKIE)?;
                serde_json::from_str::<Value>(plain.value()).ok()
            });
            p.value = Some(decoded);
        }
        p.value.clone().flatten()
    }

    pub(crate) fn set_pending(&self, value: Option<Value>) {
        let mut p = self.pending.borrow_mut();
        p.value = Some(value);
        p.changed = true;
    }

    /// The `Set-Cookie` for the pending sign-ins, if they changed.
    fn pending_cookie(&self) -> Option<Cookie<'static>> {
        let p = self.pending.borrow();
        if !p.changed {
            return None;
        }
        let value = p.value.clone().flatten().filter(|v| {
            v.get("logins")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        });
        let inner = &self.auth.inner;
        let name = pending_cookie_name(inner.secure);
        match value {
            Some(mut v) => loop {
                let mut jar = CookieJar::new();
                let mut cookie = Cookie::new(name, v.to_string());
                cookie.set_path("/");
                cookie.set_http_only(true);
                cookie.set_same_site(SameSite::Lax);
                cookie.set_secure(inner.secure);
                cookie.set_max_age(CookieDuration::seconds(
                    i64::try_from(inner.pending_ttl.as_secs()).unwrap_or(600),
                ));
                jar.private_mut(&inner.pending_key).add(cookie);
                let encrypted = jar.delta().next().cloned()?;
                let logins = v.get_mut("logins").and_then(Value::as_array_mut);
                match logins {
                    // Too large: forget the oldest pending sign-in and try again.
                    Some(l) if encrypted.value().len() > PENDING_COOKIE_MAX && l.len() > 1 => {
                        l.remove(0);
                    }
                    _ => return Some(encrypted),
                }
            },
            None if p.received.is_some() => {
                let mut cookie = Cookie::new(name, "");
                cookie.set_path("/");
                cookie.set_http_only(true);
                cookie.set_same_site(SameSite::Lax);
                cookie.set_secure(inner.secure);
                cookie.make_removal();
                Some(cookie)
            }
            None => None,
        }
    }

    /// Runs `log_in` against this request's session and cookie.
    pub(crate) async fn log_in(
        &self,
        session: &Session,
        options: LogInOptions,
    ) -> Result<LogInStart, Error> {
        let identity = self.identity()?;
        let bridge = Bridge::load(session, self);
        let started = identity.log_in(&bridge, options).await;
        bridge
            .write_back(session, self)
            .map_err(|e| Error::Store(e.0))?;
        started
    }

    pub(crate) fn identity(&self) -> Result<&identity_core::Identity, Error> {
        self.auth.identity().ok_or_else(|| {
            self.auth
                .configuration_error()
                .cloned()
                .unwrap_or_else(|| Error::config("identity is not configured"))
        })
    }
}
