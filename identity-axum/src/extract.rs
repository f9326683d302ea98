//! Extractors: [`User`], `Option<User>`, [`IdentitySession`], [`Token`], [`HasRole`],
//! [`InGroup`].

use crate::auth::{Auth, Mode};
use crate::rejection::{AuthRejection, MissingPiece};
use crate::seam::{find_cookie, pending_cookie_name, Seam};
use axum::extract::{FromRequestParts, OptionalFromRequestParts, OriginalUri};
use axum::http::request::Parts;
use identity_core::{
    ClaimsChallenge, Error, Identity, LogInOptions, LoginPage, Scopes, TokenForUser,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Deref;
use tower_sessions::Session;

/// What an extractor needs from the request, borrowed.
pub(crate) struct Ctx<'a> {
    pub(crate) auth: &'a Auth,
    pub(crate) identity: &'a Identity,
    pub(crate) session: &'a Session,
    pub(crate) incoming: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn from_parts(parts: &'a Parts) -> Result<Self, AuthRejection> {
        let Some(auth) = parts.extensions.get::<Auth>() else {
            return Err(AuthRejection::missing(MissingPiece::AuthLayer, None));
        };
        Self::with_auth(auth, parts)
    }

    /// Like [`from_parts`](Self::from_parts) with a known `Auth` (the routes hold theirs).
    pub(crate) fn with_auth(auth: &'a Auth, parts: &'a Parts) -> Result<Self, AuthRejection> {
        let identity = match &auth.inner.mode {
            Mode::Configured(identity) => identity,
            Mode::Unconfigured(error) => {
                return Err(AuthRejection::not_configured(auth, error.clone()))
            }
        };
        let Some(session) = parts.extensions.get::<Session>() else {
            return Err(AuthRejection::missing(
                MissingPiece::SessionLayer,
                Some(auth),
            ));
        };
        let incoming = find_cookie(&parts.headers, pending_cookie_name(auth.inner.secure));
        Ok(Ctx {
            auth,
            identity,
            session,
            incoming,
        })
    }

    pub(crate) fn seam(&self) -> Seam<'a> {
        Seam::new(self.session, &self.auth.inner, self.incoming)
    }
}

/// The path and query the browser asked for (before any nesting stripped a prefix).
fn current_link(parts: &Parts) -> &str {
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map(|o| &o.0)
        .unwrap_or(&parts.uri);
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

/// Starts a sign-in and answers with the login page (or the error page if the provider
/// cannot be reached).
pub(crate) async fn start_sign_in(
    auth: &Auth,
    identity: &Identity,
    seam: &Seam<'_>,
    options: LogInOptions,
) -> AuthRejection {
    match identity.log_in(seam, options).await {
        Ok(start) => {
            let page = LoginPage {
                auth_uri: start.auth_uri.clone(),
                user_code: start.user_code,
                device_poll_uri: auth.callback_path().to_owned(),
                reset_password_uri: None,
            };
            let body = auth.login_page(&page);
            AuthRejection::sign_in(start.auth_uri, body, seam.set_cookie())
        }
        Err(e) => AuthRejection::failed(auth, e),
    }
}

async fn load_user(parts: &Parts) -> Result<(Option<identity_core::User>, Ctx<'_>), AuthRejection> {
    let ctx = Ctx::from_parts(parts)?;
    let seam = ctx.seam();
    match ctx.identity.get_user(&seam).await {
        Ok(user) => Ok((user, ctx)),
        Err(e) => Err(AuthRejection::failed(ctx.auth, e)),
    }
}

/// The signed-in user. Extracting it reads only the user part of the session (no token
/// parsing, no provider call unless the ID token expired and must be renewed).
///
/// When nobody is signed in, the handler does not run: the answer is the login page
/// (HTTP 401, see [`AuthRejection::SignInRequired`]) and the user comes back to the same
/// URL after signing in.
///
/// ```
/// use identity_axum::User;
///
/// async fn index(user: User) -> String {
///     format!("Hello {}", user.name().unwrap_or("there"))
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(index));
/// ```
///
/// `Option<User>` never starts a sign-in: it is `None` for anonymous visitors.
#[derive(Clone, Debug)]
pub struct User {
    user: identity_core::User,
    auth: Auth,
}

