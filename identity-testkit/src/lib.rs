//! # identity-testkit
//!
//! A real, local OpenID Connect provider that speaks the wire shapes of
//! Microsoft Entra ID (workforce, `common`/`organizations`/`consumers`, v1 and v2
//! metadata), Entra External ID (CIAM) and Azure AD B2C user flows. It signs with
//! real RS256 keys, so a client under test runs its production code path:
//! discovery, JWKS, authorization code + PKCE, token validation, refresh, logout.
//!
//! Use it as a library from Rust tests ([`TestKit::start`]) or as a binary
//! (`cargo run -p identity-testkit -- --addr 127.0.0.1:8080`) from any language;
//! a JSON control API under `/_testkit/` drives the binary from scripts.
//!
//! ## Test your app offline
//!
//! Start a kit in headless mode, point your app's authority at it, and drive a
//! sign-in without a browser: `/authorize` answers at once with a redirect that
//! carries the code.
//!
//! ```
//! use identity_testkit::{Endpoint, TestKit, TestKitConfig, WEB_APP_CLIENT_ID, WEB_APP_SECRET};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kit = TestKit::start(
//!     TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"),
//! )
//! .await?;
//! // What your app would read from its configuration (AUTHORITY, CLIENT_ID, ...):
//! let authority = kit.authority(); // http://127.0.0.1:PORT/aaaabbbb-0000-cccc-1111-dddd2222eeee
//!
//! let http = reqwest::Client::builder()
//!     .redirect(reqwest::redirect::Policy::none())
//!     .build()?;
//! let meta: serde_json::Value = http
//!     .get(format!("{authority}/v2.0/.well-known/openid-configuration"))
//!     .send().await?.json().await?;
//! assert_eq!(meta["issuer"], format!("{authority}/v2.0"));
//!
//! // The browser leg, without a browser.
//! let redirect = http
//!     .get(meta["authorization_endpoint"].as_str().unwrap())
//!     .query(&[
//!         ("client_id", WEB_APP_CLIENT_ID),
//!         ("response_type", "code"),
//!         ("redirect_uri", "http://localhost:5000/getAToken"),
//!         ("scope", "openid profile offline_access User.Read"),
//!         ("state", "xyz"),
//!     ])
//!     .send().await?;
//! let location = redirect.headers()["location"].to_str()?.to_string();
//! let url = url::Url::parse(&location)?;
//! let code = url.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
//!
//! let tokens: serde_json::Value = http
//!     .post(meta["token_endpoint"].as_str().unwrap())
//!     .form(&[
//!         ("grant_type", "authorization_code"),
//!         ("client_id", WEB_APP_CLIENT_ID),
//!         ("client_secret", WEB_APP_SECRET),
//!         ("code", code.as_str()),
//!         ("redirect_uri", "http://localhost:5000/getAToken"),
//!     ])
//!     .send().await?.json().await?;
//! assert!(tokens["id_token"].is_string() && tokens["refresh_token"].is_string());
//!
//! // Round trips your app made, per endpoint.
//! assert_eq!(kit.calls(Endpoint::Token), 1);
//! assert_eq!(kit.calls(Endpoint::Discovery), 1);
//! kit.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## The default directory
//!
//! [`TestKitConfig::default`] serves (every password is `password`):
//!
//! | What | Value |
//! |---|---|
//! | Workforce tenant | `aaaabbbb-0000-cccc-1111-dddd2222eeee` (`contoso.onmicrosoft.com`): `adele@contoso.onmicrosoft.com` (Adele Vance, role `Reader`, one group), `alex@contoso.onmicrosoft.com` (Alex Wilber), `grace@contoso.onmicrosoft.com` (Grace Taylor, in 250 groups: group overage) |
//! | Personal accounts | `consumers` = `9188040d-6c67-4c5b-b112-36a304b66dad`: `megan@outlook.com` (Megan Bowen) |
//! | B2C tenant | `contosob2c.onmicrosoft.com` (`775527ff-9a37-4307-8b3d-cc311f58d925`), user flows `B2C_1_signupsignin1`, `B2C_1_profileediting1`, `B2C_1_passwordreset1`: `bob@contoso.com` (Bob B2C) |
//! | External ID tenant | `11112222-bbbb-3333-cccc-4444dddd5555` (`contosoext.onmicrosoft.com`): `carol@example.com` (Carol Customer) |
//! | Web app | [`WEB_APP_CLIENT_ID`], secret [`WEB_APP_SECRET`], redirect `http://localhost:5000/getAToken` and `http://127.0.0.1:5000/getAToken` (+ any loopback port with that path), post-logout `http://localhost:5000/`; holds app role `Data.Read.All` on the web API |
//! | Web API | [`API_APP_CLIENT_ID`], secret [`API_APP_SECRET`], `api://{id}/access_as_user`, app role `Data.Read.All` |
//! | Public client | [`PUBLIC_APP_CLIENT_ID`] (no secret; device code, native apps) |
//! | Consent | every user has consented `openid profile offline_access email User.Read` and `access_as_user`; `Mail.Read` is not consented; `Files.ReadWrite.All` needs MFA |
//! | Lifetimes | ID token 3900 s, access token 3599 s, code 300 s (single use), device code 900 s |
//!
//! ## Authorities and routes
//!
//! Issuers and endpoint URLs are built from the request's scheme and `Host`, so the
//! same server answers on loopback and under mapped real host names (see TLS).
//!
//! * Workforce: `{base}/{tenant}` with the GUID, the domain, `common`,
//!   `organizations` or `consumers`; v2 metadata at `/v2.0/.well-known/openid-configuration`,
//!   v1 at `/.well-known/openid-configuration`; `/oauth2/v2.0/{authorize,token,logout,devicecode}`,
//!   `/discovery/v2.0/keys`. `common`/`organizations` advertise the
//!   `{tenantid}` issuer template; tokens carry the user's home `tid`.
//!   `organizations` never signs in a personal account, `consumers` only those.
//! * B2C: `{base}/{tenant}/{policy}/...` or `{base}/{tenant}/...?p={policy}`; issuer
//!   `{base}/{tenant GUID}/v2.0/`; one key set per policy; ID tokens with `ver: "1.0"`,
//!   `tfp`, `emails`, no `tid`; redirects carry no `session_state`.
//! * External ID: like workforce; on a `*.ciamlogin.com` host the issuer is
//!   `https://{tid}.ciamlogin.com/{tid}/v2.0` and `/{sub}.onmicrosoft.com/...` resolves.
//! * Host dispatch: a `*.b2clogin.com` host resolves only B2C tenants, a
//!   `*.ciamlogin.com` host only External ID tenants.
//! * External ID custom URL domains ([`TestKitConfig::custom_domains`], default
//!   [`CUSTOM_DOMAIN`] `login.contoso.com` for the External ID tenant): on that host the
//!   tenant's documents and endpoints are served at `https://login.contoso.com/{tid}/...`
//!   (only that tenant resolves there), while the issuer stays
//!   `https://{tid}.ciamlogin.com/{tid}/v2.0`, as at Entra. With TLS the host is in the
//!   certificate.
//! * APIs: `{base}/v1.0/me` (Graph-shaped, needs `User.Read`),
//!   `POST {base}/v1.0/me/getMemberObjects` (Graph-shaped group ids of the user; needs
//!   `GroupMember.Read.All`, `Group.Read.All` or `Directory.Read.All`), `{base}/api/echo`
//!   (the web API: `access_as_user` or the `Data.Read.All` role; echoes the claims),
//!   `{base}/oidc/userinfo`, `{base}/common/discovery/instance`.
//!
//! Errors use Entra's envelope (`error`, `error_description` with the AADSTS code and
//! the trace block, `error_codes`, `timestamp`, `trace_id`, `correlation_id`,
//! `error_uri`, `suberror`, `claims`); `invalid_client` comes with HTTP 401; an
//! unknown tenant is HTTP 400 `invalid_tenant` (AADSTS90002). B2C errors carry only
//! `error` and an `AADB2C…` `error_description`. Redirect URI mismatches show an
//! AADSTS50011 page and never redirect.
//!
//! ## Interactive and headless
//!
//! Without `auto_approve`, `/authorize` shows an HTML sign-in page (account picker and
//! username/password form), then a consent page for scopes the user has not
//! consented to. An SSO cookie per tenant lets the next sign-in skip the password
//! (`prompt=login` forces it; `prompt=none` without the cookie is `login_required`).
//! The B2C sign-in page has "Forgot your password?" (`AADB2C90118`) and Cancel
//! (`AADB2C90091`); the reset and edit-profile flows show their own page.
//!
//! With `auto_approve: Some(username)` every `/authorize` answers at once for the user
//! named by `login_hint` when that user belongs to the authority, else the configured
//! user, else the first user of the authority (so one kit serves workforce, B2C and
//! External ID authorities headlessly); consent is granted; device codes are approved
//! at once. `prompt=none` still needs the SSO cookie, so `login_required` stays testable.
//!
//! ## Failure paths
//!
//! * [`TestKit::set_fault`]: [`Fault::Down`] (connection closed, no response),
//!   [`Fault::Slow`], [`Fault::Status`] (Entra envelope), [`Fault::MalformedJson`],
//!   [`Fault::Oversized`] (an endless body); counted in [`TestKit::calls`] like any call.
//! * [`TestKit::set_tamper`]: defects in ID tokens from the token endpoint ([`Tamper`]).
//! * A hostile or broken provider: [`TestKit::set_discovery_issuer`] (metadata naming
//!   another issuer), [`TestKit::set_authorization_response_iss`] (RFC 9207 `iss` in
//!   authorization responses), [`TestKit::set_token_response_members`] (absurd
//!   `expires_in` and the like), [`TestKit::retire_keys_now`] (emergency key rollover),
//!   [`TestKitConfig::refresh_token_reuse_detection`] (a refresh token used twice revokes
//!   the grant, as at providers that rotate refresh tokens), and
//!   [`TestKitConfig::v1_access_token_apps`] (web APIs that receive v1.0 access tokens).
//! * [`TestKit::rotate_keys`] (old key published until the next rotation),
//!   [`TestKit::set_clock_offset`], [`TestKit::revoke_refresh_tokens`],
//!   [`TestKit::cae_event`] (the API answers `insufficient_claims` with a base64 claims
//!   challenge to tokens issued before the event).
//! * Refresh with an unconsented scope: `invalid_grant` + `suberror: consent_required`
//!   (65001). With a scope in `mfa_scopes` and a sign-in without MFA:
//!   `interaction_required` (50076) with a raw-JSON `claims` challenge; an `/authorize`
//!   asking for that scope or carrying `claims` counts as an MFA sign-in.
//!
//! ## Secretless app credentials
//!
//! * **Federated identity credentials.** A client assertion whose `iss` is not the
//!   client id must match one of the app's [`FederatedCredential`]s (issuer, subject,
//!   audience; case-sensitive, as at Entra: AADSTS700211 for an unknown issuer, AADSTS70021
//!   for no matching record) and verify with the issuer's keys: those configured in
//!   [`TestKitConfig::federation_issuers`], or the testkit's own key for an issuer
//!   configured without keys ([`TestKit::federated_token`], control API
//!   `POST /_testkit/federated-token`), or the workforce key for Entra's own issuer
//!   `https://login.microsoftonline.com/{tid}/v2.0` (managed identity tokens).
//!   The default web app trusts [`FEDERATION_ISSUER`] / [`FEDERATION_SUBJECT`] (workload
//!   identity) and both default managed identities.
//! * **Managed identity endpoints.** `GET /metadata/identity/oauth2/token` (IMDS shape:
//!   `Metadata: true`, `api-version`, `resource`, optional `client_id`, `object_id`,
//!   `msi_res_id`; string `expires_in`/`expires_on`) and `GET /msi/token` (App Service
//!   shape: `X-IDENTITY-HEADER` equal to [`TestKitConfig::identity_header`],
//!   `api-version`, `resource`, optional `client_id`, `principal_id`, `mi_res_id`).
//!   Tokens have issuer `https://login.microsoftonline.com/{tid}/v2.0`, subject and `oid`
//!   the identity's principal id. Defaults: a system-assigned identity
//!   ([`SYSTEM_MANAGED_IDENTITY_CLIENT_ID`]) and a user-assigned one
//!   ([`USER_MANAGED_IDENTITY_CLIENT_ID`]). Point a client at them with
//!   `AZURE_POD_IDENTITY_AUTHORITY_HOST={base}` or `IDENTITY_ENDPOINT={base}/msi/token`.
//! * **Certificates.** `private_key_jwt` assertions are verified with the app's
//!   registered `public_keys` (RS256, ES256, ES384), or, when the header carries `x5c` and
//!   the app has [`TrustedCertificateSubject`]s, with the first certificate of `x5c`,
//!   which must have a trusted subject CN and be signed by that subject's trusted issuer
//!   (subject name and issuer authentication).
//!
//! ## TLS
//!
//! [`TestKitConfig::with_tls`] makes the kit its own CA ([`TestKit::ca_pem`]) and serve
//! HTTPS with a certificate for `localhost`, `127.0.0.1`, `login.microsoftonline.com`,
//! `login.windows.net`, `graph.microsoft.com`, `*.b2clogin.com`, `*.ciamlogin.com`.
//! Trust the CA (`reqwest::ClientBuilder::add_root_certificate`, `SSL_CERT_FILE`) and map
//! the names to [`TestKit::addr`] (`resolve`, `/etc/hosts`) to run host-based authority
//! detection exactly as in production.
//!
//! ## Decisions
//!
//! * v1 metadata: the issuer is `https://sts.windows.net/{tid}/` when the request came
//!   to `login.microsoftonline.com`, else `{base}/{tid}/` (the kit cannot answer for
//!   `sts.windows.net` on other hosts).
//! * JWKs have `kty, use, kid, x5t, n, e, x5c, issuer` and no `alg`, as Entra publishes
//!   them: `x5c` holds one self-signed certificate of the key (subject and issuer
//!   `CN=accounts.accesscontrol.windows.net`, five years of validity), `x5t` is the
//!   base64url SHA-1 thumbprint of that certificate, and `kid == x5t`. B2C keys have no
//!   `issuer` member.
//! * Group overage: a user in more than [`TestKitConfig::group_overage_limit`] groups
//!   (default 200, Entra's limit for JWTs) gets no `groups` claim in ID tokens but
//!   `_claim_names: {"groups": "src1"}` and `_claim_sources` pointing at the (retired)
//!   Azure AD Graph `getMemberObjects` URL, as Entra does; clients resolve the groups
//!   through `getMemberObjects` of the Graph-shaped API.
//! * Refresh tokens rotate on every use and the old ones stay valid, as at Entra. A
//!   revoked refresh token fails with `invalid_grant` AADSTS70008. With
//!   `refresh_token_reuse_detection`, a refresh token is single use: redeeming it again
//!   fails with `invalid_grant` (AADSTS70008) and revokes every refresh token of that
//!   grant, the way rotating providers answer a replay.
//! * B2C answers without `access_token` when no API scope was asked (only `openid`,
//!   `offline_access`), like the service; ask for the client id or an API scope to get one.
//! * Scope strings in token responses list the OpenID scopes asked for (including
//!   `offline_access`) and the resource scopes (Graph ones short, e.g. `User.Read`).
//! * RSA keys are generated once per process and shared by every kit started in it
//!   (starting a kit is cheap); kits in one process therefore trust each other's tokens.
//! * Access tokens are RS256 JWTs for every resource (Graph's real tokens are not
//!   verifiable by clients; these are, which helps tests).
//!
//! ## What it does not emulate
//!
//! Real MFA, conditional access beyond the `mfa_scopes` rule, guest users and
//! cross-tenant claims (`home_oid`…), v1 token/authorize endpoints (only v1 metadata),
//! implicit and hybrid flows (`response_type` other than `code`), SAML, admin consent,
//! app-only tokens in B2C, front-channel logout calls to apps, `/tfp/` B2C issuers,
//! sovereign clouds, national-cloud instance discovery, token binding, and the
//! randomised access-token lifetimes of the service. Key material and state live in
//! memory and vanish with the process.

