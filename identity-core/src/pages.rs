//! The pages an adapter shows: login, authentication error, configuration.
//!
//! Rendered with askama (feature `pages`, on by default); every value is HTML-escaped.
//! To use your own look, implement [`Pages`] and give it to your adapter.

use crate::error::Error;
#[cfg(feature = "pages")]
use askama::Template;

/// The login page: sends the browser to the provider (a `meta refresh`, so it works from
/// any extractor without redirects), or shows device-code instructions.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "pages", derive(Template), template(path = "login.html"))]
pub struct LoginPage {
    /// The provider URL (or device verification URI).
    pub auth_uri: String,
    /// Device code sign-in: the code to type.
    pub user_code: Option<String>,
    /// Device code sign-in: the URL that completes the sign-in after approval.
    pub device_poll_uri: String,
    /// B2C: a "forgot your password?" link.
    pub reset_password_uri: Option<String>,
}

impl LoginPage {
    /// `auth_uri`, HTML-escaped as it is written into the page (no copy; a fast path
    /// for URLs).
    #[cfg(feature = "pages")]
    fn auth_uri_html(&self) -> HtmlEscaped<'_> {
        HtmlEscaped(&self.auth_uri)
    }

    /// Seconds after which the page reloads itself: `None` for the login page as such.
    /// The device code page rendered through [`Pages::device_code`] reloads after the
    /// polling interval.
    pub fn refresh_after_secs(&self) -> Option<u64> {
        None
    }
}

/// The login page as [`DefaultPages`] renders it: the provider URL escaped once (the
/// page shows it twice), the other values borrowed; for the device code page while the
/// sign-in waits, reloading itself at `device_poll_uri` every `refresh_after_secs`.
#[cfg(feature = "pages")]
#[derive(Template)]
#[template(path = "login.html")]
struct LoginTemplate<'a> {
    auth_uri_html: String,
    user_code: Option<&'a str>,
    device_poll_uri: &'a str,
    reset_password_uri: Option<&'a str>,
    refresh_after_secs: Option<u64>,
}

#[cfg(feature = "pages")]
impl<'a> LoginTemplate<'a> {
    fn new(page: &'a LoginPage, refresh_after_secs: Option<u64>) -> Self {
        LoginTemplate {
            auth_uri_html: escape_html(&page.auth_uri),
            user_code: page.user_code.as_deref(),
            device_poll_uri: &page.device_poll_uri,
            reset_password_uri: page.reset_password_uri.as_deref(),
            refresh_after_secs,
        }
    }

    fn refresh_after_secs(&self) -> Option<u64> {
        self.refresh_after_secs
    }

    fn auth_uri_html(&self) -> &str {
        &self.auth_uri_html
    }
}

/// Text written HTML-escaped exactly as the templates' own escaping does (`"&'<>` as
/// decimal character references), the runs between them copied at once.
#[cfg(feature = "pages")]
struct HtmlEscaped<'a>(&'a str);

#[cfg(feature = "pages")]
impl std::fmt::Display for HtmlEscaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        escape_runs(self.0, |run| f.write_str(run))
    }
}

/// `text` HTML-escaped as [`HtmlEscaped`] writes it.
#[cfg(feature = "pages")]
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let _ = escape_runs(text, |run| {
        out.push_str(run);
        Ok::<(), std::convert::Infallible>(())
    });
    out
}

/// Gives `out` the runs of `text` and the character references between them, in order.
#[cfg(feature = "pages")]
fn escape_runs<E>(text: &str, mut out: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    // Provider URLs hold `&` and none of the others: that case is found with vectorised
    // searches, and the runs between the ampersands are given whole (a byte loop cost
    // about eleven instructions per byte of a long URL).
    let bytes = text.as_bytes();
    if memchr::memchr3(b'"', b'\'', b'<', bytes).is_none() && memchr::memchr(b'>', bytes).is_none()
    {
        let mut start = 0;
        for i in memchr::memchr_iter(b'&', bytes) {
            out(&text[start..i])?;
            out("&#38;")?;
            start = i + 1;
        }
        return out(&text[start..]);
    }
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let reference = match b {
            b'"' => "&#34;",
            b'&' => "&#38;",
            b'\'' => "&#39;",
            b'<' => "&#60;",
            b'>' => "&#62;",
            _ => continue,
        };
        // `i` is an ASCII byte: both slice ends are character boundaries.
        out(&text[start..i])?;
        out(reference)?;
        start = i + 1;
    }
    out(&text[start..])
}