impl User {
    /// The core's user record (claims).
    pub fn into_inner(self) -> identity_core::User {
        self.user
    }

    /// Ok if the user holds the app role `role` (`roles` claim), else the 403 page.
    pub fn require_role(&self, role: &str) -> Result<(), AuthRejection> {
        if self.user.has_role(role) {
            Ok(())
        } else {
            Err(AuthRejection::forbidden(
                &self.auth,
                format!("the app role {role:?}"),
            ))
        }
    }

    /// Ok if the user is in the group `group` (object id; `groups` claim), else the 403
    /// page. Users in more groups than the token can carry (group overage) have no
    /// `groups` claim: use app roles for authorization where you can.
    pub fn require_group(&self, group: &str) -> Result<(), AuthRejection> {
        if self.user.in_group(group) {
            Ok(())
        } else {
            Err(AuthRejection::forbidden(
                &self.auth,
                format!("membership of the group {group:?}"),
            ))
        }
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
        let parts = &*parts;
        let (user, ctx) = load_user(parts).await?;
        match user {
            Some(user) => Ok(User {
                user,
                auth: ctx.auth.clone(),
            }),
            None => {
                let seam = ctx.seam();
                let options = LogInOptions {
                    next_link: Some(current_link(parts).to_owned()),
                    ..Default::default()
                };
                Err(start_sign_in(ctx.auth, ctx.identity, &seam, options).await)
            }
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for User {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let (user, ctx) = load_user(parts).await?;
        Ok(user.map(|user| User {
            user,
            auth: ctx.auth.clone(),
        }))
    }
}

/// The identity operations of the current request, for decisions made at run time
/// (scopes from configuration, claims challenges from an API).
///
/// ```
/// use identity_axum::{AuthRejection, IdentitySession};
/// use identity_core::Scopes;
///
/// async fn call_api(identity: IdentitySession) -> Result<String, AuthRejection> {
///     let scopes = Scopes::parse(&std::env::var("SCOPE").unwrap_or_else(|_| "User.Read".into()));
///     let token = identity.token_for(&scopes).await?;
///     // ... call the API with `token.access_token.secret()` ...
///     # let _ = token;
///     Ok("called".into())
/// }
/// # let _ = axum::Router::<()>::new().route("/call_api", axum::routing::get(call_api));
/// ```
#[derive(Clone, Debug)]
pub struct IdentitySession {
    auth: Auth,
    session: Session,
    incoming: Option<String>,
    link: String,
}

impl<S: Send + Sync> FromRequestParts<S> for IdentitySession {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = Ctx::from_parts(parts)?;
        Ok(IdentitySession {
            auth: ctx.auth.clone(),
            session: ctx.session.clone(),
            incoming: ctx.incoming.map(str::to_owned),
            link: current_link(parts).to_owned(),
        })
    }
}

/// Session key of the consent loop guard.
const CONSENT_GUARD_KEY: &str = "identity_axum.consent";
/// Most interactive round trips for one scope set within [`CONSENT_GUARD_WINDOW`] seconds.
pub(crate) const CONSENT_GUARD_MAX: usize = 2;
/// The guard's window, in seconds.
pub(crate) const CONSENT_GUARD_WINDOW: i64 = 300;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl IdentitySession {
    fn ctx(&self) -> Result<Ctx<'_>, AuthRejection> {
        let identity = match &self.auth.inner.mode {
            Mode::Configured(identity) => identity,
            Mode::Unconfigured(error) => {
                return Err(AuthRejection::not_configured(&self.auth, error.clone()))
            }
        };
        Ok(Ctx {
            auth: &self.auth,
            identity,
            session: &self.session,
            incoming: self.incoming.as_deref(),
        })
    }