mod config;
mod federation;
mod keys;
mod logout;
mod pages;
mod provider;
mod server;
/// The adapter behaviour suite, and helpers to run sample apps and peers in tests (feature `suite`).
pub mod suite;
mod tls;
mod util;
mod x509;

pub use config::{
    AppRoleGrant, CustomDomain, FederatedCredential, FederationIssuer, TenantKind, TestApp,
    TestKitConfig, TestManagedIdentity, TestTenant, TestUser, TlsConfig, TrustedCertificateSubject,
    API_APP_CLIENT_ID, API_APP_SECRET, B2C_TENANT_ID, CONSUMERS_TENANT_ID, CUSTOM_DOMAIN,
    EXTERNAL_ID_TENANT_ID, FEDERATION_ISSUER, FEDERATION_SUBJECT, GRAPH_APP_ID, IDENTITY_HEADER,
    PUBLIC_APP_CLIENT_ID, SYSTEM_MANAGED_IDENTITY_CLIENT_ID, SYSTEM_MANAGED_IDENTITY_PRINCIPAL_ID,
    TOKEN_EXCHANGE_AUDIENCE, USER_MANAGED_IDENTITY_CLIENT_ID, USER_MANAGED_IDENTITY_PRINCIPAL_ID,
    WEB_APP_CLIENT_ID, WEB_APP_SECRET, WORKFORCE_TENANT_ID,
};
pub use logout::{post_form, LogoutDelivery};

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
    /// `POST /v1.0/me/getMemberObjects` (Graph-shaped group memberships).
    MemberObjects,
    /// `/api/echo`, a web API protected by the `api` app's scope.
    ApiEcho,
    /// `/oidc/userinfo` (and v1 `/{tenant}/openid/userinfo`).
    Userinfo,
    /// `/common/discovery/instance` (MSAL instance discovery).
    InstanceDiscovery,
    /// The managed identity endpoints: `/metadata/identity/oauth2/token` (IMDS shape)
    /// and `/msi/token` (App Service shape).
    ManagedIdentity,
}

