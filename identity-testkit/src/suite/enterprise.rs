//! Scenarios for what enterprise apps on Entra need beyond the basics: group checks for
//! users in more groups than a token carries (group overage, resolved through the
//! Graph-shaped `getMemberObjects`), and External ID tenants reached at their real host
//! names (`{tenant}.ciamlogin.com`, and a custom URL domain) over TLS. Like every
//! scenario, each runs on loopback http and behind the TLS-terminating proxy.

use super::browser::{Browser, Page};
use super::launcher::{Launch, Sample, SampleLauncher};
use super::scenarios::expect_login_page;
use crate::{Endpoint, Fault, TestKit, TestKitConfig};
use url::Url;

/// The testkit's user in 250 groups: her ID tokens carry a group overage.
pub const GRACE: &str = "grace@contoso.onmicrosoft.com";
/// Grace's `name` claim.
pub const GRACE_NAME: &str = "Grace Taylor";
/// One of Grace's 250 groups (not in her token: it carries the overage instead).
pub const GRACES_GROUP: &str = "00000007-7e7e-4c4c-9d9d-0a0a0a0a0a0a";
/// A group Grace is not in (Adele's).
pub const NOT_GRACES_GROUP: &str = "5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c";
/// The External ID test user.
pub const CAROL: &str = "carol@example.com";
/// Carol's `name` claim.
pub const CAROL_NAME: &str = "Carol Customer";
/// The External ID tenant's host name at Entra.
pub const CIAM_HOST: &str = "contosoext.ciamlogin.com";
/// The Graph host, mapped to the testkit for API calls.
const GRAPH_HOST: &str = "graph.microsoft.com";

