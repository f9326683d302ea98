//! The bearer-token guards over real HTTP: valid tokens, wrong audience, missing scope.

mod common;

use common::*;
use identity_core::sessions::MemoryBackend;
use identity_core::{Authority, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes};
use identity_rocket::IdentityFairing;
use identity_testkit::{
    Endpoint, API_APP_CLIENT_ID, API_APP_SECRET, WEB_APP_CLIENT_ID, WEB_APP_SECRET,
};

/// The API app of the kit, served by the test routes.
async fn api_app(kit: &identity_testkit::TestKit) -> App {
    let port = free_port();
    let figment = base_figment(port)
        .merge(("identity.client_id", API_APP_CLIENT_ID))
        .merge(("identity.client_secret", API_APP_SECRET))
        .merge(("identity.authority", kit.authority()))
        .merge((
            "identity.redirect_uri",
            format!("http://127.0.0.1:{port}/getAToken"),
        ))
        .merge(("downstream", kit.api_url()));
    let store = MemoryBackend::new();
    launch(
        app_rocket(
            figment,
            IdentityFairing::new().session_backend(store.clone()),
        ),
        store,
    )
    .await
}

/// An app-only token of the web app for `scope`.
async fn client_token(kit: &identity_testkit::TestKit, scope: &str) -> String {
    let res: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/oauth2/v2.0/token", kit.authority()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_validated() {
    let kit = kit().await;
    let api = api_app(&kit).await;
    let http = reqwest::Client::new();
    let app_token = client_token(&kit, &format!("api://{API_APP_CLIENT_ID}/.default")).await;

    // Valid app-only token with the app role.
    let ok = http
        .get(api.url("/api/data"))
        .bearer_auth(&app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains(WEB_APP_CLIENT_ID));

    // No token.
    let none = http.get(api.url("/api/any")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(none.headers()["content-type"], "application/problem+json");

    // A token for another audience (Graph).
    let graph_token = client_token(&kit, "https://graph.microsoft.com/.default").await;
    let wrong = http
        .get(api.url("/api/any"))
        .bearer_auth(&graph_token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let challenge = wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert!(
        body["detail"].as_str().unwrap().contains("audience"),
        "{body}"
    );

    // A garbage token.
    let garbage = http
        .get(api.url("/api/any"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 401);

    // The app-only token lacks the delegated scope.
    let scope = http
        .get(api.url("/api/me"))
        .bearer_auth(&app_token)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(scope.status(), 403);
    let challenge = scope.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(scope.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = scope.json().await.unwrap();
    assert_eq!(body["status"], 403);
    assert_eq!(body["type"], "urn:identity-rs:problem:insufficient_scope");
}

/// A delegated token of Adele for `scopes`, through a headless sign-in of the web app.
async fn user_token(kit: &identity_testkit::TestKit, scopes: &str) -> String {
    let authority = Authority::parse(&kit.authority()).unwrap();
    let identity = Identity::new(
        IdentityConfig::new(WEB_APP_CLIENT_ID, authority)
            .with_client_secret(WEB_APP_SECRET)
            .with_redirect_uri(Some("http://localhost:5000/getAToken")),
    )
    .unwrap();
    let session = MemorySession::new();
    let scopes = Scopes::parse(scopes);
    let options = LogInOptions {
        scopes: scopes.clone(),
        ..LogInOptions::default()
    };
    let start = identity.log_in(&session, options).await.unwrap();
    let res = browser().get(&start.auth_uri).send().await.unwrap();
    let callback = url::Url::parse(&location(&res)).unwrap();
    let params: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
    identity
        .complete_log_in(
            &session,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await
        .unwrap();
    let token = identity
        .get_token_for_user(&session, &scopes)
        .await
        .unwrap();
    token.access_token.secret().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_callers_get_tokens_on_their_behalf_cached_and_consent_is_a_challenge() {
    let kit = kit().await;
    let api = api_app(&kit).await;
    let http = reqwest::Client::new();
    let token = user_token(&kit, &format!("api://{API_APP_CLIENT_ID}/access_as_user")).await;

    let before = kit.calls(Endpoint::Token);
    let first = http
        .get(api.url("/api/downstream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["me"]["displayName"], "Adele Vance", "{body}");
    assert_eq!(body["from_cache"], false);
    assert_eq!(kit.calls(Endpoint::Token), before + 1, "one exchange");

    let again: serde_json::Value = http
        .get(api.url("/api/downstream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["from_cache"], true, "{again}");
    assert_eq!(
        kit.calls(Endpoint::Token),
        before + 1,
        "served from the cache"
    );

    // Mail.Read was never consented: the calling client must come back with the user.
    let consent = http
        .get(api.url("/api/downstream?scope=Mail.Read"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 401);
    assert_eq!(
        consent.headers()["content-type"],
        "application/problem+json"
    );
    let www = consent.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        www.contains("error=\"interaction_required\"") && www.contains("Mail.Read"),
        "{www}"
    );
}