impl Endpoint {
    /// Every endpoint, in counter order.
    pub const ALL: [Endpoint; 13] = [
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
        Endpoint::ManagedIdentity,
        Endpoint::MemberObjects,
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
            Endpoint::ManagedIdentity => "managed_identity",
            Endpoint::MemberObjects => "member_objects",
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
    /// Answer 200 with a JSON-looking body of this many bytes, streamed without a
    /// `Content-Length` (a provider that sends gigabytes; the kit never holds it in memory).
    Oversized(u64),
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
    /// No `sub` claim.
    MissingSub,
    /// No `iat` claim.
    MissingIat,
}

/// How the token endpoint answers one device-code poll, scripted with
/// [`TestKit::script_device_code`]. Each answer is used once, by the next device-code
/// token request (whichever device code it names); when the script is empty the
/// provider answers as usual: tokens once the code was approved (on the device page or
/// by [`TestKitConfig::auto_approve`]), else `authorization_pending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceAnswer {
    /// `authorization_pending`: the user has not finished yet.
    Pending,
    /// `slow_down`: the client polls too often and must add 5 seconds to its interval.
    SlowDown,
    /// `expired_token`: the device code expired; the code is forgotten.
    Expired,
    /// `access_denied` (RFC 8628): the user refused; the code is forgotten.
    Denied,
    /// `authorization_declined`, Entra's spelling of a refusal; the code is forgotten.
    Declined,
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

