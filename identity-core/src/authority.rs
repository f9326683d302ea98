//! Authorities: where users sign in, and where the OpenID Connect metadata lives.
//!
//! An [`Authority`] is parsed once from configuration and then only read. The rules it
//! encodes:
//!
//! * **Detection** ([`Authority::parse`], for an `AUTHORITY` setting), in this order:
//!   1. a path starting with `/dstsv2` is a generic OpenID Connect issuer;
//!   2. a host ending in `.ciamlogin.com` is **External ID** (CIAM). The tenant is the single
//!      path segment; a bare `https://contoso.ciamlogin.com` means the tenant
//!      `contoso.onmicrosoft.com`;
//!   3. **Azure AD B2C** when the host ends in `.b2clogin.com`, `.b2clogin.cn`, `.b2clogin.us`
//!      or `.b2clogin.de`; or the path is `/tfp/{tenant}/{policy}`; or the path has exactly two
//!      segments and the second starts with `b2c_` (any case; a B2C custom domain). On a
//!      `b2clogin` host the policy may also be given as the `p` query parameter
//!      (`https://contoso.b2clogin.com/contoso.onmicrosoft.com?p=b2c_1a_signup_signin`, the
//!      custom-policy form);
//!   4. a single path segment `adfs` is **AD FS**;
//!   5. a well-known Microsoft login host ([`WELL_KNOWN_AUTHORITY_HOSTS`]) is **Entra ID** and
//!      needs exactly one path segment, the tenant;
//!   6. any other host with exactly one path segment is treated as **Entra ID** on that host
//!      (for example an External ID custom domain, `https://login.contoso.com/{tenant}`); use
//!      the explicit constructors to say what the host is;
//!   7. any other host with several path segments is a **generic OpenID Connect issuer**
//!      (as if given to [`Authority::oidc`]). MSAL would append `/v2.0` and probe Microsoft's
//!      instance discovery instead; we do neither, because such a path is not an Entra
//!      authority.
//! * **Normalisation.** The host is lowercased; a trailing `/` and, for Microsoft authorities,
//!   a trailing `/v2.0` segment are removed, rather than being doubled in the discovery URL as
//!   MSAL does. Tenant names (`Common`, GUIDs, domains) are lowercased. Port and query are
//!   kept (`?dc=ESTS`, B2C `?p=`).
//! * **Security.** The scheme must be `https`, except on loopback hosts (`localhost`,
//!   `127.0.0.0/8`, `[::1]`) where `http` is accepted for local development and test
//!   providers. User information (`user:pass@`) and fragments are rejected.
//! * **Discovery.** Entra ID, External ID and B2C use
//!   `{authority}/v2.0/.well-known/openid-configuration` (query after the path); AD FS and
//!   generic issuers use `{authority}/.well-known/openid-configuration`. Entra ID also has a
//!   v1.0 document at `{authority}/.well-known/openid-configuration`
//!   ([`Authority::v1_discovery_url`]), which carries the v1 end-session endpoint.
//! * **External ID on a custom URL domain.** Configure it as a generic issuer:
//!   `OIDC_AUTHORITY=https://login.contoso.com/{tenant id}/v2.0` ([`Authority::oidc`]). Its
//!   endpoints are on the custom host, but its discovery document and every token name the
//!   issuer `https://{tenant id}.ciamlogin.com/{tenant id}/v2.0`. That one shape (same
//!   tenant id, the tenant's own `ciamlogin.com` host) is accepted for such an authority;
//!   any other mismatch between authority and issuer is refused (see [`crate::issuer`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use url::{Host, Url};

/// Hosts of Microsoft's public and national clouds that MSAL treats as well known.
pub const WELL_KNOWN_AUTHORITY_HOSTS: [&str; 13] = [
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "sts.windows.net",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.de",
    "login-us.microsoftonline.com",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
    "login.sovcloud-identity.fr",
    "login.sovcloud-identity.de",
    "login.sovcloud-identity.sg",
];

const B2C_HOST_SUFFIXES: [&str; 4] = [
    ".b2clogin.com",
    ".b2clogin.cn",
    ".b2clogin.us",
    ".b2clogin.de",
];
const CIAM_HOST_SUFFIX: &str = ".ciamlogin.com";

const EXPECTED_AUTHORITY: &str = "Expected one of: https://login.microsoftonline.com/{tenant} \
(Entra ID; tenant = common, organizations, consumers, a tenant GUID or a domain), \
https://{subdomain}.ciamlogin.com[/{tenant}] (External ID), \
https://{name}.b2clogin.com/{tenant}/{user_flow} (Azure AD B2C), https://{host}/adfs (AD FS). \
Use OIDC_AUTHORITY for any other OpenID Connect issuer";
const EXPECTED_ISSUER: &str = "Expected the issuer URL of an OpenID Connect provider, such as \
https://accounts.example.com or https://login.contoso.com/{tenant}/v2.0, without \
/.well-known/openid-configuration, query or fragment";
const EXPECTED_INSTANCE: &str =
    "Expected an instance such as https://login.microsoftonline.com or http://127.0.0.1:8080, \
with no path, query or fragment";
const EXPECTED_TENANT: &str = "Expected a tenant such as common, organizations, consumers, \
a tenant GUID or a domain like contoso.onmicrosoft.com (letters, digits, '.', '-', '_')";
const EXPECTED_POLICY: &str =
    "Expected a B2C user flow or custom policy name such as B2C_1_signupsignin1 \
(letters, digits, '.', '-', '_')";
const EXPECTED_B2C_NAME: &str = "Expected the B2C tenant name only, such as `contoso` for \
contoso.onmicrosoft.com (letters, digits and '-')";

