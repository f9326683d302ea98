//! identity-core against a hostile or broken provider, over real HTTP against the local
//! Entra-shaped provider (identity-testkit) and its fault and tamper controls.

use identity_core::metadata::MetadataConfig;
use identity_core::store::KEYS;
use identity_core::web_api::default_audiences;
use identity_core::{
    ApiError, Authority, Error, FetchFailure, Identity, IdentityConfig, LogInOptions,
    MemorySession, Scopes, SessionStore, Timeouts, TokenRejection,
};
use identity_testkit::{Endpoint, Fault, Tamper, TestKit, TestKitConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WEB_APP: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const WEB_SECRET: &str = "testkit-secret";
const API: &str = "22223333-cccc-4444-dddd-5555eeee6666";
const API_SECRET: &str = "api-secret";
const REDIRECT: &str = "http://localhost:5000/getAToken";
const USER: &str = "adele@contoso.onmicrosoft.com";
const OTHER_TENANT: &str = "bbbbcccc-1111-dddd-2222-eeee3333ffff";

async fn kit_with(f: impl FnOnce(&mut TestKitConfig)) -> TestKit {
    let mut config = TestKitConfig {
        auto_approve: Some(USER.into()),
        ..TestKitConfig::default()
    };
    f(&mut config);
    TestKit::start(config).await.expect("testkit starts")
}

async fn kit() -> TestKit {
    kit_with(|_| {}).await
}

fn tenant_authority(kit: &TestKit) -> Authority {
    Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap()
}

fn web_config(authority: Authority) -> IdentityConfig {
    IdentityConfig::new(WEB_APP, authority)
        .with_client_secret(WEB_SECRET)
        .with_redirect_uri(Some(REDIRECT))
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            total: Duration::from_secs(30),
        })
}

fn web_app(kit: &TestKit) -> Identity {
    Identity::new(web_config(tenant_authority(kit))).unwrap()
}

