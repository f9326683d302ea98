//! Outbound HTTP: one client with timeouts, no redirects, and extra trust roots.
//!
//! Every call to the identity provider goes through [`HttpClient`]: it bounds the time of
//! each call (connect and total), never follows a redirect (a redirect from a token
//! endpoint is a misconfiguration or an attack), and counts the calls so that tracing
//! spans can report how many round trips an operation made.
//!
//! **Body size caps.** Every response body is read with a cap, so a provider (or whatever
//! answers in its place) that streams gigabytes cannot take the process's memory: the
//! read stops at the cap, the connection is dropped, and the call fails with
//! [`FetchFailure::TooLarge`]. A `Content-Length` above the cap is refused before any of
//! the body is read. The caps are far above what real providers send (Entra's largest
//! documents are a few kilobytes):
//!
//! | response | cap |
//! |---|---|
//! | discovery document | [`MAX_DISCOVERY_BYTES`] (256 KiB) |
//! | JWKS | [`MAX_JWKS_BYTES`] (256 KiB) |
//! | token and device-code endpoints | [`MAX_TOKEN_RESPONSE_BYTES`] (1 MiB; ID tokens with many groups stay far below) |
//! | APIs called with [`HttpClient::get_with_bearer`] (userinfo, Graph) | [`MAX_API_RESPONSE_BYTES`] (4 MiB) |

use crate::error::FetchFailure;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest discovery document read (256 KiB).
pub const MAX_DISCOVERY_BYTES: usize = 256 * 1024;
/// Largest JWKS read (256 KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Largest token (or device-code) endpoint response read (1 MiB).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 1024 * 1024;
/// Largest API response read by [`HttpClient::get_with_bearer`] (4 MiB).
pub const MAX_API_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Timeouts for calls to the identity provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed to open a connection (TCP and TLS). Default 3 s.
    pub connect: Duration,
    /// Time allowed for a whole request, from sending to the last byte of the body.
    /// Default 10 s.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            total: Duration::from_secs(10),
        }
    }
}

/// The HTTP client used for every call to the identity provider.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    calls: Arc<AtomicU64>,
}

/// A response body read in full, with its status.
#[derive(Clone, Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// The `WWW-Authenticate` header (claims challenges of protected APIs).
    pub(crate) www_authenticate: Option<String>,
}

