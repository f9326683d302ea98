//! End-to-end checks of a sample against independent peers: panva's `oidc-provider` (an
//! OpenID provider we did not write), headless Chromium, and several sample instances
//! sharing a real `redis-server`. Each function skips (returns after printing why) when
//! its tool is missing, unless `IDENTITY_TEST_TOOLS_REQUIRED` is set.

use super::browser::{Browser, Page};
use super::launcher::{Sample, SampleLauncher};
use super::peers::{
    chromium, e2e_dir, node_available, run_browser_script, tool_available, OidcPeer,
    OidcPeerOptions, RedisServer,
};
use super::process::free_port;
use super::scenarios::{expect_login_page, ADELE, ADELE_NAME};
use crate::{Endpoint, TestKit, TestKitConfig, WORKFORCE_TENANT_ID};
use std::time::{Duration, Instant};
use url::Url;

/// The core refreshes access tokens this long before they expire.
const REFRESH_AHEAD_SECS: u64 = 300;

/// How long after Redis last answered an instance still serves its copies of sessions
/// (identity-core's `sessions::copies::LIVE_FOR`, which its tests hold equal to this).
pub const REDIS_COPIES_LIVE_FOR: Duration = Duration::from_millis(500);

/// Waits until a change that one instance made to a Redis session (a sign-out, a
/// refreshed token) is seen by every other instance sharing the server. Redis's notice
/// usually reaches them within a millisecond; the bound is [`REDIS_COPIES_LIVE_FOR`]: an
/// instance serves a copy only while its connection answered a command sent less than
/// that long ago, and an answer to a command sent after the change comes after the
/// change's notice. So once that long has passed since the change, no instance serves a
/// copy read before it.
pub async fn until_redis_copies_catch_up() {
    tokio::time::sleep(REDIS_COPIES_LIVE_FOR + Duration::from_millis(50)).await;
}

/// In the cluster refresh checks, access tokens come due this long after they are issued:
/// long enough for a 50-request burst on a loaded machine to finish before the refreshed
/// token comes due again.
const DUE_AFTER_SECS: u64 = 6;
const DUE_AFTER: Duration = Duration::from_secs(DUE_AFTER_SECS);
/// How long an access token stays cached in the refresh checks.
const CACHED_FOR: Duration = Duration::from_secs(4);

struct Interop {
    peer: OidcPeer,
    sample: Sample,
    browser: Browser,
}

impl Interop {
    async fn start(launcher: &SampleLauncher) -> Option<Interop> {
        let port = free_port();
        Self::start_with(
            launcher,
            port,
            OidcPeerOptions {
                redirect_uris: vec![format!("http://127.0.0.1:{port}/getAToken")],
                post_logout_redirect_uris: vec![format!("http://127.0.0.1:{port}/")],
                access_token_ttl: REFRESH_AHEAD_SECS + CACHED_FOR.as_secs(),
                id_token_ttl: 3600,
                ..OidcPeerOptions::default()
            },
        )
        .await
    }

