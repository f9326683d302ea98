//! Discovery documents and signing keys, fetched lazily and cached.
//!
//! * The discovery document of each authority (each B2C user flow has its own) is fetched
//!   on first use and kept for [`MetadataConfig::ttl`].
//! * The JWKS is fetched on first use, kept for the same TTL, and refetched **once** when a
//!   token names an unknown `kid` — but at most once per [`MetadataConfig::jwks_cooldown`],
//!   so a flood of tokens with made-up key ids cannot make us hammer the provider.
//! * **Retired keys.** A key that was in the previous fetch but not in the new one is kept
//!   for a short grace period ([`MetadataConfig::retired_key_grace`], default 5 minutes,
//!   counted from the first fetch that missed it), then dropped: Entra's published set can
//!   flap between front ends, so one answer without a key must not fail every token it
//!   signed, but after an emergency rollover of a compromised key a long-running process
//!   must stop trusting it within minutes, not never. A token signed by a dropped key has
//!   an unknown `kid` and triggers a refetch (subject to the cooldown) like any other.
//! * **Failures are remembered.** Requests that waited on a failing fetch share its error
//!   instead of each trying again (a provider that is down must not queue every request
//!   behind back-to-back timeouts). A single failure is retried by the next request; after
//!   two failures in a row, fetches wait [`MetadataConfig::failure_backoff`] (1 s), doubled
//!   after each further failure up to [`MetadataConfig::max_failure_backoff`] (30 s), and
//!   the last error is answered meanwhile. A document that was fetched once keeps being
//!   served (even past its TTL) while refetches fail.
//! * Bodies are read up to [`MAX_DISCOVERY_BYTES`] and [`MAX_JWKS_BYTES`].
//! * Concurrent callers share one fetch.

use crate::error::{Error, FetchFailure};
use crate::http::{snippet, HttpClient, MAX_DISCOVERY_BYTES, MAX_JWKS_BYTES};
use crate::provider_error::ProviderError;
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use url::Url;

/// The members of a discovery document this library uses. Unknown members are ignored.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ProviderMetadata {
    /// `issuer` (may be a `{tenantid}` template on multi-tenant Entra authorities).
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `end_session_endpoint`, if the provider offers RP-initiated logout.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// `device_authorization_endpoint`, if the provider offers device code sign-in.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// `id_token_signing_alg_values_supported`.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// `token_endpoint_auth_methods_supported`.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207): when `true`, every
    /// authorization response must carry `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// `authorization_endpoint`, parsed once (every sign-in builds a URL on it).
    #[serde(skip)]
    authorization_url: OnceLock<Result<Url, url::ParseError>>,
}

impl ProviderMetadata {
    /// `authorization_endpoint` as a URL (parsed on first use).
    pub(crate) fn authorization_url(&self) -> Result<&Url, url::ParseError> {
        self.authorization_url
            .get_or_init(|| Url::parse(&self.authorization_endpoint))
            .as_ref()
            .map_err(|e| *e)
    }
}

/// One published signing key.
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// `kid`, if any.
    pub kid: Option<String>,
    /// The key's own `issuer` member (Entra scopes keys to issuers), if any.
    pub issuer: Option<String>,
    pub(crate) jwk: CoreJsonWebKey,
    /// Until when a key that left the provider's set is still trusted.
    retired_until: Option<Instant>,
}

impl SigningKey {
    /// Verifies `signature` over `message` with `alg`.
    pub(crate) fn verify(
        &self,
        alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        self.jwk.verify_signature(alg, message, signature).is_ok()
    }
}

/// A set of signing keys.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

