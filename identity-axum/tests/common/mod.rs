//! A small browser over HTTP (cookies per origin, redirects and meta refresh followed by
//! hand) and an app served on a loopback port against a local TestKit.

#![allow(dead_code, unreachable_pub)]

use axum::Router;
use identity_axum::{Auth, SessionBackendStore, SessionSettings};
use identity_core::sessions::{MemoryBackend, SessionBackend};
use identity_core::{Authority, Identity, IdentityConfig, Timeouts};
use identity_testkit::{TestKit, TestKitConfig, WEB_APP_CLIENT_ID, WEB_APP_SECRET};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const ADELE: &str = "adele@contoso.onmicrosoft.com";

pub async fn kit() -> TestKit {
    kit_with(TestKitConfig::default()).await
}

pub async fn kit_with(config: TestKitConfig) -> TestKit {
    TestKit::start(config.with_auto_approve(ADELE))
        .await
        .expect("testkit starts")
}

pub fn identity(kit: &TestKit, redirect_uri: &str) -> Identity {
    let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    Identity::new(
        IdentityConfig::new(WEB_APP_CLIENT_ID, authority)
            .with_client_secret(WEB_APP_SECRET)
            .with_redirect_uri(Some(redirect_uri))
            .with_timeouts(Timeouts {
                connect: Duration::from_secs(2),
                total: Duration::from_secs(5),
            }),
    )
    .unwrap()
}

/// A served app.
pub struct App {
    pub addr: SocketAddr,
    pub store: MemoryBackend,
    pub auth: Auth,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Options {
    /// Path of the redirect URI (`/getAToken`).
    pub callback: &'static str,
    /// Nest everything under this prefix.
    pub nest: Option<&'static str>,
    /// Leave out the session layer.
    pub no_session_layer: bool,
    /// Leave out the Auth layer.
    pub no_auth_layer: bool,
    /// The idle timeout (default: the engine's).
    pub idle: Option<Duration>,
    /// The absolute session lifetime (default: the engine's).
    pub absolute: Option<Duration>,
    /// The session store (default: `App::store`, in memory).
    pub backend: Option<Arc<dyn SessionBackend>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            callback: "/getAToken",
            nest: None,
            no_session_layer: false,
            no_auth_layer: false,
            idle: None,
            absolute: None,
            backend: None,
        }
    }
}

/// Serves `routes` (plus the auth router) on a fresh loopback port.
pub async fn serve(kit: &TestKit, routes: Router, options: Options) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let prefix = options.nest.unwrap_or("");
    let redirect = format!("http://{addr}{prefix}{}", options.callback);
    let mut builder =
        Auth::builder(identity(kit, &redirect)).session_secret("test secret, 32 characters long!!");
    if let Some(p) = options.nest {
        builder = builder.nested_at(p);
    }
    if let Some(idle) = options.idle {
        builder = builder.idle_timeout(idle);
    }
    if let Some(absolute) = options.absolute {
        builder = builder.absolute_timeout(absolute);
    }
    let auth = builder.build().unwrap();
    let store = MemoryBackend::new();
    let backend = options
        .backend
        .unwrap_or_else(|| Arc::new(store.clone()) as Arc<dyn SessionBackend>);
    // As `Auth::identity_layer` does: the engine knows the store the sessions live in.
    auth.core().use_session_backend(backend.clone());
    let inner = routes.merge(auth.router());
    let mut app = match options.nest {
        Some(p) => Router::new().nest(p, inner),
        None => inner,
    };
    if !options.no_auth_layer {
        app = app.layer(auth.layer());
    }
    if !options.no_session_layer {
        app = app
            .layer(SessionSettings::for_auth(&auth).layer_with(SessionBackendStore::new(backend)));
    }
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    App {
        addr,
        store,
        auth,
        task,
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub url: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> Option<String> {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.split('=').next() == Some(name))
    }

    /// The target of a `<meta http-equiv="refresh">`, if the page has one.
    pub fn meta_refresh(&self) -> Option<String> {
        let i = self.body.find("http-equiv=\"refresh\"")?;
        let rest = &self.body[i..];
        let c = rest.find("content=\"")? + "content=\"".len();
        let content = &rest[c..];
        let content = &content[..content.find('"')?];
        let url = content.split_once("URL=").map(|(_, u)| u)?;
        Some(html_escape::decode_html_entities(url).into_owned())
    }
}

/// A browser: cookies per origin, no automatic redirects.
pub struct Browser {
    http: reqwest::Client,
    jars: BTreeMap<String, BTreeMap<String, String>>,
    /// Every URL requested, in order.
    pub visited: Vec<String>,
}

fn origin(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    u.origin().ascii_serialization()
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            jars: BTreeMap::new(),
            visited: Vec::new(),
        }
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jars.get(&origin(url))?.get(name).cloned()
    }

    pub fn set_cookie_value(&mut self, url: &str, name: &str, value: &str) {
        self.jars
            .entry(origin(url))
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    pub fn forget_cookies(&mut self) {
        self.jars.clear();
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        let req = self.http.get(url);
        self.send(url, req).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Resp {
        let req = self.http.post(url).form(form);
        self.send(url, req).await
    }

    async fn send(&mut self, url: &str, mut req: reqwest::RequestBuilder) -> Resp {
        self.visited.push(url.to_owned());
        let o = origin(url);
        if let Some(jar) = self.jars.get(&o) {
            let header: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if !header.is_empty() {
                req = req.header("cookie", header.join("; "));
            }
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap_or_default();
        let resp = Resp {
            url: url.to_owned(),
            status,
            headers,
            body,
        };
        let jar = self.jars.entry(o).or_default();
        for c in resp.set_cookies() {
            let first = c.split(';').next().unwrap_or("");
            let Some((k, v)) = first.split_once('=') else {
                continue;
            };
            let lower = c.to_ascii_lowercase();
            if lower.contains("max-age=0") || v.is_empty() {
                jar.remove(k.trim());
            } else {
                jar.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        resp
    }

    /// The next URL after `resp` (redirect or meta refresh), absolute.
    pub fn next_of(resp: &Resp) -> Option<String> {
        let target = if (300..400).contains(&resp.status) {
            resp.location()?
        } else {
            resp.meta_refresh()?
        };
        let base = url::Url::parse(&resp.url).unwrap();
        Some(base.join(&target).unwrap().to_string())
    }

    /// Requests `url` and follows redirects and meta refreshes (at most 12 hops).
    pub async fn follow(&mut self, url: &str) -> Resp {
        self.follow_until(url, |_| false).await.0
    }

    /// Like `follow`, but stops before requesting a URL (after the first) for which
    /// `stop` is true; returns the last answer and that URL.
    pub async fn follow_until(
        &mut self,
        url: &str,
        stop: impl Fn(&str) -> bool,
    ) -> (Resp, Option<String>) {
        let mut resp = self.get(url).await;
        for _ in 0..12 {
            let Some(next) = Self::next_of(&resp) else {
                return (resp, None);
            };
            if stop(&next) {
                return (resp, Some(next));
            }
            resp = self.get(&next).await;
        }
        panic!("too many hops from {url}: {:?}", self.visited);
    }
}

/// Signs `browser` in through `path` of `app` and returns the final page.
pub async fn sign_in(browser: &mut Browser, app: &App, path: &str) -> Resp {
    let resp = browser.follow(&app.url(path)).await;
    assert_eq!(resp.status, 200, "{resp:?}\n{:?}", browser.visited);
    resp
}
