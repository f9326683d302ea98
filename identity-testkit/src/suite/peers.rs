//! Real peers the end-to-end tests run beside a sample: panva's `oidc-provider` (node),
//! headless Chromium through playwright-core (node), and `redis-server`. Each is found
//! on `PATH`, started on a free port, and stopped when dropped.
//!
//! A missing tool makes a test skip with a message, unless `IDENTITY_TEST_TOOLS_REQUIRED`
//! is set (as `cargo xtask ci` does after installing them), in which case it fails.

use super::process::{free_port, which, Service};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// How long a peer may take to print its readiness line.
const PEER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a missing tool fails the test (set by `cargo xtask ci`) rather than skipping it.
pub fn tools_required() -> bool {
    std::env::var_os("IDENTITY_TEST_TOOLS_REQUIRED").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Returns `true` when the tool is there. Otherwise prints why the test is skipped and
/// returns `false`, or panics when tools are required.
pub fn tool_available(what: &str, found: bool, install: &str) -> bool {
    if found {
        return true;
    }
    let msg = format!("{what} is not installed ({install}); skipping this test");
    assert!(
        !tools_required(),
        "{msg}, but IDENTITY_TEST_TOOLS_REQUIRED is set"
    );
    eprintln!("SKIPPED: {msg}");
    false
}

/// The `interop/` directory of the workspace (`IDENTITY_INTEROP_DIR` overrides it).
pub fn interop_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IDENTITY_INTEROP_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join("interop"))
        .unwrap_or_else(|| PathBuf::from("interop"))
}

/// The workspace's `target/e2e/{name}` directory, for screenshots.
pub fn e2e_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| interop_dir().join("..").join("target"));
    target.join("e2e").join(name)
}

/// `node` is on `PATH`; otherwise the test skips (see [`tool_available`]).
pub fn node_available() -> bool {
    tool_available(
        "node",
        which("node").is_some(),
        "Node.js 20 or later with npm",
    )
}