impl KeySet {
    /// Parses a JWKS document, skipping keys that cannot be used (unknown types,
    /// encryption keys) and tolerating unknown members (`issuer`, `x5c`, ...).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for value in doc.keys {
            if value
                .get("use")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let issuer = value
                .get("issuer")
                .and_then(|k| k.as_str())
                .map(str::to_owned);
            if let Ok(jwk) = serde_json::from_value::<CoreJsonWebKey>(value) {
                keys.push(SigningKey {
                    kid,
                    issuer,
                    jwk,
                    retired_until: None,
                });
            }
        }
        Ok(Self { keys })
    }

    /// Keys whose `kid` matches (all keys if the token names none). A retired key whose
    /// grace period has passed is never a candidate.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a SigningKey> + 'a {
        let now = Instant::now();
        self.keys.iter().filter(move |k| {
            (kid.is_none() || k.kid.as_deref() == kid) && k.retired_until.is_none_or(|t| now < t)
        })
    }

    /// Whether a key with this `kid` is present.
    pub fn has_kid(&self, kid: Option<&str>) -> bool {
        self.candidates(kid).next().is_some()
    }

    /// Until when a key with this `kid` is present: `None` when none is, `Some(None)` while
    /// one is in the provider's set, else the end of the latest grace period.
    pub fn kid_present_until(&self, kid: Option<&str>) -> Option<Option<Instant>> {
        let mut until = None;
        for key in self.candidates(kid) {
            match (key.retired_until, until) {
                (None, _) => return Some(None),
                (Some(t), Some(Some(u))) if t <= u => {}
                (Some(t), _) => until = Some(Some(t)),
            }
        }
        until
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The fresh set plus the keys of `previous` that it lacks, each kept until `grace`
    /// after the first fetch that missed it (a key missing from one answer of a flapping
    /// front end is not lost; a key removed in an emergency rollover is dropped soon).
    fn merged_with_previous(mut self, previous: &KeySet, grace: Duration) -> Self {
        let now = Instant::now();
        for old in &previous.keys {
            if old.kid.is_none() || self.keys.iter().any(|k| k.kid == old.kid) {
                continue;
            }
            let until = old.retired_until.unwrap_or(now + grace);
            if now < until {
                let mut kept = old.clone();
                kept.retired_until = Some(until);
                self.keys.push(kept);
            }
        }
        self
    }
}

/// Cache settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataConfig {
    /// How long a discovery document and a JWKS are kept. Default 24 h.
    pub ttl: Duration,
    /// Minimum time between two JWKS refetches caused by unknown `kid`s. Default 5 min.
    pub jwks_cooldown: Duration,
    /// How long a signing key that left the provider's JWKS is still trusted. Default
    /// 5 min ([`DEFAULT_RETIRED_KEY_GRACE`]).
    pub retired_key_grace: Duration,
    /// The wait after the second failed fetch in a row; doubled after each further
    /// failure. Default 1 s.
    pub failure_backoff: Duration,
    /// The longest wait between fetches while the provider keeps failing. Default 30 s.
    pub max_failure_backoff: Duration,
}

/// How long a signing key that left the JWKS stays trusted (5 minutes).
pub const DEFAULT_RETIRED_KEY_GRACE: Duration = Duration::from_secs(300);

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            jwks_cooldown: Duration::from_secs(300),
            retired_key_grace: DEFAULT_RETIRED_KEY_GRACE,
            failure_backoff: Duration::from_secs(1),
            max_failure_backoff: Duration::from_secs(30),
        }
    }
}

impl MetadataConfig {
    /// How long to wait after `failures` failed fetches in a row before fetching again.
    /// One failure: no wait (a single lost answer must not lock sign-in out). Two: the
    /// `failure_backoff`; each further failure doubles it, up to `max_failure_backoff`.
    pub fn backoff_after(&self, failures: u32) -> Duration {
        if failures < 2 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 2).min(16);
        self.failure_backoff
            .saturating_mul(factor)
            .min(self.max_failure_backoff)
    }
}

/// The last failed fetch of a document.
#[derive(Clone)]
struct Failure {
    error: Error,
    at: Instant,
    count: u32,
}

impl Failure {
    /// The error to answer without fetching, if this failure still holds for a caller
    /// that started waiting at `arrived`: it happened while the caller waited (the caller
    /// shares it), or the backoff since it has not passed.
    fn still_holds(&self, arrived: Instant, config: &MetadataConfig) -> Option<Error> {
        (self.at >= arrived || self.at.elapsed() < config.backoff_after(self.count))
            .then(|| self.error.clone())
    }

    fn next(previous: Option<&Failure>, error: Error) -> Failure {
        Failure {
            error,
            at: Instant::now(),
            count: previous.map_or(1, |f| f.count.saturating_add(1)),
        }
    }
}

