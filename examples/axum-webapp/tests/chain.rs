//! The whole chain: browser → this web app → the web API sample (`examples/web-api`) →
//! the downstream API it calls on behalf of the user, against a local provider. Once
//! scripted (HTTP with cookies, headless provider), once in headless Chromium through the
//! provider's HTML pages (`interop/chain.mjs`).
//!
//! The web API is another package's binary, so Cargo gives this test no
//! `CARGO_BIN_EXE_web-api`: it is expected beside this sample's binary
//! (`target/<profile>/web-api`), and the test runs `cargo build -p web-api` (same
//! profile) first, which is quick when it is up to date. Set `WEB_API_BIN` to use another
//! binary and skip that build.

use identity_testkit::suite::peers::{chromium, e2e_dir, interop_dir, tool_available};
use identity_testkit::suite::{Browser, Sample, SampleLauncher};
use identity_testkit::{Endpoint, TestKit, TestKitConfig, API_APP_CLIENT_ID, API_APP_SECRET};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const ADELE: &str = "adele@contoso.onmicrosoft.com";
const ADELE_NAME: &str = "Adele Vance";

/// The web API binary, built (or refreshed) once per test process.
fn web_api_binary() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_web_api)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build_web_api() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("WEB_API_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let sample = Path::new(env!("CARGO_BIN_EXE_axum-webapp"));
    let bin = sample.with_file_name(format!("web-api{}", std::env::consts::EXE_SUFFIX));
    let profile_dir = sample
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let profile = match profile_dir {
        "debug" => "dev",
        other => other,
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args([
            "build",
            "-p",
            "web-api",
            "--bin",
            "web-api",
            "--profile",
            profile,
        ])
        .output()
        .map_err(|e| format!("cannot run cargo to build web-api: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build -p web-api --profile {profile}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !bin.is_file() {
        return Err(format!(
            "web-api was built but is not at {} (a --target build?); set WEB_API_BIN",
            bin.display()
        ));
    }
    Ok(bin)
}

/// The provider, the web API wired to it, and this sample wired to both.
struct Chain {
    kit: TestKit,
    api: Sample,
    app: Sample,
}

impl Chain {
    async fn start(kit: TestKitConfig) -> Chain {
        let kit = TestKit::start(kit).await.expect("kit");
        let api = SampleLauncher::new(web_api_binary())
            .bare()
            .env("CLIENT_ID", API_APP_CLIENT_ID)
            .env("CLIENT_SECRET", API_APP_SECRET)
            .env("AUTHORITY", kit.authority())
            .env("DOWNSTREAM_ENDPOINT", kit.api_url())
            .env("DOWNSTREAM_SCOPE", "User.Read")
            .unset("API_AUDIENCE")
            .start()
            .await;
        let app = SampleLauncher::new(env!("CARGO_BIN_EXE_axum-webapp"))
            .wired_to(&kit)
            .env("WEB_API_ENDPOINT", api.url("/api/me"))
            .env(
                "WEB_API_SCOPE",
                format!("api://{API_APP_CLIENT_ID}/access_as_user"),
            )
            .start()
            .await;
        Chain { kit, api, app }
    }

    fn logs(&self) -> String {
        format!(
            "---- web app ----\n{}\n---- web API ----\n{}",
            self.app.log(),
            self.api.log()
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_app_calls_the_web_api_which_calls_graph_on_behalf_of_the_user() {
    let chain = Chain::start(TestKitConfig::default().with_auto_approve(ADELE)).await;
    let browser = Browser::new();
    let diag = || format!("{}\n{}", browser.trail(), chain.logs());

    let home = browser.navigate(&chain.app.url("/")).await;
    assert!(
        home.status == 200 && home.contains(ADELE_NAME),
        "{}\n{}",
        home.body,
        diag()
    );
    let link = home
        .link_by_id("call_web_api")
        .unwrap_or_else(|| panic!("no link to the web API page: {}\n{}", home.body, diag()));
    assert_eq!(link.path(), "/call_web_api");

    let tokens = chain.kit.calls(Endpoint::Token);
    let page = browser.navigate(link.as_str()).await;
    assert_eq!(page.url.path(), "/call_web_api", "{}", diag());
    assert_eq!(page.status, 200, "{}\n{}", page.body, diag());
    assert!(
        page.contains("id=\"web_api_result\"") && page.contains("displayName"),
        "{}\n{}",
        page.body,
        diag()
    );
    assert!(page.contains(ADELE_NAME), "{}\n{}", page.body, diag());
    // The web app's token for the web API (a refresh) and the web API's on-behalf-of
    // exchange; the downstream API was called once.
    assert_eq!(chain.kit.calls(Endpoint::Token), tokens + 2, "{}", diag());
    assert_eq!(chain.kit.calls(Endpoint::Api), 1, "{}", diag());

    // Again: both tokens come from caches.
    let again = browser.navigate(link.as_str()).await;
    assert!(again.contains(ADELE_NAME), "{}\n{}", again.body, diag());
    assert_eq!(chain.kit.calls(Endpoint::Token), tokens + 2, "{}", diag());
    assert_eq!(chain.kit.calls(Endpoint::Api), 2, "{}", diag());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_settings_there_is_no_web_api_page() {
    let kit = TestKit::start(TestKitConfig::default().with_auto_approve(ADELE))
        .await
        .expect("kit");
    let app = SampleLauncher::new(env!("CARGO_BIN_EXE_axum-webapp"))
        .wired_to(&kit)
        .unset("WEB_API_ENDPOINT")
        .unset("WEB_API_SCOPE")
        .start()
        .await;
    let browser = Browser::new();
    let home = browser.navigate(&app.url("/")).await;
    assert!(home.contains(ADELE_NAME), "{}", home.body);
    assert!(home.link_by_id("call_web_api").is_none(), "{}", home.body);
    let page = browser.navigate(&app.url("/call_web_api")).await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(page.contains("WEB_API_ENDPOINT"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_through_the_chain() {
    let chromium = chromium().filter(|p| p.is_file());
    let modules = interop_dir().join("node_modules/playwright-core/package.json");
    if !tool_available(
        "Chromium (/usr/bin/chromium)",
        chromium.is_some(),
        "apt-get install chromium",
    ) || !tool_available(
        "interop/node_modules (playwright-core)",
        modules.is_file(),
        "cd interop && npm ci",
    ) {
        return;
    }
    let chromium = chromium.expect("checked");
    // Interactive provider pages: no auto-approve.
    let chain = Chain::start(TestKitConfig::default()).await;
    let shots = e2e_dir("chain");
    let _ = std::fs::remove_dir_all(&shots);
    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(interop_dir())
        .arg("chain.mjs")
        .args(["--app", &chain.app.base_url()])
        .args(["--user", ADELE, "--name", ADELE_NAME])
        .arg("--screenshots")
        .arg(&shots)
        .arg("--executable")
        .arg(&chromium)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chain.mjs finishes within 120 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "---- chain.mjs ----\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        chain.logs()
    );
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(
        out.status.success() && steps.iter().any(|s| s["result"] == "ok"),
        "the browser run failed\n{report}"
    );
    assert_eq!(
        step("sign-in")["provider_pages"],
        serde_json::json!(["sign-in"]),
        "{report}"
    );
    assert_eq!(step("web-api")["shows_name"], true, "{report}");
    assert_eq!(step("web-api")["on_page"], true, "{report}");
    assert!(chain.kit.calls(Endpoint::Api) >= 1, "{report}");
}
