//! The web-API extractors over real HTTP, against tokens from a local provider.

use axum::routing::get;
use axum::{Json, Router};
use identity_axum::identity_core::{
    Authority, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes,
};
use identity_axum::{ApiAccess, ApiAuth, ApiCaller, ApiRejection, ApiRequirement};
use identity_testkit::{
    Endpoint, Fault, TestKit, TestKitConfig, API_APP_CLIENT_ID, API_APP_SECRET, WEB_APP_CLIENT_ID,
    WEB_APP_SECRET,
};
use serde_json::{json, Value};
use std::time::Duration;

const ADELE: &str = "adele@contoso.onmicrosoft.com";

fn api_scope(scope: &str) -> String {
    format!("api://{API_APP_CLIENT_ID}/{scope}")
}

async fn kit_with(config: TestKitConfig) -> TestKit {
    TestKit::start(config.with_auto_approve(ADELE))
        .await
        .unwrap()
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

fn api_config(kit: &TestKit) -> IdentityConfig {
    let authority = Authority::parse(&kit.authority()).unwrap();
    IdentityConfig::new(API_APP_CLIENT_ID, authority)
        .with_client_secret(API_APP_SECRET)
        .with_redirect_uri(None::<String>)
}

/// A delegated token for `scopes`, through a headless sign-in of the web app.
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
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let url = reqwest::Url::parse(&location).unwrap();
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
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

struct AppOnly;
impl ApiRequirement for AppOnly {
    const APP_ROLES: &'static [&'static str] = &["Data.Read.All"];
}

struct SendMail;
impl ApiRequirement for SendMail {
    const SCOPES: &'static [&'static str] = &["Mail.Send"];
}

async fn me(caller: ApiCaller) -> Result<Json<Value>, ApiRejection> {
    caller.require_scopes(&["access_as_user"])?;
    Ok(Json(json!({
        "oid": caller.oid(),
        "tid": caller.tid(),
        "scopes": caller.scopes(),
        "app_only": caller.is_app_only(),
    })))
}

async fn app(caller: ApiAccess<AppOnly>) -> Json<Value> {
    Json(json!({ "app": caller.client_id(), "roles": caller.roles() }))
}

async fn mail(_: ApiAccess<SendMail>) -> &'static str {
    "sent"
}

async fn maybe(caller: Option<ApiCaller>) -> String {
    match caller {
        Some(c) => format!("caller {}", c.oid().unwrap_or("?")),
        None => "anonymous".into(),
    }
}

/// `/api/downstream?scope=…`: a token on behalf of the caller, then the kit's Graph.
async fn downstream(
    caller: ApiCaller,
    axum::extract::State(graph): axum::extract::State<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiRejection> {
    let scope = query
        .as_deref()
        .and_then(|q| q.strip_prefix("scope="))
        .unwrap_or("User.Read");
    let token = caller.on_behalf_of(&Scopes::parse(scope)).await?;
    let me: Value = reqwest::Client::new()
        .get(&graph)
        .bearer_auth(token.access_token.secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Ok(Json(json!({ "me": me, "from_cache": token.from_cache })))
}

fn routes(graph: String) -> Router<()> {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/app", get(app))
        .route("/api/mail", get(mail))
        .route("/api/maybe", get(maybe))
        .route("/api/downstream", get(downstream))
        .with_state(graph)
}

/// Serves `router` on a free loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn api_server(kit: &TestKit, api: ApiAuth) -> String {
    serve(routes(kit.api_url()).layer(api.layer())).await
}

struct Answer {
    status: u16,
    www: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// A problem JSON answer with this status.
    fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        let json = self.json();
        assert_eq!(json["status"], status, "{}", self.body);
        json
    }
}

async fn call(base: &str, path: &str, token: Option<&str>) -> Answer {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let header = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    let (www, content_type) = (header("www-authenticate"), header("content-type"));
    Answer {
        status: res.status().as_u16(),
        www,
        content_type,
        body: res.text().await.unwrap(),
    }
}

fn assert_invalid_token(a: &Answer) {
    let json = a.assert_problem(401);
    assert_eq!(json["type"], "urn:identity-rs:problem:invalid_token");
    let www = a.www.as_deref().unwrap_or_default();
    assert!(
        www.starts_with("Bearer ")
            && www.contains("error=\"invalid_token\"")
            && www.contains("error_description=\""),
        "{www}"
    );
}

