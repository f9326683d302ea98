//! Request routing (tenants, policies, hosts) and the OpenID Connect endpoints.

use crate::config::{TenantKind, TestApp, TestTenant, TestUser, CONSUMERS_TENANT_ID, GRAPH_APP_ID};
use crate::keys::{
    b64std, b64url, pool_key, pool_peek, rogue_key, sign_hs256, sign_none, sign_rs256, Jws,
    KeyMaterial,
};
use crate::pages;
use crate::server::{
    CodeGrant, DeviceGrant, DropConnection, Grant, RefreshGrant, Shared, SsoSession,
};
use crate::util::{
    cookies, encode_pairs, fmt_timestamp, guid, html_response, json_response, random_b64, redirect,
    urlencode, OAuthError,
};
use crate::{DeviceAnswer, Endpoint, Fault, Tamper};
use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Which directory a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Authority {
    /// A configured tenant (index into `cfg.tenants`).
    Tenant(usize),
    /// `common`: workforce and personal accounts.
    Common,
    /// `organizations`: workforce accounts only.
    Organizations,
    /// `consumers`: personal accounts only.
    Consumers,
}

/// Per-request context: the host the client used and the tenant it addressed.
pub(crate) struct Ctx {
    base: String,
    host: String,
    seg: String,
    authority: Authority,
    policy: Option<String>,
    policy_query: bool,
    correlation: String,
    /// The request came to an External ID host (`*.ciamlogin.com` or a custom domain).
    ciam_host: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    DiscoveryV2,
    DiscoveryV1,
    Authorize,
    Token,
    Logout,
    DeviceCode,
    DeviceAuth,
    JwksV2,
    JwksV1,
    UserinfoV1,
}

impl Action {
    fn endpoint(self) -> Endpoint {
        match self {
            Action::DiscoveryV2 | Action::DiscoveryV1 => Endpoint::Discovery,
            Action::Authorize => Endpoint::Authorize,
            Action::Token => Endpoint::Token,
            Action::Logout => Endpoint::Logout,
            Action::DeviceCode => Endpoint::DeviceCode,
            Action::DeviceAuth => Endpoint::DeviceAuth,
            Action::JwksV2 | Action::JwksV1 => Endpoint::Jwks,
            Action::UserinfoV1 => Endpoint::Userinfo,
        }
    }
}

enum Route {
    Tenant {
        seg: String,
        policy: Option<String>,
        action: Action,
    },
    Api,
    MemberObjects,
    ApiEcho,
    Userinfo,
    Instance,
    ErrorInfo,
    ManagedIdentity(crate::federation::MiShape),
}

fn action_of(rest: &[&str]) -> Option<Action> {
    Some(match rest {
        ["v2.0", ".well-known", "openid-configuration"] => Action::DiscoveryV2,
        [".well-known", "openid-configuration"] => Action::DiscoveryV1,
        ["oauth2", "v2.0", "authorize"] => Action::Authorize,
        ["oauth2", "v2.0", "token"] => Action::Token,
        ["oauth2", "v2.0", "logout"] => Action::Logout,
        ["oauth2", "v2.0", "devicecode"] => Action::DeviceCode,
        ["oauth2", "deviceauth"] => Action::DeviceAuth,
        ["discovery", "v2.0", "keys"] => Action::JwksV2,
        ["discovery", "keys"] => Action::JwksV1,
        ["openid", "userinfo"] => Action::UserinfoV1,
        _ => return None,
    })
}

fn classify(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["v1.0", "me"] => return Some(Route::Api),
        ["v1.0", "me", "getMemberObjects"] => return Some(Route::MemberObjects),
        ["api", "echo"] => return Some(Route::ApiEcho),
        ["oidc", "userinfo"] => return Some(Route::Userinfo),
        ["common", "discovery", "instance"] => return Some(Route::Instance),
        ["error"] => return Some(Route::ErrorInfo),
        ["metadata", "identity", "oauth2", "token"] => {
            return Some(Route::ManagedIdentity(crate::federation::MiShape::Imds))
        }
        ["msi", "token"] => {
            return Some(Route::ManagedIdentity(
                crate::federation::MiShape::AppService,
            ))
        }
        _ => {}
    }
    let (first, rest) = segs.split_first()?;
    if let Some(action) = action_of(rest) {
        return Some(Route::Tenant {
            seg: first.to_string(),
            policy: None,
            action,
        });
    }
    let (policy, rest2) = rest.split_first()?;
    action_of(rest2).map(|action| Route::Tenant {
        seg: first.to_string(),
        policy: Some(policy.to_string()),
        action,
    })
}

fn host_of(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into())
}

fn strip_port(host: &str) -> String {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .unwrap_or(host)
            .trim_start_matches('[')
            .to_lowercase();
    }
    host.split(':').next().unwrap_or(host).to_lowercase()
}

fn parse_pairs(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn first(pairs: &[(String, String)]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (k, v) in pairs {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    m
}

type S = AxState<Arc<Shared>>;

/// Entry point for everything that is not the control API: answers, and adds the time
/// spent on the answer to the endpoint's busy time (see `TestKit::busy`).
pub(crate) async fn dispatch(state: S, req: Request<Body>) -> Response {
    let started = std::time::Instant::now();
    let sh = state.0.clone();
    let mut endpoint = None;
    let resp = answer(state, req, &mut endpoint).await;
    if let Some(e) = endpoint {
        sh.add_busy(e, started.elapsed());
    }
    resp
}

async fn answer(AxState(sh): S, req: Request<Body>, timed: &mut Option<Endpoint>) -> Response {
    let (parts, body) = req.into_parts();
    let host = host_of(&parts.headers, &parts.uri);
    let base = format!("{}://{}", sh.scheme, host);
    let query = parse_pairs(parts.uri.query().unwrap_or(""));
    let correlation = parts
        .headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64)
        .map(str::to_string)
        .unwrap_or_else(guid);
    let Some(route) = classify(parts.uri.path()) else {
        return not_found();
    };
    let endpoint = match &route {
        Route::Tenant { action, .. } => action.endpoint(),
        Route::Api => Endpoint::Api,
        Route::MemberObjects => Endpoint::MemberObjects,
        Route::ApiEcho => Endpoint::ApiEcho,
        Route::Userinfo => Endpoint::Userinfo,
        Route::Instance => Endpoint::InstanceDiscovery,
        Route::ManagedIdentity(_) => Endpoint::ManagedIdentity,
        Route::ErrorInfo => {
            let q = first(&query);
            let code = q.get("code").cloned().unwrap_or_default();
            return html_response(
                StatusCode::OK,
                pages::error_page(
                    &format!("AADSTS{code}"),
                    "See the error description returned with this code.",
                    &correlation,
                    &fmt_timestamp(sh.now()),
                ),
            );
        }
    };
    sh.count(endpoint);
    *timed = Some(endpoint);
    match sh.fault(endpoint) {
        Some(Fault::Down) => {
            let mut r = Response::new(Body::empty());
            r.extensions_mut().insert(DropConnection);
            return r;
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Status(s)) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let err = if s >= 500 {
                OAuthError::new(
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                )
            } else {
                OAuthError::new(
                    "invalid_request",
                    90023,
                    "Invalid request (injected fault).",
                )
            };
            let mut r = json_response(status, &err.body(&base, sh.now(), &correlation));
            if s == 429 || s == 503 {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return r;
        }
        Some(Fault::Oversized(n)) => return oversized_body(n),
        Some(Fault::MalformedJson) => {
            let mut r = (StatusCode::OK, "{not json").into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            return r;
        }
        None => {}
    }
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let form = if parts.method == Method::POST {
        parse_pairs(&String::from_utf8_lossy(&bytes))
    } else {
        Vec::new()
    };
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let resp = match route {
        Route::Api => api_me(&sh, &parts.headers, &base),
        Route::MemberObjects => member_objects(&sh, &parts.method, &parts.headers, &base, &bytes),
        Route::ApiEcho => api_echo(&sh, &parts.headers, &base),
        Route::Userinfo => userinfo(&sh, &parts.headers, &base),
        Route::Instance => instance_discovery(&base, &query),
        Route::ErrorInfo => not_found(),
        Route::ManagedIdentity(shape) => {
            crate::federation::managed_identity(&sh, shape, &parts.headers, &query)
        }
        Route::Tenant {
            seg,
            policy,
            action,
        } => {
            let ctx = match resolve(&sh, &base, &host, &seg, policy, &query, correlation) {
                Ok(c) => c,
                Err(r) => return *r,
            };
            let mut params = query.clone();
            params.extend(form.iter().cloned());
            match action {
                Action::DiscoveryV2 => discovery_v2(&sh, &ctx),
                Action::DiscoveryV1 => discovery_v1(&sh, &ctx),
                Action::JwksV2 | Action::JwksV1 => jwks(&sh, &ctx),
                Action::Authorize => authorize(&sh, &ctx, &parts.method, &parts.headers, &params),
                Action::Token => {
                    if parts.method != Method::POST {
                        return token_error(
                            &sh,
                            &ctx,
                            OAuthError::new(
                                "invalid_request",
                                900561,
                                "The endpoint only accepts POST requests. Received a GET request.",
                            ),
                        );
                    }
                    token(&sh, &ctx, &parts.headers, &form)
                }
                Action::Logout => {
                    let (resp, notices) = logout(&sh, &ctx, &parts.headers, &params);
                    crate::logout::deliver(&sh, notices).await;
                    resp
                }
                Action::DeviceCode => device_code(&sh, &ctx, &form),
                Action::DeviceAuth => device_auth(&sh, &ctx, &parts.method, &form),
                Action::UserinfoV1 => userinfo(&sh, &parts.headers, &base),
            }
        }
    };
    tracing::info!(%method, %path, endpoint = endpoint.name(), status = resp.status().as_u16(), "request");
    resp
}

/// 200 with a JSON-looking body of `n` bytes, produced chunk by chunk while the client
/// reads (no `Content-Length`), so the kit itself never holds it.
fn oversized_body(n: u64) -> Response {
    const CHUNK: usize = 64 * 1024;
    let chunk = axum::body::Bytes::from(vec![b' '; CHUNK]);
    let head = axum::body::Bytes::from_static(b"{\"padding\":\"");
    let mut left = n;
    let mut first = true;
    let stream = futures_util::stream::poll_fn(move |_| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        let piece = if first {
            first = false;
            head.clone()
        } else {
            chunk.clone()
        };
        let take = (piece.len() as u64).min(left) as usize;
        left -= take as u64;
        std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(piece.slice(..take))))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "error_description": "No such endpoint on this identity-testkit."}),
    )
}