    /// Time the provider spent answering an endpoint since start or the last
    /// [`TestKit::reset_counters`]: from the request reaching its router to the answer
    /// being built (injected delays included, transport not). Benchmarks subtract it from
    /// a client's wall time to get the client's own share of a round trip.
    pub fn busy(&self, endpoint: Endpoint) -> std::time::Duration {
        Endpoint::ALL
            .iter()
            .position(|x| *x == endpoint)
            .and_then(|i| self.shared.busy.get(i))
            .map_or(std::time::Duration::ZERO, |c| {
                std::time::Duration::from_nanos(c.load(Ordering::SeqCst))
            })
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

    /// Emergency rollover: a new signing key for every key set, and the previous one
    /// leaves the JWKS at once (a compromised key is not kept for a grace period).
    pub fn retire_keys_now(&self) {
        self.shared.retire_keys_now();
    }

    /// Every discovery document names `issuer` as its `issuer` (`None` restores the real
    /// one): a provider whose metadata claims another issuer (mix-up).
    pub fn set_discovery_issuer(&self, issuer: Option<String>) {
        *self
            .shared
            .discovery_issuer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = issuer;
    }

    /// Authorization responses (codes and errors) carry `iss` (RFC 9207) with this value
    /// (`None`: no `iss`, as at Entra).
    pub fn set_authorization_response_iss(&self, iss: Option<String>) {
        *self
            .shared
            .authorization_response_iss
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = iss;
    }

    /// Members put into every successful token response, replacing the real ones
    /// (`None` clears): e.g. `{"expires_in": 18446744073709551615}` for a provider that
    /// sends absurd lifetimes.
    pub fn set_token_response_members(
        &self,
        members: Option<serde_json::Map<String, serde_json::Value>>,
    ) {
        *self
            .shared
            .token_response_members
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = members;
    }

    /// Shift the provider's clock by `secs` (affects `iat`/`nbf`/`exp` and expiry checks).
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.clock_offset.store(secs, Ordering::SeqCst);
    }

