//! Starting a sample app (`examples/*-webapp`) as a process configured through the
//! environment contract of DESIGN §6.

use super::process::{free_port, Service};
use crate::TestKit;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;
use url::Url;

/// Every variable of the sample contract. A launch sets the ones it is given and
/// removes the others from the inherited environment, so a developer's shell cannot
/// change what a test sees.
pub const CONTRACT_VARIABLES: &[&str] = &[
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CLIENT_CERTIFICATE",
    "CLIENT_PRIVATE_KEY",
    "AUTHORITY",
    "OIDC_AUTHORITY",
    "B2C_TENANT_NAME",
    "SIGNUPSIGNIN_USER_FLOW",
    "EDITPROFILE_USER_FLOW",
    "RESETPASSWORD_USER_FLOW",
    "B2C_DOMAIN",
    "REDIRECT_URI",
    "SCOPE",
    "ENDPOINT",
    "BIND_ADDR",
    "SESSION_STORE",
    "SESSION_SECRET",
    "SSL_CERT_FILE",
    "IDENTITY_RESOLVE",
];

/// How long the first start of a sample may take (its binary may be cold on disk).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Knows how to start one sample app: its binary and any environment it always needs.
///
/// ```no_run
/// # async fn demo() {
/// use identity_testkit::suite::SampleLauncher;
/// use identity_testkit::{TestKit, TestKitConfig};
///
/// let launcher = SampleLauncher::new("target/debug/axum-webapp");
/// let kit = TestKit::start(TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"))
///     .await
///     .unwrap();
/// let sample = launcher.wired_to(&kit).env("SCOPE", "Mail.Read").start().await;
/// println!("open {}", sample.url("/"));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SampleLauncher {
    bin: PathBuf,
    env: BTreeMap<String, Option<String>>,
    behind_proxy: bool,
}