fn invalid_tenant(sh: &Shared, base: &str, seg: &str, correlation: &str) -> Box<Response> {
    let e = OAuthError::new(
        "invalid_tenant",
        90002,
        format!("Tenant '{seg}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
    );
    Box::new(json_response(
        StatusCode::BAD_REQUEST,
        &e.body(base, sh.now(), correlation),
    ))
}

fn resolve(
    sh: &Shared,
    base: &str,
    host: &str,
    seg: &str,
    policy_seg: Option<String>,
    query: &[(String, String)],
    correlation: String,
) -> Result<Ctx, Box<Response>> {
    let h = strip_port(host);
    let b2c_host = h.ends_with(".b2clogin.com");
    let custom_domain = sh
        .cfg
        .custom_domains
        .iter()
        .find(|d| d.host.eq_ignore_ascii_case(&h));
    let ciam_host = h.ends_with(".ciamlogin.com") || custom_domain.is_some();
    let lseg = seg.to_lowercase();
    let allowed = |k: TenantKind| {
        if b2c_host {
            k == TenantKind::B2c
        } else if ciam_host {
            k == TenantKind::ExternalId
        } else {
            true
        }
    };
    let alias = match lseg.as_str() {
        "common" => Some(Authority::Common),
        "organizations" => Some(Authority::Organizations),
        "consumers" => Some(Authority::Consumers),
        _ => None,
    };
    let authority = match alias {
        Some(a) if allowed(TenantKind::Workforce) => a,
        Some(_) => return Err(invalid_tenant(sh, base, seg, &correlation)),
        None => {
            let found = sh.cfg.tenants.iter().position(|t| {
                allowed(t.kind)
                    && custom_domain.is_none_or(|d| d.tenant_id.eq_ignore_ascii_case(&t.id))
                    && (t.id.eq_ignore_ascii_case(&lseg)
                        || t.domain.eq_ignore_ascii_case(&lseg)
                        || (t.kind == TenantKind::B2c && t.name.eq_ignore_ascii_case(&lseg)))
            });
            match found {
                Some(i) => Authority::Tenant(i),
                None => return Err(invalid_tenant(sh, base, seg, &correlation)),
            }
        }
    };
    let tenant = match &authority {
        Authority::Tenant(i) => Some(&sh.cfg.tenants[*i]),
        _ => None,
    };
    let is_b2c = tenant.map(|t| t.kind == TenantKind::B2c).unwrap_or(false);
    let (policy, policy_query) = if is_b2c {
        let (raw, q) = match policy_seg {
            Some(p) => (Some(p), false),
            None => (first(query).get("p").cloned(), true),
        };
        let t = tenant.expect("b2c tenant");
        let configured = raw.as_ref().and_then(|r| {
            t.policies
                .iter()
                .find(|p| p.eq_ignore_ascii_case(r))
                .cloned()
        });
        match configured {
            Some(p) => (Some(p), q),
            None => {
                let msg = match raw {
                    Some(r) => format!("The policy '{r}' does not exist in tenant '{}'.", t.domain),
                    None => {
                        "No policy was given: put it in the path or in the 'p' query parameter."
                            .to_string()
                    }
                };
                let body = json!({
                    "error": "invalid_request",
                    "error_description": format!("AADB2C90011: {msg}\r\nCorrelation ID: {correlation}\r\nTimestamp: {}\r\n", fmt_timestamp(sh.now())),
                });
                return Err(Box::new(json_response(StatusCode::BAD_REQUEST, &body)));
            }
        }
    } else {
        if policy_seg.is_some() {
            return Err(Box::new(not_found()));
        }
        (None, false)
    };
    Ok(Ctx {
        base: base.to_string(),
        host: h,
        seg: seg.to_string(),
        authority,
        policy,
        policy_query,
        correlation,
        ciam_host,
    })
}

// ---------------------------------------------------------------- helpers

impl Ctx {
    fn tenant<'a>(&self, sh: &'a Shared) -> Option<&'a TestTenant> {
        match self.authority {
            Authority::Tenant(i) => sh.cfg.tenants.get(i),
            _ => None,
        }
    }
    fn kind(&self, sh: &Shared) -> TenantKind {
        match &self.authority {
            Authority::Tenant(i) => sh.cfg.tenants[*i].kind,
            Authority::Consumers => TenantKind::Consumers,
            _ => TenantKind::Workforce,
        }
    }
    fn is_b2c(&self, sh: &Shared) -> bool {
        self.kind(sh) == TenantKind::B2c
    }
    /// URL segment naming the directory in advertised endpoints.
    fn dir_segment(&self, sh: &Shared) -> String {
        match &self.authority {
            Authority::Tenant(i) => {
                let t = &sh.cfg.tenants[*i];
                if t.kind == TenantKind::B2c {
                    t.domain.clone()
                } else {
                    t.id.clone()
                }
            }
            Authority::Common => "common".into(),
            Authority::Organizations => "organizations".into(),
            Authority::Consumers => "consumers".into(),
        }
    }
    /// An endpoint URL as advertised (`suffix` like `oauth2/v2.0/token`).
    fn url(&self, sh: &Shared, suffix: &str) -> String {
        let dir = self.dir_segment(sh);
        match &self.policy {
            Some(p) if self.policy_query => {
                format!("{}/{dir}/{suffix}?p={}", self.base, p.to_lowercase())
            }
            Some(p) => format!("{}/{dir}/{}/{suffix}", self.base, p.to_lowercase()),
            None => format!("{}/{dir}/{suffix}", self.base),
        }
    }
    /// The URL of this request's endpoint path (for page form actions).
    fn self_url(&self, suffix: &str) -> String {
        match &self.policy {
            Some(p) if self.policy_query => {
                format!("{}/{}/{suffix}?p={}", self.base, self.seg, urlencode(p))
            }
            Some(p) => format!("{}/{}/{}/{suffix}", self.base, self.seg, p),
            None => format!("{}/{}/{suffix}", self.base, self.seg),
        }
    }
    fn issuer_for(&self, t: &TestTenant) -> String {
        match t.kind {
            TenantKind::B2c => format!("{}/{}/v2.0/", self.base, t.id),
            TenantKind::ExternalId if self.ciam_host => {
                format!("https://{0}.ciamlogin.com/{0}/v2.0", t.id)
            }
            _ => format!("{}/{}/v2.0", self.base, t.id),
        }
    }
    fn doc_issuer(&self, sh: &Shared) -> String {
        match &self.authority {
            Authority::Tenant(i) => self.issuer_for(&sh.cfg.tenants[*i]),
            Authority::Common | Authority::Organizations => {
                format!("{}/{{tenantid}}/v2.0", self.base)
            }
            Authority::Consumers => format!("{}/{CONSUMERS_TENANT_ID}/v2.0", self.base),
        }
    }
    fn keyset(&self, sh: &Shared) -> String {
        match self.tenant(sh) {
            Some(t) => keyset_for(t, self.policy.as_deref()),
            None => "workforce".into(),
        }
    }
    fn user_allowed(&self, sh: &Shared, u: &TestUser) -> bool {
        authority_allows(sh, &self.authority, u)
    }
    fn users<'a>(&self, sh: &'a Shared) -> Vec<&'a TestUser> {
        sh.cfg
            .users
            .iter()
            .filter(|u| self.user_allowed(sh, u))
            .collect()
    }
}

pub(crate) fn authority_allows(sh: &Shared, a: &Authority, u: &TestUser) -> bool {
    let kind = tenant_by_id(sh, &u.tenant_id).map(|t| t.kind);
    match a {
        Authority::Tenant(i) => sh.cfg.tenants[*i].id.eq_ignore_ascii_case(&u.tenant_id),
        Authority::Common => matches!(kind, Some(TenantKind::Workforce | TenantKind::Consumers)),
        Authority::Organizations => kind == Some(TenantKind::Workforce),
        Authority::Consumers => kind == Some(TenantKind::Consumers),
    }
}

fn keyset_for(t: &TestTenant, policy: Option<&str>) -> String {
    match t.kind {
        TenantKind::ExternalId => format!("ciam:{}", t.id),
        TenantKind::B2c => format!("b2c:{}:{}", t.id, policy.unwrap_or_default().to_lowercase()),
        _ => "workforce".into(),
    }
}

fn tenant_by_id<'a>(sh: &'a Shared, id: &str) -> Option<&'a TestTenant> {
    sh.cfg
        .tenants
        .iter()
        .find(|t| t.id.eq_ignore_ascii_case(id))
}

fn user_by_name<'a>(sh: &'a Shared, name: &str) -> Option<&'a TestUser> {
    sh.cfg
        .users
        .iter()
        .find(|u| u.username.eq_ignore_ascii_case(name.trim()))
}

fn app_by_id<'a>(sh: &'a Shared, id: &str) -> Option<&'a TestApp> {
    sh.cfg
        .apps
        .iter()
        .find(|a| a.client_id.eq_ignore_ascii_case(id.trim()))
}

fn sign(sh: &Shared, keyset: &str, claims: &Value) -> String {
    let slot = sh.keys().current(keyset);
    let key = pool_key(slot);
    sign_rs256(&key, &key.kid, claims)
}

/// [`crate::TestKit::subject_of`].
pub(crate) fn subject_for_tests(sh: &Shared, username: &str, client_id: &str) -> Option<String> {
    user_by_name(sh, username).map(|u| pairwise_sub(&u.oid, client_id))
}

/// [`crate::TestKit::sign_workforce_token`].
pub(crate) fn sign_for_tests(sh: &Shared, claims: &Value) -> String {
    sign(sh, "workforce", claims)
}

fn published_keys(sh: &Shared, keyset: &str) -> Vec<Arc<KeyMaterial>> {
    let slots = sh.keys().published(keyset);
    slots.into_iter().map(pool_key).collect()
}

fn all_published_keys(sh: &Shared) -> Vec<Arc<KeyMaterial>> {
    let slots = sh.keys().all_published();
    slots.into_iter().filter_map(pool_peek).collect()
}

/// Pairwise `sub`: stable per (object id, audience).
fn pairwise_sub(oid: &str, aud: &str) -> String {
    let d = Sha256::digest(format!("{oid}|{aud}").as_bytes());
    b64url(&d)[..43].to_string()
}

fn login_hint(u: &TestUser) -> String {
    format!(
        "O.{}",
        b64url(format!("\n${}\u{12}${}\u{1a}{}", u.oid, u.tenant_id, u.username).as_bytes())
    )
}

fn client_info(uid: &str, utid: &str) -> String {
    b64url(json!({"uid": uid, "utid": utid}).to_string().as_bytes())
}

fn entra_description(code: u32, msg: &str, correlation: &str, now: i64) -> String {
    format!(
        "AADSTS{code}: {msg}\r\nTrace ID: {}\r\nCorrelation ID: {correlation}\r\nTimestamp: {}",
        guid(),
        fmt_timestamp(now)
    )
}

fn token_error(sh: &Shared, ctx: &Ctx, e: OAuthError) -> Response {
    let body = if ctx.is_b2c(sh) {
        e.b2c_body(sh.now(), &ctx.correlation)
    } else {
        e.body(&ctx.base, sh.now(), &ctx.correlation)
    };
    json_response(e.status, &body)
}

fn error_page(sh: &Shared, ctx: &Ctx, status: StatusCode, code: &str, msg: &str) -> Response {
    html_response(
        status,
        pages::error_page(code, msg, &ctx.correlation, &fmt_timestamp(sh.now())),
    )
}

// ---------------------------------------------------------------- scopes

const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

#[derive(Clone, Debug)]
struct Resource {
    aud: String,
    /// Prefix for scope strings in responses ("" for Graph).
    prefix: String,
    graph: bool,
}

#[derive(Clone, Debug, Default)]
struct Scopes {
    oidc: Vec<String>,
    res: Option<Resource>,
    names: Vec<String>,
}

impl Scopes {
    fn has(&self, s: &str) -> bool {
        self.oidc.iter().any(|o| o == s)
    }
    /// Space-separated scope string for responses.
    fn granted(&self) -> String {
        let mut v: Vec<String> = self.oidc.clone();
        if let Some(r) = &self.res {
            for n in &self.names {
                v.push(format!("{}{n}", r.prefix));
            }
        }
        v.join(" ")
    }
}

fn resolve_resource(sh: &Shared, id: &str) -> Option<Resource> {
    let l = id.trim_end_matches('/').to_lowercase();
    if l == "https://graph.microsoft.com" || l == GRAPH_APP_ID {
        return Some(Resource {
            aud: GRAPH_APP_ID.into(),
            prefix: String::new(),
            graph: true,
        });
    }
    sh.cfg
        .apps
        .iter()
        .find(|a| {
            a.client_id.eq_ignore_ascii_case(&l)
                || format!("api://{}", a.client_id).eq_ignore_ascii_case(&l)
                || a.app_id_uri
                    .as_deref()
                    .is_some_and(|u| u.trim_end_matches('/').eq_ignore_ascii_case(&l))
        })
        .map(|a| Resource {
            aud: a.client_id.clone(),
            prefix: format!(
                "{}/",
                a.app_id_uri
                    .clone()
                    .unwrap_or_else(|| id.trim_end_matches('/').to_string())
            ),
            graph: false,
        })
}

fn parse_scopes(sh: &Shared, raw: &str) -> Result<Scopes, OAuthError> {
    let mut out = Scopes::default();
    for s in raw.split_whitespace() {
        let l = s.to_lowercase();
        if OIDC_SCOPES.contains(&l.as_str()) {
            if !out.oidc.contains(&l) {
                out.oidc.push(l);
            }
            continue;
        }
        let (res_id, name) = match s.rfind('/') {
            Some(i) if i > 0 => (&s[..i], &s[i + 1..]),
            _ if app_by_id(sh, s).is_some() => (s, ""),
            _ => ("https://graph.microsoft.com", s),
        };
        let Some(res) = resolve_resource(sh, res_id) else {
            return Err(OAuthError::new(
                "invalid_resource",
                500011,
                format!("The resource principal named {res_id} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."),
            ));
        };
        if let Some(prev) = &out.res {
            if prev.aud != res.aud {
                return Err(OAuthError::new(
                    "invalid_scope",
                    70011,
                    format!("The provided value for the input parameter 'scope' is not valid. The scope '{raw}' requests tokens for multiple resources; request one resource at a time."),
                ));
            }
        }
        if !name.is_empty() && !res.graph && name != ".default" {
            let app = app_by_id(sh, &res.aud);
            if !app.is_some_and(|a| a.scopes.iter().any(|x| x.eq_ignore_ascii_case(name))) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    70011,
                    format!("The provided value for the input parameter 'scope' is not valid. The scope {s} is not valid."),
                ));
            }
        }
        out.res = Some(res);
        if !name.is_empty() && !out.names.iter().any(|n| n == name) {
            out.names.push(name.to_string());
        }
    }
    Ok(out)
}

/// Consented (resource, scope) pairs of a user for a client.
fn consented(sh: &Shared, oid: &str, client_id: &str) -> HashSet<(String, String)> {
    let mut set = HashSet::new();
    for s in &sh.cfg.consented_scopes {
        if let Ok(p) = parse_scopes(sh, s) {
            if let Some(r) = p.res {
                for n in p.names {
                    set.insert((r.aud.clone(), n.to_lowercase()));
                }
            }
        }
    }
    if let Some(extra) = sh
        .state()
        .consents
        .get(&(oid.to_string(), client_id.to_lowercase()))
    {
        set.extend(extra.iter().cloned());
    }
    set
}

/// Replace `.default` with the consented scopes of the resource.
fn expand_default(sh: &Shared, scopes: &mut Scopes, oid: &str, client_id: &str) {
    if !scopes.names.iter().any(|n| n == ".default") {
        return;
    }
    let Some(res) = scopes.res.clone() else {
        return;
    };
    let set = consented(sh, oid, client_id);
    let mut names: Vec<String> = scopes
        .names
        .iter()
        .filter(|n| *n != ".default")
        .cloned()
        .collect();
    let mut found: Vec<String> = set
        .iter()
        .filter(|(a, _)| *a == res.aud)
        .map(|(_, n)| canonical_scope_name(sh, &res, n))
        .collect();
    found.sort();
    for f in found {
        if !names.contains(&f) {
            names.push(f);
        }
    }
    scopes.names = names;
}

