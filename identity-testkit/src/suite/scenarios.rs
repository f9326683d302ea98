//! The scenarios. Each starts its own testkit and sample process, drives the sample
//! over HTTP with a [`Browser`], and asserts outcomes a user or an attacker would see:
//! status codes, page contents, `Location` targets, cookies, and the provider's
//! per-endpoint call counters. A failure message carries the browser's trail, the
//! counters and the sample's output.

use super::browser::{origin, Browser, Page};
pub use super::enterprise::{
    device_code_sign_in, external_id_custom_domain, external_id_tenant, groups_after_an_overage,
};
use super::launcher::{Launch, Sample, SampleLauncher};
use crate::{Endpoint, TestKit, TestKitConfig};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use url::Url;

/// The user the headless testkit signs in, and what the sample's home page shows.
pub const ADELE: &str = "adele@contoso.onmicrosoft.com";
/// Adele's `name` claim.
pub const ADELE_NAME: &str = "Adele Vance";
/// The B2C test user.
pub const BOB: &str = "bob@contoso.com";
/// Bob's `name` claim.
pub const BOB_NAME: &str = "Bob B2C";
/// Every test user's password.
pub const PASSWORD: &str = "password";

/// How long after sign-in a session's tokens stay usable in the expiry scenarios. The
/// provider's clock is shifted so that an ID token (or access token) becomes due for
/// renewal this long after it was issued, whatever the app's clock-skew allowance.
const RENEWAL_WINDOW: Duration = Duration::from_secs(5);
/// The core's default clock skew for ID tokens (accepted until `exp + skew`).
const ID_TOKEN_SKEW_SECS: u64 = 120;
/// The core's default "refresh access tokens this long before they expire".
const REFRESH_AHEAD_SECS: u64 = 300;

/// One scenario's world: a testkit, a sample wired to it, a browser.
struct World {
    kit: TestKit,
    sample: Sample,
    browser: Browser,
    /// Behind a TLS-terminating proxy (the production shape).
    proxy: Option<super::TlsProxy>,
}

impl World {
    async fn start(launcher: &SampleLauncher, config: TestKitConfig) -> World {
        Self::start_with(launcher, config, |l, _| l).await
    }

    async fn start_with(
        launcher: &SampleLauncher,
        config: TestKitConfig,
        tweak: impl FnOnce(Launch, &TestKit) -> Launch,
    ) -> World {
        if !launcher.is_behind_tls_proxy() {
            let kit = TestKit::start(config).await.expect("testkit starts");
            let sample = tweak(launcher.wired_to(&kit), &kit).start().await;
            return World {
                kit,
                sample,
                browser: Browser::new(),
                proxy: None,
            };
        }
        let app_port = super::free_port();
        let proxy = super::TlsProxy::start(app_port)
            .await
            .expect("the TLS proxy starts");
        // The app is registered with its public https URLs, as in production.
        let public = proxy.public_base();
        let config = config
            .with_redirect_uri(format!("{public}/getAToken"))
            .with_post_logout_redirect_uri(format!("{public}/"));
        let kit = TestKit::start(config).await.expect("testkit starts");
        let launch = launcher
            .wired_to(&kit)
            .env("REDIRECT_URI", format!("{}/getAToken", proxy.public_base()))
            .port(app_port);
        let mut sample = tweak(launch, &kit).start().await;
        sample.set_public_base(proxy.public_base());
        let browser = Browser::builder()
            .resolve(super::PUBLIC_HOST, proxy.addr())
            .trust_pem(proxy.ca_pem())
            .build();
        World {
            kit,
            sample,
            browser,
            proxy: Some(proxy),
        }
    }

    /// Another browser (a second user, an attacker) that reaches the sample the way
    /// this world's browser does.
    fn new_browser(&self) -> Browser {
        match &self.proxy {
            Some(proxy) => Browser::builder()
                .resolve(super::PUBLIC_HOST, proxy.addr())
                .trust_pem(proxy.ca_pem())
                .build(),
            None => Browser::new(),
        }
    }

    fn tokens(&self) -> u64 {
        self.kit.calls(Endpoint::Token)
    }

    /// Counters, the browser's trail and the sample's output.
    fn diag(&self) -> String {
        diag(&self.kit, &self.browser, &self.sample)
    }

    fn redirect_uri(&self) -> String {
        self.sample
            .redirect_uri()
            .unwrap_or_else(|| self.sample.url("/getAToken"))
    }

    fn is_callback(&self, url: &Url) -> bool {
        url.as_str().starts_with(&self.redirect_uri())
    }

    /// Asserts `page` is the sample's login page pointing at the kit's authorize
    /// endpoint; returns that URL.
    fn expect_login_page(&self, page: &Page) -> Url {
        expect_login_page(page, &self.kit.base_url(), &self.diag())
    }

    /// From the sample's `path` (anonymous) to the callback URL the provider sends the
    /// browser to (not requested).
    async fn to_callback(&self, path: &str) -> (Url, Url) {
        let page = self.browser.get(&self.sample.url(path)).await;
        let auth = self.expect_login_page(&page);
        let at_provider = self.browser.get_url(&auth).await;
        let last = self
            .browser
            .follow_until(at_provider, |u| self.is_callback(u))
            .await;
        let callback = last.next_hop().filter(|u| self.is_callback(u));
        let Some(callback) = callback else {
            panic!(
                "the provider did not send the browser to the callback; last page: {}\n{}",
                last.describe(),
                self.diag()
            );
        };
        (auth, callback)
    }

    /// A full headless sign-in starting at `path`; returns the page the browser ends on.
    async fn sign_in_at(&self, path: &str) -> Page {
        let (_, callback) = self.to_callback(path).await;
        let landed = self.browser.get_url(&callback).await;
        assert!(
            landed.is_redirect(),
            "the callback did not redirect: {}\n{}",
            landed.describe(),
            self.diag()
        );
        self.browser.follow(landed).await
    }

    /// GET and follow; panics with context when the page does not contain `needle`.
    async fn expect_page(&self, path: &str, needle: &str) -> Page {
        let page = self.browser.navigate(&self.sample.url(path)).await;
        assert!(
            page.status == 200 && page.contains(needle),
            "expected {path} to show {needle:?}; got {}\n{}",
            page.describe(),
            self.diag()
        );
        page
    }

    /// The values of the cookies the sample has set in this browser.
    fn app_cookies(&self, set_by_app: &[String]) -> BTreeMap<String, String> {
        let url = self.sample.parsed_url("/");
        self.browser
            .cookies_for(&url)
            .into_iter()
            .filter(|c| set_by_app.contains(&c.name))
            .map(|c| (c.name, c.value))
            .collect()
    }
}

