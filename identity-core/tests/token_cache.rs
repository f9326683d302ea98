//! The validated-token cache of web APIs, over real HTTP against the local Entra-shaped
//! provider: hits make no signature verification, time rules apply on every hit, audience
//! sets never share entries, retired keys end cached validity, and the cache is bounded.

use identity_core::metadata::MetadataConfig;
use identity_core::web_api::default_audiences;
use identity_core::{
    AccessTokenCacheStats, ApiError, Authority, Identity, IdentityConfig, TokenRejection,
};
use identity_testkit::{TestKit, TestKitConfig};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WEB_APP: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const API: &str = "22223333-cccc-4444-dddd-5555eeee6666";

async fn kit_with(f: impl FnOnce(&mut TestKitConfig)) -> TestKit {
    let mut config = TestKitConfig::default();
    f(&mut config);
    TestKit::start(config).await.unwrap()
}

fn authority(kit: &TestKit) -> Authority {
    Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap()
}

fn api_with(kit: &TestKit, f: impl FnOnce(&mut IdentityConfig)) -> Identity {
    let mut config = IdentityConfig::new(API, authority(kit)).with_client_secret("api-secret");
    config.clock_skew = Duration::ZERO;
    f(&mut config);
    Identity::new(config).unwrap()
}

/// A fresh app-only token for the API, straight from the token endpoint (the core's own
/// client-credentials cache would hand back the same token).
async fn app_token(kit: &TestKit) -> String {
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        kit.base_url(),
        kit.workforce_tenant_id()
    );
    let scope = format!("api://{API}/.default");
    let resp: serde_json::Value = reqwest::Client::new()
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", WEB_APP),
            ("client_secret", "testkit-secret"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["access_token"].as_str().expect("a token").to_owned()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn sleep_until(t: f64) {
    let wait = t - now();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_served_without_a_signature_verification() {
    let kit = kit_with(|_| {}).await;
    let api = api_with(&kit, |_| {});
    let token = app_token(&kit).await;
    let audiences = default_audiences(API);
    let first = api.validate_access_token(&token, &audiences).await.unwrap();
    assert_eq!(
        api.access_token_cache_stats(),
        AccessTokenCacheStats {
            hits: 0,
            misses: 1,
            signature_verifications: 1,
            entries: 1
        }
    );
    for _ in 0..5 {
        let again = api.validate_access_token(&token, &audiences).await.unwrap();
        assert_eq!(again, first, "a hit yields the same caller");
    }
    let stats = api.access_token_cache_stats();
    assert_eq!((stats.hits, stats.signature_verifications), (5, 1));
    // A forged copy (same claims, another signature) is another key: checked, refused.
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{rest}.{flipped}{}", &sig[1..]);
    let err = api
        .validate_access_token(&forged, &audiences)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidToken(TokenRejection::Signature)),
        "{err:?}"
    );
    assert_eq!(api.access_token_cache_stats().signature_verifications, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_even_when_cached() {
    let kit = kit_with(|c| c.access_token_lifetime = Duration::from_secs(1)).await;
    // Skew 2 s: the cached token stays valid until exp + 2 s, as an uncached one would.
    let api = api_with(&kit, |c| c.clock_skew = Duration::from_secs(2));
    let token = app_token(&kit).await;
    let audiences = default_audiences(API);
    let caller = api.validate_access_token(&token, &audiences).await.unwrap();
    let exp = caller.claims["exp"].as_i64().unwrap() as f64;

    sleep_until(exp + 1.2).await;
    api.validate_access_token(&token, &audiences)
        .await
        .expect("within the skew after exp the token is still valid");
    let stats = api.access_token_cache_stats();
    assert_eq!((stats.hits, stats.signature_verifications), (1, 1));

    sleep_until(exp + 3.2).await;
    let err = api
        .validate_access_token(&token, &audiences)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidToken(TokenRejection::Expired)),
        "{err:?}"
    );
    let stats = api.access_token_cache_stats();
    assert_eq!(stats.entries, 0, "the expired entry is dropped");
    // Checked in full again: still expired.
    let err = api
        .validate_access_token(&token, &audiences)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidToken(TokenRejection::Expired)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_audience_set_is_not_served_from_the_cache() {
    let kit = kit_with(|_| {}).await;
    let api = api_with(&kit, |_| {});
    let token = app_token(&kit).await;
    let caller = api
        .validate_access_token(&token, &default_audiences(API))
        .await
        .unwrap();
    let aud = caller.claim("aud").unwrap().to_owned();

    // An API that accepts another audience only: refused, though the token is cached.
    let err = api
        .validate_access_token(&token, &["api://another-api".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidToken(TokenRejection::Audience(_))),
        "{err:?}"
    );
    // Another set that does hold the token's audience: its own entry, checked in full.
    api.validate_access_token(&token, &[aud]).await.unwrap();
    let stats = api.access_token_cache_stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.signature_verifications),
        (0, 3, 3)
    );
    assert_eq!(stats.entries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_bounded() {
    let kit = kit_with(|_| {}).await;
    let api = api_with(&kit, |c| c.validated_token_cache = 2);
    let audiences = default_audiences(API);
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(app_token(&kit).await);
    }
    for token in &tokens {
        api.validate_access_token(token, &audiences).await.unwrap();
        assert!(api.access_token_cache_stats().entries <= 2);
    }
    for token in &tokens {
        api.validate_access_token(token, &audiences).await.unwrap();
    }
    let stats = api.access_token_cache_stats();
    assert!(stats.entries <= 2, "{stats:?}");
    assert!(
        stats.signature_verifications >= 5 + 3,
        "tokens that did not fit are checked again: {stats:?}"
    );

    // Capacity 0: every token is checked in full.
    let uncached = api_with(&kit, |c| c.validated_token_cache = 0);
    for _ in 0..3 {
        uncached
            .validate_access_token(&tokens[0], &audiences)
            .await
            .unwrap();
    }
    let stats = uncached.access_token_cache_stats();
    assert_eq!((stats.signature_verifications, stats.entries), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_of_a_retired_key_is_refused_after_the_grace_period() {
    let kit = kit_with(|_| {}).await;
    let api = api_with(&kit, |c| {
        c.metadata = MetadataConfig {
            retired_key_grace: Duration::from_millis(2000),
            jwks_cooldown: Duration::ZERO,
            ..MetadataConfig::default()
        }
    });
    let audiences = default_audiences(API);
    let old = app_token(&kit).await;
    api.validate_access_token(&old, &audiences).await.unwrap();
    api.validate_access_token(&old, &audiences).await.unwrap();
    assert_eq!(api.access_token_cache_stats().signature_verifications, 1);

    // Emergency rollover: a token of the new key makes the API refetch the key set.
    kit.retire_keys_now();
    let new = app_token(&kit).await;
    api.validate_access_token(&new, &audiences).await.unwrap();
    assert_eq!(api.access_token_cache_stats().signature_verifications, 2);
    // Within the grace period the old token is still served from the cache.
    api.validate_access_token(&old, &audiences).await.unwrap();
    assert_eq!(api.access_token_cache_stats().signature_verifications, 2);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let err = api
        .validate_access_token(&old, &audiences)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidToken(TokenRejection::UnknownKey(_))),
        "{err:?}"
    );
    api.validate_access_token(&new, &audiences).await.unwrap();
}
