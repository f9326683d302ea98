//! Configuration: tenants, users, apps, lifetimes.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The fixed tenant id of personal Microsoft accounts (MSA), as at Entra.
pub const CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// The application id of Microsoft Graph, the `aud` of Graph access tokens.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Default workforce tenant id.
pub const WORKFORCE_TENANT_ID: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
/// Default B2C tenant id.
pub const B2C_TENANT_ID: &str = "775527ff-9a37-4307-8b3d-cc311f58d925";
/// Default External ID (CIAM) tenant id.
pub const EXTERNAL_ID_TENANT_ID: &str = "11112222-bbbb-3333-cccc-4444dddd5555";
/// Default web app client id.
pub const WEB_APP_CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
/// Default web app client secret.
pub const WEB_APP_SECRET: &str = "testkit-secret";
/// Default web API client id.
pub const API_APP_CLIENT_ID: &str = "22223333-cccc-4444-dddd-5555eeee6666";
/// Default web API client secret.
pub const API_APP_SECRET: &str = "api-secret";
/// Default public client (no secret) id, for device code and native-app tests.
pub const PUBLIC_APP_CLIENT_ID: &str = "33334444-dddd-5555-eeee-6666ffff7777";

/// The kind of a tenant, which decides its URL shapes, issuer and claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantKind {
    /// A Microsoft Entra ID workforce tenant (`login.microsoftonline.com/{tenant}`).
    Workforce,
    /// The personal Microsoft account tenant (`consumers`, fixed id `9188040d-…`).
    Consumers,
    /// A Microsoft Entra External ID (CIAM) tenant (`{sub}.ciamlogin.com`).
    ExternalId,
    /// An Azure AD B2C tenant with user flows (`{name}.b2clogin.com`).
    B2c,
}

/// A tenant served by the testkit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestTenant {
    /// What kind of tenant this is.
    pub kind: TenantKind,
    /// Tenant id (a GUID).
    pub id: String,
    /// Primary domain, e.g. `contoso.onmicrosoft.com`.
    pub domain: String,
    /// Short name: the B2C tenant name or the External ID subdomain (e.g. `contosob2c`).
    pub name: String,
    /// B2C user flows (policies), as named in claims (e.g. `B2C_1_signupsignin1`).
    /// A name containing `passwordreset`/`password_reset` is a reset flow; one
    /// containing `profileedit`/`profile_edit` is an edit-profile flow.
    #[serde(default)]
    pub policies: Vec<String>,
}

/// A user who can sign in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestUser {
    /// Sign-in name (UPN / e-mail), also `preferred_username`.
    pub username: String,
    /// Password accepted on the sign-in page and the device-code page.
    pub password: String,
    /// Display name (`name` claim).
    pub display_name: String,
    /// Given name.
    #[serde(default)]
    pub given_name: String,
    /// Surname.
    #[serde(default)]
    pub surname: String,
    /// Object id (`oid`).
    pub oid: String,
    /// Id of the user's home tenant (one of the configured tenants).
    pub tenant_id: String,
    /// E-mail address (`email` claim, B2C `emails`).
    #[serde(default)]
    pub email: Option<String>,
    /// App roles (`roles` claim of ID tokens).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Group object ids (`groups` claim).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// An app role granted to a client app on a resource (for client credentials).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppRoleGrant {
    /// The resource: a client id, an App ID URI, or `https://graph.microsoft.com`.
    pub resource: String,
    /// The role value, e.g. `Data.Read.All`.
    pub role: String,
}

/// An app registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestApp {
    /// Application (client) id.
    pub client_id: String,
    /// Display name (appears in consent pages and AADSTS65001 texts).
    pub name: String,
    /// Client secret; `None` with no `public_keys` makes it a public client.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Registered redirect URIs (exact match).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Accept `http://localhost:{any port}{registered path}` and the same on
    /// `127.0.0.1`, like Entra's loopback rule.
    #[serde(default = "yes")]
    pub allow_loopback_any_port: bool,
    /// Registered post-logout redirect URIs (home pages). Redirect URIs are
    /// accepted too, as at Entra.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Public keys (SPKI PEM, `-----BEGIN PUBLIC KEY-----`) accepted for `private_key_jwt`.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// App ID URI of a web API (e.g. `api://{client_id}`).
    #[serde(default)]
    pub app_id_uri: Option<String>,
    /// Delegated scopes the app exposes as a web API (e.g. `access_as_user`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// App roles the app defines as a web API (e.g. `Data.Read.All`).
    #[serde(default)]
    pub app_roles: Vec<String>,
    /// App roles granted to this app on resources (client credentials `roles`).
    #[serde(default)]
    pub granted_app_roles: Vec<AppRoleGrant>,
}

fn yes() -> bool {
    true
}

impl TestApp {
    /// Whether the app must authenticate at the token endpoint.
    pub fn is_confidential(&self) -> bool {
        self.client_secret.is_some() || !self.public_keys.is_empty()
    }
}