fn canonical_scope_name(sh: &Shared, res: &Resource, lower: &str) -> String {
    if !res.graph {
        if let Some(a) = app_by_id(sh, &res.aud) {
            if let Some(s) = a.scopes.iter().find(|s| s.eq_ignore_ascii_case(lower)) {
                return s.clone();
            }
        }
    }
    for s in sh
        .cfg
        .consented_scopes
        .iter()
        .chain(sh.cfg.mfa_scopes.iter())
    {
        let short = s.rsplit('/').next().unwrap_or(s);
        if short.eq_ignore_ascii_case(lower) {
            return short.to_string();
        }
    }
    lower.to_string()
}

fn missing_consent(sh: &Shared, scopes: &Scopes, oid: &str, client_id: &str) -> Vec<String> {
    let Some(res) = &scopes.res else {
        return vec![];
    };
    let set = consented(sh, oid, client_id);
    scopes
        .names
        .iter()
        .filter(|n| *n != ".default" && !set.contains(&(res.aud.clone(), n.to_lowercase())))
        .map(|n| format!("{}{n}", res.prefix))
        .collect()
}

fn grant_consent(sh: &Shared, scopes: &Scopes, oid: &str, client_id: &str) {
    let Some(res) = &scopes.res else {
        return;
    };
    let mut st = sh.state();
    let e = st
        .consents
        .entry((oid.to_string(), client_id.to_lowercase()))
        .or_default();
    for n in &scopes.names {
        let withheld = sh.cfg.consent_withheld_scopes.iter().any(|w| {
            w.eq_ignore_ascii_case(n) || w.eq_ignore_ascii_case(&format!("{}{n}", res.prefix))
        });
        if n != ".default" && !withheld {
            e.insert((res.aud.clone(), n.to_lowercase()));
        }
    }
}

fn needs_mfa(sh: &Shared, scopes: &Scopes) -> bool {
    let Some(res) = &scopes.res else {
        return false;
    };
    scopes.names.iter().any(|n| {
        let full = format!("{}{n}", res.prefix);
        sh.cfg.mfa_scopes.iter().any(|m| {
            m.eq_ignore_ascii_case(n)
                || m.eq_ignore_ascii_case(&full)
                || m.rsplit('/')
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case(n))
                    && res.graph
        })
    })
}

/// The conditional-access policy id named in MFA claims challenges.
const MFA_POLICY_ID: &str = "7c5d1e2a-3b4f-4e6a-9d8c-0f1e2d3c4b5a";

fn mfa_claims() -> String {
    json!({"access_token": {"capolids": {"essential": true, "values": [MFA_POLICY_ID]}}})
        .to_string()
}

fn mfa_error(res_aud: &str) -> OAuthError {
    OAuthError::new(
        "interaction_required",
        50076,
        format!("Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{res_aud}'."),
    )
    .suberror("basic_action")
    .claims(mfa_claims())
}

fn consent_error(app: &TestApp) -> OAuthError {
    OAuthError::new(
        "invalid_grant",
        65001,
        format!(
            "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization request for this user and resource.",
            app.client_id, app.name
        ),
    )
    .suberror("consent_required")
}

// ---------------------------------------------------------------- discovery and keys