/// What an authority is, and the parts of it that matter for protocol decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorityKind {
    /// Microsoft Entra ID (workforce tenants, and personal accounts through `common`/`consumers`).
    EntraId {
        /// The cloud the host belongs to.
        cloud: Cloud,
        /// The tenant segment of the authority.
        tenant: EntraTenant,
    },
    /// Microsoft Entra External ID (CIAM), on `*.ciamlogin.com` or a custom domain.
    ExternalId {
        /// The tenant segment, lowercased (`contoso.onmicrosoft.com` or a GUID).
        tenant: String,
    },
    /// Azure AD B2C with one user flow or custom policy.
    B2c {
        /// The tenant, lowercased (`contoso.onmicrosoft.com` or a GUID).
        tenant: String,
        /// The user flow or custom policy, as configured (compare case-insensitively).
        policy: String,
    },
    /// Active Directory Federation Services (`https://{host}/adfs`).
    Adfs,
    /// Any other OpenID Connect provider, identified by its issuer URL.
    Oidc,
}

/// The tenant segment of an Entra ID authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntraTenant {
    /// `common`: work or school accounts from any tenant, and personal Microsoft accounts.
    Common,
    /// `organizations`: work or school accounts from any tenant.
    Organizations,
    /// `consumers`: personal Microsoft accounts only.
    Consumers,
    /// A tenant GUID, lowercased.
    Id(String),
    /// A tenant domain such as `contoso.onmicrosoft.com`, lowercased.
    Domain(String),
}

impl EntraTenant {
    fn classify(tenant: &str) -> Self {
        let lower = tenant.to_ascii_lowercase();
        match lower.as_str() {
            "common" => Self::Common,
            "organizations" => Self::Organizations,
            "consumers" => Self::Consumers,
            _ if is_guid(&lower) => Self::Id(lower),
            _ => Self::Domain(lower),
        }
    }

    /// The tenant as it appears in the authority path.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Common => "common",
            Self::Organizations => "organizations",
            Self::Consumers => "consumers",
            Self::Id(s) | Self::Domain(s) => s,
        }
    }

    /// Whether this is a multi-tenant alias (`common` or `organizations`) whose metadata
    /// advertises a `{tenantid}` issuer template.
    pub fn is_multi_tenant(&self) -> bool {
        matches!(self, Self::Common | Self::Organizations)
    }
}

/// The Microsoft cloud an Entra ID authority host belongs to.
///
/// Hosts are grouped as in Entra instance discovery: `login.microsoftonline.com`,
/// `login.microsoft.com`, `login.windows.net` and `sts.windows.net` are [`Cloud::Public`];
/// `login.chinacloudapi.cn` and `login.partner.microsoftonline.cn` are [`Cloud::China`];
/// `login.microsoftonline.us`, `login.usgovcloudapi.net` and `login-us.microsoftonline.com`
/// are [`Cloud::UsGov`]; `login.microsoftonline.de` is [`Cloud::Germany`]; the
/// `login.sovcloud-identity.{fr,de,sg}` hosts are [`Cloud::Sovereign`]. Any other host (a
/// custom domain or a local test provider) is [`Cloud::Other`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// Microsoft's global cloud.
    Public,
    /// Azure US Government.
    UsGov,
    /// Azure China (operated by 21Vianet).
    China,
    /// The retired Azure Germany cloud.
    Germany,
    /// A sovereign cloud on `login.sovcloud-identity.*`; holds the host.
    Sovereign(String),
    /// Any host that is not a well-known Microsoft login host; holds the host (with port).
    Other(String),
}

impl Cloud {
    fn from_host(host: &str, host_port: &str) -> Self {
        match host {
            "login.microsoftonline.com"
            | "login.microsoft.com"
            | "login.windows.net"
            | "sts.windows.net" => Self::Public,
            "login.chinacloudapi.cn" | "login.partner.microsoftonline.cn" => Self::China,
            "login.microsoftonline.us"
            | "login.usgovcloudapi.net"
            | "login-us.microsoftonline.com" => Self::UsGov,
            "login.microsoftonline.de" => Self::Germany,
            h if h.starts_with("login.sovcloud-identity.") && is_well_known_host(h) => {
                Self::Sovereign(h.to_owned())
            }
            _ => Self::Other(host_port.to_owned()),
        }
    }
}

/// An authority that could not be parsed. The message names the input, the problem and the
/// accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid authority `{input}`: {problem}. {expected}.")]
pub struct AuthorityError {
    input: String,
    problem: String,
    expected: &'static str,
}

impl AuthorityError {
    fn new(input: &str, problem: impl Into<String>, expected: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            problem: problem.into(),
            expected,
        }
    }

    /// The rejected input.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// How a B2C authority names its policy; kept so that [`Authority::with_policy`] keeps the form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum B2cForm {
    /// `/{tenant}/{policy}`
    Path,
    /// `/tfp/{tenant}/{policy}`
    Tfp,
    /// `/{tenant}?p={policy}`
    Query,
}

#[derive(Debug, PartialEq, Eq)]
struct Inner {
    kind: AuthorityKind,
    url: Url,
    display: String,
    discovery: Url,
    b2c_form: Option<B2cForm>,
}

/// A parsed, normalised authority. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq)]
pub struct Authority(Arc<Inner>);

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("url", &self.0.display)
            .field("kind", &self.0.kind)
            .finish()
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.display)
    }
}