/// One scenario's world: a testkit, a sample wired to it, a browser that reaches both
/// (through the TLS proxy in the production shape).
struct Stage {
    kit: TestKit,
    sample: Sample,
    browser: Browser,
    /// Kept alive for the scenario (behind the TLS proxy).
    _proxy: Option<(super::TlsProxy, u16)>,
    /// A CA file the sample trusts (`SSL_CERT_FILE`), removed on drop.
    ca_file: Option<std::path::PathBuf>,
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(path) = &self.ca_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Stage {
    /// Starts `config` (with TLS for the `mapped` host names, which the sample and the
    /// browser then reach at the kit) and the sample, `tweak`ed.
    async fn start(
        launcher: &SampleLauncher,
        mut config: TestKitConfig,
        mapped: &[&str],
        tweak: impl FnOnce(Launch, &TestKit) -> Launch,
    ) -> Stage {
        if !mapped.is_empty() {
            config = config.with_tls();
        }
        let proxy = if launcher.is_behind_tls_proxy() {
            let app_port = super::free_port();
            let proxy = super::TlsProxy::start(app_port)
                .await
                .expect("the TLS proxy starts");
            Some((proxy, app_port))
        } else {
            None
        };
        if let Some((proxy, _)) = &proxy {
            let public = proxy.public_base();
            config = config
                .with_redirect_uri(format!("{public}/getAToken"))
                .with_post_logout_redirect_uri(format!("{public}/"));
        }
        let kit = TestKit::start(config).await.expect("testkit starts");
        let mut launch = launcher
            .wired_to(&kit)
            .env("GRAPH_ENDPOINT", format!("{}/v1.0", kit.base_url()));
        let mut ca_file = None;
        let mut browser = Browser::builder();
        if !mapped.is_empty() {
            let pem = kit.ca_pem().expect("a TLS kit has a CA");
            let path = std::env::temp_dir().join(format!(
                "identity-suite-ca-{}-{}.pem",
                std::process::id(),
                kit.addr().port()
            ));
            std::fs::write(&path, &pem).expect("write the kit's CA");
            let resolve: Vec<String> = mapped
                .iter()
                .map(|h| format!("{h}={}", kit.addr()))
                .collect();
            launch = launch
                .env("IDENTITY_RESOLVE", resolve.join(","))
                .env("SSL_CERT_FILE", path.display().to_string());
            for host in mapped {
                browser = browser.resolve(host, kit.addr());
            }
            browser = browser.trust_pem(&pem);
            ca_file = Some(path);
        }
        if let Some((proxy, app_port)) = &proxy {
            launch = launch
                .env("REDIRECT_URI", format!("{}/getAToken", proxy.public_base()))
                .port(*app_port);
            browser = browser
                .resolve(super::PUBLIC_HOST, proxy.addr())
                .trust_pem(proxy.ca_pem());
        }
        let mut sample = tweak(launch, &kit).start().await;
        if let Some((proxy, _)) = &proxy {
            sample.set_public_base(proxy.public_base());
        }
        Stage {
            kit,
            sample,
            browser: browser.build(),
            _proxy: proxy,
            ca_file,
        }
    }

    /// Counters, the browser's trail and the sample's output.
    fn diag(&self) -> String {
        let counters: Vec<String> = Endpoint::ALL
            .iter()
            .filter(|e| self.kit.calls(**e) > 0)
            .map(|e| format!("{}={}", e.name(), self.kit.calls(*e)))
            .collect();
        format!(
            "\n---- provider calls: {} ----\n---- browser trail ----\n{}\n{}",
            counters.join(" "),
            self.browser.trail(),
            self.sample.log()
        )
    }

    /// A login page leading to `provider` (a base URL); returns where it leads.
    fn expect_login_page(&self, page: &Page, provider: &str) -> Url {
        expect_login_page(page, provider, &self.diag())
    }

    /// GET `path` and follow the app and the (headless) provider wherever they lead.
    async fn navigate(&self, path: &str) -> Page {
        self.browser.navigate(&self.sample.url(path)).await
    }

    /// Asserts `page` is a 200 showing `needle`.
    fn expect_shows(&self, page: &Page, needle: &str, what: &str) {
        assert!(
            page.status == 200 && page.contains(needle),
            "{what}: expected a page showing {needle:?}; got {}\n{}",
            page.describe(),
            self.diag()
        );
    }

    /// Signs in at `/` through `provider` (headless); asserts the home page shows `name`.
    async fn sign_in(&self, provider: &str, name: &str) {
        let page = self.browser.get(&self.sample.url("/")).await;
        let auth = self.expect_login_page(&page, provider);
        let home = self.browser.follow(self.browser.get_url(&auth).await).await;
        self.expect_shows(&home, name, "home after sign-in");
    }

    /// `/logout` goes to the end-session endpoint under `provider` (with the encoded home
    /// page and an `id_token_hint`), which sends the browser back; the next view is
    /// anonymous.
    async fn sign_out(&self, provider: &str, name: &str) {
        let out = self.browser.get(&self.sample.url("/logout")).await;
        let end = out.location.clone().unwrap_or_else(|| {
            panic!(
                "/logout did not redirect: {}\n{}",
                out.describe(),
                self.diag()
            )
        });
        assert!(
            end.as_str().starts_with(provider) && end.path().ends_with("/oauth2/v2.0/logout"),
            "the end-session endpoint is under {provider}: {end}\n{}",
            self.diag()
        );
        let home = self.sample.url("/");
        let param = |k: &str| {
            end.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(
            param("post_logout_redirect_uri"),
            Some(home.clone()),
            "{end}"
        );
        assert_eq!(
            param("id_token_hint")
                .unwrap_or_default()
                .split('.')
                .count(),
            3,
            "{end}"
        );
        let back = self.browser.follow_until(out, |u| u.as_str() == home).await;
        assert_eq!(
            back.next_hop().map(|u| u.to_string()),
            Some(home.clone()),
            "the provider sends the browser back to the app: {}\n{}",
            back.describe(),
            self.diag()
        );
        assert_eq!(self.kit.calls(Endpoint::Logout), 1, "{}", self.diag());
        let page = self.browser.get(&home).await;
        assert!(
            !page.contains(name),
            "still signed in after /logout\n{}",
            self.diag()
        );
        self.expect_login_page(&page, provider);
    }
}

/// Group checks after a group overage: Grace is in 250 groups, so her ID token carries
/// `_claim_names`/`_claim_sources` instead of `groups`. The sample's `/team` page
/// (`TEAM_GROUP`) asks her for the Graph permission `GroupMember.Read.All` once
/// (incremental consent, back on `/team`), reads her groups from `getMemberObjects` once
/// and keeps them with the session: a member sees the page, later views make no Graph
/// call; a non-member gets the 403 page naming the group. When Graph fails, the page is a
/// 502 that names the permission to check and offers to retry; once Graph answers again
/// the check does too.
pub async fn groups_after_an_overage(launcher: &SampleLauncher) {
    let graces = TestKitConfig::default().with_auto_approve(GRACE);
    let w = Stage::start(launcher, graces.clone(), &[], |l, _| {
        l.env("TEAM_GROUP", GRACES_GROUP)
    })
    .await;
    let provider = w.kit.base_url();
    w.sign_in(&provider, GRACE_NAME).await;
    assert_eq!(w.kit.calls(Endpoint::MemberObjects), 0, "{}", w.diag());

    // The first check needs the Graph permission: a sign-in asking for it, back on /team.
    let page = w.browser.get(&w.sample.url("/team")).await;
    let auth = w.expect_login_page(&page, &provider);
    let scope = auth
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(
        scope.contains("GroupMember.Read.All"),
        "the consent sign-in asks for GroupMember.Read.All: {auth}"
    );
    let team = w.browser.follow(w.browser.get_url(&auth).await).await;
    assert_eq!(team.url.path(), "/team", "{}", w.diag());
    w.expect_shows(&team, "member", "/team for a member after an overage");
    assert_eq!(w.kit.calls(Endpoint::MemberObjects), 1, "{}", w.diag());

    // Cached with the session.
    let again = w.navigate("/team").await;
    w.expect_shows(&again, "member", "/team again");
    assert_eq!(
        w.kit.calls(Endpoint::MemberObjects),
        1,
        "the groups are kept with the session\n{}",
        w.diag()
    );
    drop(w);

    // A non-member: 403, never the page. A Graph failure before that: 502, not a pass.
    let w = Stage::start(launcher, graces, &[], |l, _| {
        l.env("TEAM_GROUP", NOT_GRACES_GROUP)
    })
    .await;
    w.sign_in(&w.kit.base_url(), GRACE_NAME).await;
    w.kit
        .set_fault(Endpoint::MemberObjects, Some(Fault::Status(503)));
    let failed = w.navigate("/team").await;
    assert_eq!(failed.status, 502, "{}\n{}", failed.describe(), w.diag());
    assert_eq!(failed.url.path(), "/team", "{}", w.diag());
    assert!(
        failed.contains("group memberships could not be read")
            && failed.contains("GroupMember.Read.All")
            && !failed.contains("id=\"restricted\""),
        "{}\n{}",
        failed.describe(),
        w.diag()
    );
    w.kit.set_fault(Endpoint::MemberObjects, None);
    let refused = w.navigate("/team").await;
    assert_eq!(refused.status, 403, "{}\n{}", refused.describe(), w.diag());
    assert!(
        refused.contains("You do not have access") && refused.contains(NOT_GRACES_GROUP),
        "{}\n{}",
        refused.describe(),
        w.diag()
    );
    assert!(
        !refused.contains("id=\"restricted\""),
        "/team showed the page"
    );
}

/// External ID at its real host name: `AUTHORITY=https://contosoext.ciamlogin.com` (the
/// testkit serves TLS for it; the sample reaches it through `IDENTITY_RESOLVE` and trusts
/// its CA through `SSL_CERT_FILE`), so the authority is detected as External ID from the
/// host, as in production. Carol signs in, `/call_api` calls the API with her token, and
/// sign-out goes through the tenant's end-session endpoint and back.
pub async fn external_id_tenant(launcher: &SampleLauncher) {
    let config = TestKitConfig::default().with_auto_approve(CAROL);
    let w = Stage::start(launcher, config, &[CIAM_HOST, GRAPH_HOST], |l, kit| {
        let port = kit.addr().port();
        l.env("AUTHORITY", format!("https://{CIAM_HOST}:{port}"))
            .env("ENDPOINT", format!("https://{GRAPH_HOST}:{port}/v1.0/me"))
    })
    .await;
    let provider = format!("https://{CIAM_HOST}:{}/", w.kit.addr().port());
    external_id_round_trip(&w, &provider).await;
}

/// External ID on a custom URL domain: `OIDC_AUTHORITY=https://login.contoso.com/{tenant
/// id}/v2.0`. The endpoints are on the custom domain while the tokens' issuer stays
/// `https://{tenant id}.ciamlogin.com/{tenant id}/v2.0`, as at Entra; the app accepts
/// that issuer for that authority. Sign-in, an API call with the user's token and
/// sign-out all go through `login.contoso.com`.
pub async fn external_id_custom_domain(launcher: &SampleLauncher) {
    let tid = crate::EXTERNAL_ID_TENANT_ID;
    let domain = crate::CUSTOM_DOMAIN;
    let config = TestKitConfig::default().with_auto_approve(CAROL);
    let w = Stage::start(launcher, config, &[domain, GRAPH_HOST], |l, kit| {
        let port = kit.addr().port();
        l.unset("AUTHORITY")
            .env(
                "OIDC_AUTHORITY",
                format!("https://{domain}:{port}/{tid}/v2.0"),
            )
            .env("ENDPOINT", format!("https://{GRAPH_HOST}:{port}/v1.0/me"))
    })
    .await;
    let provider = format!("https://{domain}:{}/{tid}/", w.kit.addr().port());
    external_id_round_trip(&w, &provider).await;
}

async fn external_id_round_trip(w: &Stage, provider: &str) {
    w.sign_in(provider, CAROL_NAME).await;
    assert_eq!(w.kit.calls(Endpoint::Token), 1, "{}", w.diag());
    let api = w.navigate("/call_api").await;
    assert_eq!(api.url.path(), "/call_api", "{}", w.diag());
    w.expect_shows(&api, "carol@example.com", "/call_api");
    assert_eq!(w.kit.calls(Endpoint::Api), 1, "{}", w.diag());
    w.sign_out(provider, CAROL_NAME).await;
}

/// The code shown on a device code page (`<code id="user_code">`).
fn user_code(page: &Page) -> Option<String> {
    let start = page.body.find("id=\"user_code\">")? + "id=\"user_code\">".len();
    let len = page.body[start..].find('<')?;
    Some(page.body[start..start + len].to_owned())
}

/// Device code sign-in (`REDIRECT_URI=none`): an anonymous page view answers 401 with the
/// code to enter at the provider; each reload of the callback route polls the provider
/// at most once per interval. `authorization_pending` and `slow_down` are the waiting page
/// again (200, the same code, `Retry-After` with the interval, 5 s longer after
/// `slow_down`), never an error; once the provider approves, the sign-in completes and
/// the home page shows the user.
///
/// Without a redirect URI the app cannot know it is served over plain http, so its
/// session cookie is `Secure` (`__Host-`): the sign-in completes in the production shape
/// (behind the TLS proxy); on loopback http the scenario checks the first page only.
pub async fn device_code_sign_in(launcher: &SampleLauncher) {
    use super::scenarios::{ADELE, ADELE_NAME};
    use crate::DeviceAnswer;
    use std::time::Duration;

    let config = TestKitConfig::default().with_auto_approve(ADELE);
    let w = Stage::start(launcher, config, &[], |l, _| l.env("REDIRECT_URI", "none")).await;
    w.kit.set_device_code_interval(1);
    w.kit
        .script_device_code([DeviceAnswer::Pending, DeviceAnswer::SlowDown]);
    let first = w.browser.get(&w.sample.url("/")).await;
    let code = user_code(&first).unwrap_or_else(|| {
        panic!(
            "expected the device code page; got {}\n{}",
            first.describe(),
            w.diag()
        )
    });
    assert_eq!(first.status, 401, "{}\n{}", first.describe(), w.diag());
    assert_eq!(w.kit.calls(Endpoint::DeviceCode), 1, "{}", w.diag());
    assert_eq!(w.kit.calls(Endpoint::Token), 0, "{}", w.diag());
    if !launcher.is_behind_tls_proxy() {
        return;
    }

    let poll = w.sample.url("/auth_response");
    let waiting = |page: &Page, retry_after: &str, what: &str| {
        assert_eq!(
            page.status,
            200,
            "{what}: {}\n{}",
            page.describe(),
            w.diag()
        );
        assert_eq!(
            user_code(page).as_deref(),
            Some(code.as_str()),
            "{what}: the waiting page shows the code again\n{}",
            w.diag()
        );
        assert_eq!(
            page.header("retry-after"),
            Some(retry_after),
            "{what}: {}",
            page.describe()
        );
    };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let pending = w.browser.get(&poll).await;
    waiting(&pending, "1", "authorization_pending");
    assert_eq!(w.kit.calls(Endpoint::Token), 1, "{}", w.diag());

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let slowed = w.browser.get(&poll).await;
    waiting(&slowed, "6", "slow_down");
    assert_eq!(w.kit.calls(Endpoint::Token), 2, "{}", w.diag());

    // A reload before the longer interval: the waiting page, no provider call.
    let early = w.browser.get(&poll).await;
    assert_eq!(early.status, 200, "{}\n{}", early.describe(), w.diag());
    assert_eq!(w.kit.calls(Endpoint::Token), 2, "{}", w.diag());

    tokio::time::sleep(Duration::from_millis(6100)).await;
    let done = w.browser.get(&poll).await;
    assert!(
        done.is_redirect(),
        "approved: {}\n{}",
        done.describe(),
        w.diag()
    );
    let home = w.browser.follow(done).await;
    w.expect_shows(&home, ADELE_NAME, "home after device code sign-in");
    assert_eq!(w.kit.calls(Endpoint::Token), 3, "{}", w.diag());
}
