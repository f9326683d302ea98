//! A scripted browser: one cookie jar, no automatic redirects, and a `follow` that goes
//! from page to page across the app and the provider the way a browser would (HTTP
//! redirects and `meta refresh`), recording every hop.

use super::html::{self, Form};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use url::Url;

/// How many hops [`Browser::follow`] makes before it gives up (a redirect loop).
const MAX_HOPS: usize = 25;

/// A response, read in full.
#[derive(Clone, Debug)]
pub struct Page {
    /// The URL that was requested.
    pub url: Url,
    /// The request method.
    pub method: &'static str,
    /// HTTP status.
    pub status: u16,
    /// `Location`, resolved against [`Page::url`].
    pub location: Option<Url>,
    /// The `Set-Cookie` headers, raw.
    pub set_cookies: Vec<String>,
    /// Response headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Page {
    /// Whether the body contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.body.contains(needle)
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is a redirect with a `Location`.
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status) && self.location.is_some()
    }

    /// The target of a `<meta http-equiv="refresh">`, resolved and HTML-unescaped.
    pub fn meta_refresh(&self) -> Option<Url> {
        html::meta_refresh(&self.body, &self.url)
    }

    /// The `href` of the element with this `id` (e.g. the login page's `sign_in` link).
    pub fn link_by_id(&self, id: &str) -> Option<Url> {
        html::link_by_id(&self.body, id, &self.url)
    }

    /// Every link of the page.
    pub fn links(&self) -> Vec<Url> {
        html::links(&self.body, &self.url)
    }

    /// Where a browser goes next by itself: the redirect, else the meta refresh.
    pub fn next_hop(&self) -> Option<Url> {
        if self.is_redirect() {
            return self.location.clone();
        }
        if (200..300).contains(&self.status) || self.status == 401 || self.status == 403 {
            return self.meta_refresh();
        }
        None
    }

    /// Every form of the page.
    pub fn forms(&self) -> Vec<Form> {
        html::forms(&self.body, &self.url)
    }

    /// The first form that satisfies `pred`.
    pub fn form_where(&self, pred: impl Fn(&Form) -> bool) -> Option<Form> {
        self.forms().into_iter().find(|f| pred(f))
    }

    /// The page's origin (`scheme://host:port`).
    pub fn origin(&self) -> String {
        origin(&self.url)
    }

    /// A one-line summary for failure messages.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {} -> {}", self.method, self.url, self.status);
        if let Some(l) = &self.location {
            s.push_str(&format!(" Location: {l}"));
        }
        s
    }

    /// The summary and the start of the body, for failure messages.
    pub fn describe(&self) -> String {
        let body: String = self.body.chars().take(1500).collect();
        format!("{}\n{body}", self.summary())
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[derive(Clone, Debug)]
struct StoredCookie {
    host: String,
    domain_match: bool,
    path: String,
    name: String,
    value: String,
    secure: bool,
    expires: Option<Instant>,
}

/// A cookie the browser holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldCookie {
    /// The host it belongs to.
    pub host: String,
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// Builds a [`Browser`] with DNS overrides and extra trust roots.
#[derive(Debug, Default)]
pub struct BrowserBuilder {
    resolve: Vec<(String, SocketAddr)>,
    roots: Vec<reqwest::Certificate>,
    allowed_hosts: Vec<String>,
}

impl BrowserBuilder {
    /// Sends requests for `host` to `addr` (the port in URLs is still the one used).
    pub fn resolve(mut self, host: &str, addr: SocketAddr) -> Self {
        self.resolve.push((host.to_ascii_lowercase(), addr));
        self.allowed_hosts.push(host.to_ascii_lowercase());
        self
    }

    /// Trusts the certificates of a PEM bundle (a local provider's CA).
    pub fn trust_pem(mut self, pem: &str) -> Self {
        if let Ok(certs) = reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
            self.roots.extend(certs);
        }
        self
    }

    /// Builds the browser.
    pub fn build(self) -> Browser {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent("identity-testkit-suite");
        for (host, addr) in &self.resolve {
            b = b.resolve(host, *addr);
        }
        for root in self.roots {
            b = b.add_root_certificate(root);
        }
        Browser {
            client: b.build().expect("HTTP client"),
            jar: Mutex::new(Vec::new()),
            trail: Mutex::new(Vec::new()),
            allowed_hosts: self.allowed_hosts,
        }
    }
}

