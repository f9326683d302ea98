//! Web APIs: validate bearer tokens, call further APIs on behalf of the caller.
//!
//! * [`Identity::validate_access_token`] checks a bearer token's signature (the
//!   provider's JWKS, with the same rotation rules as ID tokens), issuer (the same Entra
//!   policy as ID tokens; v1 tokens against the v1 issuer, v2 against v2), audience (the
//!   API's client id or App ID URI), and `exp`/`nbf` with bounded skew, and returns the
//!   [`Caller`] (user or app) with its `scp`, `roles`, `oid`, `tid`.
//! * **v1.0 access tokens.** An API whose registration leaves `accessTokenAcceptedVersion`
//!   unset receives v1.0 tokens (`iss` `https://sts.windows.net/{tid}/`), signed by the
//!   same keys as v2.0 tokens. They are checked with the v1.0 issuer rules (from the v1.0
//!   discovery document) against the v2.0 key set, whose keys vouch for the token's tenant.
//! * **Only access tokens.** An ID token of a web app that shares the API's client id
//!   has the right issuer, audience and keys; it is refused all the same. A token is
//!   refused when it carries `nonce`, `at_hash` or `c_hash` (ID-token claims), a `typ`
//!   claim of `ID`, or neither `scp` nor `roles`; on Entra authorities also when it names
//!   no client (`azp` in v2.0, `appid` in v1.0 access tokens; ID tokens carry neither).
//! * **App-only** is decided as Microsoft.Identity.Web does ([`Caller::is_app_only`]):
//!   from `idtyp` (`app`), and when `idtyp` is absent, `roles` without `scp`.
//! * **Refusals disclose no configuration.** The `WWW-Authenticate` header and the problem
//!   JSON say what kind of failure it was ([`TokenRejection::public_description`]), never
//!   the accepted audiences, issuers or tenants; the full reason is logged (`info`).
//! * [`Identity::acquire_token_on_behalf_of`] exchanges the caller's token for one to a
//!   downstream API (the jwt-bearer grant), cached per (caller, scopes) with expiry and a
//!   size bound, so a busy API cannot grow the cache without limit. Concurrent first calls
//!   for one incoming token make one exchange: the others wait for it and use its result.
//! * [`ApiError`] renders the answers an API owes its client: `401` with
//!   `WWW-Authenticate: Bearer error="invalid_token"`, `403` `insufficient_scope`, and
//!   claims challenges the calling client can act on, each as RFC 7807 problem JSON.

use crate::challenge::ClaimsChallenge;
use crate::error::{Error, FetchFailure, TokenRejection};
use crate::flow::{expires_at, is_entra_family, now, Identity, TokenForUser};
use crate::issuer::IssuerPolicy;
use crate::jwt::{self, Expectations, UnverifiedJwt};
use crate::scopes::Scopes;
use crate::token_cache::{AccessTokenCacheStats, KeyTrust, Validated};
use crate::types::AccessToken;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most incoming tokens one on-behalf-of cache holds. An entry holds the incoming token
/// (its key, compared in full) and the downstream tokens obtained with it, for at most
/// four scope sets: a few KB for the usual one downstream API, so the cache stays below
/// about 40 MB.
pub const MAX_OBO_ENTRIES: usize = 10_000;

/// Most scope sets one incoming token keeps downstream tokens for; a further one
/// replaces the one expiring first.
const OBO_SCOPE_SETS_PER_TOKEN: usize = 4;

/// The authenticated caller of a web API.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// The validated claims of the access token, shared with the validated-token cache
    /// (a caller costs no copy of them).
    pub claims: Arc<Map<String, Value>>,
}

