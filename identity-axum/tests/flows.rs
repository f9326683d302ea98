//! Sign-in, pages, tokens and sign-out over real HTTP against the local provider.

mod common;

use axum::routing::get;
use axum::Router;
use common::{kit, kit_with, serve, sign_in, Browser, Options, ADELE};
use identity_axum::{AuthRejection, HasRole, IdentitySession, Role, ScopeSet, Token, User};
use identity_core::Scopes;
use identity_testkit::{Endpoint, TestKitConfig};
use std::time::Duration;

struct MailRead;
impl ScopeSet for MailRead {
    const SCOPES: &'static str = "Mail.Read";
}

struct Reader;
impl Role for Reader {
    const NAME: &'static str = "Reader";
}

struct Admin;
impl Role for Admin {
    const NAME: &'static str = "Admin";
}

async fn index(user: User) -> String {
    format!("Hello {}", user.name().unwrap_or("?"))
}

async fn maybe(user: Option<User>) -> String {
    match user {
        Some(u) => format!("signed in as {}", u.name().unwrap_or("?")),
        None => "anonymous".into(),
    }
}

async fn call_api(identity: IdentitySession) -> Result<String, AuthRejection> {
    let token = identity.token_for(&Scopes::parse("User.Read")).await?;
    Ok(format!("token from_cache={}", token.from_cache))
}

async fn mail(token: Token<MailRead>) -> String {
    format!("mail token {}", token.access_token().len())
}

async fn reader(HasRole(user, _): HasRole<Reader>) -> String {
    format!("reader {}", user.name().unwrap_or("?"))
}

async fn admin(HasRole(user, _): HasRole<Admin>) -> String {
    format!("admin {}", user.name().unwrap_or("?"))
}

struct NobodysGroup;
impl identity_axum::Group for NobodysGroup {
    const ID: &'static str = "00000000-0000-0000-0000-000000000000";
}

async fn group(_user: identity_axum::InGroup<NobodysGroup>) -> String {
    "in group".into()
}

fn routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/protected", get(index))
        .route("/maybe", get(maybe))
        .route("/call_api", get(call_api))
        .route("/mail", get(mail))
        .route("/reader", get(reader))
        .route("/admin", get(admin))
        .route("/group", get(group))
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn sign_in_returns_to_the_original_url() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();

    let first = b.get(&app.url("/protected?tab=2&x=%2F")).await;
    assert_eq!(first.status, 401);
    assert_eq!(first.headers["cache-control"], "no-store");
    let auth_uri = first
        .meta_refresh()
        .expect("login page refreshes to the provider");
    assert!(auth_uri.starts_with(&kit.base_url()), "{auth_uri}");
    assert_eq!(
        query_param(&auth_uri, "redirect_uri").as_deref(),
        Some(app.url("/getAToken").as_str())
    );

    let mut b = Browser::new();
    let page = sign_in(&mut b, &app, "/protected?tab=2&x=%2F").await;
    assert_eq!(page.body, "Hello Adele Vance");
    assert_eq!(
        b.visited.last().unwrap(),
        &app.url("/protected?tab=2&x=%2F"),
        "{:?}",
        b.visited
    );
    // The pending sign-in cookie is gone once used.
    assert!(b.cookie(&app.url("/"), "identity_pending").is_none());

    let home = b.get(&app.url("/")).await;
    assert_eq!(home.status, 200);
    assert_eq!(home.body, "Hello Adele Vance");
}

#[tokio::test]
async fn optional_user_and_cached_page_views() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();

    let anon = b.get(&app.url("/maybe")).await;
    assert_eq!((anon.status, anon.body.as_str()), (200, "anonymous"));
    assert!(anon.set_cookies().is_empty(), "{anon:?}");

    sign_in(&mut b, &app, "/").await;
    let signed = b.get(&app.url("/maybe")).await;
    assert_eq!(signed.body, "signed in as Adele Vance");

    // API page: the first call refreshes for User.Read, the next ones use the cache.
    let first = b.get(&app.url("/call_api")).await;
    assert_eq!(first.status, 200, "{first:?}");
    kit.reset_counters();
    let cached = b.get(&app.url("/call_api")).await;
    assert_eq!(cached.body, "token from_cache=true");
    for _ in 0..5 {
        assert_eq!(b.get(&app.url("/")).await.status, 200);
    }
    let calls: u64 = Endpoint::ALL.iter().map(|e| kit.calls(*e)).sum();
    assert_eq!(calls, 0, "cached page views make no provider call");
}

