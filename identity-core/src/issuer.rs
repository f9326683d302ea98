//! Issuer validation for ID tokens, strict by default.
//!
//! An [`IssuerPolicy`] is derived once from the [`Authority`] and the `issuer` of its
//! discovery document, then checks the `iss` (and `tid`, `tfp`/`acr`) of every token:
//!
//! * **Exact match** for a single-tenant Entra ID authority, AD FS and generic OpenID Connect
//!   providers: `iss` must equal the discovered issuer byte for byte (no trailing-slash
//!   normalisation; Entra issuers differ precisely in that slash). Discovery by domain
//!   (`/contoso.onmicrosoft.com`) returns the GUID issuer, so the GUID is what is compared.
//!   Sovereign clouds need nothing special: China metadata says
//!   `https://login.partner.microsoftonline.cn/{tid}/v2.0` although requests go to
//!   `login.chinacloudapi.cn`, and that is what is compared.
//! * **`{tenantid}` template** (the `/common` and `/organizations` metadata, and v1 `/common`):
//!   the token's `tid` must be a GUID; it is substituted into the template and the result must
//!   equal `iss` exactly. This binds the tenant segment of `iss` to `tid` and rejects tokens
//!   whose issuer names another tenant.
//! * **Tenant segment.** For Entra ID and External ID with an exact issuer, a `tid` claim must
//!   equal the tenant segment of `iss`.
//! * **`/consumers`** advertises the fixed personal-account issuer
//!   `https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0`, compared
//!   exactly. **`/organizations`** never issues personal-account tokens: `tid`
//!   [`MSA_TENANT_ID`] is rejected. [`IssuerPolicy::reject_personal_accounts`] does the same
//!   for `/common`.
//! * **External ID** issuers are `https://{tenantGuid}.ciamlogin.com/{tenantGuid}/v2.0`, on a
//!   different host than the authority (`contoso.ciamlogin.com`); what discovery says is what
//!   is accepted.
//! * **B2C** issuers are `https://{host}/{tenantGuid}/v2.0/` (trailing slash) or, with the
//!   user flow's *token compatibility* setting, `https://{host}/tfp/{tenantGuid}/{policy}/v2.0/`.
//!   Both forms of the discovered tenant and host are accepted (the setting can change while
//!   the metadata is cached); in the `tfp` form the policy segment must be the authority's
//!   policy. The token's `tfp` claim (or the legacy `acr`), when present, must name the
//!   authority's policy; policy names compare case-insensitively.
//! * **v1 and v2 never mix.** A v1 token (`https://sts.windows.net/{tid}/`) is valid only
//!   against v1 metadata ([`IssuerPolicy::v1`]), and a v2 token only against v2 metadata.
//! * **Allow-list.** [`IssuerPolicy::allowed_tenants`] restricts multi-tenant apps to some
//!   `tid` values. A valid signature alone proves nothing about the tenant.
//! * **Signing-key scoping.** A key from the `/common` JWKS carries an `issuer` member (a
//!   template or the fixed personal-account issuer); the key that verified a token must have an
//!   issuer that, after substitution, equals the token's `iss`
//!   ([`IssuerPolicy::check_signing_key_issuer`]). Entra signs v1.0 access tokens
//!   (`https://sts.windows.net/{tid}/`) with the same keys, whose `issuer` is the v2.0
//!   form: under the v1 rules the key must name the token's tenant instead.
//! * **Discovery mix-up.** For a generic OpenID Connect authority (`OIDC_AUTHORITY`), the
//!   `issuer` of the discovery document must be the configured issuer
//!   ([`check_discovery_issuer`], OpenID Connect Discovery §4.3), or every token would be
//!   checked against whatever issuer the document names. Two Entra forms keep their own
//!   rules: a `{tenantid}` template where the authority says `common` or `organizations`,
//!   and the documented External ID custom URL domain, where
//!   `https://login.contoso.com/{tenant-id}/v2.0` publishes the issuer
//!   `https://{tenant-id}.ciamlogin.com/{tenant-id}/v2.0` (the same tenant id, on the
//!   tenant's own `ciamlogin.com` host). Anything else is refused, naming both issuers.

use url::Url;

use crate::authority::{is_guid, Authority, AuthorityKind, EntraTenant};

/// The fixed tenant id of personal Microsoft accounts (MSA).
pub const MSA_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// The placeholder in multi-tenant Entra issuers.
pub const TENANT_ID_TEMPLATE: &str = "{tenantid}";

/// The claims the issuer policy looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IssuerClaims<'a> {
    /// `iss`
    pub iss: &'a str,
    /// `tid` (Entra ID and External ID; absent in B2C tokens)
    pub tid: Option<&'a str>,
    /// `tfp`, the B2C policy (current claim name)
    pub tfp: Option<&'a str>,
    /// `acr`, the B2C policy under the legacy token compatibility setting
    pub acr: Option<&'a str>,
}

