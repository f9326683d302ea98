//! Protecting a web API and calling further APIs on behalf of the caller, over real HTTP
//! against the local Entra-shaped provider.

use identity_core::web_api::default_audiences;
use identity_core::{
    ApiError, Authority, Error, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes,
    TokenRejection,
};
use identity_testkit::{Endpoint, TestKit, TestKitConfig};
use std::time::Duration;

const WEB_APP: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const API: &str = "22223333-cccc-4444-dddd-5555eeee6666";
const USER: &str = "adele@contoso.onmicrosoft.com";

fn api_scope() -> Scopes {
    Scopes::parse(&format!("api://{API}/access_as_user"))
}

async fn kit_with(f: impl FnOnce(&mut TestKitConfig)) -> TestKit {
    let mut config = TestKitConfig {
        auto_approve: Some(USER.into()),
        ..TestKitConfig::default()
    };
    f(&mut config);
    TestKit::start(config).await.unwrap()
}

fn authority(kit: &TestKit) -> Authority {
    Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap()
}

fn web_app(kit: &TestKit) -> Identity {
    Identity::new(
        IdentityConfig::new(WEB_APP, authority(kit))
            .with_client_secret("testkit-secret")
            .with_redirect_uri(Some("http://localhost:5000/getAToken")),
    )
    .unwrap()
}

fn api(kit: &TestKit) -> Identity {
    let mut config = IdentityConfig::new(API, authority(kit)).with_client_secret("api-secret");
    config.clock_skew = Duration::ZERO;
    Identity::new(config).unwrap()
}

/// Signs Adele in to the web app and returns a token for `scopes`.
async fn user_token(kit: &TestKit, scopes: &Scopes) -> String {
    let app = web_app(kit);
    let session = MemorySession::new();
    let start = app
        .log_in(
            &session,
            LogInOptions {
                scopes: scopes.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser.get(&start.auth_uri).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let params: Vec<(String, String)> = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    app.complete_log_in(
        &session,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .await
    .unwrap();
    app.get_token_for_user(&session, scopes)
        .await
        .unwrap()
        .access_token
        .secret()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_user_token_yields_the_caller() {
    let kit = kit_with(|_| {}).await;
    let token = user_token(&kit, &api_scope()).await;
    let caller = api(&kit)
        .validate_access_token(&token, &default_audiences(API))
        .await
        .unwrap();
    assert_eq!(caller.oid(), Some("00aa00aa-bb11-cc22-dd33-44ee44ee44ee"));
    assert_eq!(caller.tid(), Some(kit.workforce_tenant_id().as_str()));
    assert!(caller.scopes().contains(&"access_as_user"));
    assert!(!caller.is_app_only());
    caller.require_scopes(&["access_as_user"]).unwrap();
    let missing = caller.require_scopes(&["Files.Read"]).unwrap_err();
    assert_eq!(missing.status_code(), 403);
    let role = caller.require_any_role(&["Data.Read.All"]).unwrap_err();
    assert_eq!(role.status_code(), 403);
    assert_eq!(role.problem_json()["status"], 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_audience_is_rejected() {
    let kit = kit_with(|_| {}).await;
    let graph_token = user_token(&kit, &Scopes::parse("User.Read")).await;
    let err = api(&kit)
        .validate_access_token(&graph_token, &default_audiences(API))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidToken(TokenRejection::Audience(_))),
        "{err:?}"
    );
    assert_eq!(err.status_code(), 401);
    assert!(err
        .www_authenticate()
        .unwrap()
        .contains("error=\"invalid_token\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_another_issuer_is_rejected() {
    let kit = kit_with(|_| {}).await;
    let other = kit_with(|_| {}).await;
    let token = user_token(&other, &api_scope()).await;
    let err = api(&kit)
        .validate_access_token(&token, &default_audiences(API))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::InvalidToken(
                TokenRejection::Issuer(_)
                    | TokenRejection::Signature
                    | TokenRejection::UnknownKey(_)
            )
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_rejected() {
    let kit = kit_with(|c| c.access_token_lifetime = Duration::from_secs(1)).await;
    let token = user_token(&kit, &api_scope()).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = api(&kit)
        .validate_access_token(&token, &default_audiences(API))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidToken(TokenRejection::Expired)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_and_garbage_are_rejected() {
    let kit = kit_with(|_| {}).await;
    let token = user_token(&kit, &api_scope()).await;
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{rest}.{flipped}{}", &sig[1..]);
    let err = api(&kit)
        .validate_access_token(&forged, &default_audiences(API))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidToken(TokenRejection::Signature)),
        "{err:?}"
    );
    for garbage in ["", "abc", "a.b.c", "Bearer x"] {
        let err = api(&kit)
            .validate_access_token(garbage, &default_audiences(API))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidToken(TokenRejection::Malformed(_))),
            "{garbage:?}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_only_token_carries_the_role() {
    let kit = kit_with(|_| {}).await;
    let token = web_app(&kit)
        .get_token_for_client(&Scopes::parse(&format!("api://{API}/.default")))
        .await
        .unwrap();
    let caller = api(&kit)
        .validate_access_token(token.access_token.secret(), &default_audiences(API))
        .await
        .unwrap();
    assert!(caller.is_app_only());
    caller.require_any_role(&["Data.Read.All"]).unwrap();
    assert_eq!(
        caller
            .require_scopes(&["access_as_user"])
            .unwrap_err()
            .status_code(),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_behalf_of_calls_downstream_and_caches() {
    let kit = kit_with(|_| {}).await;
    let incoming = user_token(&kit, &api_scope()).await;
    let api = api(&kit);
    let caller = api
        .validate_access_token(&incoming, &default_audiences(API))
        .await
        .unwrap();
    kit.reset_counters();
    let graph = Scopes::parse("User.Read");
    let first = api
        .acquire_token_on_behalf_of(&caller, &incoming, &graph)
        .await
        .unwrap();
    assert!(!first.from_cache);
    let me = reqwest::Client::new()
        .get(kit.api_url())
        .bearer_auth(first.access_token.secret())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let body: serde_json::Value = me.json().await.unwrap();
    assert_eq!(body["displayName"], "Adele Vance");
    let second = api
        .acquire_token_on_behalf_of(&caller, &incoming, &graph)
        .await
        .unwrap();
    assert!(second.from_cache);
    assert_eq!(
        kit.calls(Endpoint::Token),
        1,
        "the second call is served from the cache"
    );

    // A new incoming token (say, after the client satisfied a claims challenge) is
    // exchanged again rather than answered from the old token's cache entry.
    let renewed = user_token(&kit, &api_scope()).await;
    let caller2 = api
        .validate_access_token(&renewed, &default_audiences(API))
        .await
        .unwrap();
    let third = api
        .acquire_token_on_behalf_of(&caller2, &renewed, &graph)
        .await
        .unwrap();
    assert!(!third.from_cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_behalf_of_without_consent_becomes_a_challenge() {
    let kit = kit_with(|_| {}).await;
    let incoming = user_token(&kit, &api_scope()).await;
    let api = api(&kit);
    let caller = api
        .validate_access_token(&incoming, &default_audiences(API))
        .await
        .unwrap();
    let err = api
        .acquire_token_on_behalf_of(&caller, &incoming, &Scopes::parse("Mail.Read"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InteractionRequired { .. }), "{err:?}");
    let api_err = ApiError::from_obo(err);
    assert_eq!(api_err.status_code(), 401);
    let header = api_err.www_authenticate().unwrap();
    assert!(
        header.contains("error=\"interaction_required\"") || header.contains("insufficient_claims"),
        "{header}"
    );
}
