//! The full sign-in round trip and its negative cases, over real HTTP against the local
//! Entra-shaped provider (identity-testkit).

use identity_core::{
    Authority, Error, FetchFailure, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes,
    SessionStore, Timeouts, TokenRejection,
};
use identity_testkit::{Endpoint, Fault, Tamper, TestKit, TestKitConfig};
use std::sync::Arc;
use std::time::Duration;

const CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const SECRET: &str = "testkit-secret";
const REDIRECT: &str = "http://localhost:5000/getAToken";
const USER: &str = "adele@contoso.onmicrosoft.com";

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

fn config_for(kit: &TestKit) -> IdentityConfig {
    let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    IdentityConfig::new(CLIENT_ID, authority)
        .with_client_secret(SECRET)
        .with_redirect_uri(Some(REDIRECT))
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            total: Duration::from_secs(30),
        })
}

fn identity(kit: &TestKit) -> Identity {
    Identity::new(config_for(kit)).unwrap()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows the auth URL like a browser would (auto-approve: one redirect back) and
/// returns the callback's query parameters.
async fn authorize(auth_uri: &str) -> Vec<(String, String)> {
    let resp = browser().get(auth_uri).send().await.unwrap();
    assert!(
        resp.status().is_redirection(),
        "authorize answered {}",
        resp.status()
    );
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn sign_in(
    id: &Identity,
    session: &MemorySession,
    options: LogInOptions,
) -> Result<identity_core::LoggedIn, Error> {
    let start = id.log_in(session, options).await?;
    let params = authorize(&start.auth_uri).await;
    id.complete_log_in(
        session,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_complete_get_token_cached_refreshed_log_out() {
    let kit = kit_with(|c| c.access_token_lifetime = Duration::from_secs(2)).await;
    let mut config = config_for(&kit);
    config.refresh_ahead = Duration::ZERO;
    let id = Identity::new(config).unwrap();
    let session = MemorySession::new();

    let start = id
        .log_in(
            &session,
            LogInOptions {
                next_link: Some("/call_api".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let url = url::Url::parse(&start.auth_uri).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_mode"], "query");
    assert_eq!(q["scope"], "offline_access openid profile");
    assert!(q["state"].len() >= 22 && q["nonce"].len() >= 22);

    let params = authorize(&start.auth_uri).await;
    let done = id
        .complete_log_in(
            &session,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await
        .unwrap();
    assert_eq!(done.next_link.as_deref(), Some("/call_api"));
    assert_eq!(done.user.name(), Some("Adele Vance"));
    assert_eq!(session.cycles(), 1, "session id cycled at sign-in");

    kit.reset_counters();
    let user = id.get_user(&session).await.unwrap().unwrap();
    assert_eq!(user.preferred_username(), Some(USER));
    assert_eq!(
        kit.calls(Endpoint::Token),
        0,
        "a page view makes no provider call"
    );

    let scopes = Scopes::parse("User.Read");
    let first = id.get_token_for_user(&session, &scopes).await.unwrap();
    assert!(!first.from_cache);
    assert_eq!(kit.calls(Endpoint::Token), 1);
    let cached = id.get_token_for_user(&session, &scopes).await.unwrap();
    assert!(cached.from_cache);
    assert_eq!(cached.access_token, first.access_token);
    assert_eq!(kit.calls(Endpoint::Token), 1, "cache hit makes no call");

    // The token works against the provider's protected API.
    let me = reqwest::Client::new()
        .get(kit.api_url())
        .bearer_auth(first.access_token.secret())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refreshed = id.get_token_for_user(&session, &scopes).await.unwrap();
    assert!(!refreshed.from_cache);
    assert_ne!(refreshed.access_token, first.access_token);
    assert_eq!(kit.calls(Endpoint::Token), 2, "one call per refresh");

    let out = id
        .log_out(&session, "http://localhost:5000/")
        .await
        .unwrap();
    let out = url::Url::parse(&out).unwrap();
    assert!(out.path().ends_with("/oauth2/v2.0/logout"), "{out}");
    let q: std::collections::HashMap<_, _> = out.query_pairs().into_owned().collect();
    assert_eq!(q["post_logout_redirect_uri"], "http://localhost:5000/");
    assert!(q.contains_key("id_token_hint"));
    assert!(id.get_user(&session).await.unwrap().is_none());
    assert!(session.get("identity.tokens").await.unwrap().is_none());
    // The provider accepts the end-session request and sends the browser back.
    let back = browser().get(out.as_str()).send().await.unwrap();
    assert!(back.status().is_redirection());
    assert_eq!(
        back.headers()["location"].to_str().unwrap(),
        "http://localhost:5000/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_state_and_replayed_code_are_refused() {
    let kit = kit().await;
    let id = identity(&kit);
    let session = MemorySession::new();
    let start = id.log_in(&session, LogInOptions::default()).await.unwrap();
    let mut params = authorize(&start.auth_uri).await;
    let good = params.clone();
    for p in params.iter_mut().filter(|(k, _)| k == "state") {
        p.1.push('x');
    }
    let err = id
        .complete_log_in(
            &session,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownState), "{err:?}");
    assert!(err.to_string().contains("not shared between instances"));

    id.complete_log_in(&session, good.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .await
        .unwrap();
    let replay = id
        .complete_log_in(&session, good.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .await
        .unwrap_err();
    assert!(matches!(replay, Error::UnknownState), "{replay:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_can_sign_in_at_once() {
    let kit = kit().await;
    let id = identity(&kit);
    let session = MemorySession::new();
    let a = id
        .log_in(
            &session,
            LogInOptions {
                next_link: Some("/a".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let b = id
        .log_in(
            &session,
            LogInOptions {
                next_link: Some("/b".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let pa = authorize(&a.auth_uri).await;
    let pb = authorize(&b.auth_uri).await;
    let db = id
        .complete_log_in(&session, pb.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .await
        .unwrap();
    let da = id
        .complete_log_in(&session, pa.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .await
        .unwrap();
    assert_eq!(db.next_link.as_deref(), Some("/b"));
    assert_eq!(da.next_link.as_deref(), Some("/a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_next_links_are_dropped() {
    let kit = kit().await;
    let id = identity(&kit);
    for evil in ["//evil.example", "https://evil.example", "/\\evil.example"] {
        let session = MemorySession::new();
        let done = sign_in(
            &id,
            &session,
            LogInOptions {
                next_link: Some(evil.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(done.next_link, None, "{evil}");
    }
}

async fn rejected_with(tamper: Tamper) -> Error {
    let kit = kit().await;
    kit.set_tamper(Some(tamper));
    let id = identity(&kit);
    let session = MemorySession::new();
    let err = sign_in(&id, &session, LogInOptions::default())
        .await
        .unwrap_err();
    assert!(
        id.get_user(&session).await.unwrap().is_none(),
        "no user stored after a rejected token"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_rejected() {
    let err = rejected_with(Tamper::BadSignature).await;
    assert!(
        matches!(err, Error::InvalidIdToken(TokenRejection::Signature)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_issuer_is_rejected() {
    let err = rejected_with(Tamper::WrongIssuer).await;
    assert!(
        matches!(err, Error::InvalidIdToken(TokenRejection::Issuer(_))),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_audience_is_rejected() {
    let err = rejected_with(Tamper::WrongAudience).await;
    assert!(
        matches!(err, Error::InvalidIdToken(TokenRejection::Audience(_))),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_rejected() {
    let err = rejected_with(Tamper::Expired).await;
    assert!(
        matches!(err, Error::InvalidIdToken(TokenRejection::Expired)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_the_future_is_rejected() {
    let err = rejected_with(Tamper::NotYetValid).await;
    assert!(
        matches!(err, Error::InvalidIdToken(TokenRejection::NotYetValid)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_nonce_is_rejected() {
    let err = rejected_with(Tamper::WrongNonce).await;
    assert!(
        matches!(err, Error::InvalidIdToken(TokenRejection::Nonce)),
        "{err:?}"
    );
    let err = rejected_with(Tamper::MissingNonce).await;
    assert!(
        matches!(err, Error::InvalidIdToken(TokenRejection::Nonce)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_and_hmac_are_rejected() {
    for t in [Tamper::AlgNone, Tamper::Hs256] {
        let err = rejected_with(t).await;
        assert!(
            matches!(err, Error::InvalidIdToken(TokenRejection::Algorithm(_))),
            "{err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_refetches_jwks_once_then_cools_down() {
    let kit = kit().await;
    let id = identity(&kit);
    sign_in(&id, &MemorySession::new(), LogInOptions::default())
        .await
        .unwrap();
    assert_eq!(kit.calls(Endpoint::Jwks), 1);
    kit.set_tamper(Some(Tamper::UnknownKid));
    for _ in 0..5 {
        let err = sign_in(&id, &MemorySession::new(), LogInOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidIdToken(TokenRejection::UnknownKey(_))),
            "{err:?}"
        );
    }
    assert_eq!(
        kit.calls(Endpoint::Jwks),
        2,
        "one refetch, then the cooldown holds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_is_followed() {
    let kit = kit().await;
    let id = identity(&kit);
    sign_in(&id, &MemorySession::new(), LogInOptions::default())
        .await
        .unwrap();
    kit.rotate_keys();
    sign_in(&id, &MemorySession::new(), LogInOptions::default())
        .await
        .unwrap();
    assert_eq!(kit.calls(Endpoint::Jwks), 2);
    assert_eq!(kit.calls(Endpoint::Discovery), 1, "discovery is cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_is_a_clear_error() {
    let kit = kit().await;
    kit.set_fault(Endpoint::Discovery, Some(Fault::Down));
    let id = identity(&kit);
    let err = id
        .log_in(&MemorySession::new(), LogInOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Discovery { .. }), "{err:?}");
    assert_eq!(err.status_code(), 503);

    // Nothing listening at all.
    let authority = Authority::entra("http://127.0.0.1:9", "common").unwrap();
    let id = Identity::new(IdentityConfig::new(CLIENT_ID, authority).with_client_secret(SECRET))
        .unwrap();
    let err = id
        .log_in(&MemorySession::new(), LogInOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_slow_is_bounded_by_the_timeout() {
    let kit = kit().await;
    kit.set_fault(Endpoint::Token, Some(Fault::Slow(Duration::from_secs(10))));
    let config = config_for(&kit).with_timeouts(Timeouts {
        connect: Duration::from_secs(1),
        total: Duration::from_secs(2),
    });
    let id = Identity::new(config).unwrap();
    let session = MemorySession::new();
    let start = id.log_in(&session, LogInOptions::default()).await.unwrap();
    let params = authorize(&start.auth_uri).await;
    let t = std::time::Instant::now();
    let err = id
        .complete_log_in(
            &session,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TokenEndpoint {
                reason: FetchFailure::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_5xx_answers_are_typed_errors() {
    let kit = kit().await;
    let id = identity(&kit);
    kit.set_fault(Endpoint::Discovery, Some(Fault::MalformedJson));
    let err = id
        .log_in(&MemorySession::new(), LogInOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
    kit.set_fault(Endpoint::Discovery, Some(Fault::Status(503)));
    let err = id
        .log_in(&MemorySession::new(), LogInOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_user_keeps_working_while_the_provider_is_down() {
    let kit = kit_with(|c| c.id_token_lifetime = Duration::from_secs(1)).await;
    let mut config = config_for(&kit);
    config.clock_skew = Duration::ZERO;
    // Retry at once once the provider is back (the backoff has its own test).
    config.renewal_backoff = Duration::ZERO;
    let id = Identity::new(config).unwrap();
    let session = MemorySession::new();
    sign_in(&id, &session, LogInOptions::default())
        .await
        .unwrap();
    // exp is whole seconds: two seconds later the ID token has certainly expired.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    kit.set_fault(Endpoint::Token, Some(Fault::Down));
    kit.reset_counters();
    let user = id.get_user(&session).await.unwrap();
    assert_eq!(kit.calls(Endpoint::Token), 1, "renewal was attempted");
    assert!(user.is_some(), "stale user kept while the provider is down");
    kit.set_fault(Endpoint::Token, None);
    kit.reset_counters();
    let renewed = id.get_user(&session).await.unwrap().unwrap();
    assert_eq!(
        kit.calls(Endpoint::Token),
        1,
        "renewed with the refresh token"
    );
    assert!(renewed.expires_at > user.unwrap().expires_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_one_session_share_one_refresh() {
    let kit = kit().await;
    let id = identity(&kit);
    let session = Arc::new(MemorySession::new());
    sign_in(&id, &session, LogInOptions::default())
        .await
        .unwrap();
    kit.reset_counters();
    let scopes = Scopes::parse("User.Read");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (id, session, scopes) = (id.clone(), session.clone(), scopes.clone());
        tasks.push(tokio::spawn(async move {
            id.get_token_for_user(&*session, &scopes).await
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().unwrap().access_token.secret().to_owned());
    }
    assert_eq!(kit.calls(Endpoint::Token), 1, "single-flight refresh");
    assert_eq!(tokens.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_asks_for_sign_in_without_looping() {
    let kit = kit().await;
    let id = identity(&kit);
    let session = MemorySession::new();
    sign_in(&id, &session, LogInOptions::default())
        .await
        .unwrap();
    kit.revoke_refresh_tokens(USER);
    kit.reset_counters();
    let scopes = Scopes::parse("User.Read");
    let err = id.get_token_for_user(&session, &scopes).await.unwrap_err();
    assert!(err.is_interaction_required(), "{err:?}");
    assert_eq!(kit.calls(Endpoint::Token), 1);
    let again = id.get_token_for_user(&session, &scopes).await.unwrap_err();
    assert!(again.is_interaction_required());
    assert_eq!(
        kit.calls(Endpoint::Token),
        1,
        "the dead refresh token is not tried again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconsented_scope_asks_for_incremental_consent() {
    let kit = kit().await;
    let id = identity(&kit);
    let session = MemorySession::new();
    sign_in(&id, &session, LogInOptions::default())
        .await
        .unwrap();
    let scopes = Scopes::parse("Mail.Read");
    match id.get_token_for_user(&session, &scopes).await.unwrap_err() {
        Error::InteractionRequired { scopes: s, .. } => assert_eq!(s, scopes),
        other => panic!("{other:?}"),
    }
    // Incremental consent: sign in again with the scope (auto-approve consents).
    sign_in(
        &id,
        &session,
        LogInOptions {
            scopes: scopes.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let t = id.get_token_for_user(&session, &scopes).await.unwrap();
    assert!(t.from_cache, "the sign-in's access token was cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_only_tokens_are_cached() {
    let kit = kit().await;
    let id = identity(&kit);
    let scopes = Scopes::parse("api://22223333-cccc-4444-dddd-5555eeee6666/.default");
    let a = id.get_token_for_client(&scopes).await.unwrap();
    let b = id.get_token_for_client(&scopes).await.unwrap();
    assert!(!a.from_cache && b.from_cache);
    assert_eq!(kit.calls(Endpoint::Token), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_secret_is_a_provider_error() {
    let kit = kit().await;
    let mut config = config_for(&kit);
    config = config.with_client_secret("wrong");
    let id = Identity::new(config).unwrap();
    let err = sign_in(&id, &MemorySession::new(), LogInOptions::default())
        .await
        .unwrap_err();
    match err {
        Error::Provider(p) => {
            assert_eq!(p.error, "invalid_client");
            assert!(p.codes().iter().any(|c| c == "AADSTS7000215"), "{p:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_sign_in() {
    let kit = kit().await;
    let config = config_for(&kit).with_redirect_uri(None::<String>);
    let id = Identity::new(config).unwrap();
    let session = MemorySession::new();
    let start = id.log_in(&session, LogInOptions::default()).await.unwrap();
    assert!(start.user_code.is_some());
    let done = id
        .complete_log_in(&session, std::iter::empty())
        .await
        .unwrap();
    assert_eq!(done.user.name(), Some("Adele Vance"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_record_stays_small() {
    let kit = kit().await;
    let id = identity(&kit);
    let session = MemorySession::new();
    sign_in(&id, &session, LogInOptions::default())
        .await
        .unwrap();
    id.get_token_for_user(&session, &Scopes::parse("User.Read"))
        .await
        .unwrap();
    let size = session.serialized_len();
    assert!(size <= 8 * 1024, "identity record is {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_page_views_share_one_renewal() {
    // The first ID token is issued "in the past" so that it expires within a second;
    // the renewed one, issued on the real clock, lives an hour, so no slow task can see
    // it expire again and start a second renewal.
    let kit = kit().await;
    kit.set_clock_offset(-(3900 - 1));
    let mut config = config_for(&kit);
    config.clock_skew = Duration::ZERO;
    let id = Identity::new(config).unwrap();
    let session = Arc::new(MemorySession::new());
    sign_in(&id, &session, LogInOptions::default())
        .await
        .unwrap();
    kit.set_clock_offset(0);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    kit.reset_counters();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (id, session) = (id.clone(), session.clone());
        tasks.push(tokio::spawn(async move { id.get_user(&*session).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    assert_eq!(
        kit.calls(Endpoint::Token),
        1,
        "one renewal for all concurrent page views"
    );
}
