//! Request guards for web apps: [`User`], [`IdentitySession`], [`TokenFor`], [`Authorized`].
//!
//! # How a guard answers with a page
//!
//! A Rocket request guard cannot produce a response body. When a guard of this crate
//! fails it leaves what to answer on the request (request-local state) and fails with a
//! status (`Outcome::Error`); the catchers that
//! [`IdentityFairing`](crate::IdentityFairing) registers for that status turn it into the
//! page: the login page (HTTP 401) after starting a sign-in, the error page, the 403 page.
//! A sign-in is started only when the catcher runs, so `Option<User>` never starts one.

use crate::auth::{request_state, Auth, Ctx};
use crate::response::{
    consent_succeeded, current_link, start_sign_in, Failure, IdentityResponse, SignIn,
};
use identity_core::{ClaimsChallenge, Error, Identity, Scopes, TokenForUser};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest};
use rocket::Request;
use std::marker::PhantomData;
use std::ops::Deref;

/// Why a guard of this crate failed. The catchers answer with the matching page; take
/// `Result<User, Rejection>` to handle it yourself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Rejection {
    /// Nobody is signed in: the catcher starts a sign-in and shows the login page (401).
    NotSignedIn,
    /// A consent round trip (or a sign-in with a claims challenge) is needed for scopes.
    InteractionRequired(Scopes),
    /// The user lacks a required role or group (403).
    Forbidden(String),
    /// The core failed (provider unreachable, session store down, ...).
    Failed(Error),
    /// The app is not configured: the configuration page is shown (500).
    NotConfigured,
    /// [`IdentityFairing`](crate::IdentityFairing) is not attached to this Rocket.
    MissingFairing,
}

/// Fails a guard: leaves `failure` for the catcher and fails with its status.
pub(crate) fn fail<T>(
    req: &Request<'_>,
    status: Status,
    failure: Failure,
    why: Rejection,
) -> request::Outcome<T, Rejection> {
    request_state(req).set_failure(failure);
    Outcome::Error((status, why))
}

/// The managed [`Auth`] and its [`Identity`], or the failed outcome to return.
pub(crate) fn configured<'r, T>(
    req: &'r Request<'_>,
) -> Result<(&'r Auth, &'r Identity), request::Outcome<T, Rejection>> {
    let Some(auth) = req.rocket().state::<Auth>() else {
        tracing::error!("an identity guard was used but IdentityFairing is not attached");
        let page = identity_core::ErrorPage::missing_setup(
            "The sign-in fairing (identity_rocket::IdentityFairing)",
            "`.attach(IdentityFairing::new())` to the Rocket",
            "/",
        );
        let body = identity_core::Pages::error(&identity_core::DefaultPages, &page);
        return Err(fail(
            req,
            Status::InternalServerError,
            Failure::Ready(IdentityResponse::html(Status::InternalServerError, body)),
            Rejection::MissingFairing,
        ));
    };
    match &auth.inner.mode {
        crate::auth::Mode::Configured(identity) => Ok((auth, identity)),
        crate::auth::Mode::Unconfigured(error) => Err(fail(
            req,
            Status::InternalServerError,
            Failure::Ready(IdentityResponse::config(auth, error)),
            Rejection::NotConfigured,
        )),
    }
}

/// The signed-in user, or `None`; a failure of the core as a failed outcome.
async fn current_user<T>(
    req: &Request<'_>,
    auth: &Auth,
    identity: &Identity,
) -> Result<Option<identity_core::User>, request::Outcome<T, Rejection>> {
    let session = auth.ctx(req).session();
    match identity.get_user(&session).await {
        Ok(user) => Ok(user),
        Err(e) => Err(fail(
            req,
            Status::from_code(e.status_code()).unwrap_or(Status::InternalServerError),
            Failure::Ready(IdentityResponse::error(auth, &e)),
            Rejection::Failed(e),
        )),
    }
}

