//! Shared state, the accept loop (plain and TLS), and the control API.

use crate::config::{TenantKind, TestKitConfig};
use crate::keys::{pool_key, KeyStore};
use crate::util::json_response;
use crate::{Endpoint, Fault, StartError, Tamper};
use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower::ServiceExt;

/// The grant context carried by codes, refresh tokens and device codes.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) username: String,
    pub(crate) policy: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) sid: String,
    pub(crate) mfa: bool,
    pub(crate) auth_time: i64,
    /// The refresh-token family (one per sign-in); 0 until the first refresh token.
    pub(crate) family: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub(crate) grant: Grant,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: Option<String>,
    pub(crate) created: i64,
    pub(crate) used: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub(crate) grant: Grant,
    pub(crate) generation: u64,
    /// Redeemed already (matters with reuse detection).
    pub(crate) used: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct SsoSession {
    pub(crate) username: String,
    pub(crate) mfa: bool,
    pub(crate) auth_time: i64,
    /// Client ids of the apps signed in with this session (for logout notifications).
    pub(crate) apps: Vec<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct DeviceGrant {
    pub(crate) user_code: String,
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) authority: crate::provider::Authority,
    pub(crate) created: i64,
    pub(crate) approved_by: Option<String>,
}

/// Mutable provider state.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) codes: HashMap<String, CodeGrant>,
    pub(crate) refresh: HashMap<String, RefreshGrant>,
    pub(crate) sessions: HashMap<String, SsoSession>,
    /// Pending sign-ins between pages: id → (username, mfa, sid).
    pub(crate) pending: HashMap<String, (String, bool, String)>,
    pub(crate) devices: HashMap<String, DeviceGrant>,
    /// (oid, client_id) → consented (resource aud, scope name).
    pub(crate) consents: HashMap<(String, String), HashSet<(String, String)>>,
    /// username → refresh-token generation (bumped by revocation).
    pub(crate) generations: HashMap<String, u64>,
    /// oid → (event time, token sequence at the event).
    pub(crate) cae: HashMap<String, (i64, u64)>,
    pub(crate) token_seq: u64,
    /// access token `uti` → issue sequence number.
    pub(crate) issued: HashMap<String, u64>,
    /// Refresh-token families revoked because one of their tokens was replayed.
    pub(crate) revoked_families: HashSet<u64>,
    /// The last refresh-token family handed out.
    pub(crate) family_seq: u64,
    /// Back-channel logout tokens sent, with the app's answer.
    pub(crate) logout_deliveries: Vec<crate::LogoutDelivery>,
}

/// An app's (front-channel, back-channel) logout URIs.
pub(crate) type LogoutUris = (Option<String>, Option<String>);

pub(crate) struct Shared {
    pub(crate) cfg: TestKitConfig,
    pub(crate) scheme: &'static str,
    pub(crate) counters: Vec<AtomicU64>,
    /// Nanoseconds spent answering each endpoint, in counter order.
    pub(crate) busy: Vec<AtomicU64>,
    faults: Mutex<HashMap<Endpoint, Fault>>,
    pub(crate) tamper: Mutex<Option<Tamper>>,
    pub(crate) discovery_issuer: Mutex<Option<String>>,
    pub(crate) authorization_response_iss: Mutex<Option<String>>,
    pub(crate) token_response_members: Mutex<Option<serde_json::Map<String, Value>>>,
    /// Logout URIs registered after start: client id → (front-channel, back-channel).
    pub(crate) logout_uris: Mutex<HashMap<String, LogoutUris>>,
    pub(crate) clock_offset: AtomicI64,
    /// Scripted answers of the next device-code token requests, first first.
    pub(crate) device_answers: Mutex<std::collections::VecDeque<crate::DeviceAnswer>>,
    /// The `interval` the device authorization endpoint announces, in seconds.
    pub(crate) device_interval: AtomicU64,
    keys: Mutex<KeyStore>,
    state: Mutex<State>,
    pub(crate) ca_pem: Option<String>,
}

