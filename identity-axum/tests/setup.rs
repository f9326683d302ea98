//! Unconfigured apps, form_post callbacks and the SameSite/Secure decisions.

mod common;

use axum::routing::get;
use axum::Router;
use common::{kit, serve, Browser, Options};
use identity_axum::{Auth, SessionSettings, User};
use identity_core::Error;

async fn index(user: User) -> String {
    format!("Hello {}", user.name().unwrap_or("?"))
}

#[tokio::test]
async fn unconfigured_apps_show_the_configuration_page_everywhere() {
    let auth = Auth::unconfigured(Error::Config {
        message: "missing settings: CLIENT_ID".into(),
        missing: vec!["CLIENT_ID".into()],
    });
    assert!(auth.configuration_error().is_some());
    let app = Router::new()
        .route("/", get(index))
        .merge(auth.router())
        .layer(auth.layer())
        .layer(SessionSettings::for_auth(&auth).layer().await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut b = Browser::new();
    for path in [
        "/",
        "/login",
        "/logout",
        "/getAToken?code=x&state=y",
        "/nowhere",
    ] {
        let r = b.get(&format!("http://{addr}{path}")).await;
        assert_eq!(r.status, 500, "{path}");
        assert!(r.body.contains("Almost there"), "{path}: {}", r.body);
        assert!(r.body.contains("CLIENT_ID"), "{path}: {}", r.body);
        assert!(r.set_cookies().is_empty(), "{path}");
    }
    task.abort();
}

#[tokio::test]
async fn form_post_callbacks_complete() {
    let kit = kit().await;
    let app = serve(
        &kit,
        Router::new().route("/", get(index)),
        Options::default(),
    )
    .await;
    let mut b = Browser::new();
    let (_, callback) = b
        .follow_until(&app.url("/"), |u| u.contains("/getAToken"))
        .await;
    let callback = url::Url::parse(&callback.unwrap()).unwrap();
    let pairs: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
    let form: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let done = b.post_form(&app.url("/getAToken"), &form).await;
    assert_eq!(done.status, 302, "{done:?}");
    assert_eq!(done.location().as_deref(), Some("/"));
    assert_eq!(b.get(&app.url("/")).await.body, "Hello Adele Vance");
}

#[tokio::test]
async fn cookies_are_secure_over_https() {
    let kit = kit().await;
    let identity = common::identity(&kit, "https://app.example/getAToken");
    let auth = Auth::builder(identity)
        .session_secret("another test secret, 32 chars long")
        .build()
        .unwrap();
    assert!(auth.core().cookies().secure());
    assert_eq!(auth.core().routes().home_url, "https://app.example/");
    assert_eq!(auth.core().cookies().session_name(), "__Host-identity");

    let identity = common::identity(&kit, "http://127.0.0.1:5000/getAToken");
    let auth = Auth::new(identity).unwrap();
    assert!(!auth.core().cookies().secure());
}
