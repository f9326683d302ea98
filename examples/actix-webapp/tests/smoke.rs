//! Starts the built sample against a local provider and signs in over HTTP.

use identity_testkit::suite::free_port;
use identity_testkit::{TestKit, TestKitConfig, WEB_APP_CLIENT_ID, WEB_APP_SECRET};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The sample's process, stopped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the sample with only `env` among the contract's variables, in an empty
/// directory (no `.env`), and waits for its `ready` line.
fn start(env: &[(&str, String)]) -> Running {
    let dir = std::env::temp_dir().join(format!("actix-webapp-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_actix-webapp"));
    cmd.current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for k in [
        "CLIENT_ID",
        "CLIENT_SECRET",
        "AUTHORITY",
        "OIDC_AUTHORITY",
        "B2C_TENANT_NAME",
        "SIGNUPSIGNIN_USER_FLOW",
        "REDIRECT_URI",
        "SCOPE",
        "ENDPOINT",
        "BIND_ADDR",
        "SESSION_STORE",
        "SESSION_SECRET",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the sample starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "ready" {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the sample prints ready");
    Running(child)
}

/// A cookie jar and manual redirects.
struct Browser {
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    async fn get(&mut self, url: &str) -> (u16, Option<String>, String) {
        let mut req = self.http.get(url);
        if !self.cookies.is_empty() {
            let header: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", header.join("; "));
        }
        let res = req.send().await.unwrap();
        for c in res.headers().get_all("set-cookie") {
            let first = c.to_str().unwrap().split(';').next().unwrap().to_owned();
            if let Some((k, v)) = first.split_once('=') {
                self.cookies.retain(|(n, _)| n != k);
                if !v.is_empty() {
                    self.cookies.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        let status = res.status().as_u16();
        let location = res.headers().get("location").map(|l| {
            url::Url::parse(url)
                .unwrap()
                .join(l.to_str().unwrap())
                .unwrap()
                .to_string()
        });
        (status, location, res.text().await.unwrap())
    }

    /// Follows redirects and meta refreshes; the last URL, status and body.
    async fn follow(&mut self, start: &str) -> (String, u16, String) {
        let mut url = start.to_owned();
        for _ in 0..10 {
            let (status, location, body) = self.get(&url).await;
            match location.or_else(|| meta_refresh(&body)) {
                Some(next) => url = next,
                None => return (url, status, body),
            }
        }
        panic!("too many hops from {start}");
    }
}

fn meta_refresh(body: &str) -> Option<String> {
    let i = body.find("http-equiv=\"refresh\"")?;
    let rest = &body[i..];
    let start = rest.find("URL=")? + 4;
    let end = rest[start..].find('"')? + start;
    Some(html_escape::decode_html_entities(&rest[start..end]).into_owned())
}

#[tokio::test]
async fn signs_in_calls_the_api_and_signs_out() {
    let kit =
        TestKit::start(TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"))
            .await
            .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _app = start(&[
        ("CLIENT_ID", WEB_APP_CLIENT_ID.to_owned()),
        ("CLIENT_SECRET", WEB_APP_SECRET.to_owned()),
        ("AUTHORITY", kit.authority()),
        ("REDIRECT_URI", format!("{base}/getAToken")),
        ("ENDPOINT", kit.api_url()),
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        (
            "SESSION_SECRET",
            "smoke-test secret of enough length".to_owned(),
        ),
    ]);
    let mut b = Browser::new();

    let (url, status, body) = b.follow(&format!("{base}/")).await;
    assert_eq!(url, format!("{base}/"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Welcome Adele Vance!"), "{body}");
    assert!(body.contains("/logout"), "{body}");
    assert!(body.contains("/call_api"), "{body}");
    assert!(!body.contains("edit_profile"), "{body}");

    let (url, status, body) = b.follow(&format!("{base}/call_api")).await;
    assert_eq!(url, format!("{base}/call_api"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("displayName"), "{body}");
    assert!(
        body.contains("&#34;") || body.contains("&quot;"),
        "escaped JSON: {body}"
    );

    let (status, location, _) = b.get(&format!("{base}/logout")).await;
    assert_eq!(status, 302);
    let location = location.unwrap();
    assert!(location.starts_with(&kit.base_url()), "{location}");
    assert!(location.contains("id_token_hint="), "{location}");

    let (status, _, _) = b.get(&format!("{base}/")).await;
    assert_eq!(status, 401, "signed out");
}

#[tokio::test]
async fn unconfigured_shows_the_configuration_page() {
    let port = free_port();
    let _app = start(&[("BIND_ADDR", format!("127.0.0.1:{port}"))]);
    let mut b = Browser::new();
    for path in ["/", "/call_api", "/login", "/logout", "/anything"] {
        let (status, _, body) = b.get(&format!("http://127.0.0.1:{port}{path}")).await;
        assert_eq!(status, 500, "{path}");
        assert!(
            body.contains("Almost there") && body.contains("CLIENT_ID"),
            "{path}: {body}"
        );
    }
}
