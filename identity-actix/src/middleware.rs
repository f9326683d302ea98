//! [`IdentityMiddleware`]: actix-session over the core's session backend, plus the
//! plumbing the extractors need.

use crate::auth::Auth;
use crate::extract::IdentitySession;
use crate::rejection::{respond, AuthRejection, Rejection};
use crate::session::BackendStore;
use actix_session::config::{BrowserSession, CookieContentSecurity, TtlExtensionPolicy};
use actix_session::storage::{SaveError, UpdateError};
use actix_session::SessionMiddleware;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::InternalError;
use actix_web::{HttpMessage, ResponseError};
use futures_util::future::LocalBoxFuture;
use identity_core::sessions::SessionBackend;
use identity_core::web::WebResponse;
use identity_core::Error;
use std::rc::Rc;
use std::sync::Arc;

/// The label of the session cookie's key (derived from the session secret).
const COOKIE_KEY_LABEL: &[u8] = b"identity-actix session cookie key v2";

type Inner<T> =
    <SessionMiddleware<BackendStore> as Transform<Completer<T>, ServiceRequest>>::Transform;

/// The middleware of [`Auth::middleware`]: actix-session's `SessionMiddleware` over the
/// core's [`SessionBackend`], with the engine's cookie and session policies (see the
/// crate docs, *Sessions*), the configuration page of an unconfigured [`Auth`], and the
/// `503` page when the session store cannot be reached.
pub struct IdentityMiddleware {
    auth: Auth,
    session: SessionMiddleware<BackendStore>,
    unconfigured: Option<WebResponse>,
}

impl std::fmt::Debug for IdentityMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityMiddleware")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The session middleware of the app over `backend` (e.g.
    /// `StoreUrl::from_env()?.open(capacity, timeout).await?`, or an
    /// `Arc::new(MemoryBackend::new())`). Register it with `App::wrap` *last*, so that it
    /// runs first and wraps every route that uses the extractors or the sign-in routes.
    pub fn middleware(&self, backend: Arc<dyn SessionBackend>) -> IdentityMiddleware {
        let core = self.core();
        // The engine ends sessions of logout notifications and coordinates refreshes in it.
        core.use_session_backend(backend.clone());
        let cookies = core.cookies();
        let idle = core.session_policy().idle_timeout.as_secs();
        let lifecycle = BrowserSession::default()
            .state_ttl(CookieDuration::seconds(
                i64::try_from(idle).unwrap_or(i64::MAX),
            ))
            // The idle-timeout touch of read-only requests is the core's rule, applied
            // when the session is loaded (`BackendStore`).
            .state_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges);
        let key = Key::from(&core.derive_key(COOKIE_KEY_LABEL));
        let session = SessionMiddleware::builder(BackendStore(backend, core.session_policy()), key)
            .cookie_name(cookies.session_name().to_owned())
            .cookie_secure(cookies.secure())
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_path("/".to_owned())
            .cookie_content_security(CookieContentSecurity::Private)
            .session_lifecycle(lifecycle)
            .build();
        IdentityMiddleware {
            auth: self.clone(),
            session,
            unconfigured: core.not_configured_response(),
        }
    }
}

impl<T, B> Transform<T, ServiceRequest> for IdentityMiddleware
where
    T: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<EitherBody<B>>>;
    type Error = actix_web::Error;
    type Transform = IdentityService<Inner<T>>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Transform, ()>>;

    fn new_transform(&self, service: T) -> Self::Future {
        // Outside actix-session: the configuration page and the store's failures. Inside
        // it: deferred sign-ins, which may still write to the session.
        let inner = self.session.new_transform(Completer {
            service: Rc::new(service),
        });
        let (auth, unconfigured) = (self.auth.clone(), self.unconfigured.clone());
        Box::pin(async move {
            let inner = Rc::new(inner.await?);
            Ok(IdentityService {
                inner,
                auth,
                unconfigured,
            })
        })
    }
}

/// The service of [`IdentityMiddleware`].
#[doc(hidden)]
pub struct IdentityService<S> {
    inner: Rc<S>,
    auth: Auth,
    unconfigured: Option<WebResponse>,
}

impl<S, B> Service<ServiceRequest> for IdentityService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if let Some(page) = &self.unconfigured {
            let res = req.into_response(respond(page)).map_into_right_body();
            return Box::pin(async move { Ok(res) });
        }
        req.extensions_mut().insert(self.auth.clone());
        let (auth, inner) = (self.auth.clone(), Rc::clone(&self.inner));
        Box::pin(async move {
            match inner.call(req).await {
                Ok(res) => Ok(res.map_into_left_body()),
                // No request left to answer with: actix-web renders the error.
                Err(e) if store_failed(&e) => {
                    let page = auth.core().error_response(&Error::Store(e.to_string()));
                    Err(AuthRejection::new(page).into())
                }
                Err(e) => Err(e),
            }
        })
    }
}

/// Whether actix-session failed on the store (its errors carry the store's error types).
fn store_failed(e: &actix_web::Error) -> bool {
    e.as_error::<InternalError<anyhow::Error>>().is_some()
        || e.as_error::<InternalError<SaveError>>().is_some()
        || e.as_error::<InternalError<UpdateError>>().is_some()
}

/// Inside actix-session: starts the sign-ins that [`User`](crate::User) deferred.
#[doc(hidden)]
pub struct Completer<T> {
    service: Rc<T>,
}

impl<T, B> Service<ServiceRequest> for Completer<T>
where
    T: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let res = service.call(req).await?;
            let deferred = res
                .response()
                .error()
                .and_then(|e| e.as_error::<AuthRejection>())
                .is_some_and(|r| matches!(r.0, Rejection::SignIn(_)));
            if !deferred {
                return Ok(res.map_into_left_body());
            }
            let answer = match IdentitySession::of(res.request()) {
                Ok(session) => respond(&session.sign_in().await),
                Err(rejection) => rejection.error_response(),
            };
            Ok(res.into_response(answer).map_into_right_body())
        })
    }
}
