//! Extractors: [`User`] (and `Option<User>`), [`IdentitySession`], [`Token`],
//! [`HasRole`], [`InGroup`].

use crate::auth::Auth;
use crate::rejection::{missing_middleware, AuthRejection, Rejection};
use crate::session::Bridge;
use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use identity_core::web::{Route, WebRequest, WebResponse};
use identity_core::{ClaimsChallenge, Error, Scopes, TokenForUser};
use std::future::{ready, Ready};
use std::marker::PhantomData;

/// The signed-in user. As an extractor it requires sign-in: an anonymous visitor gets
/// the engine's login answer (a `401` login page that sends the browser to the provider
/// and back to this URL; a JSON `401` for `fetch` callers).
///
/// `Option<User>` is the optional form: `None` for an anonymous visitor, and nothing is
/// started. A page view reads the small user record only; an expired ID token is renewed
/// first (one provider call).
///
/// ```
/// use actix_web::{get, HttpResponse, Responder};
/// use identity_actix::{AuthRejection, User};
///
/// #[get("/")]
/// async fn index(user: User) -> impl Responder {
///     HttpResponse::Ok().body(format!("Hello {}", user.name().unwrap_or("there")))
/// }
///
/// #[get("/admin")]
/// async fn admin(user: User) -> Result<HttpResponse, AuthRejection> {
///     user.require_role("Admin")?; // else a 403 page
///     Ok(HttpResponse::Ok().body("admin"))
/// }
/// ```
#[derive(Clone, Debug)]
pub struct User {
    user: identity_core::User,
    auth: Auth,
}

impl std::ops::Deref for User {
    type Target = identity_core::User;
    fn deref(&self) -> &Self::Target {
        &self.user
    }
}

impl User {
    /// The core's user record.
    pub fn into_inner(self) -> identity_core::User {
        self.user
    }

    /// Requires the app role `role` (the `roles` claim); else the 403 page.
    pub fn require_role(&self, role: &str) -> Result<(), AuthRejection> {
        Ok(self.auth.core().require_role(&self.user, role)?)
    }
}

impl FromRequest for User {
    type Error = AuthRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(user) = stored_user(req) {
            return Box::pin(ready(Ok(user)));
        }
        let session = IdentitySession::of(req);
        Box::pin(async move {
            let session = session?;
            match session.user().await? {
                Some(user) => Ok(user),
                None => Err(AuthRejection(Rejection::SignIn(session.auth))),
            }
        })
    }
}

/// The signed-in user read straight from the loaded session, when the engine says that
/// is the whole answer ([`WebAuth::user_in_values`]: the user is fresh and the sign-in
/// within its lifetime); `None`: the engine's full path decides. Costs no copy of the
/// session (the idle-timeout touch is the session store's, see `BackendStore`).
///
/// [`WebAuth::user_in_values`]: identity_core::web::WebAuth::user_in_values
fn stored_user(req: &HttpRequest) -> Option<User> {
    let auth = req.extensions().get::<Auth>()?.clone();
    let session = req.get_session();
    let entries = session.entries();
    let value = |key| entries.get(key).map(String::as_str);
    let user = auth.core().user_in_values(
        value(identity_core::store::KEY_USER),
        value(identity_core::store::KEY_SINCE),
    )?;
    drop(entries);
    Some(User { user, auth })
}

/// The identity side of the current request, for handlers that decide at run time:
/// the user, access tokens for APIs (incremental consent included), and claims
/// challenges.
///
/// ```
/// use actix_web::{get, HttpResponse};
/// use identity_actix::{AuthRejection, IdentitySession};
/// use identity_actix::identity_core::Scopes;
///
/// #[get("/call_api")]
/// async fn call_api(session: IdentitySession) -> Result<HttpResponse, AuthRejection> {
///     // Signs the user in (or asks for consent) when needed, then comes back here.
///     let token = session.token_for(&Scopes::parse("User.Read")).await?;
///     # let _ = token;
///     Ok(HttpResponse::Ok().body("called"))
/// }
/// ```
pub struct IdentitySession {
    auth: Auth,
    session: Session,
    link: String,
    cookies: Vec<String>,
    accept: Option<String>,
}