fn discovery_v2(sh: &Shared, ctx: &Ctx) -> Response {
    let kind = ctx.kind(sh);
    let issuer = sh.discovery_issuer().unwrap_or_else(|| ctx.doc_issuer(sh));
    let u = |s: &str| ctx.url(sh, s);
    let doc = match kind {
        TenantKind::B2c => {
            let claims: Vec<&str> = vec![
                "oid",
                "sub",
                "newUser",
                "name",
                "emails",
                "idp",
                "tfp",
                "iss",
                "iat",
                "exp",
                "aud",
                "acr",
                "nonce",
                "auth_time",
            ];
            json!({
                "issuer": issuer,
                "authorization_endpoint": u("oauth2/v2.0/authorize"),
                "token_endpoint": u("oauth2/v2.0/token"),
                "end_session_endpoint": u("oauth2/v2.0/logout"),
                "jwks_uri": u("discovery/v2.0/keys"),
                "response_modes_supported": ["query", "fragment", "form_post"],
                "response_types_supported": ["code", "code id_token", "code token", "code id_token token", "id_token", "id_token token", "token", "token id_token"],
                "scopes_supported": ["openid"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "claims_supported": claims,
            })
        }
        _ => {
            let mut d = json!({
                "token_endpoint": u("oauth2/v2.0/token"),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": u("discovery/v2.0/keys"),
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": issuer,
                "request_uri_parameter_supported": false,
                "userinfo_endpoint": format!("{}/oidc/userinfo", ctx.base),
                "authorization_endpoint": u("oauth2/v2.0/authorize"),
                "device_authorization_endpoint": u("oauth2/v2.0/devicecode"),
                "http_logout_supported": true,
                "frontchannel_logout_supported": true,
                "end_session_endpoint": u("oauth2/v2.0/logout"),
                "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
                "cloud_instance_name": "microsoftonline.com",
                "msgraph_host": "graph.microsoft.com",
            });
            if kind != TenantKind::ExternalId {
                let region = if matches!(ctx.authority, Authority::Tenant(_)) {
                    json!("NA")
                } else {
                    Value::Null
                };
                d["kerberos_endpoint"] = json!(u("kerberos"));
                d["tenant_region_scope"] = region;
                d["cloud_graph_host_name"] = json!("graph.windows.net");
                d["rbac_url"] = json!("https://pas.windows.net");
            }
            d
        }
    };
    json_response(StatusCode::OK, &doc)
}

/// v1 metadata. Issuer: `https://sts.windows.net/{tid}/` when the request came to
/// `login.microsoftonline.com` (the real v1 issuer), else `{base}/{tid}/`.
fn discovery_v1(sh: &Shared, ctx: &Ctx) -> Response {
    let kind = ctx.kind(sh);
    if matches!(kind, TenantKind::B2c) {
        return not_found();
    }
    let tid = match ctx.tenant(sh) {
        Some(t) => t.id.clone(),
        None => match ctx.authority {
            Authority::Consumers => CONSUMERS_TENANT_ID.to_string(),
            _ => "{tenantid}".to_string(),
        },
    };
    let issuer = if ctx.host == "login.microsoftonline.com" {
        format!("https://sts.windows.net/{tid}/")
    } else {
        format!("{}/{tid}/", ctx.base)
    };
    let u = |s: &str| ctx.url(sh, s);
    let d = json!({
        "token_endpoint": u("oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": u("discovery/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": issuer,
        "microsoft_multi_refresh_token": true,
        "authorization_endpoint": u("oauth2/authorize"),
        "device_authorization_endpoint": u("oauth2/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": u("oauth2/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email", "given_name", "family_name", "nickname"],
        "check_session_iframe": u("oauth2/checksession"),
        "userinfo_endpoint": u("openid/userinfo"),
        "kerberos_endpoint": u("kerberos"),
        "tenant_region_scope": if matches!(ctx.authority, Authority::Tenant(_)) { json!("NA") } else { Value::Null },
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    json_response(StatusCode::OK, &d)
}

fn jwks(sh: &Shared, ctx: &Ctx) -> Response {
    let issuer = ctx.doc_issuer(sh);
    let keys: Vec<Value> = published_keys(sh, &ctx.keyset(sh))
        .iter()
        .map(|k| {
            let mut j = k.jwk(&issuer);
            if ctx.is_b2c(sh) {
                // B2C keys carry no per-key issuer.
                if let Some(o) = j.as_object_mut() {
                    o.remove("issuer");
                }
            }
            j
        })
        .collect();
    let mut r = json_response(StatusCode::OK, &json!({ "keys": keys }));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, private"),
    );
    r
}

fn instance_discovery(base: &str, query: &[(String, String)]) -> Response {
    let q = first(query);
    let tenant = q
        .get("authorization_endpoint")
        .and_then(|a| url::Url::parse(a).ok())
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next().map(str::to_string))
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "common".into());
    let host = base.split("://").nth(1).unwrap_or(base).to_string();
    json_response(
        StatusCode::OK,
        &json!({
            "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }),
    )
}

// ---------------------------------------------------------------- authorize

#[derive(Clone, Debug)]
struct AuthzReq {
    redirect_uri: String,
    response_mode: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    prompt: Option<String>,
    login_hint: Option<String>,
    client_info: bool,
    claims: Option<String>,
    /// The original authorize parameters, carried through the pages.
    carry: Vec<(String, String)>,
}

fn redirect_uri_ok(app: &TestApp, uri: &str, extra: &[String]) -> bool {
    let list = app.redirect_uris.iter().chain(extra.iter());
    if list.clone().any(|r| r == uri) {
        return true;
    }
    if !app.allow_loopback_any_port {
        return false;
    }
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = |u: &url::Url| {
        u.scheme() == "http"
            && matches!(
                u.host_str(),
                Some("localhost") | Some("127.0.0.1") | Some("[::1]")
            )
    };
    if !loopback(&u) {
        return false;
    }
    list.filter_map(|r| url::Url::parse(r).ok())
        .filter(loopback)
        .any(|r| r.path() == u.path() && r.query() == u.query())
}

/// Redirect (or form_post) back to the app with `params`.
fn respond_to_app(
    redirect_uri: &str,
    mode: &str,
    params: Vec<(&str, String)>,
    set_cookies: &[String],
) -> Response {
    if mode == "form_post" {
        let owned: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut r = html_response(StatusCode::OK, pages::form_post(redirect_uri, &owned));
        for c in set_cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        return r;
    }
    let enc = encode_pairs(&params);
    let loc = if mode == "fragment" {
        format!("{redirect_uri}#{enc}")
    } else if redirect_uri.contains('?') {
        format!("{redirect_uri}&{enc}")
    } else {
        format!("{redirect_uri}?{enc}")
    };
    redirect(&loc, set_cookies)
}

fn authz_error(
    sh: &Shared,
    ctx: &Ctx,
    req: &AuthzReq,
    error: &str,
    code: u32,
    msg: &str,
) -> Response {
    let mut p: Vec<(&str, String)> = vec![("error", error.to_string())];
    if ctx.is_b2c(sh) {
        p.push((
            "error_description",
            format!(
                "AADB2C{code}: {msg}\r\nCorrelation ID: {}\r\nTimestamp: {}\r\n",
                ctx.correlation,
                fmt_timestamp(sh.now())
            ),
        ));
    } else {
        p.push((
            "error_description",
            entra_description(code, msg, &ctx.correlation, sh.now()),
        ));
        p.push(("error_uri", format!("{}/error?code={code}", ctx.base)));
    }
    if let Some(s) = &req.state {
        p.push(("state", s.clone()));
    }
    if let Some(iss) = sh.authorization_response_iss() {
        p.push(("iss", iss));
    }
    respond_to_app(&req.redirect_uri, &req.response_mode, p, &[])
}

fn sso_cookie_name(tenant_id: &str) -> String {
    format!("testkit_sso_{tenant_id}")
}

fn cookie_attrs(ctx: &Ctx) -> &'static str {
    if ctx.base.starts_with("https") {
        "; Path=/; HttpOnly; Secure; SameSite=None"
    } else {
        "; Path=/; HttpOnly; SameSite=Lax"
    }
}

/// The SSO session this browser has for an authority.
fn find_session(sh: &Shared, ctx: &Ctx, headers: &HeaderMap) -> Option<(String, SsoSession)> {
    let jar = cookies(headers);
    let st = sh.state();
    for (k, v) in jar {
        if !k.starts_with("testkit_sso_") {
            continue;
        }
        if let Some(s) = st.sessions.get(&v) {
            if let Some(u) = user_by_name(sh, &s.username) {
                if ctx.user_allowed(sh, u) {
                    return Some((v.clone(), s.clone()));
                }
            }
        }
    }
    None
}

enum PolicyKind {
    SignIn,
    Reset,
    Edit,
}

fn policy_kind(p: Option<&str>) -> PolicyKind {
    let l = p.unwrap_or_default().to_lowercase().replace('_', "");
    if l.contains("passwordreset") || l.contains("resetpassword") {
        PolicyKind::Reset
    } else if l.contains("profileedit") || l.contains("editprofile") {
        PolicyKind::Edit
    } else {
        PolicyKind::SignIn
    }
}

fn claims_want_mfa(claims: Option<&str>) -> bool {
    claims.is_some_and(|c| c.contains("capolids") || c.contains("acrs") || c.contains("mfa"))
}

fn authorize(
    sh: &Shared,
    ctx: &Ctx,
    method: &Method,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Response {
    let p = first(params);
    let get = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    let Some(client_id) = get("client_id") else {
        return error_page(
            sh,
            ctx,
            StatusCode::BAD_REQUEST,
            "AADSTS900144",
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(app) = app_by_id(sh, &client_id) else {
        return error_page(
            sh,
            ctx,
            StatusCode::BAD_REQUEST,
            "AADSTS700016",
            &format!("Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", ctx.seg),
        );
    };
    let redirect_uri = match get("redirect_uri") {
        Some(r) => r,
        None if app.redirect_uris.len() == 1 => app.redirect_uris[0].clone(),
        None => {
            return error_page(
                sh,
                ctx,
                StatusCode::BAD_REQUEST,
                "AADSTS900144",
                "The request body must contain the following parameter: 'redirect_uri'.",
            )
        }
    };
    if !redirect_uri_ok(app, &redirect_uri, &[]) {
        return error_page(
            sh,
            ctx,
            StatusCode::BAD_REQUEST,
            "AADSTS50011",
            &format!("The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal.", app.client_id),
        );
    }
    let response_type = get("response_type").unwrap_or_default();
    let carry: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| {
            !k.starts_with('_')
                && !matches!(
                    k.as_str(),
                    "username" | "password" | "new_password" | "display_name" | "p"
                )
        })
        .cloned()
        .collect::<Vec<_>>();
    // keep only the first value of every key
    let mut seen = HashSet::new();
    let carry: Vec<(String, String)> = carry
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    let default_mode = if response_type == "code" || response_type.is_empty() {
        "query"
    } else {
        "fragment"
    };
    let response_mode = match get("response_mode").as_deref() {
        Some("form_post") => "form_post",
        Some("fragment") => "fragment",
        Some("query") => "query",
        _ => default_mode,
    }
    .to_string();
    let req = AuthzReq {
        redirect_uri,
        response_mode,
        scope: get("scope").unwrap_or_default(),
        state: p.get("state").cloned(),
        nonce: get("nonce"),
        code_challenge: get("code_challenge"),
        prompt: get("prompt"),
        login_hint: get("login_hint"),
        client_info: get("client_info").as_deref() == Some("1"),
        claims: get("claims"),
        carry,
    };
    if response_type != "code" {
        let rt = if response_type.is_empty() {
            "(none)".to_string()
        } else {
            response_type.clone()
        };
        return authz_error(
            sh,
            ctx,
            &req,
            "unsupported_response_type",
            700051,
            &format!("response_type '{rt}' is not enabled for the application."),
        );
    }
    if req.code_challenge.is_some() {
        let m = get("code_challenge_method").unwrap_or_else(|| "plain".into());
        if m != "S256" {
            return authz_error(
                sh,
                ctx,
                &req,
                "invalid_request",
                90023,
                &format!(
                    "Invalid request: code_challenge_method '{m}' is not supported; use S256."
                ),
            );
        }
    }
    if req.scope.is_empty() {
        return authz_error(
            sh,
            ctx,
            &req,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    }
    let scopes = match parse_scopes(sh, &req.scope) {
        Ok(s) => s,
        Err(e) => return authz_error(sh, ctx, &req, e.error, e.code, &e.message),
    };
    let want_mfa = needs_mfa(sh, &scopes) || claims_want_mfa(req.claims.as_deref());
    let b2c = ctx.is_b2c(sh);
    let action = p.get("_action").cloned().unwrap_or_default();
    let page_action = ctx.self_url("oauth2/v2.0/authorize");

    if *method == Method::POST && !action.is_empty() {
        match action.as_str() {
            "cancel" => {
                if b2c {
                    return authz_error(
                        sh,
                        ctx,
                        &req,
                        "access_denied",
                        90091,
                        "The user has cancelled entering self-asserted information.",
                    );
                }
                let mut ps = vec![
                    ("error", "access_denied".to_string()),
                    ("error_subcode", "cancel".to_string()),
                ];
                if let Some(s) = &req.state {
                    ps.push(("state", s.clone()));
                }
                return respond_to_app(&req.redirect_uri, &req.response_mode, ps, &[]);
            }
            "forgot" if b2c => {
                return authz_error(
                    sh,
                    ctx,
                    &req,
                    "access_denied",
                    90118,
                    "The user has forgotten their password.",
                );
            }
            "login" | "pick" => {
                let username = p.get("username").cloned().unwrap_or_default();
                let user = user_by_name(sh, &username).filter(|u| ctx.user_allowed(sh, u));
                let ok = match (&user, action.as_str()) {
                    (Some(_), "pick") => true,
                    (Some(u), _) => {
                        p.get("password").map(String::as_str) == Some(u.password.as_str())
                    }
                    _ => false,
                };
                let Some(user) = user.filter(|_| ok) else {
                    let msg = if action == "pick" {
                        "Enter your password for this account."
                    } else if b2c {
                        "Your password is incorrect."
                    } else {
                        "AADSTS50126: Your account or password is incorrect. If you don't remember your password, reset it now."
                    };
                    return sign_in_page(
                        sh,
                        ctx,
                        app,
                        &req,
                        &page_action,
                        &username,
                        Some(msg),
                        want_mfa,
                    );
                };
                if action == "pick" {
                    return sign_in_page(
                        sh,
                        ctx,
                        app,
                        &req,
                        &page_action,
                        &user.username,
                        Some("Enter your password."),
                        want_mfa,
                    );
                }
                let sid = guid();
                let sess = SsoSession {
                    username: user.username.clone(),
                    mfa: want_mfa,
                    auth_time: sh.now(),
                    apps: Vec::new(),
                };
                sh.state().sessions.insert(sid.clone(), sess.clone());
                let cookie = format!(
                    "{}={sid}{}",
                    sso_cookie_name(&user.tenant_id),
                    cookie_attrs(ctx)
                );
                if b2c && matches!(policy_kind(ctx.policy.as_deref()), PolicyKind::Edit) {
                    let pending = guid();
                    sh.state().pending.insert(
                        pending.clone(),
                        (user.username.clone(), sess.mfa, sid.clone()),
                    );
                    let mut r = html_response(
                        StatusCode::OK,
                        pages::b2c_edit(&page_action, &req.carry, &pending, &user.display_name),
                    );
                    if let Ok(v) = HeaderValue::from_str(&cookie) {
                        r.headers_mut().append(header::SET_COOKIE, v);
                    }
                    return r;
                }
                return after_sign_in(
                    sh,
                    ctx,
                    app,
                    user,
                    &req,
                    &scopes,
                    &sid,
                    &sess,
                    vec![cookie],
                    true,
                );
            }
            "consent_accept" | "consent_cancel" | "edit" => {
                let pending = p
                    .get("_pending")
                    .and_then(|id| sh.state().pending.remove(id));
                let Some((username, mfa, sid)) = pending else {
                    return error_page(
                        sh,
                        ctx,
                        StatusCode::BAD_REQUEST,
                        "AADSTS90014",
                        "The sign-in page expired. Start again from the application.",
                    );
                };
                if action == "consent_cancel" {
                    return authz_error(
                        sh,
                        ctx,
                        &req,
                        "access_denied",
                        65004,
                        "User declined to consent to access the app.",
                    );
                }
                let Some(user) = user_by_name(sh, &username) else {
                    return error_page(
                        sh,
                        ctx,
                        StatusCode::BAD_REQUEST,
                        "AADSTS50034",
                        "The user account does not exist.",
                    );
                };
                if action == "consent_accept" {
                    grant_consent(sh, &scopes, &user.oid, &app.client_id);
                }
                let sess = SsoSession {
                    username,
                    mfa,
                    auth_time: sh.now(),
                    apps: Vec::new(),
                };
                return issue_code(sh, ctx, app, user, &req, &scopes, &sid, &sess, vec![]);
            }
            "reset" if b2c => {
                let username = p.get("username").cloned().unwrap_or_default();
                let Some(user) = user_by_name(sh, &username).filter(|u| ctx.user_allowed(sh, u))
                else {
                    return html_response(
                        StatusCode::OK,
                        pages::b2c_reset(
                            &page_action,
                            &req.carry,
                            Some("We can't seem to find your account."),
                        ),
                    );
                };
                let sid = guid();
                let sess = SsoSession {
                    username: user.username.clone(),
                    mfa: false,
                    auth_time: sh.now(),
                    apps: Vec::new(),
                };
                sh.state().sessions.insert(sid.clone(), sess.clone());
                let cookie = format!(
                    "{}={sid}{}",
                    sso_cookie_name(&user.tenant_id),
                    cookie_attrs(ctx)
                );
                return issue_code(sh, ctx, app, user, &req, &scopes, &sid, &sess, vec![cookie]);
            }
            _ => {}
        }
    }

    // A fresh authorize request.
    let prompt = req.prompt.clone().unwrap_or_default();
    let session = find_session(sh, ctx, headers);
    let session_usable = |s: &SsoSession| {
        !matches!(prompt.as_str(), "login" | "select_account") && (!want_mfa || s.mfa)
    };

    if let Some(auto) = sh.cfg.auto_approve.clone() {
        if prompt == "none" && session.is_none() {
            return login_required(sh, ctx, &req);
        }
        let pick = req
            .login_hint
            .as_deref()
            .and_then(|h| user_by_name(sh, h))
            .filter(|u| ctx.user_allowed(sh, u))
            .or_else(|| {
                session
                    .as_ref()
                    .and_then(|(_, s)| user_by_name(sh, &s.username))
                    .filter(|_| prompt != "login")
            })
            .or_else(|| user_by_name(sh, &auto).filter(|u| ctx.user_allowed(sh, u)))
            .or_else(|| ctx.users(sh).into_iter().next());
        let Some(user) = pick else {
            return error_page(
                sh,
                ctx,
                StatusCode::BAD_REQUEST,
                "AADSTS50034",
                "No user of this directory can sign in here.",
            );
        };
        grant_consent(sh, &scopes, &user.oid, &app.client_id);
        let sid = match &session {
            Some((sid, s)) if s.username.eq_ignore_ascii_case(&user.username) => sid.clone(),
            _ => guid(),
        };
        let prior_mfa = session.as_ref().is_some_and(|(s, x)| *s == sid && x.mfa);
        let sess = SsoSession {
            username: user.username.clone(),
            mfa: want_mfa || prior_mfa,
            auth_time: sh.now(),
            apps: Vec::new(),
        };
        sh.state().sessions.insert(sid.clone(), sess.clone());
        let cookie = format!(
            "{}={sid}{}",
            sso_cookie_name(&user.tenant_id),
            cookie_attrs(ctx)
        );
        return issue_code(sh, ctx, app, user, &req, &scopes, &sid, &sess, vec![cookie]);
    }

    if b2c && matches!(policy_kind(ctx.policy.as_deref()), PolicyKind::Reset) {
        return html_response(
            StatusCode::OK,
            pages::b2c_reset(&page_action, &req.carry, None),
        );
    }
    match session {
        Some((sid, s)) if session_usable(&s) => {
            let Some(user) = user_by_name(sh, &s.username) else {
                return login_required(sh, ctx, &req);
            };
            if b2c && matches!(policy_kind(ctx.policy.as_deref()), PolicyKind::Edit) {
                let pending = guid();
                sh.state()
                    .pending
                    .insert(pending.clone(), (user.username.clone(), s.mfa, sid.clone()));
                return html_response(
                    StatusCode::OK,
                    pages::b2c_edit(&page_action, &req.carry, &pending, &user.display_name),
                );
            }
            after_sign_in(
                sh,
                ctx,
                app,
                user,
                &req,
                &scopes,
                &sid,
                &s,
                vec![],
                prompt != "none",
            )
        }
        _ if prompt == "none" => {
            if session_needs_mfa_only(sh, ctx, headers) && want_mfa {
                return authz_error(sh, ctx, &req, "interaction_required", 50076, "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource.");
            }
            login_required(sh, ctx, &req)
        }
        _ => {
            let prefill = req.login_hint.clone().unwrap_or_default();
            sign_in_page(sh, ctx, app, &req, &page_action, &prefill, None, want_mfa)
        }
    }
}

fn session_needs_mfa_only(sh: &Shared, ctx: &Ctx, headers: &HeaderMap) -> bool {
    find_session(sh, ctx, headers).is_some_and(|(_, s)| !s.mfa)
}

fn login_required(sh: &Shared, ctx: &Ctx, req: &AuthzReq) -> Response {
    if ctx.is_b2c(sh) {
        return authz_error(sh, ctx, req, "interaction_required", 90077, "User does not have an existing session and request prompt parameter has a value of 'None'.");
    }
    authz_error(sh, ctx, req, "login_required", 50058, "A silent sign-in request was sent but no user is signed in. The cookies used to represent the user's session were not sent in the request to Azure AD.")
}

#[allow(clippy::too_many_arguments)]
fn sign_in_page(
    sh: &Shared,
    ctx: &Ctx,
    app: &TestApp,
    req: &AuthzReq,
    action: &str,
    prefill: &str,
    error: Option<&str>,
    mfa: bool,
) -> Response {
    let picks: Vec<pages::Pick> = ctx
        .users(sh)
        .into_iter()
        .map(|u| pages::Pick {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
        })
        .collect();
    html_response(
        StatusCode::OK,
        pages::sign_in(&pages::SignIn {
            action,
            params: &req.carry,
            users: &picks,
            prefill,
            error,
            b2c: ctx.is_b2c(sh),
            mfa,
            app_name: &app.name,
        }),
    )
}

/// After the user is known: consent page if needed, then the code.
#[allow(clippy::too_many_arguments)]
fn after_sign_in(
    sh: &Shared,
    ctx: &Ctx,
    app: &TestApp,
    user: &TestUser,
    req: &AuthzReq,
    scopes: &Scopes,
    sid: &str,
    sess: &SsoSession,
    cookies: Vec<String>,
    interactive: bool,
) -> Response {
    let mut missing = missing_consent(sh, scopes, &user.oid, &app.client_id);
    if req.prompt.as_deref() == Some("consent") && missing.is_empty() {
        missing = scopes
            .oidc
            .iter()
            .cloned()
            .chain(
                scopes
                    .res
                    .iter()
                    .flat_map(|r| scopes.names.iter().map(move |n| format!("{}{n}", r.prefix))),
            )
            .collect();
    }
    if !missing.is_empty() && !ctx.is_b2c(sh) {
        if !interactive {
            return authz_error(sh, ctx, req, "consent_required", 65001, &format!("The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization request for this user and resource.", app.client_id, app.name));
        }
        let pending = guid();
        sh.state().pending.insert(
            pending.clone(),
            (user.username.clone(), sess.mfa, sid.to_string()),
        );
        let mut r = html_response(
            StatusCode::OK,
            pages::consent(
                &ctx.self_url("oauth2/v2.0/authorize"),
                &req.carry,
                &pending,
                &app.name,
                &user.username,
                &missing,
            ),
        );
        for c in &cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        return r;
    }
    issue_code(sh, ctx, app, user, req, scopes, sid, sess, cookies)
}

#[allow(clippy::too_many_arguments)]
fn issue_code(
    sh: &Shared,
    ctx: &Ctx,
    app: &TestApp,
    user: &TestUser,
    req: &AuthzReq,
    _scopes: &Scopes,
    sid: &str,
    sess: &SsoSession,
    cookies: Vec<String>,
) -> Response {
    let b2c = ctx.is_b2c(sh);
    let code = opaque_grant(b2c, 96, 96);
    if let Some(s) = sh.state().sessions.get_mut(sid) {
        if !s.apps.contains(&app.client_id) {
            s.apps.push(app.client_id.clone());
        }
    }
    let grant = Grant {
        client_id: app.client_id.clone(),
        username: user.username.clone(),
        policy: ctx.policy.clone(),
        scopes: req.scope.split_whitespace().map(str::to_string).collect(),
        nonce: req.nonce.clone(),
        sid: sid.to_string(),
        mfa: sess.mfa,
        auth_time: sess.auth_time,
        family: 0,
    };
    {
        // Forget codes long past their lifetime (memory stays bounded).
        let keep = sh.cfg.code_lifetime.as_secs() as i64 + 600;
        let now = sh.now();
        sh.state().codes.retain(|_, c| now - c.created < keep);
    }
    sh.state().codes.insert(
        code.clone(),
        CodeGrant {
            grant,
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            created: sh.now(),
            used: false,
        },
    );
    let mut ps: Vec<(&str, String)> = vec![("code", code)];
    if req.client_info {
        let uid = if b2c {
            format!(
                "{}-{}",
                user.oid,
                ctx.policy.clone().unwrap_or_default().to_lowercase()
            )
        } else {
            user.oid.clone()
        };
        ps.push(("client_info", client_info(&uid, &user.tenant_id)));
    }
    if let Some(s) = &req.state {
        ps.push(("state", s.clone()));
    }
    if !b2c {
        ps.push(("session_state", sid.to_string()));
    }
    if let Some(iss) = sh.authorization_response_iss() {
        ps.push(("iss", iss));
    }
    tracing::debug!(client_id = %app.client_id, user = %user.username, "authorization code issued");
    respond_to_app(&req.redirect_uri, &req.response_mode, ps, &cookies)
}

// ---------------------------------------------------------------- token endpoint

struct ClientAuth<'a> {
    app: &'a TestApp,
    /// `azpacr`: 0 public, 1 secret, 2 certificate.
    acr: &'static str,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    let dec = |v: &str| {
        form_urlencoded::parse(format!("x={v}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

fn authenticate<'a>(
    sh: &'a Shared,
    ctx: &Ctx,
    headers: &HeaderMap,
    f: &HashMap<String, String>,
) -> Result<ClientAuth<'a>, OAuthError> {
    let basic = basic_credentials(headers);
    let assertion = f.get("client_assertion").filter(|s| !s.is_empty());
    let assertion_jws = assertion.and_then(|a| Jws::parse(a));
    let client_id = f
        .get("client_id")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
        .or_else(|| {
            assertion_jws.as_ref().and_then(|j| {
                j.claims
                    .get("iss")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        });
    let Some(client_id) = client_id else {
        return Err(OAuthError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    let tenant_name = ctx.seg.clone();
    let Some(app) = app_by_id(sh, &client_id) else {
        return Err(OAuthError::new(
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
        ));
    };
    let secret = f
        .get("client_secret")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| basic.map(|b| b.1));
    if let Some(a) = assertion {
        let kind = f.get("client_assertion_type").cloned().unwrap_or_default();
        if kind != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
            return Err(OAuthError::new(
                "invalid_request",
                700005,
                "The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            ));
        }
        verify_client_assertion(sh, ctx, app, a)?;
        return Ok(ClientAuth { app, acr: "2" });
    }
    match (&app.client_secret, secret) {
        (Some(expected), Some(given)) => {
            if *expected == given {
                Ok(ClientAuth { app, acr: "1" })
            } else {
                Err(OAuthError::new(
                    "invalid_client",
                    7000215,
                    format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", app.client_id),
                )
                .status(StatusCode::UNAUTHORIZED))
            }
        }
        (None, Some(_)) if !app.is_confidential() => Err(OAuthError::new(
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        )
        .status(StatusCode::UNAUTHORIZED)),
        (None, Some(_)) => Err(OAuthError::new(
            "invalid_client",
            7000215,
            format!("Invalid client secret provided. App '{}' accepts only certificate credentials.", app.client_id),
        )
        .status(StatusCode::UNAUTHORIZED)),
        (_, None) if app.is_confidential() => Err(OAuthError::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
        .status(StatusCode::UNAUTHORIZED)),
        (_, None) => Ok(ClientAuth { app, acr: "0" }),
    }
}

fn verify_client_assertion(
    sh: &Shared,
    ctx: &Ctx,
    app: &TestApp,
    assertion: &str,
) -> Result<(), OAuthError> {
    let fail = |code: u32, msg: String| {
        Err(OAuthError::new("invalid_client", code, msg).status(StatusCode::UNAUTHORIZED))
    };
    let Some(jws) = Jws::parse(assertion) else {
        return fail(700027, "Client assertion is not a well-formed JWT.".into());
    };
    let iss = jws
        .claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !iss.eq_ignore_ascii_case(&app.client_id) {
        // Not signed by the app: a federated identity credential must vouch for it.
        return crate::federation::verify_federated(sh, app, &jws);
    }
    crate::federation::verify_certificate_assertion(app, &jws)?;
    let c = &jws.claims;
    let s = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if !s("iss").eq_ignore_ascii_case(&app.client_id)
        || !s("sub").eq_ignore_ascii_case(&app.client_id)
    {
        return fail(
            700023,
            "Client assertion 'iss' and 'sub' must both be the client id.".into(),
        );
    }
    let token_url = ctx.url(sh, "oauth2/v2.0/token");
    let self_url = ctx.self_url("oauth2/v2.0/token");
    let auds: Vec<String> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    };
    let issuer = ctx.doc_issuer(sh);
    if !auds
        .iter()
        .any(|a| *a == token_url || *a == self_url || *a == issuer)
    {
        return fail(700021, format!("Client assertion audience claim does not match Realm issuer. Expected '{token_url}'."));
    }
    let now = sh.now();
    let exp = c.get("exp").and_then(Value::as_i64);
    let nbf = c.get("nbf").and_then(Value::as_i64).unwrap_or(i64::MIN);
    match exp {
        Some(e) if e + 300 >= now && nbf - 300 <= now => {}
        _ => {
            return fail(
                700024,
                "Client assertion is not within its valid time range.".into(),
            );
        }
    }
    if s("jti").is_empty() {
        return fail(700027, "Client assertion contains no 'jti' claim.".into());
    }
    Ok(())
}

fn token(sh: &Shared, ctx: &Ctx, headers: &HeaderMap, form: &[(String, String)]) -> Response {
    let f = first(form);
    let grant_type = f.get("grant_type").cloned().unwrap_or_default();
    if grant_type.is_empty() {
        return token_error(
            sh,
            ctx,
            OAuthError::new(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            ),
        );
    }
    let known = [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "device_code",
    ];
    if !known.contains(&grant_type.as_str()) {
        return token_error(
            sh,
            ctx,
            OAuthError::new(
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{grant_type}'."),
            ),
        );
    }
    let auth = match authenticate(sh, ctx, headers, &f) {
        Ok(a) => a,
        Err(e) => return token_error(sh, ctx, e),
    };
    let result = match grant_type.as_str() {
        "authorization_code" => grant_code(sh, ctx, &auth, &f),
        "refresh_token" => grant_refresh(sh, ctx, &auth, &f),
        "client_credentials" => grant_client_credentials(sh, ctx, &auth, &f),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => grant_obo(sh, ctx, &auth, &f),
        _ => grant_device(sh, ctx, &auth, &f),
    };
    match result {
        Ok(mut body) => {
            if let (Some(members), Some(o)) = (sh.token_response_members(), body.as_object_mut()) {
                o.extend(members);
            }
            json_response(StatusCode::OK, &body)
        }
        Err(e) => token_error(sh, ctx, e),
    }
}

fn invalid_grant(code: u32, msg: &str) -> OAuthError {
    OAuthError::new("invalid_grant", code, msg)
}

const EXPIRED_MSG: &str = "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.";

fn grant_code(
    sh: &Shared,
    ctx: &Ctx,
    auth: &ClientAuth<'_>,
    f: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let code = f.get("code").cloned().unwrap_or_default();
    if code.is_empty() {
        return Err(OAuthError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.",
        ));
    }
    let now = sh.now();
    let record = {
        let st = sh.state();
        st.codes.get(&code).cloned()
    };
    let Some(rec) = record else {
        return Err(invalid_grant(9002313, "Invalid request. Request is malformed or invalid. The authorization code is not valid."));
    };
    if rec.used {
        return Err(invalid_grant(54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."));
    }
    if now - rec.created > sh.cfg.code_lifetime.as_secs() as i64 {
        return Err(invalid_grant(70008, EXPIRED_MSG));
    }
    if !rec
        .grant
        .client_id
        .eq_ignore_ascii_case(&auth.app.client_id)
    {
        return Err(invalid_grant(70000, "The request was denied because one or more grants are invalid: the authorization code was issued to another client."));
    }
    let redirect = f.get("redirect_uri").cloned().unwrap_or_default();
    if redirect != rec.redirect_uri {
        return Err(invalid_grant(500112, &format!("The reply address '{redirect}' does not match the reply address '{}' provided when requesting Authorization code.", rec.redirect_uri)));
    }
    if let Some(ch) = &rec.code_challenge {
        let verifier = f.get("code_verifier").cloned().unwrap_or_default();
        let computed = b64url(&Sha256::digest(verifier.as_bytes()));
        if verifier.is_empty() || computed != *ch {
            return Err(invalid_grant(501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request."));
        }
    }
    if let Some(c) = sh.state().codes.get_mut(&code) {
        c.used = true;
    }
    let user = user_by_name(sh, &rec.grant.username)
        .ok_or_else(|| invalid_grant(50034, "The user account does not exist in the directory."))?;
    let scopes = parse_scopes(sh, &rec.grant.scopes.join(" "))?;
    let mut scopes = scopes;
    expand_default(sh, &mut scopes, &user.oid, &auth.app.client_id);
    let ci = f.get("client_info").map(String::as_str) == Some("1");
    Ok(issue_user_tokens(
        sh,
        ctx,
        auth,
        user,
        &rec.grant,
        &scopes,
        rec.grant.nonce.as_deref(),
        ci,
    ))
}

fn grant_refresh(
    sh: &Shared,
    ctx: &Ctx,
    auth: &ClientAuth<'_>,
    f: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let rt = f.get("refresh_token").cloned().unwrap_or_default();
    if rt.is_empty() {
        return Err(OAuthError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'refresh_token'.",
        ));
    }
    let rec = sh.state().refresh.get(&rt).cloned();
    let Some(rec) = rec else {
        return Err(invalid_grant(
            9002313,
            "Invalid request. Request is malformed or invalid. The refresh token is not valid.",
        ));
    };
    if !rec
        .grant
        .client_id
        .eq_ignore_ascii_case(&auth.app.client_id)
    {
        return Err(invalid_grant(70000, "The request was denied because one or more grants are invalid: the refresh token was issued to another client."));
    }
    let generation = sh
        .state()
        .generations
        .get(&rec.grant.username.to_lowercase())
        .copied()
        .unwrap_or(0);
    if generation != rec.generation {
        return Err(invalid_grant(70008, EXPIRED_MSG));
    }
    if sh.cfg.refresh_token_reuse_detection {
        let mut st = sh.state();
        if st.revoked_families.contains(&rec.grant.family) {
            return Err(invalid_grant(70008, EXPIRED_MSG));
        }
        let replayed = st.refresh.get(&rt).is_some_and(|r| r.used);
        if replayed {
            st.revoked_families.insert(rec.grant.family);
            tracing::warn!(user = %rec.grant.username, "refresh token replayed; grant revoked");
            return Err(invalid_grant(
                70008,
                "The refresh token was already used; every refresh token of this grant is revoked.",
            ));
        }
        if let Some(r) = st.refresh.get_mut(&rt) {
            r.used = true;
        }
    }
    let user = user_by_name(sh, &rec.grant.username)
        .ok_or_else(|| invalid_grant(50034, "The user account does not exist in the directory."))?;
    let raw = f
        .get("scope")
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| rec.grant.scopes.join(" "));
    let mut scopes = parse_scopes(sh, &raw)?;
    expand_default(sh, &mut scopes, &user.oid, &auth.app.client_id);
    if needs_mfa(sh, &scopes) && !rec.grant.mfa {
        let aud = scopes
            .res
            .as_ref()
            .map(|r| r.aud.clone())
            .unwrap_or_default();
        return Err(mfa_error(&aud));
    }
    if !missing_consent(sh, &scopes, &user.oid, &auth.app.client_id).is_empty() {
        return Err(consent_error(auth.app));
    }
    let mut grant = rec.grant.clone();
    grant.scopes = raw.split_whitespace().map(str::to_string).collect();
    grant.nonce = None;
    let ci = f.get("client_info").map(String::as_str) == Some("1");
    Ok(issue_user_tokens(
        sh, ctx, auth, user, &grant, &scopes, None, ci,
    ))
}

/// The tenant a user-token is issued in.
fn home_tenant<'a>(sh: &'a Shared, user: &TestUser) -> Option<&'a TestTenant> {
    tenant_by_id(sh, &user.tenant_id)
}

/// An opaque authorization code or refresh token in the shape each service uses on the
/// wire (clients must never parse it): B2C's JWE-like compact string, or Entra's
/// `1.<base64url>.<opaque>`. `body` and `entra_body` are the random parts' byte counts.
fn opaque_grant(b2c: bool, body: usize, entra_body: usize) -> String {
    if b2c {
        let header = json!({"kid":"cpimcore_09252015","ver":"1.0","zip":"Deflate","ser":"1.0"});
        format!(
            "{}..{}.{}.{}",
            b64url(header.to_string().as_bytes()),
            random_b64(12),
            random_b64(body),
            random_b64(16)
        )
    } else {
        format!("1.{}.{}", random_b64(40), random_b64(entra_body))
    }
}

fn store_refresh(sh: &Shared, grant: &Grant, b2c: bool) -> String {
    let rt = opaque_grant(b2c, 120, 160);
    let mut st = sh.state();
    let generation = st
        .generations
        .get(&grant.username.to_lowercase())
        .copied()
        .unwrap_or(0);
    let mut grant = grant.clone();
    if grant.family == 0 {
        st.family_seq += 1;
        grant.family = st.family_seq;
    }
    st.refresh.insert(
        rt.clone(),
        RefreshGrant {
            grant,
            generation,
            used: false,
        },
    );
    rt
}

fn record_access_token(sh: &Shared, uti: &str) {
    let mut st = sh.state();
    st.token_seq += 1;
    let seq = st.token_seq;
    st.issued.insert(uti.to_string(), seq);
}

#[allow(clippy::too_many_arguments)]
fn user_access_token(
    sh: &Shared,
    issuer: &str,
    keyset: &str,
    tenant: &TestTenant,
    user: &TestUser,
    azp: &TestApp,
    azpacr: &str,
    res: &Resource,
    scp: &str,
    grant: &Grant,
    now: i64,
) -> String {
    let uti = random_b64(16);
    let exp = now + sh.cfg.access_token_lifetime.as_secs() as i64;
    let mut c = json!({
        "aud": res.aud,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "aio": format!("{}==", random_b64(48)),
        "azp": azp.client_id,
        "azpacr": azpacr,
        "appid": azp.client_id,
        "name": user.display_name,
        "oid": user.oid,
        "preferred_username": user.username,
        "rh": format!("0.{}.", random_b64(36)),
        "scp": scp,
        "sub": pairwise_sub(&user.oid, &res.aud),
        "tid": tenant.id,
        "uti": uti,
        "ver": "2.0",
        "amr": if grant.mfa { json!(["pwd", "mfa"]) } else { json!(["pwd"]) },
    });
    if tenant.kind == TenantKind::B2c {
        c["ver"] = json!("1.0");
        if let Some(o) = c.as_object_mut() {
            for k in [
                "tid",
                "aio",
                "rh",
                "preferred_username",
                "azpacr",
                "appid",
                "amr",
            ] {
                o.remove(k);
            }
        }
        c["sub"] = json!(user.oid);
        c["tfp"] = json!(grant.policy.clone().unwrap_or_default());
        if let Some(e) = &user.email {
            c["emails"] = json!([e]);
        }
    }
    if !user.roles.is_empty() && !res.graph {
        c["roles"] = json!(user.roles);
    }
    if tenant.kind != TenantKind::B2c && wants_v1_tokens(sh, res) {
        to_v1_access_token(&mut c, issuer, &tenant.id, res);
        c["upn"] = json!(user.username);
        c["unique_name"] = json!(user.username);
    }
    record_access_token(sh, &uti);
    sign(sh, keyset, &c)
}

/// Whether the resource's registration leaves `accessTokenAcceptedVersion` unset.
fn wants_v1_tokens(sh: &Shared, res: &Resource) -> bool {
    !res.graph
        && sh
            .cfg
            .v1_access_token_apps
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&res.aud))
}

/// The v1.0 issuer of a tenant, from its v2.0 issuer (as in the v1 metadata).
fn v1_issuer(v2_issuer: &str, tid: &str) -> String {
    if v2_issuer.starts_with("https://login.microsoftonline.com/") {
        format!("https://sts.windows.net/{tid}/")
    } else {
        let base = v2_issuer
            .strip_suffix(&format!("/{tid}/v2.0"))
            .unwrap_or(v2_issuer);
        format!("{base}/{tid}/")
    }
}

/// Reshapes v2.0 access-token claims into a v1.0 token: v1 issuer, `appid`/`appidacr`
/// instead of `azp`/`azpacr`, the App ID URI as audience.
fn to_v1_access_token(c: &mut Value, v2_issuer: &str, tid: &str, res: &Resource) {
    c["iss"] = json!(v1_issuer(v2_issuer, tid));
    c["ver"] = json!("1.0");
    c["aud"] = json!(res.prefix.trim_end_matches('/'));
    if let Some(o) = c.as_object_mut() {
        if let Some(acr) = o.remove("azpacr") {
            o.insert("appidacr".into(), acr);
        }
        if let Some(azp) = o.remove("azp") {
            o.insert("appid".into(), azp);
        }
        if o.get("idp").is_some() {
            o.insert("idp".into(), json!(v1_issuer(v2_issuer, tid)));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn issue_user_tokens(
    sh: &Shared,
    ctx: &Ctx,
    auth: &ClientAuth<'_>,
    user: &TestUser,
    grant: &Grant,
    scopes: &Scopes,
    nonce: Option<&str>,
    want_client_info: bool,
) -> Value {
    let now = sh.now();
    let Some(tenant) = home_tenant(sh, user) else {
        return json!({});
    };
    let b2c = tenant.kind == TenantKind::B2c;
    let issuer = ctx.issuer_for(tenant);
    let keyset = keyset_for(tenant, grant.policy.as_deref());
    let app = auth.app;
    let mut body = Map::new();
    body.insert("token_type".into(), json!("Bearer"));
    // Access token.
    let res = match &scopes.res {
        Some(r) => Some(r.clone()),
        None if !b2c => Some(Resource {
            aud: GRAPH_APP_ID.into(),
            prefix: String::new(),
            graph: true,
        }),
        None => None,
    };
    let mut effective = scopes.clone();
    if scopes.res.is_none() && !b2c {
        effective.res = res.clone();
        effective.names = vec!["User.Read".into()];
    }
    body.insert("scope".into(), json!(effective.granted()));
    let at_lifetime = sh.cfg.access_token_lifetime.as_secs() as i64;
    if let Some(res) = &res {
        let mut scp: Vec<String> = effective.names.clone();
        if res.graph {
            for o in &scopes.oidc {
                if o != "offline_access" {
                    scp.push(o.clone());
                }
            }
        }
        let at = user_access_token(
            sh,
            &issuer,
            &keyset,
            tenant,
            user,
            app,
            auth.acr,
            res,
            &scp.join(" "),
            grant,
            now,
        );
        body.insert("expires_in".into(), json!(at_lifetime));
        body.insert("ext_expires_in".into(), json!(at_lifetime));
        if b2c {
            body.insert("expires_on".into(), json!(now + at_lifetime));
            body.insert("resource".into(), json!(res.aud));
        }
        body.insert("access_token".into(), json!(at));
    }
    if scopes.has("offline_access") {
        let rt = store_refresh(sh, grant, b2c);
        body.insert("refresh_token".into(), json!(rt));
        if b2c {
            body.insert("refresh_token_expires_in".into(), json!(1_209_600));
        }
    }
    if scopes.has("openid") {
        let idt = id_token(
            sh, ctx, app, user, tenant, &issuer, &keyset, grant, scopes, nonce, now,
        );
        body.insert("id_token".into(), json!(idt));
        if b2c {
            body.insert(
                "id_token_expires_in".into(),
                json!(sh.cfg.id_token_lifetime.as_secs()),
            );
            body.insert("not_before".into(), json!(now));
        }
    }
    if want_client_info {
        let uid = if b2c {
            format!(
                "{}-{}",
                user.oid,
                grant.policy.clone().unwrap_or_default().to_lowercase()
            )
        } else {
            user.oid.clone()
        };
        body.insert(
            "client_info".into(),
            json!(client_info(&uid, &user.tenant_id)),
        );
    }
    Value::Object(body)
}

#[allow(clippy::too_many_arguments)]
fn id_token(
    sh: &Shared,
    _ctx: &Ctx,
    app: &TestApp,
    user: &TestUser,
    tenant: &TestTenant,
    issuer: &str,
    keyset: &str,
    grant: &Grant,
    scopes: &Scopes,
    nonce: Option<&str>,
    now: i64,
) -> String {
    let lifetime = sh.cfg.id_token_lifetime.as_secs() as i64;
    let mut c = if tenant.kind == TenantKind::B2c {
        let mut c = json!({
            "exp": now + lifetime,
            "nbf": now,
            "ver": "1.0",
            "iss": issuer,
            "sub": user.oid,
            "aud": app.client_id,
            "iat": now,
            "auth_time": grant.auth_time,
            "oid": user.oid,
            "name": user.display_name,
            "emails": user.email.iter().collect::<Vec<_>>(),
            "tfp": grant.policy.clone().unwrap_or_default(),
        });
        if !user.given_name.is_empty() {
            c["given_name"] = json!(user.given_name);
        }
        if !user.surname.is_empty() {
            c["family_name"] = json!(user.surname);
        }
        c
    } else {
        let mut c = json!({
            "aud": app.client_id,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aio": format!("{}==", random_b64(48)),
            "login_hint": login_hint(user),
            "name": user.display_name,
            "oid": user.oid,
            "preferred_username": user.username,
            "rh": format!("0.{}.", random_b64(36)),
            "sid": grant.sid,
            "sub": pairwise_sub(&user.oid, &app.client_id),
            "tid": tenant.id,
            "uti": random_b64(16),
            "ver": "2.0",
        });
        if scopes.has("email") {
            if let Some(e) = &user.email {
                c["email"] = json!(e);
            }
        }
        if !user.roles.is_empty() {
            c["roles"] = json!(user.roles);
        }
        if user.groups.len() > sh.cfg.group_overage_limit {
            // Group overage, as Entra emits it in ID tokens of the code flow.
            c["_claim_names"] = json!({"groups": "src1"});
            c["_claim_sources"] = json!({"src1": {"endpoint": format!(
                "https://graph.windows.net/{}/users/{}/getMemberObjects",
                tenant.id, user.oid
            )}});
        } else if !user.groups.is_empty() {
            c["groups"] = json!(user.groups);
        }
        c
    };
    if let Some(n) = nonce {
        c["nonce"] = json!(n);
    }
    let tamper = sh.tamper();
    let slot = sh.keys().current(keyset);
    let key = pool_key(slot);
    let Some(t) = tamper else {
        return sign_rs256(&key, &key.kid, &c);
    };
    match t {
        Tamper::WrongIssuer => {
            c["iss"] = json!(issuer.replace(&tenant.id, "ffffffff-eeee-dddd-cccc-bbbbbbbbbbbb"));
            if c["iss"] == json!(issuer) {
                c["iss"] = json!(format!("{issuer}-evil"));
            }
        }
        Tamper::WrongAudience => c["aud"] = json!("99999999-8888-7777-6666-555555555555"),
        Tamper::Expired => {
            c["iat"] = json!(now - lifetime - 3600);
            c["nbf"] = json!(now - lifetime - 3600);
            c["exp"] = json!(now - 3600);
        }
        Tamper::NotYetValid => {
            c["iat"] = json!(now + 3600);
            c["nbf"] = json!(now + 3600);
            c["exp"] = json!(now + 3600 + lifetime);
        }
        Tamper::WrongNonce => c["nonce"] = json!(format!("wrong-{}", random_b64(12))),
        Tamper::MissingNonce => {
            if let Some(o) = c.as_object_mut() {
                o.remove("nonce");
            }
        }
        Tamper::MissingSub => {
            if let Some(o) = c.as_object_mut() {
                o.remove("sub");
            }
        }
        Tamper::MissingIat => {
            if let Some(o) = c.as_object_mut() {
                o.remove("iat");
            }
        }
        _ => {}
    }
    match t {
        Tamper::BadSignature => sign_rs256(&rogue_key(), &key.kid, &c),
        Tamper::UnknownKid => sign_rs256(&key, "testkit-unknown-kid-0000000", &c),
        Tamper::AlgNone => sign_none(&c),
        Tamper::Hs256 => sign_hs256(
            app.client_secret.clone().unwrap_or_default().as_bytes(),
            &key.kid,
            &c,
        ),
        _ => sign_rs256(&key, &key.kid, &c),
    }
}

fn sp_oid(client_id: &str) -> String {
    let d = Sha256::digest(format!("sp|{client_id}").as_bytes());
    let h: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn grant_client_credentials(
    sh: &Shared,
    ctx: &Ctx,
    auth: &ClientAuth<'_>,
    f: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    if auth.acr == "0" {
        return Err(OAuthError::new("invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.").status(StatusCode::UNAUTHORIZED));
    }
    let scope = f.get("scope").cloned().unwrap_or_default();
    let parts: Vec<&str> = scope.split_whitespace().collect();
    let resource_id = match parts.as_slice() {
        [one] if one.ends_with("/.default") => one.trim_end_matches("/.default").to_string(),
        _ => {
            return Err(OAuthError::new("invalid_scope", 1002012, format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")));
        }
    };
    let Some(res) = resolve_resource(sh, &resource_id) else {
        return Err(OAuthError::new("invalid_resource", 500011, format!("The resource principal named {resource_id} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", ctx.seg)));
    };
    let tenant = match ctx.tenant(sh) {
        Some(t) if t.kind != TenantKind::B2c => t.clone(),
        Some(_) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                70003,
                "Client credentials are not supported by this user flow.",
            ));
        }
        None => {
            return Err(OAuthError::new("invalid_request", 90014, "Client credentials need a tenant: use /{tenant id}/oauth2/v2.0/token, not common/organizations/consumers."));
        }
    };
    let roles: Vec<String> = auth
        .app
        .granted_app_roles
        .iter()
        .filter(|g| resolve_resource(sh, &g.resource).is_some_and(|r| r.aud == res.aud))
        .map(|g| g.role.clone())
        .collect();
    let now = sh.now();
    let lifetime = sh.cfg.access_token_lifetime.as_secs() as i64;
    let issuer = ctx.issuer_for(&tenant);
    let oid = sp_oid(&auth.app.client_id);
    let uti = random_b64(16);
    let mut c = json!({
        "aud": res.aud, "iss": issuer, "iat": now, "nbf": now, "exp": now + lifetime,
        "aio": format!("{}==", random_b64(48)), "azp": auth.app.client_id, "azpacr": auth.acr,
        "appid": auth.app.client_id, "idp": issuer, "idtyp": "app", "oid": oid,
        "rh": format!("0.{}.", random_b64(36)), "sub": oid, "tid": tenant.id, "uti": uti, "ver": "2.0",
    });
    if !roles.is_empty() {
        c["roles"] = json!(roles);
    }
    if wants_v1_tokens(sh, &res) {
        to_v1_access_token(&mut c, &issuer, &tenant.id, &res);
    }
    record_access_token(sh, &uti);
    let at = sign(sh, &keyset_for(&tenant, None), &c);
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": at,
    }))
}

/// Verify one of our own access tokens (signature, expiry). Returns its claims.
fn verify_own_token(sh: &Shared, token: &str) -> Result<Value, &'static str> {
    let jws = Jws::parse(token).ok_or("malformed token")?;
    let kid = jws.kid().ok_or("no kid")?.to_string();
    let keys = all_published_keys(sh);
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or("unknown signing key")?;
    if !jws.verify_rs256(&key.public) {
        return Err("signature invalid");
    }
    let now = sh.now();
    let exp = jws
        .claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("no exp")?;
    if exp <= now {
        return Err("token expired");
    }
    let nbf = jws.claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
    if nbf > now + 300 {
        return Err("token not yet valid");
    }
    let tid = jws.claims.get("tid").and_then(Value::as_str);
    let iss = jws
        .claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match tid {
        Some(t) if iss.ends_with(&format!("/{t}/v2.0")) => {}
        Some(_) => return Err("issuer does not match the tenant"),
        None if iss.ends_with("/v2.0/") => {}
        None => return Err("issuer invalid"),
    }
    Ok(jws.claims)
}

fn grant_obo(
    sh: &Shared,
    ctx: &Ctx,
    auth: &ClientAuth<'_>,
    f: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    if auth.acr == "0" {
        return Err(OAuthError::new("invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.").status(StatusCode::UNAUTHORIZED));
    }
    if f.get("requested_token_use").map(String::as_str) != Some("on_behalf_of") {
        return Err(OAuthError::new("invalid_request", 900144, "The request body must contain the following parameter: 'requested_token_use' with the value 'on_behalf_of'."));
    }
    let assertion = f.get("assertion").cloned().unwrap_or_default();
    let claims = verify_own_token(sh, &assertion).map_err(|why| {
        invalid_grant(
            50013,
            &format!("Assertion failed signature validation or is not valid: {why}."),
        )
    })?;
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let app = auth.app;
    let aud_ok = aud.eq_ignore_ascii_case(&app.client_id)
        || app
            .app_id_uri
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(aud));
    if !aud_ok {
        return Err(invalid_grant(50013, &format!("Assertion audience does not match the Client app presenting the assertion. The audience in the assertion was '{aud}' and the expected audience is '{}'.", app.client_id)));
    }
    let oid = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(user) = sh.cfg.users.iter().find(|u| u.oid == oid) else {
        return Err(invalid_grant(
            50013,
            "Assertion is an app-only token: on-behalf-of needs a user token.",
        ));
    };
    let raw = f.get("scope").cloned().unwrap_or_default();
    let mut scopes = parse_scopes(sh, &raw)?;
    expand_default(sh, &mut scopes, &user.oid, &app.client_id);
    let mfa = claims
        .get("amr")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "mfa"));
    if needs_mfa(sh, &scopes) && !mfa {
        let aud = scopes
            .res
            .as_ref()
            .map(|r| r.aud.clone())
            .unwrap_or_default();
        return Err(mfa_error(&aud));
    }
    if !missing_consent(sh, &scopes, &user.oid, &app.client_id).is_empty() {
        return Err(consent_error(app));
    }
    let tenant = home_tenant(sh, user)
        .cloned()
        .ok_or_else(|| invalid_grant(50034, "The user account does not exist in the directory."))?;
    let grant = Grant {
        client_id: app.client_id.clone(),
        username: user.username.clone(),
        policy: None,
        scopes: raw.split_whitespace().map(str::to_string).collect(),
        nonce: None,
        sid: claims
            .get("sid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        mfa,
        auth_time: sh.now(),
        family: 0,
    };
    let now = sh.now();
    let res = scopes.res.clone().unwrap_or(Resource {
        aud: GRAPH_APP_ID.into(),
        prefix: String::new(),
        graph: true,
    });
    let issuer = ctx.issuer_for(&tenant);
    let at = user_access_token(
        sh,
        &issuer,
        &keyset_for(&tenant, None),
        &tenant,
        user,
        app,
        auth.acr,
        &res,
        &scopes.names.join(" "),
        &grant,
        now,
    );
    let lifetime = sh.cfg.access_token_lifetime.as_secs() as i64;
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scopes.granted(),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": at,
    });
    if scopes.has("offline_access") {
        body["refresh_token"] = json!(store_refresh(sh, &grant, false));
    }
    Ok(body)
}

// ---------------------------------------------------------------- device code

fn device_code(sh: &Shared, ctx: &Ctx, form: &[(String, String)]) -> Response {
    let f = first(form);
    if ctx.is_b2c(sh) {
        return not_found();
    }
    let client_id = f.get("client_id").cloned().unwrap_or_default();
    let Some(app) = app_by_id(sh, &client_id) else {
        return token_error(sh, ctx, OAuthError::new("unauthorized_client", 700016, format!("Application with identifier '{client_id}' was not found in the directory '{}'.", ctx.seg)));
    };
    let scope = f.get("scope").cloned().unwrap_or_default();
    if let Err(e) = parse_scopes(sh, &scope) {
        return token_error(sh, ctx, e);
    }
    let alphabet: Vec<char> = "BCDFGHJKLMNPQRSTVWXZ23456789".chars().collect();
    let mut rng = rand::thread_rng();
    let user_code: String = (0..9)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
        .collect();
    let device = format!("DAQABAAEAAAD{}", random_b64(96));
    let approved_by = sh.cfg.auto_approve.as_ref().and_then(|a| {
        user_by_name(sh, a)
            .filter(|u| ctx.user_allowed(sh, u))
            .or_else(|| ctx.users(sh).into_iter().next())
            .map(|u| u.username.clone())
    });
    sh.state().devices.insert(
        device.clone(),
        DeviceGrant {
            user_code: user_code.clone(),
            client_id: app.client_id.clone(),
            scopes: scope.split_whitespace().map(str::to_string).collect(),
            authority: ctx.authority.clone(),
            created: sh.now(),
            approved_by,
        },
    );
    let uri = ctx.self_url("oauth2/deviceauth");
    let lifetime = sh.cfg.device_code_lifetime.as_secs();
    json_response(
        StatusCode::OK,
        &json!({
            "user_code": user_code,
            "device_code": device,
            "verification_uri": uri,
            "expires_in": lifetime,
            "interval": sh.device_interval.load(std::sync::atomic::Ordering::SeqCst),
            "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
        }),
    )
}

fn device_auth(sh: &Shared, ctx: &Ctx, method: &Method, form: &[(String, String)]) -> Response {
    let action = ctx.self_url("oauth2/deviceauth");
    if *method != Method::POST {
        return html_response(StatusCode::OK, pages::device(&action, None, None, false));
    }
    let f = first(form);
    let code = f
        .get("user_code")
        .cloned()
        .unwrap_or_default()
        .trim()
        .to_uppercase();
    let username = f.get("username").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let now = sh.now();
    let lifetime = sh.cfg.device_code_lifetime.as_secs() as i64;
    let mut st = sh.state();
    let Some(dev) = st
        .devices
        .values_mut()
        .find(|d| d.user_code == code && now - d.created <= lifetime)
    else {
        drop(st);
        return html_response(
            StatusCode::OK,
            pages::device(
                &action,
                None,
                Some("That code didn't work. Check the code and try again."),
                false,
            ),
        );
    };
    let user = sh
        .cfg
        .users
        .iter()
        .find(|u| u.username.eq_ignore_ascii_case(username.trim()))
        .filter(|u| authority_allows(sh, &dev.authority, u) && u.password == password);
    let Some(user) = user else {
        drop(st);
        return html_response(
            StatusCode::OK,
            pages::device(
                &action,
                None,
                Some("Your account or password is incorrect."),
                false,
            ),
        );
    };
    dev.approved_by = Some(user.username.clone());
    drop(st);
    html_response(
        StatusCode::OK,
        pages::device(&action, Some("You have signed in to the application on your device. You may now close this window."), None, true),
    )
}

fn grant_device(
    sh: &Shared,
    ctx: &Ctx,
    auth: &ClientAuth<'_>,
    f: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let code = f
        .get("device_code")
        .or_else(|| f.get("code"))
        .cloned()
        .unwrap_or_default();
    let dev = sh.state().devices.get(&code).cloned();
    let Some(dev) = dev else {
        return Err(invalid_grant(
            9002313,
            "Invalid request. Request is malformed or invalid. The device code is not valid.",
        ));
    };
    if !dev.client_id.eq_ignore_ascii_case(&auth.app.client_id) {
        return Err(invalid_grant(70000, "The request was denied because one or more grants are invalid: the device code was issued to another client."));
    }
    let scripted = sh
        .device_answers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front();
    if let Some(answer) = scripted {
        return Err(scripted_device_answer(sh, &code, answer));
    }
    let now = sh.now();
    if now - dev.created > sh.cfg.device_code_lifetime.as_secs() as i64 {
        sh.state().devices.remove(&code);
        return Err(OAuthError::new(
            "expired_token",
            70019,
            "Verification code expired.",
        ));
    }
    let Some(username) = dev.approved_by.clone() else {
        return Err(OAuthError::new(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ));
    };
    sh.state().devices.remove(&code);
    let user = user_by_name(sh, &username)
        .ok_or_else(|| invalid_grant(50034, "The user account does not exist in the directory."))?;
    let mut scopes = parse_scopes(sh, &dev.scopes.join(" "))?;
    grant_consent(sh, &scopes, &user.oid, &auth.app.client_id);
    expand_default(sh, &mut scopes, &user.oid, &auth.app.client_id);
    let grant = Grant {
        client_id: auth.app.client_id.clone(),
        username: user.username.clone(),
        policy: None,
        scopes: dev.scopes.clone(),
        nonce: None,
        sid: guid(),
        mfa: true,
        auth_time: now,
        family: 0,
    };
    let ci = f.get("client_info").map(String::as_str) == Some("1");
    Ok(issue_user_tokens(
        sh, ctx, auth, user, &grant, &scopes, None, ci,
    ))
}

/// The error a scripted device-code answer gives; refusals and expiry forget the code.
fn scripted_device_answer(sh: &Shared, code: &str, answer: DeviceAnswer) -> OAuthError {
    let (error, aadsts, message) = match answer {
        DeviceAnswer::Pending => (
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ),
        DeviceAnswer::SlowDown => (
            "slow_down",
            70016,
            "OAuth 2.0 device flow error. The client is polling too often. Add 5 seconds to the polling interval.",
        ),
        DeviceAnswer::Expired => ("expired_token", 70019, "Verification code expired."),
        DeviceAnswer::Denied => (
            "access_denied",
            70000,
            "The user denied the authorization request.",
        ),
        DeviceAnswer::Declined => (
            "authorization_declined",
            70000,
            "The end user denied the authorization request.",
        ),
    };
    if !matches!(answer, DeviceAnswer::Pending | DeviceAnswer::SlowDown) {
        sh.state().devices.remove(code);
    }
    OAuthError::new(error, aadsts, message)
}

// ---------------------------------------------------------------- logout

fn logout(
    sh: &Shared,
    ctx: &Ctx,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> (Response, Vec<crate::logout::Notice>) {
    let p = first(params);
    let get = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    let mut app = get("client_id").and_then(|c| app_by_id(sh, &c));
    if let Some(hint) = get("id_token_hint") {
        let keys = published_keys(sh, &ctx.keyset(sh));
        let ok = Jws::parse(&hint).filter(|j| {
            let kid = j.kid().unwrap_or_default().to_string();
            keys.iter()
                .any(|k| k.kid == kid && j.verify_rs256(&k.public))
        });
        let Some(jws) = ok else {
            return (error_page(sh, ctx, StatusCode::BAD_REQUEST, "AADSTS90105", "The id_token_hint is not valid: its signature could not be verified with this authority's keys."), Vec::new());
        };
        let aud = jws
            .claims
            .get("aud")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match app_by_id(sh, aud) {
            Some(a) => {
                if app.is_some_and(|x| x.client_id != a.client_id) {
                    return (
                        error_page(
                            sh,
                            ctx,
                            StatusCode::BAD_REQUEST,
                            "AADSTS90105",
                            "The id_token_hint was issued to another application than client_id.",
                        ),
                        Vec::new(),
                    );
                }
                app = Some(a);
            }
            None => {
                return (
                    error_page(
                        sh,
                        ctx,
                        StatusCode::BAD_REQUEST,
                        "AADSTS700016",
                        "The id_token_hint names an unknown application.",
                    ),
                    Vec::new(),
                );
            }
        }
    }
    let target = get("post_logout_redirect_uri");
    if let Some(uri) = &target {
        let Some(app) = app else {
            return (error_page(sh, ctx, StatusCode::BAD_REQUEST, "AADSTS50011", "A post_logout_redirect_uri needs client_id or id_token_hint to identify the application."), Vec::new());
        };
        if !redirect_uri_ok(app, uri, &app.post_logout_redirect_uris) {
            return (error_page(sh, ctx, StatusCode::BAD_REQUEST, "AADSTS50011", &format!("The post_logout_redirect_uri '{uri}' specified in the request does not match the redirect URIs configured for the application '{}'.", app.client_id)), Vec::new());
        }
    }
    // End every SSO session of this authority the browser holds.
    let mut clear = Vec::new();
    let mut ended = Vec::new();
    {
        let jar = cookies(headers);
        let mut st = sh.state();
        for (k, v) in jar {
            if !k.starts_with("testkit_sso_") {
                continue;
            }
            let belongs = st
                .sessions
                .get(&v)
                .and_then(|s| user_by_name(sh, &s.username))
                .is_some_and(|u| ctx.user_allowed(sh, u));
            if belongs {
                if let Some(s) = st.sessions.remove(&v) {
                    ended.push((v.clone(), s));
                }
                clear.push(format!("{k}=; Max-Age=0{}", cookie_attrs(ctx)));
            }
        }
    }
    let next = target.map(|uri| match get("state") {
        Some(s) => {
            let sep = if uri.contains('?') { '&' } else { '?' };
            format!("{uri}{sep}state={}", urlencode(&s))
        }
        None => uri,
    });
    let notices = logout_notices(sh, ctx, &ended);
    let frames: Vec<&str> = notices
        .iter()
        .filter_map(|n| match n {
            crate::logout::Notice::Frame(url) => Some(url.as_str()),
            crate::logout::Notice::Back { .. } => None,
        })
        .collect();
    let mut r = match (&next, frames.is_empty()) {
        (Some(loc), true) => redirect(loc, &[]),
        (None, true) => html_response(StatusCode::OK, pages::signed_out()),
        // As Entra's sign-out page: each app's front-channel URL in a hidden iframe, then on
        // to the post-logout redirect URI once they loaded.
        (_, false) => html_response(
            StatusCode::OK,
            pages::signed_out_with_frames(&frames, next.as_deref()),
        ),
    };
    for c in clear {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    (r, notices)
}

/// The logout notifications for the provider sessions that ended: the front-channel URL
/// (`?sid=` only, Entra's shape) and a back-channel logout token of every app that
/// signed in with each session and registered one.
fn logout_notices(
    sh: &Shared,
    ctx: &Ctx,
    ended: &[(String, SsoSession)],
) -> Vec<crate::logout::Notice> {
    use crate::logout::Notice;
    let mut out = Vec::new();
    let now = sh.now();
    for (sid, sess) in ended {
        let Some(user) = user_by_name(sh, &sess.username) else {
            continue;
        };
        let Some(tenant) = home_tenant(sh, user) else {
            continue;
        };
        for client_id in &sess.apps {
            let Some(app) = app_by_id(sh, client_id) else {
                continue;
            };
            let registered = sh
                .logout_uris
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&app.client_id)
                .cloned();
            let (front, back) = match registered {
                Some(uris) => uris,
                None => (
                    app.frontchannel_logout_uri.clone(),
                    app.backchannel_logout_uri.clone(),
                ),
            };
            if let Some(uri) = &front {
                let sep = if uri.contains('?') { '&' } else { '?' };
                out.push(Notice::Frame(format!("{uri}{sep}sid={}", urlencode(sid))));
            }
            if let Some(uri) = &back {
                let claims = json!({
                    "iss": ctx.issuer_for(tenant),
                    "aud": app.client_id,
                    "iat": now,
                    "exp": now + 120,
                    "jti": guid(),
                    "sid": sid,
                    "sub": pairwise_sub(&user.oid, &app.client_id),
                    "events": { identity_core_event(): {} },
                });
                let token = sign(sh, &keyset_for(tenant, None), &claims);
                out.push(Notice::Back {
                    uri: uri.clone(),
                    token,
                });
            }
        }
    }
    out
}

/// The back-channel logout event's name (OpenID Connect Back-Channel Logout 1.0 §2.4).
fn identity_core_event() -> &'static str {
    "http://schemas.openid.net/event/backchannel-logout"
}

// ---------------------------------------------------------------- protected APIs

fn bearer(headers: &HeaderMap) -> Option<String> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))?;
    Some(t.trim().to_string())
}

