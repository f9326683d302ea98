//! Configuration of an [`Identity`](crate::Identity).

use crate::authority::Authority;
use crate::credential::{Certificate, ClientCredential, SecretAuthMethod};
use crate::error::Error;
use crate::federated::{
    ManagedIdentityAssertion, ManagedIdentityId, ManagedIdentitySource, TokenFileAssertion,
};
use crate::http::{HttpClient, Timeouts};
use crate::metadata::MetadataConfig;
use crate::types::{ClientId, ClientSecret};
use std::time::Duration;

/// The default redirect URI of the samples (as in the Python samples).
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:5000/getAToken";
/// The `REDIRECT_URI` value that selects device code sign-in (no redirect URI).
pub const NO_REDIRECT_URI: &str = "none";

/// B2C user flows besides sign-up/sign-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct B2cUserFlows {
    /// The edit-profile user flow (enables `/edit_profile`).
    pub edit_profile: Option<String>,
    /// The reset-password user flow (`AADB2C90118` hops to it).
    pub reset_password: Option<String>,
}

/// Everything an [`Identity`](crate::Identity) needs. Build with [`IdentityConfig::new`]
/// and the `with_*` methods, or read the samples' environment variables with
/// [`IdentityConfig::from_env`].
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// Application (client) id.
    pub client_id: ClientId,
    /// Client credential. [`ClientCredential::None`] makes a public client.
    pub credential: ClientCredential,
    /// Where the provider sends users back. `None` selects device code sign-in.
    pub redirect_uri: Option<String>,
    /// The authority.
    pub authority: Authority,
    /// B2C extra user flows.
    pub b2c: B2cUserFlows,
    /// Timeouts for every call to the provider.
    pub timeouts: Timeouts,
    /// Discovery and JWKS caching.
    pub metadata: MetadataConfig,
    /// A prepared HTTP client (proxies, DNS overrides, extra roots); `None` builds one.
    pub http_client: Option<HttpClient>,
    /// Allowed clock skew for token times; capped at 5 minutes. Default 120 s.
    pub clock_skew: Duration,
    /// Only these tenants (GUIDs) may sign in; empty allows any the authority allows.
    pub allowed_tenants: Vec<String>,
    /// Reject personal Microsoft accounts (work-or-school-only apps).
    pub reject_personal_accounts: bool,
    /// Client capabilities (e.g. `cp1` for continuous access evaluation).
    pub client_capabilities: Vec<String>,
    /// How long a started sign-in may take. Default 10 minutes.
    pub pending_login_ttl: Duration,
    /// Access tokens are renewed this long before they expire. Default 5 minutes.
    pub refresh_ahead: Duration,
    /// Microsoft Graph's base URL, for group memberships after a group overage. Default
    /// [`DEFAULT_GRAPH_ENDPOINT`]; `GRAPH_ENDPOINT` in the environment.
    pub graph_endpoint: String,
    /// The scopes of the token that reads group memberships. Default
    /// `https://graph.microsoft.com/GroupMember.Read.All` (a delegated permission that
    /// needs admin consent).
    pub group_scopes: crate::scopes::Scopes,
    /// How long a failed refresh (provider down, or the refresh token refused) is
    /// remembered: requests of the session during that time get the same answer without
    /// calling the provider (a signed-in user keeps the stale claims). Default 30 s.
    pub renewal_backoff: Duration,
    /// Most bearer tokens a web API keeps as validated (see [`crate::token_cache`]):
    /// a token seen again is served without a new signature check until it expires.
    /// Default [`DEFAULT_VALIDATED_TOKENS`](crate::token_cache::DEFAULT_VALIDATED_TOKENS);
    /// `0` checks every token in full.
    pub validated_token_cache: usize,
}

/// Microsoft Graph (global service).
pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com/v1.0";
/// The delegated permission group overage resolution uses.
pub const DEFAULT_GROUP_SCOPE: &str = "https://graph.microsoft.com/GroupMember.Read.All";

impl IdentityConfig {
    /// A configuration with defaults for everything but the app and the authority.
    pub fn new(client_id: impl Into<String>, authority: Authority) -> Self {
        Self {
            client_id: ClientId::new(client_id),
            credential: ClientCredential::None,
            redirect_uri: Some(DEFAULT_REDIRECT_URI.to_owned()),
            authority,
            b2c: B2cUserFlows::default(),
            timeouts: Timeouts::default(),
            metadata: MetadataConfig::default(),
            http_client: None,
            clock_skew: Duration::from_secs(120),
            allowed_tenants: Vec::new(),
            reject_personal_accounts: false,
            client_capabilities: Vec::new(),
            pending_login_ttl: Duration::from_secs(600),
            refresh_ahead: Duration::from_secs(300),
            graph_endpoint: DEFAULT_GRAPH_ENDPOINT.to_owned(),
            group_scopes: crate::scopes::Scopes::parse(DEFAULT_GROUP_SCOPE),
            renewal_backoff: Duration::from_secs(30),
            validated_token_cache: crate::token_cache::DEFAULT_VALIDATED_TOKENS,
        }
    }

