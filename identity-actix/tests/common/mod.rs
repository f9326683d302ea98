//! A real HTTP harness: a local provider, an actix-web app on 127.0.0.1, and a tiny
//! browser (cookie jar, manual redirects, meta refresh).

#![allow(dead_code, unreachable_pub)]

use actix_web::dev::ServerHandle;
use identity_actix::identity_core::{Authority, Identity, IdentityConfig};
use identity_actix::{Auth, MemoryBackend};
use identity_testkit::{TestKit, TestKitConfig, WEB_APP_CLIENT_ID, WEB_APP_SECRET};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

pub const ADELE: &str = "adele@contoso.onmicrosoft.com";

pub async fn kit() -> TestKit {
    kit_with(TestKitConfig::default()).await
}

pub async fn kit_with(config: TestKitConfig) -> TestKit {
    TestKit::start(config.with_auto_approve(ADELE))
        .await
        .expect("testkit")
}

/// A bound loopback listener and the redirect URI on its port.
pub fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    (listener, format!("http://127.0.0.1:{port}/getAToken"))
}

pub fn auth_for(kit: &TestKit, redirect_uri: &str) -> Auth {
    auth_with(kit, redirect_uri, |b| b)
}

/// [`auth_for`] with more options.
pub fn auth_with(
    kit: &TestKit,
    redirect_uri: &str,
    options: impl FnOnce(identity_actix::AuthBuilder) -> identity_actix::AuthBuilder,
) -> Auth {
    let authority = Authority::parse(&kit.authority()).expect("authority");
    let identity = Identity::new(
        IdentityConfig::new(WEB_APP_CLIENT_ID, authority)
            .with_client_secret(WEB_APP_SECRET)
            .with_redirect_uri(Some(redirect_uri)),
    )
    .expect("identity");
    options(
        Auth::builder(identity)
            .session_secret("a test secret that is long enough for the key derivation"),
    )
    .build()
    .expect("auth")
}

