//! Request guards for web apps: each hands the request and its session to the engine; a
//! failing guard leaves the engine's answer on the request for the catchers.

use crate::auth::Auth;
use crate::response::AuthRejection;
use crate::session::{request_state, Session};
use identity_core::web::{missing_setup_page, WebAuth, WebRequest, WebResponse};
use identity_core::{ClaimsChallenge, DefaultPages, Scopes, TokenForUser};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest};
use rocket::Request;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::PoisonError;

/// The guard's outcome; a rejection's answer is also left on the request for the catchers.
pub(crate) fn outcome<T, E>(req: &Request<'_>, result: Result<T, E>) -> request::Outcome<T, E>
where
    E: Into<WebResponse> + Clone,
{
    match result {
        Ok(value) => Outcome::Success(value),
        Err(rejection) => {
            let answer: WebResponse = rejection.clone().into();
            let status = Status::new(answer.status);
            let failure = &request_state(req).failure;
            *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
            Outcome::Error((status, rejection))
        }
    }
}

/// The request's path and query as it came (what `Origin`'s `Display` writes, copied
/// without the formatting machinery).
fn link(req: &Request<'_>) -> String {
    let uri = req.uri();
    let (path, query) = (uri.path().as_str(), uri.query().map(|q| q.as_str()));
    let mut link = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    link.push_str(path);
    if let Some(query) = query {
        link.push('?');
        link.push_str(query);
    }
    link
}

/// The signed-in user, who passes `check`; otherwise the engine's answer.
async fn checked(
    req: &Request<'_>,
    check: impl FnOnce(&WebAuth, &User) -> Result<(), WebResponse>,
) -> Result<User, AuthRejection> {
    // The direct read first: it needs the session alone, not the request's facts.
    let (auth, session) = IdentitySession::parts(req)?;
    if let Some(user) = session.direct_user().await {
        let user = User(user);
        check(auth.core(), &user)?;
        return Ok(user);
    }
    let session = IdentitySession::with(req, auth, session);
    let user = session.require_user().await?;
    check(session.auth().core(), &user)?;
    Ok(user)
}

/// The identity layer of the current request: the engine, this request's facts and its
/// session. For what a guard cannot decide at compile time (scopes known at run time,
/// claims challenges from an API). Fails only when the fairing is missing.
pub struct IdentitySession<'r> {
    auth: &'r Auth,
    pub(crate) session: Session<'r>,
    link: String,
    cookies: Vec<&'r str>,
    accept: Option<&'r str>,
}

impl<'r> IdentitySession<'r> {
    /// The session of `req`; the missing-setup page when the fairing is not attached.
    pub(crate) fn of(req: &'r Request<'_>) -> Result<Self, AuthRejection> {
        let (auth, session) = Self::parts(req)?;
        Ok(Self::with(req, auth, session))
    }

    /// The managed [`Auth`] and the session of `req`; the missing-setup page when the
    /// fairing is not attached.
    fn parts(req: &'r Request<'_>) -> Result<(&'r Auth, Session<'r>), AuthRejection> {
        let auth = req.rocket().state::<Auth>();
        let Some((auth, session)) = auth.and_then(|a| Some((a, Session::of(req, a)?))) else {
            let what = "The sign-in fairing (identity_rocket::IdentityFairing)";
            let fix = "Add `.attach(IdentityFairing::new())` to the Rocket.";
            return Err(AuthRejection(missing_setup_page(
                &DefaultPages,
                "/",
                what,
                fix,
            )));
        };
        Ok((auth, session))
    }

    /// The session of `req` with the request's facts.
    fn with(req: &'r Request<'_>, auth: &'r Auth, session: Session<'r>) -> Self {
        IdentitySession {
            auth,
            cookies: session.cookie_headers.all(req),
            session,
            link: link(req),
            accept: req.headers().get_one("Accept"),
        }
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
        let core = self.auth.core();
        Ok(User(core.require_user(&self.web(), &self.session).await?))
    }

    /// An access token for `scopes`: from the session, else refreshed. When the user must
    /// come back to the provider (not signed in, consent, conditional access), the answer
    /// starts a sign-in for `scopes` that returns to this URL, within the engine's
    /// consent-loop guard.
    pub async fn token_for(&self, scopes: &Scopes) -> Result<TokenForUser, AuthRejection> {
        let core = self.auth.core();
        Ok(core.token_for(&self.web(), &self.session, scopes).await?)
    }