impl SampleLauncher {
    /// A launcher for the sample binary at `bin` (in tests: `env!("CARGO_BIN_EXE_<name>")`).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            env: BTreeMap::new(),
            behind_proxy: false,
        }
    }

    /// Runs the scenarios in the production shape: each sample behind a TLS-terminating
    /// proxy ([`TlsProxy`](super::TlsProxy)) on the public host
    /// [`PUBLIC_HOST`](super::PUBLIC_HOST), with an https `REDIRECT_URI`; the app itself
    /// listens on plain http.
    pub fn behind_tls_proxy(mut self) -> Self {
        self.behind_proxy = true;
        self
    }

    /// Whether samples run behind the TLS-terminating proxy.
    pub fn is_behind_tls_proxy(&self) -> bool {
        self.behind_proxy
    }

    /// An environment variable every launch gets (a launch can override it).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_owned(), Some(value.into()));
        self
    }

    /// The sample binary.
    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// A launch with nothing configured but the listen address (`BIND_ADDR`) and a
    /// session secret: the configuration page, or another provider.
    pub fn bare(&self) -> Launch {
        let mut launch = Launch {
            bin: self.bin.clone(),
            env: self.env.clone(),
            port: None,
        };
        launch
            .env
            .insert("BIND_ADDR".into(), Some("127.0.0.1:{port}".into()));
        launch
            .env
            .entry("SESSION_SECRET".into())
            .or_insert_with(|| Some(random_secret()));
        launch
    }

    /// A launch wired to a running testkit: its default web app (`CLIENT_ID`,
    /// `CLIENT_SECRET`), its workforce authority, `REDIRECT_URI` on the sample's port,
    /// `SCOPE=User.Read` and `ENDPOINT` = the kit's Graph-shaped API.
    pub fn wired_to(&self, kit: &TestKit) -> Launch {
        let app = kit.config().default_app().cloned();
        let mut launch = self.bare();
        let mut set = |k: &str, v: String| {
            launch.env.entry(k.to_owned()).or_insert(Some(v));
        };
        if let Some(app) = app {
            set("CLIENT_ID", app.client_id);
            if let Some(secret) = app.client_secret {
                set("CLIENT_SECRET", secret);
            }
        }
        set("AUTHORITY", kit.authority());
        set(
            "REDIRECT_URI",
            "http://127.0.0.1:{port}/getAToken".to_owned(),
        );
        set("SCOPE", "User.Read".to_owned());
        set("ENDPOINT", kit.api_url());
        set("SESSION_STORE", "memory".to_owned());
        launch
    }
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One start of a sample: its environment (values may contain `{port}`, replaced by
/// the port the sample listens on) and its port.
#[derive(Clone, Debug)]
pub struct Launch {
    bin: PathBuf,
    env: BTreeMap<String, Option<String>>,
    port: Option<u16>,
}

impl Launch {
    /// Sets a variable (`{port}` in the value becomes the sample's port).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_owned(), Some(value.into()));
        self
    }

    /// Removes a variable.
    pub fn unset(mut self, key: &str) -> Self {
        self.env.insert(key.to_owned(), None);
        self
    }

    /// Listens on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The value a variable will have (before `{port}` substitution).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env.get(key).and_then(|v| v.as_deref())
    }

    /// Starts the sample and waits for its `ready` line.
    ///
    /// # Panics
    /// If it does not start; the message carries its output.
    pub async fn start(&self) -> Sample {
        match self.try_start().await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts the sample and waits for its `ready` line.
    ///
    /// Without a fixed [`port`](Self::port), a start whose port was taken before the
    /// sample bound it is tried again on another port.
    pub async fn try_start(&self) -> Result<Sample, String> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_start_on(self.port.unwrap_or_else(free_port)).await {
                Err(e)
                    if self.port.is_none() && tries < 3 && e.contains("Address already in use") =>
                {
                    continue
                }
                done => return done,
            }
        }
    }

    async fn try_start_on(&self, port: u16) -> Result<Sample, String> {
        let dir =
            std::env::temp_dir().join(format!("identity-suite-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        let mut cmd = Command::new(&self.bin);
        // A fresh directory: no developer `.env` file beside it.
        cmd.current_dir(&dir);
        for k in CONTRACT_VARIABLES {
            cmd.env_remove(k);
        }
        let mut shown = Vec::new();
        for (k, v) in &self.env {
            match v {
                Some(v) => {
                    let v = v.replace("{port}", &port.to_string());
                    if !k.contains("SECRET") {
                        shown.push(format!("{k}={v}"));
                    }
                    cmd.env(k, v);
                }
                None => {
                    cmd.env_remove(k);
                }
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let name = format!(
            "{} on port {port} ({})",
            self.bin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            shown.join(" ")
        );
        let service = Service::spawn(
            &name,
            cmd,
            |line| line.trim() == "ready" || line.trim_start().starts_with("ready "),
            START_TIMEOUT,
        )
        .await?;
        Ok(Sample {
            public_base: None,
            service: Some(service),
            port,
            launch: Launch {
                port: Some(port),
                ..self.clone()
            },
        })
    }
}

/// A running sample app. Dropping it kills the process.
#[derive(Debug)]
pub struct Sample {
    service: Option<Service>,
    port: u16,
    launch: Launch,
    public_base: Option<String>,
}

impl Sample {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:{port}`, or the public https base when the sample runs behind
    /// a proxy ([`Sample::set_public_base`]).
    pub fn base_url(&self) -> String {
        match &self.public_base {
            Some(base) => base.clone(),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Makes [`Sample::url`] give public URLs (behind a TLS-terminating proxy).
    pub fn set_public_base(&mut self, base: impl Into<String>) {
        self.public_base = Some(base.into());
    }

    /// [`Sample::base_url`] followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// [`Sample::url`] parsed.
    pub fn parsed_url(&self, path: &str) -> Url {
        Url::parse(&self.url(path)).expect("sample URL")
    }

    /// The redirect URI the sample was started with.
    pub fn redirect_uri(&self) -> Option<String> {
        self.launch
            .get("REDIRECT_URI")
            .map(|v| v.replace("{port}", &self.port.to_string()))
    }

    /// The last lines the sample printed, for failure messages.
    pub fn log(&self) -> String {
        self.service
            .as_ref()
            .map(Service::log)
            .unwrap_or_else(|| "(sample stopped)".into())
    }

    /// Stops the process (the port is kept for [`Sample::restart`]).
    pub async fn stop(&mut self) {
        if let Some(s) = self.service.take() {
            s.stop().await;
        }
    }

    /// Stops the process and starts it again with the same environment and port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut last = String::new();
        // The old socket may linger for a moment.
        for _ in 0..50 {
            match self.launch.try_start().await {
                Ok(mut s) => {
                    self.service = s.service.take();
                    return;
                }
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("the sample did not restart: {last}");
    }
}
