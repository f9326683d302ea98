//! Sessions in a real `redis-server` (skipped when it is missing): a view that reads the
//! signed-in user straight from the store and then the app's own session values reads
//! the store once, and sees the values the previous view saved.
#![cfg(feature = "redis")]

mod common;

use axum::routing::get;
use axum::Router;
use common::*;
use identity_axum::User;
use identity_core::sessions::StoreUrl;
use identity_testkit::suite::peers::RedisServer;
use std::collections::BTreeMap;
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

/// The commands `redis` ran while `views` ran.
async fn counted<F: std::future::Future<Output = ()>>(
    redis: &RedisServer,
    views: F,
) -> BTreeMap<String, i64> {
    let before = redis.command_calls().await.unwrap();
    views.await;
    RedisServer::calls_between(&before, &redis.command_calls().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_reads_the_redis_store_once_when_it_reads_the_user_and_the_session() {
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

    let used = counted(&redis, async {
        for _ in 0..5 {
            assert_eq!(b.get(&app.url("/")).await.body, "Hello Adele Vance");
        }
    })
    .await;
    assert_eq!(
        used,
        BTreeMap::from([("get".to_owned(), 5)]),
        "5 views of /"
    );

    let used = counted(&redis, async {
        for n in 1..=5 {
            let page = b.get(&app.url("/visits")).await;
            assert_eq!(page.body, format!("Adele Vance visit {n}"));
        }
    })
    .await;
    // Each save is one round trip: the `SET` and its sign-out index (`SADD`, `EXPIRE`).
    let (gets, sets) = (used.get("get"), used.get("set"));
    assert!(
        gets == Some(&5)
            && sets == Some(&5)
            && used
                .keys()
                .all(|c| ["get", "set", "sadd", "expire"].contains(&c.as_str())),
        "5 views of /visits: one read and the save of the changed session each: {used:?}"
    );
}
