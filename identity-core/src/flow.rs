//! The sign-in flow: [`Identity`] and its operations, with the Python library's names.

use crate::authority::{Authority, AuthorityKind};
use crate::challenge::ClaimsChallenge;
use crate::config::IdentityConfig;
use crate::error::{Error, FetchFailure, TokenRejection};
use crate::http::HttpClient;
use crate::issuer::{check_discovery_issuer, IssuerPolicy, TENANT_ID_TEMPLATE};
use crate::jwt::{self, Expectations, UnverifiedJwt};
use crate::metadata::{KeySet, MetadataCache, ProviderMetadata};
use crate::provider_error::ProviderError;
use crate::record::{CachedToken, Pending, PendingLogin, Purpose, Tokens, User};
use crate::scopes::Scopes;
use crate::store::{SessionStore, KEY_DEVICE, KEY_PENDING, KEY_TOKENS, KEY_USER};
use crate::token_response::{
    parse_token_endpoint_response, TokenEndpointResult, TokenParseError, TokenResponse,
};
use crate::types::{AccessToken, PkceVerifier, RefreshToken};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// The span of one operation; [`traced`] fills in its outcome and provider calls.
macro_rules! operation_span {
    ($name:literal) => {
        tracing::info_span!(
            $name,
            outcome = tracing::field::Empty,
            provider_calls = tracing::field::Empty
        )
    };
}

tokio::task_local! {
    static PROVIDER_CALLS: std::cell::Cell<u32>;
}

/// Counts a provider call for the current operation's tracing span.
pub(crate) fn count_provider_call() {
    let _ = PROVIDER_CALLS.try_with(|c| c.set(c.get() + 1));
}

/// Runs `fut` inside `span`, recording `outcome` and `provider_calls` on it.
async fn traced<T>(
    span: tracing::Span,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    PROVIDER_CALLS
        .scope(std::cell::Cell::new(0), async move {
            // A span no subscriber wants is not entered or written to at all (the
            // operation's events below are still emitted, e.g. to `log`).
            let span = (!span.is_disabled()).then_some(span);
            let result = match &span {
                Some(span) => fut.instrument(span.clone()).await,
                None => fut.await,
            };
            let calls = PROVIDER_CALLS.with(|c| c.get());
            let _entered = span.as_ref().map(|span| {
                span.record("provider_calls", calls);
                let outcome = match &result {
                    Ok(_) => "ok",
                    Err(e) => e.title(),
                };
                span.record("outcome", outcome);
                span.enter()
            });
            match &result {
                Ok(_) => tracing::debug!(provider_calls = calls, "done"),
                Err(e) => tracing::info!(provider_calls = calls, error = %e, "failed"),
            }
            result
        })
        .await
}

/// Appends `application/x-www-form-urlencoded` pairs to a query string (as
/// `Url::query_pairs_mut` does, without parsing the URL for each sign-in), `&` between
/// them.
struct QueryWriter<'a>(&'a mut String, bool);

impl<'a> QueryWriter<'a> {
    /// Pairs appended to `out`, which ends where the first pair begins.
    fn new(out: &'a mut String) -> Self {
        QueryWriter(out, true)
    }

    fn separate(&mut self) {
        if !std::mem::replace(&mut self.1, false) {
            self.0.push('&');
        }
    }

    fn pair(&mut self, name: &str, value: &str) {
        self.separate();
        encode_into(self.0, name);
        self.0.push('=');
        encode_into(self.0, value);
    }

    /// Pairs encoded already (`a=b&c=d`).
    fn encoded(&mut self, pairs: &str) {
        self.separate();
        self.0.push_str(pairs);
    }

    /// [`pair`](Self::pair) for a value made of bytes the encoding keeps (the random
    /// base64url tokens this module makes): copied without a scan.
    fn pair_verbatim(&mut self, name: &str, value: &str) {
        debug_assert!(value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')));
        self.separate();
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(value);
    }
}

/// Form-encodes `text` onto `out`; text that needs no encoding (state, nonce, PKCE
/// challenge: base64url) is copied as it is.
fn encode_into(out: &mut String, text: &str) {
    /// Bytes kept as they are by `application/x-www-form-urlencoded`.
    const UNRESERVED: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'*');
            b += 1;
        }
        t
    };
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if UNRESERVED[usize::from(b)] {
            continue;
        }
        if i > start {
            // A run of ASCII bytes: its ends are character boundaries.
            out.push_str(&text[start..i]);
        }
        if b == b' ' {
            out.push('+');
        } else {
            let escaped = [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
            out.push_str(std::str::from_utf8(&escaped).unwrap_or_default());
        }
        start = i + 1;
    }
    if start < text.len() {
        out.push_str(&text[start..]);
    }
}

/// `base` ready for query pairs to be appended (after any query it has), with room for
/// `room` more bytes; `None` when it has a fragment (then [`with_query`]).
fn query_start(base: &url::Url, room: usize) -> Option<String> {
    if base.fragment().is_some() {
        return None;
    }
    let mut out = String::with_capacity(base.as_str().len() + 1 + room);
    out.push_str(base.as_str());
    match base.query() {
        None => out.push('?'),
        Some(q) if !q.is_empty() => out.push('&'),
        Some(_) => {}
    }
    Some(out)
}

/// `base` with `query` appended to its query (after any it has), before any fragment.
fn with_query(base: &url::Url, query: &str) -> String {
    if let Some(mut out) = query_start(base, query.len()) {
        out.push_str(query);
        return out;
    }
    let mut url = base.clone();
    let joined = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{query}"),
        _ => query.to_owned(),
    };
    url.set_query(Some(&joined));
    url.into()
}

/// Whether the authority speaks Entra's dialect (`client_info`, AADSTS codes).
pub(crate) fn is_entra_family(authority: &Authority) -> bool {
    !matches!(authority.kind(), AuthorityKind::Oidc | AuthorityKind::Adfs)
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `N` random tokens of 32 bytes each, base64url. From the thread's CSPRNG (ChaCha,
/// seeded and periodically reseeded from the OS): one system call per sign-in would cost
/// more than the rest of the login page's randomness.
fn random_tokens<const N: usize>() -> [String; N] {
    let mut buf = [[0u8; 32]; N];
    let mut rng = rand::thread_rng();
    for b in &mut buf {
        rng.fill_bytes(b);
    }
    buf.map(|b| URL_SAFE_NO_PAD.encode(b))
}

/// Accepts a post-sign-in target only if it is a same-site relative path: it starts with
/// one `/`, has no backslash, no scheme-relative `//`, no control characters or spaces.
/// Anything else (`//evil.example`, `https://evil.example`, `/\evil.example`) gives `None`.
pub fn safe_next_link(next: &str) -> Option<String> {
    let ok = next.len() <= 2048
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then(|| next.to_owned())
}

/// RFC 9207: an authorization response's `iss` must be the issuer of the provider the
/// sign-in was sent to (a multi-tenant `{tenantid}` issuer: that form with a tenant GUID).
/// When the provider's metadata says it sends `iss`
/// (`authorization_response_iss_parameter_supported`), a response without it is refused.
fn check_callback_issuer(meta: &ProviderMetadata, iss: Option<&str>) -> Result<(), Error> {
    let Some(iss) = iss else {
        if meta.authorization_response_iss_parameter_supported {
            return Err(Error::CallbackIssuer {
                expected: meta.issuer.clone(),
                actual: None,
            });
        }
        return Ok(());
    };
    let matches = match meta.issuer.split_once(TENANT_ID_TEMPLATE) {
        None => iss == meta.issuer,
        Some((head, tail)) => iss
            .strip_prefix(head)
            .and_then(|rest| rest.strip_suffix(tail))
            .is_some_and(crate::authority::is_guid),
    };
    if matches {
        Ok(())
    } else {
        Err(Error::CallbackIssuer {
            expected: meta.issuer.clone(),
            actual: Some(iss.to_owned()),
        })
    }
}

/// Options of [`Identity::log_in`].
#[derive(Clone, Debug, Default)]
pub struct LogInOptions {
    /// Scopes for APIs to ask for now (the reserved `openid profile offline_access` are
    /// always added once).
    pub scopes: Scopes,
    /// `prompt` (`login`, `consent`, `select_account`, `none`).
    pub prompt: Option<String>,
    /// `login_hint`.
    pub login_hint: Option<String>,
    /// `domain_hint`.
    pub domain_hint: Option<String>,
    /// Where to go after sign-in: only a same-site relative path is kept.
    pub next_link: Option<String>,
    /// A claims challenge to satisfy (from [`Error::InteractionRequired`]).
    pub claims: Option<ClaimsChallenge>,
    /// What the sign-in is for (B2C edit profile and reset password use other user flows).
    pub purpose: Option<Purpose>,
}

/// What [`Identity::log_in`] returns: where to send the browser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogInStart {
    /// The provider URL to open (for device code: the verification URI).
    pub auth_uri: String,
    /// For device code sign-in: the code the user types.
    pub user_code: Option<String>,
}

/// What [`Identity::complete_log_in`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedIn {
    /// The safe next link given to `log_in`, if any.
    pub next_link: Option<String>,
    /// The signed-in user.
    pub user: User,
    /// What the completed flow was.
    pub purpose: Purpose,
}