impl std::fmt::Debug for IdentitySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySession")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// Runs one engine call on a copy of the session (`Bridge`), then writes its changes
/// back: `Ok(answer)`, or the engine's page when the session cannot take them.
macro_rules! engine {
    ($this:ident, |$req:ident, $store:ident| $call:expr) => {{
        let ($store, $req) = (&Bridge::load(&$this.session), &$this.request());
        let out = $call.await;
        let written = $store.write_back(&$this.session);
        written
            .map(|()| out)
            .map_err(|e| $this.auth.core().error_response(&Error::Store(e.0)))
    }};
}

impl IdentitySession {
    /// The request's facts, or the missing-middleware page.
    pub(crate) fn of(req: &HttpRequest) -> Result<IdentitySession, AuthRejection> {
        let Some(auth) = req.extensions().get::<Auth>().cloned() else {
            let auth = req.app_data::<web::Data<Auth>>().map(|a| a.get_ref());
            return Err(missing_middleware(auth).into());
        };
        let text = |v: &header::HeaderValue| v.to_str().ok().map(str::to_owned);
        Ok(IdentitySession {
            auth,
            session: req.get_session(),
            link: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned()),
            cookies: req
                .headers()
                .get_all(header::COOKIE)
                .filter_map(text)
                .collect(),
            accept: req.headers().get(header::ACCEPT).and_then(text),
        })
    }

    /// The app's [`Auth`].
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    fn request(&self) -> WebRequest<'_> {
        let req = WebRequest::new(&self.link).accept(self.accept.as_deref());
        self.cookies.iter().fold(req, |r, c| r.cookie_header(c))
    }

    fn wrap(&self, user: identity_core::User) -> User {
        let auth = self.auth.clone();
        User { user, auth }
    }

    pub(crate) async fn handle(&self, route: Route, form: Option<&[u8]>) -> WebResponse {
        engine!(self, |r, s| self.auth.core().handle(route, r, s, form)).unwrap_or_else(|e| e)
    }

    /// Starts the sign-in of a deferred [`User`] rejection.
    pub(crate) async fn sign_in(&self) -> WebResponse {
        let scopes = Scopes::default();
        engine!(self, |r, s| self.auth.core().sign_in(r, s, scopes, None)).unwrap_or_else(|e| e)
    }

    /// The signed-in user, or `None` (an expired ID token is renewed first).
    pub async fn user(&self) -> Result<Option<User>, AuthRejection> {
        let user = engine!(self, |r, s| self.auth.core().user(r, s))??;
        Ok(user.map(|user| self.wrap(user)))
    }

    /// The signed-in user, or the rejection that starts a sign-in returning to this URL.
    pub async fn require_user(&self) -> Result<User, AuthRejection> {
        Ok(self.wrap(engine!(self, |r, s| self.auth.core().require_user(r, s))??))
    }

    /// A fresh access token for `scopes`: from the session's cache, else refreshed. When
    /// the user must come back to the provider (sign-in, consent, conditional access),
    /// the rejection starts that sign-in and returns to this URL; the engine's
    /// consent-loop guard answers `403` instead of a third round trip within minutes.
    pub async fn token_for(&self, scopes: &Scopes) -> Result<TokenForUser, AuthRejection> {
        Ok(engine!(self, |r, s| self
            .auth
            .core()
            .token_for(r, s, scopes))??)
    }

    /// The signed-in user, who is a member of the group with object id `group`; else the
    /// 403 page (the sign-in answer when nobody is signed in). A group overage is resolved
    /// through Microsoft Graph and cached in the session; see
    /// [`WebAuth::require_group`](identity_core::web::WebAuth::require_group) for the
    /// permission it needs and its answers (incremental consent, 502 when Graph fails).
    pub async fn require_group(&self, group: &str) -> Result<User, AuthRejection> {
        let user = self.require_user().await?;
        engine!(self, |r, s| self
            .auth
            .core()
            .require_group(r, s, &user.user, group))??;
        Ok(user)
    }

    /// The rejection that sends the user back to the provider for `scopes` with a claims
    /// challenge (e.g. an API answered `401` with `WWW-Authenticate: Bearer
    /// error="insufficient_claims", claims="…"`; see
    /// [`ClaimsChallenge::from_www_authenticate`]), returning to this URL. Subject to the
    /// same loop guard as [`token_for`](Self::token_for).
    pub async fn challenge(
        &self,
        scopes: &Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> AuthRejection {
        let answer = engine!(self, |r, s| self
            .auth
            .core()
            .challenge(r, s, scopes, claims));
        answer.unwrap_or_else(|e| e).into()
    }
}

