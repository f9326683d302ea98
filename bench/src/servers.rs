//! The apps under test: the same three handlers on each framework.
//!
//! * `/`: the signed-in page, through the adapter's `User` guard;
//! * `/plain`: the same handler without the guard, behind the same session layer;
//! * `/session`: the page built from the raw session (reads the user entry by hand);
//! * `/token`: an access token for `User.Read` (cache, else refresh);
//! * `/sessions`: how many sessions the server-side store holds.
//!
//! Each app keeps its sessions in the store `SESSION_STORE` names (the core's in-process
//! `MemoryBackend` by default, or Redis), signs its session cookie with the same fixed
//! secret, and runs on two worker threads (the bench's tokio runtime for axum and
//! Rocket, two actix workers for actix-web).
//!
//! The axum app also serves a web API (an `ApiAuth` for the API app of the provider):
//! `/api/app` (app role required) and `/api/open` (the same handler without it),
//! `/api/obo` (calls `/downstream` on behalf of the caller with a cached on-behalf-of
//! token) and `/api/direct` (the same call without a token or a guard).

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use identity_axum::{ApiAccess, ApiAuth, ApiCaller, ApiRequirement};
use identity_axum::{Auth, IdentitySession, SessionBackendStore, SessionSettings, User};
use identity_core::sessions::{
    MemoryBackend, SessionBackend, StoreUrl, DEFAULT_COMMAND_TIMEOUT, DEFAULT_MEMORY_CAPACITY,
};
use identity_core::{Authority, Identity, IdentityConfig, Scopes};
use std::sync::Arc;
use std::time::Duration;

mod actix_app;
mod rocket_app;

/// The frameworks this binary can serve.
pub(crate) const FRAMEWORKS: &[&str] = &["axum", "actix", "rocket"];

/// The fixed session secret of every app (their cookies are comparable across runs).
const SESSION_SECRET: [u8; 32] = [7u8; 32];

/// The name of the app's session cookie (it holds the session id only): the one cookie
/// the load sends. Not the local provider's `testkit_sso_*` cookies, nor the pending
/// sign-in cookie (`identity_pending`).
pub(crate) fn session_cookie(framework: &str) -> Option<&'static str> {
    match framework {
        // The engine's session cookie over plain http on loopback (`__Host-identity` over
        // https), the same for the axum and actix-web adapters.
        "axum" | "actix" | "rocket" => Some(identity_core::web::cookies::SESSION_COOKIE),
        _ => None,
    }
}

