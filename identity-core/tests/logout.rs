//! Single sign-out in the core: back-channel logout tokens validated against the local
//! Entra-shaped provider's real keys and metadata, the replay cache, and the sign-out
//! index that finds sessions without their cookie.

use identity_core::sessions::{
    end_sign_ins, MemoryBackend, SessionBackend, SignInRef, StoredSession,
};
use identity_core::store::KEY_SSO;
#[cfg(feature = "pages")]
use identity_core::web::{Route, WebAuth, WebRequest};
#[cfg(feature = "pages")]
use identity_core::MemorySession;
use identity_core::{
    Authority, Error, Identity, IdentityConfig, TokenRejection, BACKCHANNEL_LOGOUT_EVENT,
};
use identity_testkit::{TestKit, TestKitConfig};
use serde_json::{json, Value};
use std::collections::HashMap;
#[cfg(feature = "pages")]
use std::sync::Arc;

const WEB_APP: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";

fn web_app(kit: &TestKit) -> Identity {
    let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    Identity::new(
        IdentityConfig::new(WEB_APP, authority)
            .with_client_secret("testkit-secret")
            .with_redirect_uri(Some("http://localhost:5000/getAToken")),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(kit: &TestKit) -> Value {
    json!({
        "iss": kit.workforce_issuer(),
        "aud": WEB_APP,
        "iat": now(),
        "exp": now() + 120,
        "jti": uuid(),
        "sid": "sid-1",
        "sub": "sub-1",
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
    })
}

fn uuid() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn session_of(iss: &str, sid: &str, sub: &str) -> StoredSession {
    let sign_in = SignInRef {
        iss: iss.into(),
        sid: Some(sid.into()),
        sub: Some(sub.into()),
    };
    StoredSession {
        data: HashMap::from([
            (KEY_SSO.to_owned(), serde_json::to_string(&sign_in).unwrap()),
            ("identity.user".to_owned(), "{}".to_owned()),
        ]),
        expires_at: now() + 3600,
    }
}

fn refused(result: Result<identity_core::LogoutToken, Error>) -> TokenRejection {
    match result {
        Err(Error::InvalidLogoutToken(why)) => why,
        other => panic!("expected a refused logout token, got {other:?}"),
    }
}

#[tokio::test]
async fn logout_tokens_are_validated_like_id_tokens_plus_their_own_rules() {
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let app = web_app(&kit);

    let good = kit.sign_workforce_token(&claims(&kit));
    let notice = app.validate_logout_token(&good).await.unwrap();
    assert_eq!(notice.sid.as_deref(), Some("sid-1"));
    assert_eq!(notice.sub.as_deref(), Some("sub-1"));
    assert_eq!(notice.iss, kit.workforce_issuer());

    // Without exp (optional in the specification) it is still a logout token.
    let mut c = claims(&kit);
    c.as_object_mut().unwrap().remove("exp");
    app.validate_logout_token(&kit.sign_workforce_token(&c))
        .await
        .unwrap();

    // Change a character well inside the signature (the last one partly encodes padding).
    let mut bad_signature: Vec<char> = good.chars().collect();
    let at = bad_signature.len() - 20;
    bad_signature[at] = if bad_signature[at] == 'A' { 'B' } else { 'A' };
    let bad_signature: String = bad_signature.into_iter().collect();
    assert!(matches!(
        refused(app.validate_logout_token(&bad_signature).await),
        TokenRejection::Signature
    ));

    type Change = fn(&mut serde_json::Map<String, Value>);
    type Expected = fn(&TokenRejection) -> bool;
    let variants: [(&str, Change, Expected); 7] = [
        (
            "nonce",
            |c| {
                c.insert("nonce".into(), json!("n-1"));
            },
            |r| matches!(r, TokenRejection::NotALogoutToken(_)),
        ),
        (
            "aud",
            |c| {
                c.insert("aud".into(), json!("another-app"));
            },
            |r| matches!(r, TokenRejection::Audience(_)),
        ),
        (
            "iss",
            |c| {
                c.insert("iss".into(), json!("https://evil.example/v2.0"));
            },
            |r| matches!(r, TokenRejection::Issuer(_)),
        ),
        (
            "events",
            |c| {
                c.insert("events".into(), json!({"urn:other": {}}));
            },
            |r| matches!(r, TokenRejection::NotALogoutToken(_)),
        ),
        (
            "sid and sub",
            |c| {
                c.remove("sid");
                c.remove("sub");
            },
            |r| matches!(r, TokenRejection::NotALogoutToken(_)),
        ),
        (
            "jti",
            |c| {
                c.remove("jti");
            },
            |r| matches!(r, TokenRejection::MissingClaim("jti")),
        ),
        (
            "iat",
            |c| {
                c.insert("iat".into(), json!(now() - 3600));
            },
            |r| matches!(r, TokenRejection::NotALogoutToken(_)),
        ),
    ];
    for (what, change, expected) in variants {
        let mut c = claims(&kit);
        change(c.as_object_mut().unwrap());
        let token = kit.sign_workforce_token(&c);
        let why = refused(app.validate_logout_token(&token).await);
        assert!(expected(&why), "{what}: {why:?}");
    }
    // An ID token is not a logout token.
    let mut c = claims(&kit);
    c.as_object_mut().unwrap().remove("events");
    c["nonce"] = json!("n");
    refused(
        app.validate_logout_token(&kit.sign_workforce_token(&c))
            .await,
    );
}

#[tokio::test]
async fn the_sign_out_index_finds_sessions_by_sid_or_by_user() {
    let backend = MemoryBackend::new();
    backend
        .create("a", &session_of("https://issuer/v2.0", "s1", "u1"))
        .await
        .unwrap();
    backend
        .create("b", &session_of("https://issuer/v2.0", "s2", "u1"))
        .await
        .unwrap();
    backend
        .create("c", &session_of("https://other/v2.0", "s3", "u1"))
        .await
        .unwrap();

    // A sid names one provider session; an issuer that is not the session's ends nothing.
    assert_eq!(
        end_sign_ins(&backend, Some("https://other/v2.0"), Some("s1"), None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        end_sign_ins(&backend, None, Some("s1"), None)
            .await
            .unwrap(),
        1
    );
    assert!(backend.load("a").await.unwrap().is_none());
    assert!(backend.load("b").await.unwrap().is_some());

    // A sub without sid: every session of that user at that issuer, and only there.
    assert_eq!(
        end_sign_ins(&backend, Some("https://issuer/v2.0"), None, Some("u1"))
            .await
            .unwrap(),
        1
    );
    assert!(backend.load("b").await.unwrap().is_none());
    assert!(backend.load("c").await.unwrap().is_some());
}

#[cfg(feature = "pages")]
#[tokio::test]
async fn the_back_channel_route_ends_sessions_refuses_replays_and_forgeries() {
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let engine = WebAuth::builder(web_app(&kit))
        .session_secret([7u8; 64])
        .build()
        .unwrap();
    let backend = Arc::new(MemoryBackend::new());
    engine.use_session_backend(backend.clone());
    let iss = kit.workforce_issuer();
    backend
        .create("victim", &session_of(&iss, "sid-1", "sub-1"))
        .await
        .unwrap();
    let path = engine
        .route_path(Route::BackChannelLogout)
        .unwrap()
        .to_owned();
    assert_eq!(path, "/backchannel_logout");
    let post = |token: String| {
        let engine = engine.clone();
        let path = path.clone();
        async move {
            let body = format!("logout_token={token}");
            engine
                .handle(
                    Route::BackChannelLogout,
                    &WebRequest::new(&path),
                    &MemorySession::new(),
                    Some(body.as_bytes()),
                )
                .await
        }
    };

    // Forged: a nonce, another audience, a broken signature. Each is refused and ends
    // nothing.
    let mut with_nonce = claims(&kit);
    with_nonce["nonce"] = json!("n");
    let mut other_aud = claims(&kit);
    other_aud["aud"] = json!("another-app");
    let mut broken: Vec<char> = kit.sign_workforce_token(&claims(&kit)).chars().collect();
    let at = broken.len() - 20;
    broken[at] = if broken[at] == 'A' { 'B' } else { 'A' };
    let broken: String = broken.into_iter().collect();
    for token in [
        kit.sign_workforce_token(&with_nonce),
        kit.sign_workforce_token(&other_aud),
        broken,
        "not-a-jwt".to_owned(),
    ] {
        let res = post(token).await;
        assert_eq!(res.status, 400, "{}", res.body);
        let body: Value = serde_json::from_str(&res.body).unwrap();
        assert_eq!(body["error"], "invalid_request");
        assert!(backend.load("victim").await.unwrap().is_some());
    }
    let res = engine
        .handle(
            Route::BackChannelLogout,
            &WebRequest::new(&path),
            &MemorySession::new(),
            Some(b"other=1"),
        )
        .await;
    assert_eq!(res.status, 400);

    // The real one ends the session; the same token again is a replay.
    let good = kit.sign_workforce_token(&claims(&kit));
    let res = post(good.clone()).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(backend.load("victim").await.unwrap().is_none());
    let res = post(good).await;
    assert_eq!(res.status, 400, "{}", res.body);
    assert!(res.body.contains("used before"), "{}", res.body);
}

#[cfg(feature = "pages")]
#[tokio::test]
async fn the_front_channel_route_needs_no_cookie_and_may_be_framed() {
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let engine = WebAuth::builder(web_app(&kit))
        .session_secret([7u8; 64])
        .build()
        .unwrap();
    let backend = Arc::new(MemoryBackend::new());
    engine.use_session_backend(backend.clone());
    let iss = kit.workforce_issuer();
    backend
        .create("victim", &session_of(&iss, "sid-9", "sub-9"))
        .await
        .unwrap();
    let get = |link: String| {
        let engine = engine.clone();
        async move {
            engine
                .handle(
                    Route::FrontChannelLogout,
                    &WebRequest::new(&link),
                    &MemorySession::new(),
                    None,
                )
                .await
        }
    };
    // Entra sends only sid.
    let res = get("/frontchannel_logout".into()).await;
    assert_eq!(res.status, 400);
    let res = get("/frontchannel_logout?sid=other".into()).await;
    assert_eq!(res.status, 200);
    assert!(backend.load("victim").await.unwrap().is_some());
    let res = get("/frontchannel_logout?sid=sid-9".into()).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(res.header("x-frame-options").is_none());
    assert!(backend.load("victim").await.unwrap().is_none());
}
