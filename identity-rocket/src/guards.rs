//! Request guards for web apps: [`User`], [`IdentitySession`], [`Token`], [`HasRole`],
//! [`InGroup`].
//!
//! Each translates the request into the engine's terms (path and query, `Cookie` and
//! `Accept` headers, this request's session) and lets the engine decide. A Rocket guard
//! cannot write a response: a failing guard leaves the engine's answer on the request and
//! fails with its status; the catchers render it (see [`catchers`](crate::catchers)).

use crate::auth::Auth;
use crate::response::AuthRejection;
use crate::session::{RequestState, Session};
use identity_core::web::{missing_setup_page, WebRequest};
use identity_core::{ClaimsChallenge, DefaultPages, Scopes, TokenForUser};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest};
use rocket::Request;
use std::marker::PhantomData;
use std::ops::Deref;

/// The request-local state of this crate.
pub(crate) fn request_state<'r>(req: &'r Request<'_>) -> &'r RequestState {
    req.local_cache(RequestState::default)
}

/// Fails a guard with `rejection`, leaving it for the catchers.
fn fail<T, E: From<AuthRejection>>(
    req: &Request<'_>,
    rejection: AuthRejection,
) -> request::Outcome<T, E> {
    let status = Status::new(rejection.status());
    request_state(req).set_failure(rejection.0.clone());
    Outcome::Error((status, rejection.into()))
}

/// The identity layer of the current request: the engine, this request's facts and its
/// session. For what a guard cannot decide at compile time (scopes known at run time,
/// claims challenges from an API). Fails only when the fairing is missing.
///
/// ```
/// use identity_core::Scopes;
/// use identity_rocket::{AuthRejection, IdentitySession};
///
/// #[rocket::get("/call_api")]
/// async fn call_api(session: IdentitySession<'_>) -> Result<String, AuthRejection> {
///     let scopes = Scopes::parse(&std::env::var("SCOPE").unwrap_or_else(|_| "User.Read".into()));
///     let token = session.token_for(&scopes).await?;
///     // ... call the API with `Authorization: Bearer {token.access_token.secret()}`
///     Ok(format!("token expires at {}", token.expires_at))
/// }
/// ```
pub struct IdentitySession<'r> {
    auth: &'r Auth,
    session: Session<'r>,
    link: String,
    cookies: Vec<&'r str>,
    accept: Option<&'r str>,
}