fn challenge(base: &str, tid: &str, extra: &str) -> Response {
    let v = format!("Bearer realm=\"\", authorization_uri=\"{base}/{tid}/oauth2/authorize\", client_id=\"{GRAPH_APP_ID}\"{extra}");
    let mut r = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation failure. Invalid audience, signature, issuer or lifetime."}}),
    );
    if let Ok(h) = HeaderValue::from_str(&v) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, h);
    }
    r
}

/// Validate a bearer token for an API with audience `auds`; `Err` is the response.
fn api_auth(
    sh: &Shared,
    headers: &HeaderMap,
    base: &str,
    auds: &[String],
) -> Result<Value, Box<Response>> {
    let default_tid = sh
        .cfg
        .tenants
        .iter()
        .find(|t| t.kind == TenantKind::Workforce)
        .map(|t| t.id.clone())
        .unwrap_or_default();
    let Some(tok) = bearer(headers) else {
        return Err(Box::new(challenge(base, &default_tid, "")));
    };
    let tid = Jws::parse(&tok)
        .and_then(|j| {
            j.claims
                .get("tid")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or(default_tid);
    let claims = match verify_own_token(sh, &tok) {
        Ok(c) => c,
        Err(why) => {
            tracing::debug!(reason = why, "API rejected a bearer token");
            return Err(Box::new(challenge(base, &tid, ", error=\"invalid_token\"")));
        }
    };
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !auds.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
        return Err(Box::new(challenge(base, &tid, ", error=\"invalid_token\"")));
    }
    // Continuous access evaluation.
    let oid = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let uti = claims
        .get("uti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    let (event, seq) = {
        let st = sh.state();
        (st.cae.get(oid).copied(), st.issued.get(uti).copied())
    };
    if let Some((ts, event_seq)) = event {
        let before = match seq {
            Some(s) => s <= event_seq,
            None => iat <= ts,
        };
        if before {
            let c = format!(
                "{{\"access_token\":{{\"nbf\":{{\"essential\":true,\"value\":\"{ts}\"}}}}}}"
            );
            return Err(Box::new(challenge(
                base,
                &tid,
                &format!(", errorDescription=\"Continuous access evaluation resulted in challenge with result: InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp\", error=\"insufficient_claims\", claims=\"{}\"", b64std(c.as_bytes())),
            )));
        }
    }
    Ok(claims)
}

fn has_scope(claims: &Value, scope: &str) -> bool {
    claims
        .get("scp")
        .and_then(Value::as_str)
        .is_some_and(|s| s.split(' ').any(|x| x.eq_ignore_ascii_case(scope)))
}

fn forbidden(msg: &str) -> Response {
    json_response(
        StatusCode::FORBIDDEN,
        &json!({"error": {"code": "Authorization_RequestDenied", "message": msg}}),
    )
}

fn api_me(sh: &Shared, headers: &HeaderMap, base: &str) -> Response {
    let claims = match api_auth(
        sh,
        headers,
        base,
        &[
            GRAPH_APP_ID.to_string(),
            "https://graph.microsoft.com".into(),
        ],
    ) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if !has_scope(&claims, "User.Read") {
        return forbidden(
            "Insufficient privileges to complete the operation: the token has no User.Read scope.",
        );
    }
    let oid = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(u) = sh.cfg.users.iter().find(|u| u.oid == oid) else {
        return forbidden("The token is not for a user.");
    };
    json_response(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("{base}/v1.0/$metadata#users/$entity"),
            "businessPhones": [],
            "displayName": u.display_name,
            "givenName": u.given_name,
            "jobTitle": Value::Null,
            "mail": u.email,
            "mobilePhone": Value::Null,
            "officeLocation": Value::Null,
            "preferredLanguage": "en-US",
            "surname": u.surname,
            "userPrincipalName": u.username,
            "id": u.oid,
        }),
    )
}