/// A running app.
pub struct App {
    pub base: String,
    pub store: MemoryBackend,
    pub auth: Auth,
    handle: ServerHandle,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Starts the test app on `listener`: `with_middleware = false` leaves the identity
/// middleware out.
pub fn serve(
    listener: TcpListener,
    auth: Auth,
    store: MemoryBackend,
    with_middleware: bool,
) -> App {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (a, s) = (auth.clone(), store.clone());
    let server = if with_middleware {
        actix_web::HttpServer::new(move || {
            let auth = a.clone();
            actix_web::App::new()
                .configure(|cfg| auth.configure(cfg))
                .configure(routes::configure)
                .wrap(auth.middleware(Arc::new(s.clone())))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("listen")
        .run()
    } else {
        actix_web::HttpServer::new(move || {
            let auth = a.clone();
            actix_web::App::new()
                .configure(|cfg| auth.configure(cfg))
                .configure(routes::configure)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("listen")
        .run()
    };
    let handle = server.handle();
    actix_web::rt::spawn(server);
    App {
        base,
        store,
        auth,
        handle,
    }
}

/// Starts the test app on `listener` over any session backend.
pub fn serve_backend(
    listener: TcpListener,
    auth: Auth,
    backend: Arc<dyn identity_actix::SessionBackend>,
) -> App {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let a = auth.clone();
    let server = actix_web::HttpServer::new(move || {
        let auth = a.clone();
        actix_web::App::new()
            .configure(|cfg| auth.configure(cfg))
            .configure(routes::configure)
            .wrap(auth.middleware(backend.clone()))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    App {
        base,
        store: MemoryBackend::new(),
        auth,
        handle,
    }
}

/// A kit, an app on it with the memory store, and a browser.
pub async fn setup(config: TestKitConfig) -> (TestKit, App, Browser) {
    let kit = kit_with(config).await;
    let (listener, redirect) = listener();
    let auth = auth_for(&kit, &redirect);
    let app = serve(listener, auth, MemoryBackend::new(), true);
    (kit, app, Browser::new())
}

/// The routes of the test app.
pub mod routes {
    use actix_session::Session;
    use actix_web::{web, HttpResponse};
    use identity_actix::identity_core::Scopes;
    use identity_actix::{AuthRejection, HasRole, IdentitySession, Role, ScopeSet, Token, User};

    pub fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/", web::get().to(index))
            .route("/maybe", web::get().to(maybe))
            .route("/graph", web::get().to(graph))
            .route("/mail", web::get().to(mail))
            .route("/reader", web::get().to(reader))
            .route("/admin", web::get().to(admin))
            .route("/group", web::get().to(group))
            .route("/visit", web::get().to(visit))
            .route("/deep/page", web::get().to(index))
            .route("/typed/mail", web::get().to(typed_mail))
            .route("/typed/reader", web::get().to(typed_reader))
            .route("/typed/admin", web::get().to(typed_admin))
            .route("/slow", web::get().to(slow));
    }

    /// Requests inside [`slow`], one permit each.
    pub static SLOW_ENTERED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
    /// Lets one [`slow`] request go on.
    pub static SLOW_GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

    /// A slow signed-in page: it loads the session, waits for the gate, then writes to the
    /// session (`?write=1`) or not.
    async fn slow(
        user: User,
        session: Session,
        query: web::Query<std::collections::HashMap<String, String>>,
    ) -> HttpResponse {
        SLOW_ENTERED.add_permits(1);
        SLOW_GATE.acquire().await.unwrap().forget();
        if query.get("write").is_some_and(|w| w == "1") {
            session.insert("late", 1).unwrap();
        }
        HttpResponse::Ok().body(format!("slow {}", user.name().unwrap_or("?")))
    }

    struct MailRead;
    impl ScopeSet for MailRead {
        const SCOPES: &'static str = "Mail.Read";
    }
    struct Reader;
    impl Role for Reader {
        const NAME: &'static str = "Reader";
    }
    struct Admin;
    impl Role for Admin {
        const NAME: &'static str = "Admin";
    }

    async fn typed_mail(token: Token<MailRead>) -> HttpResponse {
        HttpResponse::Ok().body(format!(
            "typed mail {}",
            !token.access_token.secret().is_empty()
        ))
    }

    async fn typed_reader(HasRole(user, _): HasRole<Reader>) -> HttpResponse {
        HttpResponse::Ok().body(format!("reader {}", user.name().unwrap_or("?")))
    }

    async fn typed_admin(HasRole(_, _): HasRole<Admin>) -> HttpResponse {
        HttpResponse::Ok().body("admin")
    }

    async fn index(user: User) -> HttpResponse {
        HttpResponse::Ok().body(format!("Hello {}", user.name().unwrap_or("?")))
    }

    async fn maybe(user: Option<User>) -> HttpResponse {
        match user {
            Some(u) => HttpResponse::Ok().body(format!("signed in as {}", u.name().unwrap_or("?"))),
            None => HttpResponse::Ok().body("anonymous"),
        }
    }

    async fn graph(session: IdentitySession) -> Result<HttpResponse, AuthRejection> {
        let token = session.token_for(&Scopes::parse("User.Read")).await?;
        Ok(HttpResponse::Ok().body(format!("from_cache={}", token.from_cache)))
    }

    async fn mail(session: IdentitySession) -> Result<HttpResponse, AuthRejection> {
        let token = session.token_for(&Scopes::parse("Mail.Read")).await?;
        Ok(HttpResponse::Ok().body(format!("mail from_cache={}", token.from_cache)))
    }

    async fn reader(user: User) -> Result<HttpResponse, AuthRejection> {
        user.require_role("Reader")?;
        Ok(HttpResponse::Ok().body("reader"))
    }

    async fn admin(user: User) -> Result<HttpResponse, AuthRejection> {
        user.require_role("Admin")?;
        Ok(HttpResponse::Ok().body("admin"))
    }

    struct NobodysGroup;
    impl identity_actix::Group for NobodysGroup {
        const ID: &'static str = "00000000-0000-0000-0000-000000000000";
    }

    async fn group(_user: identity_actix::InGroup<NobodysGroup>) -> HttpResponse {
        HttpResponse::Ok().body("group")
    }

    /// Writes into the session of an anonymous visitor.
    async fn visit(session: Session) -> HttpResponse {
        let n: u32 = session.get("visits").ok().flatten().unwrap_or(0);
        session.insert("visits", n + 1).unwrap();
        HttpResponse::Ok().body(format!("visits={}", n + 1))
    }
}

/// A browser: one cookie jar for every host (like a browser on 127.0.0.1, which ignores
/// ports), redirects followed by hand.
pub struct Browser {
    pub http: reqwest::Client,
    /// A TLS-terminating proxy: requests to this public origin go to this local base over
    /// http, with the public `Host` (`(public origin, local base)`).
    pub proxy: Option<(String, String)>,
    pub cookies: BTreeMap<String, String>,
    /// Every `Set-Cookie` received, in order.
    pub set_cookies: Vec<String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub url: String,
}

impl Page {
    /// The target of the login page's meta refresh.
    pub fn meta_refresh(&self) -> Option<String> {
        let i = self.body.find("http-equiv=\"refresh\"")?;
        let rest = &self.body[i..];
        let start = rest.find("URL=")? + 4;
        let end = rest[start..].find('"')? + start;
        Some(html_escape::decode_html_entities(&rest[start..end]).into_owned())
    }
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
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
            proxy: None,
        }
    }

    /// A browser that reaches `local_base` (the app on http) as `public_origin` (https),
    /// the way a TLS-terminating proxy forwards it. Like a browser it sends the `Secure`
    /// cookies it got back to the https origin.
    pub fn behind_proxy(public_origin: &str, local_base: &str) -> Self {
        Self {
            proxy: Some((public_origin.to_owned(), local_base.to_owned())),
            ..Self::new()
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let mut req = match &self.proxy {
            Some((public, local)) if url.starts_with(public.as_str()) => {
                let host = url::Url::parse(public)
                    .unwrap()
                    .host_str()
                    .unwrap()
                    .to_owned();
                self.http
                    .get(format!("{local}{}", &url[public.len()..]))
                    .header("host", host)
                    .header("x-forwarded-proto", "https")
            }
            _ => self.http.get(url),
        };
        if !self.cookies.is_empty() {
            let header = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header("cookie", header);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        for sc in headers.get_all("set-cookie") {
            let sc = sc.to_str().unwrap().to_owned();
            let pair = sc.split(';').next().unwrap().trim();
            let (name, value) = pair.split_once('=').unwrap();
            let removed = sc
                .split(';')
                .map(str::trim)
                .any(|a| a.eq_ignore_ascii_case("Max-Age=0"));
            if removed || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
            self.set_cookies.push(sc);
        }
        let location = headers
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .map(|l| match url::Url::parse(url).unwrap().join(&l) {
                Ok(u) => u.to_string(),
                Err(_) => l,
            });
        let body = res.text().await.unwrap_or_default();
        Page {
            status,
            location,
            headers,
            body,
            url: url.to_owned(),
        }
    }

    /// Follows redirects and login-page meta refreshes until a page that is neither.
    pub async fn follow(&mut self, url: &str) -> Page {
        let mut page = self.get(url).await;
        for _ in 0..10 {
            let next = match (&page.location, page.meta_refresh()) {
                (Some(l), _) if (300..400).contains(&page.status) => l.clone(),
                (_, Some(m)) => m,
                _ => return page,
            };
            page = self.get(&next).await;
        }
        panic!("too many redirects, last at {}", page.url);
    }

    /// From a login page: through the provider to the app's callback; returns the
    /// callback's answer (not followed).
    pub async fn through_provider(&mut self, login_page: &Page) -> Page {
        let authorize = login_page
            .meta_refresh()
            .or_else(|| login_page.location.clone())
            .unwrap_or_else(|| {
                panic!(
                    "not a login page: {} {}",
                    login_page.status, login_page.body
                )
            });
        let mut page = self.get(&authorize).await;
        // The provider answers with a redirect to the redirect URI.
        for _ in 0..5 {
            let location = page.location.clone().unwrap_or_else(|| {
                panic!(
                    "the provider did not redirect: {} {}",
                    page.status, page.body
                )
            });
            page = self.get(&location).await;
            if location.contains("/getAToken") {
                return page;
            }
        }
        panic!("never reached the callback");
    }

    /// Signs in by visiting `url` (a protected page); returns the page after sign-in.
    pub async fn sign_in_at(&mut self, url: &str) -> Page {
        let login = self.get(url).await;
        assert_eq!(login.status, 401, "expected the login page: {}", login.body);
        let callback = self.through_provider(&login).await;
        assert_eq!(callback.status, 302, "callback failed: {}", callback.body);
        self.follow(callback.location.as_deref().unwrap()).await
    }

    /// The `Set-Cookie` headers received for a cookie name.
    pub fn set_cookies_named(&self, name: &str) -> Vec<&String> {
        self.set_cookies
            .iter()
            .filter(|c| c.starts_with(&format!("{name}=")))
            .collect()
    }
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
