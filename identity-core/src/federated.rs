//! Secretless app credentials: client assertions the app does not sign itself.
//!
//! An app registration can trust tokens of another issuer instead of a secret or a
//! certificate (a *federated identity credential*: issuer, subject, audience). The app
//! then authenticates to the token endpoint with `client_assertion` set to such a token
//! and `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! exactly as with a certificate. Two sources are built in, both plugged in as
//! [`ClientCredential::Assertion`](crate::ClientCredential::Assertion):
//!
//! * [`TokenFileAssertion`]: **workload identity federation** on Kubernetes. The Azure
//!   workload-identity webhook projects a service-account token into the pod and sets
//!   `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` (and
//!   `AZURE_AUTHORITY_HOST`). The file is read again at every token request (tokens are
//!   cached, so that is rare), so a rotated file is used at once; a file that is missing or
//!   empty is an error naming the path.
//! * [`ManagedIdentityAssertion`]: **a managed identity as a federated credential**. The
//!   assertion is a token for the audience `api://AzureADTokenExchange` from the managed
//!   identity endpoint of the host: the Azure Instance Metadata Service
//!   (`GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…`, header
//!   `Metadata: true`; `AZURE_POD_IDENTITY_AUTHORITY_HOST` overrides its address), or, when
//!   `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set (App Service, Functions, Container
//!   Apps), that endpoint (`api-version=2019-08-01`, header `X-IDENTITY-HEADER`). This is
//!   how MSAL picks the source. The token is cached and renewed
//!   [`ASSERTION_RENEW_AHEAD`] before it expires; concurrent requests share one fetch.
//!   Calls to the endpoint use no HTTP proxy (the endpoint is local to the host).
//!
//! [`IdentityConfig::from_env`](crate::IdentityConfig::from_env) builds either from the
//! environment; see the table there and the tenant guide (`docs/tenants.md`).

use crate::credential::AssertionProvider;
use crate::error::{Error, FetchFailure};
use crate::http::{HttpClient, Timeouts};
use async_trait::async_trait;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The audience of tokens that Entra accepts as federated credentials (public cloud).
/// Sovereign clouds use `api://AzureADTokenExchangeUSGov` and
/// `api://AzureADTokenExchangeChina`.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The address of the Azure Instance Metadata Service.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// A cached managed identity token is renewed this long before it expires.
pub const ASSERTION_RENEW_AHEAD: Duration = Duration::from_secs(300);

/// Workload identity federation: the client assertion is the token in a file (the
/// Kubernetes service-account token the Azure workload-identity webhook projects).
#[derive(Clone, Debug)]
pub struct TokenFileAssertion {
    path: PathBuf,
}

impl TokenFileAssertion {
    /// Reads assertions from `path` (`AZURE_FEDERATED_TOKEN_FILE`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current token of the file.
    pub fn read(&self) -> Result<String, String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            format!(
                "cannot read the federated token file {} (AZURE_FEDERATED_TOKEN_FILE): {e}",
                self.path.display()
            )
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!(
                "the federated token file {} (AZURE_FEDERATED_TOKEN_FILE) is empty",
                self.path.display()
            ));
        }
        Ok(token.to_owned())
    }
}

#[async_trait]
impl AssertionProvider for TokenFileAssertion {
    async fn assertion(&self, _audience: &str) -> Result<String, String> {
        self.read()
    }
}

/// Which managed identity of the host to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagedIdentityId {
    /// The system-assigned identity.
    SystemAssigned,
    /// A user-assigned identity by client id.
    ClientId(String),
    /// A user-assigned identity by object (principal) id.
    ObjectId(String),
    /// A user-assigned identity by Azure resource id.
    ResourceId(String),
}

impl ManagedIdentityId {
    /// Reads `MANAGED_IDENTITY_CLIENT_ID`: `system` for the system-assigned identity, else
    /// the client id of a user-assigned identity.
    pub fn parse(value: &str) -> Self {
        let value = value.trim();
        if value.eq_ignore_ascii_case("system") || value.eq_ignore_ascii_case("system-assigned") {
            Self::SystemAssigned
        } else {
            Self::ClientId(value.to_owned())
        }
    }
}

/// Where the host serves managed identity tokens.
#[derive(Clone)]
pub enum ManagedIdentitySource {
    /// The Azure Instance Metadata Service (VMs, scale sets, AKS nodes): the base URL,
    /// normally [`DEFAULT_IMDS_ENDPOINT`].
    Imds {
        /// Base URL, e.g. `http://169.254.169.254`.
        endpoint: String,
    },
    /// App Service, Functions, Container Apps: `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
    AppService {
        /// `IDENTITY_ENDPOINT`, the full token URL.
        endpoint: String,
        /// `IDENTITY_HEADER`, sent as `X-IDENTITY-HEADER` (a secret; never printed).
        header: String,
    },
}