/// `POST /v1.0/me/getMemberObjects` (Microsoft Graph): the signed-in user's group ids,
/// with `GroupMember.Read.All`, `Group.Read.All` or `Directory.Read.All`.
fn member_objects(
    sh: &Shared,
    method: &Method,
    headers: &HeaderMap,
    base: &str,
    body: &[u8],
) -> Response {
    if *method != Method::POST {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": {"code": "Request_BadRequest", "message": "Use POST."}}),
        );
    }
    let claims = match api_auth(
        sh,
        headers,
        base,
        &[
            GRAPH_APP_ID.to_string(),
            "https://graph.microsoft.com".into(),
        ],
    ) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if ![
        "GroupMember.Read.All",
        "Group.Read.All",
        "Directory.Read.All",
    ]
    .iter()
    .any(|s| has_scope(&claims, s))
    {
        return forbidden("Insufficient privileges to complete the operation.");
    }
    let security_only = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.get("securityEnabledOnly").and_then(Value::as_bool));
    if security_only.is_none() {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"code": "Request_BadRequest", "message": "The body must be a JSON object with the boolean 'securityEnabledOnly'."}}),
        );
    }
    let oid = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(u) = sh.cfg.users.iter().find(|u| u.oid == oid) else {
        return forbidden("The token is not for a user.");
    };
    json_response(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("{base}/v1.0/$metadata#Collection(Edm.String)"),
            "value": u.groups,
        }),
    )
}