impl FromStr for Authority {
    type Err = AuthorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The validated pieces of an input URL.
struct Parts {
    url: Url,
    /// Lowercase host without port (IPv6 in brackets).
    host: String,
    /// `scheme://host[:port]`
    origin: String,
    /// Path segments with trailing empty segments removed.
    segments: Vec<String>,
}

impl Parts {
    fn new(input: &str, expected: &'static str) -> Result<Self, AuthorityError> {
        let err = |problem: &str| AuthorityError::new(input, problem, expected);
        let url = Url::parse(input.trim()).map_err(|e| {
            err(&format!(
                "it is not an absolute URL ({e}); include the scheme, e.g. https://"
            ))
        })?;
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
            _ => return Err(err("it has no host")),
        };
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(err(
                    "it uses http; only https is allowed (http only for localhost, 127.0.0.0/8 and [::1])",
                ))
            }
            other => return Err(err(&format!("scheme `{other}` is not https"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("it contains user information (user:password@)"));
        }
        if url.fragment().is_some() {
            return Err(err("it contains a fragment (#...)"));
        }
        let origin = match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        let mut segments: Vec<String> = url.path().split('/').skip(1).map(str::to_owned).collect();
        while segments.last().is_some_and(String::is_empty) {
            segments.pop();
        }
        if segments.iter().any(String::is_empty) {
            return Err(err("its path contains an empty segment (`//`)"));
        }
        if segments
            .iter()
            .any(|s| s.eq_ignore_ascii_case(".well-known"))
        {
            return Err(err(
                "it is a metadata document URL; give the authority (the part before /.well-known)",
            ));
        }
        Ok(Self {
            url,
            host,
            origin,
            segments,
        })
    }

    fn query(&self) -> Option<&str> {
        self.url.query().filter(|q| !q.is_empty())
    }
}