#[derive(Default)]
struct DiscoveryState {
    doc: Option<(Arc<ProviderMetadata>, Instant)>,
    failure: Option<Failure>,
}

#[derive(Default)]
struct JwksState {
    keys: Option<(Arc<KeySet>, Instant)>,
    last_forced: Option<Instant>,
    failure: Option<Failure>,
}

/// The cached documents of one discovery URL. The async mutexes serialise fetches (one
/// fetch at a time per document, the others wait for its result); the `fresh_*` copies
/// answer the common case, a cached document within its TTL, without taking them, so a
/// busy app's requests never queue behind each other for a cache read.
#[derive(Default)]
struct Entry {
    discovery: tokio::sync::Mutex<DiscoveryState>,
    jwks: tokio::sync::Mutex<JwksState>,
    fresh_discovery: std::sync::RwLock<Option<(Arc<ProviderMetadata>, Instant)>>,
    fresh_keys: std::sync::RwLock<Option<(Arc<KeySet>, Instant)>>,
}

/// A copy of a cached value and when it was fetched, if it is still within `ttl`.
fn read_fresh<T>(
    slot: &std::sync::RwLock<Option<(Arc<T>, Instant)>>,
    ttl: Duration,
) -> Option<Arc<T>> {
    let guard = slot.read().unwrap_or_else(|p| p.into_inner());
    guard
        .as_ref()
        .filter(|(_, at)| at.elapsed() < ttl)
        .map(|(v, _)| v.clone())
}

/// When a cached value was fetched, if one is cached.
fn fetched_at<T>(slot: &std::sync::RwLock<Option<(Arc<T>, Instant)>>) -> Option<Instant> {
    let guard = slot.read().unwrap_or_else(|p| p.into_inner());
    guard.as_ref().map(|(_, at)| *at)
}

fn write_fresh<T>(slot: &std::sync::RwLock<Option<(Arc<T>, Instant)>>, value: (Arc<T>, Instant)) {
    *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(value);
}