fn diag(kit: &TestKit, browser: &Browser, sample: &Sample) -> String {
    let counters: Vec<String> = Endpoint::ALL
        .iter()
        .filter(|e| kit.calls(**e) > 0)
        .map(|e| format!("{}={}", e.name(), kit.calls(*e)))
        .collect();
    format!(
        "\n---- provider calls: {} ----\n---- browser trail ----\n{}\n{}",
        counters.join(" "),
        browser.trail(),
        sample.log()
    )
}

fn headless() -> TestKitConfig {
    TestKitConfig::default().with_auto_approve(ADELE)
}

/// Where a login page sends the browser: its meta refresh, its `sign_in` link, or a
/// redirect.
pub fn login_target(page: &Page) -> Option<Url> {
    if page.is_redirect() {
        return page.location.clone();
    }
    page.meta_refresh().or_else(|| page.link_by_id("sign_in"))
}

/// Asserts that `page` is a login page (200 or 401 with a meta refresh or a `sign_in`
/// link, or a redirect) to an authorize endpoint on `provider_origin`; returns its URL.
pub fn expect_login_page(page: &Page, provider_base: &str, context: &str) -> Url {
    let target = login_target(page);
    let ok_status = matches!(page.status, 200 | 401 | 302 | 303 | 307);
    match target {
        Some(t) if ok_status && t.as_str().starts_with(provider_base) => t,
        _ => panic!(
            "expected a login page leading to {provider_base}; got {}\n{context}",
            page.describe()
        ),
    }
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn with_query(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .chain(std::iter::once((name.to_owned(), value.to_owned())))
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

/// The names of the cookies whose `Set-Cookie` came from pages of `origin_url`.
fn cookie_names_set_by(pages: &[&Page], origin_url: &str) -> Vec<String> {
    let mut names = Vec::new();
    for p in pages.iter().filter(|p| p.origin() == origin_url) {
        for raw in &p.set_cookies {
            if let Ok(c) = cookie::Cookie::parse(raw.clone()) {
                if !names.contains(&c.name().to_owned()) {
                    names.push(c.name().to_owned());
                }
            }
        }
    }
    names
}

/// Drives the testkit's interactive pages (sign-in, consent, B2C reset and edit
/// profile) until the browser leaves them. Returns the page it ends on and the names of
/// the pages it went through (`sign-in`, `consent`, `reset`, `edit`).
async fn through_testkit_pages(
    browser: &Browser,
    kit_base: &str,
    mut page: Page,
    username: &str,
) -> (Page, Vec<&'static str>) {
    let mut seen = Vec::new();
    for _ in 0..8 {
        page = browser.follow(page).await;
        if !page.url.as_str().starts_with(kit_base) {
            break;
        }
        let forms = page.forms();
        let action = |f: &&crate::suite::Form| f.get("_action").map(str::to_owned);
        if let Some(mut f) = forms
            .iter()
            .find(|f| f.id.as_deref() == Some("signin"))
            .cloned()
        {
            f.set("username", username).set("password", PASSWORD);
            seen.push("sign-in");
            page = browser.submit(&f).await;
        } else if let Some(mut f) = forms.iter().find(|f| f.has_button("accept")).cloned() {
            f.press("accept");
            seen.push("consent");
            page = browser.submit(&f).await;
        } else if let Some(mut f) = forms
            .iter()
            .find(|f| action(f).as_deref() == Some("reset"))
            .cloned()
        {
            f.set("username", username)
                .set("new_password", "new-password");
            seen.push("reset");
            page = browser.submit(&f).await;
        } else if let Some(f) = forms
            .iter()
            .find(|f| action(f).as_deref() == Some("edit"))
            .cloned()
        {
            seen.push("edit");
            page = browser.submit(&f).await;
        } else {
            break;
        }
    }
    (page, seen)
}

fn sleep_until(at: Instant) -> tokio::time::Sleep {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at))
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

/// Sign-in: an anonymous visit to `/` answers with a login page to the provider's
/// authorize endpoint (PKCE S256, state, nonce, the sample's redirect URI); the
/// provider sends the browser to the callback, which makes exactly one token call and
/// redirects to the original page, which shows the user's name.
pub async fn sign_in(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let page = w.browser.get(&w.sample.url("/")).await;
    assert!(
        !page.contains(ADELE_NAME),
        "anonymous / shows the user\n{}",
        w.diag()
    );
    let auth = w.expect_login_page(&page);
    assert!(auth.path().ends_with("/oauth2/v2.0/authorize"), "{auth}");
    assert_eq!(
        query(&auth, "response_type").as_deref(),
        Some("code"),
        "{auth}"
    );
    assert_eq!(
        query(&auth, "redirect_uri"),
        Some(w.redirect_uri()),
        "{auth}"
    );
    assert_eq!(
        query(&auth, "code_challenge_method").as_deref(),
        Some("S256"),
        "{auth}"
    );
    for p in ["state", "nonce", "code_challenge", "client_id"] {
        assert!(
            query(&auth, p).is_some_and(|v| !v.is_empty()),
            "{p} missing in {auth}"
        );
    }
    let scope = query(&auth, "scope").unwrap_or_default();
    for s in ["openid", "profile", "offline_access"] {
        assert!(
            scope.split(' ').any(|x| x == s),
            "scope {scope:?} lacks {s}"
        );
    }
    assert_eq!(w.tokens(), 0, "a login page makes no token call");

    let at_provider = w.browser.get_url(&auth).await;
    let last = w
        .browser
        .follow_until(at_provider, |u| w.is_callback(u))
        .await;
    let callback = last.next_hop().expect("provider redirects to the callback");
    assert_eq!(query(&callback, "state"), query(&auth, "state"));
    let landed = w.browser.get_url(&callback).await;
    assert!(
        landed.is_redirect(),
        "callback: {}\n{}",
        landed.describe(),
        w.diag()
    );
    assert_eq!(
        landed.location.as_ref().map(|l| l.as_str().to_owned()),
        Some(w.sample.url("/")),
        "the callback returns to the page the sign-in started on\n{}",
        w.diag()
    );
    assert_eq!(w.tokens(), 1, "one code redemption\n{}", w.diag());
    let home = w.browser.follow(landed).await;
    assert!(
        home.status == 200 && home.contains(ADELE_NAME),
        "home after sign-in: {}\n{}",
        home.describe(),
        w.diag()
    );
    // Signed in: the next views make no provider call.
    let before = w.kit.calls(Endpoint::Authorize);
    w.expect_page("/", ADELE_NAME).await;
    assert_eq!(w.tokens(), 1, "{}", w.diag());
    assert_eq!(w.kit.calls(Endpoint::Authorize), before);
}

/// Sign-out: `/logout` ends the session in the store and redirects to the provider's
/// end-session endpoint with an encoded `post_logout_redirect_uri` (the home page) and
/// an `id_token_hint`; the provider sends the browser back to the app, which shows the
/// login page again. The old session cookie no longer signs anyone in.
pub async fn sign_out(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    w.sign_in_at("/").await;
    w.expect_page("/", ADELE_NAME).await;
    let signed_in_cookies = w.browser.cookies_for(&w.sample.parsed_url("/"));

    let out = w.browser.get(&w.sample.url("/logout")).await;
    assert!(
        out.is_redirect(),
        "/logout: {}\n{}",
        out.describe(),
        w.diag()
    );
    let raw_location = out.header("location").unwrap_or_default().to_owned();
    let end_session = out.location.clone().expect("location");
    assert!(
        end_session.as_str().starts_with(&w.kit.base_url())
            && end_session.path().ends_with("/oauth2/v2.0/logout"),
        "end-session URL: {end_session}"
    );
    let home = w.sample.url("/");
    assert_eq!(
        query(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(home.as_str()),
        "{end_session}"
    );
    let encoded_home: String = form_urlencoded::byte_serialize(home.as_bytes()).collect();
    assert!(
        raw_location.contains(&format!("post_logout_redirect_uri={encoded_home}"))
            || raw_location.contains(&format!(
                "post_logout_redirect_uri={}",
                home.replace(':', "%3A").replace('/', "%2F")
            )),
        "post_logout_redirect_uri is not encoded: {raw_location}"
    );
    let hint = query(&end_session, "id_token_hint").unwrap_or_default();
    assert_eq!(
        hint.split('.').count(),
        3,
        "id_token_hint is not a JWT: {hint:?}"
    );

    let back = w.browser.follow_until(out, |u| u.as_str() == home).await;
    assert_eq!(w.kit.calls(Endpoint::Logout), 1, "{}", w.diag());
    assert_eq!(
        back.next_hop().map(|u| u.to_string()),
        Some(home.clone()),
        "the provider sends the browser back to the app: {}\n{}",
        back.describe(),
        w.diag()
    );
    let page = w.browser.get(&home).await;
    assert!(
        !page.contains(ADELE_NAME),
        "still signed in after /logout\n{}",
        w.diag()
    );
    w.expect_login_page(&page);

    // The session is gone from the store, not just from this browser.
    let replay = w.new_browser();
    for c in signed_in_cookies {
        replay.add_cookie(&w.sample.parsed_url("/"), &c.name, &c.value);
    }
    let page = replay.get(&home).await;
    assert!(
        !page.contains(ADELE_NAME),
        "the signed-in cookies still work after /logout: {}\n{}",
        page.describe(),
        w.diag()
    );
}

/// Renewal: once the ID token has expired (beyond the allowed clock skew) the next view
/// renews it with the refresh token (exactly one token call) and still shows the user;
/// views before that make none.
pub async fn renewal_after_id_token_expiry(launcher: &SampleLauncher) {
    let lifetime = Duration::from_secs(60);
    let config = headless().with_id_token_lifetime(lifetime);
    let w = World::start(launcher, config).await;
    // Issued tokens are old enough that they need renewal RENEWAL_WINDOW after issue.
    let shift = lifetime.as_secs() + ID_TOKEN_SKEW_SECS - RENEWAL_WINDOW.as_secs();
    w.kit.set_clock_offset(-(shift as i64));

    let started = Instant::now();
    let page = w.sign_in_at("/").await;
    assert!(
        page.contains(ADELE_NAME),
        "{}\n{}",
        page.describe(),
        w.diag()
    );
    assert_eq!(w.tokens(), 1, "{}", w.diag());
    if started.elapsed() < RENEWAL_WINDOW - Duration::from_secs(2) {
        w.expect_page("/", ADELE_NAME).await;
        assert_eq!(
            w.tokens(),
            1,
            "a view with a valid ID token made a token call\n{}",
            w.diag()
        );
    }

    sleep_until(started + RENEWAL_WINDOW + Duration::from_millis(1500)).await;
    let renewed_at = Instant::now();
    w.expect_page("/", ADELE_NAME).await;
    assert_eq!(
        w.tokens(),
        2,
        "renewal makes exactly one token call\n{}",
        w.diag()
    );
    if renewed_at.elapsed() < RENEWAL_WINDOW - Duration::from_secs(2) {
        w.expect_page("/", ADELE_NAME).await;
        assert_eq!(w.tokens(), 2, "the renewed ID token is used\n{}", w.diag());
    }
}

/// API tokens: `/call_api` calls the API with a bearer token and shows its JSON; a view
/// with a cached token makes no token call; once the token is within the refresh-ahead
/// margin one refresh (one token call) gets a new one.
pub async fn call_api_cached_then_refreshed(launcher: &SampleLauncher) {
    let config = headless().with_access_token_lifetime(Duration::from_secs(
        REFRESH_AHEAD_SECS + RENEWAL_WINDOW.as_secs(),
    ));
    let w = World::start(launcher, config).await;
    w.sign_in_at("/").await;
    let after_sign_in = w.tokens();
    assert_eq!(after_sign_in, 1, "{}", w.diag());

    let first = Instant::now();
    w.expect_page("/call_api", "displayName").await;
    let after_first = w.tokens();
    assert!(
        after_first - after_sign_in <= 1,
        "the first API view makes at most one token call\n{}",
        w.diag()
    );
    assert_eq!(w.kit.calls(Endpoint::Api), 1, "{}", w.diag());

    if first.elapsed() < RENEWAL_WINDOW - Duration::from_secs(2) {
        w.expect_page("/call_api", "displayName").await;
        assert_eq!(
            w.tokens(),
            after_first,
            "a cached token made a token call\n{}",
            w.diag()
        );
        assert_eq!(w.kit.calls(Endpoint::Api), 2, "{}", w.diag());
    }

    sleep_until(first + RENEWAL_WINDOW + Duration::from_millis(1500)).await;
    let api_before = w.kit.calls(Endpoint::Api);
    let refreshed_at = Instant::now();
    w.expect_page("/call_api", "displayName").await;
    assert_eq!(w.tokens(), after_first + 1, "one refresh\n{}", w.diag());
    assert_eq!(w.kit.calls(Endpoint::Api), api_before + 1, "{}", w.diag());
    if refreshed_at.elapsed() < RENEWAL_WINDOW - Duration::from_secs(2) {
        w.expect_page("/call_api", "displayName").await;
        assert_eq!(
            w.tokens(),
            after_first + 1,
            "the refreshed token is cached\n{}",
            w.diag()
        );
    }
}

/// Incremental consent: with `SCOPE` including a scope the user has not consented to,
/// `/call_api` answers with a login page asking for it; the provider shows its consent
/// page; after consent the browser returns to `/call_api`, which shows the API's JSON.
pub async fn incremental_consent(launcher: &SampleLauncher) {
    let w = World::start_with(launcher, TestKitConfig::default(), |l, _| {
        l.env("SCOPE", "User.Read Mail.Read")
    })
    .await;
    let kit_base = w.kit.base_url();
    let page = w.browser.get(&w.sample.url("/")).await;
    let auth = w.expect_login_page(&page);
    let (home, seen) =
        through_testkit_pages(&w.browser, &kit_base, w.browser.get_url(&auth).await, ADELE).await;
    assert_eq!(seen, ["sign-in"], "{}", w.diag());
    assert!(
        home.contains(ADELE_NAME),
        "{}\n{}",
        home.describe(),
        w.diag()
    );
    let tokens = w.tokens();

    let page = w.browser.get(&w.sample.url("/call_api")).await;
    let auth = w.expect_login_page(&page);
    let scope = query(&auth, "scope").unwrap_or_default();
    assert!(
        scope
            .split(' ')
            .any(|s| s.eq_ignore_ascii_case("Mail.Read")),
        "the consent sign-in asks for Mail.Read: {auth}"
    );
    assert!(w.tokens() <= tokens + 1, "{}", w.diag());
    let before_consent = w.tokens();
    let (api, seen) =
        through_testkit_pages(&w.browser, &kit_base, w.browser.get_url(&auth).await, ADELE).await;
    assert_eq!(seen, ["consent"], "SSO then consent only\n{}", w.diag());
    assert_eq!(
        api.url.path(),
        "/call_api",
        "back on the API page\n{}",
        w.diag()
    );
    assert!(
        api.contains("displayName"),
        "{}\n{}",
        api.describe(),
        w.diag()
    );
    assert_eq!(
        w.tokens(),
        before_consent + 1,
        "one code redemption\n{}",
        w.diag()
    );
    assert!(w.kit.calls(Endpoint::Api) >= 1);
}

/// Continuous access evaluation: after the provider's CAE event the API refuses the
/// cached token with `insufficient_claims`; `/call_api` answers with a login page whose
/// authorize URL carries the claims; after the sign-in the browser is back on
/// `/call_api`, which shows the API's JSON from the retried call.
pub async fn cae_claims_challenge(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    w.sign_in_at("/").await;
    w.expect_page("/call_api", "displayName").await;
    assert_eq!(w.kit.calls(Endpoint::Api), 1, "{}", w.diag());

    w.kit.cae_event(ADELE);
    let page = w.browser.get(&w.sample.url("/call_api")).await;
    let auth = w.expect_login_page(&page);
    assert_eq!(
        w.kit.calls(Endpoint::Api),
        2,
        "the refused call\n{}",
        w.diag()
    );
    let claims = query(&auth, "claims").unwrap_or_default();
    assert!(
        claims.contains("\"nbf\"") && claims.contains("\"essential\""),
        "the sign-in carries the API's claims challenge: {auth}\n{}",
        w.diag()
    );
    let at_provider = w.browser.get_url(&auth).await;
    let back = w.browser.follow(at_provider).await;
    assert!(
        back.status == 200 && back.url.path() == "/call_api" && back.contains("displayName"),
        "back on /call_api with the API's answer: {}\n{}",
        back.describe(),
        w.diag()
    );
    assert_eq!(
        w.kit.calls(Endpoint::Api),
        3,
        "the retried call\n{}",
        w.diag()
    );
}

fn b2c(launch: Launch, kit: &TestKit) -> Launch {
    launch
        .unset("AUTHORITY")
        .unset("ENDPOINT")
        .env("B2C_TENANT_NAME", "contosob2c")
        .env("SIGNUPSIGNIN_USER_FLOW", "B2C_1_signupsignin1")
        .env("EDITPROFILE_USER_FLOW", "B2C_1_profileediting1")
        .env("RESETPASSWORD_USER_FLOW", "B2C_1_passwordreset1")
        .env("B2C_DOMAIN", kit.base_url())
}

/// B2C edit profile: a signed-in user's `/edit_profile` runs the edit-profile user flow
/// (the provider's edit page, no password thanks to SSO) and comes back signed in.
pub async fn b2c_edit_profile(launcher: &SampleLauncher) {
    let w = World::start_with(launcher, TestKitConfig::default(), b2c).await;
    let (kit, sample, browser) = (&w.kit, &w.sample, &w.browser);
    let ctx = || diag(kit, browser, sample);
    let kit_base = kit.base_url();

    let page = browser.get(&sample.url("/")).await;
    let auth = expect_login_page(&page, &kit_base, &ctx());
    assert!(
        auth.path()
            .to_ascii_lowercase()
            .contains("b2c_1_signupsignin1")
            || query(&auth, "p").is_some_and(|p| p.eq_ignore_ascii_case("B2C_1_signupsignin1")),
        "sign-in uses the sign-up/sign-in flow: {auth}"
    );
    let (home, seen) =
        through_testkit_pages(browser, &kit_base, browser.get_url(&auth).await, BOB).await;
    assert_eq!(seen, ["sign-in"], "{}", ctx());
    assert!(home.contains(BOB_NAME), "{}\n{}", home.describe(), ctx());
    let tokens = kit.calls(Endpoint::Token);

    let page = browser.get(&sample.url("/edit_profile")).await;
    let auth = expect_login_page(&page, &kit_base, &ctx());
    assert!(
        auth.as_str()
            .to_ascii_lowercase()
            .contains("b2c_1_profileediting1"),
        "edit profile uses its user flow: {auth}"
    );
    let (back, seen) =
        through_testkit_pages(browser, &kit_base, browser.get_url(&auth).await, BOB).await;
    assert_eq!(seen, ["edit"], "SSO, then the edit page\n{}", ctx());
    assert_eq!(
        back.origin(),
        sample.base_url(),
        "{}\n{}",
        back.describe(),
        ctx()
    );
    assert!(back.status < 400, "{}\n{}", back.describe(), ctx());
    assert_eq!(kit.calls(Endpoint::Token), tokens + 1, "{}", ctx());
    let home = browser.navigate(&sample.url("/")).await;
    assert!(home.contains(BOB_NAME), "{}\n{}", home.describe(), ctx());
}

/// B2C reset password: "Forgot your password?" on the sign-in page comes back to the app
/// as `AADB2C90118`; the app hops to the reset-password user flow, and after the reset
/// the user is signed in.
pub async fn b2c_reset_password(launcher: &SampleLauncher) {
    let w = World::start_with(launcher, TestKitConfig::default(), b2c).await;
    let (kit, sample, browser) = (&w.kit, &w.sample, &w.browser);
    let ctx = || diag(kit, browser, sample);
    let kit_base = kit.base_url();

    let page = browser.get(&sample.url("/")).await;
    let auth = expect_login_page(&page, &kit_base, &ctx());
    let sign_in_page = browser.follow(browser.get_url(&auth).await).await;
    let forgot = sign_in_page
        .form_where(|f| f.get("_action") == Some("forgot"))
        .unwrap_or_else(|| panic!("no forgot-password form: {}", sign_in_page.describe()));
    let answer = browser.submit(&forgot).await;
    let hop = answer
        .next_hop()
        .expect("the provider redirects to the app");
    assert!(
        hop.as_str().contains("AADB2C90118"),
        "the provider answers AADB2C90118: {hop}"
    );
    // The app turns AADB2C90118 into the reset-password flow.
    let at_app = browser.get_url(&hop).await;
    assert!(at_app.status < 500, "{}\n{}", at_app.describe(), ctx());
    let reset_auth = at_app
        .next_hop()
        .or_else(|| {
            at_app.links().into_iter().find(|l| {
                l.as_str()
                    .to_ascii_lowercase()
                    .contains("b2c_1_passwordreset1")
            })
        })
        .unwrap_or_else(|| panic!("no hop to the reset flow: {}\n{}", at_app.describe(), ctx()));
    let (end, seen) =
        through_testkit_pages(browser, &kit_base, browser.get_url(&reset_auth).await, BOB).await;
    assert!(
        browser
            .trail()
            .to_ascii_lowercase()
            .contains("b2c_1_passwordreset1"),
        "the reset-password user flow ran\n{}",
        ctx()
    );
    assert_eq!(seen.first(), Some(&"reset"), "{}", ctx());
    assert!(
        !seen.contains(&"sign-in"),
        "no password after the reset\n{}",
        ctx()
    );
    assert!(end.status < 500, "{}\n{}", end.describe(), ctx());
    let home = browser.navigate(&sample.url("/")).await;
    let (home, seen) = through_testkit_pages(browser, &kit_base, home, BOB).await;
    assert!(
        !seen.contains(&"sign-in"),
        "signed in after the reset\n{}",
        ctx()
    );
    assert!(home.contains(BOB_NAME), "{}\n{}", home.describe(), ctx());
}

/// Provider errors: an error on the callback is shown on an error page with the error
/// code, every value escaped; a forged description cannot inject markup; the user
/// cancelling on the provider's page gives an error page too. No token call.
pub async fn provider_errors_are_escaped(launcher: &SampleLauncher) {
    let w = World::start(launcher, TestKitConfig::default()).await;
    let page = w.browser.get(&w.sample.url("/")).await;
    let auth = w.expect_login_page(&page);
    let state = query(&auth, "state").expect("state");
    let evil = "<script>alert(1)</script>";
    let mut callback = Url::parse(&w.redirect_uri()).expect("redirect URI");
    callback
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("error_description", &format!("AADSTS65004: {evil}"))
        .append_pair("state", &state);
    let shown = w.browser.get_url(&callback).await;
    assert!(
        (400..500).contains(&shown.status) || shown.status == 200,
        "an error page, not a server error: {}\n{}",
        shown.describe(),
        w.diag()
    );
    assert!(
        !shown.body.contains("<script>alert"),
        "markup injected: {}",
        shown.body
    );
    assert!(
        shown.body.contains("&lt;script&gt;") || shown.body.contains("&#60;script"),
        "the description is shown escaped: {}",
        shown.describe()
    );
    assert!(shown.contains("access_denied"), "{}", shown.describe());
    assert!(!shown.contains(ADELE_NAME));

    // The user cancels on the provider's sign-in page.
    let page = w.browser.get(&w.sample.url("/")).await;
    let auth = w.expect_login_page(&page);
    let sign_in_page = w.browser.follow(w.browser.get_url(&auth).await).await;
    let mut cancel = sign_in_page
        .form_where(|f| f.has_button("cancel"))
        .unwrap_or_else(|| panic!("no cancel button: {}", sign_in_page.describe()));
    cancel.press("cancel");
    let answer = w.browser.submit(&cancel).await;
    let back = w.browser.follow(answer).await;
    assert!(
        back.origin() == w.sample.base_url() && (400..500).contains(&back.status)
            || back.status == 200 && back.contains("access_denied"),
        "cancelled sign-in: {}\n{}",
        back.describe(),
        w.diag()
    );
    assert!(back.contains("access_denied"), "{}", back.describe());
    assert_eq!(w.tokens(), 0, "{}", w.diag());
}

/// Tampered state: a callback whose `state` this session never issued is refused with
/// 400 and makes no token call; the genuine callback still completes.
pub async fn tampered_state_is_refused(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let (_, callback) = w.to_callback("/").await;
    let forged = with_query(&callback, "state", "forged-state-0123456789");
    let refused = w.browser.get_url(&forged).await;
    assert_eq!(refused.status, 400, "{}\n{}", refused.describe(), w.diag());
    assert!(!refused.contains(ADELE_NAME));
    assert_eq!(
        w.tokens(),
        0,
        "no code redemption for a forged state\n{}",
        w.diag()
    );
    let page = w.browser.get(&w.sample.url("/")).await;
    assert!(
        !page.contains(ADELE_NAME),
        "signed in by a forged state\n{}",
        w.diag()
    );
    w.expect_login_page(&page);

    let genuine = w.browser.get_url(&callback).await;
    assert!(
        genuine.is_redirect(),
        "{}\n{}",
        genuine.describe(),
        w.diag()
    );
    assert_eq!(w.tokens(), 1);
    w.expect_page("/", ADELE_NAME).await;
}

/// Replayed code: the same callback URL a second time is refused with 400 (the pending
/// sign-in was consumed), in the same browser and in another one; no token call; the
/// other browser is not signed in.
pub async fn replayed_code_is_refused(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let (_, callback) = w.to_callback("/").await;
    let first = w.browser.get_url(&callback).await;
    assert!(first.is_redirect(), "{}\n{}", first.describe(), w.diag());
    assert_eq!(w.tokens(), 1);

    let again = w.browser.get_url(&callback).await;
    assert_eq!(
        again.status,
        400,
        "replay in the same browser: {}\n{}",
        again.describe(),
        w.diag()
    );
    assert_eq!(w.tokens(), 1, "a replay redeems nothing\n{}", w.diag());

    let other = w.new_browser();
    let stolen = other.get_url(&callback).await;
    assert_eq!(
        stolen.status,
        400,
        "replay elsewhere: {}\n{}",
        stolen.describe(),
        w.diag()
    );
    assert_eq!(w.tokens(), 1, "{}", w.diag());
    let page = other.get(&w.sample.url("/")).await;
    assert!(
        !page.contains(ADELE_NAME),
        "the replaying browser is signed in\n{}",
        w.diag()
    );
    w.expect_login_page(&page);
}

/// Several tabs: two sign-ins started in one browser (two login pages, one cookie jar)
/// both complete, in the opposite order, and each returns to the page it started on.
pub async fn two_tabs_sign_in_at_once(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let (_, callback_home) = w.to_callback("/").await;
    let (_, callback_api) = w.to_callback("/call_api").await;
    assert_ne!(
        query(&callback_home, "state"),
        query(&callback_api, "state")
    );

    let api = w.browser.get_url(&callback_api).await;
    assert!(
        api.is_redirect(),
        "second tab: {}\n{}",
        api.describe(),
        w.diag()
    );
    assert_eq!(
        api.location
            .as_ref()
            .map(|l| l.path().to_owned())
            .as_deref(),
        Some("/call_api")
    );
    let home = w.browser.get_url(&callback_home).await;
    assert!(
        home.is_redirect(),
        "first tab: {}\n{}",
        home.describe(),
        w.diag()
    );
    assert_eq!(
        home.location
            .as_ref()
            .map(|l| l.path().to_owned())
            .as_deref(),
        Some("/")
    );
    assert_eq!(w.tokens(), 2, "{}", w.diag());
    let page = w.browser.follow(home).await;
    assert!(
        page.contains(ADELE_NAME),
        "{}\n{}",
        page.describe(),
        w.diag()
    );
    w.expect_page("/call_api", "displayName").await;
}

/// Next-link safety: `/login?next=` with another origin (`//evil.example`,
/// `https://evil.example`, `/\evil.example`) never sends the user off-site after sign-in;
/// a local path is honoured.
pub async fn next_link_stays_on_site(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let app_origin = w.sample.base_url();
    for evil in [
        "//evil.example",
        "https://evil.example/steal",
        "/\\evil.example",
        "https:evil.example",
        "/%2F%2Fevil.example",
    ] {
        let browser = w.new_browser();
        let encoded: String = form_urlencoded::byte_serialize(evil.as_bytes()).collect();
        let start = browser
            .get(&w.sample.url(&format!("/login?next={encoded}")))
            .await;
        let auth = expect_login_page(&start, &w.kit.base_url(), &w.diag());
        let last = browser
            .follow_until(browser.get_url(&auth).await, |u| w.is_callback(u))
            .await;
        let callback = last.next_hop().expect("callback");
        let landed = browser.get_url(&callback).await;
        assert!(
            landed.is_redirect(),
            "{evil}: {}\n{}",
            landed.describe(),
            w.diag()
        );
        let target = landed.location.clone().expect("location");
        assert_eq!(
            origin(&target),
            app_origin,
            "next={evil:?} sent the user to {target} (raw {:?})",
            landed.header("location")
        );
    }
    let browser = w.new_browser();
    let start = browser.get(&w.sample.url("/login?next=%2Fcall_api")).await;
    let auth = expect_login_page(&start, &w.kit.base_url(), &w.diag());
    let last = browser
        .follow_until(browser.get_url(&auth).await, |u| w.is_callback(u))
        .await;
    let landed = browser.get_url(&last.next_hop().expect("callback")).await;
    assert_eq!(
        landed.location.as_ref().map(|l| l.as_str().to_owned()),
        Some(w.sample.url("/call_api")),
        "a local next link is honoured\n{}",
        w.diag()
    );
}

/// Cookie flags: every cookie the app sets (anonymous login page, callback) is
/// `HttpOnly` and `SameSite=Lax`, and not `Secure` on loopback http (or the browser
/// would drop it).
pub async fn cookie_flags(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let anonymous = w.browser.get(&w.sample.url("/")).await;
    let auth = w.expect_login_page(&anonymous);
    let last = w
        .browser
        .follow_until(w.browser.get_url(&auth).await, |u| w.is_callback(u))
        .await;
    let callback = w.browser.get_url(&last.next_hop().expect("callback")).await;
    let home = w.browser.follow(callback.clone()).await;
    assert!(
        home.contains(ADELE_NAME),
        "{}\n{}",
        home.describe(),
        w.diag()
    );
    let mut checked = 0;
    for page in [&anonymous, &callback] {
        for raw in &page.set_cookies {
            let c = cookie::Cookie::parse(raw.clone()).expect("a Set-Cookie header parses");
            let removal = c.max_age().is_some_and(|m| m.is_zero() || m.is_negative())
                || c.expires_datetime()
                    .is_some_and(|t| t < time::OffsetDateTime::now_utc());
            if removal {
                continue;
            }
            checked += 1;
            assert_eq!(c.http_only(), Some(true), "not HttpOnly: {raw}");
            assert_eq!(
                c.same_site(),
                Some(cookie::SameSite::Lax),
                "not SameSite=Lax: {raw}"
            );
            if w.proxy.is_some() {
                // Production shape: https redirect URI, app on http behind the proxy.
                assert_eq!(c.secure(), Some(true), "not Secure over https: {raw}");
                assert!(
                    c.name().starts_with("__Host-"),
                    "not __Host- prefixed over https: {raw}"
                );
                assert_eq!(c.path(), Some("/"), "__Host- cookies need Path=/: {raw}");
                assert!(
                    c.domain().is_none(),
                    "__Host- cookies carry no Domain: {raw}"
                );
            } else {
                assert_ne!(c.secure(), Some(true), "Secure on loopback http: {raw}");
            }
        }
    }
    assert!(checked > 0, "the app set no cookie\n{}", w.diag());
    assert!(
        !callback.set_cookies.is_empty(),
        "the callback sets the (cycled) session cookie\n{}",
        w.diag()
    );
}

/// Session id cycling: the cookies the app set before sign-in do not carry the signed-in
/// session (session fixation): their values change at sign-in, a browser holding only
/// the old values is not signed in, and one holding the new values is.
pub async fn session_id_is_cycled(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let anonymous = w.browser.get(&w.sample.url("/")).await;
    let auth = w.expect_login_page(&anonymous);
    let names_before = cookie_names_set_by(&[&anonymous], &w.sample.base_url());
    let before = w.app_cookies(&names_before);
    let last = w
        .browser
        .follow_until(w.browser.get_url(&auth).await, |u| w.is_callback(u))
        .await;
    let callback = w.browser.get_url(&last.next_hop().expect("callback")).await;
    let home = w.browser.follow(callback.clone()).await;
    assert!(
        home.contains(ADELE_NAME),
        "{}\n{}",
        home.describe(),
        w.diag()
    );
    let names_after = cookie_names_set_by(&[&anonymous, &callback], &w.sample.base_url());
    let after = w.app_cookies(&names_after);
    assert!(
        !after.is_empty(),
        "no session cookie after sign-in\n{}",
        w.diag()
    );
    for (name, old) in &before {
        assert_ne!(
            after.get(name),
            Some(old),
            "cookie {name} kept its pre-sign-in value\n{}",
            w.diag()
        );
    }
    let app_url = w.sample.parsed_url("/");
    let fixated = w.new_browser();
    for (name, value) in &before {
        fixated.add_cookie(&app_url, name, value);
    }
    let page = fixated.get(&w.sample.url("/")).await;
    assert!(
        !page.contains(ADELE_NAME),
        "the pre-sign-in cookies are signed in (session fixation)\n{}",
        w.diag()
    );
    let carried = w.new_browser();
    for (name, value) in &after {
        carried.add_cookie(&app_url, name, value);
    }
    let page = carried.get(&w.sample.url("/")).await;
    assert!(
        page.contains(ADELE_NAME),
        "the new cookies carry the session: {}\n{}",
        page.describe(),
        w.diag()
    );
}

/// Configuration page: without `CLIENT_ID` (or an authority) every page shows "Almost
/// there" and names the missing settings.
pub async fn configuration_page(launcher: &SampleLauncher) {
    let sample = launcher.bare().start().await;
    let browser = Browser::new();
    for path in ["/", "/call_api", "/login"] {
        let page = browser.get(&sample.url(path)).await;
        assert!(
            page.contains("Almost there") && page.contains("CLIENT_ID"),
            "{path}: {}\n{}",
            page.describe(),
            sample.log()
        );
        assert!(
            page.contains("AUTHORITY"),
            "{path} names the missing authority"
        );
    }
    // Half configured: the authority is there, the client id is not.
    let kit = TestKit::start(headless()).await.expect("kit");
    let sample = launcher.wired_to(&kit).unset("CLIENT_ID").start().await;
    let page = browser.get(&sample.url("/")).await;
    assert!(
        page.contains("Almost there") && page.contains("CLIENT_ID"),
        "{}\n{}",
        page.describe(),
        sample.log()
    );
    assert_eq!(
        kit.calls(Endpoint::Authorize) + kit.calls(Endpoint::Token),
        0
    );
}

/// Sign-out during an in-flight refresh: a request whose token refresh is still at the
/// provider when the user signs out (in another tab) finishes afterwards; the session it
/// saves at its end does not come back: the user stays signed out, the old cookie is
/// worth nothing.
pub async fn sign_out_during_refresh_stays_signed_out(launcher: &SampleLauncher) {
    // Access tokens are due for refresh a second after they are issued.
    let config = headless().with_access_token_lifetime(Duration::from_secs(REFRESH_AHEAD_SECS + 1));
    let w = World::start(launcher, config).await;
    w.sign_in_at("/").await;
    w.expect_page("/", ADELE_NAME).await;
    let held = w.browser.cookies_for(&w.sample.parsed_url("/"));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The refresh of /call_api takes three seconds at the provider.
    w.kit.set_fault(
        Endpoint::Token,
        Some(crate::Fault::Slow(Duration::from_secs(3))),
    );
    let tokens_before = w.tokens();
    let api_url = w.sample.url("/call_api");
    let in_flight = w.browser.get(&api_url);
    let sign_out = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        w.browser.get(&w.sample.url("/logout")).await
    };
    let (api, out) = tokio::join!(in_flight, sign_out);
    w.kit.set_fault(Endpoint::Token, None);
    assert!(
        out.is_redirect(),
        "sign-out: {}\n{}",
        out.describe(),
        w.diag()
    );
    assert_eq!(
        w.tokens(),
        tokens_before + 1,
        "the in-flight request did refresh\n{}",
        w.diag()
    );
    assert!(api.status < 500, "{}\n{}", api.describe(), w.diag());

    // Signed out, whatever the in-flight request saved.
    let home = w.browser.get(&w.sample.url("/")).await;
    w.expect_login_page(&home);
    let thief = w.new_browser();
    for c in held {
        thief.add_cookie(&w.sample.parsed_url("/"), &c.name, &c.value);
    }
    let stolen = thief.get(&w.sample.url("/")).await;
    assert!(
        !stolen.contains(ADELE_NAME),
        "the session came back for its old cookie\n{}",
        w.diag()
    );
    w.expect_login_page(&stolen);
}

/// App roles and groups: a page requiring an app role the user holds (`REPORTS_ROLE`),
/// or a group the user is in (`TEAM_GROUP`), shows; one requiring a role or group the
/// user lacks answers 403 with the explanation, never the page.
pub async fn roles_and_groups(launcher: &SampleLauncher) {
    const ADELES_GROUP: &str = "5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c";
    let w = World::start_with(launcher, headless(), |l, _| {
        l.env("REPORTS_ROLE", "Reader")
            .env("TEAM_GROUP", ADELES_GROUP)
    })
    .await;
    w.sign_in_at("/").await;
    w.expect_page("/reports", "Reader").await;
    w.expect_page("/team", "member").await;

    let w = World::start_with(launcher, headless(), |l, _| {
        l.env("REPORTS_ROLE", "Admin")
            .env("TEAM_GROUP", "00000000-1111-2222-3333-444444444444")
    })
    .await;
    w.sign_in_at("/").await;
    for (path, named) in [
        ("/reports", "Admin"),
        ("/team", "00000000-1111-2222-3333-444444444444"),
    ] {
        let page = w.browser.get(&w.sample.url(path)).await;
        assert_eq!(
            page.status,
            403,
            "{path}: {}\n{}",
            page.describe(),
            w.diag()
        );
        assert!(
            page.contains("You do not have access") && page.contains(named),
            "{path}: {}\n{}",
            page.describe(),
            w.diag()
        );
        assert!(
            !page.contains("id=\"restricted\""),
            "{path} showed the page"
        );
    }
}

/// The app's own pages: the sample gives the library its own login and error templates
/// (its layout, `data-layout="sample"`); the login page and the error page use them.
pub async fn app_pages_are_used(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let login = w.browser.get(&w.sample.url("/")).await;
    w.expect_login_page(&login);
    assert!(
        login.contains("data-layout=\"sample\""),
        "the login page is not the app's\n{}",
        login.describe()
    );
    let error =
        w.browser
            .get(&w.sample.url(
                "/getAToken?error=access_denied&error_description=AADSTS50126%3A+nope&state=x",
            ))
            .await;
    assert!(
        error.status >= 400 && error.contains("data-layout=\"sample\""),
        "the error page is not the app's\n{}",
        error.describe()
    );
}

/// The consent-loop guard: when consent for a scope never sticks (only an administrator
/// may grant it), the app sends the user to the provider at most twice within minutes,
/// then answers 403 "Consent could not be obtained" instead of looping.
pub async fn consent_loop_is_stopped(launcher: &SampleLauncher) {
    let config = TestKitConfig::default()
        .with_access_token_lifetime(Duration::from_secs(60))
        .with_consent_withheld("Mail.Read");
    let w = World::start_with(launcher, config, |l, _| {
        l.env("SCOPE", "User.Read Mail.Read")
    })
    .await;
    let kit_base = w.kit.base_url();
    let page = w.browser.get(&w.sample.url("/")).await;
    let auth = w.expect_login_page(&page);
    let (home, _) =
        through_testkit_pages(&w.browser, &kit_base, w.browser.get_url(&auth).await, ADELE).await;
    assert!(
        home.contains(ADELE_NAME),
        "{}\n{}",
        home.describe(),
        w.diag()
    );

    // The browser follows the app and the provider wherever they lead: consent, back to
    // the page, consent again, ... until the app stops asking.
    let first = w.browser.get(&w.sample.url("/call_api")).await;
    let (stopped, seen) = through_testkit_pages(&w.browser, &kit_base, first, ADELE).await;
    let round_trips = seen.iter().filter(|s| **s == "consent").count();
    assert_eq!(stopped.status, 403, "{}\n{}", stopped.describe(), w.diag());
    assert_eq!(stopped.url.path(), "/call_api", "{}", w.diag());
    assert_eq!(round_trips, 2, "{}", w.diag());
    assert!(
        stopped.contains("Consent could not be obtained") && stopped.contains("Mail.Read"),
        "{}\n{}",
        stopped.describe(),
        w.diag()
    );
}

/// JSON callers: a `fetch` call (`Accept: application/json`) to a protected page of an
/// anonymous visitor gets a JSON 401 naming the login route, with `WWW-Authenticate`,
/// and starts no sign-in (no cookie, no state); a page view gets the login page, also
/// with `WWW-Authenticate`.
pub async fn json_callers_get_a_json_401(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let json = w
        .browser
        .get_with_accept(&w.sample.url("/call_api?x=1"), "application/json")
        .await;
    assert_eq!(json.status, 401, "{}\n{}", json.describe(), w.diag());
    assert!(
        json.header("www-authenticate").is_some(),
        "{}",
        json.describe()
    );
    assert!(
        json.set_cookies.is_empty(),
        "a JSON 401 starts no sign-in: {}",
        json.describe()
    );
    let body: serde_json::Value = serde_json::from_str(&json.body).expect("JSON body");
    assert_eq!(body["error"], "sign_in_required");
    let login = body["login_uri"].as_str().unwrap_or_default();
    assert!(
        login.ends_with("/login?next=%2Fcall_api%3Fx%3D1"),
        "{login}"
    );

    let page = w.browser.get(&w.sample.url("/call_api")).await;
    w.expect_login_page(&page);
    assert_eq!(page.status, 401);
    let challenge = page.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("form-action="), "{challenge}");
}