fn not_signed_in<T>(req: &Request<'_>, scopes: Scopes) -> request::Outcome<T, Rejection> {
    let sign_in = SignIn {
        scopes,
        next: current_link(req),
        ..SignIn::default()
    };
    fail(
        req,
        Status::Unauthorized,
        Failure::SignIn(sign_in),
        Rejection::NotSignedIn,
    )
}

/// The signed-in user. A route with this guard requires sign-in: when nobody is signed
/// in, the answer is the login page (HTTP 401, `Cache-Control: no-store`, a `meta
/// refresh` to the provider) and the sign-in returns to the current path and query.
///
/// Take `Option<User>` for pages that anybody may see. An expired ID token is renewed
/// with the refresh token on the way (one provider call); otherwise a signed-in page view
/// reads only the small user part of the session and verifies nothing.
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

#[rocket::async_trait]
impl<'r> FromRequest<'r> for User {
    type Error = Rejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Rejection> {
        let (auth, identity) = match configured(req) {
            Ok(x) => x,
            Err(outcome) => return outcome,
        };
        match current_user(req, auth, identity).await {
            Ok(Some(user)) => Outcome::Success(User(user)),
            Ok(None) => not_signed_in(req, Scopes::default()),
            Err(outcome) => outcome,
        }
    }
}

/// The identity layer of the current request, for what a guard cannot decide at compile
/// time: tokens for scopes known only at run time (e.g. read from configuration),
/// claims challenges from an API, 403 pages. Never fails for an anonymous visitor.
///
/// ```
/// use identity_core::Scopes;
/// use identity_rocket::{IdentityResponse, IdentitySession, User};
///
/// #[rocket::get("/call_api")]
/// async fn call_api(_user: User, session: IdentitySession<'_>) -> Result<String, IdentityResponse> {
///     let scopes = Scopes::parse(&std::env::var("SCOPE").unwrap_or_else(|_| "User.Read".into()));
///     let token = session.token_for(&scopes).await?;
///     // ... call the API with `Authorization: Bearer {token.access_token.secret()}`
///     Ok(format!("token expires at {}", token.expires_at))
/// }
/// ```
pub struct IdentitySession<'r> {
    ctx: Ctx<'r>,
    identity: &'r Identity,
    next: Option<String>,
}

impl std::fmt::Debug for IdentitySession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySession")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IdentitySession<'r> {
    type Error = Rejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Rejection> {
        match configured(req) {
            Ok((auth, identity)) => Outcome::Success(IdentitySession {
                ctx: auth.ctx(req),
                identity,
                next: current_link(req),
            }),
            Err(outcome) => outcome,
        }
    }
}

impl<'r> IdentitySession<'r> {
    /// The managed [`Auth`] (paths of the routes, pages).
    pub fn auth(&self) -> &'r Auth {
        self.ctx.auth
    }

    /// The core handle.
    pub fn identity(&self) -> &'r Identity {
        self.identity
    }

    /// The signed-in user, or `None`.
    pub async fn user(&self) -> Result<Option<User>, IdentityResponse> {
        self.identity
            .get_user(&self.ctx.session())
            .await
            .map(|u| u.map(User))
            .map_err(|e| IdentityResponse::error(self.ctx.auth, &e))
    }

    /// An access token for the signed-in user and `scopes`: from the session (no provider
    /// call), else by refreshing. When the user must come back to the provider (not
    /// signed in, consent for new scopes, a conditional-access claims challenge), a
    /// sign-in for these scopes is started and the `Err` is the login page, which returns
    /// the user to the current URL. Consent round trips for the same scopes are limited
    /// to 2 within 5 minutes; the next one answers with an error page (HTTP 403) instead
    /// of looping.
    pub async fn token_for(&self, scopes: &Scopes) -> Result<TokenForUser, IdentityResponse> {
        let session = self.ctx.session();
        match self.identity.get_token_for_user(&session, scopes).await {
            Ok(token) => {
                consent_succeeded(self.ctx, &scopes.without_reserved());
                Ok(token)
            }
            Err(Error::InteractionRequired { scopes, claims, .. }) => {
                let signed_in = matches!(self.identity.get_user(&session).await, Ok(Some(_)));
                let sign_in = SignIn {
                    scopes,
                    claims,
                    next: self.next.clone(),
                    consent: signed_in,
                };
                Err(start_sign_in(self.ctx, sign_in).await)
            }
            Err(e) => Err(IdentityResponse::error(self.ctx.auth, &e)),
        }
    }

    /// Sends the user back to the provider for `scopes` with a claims challenge (e.g. one
    /// parsed with [`ClaimsChallenge::from_www_authenticate`] from an API's 401): starts
    /// the sign-in and answers with the login page, which returns to the current URL.
    /// Counted by the same consent-loop guard as [`token_for`](Self::token_for).
    pub async fn challenge(
        &self,
        scopes: &Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> IdentityResponse {
        let sign_in = SignIn {
            scopes: scopes.without_reserved(),
            claims,
            next: self.next.clone(),
            consent: true,
        };
        start_sign_in(self.ctx, sign_in).await
    }

    /// The 403 page ("This page requires {requirement}."), for checks a guard cannot
    /// express; e.g. `session.forbidden("the Finance app role")`.
    pub fn forbidden(&self, requirement: &str) -> IdentityResponse {
        IdentityResponse::forbidden(self.ctx.auth, requirement)
    }

    /// The error page for an error of the core.
    pub fn error_page(&self, error: &Error) -> IdentityResponse {
        IdentityResponse::error(self.ctx.auth, error)
    }
}

