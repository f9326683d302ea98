//! Sessions in Redis: two instances sharing sign-ins, and an unreachable server.
#![cfg(feature = "redis")]

mod common;

use common::*;
use identity_core::sessions::MemoryBackend;
use identity_rocket::IdentityFairing;
use identity_testkit::suite::e2e::until_redis_copies_catch_up;
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
    // A's copy of the session goes with Redis's notice of B's save.
    until_redis_copies_catch_up().await;
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
    until_redis_copies_catch_up().await;
    let on_a = client.get(a.url("/")).send().await.unwrap();
    assert_eq!(on_a.status(), 401, "signed out everywhere");
}

/// The Redis record carries its expiry, so a load is one `GET`, and keeps values
/// verbatim; records written before (JSON with verbatim values, the values as strings
/// with or without the expiry) still load, the bare form's expiry read with `TTL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_records_carry_their_expiry_and_older_records_still_load() {
    use identity_core::sessions::{SessionBackend, StoreUrl, StoredSession};
    use std::collections::HashMap;
    use std::time::Duration;
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap();
    let backend = StoreUrl::parse(&redis.url())
        .unwrap()
        .open(10, Duration::from_secs(2))
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let data: HashMap<String, String> = [
        ("app.note", "\"hi\""),
        ("app.user", r#"{"name":"Ad\u00e8le \"AV\"","n":[1,2]}"#),
        ("app.plain", "not JSON: \"quoted\" \\ back"),
        ("app.padded", " 1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let session = StoredSession {
        data: data.clone(),
        expires_at: now + 600,
    };
    assert!(backend.create("new-form", &session).await.unwrap());
    assert_eq!(backend.load("new-form").await.unwrap(), Some(session));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let raw = cli(&["GET", "identity:session:new-form"]);
    assert!(
        raw.starts_with(&format!("identity-session/3;{};4;", now + 600)),
        "{raw}"
    );
    for (k, v) in &data {
        let entry = format!("{}:{k}{}:{v}", k.len(), v.len());
        assert!(raw.contains(&entry), "kept verbatim: {entry} in {raw}");
    }

    // Records of earlier versions: JSON with verbatim values, the values as strings
    // with the expiry, and the values only (the expiry in the key's TTL).
    let json_form = format!(
        r#"{{"expires_at":{},"json":{{"app.note":"hi","app.user":{}}},"text":{{"app.plain":{},"app.padded":" 1"}}}}"#,
        now + 500,
        data["app.user"],
        serde_json::to_string(&data["app.plain"]).unwrap()
    );
    assert_eq!(
        cli(&["SET", "identity:session:v2-form", &json_form, "EX", "500"]),
        "OK"
    );
    let v2 = backend.load("v2-form").await.unwrap().expect("loads");
    assert_eq!((v2.data, v2.expires_at), (data.clone(), now + 500));
    let earlier = serde_json::json!({ "expires_at": now + 400, "data": data }).to_string();
    assert_eq!(
        cli(&["SET", "identity:session:v1-form", &earlier, "EX", "400"]),
        "OK"
    );
    let v1 = backend.load("v1-form").await.unwrap().expect("loads");
    assert_eq!((v1.data, v1.expires_at), (data.clone(), now + 400));
    let bare = serde_json::to_string(&data).unwrap();
    assert_eq!(
        cli(&["SET", "identity:session:old-form", &bare, "EX", "300"]),
        "OK"
    );
    let old = backend.load("old-form").await.unwrap().expect("loads");
    assert_eq!(old.data, data);
    assert!(
        (old.expires_at - (now + 300)).abs() <= 5,
        "{}",
        old.expires_at
    );
    // Saved again, it takes the current form.
    assert!(backend.save("old-form", &old).await.unwrap());
    assert!(cli(&["GET", "identity:session:old-form"]).starts_with("identity-session/3;"));
    assert_eq!(backend.load("old-form").await.unwrap(), Some(old));
}
