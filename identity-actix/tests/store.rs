//! The session store behind the middleware: a real `redis-server` that goes away
//! (skipped with a message when `redis-server` is missing).

mod common;

use common::{Browser, ADELE};
use identity_actix::identity_core::sessions::StoreUrl;
use identity_testkit::suite::peers::RedisServer;
use std::time::Duration;

#[actix_web::test]
async fn an_unreachable_session_store_answers_503_with_the_engine_page() {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let kit = common::kit().await;
    let (listener, redirect) = common::listener();
    let auth = common::auth_for(&kit, &redirect);
    let backend = StoreUrl::parse(&redis.url())
        .unwrap()
        .open(10, Duration::from_secs(2))
        .await
        .unwrap();
    let app = common::serve_backend(listener, auth, backend);
    let mut browser = Browser::new();
    let page = browser.sign_in_at(&app.url("/")).await;
    assert_eq!(page.body, format!("Hello {}", "Adele Vance"), "{ADELE}");

    drop(redis);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for path in ["/", "/maybe"] {
        let page = browser.get(&app.url(path)).await;
        assert_eq!(page.status, 503, "{path}: {}", page.body);
        assert!(page.body.contains("session store"), "{path}: {}", page.body);
        assert_eq!(page.headers["retry-after"], "5");
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    app.stop().await;
}
