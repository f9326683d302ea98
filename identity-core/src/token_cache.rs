//! The cache of validated bearer tokens of a web API.
//!
//! Verifying an RS256 signature and parsing a token's JSON costs far more than the rest
//! of a request to a small API, and clients send the same access token for up to an
//! hour. [`Identity::validate_access_token`](crate::Identity::validate_access_token)
//! therefore keeps the claims of each token it accepted:
//!
//! * **Key**: SHA-256 over the token and the audiences asked for (each length-prefixed),
//!   so a token accepted for one audience set is never served to a check with another,
//!   and the token itself is not kept. Issuer rules, tenants and keys come from the
//!   [`Identity`](crate::Identity)'s configuration, and each `Identity` has its own cache.
//! * **Only successes** are kept; a refused token is checked in full every time.
//! * **Time checks on every hit.** A hit applies `exp`, `nbf` and `iat` with the same
//!   clock-skew rule as a full validation; an expired entry answers
//!   [`TokenRejection::Expired`](crate::TokenRejection::Expired) and is dropped. No entry
//!   outlives its token.
//! * **Retired keys.** A hit is served only while the key that signed the token (its
//!   `kid`) is still trusted by the cached key set. A key removed from the provider's
//!   JWKS stays trusted for [`MetadataConfig::retired_key_grace`](crate::metadata::MetadataConfig::retired_key_grace)
//!   (as for uncached tokens), then its tokens are validated in full again and refused:
//!   after an emergency rollover the cache keeps no token of the compromised key alive,
//!   and in no case beyond the token's own `exp`.
//! * **Bounded**: at most [`IdentityConfig::validated_token_cache`](crate::IdentityConfig)
//!   entries (default [`DEFAULT_VALIDATED_TOKENS`]; `0` turns the cache off). When full,
//!   expired entries are dropped first; if it is still full, about half of the entries
//!   (arbitrary ones) are dropped, and their tokens are verified again on their next use.
//! * **Diagnostics**: [`Identity::access_token_cache_stats`](crate::Identity::access_token_cache_stats)
//!   counts hits, misses and the signature verifications made for bearer tokens.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Default size of the validated-token cache (entries).
pub const DEFAULT_VALIDATED_TOKENS: usize = 10_000;

/// Counters of the validated-token cache, for diagnostics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessTokenCacheStats {
    /// Validations answered from the cache (no signature verification, no parsing).
    pub hits: u64,
    /// Validations that were not in the cache (checked in full).
    pub misses: u64,
    /// Signature verifications made for bearer tokens (a full validation makes one;
    /// a hit makes none).
    pub signature_verifications: u64,
    /// Entries held now.
    pub entries: usize,
}

/// What a hit needs to re-apply the time rules and the key check.
#[derive(Clone)]
pub(crate) struct Validated {
    pub(crate) claims: Arc<Map<String, Value>>,
    /// `exp`.
    pub(crate) expires: i64,
    /// The latest of `nbf` and `iat`, if any.
    pub(crate) not_before: Option<i64>,
    /// The `kid` of the key that verified the token.
    pub(crate) kid: Option<String>,
}

/// The cache; one per [`Identity`](crate::Identity).
pub(crate) struct ValidatedTokens {
    capacity: usize,
    /// Read-mostly: hits share the read lock.
    map: RwLock<HashMap<[u8; 32], Validated>>,
    hits: AtomicU64,
    misses: AtomicU64,
    verifications: AtomicU64,
}

impl ValidatedTokens {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: RwLock::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            verifications: AtomicU64::new(0),
        }
    }

    /// The key of `token` checked against `audiences`.
    pub(crate) fn key(token: &str, audiences: &[String]) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in std::iter::once(token).chain(audiences.iter().map(String::as_str)) {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Validated> {
        if self.capacity == 0 {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let found = map.get(key).cloned();
        drop(map);
        match found {
            Some(v) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Un-counts a hit that could not be served (expired or key no longer trusted).
    pub(crate) fn demote_hit(&self, key: &[u8; 32]) {
        self.hits.fetch_sub(1, Ordering::Relaxed);
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.remove(key);
    }

    pub(crate) fn remove(&self, key: &[u8; 32]) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }

    /// Keeps `value`; entries whose token expired at `now` (with `skew`) go first when
    /// the cache is full.
    pub(crate) fn insert(&self, key: [u8; 32], value: Validated, now: i64, skew: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, v| v.expires.saturating_add(skew) >= now);
            if map.len() >= self.capacity {
                // Full of live entries: drop about half (HashMap order is arbitrary), so
                // the next inserts cost nothing and no token is refused for it.
                let drop_count = map.len() / 2 + 1;
                let doomed: Vec<[u8; 32]> = map.keys().take(drop_count).copied().collect();
                for k in doomed {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, value);
    }

    pub(crate) fn count_verification(&self) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> AccessTokenCacheStats {
        AccessTokenCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            signature_verifications: self.verifications.load(Ordering::Relaxed),
            entries: self.map.read().unwrap_or_else(|p| p.into_inner()).len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires: i64) -> Validated {
        Validated {
            claims: Arc::default(),
            expires,
            not_before: None,
            kid: None,
        }
    }

    #[test]
    fn keys_separate_tokens_and_audience_sets() {
        let a = ["api://a".to_owned()];
        let ab = ["api://a".to_owned(), "b".to_owned()];
        assert_ne!(
            ValidatedTokens::key("t", &a),
            ValidatedTokens::key("t", &ab)
        );
        assert_ne!(ValidatedTokens::key("t", &a), ValidatedTokens::key("u", &a));
        // Length prefixes: moving bytes between token and audience changes the key.
        assert_ne!(
            ValidatedTokens::key("ta", &["b".to_owned()]),
            ValidatedTokens::key("t", &["ab".to_owned()])
        );
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = ValidatedTokens::new(100);
        for i in 0..1000u32 {
            let key = ValidatedTokens::key(&i.to_string(), &[]);
            cache.insert(key, entry(10_000), 0, 0);
            assert!(cache.stats().entries <= 100);
        }
        // Expired entries are dropped before live ones.
        let cache = ValidatedTokens::new(4);
        for i in 0..3u32 {
            cache.insert(ValidatedTokens::key(&i.to_string(), &[]), entry(5), 0, 0);
        }
        let live = ValidatedTokens::key("live", &[]);
        cache.insert(live, entry(100), 0, 0);
        cache.insert(ValidatedTokens::key("new", &[]), entry(100), 50, 0);
        assert_eq!(cache.stats().entries, 2);
        assert!(cache.get(&live).is_some());
    }

    #[test]
    fn capacity_zero_turns_the_cache_off() {
        let cache = ValidatedTokens::new(0);
        let key = ValidatedTokens::key("t", &[]);
        cache.insert(key, entry(100), 0, 0);
        assert!(cache.get(&key).is_none());
        assert_eq!(cache.stats().entries, 0);
    }
}
