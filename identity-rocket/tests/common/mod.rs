//! A Rocket app wired to a local provider, served over real HTTP on loopback.
#![allow(dead_code, unreachable_pub)]

use identity_core::sessions::MemoryBackend;
use identity_core::Scopes;
use identity_rocket::{
    ApiAccess, ApiCaller, ApiRejection, ApiRequirement, AuthRejection, Group, HasRole,
    IdentityFairing, IdentitySession, InGroup, Role, ScopeSet, Token, User,
};
use identity_testkit::{TestKit, TestKitConfig, WEB_APP_CLIENT_ID, WEB_APP_SECRET};
use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{get, routes, Build, Rocket};
use std::time::Duration;

pub const ADELE: &str = "adele@contoso.onmicrosoft.com";

pub struct MailRead;
impl ScopeSet for MailRead {
    const SCOPES: &'static str = "Mail.Read";
}

pub struct Admins;
impl Role for Admins {
    const NAME: &'static str = "Admin";
}

pub struct Readers;
impl Role for Readers {
    const NAME: &'static str = "Reader";
}

/// Adele's group in the kit's default directory.
pub struct AdeleGroup;
impl Group for AdeleGroup {
    const ID: &'static str = "5E5E5E5E-6F6F-4A4A-8B8B-9C9C9C9C9C9C";
}

pub struct OtherGroup;
impl Group for OtherGroup {
    const ID: &'static str = "00000000-1111-2222-3333-444444444444";
}

pub struct AccessAsUser;
impl ApiRequirement for AccessAsUser {
    const SCOPES: &'static [&'static str] = &["access_as_user"];
}

pub struct ReadAll;
impl ApiRequirement for ReadAll {
    const APP_ROLES: &'static [&'static str] = &["Data.Read.All"];
}

#[get("/")]
fn index(user: User) -> String {
    format!("Hello {}", user.name().unwrap_or("?"))
}

#[get("/page?<q>")]
fn page(user: User, q: Option<&str>) -> String {
    format!(
        "page {} for {}",
        q.unwrap_or(""),
        user.name().unwrap_or("?")
    )
}

/// The session id, read with Rocket's own private cookies.
#[get("/private_session_id")]
fn private_session_id(jar: &rocket::http::CookieJar<'_>) -> String {
    jar.get_private("identity")
        .map_or("none".to_owned(), |c| c.value().len().to_string())
}

#[get("/maybe")]
fn maybe(user: Option<User>) -> String {
    match user {
        Some(u) => format!("signed in as {}", u.name().unwrap_or("?")),
        None => "anonymous".into(),
    }
}

// The token guard comes first: an anonymous visitor signs in with the scopes at once.
#[get("/mail")]
fn mail(token: Token<MailRead>, user: User) -> String {
    format!(
        "mail token for {} ({})",
        user.name().unwrap_or("?"),
        token.from_cache
    )
}

#[get("/token?<scope>")]
async fn token(
    _user: User,
    session: IdentitySession<'_>,
    scope: &str,
) -> Result<String, AuthRejection> {
    let t = session.token_for(&Scopes::parse(scope)).await?;
    Ok(format!("token from_cache={}", t.from_cache))
}

#[get("/admin")]
fn admin(who: HasRole<Admins>) -> String {
    format!("admin {}", who.name().unwrap_or("?"))
}

#[get("/reader")]
fn reader(who: HasRole<Readers>) -> String {
    format!("reader {}", who.name().unwrap_or("?"))
}

#[get("/group")]
fn group(who: InGroup<AdeleGroup>) -> String {
    format!("group member {}", who.name().unwrap_or("?"))
}

#[get("/other_group")]
fn other_group(_who: InGroup<OtherGroup>) -> &'static str {
    "member"
}

#[get("/api/me")]
fn api_me(caller: ApiAccess<AccessAsUser>) -> String {
    format!("{{\"oid\":{:?}}}", caller.oid().unwrap_or(""))
}

#[get("/api/data")]
fn api_data(caller: ApiAccess<ReadAll>) -> String {
    format!("{{\"app\":{:?}}}", caller.client_id().unwrap_or(""))
}

#[get("/api/any")]
fn api_any(caller: ApiCaller) -> String {
    format!("{{\"roles\":{:?}}}", caller.roles())
}

/// The downstream API (the kit's Graph) that `/api/downstream` calls on behalf of its
/// caller.
pub struct Downstream(pub String);

