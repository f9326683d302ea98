//! Misconfigured apps answer with pages that say what to fix.

use actix_web::{test, web, App, HttpResponse};
use identity_actix::identity_core::Error;
use identity_actix::{Auth, MemoryBackend, User};
use std::sync::Arc;

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
            .wrap(auth.middleware(Arc::new(MemoryBackend::new()))),
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
