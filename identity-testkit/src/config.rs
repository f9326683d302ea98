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

/// The issuer of the default federated credential (a Kubernetes cluster's OIDC issuer);
/// the testkit holds its signing key ([`crate::TestKit::federated_token`]).
pub const FEDERATION_ISSUER: &str =
    "https://oidc.prod-aks.azure.com/aaaa0000-bbbb-1111-cccc-2222dddd3333/";
/// The subject of the default federated credential (a Kubernetes service account).
pub const FEDERATION_SUBJECT: &str = "system:serviceaccount:default:contoso-web";
/// The audience Entra expects in federated assertions.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Client id of the default system-assigned managed identity.
pub const SYSTEM_MANAGED_IDENTITY_CLIENT_ID: &str = "55556666-ffff-7777-aaaa-8888bbbb9999";
/// Object (principal) id of the default system-assigned managed identity.
pub const SYSTEM_MANAGED_IDENTITY_PRINCIPAL_ID: &str = "66667777-aaaa-8888-bbbb-9999cccc0000";
/// Client id of the default user-assigned managed identity.
pub const USER_MANAGED_IDENTITY_CLIENT_ID: &str = "77778888-bbbb-9999-cccc-0000dddd1111";
/// Object (principal) id of the default user-assigned managed identity.
pub const USER_MANAGED_IDENTITY_PRINCIPAL_ID: &str = "88889999-cccc-0000-dddd-1111eeee2222";
/// The default `IDENTITY_HEADER` secret of the App Service-shaped endpoint.
pub const IDENTITY_HEADER: &str = "testkit-identity-header";

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

/// A federated identity credential of an app: tokens of `issuer` for `subject` with one
/// of `audiences` are accepted as its client assertion (compared case-sensitively, as at
/// Entra).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FederatedCredential {
    /// The token issuer, e.g. a cluster's OIDC issuer URL.
    pub issuer: String,
    /// The token subject, e.g. `system:serviceaccount:{namespace}:{name}`.
    pub subject: String,
    /// Accepted audiences; default `api://AzureADTokenExchange`.
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
}

fn default_audiences() -> Vec<String> {
    vec![TOKEN_EXCHANGE_AUDIENCE.into()]
}

/// Subject name and issuer trust: a certificate sent in the assertion's `x5c` is
/// accepted when its subject common name is `subject` and it is signed by the CA
/// certificate `issuer_certificate` (PEM). Validity dates are not checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrustedCertificateSubject {
    /// The certificate subject's common name (CN).
    pub subject: String,
    /// The issuing CA's certificate (PEM).
    pub issuer_certificate: String,
}

/// An issuer of federated assertions the testkit knows the keys of.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FederationIssuer {
    /// The issuer (`iss`).
    pub issuer: String,
    /// Its public keys (SPKI PEM). Empty: the testkit holds the issuer's signing key and
    /// mints its tokens ([`crate::TestKit::federated_token`]).
    #[serde(default)]
    pub public_keys: Vec<String>,
}

/// A custom URL domain of an External ID tenant (e.g. `login.contoso.com`): the tenant's
/// endpoints are served on this host while tokens keep the issuer
/// `https://{tenant id}.ciamlogin.com/{tenant id}/v2.0`, as at Entra.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustomDomain {
    /// The host name (no port).
    pub host: String,
    /// The External ID tenant it serves.
    pub tenant_id: String,
}

/// The default custom URL domain of the External ID tenant.
pub const CUSTOM_DOMAIN: &str = "login.contoso.com";

/// A managed identity of the host the testkit plays (IMDS and App Service shapes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestManagedIdentity {
    /// Client id.
    pub client_id: String,
    /// Object (principal) id: the `sub` and `oid` of its tokens.
    pub principal_id: String,
    /// Azure resource id (for `msi_res_id` / `mi_res_id`).
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Tenant of the identity.
    pub tenant_id: String,
    /// The system-assigned identity (used when a request names none).
    #[serde(default)]
    pub system_assigned: bool,
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
    /// Federated identity credentials (workload identity, managed identity).
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredential>,
    /// Certificate subjects trusted with their issuer (`x5c` assertions).
    #[serde(default)]
    pub trusted_certificate_subjects: Vec<TrustedCertificateSubject>,
    /// The "Front-channel logout URL": on sign-out, the testkit's page loads it in a
    /// hidden iframe with `?sid=` (only `sid`, as Entra sends it) for every provider
    /// session the app signed in with.
    #[serde(default)]
    pub frontchannel_logout_uri: Option<String>,
    /// Back-channel logout URI: on sign-out, the testkit POSTs a signed `logout_token`
    /// (OpenID Connect Back-Channel Logout 1.0) to it before answering.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
}

fn yes() -> bool {
    true
}