/// The authentication error page.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "pages", derive(Template), template(path = "error.html"))]
pub struct ErrorPage {
    /// Heading.
    pub title: String,
    /// OAuth error code (e.g. `access_denied`).
    pub error: Option<String>,
    /// Human description (PII lines such as `login_hint:` removed).
    pub description: Option<String>,
    /// Where to continue automatically (e.g. B2C reset-password hop), if anywhere.
    pub redirect_uri: Option<String>,
    /// The app's home page.
    pub home_uri: String,
    /// A link to start signing in again.
    pub retry_uri: Option<String>,
}

/// The "almost there" configuration page.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "pages", derive(Template), template(path = "config.html"))]
pub struct ConfigPage {
    /// What is wrong.
    pub message: String,
    /// Missing settings.
    pub missing: Vec<String>,
}

impl ErrorPage {
    /// The page for `error`. `home_uri` and `retry_uri` are the app's links.
    pub fn for_error(error: &Error, home_uri: &str, retry_uri: Option<&str>) -> Self {
        let (code, description) = match error {
            Error::Provider(p) => (Some(p.error.clone()), Some(p.summary())),
            other => (None, Some(other.to_string())),
        };
        Self {
            title: error.title().to_owned(),
            error: code,
            description,
            redirect_uri: None,
            home_uri: home_uri.to_owned(),
            retry_uri: retry_uri.map(str::to_owned),
        }
    }
}

impl ErrorPage {
    /// The page for a signed-in user who lacks an app role or group (HTTP 403).
    pub fn forbidden(requirement: &str, home_uri: &str) -> Self {
        Self {
            title: "You do not have access to this page".to_owned(),
            error: Some("forbidden".to_owned()),
            description: Some(format!(
                "This page requires {requirement}. Ask an administrator of the app to grant it, then sign in again."
            )),
            redirect_uri: None,
            home_uri: home_uri.to_owned(),
            retry_uri: None,
        }
    }

    /// The page shown when consent for `scopes` was asked for repeatedly and not
    /// obtained (the consent-loop guard stopped asking; HTTP 403).
    pub fn consent_not_obtained(scopes: &str, home_uri: &str, retry_uri: Option<&str>) -> Self {
        Self {
            title: "Permission was not granted".to_owned(),
            error: Some("consent_required".to_owned()),
            description: Some(format!(
                "This page needs the permission(s) {scopes}, which were requested several times \
                 without success. An administrator may have to grant consent for your organisation."
            )),
            redirect_uri: None,
            home_uri: home_uri.to_owned(),
            retry_uri: retry_uri.map(str::to_owned),
        }
    }

    /// The page for a missing piece of the app's setup (HTTP 500): `what_to_add` names the
    /// code to add, e.g. `.layer(SessionManagerLayer::new(store))`.
    pub fn missing_setup(what_is_missing: &str, what_to_add: &str, home_uri: &str) -> Self {
        Self {
            title: "The app is not set up correctly".to_owned(),
            error: Some("missing_setup".to_owned()),
            description: Some(format!("{what_is_missing} is missing. Add {what_to_add}.")),
            redirect_uri: None,
            home_uri: home_uri.to_owned(),
            retry_uri: None,
        }
    }
}

/// Renders pages. Implement it to replace the built-in templates.
pub trait Pages: Send + Sync + 'static {
    /// The login page.
    fn login(&self, page: &LoginPage) -> String;
    /// The error page.
    fn error(&self, page: &ErrorPage) -> String;
    /// The configuration page.
    fn config(&self, page: &ConfigPage) -> String;
    /// The device code page while the sign-in waits for the user: it should reload
    /// itself at `page.device_poll_uri` after `poll_after` (a `meta refresh`), which polls
    /// the provider once. Default: [`Pages::login`], where the user follows the
    /// "continue here" link instead.
    fn device_code(&self, page: &LoginPage, poll_after: std::time::Duration) -> String {
        let _ = poll_after;
        self.login(page)
    }
}

/// The built-in askama pages.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPages;

#[cfg(feature = "pages")]
fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "page rendering failed");
        "<!DOCTYPE html><title>Error</title><p>An error page could not be rendered.</p>".to_owned()
    })
}

#[cfg(feature = "pages")]
impl Pages for DefaultPages {
    fn login(&self, page: &LoginPage) -> String {
        render(&LoginTemplate::new(page, None))
    }
    fn error(&self, page: &ErrorPage) -> String {
        render(page)
    }
    fn config(&self, page: &ConfigPage) -> String {
        render(page)
    }
    fn device_code(&self, page: &LoginPage, poll_after: std::time::Duration) -> String {
        let whole_secs = poll_after.as_secs() + u64::from(poll_after.subsec_nanos() > 0);
        render(&LoginTemplate::new(page, Some(whole_secs.max(1))))
    }
}