/// TLS settings: the testkit acts as its own certificate authority.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TlsConfig {
    /// Directory holding `ca.pem` and `ca.key`. When they exist the CA is reused
    /// (so clients keep trusting it across runs); when the directory is set but
    /// empty they are created there. `None`: a fresh CA per start.
    #[serde(default)]
    pub ca_dir: Option<PathBuf>,
    /// Extra DNS names / IP addresses for the server certificate (added to
    /// `localhost`, `127.0.0.1`, `login.microsoftonline.com`, `login.windows.net`,
    /// `graph.microsoft.com`, `*.b2clogin.com`, `*.ciamlogin.com`).
    #[serde(default)]
    pub extra_names: Vec<String>,
}

/// Everything the testkit serves. `Default` gives the tenants, users and apps
/// described in the crate documentation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct TestKitConfig {
    /// Listen address; default `127.0.0.1:0` (a free port).
    pub addr: SocketAddr,
    /// Tenants.
    pub tenants: Vec<TestTenant>,
    /// Users.
    pub users: Vec<TestUser>,
    /// App registrations.
    pub apps: Vec<TestApp>,
    /// ID token lifetime (`exp - iat`); default 3900 s like Entra.
    #[serde(with = "secs")]
    pub id_token_lifetime: Duration,
    /// Access token lifetime (`expires_in`); default 3599 s.
    #[serde(with = "secs")]
    pub access_token_lifetime: Duration,
    /// Authorization code lifetime; default 300 s. Codes are single use.
    #[serde(with = "secs")]
    pub code_lifetime: Duration,
    /// Device code lifetime; default 900 s.
    #[serde(with = "secs")]
    pub device_code_lifetime: Duration,
    /// Headless mode: `/authorize` signs this user in at once (or the user named
    /// by `login_hint` when that user belongs to the authority) and grants consent.
    pub auto_approve: Option<String>,
    /// Serve HTTPS with a generated CA.
    pub tls: Option<TlsConfig>,
    /// Scopes that need multi-factor authentication: a refresh token from a
    /// sign-in without MFA gets `interaction_required` (50076) with a claims challenge.
    pub mfa_scopes: Vec<String>,
    /// Scopes every user has consented to for every app (`User.Read` style for
    /// Graph, full URIs for other APIs). Others need the consent page.
    pub consented_scopes: Vec<String>,
    /// Scopes whose consent never sticks (as when only an administrator may grant
    /// them): the consent page accepts them, the code grant issues them, but a refresh
    /// for them answers `consent_required` again. Drives consent-loop tests.
    pub consent_withheld_scopes: Vec<String>,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