/// Scopes a [`TokenFor`] guard requires, known at compile time.
///
/// ```
/// use identity_rocket::RequiredScopes;
///
/// struct MailRead;
/// impl RequiredScopes for MailRead {
///     const SCOPES: &'static str = "Mail.Read";
/// }
/// ```
pub trait RequiredScopes: Send + Sync + 'static {
    /// Space-separated scopes.
    const SCOPES: &'static str;
}

/// An access token for the scopes of `S`, for the signed-in user. Not signed in: the
/// sign-in asks for the scopes at once. Scopes not consented yet: incremental consent
/// (the login page, returning to the current URL), with the consent-loop guard of
/// [`IdentitySession::token_for`].
///
/// ```
/// use identity_rocket::{RequiredScopes, TokenFor};
///
/// struct MailRead;
/// impl RequiredScopes for MailRead {
///     const SCOPES: &'static str = "Mail.Read";
/// }
///
/// #[rocket::get("/mail")]
/// fn mail(token: TokenFor<MailRead>) -> String {
///     format!("{} may read mail until {}", token.user.name().unwrap_or("?"), token.token.expires_at)
/// }
/// ```
pub struct TokenFor<S: RequiredScopes> {
    /// The token.
    pub token: TokenForUser,
    /// The signed-in user.
    pub user: User,
    scopes: PhantomData<S>,
}

impl<S: RequiredScopes> std::fmt::Debug for TokenFor<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFor")
            .field("scopes", &S::SCOPES)
            .field("token", &self.token)
            .field("user", &self.user)
            .finish()
    }
}

#[rocket::async_trait]
impl<'r, S: RequiredScopes> FromRequest<'r> for TokenFor<S> {
    type Error = Rejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Rejection> {
        let (auth, identity) = match configured(req) {
            Ok(x) => x,
            Err(outcome) => return outcome,
        };
        let scopes = Scopes::parse(S::SCOPES).without_reserved();
        let user = match current_user(req, auth, identity).await {
            Ok(Some(user)) => user,
            Ok(None) => return not_signed_in(req, scopes),
            Err(outcome) => return outcome,
        };
        let ctx = auth.ctx(req);
        match identity.get_token_for_user(&ctx.session(), &scopes).await {
            Ok(token) => {
                consent_succeeded(ctx, &scopes);
                Outcome::Success(TokenFor {
                    token,
                    user: User(user),
                    scopes: PhantomData,
                })
            }
            Err(Error::InteractionRequired { scopes, claims, .. }) => {
                let sign_in = SignIn {
                    scopes: scopes.clone(),
                    claims,
                    next: current_link(req),
                    consent: true,
                };
                fail(
                    req,
                    Status::Unauthorized,
                    Failure::SignIn(sign_in),
                    Rejection::InteractionRequired(scopes),
                )
            }
            Err(e) => fail(
                req,
                Status::from_code(e.status_code()).unwrap_or(Status::InternalServerError),
                Failure::Ready(IdentityResponse::error(auth, &e)),
                Rejection::Failed(e),
            ),
        }
    }
}

