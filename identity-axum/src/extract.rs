//! Extractors: [`User`], `Option<User>`, [`IdentitySession`], [`Token`], [`HasRole`],
//! [`InGroup`].

use crate::auth::Auth;
use crate::rejection::AuthRejection;
use crate::seam::Seam;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, OriginalUri};
use axum::http::header;
use axum::http::request::Parts;
use identity_core::web::{missing_setup_page, WebAuth, WebRequest};
use identity_core::{ClaimsChallenge, DefaultPages, Scopes, TokenForUser};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use tower_sessions::Session;

/// The request facts the engine needs: the path and query the browser asked for
/// (before any nesting stripped a prefix), the cookies and `Accept`.
pub(crate) fn request_facts(parts: &Parts) -> WebRequest<'_> {
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map(|o| &o.0)
        .unwrap_or(&parts.uri);
    let link = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .fold(
            WebRequest::new(link).accept(accept),
            WebRequest::cookie_header,
        )
}

static MISSING_AUTH_LOGGED: AtomicBool = AtomicBool::new(false);
static MISSING_SESSION_LOGGED: AtomicBool = AtomicBool::new(false);

fn log_once(flag: &AtomicBool, text: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::error!("{text}");
    }
}

/// What an extractor needs from the request, borrowed.
pub(crate) struct Ctx<'a> {
    pub(crate) auth: &'a Auth,
    pub(crate) session: &'a Session,
}

impl<'a> Ctx<'a> {
    pub(crate) fn from_parts(parts: &'a Parts) -> Result<Self, AuthRejection> {
        let Some(auth) = parts.extensions.get::<Auth>() else {
            let fix = "Add `.layer(auth.identity_layer().await?)` (or `.layer(auth.layer())` \
                       inside a tower-sessions layer) to the Router, after the routes.";
            log_once(&MISSING_AUTH_LOGGED, fix);
            return Err(AuthRejection(missing_setup_page(
                &DefaultPages,
                "/",
                "identity-axum's Auth layer",
                fix,
            )));
        };
        Self::with_auth(auth, parts)
    }

    /// Like [`from_parts`](Self::from_parts) with a known `Auth` (the routes hold theirs).
    pub(crate) fn with_auth(auth: &'a Auth, parts: &'a Parts) -> Result<Self, AuthRejection> {
        if let Some(res) = auth.core.not_configured_response() {
            return Err(AuthRejection(res));
        }
        let Some(session) = parts.extensions.get::<Session>() else {
            let fix = "Add `.layer(auth.identity_layer().await?)` to the Router, after the \
                       routes: it installs the tower-sessions SessionManagerLayer with the Auth \
                       layer.";
            log_once(&MISSING_SESSION_LOGGED, fix);
            return Err(AuthRejection(
                auth.core
                    .missing_setup_response("The tower-sessions session layer", fix),
            ));
        };
        if let Some(used) = parts.extensions.get::<crate::sessions::SessionUsed>() {
            used.mark();
        }
        Ok(Ctx { auth, session })
    }

    pub(crate) fn seam(&self) -> Seam<'a> {
        Seam(self.session)
    }
}

/// The signed-in user straight from the backend's record, when the engine says that
/// record needs nothing else ([`WebAuth::user_in_backend`]; a remote store's record is
/// handed on to tower-sessions' load, so it is read once); `None`: the engine's full
/// path (through tower-sessions) decides. Skipped for a session this request changed.
///
/// [`WebAuth::user_in_backend`]: identity_core::web::WebAuth::user_in_backend
async fn direct_user(auth: &Auth, session: &Session, parts: &Parts) -> Option<identity_core::User> {
    let backend = auth.core.session_backend()?;
    if session.is_modified() {
        return None;
    }
    let id = identity_core::web::SessionIdText::new(session.id()?.0.to_le_bytes());
    let read = auth.core.user_in_backend(&**backend, id.as_str()).await?;
    if let Some(used) = parts.extensions.get::<crate::sessions::SessionUsed>() {
        used.read_directly(read.touch_due);
    }
    Some(read.user)
}