impl Default for TestKitConfig {
    fn default() -> Self {
        let tenants = vec![
            TestTenant {
                kind: TenantKind::Workforce,
                id: WORKFORCE_TENANT_ID.into(),
                domain: "contoso.onmicrosoft.com".into(),
                name: "contoso".into(),
                policies: vec![],
            },
            TestTenant {
                kind: TenantKind::Consumers,
                id: CONSUMERS_TENANT_ID.into(),
                domain: "live.com".into(),
                name: "consumers".into(),
                policies: vec![],
            },
            TestTenant {
                kind: TenantKind::B2c,
                id: B2C_TENANT_ID.into(),
                domain: "contosob2c.onmicrosoft.com".into(),
                name: "contosob2c".into(),
                policies: vec![
                    "B2C_1_signupsignin1".into(),
                    "B2C_1_profileediting1".into(),
                    "B2C_1_passwordreset1".into(),
                ],
            },
            TestTenant {
                kind: TenantKind::ExternalId,
                id: EXTERNAL_ID_TENANT_ID.into(),
                domain: "contosoext.onmicrosoft.com".into(),
                name: "contosoext".into(),
                policies: vec![],
            },
        ];
        let user = |username: &str, name: &str, oid: &str, tenant: &str| {
            let mut parts = name.splitn(2, ' ');
            TestUser {
                username: username.into(),
                password: "password".into(),
                display_name: name.into(),
                given_name: parts.next().unwrap_or_default().into(),
                surname: parts.next().unwrap_or_default().into(),
                oid: oid.into(),
                tenant_id: tenant.into(),
                email: Some(username.into()),
                roles: vec![],
                groups: vec![],
            }
        };
        let mut adele = user(
            "adele@contoso.onmicrosoft.com",
            "Adele Vance",
            "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
            WORKFORCE_TENANT_ID,
        );
        adele.roles = vec!["Reader".into()];
        adele.groups = vec!["5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c".into()];
        let users = vec![
            adele,
            user(
                "alex@contoso.onmicrosoft.com",
                "Alex Wilber",
                "11bb11bb-cc22-dd33-ee44-55ff55ff55ff",
                WORKFORCE_TENANT_ID,
            ),
            user(
                "megan@outlook.com",
                "Megan Bowen",
                "00000000-0000-0000-66f3-3332eca7ea81",
                CONSUMERS_TENANT_ID,
            ),
            user(
                "bob@contoso.com",
                "Bob B2C",
                "52f6cad9-b822-4492-b742-e60cd2d55ee2",
                B2C_TENANT_ID,
            ),
            user(
                "carol@example.com",
                "Carol Customer",
                "22cc22cc-dd33-ee44-ff55-66aa66aa66aa",
                EXTERNAL_ID_TENANT_ID,
            ),
        ];
        let apps = vec![
            TestApp {
                client_id: WEB_APP_CLIENT_ID.into(),
                name: "Contoso Web App".into(),
                client_secret: Some(WEB_APP_SECRET.into()),
                redirect_uris: vec![
                    "http://localhost:5000/getAToken".into(),
                    "http://127.0.0.1:5000/getAToken".into(),
                ],
                allow_loopback_any_port: true,
                post_logout_redirect_uris: vec![
                    "http://localhost:5000/".into(),
                    "http://127.0.0.1:5000/".into(),
                ],
                public_keys: vec![],
                app_id_uri: None,
                scopes: vec![],
                app_roles: vec![],
                granted_app_roles: vec![AppRoleGrant {
                    resource: format!("api://{API_APP_CLIENT_ID}"),
                    role: "Data.Read.All".into(),
                }],
            },
            TestApp {
                client_id: API_APP_CLIENT_ID.into(),
                name: "Contoso Web API".into(),
                client_secret: Some(API_APP_SECRET.into()),
                redirect_uris: vec![],
                allow_loopback_any_port: true,
                post_logout_redirect_uris: vec![],
                public_keys: vec![],
                app_id_uri: Some(format!("api://{API_APP_CLIENT_ID}")),
                scopes: vec!["access_as_user".into()],
                app_roles: vec!["Data.Read.All".into()],
                granted_app_roles: vec![],
            },
            TestApp {
                client_id: PUBLIC_APP_CLIENT_ID.into(),
                name: "Contoso CLI".into(),
                client_secret: None,
                redirect_uris: vec!["http://localhost".into()],
                allow_loopback_any_port: true,
                post_logout_redirect_uris: vec![],
                public_keys: vec![],
                app_id_uri: None,
                scopes: vec![],
                app_roles: vec![],
                granted_app_roles: vec![],
            },
        ];
        TestKitConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenants,
            users,
            apps,
            id_token_lifetime: Duration::from_secs(3900),
            access_token_lifetime: Duration::from_secs(3599),
            code_lifetime: Duration::from_secs(300),
            device_code_lifetime: Duration::from_secs(900),
            auto_approve: None,
            tls: None,
            mfa_scopes: vec!["Files.ReadWrite.All".into()],
            consented_scopes: vec![
                "openid".into(),
                "profile".into(),
                "offline_access".into(),
                "email".into(),
                "User.Read".into(),
                format!("api://{API_APP_CLIENT_ID}/access_as_user"),
            ],
            consent_withheld_scopes: vec![],
        }
    }
}

impl TestKitConfig {
    /// Headless mode: sign `username` in without pages (see [`TestKitConfig::auto_approve`]).
    pub fn with_auto_approve(mut self, username: impl Into<String>) -> Self {
        self.auto_approve = Some(username.into());
        self
    }
    /// Listen on `addr`.
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }
    /// Set the ID token lifetime.
    pub fn with_id_token_lifetime(mut self, d: Duration) -> Self {
        self.id_token_lifetime = d;
        self
    }
    /// Set the access token lifetime.
    pub fn with_access_token_lifetime(mut self, d: Duration) -> Self {
        self.access_token_lifetime = d;
        self
    }
    /// Serve HTTPS with a fresh CA.
    pub fn with_tls(mut self) -> Self {
        self.tls = Some(TlsConfig::default());
        self
    }
    /// Add a redirect URI to the default web app.
    pub fn with_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        if let Some(app) = self.apps.first_mut() {
            app.redirect_uris.push(uri.into());
        }
        self
    }
    /// Withholds consent for `scope` (see [`TestKitConfig::consent_withheld_scopes`]).
    pub fn with_consent_withheld(mut self, scope: impl Into<String>) -> Self {
        self.consent_withheld_scopes.push(scope.into());
        self
    }
    /// Add a post-logout redirect URI (a home page) to the default web app.
    pub fn with_post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        if let Some(app) = self.apps.first_mut() {
            app.post_logout_redirect_uris.push(uri.into());
        }
        self
    }
    /// Add a user.
    pub fn with_user(mut self, user: TestUser) -> Self {
        self.users.push(user);
        self
    }
    /// Add an app registration.
    pub fn with_app(mut self, app: TestApp) -> Self {
        self.apps.push(app);
        self
    }
    /// Add (or replace, by client id) an app registration.
    pub fn with_app_replaced(mut self, app: TestApp) -> Self {
        self.apps.retain(|a| a.client_id != app.client_id);
        self.apps.push(app);
        self
    }
    /// The default web app (the first app).
    pub fn default_app(&self) -> Option<&TestApp> {
        self.apps.first()
    }
}