#[tokio::test]
async fn sign_out_ends_the_session_and_goes_to_the_provider() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();
    sign_in(&mut b, &app, "/").await;
    let sid = b.cookie(&app.url("/"), "identity").expect("session cookie");

    let out = b.get(&app.url("/logout")).await;
    assert_eq!(out.status, 302);
    let location = out.location().unwrap();
    assert!(location.starts_with(&kit.base_url()), "{location}");
    let encoded_home = format!("post_logout_redirect_uri={}", urlencode(&app.url("/")));
    assert!(location.contains(&encoded_home), "{location}");
    assert!(
        query_param(&location, "id_token_hint").is_some(),
        "{location}"
    );
    assert!(out
        .set_cookie("identity")
        .unwrap()
        .to_ascii_lowercase()
        .contains("max-age=0"));
    assert_eq!(app.store.len(), 0, "the session is deleted from the store");

    // The provider sends the browser back home, where sign-in is needed again.
    let back = b.get(&location).await;
    assert_eq!(back.location().as_deref(), Some(app.url("/").as_str()));
    assert_eq!(b.get(&app.url("/")).await.status, 401);

    // The old session id is worth nothing.
    let mut thief = Browser::new();
    thief.set_cookie_value(&app.url("/"), "identity", &sid);
    assert_eq!(thief.get(&app.url("/")).await.status, 401);
}

fn urlencode(s: &str) -> String {
    form_urlencoded_byte(s)
}

fn form_urlencoded_byte(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn cookie_flags_on_loopback_http() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();
    let login = b.get(&app.url("/")).await;
    let pending = login
        .set_cookie("identity_pending")
        .expect("pending cookie");
    let lower = pending.to_ascii_lowercase();
    assert!(lower.contains("httponly"), "{pending}");
    assert!(lower.contains("samesite=lax"), "{pending}");
    assert!(lower.contains("max-age=600"), "{pending}");
    assert!(lower.contains("path=/"), "{pending}");
    assert!(!lower.contains("secure"), "{pending}");
    assert!(pending.len() < 1700, "{}", pending.len());

    // Through the provider to the callback, which sets the session cookie.
    let (_, callback) = b
        .follow_until(&app.url("/"), |u| u.contains("/getAToken"))
        .await;
    let cb = b.get(&callback.unwrap()).await;
    assert_eq!(cb.status, 302);
    let session = cb.set_cookie("identity").expect("session cookie");
    let lower = session.to_ascii_lowercase();
    assert!(lower.contains("httponly"), "{session}");
    assert!(lower.contains("samesite=lax"), "{session}");
    assert!(!lower.contains("secure"), "{session}");
    assert!(lower.contains("max-age="), "{session}");
    assert!(session.len() < 200, "{session}");
}

#[tokio::test]
async fn session_id_is_cycled_at_sign_in() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();
    sign_in(&mut b, &app, "/").await;
    let before = b.cookie(&app.url("/"), "identity").unwrap();

    // Incremental consent is a second sign-in in the same session.
    let page = b.follow(&app.url("/mail")).await;
    assert_eq!(page.status, 200, "{page:?}");
    let after = b.cookie(&app.url("/"), "identity").unwrap();
    assert_ne!(before, after, "a sign-in gives the session a new id");

    let mut old = Browser::new();
    old.set_cookie_value(&app.url("/"), "identity", &before);
    assert_eq!(
        old.get(&app.url("/")).await.status,
        401,
        "the old id is gone"
    );
}