    async fn start_with(
        launcher: &SampleLauncher,
        port: u16,
        options: OidcPeerOptions,
    ) -> Option<Interop> {
        if !node_available() {
            return None;
        }
        let peer = OidcPeer::start(&options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let sample = Self::sample(launcher, &peer).port(port).start().await;
        Some(Interop {
            peer,
            sample,
            browser: Browser::new(),
        })
    }

    /// The sample wired to `peer` (port and session store still to choose).
    fn sample(launcher: &SampleLauncher, peer: &OidcPeer) -> super::launcher::Launch {
        launcher
            .bare()
            .env("CLIENT_ID", OidcPeer::CLIENT_ID)
            .env("CLIENT_SECRET", OidcPeer::CLIENT_SECRET)
            .env("OIDC_AUTHORITY", &peer.issuer)
            .env("REDIRECT_URI", "http://127.0.0.1:{port}/getAToken")
            .env("SCOPE", OidcPeer::API_SCOPE)
            .env("ENDPOINT", &peer.api_url)
            .env("SESSION_STORE", "memory")
    }

    fn diag(&self) -> String {
        format!(
            "\n---- browser trail ----\n{}\n{}\n{}",
            self.browser.trail(),
            self.sample.log(),
            self.peer.log()
        )
    }

    /// From a page of the app, through oidc-provider's development login and consent
    /// pages (any login, any password), back to the app. Returns the page and the
    /// interactions seen (`login`, `consent`).
    async fn through_provider(&self, mut page: Page) -> (Page, Vec<String>) {
        let mut seen = Vec::new();
        for _ in 0..10 {
            page = self.browser.follow(page).await;
            if page.origin() != self.peer.origin {
                break;
            }
            let Some(mut form) = page.form_where(|f| f.has_field("prompt")) else {
                break;
            };
            let prompt = form.get("prompt").unwrap_or_default().to_owned();
            if prompt == "login" {
                form.set("login", "adele").set("password", "any password");
            }
            seen.push(prompt);
            page = self.browser.submit(&form).await;
        }
        (page, seen)
    }
}

/// Interop with panva's `oidc-provider`: the sample signs in (scripted form posts through
/// the provider's login and consent pages) with `OIDC_AUTHORITY`, gets a JWT access token
/// for a resource-indicator API scope and calls the API, uses the cached token (no token
/// call), refreshes it once it is due (one token call), shows the `name` claim, and signs
/// out through the provider's end-session endpoint back to the app.
pub async fn interop_sign_in_api_refresh_sign_out(launcher: &SampleLauncher) {
    let Some(w) = Interop::start(launcher).await else {
        return;
    };
    let page = w.browser.get(&w.sample.url("/call_api")).await;
    let auth = expect_login_page(&page, &w.peer.issuer, &w.diag());
    assert!(auth.path().ends_with("/auth"), "{auth}");
    let first = w.browser.get_url(&auth).await;
    let (api, seen) = w.through_provider(first).await;
    assert_eq!(seen, ["login", "consent"], "{}", w.diag());
    assert_eq!(
        api.url.path(),
        "/call_api",
        "{}\n{}",
        api.describe(),
        w.diag()
    );
    assert!(
        api.status == 200 && api.contains("displayName") && api.contains(ADELE_NAME),
        "API page: {}\n{}",
        api.describe(),
        w.diag()
    );
    let cached_until = Instant::now() + CACHED_FOR;
    assert_eq!(
        w.peer.count("token").await,
        1,
        "one code redemption\n{}",
        w.diag()
    );
    assert_eq!(w.peer.count("api").await, 1);

    let again = w.browser.navigate(&w.sample.url("/call_api")).await;
    assert!(
        again.contains("displayName"),
        "{}\n{}",
        again.describe(),
        w.diag()
    );
    if Instant::now() < cached_until - Duration::from_secs(1) {
        assert_eq!(
            w.peer.count("token").await,
            1,
            "a cached token made a token call\n{}",
            w.diag()
        );
    }
    assert_eq!(w.peer.count("api").await, 2);

    tokio::time::sleep_until((cached_until + Duration::from_millis(1500)).into()).await;
    let tokens = w.peer.count("token").await;
    let refreshed = w.browser.navigate(&w.sample.url("/call_api")).await;
    assert!(
        refreshed.contains("displayName"),
        "after the refresh: {}\n{}",
        refreshed.describe(),
        w.diag()
    );
    assert_eq!(
        w.peer.count("token").await,
        tokens + 1,
        "one refresh\n{}",
        w.diag()
    );

    let home = w.browser.navigate(&w.sample.url("/")).await;
    assert!(
        home.contains(ADELE_NAME),
        "{}\n{}",
        home.describe(),
        w.diag()
    );

    // Sign-out: the provider confirms, then sends the browser back to the app.
    let out = w.browser.get(&w.sample.url("/logout")).await;
    let end = out
        .location
        .clone()
        .unwrap_or_else(|| panic!("/logout did not redirect: {}\n{}", out.describe(), w.diag()));
    assert!(end.as_str().starts_with(&w.peer.issuer), "{end}");
    let q = |k: &str| {
        end.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        q("post_logout_redirect_uri"),
        Some(w.sample.url("/")),
        "{end}"
    );
    assert!(q("id_token_hint").is_some(), "{end}");
    let confirm_page = w.browser.follow(out).await;
    let mut confirm = confirm_page
        .form_where(|f| f.has_field("xsrf"))
        .unwrap_or_else(|| panic!("no logout form: {}\n{}", confirm_page.describe(), w.diag()));
    assert!(confirm.press("yes"), "no 'yes' button on the logout form");
    let answer = w.browser.submit(&confirm).await;
    let home = Url::parse(&w.sample.url("/")).expect("url");
    assert_eq!(
        answer.next_hop().as_ref(),
        Some(&home),
        "the provider sends the browser back to the app: {}\n{}",
        answer.describe(),
        w.diag()
    );
    let back = w.browser.get_url(&home).await;
    assert!(
        !back.contains(ADELE_NAME),
        "signed in after sign-out\n{}",
        w.diag()
    );
    expect_login_page(&back, &w.peer.issuer, &w.diag());
}

/// Interop, incremental scope: signed in without the API scope, `/call_api` leads to
/// the provider (which refuses to widen the refresh token's scope with `invalid_scope`,
/// as RFC 6749 §6 allows) and back to the API page after consent.
pub async fn interop_incremental_scope(launcher: &SampleLauncher) {
    let Some(w) = Interop::start(launcher).await else {
        return;
    };
    let page = w.browser.get(&w.sample.url("/")).await;
    let auth = expect_login_page(&page, &w.peer.issuer, &w.diag());
    let (home, _) = w.through_provider(w.browser.get_url(&auth).await).await;
    assert!(
        home.contains(ADELE_NAME),
        "{}\n{}",
        home.describe(),
        w.diag()
    );

    let page = w.browser.get(&w.sample.url("/call_api")).await;
    let auth = expect_login_page(&page, &w.peer.issuer, &w.diag());
    let (api, seen) = w.through_provider(w.browser.get_url(&auth).await).await;
    assert!(
        !seen.contains(&"login".to_owned()),
        "SSO: no second login\n{}",
        w.diag()
    );
    assert_eq!(
        api.url.path(),
        "/call_api",
        "{}\n{}",
        api.describe(),
        w.diag()
    );
    assert!(
        api.contains("displayName"),
        "{}\n{}",
        api.describe(),
        w.diag()
    );
}

/// Headless Chromium signs in through the testkit's interactive HTML pages (typing the
/// user name and password), sees the user's name, opens the API page, and signs out back
/// to the app; screenshots go to `target/e2e/{name}/`.
pub async fn chromium_sign_in_and_out(launcher: &SampleLauncher, name: &str) {
    if !node_available()
        || !tool_available("Chromium", chromium().is_some(), "apt-get install chromium")
    {
        return;
    }
    let kit = TestKit::start(TestKitConfig::default()).await.expect("kit");
    let sample = launcher.wired_to(&kit).start().await;
    let shots = e2e_dir(name);
    let _ = std::fs::remove_dir_all(&shots);
    let run = run_browser_script(&[
        "--app".into(),
        sample.base_url(),
        "--user".into(),
        ADELE.into(),
        "--name".into(),
        ADELE_NAME.into(),
        "--screenshots".into(),
        shots.display().to_string(),
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let ctx = || format!("{}\n{}", run.output, sample.log());
    assert!(run.ok, "the browser run failed\n{}", ctx());
    assert_eq!(
        run.step("sign-in")["provider_pages"],
        serde_json::json!(["sign-in"]),
        "{}",
        ctx()
    );
    assert_eq!(run.step("sign-in")["shows_name"], true, "{}", ctx());
    assert_eq!(run.step("api")["shows_api"], true, "{}", ctx());
    assert_eq!(run.step("sign-out")["back_on_app"], true, "{}", ctx());
    assert_eq!(
        run.step("after-sign-out")["needs_password"],
        true,
        "SSO ended\n{}",
        ctx()
    );
    assert_eq!(kit.calls(Endpoint::Logout), 1, "{}", ctx());
    assert!(
        kit.calls(Endpoint::Token) >= 1 && kit.calls(Endpoint::Api) >= 1,
        "{}",
        ctx()
    );
}

/// The same in Chromium with Entra's real host name: the testkit serves TLS with its own
/// CA for `login.microsoftonline.com`; the sample reaches it through `IDENTITY_RESOLVE`
/// and trusts the CA through `SSL_CERT_FILE`, so host-based authority detection runs as
/// in production; Chromium maps the host with `--host-resolver-rules`.
pub async fn chromium_with_entra_host_names(launcher: &SampleLauncher, name: &str) {
    if !node_available()
        || !tool_available("Chromium", chromium().is_some(), "apt-get install chromium")
    {
        return;
    }
    let kit = TestKit::start(TestKitConfig::default().with_tls())
        .await
        .expect("kit");
    let (sample, ca) = entra_named_sample(launcher, &kit).await;
    let shots = e2e_dir(name);
    let _ = std::fs::remove_dir_all(&shots);
    let run = run_browser_script(&[
        "--app".into(),
        sample.base_url(),
        "--user".into(),
        ADELE.into(),
        "--name".into(),
        ADELE_NAME.into(),
        "--screenshots".into(),
        shots.display().to_string(),
        "--map-host".into(),
        "login.microsoftonline.com".into(),
        "--ignore-certificate-errors".into(),
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&ca);
    let ctx = || format!("{}\n{}", run.output, sample.log());
    assert!(run.ok, "the browser run failed\n{}", ctx());
    let signed_in_at = run.step("sign-in")["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(signed_in_at.starts_with(&sample.base_url()), "{}", ctx());
    assert!(
        run.steps.iter().any(
            |s| s["requests"].as_array().is_some_and(|n| n.iter().any(|u| u
                .as_str()
                .is_some_and(|u| u.starts_with("https://login.microsoftonline.com:")
                    && u.contains("client_info=1"))))
        ),
        "the browser went to login.microsoftonline.com, with Entra's client_info=1 (host-based \
         detection of an Entra authority)\n{}",
        ctx()
    );
    assert_eq!(run.step("api")["shows_api"], true, "{}", ctx());
    assert_eq!(run.step("sign-out")["back_on_app"], true, "{}", ctx());
    assert_eq!(kit.calls(Endpoint::Logout), 1, "{}", ctx());
}

/// A sample wired to a TLS kit under Entra's real host names (`login.microsoftonline.com`
/// and `graph.microsoft.com` mapped to the kit through `IDENTITY_RESOLVE`, the kit's CA
/// trusted through `SSL_CERT_FILE`), and the CA file to remove afterwards.
async fn entra_named_sample(
    launcher: &SampleLauncher,
    kit: &TestKit,
) -> (Sample, std::path::PathBuf) {
    let port = kit.addr().port();
    let ca = std::env::temp_dir().join(format!("identity-e2e-ca-{port}.pem"));
    std::fs::write(&ca, kit.ca_pem().expect("TLS kit has a CA")).expect("write CA");
    let sample = launcher
        .wired_to(kit)
        .env(
            "AUTHORITY",
            format!("https://login.microsoftonline.com:{port}/{WORKFORCE_TENANT_ID}"),
        )
        .env(
            "ENDPOINT",
            format!("https://graph.microsoft.com:{port}/v1.0/me"),
        )
        .env(
            "IDENTITY_RESOLVE",
            format!(
                "login.microsoftonline.com=127.0.0.1:{port},graph.microsoft.com=127.0.0.1:{port}"
            ),
        )
        .env("SSL_CERT_FILE", ca.display().to_string())
        .start()
        .await;
    (sample, ca)
}

/// Front-channel logout in a real browser, cross-site as in production: Chromium signs in
/// to the sample through `login.microsoftonline.com` (the kit, mapped), then signs out
/// at the provider. The provider's sign-out page frames the sample's
/// `frontchannel_logout?sid=…`; the browser sends no cookie of the app into that
/// third-party frame, yet the frame answers 200 and the app's session is over: `/` leads
/// to the provider's sign-in form again.
pub async fn chromium_front_channel_logout(launcher: &SampleLauncher, name: &str) {
    if !node_available()
        || !tool_available("Chromium", chromium().is_some(), "apt-get install chromium")
    {
        return;
    }
    let kit = TestKit::start(TestKitConfig::default().with_tls())
        .await
        .expect("kit");
    let (sample, ca) = entra_named_sample(launcher, &kit).await;
    let front = sample.url("/frontchannel_logout");
    kit.register_logout_uris(crate::WEB_APP_CLIENT_ID, Some(front.clone()), None);
    let port = kit.addr().port();
    let shots = e2e_dir(name);
    let _ = std::fs::remove_dir_all(&shots);
    let run = run_browser_script(&[
        "--app".into(),
        sample.base_url(),
        "--user".into(),
        ADELE.into(),
        "--name".into(),
        ADELE_NAME.into(),
        "--screenshots".into(),
        shots.display().to_string(),
        "--map-host".into(),
        "login.microsoftonline.com".into(),
        "--ignore-certificate-errors".into(),
        "--provider-logout".into(),
        format!(
            "https://login.microsoftonline.com:{port}/{WORKFORCE_TENANT_ID}/oauth2/v2.0/logout"
        ),
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&ca);
    let ctx = || format!("{}\n{}", run.output, sample.log());
    assert!(run.ok, "the browser run failed\n{}", ctx());
    let frames = run.step("provider-sign-out")["frames"].clone();
    let frame = frames
        .as_array()
        .and_then(|f| {
            f.iter().find(|f| {
                f["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(&format!("{front}?sid=")))
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("the sign-out page framed no front-channel URL\n{}", ctx()));
    assert_eq!(frame["status"], 200, "{}", ctx());
    assert_eq!(
        frame["sent_cookie"],
        false,
        "a third-party frame carries no SameSite=Lax cookie\n{}",
        ctx()
    );
    assert_eq!(
        run.step("after-sign-out")["needs_password"],
        true,
        "the app's session ended (a live one would show the user's name on `/`)\n{}",
        ctx()
    );
}

/// Several instances: two sample processes share a real `redis-server` and one
/// `SESSION_SECRET`. A user signed in on A is signed in on B (home and API pages); A
/// restarted still knows the session (no token call); a sign-in started on A whose
/// callback lands on B completes.
pub async fn instances_share_sessions(launcher: &SampleLauncher) {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let kit = TestKit::start(TestKitConfig::default().with_auto_approve(ADELE))
        .await
        .expect("kit");
    let base = launcher
        .wired_to(&kit)
        .env("SESSION_STORE", redis.url())
        .env("SESSION_SECRET", "0123456789abcdef".repeat(4));
    let mut a = base.clone().start().await;
    let b = base.start().await;
    let browser = Browser::new();
    let ctx = |a: &Sample| {
        format!(
            "\n---- browser trail ----\n{}\n{}\n{}\n{}",
            browser.trail(),
            a.log(),
            b.log(),
            redis.log()
        )
    };

    // Sign in on A.
    let page = browser.navigate(&a.url("/")).await;
    assert!(
        page.contains(ADELE_NAME),
        "{}\n{}",
        page.describe(),
        ctx(&a)
    );
    assert_eq!(page.origin(), a.base_url());
    assert_eq!(kit.calls(Endpoint::Token), 1);

    // The records in Redis hold no token: the tokens are sealed with SESSION_SECRET.
    let records = redis
        .session_records()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!records.is_empty(), "no session in Redis\n{}", ctx(&a));
    for raw in &records {
        assert!(
            raw.contains("identity.tokens")
                && !raw.contains("eyJ")
                && !raw.contains("refresh_token"),
            "a token is readable in Redis: {raw}"
        );
    }

    // B serves the same session (cookies are per host, so the browser sends them to B).
    let page = browser.navigate(&b.url("/")).await;
    assert!(
        page.contains(ADELE_NAME),
        "B does not know the session: {}\n{}",
        page.describe(),
        ctx(&a)
    );
    let page = browser.navigate(&b.url("/call_api")).await;
    assert!(
        page.contains("displayName"),
        "{}\n{}",
        page.describe(),
        ctx(&a)
    );
    assert_eq!(page.origin(), b.base_url(), "{}", ctx(&a));
    let tokens = kit.calls(Endpoint::Token);

    // A restarts: nothing was held in its memory.
    a.restart().await;
    let page = browser.navigate(&a.url("/")).await;
    assert!(
        page.contains(ADELE_NAME),
        "session lost with the restart: {}\n{}",
        page.describe(),
        ctx(&a)
    );
    let page = browser.navigate(&a.url("/call_api")).await;
    assert!(
        page.contains("displayName"),
        "{}\n{}",
        page.describe(),
        ctx(&a)
    );
    assert_eq!(
        kit.calls(Endpoint::Token),
        tokens,
        "the cached access token survived the restart\n{}",
        ctx(&a)
    );

    // A sign-in that starts on A and whose callback lands on B (a load balancer).
    let other = Browser::new();
    let page = other.get(&a.url("/")).await;
    let auth = expect_login_page(&page, &kit.base_url(), &ctx(&a));
    let at_kit = other.get_url(&auth).await;
    let callback = at_kit
        .next_hop()
        .expect("auto-approve redirects to the callback");
    let mut on_b = callback.clone();
    on_b.set_port(Some(b.port())).expect("port");
    let landed = other.get_url(&on_b).await;
    assert!(
        landed.is_redirect(),
        "the callback on B: {}\n{}",
        landed.describe(),
        ctx(&a)
    );
    let page = other.follow(landed).await;
    assert!(
        page.contains(ADELE_NAME),
        "{}\n{}",
        page.describe(),
        ctx(&a)
    );
    let page = other.navigate(&a.url("/")).await;
    assert!(
        page.contains(ADELE_NAME),
        "{}\n{}",
        page.describe(),
        ctx(&a)
    );
}

/// Signs in at `/` with the auto-approving kit and returns the home page.
async fn signed_in_home(browser: &Browser, sample: &Sample, why: impl Fn() -> String) -> Page {
    let page = browser.navigate(&sample.url("/")).await;
    assert!(page.contains(ADELE_NAME), "{}\n{}", page.describe(), why());
    page
}

/// `GET /` until it shows the signed-in user (Redis reconnecting), for at most 15 s.
async fn until_signed_in(browser: &Browser, sample: &Sample, why: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = browser.navigate(&sample.url("/")).await;
        if page.contains(ADELE_NAME) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not recover: {}\n{}",
            page.describe(),
            why()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A redis-server, the auto-approving kit, and the sample keeping its sessions in that
/// server.
async fn sample_on_redis(launcher: &SampleLauncher) -> (RedisServer, TestKit, Sample) {
    let redis = RedisServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let kit = TestKit::start(TestKitConfig::default().with_auto_approve(ADELE))
        .await
        .expect("kit");
    let sample = launcher
        .wired_to(&kit)
        .env("SESSION_STORE", redis.url())
        .start()
        .await;
    (redis, kit, sample)
}

/// A Redis outage mid-session: once Redis has not answered for longer than the
/// instance's copies may outlive an answer ([`REDIS_COPIES_LIVE_FOR`]), a signed-in page view gets
/// the 503 page saying the session store is unreachable within a few seconds (every
/// command is bounded), not a hung request; when Redis answers again the same session
/// works. When Redis is down and comes back empty, the app answers again (a new sign-in).
pub async fn redis_outage_is_bounded_and_recovers(launcher: &SampleLauncher) {
    if !RedisServer::available() {
        return;
    }
    let (redis, _kit, sample) = sample_on_redis(launcher).await;
    let browser = Browser::new();
    let why = || {
        format!(
            "\n---- browser trail ----\n{}\n{}",
            browser.trail(),
            sample.log()
        )
    };
    signed_in_home(&browser, &sample, why).await;

    // Unresponsive for six seconds. The instance's copy of the session is served only
    // while the connection answered within `LIVE_FOR`: past it, the view waits for Redis.
    redis.pause(6000).await.unwrap_or_else(|e| panic!("{e}"));
    let paused_at = Instant::now();
    tokio::time::sleep(REDIS_COPIES_LIVE_FOR + Duration::from_millis(100)).await;
    let page = browser.get(&sample.url("/")).await;
    let waited = paused_at.elapsed();
    assert_eq!(page.status, 503, "{}\n{}", page.describe(), why());
    assert!(
        page.contains("session store"),
        "{}\n{}",
        page.describe(),
        why()
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        paused_at + Duration::from_millis(6500),
    ))
    .await;
    until_signed_in(&browser, &sample, why).await;

    // Down, then back (empty: it keeps nothing on disk).
    let port = redis.port();
    redis.stop().await;
    let down_at = Instant::now();
    // As above: the copy read just before may be served until the closed connection is
    // noticed, at most `REDIS_COPIES_LIVE_FOR` after Redis last answered.
    until_redis_copies_catch_up().await;
    let page = browser.get(&sample.url("/")).await;
    assert_eq!(page.status, 503, "{}\n{}", page.describe(), why());
    assert!(down_at.elapsed() < Duration::from_secs(5));
    let _redis = RedisServer::start_on(port)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    until_signed_in(&browser, &sample, why).await;
}

/// Signed-in page views read the Redis session store at most once each and write
/// nothing, counted by the server (`INFO commandstats`): views of a page that shows the
/// user, and views that also read the session's tokens (`/call_api`, its access token
/// cached), whose adapter may read the user straight from the store besides its session
/// layer. Repeated views of one session are served from the instance's copy, which
/// Redis keeps coherent: ten views read the record at most twice (once after the copy
/// was dropped, once more if the connection's liveness lapsed on a busy machine).
pub async fn page_views_read_redis_at_most_once(launcher: &SampleLauncher) {
    if !RedisServer::available() {
        return;
    }
    let (redis, _kit, sample) = sample_on_redis(launcher).await;
    let browser = Browser::new();
    let why = || format!("\n{}\n{}", browser.trail(), sample.log());
    signed_in_home(&browser, &sample, why).await;
    let page = browser.navigate(&sample.url("/call_api")).await;
    assert!(
        page.contains("displayName"),
        "{}\n{}",
        page.describe(),
        why()
    );
    for (path, shows) in [("/", ADELE_NAME), ("/call_api", "displayName")] {
        let before = redis
            .command_calls()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..10 {
            let page = browser.get(&sample.url(path)).await;
            assert!(
                page.status == 200 && page.contains(shows),
                "{path}: {}\n{}",
                page.describe(),
                why()
            );
        }
        let after = redis
            .command_calls()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let used = RedisServer::calls_between(&before, &after);
        let reads = used.get("get").copied().unwrap_or(0);
        assert!(
            reads <= 2
                && used.get("client|tracking").copied().unwrap_or(0) <= reads
                && used
                    .keys()
                    .all(|c| ["get", "client|tracking", "ping"].contains(&c.as_str())),
            "Redis commands of 10 views of {path}: {used:?}{}",
            why()
        );
    }
}

/// `rediss://`: sessions kept in a Redis that speaks TLS only (its CA given with
/// `SSL_CERT_FILE`) work across a restart of the app; the port refuses cleartext, so the
/// app really used TLS; and a `redis://` URL to it fails to start with a clear message.
pub async fn rediss_sessions_use_tls(launcher: &SampleLauncher) {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start_tls()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ca = redis.ca_file().expect("a TLS server").display().to_string();
    let kit = TestKit::start(TestKitConfig::default().with_auto_approve(ADELE))
        .await
        .expect("kit");
    let launch = launcher
        .wired_to(&kit)
        .env("SESSION_STORE", redis.url())
        .env("SSL_CERT_FILE", &ca)
        .env("SESSION_SECRET", "0123456789abcdef".repeat(4));
    let mut sample = launch.start().await;
    let browser = Browser::new();
    let why = || format!("\n{}\n{}", browser.trail(), redis.log());
    signed_in_home(&browser, &sample, why).await;
    sample.restart().await;
    signed_in_home(&browser, &sample, why).await;

    // Cleartext to the TLS port gets no answer a Redis client could use.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", redis.port()))
        .await
        .expect("connect");
    plain.write_all(b"PING\r\n").await.expect("write");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), plain.read(&mut buf)).await;
    let answer = match read {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    };
    assert!(!answer.starts_with("+PONG"), "the port speaks cleartext");

    let cleartext = launch
        .clone()
        .env(
            "SESSION_STORE",
            format!("redis://localhost:{}", redis.port()),
        )
        .try_start()
        .await;
    // The sample either refuses to start, or starts and shows on every page that the
    // session store cannot be used; it never serves sessions over cleartext.
    match cleartext {
        Ok(s) => {
            let page = Browser::new().get(&s.url("/")).await;
            assert!(
                page.status >= 500 && page.contains("session store"),
                "served over cleartext to a TLS port: {}\n{}",
                page.describe(),
                s.log()
            );
        }
        Err(e) => assert!(e.contains("session store"), "{e}"),
    }
}

/// Two instances on one `redis-server`, A and B, sharing `SESSION_STORE` and
/// `SESSION_SECRET`.
async fn two_instances(
    launcher: &SampleLauncher,
    kit: &TestKit,
    redis: &RedisServer,
) -> (Sample, Sample) {
    let base = launcher
        .wired_to(kit)
        .env("SESSION_STORE", redis.url())
        .env("SESSION_SECRET", "0123456789abcdef".repeat(4));
    let a = base.clone().start().await;
    let b = base.start().await;
    (a, b)
}

/// Single sign-out across instances: the user signs in on A; the provider's back-channel
/// logout token reaches B; the session is gone on A and on B (the sign-out index and the
/// deletion live in Redis; A's copy goes with Redis's notice, checked once the bound of
/// [`until_redis_copies_catch_up`] has passed). The same token again is refused, and
/// forged ones (a bad signature, a `nonce`, another audience) are refused and end
/// nothing. A front-channel call to A ends a second sign-in the same way.
pub async fn single_sign_out_across_instances(launcher: &SampleLauncher) {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let kit = TestKit::start(TestKitConfig::default().with_auto_approve(ADELE))
        .await
        .expect("kit");
    let (a, b) = two_instances(launcher, &kit, &redis).await;
    kit.register_logout_uris(
        crate::WEB_APP_CLIENT_ID,
        None,
        Some(b.url("/backchannel_logout")),
    );
    let browser = Browser::new();
    let ctx = || {
        format!(
            "\n---- browser trail ----\n{}\n{}\n{}\n{}",
            browser.trail(),
            a.log(),
            b.log(),
            redis.log()
        )
    };
    signed_in_home(&browser, &a, ctx).await;
    let page = browser.navigate(&b.url("/")).await;
    assert!(page.contains(ADELE_NAME), "{}\n{}", page.describe(), ctx());

    // Forged logout tokens, well-formed but wrong: refused, nothing ends.
    let iss = kit.workforce_issuer();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({
            "iss": iss,
            "aud": crate::WEB_APP_CLIENT_ID,
            "iat": now,
            "jti": format!("forged-{}", extra),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        // Every session of the user: what a forger would aim for.
        c["sub"] = serde_json::json!(kit.subject_of(ADELE, crate::WEB_APP_CLIENT_ID));
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c
    };
    // A character well inside the signature changed (the last one partly encodes padding).
    let mut bad_signature: Vec<char> = kit
        .sign_workforce_token(&claims(serde_json::json!({})))
        .chars()
        .collect();
    let at = bad_signature.len() - 20;
    bad_signature[at] = if bad_signature[at] == 'A' { 'B' } else { 'A' };
    let bad_signature: String = bad_signature.into_iter().collect();
    let forged = [
        bad_signature,
        kit.sign_workforce_token(&claims(serde_json::json!({"nonce": "n-1"}))),
        kit.sign_workforce_token(&claims(serde_json::json!({"aud": "another-app"}))),
    ];
    for token in &forged {
        let status = crate::post_form(&b.url("/backchannel_logout"), "logout_token", token).await;
        assert_eq!(status, Ok(400), "{}", ctx());
    }
    let page = browser.navigate(&a.url("/")).await;
    assert!(
        page.contains(ADELE_NAME),
        "a forged logout token ended the session\n{}",
        ctx()
    );

    // Sign-out at the provider: its back-channel call reaches B.
    let out = browser
        .navigate(&format!("{}/oauth2/v2.0/logout", kit.authority()))
        .await;
    assert_eq!(out.status, 200, "{}\n{}", out.describe(), ctx());
    let sent = kit.logout_deliveries();
    assert_eq!(sent.len(), 1, "{sent:?}\n{}", ctx());
    assert_eq!(sent[0].status, Some(200), "{sent:?}\n{}", ctx());
    until_redis_copies_catch_up().await;
    for sample in [&a, &b] {
        let page = browser.get(&sample.url("/")).await;
        expect_login_page(&page, &kit.base_url(), &ctx());
    }
    let replay = crate::post_form(
        &a.url("/backchannel_logout"),
        "logout_token",
        &sent[0].token,
    )
    .await;
    assert_eq!(
        replay,
        Ok(400),
        "a replayed token, on the other instance\n{}",
        ctx()
    );

    // Front-channel, through A, for a session that was used on B.
    kit.register_logout_uris(
        crate::WEB_APP_CLIENT_ID,
        Some(a.url("/frontchannel_logout")),
        None,
    );
    signed_in_home(&browser, &b, ctx).await;
    let out = browser
        .navigate(&format!("{}/oauth2/v2.0/logout", kit.authority()))
        .await;
    let marker = "<iframe class=\"logout\" src=\"";
    let frame = out
        .body
        .find(marker)
        .map(|i| &out.body[i + marker.len()..])
        .and_then(|rest| rest.split('"').next())
        .map(super::unescape)
        .unwrap_or_else(|| panic!("no logout frame: {}\n{}", out.describe(), ctx()));
    let framed = Browser::new().get(&frame).await;
    assert_eq!(framed.status, 200, "{}\n{}", framed.describe(), ctx());
    until_redis_copies_catch_up().await;
    for sample in [&b, &a] {
        let page = browser.get(&sample.url("/")).await;
        expect_login_page(&page, &kit.base_url(), &ctx());
    }
}

/// 50 concurrent `/call_api` of one browser's session, alternating between `a` and `b`;
/// what went wrong (empty when every answer showed the API's result).
async fn burst_of_call_api(browser: &Browser, a: &Sample, b: &Sample) -> Vec<String> {
    let requests = (0..50).map(|i| {
        let url = if i % 2 == 0 {
            a.url("/call_api")
        } else {
            b.url("/call_api")
        };
        async move { browser.get(&url).await }
    });
    let pages = futures_util::future::join_all(requests).await;
    let failed: Vec<String> = pages
        .iter()
        .filter(|p| !(p.status == 200 && p.contains("displayName")))
        .map(Page::describe)
        .collect();
    match failed.first() {
        Some(first) => vec![format!("{} of 50 failed, e.g. {first}", failed.len())],
        None => Vec::new(),
    }
}

/// A cluster-wide refresh: with the access token due, 50 concurrent `/call_api` requests
/// of one session, alternating between two instances on one `redis-server`, against a
/// provider that rotates refresh tokens and revokes the whole grant when a used one comes
/// back. Exactly one token request is made, all 50 answer the API's result, and the user
/// keeps working afterwards on both instances (the grant was never revoked).
pub async fn cluster_refresh_redeems_once(launcher: &SampleLauncher) {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let config = TestKitConfig {
        refresh_token_reuse_detection: true,
        ..TestKitConfig::default()
            .with_auto_approve(ADELE)
            .with_access_token_lifetime(Duration::from_secs(REFRESH_AHEAD_SECS + DUE_AFTER_SECS))
    };
    let kit = TestKit::start(config).await.expect("kit");
    let (a, b) = two_instances(launcher, &kit, &redis).await;
    let browser = Browser::new();
    let ctx = || {
        format!(
            "\n---- browser trail ----\n{}\n{}\n{}",
            a.log(),
            b.log(),
            redis.log()
        )
    };
    signed_in_home(&browser, &a, ctx).await;
    let page = browser.navigate(&a.url("/call_api")).await;
    assert!(
        page.contains("displayName"),
        "{}\n{}",
        page.describe(),
        ctx()
    );
    // The access token is now due for refresh; the provider takes a second to answer a
    // token request, so every request of the burst arrives while the refresh is running.
    tokio::time::sleep(DUE_AFTER + Duration::from_millis(500)).await;
    kit.set_fault(
        Endpoint::Token,
        Some(crate::Fault::Slow(Duration::from_secs(1))),
    );
    let before = kit.calls(Endpoint::Token);
    let failed = burst_of_call_api(&browser, &a, &b).await;
    assert!(failed.is_empty(), "{}\n{}", failed.join("\n"), ctx());
    assert_eq!(
        kit.calls(Endpoint::Token) - before,
        1,
        "one refresh for the whole cluster\n{}",
        ctx()
    );
    // The shared refresh result is sealed: Redis shows no token.
    let shared = redis.side_records().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !shared.is_empty(),
        "no shared refresh result in Redis\n{}",
        ctx()
    );
    for raw in &shared {
        assert!(
            !raw.contains("eyJhbGci") && !raw.contains("at_exp") && !raw.contains("scopes"),
            "a token is readable in Redis: {raw}"
        );
    }
    kit.set_fault(Endpoint::Token, None);
    // Still signed in with a working grant, on both instances.
    tokio::time::sleep(DUE_AFTER + Duration::from_millis(500)).await;
    for sample in [&b, &a] {
        let page = browser.navigate(&sample.url("/call_api")).await;
        assert!(
            page.contains("displayName"),
            "{}\n{}",
            page.describe(),
            ctx()
        );
    }
    assert_eq!(
        kit.calls(Endpoint::Token) - before,
        2,
        "the next refresh used the rotated token\n{}",
        ctx()
    );
}

/// Signs out at panva's `oidc-provider` (its end-session page, confirmed), not through
/// the app: the provider POSTs a back-channel logout token to the app, which ends the
/// session: `/` shows the login page again.
pub async fn interop_back_channel_logout(launcher: &SampleLauncher) {
    let port = free_port();
    let Some(w) = Interop::start_with(
        launcher,
        port,
        OidcPeerOptions {
            redirect_uris: vec![format!("http://127.0.0.1:{port}/getAToken")],
            post_logout_redirect_uris: vec![format!("http://127.0.0.1:{port}/")],
            backchannel_logout_uri: Some(format!("http://127.0.0.1:{port}/backchannel_logout")),
            ..OidcPeerOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let first = w.browser.get(&w.sample.url("/")).await;
    let (home, _) = w.through_provider(first).await;
    assert!(
        home.contains(ADELE_NAME),
        "{}\n{}",
        home.describe(),
        w.diag()
    );

    // The user ends the provider session elsewhere (the provider's own sign-out page).
    let confirm_page = w
        .browser
        .navigate(&format!("{}/session/end", w.peer.issuer))
        .await;
    let mut confirm = confirm_page
        .form_where(|f| f.has_field("xsrf"))
        .unwrap_or_else(|| panic!("no logout form: {}\n{}", confirm_page.describe(), w.diag()));
    assert!(confirm.press("yes"), "no 'yes' button on the logout form");
    let _ = w.browser.submit(&confirm).await;
    assert_eq!(
        w.peer.count("backchannel_success").await,
        1,
        "the provider's back-channel call succeeded\n{}",
        w.diag()
    );
    let back = w.browser.get(&w.sample.url("/")).await;
    assert!(
        !back.contains(ADELE_NAME),
        "signed in after the provider's back-channel logout\n{}",
        w.diag()
    );
    expect_login_page(&back, &w.peer.issuer, &w.diag());
}

/// The cluster-wide refresh against panva's `oidc-provider` (refresh tokens rotated on
/// every use, a used one revokes the grant), answering token requests a second late:
/// two instances on one `redis-server`, 50 concurrent `/call_api` of one session at
/// expiry alternating between them: one token request, 50 API results, and the user
/// keeps working afterwards.
pub async fn interop_cluster_refresh_redeems_once(launcher: &SampleLauncher) {
    if !node_available() || !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let (pa, pb) = (free_port(), free_port());
    let peer = OidcPeer::start(&OidcPeerOptions {
        redirect_uris: vec![
            format!("http://127.0.0.1:{pa}/getAToken"),
            format!("http://127.0.0.1:{pb}/getAToken"),
        ],
        access_token_ttl: REFRESH_AHEAD_SECS + DUE_AFTER_SECS,
        token_delay_ms: 1000,
        ..OidcPeerOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let shared = |port: u16| {
        Interop::sample(launcher, &peer)
            .env("SESSION_STORE", redis.url())
            .env("SESSION_SECRET", "0123456789abcdef".repeat(4))
            .port(port)
    };
    let a = shared(pa).start().await;
    let b = shared(pb).start().await;
    let w = Interop {
        peer,
        sample: a,
        browser: Browser::new(),
    };
    let ctx = || format!("{}\n{}\n{}", w.diag(), b.log(), redis.log());
    let first = w.browser.get(&w.sample.url("/call_api")).await;
    let (api, _) = w.through_provider(first).await;
    assert!(api.contains("displayName"), "{}\n{}", api.describe(), ctx());
    tokio::time::sleep(DUE_AFTER + Duration::from_millis(500)).await;
    let before = w.peer.count("token").await;
    let failed = burst_of_call_api(&w.browser, &w.sample, &b).await;
    assert!(failed.is_empty(), "{}\n{}", failed.join("\n"), ctx());
    assert_eq!(
        w.peer.count("token").await - before,
        1,
        "one refresh for the whole cluster\n{}",
        ctx()
    );
    tokio::time::sleep(DUE_AFTER + Duration::from_millis(500)).await;
    for url in [b.url("/call_api"), w.sample.url("/call_api")] {
        let page = w.browser.navigate(&url).await;
        assert!(
            page.contains("displayName"),
            "{}\n{}",
            page.describe(),
            ctx()
        );
    }
}