impl Authority {
    /// Parses an `AUTHORITY` setting, detecting Entra ID, External ID, B2C and AD FS as
    /// described in the [module documentation](self).
    pub fn parse(authority: &str) -> Result<Self, AuthorityError> {
        let parts = Parts::new(authority, EXPECTED_AUTHORITY)?;
        let err = |problem: String| AuthorityError::new(authority, problem, EXPECTED_AUTHORITY);
        let mut segs = parts.segments.clone();

        if segs
            .first()
            .is_some_and(|s| s.to_ascii_lowercase().starts_with("dstsv2"))
        {
            return Self::oidc(authority);
        }
        if segs.len() >= 2 && segs.last().is_some_and(|s| s.eq_ignore_ascii_case("v2.0")) {
            segs.pop();
        }
        let host = parts.host.as_str();
        let query = parts.query();

        if host.ends_with(CIAM_HOST_SUFFIX) {
            let tenant = match segs.as_slice() {
                [] => {
                    let label = host.split('.').next().unwrap_or_default();
                    format!("{label}.onmicrosoft.com")
                }
                [tenant] => tenant.clone(),
                _ => {
                    return Err(err(format!(
                    "an External ID authority has at most one path segment (the tenant), found {}",
                    segs.len()
                )))
                }
            };
            let tenant = check_tenant(authority, &tenant, EXPECTED_AUTHORITY)?;
            return Self::build(
                AuthorityKind::ExternalId { tenant },
                &parts.origin,
                query,
                None,
            );
        }

        let b2c_host = B2C_HOST_SUFFIXES.iter().any(|sfx| host.ends_with(sfx));
        let tfp = segs.len() == 3 && segs[0].eq_ignore_ascii_case("tfp");
        let b2c_custom_domain = segs.len() == 2 && segs[1].to_ascii_lowercase().starts_with("b2c_");
        if b2c_host || tfp || b2c_custom_domain {
            let query_policy = query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "p")
                    .map(|(_, v)| v.into_owned())
            });
            let (tenant, policy, form) = match segs.as_slice() {
                [_, tenant, policy] if tfp => (tenant, policy.clone(), B2cForm::Tfp),
                [tenant, policy] => (tenant, policy.clone(), B2cForm::Path),
                [tenant] if query_policy.is_some() => {
                    (tenant, query_policy.unwrap_or_default(), B2cForm::Query)
                }
                _ => {
                    return Err(err("a B2C authority needs a tenant and a user flow: \
                         https://{name}.b2clogin.com/{tenant}/{user_flow}"
                        .to_owned()))
                }
            };
            let tenant = check_tenant(authority, tenant, EXPECTED_AUTHORITY)?;
            let policy = check_policy(authority, &policy, EXPECTED_AUTHORITY)?;
            let query = if form == B2cForm::Query { None } else { query };
            return Self::build(
                AuthorityKind::B2c { tenant, policy },
                &parts.origin,
                query,
                Some(form),
            );
        }

        if segs.first().is_some_and(|s| s.eq_ignore_ascii_case("adfs")) {
            if segs.len() != 1 {
                return Err(err(
                    "an AD FS authority is exactly https://{host}/adfs".to_owned()
                ));
            }
            return Self::build(AuthorityKind::Adfs, &parts.origin, query, None);
        }

        match segs.as_slice() {
            [] => Err(err(
                "the tenant is missing; add it as the path, e.g. /common or /{tenant GUID}"
                    .to_owned(),
            )),
            [tenant] => {
                let tenant = check_tenant(authority, tenant, EXPECTED_AUTHORITY)?;
                let cloud = Cloud::from_host(host, host_port(&parts.origin));
                let tenant = EntraTenant::classify(&tenant);
                Self::build(
                    AuthorityKind::EntraId { cloud, tenant },
                    &parts.origin,
                    query,
                    None,
                )
            }
            _ if is_well_known_host(host) => Err(err(format!(
                "an Entra ID authority is https://{host}/{{tenant}} with one path segment, found {}",
                segs.len()
            ))),
            _ => Self::oidc(authority),
        }
    }

    /// Builds a generic OpenID Connect authority from an issuer (`OIDC_AUTHORITY`). A trailing
    /// `/` is removed; discovery is `{issuer}/.well-known/openid-configuration`. An issuer has
    /// no query (OpenID Connect Discovery §4), so one is rejected.
    pub fn oidc(issuer: &str) -> Result<Self, AuthorityError> {
        let parts = Parts::new(issuer, EXPECTED_ISSUER)?;
        if parts.url.query().is_some() {
            return Err(AuthorityError::new(
                issuer,
                "an issuer URL has no query (?...)",
                EXPECTED_ISSUER,
            ));
        }
        let path: String = parts.segments.iter().map(|s| format!("/{s}")).collect();
        let display = format!("{}{path}", parts.origin);
        let url = parse_built(&display, EXPECTED_ISSUER)?;
        let discovery = with_path_suffix(&url, "/.well-known/openid-configuration");
        Ok(Self(Arc::new(Inner {
            kind: AuthorityKind::Oidc,
            url,
            display,
            discovery,
            b2c_form: None,
        })))
    }

    /// An Entra ID authority on any instance (for example a local test provider such as
    /// `http://127.0.0.1:8080`). `tenant` is `common`, `organizations`, `consumers`, a GUID or
    /// a domain.
    pub fn entra(instance: &str, tenant: &str) -> Result<Self, AuthorityError> {
        let (origin, host) = parse_instance(instance)?;
        let tenant = check_tenant(tenant, tenant, EXPECTED_TENANT)?;
        let cloud = Cloud::from_host(&host, host_port(&origin));
        let tenant = EntraTenant::classify(&tenant);
        Self::build(
            AuthorityKind::EntraId { cloud, tenant },
            &origin,
            None,
            None,
        )
    }

    /// An External ID authority on any instance: a custom domain such as
    /// `https://login.contoso.com`, or a test provider.
    pub fn external_id(instance: &str, tenant: &str) -> Result<Self, AuthorityError> {
        let (origin, _) = parse_instance(instance)?;
        let tenant = check_tenant(tenant, tenant, EXPECTED_TENANT)?;
        Self::build(AuthorityKind::ExternalId { tenant }, &origin, None, None)
    }

    /// A B2C authority on any instance (a custom domain or a test provider):
    /// `{instance}/{tenant}/{policy}`, with `tenant` such as `contoso.onmicrosoft.com`.
    pub fn b2c(instance: &str, tenant: &str, policy: &str) -> Result<Self, AuthorityError> {
        let (origin, _) = parse_instance(instance)?;
        let tenant = check_tenant(tenant, tenant, EXPECTED_TENANT)?;
        let policy = check_policy(policy, policy, EXPECTED_POLICY)?;
        Self::build(
            AuthorityKind::B2c { tenant, policy },
            &origin,
            None,
            Some(B2cForm::Path),
        )
    }

    /// The B2C authority of a tenant name (`B2C_TENANT_NAME`) and user flow:
    /// `contoso` ⇒ `https://contoso.b2clogin.com/contoso.onmicrosoft.com/{policy}`.
    pub fn b2c_tenant(tenant_name: &str, policy: &str) -> Result<Self, AuthorityError> {
        let name = tenant_name.trim().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            return Err(AuthorityError::new(
                tenant_name,
                "not a B2C tenant name",
                EXPECTED_B2C_NAME,
            ));
        }
        let policy = check_policy(policy, policy, EXPECTED_POLICY)?;
        Self::build(
            AuthorityKind::B2c {
                tenant: format!("{name}.onmicrosoft.com"),
                policy,
            },
            &format!("https://{name}.b2clogin.com"),
            None,
            Some(B2cForm::Path),
        )
    }

    fn build(
        kind: AuthorityKind,
        origin: &str,
        query: Option<&str>,
        b2c_form: Option<B2cForm>,
    ) -> Result<Self, AuthorityError> {
        let path = match (&kind, b2c_form) {
            (AuthorityKind::EntraId { tenant, .. }, _) => format!("/{}", tenant.as_str()),
            (AuthorityKind::ExternalId { tenant }, _) => format!("/{tenant}"),
            (AuthorityKind::B2c { tenant, policy }, Some(B2cForm::Tfp)) => {
                format!("/tfp/{tenant}/{policy}")
            }
            (AuthorityKind::B2c { tenant, .. }, Some(B2cForm::Query)) => format!("/{tenant}"),
            (AuthorityKind::B2c { tenant, policy }, _) => format!("/{tenant}/{policy}"),
            (AuthorityKind::Adfs, _) => "/adfs".to_owned(),
            (AuthorityKind::Oidc, _) => String::new(),
        };
        let query = match (&kind, b2c_form) {
            (AuthorityKind::B2c { policy, .. }, Some(B2cForm::Query)) => {
                Some(format!("p={}", encode_query_value(policy)))
            }
            _ => query.map(str::to_owned),
        };
        let display = match &query {
            Some(q) => format!("{origin}{path}?{q}"),
            None => format!("{origin}{path}"),
        };
        let url = parse_built(&display, EXPECTED_AUTHORITY)?;
        let suffix = match kind {
            AuthorityKind::Adfs | AuthorityKind::Oidc => "/.well-known/openid-configuration",
            _ => "/v2.0/.well-known/openid-configuration",
        };
        let discovery = with_path_suffix(&url, suffix);
        Ok(Self(Arc::new(Inner {
            kind,
            url,
            display,
            discovery,
            b2c_form,
        })))
    }

    /// What kind of authority this is.
    pub fn kind(&self) -> &AuthorityKind {
        &self.0.kind
    }

    /// The canonical authority URL: no trailing `/`, no `/v2.0`, query kept. (A generic issuer
    /// without a path is shown by [`Display`](fmt::Display) without the `/` that
    /// [`Url`] always serialises.)
    pub fn url(&self) -> &Url {
        &self.0.url
    }

    /// The OpenID Connect discovery document: `{authority}/v2.0/.well-known/openid-configuration`
    /// for Entra ID, External ID and B2C, `{authority}/.well-known/openid-configuration` for
    /// AD FS and generic issuers. Port and query are kept.
    pub fn discovery_url(&self) -> Url {
        self.0.discovery.clone()
    }

    /// [`discovery_url`](Self::discovery_url) as text, without a copy.
    pub(crate) fn discovery_str(&self) -> &str {
        self.0.discovery.as_str()
    }

    /// Whether `other` is this very authority (a clone of it), not only an equal one.
    pub(crate) fn is_same(&self, other: &Authority) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Entra ID only: the v1.0 metadata document `{authority}/.well-known/openid-configuration`
    /// (issuer `https://sts.windows.net/{tenantid}/`, v1 end-session endpoint).
    pub fn v1_discovery_url(&self) -> Option<Url> {
        match self.0.kind {
            AuthorityKind::EntraId { .. } => Some(with_path_suffix(
                &self.0.url,
                "/.well-known/openid-configuration",
            )),
            _ => None,
        }
    }

    /// B2C only: the same tenant and host with another user flow (for example the password
    /// reset or profile editing flow). `None` for other kinds or an invalid policy name.
    pub fn with_policy(&self, policy: &str) -> Option<Authority> {
        let AuthorityKind::B2c { tenant, .. } = &self.0.kind else {
            return None;
        };
        let policy = check_policy(policy, policy, EXPECTED_POLICY).ok()?;
        let origin = &self.0.url[..url::Position::BeforePath];
        let query = match self.0.b2c_form {
            Some(B2cForm::Query) => None,
            _ => self.0.url.query(),
        };
        Self::build(
            AuthorityKind::B2c {
                tenant: tenant.clone(),
                policy,
            },
            origin,
            query,
            self.0.b2c_form,
        )
        .ok()
    }

    /// Whether this is an Azure AD B2C authority.
    pub fn is_b2c(&self) -> bool {
        matches!(self.0.kind, AuthorityKind::B2c { .. })
    }

    /// Whether the device code flow can be offered. B2C has no device authorization endpoint;
    /// for the other kinds the discovery document has the final word
    /// (`device_authorization_endpoint`).
    pub fn supports_device_code(&self) -> bool {
        !self.is_b2c()
    }
}

