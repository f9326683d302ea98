//! Starts the built web API against a local provider and calls it with real tokens.

use identity_core::{Authority, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes};
use identity_testkit::suite::{Sample, SampleLauncher};
use identity_testkit::{
    Endpoint, TestKit, TestKitConfig, API_APP_CLIENT_ID, API_APP_SECRET, WEB_APP_CLIENT_ID,
    WEB_APP_SECRET,
};
use serde_json::Value;

const ADELE: &str = "adele@contoso.onmicrosoft.com";

fn api_scope(scope: &str) -> String {
    format!("api://{API_APP_CLIENT_ID}/{scope}")
}

/// A kit whose API registration also exposes `Data.Write` (to ask for a token without
/// `access_as_user`).
async fn kit() -> TestKit {
    let mut config = TestKitConfig::default().with_auto_approve(ADELE);
    let mut api = config
        .apps
        .iter()
        .find(|a| a.client_id == API_APP_CLIENT_ID)
        .cloned()
        .expect("the kit has the API app");
    api.scopes.push("Data.Write".into());
    config = config.with_app_replaced(api);
    TestKit::start(config).await.unwrap()
}

/// The web API wired to `kit` as its API app; `extra` overrides variables.
async fn start_api(kit: &TestKit, extra: &[(&str, String)]) -> Sample {
    let mut launch = SampleLauncher::new(env!("CARGO_BIN_EXE_web-api"))
        .bare()
        .env("CLIENT_ID", API_APP_CLIENT_ID)
        .env("CLIENT_SECRET", API_APP_SECRET)
        .env("AUTHORITY", kit.authority())
        .env("DOWNSTREAM_ENDPOINT", kit.api_url())
        .env("DOWNSTREAM_SCOPE", "User.Read")
        .unset("API_AUDIENCE");
    for (k, v) in extra {
        launch = launch.env(k, v.clone());
    }
    launch.start().await
}

fn web_app(kit: &TestKit) -> Identity {
    let authority = Authority::parse(&kit.authority()).unwrap();
    Identity::new(
        IdentityConfig::new(WEB_APP_CLIENT_ID, authority)
            .with_client_secret(WEB_APP_SECRET)
            .with_redirect_uri(Some("http://localhost:5000/getAToken")),
    )
    .unwrap()
}

