//! Sessions in Redis: two instances sharing sign-ins, and an unreachable server.
#![cfg(feature = "redis")]

mod common;

use common::*;
use identity_core::sessions::MemoryBackend;
use identity_rocket::IdentityFairing;
use identity_testkit::suite::peers::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_aborts_launch_without_showing_its_password() {
    let figment = base_figment(free_port())
        .merge(("identity.client_id", "x"))
        .merge((
            "identity.authority",
            "https://login.microsoftonline.com/common",
        ))
        .merge(("identity.session_store", "redis://:hunter2@127.0.0.1:1/0"));
    let error = IdentityFairing::new()
        .validate(&figment)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
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
    let a = launch(instance(first_port), MemoryBackend::new()).await;
    let b = launch(instance(free_port()), MemoryBackend::new()).await;
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