    /// The signed-in user, who is a member of the group with object id `group`; else the
    /// 403 page (the login page when nobody is signed in). A group overage is resolved
    /// through Microsoft Graph and cached in the session; see [`WebAuth::require_group`]
    /// for the permission it needs and its answers (incremental consent, 502 when Graph
    /// fails).
    pub async fn require_group(&self, group: &str) -> Result<User, AuthRejection> {
        let user = self.require_user().await?;
        let (core, web) = (self.auth.core(), self.web());
        core.require_group(&web, &self.session, &user.0, group)
            .await?;
        Ok(user)
    }

    /// Sends the user back to the provider for `scopes` with a claims challenge (e.g. one
    /// parsed with [`ClaimsChallenge::from_www_authenticate`] from an API's 401).
    pub async fn challenge(
        &self,
        scopes: &Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> AuthRejection {
        let (core, web) = (self.auth.core(), self.web());
        AuthRejection(core.challenge(&web, &self.session, scopes, claims).await)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IdentitySession<'r> {
    type Error = AuthRejection;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        outcome(req, IdentitySession::of(req))
    }
}

/// The signed-in user. A route with this guard requires sign-in: when nobody is signed
/// in, the answer is the login page (HTTP 401, a `meta refresh` to the provider), and the
/// sign-in returns to the current path and query. Take `Option<User>` for pages anybody
/// may see.
#[derive(Clone, Debug, PartialEq)]
pub struct User(pub identity_core::User);

impl Deref for User {
    type Target = identity_core::User;
    fn deref(&self) -> &identity_core::User {
        &self.0
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for User {
    type Error = AuthRejection;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        outcome(req, checked(req, |_, _| Ok(())).await)
    }
}

/// A set of scopes known at compile time, for [`Token`].
pub trait ScopeSet: Send + Sync + 'static {
    /// Space-separated scopes, e.g. `"User.Read Mail.Read"`.
    const SCOPES: &'static str;
}

/// A fresh access token for the scopes of `S` (the core's [`TokenForUser`], through
/// `Deref` or `.0`), or (as a rejection) a sign-in that asks for them and returns to the
/// same URL. See [`IdentitySession::token_for`].
pub struct Token<S: ScopeSet>(pub TokenForUser, pub PhantomData<fn() -> S>);

impl<S: ScopeSet> Deref for Token<S> {
    type Target = TokenForUser;
    fn deref(&self) -> &TokenForUser {
        &self.0
    }
}

#[rocket::async_trait]
impl<'r, S: ScopeSet> FromRequest<'r> for Token<S> {
    type Error = AuthRejection;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        let scopes = Scopes::parse(S::SCOPES);
        let token = async { IdentitySession::of(req)?.token_for(&scopes).await }.await;
        outcome(req, token.map(|token| Token(token, PhantomData)))
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

/// The signed-in user (through `Deref` or `.0`), who holds the app role `R`; otherwise
/// the 403 page (or the login page when nobody is signed in).
pub struct HasRole<R: Role>(pub User, pub PhantomData<fn() -> R>);

impl<R: Role> Deref for HasRole<R> {
    type Target = User;
    fn deref(&self) -> &User {
        &self.0
    }
}

#[rocket::async_trait]
impl<'r, R: Role> FromRequest<'r> for HasRole<R> {
    type Error = AuthRejection;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        let user = checked(req, |core, user| core.require_role(user, R::NAME)).await;
        outcome(req, user.map(|user| HasRole(user, PhantomData)))
    }
}

/// The signed-in user (through `Deref` or `.0`), who is in the group `G`; otherwise the
/// 403 page (or the login page when nobody is signed in). After a group overage the
/// membership is read from Microsoft Graph (see [`IdentitySession::require_group`]).
pub struct InGroup<G: Group>(pub User, pub PhantomData<fn() -> G>);

impl<G: Group> Deref for InGroup<G> {
    type Target = User;
    fn deref(&self) -> &User {
        &self.0
    }
}

#[rocket::async_trait]
impl<'r, G: Group> FromRequest<'r> for InGroup<G> {
    type Error = AuthRejection;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, AuthRejection> {
        let user = async { IdentitySession::of(req)?.require_group(G::ID).await }.await;
        outcome(req, user.map(|user| InGroup(user, PhantomData)))
    }
}

#[cfg(test)]
mod tests {
    use super::link;
    use rocket::local::blocking::Client;

    #[test]
    fn the_link_is_the_uri_as_rocket_writes_it() {
        let client = Client::untracked(rocket::build()).expect("a rocket");
        for uri in [
            "/",
            "/a/b",
            "/a/b?x=1&y=%20z",
            "/caf%C3%A9?q",
            "/p?",
            "/p?next=%2Fhome%3Fa%3Db#frag",
        ] {
            let req = client.get(uri);
            assert_eq!(link(req.inner()), req.inner().uri().to_string(), "{uri}");
        }
    }
}