impl TestApp {
    /// Whether the app must authenticate at the token endpoint.
    pub fn is_confidential(&self) -> bool {
        self.client_secret.is_some()
            || !self.public_keys.is_empty()
            || !self.federated_credentials.is_empty()
            || !self.trusted_certificate_subjects.is_empty()
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
    /// Issuers of federated assertions whose keys the testkit knows.
    pub federation_issuers: Vec<FederationIssuer>,
    /// Managed identities served by `/metadata/identity/oauth2/token` (IMDS shape) and
    /// `/msi/token` (App Service shape).
    pub managed_identities: Vec<TestManagedIdentity>,
    /// The `IDENTITY_HEADER` secret the App Service shape requires.
    pub identity_header: String,
    /// Custom URL domains of External ID tenants (also added to the TLS certificate).
    pub custom_domains: Vec<CustomDomain>,
    /// More groups than this give ID tokens a group overage (`_claim_names`) instead of
    /// `groups`; default 200, Entra's limit for JWTs.
    pub group_overage_limit: usize,
    /// Lifetime of managed identity tokens; default 86399 s like Azure.
    #[serde(with = "secs")]
    pub managed_identity_token_lifetime: Duration,
    /// Refresh tokens are single use: a refresh token redeemed a second time answers
    /// `invalid_grant` and revokes every refresh token of its grant, as providers that
    /// rotate refresh tokens do. Default `false` (Entra keeps used refresh tokens valid).
    pub refresh_token_reuse_detection: bool,
    /// Client ids of web APIs whose registration leaves `accessTokenAcceptedVersion`
    /// unset: their access tokens are v1.0 (`iss` `https://sts.windows.net/{tid}/` or
    /// `{base}/{tid}/`, `appid`, no `azp`), signed by the same keys. Default empty.
    pub v1_access_token_apps: Vec<String>,
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
        let mut grace = user(
            "grace@contoso.onmicrosoft.com",
            "Grace Taylor",
            "33dd33dd-ee44-ff55-aa66-77bb77bb77bb",
            WORKFORCE_TENANT_ID,
        );
        grace.groups = (0..250)
            .map(|i| format!("{i:08x}-7e7e-4c4c-9d9d-0a0a0a0a0a0a"))
            .collect();
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
            grace,
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
                federated_credentials: vec![
                    FederatedCredential {
                        issuer: FEDERATION_ISSUER.into(),
                        subject: FEDERATION_SUBJECT.into(),
                        audiences: default_audiences(),
                    },
                    FederatedCredential {
                        issuer: format!(
                            "https://login.microsoftonline.com/{WORKFORCE_TENANT_ID}/v2.0"
                        ),
                        subject: SYSTEM_MANAGED_IDENTITY_PRINCIPAL_ID.into(),
                        audiences: default_audiences(),
                    },
                    FederatedCredential {
                        issuer: format!(
                            "https://login.microsoftonline.com/{WORKFORCE_TENANT_ID}/v2.0"
                        ),
                        subject: USER_MANAGED_IDENTITY_PRINCIPAL_ID.into(),
                        audiences: default_audiences(),
                    },
                ],
                trusted_certificate_subjects: vec![],
                frontchannel_logout_uri: None,
                backchannel_logout_uri: None,
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
                federated_credentials: vec![],
                trusted_certificate_subjects: vec![],
                frontchannel_logout_uri: None,
                backchannel_logout_uri: None,
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
                federated_credentials: vec![],
                trusted_certificate_subjects: vec![],
                frontchannel_logout_uri: None,
                backchannel_logout_uri: None,
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
            federation_issuers: vec![FederationIssuer {
                issuer: FEDERATION_ISSUER.into(),
                public_keys: vec![],
            }],
            managed_identities: vec![
                TestManagedIdentity {
                    client_id: SYSTEM_MANAGED_IDENTITY_CLIENT_ID.into(),
                    principal_id: SYSTEM_MANAGED_IDENTITY_PRINCIPAL_ID.into(),
                    resource_id: None,
                    tenant_id: WORKFORCE_TENANT_ID.into(),
                    system_assigned: true,
                },
                TestManagedIdentity {
                    client_id: USER_MANAGED_IDENTITY_CLIENT_ID.into(),
                    principal_id: USER_MANAGED_IDENTITY_PRINCIPAL_ID.into(),
                    resource_id: Some("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/contoso/providers/Microsoft.ManagedIdentity/userAssignedIdentities/contoso-web".into()),
                    tenant_id: WORKFORCE_TENANT_ID.into(),
                    system_assigned: false,
                },
            ],
            identity_header: IDENTITY_HEADER.into(),
            group_overage_limit: 200,
            custom_domains: vec![CustomDomain {
                host: CUSTOM_DOMAIN.into(),
                tenant_id: EXTERNAL_ID_TENANT_ID.into(),
            }],
            managed_identity_token_lifetime: Duration::from_secs(86399),
            refresh_token_reuse_detection: false,
            v1_access_token_apps: vec![],
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
    /// Registers the default web app's front-channel logout URL.
    pub fn with_frontchannel_logout_uri(mut self, uri: impl Into<String>) -> Self {
        if let Some(app) = self.apps.first_mut() {
            app.frontchannel_logout_uri = Some(uri.into());
        }
        self
    }
    /// Registers the default web app's back-channel logout URI.
    pub fn with_backchannel_logout_uri(mut self, uri: impl Into<String>) -> Self {
        if let Some(app) = self.apps.first_mut() {
            app.backchannel_logout_uri = Some(uri.into());
        }
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
