//! Sessions in Redis: the backend's semantics, and two instances sharing sign-ins.
#![cfg(feature = "redis")]

mod common;

use common::*;
use identity_rocket::{IdentityFairing, MemoryStore, RedisStore, SessionBackend};
use identity_testkit::suite::peers::RedisServer;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_moves_and_expires_sessions() {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let ttl = Duration::from_secs(60);
    store
        .insert("a", "k", "\"v\"".to_owned(), ttl)
        .await
        .unwrap();
    assert_eq!(store.get("a", "k").await.unwrap(), Some("\"v\"".to_owned()));
    store.rename("a", "b", ttl).await.unwrap();
    assert_eq!(store.get("a", "k").await.unwrap(), None, "old id deleted");
    assert_eq!(store.get("b", "k").await.unwrap(), Some("\"v\"".to_owned()));
    store.rename("missing", "c", ttl).await.unwrap();
    assert_eq!(store.get("c", "k").await.unwrap(), None);
    store.remove("b", "k").await.unwrap();
    assert_eq!(store.get("b", "k").await.unwrap(), None);
    store
        .insert("short", "k", "1".to_owned(), Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.get("short", "k").await.unwrap(), None, "expired");
    store.insert("d", "k", "1".to_owned(), ttl).await.unwrap();
    store.delete("d").await.unwrap();
    assert_eq!(store.get("d", "k").await.unwrap(), None);

    let error = RedisStore::connect("redis://127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(error.0.contains("cannot connect to Redis"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_through_redis() {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap();
    let kit = kit().await;
    // Both instances stand behind one public URL: the first one's.
    let first_port = free_port();
    let redirect = format!("http://127.0.0.1:{first_port}/getAToken");
    let instance = |port: u16| {
        let figment = web_app_figment(&kit, port)
            .merge(("identity.redirect_uri", redirect.clone()))
            .merge(("identity.session_store", redis.url()));
        app_rocket(figment, IdentityFairing::new())
    };
    let a = launch(instance(first_port), MemoryStore::new()).await;
    let b = launch(instance(free_port()), MemoryStore::new()).await;
    let client = browser();

    sign_in_at(&client, &a, "/").await;
    let on_b = client.get(b.url("/")).send().await.unwrap();
    assert_eq!(on_b.status(), 200, "the other instance knows the session");
    assert_eq!(on_b.text().await.unwrap(), "Hello Adele Vance");
    let token = client
        .get(b.url("/token?scope=User.Read"))
        .send()
        .await
        .unwrap();
    assert_eq!(token.text().await.unwrap(), "token from_cache=false");
    let token = client
        .get(a.url("/token?scope=User.Read"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        token.text().await.unwrap(),
        "token from_cache=true",
        "a token refreshed on one instance is cached for the other"
    );

    let out = client.get(b.url("/logout")).send().await.unwrap();
    assert_eq!(out.status(), 302);
    let on_a = client.get(a.url("/")).send().await.unwrap();
    assert_eq!(on_a.status(), 401, "signed out everywhere");
}