/// Whether `s` is a GUID in the 8-4-4-4-12 hexadecimal form (any case).
pub(crate) fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_well_known_host(host: &str) -> bool {
    WELL_KNOWN_AUTHORITY_HOSTS.contains(&host)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn host_port(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, rest)| rest)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn check_tenant(
    input: &str,
    tenant: &str,
    expected: &'static str,
) -> Result<String, AuthorityError> {
    let tenant = tenant.trim();
    if valid_name(tenant) {
        Ok(tenant.to_ascii_lowercase())
    } else if tenant.is_empty() {
        Err(AuthorityError::new(input, "the tenant is empty", expected))
    } else {
        Err(AuthorityError::new(
            input,
            format!("`{tenant}` is not a valid tenant"),
            expected,
        ))
    }
}

fn check_policy(
    input: &str,
    policy: &str,
    expected: &'static str,
) -> Result<String, AuthorityError> {
    let policy = policy.trim();
    if valid_name(policy) {
        Ok(policy.to_owned())
    } else if policy.is_empty() {
        Err(AuthorityError::new(
            input,
            "the user flow is empty",
            expected,
        ))
    } else {
        Err(AuthorityError::new(
            input,
            format!("`{policy}` is not a valid user flow name"),
            expected,
        ))
    }
}

fn parse_instance(instance: &str) -> Result<(String, String), AuthorityError> {
    let parts = Parts::new(instance, EXPECTED_INSTANCE)?;
    if !parts.segments.is_empty() {
        return Err(AuthorityError::new(
            instance,
            "an instance has no path; pass the tenant separately",
            EXPECTED_INSTANCE,
        ));
    }
    if parts.url.query().is_some() {
        return Err(AuthorityError::new(
            instance,
            "an instance has no query",
            EXPECTED_INSTANCE,
        ));
    }
    Ok((parts.origin, parts.host))
}