#[tokio::test]
async fn tampered_and_replayed_callbacks_are_refused_with_a_page() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();

    let (_, callback) = b
        .follow_until(&app.url("/"), |u| u.contains("/getAToken"))
        .await;
    let callback = callback.unwrap();
    let state = query_param(&callback, "state").unwrap();
    let code = query_param(&callback, "code").unwrap();

    let tampered = b
        .get(&app.url(&format!("/getAToken?code={code}&state={state}x")))
        .await;
    assert_eq!(tampered.status, 400);
    assert!(tampered.body.contains("did not issue"), "{}", tampered.body);
    assert!(tampered.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    // The state is still pending after a wrong one: the real callback works once...
    let mut replay_browser = Browser::new();
    replay_browser.set_cookie_value(
        &app.url("/"),
        "identity_pending",
        &b.cookie(&app.url("/"), "identity_pending").unwrap(),
    );
    let ok = b.get(&callback).await;
    assert_eq!(ok.status, 302, "{ok:?}");
    // ...and not twice, even with the old pending cookie replayed.
    let again = b.get(&callback).await;
    assert_eq!(again.status, 400);
    let replayed = replay_browser.get(&callback).await;
    assert!(
        replayed.status == 400 || replayed.status == 401,
        "{replayed:?}"
    );
    assert!(!replayed.body.contains("Hello"));

    // Garbage never yields a 500.
    for q in [
        "",
        "?state=",
        "?code=x",
        "?error=x&state=y",
        "?state=%00%ff",
    ] {
        let r = b.get(&app.url(&format!("/getAToken{q}"))).await;
        assert_eq!(r.status, 400, "{q}: {r:?}");
    }
}

#[tokio::test]
async fn next_links_never_leave_the_site() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    for evil in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "/%5Cevil.example",
    ] {
        let mut b = Browser::new();
        let start = app.url(&format!("/login?next={}", form_urlencoded_byte(evil)));
        let (_, callback) = b.follow_until(&start, |u| u.contains("/getAToken")).await;
        let done = b.get(&callback.unwrap()).await;
        assert_eq!(done.status, 302);
        let location = done.location().unwrap();
        assert!(
            location.starts_with('/') && !location.starts_with("//"),
            "{evil}: {location}"
        );
        assert!(!location.contains('\\'), "{evil}: {location}");
        if !evil.contains('%') {
            assert_eq!(location, "/", "{evil}");
        }
    }
    let mut b = Browser::new();
    let start = app.url("/login?next=%2Fmaybe%3Fa%3D1");
    let page = b.follow(&start).await;
    assert_eq!(page.body, "signed in as Adele Vance");
    assert_eq!(b.visited.last().unwrap(), &app.url("/maybe?a=1"));
}

#[tokio::test]
async fn missing_layers_are_named() {
    let kit = kit().await;
    let app = serve(
        &kit,
        routes(),
        Options {
            no_session_layer: true,
            ..Default::default()
        },
    )
    .await;
    let mut b = Browser::new();
    for path in ["/", "/maybe", "/login", "/getAToken?state=x&code=y"] {
        let r = b.get(&app.url(path)).await;
        assert_eq!(r.status, 500, "{path}");
        assert!(r.body.contains("SessionManagerLayer"), "{}", r.body);
    }

    let app = serve(
        &kit,
        routes(),
        Options {
            no_auth_layer: true,
            ..Default::default()
        },
    )
    .await;
    let r = b.get(&app.url("/")).await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("auth.layer()"), "{}", r.body);
}

#[tokio::test]
async fn incremental_consent_round_trip() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();
    sign_in(&mut b, &app, "/").await;

    let ask = b.get(&app.url("/mail")).await;
    assert_eq!(ask.status, 401, "{ask:?}");
    let auth_uri = ask.meta_refresh().unwrap();
    let scope = query_param(&auth_uri, "scope").unwrap();
    assert!(scope.contains("Mail.Read"), "{scope}");

    let page = b.follow(&app.url("/mail")).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.starts_with("mail token "), "{}", page.body);
    assert_eq!(b.visited.last().unwrap(), &app.url("/mail"));

    kit.reset_counters();
    assert_eq!(b.get(&app.url("/mail")).await.status, 200);
    assert_eq!(kit.calls(Endpoint::Token), 0);
}

#[tokio::test]
async fn consent_loops_are_stopped() {
    // Access tokens shorter than the renewal margin and refresh tokens revoked after every
    // round trip: the app can never keep a token, so each visit would loop.
    let kit =
        kit_with(TestKitConfig::default().with_access_token_lifetime(Duration::from_secs(60)))
            .await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();
    sign_in(&mut b, &app, "/").await;

    let mut round_trips = 0;
    let mut last = None;
    for _ in 0..4 {
        kit.revoke_refresh_tokens(ADELE);
        let (resp, stopped) = b
            .follow_until(&app.url("/mail"), |u| u.ends_with("/mail"))
            .await;
        if stopped.is_some() {
            round_trips += 1;
            continue;
        }
        last = Some(resp);
        break;
    }
    let last = last.expect("the loop ends");
    assert_eq!(round_trips, 2, "{:?}", b.visited);
    assert_eq!(last.status, 403, "{last:?}");
    assert!(
        last.body.contains("Consent could not be obtained"),
        "{}",
        last.body
    );
    assert!(last.body.contains("Mail.Read"));
}