impl FromRequest for IdentitySession {
    type Error = AuthRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(IdentitySession::of(req))
    }
}

/// A set of scopes known at compile time, for [`Token`].
///
/// ```
/// use actix_web::{get, HttpResponse};
/// use identity_actix::{ScopeSet, Token};
///
/// struct MailRead;
/// impl ScopeSet for MailRead {
///     const SCOPES: &'static str = "Mail.Read";
/// }
///
/// #[get("/inbox")]
/// async fn inbox(token: Token<MailRead>) -> HttpResponse {
///     HttpResponse::Ok().body(format!("token valid until {}", token.expires_at))
/// }
/// ```
pub trait ScopeSet: 'static {
    /// Space-separated scopes, e.g. `"User.Read Mail.Read"`.
    const SCOPES: &'static str;
}

/// A fresh access token for the scopes of `S` (the core's [`TokenForUser`], through
/// `Deref`), or the rejection that asks for them and returns to the same URL. See
/// [`IdentitySession::token_for`].
pub struct Token<S: ScopeSet>(pub TokenForUser, PhantomData<fn() -> S>);

impl<S: ScopeSet> std::fmt::Debug for Token<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Token")
            .field(&S::SCOPES)
            .field(&self.0)
            .finish()
    }
}

impl<S: ScopeSet> std::ops::Deref for Token<S> {
    type Target = TokenForUser;
    fn deref(&self) -> &TokenForUser {
        &self.0
    }
}

impl<S: ScopeSet> FromRequest for Token<S> {
    type Error = AuthRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = IdentitySession::of(req);
        Box::pin(async move {
            let token = session?.token_for(&Scopes::parse(S::SCOPES)).await?;
            Ok(Token(token, PhantomData))
        })
    }
}

/// An app role known at compile time, for [`HasRole`].
pub trait Role: 'static {
    /// The role's value in the `roles` claim.
    const NAME: &'static str;
}

/// A group known at compile time, for [`InGroup`].
pub trait Group: 'static {
    /// The group's object id (as in the `groups` claim).
    const ID: &'static str;
}

/// The signed-in user, who holds the app role `R`; otherwise the 403 page (or the login
/// answer when nobody is signed in).
///
/// ```
/// use actix_web::{get, HttpResponse};
/// use identity_actix::{HasRole, Role};
///
/// struct Reader;
/// impl Role for Reader {
///     const NAME: &'static str = "Reader";
/// }
///
/// #[get("/reports")]
/// async fn reports(HasRole(user, _): HasRole<Reader>) -> HttpResponse {
///     HttpResponse::Ok().body(format!("reports for {}", user.name().unwrap_or("you")))
/// }
/// ```
pub struct HasRole<R: Role>(pub User, pub PhantomData<fn() -> R>);

/// The signed-in user, who is in the group `G`; otherwise the 403 page (or the login
/// answer when nobody is signed in). After a group overage the membership is read from
/// Microsoft Graph (see [`IdentitySession::require_group`]).
pub struct InGroup<G: Group>(pub User, pub PhantomData<fn() -> G>);

macro_rules! guarded_debug {
    ($name:ident, $bound:ident, $value:ident) => {
        impl<T: $bound> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name))
                    .field(&T::$value)
                    .field(&self.0)
                    .finish()
            }
        }
    };
}

guarded_debug!(HasRole, Role, NAME);
guarded_debug!(InGroup, Group, ID);

impl<G: Group> FromRequest for InGroup<G> {
    type Error = AuthRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = IdentitySession::of(req);
        Box::pin(async move {
            let user = session?.require_group(G::ID).await?;
            Ok(InGroup(user, PhantomData))
        })
    }
}

macro_rules! guarded_user {
    ($name:ident, $bound:ident, $value:ident, $check:ident) => {
        impl<T: $bound> FromRequest for $name<T> {
            type Error = AuthRejection;
            type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

            fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
                let user = User::from_request(req, payload);
                Box::pin(async move {
                    let user = user.await?;
                    user.$check(T::$value)?;
                    Ok($name(user, PhantomData))
                })
            }
        }
    };
}

guarded_user!(HasRole, Role, NAME, require_role);