/// App roles and groups an [`Authorized`] guard requires.
///
/// The user must hold one of `ANY_ROLE` (when not empty) and be a member of one of
/// `ANY_GROUP` (group object ids; when not empty). Roles come from the ID token's `roles`
/// claim (app roles assigned in the app registration), groups from its `groups` claim.
///
/// **Group overage:** when a user is in more groups than fit in a token, Entra sends no
/// `groups` claim but a pointer to Microsoft Graph; this guard then denies access (the
/// page says why). Prefer app roles, or query Graph yourself.
///
/// ```
/// use identity_rocket::{Authorized, Requirement};
///
/// struct Readers;
/// impl Requirement for Readers {
///     const ANY_ROLE: &'static [&'static str] = &["Reader", "Admin"];
/// }
///
/// #[rocket::get("/reports")]
/// fn reports(who: Authorized<Readers>) -> String {
///     format!("reports for {}", who.user.name().unwrap_or("?"))
/// }
/// ```
pub trait Requirement: Send + Sync + 'static {
    /// App roles of which the user must hold one (empty: no role needed).
    const ANY_ROLE: &'static [&'static str] = &[];
    /// Groups (object ids) of which the user must be in one (empty: no group needed).
    const ANY_GROUP: &'static [&'static str] = &[];
}

/// The signed-in user, holding the roles and groups of `R`. Not signed in: the login
/// page. Signed in without them: the 403 page.
pub struct Authorized<R: Requirement> {
    /// The signed-in user.
    pub user: User,
    requirement: PhantomData<R>,
}

impl<R: Requirement> std::fmt::Debug for Authorized<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorized")
            .field("any_role", &R::ANY_ROLE)
            .field("any_group", &R::ANY_GROUP)
            .field("user", &self.user)
            .finish()
    }
}

/// What `user` lacks of `R` (as "this page requires …"), if anything.
fn unmet<R: Requirement>(user: &identity_core::User) -> Option<String> {
    if !R::ANY_ROLE.is_empty() && !R::ANY_ROLE.iter().any(|r| user.has_role(r)) {
        return Some(format!(
            "one of the app roles {} (your account has {})",
            R::ANY_ROLE.join(", "),
            match user.roles() {
                r if r.is_empty() => "none".to_owned(),
                r => r.join(", "),
            }
        ));
    }
    if !R::ANY_GROUP.is_empty() && !R::ANY_GROUP.iter().any(|g| user.in_group(g)) {
        let overage = user.groups().is_empty()
            && (user.claims().contains_key("_claim_names")
                || user.claims().contains_key("hasgroups"));
        return Some(if overage {
            "membership of a group, and your account is in too many groups for the sign-in \
             token to list them (group overage), so membership cannot be checked"
                .to_owned()
        } else {
            "membership of a group your account is not in".to_owned()
        });
    }
    None
}

#[rocket::async_trait]
impl<'r, R: Requirement> FromRequest<'r> for Authorized<R> {
    type Error = Rejection;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Rejection> {
        let (auth, identity) = match configured(req) {
            Ok(x) => x,
            Err(outcome) => return outcome,
        };
        let user = match current_user(req, auth, identity).await {
            Ok(Some(user)) => user,
            Ok(None) => return not_signed_in(req, Scopes::default()),
            Err(outcome) => return outcome,
        };
        match unmet::<R>(&user) {
            None => Outcome::Success(Authorized {
                user: User(user),
                requirement: PhantomData,
            }),
            Some(reason) => fail(
                req,
                Status::Forbidden,
                Failure::Ready(IdentityResponse::forbidden(auth, &reason)),
                Rejection::Forbidden(reason),
            ),
        }
    }
}
