//! The cache of validated bearer tokens of a web API.
//!
//! Verifying an RS256 signature and parsing a token's JSON costs far more than the rest
//! of a request to a small API, and clients send the same access token for up to an
//! hour. [`Identity::validate_access_token`](crate::Identity::validate_access_token)
//! therefore keeps the claims of each token it accepted:
//!
//! * **Key**: the token itself, compared in full, and the audiences asked for, so a
//!   token accepted for one audience set is never served to a check with another, and
//!   no hash collision can serve one token's claims for another. (A digest of the token
//!   as the key would keep the token out of the cache, but a cryptographic hash of a
//!   1.5 KB token costs about as much as the rest of a cached validation, on every
//!   request.) The tokens stay in this process's memory and are never logged or shown;
//!   an expired token is never served, and is dropped at its next use or when the cache
//!   fills. An entry takes about the token's size (1–2 KB for Entra access tokens), so
//!   the default capacity bounds the cache to about 20 MB. Only
//!   tokens that passed a full validation are inserted, so callers cannot fill the map
//!   with keys of their choosing. Issuer rules, tenants and keys come from the
//!   [`Identity`](crate::Identity)'s configuration, and each `Identity` has its own
//!   cache.
//! * **Only successes** are kept; a refused token is checked in full every time.
//! * **Time checks on every hit.** A hit applies `exp`, `nbf` and `iat` with the same
//!   clock-skew rule as a full validation; an expired entry answers
//!   [`TokenRejection::Expired`](crate::TokenRejection::Expired) and is dropped. No entry
//!   outlives its token.
//! * **Retired keys.** A hit is served only while the key that signed the token (its
//!   `kid`) is still trusted by the cached key set. That check is answered from the
//!   entry's previous one while the metadata cache has stored nothing new and the time
//!   the answer depends on (the key's end of grace, the discovery document's and key
//!   set's expiry) has not come: a lookup would give the same answer. A key removed from
//!   the provider's
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
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Default size of the validated-token cache (entries).
pub const DEFAULT_VALIDATED_TOKENS: usize = 10_000;

/// How the token caches hash their keys: a seeded fast hash of the last [`TAIL`] bytes
/// of each string written to it. A token's tail is its signature, random to anyone
/// without the signing key, so tokens spread as well as under a hash of the whole text,
/// at a tenth of the cost for a 1.5 KB token; keys are still compared in full, so two
/// tokens with the same tail only share a bucket. Only tokens that passed a full
/// validation are inserted: callers cannot choose colliding keys.
#[derive(Clone, Default)]
pub(crate) struct TailHash(foldhash::fast::RandomState);

/// The bytes of a key [`TailHash`] reads.
const TAIL: usize = 64;

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

/// The hasher of [`TailHash`].
pub(crate) struct TailHasher(foldhash::fast::FoldHasher<'static>);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(TAIL)..]);
    }

    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.0.write_usize(i);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

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
    /// Validations held now (a token checked against two audience sets holds two).
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
    pub(crate) kid: Option<Arc<str>>,
    /// The last check that the key set still trusts `kid`, shared by the entry's hits.
    pub(crate) trust: Arc<KeyTrust>,
}

/// When a check that the key set still trusts a key can be answered without looking
/// the key set up: the metadata cache has not changed since the last such check (its
/// [`epoch`](crate::metadata::MetadataCache::epoch)) and the time the answer depends on
/// has not come (the key's end of grace, the discovery document's and the key set's
/// expiry). Until then a lookup would find the same key set and give the same answer.
/// Epoch and time are one atomic word (epoch in the high half, whole seconds since the
/// process's [`clock base`](KeyTrust::now) in the low half, rounded down), so a hit
/// never pairs one check's epoch with another's time. `0`: no check yet. Only the
/// epoch's low 32 bits are kept: a stale check could match only if the metadata were
/// stored 2³² times between two hits of one token (fetches are rate-limited by the
/// cache's TTL and cooldowns).
#[derive(Debug, Default)]
pub(crate) struct KeyTrust(AtomicU64);

