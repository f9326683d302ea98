//! `identity-bench`: loopback benchmarks of identity-rs (run by `cargo xtask bench`).
//!
//! ```text
//! identity-bench run [--seconds N] [--connections C] [--frameworks axum,actix,rocket]
//! identity-bench serve <framework> <authority> <addr-file>   (internal: the app under test)
//! ```
//!
//! The app under test runs in its own process so that its memory is measured alone; the
//! local provider and the load generator run in this process. Every figure of one run
//! comes from the same machine state; compare ratios, not absolute numbers across runs.

use identity_bench::{load, meta_refresh_target, rss_kib, LoadResult};
use identity_testkit::{Endpoint, TestKit, TestKitConfig};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod servers;

const CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let code = match args.first().map(String::as_str) {
        Some("serve") if args.len() == 4 => {
            rt.block_on(servers::serve(&args[1], &args[2], &args[3]))
        }
        Some("run") => rt.block_on(run(&args[1..])),
        _ => {
            eprintln!(
                "usage: identity-bench run [--seconds N] [--connections C] [--frameworks axum,actix,rocket]"
            );
            2
        }
    };
    std::process::exit(code);
}

struct Options {
    seconds: u64,
    connections: usize,
    frameworks: Vec<String>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seconds: 5,
        connections: 32,
        frameworks: servers::FRAMEWORKS.iter().map(|s| s.to_string()).collect(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|_| "--seconds: a number")?,
            "--connections" => {
                o.connections = value()?.parse().map_err(|_| "--connections: a number")?
            }
            "--frameworks" => o.frameworks = value()?.split(',').map(str::to_owned).collect(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// The app under test, in a child process.
struct App {
    child: Child,
    addr: SocketAddr,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_app(framework: &str, authority: &str) -> Result<App, String> {
    let dir =
        std::env::temp_dir().join(format!("identity-bench-{}-{framework}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let addr_file = dir.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["serve", framework, authority, &addr_file.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the {framework} app: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.trim() == "ready" => break,
            Some(Ok(_)) => continue,
            _ => return Err(format!("the {framework} app exited before it was ready")),
        }
    }
    let addr = std::fs::read_to_string(&addr_file)
        .map_err(|e| e.to_string())?
        .trim()
        .parse()
        .map_err(|_| "bad addr file")?;
    Ok(App { child, addr })
}

/// A scripted browser session signed in to the app; returns the `Cookie` header value.
async fn sign_in(app: SocketAddr) -> Result<String, String> {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let home = format!("http://{app}/");
    let page = client
        .get(&home)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let mut next = meta_refresh_target(&page).ok_or("no login page")?;
    for _ in 0..10 {
        let resp = client.get(&next).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_redirection() {
            break;
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or("no location")?;
        next = url::Url::parse(&next)
            .and_then(|b| b.join(location))
            .map_err(|e| e.to_string())?
            .to_string();
        if next == home {
            break;
        }
    }
    let url = url::Url::parse(&home).map_err(|e| e.to_string())?;
    use reqwest::cookie::CookieStore;
    let cookie = jar
        .cookies(&url)
        .ok_or("no session cookie")?
        .to_str()
        .map_err(|e| e.to_string())?
        .to_owned();
    let check = client.get(&home).send().await.map_err(|e| e.to_string())?;
    if check.status() != 200 {
        return Err(format!("signed-in page answered {}", check.status()));
    }
    Ok(cookie)
}

/// Calls the app makes to the provider (the browser's authorize requests are not the app's).
fn provider_calls(kit: &TestKit) -> u64 {
    [Endpoint::Discovery, Endpoint::Jwks, Endpoint::Token]
        .iter()
        .map(|e| kit.calls(*e))
        .sum()
}

struct Report {
    lines: Vec<String>,
}

impl Report {
    fn line(&mut self, s: String) {
        println!("{s}");
        self.lines.push(s);
    }
}

async fn run(args: &[String]) -> i32 {
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let mut report = Report { lines: Vec::new() };
    let secs = Duration::from_secs(o.seconds);
    for framework in &o.frameworks {
        let config = TestKitConfig {
            auto_approve: Some("adele@contoso.onmicrosoft.com".into()),
            access_token_lifetime: Duration::from_secs(2),
            ..TestKitConfig::default()
        };
        let kit = match TestKit::start(config).await {
            Ok(k) => k,
            Err(e) => {
                eprintln!("testkit: {e}");
                return 1;
            }
        };
        let app = match start_app(framework, &kit.authority()) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_idle = rss_kib(Some(app.child.id())).unwrap_or(0);
        report.line(format!("\n## {framework}\n"));

        // Provider round trips per sign-in, after a warm-up sign-in (discovery and keys cached).
        let _ = sign_in(app.addr).await;
        let before = provider_calls(&kit);
        let cookie = match sign_in(app.addr).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sign-in failed: {e}");
                return 1;
            }
        };
        let per_sign_in = provider_calls(&kit) - before;
        // Only the app's session cookie is sent in the load (the jar also holds the local
        // provider's SSO cookies, as cookies do not distinguish ports, and may hold the
        // pending sign-in cookie).
        let Some(name) = servers::session_cookie(framework) else {
            eprintln!("no session cookie known for {framework}");
            return 1;
        };
        let Some(session_cookie) = find_cookie(&cookie, name) else {
            eprintln!("no session cookie named `{name}` in {cookie:?}");
            return 1;
        };
        let cookie = session_cookie.clone();
        // The raw-session page must find the user with this cookie alone, or its row
        // would measure an anonymous page.
        match reqwest_text(app.addr, "/session", Some(&cookie)).await {
            Ok(body) if body.strip_prefix("Hello ").is_some_and(|n| n != "0") => {}
            other => {
                eprintln!("`/session` did not find the signed-in user: {other:?}");
                return 1;
            }
        }

        // Signed-in page views, through the guard and without it, interleaved.
        let mut guarded: Vec<LoadResult> = Vec::new();
        let mut plain: Vec<LoadResult> = Vec::new();
        let mut raw: Vec<LoadResult> = Vec::new();
        let calls_before_views = kit.calls(Endpoint::Token);
        for _ in 0..3 {
            guarded.push(load(app.addr, "/", Some(&cookie), o.connections, secs, 200).await);
            plain.push(load(app.addr, "/plain", Some(&cookie), o.connections, secs, 200).await);
            raw.push(
                load(
                    app.addr,
                    "/session",
                    Some(&cookie),
                    o.connections,
                    secs,
                    200,
                )
                .await,
            );
        }
        let token_calls_in_views = kit.calls(Endpoint::Token) - calls_before_views;
        let views: u64 = guarded.iter().map(|r| r.responses).sum();
        let g = median(guarded.iter().map(LoadResult::rate).collect());
        let p = median(plain.iter().map(LoadResult::rate).collect());
        let r = median(raw.iter().map(LoadResult::rate).collect());
        let unexpected: u64 = guarded
            .iter()
            .chain(&plain)
            .chain(&raw)
            .map(|r| r.unexpected)
            .sum();

        // One refresh under 100 concurrent requests of one session.
        let _ = reqwest_get(app.addr, "/token", &cookie).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let before_refresh = kit.calls(Endpoint::Token);
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let c = cookie.clone();
            let a = app.addr;
            tasks.push(tokio::spawn(
                async move { reqwest_get(a, "/token", &c).await },
            ));
        }
        let mut ok = 0;
        for t in tasks {
            if matches!(t.await, Ok(Ok(200))) {
                ok += 1;
            }
        }
        let refresh_calls = kit.calls(Endpoint::Token) - before_refresh;

        // Anonymous flood on a protected page: login redirects per second and memory.
        let flood = load(
            app.addr,
            "/",
            None,
            o.connections,
            Duration::from_secs(10),
            401,
        )
        .await;
        let rss_flood = rss_kib(Some(app.child.id())).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss_after = rss_kib(Some(app.child.id())).unwrap_or(0);
        let stored = reqwest_text(app.addr, "/sessions", None)
            .await
            .unwrap_or_else(|e| e);

        report.line("| measure | value | target |".into());
        report.line("|---|---|---|".into());
        report.line(format!(
            "| signed-in `/` through the `User` guard | {g:.0} req/s | |"
        ));
        report.line(format!(
            "| same handler without the guard (same session layer) | {p:.0} req/s | |"
        ));
        report.line(format!(
            "| same page reading the user entry from the session by hand | {r:.0} req/s | |"
        ));
        report.line(format!(
            "| guard overhead vs the handler that does not touch the session | {:.1} % | ≤ 10 % |",
            (1.0 - g / p) * 100.0
        ));
        report.line(format!(
            "| guard overhead vs reading the session by hand | {:.1} % | ≤ 10 % |",
            (1.0 - g / r) * 100.0
        ));
        report.line(format!(
            "| signed-in views vs Python `identity` (~1 090/s) | {:.0}× | 30× |",
            g / 1090.0
        ));
        report.line(format!(
            "| login pages (anonymous `/`) | {:.0} req/s ({:.0}× Python's ~1 040/s) | 30× |",
            flood.rate(),
            flood.rate() / 1040.0
        ));
        report.line(format!(
            "| provider calls per sign-in (warm) | {per_sign_in} | 1 |"
        ));
        report.line(format!(
            "| provider calls for {views} signed-in page views | {token_calls_in_views} | 0 |"
        ));
        report.line(format!("| provider calls for 100 concurrent requests needing a refresh | {refresh_calls} ({ok}/100 answered 200) | 1 |"));
        report.line(format!(
            "| session cookie (`{}…`) | {} bytes | ≤ 200 |",
            session_cookie.split('=').next().unwrap_or(""),
            session_cookie.len()
        ));
        report.line(format!(
            "| RSS idle | {:.1} MiB | |",
            rss_idle as f64 / 1024.0
        ));
        report.line(format!(
            "| RSS right after 10 s of anonymous load ({} requests) | {:.1} MiB | < 100 MiB |",
            flood.responses,
            rss_flood as f64 / 1024.0
        ));
        report.line(format!(
            "| RSS 5 s later | {:.1} MiB | near idle |",
            rss_after as f64 / 1024.0
        ));
        report.line(format!("| server-side sessions after the flood (the 2 signed-in ones of this run) | {stored} | 2 |"));
        if unexpected > 0 {
            report.line(format!(
                "| unexpected statuses during load | {unexpected} | 0 |"
            ));
        }
        drop(app);
    }
    let record = servers::record_size().await;
    report.line(format!(
        "\nIdentity record with one access token (core, JSON): {record} bytes (target ≤ 8 KB)."
    ));
    0
}

/// The `name=value` pair of cookie `name` in a `Cookie` header value.
fn find_cookie(header: &str, name: &str) -> Option<String> {
    header
        .split(';')
        .map(str::trim)
        .find(|c| c.split_once('=').is_some_and(|(k, _)| k == name))
        .map(str::to_owned)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn reqwest_get(addr: SocketAddr, path: &str, cookie: &str) -> Result<u16, String> {
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .header("cookie", cookie)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{e} after {:?}", started.elapsed()))?;
    Ok(resp.status().as_u16())
}

async fn reqwest_text(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> Result<String, String> {
    let mut req = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    resp.text().await.map_err(|e| e.to_string())
}