/// Why an issuer check failed. Each variant names the rule and shows what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    /// The token's `iss` is not the issuer from the discovery document.
    #[error("issuer mismatch: the token's iss is `{actual}` but the discovery document says `{expected}` (exact comparison)")]
    ExactMismatch {
        /// The discovered issuer.
        expected: String,
        /// The token's `iss`.
        actual: String,
    },
    /// A multi-tenant issuer template needs a GUID `tid` to be filled in.
    #[error("the discovered issuer `{template}` is a multi-tenant template; the token must carry a GUID `tid` claim to fill it, but tid is {}", .tid.as_deref().map_or_else(|| "missing".to_owned(), |t| format!("`{t}`")))]
    TemplateNeedsGuidTid {
        /// The issuer template.
        template: String,
        /// The token's `tid`, if any.
        tid: Option<String>,
    },
    /// `iss` differs from the template filled with the token's `tid` (the issuer names another
    /// tenant than `tid`).
    #[error("issuer mismatch: the token's iss is `{actual}` but its tid gives `{expected}` under the multi-tenant issuer template")]
    TemplateMismatch {
        /// The template filled with `tid`.
        expected: String,
        /// The token's `iss`.
        actual: String,
    },
    /// The `tid` claim does not match the tenant segment of `iss`.
    #[error("tenant mismatch: the token's iss `{iss}` names tenant `{iss_tenant}` but its tid is `{tid}`")]
    TenantMismatch {
        /// The token's `iss`.
        iss: String,
        /// The tenant segment of `iss`.
        iss_tenant: String,
        /// The token's `tid`.
        tid: String,
    },
    /// A B2C token whose `iss` is neither accepted form of the discovered issuer.
    #[error(
        "B2C issuer mismatch: the token's iss is `{actual}` but the user flow accepts {expected}"
    )]
    B2cIssuerMismatch {
        /// The accepted issuer forms.
        expected: String,
        /// The token's `iss`.
        actual: String,
    },
    /// A B2C token issued by another user flow or custom policy.
    #[error("B2C policy mismatch: the token's {claim} claim names policy `{actual}` but the authority's policy is `{expected}`")]
    B2cPolicyMismatch {
        /// The authority's policy.
        expected: String,
        /// The policy named by the token.
        actual: String,
        /// Where the token names it: `tfp`, `acr` or `iss`.
        claim: &'static str,
    },
    /// A v1.0 token checked against v2.0 metadata, or the reverse.
    #[error("token version mismatch: the token's iss `{actual}` is a v{actual_version} issuer but the policy validates v{expected_version} tokens; use the matching metadata (IssuerPolicy::v1 for v1.0 tokens)")]
    WrongTokenVersion {
        /// `"2.0"` or `"1.0"`.
        expected_version: &'static str,
        /// `"1.0"` or `"2.0"`.
        actual_version: &'static str,
        /// The token's `iss`.
        actual: String,
    },
    /// A personal Microsoft account token on an `/organizations` authority.
    #[error("a personal Microsoft account (tid {MSA_TENANT_ID}) cannot sign in through /organizations, which accepts work or school accounts only")]
    PersonalAccountOnOrganizations,
    /// A personal Microsoft account token, rejected by configuration.
    #[error(
        "personal Microsoft accounts (tid {MSA_TENANT_ID}) are not accepted by this application"
    )]
    PersonalAccountRejected,
    /// The token's tenant is not on the allow-list.
    #[error("tenant `{tid}` is not allowed; allowed tenants: {}", .allowed.join(", "))]
    TenantNotAllowed {
        /// The token's `tid`.
        tid: String,
        /// The configured allow-list.
        allowed: Vec<String>,
    },
    /// A tenant allow-list is configured but the token has no `tid`.
    #[error("a tenant allow-list is configured but the token has no tid claim")]
    MissingTid,
    /// The signing key's `issuer` does not vouch for the token's `iss`.
    #[error("signing key issuer mismatch: the key that verified the token is scoped to `{key_issuer}` but the token's iss is `{token_iss}`")]
    SigningKeyIssuerMismatch {
        /// The key's `issuer` member (after `{tenantid}` substitution).
        key_issuer: String,
        /// The token's `iss`.
        token_iss: String,
    },
    /// The discovery document of a generic OpenID Connect authority names another issuer.
    #[error("issuer mix-up: the discovery document of the configured issuer `{configured}` names the issuer `{discovered}`; they must be identical (OpenID Connect Discovery §4.3). Check OIDC_AUTHORITY: if the provider really uses `{discovered}`, configure that")]
    DiscoveryIssuerMismatch {
        /// The configured authority.
        configured: String,
        /// The `issuer` of its discovery document.
        discovered: String,
    },
    /// The signing key's `issuer` is a template but the token has no GUID `tid`.
    #[error("the signing key is scoped to the template `{key_issuer}`, which needs a GUID tid claim, but tid is {}", .tid.as_deref().map_or_else(|| "missing".to_owned(), |t| format!("`{t}`")))]
    SigningKeyNeedsGuidTid {
        /// The key's `issuer` member.
        key_issuer: String,
        /// The token's `tid`, if any.
        tid: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

#[derive(Clone, Debug)]
enum Rule {
    /// `iss` must equal `issuer`; when `tid_segment`, a `tid` must equal the first path segment.
    Exact { issuer: String, tid_segment: bool },
    /// `{tenantid}` substituted with a GUID `tid` must equal `iss`.
    Template { template: String },
    /// B2C: the discovered issuer, its plain form `{origin}/{guid}/v2.0/`, or the tfp form
    /// `{origin}/tfp/{guid}/{policy}/v2.0/`.
    B2c {
        discovered: String,
        plain: Option<String>,
        tfp_prefix: Option<String>,
        policy: String,
    },
}

/// The issuer rules for one authority and its discovered metadata.
#[derive(Clone, Debug)]
pub struct IssuerPolicy {
    rule: Rule,
    version: Version,
    organizations: bool,
    reject_personal: bool,
    allowed: Option<Vec<String>>,
}

impl IssuerPolicy {
    /// The rules for v2.0 tokens, from the authority kind and the discovery document's
    /// `issuer`.
    pub fn new(authority: &Authority, discovered_issuer: &str) -> Self {
        Self::build(authority, discovered_issuer, Version::V2)
    }

    /// The rules for v1.0 tokens (`https://sts.windows.net/{tid}/`), from the v1.0 discovery
    /// document's `issuer` ([`Authority::v1_discovery_url`]).
    pub fn v1(authority: &Authority, discovered_v1_issuer: &str) -> Self {
        Self::build(authority, discovered_v1_issuer, Version::V1)
    }

    fn build(authority: &Authority, discovered: &str, version: Version) -> Self {
        let rule = if discovered.contains(TENANT_ID_TEMPLATE) {
            Rule::Template {
                template: discovered.to_owned(),
            }
        } else {
            match authority.kind() {
                AuthorityKind::B2c { policy, .. } if version == Version::V2 => {
                    b2c_rule(discovered, policy)
                }
                AuthorityKind::EntraId { .. } | AuthorityKind::ExternalId { .. } => Rule::Exact {
                    issuer: discovered.to_owned(),
                    tid_segment: true,
                },
                _ => Rule::Exact {
                    issuer: discovered.to_owned(),
                    tid_segment: false,
                },
            }
        };
        let organizations = matches!(
            authority.kind(),
            AuthorityKind::EntraId {
                tenant: EntraTenant::Organizations,
                ..
            }
        );
        Self {
            rule,
            version,
            organizations,
            reject_personal: false,
            allowed: None,
        }
    }

    /// Accepts only tokens whose `tid` is in `tenants` (GUIDs, compared case-insensitively).
    /// Tokens without `tid` are then rejected.
    pub fn allowed_tenants(mut self, tenants: impl IntoIterator<Item = String>) -> Self {
        self.allowed = Some(
            tenants
                .into_iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
        );
        self
    }

    /// Rejects personal Microsoft accounts (`tid` [`MSA_TENANT_ID`]) when `yes`.
    pub fn reject_personal_accounts(mut self, yes: bool) -> Self {
        self.reject_personal = yes;
        self
    }

    /// Checks a token's issuer claims against the rules.
    pub fn check(&self, token: &IssuerClaims<'_>) -> Result<(), IssuerError> {
        let iss = token.iss;
        match &self.rule {
            Rule::Exact {
                issuer,
                tid_segment,
            } => {
                if iss != issuer {
                    return Err(self.version_error(issuer, iss).unwrap_or_else(|| {
                        IssuerError::ExactMismatch {
                            expected: issuer.clone(),
                            actual: iss.to_owned(),
                        }
                    }));
                }
                if let (true, Some(tid)) = (*tid_segment, token.tid) {
                    let iss_tenant = tenant_segment(iss).unwrap_or_default();
                    if !iss_tenant.eq_ignore_ascii_case(tid) {
                        return Err(IssuerError::TenantMismatch {
                            iss: iss.to_owned(),
                            iss_tenant,
                            tid: tid.to_owned(),
                        });
                    }
                }
            }
            Rule::Template { template } => {
                let tid = token.tid.filter(|t| is_guid(t)).ok_or_else(|| {
                    IssuerError::TemplateNeedsGuidTid {
                        template: template.clone(),
                        tid: token.tid.map(str::to_owned),
                    }
                })?;
                let expected = template.replace(TENANT_ID_TEMPLATE, tid);
                if iss != expected {
                    return Err(self.version_error(template, iss).unwrap_or(
                        IssuerError::TemplateMismatch {
                            expected,
                            actual: iss.to_owned(),
                        },
                    ));
                }
            }
            Rule::B2c {
                discovered,
                plain,
                tfp_prefix,
                policy,
            } => {
                let tfp_policy = tfp_prefix.as_deref().and_then(|prefix| {
                    iss.strip_prefix(prefix)?
                        .strip_suffix("/v2.0/")
                        .filter(|p| !p.is_empty() && !p.contains('/'))
                });
                if let Some(p) = tfp_policy {
                    if !p.eq_ignore_ascii_case(policy) {
                        return Err(IssuerError::B2cPolicyMismatch {
                            expected: policy.clone(),
                            actual: p.to_owned(),
                            claim: "iss",
                        });
                    }
                } else if iss != discovered && plain.as_deref() != Some(iss) {
                    let mut forms = vec![format!("`{discovered}`")];
                    if let Some(p) = plain.as_deref().filter(|p| p != discovered) {
                        forms.push(format!("`{p}`"));
                    }
                    if let Some(prefix) = tfp_prefix {
                        let tfp = format!("{prefix}{policy}/v2.0/");
                        if &tfp != discovered {
                            forms.push(format!("`{tfp}`"));
                        }
                    }
                    return Err(IssuerError::B2cIssuerMismatch {
                        expected: forms.join(" or "),
                        actual: iss.to_owned(),
                    });
                }
                let named = token
                    .tfp
                    .map(|p| (p, "tfp"))
                    .or(token.acr.map(|p| (p, "acr")));
                if let Some((p, claim)) = named {
                    if !p.eq_ignore_ascii_case(policy) {
                        return Err(IssuerError::B2cPolicyMismatch {
                            expected: policy.clone(),
                            actual: p.to_owned(),
                            claim,
                        });
                    }
                }
            }
        }

        let is_msa = token
            .tid
            .is_some_and(|t| t.eq_ignore_ascii_case(MSA_TENANT_ID));
        if is_msa && self.organizations {
            return Err(IssuerError::PersonalAccountOnOrganizations);
        }
        if is_msa && self.reject_personal {
            return Err(IssuerError::PersonalAccountRejected);
        }
        if let Some(allowed) = &self.allowed {
            let tid = token.tid.ok_or(IssuerError::MissingTid)?;
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(tid)) {
                return Err(IssuerError::TenantNotAllowed {
                    tid: tid.to_owned(),
                    allowed: allowed.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks the `issuer` member of the JWK that verified the token: after `{tenantid}`
    /// substitution with the token's GUID `tid` it must equal the token's `iss`. A key without
    /// an `issuer` member (`None`) is not scoped and passes.
    pub fn check_signing_key_issuer(
        &self,
        key_issuer: Option<&str>,
        token_iss: &str,
        tid: Option<&str>,
    ) -> Result<(), IssuerError> {
        let Some(key_issuer) = key_issuer else {
            return Ok(());
        };
        let expected = if key_issuer.contains(TENANT_ID_TEMPLATE) {
            let tid =
                tid.filter(|t| is_guid(t))
                    .ok_or_else(|| IssuerError::SigningKeyNeedsGuidTid {
                        key_issuer: key_issuer.to_owned(),
                        tid: tid.map(str::to_owned),
                    })?;
            key_issuer.replace(TENANT_ID_TEMPLATE, tid)
        } else {
            key_issuer.to_owned()
        };
        let same_tenant_v1 = || {
            self.version == Version::V1
                && is_v2_issuer(&expected)
                && !is_v2_issuer(token_iss)
                && matches!(
                    (tenant_segment(&expected), tenant_segment(token_iss)),
                    (Some(a), Some(b)) if !a.is_empty() && a.eq_ignore_ascii_case(&b)
                )
        };
        if expected == token_iss || same_tenant_v1() {
            Ok(())
        } else {
            Err(IssuerError::SigningKeyIssuerMismatch {
                key_issuer: expected,
                token_iss: token_iss.to_owned(),
            })
        }
    }

    /// When the mismatch is a v1 token on v2 rules (or the reverse), a clearer error.
    fn version_error(&self, expected: &str, actual: &str) -> Option<IssuerError> {
        let expected_v2 = is_v2_issuer(expected);
        let actual_v2 = is_v2_issuer(actual);
        let (expected_version, actual_version) = match (self.version, expected_v2, actual_v2) {
            (Version::V2, true, false) => ("2.0", "1.0"),
            (Version::V1, false, true) => ("1.0", "2.0"),
            _ => return None,
        };
        Some(IssuerError::WrongTokenVersion {
            expected_version,
            actual_version,
            actual: actual.to_owned(),
        })
    }
}

/// Checks the `issuer` of the discovery document of `authority` (see the
/// [module documentation](self)). Only generic OpenID Connect authorities are checked;
/// the Entra kinds have their own issuer rules.
pub fn check_discovery_issuer(authority: &Authority, discovered: &str) -> Result<(), IssuerError> {
    if !matches!(authority.kind(), AuthorityKind::Oidc) {
        return Ok(());
    }
    let configured = authority.to_string();
    let mismatch = || IssuerError::DiscoveryIssuerMismatch {
        configured: configured.clone(),
        discovered: discovered.to_owned(),
    };
    let (Ok(want), Ok(got)) = (Url::parse(&configured), Url::parse(discovered)) else {
        return Err(mismatch());
    };
    let segments = |u: &Url| -> Vec<String> {
        let mut v: Vec<String> = u.path().split('/').skip(1).map(str::to_owned).collect();
        // Discovery §4.1: a terminating `/` of the issuer is removed before appending
        // the well-known path, so the issuer may end with one.
        while v.last().is_some_and(String::is_empty) {
            v.pop();
        }
        v
    };
    let (want_segs, got_segs) = (segments(&want), segments(&got));
    let clean = got.query().is_none() && got.fragment().is_none();
    let same_origin = want.scheme() == got.scheme()
        && want.host_str() == got.host_str()
        && want.port_or_known_default() == got.port_or_known_default();
    if clean && same_origin && want_segs.len() == got_segs.len() {
        let all = want_segs.iter().zip(&got_segs).all(|(w, g)| {
            w == g
                || ((g == TENANT_ID_TEMPLATE || g.eq_ignore_ascii_case("%7Btenantid%7D"))
                    && (w.eq_ignore_ascii_case("common")
                        || w.eq_ignore_ascii_case("organizations")))
        });
        if all {
            return Ok(());
        }
    }
    // External ID custom URL domain: {custom host}/{tid}/v2.0 publishes
    // https://{tid}.ciamlogin.com/{tid}/v2.0.
    if let [tid, v2] = want_segs.as_slice() {
        if is_guid(tid) && v2 == "v2.0" && clean {
            let tid = tid.to_ascii_lowercase();
            let host_ok = got.scheme() == "https"
                && got.port().is_none()
                && got.host_str() == Some(&format!("{tid}.ciamlogin.com"));
            let path_ok = matches!(got_segs.as_slice(), [t, v] if t.eq_ignore_ascii_case(&tid) && v == "v2.0");
            if host_ok && path_ok && !got.path().ends_with('/') {
                return Ok(());
            }
        }
    }
    Err(mismatch())
}

fn is_v2_issuer(iss: &str) -> bool {
    let trimmed = iss.trim_end_matches('/');
    trimmed.ends_with("/v2.0")
}

/// The first path segment of an issuer URL (the tenant in Entra issuers).
fn tenant_segment(iss: &str) -> Option<String> {
    let url = Url::parse(iss).ok()?;
    let first = url.path_segments()?.next()?;
    Some(first.to_owned())
}

fn b2c_rule(discovered: &str, policy: &str) -> Rule {
    let mut plain = None;
    let mut tfp_prefix = None;
    if let Ok(url) = Url::parse(discovered) {
        let origin = &url[..url::Position::BeforePath];
        let segs: Vec<&str> = url
            .path_segments()
            .map(Iterator::collect)
            .unwrap_or_default();
        let (tenant, form_ok) = match segs.as_slice() {
            [tenant, "v2.0", ""] => (Some(*tenant), true),
            [tfp, tenant, _policy, "v2.0", ""] if tfp.eq_ignore_ascii_case("tfp") => {
                (Some(*tenant), true)
            }
            _ => (None, false),
        };
        if let (Some(tenant), true) = (tenant, form_ok) {
            plain = Some(format!("{origin}/{tenant}/v2.0/"));
            tfp_prefix = Some(format!("{origin}/tfp/{tenant}/"));
        }
    }
    Rule::B2c {
        discovered: discovered.to_owned(),
        plain,
        tfp_prefix,
        policy: policy.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
    const OTHER: &str = "bbbbcccc-1111-dddd-2222-eeee3333ffff";
    const EXTERNAL: &str = "11112222-bbbb-3333-cccc-4444dddd5555";

    fn fixture(path: &str) -> Value {
        let full = format!("{}/fixtures/entra/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn discovered_issuer(file: &str) -> String {
        fixture(&format!("discovery/{file}"))["issuer"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn token(file: &str) -> Value {
        fixture(&format!("id-tokens/{file}"))["payload"].clone()
    }

    fn claims(p: &Value) -> IssuerClaims<'_> {
        IssuerClaims {
            iss: p["iss"].as_str().unwrap(),
            tid: p["tid"].as_str(),
            tfp: p["tfp"].as_str(),
            acr: p["acr"].as_str(),
        }
    }

    fn auth(s: &str) -> Authority {
        Authority::parse(s).unwrap()
    }

    enum Expect {
        Ok,
        Err(fn(&IssuerError) -> bool),
    }

    #[test]
    fn fixture_table() {
        let common = auth("https://login.microsoftonline.com/common");
        let orgs = auth("https://login.microsoftonline.com/organizations");
        let consumers = auth("https://login.microsoftonline.com/consumers");
        let tenant = auth(&format!("https://login.microsoftonline.com/{TENANT}"));
        let by_domain = auth("https://login.microsoftonline.com/contoso.onmicrosoft.com");
        let b2c = auth("https://contoso.b2clogin.com/contoso.onmicrosoft.com/b2c_1_signupsignin1");
        let b2c_other = b2c.with_policy("B2C_1_profile_edit").unwrap();
        let b2c_query =
            auth("https://contoso.b2clogin.com/contoso.onmicrosoft.com?p=b2c_1a_signup_signin");
        let ciam = auth("https://contoso.ciamlogin.com/11112222-bbbb-3333-cccc-4444dddd5555");
        let ciam_bare = auth("https://contoso.ciamlogin.com");

        type Row<'a> = (&'a Authority, &'a str, bool, &'a str, Expect);
        let rows: Vec<Row<'_>> = vec![
            (
                &tenant,
                "v2-tenant.json",
                false,
                "v2-workforce.json",
                Expect::Ok,
            ),
            (
                &by_domain,
                "v2-tenant.json",
                false,
                "v2-workforce.json",
                Expect::Ok,
            ),
            (
                &tenant,
                "v2-tenant.json",
                false,
                "v2-workforce-cross-tenant.json",
                Expect::Ok,
            ),
            (
                &common,
                "v2-common.json",
                false,
                "v2-workforce.json",
                Expect::Ok,
            ),
            (
                &common,
                "v2-common.json",
                false,
                "v2-workforce-cross-tenant.json",
                Expect::Ok,
            ),
            (
                &common,
                "v2-common.json",
                false,
                "v2-msa-personal.json",
                Expect::Ok,
            ),
            (
                &common,
                "v2-common.json",
                false,
                "v2-msa-personal-refreshed.json",
                Expect::Ok,
            ),
            (
                &orgs,
                "v2-organizations.json",
                false,
                "v2-workforce.json",
                Expect::Ok,
            ),
            (
                &orgs,
                "v2-organizations.json",
                false,
                "v2-msa-personal.json",
                Expect::Err(|e| matches!(e, IssuerError::PersonalAccountOnOrganizations)),
            ),
            (
                &consumers,
                "v2-consumers.json",
                false,
                "v2-msa-personal.json",
                Expect::Ok,
            ),
            (
                &consumers,
                "v2-consumers.json",
                false,
                "v2-workforce.json",
                Expect::Err(|e| matches!(e, IssuerError::ExactMismatch { .. })),
            ),
            (
                &common,
                "v1-common.json",
                true,
                "v1-workforce.json",
                Expect::Ok,
            ),
            (
                &tenant,
                "v1-tenant.json",
                true,
                "v1-workforce.json",
                Expect::Ok,
            ),
            (
                &tenant,
                "v2-tenant.json",
                false,
                "v1-workforce.json",
                Expect::Err(|e| {
                    matches!(
                        e,
                        IssuerError::WrongTokenVersion {
                            expected_version: "2.0",
                            ..
                        }
                    )
                }),
            ),
            (
                &common,
                "v2-common.json",
                false,
                "v1-workforce.json",
                Expect::Err(|e| {
                    matches!(
                        e,
                        IssuerError::WrongTokenVersion {
                            expected_version: "2.0",
                            ..
                        }
                    )
                }),
            ),
            (
                &tenant,
                "v1-tenant.json",
                true,
                "v2-workforce.json",
                Expect::Err(|e| {
                    matches!(
                        e,
                        IssuerError::WrongTokenVersion {
                            expected_version: "1.0",
                            ..
                        }
                    )
                }),
            ),
            (
                &b2c,
                "b2c-userflow-path.json",
                false,
                "b2c-userflow-tfp.json",
                Expect::Ok,
            ),
            (
                &b2c,
                "b2c-userflow-path.json",
                false,
                "b2c-userflow-acr-legacy.json",
                Expect::Ok,
            ),
            (
                &b2c,
                "b2c-userflow-path.json",
                false,
                "b2c-userflow-tfp-issuer.json",
                Expect::Ok,
            ),
            (
                &b2c,
                "b2c-userflow-path-tfp-issuer.json",
                false,
                "b2c-userflow-tfp-issuer.json",
                Expect::Ok,
            ),
            (
                &b2c,
                "b2c-userflow-path-tfp-issuer.json",
                false,
                "b2c-userflow-tfp.json",
                Expect::Ok,
            ),
            (
                &b2c_other,
                "b2c-userflow-path.json",
                false,
                "b2c-userflow-tfp.json",
                Expect::Err(|e| matches!(e, IssuerError::B2cPolicyMismatch { claim: "tfp", .. })),
            ),
            (
                &b2c_other,
                "b2c-userflow-path.json",
                false,
                "b2c-userflow-acr-legacy.json",
                Expect::Err(|e| matches!(e, IssuerError::B2cPolicyMismatch { claim: "acr", .. })),
            ),
            (
                &b2c_other,
                "b2c-userflow-path.json",
                false,
                "b2c-userflow-tfp-issuer.json",
                Expect::Err(|e| matches!(e, IssuerError::B2cPolicyMismatch { claim: "iss", .. })),
            ),
            (
                &b2c_query,
                "b2c-custom-policy-query.json",
                false,
                "b2c-userflow-tfp.json",
                Expect::Err(|e| matches!(e, IssuerError::B2cPolicyMismatch { .. })),
            ),
            (
                &b2c,
                "b2c-userflow-path.json",
                false,
                "v2-workforce.json",
                Expect::Err(|e| matches!(e, IssuerError::B2cIssuerMismatch { .. })),
            ),
            (&ciam, "ciam-tenant.json", false, "ciam.json", Expect::Ok),
            (
                &ciam_bare,
                "ciam-tenant.json",
                false,
                "ciam.json",
                Expect::Ok,
            ),
            (
                &ciam,
                "ciam-tenant.json",
                false,
                "v2-workforce.json",
                Expect::Err(|e| matches!(e, IssuerError::ExactMismatch { .. })),
            ),
            (
                &tenant,
                "v2-tenant.json",
                false,
                "ciam.json",
                Expect::Err(|e| matches!(e, IssuerError::ExactMismatch { .. })),
            ),
        ];
        for (authority, disc, v1, tok, expect) in rows {
            let issuer = discovered_issuer(disc);
            let policy = if v1 {
                IssuerPolicy::v1(authority, &issuer)
            } else {
                IssuerPolicy::new(authority, &issuer)
            };
            let payload = token(tok);
            let result = policy.check(&claims(&payload));
            match (expect, result) {
                (Expect::Ok, Ok(())) => {}
                (Expect::Err(f), Err(e)) if f(&e) => {
                    assert!(!e.to_string().is_empty());
                }
                (_, r) => panic!("{authority} + {disc} + {tok}: unexpected {r:?}"),
            }
        }
    }

    #[test]
    fn negative_rows() {
        let common = auth("https://login.microsoftonline.com/common");
        let policy = IssuerPolicy::new(&common, &discovered_issuer("v2-common.json"));
        let iss_tenant = format!("https://login.microsoftonline.com/{TENANT}/v2.0");

        // Cross-tenant iss with the template: iss names TENANT, tid says OTHER.
        let e = policy
            .check(&IssuerClaims {
                iss: &iss_tenant,
                tid: Some(OTHER),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(e, IssuerError::TemplateMismatch { .. }), "{e}");
        assert!(e.to_string().contains(OTHER));

        // tid not a GUID, or missing.
        for tid in [Some("contoso.onmicrosoft.com"), Some("{tenantid}"), None] {
            let e = policy
                .check(&IssuerClaims {
                    iss: "https://login.microsoftonline.com/{tenantid}/v2.0",
                    tid,
                    ..Default::default()
                })
                .unwrap_err();
            assert!(matches!(e, IssuerError::TemplateNeedsGuidTid { .. }), "{e}");
            assert!(e.to_string().contains("template"), "{e}");
        }

        // Single tenant: tid differs from the tenant segment of a correct iss.
        let tenant = auth(&format!("https://login.microsoftonline.com/{TENANT}"));
        let policy = IssuerPolicy::new(&tenant, &discovered_issuer("v2-tenant.json"));
        let e = policy
            .check(&IssuerClaims {
                iss: &iss_tenant,
                tid: Some(OTHER),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(e, IssuerError::TenantMismatch { .. }), "{e}");
        // Exact: no trailing-slash normalisation.
        let e = policy
            .check(&IssuerClaims {
                iss: &format!("{iss_tenant}/"),
                tid: Some(TENANT),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(e, IssuerError::ExactMismatch { .. }), "{e}");

        // Allow-list (case-insensitive) and missing tid.
        let wf = token("v2-workforce.json");
        let allowed = IssuerPolicy::new(&common, &discovered_issuer("v2-common.json"))
            .allowed_tenants([TENANT.to_uppercase()]);
        assert_eq!(allowed.check(&claims(&wf)), Ok(()));
        let denied = IssuerPolicy::new(&common, &discovered_issuer("v2-common.json"))
            .allowed_tenants([OTHER.to_owned()]);
        let e = denied.check(&claims(&wf)).unwrap_err();
        assert!(matches!(e, IssuerError::TenantNotAllowed { .. }), "{e}");
        assert!(e.to_string().contains(OTHER));
        let b2c = auth("https://contoso.b2clogin.com/contoso.onmicrosoft.com/b2c_1_signupsignin1");
        let b2c_allowed = IssuerPolicy::new(&b2c, &discovered_issuer("b2c-userflow-path.json"))
            .allowed_tenants([OTHER.to_owned()]);
        assert_eq!(
            b2c_allowed.check(&claims(&token("b2c-userflow-tfp.json"))),
            Err(IssuerError::MissingTid)
        );

        // Personal accounts rejected by configuration.
        let msa = token("v2-msa-personal.json");
        let no_msa = IssuerPolicy::new(&common, &discovered_issuer("v2-common.json"))
            .reject_personal_accounts(true);
        assert_eq!(
            no_msa.check(&claims(&msa)),
            Err(IssuerError::PersonalAccountRejected)
        );
        assert_eq!(no_msa.check(&claims(&wf)), Ok(()));
    }

    #[test]
    fn sovereign_clouds() {
        for (authority, disc, wrong_host) in [
            (
                format!("https://login.chinacloudapi.cn/{TENANT}"),
                "china-tenant-v2.json",
                format!("https://login.chinacloudapi.cn/{TENANT}/v2.0"),
            ),
            (
                format!("https://login.microsoftonline.us/{TENANT}"),
                "usgov-tenant-v2.json",
                format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
            ),
        ] {
            let issuer = discovered_issuer(disc);
            let policy = IssuerPolicy::new(&auth(&authority), &issuer);
            let ok = IssuerClaims {
                iss: &issuer,
                tid: Some(TENANT),
                ..Default::default()
            };
            assert_eq!(policy.check(&ok), Ok(()), "{disc}");
            let bad = IssuerClaims {
                iss: &wrong_host,
                ..ok
            };
            assert!(matches!(
                policy.check(&bad),
                Err(IssuerError::ExactMismatch { .. })
            ));
        }
        assert!(discovered_issuer("china-tenant-v2.json")
            .starts_with("https://login.partner.microsoftonline.cn/"));
    }

    #[test]
    fn generic_and_adfs_are_exact() {
        let oidc = Authority::oidc("https://idp.example.com/realms/x").unwrap();
        let policy = IssuerPolicy::new(&oidc, "https://idp.example.com/realms/x");
        let ok = IssuerClaims {
            iss: "https://idp.example.com/realms/x",
            tid: Some("not-a-guid"),
            ..Default::default()
        };
        assert_eq!(policy.check(&ok), Ok(()));
        let slash = IssuerClaims {
            iss: "https://idp.example.com/realms/x/",
            ..ok
        };
        assert!(policy.check(&slash).is_err());
        let adfs = auth("https://fs.contoso.com/adfs");
        let policy = IssuerPolicy::new(&adfs, "https://fs.contoso.com/adfs");
        assert_eq!(
            policy.check(&IssuerClaims {
                iss: "https://fs.contoso.com/adfs",
                ..Default::default()
            }),
            Ok(())
        );
    }

    #[test]
    fn discovery_issuer_must_be_the_configured_one() {
        let tid = EXTERNAL;
        let oidc = |s: &str| Authority::oidc(s).unwrap();
        let ok = |a: &Authority, d: &str| {
            assert_eq!(check_discovery_issuer(a, d), Ok(()), "{a} / {d}");
        };
        let refused = |a: &Authority, d: &str| {
            let e = check_discovery_issuer(a, d).unwrap_err();
            assert!(
                matches!(e, IssuerError::DiscoveryIssuerMismatch { .. }),
                "{a} / {d}: {e}"
            );
            let text = e.to_string();
            assert!(text.contains(d) && text.contains(&a.to_string()), "{text}");
        };
        let plain = oidc("https://idp.example.com/realms/x");
        ok(&plain, "https://idp.example.com/realms/x");
        ok(&plain, "https://idp.example.com/realms/x/");
        ok(
            &oidc("https://tenant.auth0.com/"),
            "https://tenant.auth0.com/",
        );
        refused(&plain, "https://idp.example.com/realms/y");
        refused(&plain, "https://evil.example.com/realms/x");
        refused(&plain, "http://idp.example.com/realms/x");
        refused(&plain, "https://idp.example.com:8443/realms/x");
        refused(&plain, "https://idp.example.com/realms/x/extra");
        refused(&plain, "https://idp.example.com/realms");
        refused(&plain, "not a url");

        // The documented External ID custom URL domain exception.
        let custom = oidc(&format!("https://login.contoso.com/{tid}/v2.0"));
        ok(&custom, &format!("https://{tid}.ciamlogin.com/{tid}/v2.0"));
        ok(&custom, &format!("https://login.contoso.com/{tid}/v2.0"));
        let upper = oidc(&format!(
            "https://login.contoso.com/{}/v2.0",
            tid.to_uppercase()
        ));
        ok(&upper, &format!("https://{tid}.ciamlogin.com/{tid}/v2.0"));
        // Another tenant, another host, another path or the v1 form: refused.
        refused(
            &custom,
            &format!("https://{OTHER}.ciamlogin.com/{OTHER}/v2.0"),
        );
        refused(
            &custom,
            &format!("https://{tid}.ciamlogin.com/{OTHER}/v2.0"),
        );
        refused(
            &custom,
            &format!("https://{OTHER}.ciamlogin.com/{tid}/v2.0"),
        );
        refused(
            &custom,
            &format!("https://contoso.ciamlogin.com/{tid}/v2.0"),
        );
        refused(&custom, &format!("https://{tid}.b2clogin.com/{tid}/v2.0"));
        refused(
            &custom,
            &format!("https://{tid}.ciamlogin.com.evil.example/{tid}/v2.0"),
        );
        refused(&custom, &format!("http://{tid}.ciamlogin.com/{tid}/v2.0"));
        refused(&custom, &format!("https://{tid}.ciamlogin.com/{tid}"));
        refused(&custom, &format!("https://{tid}.ciamlogin.com/{tid}/v2.0/"));
        refused(
            &custom,
            &format!("https://login.microsoftonline.com/{tid}/v2.0"),
        );
        // The exception needs a tenant GUID in the configured issuer.
        let by_name = oidc("https://login.contoso.com/contoso.onmicrosoft.com/v2.0");
        refused(&by_name, &format!("https://{tid}.ciamlogin.com/{tid}/v2.0"));

        // Entra's multi-tenant template keeps its own rule.
        let common = oidc("https://login.microsoftonline.com/common/v2.0");
        ok(&common, "https://login.microsoftonline.com/{tenantid}/v2.0");
        ok(
            &oidc("https://login.microsoftonline.com/organizations/v2.0"),
            "https://login.microsoftonline.com/{tenantid}/v2.0",
        );
        refused(&plain, "https://idp.example.com/{tenantid}/x");
        refused(&common, "https://evil.example.com/{tenantid}/v2.0");

        // Entra authorities are not subject to this check (their own rules apply).
        let ciam = auth("https://contoso.ciamlogin.com/11112222-bbbb-3333-cccc-4444dddd5555");
        ok(&ciam, "https://11112222-bbbb-3333-cccc-4444dddd5555.ciamlogin.com/11112222-bbbb-3333-cccc-4444dddd5555/v2.0");
    }

    #[test]
    fn v1_tokens_are_scoped_by_the_tenant_of_v2_keys() {
        let common = auth("https://login.microsoftonline.com/common");
        let v1 = IssuerPolicy::v1(&common, "https://sts.windows.net/{tenantid}/");
        let key = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let iss = format!("https://sts.windows.net/{TENANT}/");
        assert_eq!(
            v1.check_signing_key_issuer(Some(key), &iss, Some(TENANT)),
            Ok(())
        );
        // A key of another tenant, or the MSA-only key, does not vouch for it.
        let other = format!("https://login.microsoftonline.com/{OTHER}/v2.0");
        assert!(v1
            .check_signing_key_issuer(Some(&other), &iss, Some(TENANT))
            .is_err());
        let msa = format!("https://login.microsoftonline.com/{MSA_TENANT_ID}/v2.0");
        assert!(v1
            .check_signing_key_issuer(Some(&msa), &iss, Some(TENANT))
            .is_err());
        // Under the v2 rules a v1 issuer still needs the exact key issuer.
        let v2 = IssuerPolicy::new(&common, "https://login.microsoftonline.com/{tenantid}/v2.0");
        assert!(v2
            .check_signing_key_issuer(Some(key), &iss, Some(TENANT))
            .is_err());
    }

    #[test]
    fn signing_key_scoping_from_jwks() {
        let jwks = fixture("jwks/common-v2-keys.json");
        let keys = jwks["keys"].as_array().unwrap();
        let template_key = keys
            .iter()
            .find_map(|k| k["issuer"].as_str().filter(|i| i.contains("{tenantid}")))
            .unwrap();
        let msa_key = keys
            .iter()
            .find_map(|k| k["issuer"].as_str().filter(|i| i.contains(MSA_TENANT_ID)))
            .unwrap();
        let common = auth("https://login.microsoftonline.com/common");
        let policy = IssuerPolicy::new(&common, &discovered_issuer("v2-common.json"));
        let wf = token("v2-workforce.json");
        let msa = token("v2-msa-personal.json");
        let (wf_iss, wf_tid) = (wf["iss"].as_str().unwrap(), wf["tid"].as_str());
        let (msa_iss, msa_tid) = (msa["iss"].as_str().unwrap(), msa["tid"].as_str());

        assert_eq!(
            policy.check_signing_key_issuer(None, wf_iss, wf_tid),
            Ok(())
        );
        assert_eq!(
            policy.check_signing_key_issuer(Some(template_key), wf_iss, wf_tid),
            Ok(())
        );
        assert_eq!(
            policy.check_signing_key_issuer(Some(msa_key), msa_iss, msa_tid),
            Ok(())
        );
        // An MSA-only key cannot vouch for a workforce issuer.
        assert!(matches!(
            policy.check_signing_key_issuer(Some(msa_key), wf_iss, wf_tid),
            Err(IssuerError::SigningKeyIssuerMismatch { .. })
        ));
        // A template key filled with another tenant does not match.
        assert!(matches!(
            policy.check_signing_key_issuer(Some(template_key), wf_iss, Some(OTHER)),
            Err(IssuerError::SigningKeyIssuerMismatch { .. })
        ));
        assert!(matches!(
            policy.check_signing_key_issuer(Some(template_key), wf_iss, None),
            Err(IssuerError::SigningKeyNeedsGuidTid { .. })
        ));
    }
}
