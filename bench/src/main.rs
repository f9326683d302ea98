//! `identity-bench`: loopback benchmarks of identity-rs (run by `cargo xtask bench`).
//!
//! ```text
//! identity-bench run [--seconds N] [--connections C] [--frameworks axum,actix,rocket] [--python VENV]
//! identity-bench hold <framework> [SESSION_STORE]  (provider and one signed-in app, kept running for outside tools)
//! identity-bench serve <framework> <authority> <addr-file>   (internal: the app under test)
//! ```
//!
//! The app under test runs in its own process so that its memory is measured alone; the
//! local provider and the load generator run in this process. Every figure of one run
//! comes from the same machine state; compare ratios, not absolute numbers across runs.

use identity_bench::{load, load_with, measured, meta_refresh_target, rss_kib, LoadResult};
use identity_testkit::suite::peers::RedisServer;
use identity_testkit::{Endpoint, TestKit, TestKitConfig};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod python;
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
        Some("hold") if (2..=3).contains(&args.len()) => {
            rt.block_on(hold(&args[1], args.get(2).map(String::as_str)))
        }
        _ => {
            eprintln!(
                "usage: identity-bench run [--seconds N] [--connections C] [--frameworks axum,actix,rocket]\n       \
                 identity-bench hold axum|actix|rocket [SESSION_STORE]"
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
    /// A virtualenv with the Python `identity` library: measure it too.
    python: Option<std::path::PathBuf>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seconds: 3,
        connections: 32,
        frameworks: servers::FRAMEWORKS.iter().map(|s| s.to_string()).collect(),
        python: None,
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
            "--python" => o.python = Some(value()?.into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// Starts the provider and one app (sessions in memory, or in the `SESSION_STORE` given),
/// signs in, prints what a load
/// generator or profiler needs (the app's process id and address, the session cookie,
/// an app-only and a delegated bearer token for the web API routes of the axum app), and
/// keeps both running until interrupted: for measuring one route from outside, e.g.
/// `perf record -p PID` while `wrk` loads it, or with `IDENTITY_BENCH_APP_WRAPPER` set
/// (e.g. `valgrind --tool=callgrind`) to count the app's instructions per request.
async fn hold(framework: &str, store: Option<&str>) -> i32 {
    let config = TestKitConfig {
        auto_approve: Some("adele@contoso.onmicrosoft.com".into()),
        ..TestKitConfig::default()
    };
    let result = async {
        let kit = TestKit::start(config).await.map_err(|e| e.to_string())?;
        let app = start_app(framework, &kit.authority(), store)?;
        let cookie = sign_in(app.addr).await?;
        let name = servers::session_cookie(framework).ok_or("unknown framework")?;
        let cookie = find_cookie(&cookie, name).ok_or("no session cookie")?;
        println!("pid {}", app.child.id());
        println!("app http://{}", app.addr);
        println!("cookie {cookie}");
        println!("app-only Bearer {}", app_only_token(&kit).await?);
        println!("delegated Bearer {}", user_token(&kit).await?);
        println!("holding; Ctrl-C ends");
        let _ = tokio::signal::ctrl_c().await;
        drop(app);
        Ok::<(), String>(())
    };
    match result.await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
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

fn start_app(framework: &str, authority: &str, store: Option<&str>) -> Result<App, String> {
    let dir = std::env::temp_dir().join(format!(
        "identity-bench-{}-{framework}-{}",
        std::process::id(),
        store.map_or("memory", |_| "redis")
    ));
    let _ = std::fs::create_dir_all(&dir);
    let addr_file = dir.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // `IDENTITY_BENCH_APP_WRAPPER` (e.g. `valgrind --tool=callgrind`): run the app under
    // that command, for instruction counts that do not depend on the machine's load.
    let wrapper = std::env::var("IDENTITY_BENCH_APP_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = command
        .args(["serve", framework, authority, &addr_file.to_string_lossy()])
        .env("SESSION_STORE", store.unwrap_or("memory"))
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
    sign_in_timed(app, None).await.map(|(cookie, _)| cookie)
}

/// [`sign_in`], and how long the app took to answer the provider's redirect back (the
/// callback: state check, code redemption at the provider, ID token validation, session
/// write). `ca`: the PEM of a CA to trust (a provider over TLS).
async fn sign_in_timed(
    app: SocketAddr,
    ca: Option<&str>,
) -> Result<(String, Option<Duration>), String> {
    let mut callback = None;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let mut builder = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| e.to_string())?,
        );
    }
    let client = builder.build().map_err(|e| e.to_string())?;
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
        let started = Instant::now();
        let resp = client.get(&next).send().await.map_err(|e| e.to_string())?;
        if resp.url().path() == "/getAToken" {
            callback = Some(started.elapsed());
        }
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
    let status = check.status();
    let body = check.text().await.map_err(|e| e.to_string())?;
    // The Python library answers 200 with its login page too: the body tells.
    if status != 200 || !body.starts_with("Hello ") {
        return Err(format!("signed-in page answered {status}: {body:.200}"));
    }
    Ok((cookie, callback))
}

/// Calls the app makes to the provider (the browser's authorize requests are not the app's).
fn provider_calls(kit: &TestKit) -> u64 {
    [Endpoint::Discovery, Endpoint::Jwks, Endpoint::Token]
        .iter()
        .map(|e| kit.calls(*e))
        .sum()
}

/// Time the provider spent answering the app's calls (not the browser's).
fn provider_busy(kit: &TestKit) -> Duration {
    [Endpoint::Discovery, Endpoint::Jwks, Endpoint::Token]
        .iter()
        .map(|e| kit.busy(*e))
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
    // The testkit's server: a free loopback port, no persistence, stopped when dropped.
    let redis = match RedisServer::start().await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("no Redis rows: {e}");
            None
        }
    };
    let mut python = match &o.python {
        Some(venv) => match PythonSide::start(venv).await {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("the Python app: {e}");
                return 1;
            }
        },
        None => None,
    };
    let mut summary: Vec<String> = Vec::new();
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
        let app = match start_app(framework, &kit.authority(), None) {
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
        let mut python_views: Vec<LoadResult> = Vec::new();
        for round in 0..ROUNDS {
            if let Some(py) = &python {
                match py.views(o.connections, secs).await {
                    Ok(r) => python_views.push(r),
                    Err(e) => {
                        eprintln!("the Python app: {e}");
                        return 1;
                    }
                }
            }
            // The order alternates between rounds, so a drift of the machine's speed
            // favours neither row.
            let mut order = ["/", "/plain", "/session"];
            if round % 2 == 1 {
                order.reverse();
            }
            for path in order {
                let run = load(app.addr, path, Some(&cookie), o.connections, secs, 200);
                let r = measured(app.child.id(), run).await;
                match path {
                    "/" => guarded.push(r),
                    "/plain" => plain.push(r),
                    _ => raw.push(r),
                }
            }
        }
        let token_calls_in_views = kit.calls(Endpoint::Token) - calls_before_views;
        let views: u64 = guarded.iter().map(|r| r.responses).sum();
        let rate = |runs: &[LoadResult]| median_of(runs, |r| Some(r.rate()));
        let (g, p, r) = (rate(&guarded), rate(&plain), rate(&raw));
        let over_plain = paired_overhead(&guarded, &plain);
        let over_raw = paired_overhead(&guarded, &raw);
        let cpu_plain = paired_cpu_overhead(&guarded, &plain);
        let cpu_raw = paired_cpu_overhead(&guarded, &raw);
        let cpu_g = median_of(&guarded, LoadResult::cpu_per_response);
        let cpu_p = median_of(&plain, LoadResult::cpu_per_response);
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

        // End-to-end sign-ins, one after the other, and the app's callback time.
        // The app's own share of the callback: its wall time as the browser sees it, less
        // the time the provider spent answering the app's calls meanwhile (the code
        // redemption; discovery and keys are cached by then), as the provider reports it.
        let mut callbacks: Vec<f64> = Vec::new();
        let mut own: Vec<f64> = Vec::new();
        let signins_started = Instant::now();
        let mut signins = 0u32;
        while signins_started.elapsed() < secs {
            let provider_before = provider_busy(&kit);
            match sign_in_timed(app.addr, None).await {
                Ok((_, Some(cb))) => {
                    signins += 1;
                    let provider = provider_busy(&kit).saturating_sub(provider_before);
                    callbacks.push(cb.as_secs_f64() * 1000.0);
                    own.push(cb.saturating_sub(provider).as_secs_f64() * 1000.0);
                }
                Ok((_, None)) => signins += 1,
                Err(e) => {
                    eprintln!("sign-in failed: {e}");
                    return 1;
                }
            }
        }
        let signin_rate = f64::from(signins) / signins_started.elapsed().as_secs_f64();
        let callback_wall_p50 = median(callbacks);
        let callback_p50 = median(own);

        // The same app on Redis: views per second and Redis commands per view.
        let redis_rows = match &redis {
            Some(r) => {
                match redis_views(framework, &kit, r, (app.addr, &cookie), o.connections, secs)
                    .await
                {
                    Ok(rows) => Some(rows),
                    Err(e) => {
                        eprintln!("{framework} on Redis: {e}");
                        return 1;
                    }
                }
            }
            None => None,
        };

        // Anonymous flood on a protected page: login redirects per second and memory.
        let flood = load(
            app.addr,
            "/",
            None,
            o.connections,
            Duration::from_secs(5),
            401,
        )
        .await;
        let rss_flood = rss_kib(Some(app.child.id())).unwrap_or(0);
        // The Python app's login pages right after ours, the same way.
        let python_logins = match &python {
            Some(py) => Some(
                load(
                    py.app.addr,
                    "/",
                    None,
                    o.connections,
                    Duration::from_secs(5),
                    200,
                )
                .await,
            ),
            None => None,
        };
        let py_views =
            (!python_views.is_empty()).then(|| median_of(&python_views, |r| Some(r.rate())));
        let py_logins = python_logins.as_ref().map(LoadResult::rate);
        if let Some(py) = python.as_mut() {
            py.views_runs.extend(python_views.iter().cloned());
            py.login_runs.extend(python_logins.iter().cloned());
        }
        let (py_view_rate, py_view_label) = match py_views {
            Some(v) => (v, format!("{v:.0}/s measured in this run, interleaved")),
            None => (1090.0, "~1 090/s, quoted".to_owned()),
        };
        let (py_login_rate, py_login_label) = match py_logins {
            Some(v) => (v, format!("Python's {v:.0}/s measured right after")),
            None => (1040.0, "Python's ~1 040/s, quoted".to_owned()),
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
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
            "| guard overhead vs the handler that does not touch the session | {over_plain:.1} % | ≤ 10 % |"
        ));
        report.line(format!(
            "| guard overhead vs reading the session by hand | {over_raw:.1} % | ≤ 10 % |"
        ));
        report.line(format!(
            "| the app's CPU time per signed-in view: through the guard / without it | {cpu_g:.1} µs / {cpu_p:.1} µs | |"
        ));
        report.line(format!(
            "| guard overhead in the app's CPU time per request, vs the handler that does not touch the session | {} | ≤ 10 % |",
            percent(cpu_plain)
        ));
        report.line(format!(
            "| guard overhead in the app's CPU time per request, vs reading the session by hand | {} | ≤ 10 % |",
            percent(cpu_raw)
        ));
        report.line(format!(
            "| signed-in views vs Python `identity` ({py_view_label}) | {:.0}× | 30× |",
            g / py_view_rate
        ));
        report.line(format!(
            "| login pages (anonymous `/`) | {:.0} req/s ({:.0}× {py_login_label}) | 30× |",
            flood.rate(),
            flood.rate() / py_login_rate
        ));
        report.line(format!(
            "| end-to-end sign-ins, one after the other (app and provider) | {signin_rate:.0} /s ({:.0}× Python's ~14.7/s) | |",
            signin_rate / 14.7
        ));
        report.line(format!(
            "| the callback as the browser sees it (includes the provider answering the code redemption), p50 | {callback_wall_p50:.2} ms | |"
        ));
        report.line(format!(
            "| the app's own time in the callback (state, token request, ID token check, session write; the provider's answering time taken out), p50 | {callback_p50:.2} ms | ≤ 5 ms |"
        ));
        if let Some(rows) = &redis_rows {
            report.line(format!(
                "| signed-in `/` through the guard, sessions in Redis | {:.0} req/s ({:.0} % of memory) | ≥ 50 % |",
                rows.rate,
                rows.share
            ));
            report.line(format!(
                "| Redis commands per signed-in view ({} views) | {} | |",
                rows.views, rows.commands
            ));
            report.line(format!(
                "| Redis round trips per signed-in view (a load is one GET; a copy none; PINGs counted) | {:.2} ({:.2} writes) | ≤ 1, no write |",
                rows.round_trips, rows.writes
            ));
            report.line(format!(
                "| Redis commands for {} anonymous login pages | {} | 0 |",
                rows.anonymous, rows.anonymous_commands
            ));
        }
        summary.push(format!(
            "| {framework} | guard overhead {} in CPU per request (≤ 10 %: {}), {over_plain:.1} % in requests/s | login pages {:.0}× Python (≥ 30×: {}) | callback p50 {callback_p50:.2} ms (≤ 5 ms: {}) |{}",
            percent(cpu_plain),
            met(cpu_plain.unwrap_or(over_plain) <= 10.0),
            flood.rate() / py_login_rate,
            met(flood.rate() / py_login_rate >= 30.0),
            met(callback_p50 <= 5.0),
            match &redis_rows {
                Some(rows) => format!(
                    " Redis {:.0} % of memory (≥ 50 %: {}), {:.2} round trips and {:.2} writes per view (≤ 1, no write: {}) |",
                    rows.share,
                    met(rows.share >= 50.0),
                    rows.round_trips,
                    rows.writes,
                    met(rows.round_trips <= 1.0 && rows.writes == 0.0)
                ),
                None => " Redis not measured (no redis-server) |".to_owned(),
            }
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
            "| RSS right after 5 s of anonymous load ({} requests) | {:.1} MiB | < 100 MiB |",
            flood.responses,
            rss_flood as f64 / 1024.0
        ));
        report.line(format!(
            "| RSS 3 s later | {:.1} MiB | near idle |",
            rss_after as f64 / 1024.0
        ));
        // Two sign-ins before the views, then the sign-in benchmark's.
        let signed_in = 2 + signins;
        report.line(format!("| server-side sessions after the flood (the {signed_in} signed-in ones of this run) | {stored} | {signed_in} |"));
        if unexpected > 0 {
            report.line(format!(
                "| unexpected statuses during load | {unexpected} | 0 |"
            ));
        }
        drop(app);
    }
    if o.frameworks.iter().any(|f| f == "axum") {
        match web_api_rows(o.connections, secs).await {
            Ok(rows) => {
                summary.push(format!(
                    "| web API (axum) | bearer guard overhead {:.1} % in CPU per request (≤ 10 %: {}) | on-behalf-of route overhead {:.1} % in CPU per request (≤ 10 %: {}) |",
                    rows.guard_overhead,
                    met(rows.guard_overhead <= 10.0),
                    rows.obo_overhead,
                    met(rows.obo_overhead <= 10.0)
                ));
                for line in rows.lines {
                    report.line(line);
                }
            }
            Err(e) => {
                eprintln!("web API: {e}");
                return 1;
            }
        }
    }
    if let Some(py) = &python {
        for line in py.rows() {
            report.line(line);
        }
    }
    report.line("\n## Targets of this run\n".into());
    report.line("| part | | | | |".into());
    report.line("|---|---|---|---|---|".into());
    for line in summary {
        report.line(line);
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

/// Interleaved runs per compared row (each pair runs back to back, in alternating order).
const ROUNDS: usize = 5;

/// The overhead of `with` against `without` in percent: the median over the rounds of
/// each round's pair, so that the machine's speed drifting between rounds (other
/// tenants of shared cores) cancels out within a pair.
fn paired_overhead(with: &[LoadResult], without: &[LoadResult]) -> f64 {
    paired(with, without, |w, o| {
        Some((1.0 - w.rate() / o.rate().max(f64::MIN_POSITIVE)) * 100.0)
    })
    .unwrap_or(0.0)
}

/// [`paired_overhead`] in the app's CPU time per response instead of requests per
/// second; `None` when the CPU time was not measured.
fn paired_cpu_overhead(with: &[LoadResult], without: &[LoadResult]) -> Option<f64> {
    paired(with, without, |w, o| {
        let (w, o) = (w.cpu_per_response()?, o.cpu_per_response()?);
        (o > 0.0).then(|| (w / o - 1.0) * 100.0)
    })
}

/// The median over the rounds of `overhead` of each round's pair (pairs without a
/// figure left out); `None` when no pair has one.
fn paired(
    with: &[LoadResult],
    without: &[LoadResult],
    overhead: impl Fn(&LoadResult, &LoadResult) -> Option<f64>,
) -> Option<f64> {
    let pairs: Vec<f64> = with
        .iter()
        .zip(without)
        .filter_map(|(w, o)| overhead(w, o))
        .collect();
    (!pairs.is_empty()).then(|| median(pairs))
}

/// The median of a per-run `figure` over `runs` (runs without it left out).
fn median_of(runs: &[LoadResult], figure: impl Fn(&LoadResult) -> Option<f64>) -> f64 {
    median(runs.iter().filter_map(figure).collect())
}

/// A percentage, or "not measured".
fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.1} %"))
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

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