    /// The [`Auth`] of the app.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The signed-in user, or `None`.
    pub async fn user(&self) -> Result<Option<User>, AuthRejection> {
        let ctx = self.ctx()?;
        match ctx.identity.get_user(&ctx.seam()).await {
            Ok(user) => Ok(user.map(|user| User {
                user,
                auth: self.auth.clone(),
            })),
            Err(e) => Err(AuthRejection::failed(&self.auth, e)),
        }
    }

    /// The signed-in user; when nobody is, a sign-in that returns to this URL.
    pub async fn require_user(&self) -> Result<User, AuthRejection> {
        match self.user().await? {
            Some(user) => Ok(user),
            None => Err(self.sign_in(Scopes::default(), None).await),
        }
    }

    /// A fresh access token for `scopes`: from the session's cache, else refreshed. When
    /// the user must come back to the provider (not signed in, consent for new scopes,
    /// conditional access), a sign-in asking for `scopes` (and the provider's claims
    /// challenge) is started and the rejection is the login page; the user returns to
    /// this URL. At most two such round trips per scope set within five minutes: then
    /// [`AuthRejection::ConsentNotObtained`].
    pub async fn token_for(&self, scopes: &Scopes) -> Result<TokenForUser, AuthRejection> {
        let ctx = self.ctx()?;
        let seam = ctx.seam();
        match ctx.identity.get_token_for_user(&seam, scopes).await {
            Ok(token) => {
                self.guard_clear(scopes).await;
                Ok(token)
            }
            Err(Error::InteractionRequired {
                scopes: wanted,
                claims,
                reason,
            }) => Err(self.interactive(&ctx, wanted, claims, &reason).await),
            // A provider may refuse to widen a refresh token's scopes (RFC 6749 §6,
            // `invalid_scope`): the new scopes need an interactive sign-in, like consent.
            Err(Error::Provider(p)) if p.error == "invalid_scope" => {
                let reason = p.summary();
                Err(self.interactive(&ctx, scopes.clone(), None, &reason).await)
            }
            Err(e) => Err(AuthRejection::failed(&self.auth, e)),
        }
    }