pub(crate) async fn serve(framework: &str, authority: &str, addr_file: &str) -> i32 {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind: {e}");
            return 1;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let identity = match identity(authority, &format!("http://{addr}/getAToken")) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let result = match framework {
        "axum" => serve_axum(listener, identity, addr_file, addr, authority).await,
        "actix" => match listener.into_std() {
            Ok(listener) => actix_app::serve(listener, identity, addr_file, addr).await,
            Err(e) => Err(e.to_string()),
        },
        "rocket" => {
            // Rocket 0.5 binds its own socket: free the port just picked and hand it over.
            drop(listener);
            rocket_app::serve(identity, addr_file, addr).await
        }
        other => Err(format!("unknown framework {other}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// The session backend `SESSION_STORE` names, and the memory store when it is one.
pub(crate) async fn backend() -> Result<(Arc<dyn SessionBackend>, Option<MemoryBackend>), String> {
    match StoreUrl::from_env().map_err(|e| e.to_string())? {
        StoreUrl::Memory => {
            let memory = MemoryBackend::new();
            Ok((Arc::new(memory.clone()), Some(memory)))
        }
        url => Ok((
            url.open(DEFAULT_MEMORY_CAPACITY, DEFAULT_COMMAND_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?,
            None,
        )),
    }
}

/// The sessions a memory store holds (`n/a` for Redis).
pub(crate) fn count_sessions(memory: Option<&MemoryBackend>) -> String {
    memory.map_or("n/a".to_owned(), |m| m.len().to_string())
}

/// The web API app of the provider, and its secret.
pub(crate) const API_CLIENT_ID: &str = "22223333-cccc-4444-dddd-5555eeee6666";
const API_SECRET: &str = "api-secret";

fn identity(authority: &str, redirect_uri: &str) -> Result<Identity, String> {
    let authority = Authority::parse(authority).map_err(|e| e.to_string())?;
    let mut config = IdentityConfig::new(super::CLIENT_ID, authority)
        .with_client_secret("testkit-secret")
        .with_redirect_uri(Some(redirect_uri));
    // Tokens of the provider live 2 s: use them until they expire, so one refresh is
    // observable on demand.
    config.refresh_ahead = Duration::ZERO;
    Identity::new(config).map_err(|e| e.to_string())
}

fn announce(addr_file: &str, addr: std::net::SocketAddr) -> Result<(), String> {
    std::fs::write(addr_file, addr.to_string()).map_err(|e| e.to_string())?;
    println!("ready");
    Ok(())
}

/// What `/api/app` requires: the app role the provider grants app-only tokens.
struct AppRole;
impl ApiRequirement for AppRole {
    const APP_ROLES: &'static [&'static str] = &["Data.Read.All"];
}

#[derive(Clone)]
struct Downstream {
    http: reqwest::Client,
    url: String,
}

/// The web API routes, over the API app's own `ApiAuth`.
fn api_routes(authority: Authority, addr: std::net::SocketAddr) -> Result<Router, String> {
    let api = Identity::new(
        IdentityConfig::new(API_CLIENT_ID, authority)
            .with_client_secret(API_SECRET)
            .with_redirect_uri(None::<String>),
    )
    .map_err(|e| e.to_string())?;
    let downstream = Downstream {
        http: reqwest::Client::new(),
        url: format!("http://{addr}/downstream"),
    };
    // The same page with and without the guard (`ApiAccess` has checked the role).
    async fn app_only(_access: ApiAccess<AppRole>) -> String {
        format!("ok {}", std::hint::black_box(1))
    }
    async fn open() -> String {
        format!("ok {}", std::hint::black_box(1))
    }
    async fn call(d: &Downstream, bearer: Option<&str>) -> Result<String, String> {
        let mut req = d.http.get(&d.url);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        resp.text().await.map_err(|e| e.to_string())
    }
    async fn obo(
        State(d): State<Downstream>,
        caller: ApiCaller,
    ) -> Result<String, identity_axum::ApiRejection> {
        caller.require_scopes(&["access_as_user"])?;
        let token = caller.on_behalf_of(&Scopes::parse("User.Read")).await?;
        Ok(call(&d, Some(token.access_token.secret()))
            .await
            .unwrap_or_else(|e| e))
    }
    /// The same downstream call without guard or exchange: it forwards the incoming
    /// token unchecked, so both routes send the downstream a bearer token of the same
    /// kind and the difference is the library's work.
    async fn direct(State(d): State<Downstream>, headers: axum::http::HeaderMap) -> String {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        call(&d, bearer).await.unwrap_or_else(|e| e)
    }
    async fn downstream_api() -> &'static str {
        "{\"displayName\":\"Adele Vance\"}"
    }
    let api = ApiAuth::new(api);
    Ok(Router::new()
        .route("/api/app", get(app_only))
        .route("/api/open", get(open))
        .route("/api/obo", get(obo))
        .route("/api/direct", get(direct))
        .route("/downstream", get(downstream_api))
        .with_state(downstream)
        .layer(api.layer()))
}

async fn serve_axum(
    listener: tokio::net::TcpListener,
    identity: Identity,
    addr_file: &str,
    addr: std::net::SocketAddr,
    authority: &str,
) -> Result<(), String> {
    let auth = Auth::builder(identity)
        .session_secret(SESSION_SECRET)
        .build()
        .map_err(|e| e.to_string())?;
    let (backend, memory) = backend().await?;
    // As `Auth::identity_layer` does: the engine knows the store the sessions live in.
    auth.core().use_session_backend(backend.clone());
    let sessions = SessionSettings::for_auth(&auth).layer_with(SessionBackendStore::new(backend));
    async fn index(user: User) -> String {
        format!("Hello {}", user.name().unwrap_or(""))
    }
    async fn plain() -> String {
        plain_page()
    }
    async fn token(session: IdentitySession) -> Result<&'static str, identity_axum::AuthRejection> {
        session
            .token_for(&Scopes::parse("User.Read"))
            .await
            .map(|_| "ok")
    }
    async fn session_read(session: identity_axum::tower_sessions::Session) -> String {
        // The same page from the raw session: what reading the user costs without the guard.
        match session.get_value("identity.user").await {
            Ok(Some(v)) => format!("Hello {}", v.as_str().map(str::len).unwrap_or(0)),
            _ => "anonymous".to_owned(),
        }
    }
    async fn count(State(memory): State<Option<MemoryBackend>>) -> String {
        count_sessions(memory.as_ref())
    }
    let web = Router::new()
        .route("/", get(index))
        .route("/plain", get(plain))
        .route("/session", get(session_read))
        .route("/token", get(token))
        .route("/sessions", get(count))
        .with_state(memory)
        .merge(auth.router())
        .layer(auth.layer())
        .layer(sessions);
    let authority = Authority::parse(authority).map_err(|e| e.to_string())?;
    let app = web.merge(api_routes(authority, addr)?);
    announce(addr_file, addr)?;
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

/// Size of the identity record (user, refresh token, ID token, one access token) as
/// JSON, after a sign-in through the core against a fresh local provider.
pub(crate) async fn record_size() -> usize {
    use identity_core::{LogInOptions, MemorySession};
    let config = identity_testkit::TestKitConfig {
        auto_approve: Some("adele@contoso.onmicrosoft.com".into()),
        ..Default::default()
    };
    let Ok(kit) = identity_testkit::TestKit::start(config).await else {
        return 0;
    };
    let Ok(id) = identity(&kit.authority(), "http://localhost:5000/getAToken") else {
        return 0;
    };
    let session = MemorySession::new();
    let Ok(start) = id.log_in(&session, LogInOptions::default()).await else {
        return 0;
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let Ok(client) = client else { return 0 };
    let Ok(resp) = client.get(&start.auth_uri).send().await else {
        return 0;
    };
    let Some(location) = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
    else {
        return 0;
    };
    let Ok(url) = url::Url::parse(&location) else {
        return 0;
    };
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if id
        .complete_log_in(
            &session,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await
        .is_err()
    {
        return 0;
    }
    if id
        .get_token_for_user(&session, &Scopes::parse("User.Read"))
        .await
        .is_err()
    {
        return 0;
    }
    let _ = id.get_user(&session).await;
    session.serialized_len()
}

/// The page of `/plain`: the guarded handlers' page, formatted at run time as theirs is
/// (a literal argument would be folded into the template when compiling, which would
/// make the handler without the guard cheaper by more than the guard).
pub(crate) fn plain_page() -> String {
    format!("Hello {}", std::hint::black_box("Adele Vance"))
}