/// A scripted browser. It goes only to loopback hosts (and hosts given to
/// [`BrowserBuilder::resolve`]); [`Browser::follow`] stops before any other host, so a
/// test can look at where the app would have sent the user.
#[derive(Debug)]
pub struct Browser {
    client: reqwest::Client,
    jar: Mutex<Vec<StoredCookie>>,
    trail: Mutex<Vec<String>>,
    allowed_hosts: Vec<String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new() -> Browser {
        BrowserBuilder::default().build()
    }

    /// A builder for DNS overrides and extra trust roots.
    pub fn builder() -> BrowserBuilder {
        BrowserBuilder::default()
    }

    /// Whether the browser may go to `url` (loopback, or a host mapped with `resolve`).
    pub fn may_visit(&self, url: &Url) -> bool {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => {
                let d = d.to_ascii_lowercase();
                d == "localhost" || self.allowed_hosts.contains(&d)
            }
            None => false,
        }
    }

    /// Every request made so far, one line each (`GET url -> status`).
    pub fn trail(&self) -> String {
        self.trail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// `GET url`, one request.
    ///
    /// # Panics
    /// On a transport error (the failure message names the URL and the trail).
    pub async fn get(&self, url: &str) -> Page {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("not a URL {url:?}: {e}"));
        self.request("GET", url, None).await
    }

    /// `GET` of a parsed URL.
    pub async fn get_url(&self, url: &Url) -> Page {
        self.request("GET", url.clone(), None).await
    }

    /// `POST` of an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&self, url: &Url, fields: &[(String, String)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.request("POST", url.clone(), Some(body)).await
    }

    /// Submits a form (with its pressed button, if any).
    pub async fn submit(&self, form: &Form) -> Page {
        let fields = form.submission();
        if form.method == "post" {
            self.post_form(&form.action, &fields).await
        } else {
            let mut url = form.action.clone();
            url.query_pairs_mut().clear().extend_pairs(&fields);
            self.get_url(&url).await
        }
    }

    /// Follows redirects and meta refreshes from `page` until a page that goes nowhere
    /// by itself, or a hop to a host the browser may not visit (that last page is
    /// returned, its [`Page::next_hop`] naming the host).
    ///
    /// # Panics
    /// After too many hops (a loop).
    pub async fn follow(&self, page: Page) -> Page {
        self.follow_until(page, |_| false).await
    }

    /// Like [`Browser::follow`], but stops (without requesting it) before a URL for
    /// which `stop` is true; the returned page is the one that pointed there.
    pub async fn follow_until(&self, mut page: Page, stop: impl Fn(&Url) -> bool) -> Page {
        for _ in 0..MAX_HOPS {
            let Some(next) = page.next_hop() else {
                return page;
            };
            if stop(&next) || !self.may_visit(&next) {
                return page;
            }
            page = self.get_url(&next).await;
        }
        panic!("more than {MAX_HOPS} redirects; trail:\n{}", self.trail());
    }

    /// `GET url` and [`follow`](Browser::follow).
    pub async fn navigate(&self, url: &str) -> Page {
        let page = self.get(url).await;
        self.follow(page).await
    }

    /// The cookies the browser would send to `url`.
    pub fn cookies_for(&self, url: &Url) -> Vec<HeldCookie> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let now = Instant::now();
        let jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        jar.iter()
            .filter(|c| c.expires.is_none_or(|e| e > now))
            .filter(|c| {
                c.host == host || (c.domain_match && host.ends_with(&format!(".{}", c.host)))
            })
            .filter(|c| url.path().starts_with(&c.path))
            .filter(|c| !c.secure || url.scheme() == "https")
            .map(|c| HeldCookie {
                host: c.host.clone(),
                name: c.name.clone(),
                value: c.value.clone(),
            })
            .collect()
    }

    /// Every cookie the browser holds.
    pub fn all_cookies(&self) -> Vec<HeldCookie> {
        let now = Instant::now();
        let jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        jar.iter()
            .filter(|c| c.expires.is_none_or(|e| e > now))
            .map(|c| HeldCookie {
                host: c.host.clone(),
                name: c.name.clone(),
                value: c.value.clone(),
            })
            .collect()
    }

    /// Puts a cookie into the jar, as if `url` had set it (host-only, path `/`).
    pub fn add_cookie(&self, url: &Url, name: &str, value: &str) {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let mut jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        jar.retain(|c| !(c.host == host && c.name == name && c.path == "/"));
        jar.push(StoredCookie {
            host,
            domain_match: false,
            path: "/".into(),
            name: name.into(),
            value: value.into(),
            secure: false,
            expires: None,
        });
    }

    /// Forgets every cookie.
    pub fn clear_cookies(&self) {
        self.jar.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn store(&self, url: &Url, header: &str) {
        let Ok(c) = cookie::Cookie::parse(header.to_owned()) else {
            return;
        };
        // Cookie prefixes, as browsers enforce them (RFC 6265bis §4.1.3): a `__Secure-`
        // cookie needs `Secure` from an https page; a `__Host-` cookie also needs
        // `Path=/` and no `Domain`. A browser drops any other.
        let secure_origin = url.scheme() == "https" && c.secure() == Some(true);
        let name = c.name();
        if (name.starts_with("__Secure-") || name.starts_with("__Host-")) && !secure_origin {
            return;
        }
        if name.starts_with("__Host-") && (c.domain().is_some() || c.path() != Some("/")) {
            return;
        }
        let request_host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let (host, domain_match) = match c.domain() {
            Some(d) if !d.is_empty() => (d.trim_start_matches('.').to_ascii_lowercase(), true),
            _ => (request_host, false),
        };
        let path = c.path().unwrap_or("/").to_owned();
        let now = Instant::now();
        let expires = if let Some(max_age) = c.max_age() {
            Some(now + Duration::try_from(max_age).unwrap_or(Duration::ZERO))
        } else {
            c.expires_datetime().map(|at| {
                let secs = (at - time::OffsetDateTime::now_utc()).whole_seconds();
                if secs <= 0 {
                    now
                } else {
                    now + Duration::from_secs(secs as u64)
                }
            })
        };
        let mut jar = self.jar.lock().unwrap_or_else(|e| e.into_inner());
        jar.retain(|s| !(s.host == host && s.name == c.name() && s.path == path));
        if expires.is_some_and(|e| e <= now) {
            return;
        }
        jar.push(StoredCookie {
            host,
            domain_match,
            path,
            name: c.name().to_owned(),
            value: c.value().to_owned(),
            secure: c.secure().unwrap_or(false),
            expires,
        });
    }

    /// `GET url` with this `Accept` header (a `fetch` call, say), one request.
    pub async fn get_with_accept(&self, url: &str, accept: &'static str) -> Page {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("not a URL {url:?}: {e}"));
        self.request_as("GET", url, None, accept).await
    }

    async fn request(&self, method: &'static str, url: Url, form: Option<String>) -> Page {
        self.request_as(
            method,
            url,
            form,
            "text/html,application/xhtml+xml,*/*;q=0.8",
        )
        .await
    }

    async fn request_as(
        &self,
        method: &'static str,
        url: Url,
        form: Option<String>,
        accept: &'static str,
    ) -> Page {
        assert!(
            self.may_visit(&url),
            "the scripted browser does not leave loopback: {url}"
        );
        let cookie_header = self
            .cookies_for(&url)
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = match method {
            "POST" => self.client.post(url.clone()),
            _ => self.client.get(url.clone()),
        };
        req = req.header("accept", accept);
        if !cookie_header.is_empty() {
            req = req.header("cookie", cookie_header);
        }
        if let Some(body) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                panic!("{method} {url} failed: {msg}\ntrail:\n{}", self.trail())
            }
        };
        let status = resp.status().as_u16();
        let mut headers = Vec::new();
        let mut set_cookies = Vec::new();
        for (k, v) in resp.headers() {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            if k.as_str().eq_ignore_ascii_case("set-cookie") {
                self.store(&url, &v);
                set_cookies.push(v.clone());
            }
            headers.push((k.as_str().to_ascii_lowercase(), v));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| url.join(l).ok());
        let body = resp.text().await.unwrap_or_default();
        let page = Page {
            url,
            method,
            status,
            location,
            set_cookies,
            headers,
            body,
        };
        self.trail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(page.summary());
        page
    }
}