/// What one device code poll ([`Identity::poll_device_code`]) found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DevicePoll {
    /// The user has not finished at the provider yet (`authorization_pending`, or
    /// `slow_down`, after which the interval is 5 s longer), or this poll came before the
    /// provider's interval had passed and the provider was not asked. Show the code again
    /// and poll after `retry_after`.
    Pending {
        /// How long to wait before the next poll.
        retry_after: Duration,
        /// The verification URI and the code the user types, to show again.
        instructions: LogInStart,
    },
    /// The user approved: the user and tokens are stored and the session id was cycled,
    /// as for [`Identity::complete_log_in`].
    SignedIn(LoggedIn),
}

/// An access token for the user or the app.
#[derive(Clone, Debug)]
pub struct TokenForUser {
    /// The token.
    pub access_token: AccessToken,
    /// When it expires (seconds since the epoch).
    pub expires_at: i64,
    /// Whether it came from the cache (no provider call).
    pub from_cache: bool,
}

/// Logout tokens issued longer ago than this (by `iat`, beyond the clock skew) are
/// refused; the replay cache keeps each `jti` this long plus twice the skew.
pub const LOGOUT_TOKEN_MAX_AGE: Duration = Duration::from_secs(300);
/// The member of a logout token's `events` claim that makes it a back-channel logout.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A validated back-channel logout token: whose sessions to end.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogoutToken {
    /// `iss`: the issuer whose sessions end.
    pub iss: String,
    /// `sid`: the provider session that ended (its sessions only), if named.
    pub sid: Option<String>,
    /// `sub`: the user whose sessions end (all of them, when no `sid` is named).
    pub sub: Option<String>,
    /// `jti`: the token's id, for the replay cache.
    pub jti: String,
    /// `iat`: when the token was issued (seconds since the epoch).
    pub iat: i64,
}

/// The result of a refresh, shared by every request of the session.
#[derive(Clone, Debug)]
struct Refreshed {
    response: TokenResponse,
    id_claims: Option<(Map<String, Value>, i64)>,
    /// When the access token expires, computed when the response arrived.
    access_token_expires_at: i64,
}

/// What this process knows of one refresh token.
enum SlotState {
    /// Not redeemed yet (or refused for the scopes asked only).
    Unused,
    /// Redeemed: what the provider answered, for which scopes.
    Redeemed {
        scopes: Scopes,
        result: Arc<Refreshed>,
    },
    /// The provider was down or refused the refresh token itself.
    Failed { error: Error, at: Instant },
}

/// The single-flight slot of one refresh token: its lock is held while it is redeemed.
struct RefreshSlot {
    state: tokio::sync::Mutex<SlotState>,
    created: Instant,
}

/// How long one instance may hold a session's cluster-wide refresh lease: longer than a
/// token request may take (the HTTP timeouts), so a live holder never loses it; a holder
/// that died frees it after this long.
pub(crate) const REFRESH_LEASE: Duration = Duration::from_secs(15);
/// How long a refresh result stays in the shared store for the other instances (and for
/// requests that started before it and saved a stale copy of the session).
pub(crate) const SHARED_REFRESH_RESULT: Duration = Duration::from_secs(600);

/// What the cluster-wide refresh gave.
enum Redemption {
    /// This instance redeemed the refresh token.
    Ours(Arc<Refreshed>),
    /// Another instance did; its result, for `scopes`.
    Theirs {
        scopes: Scopes,
        result: Arc<Refreshed>,
    },
}

/// A refresh result as the shared store keeps it, sealed with a key derived from the
/// refresh token it redeemed: only a holder of that refresh token can open it, and
/// whoever reads the store learns nothing.
#[derive(Serialize, Deserialize)]
struct SharedRefresh {
    scopes: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claims: Option<(Map<String, Value>, i64)>,
    at_exp: i64,
}

/// The shared-store names and seal of the cluster-wide refresh of one refresh token.
struct SharedRefreshSlot {
    result_key: String,
    lease_key: String,
    key: cookie::Key,
}

const SHARED_REFRESH_NAME: &str = "identity.refresh";

impl SharedRefreshSlot {
    fn new(rt: &RefreshToken) -> Self {
        use sha2::Sha512;
        let id: String =
            Sha256::digest([b"identity-rs refresh id v1\0", rt.secret().as_bytes()].concat())[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        let material: [u8; 64] =
            Sha512::digest([b"identity-rs refresh seal v1\0", rt.secret().as_bytes()].concat())
                .into();
        SharedRefreshSlot {
            result_key: format!("refresh:{id}:result"),
            lease_key: format!("refresh:{id}:lease"),
            key: cookie::Key::from(&material),
        }
    }

    fn seal(&self, scopes: &Scopes, result: &Refreshed) -> Option<String> {
        let r = &result.response;
        let shared = SharedRefresh {
            scopes: scopes.to_wire(),
            at: r.access_token.as_ref().map(|t| t.secret().to_owned()),
            rt: r.refresh_token.as_ref().map(|t| t.secret().to_owned()),
            id: r.id_token.as_ref().map(|t| t.secret().to_owned()),
            claims: result.id_claims.clone(),
            at_exp: result.access_token_expires_at,
        };
        let plain = serde_json::to_string(&shared).ok()?;
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&self.key)
            .add(cookie::Cookie::new(SHARED_REFRESH_NAME, plain));
        jar.get(SHARED_REFRESH_NAME).map(|c| c.value().to_owned())
    }

    fn open(&self, sealed: &str) -> Option<(Scopes, Refreshed)> {
        let plain = cookie::CookieJar::new()
            .private(&self.key)
            .decrypt(cookie::Cookie::new(SHARED_REFRESH_NAME, sealed.to_owned()))?;
        let shared: SharedRefresh = serde_json::from_str(plain.value()).ok()?;
        let response = TokenResponse {
            access_token: shared.at.map(AccessToken::new),
            refresh_token: shared.rt.map(RefreshToken::new),
            id_token: shared.id.map(crate::types::IdTokenJwt::new),
            ..TokenResponse::default()
        };
        Some((
            Scopes::parse(&shared.scopes),
            Refreshed {
                response,
                id_claims: shared.claims,
                access_token_expires_at: shared.at_exp,
            },
        ))
    }
}

/// The single-flight slot of one on-behalf-of exchange.
pub(crate) type OboSlot = Arc<tokio::sync::Mutex<()>>;

struct Inner {
    config: IdentityConfig,
    metadata: MetadataCache,
    refreshes: Mutex<HashMap<[u8; 32], Arc<RefreshSlot>>>,
    obo: crate::web_api::OboCache,
    obo_flights: Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
    validated: crate::token_cache::ValidatedTokens,
    /// The configured authority's discovery document that last passed
    /// [`check_discovery_issuer`]: the same document is not checked again.
    discovery_checked: Mutex<Option<Arc<ProviderMetadata>>>,
    /// Users parsed from session records, by their text.
    users: crate::record::UserCache,
    /// The first pairs of every authorization request, form-encoded once (see
    /// [`sign_in_head`]).
    sign_in_head: String,
}

/// `client_id=…&response_type=code&redirect_uri=…`: the first pairs of every
/// authorization request of `config`, form-encoded (empty without a redirect URI).
fn sign_in_head(config: &IdentityConfig) -> String {
    let mut head = String::new();
    if let Some(redirect_uri) = &config.redirect_uri {
        let mut q = QueryWriter::new(&mut head);
        q.pair("client_id", config.client_id.as_str());
        q.pair_verbatim("response_type", "code");
        q.pair("redirect_uri", redirect_uri);
    }
    head
}

/// The long-lived handle of the library: build once from an [`IdentityConfig`], clone
/// freely (it is an `Arc`), and call its operations with each request's session.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How long a finished refresh is remembered, so that requests which loaded the old
/// refresh token before the new one was saved (or from a copy of the session written
/// back late) share the result instead of redeeming the old refresh token again.
pub(crate) const REFRESH_MEMORY: Duration = Duration::from_secs(120);

/// Most refresh tokens remembered at once (the memory stays bounded under any load).
const MAX_REFRESH_SLOTS: usize = 10_000;

/// `now + expires_in`, saturating (the token response parser bounds `expires_in`).
pub(crate) fn expires_at(now: i64, expires_in: Option<u64>) -> i64 {
    now.saturating_add(i64::try_from(expires_in.unwrap_or(0)).unwrap_or(i64::MAX))
}