    /// Sets a client secret (`client_secret_post`).
    pub fn with_client_secret(mut self, secret: impl Into<String>) -> Self {
        self.credential =
            ClientCredential::Secret(ClientSecret::new(secret), SecretAuthMethod::Post);
        self
    }

    /// Sets the credential.
    pub fn with_credential(mut self, credential: ClientCredential) -> Self {
        self.credential = credential;
        self
    }

    /// Sets the redirect URI (`None`: device code sign-in).
    pub fn with_redirect_uri(mut self, redirect_uri: Option<impl Into<String>>) -> Self {
        self.redirect_uri = redirect_uri.map(Into::into);
        self
    }

    /// Sets the B2C extra user flows.
    pub fn with_b2c_user_flows(mut self, flows: B2cUserFlows) -> Self {
        self.b2c = flows;
        self
    }

    /// Sets the timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Uses a prepared HTTP client.
    pub fn with_http_client(mut self, client: HttpClient) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Reads the configuration from the environment, as the samples do:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `CLIENT_ID`, `CLIENT_SECRET` | app registration (`AZURE_CLIENT_ID` is read when `CLIENT_ID` is unset) |
    /// | `CLIENT_CERTIFICATE`, `CLIENT_PRIVATE_KEY` | PEM files for `private_key_jwt` instead of a secret: the certificate (or chain; it may hold the key too, then `CLIENT_PRIVATE_KEY` can be left unset) and the key (RSA PKCS#8/PKCS#1, EC P-256/P-384 PKCS#8/SEC1) |
    /// | `CLIENT_CERTIFICATE_SEND_X5C` | `true`: send the certificate chain in `x5c` (subject name + issuer authentication) |
    /// | `AZURE_FEDERATED_TOKEN_FILE` | workload identity federation: the client assertion is read from this file at each token request |
    /// | `MANAGED_IDENTITY_CLIENT_ID` | a managed identity as federated credential: `system`, or a user-assigned identity's client id; the endpoint is found as MSAL does (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, else IMDS at `AZURE_POD_IDENTITY_AUTHORITY_HOST` or `169.254.169.254`) |
    /// | `TOKEN_EXCHANGE_AUDIENCE` | audience of managed identity assertions; default `api://AzureADTokenExchange` |
    /// | `AUTHORITY` | Entra ID or External ID authority URL (when unset with `AZURE_TENANT_ID` set: `{AZURE_AUTHORITY_HOST or https://login.microsoftonline.com}/{AZURE_TENANT_ID}`) |
    /// | `OIDC_AUTHORITY` | generic OIDC issuer (also External ID custom domain) |
    /// | `B2C_TENANT_NAME`, `SIGNUPSIGNIN_USER_FLOW`, `EDITPROFILE_USER_FLOW`, `RESETPASSWORD_USER_FLOW` | B2C |
    /// | `B2C_DOMAIN` | B2C host (custom domain, or a URL like `http://127.0.0.1:8080` for a local provider); default `{tenant}.b2clogin.com` |
    /// | `REDIRECT_URI` | absolute; default `http://localhost:5000/getAToken`; `none`: no redirect URI, users sign in with a device code (as the Python library does without a redirect URI) |
    /// | `GRAPH_ENDPOINT` | Microsoft Graph for group overage; default `https://graph.microsoft.com/v1.0` |
    ///
    /// One credential is used; when several are set the first of this list wins: a
    /// certificate, `CLIENT_SECRET`, `AZURE_FEDERATED_TOKEN_FILE`, `MANAGED_IDENTITY_CLIENT_ID`.
    /// Explicit app settings go first because the workload-identity webhook sets its
    /// variables in every pod of a service account, whatever the app means to use. None
    /// of them makes a public client.
    ///
    /// On failure the error is [`Error::Config`] whose `missing` lists the variables to set,
    /// so the configuration page can name them.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Like [`from_env`](Self::from_env) with a custom lookup (tests, figment, files).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut missing = Vec::new();
        let client_id = get("CLIENT_ID").or_else(|| get("AZURE_CLIENT_ID"));
        if client_id.is_none() {
            missing.push("CLIENT_ID".to_owned());
        }
        let authority = match (
            get("AUTHORITY"),
            get("OIDC_AUTHORITY"),
            get("B2C_TENANT_NAME"),
        ) {
            (Some(_), Some(_), _) => {
                return Err(Error::config(
                    "set either AUTHORITY or OIDC_AUTHORITY, not both",
                ));
            }
            (Some(a), None, _) => Some(Authority::parse(&a)?),
            (None, Some(o), _) => Some(Authority::oidc(&o)?),
            (None, None, Some(tenant)) => match get("SIGNUPSIGNIN_USER_FLOW") {
                Some(flow) => Some(match get("B2C_DOMAIN") {
                    Some(domain) => {
                        let instance = if domain.contains("://") {
                            domain
                        } else {
                            format!("https://{domain}")
                        };
                        Authority::b2c(&instance, &format!("{tenant}.onmicrosoft.com"), &flow)?
                    }
                    None => Authority::b2c_tenant(&tenant, &flow)?,
                }),
                None => {
                    missing.push("SIGNUPSIGNIN_USER_FLOW".to_owned());
                    None
                }
            },
            (None, None, None) => match get("AZURE_TENANT_ID") {
                // Set by the Azure workload-identity webhook, with AZURE_AUTHORITY_HOST.
                Some(tenant) => {
                    let host = get("AZURE_AUTHORITY_HOST")
                        .unwrap_or_else(|| "https://login.microsoftonline.com".to_owned());
                    Some(Authority::parse(&format!(
                        "{}/{}",
                        host.trim_end_matches('/'),
                        tenant.trim()
                    ))?)
                }
                None => {
                    missing.push("AUTHORITY (or OIDC_AUTHORITY, or B2C_TENANT_NAME)".to_owned());
                    None
                }
            },
        };
        let (Some(client_id), Some(authority)) = (client_id, authority) else {
            return Err(Error::Config {
                message: format!("missing settings: {}", missing.join(", ")),
                missing,
            });
        };
        let mut config = Self::new(client_id, authority);
        config.credential = credential_from_lookup(&get)?;
        config.redirect_uri = match get("REDIRECT_URI") {
            Some(v) if v.trim().eq_ignore_ascii_case(NO_REDIRECT_URI) => None,
            Some(v) => Some(v),
            None => Some(DEFAULT_REDIRECT_URI.to_owned()),
        };
        if let Some(graph) = get("GRAPH_ENDPOINT") {
            config.graph_endpoint = graph;
        }
        config.b2c = B2cUserFlows {
            edit_profile: get("EDITPROFILE_USER_FLOW"),
            reset_password: get("RESETPASSWORD_USER_FLOW"),
        };
        Ok(config)
    }
}

