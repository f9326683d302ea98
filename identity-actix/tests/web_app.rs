//! The web-app behaviour over real HTTP against a local provider.

mod common;

use common::routes::{SLOW_ENTERED, SLOW_GATE};
use common::{query_param, setup, Browser, ADELE};
use identity_actix::MemoryBackend;
use identity_testkit::{Endpoint, TestKitConfig};

#[actix_web::test]
async fn sign_in_returns_to_the_original_url_and_shows_the_user() {
    let (kit, app, mut browser) = setup(TestKitConfig::default()).await;

    let login = browser.get(&app.url("/deep/page?x=1&y=two")).await;
    assert_eq!(login.status, 401);
    assert_eq!(login.headers["cache-control"], "no-store");
    let authorize = login.meta_refresh().expect("meta refresh to the provider");
    assert!(authorize.starts_with(&kit.base_url()), "{authorize}");
    assert!(
        browser
            .set_cookies
            .iter()
            .all(|c| !c.starts_with("identity=")),
        "no session for an anonymous visitor: {:?}",
        browser.set_cookies
    );

    let callback = browser.through_provider(&login).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    assert_eq!(
        callback.location.as_deref(),
        Some(app.url("/deep/page?x=1&y=two").as_str())
    );
    let page = browser.follow(&app.url("/deep/page?x=1&y=two")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body, "Hello Adele Vance");

    let home = browser.get(&app.url("/")).await;
    assert_eq!(home.body, "Hello Adele Vance");
    let maybe = browser.get(&app.url("/maybe")).await;
    assert_eq!(maybe.body, "signed in as Adele Vance");
    app.stop().await;
}

#[actix_web::test]
async fn optional_user_is_none_for_anonymous_visitors_and_starts_nothing() {
    let (kit, app, mut browser) = setup(TestKitConfig::default()).await;
    kit.reset_counters();
    let page = browser.get(&app.url("/maybe")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body, "anonymous");
    assert!(browser.set_cookies.is_empty(), "{:?}", browser.set_cookies);
    assert_eq!(kit.calls(Endpoint::Discovery), 0);
    app.stop().await;
}

#[actix_web::test]
async fn a_cached_token_costs_no_provider_call() {
    let (kit, app, mut browser) = setup(TestKitConfig::default()).await;
    browser.sign_in_at(&app.url("/")).await;
    let first = browser.get(&app.url("/graph")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    kit.reset_counters();
    let again = browser.get(&app.url("/graph")).await;
    assert_eq!(again.body, "from_cache=true");
    let home = browser.get(&app.url("/")).await;
    assert_eq!(home.status, 200);
    assert_eq!(kit.calls(Endpoint::Token), 0);
    assert_eq!(kit.calls(Endpoint::Discovery), 0);
    assert_eq!(kit.calls(Endpoint::Jwks), 0);
    app.stop().await;
}

#[actix_web::test]
async fn sign_out_ends_the_session_and_redirects_to_the_provider() {
    let (kit, app, mut browser) = setup(TestKitConfig::default()).await;
    browser.sign_in_at(&app.url("/")).await;
    assert_eq!(app.store.len(), 1);

    let out = browser.get(&app.url("/logout")).await;
    assert_eq!(out.status, 302);
    let location = out.location.unwrap();
    assert!(location.starts_with(&kit.base_url()), "{location}");
    assert!(
        location.contains(&format!(
            "post_logout_redirect_uri={}",
            form_encode(&app.url("/"))
        )),
        "{location}"
    );
    assert!(
        query_param(&location, "id_token_hint").is_some(),
        "{location}"
    );
    assert_eq!(
        query_param(&location, "post_logout_redirect_uri").as_deref(),
        Some(app.url("/").as_str())
    );
    assert!(app.store.is_empty(), "session deleted");
    assert!(
        !browser.cookies.contains_key("identity"),
        "session cookie removed"
    );

    let again = browser.get(&app.url("/")).await;
    assert_eq!(again.status, 401, "signed out");
    app.stop().await;
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[actix_web::test]
async fn cookies_are_http_only_lax_and_not_secure_on_loopback_http() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    browser.sign_in_at(&app.url("/")).await;
    let session = browser.set_cookies_named("identity");
    let pending = browser.set_cookies_named("identity_pending");
    assert!(
        !session.is_empty() && !pending.is_empty(),
        "{:?}",
        browser.set_cookies
    );
    for c in session.iter().chain(pending.iter()) {
        assert!(c.contains("HttpOnly"), "{c}");
        assert!(c.contains("SameSite=Lax"), "{c}");
        assert!(!c.contains("Secure"), "{c}");
        assert!(c.contains("Path=/"), "{c}");
    }
    assert!(pending[0].contains("Max-Age=600"), "{}", pending[0]);
    // The session cookie carries only the encrypted id.
    let value = &browser.cookies["identity"];
    assert!(value.len() <= 200, "{}", value.len());
    app.stop().await;
}

#[actix_web::test]
async fn the_session_is_renewed_at_sign_in() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    let visit = browser.get(&app.url("/visit")).await;
    assert_eq!(visit.body, "visits=1");
    let before = browser.cookies["identity"].clone();
    assert_eq!(app.store.len(), 1);

    browser.sign_in_at(&app.url("/")).await;
    let after = browser.cookies["identity"].clone();
    assert_ne!(before, after);
    assert_eq!(app.store.len(), 1, "the pre-sign-in session was deleted");
    // The session keeps its data under the new id...
    assert_eq!(browser.get(&app.url("/visit")).await.body, "visits=2");
    // ...and the old cookie opens nothing.
    let mut old = Browser::new();
    old.cookies.insert("identity".into(), before);
    assert_eq!(old.get(&app.url("/maybe")).await.body, "anonymous");
    app.stop().await;
}