fn api_config(kit: &TestKit) -> IdentityConfig {
    IdentityConfig::new(API, tenant_authority(kit)).with_client_secret(API_SECRET)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn authorize(auth_uri: &str) -> Vec<(String, String)> {
    let resp = browser().get(auth_uri).send().await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn sign_in(id: &Identity, session: &MemorySession, scopes: &str) -> Result<(), Error> {
    let start = id
        .log_in(
            session,
            LogInOptions {
                scopes: Scopes::parse(scopes),
                ..Default::default()
            },
        )
        .await?;
    let params = authorize(&start.auth_uri).await;
    id.complete_log_in(
        session,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .await
    .map(|_| ())
}

/// A user token for the web API (Adele, `access_as_user`).
async fn user_token_for_api(kit: &TestKit) -> String {
    let app = web_app(kit);
    let session = MemorySession::new();
    sign_in(&app, &session, "").await.unwrap();
    let scopes = Scopes::parse(&format!("api://{API}/access_as_user"));
    app.get_token_for_user(&session, &scopes)
        .await
        .unwrap()
        .access_token
        .secret()
        .to_owned()
}

/// An app-only token of the web app for the web API, straight from the token endpoint.
async fn app_token_for_api(kit: &TestKit) -> String {
    let url = format!("{}/oauth2/v2.0/token", kit.authority());
    let scope = format!("api://{API}/.default");
    let body: Value = reqwest::Client::new()
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", WEB_APP),
            ("client_secret", WEB_SECRET),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The ID token of a sign-in with a nonce, and one from a refresh (no nonce), straight
/// from the provider's endpoints.
async fn raw_id_tokens(kit: &TestKit) -> (String, String) {
    let authority = kit.authority();
    let resp = browser()
        .get(format!("{authority}/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", WEB_APP),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile offline_access"),
            ("state", "s"),
            ("nonce", "n-123"),
        ])
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let token = |form: Vec<(&'static str, String)>| {
        let url = format!("{authority}/oauth2/v2.0/token");
        async move {
            let v: Value = reqwest::Client::new()
                .post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let first = token(vec![
        ("grant_type", "authorization_code".into()),
        ("client_id", WEB_APP.into()),
        ("client_secret", WEB_SECRET.into()),
        ("code", code),
        ("redirect_uri", REDIRECT.into()),
    ])
    .await;
    let refreshed = token(vec![
        ("grant_type", "refresh_token".into()),
        ("client_id", WEB_APP.into()),
        ("client_secret", WEB_SECRET.into()),
        (
            "refresh_token",
            first["refresh_token"].as_str().unwrap().into(),
        ),
        ("scope", "openid profile offline_access".into()),
    ])
    .await;
    (
        first["id_token"].as_str().unwrap().to_owned(),
        refreshed["id_token"].as_str().unwrap().to_owned(),
    )
}

async fn copy_session(from: &MemorySession) -> MemorySession {
    let to = MemorySession::new();
    for key in KEYS {
        if let Some(v) = from.get(key).await.unwrap() {
            to.insert(key, v).await.unwrap();
        }
    }
    to
}

// ------------------------------------------------------------------ still accepted, must be refused

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_without_sub_or_iat_fails_the_sign_in() {
    let kit = kit().await;
    let id = web_app(&kit);
    for (tamper, claim) in [(Tamper::MissingSub, "sub"), (Tamper::MissingIat, "iat")] {
        kit.set_tamper(Some(tamper));
        let session = MemorySession::new();
        let err = sign_in(&id, &session, "").await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidIdToken(TokenRejection::MissingClaim(c)) if c == claim),
            "{claim}: {err:?}"
        );
        assert_eq!(err.status_code(), 401);
        assert!(
            id.get_user(&session).await.unwrap().is_none(),
            "not signed in"
        );
    }
    kit.set_tamper(None);
    sign_in(&id, &MemorySession::new(), "").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_naming_another_issuer_is_refused_for_an_oidc_authority() {
    let kit = kit().await;
    let issuer = format!("{}/v2.0", kit.authority());
    let authority = Authority::oidc(&issuer).unwrap();
    // The honest document signs in.
    let id = Identity::new(web_config(authority.clone())).unwrap();
    sign_in(&id, &MemorySession::new(), "").await.unwrap();

    for evil in [
        // another host
        format!("http://evil.example/{}/v2.0", kit.workforce_tenant_id()),
        // another path on the same host
        format!("{}/{OTHER_TENANT}/v2.0", kit.base_url()),
    ] {
        kit.set_discovery_issuer(Some(evil.clone()));
        let id = Identity::new(web_config(authority.clone())).unwrap();
        let err = id
            .log_in(&MemorySession::new(), LogInOptions::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Discovery { .. }), "{err:?}");
        assert!(text.contains(&evil) && text.contains(&issuer), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_removed_from_the_jwks_is_dropped_after_the_grace_period() {
    let kit = kit().await;
    let mut config = api_config(&kit);
    config.metadata = MetadataConfig {
        retired_key_grace: Duration::from_millis(3000),
        jwks_cooldown: Duration::ZERO,
        ..MetadataConfig::default()
    };
    let api = Identity::new(config).unwrap();
    let audiences = default_audiences(API);
    let old = app_token_for_api(&kit).await;
    // Validated, then served from the cache (which records that its key is trusted).
    api.validate_access_token(&old, &audiences).await.unwrap();
    api.validate_access_token(&old, &audiences).await.unwrap();
    assert_eq!(api.access_token_cache_stats().hits, 1);

    // Emergency rollover: the old key leaves the JWKS at once.
    kit.retire_keys_now();
    let new = app_token_for_api(&kit).await;
    api.validate_access_token(&new, &audiences).await.unwrap();
    // Within the grace period the old key still verifies (a flapping JWKS loses nothing).
    api.validate_access_token(&old, &audiences).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_are_refused_as_api_access_tokens() {
    let kit = kit().await;
    // A web API registered under the web app's own client id: ID tokens of the web app
    // have its issuer, audience and keys.
    let api = Identity::new(IdentityConfig::new(WEB_APP, tenant_authority(&kit))).unwrap();
    let (signed_in, refreshed) = raw_id_tokens(&kit).await;
    for id_token in [&signed_in, &refreshed] {
        let err = api
            .validate_access_token(id_token, &default_audiences(WEB_APP))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::InvalidToken(TokenRejection::NotAnAccessToken(_))
            ),
            "{err:?}"
        );
    }

    // Real access tokens pass, and app-only is decided by idtyp.
    let api = Identity::new(api_config(&kit)).unwrap();
    let app = api
        .validate_access_token(&app_token_for_api(&kit).await, &default_audiences(API))
        .await
        .unwrap();
    assert!(app.is_app_only());
    let user = api
        .validate_access_token(&user_token_for_api(&kit).await, &default_audiences(API))
        .await
        .unwrap();
    assert!(!user.is_app_only(), "Adele's token carries roles and scp");
    assert!(!user.roles().is_empty() && user.require_scopes(&["access_as_user"]).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_response_iss_must_be_the_expected_issuer() {
    let kit = kit().await;
    let id = web_app(&kit);
    kit.set_authorization_response_iss(Some("https://evil.example/v2.0".into()));
    let err = sign_in(&id, &MemorySession::new(), "").await.unwrap_err();
    assert!(
        matches!(&err, Error::CallbackIssuer { actual: Some(a), .. } if a == "https://evil.example/v2.0"),
        "{err:?}"
    );
    assert_eq!(err.status_code(), 400);
    assert_eq!(kit.calls(Endpoint::Token), 0, "no code was redeemed");

    // The right issuer passes, on a tenant and through the multi-tenant template.
    kit.set_authorization_response_iss(Some(format!("{}/v2.0", kit.authority())));
    sign_in(&id, &MemorySession::new(), "").await.unwrap();
    let common = Authority::entra(&kit.base_url(), "common").unwrap();
    let multi = Identity::new(web_config(common)).unwrap();
    sign_in(&multi, &MemorySession::new(), "").await.unwrap();
    kit.set_authorization_response_iss(Some(format!("{}/{OTHER_TENANT}/v2.0x", kit.base_url())));
    assert!(matches!(
        sign_in(&multi, &MemorySession::new(), "").await,
        Err(Error::CallbackIssuer { .. })
    ));
}

// ------------------------------------------------------------------ accepted wrongly the other way

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_access_tokens_are_accepted_by_an_api_registered_for_them() {
    let kit = kit_with(|c| c.v1_access_token_apps = vec![API.into()]).await;
    let audiences = default_audiences(API);
    let app_token = app_token_for_api(&kit).await;
    let user_token = user_token_for_api(&kit).await;
    let tenant_api = Identity::new(api_config(&kit)).unwrap();
    let common = Authority::entra(&kit.base_url(), "organizations").unwrap();
    let multi_api =
        Identity::new(IdentityConfig::new(API, common).with_client_secret(API_SECRET)).unwrap();
    for api in [&tenant_api, &multi_api] {
        let app = api
            .validate_access_token(&app_token, &audiences)
            .await
            .unwrap();
        assert_eq!(app.claim("ver"), Some("1.0"));
        assert!(app
            .claim("iss")
            .unwrap()
            .ends_with(&format!("/{}/", kit.workforce_tenant_id())));
        assert!(app.is_app_only());
        assert_eq!(app.client_id(), Some(WEB_APP));
        let user = api
            .validate_access_token(&user_token, &audiences)
            .await
            .unwrap();
        assert_eq!(user.claim("ver"), Some("1.0"));
        assert!(user.require_scopes(&["access_as_user"]).is_ok());
    }
    // The v1 rules still bind the tenant: another tenant's allow-list refuses it.
    let mut config = api_config(&kit);
    config.allowed_tenants = vec![OTHER_TENANT.into()];
    let strict = Identity::new(config).unwrap();
    assert!(strict
        .validate_access_token(&app_token, &audiences)
        .await
        .is_err());
}

// ------------------------------------------------------------------ refresh under concurrency and rotation

/// Signs Adele in with an ID token and an access token that expire within two seconds.
async fn expiring_session(id: &Identity) -> MemorySession {
    let session = MemorySession::new();
    sign_in(id, &session, "").await.unwrap();
    id.get_token_for_user(&session, &Scopes::parse("User.Read"))
        .await
        .unwrap();
    // exp is whole seconds: after this both have certainly expired.
    tokio::time::sleep(PAST_EXPIRY).await;
    session
}

/// Longer than the access token lifetime of [`rotating_kit_config`] plus a second.
const PAST_EXPIRY: Duration = Duration::from_millis(3100);

fn rotating_kit_config(c: &mut TestKitConfig) {
    c.refresh_token_reuse_detection = true;
    c.id_token_lifetime = Duration::from_secs(1);
    c.access_token_lifetime = Duration::from_secs(2);
}

fn rotating_client(kit: &TestKit) -> Identity {
    let mut config = web_config(tenant_authority(kit));
    config.clock_skew = Duration::ZERO;
    config.refresh_ahead = Duration::ZERO;
    Identity::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewal_and_token_requests_at_once_redeem_the_refresh_token_once() {
    let kit = kit_with(rotating_kit_config).await;
    let id = rotating_client(&kit);
    let session = Arc::new(expiring_session(&id).await);
    kit.reset_counters();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (id, session, barrier) = (id.clone(), session.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            if i % 2 == 0 {
                id.get_user(&*session).await.map(|u| u.is_some())
            } else {
                id.get_token_for_user(&*session, &Scopes::parse("User.Read"))
                    .await
                    .map(|_| true)
            }
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap(), "still signed in");
    }
    let calls = kit.calls(Endpoint::Token);
    assert!(calls <= 2, "{calls} token requests");
    // Nothing was replayed: the grant is alive and the next refresh works.
    tokio::time::sleep(PAST_EXPIRY).await;
    assert!(id.get_user(&*session).await.unwrap().is_some());
    id.get_token_for_user(&*session, &Scopes::parse("User.Read"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_make_one_refresh_and_the_next_request_none() {
    let kit = kit_with(rotating_kit_config).await;
    let id = rotating_client(&kit);
    let session = Arc::new(expiring_session(&id).await);
    kit.reset_counters();
    let scopes = Scopes::parse("User.Read");
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (id, session, barrier, scopes) =
            (id.clone(), session.clone(), barrier.clone(), scopes.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            id.get_token_for_user(&*session, &scopes).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(kit.calls(Endpoint::Token), 1);
    let next = id.get_token_for_user(&*session, &scopes).await.unwrap();
    assert!(next.from_cache);
    assert_eq!(kit.calls(Endpoint::Token), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_of_the_session_uses_the_finished_refresh_instead_of_replaying_it() {
    let kit = kit_with(rotating_kit_config).await;
    let id = rotating_client(&kit);
    let session = expiring_session(&id).await;
    // Another request of the session loaded the record before the refresh and writes it
    // back late, as concurrent requests do with whole-record session stores.
    let stale = copy_session(&session).await;
    id.get_token_for_user(&session, &Scopes::parse("User.Read"))
        .await
        .unwrap();
    kit.reset_counters();
    // The stale copy asks for other scopes: it continues from the finished refresh.
    let other = Scopes::parse(&format!("api://{API}/access_as_user"));
    id.get_token_for_user(&stale, &other).await.unwrap();
    assert_eq!(
        kit.calls(Endpoint::Token),
        1,
        "one refresh, with the new refresh token"
    );
    assert!(id.get_user(&stale).await.unwrap().is_some());
    // Its access token for the first scopes came from the finished refresh.
    assert!(
        id.get_token_for_user(&stale, &Scopes::parse("User.Read"))
            .await
            .unwrap()
            .from_cache
    );
    // Nothing was replayed: the original session still refreshes.
    tokio::time::sleep(PAST_EXPIRY).await;
    id.get_token_for_user(&session, &other).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_first_on_behalf_of_calls_make_one_exchange() {
    let kit = kit().await;
    let api = Identity::new(api_config(&kit)).unwrap();
    let token = user_token_for_api(&kit).await;
    let caller = api
        .validate_access_token(&token, &default_audiences(API))
        .await
        .unwrap();
    kit.reset_counters();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (api, caller, token, barrier) =
            (api.clone(), caller.clone(), token.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            api.acquire_token_on_behalf_of(&caller, &token, &Scopes::parse("User.Read"))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(kit.calls(Endpoint::Token), 1);
}

// ------------------------------------------------------------------ bounded failure

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_provider_answers_are_cut_off() {
    let kit = kit().await;
    let huge = Some(Fault::Oversized(8 << 30)); // 8 GiB, streamed
    let too_large = |e: &Error| e.to_string().contains("exceeded");

    kit.set_fault(Endpoint::Discovery, huge.clone());
    let t = Instant::now();
    let err = web_app(&kit)
        .log_in(&MemorySession::new(), LogInOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Discovery { .. }) && too_large(&err),
        "{err}"
    );
    kit.set_fault(Endpoint::Discovery, None);

    for endpoint in [Endpoint::Token, Endpoint::Jwks] {
        let id = web_app(&kit);
        let session = MemorySession::new();
        let start = id.log_in(&session, LogInOptions::default()).await.unwrap();
        let params = authorize(&start.auth_uri).await;
        kit.set_fault(endpoint, huge.clone());
        let err = id
            .complete_log_in(
                &session,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .await
            .unwrap_err();
        match (&err, endpoint) {
            (
                Error::TokenEndpoint {
                    reason: FetchFailure::TooLarge(_),
                    ..
                },
                Endpoint::Token,
            )
            | (
                Error::Jwks {
                    reason: FetchFailure::TooLarge(_),
                    ..
                },
                Endpoint::Jwks,
            ) => {}
            _ => panic!("{endpoint:?}: {err:?}"),
        }
        kit.set_fault(endpoint, None);
    }

    // APIs called through the library's client (userinfo, Graph) are capped too.
    kit.set_fault(Endpoint::Api, huge);
    let http = identity_core::HttpClient::new(Timeouts::default()).unwrap();
    let err = http.get_with_bearer(&kit.api_url(), "t").await.unwrap_err();
    assert!(matches!(err, FetchFailure::TooLarge(_)), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "nothing read to the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_that_is_down_is_asked_again_only_after_a_backoff() {
    let kit = kit().await;
    let id = Identity::new(web_config(tenant_authority(&kit)).with_timeouts(Timeouts {
        connect: Duration::from_secs(1),
        total: Duration::from_millis(700),
    }))
    .unwrap();
    // The provider hangs: each fetch fails after the timeout.
    kit.set_fault(
        Endpoint::Discovery,
        Some(Fault::Slow(Duration::from_secs(5))),
    );
    // Concurrent requests behind one failing fetch share its error.
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (id, barrier) = (id.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            id.log_in(&MemorySession::new(), LogInOptions::default())
                .await
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Err(Error::Discovery { .. })));
    }
    assert_eq!(kit.calls(Endpoint::Discovery), 1);
    // One failure is retried by the next request; after two, a backoff holds.
    let log_in = || async {
        id.log_in(&MemorySession::new(), LogInOptions::default())
            .await
    };
    assert!(log_in().await.is_err());
    assert_eq!(kit.calls(Endpoint::Discovery), 2);
    for _ in 0..5 {
        assert!(log_in().await.is_err());
    }
    assert_eq!(kit.calls(Endpoint::Discovery), 2, "backing off");
    kit.set_fault(Endpoint::Discovery, None);
    tokio::time::sleep(MetadataConfig::default().backoff_after(2)).await;
    log_in().await.unwrap();
    assert_eq!(kit.calls(Endpoint::Discovery), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_is_not_retried_on_every_page_view() {
    let kit = kit_with(|c| c.id_token_lifetime = Duration::from_secs(1)).await;
    let mut config = web_config(tenant_authority(&kit));
    config.clock_skew = Duration::ZERO;
    config.renewal_backoff = Duration::from_secs(2);
    let id = Identity::new(config).unwrap();
    let session = MemorySession::new();
    sign_in(&id, &session, "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    kit.set_fault(Endpoint::Token, Some(Fault::Down));
    kit.reset_counters();
    for _ in 0..5 {
        assert!(
            id.get_user(&session).await.unwrap().is_some(),
            "stale user kept"
        );
    }
    assert_eq!(kit.calls(Endpoint::Token), 1, "one renewal attempt");
    kit.set_fault(Endpoint::Token, None);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = id.get_user(&session).await.unwrap().unwrap();
    assert_eq!(kit.calls(Endpoint::Token), 2, "renewed after the backoff");
    assert!(before.expires_at > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_lifetimes_are_a_clear_error_not_a_panic() {
    let kit = kit().await;
    let id = web_app(&kit);
    for members in [
        json!({"expires_in": u64::MAX}),
        json!({"expires_in": -1}),
        json!({"ext_expires_in": 1e300}),
        json!({"expires_in": "99999999999999999999999"}),
    ] {
        kit.set_token_response_members(members.as_object().cloned());
        let err = sign_in(&id, &MemorySession::new(), "").await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::TokenEndpoint { .. }) && text.contains("expires_in"),
            "{members}: {text}"
        );
    }
    // Large but representable: accepted, and the expiry saturates instead of wrapping.
    kit.set_token_response_members(json!({"expires_in": 315_000_000}).as_object().cloned());
    let session = MemorySession::new();
    sign_in(&id, &session, "User.Read").await.unwrap();
    let t = id
        .get_token_for_user(&session, &Scopes::parse("User.Read"))
        .await
        .unwrap();
    assert!(t.from_cache && t.expires_at > 1_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_api_refusals_do_not_disclose_its_configuration() {
    let kit = kit().await;
    let token = user_token_for_api(&kit).await;
    let secret_audience = "api://internal-audience-name";
    let mut config = api_config(&kit);
    config.allowed_tenants = vec![OTHER_TENANT.into()];
    let api = Identity::new(config).unwrap();
    for audiences in [vec![secret_audience.to_owned()], default_audiences(API)] {
        let err = api
            .validate_access_token(&token, &audiences)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::InvalidToken(_)), "{err:?}");
        let told = format!("{} {}", err.www_authenticate().unwrap(), err.problem_json());
        for secret in [secret_audience, OTHER_TENANT, API] {
            assert!(!told.contains(secret), "{secret} disclosed in {told}");
        }
        assert!(told.contains("invalid_token"), "{told}");
    }
}