    /// Sends the user back to the provider for `scopes` with a claims challenge, e.g. after
    /// an API answered `401` with `WWW-Authenticate: Bearer error="insufficient_claims",
    /// claims="…"` (see [`ClaimsChallenge::from_www_authenticate`]). Subject to the same
    /// loop guard as [`token_for`](Self::token_for). Returns the rejection to answer with.
    pub async fn challenge(
        &self,
        scopes: &Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> AuthRejection {
        match self.ctx() {
            Ok(ctx) => {
                self.interactive(
                    &ctx,
                    scopes.clone(),
                    claims,
                    "the API asked for more claims",
                )
                .await
            }
            Err(rejection) => rejection,
        }
    }

    async fn interactive(
        &self,
        ctx: &Ctx<'_>,
        scopes: Scopes,
        claims: Option<ClaimsChallenge>,
        reason: &str,
    ) -> AuthRejection {
        let seam = ctx.seam();
        // Anonymous visitors simply sign in (with the scopes); the guard only counts
        // round trips of signed-in users, so anonymous requests create no session.
        if seam.is_signed_in().await && !self.guard_allows(&scopes).await {
            return AuthRejection::consent_not_obtained(&self.auth, scopes, reason);
        }
        tracing::info!(scopes = %scopes, %reason, "asking the user to come back to the provider");
        self.sign_in_with(ctx, &seam, scopes, claims).await
    }

    async fn sign_in(&self, scopes: Scopes, claims: Option<ClaimsChallenge>) -> AuthRejection {
        match self.ctx() {
            Ok(ctx) => {
                let seam = ctx.seam();
                self.sign_in_with(&ctx, &seam, scopes, claims).await
            }
            Err(rejection) => rejection,
        }
    }

    async fn sign_in_with(
        &self,
        ctx: &Ctx<'_>,
        seam: &Seam<'_>,
        scopes: Scopes,
        claims: Option<ClaimsChallenge>,
    ) -> AuthRejection {
        let options = LogInOptions {
            scopes,
            claims,
            next_link: Some(self.link.clone()),
            ..Default::default()
        };
        start_sign_in(ctx.auth, ctx.identity, seam, options).await
    }

    /// Records a round trip for `scopes` unless two happened within the window.
    async fn guard_allows(&self, scopes: &Scopes) -> bool {
        let now = now();
        let mut map: BTreeMap<String, Vec<i64>> =
            match self.session.get_value(CONSENT_GUARD_KEY).await {
                Ok(Some(v)) => serde_json::from_value(v).unwrap_or_default(),
                _ => BTreeMap::new(),
            };
        map.retain(|_, times| {
            times.retain(|t| now - *t < CONSENT_GUARD_WINDOW);
            !times.is_empty()
        });
        let times = map.entry(scopes.cache_key()).or_default();
        if times.len() >= CONSENT_GUARD_MAX {
            return false;
        }
        times.push(now);
        if let Ok(v) = serde_json::to_value(&map) {
            if let Err(e) = self.session.insert_value(CONSENT_GUARD_KEY, v).await {
                tracing::warn!(error = %e, "could not record a consent round trip");
            }
        }
        true
    }

    /// Forgets the round trips for `scopes` once a token was obtained.
    async fn guard_clear(&self, scopes: &Scopes) {
        let Ok(Some(v)) = self.session.get_value(CONSENT_GUARD_KEY).await else {
            return;
        };
        let mut map: BTreeMap<String, Value> = serde_json::from_value(v).unwrap_or_default();
        if map.remove(&scopes.cache_key()).is_none() {
            return;
        }
        let result = if map.is_empty() {
            self.session
                .remove_value(CONSENT_GUARD_KEY)
                .await
                .map(|_| ())
        } else {
            match serde_json::to_value(&map) {
                Ok(v) => self
                    .session
                    .insert_value(CONSENT_GUARD_KEY, v)
                    .await
                    .map(|_| ()),
                Err(_) => Ok(()),
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not clear the consent guard");
        }
    }
}

/// A set of scopes known at compile time, for [`Token`].
///
/// ```
/// use identity_axum::{ScopeSet, Token};
///
/// struct MailRead;
/// impl ScopeSet for MailRead {
///     const SCOPES: &'static str = "Mail.Read";
/// }
///
/// async fn inbox(token: Token<MailRead>) -> String {
///     format!("token valid until {}", token.expires_at())
/// }
/// # let _ = axum::Router::<()>::new().route("/inbox", axum::routing::get(inbox));
/// ```
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
    /// The group's object id in the `groups` claim.
    const ID: &'static str;
}

/// The signed-in user, who holds the app role `R`; otherwise the 403 page (or the login
/// page when nobody is signed in).
///
/// ```
/// use identity_axum::{HasRole, Role};
///
/// struct Reader;
/// impl Role for Reader {
///     const NAME: &'static str = "Reader";
/// }
///
/// async fn reports(HasRole(user, _): HasRole<Reader>) -> String {
///     format!("reports for {}", user.name().unwrap_or("you"))
/// }
/// # let _ = axum::Router::<()>::new().route("/reports", axum::routing::get(reports));
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

impl<S: Send + Sync, R: Role> FromRequestParts<S> for HasRole<R> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = <User as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        user.require_role(R::NAME)?;
        Ok(HasRole(user, PhantomData))
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

impl<S: Send + Sync, G: Group> FromRequestParts<S> for InGroup<G> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = <User as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        user.require_group(G::ID)?;
        Ok(InGroup(user, PhantomData))
    }
}
