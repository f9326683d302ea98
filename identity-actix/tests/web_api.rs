//! Bearer-token extractors against tokens from a local provider.

use actix_web::{test, web, App, HttpResponse};
use identity_actix::identity_core::{
    Authority, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes,
};
use identity_actix::{ApiAccess, ApiAuth, ApiCaller, ApiRejection, ApiRequirement};
use identity_testkit::{
    Endpoint, TestKit, TestKitConfig, API_APP_CLIENT_ID, API_APP_SECRET, WEB_APP_CLIENT_ID,
    WEB_APP_SECRET,
};

fn api_scope(scope: &str) -> String {
    format!("api://{API_APP_CLIENT_ID}/{scope}")
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

fn api_auth(kit: &TestKit) -> ApiAuth {
    let authority = Authority::parse(&kit.authority()).unwrap();
    let identity = Identity::new(
        IdentityConfig::new(API_APP_CLIENT_ID, authority).with_client_secret(API_APP_SECRET),
    )
    .unwrap();
    ApiAuth::new(identity)
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
    let url = url::Url::parse(&location).unwrap();
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

struct ReadData;
impl ApiRequirement for ReadData {
    const SCOPES: &'static [&'static str] = &["access_as_user"];
    const APP_ROLES: &'static [&'static str] = &["Data.Read.All"];
}

struct AppOnly;
impl ApiRequirement for AppOnly {
    const APP_ROLES: &'static [&'static str] = &["Data.Read.All"];
}

async fn me(caller: ApiCaller) -> Result<HttpResponse, ApiRejection> {
    caller.require_scopes(&["access_as_user"])?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "oid": caller.oid() })))
}

async fn data(caller: ApiAccess<ReadData>) -> HttpResponse {
    HttpResponse::Ok().body(format!("data for {}", caller.client_id().unwrap_or("?")))
}

async fn app_only(_: ApiAccess<AppOnly>) -> HttpResponse {
    HttpResponse::Ok().body("app")
}

/// `/api/downstream?scope=…`: a token on behalf of the caller, then the kit's Graph.
async fn downstream(
    caller: ApiCaller,
    graph: web::Data<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiRejection> {
    let scope = query.get("scope").map_or("User.Read", String::as_str);
    let token = caller.on_behalf_of(&Scopes::parse(scope)).await?;
    let me: serde_json::Value = reqwest::Client::new()
        .get(graph.as_str())
        .bearer_auth(token.access_token.secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "me": me, "from_cache": token.from_cache })))
}

macro_rules! api {
    ($auth:expr) => {
        api!($auth, String::new())
    };
    ($auth:expr, $graph:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($auth))
                .app_data(web::Data::new($graph))
                .route("/api/downstream", web::get().to(downstream))
                .route("/api/me", web::get().to(me))
                .route("/api/data", web::get().to(data))
                .route("/api/app", web::get().to(app_only)),
        )
        .await
    };
}

/// Calls `path` with an optional bearer token: (status, WWW-Authenticate, Content-Type,
/// body).
macro_rules! call {
    ($app:expr, $path:expr, $token:expr) => {{
        let token: Option<&str> = $token;
        let mut req = test::TestRequest::get().uri($path);
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let res = test::call_service(&$app, req.to_request()).await;
        let status = res.status().as_u16();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (www, content_type) = (header("www-authenticate"), header("content-type"));
        let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
        (status, www, content_type, body)
    }};
}

#[actix_web::test]
async fn a_valid_user_token_with_the_scope_passes() {
    let kit =
        TestKit::start(TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"))
            .await
            .unwrap();
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    let app = api!(api_auth(&kit));
    let (status, _, _, body) = call!(app, "/api/me", Some(&token));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"oid\":\""), "{body}");
    let (status, _, _, body) = call!(app, "/api/data", Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("data for {WEB_APP_CLIENT_ID}"));
}

#[actix_web::test]
async fn a_token_for_another_audience_is_401_with_a_challenge() {
    let kit =
        TestKit::start(TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"))
            .await
            .unwrap();
    let graph = user_token(&kit, "User.Read").await;
    let app = api!(api_auth(&kit));
    let (status, www, content_type, body) = call!(app, "/api/me", Some(&graph));
    assert_eq!(status, 401, "{body}");
    let www = www.expect("WWW-Authenticate");
    assert!(www.starts_with("Bearer "), "{www}");
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 401);
    assert!(!body.contains('<'), "never HTML: {body}");

    let (status, www, _, _) = call!(app, "/api/me", None);
    assert_eq!(status, 401);
    assert!(www.unwrap().starts_with("Bearer"));
    let (status, _, _, _) = call!(app, "/api/me", Some("not.a.jwt"));
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn a_missing_scope_is_403_problem_json() {
    let kit =
        TestKit::start(TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"))
            .await
            .unwrap();
    // An app-only token: valid for the API, with the app role and no delegated scope.
    let app_token = web_app(&kit)
        .get_token_for_client(&Scopes::parse(&api_scope(".default")))
        .await
        .unwrap();
    let token = app_token.access_token.secret();
    let app = api!(api_auth(&kit));
    let (status, www, content_type, body) = call!(app, "/api/me", Some(token));
    assert_eq!(status, 403, "{body}");
    assert!(www.unwrap().contains("error=\"insufficient_scope\""));
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 403);
    assert_eq!(
        problem["type"],
        "urn:identity-rs:problem:insufficient_scope"
    );
    // The app role satisfies the routes that accept it.
    assert_eq!(call!(app, "/api/app", Some(token)).0, 200);
    assert_eq!(call!(app, "/api/data", Some(token)).0, 200);
    // A user token without the role is refused on the app-only route.
    let user = user_token(&kit, &api_scope("access_as_user")).await;
    let (status, www, _, _) = call!(app, "/api/app", Some(&user));
    assert_eq!(status, 403);
    assert!(www.unwrap().contains("insufficient_scope"));
}

#[actix_web::test]
async fn an_api_without_auth_data_says_so_in_json() {
    let app = test::init_service(App::new().route("/api/me", web::get().to(me))).await;
    let (status, _, content_type, body) = call!(app, "/api/me", Some("x"));
    assert_eq!(status, 500);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert!(body.contains("web::Data"), "{body}");
    assert!(body.contains("missing_setup"), "{body}");
}

#[actix_web::test]
async fn on_behalf_of_is_cached_and_consent_is_a_challenge() {
    let kit =
        TestKit::start(TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"))
            .await
            .unwrap();
    let token = user_token(&kit, &api_scope("access_as_user")).await;
    let app = api!(api_auth(&kit), kit.api_url());

    let before = kit.calls(Endpoint::Token);
    let (status, _, _, body) = call!(app, "/api/downstream", Some(&token));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["me"]["displayName"], "Adele Vance", "{body}");
    assert_eq!(json["from_cache"], false);
    assert_eq!(kit.calls(Endpoint::Token), before + 1, "one exchange");

    let (status, _, _, body) = call!(app, "/api/downstream", Some(&token));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["from_cache"], true, "{body}");
    assert_eq!(
        kit.calls(Endpoint::Token),
        before + 1,
        "served from the cache"
    );

    // Mail.Read is not consented: the client is told to come back with the user.
    let (status, www, content_type, body) =
        call!(app, "/api/downstream?scope=Mail.Read", Some(&token));
    assert_eq!(status, 401, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        problem["type"],
        "urn:identity-rs:problem:interaction_required"
    );
    let www = www.unwrap_or_default();
    assert!(
        www.contains("error=\"interaction_required\"") && www.contains("scope=\"Mail.Read\""),
        "{www}"
    );
}