impl Caller {
    /// A string claim.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
    /// `oid`: the caller's object id (user or service principal).
    pub fn oid(&self) -> Option<&str> {
        self.claim("oid")
    }
    /// `tid`.
    pub fn tid(&self) -> Option<&str> {
        self.claim("tid")
    }
    /// `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.claim("sub")
    }
    /// The calling client's application id (`azp` on v2, `appid` on v1).
    pub fn client_id(&self) -> Option<&str> {
        self.claim("azp").or_else(|| self.claim("appid"))
    }
    /// Delegated scopes (`scp`, space separated).
    pub fn scopes(&self) -> Vec<&str> {
        self.claim("scp")
            .map(|s| s.split_whitespace().collect())
            .unwrap_or_default()
    }
    /// App roles (`roles`).
    pub fn roles(&self) -> Vec<&str> {
        self.claims
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
    /// Whether the token was issued to an app for itself (client credentials), as
    /// Microsoft.Identity.Web decides: `idtyp` = `app` when the token has `idtyp`;
    /// otherwise `roles` without `scp`. A token with `scp` is delegated.
    pub fn is_app_only(&self) -> bool {
        match self.claims.get("idtyp") {
            Some(idtyp) => idtyp.as_str() == Some("app"),
            None => self.claims.contains_key("roles") && !self.claims.contains_key("scp"),
        }
    }
    /// Requires every scope in `required` (delegated tokens). Else
    /// [`ApiError::InsufficientScope`].
    pub fn require_scopes(&self, required: &[&str]) -> Result<(), ApiError> {
        let have = self.scopes();
        if !self.is_app_only()
            && required
                .iter()
                .all(|r| have.iter().any(|h| h.eq_ignore_ascii_case(r)))
        {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope {
                required: required.iter().map(|s| s.to_string()).collect(),
            })
        }
    }
    /// Requires one of the app `roles`. Else [`ApiError::InsufficientRole`].
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), ApiError> {
        let have = self.claims.get("roles").and_then(Value::as_array);
        let held =
            |role: &&str| have.is_some_and(|have| have.iter().any(|h| h.as_str() == Some(*role)));
        if roles.iter().any(held) {
            Ok(())
        } else {
            Err(ApiError::InsufficientRole {
                required: roles.iter().map(|s| s.to_string()).collect(),
            })
        }
    }
    /// The key of this caller in caches: tenant and object id (else issuer and subject).
    fn cache_identity(&self) -> String {
        match (self.tid(), self.oid()) {
            (Some(t), Some(o)) => format!("{t}/{o}"),
            _ => format!(
                "{}/{}",
                self.claim("iss").unwrap_or(""),
                self.sub().unwrap_or("")
            ),
        }
    }
}

/// Why a web API refuses a request, and how to tell the client.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No `Authorization: Bearer` header.
    #[error("the request carries no bearer token")]
    MissingToken,
    /// The token is not valid.
    #[error("the bearer token is not valid: {0}")]
    InvalidToken(TokenRejection),
    /// A required delegated scope is missing.
    #[error("the token lacks the required scope(s): {}", .required.join(" "))]
    InsufficientScope {
        /// The scopes required.
        required: Vec<String>,
    },
    /// None of the accepted app roles is present.
    #[error("the token lacks one of the required app role(s): {}", .required.join(", "))]
    InsufficientRole {
        /// The roles accepted.
        required: Vec<String>,
    },
    /// The downstream call needs the user back at the provider (consent, MFA, conditional
    /// access): the client must acquire a new token, with these claims if any.
    #[error("the user must interact with the identity provider: {reason}")]
    InteractionRequired {
        /// Scopes the client should request.
        scopes: Scopes,
        /// A claims challenge to forward.
        claims: Option<ClaimsChallenge>,
        /// Why.
        reason: String,
    },
    /// The provider could not be reached to validate or exchange the token.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the caller's token as an on-behalf-of assertion (for
    /// example `invalid_grant`, AADSTS50013): the client must get a new token.
    #[error("the identity provider refused the token: {0}")]
    AssertionRejected(String),
    /// The API is not configured (the settings named are missing or wrong).
    #[error("the API is not configured: {message}")]
    NotConfigured {
        /// What is wrong.
        message: String,
        /// Missing settings.
        missing: Vec<String>,
    },
}