impl fmt::Debug for ManagedIdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Imds { endpoint } => f.debug_struct("Imds").field("endpoint", endpoint).finish(),
            Self::AppService { endpoint, .. } => f
                .debug_struct("AppService")
                .field("endpoint", endpoint)
                .field("header", &"[redacted]")
                .finish(),
        }
    }
}

impl ManagedIdentitySource {
    /// The source the environment describes, as MSAL detects it: App Service when
    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set, else IMDS at
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST` or [`DEFAULT_IMDS_ENDPOINT`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        match (get("IDENTITY_ENDPOINT"), get("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => Self::AppService { endpoint, header },
            _ => Self::Imds {
                endpoint: get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                    .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_owned()),
            },
        }
    }

    /// The token URL and headers for `resource` and `id`.
    fn request(&self, resource: &str, id: &ManagedIdentityId) -> (String, Vec<(&str, String)>) {
        let mut url = match self {
            Self::Imds { endpoint } => format!(
                "{}/metadata/identity/oauth2/token?api-version=2018-02-01",
                endpoint.trim_end_matches('/')
            ),
            Self::AppService { endpoint, .. } => {
                let sep = if endpoint.contains('?') { '&' } else { '?' };
                format!("{endpoint}{sep}api-version=2019-08-01")
            }
        };
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        url.push_str(&format!("&resource={}", enc(resource)));
        let app_service = matches!(self, Self::AppService { .. });
        match id {
            ManagedIdentityId::SystemAssigned => {}
            ManagedIdentityId::ClientId(c) => url.push_str(&format!("&client_id={}", enc(c))),
            ManagedIdentityId::ObjectId(o) if app_service => {
                url.push_str(&format!("&principal_id={}", enc(o)))
            }
            ManagedIdentityId::ObjectId(o) => url.push_str(&format!("&object_id={}", enc(o))),
            ManagedIdentityId::ResourceId(r) if app_service => {
                url.push_str(&format!("&mi_res_id={}", enc(r)))
            }
            ManagedIdentityId::ResourceId(r) => url.push_str(&format!("&msi_res_id={}", enc(r))),
        }
        let headers = match self {
            Self::Imds { .. } => vec![("Metadata", "true".to_owned())],
            Self::AppService { header, .. } => vec![("X-IDENTITY-HEADER", header.clone())],
        };
        (url, headers)
    }
}

/// A managed identity as a federated credential: client assertions are the host's
/// managed identity tokens for [`TOKEN_EXCHANGE_AUDIENCE`], cached until
/// [`ASSERTION_RENEW_AHEAD`] before they expire.
pub struct ManagedIdentityAssertion {
    source: ManagedIdentitySource,
    id: ManagedIdentityId,
    audience: String,
    http: HttpClient,
    cached: tokio::sync::Mutex<Option<(String, i64)>>,
}

impl fmt::Debug for ManagedIdentityAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityAssertion")
            .field("source", &self.source)
            .field("id", &self.id)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ManagedIdentityAssertion {
    /// Tokens of identity `id` from `source`, for [`TOKEN_EXCHANGE_AUDIENCE`]. The HTTP
    /// client has the default timeouts, trusts `SSL_CERT_FILE`, honours
    /// `IDENTITY_RESOLVE`, and uses no proxy.
    pub fn new(source: ManagedIdentitySource, id: ManagedIdentityId) -> Result<Self, Error> {
        let builder = crate::http::builder_from_env().map_err(Error::config)?;
        let http = HttpClient::from_builder(builder.no_proxy(), Timeouts::default())
            .map_err(Error::config)?;
        Ok(Self {
            source,
            id,
            audience: TOKEN_EXCHANGE_AUDIENCE.to_owned(),
            http,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// Asks for tokens of another audience (sovereign clouds; `TOKEN_EXCHANGE_AUDIENCE`).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Uses a prepared HTTP client.
    pub fn with_http_client(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// The source.
    pub fn source(&self) -> &ManagedIdentitySource {
        &self.source
    }

    /// The identity.
    pub fn id(&self) -> &ManagedIdentityId {
        &self.id
    }

    /// A managed identity token: the cached one while it has more than
    /// [`ASSERTION_RENEW_AHEAD`] to live, else a new one from the endpoint.
    pub async fn token(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        let now = crate::flow::now();
        if let Some((token, expires_at)) = cached.as_ref() {
            if expires_at - ASSERTION_RENEW_AHEAD.as_secs() as i64 > now {
                return Ok(token.clone());
            }
        }
        let (token, expires_at) = self.fetch().await?;
        *cached = expires_at.map(|exp| (token.clone(), exp));
        Ok(token)
    }

    async fn fetch(&self) -> Result<(String, Option<i64>), String> {
        let (url, headers) = self.source.request(&self.audience, &self.id);
        let header_refs: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let shown = url.split('?').next().unwrap_or(&url).to_owned();
        crate::flow::count_provider_call();
        let resp = self
            .http
            .get_with_headers(&url, &header_refs)
            .await
            .map_err(|e| match e {
                FetchFailure::Unreachable(_) | FetchFailure::Timeout => format!(
                    "the managed identity endpoint {shown} did not answer ({e}); the app must \
                     run on an Azure host with a managed identity (or set IDENTITY_ENDPOINT \
                     and IDENTITY_HEADER, or AZURE_POD_IDENTITY_AUTHORITY_HOST)"
                ),
                other => format!("the managed identity endpoint {shown} failed: {other}"),
            })?;
        let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
        if resp.status != 200 {
            let why = body
                .as_ref()
                .and_then(|b| {
                    b.get("error_description")
                        .or_else(|| b.get("message"))
                        .or_else(|| b.get("error"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| crate::http::snippet(&resp.body));
            return Err(format!(
                "the managed identity endpoint {shown} answered HTTP {} ({why}); check that \
                 the identity {:?} is assigned to this host",
                resp.status, self.id
            ));
        }
        let body = body.ok_or_else(|| {
            format!("the managed identity endpoint {shown} answered something that is not JSON")
        })?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                format!("the managed identity endpoint {shown} answered no access_token")
            })?
            .to_owned();
        let number = |v: Option<&Value>| match v {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let expires_at = number(body.get("expires_on"))
            .or_else(|| number(body.get("expires_in")).map(|s| crate::flow::now() + s));
        Ok((token, expires_at))
    }
}

#[async_trait]
impl AssertionProvider for ManagedIdentityAssertion {
    async fn assertion(&self, _audience: &str) -> Result<String, String> {
        self.token().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_detected_as_msal_does() {
        let app_service = ManagedIdentitySource::from_lookup(|k| match k {
            "IDENTITY_ENDPOINT" => Some("http://127.0.0.1:41234/msi/token".into()),
            "IDENTITY_HEADER" => Some("s3cret".into()),
            _ => None,
        });
        assert!(matches!(
            app_service,
            ManagedIdentitySource::AppService { .. }
        ));
        assert!(!format!("{app_service:?}").contains("s3cret"));
        let (url, headers) = app_service.request(
            TOKEN_EXCHANGE_AUDIENCE,
            &ManagedIdentityId::ClientId("c1".into()),
        );
        assert_eq!(
            url,
            "http://127.0.0.1:41234/msi/token?api-version=2019-08-01&resource=api%3A%2F%2FAzureADTokenExchange&client_id=c1"
        );
        assert_eq!(headers[0].0, "X-IDENTITY-HEADER");

        let imds = ManagedIdentitySource::from_lookup(|_| None);
        let (url, headers) =
            imds.request(TOKEN_EXCHANGE_AUDIENCE, &ManagedIdentityId::SystemAssigned);
        assert_eq!(
            url,
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api%3A%2F%2FAzureADTokenExchange"
        );
        assert_eq!(headers, vec![("Metadata", "true".to_owned())]);
        let pod = ManagedIdentitySource::from_lookup(|k| {
            (k == "AZURE_POD_IDENTITY_AUTHORITY_HOST").then(|| "http://10.0.0.1:2377/".into())
        });
        let (url, _) = pod.request("api://x", &ManagedIdentityId::ObjectId("o".into()));
        assert!(url.starts_with("http://10.0.0.1:2377/metadata/identity/oauth2/token?"));
        assert!(url.ends_with("&object_id=o"));
    }

    #[test]
    fn identity_names_parse() {
        assert_eq!(
            ManagedIdentityId::parse("system"),
            ManagedIdentityId::SystemAssigned
        );
        assert_eq!(
            ManagedIdentityId::parse(" 1234 "),
            ManagedIdentityId::ClientId("1234".into())
        );
    }

    #[tokio::test]
    async fn a_missing_token_file_names_the_path() {
        let a = TokenFileAssertion::new("/nonexistent/identity-rs/token");
        let e = a.assertion("x").await.unwrap_err();
        assert!(
            e.contains("/nonexistent/identity-rs/token")
                && e.contains("AZURE_FEDERATED_TOKEN_FILE")
        );
    }
}