/// The signed-in user of the request, or the sign-in answer.
pub(crate) async fn signed_in_user(auth: &Auth, parts: &Parts) -> Result<User, AuthRejection> {
    let ctx = Ctx::with_auth(auth, parts)?;
    if let Some(user) = direct_user(auth, ctx.session, parts).await {
        return Ok(User::new(user, auth));
    }
    let user = auth
        .core
        .require_user(&request_facts(parts), &ctx.seam())
        .await?;
    Ok(User::new(user, auth))
}

/// The signed-in user. Extracting it reads only the user part of the session (no token
/// parsing, no provider call unless the ID token expired and must be renewed).
///
/// When nobody is signed in, the handler does not run: the answer starts a sign-in that
/// returns to the same URL (the login page with HTTP 401, or a JSON 401 for callers that
/// ask for JSON).
///
/// `Option<User>` never starts a sign-in: it is `None` for anonymous visitors.
#[derive(Clone, Debug)]
pub struct User {
    user: identity_core::User,
    /// The engine, for the 403 page of [`require_role`](Self::require_role) (not the
    /// whole [`Auth`]: its clone would copy the mount path on every request).
    core: WebAuth,
}

impl User {
    fn new(user: identity_core::User, auth: &Auth) -> Self {
        User {
            user,
            core: auth.core.clone(),
        }
    }

    /// The core's user record (claims).
    pub fn into_inner(self) -> identity_core::User {
        self.user
    }

    /// Ok if the user holds the app role `role` (`roles` claim), else the 403 page.
    pub fn require_role(&self, role: &str) -> Result<(), AuthRejection> {
        Ok(self.core.require_role(&self.user, role)?)
    }
}

impl Deref for User {
    type Target = identity_core::User;

    fn deref(&self) -> &Self::Target {
        &self.user
    }
}

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Put there by `Auth::login_required`.
        if let Some(user) = parts.extensions.get::<User>() {
            return Ok(user.clone());
        }
        let auth = Ctx::from_parts(parts)?.auth;
        signed_in_user(auth, parts).await
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for User {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let ctx = Ctx::from_parts(parts)?;
        if let Some(user) = direct_user(ctx.auth, ctx.session, parts).await {
            return Ok(Some(User::new(user, ctx.auth)));
        }
        let user = ctx
            .auth
            .core
            .user(&request_facts(parts), &ctx.seam())
            .await?;
        Ok(user.map(|user| User::new(user, ctx.auth)))
    }
}

/// The identity operations of the current request, for decisions made at run time
/// (scopes from configuration, claims challenges from an API).
#[derive(Clone, Debug)]
pub struct IdentitySession {
    auth: Auth,
    session: Session,
    link: String,
    cookies: Vec<String>,
    accept: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for IdentitySession {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = Ctx::from_parts(parts)?;
        let facts = request_facts(parts);
        Ok(IdentitySession {
            auth: ctx.auth.clone(),
            session: ctx.session.clone(),
            link: facts.link().to_owned(),
            cookies: parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect(),
            accept: parts
                .headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok().map(str::to_owned)),
        })
    }
}

impl IdentitySession {
    fn facts(&self) -> WebRequest<'_> {
        self.cookies.iter().fold(
            WebRequest::new(&self.link).accept(self.accept.as_deref()),
            |r, c| r.cookie_header(c),
        )
    }

    /// The [`Auth`] of the app.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The signed-in user, or `None`.
    pub async fn user(&self) -> Result<Option<User>, AuthRejection> {
        let user = self
            .auth
            .core
            .user(&self.facts(), &Seam(&self.session))
            .await?;
        Ok(user.map(|user| User::new(user, &self.auth)))
    }

    /// The signed-in user; when nobody is, a sign-in that returns to this URL.
    pub async fn require_user(&self) -> Result<User, AuthRejection> {
        let user = self
            .auth
            .core
            .require_user(&self.facts(), &Seam(&self.session))
            .await?;
        Ok(User::new(user, &self.auth))
    }

    /// A fresh access token for `scopes` (see [`WebAuth::token_for`](identity_core::web::WebAuth::token_for)):
    /// from the cache, else refreshed; when the user must come back to the provider, the
    /// rejection starts that sign-in and returns to this URL (with the consent-loop guard).
    pub async fn token_for(&self, scopes: &Scopes) -> Result<TokenForUser, AuthRejection> {
        Ok(self
            .auth
            .core
            .token_for(&self.facts(), &Seam(&self.session), scopes)
            .await?)
    }

    /// The signed-in user, who is a member of the group with object id `group`; else the
    /// 403 page (the sign-in answer when nobody is signed in). A group overage is resolved
    /// through Microsoft Graph and cached in the session; see
    /// [`WebAuth::require_group`](identity_core::web::WebAuth::require_group) for the
    /// permission it needs and its answers (incremental consent, 502 when Graph fails).
    pub async fn require_group(&self, group: &str) -> Result<User, AuthRejection> {
        let user = self.require_user().await?;
        self.auth
            .core
            .require_group(&self.facts(), &Seam(&self.session), &user.user, group)
            .await?;
        Ok(user)
    }

    /// Sends the user back to the provider for `scopes` with a claims challenge (after an
    /// API answered `insufficient_claims`). Returns the rejection to answer with.
    pub async fn challenge(
        &self,
        scopes: &Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> AuthRejection {
        AuthRejection(
            self.auth
                .core
                .challenge(&self.facts(), &Seam(&self.session), scopes, claims)
                .await,
        )
    }
}

