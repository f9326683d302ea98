//! In-process checks with Rocket's local client: cookie attributes over https, a missing
//! fairing, apps with their own catchers.

mod common;

use common::*;
use identity_rocket::{failure_response, AuthRejection, IdentityFairing, User};
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::{catch, catchers, get, routes, Request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirect_uris_give_secure_host_prefixed_cookies() {
    let kit = kit().await;
    let figment = web_app_figment(&kit, free_port()).merge((
        "identity.redirect_uri",
        "https://app.example/auth/getAToken",
    ));
    let client = Client::untracked(app_rocket(figment, IdentityFairing::new()))
        .await
        .unwrap();
    let res = client.get("/").dispatch().await;
    assert_eq!(res.status(), Status::Unauthorized);
    let cookies: Vec<String> = res.headers().get("Set-Cookie").map(str::to_owned).collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert!(c.starts_with("__Host-identity_pending="), "{c}");
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(c.contains(flag), "{flag} missing in {c}");
    }
    // Routes sit beside the redirect URI's path.
    let login = client.get("/auth/login").dispatch().await;
    assert_eq!(login.status(), Status::Found);
    assert_eq!(
        client.get("/login").dispatch().await.status(),
        Status::NotFound
    );
}

#[get("/")]
fn guarded(user: User) -> String {
    user.name().unwrap_or("?").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_fairing_is_a_page_not_a_panic() {
    let rocket = rocket::custom(base_figment(free_port())).mount("/", routes![guarded]);
    let client = Client::untracked(rocket).await.unwrap();
    let res = client.get("/").dispatch().await;
    assert_eq!(res.status(), Status::InternalServerError);
}

#[catch(401)]
fn my_unauthorized(req: &Request<'_>) -> Result<AuthRejection, &'static str> {
    failure_response(req).ok_or("please sign in")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_may_bring_their_own_catchers() {
    let kit = kit().await;
    let figment = web_app_figment(&kit, free_port());
    let rocket = rocket::custom(figment)
        .attach(IdentityFairing::new().without_catchers())
        .mount("/", routes![guarded])
        .register("/", catchers![my_unauthorized]);
    let client = Client::untracked(rocket).await.unwrap();
    let res = client.get("/").dispatch().await;
    assert_eq!(res.status(), Status::Unauthorized);
    assert!(
        res.headers().get_one("Set-Cookie").is_some(),
        "the pending sign-in cookie is kept"
    );
    let html = res.into_string().await.unwrap();
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_uri_on_an_app_page_is_a_configuration_error() {
    let kit = kit().await;
    let figment = web_app_figment(&kit, free_port())
        .merge(("identity.redirect_uri", "http://127.0.0.1:5000/call_api"));
    let error = IdentityFairing::new()
        .app_paths(["/", "/call_api"])
        .validate(&figment)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("/call_api"), "{error}");
}