fn api_echo(sh: &Shared, headers: &HeaderMap, base: &str) -> Response {
    let Some(api) = sh
        .cfg
        .apps
        .iter()
        .find(|a| !a.scopes.is_empty() || !a.app_roles.is_empty())
    else {
        return not_found();
    };
    let mut auds = vec![api.client_id.clone()];
    if let Some(u) = &api.app_id_uri {
        auds.push(u.clone());
    }
    let claims = match api_auth(sh, headers, base, &auds) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let scope_ok = api.scopes.iter().any(|s| has_scope(&claims, s));
    let role_ok = claims
        .get("roles")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            r.iter().any(|v| {
                v.as_str()
                    .is_some_and(|v| api.app_roles.iter().any(|a| a == v))
            })
        });
    if !scope_ok && !role_ok {
        return forbidden("The token carries neither a scope nor an app role of this API.");
    }
    json_response(StatusCode::OK, &json!({ "claims": claims }))
}

fn userinfo(sh: &Shared, headers: &HeaderMap, base: &str) -> Response {
    let claims = match api_auth(
        sh,
        headers,
        base,
        &[
            GRAPH_APP_ID.to_string(),
            "https://graph.microsoft.com".into(),
        ],
    ) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let oid = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(u) = sh.cfg.users.iter().find(|u| u.oid == oid) else {
        return forbidden("The token is not for a user.");
    };
    json_response(
        StatusCode::OK,
        &json!({
            "sub": claims.get("sub"),
            "name": u.display_name,
            "family_name": u.surname,
            "given_name": u.given_name,
            "picture": format!("{base}/v1.0/me/photo/$value"),
            "email": u.email,
        }),
    )
}