impl ApiError {
    /// HTTP status.
    pub fn status_code(&self) -> u16 {
        match self {
            ApiError::MissingToken | ApiError::InvalidToken(_) => 401,
            ApiError::InsufficientScope { .. } | ApiError::InsufficientRole { .. } => 403,
            ApiError::InteractionRequired { .. } => 401,
            ApiError::Unavailable(_) => 503,
            ApiError::AssertionRejected(_) => 401,
            ApiError::NotConfigured { .. } => 500,
        }
    }

    /// The `WWW-Authenticate` header value (RFC 6750), if the status calls for one.
    pub fn www_authenticate(&self) -> Option<String> {
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        Some(match self {
            ApiError::MissingToken => "Bearer realm=\"\"".to_owned(),
            ApiError::InvalidToken(why) => {
                format!("Bearer realm=\"\", error=\"invalid_token\", error_description=\"{}\"", q(why.public_description()))
            }
            ApiError::InsufficientScope { required } => format!(
                "Bearer realm=\"\", error=\"insufficient_scope\", scope=\"{}\", error_description=\"{}\"",
                q(&required.join(" ")),
                q(&self.to_string())
            ),
            ApiError::InsufficientRole { .. } => format!(
                "Bearer realm=\"\", error=\"insufficient_scope\", error_description=\"{}\"",
                q(&self.to_string())
            ),
            ApiError::InteractionRequired { scopes, claims, .. } => {
                use base64::Engine;
                let mut v = String::from("Bearer realm=\"\"");
                match claims {
                    Some(c) => {
                        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_str());
                        v.push_str(&format!(", error=\"insufficient_claims\", claims=\"{b64}\""));
                    }
                    None => v.push_str(", error=\"interaction_required\""),
                }
                if !scopes.is_empty() {
                    v.push_str(&format!(", scope=\"{}\"", q(&scopes.to_wire())));
                }
                v
            }
            ApiError::AssertionRejected(why) => {
                format!("Bearer realm=\"\", error=\"invalid_token\", error_description=\"{}\"", q(why))
            }
            ApiError::Unavailable(_) | ApiError::NotConfigured { .. } => return None,
        })
    }

    /// RFC 7807 problem details.
    pub fn problem_json(&self) -> Value {
        let (kind, title) = match self {
            ApiError::MissingToken => ("missing_token", "Authentication required"),
            ApiError::InvalidToken(_) => ("invalid_token", "Invalid bearer token"),
            ApiError::InsufficientScope { .. } => ("insufficient_scope", "Insufficient scope"),
            ApiError::InsufficientRole { .. } => ("insufficient_role", "Insufficient role"),
            ApiError::InteractionRequired { .. } => {
                ("interaction_required", "User interaction required")
            }
            ApiError::Unavailable(_) => ("unavailable", "Identity provider unavailable"),
            ApiError::AssertionRejected(_) => {
                ("invalid_token", "Token refused by the identity provider")
            }
            ApiError::NotConfigured { .. } => ("not_configured", "The API is not configured"),
        };
        let detail = match self {
            ApiError::InvalidToken(why) => {
                format!(
                    "the bearer token is not valid: {}",
                    why.public_description()
                )
            }
            other => other.to_string(),
        };
        let mut problem = json!({
            "type": format!("urn:identity-rs:problem:{kind}"),
            "title": title,
            "status": self.status_code(),
            "detail": detail,
        });
        if let ApiError::NotConfigured { missing, .. } = self {
            problem["missing"] = json!(missing);
        }
        problem
    }

    /// Maps an error of an on-behalf-of exchange.
    pub fn from_obo(error: Error) -> Self {
        match error {
            Error::InteractionRequired {
                scopes,
                claims,
                reason,
            } => ApiError::InteractionRequired {
                scopes,
                claims,
                reason,
            },
            Error::InvalidIdToken(r) => ApiError::InvalidToken(r),
            Error::Provider(p) if p.error == "invalid_grant" || p.error == "invalid_request" => {
                ApiError::AssertionRejected(p.summary())
            }
            Error::Config { message, missing } => ApiError::NotConfigured { message, missing },
            e @ (Error::Authority(_) | Error::Credential(_)) => ApiError::NotConfigured {
                message: e.to_string(),
                missing: Vec::new(),
            },
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

/// Extracts the token from an `Authorization` header value (`Bearer <token>`).
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, ApiError> {
    // HTTP's whitespace is ASCII (space, tab).
    let value = authorization.map_or("", str::trim_ascii);
    let Some(space) = value.bytes().position(|b| b == b' ') else {
        return Err(ApiError::MissingToken);
    };
    let (scheme, token) = (&value[..space], value[space..].trim_ascii_start());
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(token)
}

/// Refuses tokens that are not access tokens (see the [module documentation](self)).
fn check_is_access_token(jwt: &UnverifiedJwt, entra: bool) -> Result<(), TokenRejection> {
    let has = |name: &str| jwt.claims.contains_key(name);
    if has("nonce") {
        return Err(TokenRejection::NotAnAccessToken(
            "it carries a nonce, as ID tokens do",
        ));
    }
    if has("at_hash") || has("c_hash") {
        return Err(TokenRejection::NotAnAccessToken(
            "it carries at_hash or c_hash, as ID tokens do",
        ));
    }
    if jwt
        .str_claim("typ")
        .is_some_and(|t| t.eq_ignore_ascii_case("ID"))
    {
        return Err(TokenRejection::NotAnAccessToken("its typ claim says ID"));
    }
    if !has("scp") && !has("roles") {
        return Err(TokenRejection::NotAnAccessToken(
            "it carries neither scp nor roles",
        ));
    }
    if entra && !has("azp") && !has("appid") {
        return Err(TokenRejection::NotAnAccessToken(
            "it names no client (azp or appid), as Entra ID tokens do",
        ));
    }
    Ok(())
}

/// The default accepted audiences of an API: its client id and `api://{client id}`.
pub fn default_audiences(client_id: &str) -> Vec<String> {
    vec![client_id.to_owned(), format!("api://{client_id}")]
}

/// Downstream tokens (with their expiry) by incoming token, compared in full, then by
/// scope set ([`Scopes::cache_key`]). The incoming token determines the caller, so a
/// lookup hashes a few bytes of it and builds no key.
pub(crate) type OboCache =
    Mutex<HashMap<Box<str>, Vec<(Box<str>, AccessToken, i64)>, crate::token_cache::TailHash>>;

/// The downstream token for `scopes` obtained with `token`, if kept.
pub(crate) fn obo_cache_get(
    cache: &OboCache,
    token: &str,
    scopes: &str,
) -> Option<(AccessToken, i64)> {
    let map = cache.lock().unwrap_or_else(|p| p.into_inner());
    let kept = map.get(token)?.iter().find(|(s, ..)| **s == *scopes);
    kept.map(|(_, at, exp)| (at.clone(), *exp))
}

/// Keeps `value` for `token` and `scopes`; incoming tokens whose downstream tokens all
/// expired at `now` go first when the cache is full, then the one expiring first.
pub(crate) fn obo_cache_insert(
    cache: &OboCache,
    token: &str,
    scopes: &str,
    value: (AccessToken, i64),
    now: i64,
) {
    let latest = |e: &Vec<(Box<str>, AccessToken, i64)>| e.iter().map(|(.., exp)| *exp).max();
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_OBO_ENTRIES && !map.contains_key(token) {
        map.retain(|_, e| latest(e).is_some_and(|exp| exp > now));
        if map.len() >= MAX_OBO_ENTRIES {
            // Still full of live entries: drop the one expiring first.
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, e)| latest(e))
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
    }
    let entry = map.entry(token.into()).or_default();
    entry.retain(|(s, ..)| **s != *scopes);
    if entry.len() >= OBO_SCOPE_SETS_PER_TOKEN {
        if let Some(first) = (0..entry.len()).min_by_key(|&i| entry[i].2) {
            entry.remove(first);
        }
    }
    entry.push((scopes.into(), value.0, value.1));
}

impl Identity {
    /// Validates a bearer access token for this API. `audiences` are the accepted `aud`
    /// values (see [`default_audiences`]).
    pub async fn validate_access_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Caller, ApiError> {
        self.validate_access_token_shared(token, audiences)
            .await
            .map(|(caller, _)| caller)
    }

    /// [`validate_access_token`](Self::validate_access_token), with the token as the
    /// cache holds it (shared, not copied).
    pub(crate) async fn validate_access_token_shared(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(Caller, Arc<str>), ApiError> {
        let result = self.validate_access_token_inner(token, audiences).await;
        if let Err(ApiError::InvalidToken(why)) = &result {
            // The caller gets the kind of failure only; the reason stays here.
            tracing::info!(reason = %why, "bearer token refused");
        }
        result
    }

    async fn validate_access_token_inner(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(Caller, Arc<str>), ApiError> {
        let skew_secs = self.skew().as_secs() as i64;
        let cache = self.validated_tokens();
        if let Some((shared, hit)) = cache.get(token, audiences) {
            let now = now();
            if now > hit.expires.saturating_add(skew_secs) {
                cache.remove(token, audiences);
                return Err(ApiError::InvalidToken(TokenRejection::Expired));
            }
            if hit
                .not_before
                .is_some_and(|t| t > now.saturating_add(skew_secs))
            {
                return Err(ApiError::InvalidToken(TokenRejection::NotYetValid));
            }
            if self
                .key_still_trusted(&hit.trust, hit.kid.as_deref())
                .await?
            {
                return Ok((Caller { claims: hit.claims }, shared));
            }
            // The signing key left the key set (past its grace): validate in full.
            cache.demote_hit(token, audiences);
        }
        // Boxed: a hit's future (the common case) does not carry the full validation's.
        Box::pin(self.validate_in_full(token, audiences)).await
    }

    /// The full validation of a token the cache did not answer for; keeps a success.
    async fn validate_in_full(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(Caller, Arc<str>), ApiError> {
        let config = self.config();
        let skew = self.skew();
        let skew_secs = skew.as_secs() as i64;
        let cache = self.validated_tokens();
        let mut parsed = UnverifiedJwt::parse(token).map_err(ApiError::InvalidToken)?;
        let authority = &config.authority;
        let unavailable = |e: Error| ApiError::Unavailable(e.to_string());
        let v2_url = authority.discovery_url();
        let v2 = self.discovery(authority).await.map_err(unavailable)?;
        let is_v1 = parsed.str_claim("ver") == Some("1.0") && !authority.is_b2c();
        let policy = if is_v1 {
            let v1_url = authority.v1_discovery_url().ok_or(ApiError::InvalidToken(
                TokenRejection::Version("1.0".into()),
            ))?;
            let v1 = self
                .metadata()
                .discovery(v1_url.as_str())
                .await
                .map_err(unavailable)?;
            tracing::debug!(issuer = %v1.issuer, "validating a v1.0 access token");
            IssuerPolicy::v1(authority, &v1.issuer)
        } else {
            IssuerPolicy::new(authority, &v2.issuer)
        };
        let mut keys = self
            .metadata()
            .keys(v2_url.as_str(), &v2.jwks_uri, None)
            .await
            .map_err(unavailable)?;
        if !keys.has_kid(parsed.kid()) {
            keys = self
                .metadata()
                .keys(v2_url.as_str(), &v2.jwks_uri, parsed.kid())
                .await
                .map_err(unavailable)?;
        }
        // Access tokens are signed with RS256 on every Entra flavour; honour what the
        // provider advertises for ID tokens otherwise.
        cache.count_verification();
        let signer = jwt::verifying_key(&parsed, &keys, &v2.id_token_signing_alg_values_supported)
            .map_err(ApiError::InvalidToken)?;
        let mut policy = policy.reject_personal_accounts(config.reject_personal_accounts);
        if !config.allowed_tenants.is_empty() {
            policy = policy.allowed_tenants(config.allowed_tenants.iter().cloned());
        }
        let now = now();
        jwt::check_claims_signed_by(
            &parsed,
            signer.issuer.as_deref(),
            &Expectations {
                logout_token: false,
                issuer: &policy,
                audiences,
                azp: None,
                nonce: None,
                id_token: false,
                now,
                skew,
            },
        )
        .map_err(ApiError::InvalidToken)?;
        check_is_access_token(&parsed, is_entra_family(authority))
            .map_err(ApiError::InvalidToken)?;
        // Tokens without a kid are not kept: a hit could not tell whether their key was
        // retired since.
        let claims = Arc::new(std::mem::take(&mut parsed.claims));
        let mut shared = None;
        if let (Some(kid), Some(expires)) = (parsed.kid(), jwt::numeric(&claims, "exp")) {
            let not_before = ["nbf", "iat"]
                .iter()
                .filter_map(|n| jwt::numeric(&claims, n))
                .max();
            shared = cache.insert(
                token,
                audiences,
                Validated {
                    claims: claims.clone(),
                    expires,
                    not_before,
                    kid: Some(kid.into()),
                    trust: Arc::default(),
                },
                now,
                skew_secs,
            );
        }
        let shared = shared.unwrap_or_else(|| Arc::from(token));
        Ok((Caller { claims }, shared))
    }

    /// Whether the cached key set still trusts the key `kid` (no fetch unless the key set
    /// itself is due; no signature verification).
    ///
    /// A hit's last check (`trust`) answers while the metadata cache is unchanged and the
    /// time that check depends on has not come ([`KeyTrust`]); else the key set is looked
    /// up (and fetched when due), and the answer recorded.
    async fn key_still_trusted(
        &self,
        trust: &KeyTrust,
        kid: Option<&str>,
    ) -> Result<bool, ApiError> {
        let metadata = self.metadata();
        // Read before the lookups: a change during them leaves the record stale.
        let epoch = metadata.epoch();
        if kid.is_some() && trust.holds(epoch) {
            return Ok(true);
        }
        Box::pin(self.look_up_key(trust, epoch, kid)).await
    }

    /// [`key_still_trusted`](Self::key_still_trusted) through the key set.
    async fn look_up_key(
        &self,
        trust: &KeyTrust,
        epoch: u64,
        kid: Option<&str>,
    ) -> Result<bool, ApiError> {
        let metadata = self.metadata();
        let unavailable = |e: Error| ApiError::Unavailable(e.to_string());
        let authority = &self.config().authority;
        let v2 = self.discovery(authority).await.map_err(unavailable)?;
        let keys = metadata
            .keys(authority.discovery_str(), &v2.jwks_uri, None)
            .await
            .map_err(unavailable)?;
        let Some(retired) = kid.and(keys.kid_present_until(kid)) else {
            return Ok(false);
        };
        if let Some(fresh) = metadata.fresh_until(authority.discovery_str()) {
            trust.set(epoch, retired.map_or(fresh, |r| r.min(fresh)));
        }
        Ok(true)
    }

    /// Counters of the validated-token cache (see [`crate::token_cache`]).
    pub fn access_token_cache_stats(&self) -> AccessTokenCacheStats {
        self.validated_tokens().stats()
    }

    /// Exchanges the caller's `incoming_token` for an access token to `scopes` of a
    /// downstream API (on-behalf-of). Cached per (incoming token, scopes) until shortly
    /// before expiry; the cache holds at most [`MAX_OBO_ENTRIES`] incoming tokens.
    /// `caller` is the caller `incoming_token` was validated as (for the logs).
    pub async fn acquire_token_on_behalf_of(
        &self,
        caller: &Caller,
        incoming_token: &str,
        scopes: &Scopes,
    ) -> Result<TokenForUser, Error> {
        if !self.config().credential.is_confidential() {
            return Err(Error::config(
                "on-behalf-of needs a client credential (CLIENT_SECRET or a certificate)",
            ));
        }
        // Keyed by the incoming token, which determines the caller: after the client
        // satisfies a claims challenge (MFA, continuous access evaluation) it sends a new
        // token, which must not be answered from a downstream token obtained with the
        // old one. The token itself, not a digest: compared in full (`OboCache`).
        let scopes_key = scopes.cache_key();
        let ahead = self.config().refresh_ahead.as_secs() as i64;
        let cached = || {
            obo_cache_get(self.obo_cache(), incoming_token, &scopes_key)
                .filter(|(_, exp)| exp.saturating_sub(ahead) > now())
                .map(|(access_token, expires_at)| TokenForUser {
                    access_token,
                    expires_at,
                    from_cache: true,
                })
        };
        if let Some(hit) = cached() {
            return Ok(hit);
        }
        // Single flight per incoming token and scopes: concurrent first calls wait for
        // one exchange and then find its result in the cache.
        let flight = self.obo_flight(&format!("{scopes_key}\u{0}{incoming_token}"));
        let _turn = flight.lock().await;
        if let Some(hit) = cached() {
            return Ok(hit);
        }
        let authority = self.config().authority.clone();
        let meta = self.discovery(&authority).await?;
        let result = self
            .token_request(
                &meta,
                &authority,
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                    ),
                    ("assertion", incoming_token.to_owned()),
                    ("requested_token_use", "on_behalf_of".into()),
                    ("scope", scopes.to_wire()),
                ],
            )
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(Error::Provider(p)) if p.is_interaction_required() || p.is_consent_required() => {
                let challenge = p.claims.as_deref().and_then(ClaimsChallenge::from_json);
                return Err(Error::InteractionRequired {
                    scopes: scopes.clone(),
                    claims: challenge,
                    reason: p.summary(),
                });
            }
            Err(e) => return Err(e),
        };
        let at = resp
            .access_token
            .clone()
            .ok_or_else(|| Error::TokenEndpoint {
                url: meta.token_endpoint.clone(),
                reason: FetchFailure::NotJson(
                    "no access_token in the on-behalf-of response".into(),
                ),
            })?;
        let now = now();
        let exp = expires_at(now, resp.expires_in);
        tracing::debug!(caller = %caller.cache_identity(), scopes = %scopes_key, "on-behalf-of token obtained");
        obo_cache_insert(
            self.obo_cache(),
            incoming_token,
            &scopes_key,
            (at.clone(), exp),
            now,
        );
        Ok(TokenForUser {
            access_token: at,
            expires_at: exp,
            from_cache: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider_error::ProviderError;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("bearer   abc ")).unwrap(), "abc");
        for bad in [
            None,
            Some(""),
            Some("Basic abc"),
            Some("Bearer"),
            Some("Bearer   "),
        ] {
            assert!(
                matches!(bearer_token(bad), Err(ApiError::MissingToken)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn challenges_are_rfc6750_and_escaped() {
        let e = ApiError::InvalidToken(TokenRejection::Malformed("a \"quoted\" thing".into()));
        let h = e.www_authenticate().unwrap();
        assert!(h.starts_with("Bearer realm=\"\", error=\"invalid_token\""));
        assert!(!h.contains("quoted"), "details stay in the logs: {h}");
        assert_eq!(e.status_code(), 401);
        let quoted = ApiError::InsufficientScope {
            required: vec!["a\"b".into()],
        };
        assert!(quoted.www_authenticate().unwrap().contains("a\\\"b"));
        let s = ApiError::InsufficientScope {
            required: vec!["access_as_user".into()],
        };
        assert_eq!(s.status_code(), 403);
        assert!(s
            .www_authenticate()
            .unwrap()
            .contains("scope=\"access_as_user\""));
        assert_eq!(s.problem_json()["status"], 403);
        let c = ApiError::InteractionRequired {
            scopes: Scopes::parse("User.Read"),
            claims: ClaimsChallenge::from_json(
                "{\"access_token\":{\"acrs\":{\"essential\":true,\"value\":\"c1\"}}}",
            ),
            reason: "mfa".into(),
        };
        let h = c.www_authenticate().unwrap();
        assert!(h.contains("error=\"insufficient_claims\""), "{h}");
        // The challenge round-trips through the parser clients use.
        assert!(ClaimsChallenge::from_www_authenticate(&h).is_some());
    }

    #[test]
    fn obo_errors_map_to_what_the_client_can_do() {
        let refused = ProviderError::from_json(400, br#"{"error":"invalid_grant","error_description":"AADSTS50013: Assertion failed signature validation.","error_codes":[50013]}"#).unwrap();
        let e = ApiError::from_obo(Error::provider(refused));
        assert_eq!(e.status_code(), 401);
        assert!(e.www_authenticate().unwrap().contains("invalid_token"));
        let c = ApiError::from_obo(Error::Config {
            message: "m".into(),
            missing: vec!["CLIENT_SECRET".into()],
        });
        assert_eq!(c.status_code(), 500);
        assert_eq!(c.problem_json()["missing"][0], "CLIENT_SECRET");
        assert!(c.www_authenticate().is_none());
    }

    #[test]
    fn obo_cache_is_bounded() {
        let cache = OboCache::default();
        for i in 0..(MAX_OBO_ENTRIES + 50) {
            let value = (AccessToken::new("t"), 1000 + i as i64);
            obo_cache_insert(&cache, &format!("k{i}"), "user.read", value, 10);
        }
        assert_eq!(cache.lock().unwrap().len(), MAX_OBO_ENTRIES);
        // The first ones expire first: they made room.
        assert!(obo_cache_get(&cache, "k0", "user.read").is_none());
        let last = format!("k{}", MAX_OBO_ENTRIES + 49);
        assert!(obo_cache_get(&cache, &last, "user.read").is_some());
        // Scope sets per token are bounded too, and kept apart.
        for s in 0..6 {
            let value = (AccessToken::new(format!("t{s}")), 20_000 + s);
            obo_cache_insert(&cache, &last, &format!("scope{s}"), value, 10);
        }
        assert_eq!(
            cache.lock().unwrap()[last.as_str()].len(),
            OBO_SCOPE_SETS_PER_TOKEN
        );
        let (at, _) = obo_cache_get(&cache, &last, "scope5").unwrap();
        assert_eq!(at.secret(), "t5");
        assert!(obo_cache_get(&cache, &last, "user.read").is_none());
    }

    #[test]
    fn scope_and_role_checks() {
        let mut claims = Map::new();
        claims.insert("scp".into(), json!("access_as_user User.Read"));
        let user = Caller {
            claims: Arc::new(claims),
        };
        assert!(user.require_scopes(&["access_as_user"]).is_ok());
        assert!(user.require_scopes(&["Mail.Read"]).is_err());
        assert!(user.require_any_role(&["Data.Read.All"]).is_err());
        let mut claims = Map::new();
        claims.insert("roles".into(), json!(["Data.Read.All"]));
        let app = Caller {
            claims: Arc::new(claims),
        };
        assert!(app.is_app_only());
        // idtyp decides when present; without it, roles and no scp.
        let caller = |v: Value| Caller {
            claims: Arc::new(v.as_object().cloned().unwrap_or_default()),
        };
        assert!(caller(json!({"idtyp": "app"})).is_app_only());
        assert!(!caller(json!({"idtyp": "user", "roles": ["Data.Read.All"]})).is_app_only());
        assert!(!caller(json!({"idtyp": "app2", "roles": ["r"]})).is_app_only());
        assert!(
            !caller(json!({})).is_app_only(),
            "no scp alone is not app-only"
        );
        assert!(!caller(json!({"scp": "a", "roles": ["r"]})).is_app_only());
        assert!(app.require_any_role(&["Data.Read.All"]).is_ok());
        assert!(
            app.require_scopes(&["access_as_user"]).is_err(),
            "app tokens carry no delegated scopes"
        );
    }
}