struct RedisRows {
    rate: f64,
    /// Redis views per second in percent of memory views per second (paired rounds).
    share: f64,
    views: u64,
    commands: String,
    round_trips: f64,
    writes: f64,
    anonymous: u64,
    anonymous_commands: i64,
}

/// The app of `framework` on Redis: guarded views per second, and the Redis commands of
/// sequential views (counted by the server) and of anonymous login pages.
async fn redis_views(
    framework: &str,
    kit: &TestKit,
    redis: &RedisServer,
    memory: (SocketAddr, &str),
    connections: usize,
    secs: Duration,
) -> Result<RedisRows, String> {
    let app = start_app(framework, &kit.authority(), Some(&redis.url()))?;
    let name = servers::session_cookie(framework).ok_or("no session cookie name")?;
    let jar = sign_in(app.addr).await?;
    let cookie = find_cookie(&jar, name).ok_or("no session cookie")?;
    // Each round loads the same page of the app on Redis and of the app on memory, back
    // to back in alternating order; the share is the median of the rounds' own ratios.
    let (mut runs, mut in_memory) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut pair = [
            (app.addr, cookie.as_str(), &mut runs),
            (memory.0, memory.1, &mut in_memory),
        ];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (addr, cookie, rows) in pair {
            rows.push(load(addr, "/", Some(cookie), connections, secs, 200).await);
        }
    }
    if runs.iter().chain(&in_memory).any(|r| r.unexpected > 0) {
        return Err("unexpected statuses under load".into());
    }
    let rate = median_of(&runs, |r| Some(r.rate()));
    let share = 100.0 - paired_overhead(&runs, &in_memory);

    let client = reqwest::Client::new();
    let views = 200u64;
    let before = redis.command_calls().await?;
    for _ in 0..views {
        let resp = client
            .get(format!("http://{}/", app.addr))
            .header("cookie", &cookie)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("a signed-in view answered {}", resp.status()));
        }
        let _ = resp.bytes().await;
    }
    let after = redis.command_calls().await?;
    let used = RedisServer::calls_between(&before, &after);
    let per = |names: &[&str]| -> f64 {
        names
            .iter()
            .map(|n| used.get(*n).copied().unwrap_or(0))
            .sum::<i64>() as f64
            / views as f64
    };
    let commands = if used.is_empty() {
        "none".to_owned()
    } else {
        used.iter()
            .map(|(k, v)| format!("{} {:.2}", k.to_uppercase(), *v as f64 / views as f64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A load is one GET, sent with CLIENT TRACKING in one round trip (a record of an
    // earlier version also needs a TTL: a second trip); repeated views use the instance's
    // copy, whose liveness a PING renews under load.
    let reads = per(&["get", "ttl", "ping"]);
    let writes = per(&["set", "setex", "expire", "pexpire", "del"]);
    let round_trips = reads + writes;

    let anonymous = 100u64;
    let before = redis.command_calls().await?;
    for _ in 0..anonymous {
        let _ = client
            .get(format!("http://{}/", app.addr))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await;
    }
    let after = redis.command_calls().await?;
    let anonymous_commands = RedisServer::calls_between(&before, &after).values().sum();
    Ok(RedisRows {
        rate,
        share,
        views,
        commands,
        round_trips,
        writes,
        anonymous,
        anonymous_commands,
    })
}

struct WebApiRows {
    lines: Vec<String>,
    guard_overhead: f64,
    obo_overhead: f64,
}

/// An access token for the bench's API: app-only (client credentials), straight from the
/// provider's token endpoint.
async fn app_only_token(kit: &TestKit) -> Result<String, String> {
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        kit.base_url(),
        kit.workforce_tenant_id()
    );
    let scope = format!("api://{}/.default", servers::API_CLIENT_ID);
    let body: serde_json::Value = reqwest::Client::new()
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "testkit-secret"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("no access token: {body}"))
}

/// A delegated token of Adele for the bench's API (`access_as_user`), through a sign-in
/// of the web app with the core.
async fn user_token(kit: &TestKit) -> Result<String, String> {
    use identity_core::{Authority, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes};
    let authority = Authority::parse(&kit.authority()).map_err(|e| e.to_string())?;
    let web = Identity::new(
        IdentityConfig::new(CLIENT_ID, authority)
            .with_client_secret("testkit-secret")
            .with_redirect_uri(Some("http://localhost:5000/getAToken")),
    )
    .map_err(|e| e.to_string())?;
    let scopes = Scopes::parse(&format!("api://{}/access_as_user", servers::API_CLIENT_ID));
    let session = MemorySession::new();
    let start = web
        .log_in(
            &session,
            LogInOptions {
                scopes: scopes.clone(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let resp = browser
        .get(&start.auth_uri)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or("no redirect from the provider")?
        .to_owned();
    let params: Vec<(String, String)> = url::Url::parse(&location)
        .map_err(|e| e.to_string())?
        .query_pairs()
        .into_owned()
        .collect();
    web.complete_log_in(
        &session,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .await
    .map_err(|e| e.to_string())?;
    web.get_token_for_user(&session, &scopes)
        .await
        .map(|t| t.access_token.secret().to_owned())
        .map_err(|e| e.to_string())
}

/// The web API rows: a bearer-protected route against the same route without the guard,
/// and an on-behalf-of call against the same call without token or guard, interleaved.
async fn web_api_rows(connections: usize, secs: Duration) -> Result<WebApiRows, String> {
    let config = TestKitConfig {
        auto_approve: Some("adele@contoso.onmicrosoft.com".into()),
        ..TestKitConfig::default()
    };
    let kit = TestKit::start(config).await.map_err(|e| e.to_string())?;
    let app = start_app("axum", &kit.authority(), None)?;
    let app_token = format!("Bearer {}", app_only_token(&kit).await?);
    let user_token = format!("Bearer {}", user_token(&kit).await?);
    let bearer = |t: &str| vec![("authorization", t.to_owned())];
    // The first calls: validation, keys, and the on-behalf-of exchange.
    for (path, token) in [("/api/app", &app_token), ("/api/obo", &user_token)] {
        let resp = reqwest::Client::new()
            .get(format!("http://{}{path}", app.addr))
            .header("authorization", token.as_str())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("{path} answered {}", resp.status()));
        }
    }
    let before = kit.calls(Endpoint::Token);
    let (mut guarded, mut open, mut obo, mut direct) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let h = bearer(&app_token);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut pair = [("/api/app", &mut guarded), ("/api/open", &mut open)];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (path, rows) in pair {
            let run = load_with(app.addr, path, &h, connections, secs, 200);
            rows.push(measured(app.child.id(), run).await);
        }
        let h = bearer(&user_token);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut pair = [("/api/obo", &mut obo), ("/api/direct", &mut direct)];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (path, rows) in pair {
            let run = load_with(app.addr, path, &h, connections, secs, 200);
            rows.push(measured(app.child.id(), run).await);
        }
    }
    let token_calls = kit.calls(Endpoint::Token) - before;
    let unexpected: u64 = guarded
        .iter()
        .chain(&open)
        .chain(&obo)
        .chain(&direct)
        .map(|r| r.unexpected)
        .sum();
    let rate = |runs: &[LoadResult]| median_of(runs, |r| Some(r.rate()));
    let (g, p, b, d) = (rate(&guarded), rate(&open), rate(&obo), rate(&direct));
    let guard_rate_overhead = paired_overhead(&guarded, &open);
    let obo_rate_overhead = paired_overhead(&obo, &direct);
    let guard_overhead = paired_cpu_overhead(&guarded, &open).unwrap_or(guard_rate_overhead);
    let obo_overhead = paired_cpu_overhead(&obo, &direct).unwrap_or(obo_rate_overhead);
    let cpu_us = |runs: &[LoadResult]| median_of(runs, LoadResult::cpu_per_response);
    let mut lines = vec![
        "\n## web API (axum)\n".to_owned(),
        "| measure | value | target |".to_owned(),
        "|---|---|---|".to_owned(),
        format!("| `/api/app` with a valid app-only token (bearer guard, app role) | {g:.0} req/s | |"),
        format!("| `/api/open`, the same handler without the guard, same token sent | {p:.0} req/s | |"),
        format!("| bearer guard overhead after the first call, in requests/s | {guard_rate_overhead:.1} % | |"),
        format!("| the app's CPU time per request: `/api/app` / `/api/open` | {:.1} µs / {:.1} µs | |", cpu_us(&guarded), cpu_us(&open)),
        format!("| bearer guard overhead after the first call, in the app's CPU time per request | {guard_overhead:.1} % | ≤ 10 % |"),
        format!("| `/api/obo`: user token checked, cached on-behalf-of token, downstream call | {b:.0} req/s | |"),
        format!("| `/api/direct`: the same downstream call without guard or exchange (it forwards the incoming token unchecked) | {d:.0} req/s | |"),
        format!("| on-behalf-of route overhead after the first call, in requests/s | {obo_rate_overhead:.1} % | |"),
        format!("| the app's CPU time per request: `/api/obo` / `/api/direct` (both include serving the downstream call) | {:.1} µs / {:.1} µs | |", cpu_us(&obo), cpu_us(&direct)),
        format!("| on-behalf-of route overhead after the first call, in the app's CPU time per request | {obo_overhead:.1} % | ≤ 10 % |"),
        format!("| provider calls during these loads | {token_calls} | 0 |"),
    ];
    if unexpected > 0 {
        lines.push(format!(
            "| unexpected statuses during load | {unexpected} | 0 |"
        ));
    }
    Ok(WebApiRows {
        lines,
        guard_overhead,
        obo_overhead,
    })
}

/// The Python app of the comparison rows, signed in once.
struct PythonSide {
    app: python::PythonApp,
    cookie: String,
    views_runs: Vec<LoadResult>,
    login_runs: Vec<LoadResult>,
}

impl PythonSide {
    async fn start(venv: &std::path::Path) -> Result<PythonSide, String> {
        let app = python::PythonApp::start(venv, CLIENT_ID).await?;
        let jar = match sign_in_timed(app.addr, Some(&app.ca_pem)).await {
            Ok((jar, _)) => jar,
            Err(e) => return Err(format!("sign-in failed: {e}\n{}", app.log())),
        };
        // Flask's session cookie.
        let cookie =
            find_cookie(&jar, "session").ok_or(format!("no `session` cookie in {jar:?}"))?;
        Ok(PythonSide {
            app,
            cookie,
            views_runs: Vec::new(),
            login_runs: Vec::new(),
        })
    }

    /// Signed-in views of `/`; the app answers its login page with 200 too, so the
    /// session is checked to be still signed in afterwards.
    async fn views(&self, connections: usize, secs: Duration) -> Result<LoadResult, String> {
        let r = load(
            self.app.addr,
            "/",
            Some(&self.cookie),
            connections,
            secs,
            200,
        )
        .await;
        match reqwest_text(self.app.addr, "/", Some(&self.cookie)).await {
            Ok(body) if body.starts_with("Hello ") => Ok(r),
            other => Err(format!(
                "the Python session was lost during the load: {other:?}"
            )),
        }
    }

    fn rows(&self) -> Vec<String> {
        let rates = |v: &[LoadResult]| v.iter().map(LoadResult::rate).collect::<Vec<_>>();
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (views, logins) = (rates(&self.views_runs), rates(&self.login_runs));
        vec![
            "\n## Python `identity` 0.11.0 (measured in this run)\n".to_owned(),
            "Flask, Flask-Session (filesystem, `SESSION_FILE_THRESHOLD=0`), gunicorn with 2 sync \
             workers, the provider over TLS; the same load generator and connections as the rows \
             above, each run interleaved with the framework's (every run listed).\n"
                .to_owned(),
            "| measure | value |".to_owned(),
            "|---|---|".to_owned(),
            format!(
                "| signed-in `/` (median of {} runs) | {:.0} req/s ({}) |",
                views.len(),
                median(views.clone()),
                list(&views)
            ),
            format!(
                "| login pages (anonymous `/`, median of {} runs) | {:.0} req/s ({}) |",
                logins.len(),
                median(logins.clone()),
                list(&logins)
            ),
            format!(
                "| RSS of the gunicorn master and workers | {:.1} MiB |",
                self.app.rss_mib()
            ),
        ]
    }
}