/// The front-channel logout URL of the provider's sign-out page (its first iframe).
fn logout_frame(page: &Page) -> Option<String> {
    let marker = "<iframe class=\"logout\" src=\"";
    let start = page.body.find(marker)? + marker.len();
    let end = page.body[start..].find('"')? + start;
    Some(super::unescape(&page.body[start..end]))
}

/// Single sign-out: the user signs out at the provider, not through the app.
///
/// Back-channel: the provider POSTs a logout token to the app (server to server, on the
/// app's own address); the session ends, the cookies the browser held sign nobody in,
/// and the same token sent again is refused (400). Front-channel: the provider's
/// sign-out page frames the app's `frontchannel_logout?sid=…` URL; it is loaded by a
/// browser holding no cookie of the app (a third-party iframe sends none), answers 200
/// and ends the session.
pub async fn single_sign_out(launcher: &SampleLauncher) {
    let w = World::start(launcher, headless()).await;
    let internal = format!("http://127.0.0.1:{}", w.sample.port());
    w.kit.register_logout_uris(
        crate::WEB_APP_CLIENT_ID,
        None,
        Some(format!("{internal}/backchannel_logout")),
    );
    let provider_logout = format!("{}/oauth2/v2.0/logout", w.kit.authority());

    // Back-channel.
    w.sign_in_at("/").await;
    w.expect_page("/", ADELE_NAME).await;
    let held = w.browser.cookies_for(&w.sample.parsed_url("/"));
    let out = w.browser.navigate(&provider_logout).await;
    assert_eq!(out.status, 200, "{}\n{}", out.describe(), w.diag());
    let sent = w.kit.logout_deliveries();
    assert_eq!(sent.len(), 1, "{sent:?}\n{}", w.diag());
    assert_eq!(sent[0].status, Some(200), "{sent:?}\n{}", w.diag());
    let page = w.browser.get(&w.sample.url("/")).await;
    w.expect_login_page(&page);
    let thief = w.new_browser();
    for c in &held {
        thief.add_cookie(&w.sample.parsed_url("/"), &c.name, &c.value);
    }
    let stolen = thief.get(&w.sample.url("/")).await;
    assert!(
        !stolen.contains(ADELE_NAME),
        "the session outlived the back-channel logout\n{}",
        w.diag()
    );
    let replay = crate::post_form(&sent[0].uri, "logout_token", &sent[0].token).await;
    assert_eq!(replay, Ok(400), "a replayed logout token\n{}", w.diag());

    // Front-channel, as Entra does it (`?sid=` only).
    w.kit.register_logout_uris(
        crate::WEB_APP_CLIENT_ID,
        Some(w.sample.url("/frontchannel_logout")),
        None,
    );
    w.sign_in_at("/").await;
    w.expect_page("/", ADELE_NAME).await;
    let out = w.browser.navigate(&provider_logout).await;
    let frame = logout_frame(&out).unwrap_or_else(|| {
        panic!(
            "the sign-out page frames no logout URL: {}\n{}",
            out.describe(),
            w.diag()
        )
    });
    assert!(
        frame.starts_with(&w.sample.url("/frontchannel_logout?sid=")),
        "{frame}"
    );
    let framed = w.new_browser().get(&frame).await;
    assert_eq!(framed.status, 200, "{}\n{}", framed.describe(), w.diag());
    assert_eq!(
        framed.header("cache-control"),
        Some("no-store"),
        "{}",
        framed.describe()
    );
    assert!(
        framed.header("x-frame-options").is_none(),
        "the page must be framed by the provider: {}",
        framed.describe()
    );
    assert_eq!(
        framed.header("content-security-policy"),
        Some("frame-ancestors *")
    );
    let page = w.browser.get(&w.sample.url("/")).await;
    w.expect_login_page(&page);
}