impl std::fmt::Debug for IdentitySession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySession")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl<'r> IdentitySession<'r> {
    /// The session of `req`; the missing-setup page when the fairing is not attached.
    pub(crate) fn of(req: &'r Request<'_>) -> Result<Self, AuthRejection> {
        let auth = req.rocket().state::<Auth>();
        let Some((auth, backend)) = auth.and_then(|a| Some((a, a.session_backend()?))) else {
            let res = missing_setup_page(
                &DefaultPages,
                "/",
                "The sign-in fairing (identity_rocket::IdentityFairing)",
                "Add `.attach(IdentityFairing::new())` to the Rocket.",
            );
            return Err(AuthRejection(res));
        };
        let cookies: Vec<&'r str> = req.headers().get("Cookie").collect();
        let name = auth.core().cookies().session_name();
        let cookie = identity_core::web::find_cookie(cookies.iter().copied(), name);
        Ok(IdentitySession {
            auth,
            session: Session::new(auth, &**backend, request_state(req), cookie),
            link: req.uri().to_string(),
            cookies,
            accept: req.headers().get_one("Accept"),
        })
    }

    pub(crate) fn session(&self) -> &Session<'r> {
        &self.session
    }

    /// This request as the engine sees it.
    pub(crate) fn web(&self) -> WebRequest<'_> {
        let req = WebRequest::new(&self.link).accept(self.accept);
        self.cookies
            .iter()
            .fold(req, |req, header| req.cookie_header(header))
    }

    /// The managed [`Auth`].
    pub fn auth(&self) -> &'r Auth {
        self.auth
    }

    /// The signed-in user, or `None` (starts no sign-in).
    pub async fn user(&self) -> Result<Option<User>, AuthRejection> {
        let user = self.auth.core().user(&self.web(), &self.session).await?;
        Ok(user.map(User))
    }

    /// The signed-in user; when nobody is, the answer that starts a sign-in returning to
    /// this URL (the login page, or a JSON 401 for `fetch` callers).
    pub async fn require_user(&self) -> Result<User, AuthRejection> {
        let user = self.auth.core().require_user(&self.web(), &self.session).await?;
        Ok(User(user))
    }

    /// An access token for `scopes`: from the session, else refreshed. When the user must
    /// come back to the provider (not signed in, consent, conditional access), the answer
    /// starts a sign-in for `scopes` that returns to this URL, within the engine's
    /// consent-loop guard.
    pub async fn token_for(&self, scopes: &Scopes) -> Result<TokenForUser, AuthRejection> {
        let core = self.auth.core();
        Ok(core.token_for(&self.web(), &self.session, scopes).await?)
    }

    /// Sends the user back to the provider for `scopes` with a claims challenge (e.g. one
    /// parsed with [`ClaimsChallenge::from_www_authenticate`] from an API's 401).
    pub async fn challenge(
        &self,
        scopes: &Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> AuthRejection {
        let core = self.auth.core();
        AuthRejection(core.challenge(&self.web(), &self.session, scopes, claims).await)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IdentitySession<'r> {
    type Error = AuthRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        match IdentitySession::of(req) {
            Ok(session) => Outcome::Success(session),
            Err(rejection) => fail(req, rejection),
        }
    }
}

/// The signed-in user. A route with this guard requires sign-in: when nobody is signed
/// in, the answer is the login page (HTTP 401, a `meta refresh` to the provider), and the
/// sign-in returns to the current path and query. Take `Option<User>` for pages anybody
/// may see.
///
/// ```
/// use identity_rocket::User;
///
/// #[rocket::get("/")]
/// fn index(user: User) -> String {
///     format!("Hello {}", user.name().unwrap_or("there"))
/// }
///
/// #[rocket::get("/about")]
/// fn about(user: Option<User>) -> &'static str {
///     if user.is_some() { "signed in" } else { "anonymous" }
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct User(pub identity_core::User);

impl Deref for User {
    type Target = identity_core::User;
    fn deref(&self) -> &identity_core::User {
        &self.0
    }
}

impl From<User> for identity_core::User {
    fn from(u: User) -> Self {
        u.0
    }
}

async fn require_user(req: &Request<'_>) -> Result<User, AuthRejection> {
    IdentitySession::of(req)?.require_user().await
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for User {
    type Error = AuthRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        match require_user(req).await {
            Ok(user) => Outcome::Success(user),
            Err(rejection) => fail(req, rejection),
        }
    }
}

/// A set of scopes known at compile time, for [`Token`].
///
/// ```
/// use identity_rocket::{ScopeSet, Token};
///
/// struct MailRead;
/// impl ScopeSet for MailRead {
///     const SCOPES: &'static str = "Mail.Read";
/// }
///
/// #[rocket::get("/mail")]
/// fn mail(token: Token<MailRead>) -> String {
///     format!("token valid until {}", token.expires_at())
/// }
/// ```
pub trait ScopeSet: Send + Sync + 'static {
    /// Space-separated scopes, e.g. `"User.Read Mail.Read"`.
    const SCOPES: &'static str;
}

/// A fresh access token for the scopes of `S`, or (as a rejection) a sign-in that asks for
/// them and returns to the same URL. See [`IdentitySession::token_for`].
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

