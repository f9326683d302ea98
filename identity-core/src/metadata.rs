//! Discovery documents and signing keys, fetched lazily and cached.
//!
//! * The discovery document of each authority (each B2C user flow has its own) is fetched
//!   on first use and kept for [`MetadataConfig::ttl`].
//! * The JWKS is fetched on first use, kept for the same TTL, and refetched **once** when a
//!   token names an unknown `kid` — but at most once per [`MetadataConfig::jwks_cooldown`],
//!   so a flood of tokens with made-up key ids cannot make us hammer the provider.
//! * Keys seen in the previous fetch are kept beside the new ones: Entra's published set
//!   flaps between front ends, and a key missing from one answer is not revoked.
//! * Concurrent callers share one fetch.

use crate::error::{Error, FetchFailure};
use crate::http::{snippet, HttpClient};
use crate::provider_error::ProviderError;
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

/// One published signing key.
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// `kid`, if any.
    pub kid: Option<String>,
    /// The key's own `issuer` member (Entra scopes keys to issuers), if any.
    pub issuer: Option<String>,
    pub(crate) jwk: CoreJsonWebKey,
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
                keys.push(SigningKey { kid, issuer, jwk });
            }
        }
        Ok(Self { keys })
    }

    /// Keys whose `kid` matches (all keys if the token names none).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a SigningKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
    }

    /// Whether a key with this `kid` is present.
    pub fn has_kid(&self, kid: Option<&str>) -> bool {
        self.candidates(kid).next().is_some()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn merged_with_previous(mut self, previous: &KeySet) -> Self {
        for old in &previous.keys {
            if old.kid.is_some() && !self.has_kid(old.kid.as_deref()) {
                self.keys.push(old.clone());
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
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            jwks_cooldown: Duration::from_secs(300),
        }
    }
}

#[derive(Default)]
struct JwksState {
    keys: Option<(Arc<KeySet>, Instant)>,
    last_forced: Option<Instant>,
}

#[derive(Default)]
struct Entry {
    discovery: tokio::sync::Mutex<Option<(Arc<ProviderMetadata>, Instant)>>,
    jwks: tokio::sync::Mutex<JwksState>,
}

/// Cache of discovery documents and key sets, keyed by discovery URL.
#[derive(Clone)]
pub struct MetadataCache {
    http: HttpClient,
    config: MetadataConfig,
    entries: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
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
        }
    }

    fn entry(&self, discovery_url: &str) -> Arc<Entry> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(discovery_url.to_owned()).or_default().clone()
    }

    /// The discovery document at `discovery_url`, from cache or fetched.
    pub async fn discovery(&self, discovery_url: &str) -> Result<Arc<ProviderMetadata>, Error> {
        let entry = self.entry(discovery_url);
        let mut slot = entry.discovery.lock().await;
        if let Some((doc, at)) = slot.as_ref() {
            if at.elapsed() < self.config.ttl {
                return Ok(doc.clone());
            }
        }
        let doc = Arc::new(self.fetch_discovery(discovery_url).await?);
        *slot = Some((doc.clone(), Instant::now()));
        Ok(doc)
    }

    async fn fetch_discovery(&self, url: &str) -> Result<ProviderMetadata, Error> {
        let fail = |reason: String| Error::Discovery {
            url: url.to_owned(),
            reason,
        };
        let resp = self.http.get(url).await.map_err(|f| fail(f.to_string()))?;
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
    /// without that kid is refetched once, subject to the cooldown.
    pub async fn keys(
        &self,
        discovery_url: &str,
        jwks_uri: &str,
        need_kid: Option<&str>,
    ) -> Result<Arc<KeySet>, Error> {
        let entry = self.entry(discovery_url);
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
        let resp = self
            .http
            .get(jwks_uri)
            .await
            .map_err(|reason| Error::Jwks {
                url: jwks_uri.to_owned(),
                reason,
            })?;
        if resp.status != 200 {
            return Err(Error::Jwks {
                url: jwks_uri.to_owned(),
                reason: FetchFailure::Status(resp.status),
            });
        }
        let fresh = KeySet::parse(&resp.body).map_err(|_| Error::Jwks {
            url: jwks_uri.to_owned(),
            reason: FetchFailure::NotJson(snippet(&resp.body)),
        })?;
        let keys = Arc::new(match &previous {
            Some(prev) => fresh.merged_with_previous(prev),
            None => fresh,
        });
        state.keys = Some((keys.clone(), Instant::now()));
        Ok(keys)
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
}
