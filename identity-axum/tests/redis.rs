//! Sessions in a real `redis-server` (skipped when it is missing): a view that reads the
//! signed-in user straight from the store and then the app's own session values reads
//! the store at most once (repeated views use the instance's copy), and sees the values
//! the previous view saved.
#![cfg(feature = "redis")]

mod common;

use axum::routing::get;
use axum::Router;
use common::*;
use identity_axum::User;
use identity_core::sessions::StoreUrl;
use identity_testkit::suite::peers::RedisServer;
use std::time::Duration;

async fn index(user: User) -> String {
    format!("Hello {}", user.name().unwrap_or("?"))
}

/// The user (read straight from the store), then the app's own value in the session.
async fn visits(user: User, session: tower_sessions::Session) -> String {
    let seen: u32 = session.get("visits").await.unwrap().unwrap_or(0);
    session.insert("visits", seen + 1).await.unwrap();
    format!("{} visit {}", user.name().unwrap_or("?"), seen + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_reads_the_redis_store_at_most_once_when_it_reads_the_user_and_the_session() {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap();
    let backend = StoreUrl::parse(&redis.url())
        .unwrap()
        .open(10, Duration::from_secs(2))
        .await
        .unwrap();
    let kit = kit().await;
    let routes = Router::new()
        .route("/", get(index))
        .route("/visits", get(visits));
    let options = Options {
        backend: Some(backend),
        ..Default::default()
    };
    let app = serve(&kit, routes, options).await;
    let mut b = Browser::new();
    assert_eq!(sign_in(&mut b, &app, "/").await.body, "Hello Adele Vance");

    let used = redis
        .calls_during(async {
            for _ in 0..5 {
                assert_eq!(b.get(&app.url("/")).await.body, "Hello Adele Vance");
            }
        })
        .await
        .unwrap();
    // The instance's copy of the session serves repeated views (at most one read, when
    // the copy was dropped or the connection's liveness lapsed).
    assert!(
        used.get("get").copied().unwrap_or(0) <= 1
            && used
                .keys()
                .all(|c| ["get", "client|tracking", "ping"].contains(&c.as_str())),
        "5 views of /: {used:?}"
    );

    let used = redis
        .calls_during(async {
            for n in 1..=5 {
                let page = b.get(&app.url("/visits")).await;
                assert_eq!(page.body, format!("Adele Vance visit {n}"));
            }
        })
        .await
        .unwrap();
    // Each save is one round trip: the `SET` and its sign-out index (`SADD`, `EXPIRE`).
    // It drops the instance's copy, so the next view reads the saved session (the count
    // it shows proves it): every view but the first reads once.
    let (gets, sets) = (used.get("get").copied().unwrap_or(0), used.get("set"));
    assert!(
        (4..=5).contains(&gets)
            && sets == Some(&5)
            && used.keys().all(|c| {
                ["get", "set", "sadd", "expire", "client|tracking", "ping"].contains(&c.as_str())
            }),
        "5 views of /visits: at most one read and the save of the changed session each: {used:?}"
    );
}
