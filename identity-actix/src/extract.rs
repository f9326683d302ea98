//! Extractors: [`User`] (and `Option<User>`), [`IdentitySession`].

use crate::auth::Auth;
use crate::bridge::Bridge;
use crate::error::AuthError;
use crate::middleware::{current_path, RequestCtx};
use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use identity_core::store::KEY_USER;
use identity_core::{ClaimsChallenge, Error, Scopes, TokenForUser};
use serde::{Deserialize, Serialize};
use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::rc::Rc;

/// The signed-in user. As an extractor it requires sign-in: for an anonymous visitor the
/// request is answered with the login page (401, a meta refresh to the provider,
/// `Cache-Control: no-store`) after starting a sign-in that comes back to the current
/// path and query.
///
/// `Option<User>` is the optional form: `None` for an anonymous visitor, and no sign-in
/// is started.
///
/// A page view reads only the small user record from the session: no token is parsed
/// and no signature verified. When the ID token has expired it is renewed with the
/// refresh token first (one provider call).
///
/// ```
/// use actix_web::{get, HttpResponse, Responder};
/// use identity_actix::{AuthError, User};
///
/// #[get("/")]
/// async fn index(user: User) -> impl Responder {
///     HttpResponse::Ok().body(format!("Hello {}", user.name().unwrap_or("there")))
/// }
///
/// #[get("/admin")]
/// async fn admin(user: User) -> Result<HttpResponse, AuthError> {
///     user.require_role("Admin")?; // else a 403 page
///     Ok(HttpResponse::Ok().body("admin"))
/// }
///
/// #[get("/maybe")]
/// async fn maybe(user: Option<User>) -> impl Responder {
///     match user {
///         Some(u) => format!("signed in as {}", u.name().unwrap_or("?")),
///         None => "anonymous".to_owned(),
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct User(pub identity_core::User);

impl std::ops::Deref for User {
    type Target = identity_core::User;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl User {
    /// The core's user record.
    pub fn into_inner(self) -> identity_core::User {
        self.0
    }

    /// Requires the app role `role` (the `roles` claim); else [`AuthError::Forbidden`]
    /// (a 403 page).
    pub fn require_role(&self, role: &str) -> Result<(), AuthError> {
        self.require_any_role(&[role])
    }

    /// Requires one of the app `roles`; else [`AuthError::Forbidden`].
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), AuthError> {
        if roles.iter().any(|r| self.0.has_role(r)) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                requirement: match roles {
                    [one] => format!("the app role {one:?}"),
                    many => format!("one of the app roles {}", many.join(", ")),
                },
            })
        }
    }

    /// Requires membership of the group with this object id (the `groups` claim); else
    /// [`AuthError::Forbidden`]. A token with a group overage carries no `groups`, so the
    /// check fails for such users: configure groups as app roles for large tenants.
    pub fn require_group(&self, group: &str) -> Result<(), AuthError> {
        if self.0.in_group(group) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                requirement: format!("membership of the group {group:?}"),
            })
        }
    }
}

impl FromRequest for User {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = IdentitySession::new(req);
        Box::pin(async move { session?.require_user().await })
    }
}

/// The identity side of the current request: the user, access tokens for APIs, and the
/// sign-in challenges, for handlers that decide at run time (scopes from configuration,
/// claims challenges from an API's answer).
///
/// ```
/// use actix_web::{get, HttpResponse};
/// use identity_actix::{AuthError, IdentitySession};
/// use identity_core::Scopes;
///
/// #[get("/call_api")]
/// async fn call_api(session: IdentitySession) -> Result<HttpResponse, AuthError> {
///     // Signs the user in (or asks for consent) when needed, then comes back here.
///     let token = session.token_for(&Scopes::parse("User.Read")).await?;
///     # let _ = token;
///     Ok(HttpResponse::Ok().body("called"))
/// }
/// ```
pub struct IdentitySession {
    ctx: Rc<RequestCtx>,
    session: Session,
    here: Option<String>,
}

impl std::fmt::Debug for IdentitySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySession")
            .field("here", &self.here)
            .finish_non_exhaustive()
    }
}

/// Session key of the consent-loop guard.
const GUARD_KEY: &str = "identity-actix.consent";
/// Interactive round trips allowed per scope set within the guard window.
const MAX_ROUND_TRIPS: u32 = 2;
/// Scope sets the guard remembers at once.
const MAX_GUARDED: usize = 4;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Guarded {
    scopes: String,
    count: u32,
    since: i64,
}

impl IdentitySession {
    fn new(req: &HttpRequest) -> Result<Self, AuthError> {
        Ok(Self {
            ctx: RequestCtx::of(req)?,
            session: req.get_session(),
            here: current_path(req),
        })
    }

    /// The app's [`Auth`].
    pub fn auth(&self) -> &Auth {
        &self.ctx.auth
    }

    /// The signed-in user, or `None` (renews an expired ID token first).
    pub async fn user(&self) -> Result<Option<User>, AuthError> {
        let identity = self.ctx.identity()?;
        let bridge = Bridge::load(&self.session, &self.ctx);
        let user = identity.get_user(&bridge).await;
        self.write_back(&bridge)?;
        Ok(user?.map(User))
    }

    /// The signed-in user, or [`AuthError::SignInRequired`] (whose page starts a sign-in
    /// that returns to the current URL).
    pub async fn require_user(&self) -> Result<User, AuthError> {
        match self.user().await? {
            Some(user) => Ok(user),
            None => Err(AuthError::SignInRequired {
                next: self.here.clone(),
            }),
        }
    }