fn encode_query_value(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Parses a URL assembled from already-validated pieces.
fn parse_built(s: &str, expected: &'static str) -> Result<Url, AuthorityError> {
    Url::parse(s)
        .map_err(|e| AuthorityError::new(s, format!("it is not a valid URL ({e})"), expected))
}

fn with_path_suffix(url: &Url, suffix: &str) -> Url {
    let mut out = url.clone();
    let path = format!("{}{suffix}", url.path().trim_end_matches('/'));
    out.set_path(&path);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";

    fn entra(cloud: Cloud, tenant: EntraTenant) -> AuthorityKind {
        AuthorityKind::EntraId { cloud, tenant }
    }

    fn b2c(tenant: &str, policy: &str) -> AuthorityKind {
        AuthorityKind::B2c {
            tenant: tenant.into(),
            policy: policy.into(),
        }
    }

    /// seed-spec §2.1 table (with trailing `/` and `/v2.0` normalised instead of doubled).
    #[test]
    fn authority_table() {
        let g = GUID;
        let rows: Vec<(String, AuthorityKind, String, String)> = vec![
            (
                "https://login.microsoftonline.com/common".into(),
                entra(Cloud::Public, EntraTenant::Common),
                "https://login.microsoftonline.com/common".into(),
                "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://login.microsoftonline.com/organizations".into(),
                entra(Cloud::Public, EntraTenant::Organizations),
                "https://login.microsoftonline.com/organizations".into(),
                "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://login.microsoftonline.com/consumers".into(),
                entra(Cloud::Public, EntraTenant::Consumers),
                "https://login.microsoftonline.com/consumers".into(),
                "https://login.microsoftonline.com/consumers/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://login.microsoftonline.com/contoso.onmicrosoft.com".into(),
                entra(Cloud::Public, EntraTenant::Domain("contoso.onmicrosoft.com".into())),
                "https://login.microsoftonline.com/contoso.onmicrosoft.com".into(),
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                format!("https://login.microsoftonline.com/{g}"),
                entra(Cloud::Public, EntraTenant::Id(g.into())),
                format!("https://login.microsoftonline.com/{g}"),
                format!("https://login.microsoftonline.com/{g}/v2.0/.well-known/openid-configuration"),
            ),
            // Trailing slash: normalised (MSAL doubles it).
            (
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/".into(),
                entra(Cloud::Public, EntraTenant::Domain("contoso.onmicrosoft.com".into())),
                "https://login.microsoftonline.com/contoso.onmicrosoft.com".into(),
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration".into(),
            ),
            // Trailing /v2.0 (and /v2.0/): normalised (MSAL doubles it).
            (
                format!("https://login.microsoftonline.com/{g}/v2.0"),
                entra(Cloud::Public, EntraTenant::Id(g.into())),
                format!("https://login.microsoftonline.com/{g}"),
                format!("https://login.microsoftonline.com/{g}/v2.0/.well-known/openid-configuration"),
            ),
            (
                format!("https://login.microsoftonline.com/{g}/v2.0/"),
                entra(Cloud::Public, EntraTenant::Id(g.into())),
                format!("https://login.microsoftonline.com/{g}"),
                format!("https://login.microsoftonline.com/{g}/v2.0/.well-known/openid-configuration"),
            ),
            (
                "https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_susi".into(),
                b2c("contoso.onmicrosoft.com", "B2C_1_susi"),
                "https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_susi".into(),
                "https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration".into(),
            ),
            // tfp form: B2C here (MSAL misses it on login.microsoftonline.com); same discovery URL.
            (
                "https://login.microsoftonline.com/tfp/contoso.onmicrosoft.com/B2C_1_susi".into(),
                b2c("contoso.onmicrosoft.com", "B2C_1_susi"),
                "https://login.microsoftonline.com/tfp/contoso.onmicrosoft.com/B2C_1_susi".into(),
                "https://login.microsoftonline.com/tfp/contoso.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://contoso.b2clogin.com/tfp/contoso.onmicrosoft.com/B2C_1_susi".into(),
                b2c("contoso.onmicrosoft.com", "B2C_1_susi"),
                "https://contoso.b2clogin.com/tfp/contoso.onmicrosoft.com/B2C_1_susi".into(),
                "https://contoso.b2clogin.com/tfp/contoso.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://login.contoso.com/contoso.onmicrosoft.com/B2C_1_susi".into(),
                b2c("contoso.onmicrosoft.com", "B2C_1_susi"),
                "https://login.contoso.com/contoso.onmicrosoft.com/B2C_1_susi".into(),
                "https://login.contoso.com/contoso.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration".into(),
            ),
            // Unknown host, several segments, not B2C: a generic issuer (documented deviation;
            // MSAL would request `…/my_policy/v2.0/.well-known/…`).
            (
                "https://login.contoso.com/contoso.onmicrosoft.com/my_policy".into(),
                AuthorityKind::Oidc,
                "https://login.contoso.com/contoso.onmicrosoft.com/my_policy".into(),
                "https://login.contoso.com/contoso.onmicrosoft.com/my_policy/.well-known/openid-configuration".into(),
            ),
            (
                "https://contoso.ciamlogin.com".into(),
                AuthorityKind::ExternalId { tenant: "contoso.onmicrosoft.com".into() },
                "https://contoso.ciamlogin.com/contoso.onmicrosoft.com".into(),
                "https://contoso.ciamlogin.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://contoso.ciamlogin.com/".into(),
                AuthorityKind::ExternalId { tenant: "contoso.onmicrosoft.com".into() },
                "https://contoso.ciamlogin.com/contoso.onmicrosoft.com".into(),
                "https://contoso.ciamlogin.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://contoso.ciamlogin.com/11112222-bbbb-3333-cccc-4444dddd5555".into(),
                AuthorityKind::ExternalId { tenant: "11112222-bbbb-3333-cccc-4444dddd5555".into() },
                "https://contoso.ciamlogin.com/11112222-bbbb-3333-cccc-4444dddd5555".into(),
                "https://contoso.ciamlogin.com/11112222-bbbb-3333-cccc-4444dddd5555/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://fs.contoso.com/adfs".into(),
                AuthorityKind::Adfs,
                "https://fs.contoso.com/adfs".into(),
                "https://fs.contoso.com/adfs/.well-known/openid-configuration".into(),
            ),
            // Unknown host with one segment: Entra ID semantics on that host.
            (
                "https://custom.example.com/tenant".into(),
                entra(Cloud::Other("custom.example.com".into()), EntraTenant::Domain("tenant".into())),
                "https://custom.example.com/tenant".into(),
                "https://custom.example.com/tenant/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "https://login.microsoftonline.com:444/common?dc=ESTS".into(),
                entra(Cloud::Public, EntraTenant::Common),
                "https://login.microsoftonline.com:444/common?dc=ESTS".into(),
                "https://login.microsoftonline.com:444/common/v2.0/.well-known/openid-configuration?dc=ESTS".into(),
            ),
            // External ID custom domain given as AUTHORITY: one segment after /v2.0 ⇒ same
            // discovery URL as the oidc form.
            (
                format!("https://login.contoso.com/{g}/v2.0"),
                entra(Cloud::Other("login.contoso.com".into()), EntraTenant::Id(g.into())),
                format!("https://login.contoso.com/{g}"),
                format!("https://login.contoso.com/{g}/v2.0/.well-known/openid-configuration"),
            ),
            (
                "https://contoso.b2clogin.com/contoso.onmicrosoft.com?p=b2c_1a_signup_signin".into(),
                b2c("contoso.onmicrosoft.com", "b2c_1a_signup_signin"),
                "https://contoso.b2clogin.com/contoso.onmicrosoft.com?p=b2c_1a_signup_signin".into(),
                "https://contoso.b2clogin.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration?p=b2c_1a_signup_signin".into(),
            ),
            (
                "HTTPS://LOGIN.MicrosoftOnline.US/Common".into(),
                entra(Cloud::UsGov, EntraTenant::Common),
                "https://login.microsoftonline.us/common".into(),
                "https://login.microsoftonline.us/common/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                format!("https://login.chinacloudapi.cn/{g}"),
                entra(Cloud::China, EntraTenant::Id(g.into())),
                format!("https://login.chinacloudapi.cn/{g}"),
                format!("https://login.chinacloudapi.cn/{g}/v2.0/.well-known/openid-configuration"),
            ),
            (
                "https://login.sovcloud-identity.fr/common".into(),
                entra(Cloud::Sovereign("login.sovcloud-identity.fr".into()), EntraTenant::Common),
                "https://login.sovcloud-identity.fr/common".into(),
                "https://login.sovcloud-identity.fr/common/v2.0/.well-known/openid-configuration".into(),
            ),
            (
                "http://localhost:8080/common".into(),
                entra(Cloud::Other("localhost:8080".into()), EntraTenant::Common),
                "http://localhost:8080/common".into(),
                "http://localhost:8080/common/v2.0/.well-known/openid-configuration".into(),
            ),
        ];
        for (input, kind, url, discovery) in rows {
            let a = Authority::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(a.kind(), &kind, "{input}");
            assert_eq!(a.to_string(), url, "{input}");
            assert_eq!(a.url().as_str(), url, "{input}");
            assert_eq!(a.discovery_url().as_str(), discovery, "{input}");
            assert_eq!(Authority::from_str(&input), Ok(a));
        }
    }

    #[test]
    fn oidc_table() {
        let rows = [
            (
                "https://contoso.com/tenant",
                "https://contoso.com/tenant",
                "https://contoso.com/tenant/.well-known/openid-configuration",
            ),
            (
                "https://login.contoso.com/aaaabbbb-0000-cccc-1111-dddd2222eeee/v2.0",
                "https://login.contoso.com/aaaabbbb-0000-cccc-1111-dddd2222eeee/v2.0",
                "https://login.contoso.com/aaaabbbb-0000-cccc-1111-dddd2222eeee/v2.0/.well-known/openid-configuration",
            ),
            (
                "https://accounts.example.com/",
                "https://accounts.example.com",
                "https://accounts.example.com/.well-known/openid-configuration",
            ),
            (
                "http://127.0.0.1:8080/realms/test/",
                "http://127.0.0.1:8080/realms/test",
                "http://127.0.0.1:8080/realms/test/.well-known/openid-configuration",
            ),
        ];
        for (input, display, discovery) in rows {
            let a = Authority::oidc(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(a.kind(), &AuthorityKind::Oidc);
            assert_eq!(a.to_string(), display);
            assert_eq!(a.discovery_url().as_str(), discovery);
            assert_eq!(a.v1_discovery_url(), None);
        }
        // dstsv2 paths are generic issuers.
        let a = Authority::parse("https://co-test.dsts.core.windows.net/dstsv2/tenant").unwrap();
        assert_eq!(a.kind(), &AuthorityKind::Oidc);
    }

    #[test]
    fn rejects_with_actionable_messages() {
        let rows = [
            ("http://login.microsoftonline.com/common", "https"),
            ("https://login.microsoftonline.com", "tenant is missing"),
            ("https://login.microsoftonline.com/", "tenant is missing"),
            ("login.microsoftonline.com/common", "absolute URL"),
            (
                "https://user:pw@login.microsoftonline.com/common",
                "user information",
            ),
            ("https://login.microsoftonline.com/common#x", "fragment"),
            ("ftp://login.microsoftonline.com/common", "scheme"),
            (
                "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
                "one path segment",
            ),
            (
                "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
                "metadata document",
            ),
            (
                "https://contoso.b2clogin.com/contoso.onmicrosoft.com",
                "user flow",
            ),
            ("https://contoso.ciamlogin.com/a/b", "at most one"),
            ("https://login.microsoftonline.com//common", "empty segment"),
            (
                "https://login.microsoftonline.com/con%20toso",
                "not a valid tenant",
            ),
            ("", "absolute URL"),
            ("http://10.0.0.1/common", "https"),
        ];
        for (input, needle) in rows {
            let e = Authority::parse(input).expect_err(input);
            let msg = e.to_string();
            assert!(msg.contains(needle), "{input}: {msg}");
            assert!(msg.contains("Expected"), "{msg}");
            assert_eq!(e.input(), input);
        }
        assert!(Authority::oidc("https://idp.example.com/x?y=1").is_err());
        assert!(Authority::oidc("http://idp.example.com").is_err());
        assert!(Authority::oidc("http://[::1]:9000").is_ok());
        assert!(Authority::oidc("http://127.5.6.7").is_ok());
    }

    #[test]
    fn explicit_constructors() {
        let a = Authority::entra("http://127.0.0.1:8080", "Common").unwrap();
        assert_eq!(a.to_string(), "http://127.0.0.1:8080/common");
        assert_eq!(
            a.kind(),
            &entra(Cloud::Other("127.0.0.1:8080".into()), EntraTenant::Common)
        );
        assert_eq!(
            a.v1_discovery_url().unwrap().as_str(),
            "http://127.0.0.1:8080/common/.well-known/openid-configuration"
        );
        let a = Authority::entra("https://login.microsoftonline.com/", GUID).unwrap();
        assert_eq!(
            a.kind(),
            &entra(Cloud::Public, EntraTenant::Id(GUID.into()))
        );

        let a =
            Authority::external_id("https://login.contoso.com", "contoso.onmicrosoft.com").unwrap();
        assert_eq!(
            a.discovery_url().as_str(),
            "https://login.contoso.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        );
        assert!(a.supports_device_code());

        let a = Authority::b2c(
            "https://login.contoso.com",
            "contoso.onmicrosoft.com",
            "B2C_1_x",
        )
        .unwrap();
        assert_eq!(
            a.to_string(),
            "https://login.contoso.com/contoso.onmicrosoft.com/B2C_1_x"
        );
        assert!(a.is_b2c());
        assert!(!a.supports_device_code());

        let a = Authority::b2c_tenant("contoso", "B2C_1_signupsignin1").unwrap();
        assert_eq!(
            a.to_string(),
            "https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_signupsignin1"
        );
        assert_eq!(a, Authority::parse(&a.to_string()).unwrap());

        assert!(Authority::entra("https://login.microsoftonline.com/common", "x").is_err());
        assert!(Authority::entra("https://login.microsoftonline.com", "").is_err());
        assert!(Authority::entra("https://login.microsoftonline.com", "a/b").is_err());
        assert!(Authority::b2c_tenant("contoso.onmicrosoft.com", "B2C_1_x").is_err());
        assert!(Authority::b2c_tenant("contoso", "").is_err());
        assert!(Authority::b2c_tenant("", "B2C_1_x").is_err());
    }

    #[test]
    fn with_policy_keeps_host_tenant_and_form() {
        let a = Authority::b2c_tenant("contoso", "B2C_1_susi").unwrap();
        let r = a.with_policy("B2C_1_reset").unwrap();
        assert_eq!(
            r.to_string(),
            "https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_reset"
        );
        let t =
            Authority::parse("https://contoso.b2clogin.com/tfp/contoso.onmicrosoft.com/B2C_1_susi")
                .unwrap()
                .with_policy("B2C_1_edit")
                .unwrap();
        assert_eq!(
            t.to_string(),
            "https://contoso.b2clogin.com/tfp/contoso.onmicrosoft.com/B2C_1_edit"
        );
        let q = Authority::parse(
            "https://contoso.b2clogin.com/contoso.onmicrosoft.com?p=b2c_1a_signup_signin",
        )
        .unwrap()
        .with_policy("b2c_1a_reset")
        .unwrap();
        assert_eq!(
            q.discovery_url().as_str(),
            "https://contoso.b2clogin.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration?p=b2c_1a_reset"
        );
        assert!(a.with_policy("bad/policy").is_none());
        assert!(Authority::parse("https://login.microsoftonline.com/common")
            .unwrap()
            .with_policy("B2C_1_x")
            .is_none());
    }

    #[test]
    fn guid_check() {
        assert!(is_guid(GUID));
        assert!(is_guid("9188040D-6C67-4C5B-B112-36A304B66DAD"));
        assert!(!is_guid("{tenantid}"));
        assert!(!is_guid("aaaabbbb0000cccc1111dddd2222eeee"));
        assert!(!is_guid("aaaabbbb-0000-cccc-1111-dddd2222eeeg"));
    }

    #[test]
    fn never_panics_on_garbage() {
        for s in [
            "https://",
            "https://[::1",
            "https://ümlaut.example/t",
            "https://a.ciamlogin.com",
            "https://.ciamlogin.com",
            "https://x/tfp",
            "https://x/tfp/a",
            "https://x.b2clogin.com/t?p=",
            "https://x.b2clogin.com/t?p=a%2Fb",
            "\u{0}",
            "https://x/%ZZ",
            "https://x/adfs/extra",
        ] {
            let _ = Authority::parse(s);
            let _ = Authority::oidc(s);
            let _ = Authority::entra(s, "common");
        }
    }
}