#[actix_web::test]
async fn a_tampered_state_is_a_400_page() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    let login = browser.get(&app.url("/")).await;
    let authorize = login.meta_refresh().unwrap();
    let state = query_param(&authorize, "state").unwrap();
    let page = browser
        .get(&app.url(&format!("/getAToken?code=abc&state={}x", state)))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("did not issue"), "{}", page.body);
    let none = browser.get(&app.url("/getAToken?code=abc")).await;
    assert_eq!(none.status, 400);
    app.stop().await;
}

#[actix_web::test]
async fn a_replayed_callback_is_a_400_page() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    let login = browser.get(&app.url("/")).await;
    let callback = browser.through_provider(&login).await;
    assert_eq!(callback.status, 302);
    let replay = browser.get(&callback.url).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    // The first sign-in stands.
    assert_eq!(browser.get(&app.url("/")).await.status, 200);
    app.stop().await;
}

#[actix_web::test]
async fn the_next_link_stays_on_this_site() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    for evil in ["//evil.example", "https://evil.example", "/\\evil.example"] {
        let url = format!("{}/login?next={}", app.base, form_encode(evil));
        let start = browser.get(&url).await;
        assert_eq!(start.status, 302, "{}", start.body);
        let callback = browser.through_provider(&start).await;
        assert_eq!(
            callback.location.as_deref(),
            Some(app.url("/").as_str()),
            "{evil}"
        );
    }
    let start = browser.get(&app.url("/login?next=%2Fmaybe%3Fa%3D1")).await;
    let callback = browser.through_provider(&start).await;
    assert_eq!(
        callback.location.as_deref(),
        Some(app.url("/maybe?a=1").as_str())
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_missing_middleware_says_what_to_add() {
    let kit = common::kit().await;
    let (listener, redirect) = common::listener();
    let auth = common::auth_for(&kit, &redirect);
    let app = common::serve(listener, auth, identity_actix::MemoryBackend::new(), false);
    let mut browser = Browser::new();
    for path in ["/", "/login", "/graph"] {
        let page = browser.get(&app.url(path)).await;
        assert_eq!(page.status, 500, "{path}");
        assert!(
            page.body.contains(".wrap(auth.middleware("),
            "{path}: {}",
            page.body
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn incremental_consent_asks_for_the_new_scope_and_comes_back() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    browser.sign_in_at(&app.url("/")).await;

    let consent = browser.get(&app.url("/mail?folder=inbox")).await;
    assert_eq!(consent.status, 401, "{}", consent.body);
    let authorize = consent.meta_refresh().unwrap();
    let scope = query_param(&authorize, "scope").unwrap();
    assert!(scope.split(' ').any(|s| s == "Mail.Read"), "{scope}");

    let callback = browser.through_provider(&consent).await;
    assert_eq!(
        callback.location.as_deref(),
        Some(app.url("/mail?folder=inbox").as_str())
    );
    let mail = browser.get(&app.url("/mail?folder=inbox")).await;
    assert_eq!(mail.status, 200, "{}", mail.body);
    assert_eq!(mail.body, "mail from_cache=true");
    app.stop().await;
}

#[actix_web::test]
async fn the_consent_loop_guard_stops_after_two_round_trips() {
    // Access tokens that are always due for renewal, and refresh tokens revoked after
    // every sign-in: the app can never keep a token, whatever the user does.
    let (kit, app, mut browser) = setup(
        TestKitConfig::default().with_access_token_lifetime(std::time::Duration::from_secs(60)),
    )
    .await;
    browser.sign_in_at(&app.url("/")).await;
    for round_trip in 1..=2 {
        kit.revoke_refresh_tokens(ADELE);
        let page = browser.get(&app.url("/mail")).await;
        assert_eq!(page.status, 401, "round trip {round_trip}: {}", page.body);
        let callback = browser.through_provider(&page).await;
        assert_eq!(callback.status, 302, "{}", callback.body);
    }
    kit.revoke_refresh_tokens(ADELE);
    let page = browser.get(&app.url("/mail")).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("consent_not_obtained"), "{}", page.body);
    assert!(page.body.contains("Mail.Read"), "{}", page.body);
    app.stop().await;
}

#[actix_web::test]
async fn role_and_group_checks_answer_403() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    browser.sign_in_at(&app.url("/")).await;
    assert_eq!(browser.get(&app.url("/reader")).await.body, "reader");
    let admin = browser.get(&app.url("/admin")).await;
    assert_eq!(admin.status, 403);
    assert!(admin.body.contains("Admin"), "{}", admin.body);
    assert_eq!(browser.get(&app.url("/group")).await.status, 403);
    app.stop().await;
}

#[actix_web::test]
async fn anonymous_requests_create_no_server_session() {
    let (kit, app, _) = setup(TestKitConfig::default()).await;
    let mut browser = Browser::new();
    // Warm the provider metadata.
    assert_eq!(browser.get(&app.url("/")).await.status, 401);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for i in 0..1000 {
        let res = http
            .get(app.url(&format!("/deep/page?i={i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert!(
            res.headers()
                .get_all("set-cookie")
                .iter()
                .all(|c| c.to_str().unwrap().starts_with("identity_pending=")),
            "only the pending cookie"
        );
    }
    assert!(app.store.is_empty());
    assert_eq!(kit.calls(Endpoint::Token), 0);
    app.stop().await;
}

#[actix_web::test]
async fn typed_extractors_ask_for_their_scopes_and_roles() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    // Anonymous: one round trip signs in and consents to Mail.Read.
    let page = browser.sign_in_at(&app.url("/typed/mail")).await;
    assert_eq!(page.body, "typed mail true");
    assert_eq!(
        browser.get(&app.url("/typed/reader")).await.body,
        "reader Adele Vance"
    );
    assert_eq!(browser.get(&app.url("/typed/admin")).await.status, 403);
    app.stop().await;
}

#[actix_web::test]
async fn behind_a_tls_proxy_cookies_are_host_prefixed_and_secure_and_sign_in_works() {
    // The app listens on http; the browser sees https://app.example (the proxy forwards
    // the public Host). REDIRECT_URI is the public https URL.
    let kit = common::kit_with(
        TestKitConfig::default().with_redirect_uri("https://app.example/getAToken"),
    )
    .await;
    let (listener, _) = common::listener();
    let auth = common::auth_for(&kit, "https://app.example/getAToken");
    let app = common::serve(listener, auth, MemoryBackend::new(), true);
    let public = "https://app.example";
    let mut browser = Browser::behind_proxy(public, &app.base);

    let login = browser.get(&format!("{public}/deep/page?x=1")).await;
    assert_eq!(login.status, 401, "{}", login.body);
    let callback = browser.through_provider(&login).await;
    assert_eq!(callback.status, 302, "{}", callback.body);
    assert_eq!(
        callback.location.as_deref(),
        Some(format!("{public}/deep/page?x=1").as_str())
    );
    let page = browser.follow(&format!("{public}/deep/page?x=1")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body, "Hello Adele Vance");
    assert_eq!(app.store.len(), 1);

    let session = browser.set_cookies_named("__Host-identity");
    let pending = browser.set_cookies_named("__Host-identity_pending");
    assert!(
        !session.is_empty() && !pending.is_empty(),
        "{:?}",
        browser.set_cookies
    );
    for c in session.iter().chain(pending.iter()) {
        for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(c.split(';').any(|a| a.trim() == flag), "{flag}: {c}");
        }
        assert!(!c.contains("Domain"), "{c}");
    }
    // Every cookie of the app (the provider's are its own) is `__Host-` prefixed.
    assert!(
        browser
            .set_cookies
            .iter()
            .filter(|c| !c.starts_with("testkit_"))
            .all(|c| c.starts_with("__Host-")),
        "no unprefixed cookie: {:?}",
        browser.set_cookies
    );

    let out = browser.get(&format!("{public}/logout")).await;
    assert_eq!(out.status, 302);
    assert_eq!(
        query_param(out.location.as_deref().unwrap(), "post_logout_redirect_uri").as_deref(),
        Some("https://app.example/")
    );
    assert!(app.store.is_empty());
    app.stop().await;
}

#[actix_web::test]
async fn a_request_in_flight_during_sign_out_does_not_bring_the_session_back() {
    let (_kit, app, mut browser) = setup(TestKitConfig::default()).await;
    browser.sign_in_at(&app.url("/")).await;
    assert_eq!(app.store.len(), 1);
    let cookie = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");

    // Two slow pages of the signed-in session: one will write to the session when it
    // ends, one will only extend its lifetime.
    let in_flight = ["/slow?write=1", "/slow?write=0"].map(|path| {
        let request = browser
            .http
            .get(app.url(path))
            .header("cookie", cookie.clone())
            .send();
        actix_web::rt::spawn(async move {
            let res = request.await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        })
    });
    SLOW_ENTERED.acquire_many(2).await.unwrap().forget();

    // Sign-out while both have loaded the session.
    let out = browser.get(&app.url("/logout")).await;
    assert_eq!(out.status, 302);
    assert!(app.store.is_empty(), "signed out");

    SLOW_GATE.add_permits(2);
    for request in in_flight {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, "slow Adele Vance");
    }
    assert!(
        app.store.is_empty(),
        "the requests in flight re-created the session ({} held)",
        app.store.len()
    );
    // The old cookie opens nothing.
    let mut old = Browser::new();
    old.cookies = browser.cookies.clone();
    let identity_cookie = cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("identity="))
        .unwrap()
        .to_owned();
    old.cookies.insert("identity".into(), identity_cookie);
    assert_eq!(old.get(&app.url("/maybe")).await.body, "anonymous");
    assert_eq!(old.get(&app.url("/")).await.status, 401);
    app.stop().await;
}