#[tokio::test]
async fn roles_and_groups() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();
    sign_in(&mut b, &app, "/").await;
    let ok = b.get(&app.url("/reader")).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "reader Adele Vance"));
    let no = b.get(&app.url("/admin")).await;
    assert_eq!(no.status, 403);
    assert!(no.body.contains("Admin"), "{}", no.body);
    let no = b.get(&app.url("/group")).await;
    assert_eq!(no.status, 403);

    // Anonymous visitors are sent to sign in, not refused.
    let anon = Browser::new().get(&app.url("/admin")).await;
    assert_eq!(anon.status, 401);
}

#[tokio::test]
async fn anonymous_requests_create_no_server_session() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let http = http.clone();
        let base = app.url("");
        tasks.push(tokio::spawn(async move {
            for i in 0..125 {
                let path = match (worker + i) % 4 {
                    0 => "/",
                    1 => "/login",
                    2 => "/mail",
                    _ => "/maybe",
                };
                let r = http.get(format!("{base}{path}")).send().await.unwrap();
                assert!(r.status().as_u16() < 500);
                assert!(r
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .all(|c| !c.to_str().unwrap().starts_with("id=")));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        app.store.len(),
        0,
        "1000 anonymous requests, no session stored"
    );
}

#[tokio::test]
async fn nested_under_a_prefix() {
    let kit =
        kit_with(TestKitConfig::default().with_redirect_uri("http://127.0.0.1:5000/app/getAToken"))
            .await;
    let app = serve(
        &kit,
        routes(),
        Options {
            nest: Some("/app"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(app.auth.core().routes().callback, "/app/getAToken");
    assert_eq!(app.auth.core().routes().login, "/app/login");
    let mut b = Browser::new();
    let page = sign_in(&mut b, &app, "/app/protected?q=1").await;
    assert_eq!(page.body, "Hello Adele Vance");
    assert_eq!(b.visited.last().unwrap(), &app.url("/app/protected?q=1"));
    assert!(b
        .visited
        .iter()
        .any(|u| u.starts_with(&app.url("/app/getAToken?"))));

    let out = b.get(&app.url("/app/logout")).await;
    assert_eq!(out.status, 302);
    let location = out.location().unwrap();
    assert!(
        location.contains(&format!(
            "post_logout_redirect_uri={}",
            urlencode(&app.url("/app/"))
        )),
        "{location}"
    );
    assert_eq!(b.get(&app.url("/getAToken")).await.status, 404);
}

#[tokio::test]
async fn crafted_provider_errors() {
    let kit = kit().await;
    let app = serve(&kit, routes(), Options::default()).await;
    let mut b = Browser::new();

    // User cancelled: back home without an error page.
    let login = b.get(&app.url("/")).await;
    let state = query_param(&login.meta_refresh().unwrap(), "state").unwrap();
    let cancelled = b
        .get(&app.url(&format!(
            "/getAToken?state={state}&error=access_denied&error_description=AADB2C90091%3A+The+user+has+cancelled+entering+self-asserted+information."
        )))
        .await;
    assert_eq!(cancelled.status, 302);
    assert_eq!(cancelled.location().as_deref(), Some("/"));

    // Entra's cancel: the error page, which offers to sign in again.
    let login = b.get(&app.url("/")).await;
    let state = query_param(&login.meta_refresh().unwrap(), "state").unwrap();
    let declined = b
        .get(&app.url(&format!(
            "/getAToken?state={state}&error=access_denied&error_subcode=cancel"
        )))
        .await;
    assert_eq!(declined.status, 400);
    assert!(declined.body.contains("access_denied"), "{}", declined.body);
    assert!(declined.body.contains("/login"), "{}", declined.body);

    // Forgot password without a reset flow configured: the error page, escaped.
    let login = b.get(&app.url("/")).await;
    let state = query_param(&login.meta_refresh().unwrap(), "state").unwrap();
    let forgot = b
        .get(&app.url(&format!(
            "/getAToken?state={state}&error=access_denied&error_description=AADB2C90118%3A+The+user+has+forgotten+their+password.+%3Cscript%3Ealert(1)%3C%2Fscript%3E"
        )))
        .await;
    assert_eq!(forgot.status, 400);
    assert!(forgot.body.contains("AADB2C90118"), "{}", forgot.body);
    assert!(!forgot.body.contains("<script>alert"), "{}", forgot.body);

    // Any other provider error: its page and status.
    let login = b.get(&app.url("/")).await;
    let state = query_param(&login.meta_refresh().unwrap(), "state").unwrap();
    let denied = b
        .get(&app.url(&format!(
            "/getAToken?state={state}&error=server_error&error_description=AADSTS50000%3A+boom"
        )))
        .await;
    assert_eq!(denied.status, 400);
    assert!(denied.body.contains("server_error"));
}

/// Signed-in page views read the session and write nothing until the touch interval (a
/// tenth of the idle timeout) has passed; the next view then pushes the expiry in the
/// store and renews the cookie. The user is read straight from the memory store's record
/// here (the engine knows the store), and the touch rule is the same.
#[tokio::test]
async fn page_views_write_nothing_until_the_touch_interval_then_push_the_expiry() {
    use identity_core::sessions::SessionBackend;
    let kit = kit().await;
    let routes = Router::new()
        .route("/", get(index))
        .route("/maybe", get(maybe));
    let app = serve(
        &kit,
        routes,
        Options {
            idle: Some(Duration::from_secs(20)),
            ..Default::default()
        },
    )
    .await;
    let mut b = Browser::new();
    let page = sign_in(&mut b, &app, "/").await;
    assert_eq!(page.body, "Hello Adele Vance", "{ADELE}");
    let id = b.cookie(&app.url("/"), "identity").expect("session cookie");
    let expiry = |store: identity_core::sessions::MemoryBackend, id: String| async move {
        store.load(&id).await.unwrap().expect("stored").expires_at
    };
    let first = expiry(app.store.clone(), id.clone()).await;
    for path in ["/", "/maybe", "/"] {
        let r = b.get(&app.url(path)).await;
        assert!(r.body.contains("Adele Vance"), "{path}: {}", r.body);
        assert!(r.set_cookie("identity").is_none(), "{path}: {r:?}");
    }
    assert_eq!(expiry(app.store.clone(), id.clone()).await, first);

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let r = b.get(&app.url("/")).await;
    assert_eq!(r.body, "Hello Adele Vance");
    let renewed = r
        .set_cookie("identity")
        .expect("the touch renews the cookie");
    assert!(
        renewed.to_ascii_lowercase().contains("max-age=20"),
        "{renewed}"
    );
    assert!(expiry(app.store.clone(), id.clone()).await > first);
    // Signed out in the store (another instance, a logout notification): the next view
    // is anonymous.
    app.store.delete(&id).await.unwrap();
    assert_eq!(b.get(&app.url("/maybe")).await.body, "anonymous");
}

/// A sign-in ends after the absolute session lifetime, active or not: the page views
/// before it read the user (directly from the in-process store), the one after it is
/// anonymous and the session is gone from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_ends_after_the_absolute_lifetime() {
    use identity_core::sessions::SessionBackend;
    let kit = kit().await;
    let routes = Router::new()
        .route("/", get(index))
        .route("/maybe", get(maybe));
    let options = Options {
        absolute: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let app = serve(&kit, routes, options).await;
    let mut b = Browser::new();
    let page = sign_in(&mut b, &app, "/").await;
    assert_eq!(page.body, "Hello Adele Vance", "{ADELE}");
    let id = b.cookie(&app.url("/"), "identity").expect("session cookie");
    assert_eq!(
        b.get(&app.url("/maybe")).await.body,
        "signed in as Adele Vance"
    );
    // Sign-in times are whole seconds: past one second for sure.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.get(&app.url("/maybe")).await.body, "anonymous");
    assert!(
        app.store.load(&id).await.unwrap().is_none(),
        "session ended"
    );
    let r = b.get(&app.url("/")).await;
    assert_eq!(r.status, 401, "{}", r.body);
}