/// The credential the settings describe (see [`IdentityConfig::from_env`] for the order).
fn credential_from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<ClientCredential, Error> {
    let read = |p: &str| {
        std::fs::read_to_string(p).map_err(|e| Error::config(format!("cannot read {p}: {e}")))
    };
    if let Some(cert_path) = get("CLIENT_CERTIFICATE") {
        let cert_pem = read(&cert_path)?;
        let key_pem = match get("CLIENT_PRIVATE_KEY") {
            Some(key_path) => read(&key_path)?,
            None => cert_pem.clone(),
        };
        let send_x5c = get("CLIENT_CERTIFICATE_SEND_X5C")
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
            .unwrap_or(false);
        let cert = Certificate::from_pem(&key_pem, &cert_pem)
            .map_err(|e| Error::config(format!("CLIENT_CERTIFICATE / CLIENT_PRIVATE_KEY: {e}")))?
            .with_send_x5c(send_x5c);
        return Ok(ClientCredential::Certificate(Box::new(cert)));
    }
    if let Some(secret) = get("CLIENT_SECRET") {
        return Ok(ClientCredential::Secret(
            ClientSecret::new(secret),
            SecretAuthMethod::Post,
        ));
    }
    if let Some(path) = get("AZURE_FEDERATED_TOKEN_FILE") {
        return Ok(ClientCredential::Assertion(std::sync::Arc::new(
            TokenFileAssertion::new(path),
        )));
    }
    if let Some(id) = get("MANAGED_IDENTITY_CLIENT_ID") {
        let source = ManagedIdentitySource::from_lookup(get);
        let mut assertion = ManagedIdentityAssertion::new(source, ManagedIdentityId::parse(&id))?;
        if let Some(audience) = get("TOKEN_EXCHANGE_AUDIENCE") {
            assertion = assertion.with_audience(audience);
        }
        return Ok(ClientCredential::Assertion(std::sync::Arc::new(assertion)));
    }
    Ok(ClientCredential::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn missing_settings_are_named() {
        match IdentityConfig::from_lookup(lookup(&[])) {
            Err(Error::Config { missing, .. }) => {
                assert_eq!(missing.len(), 2);
                assert!(missing[0].contains("CLIENT_ID"));
                assert!(missing[1].contains("AUTHORITY"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redirect_uri_none_selects_device_code_sign_in() {
        let base = [
            ("CLIENT_ID", "x"),
            ("AUTHORITY", "https://login.microsoftonline.com/common"),
        ];
        let with = |v: &'static str| {
            let mut pairs = base.to_vec();
            pairs.push(("REDIRECT_URI", v));
            IdentityConfig::from_lookup(lookup(&pairs)).unwrap()
        };
        assert_eq!(with("None").redirect_uri, None);
        assert_eq!(
            with("https://app.contoso.com/getAToken")
                .redirect_uri
                .as_deref(),
            Some("https://app.contoso.com/getAToken")
        );
        let unset = IdentityConfig::from_lookup(lookup(&base)).unwrap();
        assert_eq!(unset.redirect_uri.as_deref(), Some(DEFAULT_REDIRECT_URI));
    }

    #[test]
    fn both_authorities_is_an_error() {
        let r = IdentityConfig::from_lookup(lookup(&[
            ("CLIENT_ID", "x"),
            ("AUTHORITY", "https://login.microsoftonline.com/common"),
            ("OIDC_AUTHORITY", "https://example.com/t"),
        ]));
        assert!(matches!(r, Err(Error::Config { .. })));
    }

    #[test]
    fn b2c_from_env() {
        let c = IdentityConfig::from_lookup(lookup(&[
            ("CLIENT_ID", "x"),
            ("CLIENT_SECRET", "s"),
            ("B2C_TENANT_NAME", "contoso"),
            ("SIGNUPSIGNIN_USER_FLOW", "B2C_1_susi"),
            ("EDITPROFILE_USER_FLOW", "B2C_1_edit"),
        ]))
        .unwrap();
        assert!(c.authority.is_b2c());
        assert_eq!(c.b2c.edit_profile.as_deref(), Some("B2C_1_edit"));
        assert_eq!(c.redirect_uri.as_deref(), Some(DEFAULT_REDIRECT_URI));
        assert!(c.credential.is_confidential());
        assert!(!format!("{c:?}").contains("\"s\""));
    }

    #[test]
    fn workload_identity_variables_configure_the_app() {
        let c = IdentityConfig::from_lookup(lookup(&[
            ("AZURE_CLIENT_ID", "wi-client"),
            ("AZURE_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
        ]))
        .unwrap();
        assert_eq!(c.client_id.as_str(), "wi-client");
        assert_eq!(
            c.authority.url().as_str(),
            "https://login.microsoftonline.com/aaaabbbb-0000-cccc-1111-dddd2222eeee"
        );
        assert!(matches!(c.credential, ClientCredential::Assertion(_)));
        // Explicit settings win over what the webhook injects.
        let c = IdentityConfig::from_lookup(lookup(&[
            ("CLIENT_ID", "mine"),
            ("AZURE_CLIENT_ID", "wi-client"),
            (
                "AUTHORITY",
                "https://login.microsoftonline.com/contoso.onmicrosoft.com",
            ),
            ("AZURE_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),
            ("CLIENT_SECRET", "s"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/tmp/t"),
        ]))
        .unwrap();
        assert_eq!(c.client_id.as_str(), "mine");
        assert!(c
            .authority
            .url()
            .as_str()
            .contains("contoso.onmicrosoft.com"));
        assert!(matches!(c.credential, ClientCredential::Secret(..)));
    }

    #[test]
    fn managed_identity_is_a_credential_source() {
        let c = IdentityConfig::from_lookup(lookup(&[
            ("CLIENT_ID", "x"),
            ("AUTHORITY", "https://login.microsoftonline.com/common"),
            ("MANAGED_IDENTITY_CLIENT_ID", "system"),
        ]))
        .unwrap();
        assert!(c.credential.is_confidential());
        assert!(matches!(c.credential, ClientCredential::Assertion(_)));
        let r = IdentityConfig::from_lookup(lookup(&[
            ("CLIENT_ID", "x"),
            ("AUTHORITY", "https://login.microsoftonline.com/common"),
            ("CLIENT_CERTIFICATE", "/nonexistent/cert.pem"),
        ]));
        assert!(
            matches!(r, Err(Error::Config { message, .. }) if message.contains("/nonexistent/cert.pem"))
        );
    }
}