#[actix_web::test]
async fn a_token_obtained_clears_the_consent_loop_guard() {
    // Access tokens always due for renewal: every visit of /mail refreshes.
    let (kit, app, mut browser) = setup(
        TestKitConfig::default().with_access_token_lifetime(std::time::Duration::from_secs(60)),
    )
    .await;
    browser.sign_in_at(&app.url("/")).await;
    // More round trips than the guard allows in a row, each followed by a token.
    for round_trip in 1..=4 {
        kit.revoke_refresh_tokens(ADELE);
        let page = browser.get(&app.url("/mail")).await;
        assert_eq!(page.status, 401, "round trip {round_trip}: {}", page.body);
        let callback = browser.through_provider(&page).await;
        assert_eq!(callback.status, 302, "{}", callback.body);
        let mail = browser.get(&app.url("/mail")).await;
        assert_eq!(mail.status, 200, "round trip {round_trip}: {}", mail.body);
    }
    app.stop().await;
}

/// A sign-in ends after the absolute session lifetime, active or not: the page views
/// before it read the user (straight from the loaded session), the one after it is
/// anonymous and the session is gone from the store.
#[actix_web::test]
async fn a_sign_in_ends_after_the_absolute_lifetime() {
    let kit = common::kit().await;
    let (listener, redirect) = common::listener();
    let auth = common::auth_with(&kit, &redirect, |b| {
        b.absolute_timeout(std::time::Duration::from_secs(1))
    });
    let app = common::serve(listener, auth, MemoryBackend::new(), true);
    let mut browser = Browser::new();
    let page = browser.sign_in_at(&app.url("/")).await;
    assert_eq!(page.body, "Hello Adele Vance", "{ADELE}");
    assert_eq!(
        browser.get(&app.url("/maybe")).await.body,
        "signed in as Adele Vance"
    );
    // Sign-in times are whole seconds: past one second for sure.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(browser.get(&app.url("/maybe")).await.body, "anonymous");
    assert_eq!(app.store.len(), 0, "session ended");
    let page = browser.get(&app.url("/")).await;
    assert_eq!(page.status, 401, "{}", page.body);
    app.stop().await;
}
