//! Sessions in production shape over real HTTP: an https redirect URI in front of an app
//! listening on http (a TLS-terminating proxy), and sign-out racing a request in flight.

mod common;

use common::*;
use identity_core::sessions::MemoryBackend;
use identity_core::Scopes;
use identity_rocket::{AuthRejection, IdentityFairing, IdentitySession};
use identity_testkit::TestKitConfig;
use rocket::{get, routes, State};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

const PUBLIC_HOST: &str = "app.example";
const PUBLIC_REDIRECT: &str = "https://app.example/getAToken";

/// What a TLS-terminating proxy does: the browser talks https to the public host; the
/// request reaches the app over http with the public `Host`. Like a browser, it keeps
/// `Secure` cookies (the browser's side of the connection is https).
struct BehindProxy {
    app: String,
    http: reqwest::Client,
    jar: Mutex<BTreeMap<String, String>>,
    set_cookies: Mutex<Vec<String>>,
}

impl BehindProxy {
    fn new(app: &App) -> Self {
        BehindProxy {
            app: app.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: Mutex::default(),
            set_cookies: Mutex::default(),
        }
    }

    /// GETs a public `https://app.example/...` URL (or a path) through the proxy.
    async fn get(&self, public: &str) -> reqwest::Response {
        let path = public
            .strip_prefix(&format!("https://{PUBLIC_HOST}"))
            .unwrap_or(public);
        assert!(path.starts_with('/'), "{public}");
        let cookie = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = self
            .http
            .get(format!("{}{path}", self.app))
            .header("host", PUBLIC_HOST)
            .header("x-forwarded-proto", "https");
        if !cookie.is_empty() {
            req = req.header("cookie", cookie);
        }
        let res = req.send().await.unwrap();
        for raw in set_cookies(&res) {
            let c = cookie::Cookie::parse(raw.clone()).unwrap();
            let mut jar = self.jar.lock().unwrap();
            if c.max_age().is_some_and(|a| a.is_zero()) {
                jar.remove(c.name());
            } else {
                jar.insert(c.name().to_owned(), c.value().to_owned());
            }
            self.set_cookies.lock().unwrap().push(raw);
        }
        res
    }
}

/// The web app with an https redirect URI, listening on loopback http.
async fn app_behind_proxy() -> (identity_testkit::TestKit, App) {
    let kit = kit_with(TestKitConfig::default().with_redirect_uri(PUBLIC_REDIRECT)).await;
    let port = free_port();
    let store = MemoryBackend::new();
    let figment = web_app_figment(&kit, port).merge(("identity.redirect_uri", PUBLIC_REDIRECT));
    let rocket = app_rocket(
        figment,
        IdentityFairing::new().session_backend(store.clone()),
    );
    let app = launch(rocket, store).await;
    (kit, app)
}

/// Signs in through the proxy at `/`; returns the `Set-Cookie` values of the callback.
async fn sign_in_behind_proxy(proxy: &BehindProxy) -> Vec<String> {
    let res = proxy.get("/").await;
    assert_eq!(res.status(), 401);
    let provider = meta_refresh(&res.text().await.unwrap());
    let at_kit = browser().get(&provider).send().await.unwrap();
    assert_eq!(at_kit.status(), 302);
    let callback = location(&at_kit);
    assert!(callback.starts_with(PUBLIC_REDIRECT), "{callback}");
    let before = proxy.set_cookies.lock().unwrap().len();
    let res = proxy.get(&callback).await;
    assert_eq!(res.status(), 302, "the callback signs in");
    assert_eq!(location(&res), "/");
    proxy.set_cookies.lock().unwrap()[before..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_session_cookie_is_host_prefixed_secure_and_http_only() {
    let (_kit, app) = app_behind_proxy().await;
    let proxy = BehindProxy::new(&app);
    let cookies = sign_in_behind_proxy(&proxy).await;
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-identity="))
        .unwrap_or_else(|| panic!("no __Host-identity cookie: {cookies:?}"));
    let c = cookie::Cookie::parse(session.clone()).unwrap();
    assert_eq!(c.secure(), Some(true), "{session}");
    assert_eq!(c.http_only(), Some(true), "{session}");
    assert_eq!(c.same_site(), Some(cookie::SameSite::Lax), "{session}");
    assert_eq!(c.path(), Some("/"), "{session}");
    assert!(
        c.domain().is_none(),
        "__Host- cookies carry no Domain: {session}"
    );
    assert!(c.value().len() <= 200, "{session}");
    assert!(
        !cookies.iter().any(|c| c.starts_with("identity=")),
        "no unprefixed session cookie over https: {cookies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_works_with_an_https_redirect_uri_while_the_app_listens_on_http() {
    let (_kit, app) = app_behind_proxy().await;
    let proxy = BehindProxy::new(&app);
    sign_in_behind_proxy(&proxy).await;
    let home = proxy.get("/").await;
    assert_eq!(home.status(), 200);
    assert_eq!(home.text().await.unwrap(), "Hello Adele Vance");
    assert_eq!(app.store.len(), 1);

    let out = proxy.get("/logout").await;
    assert_eq!(out.status(), 302);
    let end_session = location(&out);
    assert!(
        end_session.contains("post_logout_redirect_uri=https%3A%2F%2Fapp.example%2F"),
        "{end_session}"
    );
    assert!(app.store.is_empty());
    assert_eq!(proxy.get("/").await.status(), 401, "signed out");
}

/// Lets a test hold `/slow` between loading the session and writing it.
#[derive(Default)]
struct Gate {
    entered: Notify,
    release: Notify,
}

/// Loads the session, waits for the test, then refreshes a token (a session write).
#[get("/slow")]
async fn slow(
    session: IdentitySession<'_>,
    gate: &State<Arc<Gate>>,
) -> Result<String, AuthRejection> {
    let user = session.require_user().await?;
    gate.entered.notify_one();
    gate.release.notified().await;
    let token = session.token_for(&Scopes::parse("User.Read")).await?;
    Ok(format!(
        "{} from_cache={}",
        user.name().unwrap_or("?"),
        token.from_cache
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_during_sign_out_does_not_bring_the_session_back() {
    let kit = kit().await;
    let port = free_port();
    let store = MemoryBackend::new();
    let gate = Arc::new(Gate::default());
    let rocket = app_rocket(
        web_app_figment(&kit, port),
        IdentityFairing::new().session_backend(store.clone()),
    )
    .manage(gate.clone())
    .mount("/", routes![slow]);
    let app = launch(rocket, store).await;
    let client = browser();
    sign_in_at(&client, &app, "/").await;
    assert_eq!(app.store.len(), 1);

    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = app.url("/slow");
        async move { client.get(url).send().await.unwrap() }
    });
    gate.entered.notified().await;
    let out = client.get(app.url("/logout")).send().await.unwrap();
    assert_eq!(out.status(), 302);
    assert!(app.store.is_empty(), "sign-out deleted the session");

    gate.release.notify_one();
    let res = in_flight.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        "Adele Vance from_cache=false",
        "the request refreshed a token into the session it loaded"
    );
    assert!(
        app.store.is_empty(),
        "the late write did not re-create the session"
    );
    assert_eq!(
        client.get(app.url("/")).send().await.unwrap().status(),
        401,
        "still signed out"
    );
}
