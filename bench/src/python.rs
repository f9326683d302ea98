//! The Python `identity` library's sample app under gunicorn, for the comparison rows.
//!
//! `cargo xtask bench --with-python` prepares a virtualenv with `identity` 0.11.0, Flask,
//! Flask-Session and gunicorn and passes its directory as `--python DIR`. The app
//! (`bench/python/app.py`) runs under gunicorn with two sync workers, its sessions in
//! Flask-Session's filesystem store with `SESSION_FILE_THRESHOLD=0`, against a TLS
//! instance of the local provider (msal accepts `https://` authorities only), which it
//! trusts through `REQUESTS_CA_BUNDLE`.

use identity_testkit::{TestKit, TestKitConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Python app of the comparison rows.
const APP: &str = include_str!("../python/app.py");

/// The Python app, its provider and its scratch directory; stopped when dropped.
pub(crate) struct PythonApp {
    child: Child,
    /// Where the app listens (plain http on loopback).
    pub(crate) addr: SocketAddr,
    /// The PEM of the provider's CA, for the scripted browser.
    pub(crate) ca_pem: String,
    dir: PathBuf,
    _kit: TestKit,
}

impl Drop for PythonApp {
    fn drop(&mut self) {
        // gunicorn's master stops its workers on SIGTERM; `kill` sends SIGKILL, which
        // would leave them running, so ask politely first.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PythonApp {
    /// Starts a TLS provider and the app from the virtualenv `venv`; returns once the
    /// app answers.
    pub(crate) async fn start(venv: &Path, client_id: &str) -> Result<PythonApp, String> {
        let gunicorn = venv.join("bin").join("gunicorn");
        if !gunicorn.exists() {
            return Err(format!(
                "{} is missing: prepare the virtualenv with `cargo xtask bench --with-python`",
                gunicorn.display()
            ));
        }
        let config = TestKitConfig {
            auto_approve: Some("adele@contoso.onmicrosoft.com".into()),
            ..TestKitConfig::default()
        }
        .with_tls();
        let kit = TestKit::start(config).await.map_err(|e| e.to_string())?;
        let ca_pem = kit.ca_pem().ok_or("the TLS provider has no CA")?;
        let dir =
            std::env::temp_dir().join(format!("identity-bench-{}-python", std::process::id()));
        let sessions = dir.join("sessions");
        std::fs::create_dir_all(&sessions).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("app.py"), APP).map_err(|e| e.to_string())?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &ca_pem).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.join("gunicorn.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&gunicorn)
            .args([
                "--workers",
                "2",
                "--no-control-socket",
                "--bind",
                &addr.to_string(),
            ])
            .arg("--chdir")
            .arg(&dir)
            .arg("app:app")
            .env("OIDC_AUTHORITY", format!("{}/v2.0", kit.authority()))
            .env("CLIENT_ID", client_id)
            .env("CLIENT_SECRET", "testkit-secret")
            .env("REDIRECT_URI", format!("http://{addr}/getAToken"))
            .env("SESSION_FILE_DIR", &sessions)
            .env("SESSION_SECRET", "identity-bench-python-session-key")
            .env("REQUESTS_CA_BUNDLE", &ca)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", gunicorn.display()))?;
        let mut app = PythonApp {
            child,
            addr,
            ca_pem,
            dir,
            _kit: kit,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(app);
            }
            if let Ok(Some(status)) = app.child.try_wait() {
                let log = std::fs::read_to_string(app.dir.join("gunicorn.log")).unwrap_or_default();
                return Err(format!("gunicorn exited ({status}): {log}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the Python app did not listen within 10 s".into())
    }

    /// Resident memory of the gunicorn master and its workers, in MiB.
    pub(crate) fn rss_mib(&self) -> f64 {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let kib: u64 = std::iter::once(pid)
            .chain(children.split_whitespace().filter_map(|c| c.parse().ok()))
            .filter_map(|p| identity_bench::rss_kib(Some(p)))
            .sum();
        kib as f64 / 1024.0
    }

    /// The app's log (gunicorn and the library), for error messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gunicorn.log")).unwrap_or_default()
    }
}