/// A `reqwest` client builder prepared from the environment, for every client an app
/// uses to reach the provider or its APIs:
///
/// * `SSL_CERT_FILE`: PEM certificates trusted in addition to the bundled web PKI roots
///   (a corporate proxy's CA, or a local test provider's CA);
/// * `IDENTITY_RESOLVE`, **only with the `testing` feature**: comma-separated
///   `host=ip:port` overrides of DNS, e.g. `login.microsoftonline.com=127.0.0.1:8443`, so
///   that a local provider can answer for a real hostname (offline testing; host-based
///   authority detection works as in production).
///
/// A DNS override sends the app's client secret and the users' tokens wherever it
/// points, so a build without the `testing` feature never applies one: when
/// `IDENTITY_RESOLVE` is set anyway, it is ignored and a warning says so. Enable the
/// feature only for tests, e.g. in `[dev-dependencies]` (`identity-core = { version =
/// "...", features = ["testing"] }`) or for one run with `cargo run --features
/// identity-core/testing`. Code that needs an override in every build says so
/// explicitly with [`reqwest::ClientBuilder::resolve`] on its own builder and
/// [`HttpClient::from_builder`].
pub fn builder_from_env() -> Result<reqwest::ClientBuilder, String> {
    let mut builder = reqwest::Client::builder();
    if let Ok(path) = std::env::var("SSL_CERT_FILE") {
        if !path.is_empty() {
            for cert in load_root_certificates(&path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
    }
    if let Ok(spec) = std::env::var(RESOLVE_VARIABLE) {
        builder = apply_resolve(builder, &spec)?;
    }
    Ok(builder)
}

/// The variable holding DNS overrides for tests.
const RESOLVE_VARIABLE: &str = "IDENTITY_RESOLVE";

/// Applies the `IDENTITY_RESOLVE` overrides (feature `testing`).
#[cfg(feature = "testing")]
fn apply_resolve(
    mut builder: reqwest::ClientBuilder,
    spec: &str,
) -> Result<reqwest::ClientBuilder, String> {
    for (host, addr) in parse_resolve(spec)? {
        tracing::warn!(%host, %addr, "IDENTITY_RESOLVE overrides DNS for this host");
        builder = builder.resolve(&host, addr);
    }
    Ok(builder)
}

/// Without the `testing` feature a DNS override is never applied; a set variable is
/// reported, so a test setup that forgot the feature learns why its hosts resolve
/// normally.
#[cfg(not(feature = "testing"))]
fn apply_resolve(
    builder: reqwest::ClientBuilder,
    spec: &str,
) -> Result<reqwest::ClientBuilder, String> {
    if !spec.trim().is_empty() {
        tracing::warn!(
            "IDENTITY_RESOLVE is set but ignored: DNS overrides are a testing aid, applied \
             only when identity-core is built with its `testing` feature"
        );
    }
    Ok(builder)
}

/// Parses `host=ip:port[,host=ip:port...]`.
#[cfg(feature = "testing")]
fn parse_resolve(spec: &str) -> Result<Vec<(String, std::net::SocketAddr)>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (host, addr) = item
                .split_once('=')
                .ok_or_else(|| format!("IDENTITY_RESOLVE entry {item:?} is not host=ip:port"))?;
            let addr = addr
                .trim()
                .parse()
                .map_err(|_| format!("IDENTITY_RESOLVE entry {item:?}: {addr:?} is not ip:port"))?;
            Ok((host.trim().to_ascii_lowercase(), addr))
        })
        .collect()
}

/// Reads extra PEM trust roots from `path`.
pub fn load_root_certificates(path: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{path} holds no usable PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(certs)
}

impl HttpClient {
    /// Builds the default client: the given timeouts, no redirects, the bundled web PKI
    /// roots plus any certificates in the file named by `SSL_CERT_FILE`.
    pub fn new(timeouts: Timeouts) -> Result<Self, String> {
        Self::from_builder(builder_from_env()?, timeouts)
    }