impl Shared {
    pub(crate) fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        real + self.clock_offset.load(Ordering::SeqCst)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn keys(&self) -> MutexGuard<'_, KeyStore> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn tamper(&self) -> Option<Tamper> {
        *self.tamper.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn fault(&self, e: Endpoint) -> Option<Fault> {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&e)
            .cloned()
    }

    pub(crate) fn set_fault(&self, e: Endpoint, f: Option<Fault>) {
        let mut m = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        match f {
            Some(f) => {
                m.insert(e, f);
            }
            None => {
                m.remove(&e);
            }
        }
    }

    pub(crate) fn count(&self, e: Endpoint) {
        if let Some(c) = Endpoint::ALL
            .iter()
            .position(|x| *x == e)
            .and_then(|i| self.counters.get(i))
        {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub(crate) fn add_busy(&self, e: Endpoint, spent: std::time::Duration) {
        if let Some(c) = Endpoint::ALL
            .iter()
            .position(|x| *x == e)
            .and_then(|i| self.busy.get(i))
        {
            c.fetch_add(
                u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    pub(crate) fn reset_counters(&self) {
        for c in self.counters.iter().chain(&self.busy) {
            c.store(0, Ordering::SeqCst);
        }
    }

    pub(crate) fn rotate_keys(&self) {
        self.keys().rotate();
    }

    pub(crate) fn retire_keys_now(&self) {
        self.keys().retire_now();
    }

    pub(crate) fn discovery_issuer(&self) -> Option<String> {
        self.discovery_issuer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn authorization_response_iss(&self) -> Option<String> {
        self.authorization_response_iss
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn token_response_members(&self) -> Option<serde_json::Map<String, Value>> {
        self.token_response_members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn revoke(&self, username: &str) {
        let mut st = self.state();
        *st.generations.entry(username.to_lowercase()).or_insert(0) += 1;
    }

    pub(crate) fn cae_event(&self, username: &str) {
        let now = self.now();
        let Some(user) = self
            .cfg
            .users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
        else {
            return;
        };
        let mut st = self.state();
        let seq = st.token_seq;
        st.cae.insert(user.oid.clone(), (now, seq));
    }
}

/// Names of every key set the configuration needs, in a stable order.
fn key_set_names(cfg: &TestKitConfig) -> Vec<String> {
    let mut names = vec!["workforce".to_string()];
    for t in &cfg.tenants {
        match t.kind {
            TenantKind::ExternalId => names.push(format!("ciam:{}", t.id)),
            TenantKind::B2c => {
                for p in &t.policies {
                    names.push(format!("b2c:{}:{}", t.id, p.to_lowercase()));
                }
            }
            _ => {}
        }
    }
    names
}

/// Marker: close the connection without answering.
#[derive(Clone, Copy)]
pub(crate) struct DropConnection;

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}
impl std::error::Error for Dropped {}

pub(crate) async fn start(
    cfg: TestKitConfig,
) -> Result<(Arc<Shared>, SocketAddr, tokio::task::JoinHandle<()>), StartError> {
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: cfg.addr,
        source,
    })?;
    let tls = match &cfg.tls {
        Some(t) => {
            let mut t = t.clone();
            t.extra_names
                .extend(cfg.custom_domains.iter().map(|d| d.host.clone()));
            Some(crate::tls::setup(&t).map_err(StartError::Tls)?)
        }
        None => None,
    };
    // Warm the workforce key outside the request path.
    let _ = tokio::task::spawn_blocking(|| pool_key(0)).await;
    let names = key_set_names(&cfg);
    let shared = Arc::new(Shared {
        scheme: if tls.is_some() { "https" } else { "http" },
        counters: Endpoint::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        busy: Endpoint::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        faults: Mutex::new(HashMap::new()),
        tamper: Mutex::new(None),
        discovery_issuer: Mutex::new(None),
        authorization_response_iss: Mutex::new(None),
        token_response_members: Mutex::new(None),
        logout_uris: Mutex::new(HashMap::new()),
        clock_offset: AtomicI64::new(0),
        device_answers: Mutex::new(std::collections::VecDeque::new()),
        device_interval: AtomicU64::new(5),
        keys: Mutex::new(KeyStore::new(&names)),
        state: Mutex::new(State::default()),
        ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
        cfg,
    });
    let router = router(shared.clone());
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server_config));
    let task = tokio::spawn(accept_loop(listener, router, acceptor));
    Ok((shared, addr, task))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    // Connection tasks live in this set: aborting the loop aborts them all.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let router = router.clone();
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    match acceptor {
                        Some(acc) => {
                            if let Ok(tls) = acc.accept(stream).await {
                                serve_conn(TokioIo::new(tls), router).await;
                            }
                        }
                        None => serve_conn(TokioIo::new(stream), router).await,
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_conn<I>(io: I, router: Router)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let router = router.clone();
        async move {
            let resp = router
                .oneshot(req.map(Body::new))
                .await
                .unwrap_or_else(|e| match e {});
            if resp.extensions().get::<DropConnection>().is_some() {
                Err(Dropped)
            } else {
                Ok(resp)
            }
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, svc)
        .await;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_testkit/counters", get(ctl_counters))
        .route("/_testkit/counters/reset", post(ctl_reset))
        .route("/_testkit/fault", post(ctl_fault))
        .route("/_testkit/tamper", post(ctl_tamper))
        .route("/_testkit/rotate-keys", post(ctl_rotate))
        .route("/_testkit/retire-keys", post(ctl_retire))
        .route("/_testkit/discovery-issuer", post(ctl_discovery_issuer))
        .route(
            "/_testkit/authorization-response-iss",
            post(ctl_authorization_iss),
        )
        .route("/_testkit/token-response-members", post(ctl_token_members))
        .route("/_testkit/clock", post(ctl_clock))
        .route("/_testkit/revoke", post(ctl_revoke))
        .route("/_testkit/cae-event", post(ctl_cae))
        .route("/_testkit/config", get(ctl_config))
        .route("/_testkit/federated-token", post(ctl_federated_token))
        .fallback(crate::provider::dispatch)
        .with_state(shared)
}

type S = AxState<Arc<Shared>>;

fn ok() -> Response {
    json_response(StatusCode::OK, &json!({"ok": true}))
}

fn bad(msg: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": msg}))
}

async fn ctl_counters(AxState(s): S) -> Response {
    let mut m = serde_json::Map::new();
    for e in Endpoint::ALL {
        m.insert(
            e.name().into(),
            json!(
                s.counters[Endpoint::ALL.iter().position(|x| *x == e).unwrap_or(0)]
                    .load(Ordering::SeqCst)
            ),
        );
    }
    json_response(StatusCode::OK, &Value::Object(m))
}

async fn ctl_reset(AxState(s): S) -> Response {
    s.reset_counters();
    ok()
}

/// Parse the control-API fault: `{"slow_ms":N}`, `{"status":N}`, `{"oversized_bytes":N}`,
/// `"down"`, `"malformed_json"`, `null`.
pub(crate) fn parse_fault(v: &Value) -> Result<Option<Fault>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s == "down" => Ok(Some(Fault::Down)),
        Value::String(s) if s == "malformed_json" => Ok(Some(Fault::MalformedJson)),
        Value::Object(o) => {
            if let Some(ms) = o.get("slow_ms").and_then(Value::as_u64) {
                Ok(Some(Fault::Slow(Duration::from_millis(ms))))
            } else if let Some(n) = o.get("oversized_bytes").and_then(Value::as_u64) {
                Ok(Some(Fault::Oversized(n)))
            } else if let Some(st) = o.get("status").and_then(Value::as_u64) {
                u16::try_from(st)
                    .ok()
                    .filter(|s| (100..=999).contains(s))
                    .map(|s| Some(Fault::Status(s)))
                    .ok_or_else(|| "status out of range".to_string())
            } else {
                Err("fault object needs slow_ms, status or oversized_bytes".into())
            }
        }
        _ => Err("unknown fault".into()),
    }
}

async fn ctl_fault(AxState(s): S, Json(v): Json<Value>) -> Response {
    let Some(ep) = v
        .get("endpoint")
        .and_then(Value::as_str)
        .and_then(Endpoint::from_name)
    else {
        return bad("unknown endpoint");
    };
    match parse_fault(v.get("fault").unwrap_or(&Value::Null)) {
        Ok(f) => {
            s.set_fault(ep, f);
            ok()
        }
        Err(e) => bad(&e),
    }
}

async fn ctl_tamper(AxState(s): S, Json(v): Json<Value>) -> Response {
    let t = v.get("tamper").cloned().unwrap_or(Value::Null);
    match serde_json::from_value::<Option<Tamper>>(t) {
        Ok(t) => {
            *s.tamper.lock().unwrap_or_else(|e| e.into_inner()) = t;
            ok()
        }
        Err(_) => bad("unknown tamper mode"),
    }
}

async fn ctl_rotate(AxState(s): S) -> Response {
    s.rotate_keys();
    ok()
}

async fn ctl_retire(AxState(s): S) -> Response {
    s.retire_keys_now();
    ok()
}

/// `{"issuer": "..."}` or `{"issuer": null}`.
async fn ctl_discovery_issuer(AxState(s): S, Json(v): Json<Value>) -> Response {
    match v.get("issuer") {
        Some(Value::String(i)) => {
            *s.discovery_issuer.lock().unwrap_or_else(|e| e.into_inner()) = Some(i.clone());
            ok()
        }
        Some(Value::Null) | None => {
            *s.discovery_issuer.lock().unwrap_or_else(|e| e.into_inner()) = None;
            ok()
        }
        Some(_) => bad("issuer must be a string or null"),
    }
}

/// `{"iss": "..."}` or `{"iss": null}`.
async fn ctl_authorization_iss(AxState(s): S, Json(v): Json<Value>) -> Response {
    match v.get("iss") {
        Some(Value::String(i)) => {
            *s.authorization_response_iss
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(i.clone());
            ok()
        }
        Some(Value::Null) | None => {
            *s.authorization_response_iss
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
            ok()
        }
        Some(_) => bad("iss must be a string or null"),
    }
}

/// `{"members": {...}}` or `{"members": null}`.
async fn ctl_token_members(AxState(s): S, Json(v): Json<Value>) -> Response {
    match v.get("members") {
        Some(Value::Object(m)) => {
            *s.token_response_members
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
            ok()
        }
        Some(Value::Null) | None => {
            *s.token_response_members
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
            ok()
        }
        Some(_) => bad("members must be an object or null"),
    }
}

async fn ctl_clock(AxState(s): S, Json(v): Json<Value>) -> Response {
    match v.get("offset_secs").and_then(Value::as_i64) {
        Some(o) => {
            s.clock_offset.store(o, Ordering::SeqCst);
            ok()
        }
        None => bad("offset_secs (integer) required"),
    }
}

async fn ctl_revoke(AxState(s): S, Json(v): Json<Value>) -> Response {
    match v.get("username").and_then(Value::as_str) {
        Some(u) => {
            s.revoke(u);
            ok()
        }
        None => bad("username required"),
    }
}

async fn ctl_cae(AxState(s): S, Json(v): Json<Value>) -> Response {
    match v.get("username").and_then(Value::as_str) {
        Some(u) => {
            s.cae_event(u);
            ok()
        }
        None => bad("username required"),
    }
}

async fn ctl_federated_token(AxState(s): S, Json(v): Json<Value>) -> Response {
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let issuer = field("issuer").unwrap_or_else(|| crate::config::FEDERATION_ISSUER.into());
    let known = s
        .cfg
        .federation_issuers
        .iter()
        .any(|f| f.issuer == issuer && f.public_keys.is_empty());
    if !known {
        return bad("issuer is not a federation issuer the testkit holds the key of");
    }
    let subject = field("subject").unwrap_or_else(|| crate::config::FEDERATION_SUBJECT.into());
    let audience =
        field("audience").unwrap_or_else(|| crate::config::TOKEN_EXCHANGE_AUDIENCE.into());
    let token = crate::federation::mint_federated_token(&s, &issuer, &subject, &audience);
    json_response(StatusCode::OK, &json!({ "token": token }))
}

async fn ctl_config(AxState(s): S, headers: axum::http::HeaderMap) -> Response {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("{}://{host}", s.scheme);
    let cfg = &s.cfg;
    let users: Vec<Value> = cfg
        .users
        .iter()
        .map(|u| {
            json!({
                "username": u.username, "display_name": u.display_name, "oid": u.oid,
                "tenant_id": u.tenant_id, "email": u.email, "roles": u.roles, "groups": u.groups,
            })
        })
        .collect();
    let apps: Vec<Value> = cfg
        .apps
        .iter()
        .map(|a| {
            json!({
                "client_id": a.client_id, "name": a.name, "confidential": a.is_confidential(),
                "redirect_uris": a.redirect_uris, "allow_loopback_any_port": a.allow_loopback_any_port,
                "post_logout_redirect_uris": a.post_logout_redirect_uris, "app_id_uri": a.app_id_uri,
                "scopes": a.scopes, "app_roles": a.app_roles,
            })
        })
        .collect();
    let mut authorities = serde_json::Map::new();
    for t in &cfg.tenants {
        match t.kind {
            TenantKind::Workforce => {
                authorities.insert(
                    format!("workforce:{}", t.domain),
                    json!(format!("{base}/{}", t.id)),
                );
            }
            TenantKind::Consumers => {
                authorities.insert("consumers".into(), json!(format!("{base}/consumers")));
            }
            TenantKind::ExternalId => {
                authorities.insert(
                    format!("external_id:{}", t.domain),
                    json!(format!("{base}/{}", t.id)),
                );
            }
            TenantKind::B2c => {
                for p in &t.policies {
                    authorities.insert(
                        format!("b2c:{}", p),
                        json!(format!("{base}/{}/{}", t.domain, p)),
                    );
                }
            }
        }
    }
    authorities.insert("common".into(), json!(format!("{base}/common")));
    authorities.insert(
        "organizations".into(),
        json!(format!("{base}/organizations")),
    );
    json_response(
        StatusCode::OK,
        &json!({
            "base_url": base,
            "tenants": cfg.tenants,
            "users": users,
            "apps": apps,
            "authorities": authorities,
            "auto_approve": cfg.auto_approve,
            "id_token_lifetime": cfg.id_token_lifetime.as_secs(),
            "access_token_lifetime": cfg.access_token_lifetime.as_secs(),
            "mfa_scopes": cfg.mfa_scopes,
            "consented_scopes": cfg.consented_scopes,
        }),
    )
}