    /// Queue answers for the next device-code token requests (see [`DeviceAnswer`]),
    /// after any still queued. Each request that uses a scripted answer is counted on
    /// [`Endpoint::Token`] like any other.
    pub fn script_device_code(&self, answers: impl IntoIterator<Item = DeviceAnswer>) {
        self.shared
            .device_answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(answers);
    }

    /// The polling `interval` (seconds) that the device authorization endpoint announces
    /// from now on; default 5, as at Entra.
    pub fn set_device_code_interval(&self, secs: u64) {
        self.shared.device_interval.store(secs, Ordering::SeqCst);
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

    /// A token of the federation issuer `issuer` (one of
    /// [`TestKitConfig::federation_issuers`] without `public_keys`, e.g.
    /// [`FEDERATION_ISSUER`]) for `subject`, with audience `api://AzureADTokenExchange`,
    /// valid for an hour: what a Kubernetes cluster projects into a pod for workload
    /// identity federation.
    pub fn federated_token(&self, issuer: &str, subject: &str) -> String {
        federation::mint_federated_token(&self.shared, issuer, subject, TOKEN_EXCHANGE_AUDIENCE)
    }

    /// Registers (or replaces) the front- and back-channel logout URIs of app
    /// `client_id` while the kit runs (an app's address is often known only once it
    /// listens); they take the place of the configured ones.
    pub fn register_logout_uris(
        &self,
        client_id: &str,
        frontchannel: Option<String>,
        backchannel: Option<String>,
    ) {
        self.shared
            .logout_uris
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_owned(), (frontchannel, backchannel));
    }

    /// The back-channel logout tokens sent so far, with the apps' answers.
    pub fn logout_deliveries(&self) -> Vec<LogoutDelivery> {
        self.shared.state().logout_deliveries.clone()
    }

    /// Signs `claims` as this kit signs the workforce tenant's tokens (its current key):
    /// for tests that need a well-signed token with chosen claims (a logout token with
    /// a `nonce`, for another audience, ...).
    pub fn sign_workforce_token(&self, claims: &serde_json::Value) -> String {
        provider::sign_for_tests(&self.shared, claims)
    }

    /// The `sub` the kit puts in tokens of user `username` for app `client_id` (Entra's
    /// pairwise subject).
    pub fn subject_of(&self, username: &str, client_id: &str) -> Option<String> {
        provider::subject_for_tests(&self.shared, username, client_id)
    }

    /// The issuer of the workforce tenant's v2.0 tokens on this kit.
    pub fn workforce_issuer(&self) -> String {
        format!("{}/v2.0", self.authority())
    }

    /// `{base}/msi/token`, the App Service-shaped managed identity endpoint (set it as
    /// `IDENTITY_ENDPOINT`, with [`IDENTITY_HEADER`] as `IDENTITY_HEADER`).
    pub fn app_service_identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.base_url())
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