#[cfg(all(test, feature = "pages"))]
mod tests {
    use super::*;

    /// The page the built-in pages render is the one `LoginPage` renders itself.
    #[test]
    fn the_rendered_login_page_is_the_login_pages_template() {
        for user_code in [None, Some("<b>CODE</b>".to_owned())] {
            let page = LoginPage {
                auth_uri: "https://login.example/t/authorize?a=1&b=\"2\"&c=<x>".into(),
                user_code,
                device_poll_uri: "/cb?x=1&y=2".into(),
                reset_password_uri: Some("/reset?a&b".into()),
            };
            assert_eq!(DefaultPages.login(&page), page.render().unwrap());
        }
    }

    #[test]
    fn the_fast_escape_is_the_templates_escape() {
        for text in [
            "https://login.example/t/authorize?a=1&b=2&c=%20+x",
            "<script>\"'&</script>",
            "plain",
            "zoë & 例え <>",
            "",
            "&",
            "&&a&",
            "a&b'c",
            "a\"b",
            "x>y&z",
            "&é<",
        ] {
            let askama = askama::filters::escape(text, askama::filters::Html)
                .unwrap()
                .to_string();
            assert_eq!(HtmlEscaped(text).to_string(), askama, "{text}");
            assert_eq!(escape_html(text), askama, "{text}");
        }
    }

    #[test]
    fn every_value_is_escaped() {
        let evil = "<script>alert(1)</script>\"'&";
        let html = DefaultPages.error(&ErrorPage {
            title: evil.into(),
            error: Some(evil.into()),
            description: Some(evil.into()),
            redirect_uri: None,
            home_uri: "/\"><script>".into(),
            retry_uri: Some(evil.into()),
        });
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"),
            "{html}"
        );
        let login = DefaultPages.login(&LoginPage {
            auth_uri: "https://p/a?x=1&y=\"><script>".into(),
            ..Default::default()
        });
        assert!(!login.contains("<script>"));
        assert!(login.contains("http-equiv=\"refresh\""));
        let config = DefaultPages.config(&ConfigPage {
            message: evil.into(),
            missing: vec![evil.into()],
        });
        assert!(!config.contains("<script>"));
        assert!(config.contains("Almost there"));
    }

    #[test]
    fn shared_refusal_pages_name_the_requirement_escaped() {
        let html = DefaultPages.error(&ErrorPage::forbidden("the app role <Admin>", "/"));
        assert!(html.contains("You do not have access"));
        assert!(!html.contains("<Admin>"));
        let html = DefaultPages.error(&ErrorPage::consent_not_obtained(
            "Mail.Read",
            "/",
            Some("/login"),
        ));
        assert!(html.contains("Mail.Read") && html.contains("/login"));
        let html = DefaultPages.error(&ErrorPage::missing_setup(
            "The session layer",
            ".layer(SessionManagerLayer::new(store))",
            "/",
        ));
        assert!(html.contains("SessionManagerLayer::new(store)"));
    }

    #[test]
    fn device_code_waiting_page_reloads_at_the_poll_uri_escaped() {
        let page = LoginPage {
            auth_uri: "https://microsoft.com/devicelogin".into(),
            user_code: Some("<b>CODE</b>".into()),
            device_poll_uri: "/cb?\"><script>".into(),
            reset_password_uri: None,
        };
        let html = DefaultPages.device_code(&page, std::time::Duration::from_millis(5200));
        assert!(html.contains("content=\"6; URL=/cb?"), "{html}");
        assert!(html.contains("id=\"device_waiting\""), "{html}");
        assert!(
            !html.contains("<script>") && !html.contains("<b>CODE"),
            "{html}"
        );
        // Someone else's pages without a waiting page of their own get their login page.
        struct Plain;
        impl Pages for Plain {
            fn login(&self, page: &LoginPage) -> String {
                format!("login {}", page.device_poll_uri)
            }
            fn error(&self, _: &ErrorPage) -> String {
                String::new()
            }
            fn config(&self, _: &ConfigPage) -> String {
                String::new()
            }
        }
        let plain = Plain.device_code(&page, std::time::Duration::from_secs(5));
        assert_eq!(plain, "login /cb?\"><script>");
    }

    #[test]
    fn device_code_page_shows_the_code_without_refresh() {
        let html = DefaultPages.login(&LoginPage {
            auth_uri: "https://microsoft.com/devicelogin".into(),
            user_code: Some("ABCD-EFGH".into()),
            device_poll_uri: "/getAToken".into(),
            reset_password_uri: None,
        });
        assert!(html.contains("ABCD-EFGH"));
        assert!(!html.contains("http-equiv"));
    }
}
