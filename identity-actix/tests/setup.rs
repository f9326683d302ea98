//! Misconfigured apps answer with pages that say what to fix.

use actix_session::storage::CookieSessionStore;
use actix_web::{test, web, App, HttpResponse};
use identity_actix::identity_core::{Authority, Error, Identity, IdentityConfig};
use identity_actix::{Auth, SessionBackend, User};

async fn index(user: User) -> HttpResponse {
    HttpResponse::Ok().body(user.name().unwrap_or("?").to_owned())
}

#[actix_web::test]
async fn an_unconfigured_app_shows_the_configuration_page_everywhere() {
    let auth = Auth::unconfigured(Error::Config {
        message: "missing settings: CLIENT_ID".into(),
        missing: vec!["CLIENT_ID".into()],
    });
    let app = test::init_service(
        App::new()
            .configure(|cfg| auth.configure(cfg))
            .route("/", web::get().to(index))
            .wrap(auth.middleware(SessionBackend::memory())),
    )
    .await;
    for path in ["/", "/login", "/logout", "/getAToken", "/nowhere"] {
        let res = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert_eq!(res.status(), 500, "{path}");
        let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
        assert!(body.contains("Almost there"), "{path}: {body}");
        assert!(body.contains("CLIENT_ID"), "{path}: {body}");
    }
}

#[actix_web::test]
async fn a_cookie_session_store_is_refused() {
    // A configured Auth, so that only the store can be refused.
    let authority = Authority::parse("https://login.microsoftonline.com/common").unwrap();
    let identity = Identity::new(IdentityConfig::new("client", authority)).unwrap();
    let auth = Auth::builder(identity)
        .session_secret("x".repeat(40))
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .configure(|cfg| auth.configure(cfg))
            .route("/", web::get().to(index))
            .wrap(auth.middleware(CookieSessionStore::default())),
    )
    .await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(res.status(), 500);
    let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(body.contains("CookieSessionStore"), "{body}");
    assert!(body.contains("SESSION_STORE"), "{body}");
}
