//! placeholder docs (replaced below)

mod config;
mod keys;
mod pages;
mod provider;
mod server;
mod tls;
mod util;

pub use config::{
    AppRoleGrant, TenantKind, TestApp, TestKitConfig, TestTenant, TestUser, TlsConfig,
    API_APP_CLIENT_ID, API_APP_SECRET, B2C_TENANT_ID, CONSUMERS_TENANT_ID, EXTERNAL_ID_TENANT_ID,
    GRAPH_APP_ID, PUBLIC_APP_CLIENT_ID, WEB_APP_CLIENT_ID, WEB_APP_SECRET, WORKFORCE_TENANT_ID,
};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// An endpoint of the testkit, for counters and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/.well-known/openid-configuration` (v1 and v2, every tenant kind).
    Discovery,
    /// `/discovery/v2.0/keys` (and v1 `/discovery/keys`).
    Jwks,
    /// `/oauth2/v2.0/authorize` (GET and the pages' POSTs).
    Authorize,
    /// `/oauth2/v2.0/token`.
    Token,
    /// `/oauth2/v2.0/logout`.
    Logout,
    /// `/oauth2/v2.0/devicecode`.
    DeviceCode,
    /// The device-code verification page `/oauth2/deviceauth`.
    DeviceAuth,
    /// The protected API `/v1.0/me` (Graph-shaped).
    Api,
    /// `/api/echo`, a web API protected by the `api` app's scope.
    ApiEcho,
    /// `/oidc/userinfo` (and v1 `/{tenant}/openid/userinfo`).
    Userinfo,
    /// `/common/discovery/instance` (MSAL instance discovery).
    InstanceDiscovery,
}

impl Endpoint {
    /// Every endpoint, in counter order.
    pub const ALL: [Endpoint; 11] = [
        Endpoint::Discovery,
        Endpoint::Jwks,
        Endpoint::Authorize,
        Endpoint::Token,
        Endpoint::Logout,
        Endpoint::DeviceCode,
        Endpoint::DeviceAuth,
        Endpoint::Api,
        Endpoint::ApiEcho,
        Endpoint::Userinfo,
        Endpoint::InstanceDiscovery,
    ];

    /// The lowercase snake-case name used by the control API.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
            Endpoint::Authorize => "authorize",
            Endpoint::Token => "token",
            Endpoint::Logout => "logout",
            Endpoint::DeviceCode => "device_code",
            Endpoint::DeviceAuth => "device_auth",
            Endpoint::Api => "api",
            Endpoint::ApiEcho => "api_echo",
            Endpoint::Userinfo => "userinfo",
            Endpoint::InstanceDiscovery => "instance_discovery",
        }
    }

    /// Parse a control-API name.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    fn index(self) -> usize {
        Endpoint::ALL
            .iter()
            .position(|e| *e == self)
            .expect("listed")
    }
}

/// A fault injected into an endpoint, applied before normal handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connection is closed without any response.
    Down,
    /// Sleep this long, then answer normally.
    Slow(Duration),
    /// Answer with this HTTP status and an Entra error envelope.
    Status(u16),
    /// Answer 200 with a body that is not JSON (`{not json`).
    MalformedJson,
}

/// A defect put into ID tokens issued by the token endpoint, for clients'
/// negative tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// `iss` names another tenant.
    WrongIssuer,
    /// `aud` is another client id.
    WrongAudience,
    /// `exp` is an hour in the past.
    Expired,
    /// `nbf`/`iat` are an hour in the future.
    NotYetValid,
    /// Signed by a key that is not in the JWKS, with the `kid` of the real key.
    BadSignature,
    /// Signed by the real key, with a `kid` that is not in the JWKS.
    UnknownKid,
    /// `nonce` differs from the one sent on `/authorize`.
    WrongNonce,
    /// No `nonce` claim.
    MissingNonce,
    /// `alg: none`, empty signature.
    AlgNone,
    /// HS256 signed with the client secret as HMAC key (algorithm confusion).
    Hs256,
}

