//! Starts the built sample against a local provider and signs in over HTTP.

use identity_testkit::suite::SampleLauncher;
use identity_testkit::{Endpoint, TestKit, TestKitConfig};

fn launcher() -> SampleLauncher {
    SampleLauncher::new(env!("CARGO_BIN_EXE_rocket-webapp"))
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// The provider URL of a login page's meta refresh.
fn meta_refresh(html: &str) -> String {
    let start = html.find("URL=").expect("a meta refresh") + 4;
    let end = start + html[start..].find('"').unwrap();
    identity_testkit::suite::unescape(&html[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_calls_the_api_and_signs_out() {
    let kit =
        TestKit::start(TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"))
            .await
            .unwrap();
    let sample = launcher().wired_to(&kit).start().await;
    let client = browser();

    // Anonymous: the login page, pointing at the provider.
    let res = client.get(sample.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let provider = meta_refresh(&res.text().await.unwrap());
    assert!(provider.starts_with(&kit.base_url()), "{provider}");

    // The provider sends the browser back to the callback, which returns to `/`.
    let res = client.get(&provider).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let callback = location(&res);
    assert!(
        callback.starts_with(&sample.url("/getAToken")),
        "{callback}"
    );
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(location(&res), "/");

    let home = client.get(sample.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.headers()["cache-control"], "no-store");
    let html = home.text().await.unwrap();
    assert!(html.contains("Adele Vance"), "{html}");
    assert!(html.contains("href=\"/call_api\""), "{html}");
    assert!(html.contains("href=\"/logout\""), "{html}");

    // The API page: one refresh for the API's scopes, then the cached token.
    for expected_token_calls in [1, 0] {
        kit.reset_counters();
        let api = client.get(sample.url("/call_api")).send().await.unwrap();
        assert_eq!(api.status(), 200);
        let html = api.text().await.unwrap();
        assert!(html.contains("displayName"), "{html}");
        assert!(
            html.contains("&quot;") || html.contains("&#34;"),
            "escaped JSON: {html}"
        );
        assert_eq!(kit.calls(Endpoint::Token), expected_token_calls);
        assert_eq!(kit.calls(Endpoint::Api), 1);
    }

    // Sign-out.
    let out = client.get(sample.url("/logout")).send().await.unwrap();
    assert_eq!(out.status(), 302);
    let end_session = location(&out);
    assert!(
        end_session.contains("post_logout_redirect_uri=http%3A%2F%2F127.0.0.1"),
        "{end_session}"
    );
    assert!(end_session.contains("id_token_hint="), "{end_session}");
    let again = client.get(sample.url("/")).send().await.unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_it_shows_the_configuration_page() {
    let sample = launcher().bare().start().await;
    for path in ["/", "/call_api", "/login"] {
        let res = browser().get(sample.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 500, "{path}");
        let html = res.text().await.unwrap();
        assert!(html.contains("Almost there"), "{path}: {html}");
        assert!(html.contains("CLIENT_ID"), "{path}: {html}");
    }
}