/// Makes sure `interop/node_modules` is installed, running `npm ci` in `interop/` when it
/// is not (one test process at a time, through a lock directory).
pub async fn ensure_node_modules() -> Result<(), String> {
    let dir = interop_dir();
    let ready = |d: &Path| {
        d.join("node_modules/oidc-provider/package.json").is_file()
            && d.join("node_modules/playwright-core/package.json")
                .is_file()
    };
    if ready(&dir) {
        return Ok(());
    }
    let lock = dir.join(".npm-ci.lock");
    let started = Instant::now();
    loop {
        match std::fs::create_dir(&lock) {
            Ok(()) => break,
            Err(_) if ready(&dir) => return Ok(()),
            Err(_) => {
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(300));
                if stale {
                    let _ = std::fs::remove_dir(&lock);
                } else if started.elapsed() > Duration::from_secs(300) {
                    return Err(format!("{lock:?} is held by another process"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let result = if ready(&dir) {
        Ok(())
    } else {
        eprintln!("running `npm ci` in {dir:?}");
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "`npm ci` in {dir:?} failed: {}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(format!(
                "cannot run npm ({e}); run `npm ci` in {dir:?} (or `cargo xtask ci`)"
            )),
        }
    };
    let _ = std::fs::remove_dir(&lock);
    result
}

/// Options of the [`OidcPeer`].
#[derive(Clone, Debug)]
pub struct OidcPeerOptions {
    /// Registered redirect URIs of the client.
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Lifetime of API access tokens, in seconds.
    pub access_token_ttl: u64,
    /// Lifetime of ID tokens, in seconds.
    pub id_token_ttl: u64,
    /// The client's back-channel logout URI, if any.
    pub backchannel_logout_uri: Option<String>,
    /// How long the token endpoint waits before answering, in milliseconds.
    pub token_delay_ms: u64,
}

impl Default for OidcPeerOptions {
    fn default() -> Self {
        Self {
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            access_token_ttl: 3600,
            id_token_ttl: 3600,
            backchannel_logout_uri: None,
            token_delay_ms: 0,
        }
    }
}

/// panva's `oidc-provider` (`interop/op.mjs`) on 127.0.0.1 over plain HTTP.
#[derive(Debug)]
pub struct OidcPeer {
    service: Service,
    /// The issuer, `http://127.0.0.1:{port}/op`.
    pub issuer: String,
    /// The protected API (`GET`, bearer token with scope [`OidcPeer::API_SCOPE`]).
    pub api_url: String,
    /// `http://127.0.0.1:{port}`.
    pub origin: String,
}

impl OidcPeer {
    /// The client id of the sample's registration.
    pub const CLIENT_ID: &'static str = "interop-webapp";
    /// Its secret (`client_secret_post`).
    pub const CLIENT_SECRET: &'static str = "interop-secret";
    /// The API scope (resource `urn:interop:api`, JWT access tokens).
    pub const API_SCOPE: &'static str = "api.read";

    /// Starts the provider.
    pub async fn start(options: &OidcPeerOptions) -> Result<OidcPeer, String> {
        ensure_node_modules().await?;
        let dir = interop_dir();
        let mut cmd = Command::new("node");
        cmd.current_dir(&dir).arg(dir.join("op.mjs"));
        for uri in &options.redirect_uris {
            cmd.args(["--redirect-uri", uri]);
        }
        for uri in &options.post_logout_redirect_uris {
            cmd.args(["--post-logout-redirect-uri", uri]);
        }
        cmd.args(["--access-token-ttl", &options.access_token_ttl.to_string()])
            .args(["--id-token-ttl", &options.id_token_ttl.to_string()])
            .args(["--token-delay-ms", &options.token_delay_ms.to_string()]);
        if let Some(uri) = &options.backchannel_logout_uri {
            cmd.args(["--backchannel-logout-uri", uri]);
        }
        let service = Service::spawn(
            "oidc-provider (interop/op.mjs)",
            cmd,
            |l| l.trim() == "ready",
            PEER_START_TIMEOUT,
        )
        .await?;
        let issuer = service
            .line_after("issuer ")
            .ok_or_else(|| format!("op.mjs printed no issuer\n{}", service.log()))?;
        let api_url = service
            .line_after("api ")
            .ok_or_else(|| format!("op.mjs printed no API URL\n{}", service.log()))?;
        let origin = issuer.trim_end_matches("/op").to_owned();
        Ok(OidcPeer {
            service,
            issuer,
            api_url,
            origin,
        })
    }

    /// Requests per route so far (`token`, `auth`, `api`, `session`, ...).
    pub async fn stats(&self) -> Value {
        let url = format!("{}/__stats", self.origin);
        match reqwest::get(&url).await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// One counter of [`OidcPeer::stats`].
    pub async fn count(&self, route: &str) -> u64 {
        self.stats().await[route].as_u64().unwrap_or(0)
    }

    /// Its output, for failure messages.
    pub fn log(&self) -> String {
        self.service.log()
    }
}

/// A `redis-server` on a free loopback port, without persistence.
#[derive(Debug)]
pub struct RedisServer {
    tls: Option<std::path::PathBuf>,
    service: Service,
    port: u16,
}

impl RedisServer {
    /// Whether `redis-server` is on `PATH` (else the test skips; see [`tool_available`]).
    pub fn available() -> bool {
        tool_available(
            "redis-server",
            which("redis-server").is_some(),
            "apt-get install redis-server",
        )
    }

    /// Starts one.
    pub async fn start() -> Result<RedisServer, String> {
        Self::spawn(free_port(), &[]).await
    }

    /// Starts one with more `redis-server` arguments, e.g.
    /// `["--rename-command", "HELLO", "no-hello"]` for a server that refuses a command
    /// the way an older server or a proxy does.
    pub async fn start_with(args: &[&str]) -> Result<RedisServer, String> {
        let extra: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Self::spawn(free_port(), &extra).await
    }

    /// Starts one on `port` (e.g. again after [`RedisServer::stop`]).
    pub async fn start_on(port: u16) -> Result<RedisServer, String> {
        Self::spawn(port, &[]).await
    }

    /// Starts `redis-server` with `extra` arguments, listening on `port` unless they
    /// choose the ports themselves (TLS).
    async fn spawn(port: u16, extra: &[String]) -> Result<RedisServer, String> {
        let mut cmd = Command::new("redis-server");
        if !extra.iter().any(|a| a == "--port") {
            cmd.args(["--port", &port.to_string()]);
        }
        cmd.args(extra)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .current_dir(std::env::temp_dir());
        let service = Service::spawn(
            &format!("redis-server on port {port}"),
            cmd,
            |l| l.contains("Ready to accept connections"),
            PEER_START_TIMEOUT,
        )
        .await?;
        Ok(RedisServer {
            service,
            port,
            tls: None,
        })
    }

    /// Starts one that speaks TLS only (`--port 0 --tls-port`), with a certificate for
    /// `localhost` issued by a CA of its own ([`RedisServer::ca_file`]).
    pub async fn start_tls() -> Result<RedisServer, String> {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("identity-redis-tls-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let err = |e: rcgen::Error| e.to_string();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().map_err(err)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(err)?
                .signed_by(&key, &ca_cert, &ca_key)
                .map_err(err)?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map(|_| path)
                .map_err(|e| e.to_string())
        };
        let ca_file = write("ca.pem", ca_cert.pem())?;
        let cert = write("redis.pem", leaf.pem())?;
        let key_file = write("redis.key", key.serialize_pem())?;
        let path = |p: &std::path::Path| p.display().to_string();
        let args = [
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&cert),
            "--tls-key-file".to_owned(),
            path(&key_file),
            "--tls-ca-cert-file".to_owned(),
            path(&ca_file),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let mut server = Self::spawn(port, &args).await?;
        server.tls = Some(ca_file);
        Ok(server)
    }

    /// The CA certificate file of a TLS server (for `SSL_CERT_FILE`).
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.tls.as_deref()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (its data is gone: it keeps none on disk).
    pub async fn stop(self) {
        self.service.stop().await;
    }

    /// Makes the server answer no client command for `for_ms` milliseconds
    /// (`CLIENT PAUSE … ALL`): an unresponsive Redis, whose data survives.
    pub async fn pause(&self, for_ms: u64) -> Result<(), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ms = for_ms.to_string();
        let cmd = format!(
            "*4\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n${}\r\n{ms}\r\n$3\r\nALL\r\n",
            ms.len()
        );
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| e.to_string())?;
        c.write_all(cmd.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).await.map_err(|e| e.to_string())?;
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        if answer.starts_with("+OK") {
            Ok(())
        } else {
            Err(format!("CLIENT PAUSE answered {answer:?}"))
        }
    }

    /// Sends one command (plain connection) and returns the raw RESP answer.
    pub async fn command(&self, args: &[&str]) -> Result<String, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| e.to_string())?;
        c.write_all(cmd.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while !Self::whole_reply(&out) {
            match tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Whether `out` holds a whole RESP2 reply of a simple kind (a status, an error, an
    /// integer or a bulk string); other replies (arrays) end when the server is quiet.
    fn whole_reply(out: &[u8]) -> bool {
        let Some(end) = out.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        match out[0] {
            b'+' | b'-' | b':' => true,
            b'$' => match std::str::from_utf8(&out[1..end]).map(str::parse::<i64>) {
                Ok(Ok(len)) if len >= 0 => out.len() >= end + 2 + len as usize + 2,
                _ => true,
            },
            _ => false,
        }
    }

    /// Calls per command so far (`INFO commandstats`, e.g. `get` → 12), leaving out
    /// `INFO` itself.
    pub async fn command_calls(&self) -> Result<std::collections::BTreeMap<String, i64>, String> {
        let info = self.command(&["INFO", "commandstats"]).await?;
        Ok(info
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.strip_prefix("calls=")?.split(',').next()?;
                Some((name.to_owned(), calls.trim().parse().ok()?))
            })
            .filter(|(name, _)| name != "info")
            .collect())
    }

    /// The commands this server ran while `run` ran (those run at least once; see
    /// [`calls_between`](Self::calls_between)).
    pub async fn calls_during<F: std::future::Future>(
        &self,
        run: F,
    ) -> Result<std::collections::BTreeMap<String, i64>, String> {
        let before = self.command_calls().await?;
        run.await;
        Ok(Self::calls_between(&before, &self.command_calls().await?))
    }

    /// The commands run between two [`command_calls`](Self::command_calls) readings
    /// (those run at least once).
    pub fn calls_between(
        before: &std::collections::BTreeMap<String, i64>,
        after: &std::collections::BTreeMap<String, i64>,
    ) -> std::collections::BTreeMap<String, i64> {
        after
            .iter()
            .map(|(command, calls)| (command.clone(), calls - before.get(command).unwrap_or(&0)))
            .filter(|(_, calls)| *calls > 0)
            .collect()
    }

    /// Every session record the library keeps in this server, raw (`identity:session:*`).
    pub async fn session_records(&self) -> Result<Vec<String>, String> {
        self.values_under("identity:session:").await
    }

    /// Every side record (refresh leases and shared refresh results, the logout-token
    /// replay cache), raw (`identity:record:*`).
    pub async fn side_records(&self) -> Result<Vec<String>, String> {
        self.values_under("identity:record:").await
    }

    async fn values_under(&self, prefix: &str) -> Result<Vec<String>, String> {
        let keys = self.command(&["KEYS", &format!("{prefix}*")]).await?;
        let mut records = Vec::new();
        for key in keys.lines().filter(|l| l.starts_with(prefix)) {
            records.push(self.command(&["GET", key]).await?);
        }
        Ok(records)
    }

    /// `redis://127.0.0.1:{port}`, or `rediss://localhost:{port}` for a TLS server.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("rediss://localhost:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Its output, for failure messages.
    pub fn log(&self) -> String {
        self.service.log()
    }
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` on `PATH`, else `/usr/bin/chromium`.
pub fn chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| which("chromium"))
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
}

/// What `interop/browser.mjs` reported.
#[derive(Debug)]
pub struct BrowserRun {
    /// Whether every step passed.
    pub ok: bool,
    /// One JSON object per step, then the result.
    pub steps: Vec<Value>,
    /// Everything it printed, for failure messages.
    pub output: String,
}

impl BrowserRun {
    /// The report of step `name`.
    pub fn step(&self, name: &str) -> Value {
        self.steps
            .iter()
            .find(|s| s["step"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// Runs `interop/browser.mjs` with these arguments (see that file) and the Chromium of
/// [`chromium`].
pub async fn run_browser_script(args: &[String]) -> Result<BrowserRun, String> {
    ensure_node_modules().await?;
    let dir = interop_dir();
    let chromium = chromium().ok_or("no Chromium found")?;
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg(dir.join("browser.mjs"))
        .args(args)
        .arg("--executable")
        .arg(&chromium)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| "browser.mjs took more than 120 s".to_owned())?
        .map_err(|e| format!("cannot run node: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ok = out.status.success() && steps.iter().any(|s| s["result"] == "ok");
    Ok(BrowserRun {
        ok,
        steps,
        output: format!("---- browser.mjs stdout ----\n{stdout}\n---- stderr ----\n{stderr}"),
    })
}