/// A running local identity provider. Dropping it stops the server.
pub struct TestKit {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Errors from [`TestKit::start`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS setup failed (CA generation/loading or rustls configuration).
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

impl TestKit {
    /// Bind `config.addr` and serve. Returns once the socket is listening.
    pub async fn start(config: TestKitConfig) -> Result<TestKit, StartError> {
        let (shared, addr, task) = server::start(config).await?;
        Ok(TestKit {
            shared,
            addr,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (or `https://…` with TLS), no trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.shared.scheme, self.addr)
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration in force.
    pub fn config(&self) -> &TestKitConfig {
        &self.shared.cfg
    }

    fn tenant_of(&self, kind: TenantKind) -> Option<&TestTenant> {
        self.shared.cfg.tenants.iter().find(|t| t.kind == kind)
    }

    /// The first workforce tenant's id.
    pub fn workforce_tenant_id(&self) -> String {
        self.tenant_of(TenantKind::Workforce)
            .map(|t| t.id.clone())
            .unwrap_or_default()
    }

    /// `{base}/{workforce tenant id}`.
    pub fn authority(&self) -> String {
        format!("{}/{}", self.base_url(), self.workforce_tenant_id())
    }

    /// `{base}/common`.
    pub fn common_authority(&self) -> String {
        format!("{}/common", self.base_url())
    }

    /// `{base}/organizations`.
    pub fn organizations_authority(&self) -> String {
        format!("{}/organizations", self.base_url())
    }

    /// `{base}/consumers`.
    pub fn consumers_authority(&self) -> String {
        format!("{}/consumers", self.base_url())
    }

    /// `{base}/{b2c domain}/{policy}`, e.g. `…/contosob2c.onmicrosoft.com/B2C_1_signupsignin1`.
    pub fn b2c_authority(&self, policy: &str) -> String {
        let domain = self
            .tenant_of(TenantKind::B2c)
            .map(|t| t.domain.clone())
            .unwrap_or_default();
        format!("{}/{domain}/{policy}", self.base_url())
    }

    /// `{base}/{external id tenant id}`.
    pub fn external_id_authority(&self) -> String {
        let id = self
            .tenant_of(TenantKind::ExternalId)
            .map(|t| t.id.clone())
            .unwrap_or_default();
        format!("{}/{id}", self.base_url())
    }

    /// `{base}/v1.0/me`, the Graph-shaped protected API.
    pub fn api_url(&self) -> String {
        format!("{}/v1.0/me", self.base_url())
    }

    /// The PEM of the CA that signed the server certificate (TLS only).
    pub fn ca_pem(&self) -> Option<String> {
        self.shared.ca_pem.clone()
    }

    /// Calls of an endpoint since start or the last [`TestKit::reset_counters`].
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        self.shared.counters[endpoint.index()].load(Ordering::SeqCst)
    }

    /// Zero every counter.
    pub fn reset_counters(&self) {
        self.shared.reset_counters();
    }

    /// Inject (`Some`) or clear (`None`) a fault on an endpoint.
    pub fn set_fault(&self, endpoint: Endpoint, fault: Option<Fault>) {
        self.shared.set_fault(endpoint, fault);
    }

    /// Tamper with ID tokens issued from now on (`None` clears).
    pub fn set_tamper(&self, tamper: Option<Tamper>) {
        *self.shared.tamper.lock().unwrap_or_else(|e| e.into_inner()) = tamper;
    }

    /// New signing key for every key set; the previous key stays in the JWKS
    /// until the next rotation.
    pub fn rotate_keys(&self) {
        self.shared.rotate_keys();
    }

    /// Shift the provider's clock by `secs` (affects `iat`/`nbf`/`exp` and expiry checks).
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.clock_offset.store(secs, Ordering::SeqCst);
    }

    /// Revoke every refresh token issued so far to `username`.
    pub fn revoke_refresh_tokens(&self, username: &str) {
        self.shared.revoke(username);
    }

    /// Record a continuous-access-evaluation event for `username`: access tokens
    /// issued before it get an `insufficient_claims` challenge from the API.
    pub fn cae_event(&self, username: &str) {
        self.shared.cae_event(username);
    }

    /// Stop serving and close every connection.
    pub async fn shutdown(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for TestKit {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