/// Cache of discovery documents and key sets, keyed by discovery URL.
#[derive(Clone)]
pub struct MetadataCache {
    http: HttpClient,
    config: MetadataConfig,
    entries: Arc<std::sync::RwLock<HashMap<String, Arc<Entry>, foldhash::fast::RandomState>>>,
    /// Bumped whenever a discovery document or key set is stored ([`epoch`](Self::epoch)).
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MetadataCache {
    /// A new, empty cache.
    pub fn new(http: HttpClient, config: MetadataConfig) -> Self {
        Self {
            http,
            config,
            entries: Arc::default(),
            epoch: Arc::default(),
        }
    }

    /// A number that changes whenever a discovery document or key set is stored: while it
    /// stays the same, and until [`fresh_until`](Self::fresh_until), a lookup finds what
    /// it found before, without fetching.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump_epoch(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// When the discovery document or the key set cached under `discovery_url` is next
    /// due for a fetch, whichever comes first; `None` when either is not cached fresh.
    pub fn fresh_until(&self, discovery_url: &str) -> Option<Instant> {
        let entry = self.entry(discovery_url);
        let until = fetched_at(&entry.fresh_discovery)?.min(fetched_at(&entry.fresh_keys)?)
            + self.config.ttl;
        (Instant::now() < until).then_some(until)
    }

    fn entry(&self, discovery_url: &str) -> Arc<Entry> {
        {
            let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = map.get(discovery_url) {
                return entry.clone();
            }
        }
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        map.entry(discovery_url.to_owned()).or_default().clone()
    }

    /// The discovery document at `discovery_url`, from cache or fetched. While the
    /// provider fails, the last good document (even past its TTL) keeps being served;
    /// without one, the failure is answered without a new fetch during the backoff
    /// (see [`MetadataConfig::backoff_after`]).
    pub async fn discovery(&self, discovery_url: &str) -> Result<Arc<ProviderMetadata>, Error> {
        let entry = self.entry(discovery_url);
        if let Some(doc) = read_fresh(&entry.fresh_discovery, self.config.ttl) {
            return Ok(doc);
        }
        let arrived = Instant::now();
        let mut slot = entry.discovery.lock().await;
        if let Some((doc, at)) = slot.doc.as_ref() {
            if at.elapsed() < self.config.ttl {
                return Ok(doc.clone());
            }
        }
        if let Some(error) = slot
            .failure
            .as_ref()
            .and_then(|f| f.still_holds(arrived, &self.config))
        {
            if let Some((doc, _)) = slot.doc.as_ref() {
                return Ok(doc.clone());
            }
            return Err(error);
        }
        match self.fetch_discovery(discovery_url).await {
            Ok(doc) => {
                let doc = Arc::new(doc);
                let fetched = (doc.clone(), Instant::now());
                write_fresh(&entry.fresh_discovery, fetched.clone());
                self.bump_epoch();
                slot.doc = Some(fetched);
                slot.failure = None;
                Ok(doc)
            }
            Err(error) => {
                slot.failure = Some(Failure::next(slot.failure.as_ref(), error.clone()));
                match slot.doc.as_ref() {
                    Some((doc, _)) => {
                        tracing::warn!(%error, "discovery refetch failed; serving the cached document");
                        Ok(doc.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    async fn fetch_discovery(&self, url: &str) -> Result<ProviderMetadata, Error> {
        let fail = |reason: String| Error::Discovery {
            url: url.to_owned(),
            reason,
        };
        let resp = self
            .http
            .get(url, MAX_DISCOVERY_BYTES)
            .await
            .map_err(|f| fail(f.to_string()))?;
        if resp.status != 200 {
            if let Some(p) = ProviderError::from_json(resp.status, &resp.body) {
                let hint = if p.codes().iter().any(|c| c == "AADSTS90002") {
                    " — the tenant does not exist: check the tenant id or domain in the authority"
                } else {
                    ""
                };
                return Err(fail(format!("HTTP {}: {}{hint}", resp.status, p.summary())));
            }
            return Err(fail(FetchFailure::Status(resp.status).to_string()));
        }
        let doc: ProviderMetadata = serde_json::from_slice(&resp.body).map_err(|e| {
            if serde_json::from_slice::<serde_json::Value>(&resp.body).is_ok() {
                fail(format!("the document lacks a required member: {e}"))
            } else {
                fail(FetchFailure::NotJson(snippet(&resp.body)).to_string())
            }
        })?;
        Ok(doc)
    }

    /// The key set at `jwks_uri` (cached under `discovery_url`). With `need_kid`, a key set
    /// without that kid is refetched once, subject to the cooldown. Keys that left the
    /// provider's set are kept for [`MetadataConfig::retired_key_grace`], then dropped.
    pub async fn keys(
        &self,
        discovery_url: &str,
        jwks_uri: &str,
        need_kid: Option<&str>,
    ) -> Result<Arc<KeySet>, Error> {
        let entry = self.entry(discovery_url);
        if let Some(keys) = read_fresh(&entry.fresh_keys, self.config.ttl) {
            if need_kid.is_none() || keys.has_kid(need_kid) {
                return Ok(keys);
            }
        }
        let arrived = Instant::now();
        let mut state = entry.jwks.lock().await;
        let current = state.keys.clone();
        let previous = match current {
            Some((keys, at)) if at.elapsed() < self.config.ttl => {
                if need_kid.is_none() || keys.has_kid(need_kid) {
                    return Ok(keys);
                }
                let cooling = state
                    .last_forced
                    .is_some_and(|t| t.elapsed() < self.config.jwks_cooldown);
                if cooling {
                    tracing::debug!(kid = ?need_kid, "unknown kid; JWKS refetch suppressed by cooldown");
                    return Ok(keys);
                }
                state.last_forced = Some(Instant::now());
                tracing::info!(kid = ?need_kid, "unknown kid; refetching JWKS");
                Some(keys)
            }
            Some((keys, _)) => Some(keys),
            None => None,
        };
        if let Some(error) = state
            .failure
            .as_ref()
            .and_then(|f| f.still_holds(arrived, &self.config))
        {
            return previous.ok_or(error);
        }
        match self.fetch_keys(jwks_uri).await {
            Ok(fresh) => {
                let keys = Arc::new(match &previous {
                    Some(prev) => fresh.merged_with_previous(prev, self.config.retired_key_grace),
                    None => fresh,
                });
                let fetched = (keys.clone(), Instant::now());
                write_fresh(&entry.fresh_keys, fetched.clone());
                self.bump_epoch();
                state.keys = Some(fetched);
                state.failure = None;
                Ok(keys)
            }
            Err(error) => {
                state.failure = Some(Failure::next(state.failure.as_ref(), error.clone()));
                match previous {
                    Some(prev) => {
                        tracing::warn!(%error, "JWKS refetch failed; keeping the cached keys");
                        Ok(prev)
                    }
                    None => Err(error),
                }
            }
        }
    }

    async fn fetch_keys(&self, jwks_uri: &str) -> Result<KeySet, Error> {
        let fail = |reason| Error::Jwks {
            url: jwks_uri.to_owned(),
            reason,
        };
        let resp = self
            .http
            .get(jwks_uri, MAX_JWKS_BYTES)
            .await
            .map_err(fail)?;
        if resp.status != 200 {
            return Err(fail(FetchFailure::Status(resp.status)));
        }
        KeySet::parse(&resp.body).map_err(|_| fail(FetchFailure::NotJson(snippet(&resp.body))))
    }

    /// The HTTP client.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/fixtures/entra/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn parses_entra_jwks_without_alg_and_with_issuer_members() {
        let keys = KeySet::parse(&fixture("jwks/common-v2-keys.json")).unwrap();
        assert!(keys.len() > 3);
        assert!(keys.has_kid(Some("Mc7l3Iz93g7uwgNeEmmw_WYGPko")));
        assert!(!keys.has_kid(Some("no-such-kid")));
        assert!(keys.keys.iter().all(|k| k.issuer.is_some()));
    }

    #[test]
    fn parses_every_discovery_fixture() {
        for name in [
            "v2-tenant.json",
            "v2-common.json",
            "v2-organizations.json",
            "v2-consumers.json",
            "v1-common.json",
            "b2c-userflow-path.json",
            "b2c-custom-policy-query.json",
            "ciam-tenant.json",
            "usgov-tenant-v2.json",
            "china-tenant-v2.json",
        ] {
            let doc: ProviderMetadata =
                serde_json::from_slice(&fixture(&format!("discovery/{name}")))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(doc.token_endpoint.starts_with("https://"), "{name}");
        }
    }

    #[test]
    fn garbage_jwks_is_an_error_not_a_panic() {
        assert!(KeySet::parse(b"{not json").is_err());
        assert!(KeySet::parse(b"{\"keys\": [{\"kty\": \"nope\"}]}")
            .unwrap()
            .is_empty());
    }
    #[test]
    fn a_kid_is_present_until_the_end_of_its_latest_grace() {
        let jwks = br#"{"keys":[{"kty":"RSA","use":"sig","kid":"a","n":"sXch","e":"AQAB"},{"kty":"RSA","use":"sig","kid":"b","n":"sXch","e":"AQAB"}]}"#;
        let mut set = KeySet::parse(jwks).unwrap();
        assert_eq!(set.kid_present_until(Some("a")), Some(None));
        assert_eq!(set.kid_present_until(Some("c")), None);
        let later = Instant::now() + Duration::from_secs(60);
        set.keys[0].retired_until = Some(later);
        assert_eq!(set.kid_present_until(Some("a")), Some(Some(later)));
        set.keys[1].kid = Some("a".into());
        assert_eq!(
            set.kid_present_until(Some("a")),
            Some(None),
            "one copy is current"
        );
        set.keys[1].retired_until = Some(later + Duration::from_secs(5));
        assert_eq!(
            set.kid_present_until(Some("a")),
            Some(Some(later + Duration::from_secs(5)))
        );
        set.keys[0].retired_until = Some(Instant::now() - Duration::from_secs(1));
        set.keys[1].retired_until = Some(Instant::now() - Duration::from_secs(1));
        assert_eq!(set.kid_present_until(Some("a")), None, "past every grace");
    }
}