impl KeyTrust {
    /// Seconds since this process's clock base (monotonic).
    pub(crate) fn now() -> u64 {
        Self::base().elapsed().as_secs()
    }

    /// Whether the last check still holds at metadata epoch `epoch`.
    pub(crate) fn holds(&self, epoch: u64) -> bool {
        let word = self.0.load(Ordering::Acquire);
        let until = word & u64::from(u32::MAX);
        // `now < until` in whole seconds, both rounded down: the instant is before `until`.
        word >> 32 == epoch & u64::from(u32::MAX) && Self::now() < until
    }

    /// Records a check made at metadata epoch `epoch` that holds until `until`.
    pub(crate) fn set(&self, epoch: u64, until: std::time::Instant) {
        let secs = until
            .checked_duration_since(Self::base())
            .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)));
        self.0.store(
            (epoch & u64::from(u32::MAX)) << 32 | secs,
            Ordering::Release,
        );
    }

    fn base() -> std::time::Instant {
        static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(std::time::Instant::now)
    }
}

/// Most audience sets one token is kept for (an app with several APIs on one
/// `Identity`); a further one replaces the oldest.
const AUDIENCE_SETS_PER_TOKEN: usize = 4;

/// A token's validations, by the audience set each was made for.
type Entry = Vec<(Box<[String]>, Validated)>;

/// The cache; one per [`Identity`](crate::Identity).
pub(crate) struct ValidatedTokens {
    capacity: usize,
    /// Read-mostly: hits share the read lock. Keyed by the token text.
    map: RwLock<HashMap<Arc<str>, Entry, TailHash>>,
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