impl Identity {
    /// Builds the handle. Fails only on an unusable configuration; nothing is fetched yet.
    pub fn new(config: IdentityConfig) -> Result<Self, Error> {
        if config.client_id.as_str().is_empty() {
            return Err(Error::config("client_id must be provided"));
        }
        if let Some(uri) = &config.redirect_uri {
            let parsed = url::Url::parse(uri).map_err(|e| {
                Error::config(format!("REDIRECT_URI {uri:?} is not an absolute URL: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(Error::config(format!(
                    "REDIRECT_URI {uri:?} must be http(s)"
                )));
            }
        }
        let http = match &config.http_client {
            Some(h) => h.clone(),
            None => HttpClient::new(config.timeouts).map_err(Error::config)?,
        };
        let metadata = MetadataCache::new(http, config.metadata);
        Ok(Self {
            inner: Arc::new(Inner {
                metadata,
                refreshes: Mutex::default(),
                obo: Mutex::default(),
                obo_flights: Mutex::default(),
                validated: crate::token_cache::ValidatedTokens::new(config.validated_token_cache),
                discovery_checked: Mutex::default(),
                users: crate::record::UserCache::default(),
                sign_in_head: sign_in_head(&config),
                config,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &IdentityConfig {
        &self.inner.config
    }

    /// The metadata cache (discovery documents and keys).
    pub fn metadata(&self) -> &MetadataCache {
        &self.inner.metadata
    }

    pub(crate) fn validated_tokens(&self) -> &crate::token_cache::ValidatedTokens {
        &self.inner.validated
    }

    pub(crate) fn obo_cache(&self) -> &crate::web_api::OboCache {
        &self.inner.obo
    }

    /// The single-flight slot of the on-behalf-of exchange keyed `key`.
    pub(crate) fn obo_flight(&self, key: &str) -> OboSlot {
        let mut map = self
            .inner
            .obo_flights
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get(key).and_then(std::sync::Weak::upgrade) {
            return slot;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let slot = OboSlot::default();
        map.insert(key.to_owned(), Arc::downgrade(&slot));
        slot
    }

    fn authority_for(&self, policy: Option<&str>) -> Authority {
        match policy.and_then(|p| self.inner.config.authority.with_policy(p)) {
            Some(a) => a,
            None => self.inner.config.authority.clone(),
        }
    }

    /// The discovery document of `authority`, whose `issuer` must be the authority's own
    /// (see [`check_discovery_issuer`]).
    pub(crate) async fn discovery(
        &self,
        authority: &Authority,
    ) -> Result<Arc<ProviderMetadata>, Error> {
        let meta = self
            .inner
            .metadata
            .discovery(authority.discovery_str())
            .await?;
        let configured = authority.is_same(&self.inner.config.authority);
        let checked =
            |m: &Option<Arc<ProviderMetadata>>| m.as_ref().is_some_and(|ok| Arc::ptr_eq(ok, &meta));
        if configured
            && checked(
                &self
                    .inner
                    .discovery_checked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            )
        {
            return Ok(meta);
        }
        check_discovery_issuer(authority, &meta.issuer).map_err(|e| Error::Discovery {
            url: authority.discovery_str().to_owned(),
            reason: e.to_string(),
        })?;
        if configured {
            *self
                .inner
                .discovery_checked
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(meta.clone());
        }
        Ok(meta)
    }

    /// The configured clock skew, within [`jwt::MAX_CLOCK_SKEW`].
    pub(crate) fn skew(&self) -> Duration {
        self.inner.config.clock_skew.min(jwt::MAX_CLOCK_SKEW)
    }

    /// Starts a sign-in: stores a pending sign-in in the session and returns the URL to
    /// send the browser to (auth code + PKCE S256, state, nonce, `response_mode=query`).
    ///
    /// Without a redirect URI it starts device code sign-in instead.
    pub async fn log_in(
        &self,
        session: &dyn SessionStore,
        options: LogInOptions,
    ) -> Result<LogInStart, Error> {
        let span = operation_span!("identity.log_in");
        traced(span, self.log_in_inner(session, options)).await
    }

    async fn log_in_inner(
        &self,
        session: &dyn SessionStore,
        options: LogInOptions,
    ) -> Result<LogInStart, Error> {
        let config = &self.inner.config;
        let purpose = options.purpose.unwrap_or(Purpose::SignIn);
        let policy = match purpose {
            Purpose::SignIn => None,
            Purpose::EditProfile => Some(config.b2c.edit_profile.clone().ok_or_else(|| {
                Error::config("no edit-profile user flow is configured (EDITPROFILE_USER_FLOW)")
            })?),
            Purpose::ResetPassword => Some(config.b2c.reset_password.clone().ok_or_else(|| {
                Error::config("no reset-password user flow is configured (RESETPASSWORD_USER_FLOW)")
            })?),
        };
        let authority = self.authority_for(policy.as_deref());
        let Some(redirect_uri) = config.redirect_uri.clone() else {
            return self
                .start_device_code(session, &authority, &options.scopes)
                .await;
        };
        let meta = self.discovery(&authority).await?;
        let [state, nonce, verifier] = random_tokens();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let scopes = options.scopes.without_reserved();
        let claims = ClaimsChallenge::merge_capabilities(
            options.claims.as_ref(),
            &config.client_capabilities,
        );

        let endpoint = meta.authorization_url().map_err(|e| Error::Discovery {
            url: authority.discovery_url().to_string(),
            reason: format!("authorization_endpoint is not a URL: {e}"),
        })?;
        // The pairs are written after the endpoint itself, unless it has a fragment.
        let start = query_start(endpoint, 512);
        let has_fragment = start.is_none();
        let mut query = start.unwrap_or_else(|| String::with_capacity(512));
        {
            let mut q = QueryWriter::new(&mut query);
            q.encoded(&self.inner.sign_in_head);
            q.pair("scope", &scopes.wire_with_reserved());
            q.pair_verbatim("state", &state);
            q.pair_verbatim("code_challenge", &challenge);
            q.pair_verbatim("code_challenge_method", "S256");
            q.pair_verbatim("nonce", &nonce);
            q.pair_verbatim("response_mode", "query");
            if is_entra_family(&authority) {
                q.pair("client_info", "1");
            }
            if let Some(p) = &options.prompt {
                q.pair("prompt", p);
            }
            if let Some(h) = &options.login_hint {
                q.pair("login_hint", h);
            }
            if let Some(h) = &options.domain_hint {
                q.pair("domain_hint", h);
            }
            if let Some(c) = &claims {
                q.pair("claims", c.as_str());
            }
        }
        let auth_uri = if has_fragment {
            with_query(endpoint, &query)
        } else {
            query
        };

        let now = now();
        let mut pending = load::<Pending>(session, KEY_PENDING)
            .await?
            .unwrap_or_default();
        pending.push(
            PendingLogin {
                state,
                nonce,
                verifier: PkceVerifier::new(verifier),
                redirect_uri,
                scopes,
                next_link: options.next_link.as_deref().and_then(safe_next_link),
                created_at: now,
                policy,
                purpose,
            },
            now,
            config.pending_login_ttl.as_secs() as i64,
        );
        save_pending(session, &pending).await?;
        Ok(LogInStart {
            auth_uri,
            user_code: None,
        })
    }

    /// Completes a sign-in with the parameters the provider sent to the redirect URI
    /// (query or form). On success the user and tokens are stored, the pending sign-in is
    /// consumed, and the session id is cycled through [`SessionStore::cycle_id`].
    ///
    /// For device code sign-in call it with no parameters: it polls once, as
    /// [`Identity::poll_device_code`] does, and answers [`Error::DeviceCodePending`] while
    /// the user has not finished.
    pub async fn complete_log_in<'a, I>(
        &self,
        session: &dyn SessionStore,
        params: I,
    ) -> Result<LoggedIn, Error>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let params: Vec<(&str, &str)> = params.into_iter().collect();
        let span = operation_span!("identity.complete_log_in");
        traced(span, self.complete_inner(session, params)).await
    }

    async fn complete_inner(
        &self,
        session: &dyn SessionStore,
        params: Vec<(&str, &str)>,
    ) -> Result<LoggedIn, Error> {
        let config = &self.inner.config;
        if config.redirect_uri.is_none() && params.is_empty() {
            return match self.poll_device_inner(session).await? {
                DevicePoll::SignedIn(done) => Ok(done),
                DevicePoll::Pending { retry_after, .. } => {
                    Err(Error::DeviceCodePending { retry_after })
                }
            };
        }
        let get = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let state = get("state").unwrap_or("");
        let now = now();
        let mut pending = load::<Pending>(session, KEY_PENDING)
            .await?
            .unwrap_or_default();
        let Some(login) = pending.take(state, now, config.pending_login_ttl.as_secs() as i64)
        else {
            tracing::warn!("callback with an unknown or expired state");
            return Err(Error::UnknownState);
        };
        // The pending sign-in is consumed whatever happens next: a replayed callback
        // cannot redeem anything.
        save_pending(session, &pending).await?;

        let authority = self.authority_for(login.policy.as_deref());
        let meta = self.discovery(&authority).await;
        if let Ok(meta) = &meta {
            check_callback_issuer(meta, get("iss"))?;
        }
        if let Some(err) = ProviderError::from_redirect_params(params.iter().copied()) {
            // An error answer redeems nothing: it is shown even if discovery failed.
            return Err(Error::provider(err));
        }
        let meta = meta?;
        let Some(code) = get("code") else {
            return Err(Error::InvalidCallback("expected `code` or `error`".into()));
        };
        let resp = self
            .token_request(
                &meta,
                &authority,
                vec![
                    ("grant_type", "authorization_code".into()),
                    ("code", code.to_owned()),
                    ("redirect_uri", login.redirect_uri.clone()),
                    ("code_verifier", login.verifier.secret().to_owned()),
                    ("scope", login.scopes.with_reserved().to_wire()),
                ],
            )
            .await?;
        let raw_id =
            resp.id_token
                .as_ref()
                .ok_or(Error::InvalidIdToken(TokenRejection::MissingClaim(
                    "id_token",
                )))?;
        let received = now;
        let (claims, exp) = self
            .validate_id_token(&authority, &meta, raw_id.secret(), Some(&login.nonce))
            .await?;

        if let Some(granted) = resp.scope.as_deref() {
            let ungranted = login.scopes.ungranted(granted);
            if !ungranted.is_empty() {
                return Err(Error::UngrantedScopes(ungranted));
            }
        }

        let user = User::from_claims(&claims, exp);
        let mut tokens = Tokens {
            refresh_token: resp.refresh_token.clone(),
            id_token: resp.id_token.clone(),
            access_tokens: Vec::new(),
            policy: login.policy.clone(),
        };
        if let Some(at) = &resp.access_token {
            if !login.scopes.is_empty() {
                tokens.put(CachedToken {
                    key: login.scopes.cache_key(),
                    scopes: login.scopes.clone(),
                    access_token: at.clone(),
                    expires_at: expires_at(received, resp.expires_in),
                });
            }
        }
        store_sign_in(session, &user, &tokens).await?;
        Ok(LoggedIn {
            next_link: login.next_link,
            user,
            purpose: login.purpose,
        })
    }

    /// The provider's keys, fetched again when none has the token's `kid`.
    async fn keys_for(
        &self,
        authority: &Authority,
        meta: &ProviderMetadata,
        parsed: &UnverifiedJwt,
    ) -> Result<Arc<KeySet>, Error> {
        let discovery_url = authority.discovery_url();
        let keys = self
            .inner
            .metadata
            .keys(discovery_url.as_str(), &meta.jwks_uri, None)
            .await?;
        if keys.has_kid(parsed.kid()) {
            return Ok(keys);
        }
        self.inner
            .metadata
            .keys(discovery_url.as_str(), &meta.jwks_uri, parsed.kid())
            .await
    }

    fn issuer_policy(&self, authority: &Authority, meta: &ProviderMetadata) -> IssuerPolicy {
        let config = &self.inner.config;
        let mut policy = IssuerPolicy::new(authority, &meta.issuer)
            .reject_personal_accounts(config.reject_personal_accounts);
        if !config.allowed_tenants.is_empty() {
            policy = policy.allowed_tenants(config.allowed_tenants.iter().cloned());
        }
        policy
    }

    /// Validates a raw ID token from `authority`; returns its claims and `exp`.
    async fn validate_id_token(
        &self,
        authority: &Authority,
        meta: &ProviderMetadata,
        raw: &str,
        nonce: Option<&str>,
    ) -> Result<(Map<String, Value>, i64), Error> {
        let config = &self.inner.config;
        let parsed = UnverifiedJwt::parse(raw).map_err(Error::InvalidIdToken)?;
        let keys = self.keys_for(authority, meta, &parsed).await?;
        jwt::verify_signature(&parsed, &keys, &meta.id_token_signing_alg_values_supported)
            .map_err(Error::InvalidIdToken)?;
        let policy = self.issuer_policy(authority, meta);
        let audiences = [config.client_id.to_string()];
        jwt::check_claims(
            &parsed,
            &keys,
            &Expectations {
                issuer: &policy,
                audiences: &audiences,
                azp: Some(config.client_id.as_str()),
                nonce,
                id_token: true,
                logout_token: false,
                now: now(),
                skew: self.skew(),
            },
        )
        .map_err(Error::InvalidIdToken)?;
        let exp = jwt::numeric(&parsed.claims, "exp").unwrap_or(0);
        Ok((parsed.claims, exp))
    }

    /// Validates a back-channel logout token (OpenID Connect Back-Channel Logout 1.0
    /// §2.6): signed by the provider's keys with an advertised algorithm; `iss` by the
    /// same rules as ID tokens (Entra's tenant rules included); `aud` holds the client
    /// id; `iat` present, not in the future and at most [`LOGOUT_TOKEN_MAX_AGE`] old
    /// (beyond the clock skew); `exp`, when present, not passed; `events` holds the
    /// back-channel logout event; `sid` or `sub` present; no `nonce`; a `jti`. Whether
    /// the `jti` was seen before is the caller's check (the engine keeps a replay cache
    /// in the session store, shared by every instance).
    pub async fn validate_logout_token(&self, raw: &str) -> Result<LogoutToken, Error> {
        let authority = self.authority_for(None);
        let meta = self.discovery(&authority).await?;
        let parsed = UnverifiedJwt::parse(raw).map_err(Error::InvalidLogoutToken)?;
        let keys = self.keys_for(&authority, &meta, &parsed).await?;
        jwt::verify_signature(&parsed, &keys, &meta.id_token_signing_alg_values_supported)
            .map_err(Error::InvalidLogoutToken)?;
        let policy = self.issuer_policy(&authority, &meta);
        let audiences = [self.inner.config.client_id.to_string()];
        let now = now();
        jwt::check_claims(
            &parsed,
            &keys,
            &Expectations {
                issuer: &policy,
                audiences: &audiences,
                azp: None,
                nonce: None,
                id_token: false,
                logout_token: true,
                now,
                skew: self.skew(),
            },
        )
        .map_err(Error::InvalidLogoutToken)?;
        let refuse = |why| {
            Err(Error::InvalidLogoutToken(TokenRejection::NotALogoutToken(
                why,
            )))
        };
        let has_event = parsed
            .claims
            .get("events")
            .and_then(Value::as_object)
            .is_some_and(|e| {
                e.get(BACKCHANNEL_LOGOUT_EVENT)
                    .is_some_and(Value::is_object)
            });
        if !has_event {
            return refuse("its events claim has no back-channel logout event");
        }
        let text = |name| {
            parsed
                .str_claim(name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let (sid, sub) = (text("sid"), text("sub"));
        if sid.is_none() && sub.is_none() {
            return refuse("it names neither a sid nor a sub");
        }
        let Some(jti) = text("jti") else {
            return Err(Error::InvalidLogoutToken(TokenRejection::MissingClaim(
                "jti",
            )));
        };
        let iat = jwt::numeric(&parsed.claims, "iat").unwrap_or(0);
        let oldest = now - LOGOUT_TOKEN_MAX_AGE.as_secs() as i64 - self.skew().as_secs() as i64;
        if iat < oldest {
            return refuse("it was issued too long ago (iat)");
        }
        Ok(LogoutToken {
            iss: text("iss").unwrap_or_default(),
            sid,
            sub,
            jti,
            iat,
        })
    }

    pub(crate) async fn token_request(
        &self,
        meta: &ProviderMetadata,
        authority: &Authority,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenResponse, Error> {
        let config = &self.inner.config;
        let auth = config
            .credential
            .authenticate(&config.client_id, &meta.token_endpoint, now())
            .await
            .map_err(Error::Credential)?;
        form.extend(auth.form);
        if is_entra_family(authority) {
            form.push(("client_info", "1".into()));
        }
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let basic = auth.basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        let url = meta.token_endpoint.clone();
        count_provider_call();
        let resp = self
            .inner
            .metadata
            .http()
            .post_form(&url, &pairs, basic, crate::http::MAX_TOKEN_RESPONSE_BYTES)
            .await
            .map_err(|reason| Error::TokenEndpoint {
                url: url.clone(),
                reason,
            })?;
        match parse_token_endpoint_response(resp.status, &resp.body) {
            Ok(TokenEndpointResult::Success(t)) => Ok(t),
            Ok(TokenEndpointResult::Error(e)) => Err(Error::provider(e)),
            Err(_) if resp.status >= 400 => Err(Error::TokenEndpoint {
                url,
                reason: FetchFailure::Status(resp.status),
            }),
            Err(TokenParseError::NotJson { .. }) => Err(Error::TokenEndpoint {
                url,
                reason: FetchFailure::NotJson(crate::http::snippet(&resp.body)),
            }),
            Err(e) => Err(Error::TokenEndpoint {
                url,
                reason: FetchFailure::Invalid(e.to_string()),
            }),
        }
    }

    /// The signed-in user, or `None`. Reads only the user part of the record: no token is
    /// parsed and no signature verified on this path. When the ID token has expired it is
    /// renewed with the refresh token (one provider call); if the provider is unreachable
    /// the user stays signed in on the stale claims until it answers again.
    pub async fn get_user(&self, session: &dyn SessionStore) -> Result<Option<User>, Error> {
        let Some(user) = self.load_user(session).await? else {
            return Ok(None);
        };
        if !self.renewal_due(&user) {
            return Ok(Some(user));
        }
        let span = operation_span!("identity.renew_user");
        // Boxed: a renewal (HTTP calls) is rare, and its state machine would otherwise
        // make every page view's future large.
        traced(span, Box::pin(self.renew_user(session, user))).await
    }

    /// The user part of a session record, parsed (or known by its text).
    #[cfg(feature = "pages")]
    pub(crate) fn parse_user(&self, text: &str) -> Option<User> {
        self.inner.users.parse(text).ok()
    }

    /// Whether `user`'s ID token expired (beyond the clock skew), so that reading the
    /// user renews the sign-in first.
    fn renewal_due(&self, user: &User) -> bool {
        self.renewal_due_at(user, now())
    }

    /// [`renewal_due`](Self::renewal_due) at `now` (seconds since the epoch).
    pub(crate) fn renewal_due_at(&self, user: &User, now: i64) -> bool {
        now > user.expires_at.saturating_add(self.skew().as_secs() as i64)
    }

    /// The session's user part, parsed (or known by its text).
    async fn load_user(&self, session: &dyn SessionStore) -> Result<Option<User>, Error> {
        let Some(text) = session.get(KEY_USER).await.map_err(|e| Error::Store(e.0))? else {
            return Ok(None);
        };
        match self.inner.users.parse(&text) {
            Ok(user) => Ok(Some(user)),
            Err(e) => {
                // As `load`: a record written by another version counts as absent.
                tracing::warn!(key = KEY_USER, error = %e, "discarding an unreadable identity record part");
                Ok(None)
            }
        }
    }

    async fn renew_user(
        &self,
        session: &dyn SessionStore,
        user: User,
    ) -> Result<Option<User>, Error> {
        match self.refresh(session, &Scopes::default(), Some(&user)).await {
            Ok(Some(refreshed)) => Ok(Some(refreshed)),
            Ok(None) => {
                // Renewed without an ID token: keep the user until the next renewal.
                Ok(Some(user))
            }
            Err(Error::InteractionRequired { reason, .. }) => {
                tracing::info!(%reason, "session user could not be renewed; signing out locally");
                clear(session).await?;
                Ok(None)
            }
            Err(
                e @ (Error::TokenEndpoint { .. } | Error::Discovery { .. } | Error::Jwks { .. }),
            ) => {
                tracing::warn!(error = %e, "provider unavailable; keeping the signed-in user on stale claims");
                Ok(Some(user))
            }
            Err(Error::Provider(p)) if p.http_status.is_some_and(|s| s >= 500) => {
                tracing::warn!(error = %p, "provider failing; keeping the signed-in user on stale claims");
                Ok(Some(user))
            }
            Err(e) => Err(e),
        }
    }

    /// An access token for the signed-in user and `scopes`: from the session's cache,
    /// else by refreshing (ahead of expiry), else [`Error::InteractionRequired`] with the
    /// scopes (and claims) to ask for. Concurrent calls of one session make one refresh.
    pub async fn get_token_for_user(
        &self,
        session: &dyn SessionStore,
        scopes: &Scopes,
    ) -> Result<TokenForUser, Error> {
        let scopes = scopes.without_reserved();
        let Some(user) = load::<User>(session, KEY_USER).await? else {
            return Err(Error::InteractionRequired {
                scopes,
                claims: None,
                reason: "not signed in".into(),
            });
        };
        let tokens = load::<Tokens>(session, KEY_TOKENS)
            .await?
            .unwrap_or_default();
        let key = scopes.cache_key();
        let ahead = self.inner.config.refresh_ahead.as_secs() as i64;
        if let Some(t) = tokens.find(&key) {
            if t.expires_at.saturating_sub(ahead) > now() {
                return Ok(TokenForUser {
                    access_token: t.access_token.clone(),
                    expires_at: t.expires_at,
                    from_cache: true,
                });
            }
        }
        let span = operation_span!("identity.refresh");
        traced(span, async {
            self.refresh(session, &scopes, Some(&user)).await?;
            let tokens = load::<Tokens>(session, KEY_TOKENS)
                .await?
                .unwrap_or_default();
            match tokens.find(&key) {
                Some(t) => Ok(TokenForUser {
                    access_token: t.access_token.clone(),
                    expires_at: t.expires_at,
                    from_cache: false,
                }),
                None => Err(Error::InteractionRequired {
                    scopes: scopes.clone(),
                    claims: None,
                    reason: "the provider issued no access token".into(),
                }),
            }
        })
        .await
    }

    /// Refreshes with the session's refresh token for `scopes`, single-flight per refresh
    /// token (so per session: the refresh token is the session's), merges the outcome
    /// into the session, and returns the renewed user if the response carried an ID token.
    ///
    /// A request that finds its refresh token already redeemed by another request of the
    /// session uses that result (and, when it needs other scopes, continues with the new
    /// refresh token) instead of redeeming the old one again: providers that rotate
    /// refresh tokens revoke the whole grant when a used one comes back.
    async fn refresh(
        &self,
        session: &dyn SessionStore,
        scopes: &Scopes,
        user: Option<&User>,
    ) -> Result<Option<User>, Error> {
        let key = scopes.cache_key();
        let ahead = self.inner.config.refresh_ahead.as_secs() as i64;
        // Each round either returns or moves to a newer refresh token; a handful suffices.
        for _ in 0..4 {
            let tokens = load::<Tokens>(session, KEY_TOKENS)
                .await?
                .unwrap_or_default();
            // Another request of this session may have finished a refresh since our caller
            // looked: its results are saved already. Use them.
            if scopes.is_empty() {
                if let (Some(old), Some(now_user)) = (user, load::<User>(session, KEY_USER).await?)
                {
                    if now_user.expires_at > old.expires_at {
                        return Ok(Some(now_user));
                    }
                }
            } else if let Some(t) = tokens.find(&key) {
                if t.expires_at.saturating_sub(ahead) > now() {
                    return Ok(None);
                }
            }
            let Some(rt) = tokens.refresh_token.clone() else {
                return Err(Error::InteractionRequired {
                    scopes: scopes.clone(),
                    claims: None,
                    reason: "no refresh token in the session".into(),
                });
            };
            let slot = self.refresh_slot(&rt);
            let arrived = Instant::now();
            let mut state = slot.state.lock().await;
            match &*state {
                SlotState::Redeemed {
                    scopes: done,
                    result,
                } => {
                    // A remembered result serves only while what it brought is still valid.
                    let fresh = if scopes.is_empty() {
                        result
                            .id_claims
                            .as_ref()
                            .is_none_or(|(_, exp)| *exp >= now())
                    } else {
                        result.access_token_expires_at.saturating_sub(ahead) > now()
                    };
                    let covers = fresh && (scopes.is_empty() || done.cache_key() == key);
                    if covers || result.response.refresh_token.is_some() {
                        let (done, result) = (done.clone(), result.clone());
                        drop(state);
                        let renewed = self.merge_refresh(session, &rt, &done, &result).await?;
                        if covers {
                            return Ok(renewed);
                        }
                        // The session now holds the newer refresh token: go on with it.
                        continue;
                    }
                    // Not rotated: this refresh token may be redeemed again for our scopes.
                }
                SlotState::Failed { error, at }
                    if *at >= arrived || at.elapsed() < self.inner.config.renewal_backoff =>
                {
                    let error = error.clone();
                    drop(state);
                    return self.refresh_failed(session, scopes, error).await;
                }
                _ => {}
            }
            let policy = tokens.policy.as_deref();
            let outcome = match session.shared_backend() {
                None => self.refresh_call(&rt, scopes, policy).await.map(Arc::new),
                Some(backend) => match self.redeem_shared(backend, &rt, scopes, policy).await {
                    Ok(Redemption::Ours(result)) => Ok(result),
                    Ok(Redemption::Theirs {
                        scopes: done,
                        result,
                    }) => {
                        // Another instance redeemed this refresh token: take its result
                        // as if this process had redeemed it (merged on the next round).
                        *state = SlotState::Redeemed {
                            scopes: done,
                            result,
                        };
                        drop(state);
                        continue;
                    }
                    Err(error) => Err(error),
                },
            };
            *state = match &outcome {
                Ok(result) => SlotState::Redeemed {
                    scopes: scopes.clone(),
                    result: result.clone(),
                },
                // Refusals that depend on the scopes asked leave the refresh token usable.
                Err(Error::Provider(p))
                    if p.is_interaction_required()
                        || p.is_consent_required()
                        || p.error == "invalid_scope" =>
                {
                    SlotState::Unused
                }
                // The provider is down, or refused the refresh token itself: every request
                // of the session shares the failure for the renewal backoff.
                Err(error) => SlotState::Failed {
                    error: error.clone(),
                    at: Instant::now(),
                },
            };
            drop(state);
            return match outcome {
                Ok(result) => self.merge_refresh(session, &rt, scopes, &result).await,
                Err(error) => self.refresh_failed(session, scopes, error).await,
            };
        }
        Err(Error::InteractionRequired {
            scopes: scopes.clone(),
            claims: None,
            reason: "the session's refresh token kept changing during the refresh".into(),
        })
    }

    /// Redeems `rt` once across every instance that shares `backend`: the instance that
    /// takes the lease (a record written only if absent, living [`REFRESH_LEASE`])
    /// redeems it and leaves the sealed result in the store for
    /// [`SHARED_REFRESH_RESULT`]; the others wait for that result and use it. A result
    /// for other scopes is used only when it rotated the refresh token (the old one is
    /// then spent); otherwise this instance redeems the still-valid token for its own
    /// scopes. A holder that dies frees the lease when it expires.
    async fn redeem_shared(
        &self,
        backend: &dyn crate::sessions::SessionBackend,
        rt: &RefreshToken,
        scopes: &Scopes,
        policy: Option<&str>,
    ) -> Result<Redemption, Error> {
        let slot = SharedRefreshSlot::new(rt);
        let ahead = self.inner.config.refresh_ahead.as_secs() as i64;
        let store = |e: crate::store::StoreError| Error::Store(e.0);
        let deadline = Instant::now() + REFRESH_LEASE + Duration::from_secs(1);
        loop {
            if let Some(sealed) = backend.get_record(&slot.result_key).await.map_err(store)? {
                if let Some((done, result)) = slot.open(&sealed) {
                    let fresh = if scopes.is_empty() {
                        result
                            .id_claims
                            .as_ref()
                            .is_none_or(|(_, exp)| *exp >= now())
                    } else {
                        result.access_token_expires_at.saturating_sub(ahead) > now()
                    };
                    let covers =
                        fresh && (scopes.is_empty() || done.cache_key() == scopes.cache_key());
                    if covers || result.response.refresh_token.is_some() {
                        return Ok(Redemption::Theirs {
                            scopes: done,
                            result: Arc::new(result),
                        });
                    }
                }
            }
            if backend
                .put_record(&slot.lease_key, "1", REFRESH_LEASE, true)
                .await
                .map_err(store)?
            {
                let outcome = self.refresh_call(rt, scopes, policy).await;
                if let Ok(result) = &outcome {
                    match slot.seal(scopes, result) {
                        Some(sealed) => {
                            if let Err(e) = backend
                                .put_record(&slot.result_key, &sealed, SHARED_REFRESH_RESULT, false)
                                .await
                            {
                                tracing::warn!(error = %e, "could not share a refresh result with the other instances");
                            }
                        }
                        None => tracing::warn!("could not seal a refresh result"),
                    }
                }
                if let Err(e) = backend.delete_record(&slot.lease_key).await {
                    tracing::warn!(error = %e, "could not release the refresh lease; it expires by itself");
                }
                return outcome.map(|r| Redemption::Ours(Arc::new(r)));
            }
            if Instant::now() >= deadline {
                return Err(Error::Store(format!(
                    "another instance has held this session's refresh lease for over {REFRESH_LEASE:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Merges a refresh result into the session's record: the newer refresh token wins
    /// (one redeemed by a later refresh is never replaced by an older one), the access
    /// token is added under its scopes unless a fresher one is there, and the user is
    /// renewed unless a later renewal was saved already. A session signed out meanwhile
    /// stays signed out.
    async fn merge_refresh(
        &self,
        session: &dyn SessionStore,
        used: &RefreshToken,
        scopes: &Scopes,
        result: &Refreshed,
    ) -> Result<Option<User>, Error> {
        let Some(stored_user) = load::<User>(session, KEY_USER).await? else {
            return Ok(None);
        };
        let mut tokens = load::<Tokens>(session, KEY_TOKENS)
            .await?
            .unwrap_or_default();
        let resp = &result.response;
        if let Some(new_rt) = &resp.refresh_token {
            let newer_stored = tokens
                .refresh_token
                .as_ref()
                .is_some_and(|cur| cur.secret() != used.secret());
            if !newer_stored {
                tokens.refresh_token = Some(new_rt.clone());
            }
        }
        if let Some(at) = &resp.access_token {
            if !scopes.is_empty() {
                let key = scopes.cache_key();
                if tokens
                    .find(&key)
                    .is_none_or(|t| t.expires_at < result.access_token_expires_at)
                {
                    tokens.put(CachedToken {
                        key,
                        scopes: scopes.clone(),
                        access_token: at.clone(),
                        expires_at: result.access_token_expires_at,
                    });
                }
            }
        }
        let mut renewed = None;
        if let (Some((claims, exp)), Some(id)) = (&result.id_claims, &resp.id_token) {
            let new_user = User::from_claims(claims, *exp);
            if stored_user.id() != new_user.id() || stored_user.sub() != new_user.sub() {
                clear(session).await?;
                return Err(Error::InvalidIdToken(TokenRejection::SubjectChanged));
            }
            if stored_user.expires_at < new_user.expires_at {
                tokens.id_token = Some(id.clone());
                save(session, KEY_USER, &new_user).await?;
                renewed = Some(new_user);
            } else {
                renewed = Some(stored_user);
            }
        }
        save(session, KEY_TOKENS, &tokens).await?;
        Ok(renewed)
    }

    /// What a failed refresh means for the session and the caller.
    async fn refresh_failed(
        &self,
        session: &dyn SessionStore,
        scopes: &Scopes,
        error: Error,
    ) -> Result<Option<User>, Error> {
        match error {
            // `invalid_scope` on a refresh (RFC 6749 §6 allows it; oidc-provider sends it for
            // scopes the grant lacks) means: ask the user for the scopes.
            Error::Provider(p)
                if p.is_interaction_required()
                    || p.drop_refresh_token()
                    || p.is_consent_required()
                    || p.error == "invalid_scope" =>
            {
                if p.drop_refresh_token() && !p.is_consent_required() {
                    // The refresh token is dead: drop the tokens, keep no state that could loop.
                    if let Some(mut tokens) = load::<Tokens>(session, KEY_TOKENS).await? {
                        tokens.refresh_token = None;
                        tokens.access_tokens.clear();
                        save(session, KEY_TOKENS, &tokens).await?;
                    }
                }
                let challenge = p.claims.as_deref().and_then(ClaimsChallenge::from_json);
                Err(Error::InteractionRequired {
                    scopes: scopes.clone(),
                    claims: challenge,
                    reason: p.summary(),
                })
            }
            e => Err(e),
        }
    }

    fn refresh_slot(&self, rt: &RefreshToken) -> Arc<RefreshSlot> {
        let key: [u8; 32] = Sha256::digest(rt.secret().as_bytes()).into();
        let keep = REFRESH_MEMORY.max(self.inner.config.renewal_backoff);
        let mut map = self
            .inner
            .refreshes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get(&key) {
            return slot.clone();
        }
        // Forget old results nobody waits on; stay bounded whatever the load.
        map.retain(|_, slot| Arc::strong_count(slot) > 1 || slot.created.elapsed() < keep);
        if map.len() >= MAX_REFRESH_SLOTS {
            if let Some(oldest) = map
                .iter()
                .filter(|(_, slot)| Arc::strong_count(slot) == 1)
                .min_by_key(|(_, slot)| slot.created)
                .map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(RefreshSlot {
                    state: tokio::sync::Mutex::new(SlotState::Unused),
                    created: Instant::now(),
                })
            })
            .clone()
    }

    async fn refresh_call(
        &self,
        rt: &RefreshToken,
        scopes: &Scopes,
        policy: Option<&str>,
    ) -> Result<Refreshed, Error> {
        let authority = self.authority_for(policy);
        let meta = self.discovery(&authority).await?;
        let response = self
            .token_request(
                &meta,
                &authority,
                vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", rt.secret().to_owned()),
                    ("scope", scopes.with_reserved().to_wire()),
                ],
            )
            .await?;
        let access_token_expires_at = expires_at(now(), response.expires_in);
        let id_claims = match &response.id_token {
            // A refreshed ID token carries no nonce; everything else is checked.
            Some(raw) => Some(
                self.validate_id_token(&authority, &meta, raw.secret(), None)
                    .await?,
            ),
            None => None,
        };
        Ok(Refreshed {
            response,
            id_claims,
            access_token_expires_at,
        })
    }

    /// Signs the user out: clears the identity record, and returns the URL to send the
    /// browser to: the provider's end-session endpoint with an encoded
    /// `post_logout_redirect_uri`, `client_id` and `id_token_hint` (or `logout_hint`); or
    /// `post_logout_redirect_uri` itself when the provider has no end-session endpoint or
    /// cannot be reached.
    pub async fn log_out(
        &self,
        session: &dyn SessionStore,
        post_logout_redirect_uri: &str,
    ) -> Result<String, Error> {
        let span = operation_span!("identity.log_out");
        traced(span, async {
            let tokens = load::<Tokens>(session, KEY_TOKENS).await.ok().flatten().unwrap_or_default();
            let user = load::<User>(session, KEY_USER).await.ok().flatten();
            clear(session).await?;
            let authority = self.authority_for(tokens.policy.as_deref());
            let meta = match self.discovery(&authority).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "end-session endpoint unknown; signing out locally only");
                    return Ok(post_logout_redirect_uri.to_owned());
                }
            };
            let Some(endpoint) = meta.end_session_endpoint.as_deref() else {
                return Ok(post_logout_redirect_uri.to_owned());
            };
            let Ok(mut url) = url::Url::parse(endpoint) else {
                return Ok(post_logout_redirect_uri.to_owned());
            };
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
                q.append_pair("client_id", self.inner.config.client_id.as_str());
                if let Some(id) = &tokens.id_token {
                    q.append_pair("id_token_hint", id.secret());
                } else if let Some(hint) = user.as_ref().and_then(|u| u.claim("login_hint")) {
                    q.append_pair("logout_hint", hint);
                }
            }
            Ok(url.into())
        })
        .await
    }

    /// An app-only token (client credentials) for `scopes` (usually `{resource}/.default`),
    /// cached process-wide per (authority, client, scopes) and renewed before expiry.
    pub async fn get_token_for_client(&self, scopes: &Scopes) -> Result<TokenForUser, Error> {
        let config = &self.inner.config;
        if !config.credential.is_confidential() {
            return Err(Error::config(
                "app-only tokens need a client credential (CLIENT_SECRET or a certificate)",
            ));
        }
        let key = format!(
            "{}\u{0}{}\u{0}{}",
            config.authority,
            config.client_id,
            scopes.cache_key()
        );
        let slot = {
            let mut map = app_token_cache().lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key).or_default().clone()
        };
        let mut guard = slot.lock().await;
        let ahead = config.refresh_ahead.as_secs() as i64;
        if let Some((at, exp)) = guard.as_ref() {
            if exp.saturating_sub(ahead) > now() {
                return Ok(TokenForUser {
                    access_token: at.clone(),
                    expires_at: *exp,
                    from_cache: true,
                });
            }
        }
        let span = operation_span!("identity.client_credentials");
        let (at, exp) = traced(span, async {
            let authority = &config.authority;
            let meta = self.discovery(authority).await?;
            let resp = self
                .token_request(
                    &meta,
                    authority,
                    vec![
                        ("grant_type", "client_credentials".into()),
                        ("scope", scopes.to_wire()),
                    ],
                )
                .await?;
            let at = resp
                .access_token
                .clone()
                .ok_or_else(|| Error::TokenEndpoint {
                    url: meta.token_endpoint.clone(),
                    reason: FetchFailure::NotJson("no access_token in the response".into()),
                })?;
            Ok((at, expires_at(now(), resp.expires_in)))
        })
        .await?;
        *guard = Some((at.clone(), exp));
        Ok(TokenForUser {
            access_token: at,
            expires_at: exp,
            from_cache: false,
        })
    }

    async fn start_device_code(
        &self,
        session: &dyn SessionStore,
        authority: &Authority,
        scopes: &Scopes,
    ) -> Result<LogInStart, Error> {
        if !authority.supports_device_code() {
            return Err(Error::DeviceCodeUnsupported);
        }
        let meta = self.discovery(authority).await?;
        let Some(endpoint) = meta.device_authorization_endpoint.clone() else {
            return Err(Error::DeviceCodeUnsupported);
        };
        let config = &self.inner.config;
        let scope = scopes.with_reserved().to_wire();
        let form = [
            ("client_id", config.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        count_provider_call();
        let resp = self
            .inner
            .metadata
            .http()
            .post_form(
                &endpoint,
                &form,
                None,
                crate::http::MAX_TOKEN_RESPONSE_BYTES,
            )
            .await
            .map_err(|reason| Error::TokenEndpoint {
                url: endpoint.clone(),
                reason,
            })?;
        #[derive(Deserialize)]
        struct DeviceResponse {
            device_code: String,
            user_code: String,
            #[serde(alias = "verification_url")]
            verification_uri: String,
            #[serde(default)]
            interval: Option<Value>,
            #[serde(default)]
            expires_in: Option<Value>,
        }
        let parsed: DeviceResponse = match serde_json::from_slice(&resp.body) {
            Ok(d) if resp.status == 200 => d,
            _ => {
                if let Some(e) = ProviderError::from_json(resp.status, &resp.body) {
                    return Err(Error::provider(e));
                }
                return Err(Error::DeviceCodeUnsupported);
            }
        };
        let as_i64 = |v: &Option<Value>, d: i64| match v {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(d),
            Some(Value::String(s)) => s.parse().unwrap_or(d),
            _ => d,
        };
        let interval = as_i64(&parsed.interval, DEFAULT_DEVICE_INTERVAL_SECS)
            .clamp(MIN_DEVICE_INTERVAL_SECS, MAX_DEVICE_INTERVAL_SECS);
        let flow = DeviceFlow {
            device_code: RefreshToken::new(parsed.device_code),
            scopes: scopes.without_reserved(),
            interval,
            expires_at: now().saturating_add(as_i64(&parsed.expires_in, 900)),
            next_poll_at_ms: 0,
            verification_uri: parsed.verification_uri.clone(),
            user_code: parsed.user_code.clone(),
        };
        save(session, KEY_DEVICE, &flow).await?;
        Ok(LogInStart {
            auth_uri: parsed.verification_uri,
            user_code: Some(parsed.user_code),
        })
    }

    /// Polls the provider once for a device code sign-in started by [`Identity::log_in`]
    /// without a redirect URI (RFC 8628 §3.4-3.5):
    ///
    /// - the user approved: [`DevicePoll::SignedIn`] (user and tokens stored, session id
    ///   cycled);
    /// - `authorization_pending`: [`DevicePoll::Pending`] with the provider's interval;
    /// - `slow_down`: [`DevicePoll::Pending`], and the interval, remembered in the
    ///   session, grows by 5 s for every later poll;
    /// - `expired_token`, or the code's `expires_in` has passed: [`Error::DeviceCodeExpired`]
    ///   (no provider call once the lifetime is known to be over);
    /// - `access_denied` (RFC 8628) or `authorization_declined` (Entra):
    ///   [`Error::DeviceCodeDenied`];
    /// - no device code sign-in in this session: [`Error::UnknownState`].
    ///
    /// Expiry, refusal and any other provider error forget the sign-in in progress (a new
    /// one must be started); a provider that cannot be reached keeps it, so a later poll
    /// can succeed.
    ///
    /// The provider's interval is respected: the first poll may come at any time (the
    /// user needs a while to type the code anyway), and a poll sooner than the interval
    /// after the previous one does not call the provider but answers
    /// [`DevicePoll::Pending`] with the time left. An `interval` the provider omits is 5 s
    /// (RFC 8628); one below 1 s or above 60 s is taken as 1 s or 60 s. The poll time is
    /// kept in the session, so concurrent polls of one session from several instances
    /// may each reach the provider once; the provider's `slow_down` then corrects the
    /// pace.
    pub async fn poll_device_code(&self, session: &dyn SessionStore) -> Result<DevicePoll, Error> {
        let span = operation_span!("identity.poll_device_code");
        traced(span, self.poll_device_inner(session)).await
    }

    async fn poll_device_inner(&self, session: &dyn SessionStore) -> Result<DevicePoll, Error> {
        let Some(mut flow) = load::<DeviceFlow>(session, KEY_DEVICE).await? else {
            return Err(Error::UnknownState);
        };
        let forget = || async {
            session
                .remove(KEY_DEVICE)
                .await
                .map_err(|e| Error::Store(e.0))
        };
        if now() > flow.expires_at {
            forget().await?;
            return Err(Error::DeviceCodeExpired);
        }
        let now_ms = now_millis();
        if now_ms < flow.next_poll_at_ms {
            let left = u64::try_from(flow.next_poll_at_ms - now_ms).unwrap_or(0);
            return Ok(flow.pending(Duration::from_millis(left)));
        }
        // The next poll slot is taken before the call, so that a reload during a slow
        // provider answer does not poll again.
        flow.next_poll_at_ms = now_ms.saturating_add(flow.interval.saturating_mul(1000));
        save(session, KEY_DEVICE, &flow).await?;
        let authority = self.inner.config.authority.clone();
        let meta = self.discovery(&authority).await?;
        let result = self
            .token_request(
                &meta,
                &authority,
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:device_code".into(),
                    ),
                    ("device_code", flow.device_code.secret().to_owned()),
                ],
            )
            .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(Error::Provider(p)) => match p.error.as_str() {
                "authorization_pending" => {
                    return Ok(flow.pending(Duration::from_secs(flow.interval as u64)));
                }
                "slow_down" => {
                    flow.interval = flow
                        .interval
                        .saturating_add(SLOW_DOWN_STEP_SECS)
                        .min(MAX_DEVICE_INTERVAL_SECS + SLOW_DOWN_STEP_SECS);
                    flow.next_poll_at_ms =
                        now_millis().saturating_add(flow.interval.saturating_mul(1000));
                    save(session, KEY_DEVICE, &flow).await?;
                    tracing::info!(
                        interval = flow.interval,
                        "the provider asked to slow down device code polling"
                    );
                    return Ok(flow.pending(Duration::from_secs(flow.interval as u64)));
                }
                "expired_token" => {
                    forget().await?;
                    return Err(Error::DeviceCodeExpired);
                }
                "access_denied" | "authorization_declined" => {
                    forget().await?;
                    return Err(Error::DeviceCodeDenied {
                        description: p.summary(),
                    });
                }
                _ => {
                    forget().await?;
                    return Err(Error::Provider(p));
                }
            },
            Err(e) => return Err(e),
        };
        forget().await?;
        let raw_id =
            resp.id_token
                .as_ref()
                .ok_or(Error::InvalidIdToken(TokenRejection::MissingClaim(
                    "id_token",
                )))?;
        let (claims, exp) = self
            .validate_id_token(&authority, &meta, raw_id.secret(), None)
            .await?;
        let user = User::from_claims(&claims, exp);
        let tokens = Tokens {
            refresh_token: resp.refresh_token.clone(),
            id_token: resp.id_token.clone(),
            access_tokens: Vec::new(),
            policy: None,
        };
        store_sign_in(session, &user, &tokens).await?;
        Ok(DevicePoll::SignedIn(LoggedIn {
            next_link: None,
            user,
            purpose: Purpose::SignIn,
        }))
    }
}

/// RFC 8628's interval when the provider gives none.
const DEFAULT_DEVICE_INTERVAL_SECS: i64 = 5;
/// Below this the provider's interval is raised: never poll in a busy loop.
const MIN_DEVICE_INTERVAL_SECS: i64 = 1;
/// Above this the provider's interval is lowered: the user is waiting at the page.
const MAX_DEVICE_INTERVAL_SECS: i64 = 60;
/// What `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP_SECS: i64 = 5;

/// The polling interval of the device code sign-in in progress in `session`, if any.
#[cfg(feature = "pages")]
pub(crate) async fn device_poll_interval(session: &dyn SessionStore) -> Option<Duration> {
    load::<DeviceFlow>(session, KEY_DEVICE)
        .await
        .ok()
        .flatten()
        .map(|f| Duration::from_secs(f.interval.max(0) as u64))
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeviceFlow {
    device_code: RefreshToken,
    scopes: Scopes,
    /// Seconds between polls; grows with `slow_down`.
    interval: i64,
    expires_at: i64,
    /// No provider call before this time (milliseconds since the epoch).
    #[serde(default)]
    next_poll_at_ms: i64,
    #[serde(default)]
    verification_uri: String,
    #[serde(default)]
    user_code: String,
}

impl DeviceFlow {
    fn pending(&self, retry_after: Duration) -> DevicePoll {
        DevicePoll::Pending {
            retry_after,
            instructions: LogInStart {
                auth_uri: self.verification_uri.clone(),
                user_code: Some(self.user_code.clone()),
            },
        }
    }
}

type AppTokenSlot = Arc<tokio::sync::Mutex<Option<(AccessToken, i64)>>>;

fn app_token_cache() -> &'static Mutex<HashMap<String, AppTokenSlot>> {
    static CACHE: OnceLock<Mutex<HashMap<String, AppTokenSlot>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

pub(crate) async fn load<T: serde::de::DeserializeOwned>(
    session: &dyn SessionStore,
    key: &str,
) -> Result<Option<T>, Error> {
    match session.get(key).await.map_err(|e| Error::Store(e.0))? {
        None => Ok(None),
        Some(text) => match serde_json::from_str(&text) {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                // A record written by another version: treat as absent rather than failing
                // every request of this session.
                tracing::warn!(key, error = %e, "discarding an unreadable identity record part");
                Ok(None)
            }
        },
    }
}

pub(crate) async fn save<T: Serialize>(
    session: &dyn SessionStore,
    key: &str,
    value: &T,
) -> Result<(), Error> {
    let text = serde_json::to_string(value).map_err(|e| Error::Store(e.to_string()))?;
    session
        .insert(key, text)
        .await
        .map_err(|e| Error::Store(e.0))
}

/// [`save`] of the pending sign-ins, through their direct JSON writer.
async fn save_pending(session: &dyn SessionStore, pending: &Pending) -> Result<(), Error> {
    session
        .insert(KEY_PENDING, pending.to_json())
        .await
        .map_err(|e| Error::Store(e.0))
}

/// Stores a completed sign-in. The session gets a new id first, against session
/// fixation: never does a session id known before sign-in hold a signed-in user.
async fn store_sign_in(
    session: &dyn SessionStore,
    user: &User,
    tokens: &Tokens,
) -> Result<(), Error> {
    session.cycle_id().await.map_err(|e| Error::Store(e.0))?;
    save(session, KEY_TOKENS, tokens).await?;
    save(session, KEY_USER, user).await
}

async fn clear(session: &dyn SessionStore) -> Result<(), Error> {
    for key in crate::store::KEYS {
        session.remove(key).await.map_err(|e| Error::Store(e.0))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_urls_match_the_url_crate_serialisation() {
        let pairs = [
            ("client_id", "a b&c"),
            ("redirect_uri", "https://app.example/get?x=1#f"),
            ("scope", "openid profile offline_access"),
            ("state", "AbC-_09"),
            ("login_hint", "zoë+ø@例え.jp ~!'()"),
            ("claims", "{\"id_token\":{\"acr\":null}}"),
        ];
        for base in [
            "https://login.example/t/oauth2/v2.0/authorize",
            "https://b2c.example/t/oauth2/v2.0/authorize?p=B2C_1_signin",
            "https://login.example/authorize?",
            "https://login.example/authorize#frag",
            "https://login.example/authorize?p=x#frag",
        ] {
            let base = url::Url::parse(base).unwrap();
            let mut query = String::new();
            let mut q = QueryWriter::new(&mut query);
            for (k, v) in pairs {
                q.pair(k, v);
            }
            // Written straight after the endpoint, the same URL.
            if let Some(mut start) = query_start(&base, 0) {
                let mut q = QueryWriter::new(&mut start);
                for (k, v) in pairs {
                    q.pair(k, v);
                }
                assert_eq!(start, with_query(&base, &query), "{base}");
            }
            let mut expected = base.clone();
            {
                let mut e = expected.query_pairs_mut();
                for (k, v) in pairs {
                    e.append_pair(k, v);
                }
            }
            assert_eq!(with_query(&base, &query), expected.as_str(), "{base}");
        }
    }

    #[test]
    fn next_link_must_stay_on_site() {
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil",
            "evil",
            "/a b",
            "/\t/evil",
            "",
        ] {
            assert_eq!(safe_next_link(bad), None, "{bad:?}");
        }
        for good in ["/", "/call_api", "/a/b?c=d&e=https://x#frag"] {
            assert_eq!(safe_next_link(good).as_deref(), Some(good));
        }
    }

    /// What a subscriber sees of operation spans (the fields recorded on them, the spans
    /// entered) and of events (their fields), while `run` runs; with `spans: false` its
    /// filter turns every span off and keeps events.
    fn operation_trace(spans: bool, run: impl std::future::Future<Output = ()>) -> Vec<String> {
        use std::sync::{Arc, Mutex};
        use tracing::field::{Field, Visit};
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
        struct Recorder(Arc<Mutex<Vec<String>>>);
        struct Fields<'a>(&'a mut Vec<String>);
        impl Visit for Fields<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.push(format!("{}={value:?}", field.name()));
            }
        }
        impl<S> Layer<S> for Recorder
        where
            S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
        {
            fn on_record(
                &self,
                _: &tracing::span::Id,
                values: &tracing::span::Record<'_>,
                _: Context<'_, S>,
            ) {
                values.record(&mut Fields(&mut self.0.lock().unwrap()));
            }
            fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
                if let Some(meta) = cx.metadata(id) {
                    self.0
                        .lock()
                        .unwrap()
                        .push(format!("enter {}", meta.name()));
                }
            }
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                event.record(&mut Fields(&mut self.0.lock().unwrap()));
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let only_events =
            tracing_subscriber::filter::filter_fn(move |meta| spans || meta.is_event());
        let subscriber = tracing_subscriber::registry()
            .with(only_events)
            .with(Recorder(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(run);
        });
        let seen = seen.lock().unwrap().clone();
        seen
    }

    /// One operation that makes two provider calls and succeeds, one that fails.
    async fn two_operations() {
        let ok = traced(operation_span!("identity.log_in"), async {
            count_provider_call();
            count_provider_call();
            Ok(())
        });
        assert!(ok.await.is_ok());
        let failed = traced(operation_span!("identity.log_in"), async {
            Err::<(), _>(Error::UnknownState)
        });
        assert!(matches!(failed.await, Err(Error::UnknownState)));
    }

    #[test]
    fn an_operation_span_records_its_outcome_and_provider_calls() {
        let seen = operation_trace(true, two_operations());
        let title = format!("outcome={:?}", Error::UnknownState.title());
        for field in [
            "provider_calls=2",
            "outcome=\"ok\"",
            "provider_calls=0",
            &title,
        ] {
            assert!(seen.iter().any(|f| f == field), "{field} in {seen:?}");
        }
        assert!(
            seen.iter().any(|f| f == "enter identity.log_in"),
            "{seen:?}"
        );
    }

    #[test]
    fn a_span_nobody_wants_is_not_entered_and_the_events_still_go_out() {
        let seen = operation_trace(false, two_operations());
        assert!(!seen.iter().any(|f| f.starts_with("enter ")), "{seen:?}");
        assert!(!seen.iter().any(|f| f.starts_with("outcome=")), "{seen:?}");
        // The operations' own events, with their provider calls.
        for field in [
            "message=done",
            "provider_calls=2",
            "message=failed",
            "provider_calls=0",
        ] {
            assert!(seen.iter().any(|f| f == field), "{field} in {seen:?}");
        }
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let [a] = random_tokens();
        let [b, c, d] = random_tokens();
        assert!([&a, &b, &c, &d].iter().all(|t| t.len() == 43));
        assert!(a != b && b != c && c != d && b != d);
    }
}