#[tokio::test]
async fn valid_user_token_passes_with_the_caller() {
    let kit = kit_with(TestKitConfig::default()).await;
    let base = api_server(&kit, ApiAuth::new(Identity::new(api_config(&kit)).unwrap())).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    let a = call(&base, "/api/me", Some(&token)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let json = a.json();
    assert!(
        json["oid"].as_str().is_some_and(|o| !o.is_empty()),
        "{json}"
    );
    assert_eq!(json["scopes"], json!(["access_as_user"]));
    assert_eq!(json["app_only"], false);
    // Optional caller: present with a token, `None` without.
    assert!(call(&base, "/api/maybe", Some(&token))
        .await
        .body
        .starts_with("caller "));
    assert_eq!(call(&base, "/api/maybe", None).await.body, "anonymous");
}

#[tokio::test]
async fn refusals_are_problem_json_with_challenges() {
    let kit = kit_with(TestKitConfig::default()).await;
    let base = api_server(&kit, ApiAuth::new(Identity::new(api_config(&kit)).unwrap())).await;

    // Missing header.
    let a = call(&base, "/api/me", None).await;
    let json = a.assert_problem(401);
    assert_eq!(json["type"], "urn:identity-rs:problem:missing_token");
    assert!(a.www.as_deref().is_some_and(|w| w.starts_with("Bearer")));
    let a = call(&base, "/api/maybe", Some("not a jwt")).await;
    assert_invalid_token(&a);

    // Wrong audience: a Graph token.
    let graph = user_token(&kit, "User.Read").await;
    let a = call(&base, "/api/me", Some(&graph)).await;
    assert_invalid_token(&a);
    assert!(
        a.body.contains("aud") || a.body.contains("audience"),
        "{}",
        a.body
    );

    // Bad signature: one character of the signature changed.
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    let sig = token.rfind('.').unwrap() + 1;
    let mid = sig + (token.len() - sig) / 2;
    let mut bytes = token.clone().into_bytes();
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).unwrap();
    let a = call(&base, "/api/me", Some(&forged)).await;
    assert_invalid_token(&a);

    // Missing scope.
    let a = call(&base, "/api/mail", Some(&token)).await;
    let json = a.assert_problem(403);
    assert_eq!(json["type"], "urn:identity-rs:problem:insufficient_scope");
    let www = a.www.unwrap_or_default();
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"Mail.Send\""),
        "{www}"
    );

    // Missing role: a user token on the app-only route.
    let a = call(&base, "/api/app", Some(&token)).await;
    let json = a.assert_problem(403);
    assert_eq!(json["type"], "urn:identity-rs:problem:insufficient_role");
    assert!(a
        .www
        .is_some_and(|w| w.contains("error=\"insufficient_scope\"")));

    // An app-only token holds the role, but no delegated scope.
    let app = app_token(&kit).await;
    let a = call(&base, "/api/app", Some(&app)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json(),
        json!({ "app": WEB_APP_CLIENT_ID, "roles": ["Data.Read.All"] })
    );
    let a = call(&base, "/api/me", Some(&app)).await;
    a.assert_problem(403);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let kit =
        kit_with(TestKitConfig::default().with_access_token_lifetime(Duration::from_secs(1))).await;
    let mut config = api_config(&kit);
    config.clock_skew = Duration::ZERO;
    let base = api_server(&kit, ApiAuth::new(Identity::new(config).unwrap())).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = call(&base, "/api/me", Some(&token)).await;
    assert_invalid_token(&a);
    assert!(a.body.contains("exp"), "{}", a.body);
}

#[tokio::test]
async fn audiences_are_configurable() {
    let kit = kit_with(TestKitConfig::default()).await;
    let api = ApiAuth::builder(Identity::new(api_config(&kit)).unwrap())
        .audiences(["some-other-api"])
        .build();
    assert_eq!(api.audiences(), ["some-other-api"]);
    let base = api_server(&kit, api).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    assert_invalid_token(&call(&base, "/api/me", Some(&token)).await);
}

#[tokio::test]
async fn on_behalf_of_is_cached_and_consent_is_a_challenge() {
    let kit = kit_with(TestKitConfig::default()).await;
    let base = api_server(&kit, ApiAuth::new(Identity::new(api_config(&kit)).unwrap())).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;

    let before = kit.calls(Endpoint::Token);
    let a = call(&base, "/api/downstream", Some(&token)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["me"]["displayName"], "Adele Vance");
    assert_eq!(a.json()["from_cache"], false);
    assert_eq!(kit.calls(Endpoint::Token), before + 1, "one exchange");
    let a = call(&base, "/api/downstream", Some(&token)).await;
    assert_eq!(a.json()["from_cache"], true, "{}", a.body);
    assert_eq!(
        kit.calls(Endpoint::Token),
        before + 1,
        "served from the cache"
    );

    // Mail.Read is not consented: the client is told to come back with the user.
    let a = call(&base, "/api/downstream?scope=Mail.Read", Some(&token)).await;
    let json = a.assert_problem(401);
    assert_eq!(json["type"], "urn:identity-rs:problem:interaction_required");
    let www = a.www.unwrap_or_default();
    assert!(
        www.contains("error=\"interaction_required\"") && www.contains("scope=\"Mail.Read\""),
        "{www}"
    );
}

#[tokio::test]
async fn provider_down_is_503_json() {
    let kit = kit_with(TestKitConfig::default()).await;
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    // A fresh API: nothing of the provider cached yet.
    let base = api_server(&kit, ApiAuth::new(Identity::new(api_config(&kit)).unwrap())).await;
    kit.set_fault(Endpoint::Discovery, Some(Fault::Down));
    let a = call(&base, "/api/me", Some(&token)).await;
    let json = a.assert_problem(503);
    assert_eq!(json["type"], "urn:identity-rs:problem:unavailable");
    assert!(a.www.is_none());
    kit.set_fault(Endpoint::Discovery, None);
    assert_eq!(call(&base, "/api/me", Some(&token)).await.status, 200);
}

#[tokio::test]
async fn unconfigured_and_missing_layer_are_500_json() {
    let api = ApiAuth::unconfigured(identity_axum::identity_core::Error::Config {
        message: "missing settings: CLIENT_ID".into(),
        missing: vec!["CLIENT_ID".into()],
    });
    let base = serve(routes(String::new()).layer(api.layer())).await;
    for path in ["/api/me", "/anything"] {
        let a = call(&base, path, None).await;
        let json = a.assert_problem(500);
        assert_eq!(json["missing"], json!(["CLIENT_ID"]), "{path}");
        assert!(a.www.is_none());
    }

    let base = serve(routes(String::new())).await;
    let a = call(&base, "/api/me", Some("x")).await;
    let json = a.assert_problem(500);
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains(".layer(api.layer())"),
        "{json}"
    );
}