/// A set of scopes known at compile time, for [`Token`].
pub trait ScopeSet: Send + Sync + 'static {
    /// Space-separated scopes, e.g. `"User.Read Mail.Read"`.
    const SCOPES: &'static str;
}

/// A fresh access token for the scopes of `S`, or (as a rejection) a sign-in that asks
/// for them and returns to the same URL. See [`IdentitySession::token_for`].
pub struct Token<S: ScopeSet> {
    token: TokenForUser,
    _scopes: PhantomData<fn() -> S>,
}

impl<S: ScopeSet> std::fmt::Debug for Token<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("scopes", &S::SCOPES)
            .field("token", &self.token)
            .finish()
    }
}

impl<S: ScopeSet> Token<S> {
    /// The bearer token to send (`Authorization: Bearer …`).
    pub fn access_token(&self) -> &str {
        self.token.access_token.secret()
    }

    /// When it expires (seconds since the epoch).
    pub fn expires_at(&self) -> i64 {
        self.token.expires_at
    }

    /// Whether it came from the session's cache (no provider call).
    pub fn from_cache(&self) -> bool {
        self.token.from_cache
    }

    /// The core's token.
    pub fn into_inner(self) -> TokenForUser {
        self.token
    }
}

impl<St: Send + Sync, S: ScopeSet> FromRequestParts<St> for Token<S> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let session = IdentitySession::from_request_parts(parts, state).await?;
        let token = session.token_for(&Scopes::parse(S::SCOPES)).await?;
        Ok(Token {
            token,
            _scopes: PhantomData,
        })
    }
}

/// An app role known at compile time, for [`HasRole`].
pub trait Role: Send + Sync + 'static {
    /// The role's value in the `roles` claim.
    const NAME: &'static str;
}

/// A group known at compile time, for [`InGroup`].
pub trait Group: Send + Sync + 'static {
    /// The group's object id (as in the `groups` claim).
    const ID: &'static str;
}

/// The signed-in user, who holds the app role `R`; otherwise the 403 page (or the
/// sign-in answer when nobody is signed in).
pub struct HasRole<R: Role>(pub User, pub PhantomData<fn() -> R>);

impl<R: Role> std::fmt::Debug for HasRole<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HasRole")
            .field(&R::NAME)
            .field(&self.0)
            .finish()
    }
}

impl<S: Send + Sync, R: Role> FromRequestParts<S> for HasRole<R> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = <User as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        user.require_role(R::NAME)?;
        Ok(HasRole(user, PhantomData))
    }
}

/// The signed-in user, who is in the group `G`; otherwise the 403 page (or the sign-in
/// answer when nobody is signed in). After a group overage the membership is read from
/// Microsoft Graph (see [`IdentitySession::require_group`]).
pub struct InGroup<G: Group>(pub User, pub PhantomData<fn() -> G>);

impl<G: Group> std::fmt::Debug for InGroup<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InGroup")
            .field(&G::ID)
            .field(&self.0)
            .finish()
    }
}

impl<S: Send + Sync, G: Group> FromRequestParts<S> for InGroup<G> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = IdentitySession::from_request_parts(parts, state).await?;
        Ok(InGroup(session.require_group(G::ID).await?, PhantomData))
    }
}