#[rocket::async_trait]
impl<'r, S: ScopeSet> FromRequest<'r> for Token<S> {
    type Error = AuthRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        let token = match IdentitySession::of(req) {
            Ok(session) => session.token_for(&Scopes::parse(S::SCOPES)).await,
            Err(rejection) => Err(rejection),
        };
        match token {
            Ok(token) => Outcome::Success(Token {
                token,
                _scopes: PhantomData,
            }),
            Err(rejection) => fail(req, rejection),
        }
    }
}

/// An app role known at compile time, for [`HasRole`].
pub trait Role: Send + Sync + 'static {
    /// The role's value in the `roles` claim.
    const NAME: &'static str;
}

/// A group known at compile time, for [`InGroup`].
pub trait Group: Send + Sync + 'static {
    /// The group's object id in the `groups` claim.
    const ID: &'static str;
}

/// The signed-in user (through `Deref` or `.0`), who holds the app role `R`; otherwise
/// the 403 page (or the login page when nobody is signed in).
///
/// ```
/// use identity_rocket::{HasRole, Role};
///
/// struct Reader;
/// impl Role for Reader {
///     const NAME: &'static str = "Reader";
/// }
///
/// #[rocket::get("/reports")]
/// fn reports(who: HasRole<Reader>) -> String {
///     format!("reports for {}", who.name().unwrap_or("you"))
/// }
/// ```
pub struct HasRole<R: Role>(pub User, pub PhantomData<fn() -> R>);

impl<R: Role> Deref for HasRole<R> {
    type Target = User;
    fn deref(&self) -> &User {
        &self.0
    }
}

impl<R: Role> std::fmt::Debug for HasRole<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HasRole")
            .field(&R::NAME)
            .field(&self.0)
            .finish()
    }
}

#[rocket::async_trait]
impl<'r, R: Role> FromRequest<'r> for HasRole<R> {
    type Error = AuthRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        let checked = match require_user(req).await {
            Ok(user) => req
                .rocket()
                .state::<Auth>()
                .map_or(Ok(()), |auth| auth.core().require_role(&user, R::NAME))
                .map(|()| user)
                .map_err(AuthRejection),
            Err(rejection) => Err(rejection),
        };
        match checked {
            Ok(user) => Outcome::Success(HasRole(user, PhantomData)),
            Err(rejection) => fail(req, rejection),
        }
    }
}

/// The signed-in user (through `Deref` or `.0`), who is in the group `G` (`groups`
/// claim); otherwise the 403 page
/// (or the login page when nobody is signed in). Users in more groups than a token can
/// carry (group overage) have no `groups` claim: prefer app roles ([`HasRole`]).
///
/// ```
/// use identity_rocket::{Group, InGroup};
///
/// struct Finance;
/// impl Group for Finance {
///     const ID: &'static str = "5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c";
/// }
///
/// #[rocket::get("/ledger")]
/// fn ledger(who: InGroup<Finance>) -> String {
///     format!("ledger for {}", who.name().unwrap_or("you"))
/// }
/// ```
pub struct InGroup<G: Group>(pub User, pub PhantomData<fn() -> G>);

impl<G: Group> Deref for InGroup<G> {
    type Target = User;
    fn deref(&self) -> &User {
        &self.0
    }
}

impl<G: Group> std::fmt::Debug for InGroup<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InGroup")
            .field(&G::ID)
            .field(&self.0)
            .finish()
    }
}

#[rocket::async_trait]
impl<'r, G: Group> FromRequest<'r> for InGroup<G> {
    type Error = AuthRejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        let checked = match require_user(req).await {
            Ok(user) => req
                .rocket()
                .state::<Auth>()
                .map_or(Ok(()), |auth| auth.core().require_group(&user, G::ID))
                .map(|()| user)
                .map_err(AuthRejection),
            Err(rejection) => Err(rejection),
        };
        match checked {
            Ok(user) => Outcome::Success(InGroup(user, PhantomData)),
            Err(rejection) => fail(req, rejection),
        }
    }
}