/// A delegated token of the web app for `scopes`, through a headless sign-in.
async fn user_token(kit: &TestKit, scopes: &str) -> String {
    let identity = web_app(kit);
    let session = MemorySession::new();
    let scopes = Scopes::parse(scopes);
    let start = identity
        .log_in(
            &session,
            LogInOptions {
                scopes: scopes.clone(),
                ..LogInOptions::default()
            },
        )
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http.get(&start.auth_uri).send().await.unwrap();
    let location = reqwest::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let params: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    identity
        .complete_log_in(
            &session,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await
        .unwrap();
    identity
        .get_token_for_user(&session, &scopes)
        .await
        .unwrap()
        .access_token
        .secret()
        .to_owned()
}

/// An app-only token of the web app for the API (client credentials).
async fn app_token(kit: &TestKit) -> String {
    web_app(kit)
        .get_token_for_client(&Scopes::parse(&api_scope(".default")))
        .await
        .unwrap()
        .access_token
        .secret()
        .to_owned()
}

struct Answer {
    status: u16,
    www: String,
    content_type: String,
    json: Value,
}

async fn get(sample: &Sample, path: &str, token: Option<&str>) -> Answer {
    let mut req = reqwest::Client::new().get(sample.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let header = |n: &str| {
        res.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (www, content_type) = (header("www-authenticate"), header("content-type"));
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {status} {text}\n{}", sample.log()));
    Answer {
        status,
        www,
        content_type,
        json,
    }
}

impl Answer {
    fn problem(&self, status: u16, kind: &str, log: &str) {
        assert_eq!(self.status, status, "{}\n{log}", self.json);
        assert_eq!(self.content_type, "application/problem+json");
        assert_eq!(
            self.json["type"],
            format!("urn:identity-rs:problem:{kind}"),
            "{}",
            self.json
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_calls_the_downstream_api_on_behalf_of_the_user() {
    let kit = kit().await;
    let api = start_api(&kit, &[]).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;

    let tokens = kit.calls(Endpoint::Token);
    let a = get(&api, "/api/me", Some(&token)).await;
    assert_eq!(a.status, 200, "{}\n{}", a.json, api.log());
    assert_eq!(a.json["displayName"], "Adele Vance");
    assert_eq!(a.json["userPrincipalName"], ADELE);
    assert_eq!(kit.calls(Endpoint::Token), tokens + 1, "one OBO exchange");
    assert_eq!(kit.calls(Endpoint::Api), 1);

    // The second call is served from the on-behalf-of cache.
    let a = get(&api, "/api/me", Some(&token)).await;
    assert_eq!(a.json["displayName"], "Adele Vance");
    assert_eq!(kit.calls(Endpoint::Token), tokens + 1, "no second exchange");
    assert_eq!(kit.calls(Endpoint::Api), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_missing_permissions_are_refused_as_json() {
    let kit = kit().await;
    let api = start_api(&kit, &[]).await;
    let log = api.log();

    // No token.
    let a = get(&api, "/api/me", None).await;
    a.problem(401, "missing_token", &log);
    assert!(a.www.starts_with("Bearer"), "{}", a.www);

    // Wrong audience: a Microsoft Graph token.
    let graph = user_token(&kit, "User.Read").await;
    let a = get(&api, "/api/me", Some(&graph)).await;
    a.problem(401, "invalid_token", &log);
    assert!(
        a.www.starts_with("Bearer ") && a.www.contains("error=\"invalid_token\""),
        "{}",
        a.www
    );

    // A token for this API without `access_as_user`.
    let write = user_token(&kit, &api_scope("Data.Write")).await;
    let a = get(&api, "/api/me", Some(&write)).await;
    a.problem(403, "insufficient_scope", &log);
    assert!(
        a.www.contains("error=\"insufficient_scope\"")
            && a.www.contains("scope=\"access_as_user\""),
        "{}",
        a.www
    );

    // /api/app: the app role, held by the web app's app-only token, not by a user token.
    let user = user_token(&kit, &api_scope("access_as_user")).await;
    let a = get(&api, "/api/app", Some(&user)).await;
    a.problem(403, "insufficient_role", &log);
    assert!(a.www.contains("error=\"insufficient_scope\""), "{}", a.www);
    let app = app_token(&kit).await;
    let a = get(&api, "/api/app", Some(&app)).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["app_id"], WEB_APP_CLIENT_ID);
    assert_eq!(a.json["roles"], serde_json::json!(["Data.Read.All"]));
    assert_eq!(a.json["app_only"], true);
    // ... and an app-only token has no delegated scope for /api/me.
    get(&api, "/api/me", Some(&app))
        .await
        .problem(403, "insufficient_scope", &log);

    // Unknown routes answer JSON too.
    get(&api, "/nothing", None)
        .await
        .problem(404, "not_found", &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_needed_downstream_is_a_challenge_for_the_client() {
    let kit = kit().await;
    let api = start_api(&kit, &[("DOWNSTREAM_SCOPE", "Mail.Read".into())]).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    let a = get(&api, "/api/me", Some(&token)).await;
    a.problem(401, "interaction_required", &api.log());
    assert!(
        a.www.contains("error=\"interaction_required\"") && a.www.contains("scope=\"Mail.Read\""),
        "{}",
        a.www
    );
    assert!(
        a.json["detail"].as_str().unwrap().contains("consent"),
        "{}",
        a.json
    );
    assert_eq!(
        kit.calls(Endpoint::Api),
        0,
        "the downstream API was not called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audiences_come_from_api_audience() {
    let kit = kit().await;
    let api = start_api(&kit, &[("API_AUDIENCE", "api://another-api, other".into())]).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    get(&api, "/api/me", Some(&token))
        .await
        .problem(401, "invalid_token", &api.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_every_route_names_the_missing_settings() {
    let api = SampleLauncher::new(env!("CARGO_BIN_EXE_web-api"))
        .bare()
        .start()
        .await;
    for path in ["/api/me", "/api/app", "/elsewhere"] {
        let a = get(&api, path, Some("x")).await;
        a.problem(500, "not_configured", &api.log());
        let missing = a.json["missing"].to_string();
        for name in ["CLIENT_ID", "AUTHORITY", "CLIENT_SECRET"] {
            assert!(missing.contains(name), "{path}: {missing}");
        }
    }
    // A client id and authority without a secret: on-behalf-of cannot work.
    let kit = kit().await;
    let api = SampleLauncher::new(env!("CARGO_BIN_EXE_web-api"))
        .bare()
        .env("CLIENT_ID", API_APP_CLIENT_ID)
        .env("AUTHORITY", kit.authority())
        .start()
        .await;
    let a = get(&api, "/api/me", None).await;
    a.problem(500, "not_configured", &api.log());
    assert_eq!(a.json["missing"], serde_json::json!(["CLIENT_SECRET"]));
}

#[tokio::test]
async fn a_cae_event_downstream_reaches_the_client_as_a_claims_challenge() {
    let kit = kit().await;
    let api = start_api(&kit, &[]).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    assert_eq!(get(&api, "/api/me", Some(&token)).await.status, 200);

    // The downstream token obtained on behalf of the caller is now revoked downstream.
    kit.cae_event(ADELE);
    let refused = get(&api, "/api/me", Some(&token)).await;
    assert_eq!(refused.status, 401, "{}", refused.json);
    assert!(
        refused.www.contains("error=\"insufficient_claims\""),
        "{}",
        refused.www
    );
    let claims = identity_core::ClaimsChallenge::from_www_authenticate(&refused.www)
        .expect("the claims challenge is passed to the client");

    // The client signs the user in again with the claims and retries with its new token.
    let identity = web_app(&kit);
    let session = MemorySession::new();
    let scopes = Scopes::parse(&api_scope("access_as_user"));
    let start = identity
        .log_in(
            &session,
            LogInOptions {
                scopes: scopes.clone(),
                claims: Some(claims),
                ..LogInOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(start.auth_uri.contains("claims="));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http.get(&start.auth_uri).send().await.unwrap();
    let location = reqwest::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let params: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    identity
        .complete_log_in(
            &session,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await
        .unwrap();
    let fresh = identity
        .get_token_for_user(&session, &scopes)
        .await
        .unwrap();
    assert_ne!(fresh.access_token.secret(), token);
    let ok = get(&api, "/api/me", Some(fresh.access_token.secret())).await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    assert_eq!(ok.json["userPrincipalName"], ADELE);
}