    /// Builds a client from a caller-prepared builder (proxies, DNS overrides, extra
    /// roots). Timeouts and the no-redirect policy are applied on top.
    pub fn from_builder(
        builder: reqwest::ClientBuilder,
        timeouts: Timeouts,
    ) -> Result<Self, String> {
        let client = builder
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("identity-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            calls: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The number of calls made to the provider so far by this client.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub(crate) async fn get(&self, url: &str, limit: usize) -> Result<RawResponse, FetchFailure> {
        self.send(
            self.client.get(url).header("accept", "application/json"),
            limit,
        )
        .await
    }

    /// Calls an API protected by an access token (userinfo, Microsoft Graph, your own
    /// API) with `GET` and `Authorization: Bearer`, with this client's timeouts, no
    /// redirects, and the body read up to [`MAX_API_RESPONSE_BYTES`]. Returns the status
    /// and the body.
    pub async fn get_with_bearer(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<(u16, Vec<u8>), FetchFailure> {
        let resp = self
            .send(
                self.client
                    .get(url)
                    .header("accept", "application/json")
                    .bearer_auth(access_token),
                MAX_API_RESPONSE_BYTES,
            )
            .await?;
        Ok((resp.status, resp.body))
    }

    /// A GET with extra request headers (managed identity endpoints want `Metadata: true`
    /// or `X-IDENTITY-HEADER`).
    pub(crate) async fn get_with_headers(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, FetchFailure> {
        let mut req = self.client.get(url).header("accept", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req, MAX_TOKEN_RESPONSE_BYTES).await
    }

    /// A POST of a JSON body with a bearer token (Microsoft Graph).
    pub(crate) async fn post_json_bearer(
        &self,
        url: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<RawResponse, FetchFailure> {
        let req = self
            .client
            .post(url)
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body.to_string());
        self.send(req, MAX_API_RESPONSE_BYTES).await
    }

    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<RawResponse, FetchFailure> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .client
            .post(url)
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((user, pass)) = basic_auth {
            // RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(user), Some(enc(pass)));
        }
        self.send(req, limit).await
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<RawResponse, FetchFailure> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut resp = req.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            return Err(FetchFailure::Redirected(status));
        }
        let www_authenticate = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp.content_length().is_some_and(|len| len > limit as u64) {
            return Err(FetchFailure::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                // Dropping the response closes the connection: the rest is never read.
                return Err(FetchFailure::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawResponse {
            status,
            body,
            www_authenticate,
        })
    }
}

fn classify(e: reqwest::Error) -> FetchFailure {
    if e.is_timeout() {
        FetchFailure::Timeout
    } else {
        // Walk the source chain: reqwest's top-level message alone is "error sending request".
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        FetchFailure::Unreachable(msg)
    }
}

/// The first characters of a body, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "testing")]
    #[test]
    fn resolve_overrides_parse() {
        let v = parse_resolve(
            "login.microsoftonline.com=127.0.0.1:8443, Contoso.b2clogin.com=127.0.0.1:9000",
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0, "contoso.b2clogin.com");
        assert_eq!(v[0].1.port(), 8443);
        assert!(parse_resolve("nohost").is_err());
        assert!(parse_resolve("a=notanaddr").is_err());
        assert!(parse_resolve("").unwrap().is_empty());
    }

    /// A local server that answers any request with 204 and reports the `Host` it got.
    async fn answer_204() -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            head.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
                .unwrap_or_default()
        });
        (addr, task)
    }

    /// A client built by `apply_resolve` for `spec`, with short timeouts.
    fn client_with_overrides(spec: &str) -> HttpClient {
        let builder = apply_resolve(reqwest::Client::builder(), spec).unwrap();
        HttpClient::from_builder(
            builder,
            Timeouts {
                connect: Duration::from_secs(2),
                total: Duration::from_secs(5),
            },
        )
        .unwrap()
    }

    /// With the `testing` feature, a host named in the overrides reaches the given
    /// address while the request keeps its host name.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn testing_builds_apply_identity_resolve() {
        let (addr, server) = answer_204().await;
        let client = client_with_overrides(&format!("login.microsoftonline.test={addr}"));
        let url = format!("http://login.microsoftonline.test:{}/", addr.port());
        let answer = client
            .get(&url, MAX_DISCOVERY_BYTES)
            .await
            .expect("the override reaches the local server");
        assert_eq!(answer.status, 204);
        assert_eq!(
            server.await.unwrap(),
            format!("login.microsoftonline.test:{}", addr.port())
        );
    }

    /// Without the `testing` feature the overrides are ignored: the host resolves
    /// through DNS (`.invalid` never resolves, RFC 6761), so the call fails instead of
    /// reaching the address the variable names.
    #[cfg(not(feature = "testing"))]
    #[tokio::test]
    async fn production_builds_ignore_identity_resolve() {
        let (addr, server) = answer_204().await;
        let client = client_with_overrides(&format!("login.microsoftonline.invalid={addr}"));
        let url = format!("http://login.microsoftonline.invalid:{}/", addr.port());
        let failure = client
            .get(&url, MAX_DISCOVERY_BYTES)
            .await
            .expect_err("no override in this build");
        assert!(
            matches!(failure, FetchFailure::Unreachable(_)),
            "{failure:?}"
        );
        server.abort();
        // A malformed value is not an error either: nothing reads it.
        client_with_overrides("not an override");
    }
}
