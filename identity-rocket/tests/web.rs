//! The adapter over real HTTP against the local provider: sign-in, sessions, sign-out,
//! tokens and consent, roles, failures.

mod common;

use common::*;
use identity_rocket::IdentityFairing;
use identity_testkit::{Endpoint, TestKitConfig};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_returns_to_the_original_url_and_shows_the_user() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();

    let page = sign_in_at(&client, &app, "/page?q=a%20b&x=1").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "page a b for Adele Vance");

    let home = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.text().await.unwrap(), "Hello Adele Vance");

    let maybe = client.get(app.url("/maybe")).send().await.unwrap();
    assert_eq!(maybe.text().await.unwrap(), "signed in as Adele Vance");
    assert_eq!(app.store.len(), 1, "one server-side session");

    // A signed-in page view costs no provider call.
    kit.reset_counters();
    for _ in 0..3 {
        let r = client.get(app.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for e in Endpoint::ALL {
        assert_eq!(kit.calls(e), 0, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_page_is_a_401_meta_refresh_that_is_not_cached() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let res = browser().get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
    let provider = url::Url::parse(&meta_refresh(&html)).unwrap();
    assert!(provider.as_str().starts_with(&kit.authority()));
    let q: std::collections::HashMap<_, _> = provider.query_pairs().into_owned().collect();
    assert_eq!(q["redirect_uri"], app.url("/getAToken"));
    assert_eq!(q["code_challenge_method"], "S256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visitors_are_allowed_where_the_user_is_optional() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let res = browser().get(app.url("/maybe")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        set_cookies(&res).is_empty(),
        "no sign-in started, no cookie"
    );
    assert_eq!(res.text().await.unwrap(), "anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_http_only_lax_and_the_session_id_is_cycled() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();

    let res = client.get(app.url("/")).send().await.unwrap();
    let pending = set_cookies(&res);
    assert_eq!(pending.len(), 1, "{pending:?}");
    let p = &pending[0];
    assert!(p.starts_with("identity_pending="), "{p}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(p.contains(flag), "{flag} missing in {p}");
    }
    assert!(!p.contains("Secure"), "loopback http: no Secure flag: {p}");
    assert!(p.len() < 1500, "pending cookie is small: {}", p.len());

    let cb = through_provider(&client, &meta_refresh(&res.text().await.unwrap())).await;
    assert_eq!(cb.status(), 302);
    let cookies = set_cookies(&cb);
    let session = session_set_cookie(&cb);
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(flag), "{flag} missing in {session}");
    }
    let value = session.split(';').next().unwrap();
    assert!(
        value.len() <= 200,
        "session cookie at most 200 bytes: {value}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("identity_pending=;")
            || c.starts_with("identity_pending=") && c.contains("Max-Age=0")),
        "the consumed pending sign-in is dropped: {cookies:?}"
    );

    // A second sign-in (e.g. incremental consent) gives the session a new id; the old
    // cookie no longer opens it.
    let old_cookie = value.to_owned();
    let res = client.get(app.url("/mail")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let cb = through_provider(&client, &meta_refresh(&res.text().await.unwrap())).await;
    assert_eq!(cb.status(), 302);
    assert!(set_cookies(&cb).iter().any(|c| c.starts_with("identity=")));
    assert_eq!(app.store.len(), 1, "data moved, old id deleted");
    let stale = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/maybe"))
        .header("cookie", old_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.text().await.unwrap(), "anonymous");
    let current = client.get(app.url("/maybe")).send().await.unwrap();
    assert_eq!(current.text().await.unwrap(), "signed in as Adele Vance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_ends_the_session_and_redirects_to_the_provider() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();
    sign_in_at(&client, &app, "/").await;

    let res = client.get(app.url("/logout")).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let loc = location(&res);
    assert!(
        loc.starts_with(&format!("{}/oauth2/v2.0/logout?", kit.authority())),
        "{loc}"
    );
    let encoded_home = format!(
        "post_logout_redirect_uri={}",
        app.url("/").replace(':', "%3A").replace('/', "%2F")
    );
    assert!(loc.contains(&encoded_home), "{loc}");
    assert!(loc.contains("id_token_hint="), "{loc}");
    assert!(set_cookies(&res)
        .iter()
        .any(|c| c.starts_with("identity=") && c.contains("Max-Age=0")));
    assert!(app.store.is_empty(), "the server-side session is gone");

    // The provider sends the browser back home.
    let back = client.get(&loc).send().await.unwrap();
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), app.url("/"));
    let res = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 401, "signed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_replayed_callbacks_are_refused_with_400() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();

    let res = client.get(app.url("/")).send().await.unwrap();
    let provider = meta_refresh(&res.text().await.unwrap());
    let redirect = client.get(&provider).send().await.unwrap();
    let callback = location(&redirect);

    let mut tampered = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let bad = client.get(tampered.as_str()).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["cache-control"], "no-store");
    assert!(bad.text().await.unwrap().contains("state"));

    let good = client.get(&callback).send().await.unwrap();
    assert_eq!(good.status(), 302);
    let replay = client.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400, "a replayed callback redeems nothing");

    let empty = browser().get(app.url("/getAToken")).send().await.unwrap();
    assert_eq!(empty.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_links_stay_on_site() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    for evil in ["//evil.example", "https://evil.example", "/\\evil.example"] {
        let client = browser();
        let res = client
            .get(app.url("/login"))
            .query(&[("next", evil)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302);
        let cb = through_provider(&client, &location(&res)).await;
        assert_eq!(cb.status(), 302);
        assert_eq!(location(&cb), "/", "{evil} must not be followed");
    }
    let client = browser();
    let res = client
        .get(app.url("/login?next=%2Fpage%3Fq%3Dz"))
        .send()
        .await
        .unwrap();
    let cb = through_provider(&client, &location(&res)).await;
    assert_eq!(location(&cb), "/page?q=z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2c_cancel_goes_home_and_provider_errors_show_the_error_page() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();
    let res = client.get(app.url("/")).send().await.unwrap();
    let provider = url::Url::parse(&meta_refresh(&res.text().await.unwrap())).unwrap();
    let state = provider
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let cancel = client
        .get(app.url("/getAToken"))
        .query(&[
            ("error", "access_denied"),
            (
                "error_description",
                "AADB2C90091: The user has cancelled entering self-asserted information.",
            ),
            ("state", state.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 302, "B2C cancel goes home");
    assert_eq!(location(&cancel), "/");

    let res = client.get(app.url("/")).send().await.unwrap();
    let provider = url::Url::parse(&meta_refresh(&res.text().await.unwrap())).unwrap();
    let state = provider
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let failed = client
        .get(app.url("/getAToken"))
        .query(&[
            ("error", "access_denied"),
            (
                "error_description",
                "AADSTS65004: <script>alert(1)</script>",
            ),
            ("error_subcode", "cancel"),
            ("state", state.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 400);
    let html = failed.text().await.unwrap();
    assert!(
        html.contains("access_denied"),
        "Entra cancel shows the error page: {html}"
    );
    assert!(!html.contains("<script>alert"), "escaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_the_session_without_provider_calls() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();
    sign_in_at(&client, &app, "/").await;

    kit.reset_counters();
    let first = client
        .get(app.url("/token?scope=User.Read"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "token from_cache=false");
    assert_eq!(
        kit.calls(Endpoint::Token),
        1,
        "one refresh for a new scope set"
    );

    kit.reset_counters();
    let again = client
        .get(app.url("/token?scope=User.Read"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.text().await.unwrap(), "token from_cache=true");
    for e in Endpoint::ALL {
        assert_eq!(kit.calls(e), 0, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_consent_returns_to_the_page() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();
    sign_in_at(&client, &app, "/").await;

    // Mail.Read is not consented: the page starts a consent round trip.
    let res = client.get(app.url("/mail")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let provider = meta_refresh(&res.text().await.unwrap());
    let scope = url::Url::parse(&provider)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1
        .into_owned();
    assert!(scope.split(' ').any(|s| s == "Mail.Read"), "{scope}");
    let cb = through_provider(&client, &provider).await;
    assert_eq!(location(&cb), "/mail");
    let page = client.get(app.url("/mail")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.text().await.unwrap(),
        "mail token for Adele Vance (true)"
    );

    // Runtime scopes: the same through IdentitySession.
    let res = client
        .get(app.url("/token?scope=Mail.Read"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "token from_cache=true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_round_trips_are_limited() {
    // Access tokens shorter than the refresh margin are never served from the cache, and
    // every refresh token is revoked after each round trip: the provider keeps asking.
    let kit =
        kit_with(TestKitConfig::default().with_access_token_lifetime(Duration::from_secs(60)))
            .await;
    let app = web_app(&kit).await;
    let client = browser();
    sign_in_at(&client, &app, "/").await;

    for round in 1..=2 {
        kit.revoke_refresh_tokens(ADELE);
        let res = client.get(app.url("/mail")).send().await.unwrap();
        assert_eq!(res.status(), 401, "round trip {round}");
        let cb = through_provider(&client, &meta_refresh(&res.text().await.unwrap())).await;
        assert_eq!(location(&cb), "/mail");
    }
    kit.revoke_refresh_tokens(ADELE);
    let res = client.get(app.url("/mail")).send().await.unwrap();
    assert_eq!(res.status(), 403, "the third round trip is refused");
    let html = res.text().await.unwrap();
    assert!(html.contains("Consent could not be obtained"), "{html}");
    assert!(html.contains("Mail.Read"), "{html}");
    assert!(!html.contains("http-equiv=\"refresh\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_checked() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();
    let page = sign_in_at(&client, &app, "/reader").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "reader Adele Vance");
    let res = client.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    // The page names the role the page requires.
    assert!(
        html.contains("app role") && html.contains("Admin"),
        "{html}"
    );
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "no sign-in loop: {html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_checked() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();
    let page = sign_in_at(&client, &app, "/group").await;
    assert_eq!(page.status(), 200, "group ids compare case-insensitively");
    assert_eq!(page.text().await.unwrap(), "group member Adele Vance");
    let res = client.get(app.url("/other_group")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("group"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_traffic_leaves_no_server_side_record() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for i in 0..1000 {
        let res = client.get(app.url("/")).send().await.unwrap();
        assert_eq!(res.status(), 401, "request {i}");
    }
    assert!(app.store.is_empty(), "{} sessions", app.store.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_is_a_503_page_not_a_bare_500() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    kit.set_fault(
        Endpoint::Discovery,
        Some(identity_testkit::Fault::Status(500)),
    );
    let res = browser().get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let html = res.text().await.unwrap();
    assert!(html.contains("unavailable"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_is_aborted_with_a_precise_message_on_bad_settings() {
    let port = free_port();
    let figment = base_figment(port).merge(("identity.client_secret", "s"));
    let fairing = IdentityFairing::new();
    let error = fairing.validate(&figment).await.unwrap_err().to_string();
    assert!(error.contains("client_id"), "{error}");
    assert!(error.contains("authority"), "{error}");
    assert!(error.contains("[default.identity]"), "{error}");
    let ignite = app_rocket(figment, fairing).ignite().await;
    match ignite {
        Ok(_) => panic!("launch must abort"),
        // Inspecting the kind marks Rocket's error as handled.
        Err(e) => match e.kind() {
            rocket::error::ErrorKind::FailedFairings(f) => assert_eq!(f[0].name, "identity"),
            other => panic!("{other:?}"),
        },
    }

    let figment = base_figment(port)
        .merge(("identity.client_id", "x"))
        .merge((
            "identity.authority",
            "https://login.microsoftonline.com/common",
        ))
        .merge(("identity.redirect_uri", "http://localhost:5000/"));
    let error = IdentityFairing::new()
        .validate(&figment)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("redirect_uri"), "{error}");

    let figment = base_figment(port)
        .merge(("identity.client_id", "x"))
        .merge((
            "identity.authority",
            "https://login.microsoftonline.com/common",
        ))
        .merge(("identity.session_store", "memcached://x"));
    let error = IdentityFairing::new()
        .validate(&figment)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("session_store"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_apps_show_the_configuration_page_everywhere() {
    let port = free_port();
    let rocket = app_rocket(
        base_figment(port),
        IdentityFairing::new().show_config_page_when_unconfigured(),
    );
    let app = launch(rocket, identity_core::sessions::MemoryBackend::new()).await;
    for path in ["/", "/maybe", "/login", "/getAToken", "/api/any"] {
        let res = browser().get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 500, "{path}");
        let html = res.text().await.unwrap();
        assert!(html.contains("Almost there"), "{path}: {html}");
        assert!(html.contains("client_id"), "{path}: {html}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_a_rocket_private_cookie_holding_only_the_id() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();
    let anonymous = client
        .get(app.url("/private_session_id"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.text().await.unwrap(), "none");
    sign_in_at(&client, &app, "/").await;
    let id = client
        .get(app.url("/private_session_id"))
        .send()
        .await
        .unwrap();
    assert_eq!(id.text().await.unwrap(), "43", "a 256-bit id, base64url");
}

/// A sign-in ends after the absolute session lifetime, active or not: the page views
/// before it read the user (directly from the in-process store), the one after it is
/// anonymous and the session is gone from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_ends_after_the_absolute_lifetime() {
    let kit = kit().await;
    let port = free_port();
    let store = identity_core::sessions::MemoryBackend::new();
    let fairing = IdentityFairing::new()
        .session_backend(store.clone())
        .configure(|auth| auth.core(|web| web.absolute_timeout(Duration::from_secs(1))));
    let app = launch(app_rocket(web_app_figment(&kit, port), fairing), store).await;
    let client = browser();
    let page = sign_in_at(&client, &app, "/").await;
    assert_eq!(page.text().await.unwrap(), "Hello Adele Vance");
    let maybe = client.get(app.url("/maybe")).send().await.unwrap();
    assert_eq!(maybe.text().await.unwrap(), "signed in as Adele Vance");
    // Sign-in times are whole seconds: past one second for sure.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let maybe = client.get(app.url("/maybe")).send().await.unwrap();
    assert_eq!(maybe.text().await.unwrap(), "anonymous");
    assert_eq!(app.store.len(), 0, "session ended");
    let home = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 401);
}

/// The session cookie opens once per process and is remembered by its exact value: after
/// the genuine value was seen, an altered copy is still refused, and the genuine one
/// keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_session_cookie_is_refused_after_the_genuine_one_was_seen() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let client = browser();
    let res = client.get(app.url("/")).send().await.unwrap();
    let html = res.text().await.unwrap();
    let callback = through_provider(&client, &meta_refresh(&html)).await;
    let session = session_set_cookie(&callback);
    let value = session["identity=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let plain = reqwest::Client::new();
    let view = |cookie: String| {
        let request = plain
            .get(app.url("/"))
            .header("cookie", format!("identity={cookie}"));
        async move { request.send().await.unwrap() }
    };
    for _ in 0..2 {
        let page = view(value.clone()).await;
        assert_eq!(page.text().await.unwrap(), "Hello Adele Vance");
    }
    // One character changed in the sealed value (still valid base64).
    let mut altered: Vec<char> = value.chars().collect();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    assert_eq!(
        view(altered).await.status(),
        401,
        "an altered cookie opens nothing"
    );
    let page = view(value).await;
    assert_eq!(page.text().await.unwrap(), "Hello Adele Vance");
}

/// Cookies split over several `Cookie` headers (as HTTP/2 clients send them) are all
/// read: the pending sign-in cookie at the callback and the session cookie on a view,
/// each in the second header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_split_over_several_headers_are_all_read() {
    let kit = kit().await;
    let app = web_app(&kit).await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let two_headers = |url: String, cookie: &str| {
        plain
            .get(url)
            .header("cookie", "theme=dark")
            .header("cookie", cookie.to_owned())
    };
    let login = two_headers(app.url("/"), "lang=en").send().await.unwrap();
    assert_eq!(login.status(), 401);
    let pending = set_cookies(&login)
        .into_iter()
        .find(|c| c.starts_with("identity_pending="))
        .expect("a pending sign-in cookie");
    let pending = pending.split(';').next().unwrap().to_owned();
    let provider = plain
        .get(meta_refresh(&login.text().await.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(provider.status(), 302);
    let callback = two_headers(location(&provider), &pending)
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), 302, "the pending cookie was read");
    let session = session_set_cookie(&callback);
    let session = session.split(';').next().unwrap().to_owned();
    let page = two_headers(app.url("/"), &session).send().await.unwrap();
    assert_eq!(page.text().await.unwrap(), "Hello Adele Vance");
}