    /// Whether someone is signed in, from the session alone (no renewal).
    pub fn is_signed_in(&self) -> bool {
        self.session.contains_key(KEY_USER)
    }

    /// An access token for `scopes`: from the session's cache (no provider call), else
    /// by refreshing. When the user must come back to the provider (not signed in, scope
    /// not consented, refresh token gone, claims challenge) the error is
    /// [`AuthError::InteractionRequired`], whose page starts that sign-in and returns here;
    /// after two such round trips for the same scopes within the guard window (default 5
    /// minutes) it is [`AuthError::ConsentNotObtained`] instead.
    pub async fn token_for(&self, scopes: &Scopes) -> Result<TokenForUser, AuthError> {
        let identity = self.ctx.identity()?;
        let bridge = Bridge::load(&self.session, &self.ctx);
        let token = identity.get_token_for_user(&bridge, scopes).await;
        self.write_back(&bridge)?;
        match token {
            Ok(token) => Ok(token),
            Err(Error::InteractionRequired { scopes, claims, .. }) => {
                Err(self.challenge(&scopes, claims))
            }
            // A provider may refuse to widen a refresh token's scopes (RFC 6749 §6,
            // `invalid_scope`): the new scopes need an interactive sign-in, like consent.
            Err(Error::Provider(p)) if p.error == "invalid_scope" => {
                tracing::info!(error = %p, "the provider will not widen the refresh token; signing in for the scopes");
                Err(self.challenge(scopes, None))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The rejection that sends the user to the provider for `scopes` (with a claims
    /// challenge, e.g. after an API answered `401` with `WWW-Authenticate: Bearer
    /// error="insufficient_claims", claims="…"`; see
    /// [`ClaimsChallenge::from_www_authenticate`]) and back to the current URL. Counted by
    /// the same consent-loop guard as [`token_for`](Self::token_for) for a signed-in user.
    pub fn challenge(&self, scopes: &Scopes, claims: Option<ClaimsChallenge>) -> AuthError {
        if self.is_signed_in() && !self.guard_allows(scopes) {
            tracing::warn!(scopes = %scopes.to_wire(), "consent loop: not sending the user to the provider again");
            return AuthError::ConsentNotObtained {
                scopes: scopes.clone(),
            };
        }
        AuthError::InteractionRequired {
            scopes: scopes.clone(),
            claims,
            next: self.here.clone(),
        }
    }

    /// Counts a round trip for `scopes`; false when the limit is reached. Round trips are
    /// not forgotten when a token is obtained, only when the window has passed: an API
    /// that keeps answering with a claims challenge after every successful sign-in would
    /// otherwise loop forever.
    fn guard_allows(&self, scopes: &Scopes) -> bool {
        let now = unix_now();
        let window = i64::try_from(self.ctx.auth.inner.consent_window.as_secs()).unwrap_or(300);
        let key = scopes.cache_key();
        let mut guarded: Vec<Guarded> = self
            .session
            .get(GUARD_KEY)
            .ok()
            .flatten()
            .unwrap_or_default();
        guarded.retain(|g| now - g.since <= window);
        let allowed = match guarded.iter_mut().find(|g| g.scopes == key) {
            Some(g) if g.count >= MAX_ROUND_TRIPS => false,
            Some(g) => {
                g.count += 1;
                true
            }
            None => {
                guarded.push(Guarded {
                    scopes: key,
                    count: 1,
                    since: now,
                });
                if guarded.len() > MAX_GUARDED {
                    guarded.remove(0);
                }
                true
            }
        };
        if let Err(e) = self.session.insert(GUARD_KEY, &guarded) {
            tracing::warn!(error = %e, "could not save the consent-loop guard");
        }
        allowed
    }

    fn write_back(&self, bridge: &Bridge) -> Result<(), AuthError> {
        bridge
            .write_back(&self.session, &self.ctx)
            .map_err(|e| AuthError::Identity(Error::Store(e.0)))
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl FromRequest for IdentitySession {
    type Error = AuthError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(IdentitySession::new(req))
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
///     HttpResponse::Ok().body(format!("token valid until {}", token.expires_at()))
/// }
/// ```
pub trait ScopeSet: 'static {
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

impl<S: ScopeSet> FromRequest for Token<S> {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = IdentitySession::new(req);
        Box::pin(async move {
            let token = session?.token_for(&Scopes::parse(S::SCOPES)).await?;
            Ok(Token {
                token,
                _scopes: PhantomData,
            })
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
    /// The group's object id in the `groups` claim.
    const ID: &'static str;
}

/// The signed-in user, who holds the app role `R`; otherwise the 403 page (or the login
/// page when nobody is signed in).
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

impl<R: Role> std::fmt::Debug for HasRole<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HasRole")
            .field(&R::NAME)
            .field(&self.0)
            .finish()
    }
}

impl<R: Role> FromRequest for HasRole<R> {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = User::from_request(req, payload);
        Box::pin(async move {
            let user = user.await?;
            user.require_role(R::NAME)?;
            Ok(HasRole(user, PhantomData))
        })
    }
}

/// The signed-in user, who is in the group `G`; otherwise the 403 page (or the login page
/// when nobody is signed in).
pub struct InGroup<G: Group>(pub User, pub PhantomData<fn() -> G>);

impl<G: Group> std::fmt::Debug for InGroup<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InGroup")
            .field(&G::ID)
            .field(&self.0)
            .finish()
    }
}

impl<G: Group> FromRequest for InGroup<G> {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = User::from_request(req, payload);
        Box::pin(async move {
            let user = user.await?;
            user.require_group(G::ID)?;
            Ok(InGroup(user, PhantomData))
        })
    }
}