#[get("/api/downstream?<scope>")]
async fn api_downstream(
    caller: ApiCaller,
    scope: Option<&str>,
    downstream: &rocket::State<Downstream>,
) -> Result<String, ApiRejection> {
    let token = caller
        .on_behalf_of(&Scopes::parse(scope.unwrap_or("User.Read")))
        .await?;
    let me: serde_json::Value = reqwest::Client::new()
        .get(&downstream.0)
        .bearer_auth(token.access_token.secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Ok(serde_json::json!({ "me": me, "from_cache": token.from_cache }).to_string())
}

pub use identity_testkit::suite::free_port;

/// The base figment of a test app on `port`: quiet, no signal handling.
pub fn base_figment(port: u16) -> Figment {
    rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", port))
        .merge(("log_level", "off"))
        .merge(("cli_colors", false))
        .merge(("shutdown.ctrlc", false))
        .merge(("shutdown.grace", 0))
        .merge(("shutdown.mercy", 0))
}

/// The identity table for the web app of the kit.
pub fn web_app_figment(kit: &TestKit, port: u16) -> Figment {
    base_figment(port)
        .merge(("identity.client_id", WEB_APP_CLIENT_ID))
        .merge(("identity.client_secret", WEB_APP_SECRET))
        .merge(("identity.authority", kit.authority()))
        .merge((
            "identity.redirect_uri",
            format!("http://127.0.0.1:{port}/getAToken"),
        ))
        .merge((
            "identity.session_secret",
            "a test secret that is long enough to be used",
        ))
}

/// The test app; the figment's `downstream` key names the API `/api/downstream` calls.
pub fn app_rocket(figment: Figment, fairing: IdentityFairing) -> Rocket<Build> {
    let downstream = Downstream(figment.extract_inner("downstream").unwrap_or_default());
    rocket::custom(figment)
        .attach(fairing)
        .manage(downstream)
        .mount(
            "/",
            routes![
                index,
                page,
                maybe,
                mail,
                token,
                admin,
                reader,
                group,
                other_group,
                api_me,
                api_data,
                api_any,
                api_downstream,
                private_session_id
            ],
        )
}

pub struct App {
    pub base: String,
    pub store: MemoryBackend,
    shutdown: rocket::Shutdown,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.clone().notify();
    }
}

/// Launches `rocket` and waits until it listens.
pub async fn launch(rocket: Rocket<Build>, store: MemoryBackend) -> App {
    let (tx, rx) = tokio::sync::oneshot::channel::<u16>();
    let tx = std::sync::Mutex::new(Some(tx));
    let rocket = rocket
        .attach(AdHoc::on_liftoff("test ready", move |r| {
            let port = r.config().port;
            Box::pin(async move {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(port);
                }
            })
        }))
        .ignite()
        .await
        .expect("ignite");
    let shutdown = rocket.shutdown();
    tokio::spawn(async move {
        let _ = rocket.launch().await;
    });
    let port = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("liftoff in time")
        .expect("liftoff");
    App {
        base: format!("http://127.0.0.1:{port}"),
        store,
        shutdown,
    }
}

pub async fn kit() -> TestKit {
    TestKit::start(TestKitConfig::default().with_auto_approve(ADELE))
        .await
        .expect("testkit")
}

pub async fn kit_with(config: TestKitConfig) -> TestKit {
    TestKit::start(config.with_auto_approve(ADELE))
        .await
        .expect("testkit")
}

/// The web app against `kit`, with a memory store the test can inspect.
pub async fn web_app(kit: &TestKit) -> App {
    let port = free_port();
    let store = MemoryBackend::new();
    let rocket = app_rocket(
        web_app_figment(kit, port),
        IdentityFairing::new().session_backend(store.clone()),
    );
    launch(rocket, store).await
}

/// A browser: cookie store, no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no location in a {} answer", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The provider URL of a login page's meta refresh.
pub fn meta_refresh(html: &str) -> String {
    let start = html.find("URL=").expect("meta refresh") + 4;
    let end = start + html[start..].find('"').unwrap();
    unescape(&html[start..end])
}

pub fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
}

/// Follows a provider URL (auto-approve) back to the app's callback; returns the callback
/// answer.
pub async fn through_provider(client: &reqwest::Client, provider_url: &str) -> reqwest::Response {
    let res = client.get(provider_url).send().await.unwrap();
    assert_eq!(res.status(), 302, "provider answered {}", res.status());
    let callback = location(&res);
    client.get(callback).send().await.unwrap()
}

/// Signs in by visiting `path` (a protected page): login page, provider, callback.
/// Returns the page finally shown.
pub async fn sign_in_at(client: &reqwest::Client, app: &App, path: &str) -> reqwest::Response {
    let res = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let html = res.text().await.unwrap();
    let cb = through_provider(client, &meta_refresh(&html)).await;
    assert_eq!(cb.status(), 302, "callback answered {}", cb.status());
    let next = location(&cb);
    assert_eq!(next, path, "the sign-in returns to the original URL");
    client.get(app.url(&next)).send().await.unwrap()
}

/// The `Set-Cookie` of the session cookie (`identity=…`) that `res` sends.
pub fn session_set_cookie(res: &reqwest::Response) -> String {
    set_cookies(res)
        .into_iter()
        .find(|c| c.starts_with("identity="))
        .expect("a session cookie")
}

pub fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}