    /// The validation of `token` for `audiences`, if kept.
    /// With the token as the cache holds it (shared, not copied).
    pub(crate) fn get(&self, token: &str, audiences: &[String]) -> Option<(Arc<str>, Validated)> {
        if self.capacity == 0 {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let found = map.get_key_value(token).and_then(|(key, e)| {
            let (_, v) = e.iter().find(|(a, _)| **a == *audiences)?;
            Some((key.clone(), v.clone()))
        });
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
    pub(crate) fn demote_hit(&self, token: &str, audiences: &[String]) {
        self.hits.fetch_sub(1, Ordering::Relaxed);
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.remove(token, audiences);
    }

    pub(crate) fn remove(&self, token: &str, audiences: &[String]) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(token) {
            entry.retain(|(a, _)| **a != *audiences);
            if entry.is_empty() {
                map.remove(token);
            }
        }
    }

    /// Keeps `value` for `token` and `audiences`; entries whose token expired at `now`
    /// (with `skew`) go first when the cache is full. Returns the token as the cache holds
    /// it (`None`: the cache is off).
    pub(crate) fn insert(
        &self,
        token: &str,
        audiences: &[String],
        value: Validated,
        now: i64,
        skew: i64,
    ) -> Option<Arc<str>> {
        if self.capacity == 0 {
            return None;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(token) {
            map.retain(|_, e| e.iter().any(|(_, v)| v.expires.saturating_add(skew) >= now));
            if map.len() >= self.capacity {
                // Full of live entries: drop about half (HashMap order is arbitrary), so
                // the next inserts cost nothing and no token is refused for it.
                let drop_count = map.len() / 2 + 1;
                let doomed: Vec<Arc<str>> = map.keys().take(drop_count).cloned().collect();
                for k in doomed {
                    map.remove(&k);
                }
            }
        }
        let key = match map.get_key_value(token) {
            Some((key, _)) => key.clone(),
            None => Arc::from(token),
        };
        let entry = map.entry(key.clone()).or_default();
        entry.retain(|(a, _)| **a != *audiences);
        if entry.len() >= AUDIENCE_SETS_PER_TOKEN {
            entry.remove(0);
        }
        entry.push((audiences.into(), value));
        Some(key)
    }

    pub(crate) fn count_verification(&self) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> AccessTokenCacheStats {
        AccessTokenCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            signature_verifications: self.verifications.load(Ordering::Relaxed),
            entries: self
                .map
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(Vec::len)
                .sum(),
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
            trust: Arc::default(),
        }
    }

    #[test]
    fn entries_are_per_token_and_audience_set() {
        let a = ["api://a".to_owned()];
        let ab = ["api://a".to_owned(), "b".to_owned()];
        let cache = ValidatedTokens::new(10);
        cache.insert("t", &a, entry(100), 0, 0);
        assert!(cache.get("t", &a).is_some());
        assert!(cache.get("t", &ab).is_none(), "another audience set");
        assert!(cache.get("u", &a).is_none(), "another token");
        assert!(cache.get("t ", &a).is_none() && cache.get("", &a).is_none());
        cache.insert("t", &ab, entry(200), 0, 0);
        assert_eq!(cache.get("t", &a).map(|(_, v)| v.expires), Some(100));
        assert_eq!(cache.get("t", &ab).map(|(_, v)| v.expires), Some(200));
        assert_eq!(cache.stats().entries, 2, "one token, two audience sets");
        cache.remove("t", &a);
        assert!(cache.get("t", &a).is_none());
        assert!(cache.get("t", &ab).is_some());
        // A token checked against many audience sets keeps the latest few.
        for i in 0..10 {
            cache.insert("t", &[i.to_string()], entry(i), 0, 0);
        }
        assert!(cache.get("t", &["9".to_owned()]).is_some());
        assert!(cache.get("t", &["0".to_owned()]).is_none());
    }

    /// Keys are hashed by their tail only, and still compared in full: tokens that share
    /// the hashed bytes are told apart.
    #[test]
    fn tokens_with_the_same_tail_stay_apart() {
        let tail = "s".repeat(TAIL + 10);
        let (one, two) = (format!("header.one.{tail}"), format!("header.two.{tail}"));
        let cache = ValidatedTokens::new(10);
        cache.insert(&one, &[], entry(100), 0, 0);
        assert!(cache.get(&two, &[]).is_none());
        cache.insert(&two, &[], entry(200), 0, 0);
        assert_eq!(cache.get(&one, &[]).map(|(_, v)| v.expires), Some(100));
        assert_eq!(cache.get(&two, &[]).map(|(_, v)| v.expires), Some(200));
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = ValidatedTokens::new(100);
        for i in 0..1000u32 {
            cache.insert(&i.to_string(), &[], entry(10_000), 0, 0);
            assert!(cache.stats().entries <= 100);
        }
        // Expired entries are dropped before live ones.
        let cache = ValidatedTokens::new(4);
        for i in 0..3u32 {
            cache.insert(&i.to_string(), &[], entry(5), 0, 0);
        }
        cache.insert("live", &[], entry(100), 0, 0);
        cache.insert("new", &[], entry(100), 50, 0);
        assert_eq!(cache.stats().entries, 2);
        assert!(cache.get("live", &[]).is_some());
    }

    #[test]
    fn a_key_check_holds_for_its_epoch_until_its_time() {
        let now = std::time::Instant::now();
        let trust = KeyTrust::default();
        assert!(!trust.holds(0), "no check yet");
        trust.set(7, now + std::time::Duration::from_secs(60));
        assert!(trust.holds(7));
        assert!(!trust.holds(8), "the metadata changed since");
        trust.set(9, now);
        assert!(!trust.holds(9), "its time has come");
        trust.set(9, now - std::time::Duration::from_secs(1));
        assert!(!trust.holds(9));
    }

    #[test]
    fn capacity_zero_turns_the_cache_off() {
        let cache = ValidatedTokens::new(0);
        cache.insert("t", &[], entry(100), 0, 0);
        assert!(cache.get("t", &[]).is_none());
        assert_eq!(cache.stats().entries, 0);
    }
}
