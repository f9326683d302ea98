//! [`WebResponse`]: the answer the engine decides, as plain data an adapter copies into its
//! framework's response type.

use std::fmt;

/// What kind of answer a [`WebResponse`] is, for adapters that expose typed rejections and
/// for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A redirect that completes a route (callback, sign-out, edit profile, ...).
    Redirect,
    /// Nobody is signed in, or the user must come back to the provider: a sign-in was
    /// started (its provider URL is given) or, for a caller that wants JSON, the login
    /// route to open is named.
    SignInRequired {
        /// The provider URL the login page sends the browser to (`None` for the JSON
        /// answer, which starts no sign-in).
        auth_uri: Option<String>,
    },
    /// A page the route shows (device code instructions).
    Page,
    /// The user is signed in but lacks an app role or group.
    Forbidden {
        /// What the page requires, e.g. `the app role "Reader"`.
        requirement: String,
    },
    /// Consent for these scopes was asked for repeatedly without success.
    ConsentNotObtained {
        /// The scopes, space separated.
        scopes: String,
    },
    /// An identity operation failed (the error page).
    Failed,
    /// A group check could not read the user's group memberships from Microsoft Graph
    /// after a group overage (HTTP 502, the error page naming the permission to check).
    GroupsUnavailable,
    /// The session store could not be reached (HTTP 503).
    StoreUnavailable,
    /// The app is not configured (the configuration page).
    NotConfigured,
    /// A piece of the app's setup is missing (a layer, a middleware, a fairing).
    MissingSetup,
}

/// An HTTP answer decided by the engine: status, headers (each name in lower case, each
/// value ready to send; `set-cookie` may repeat) and an HTML or JSON body.
#[derive(Clone, PartialEq, Eq)]
pub struct WebResponse {
    /// What kind of answer it is.
    pub outcome: Outcome,
    /// The HTTP status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body (HTML or JSON, see `content-type`; empty for redirects).
    pub body: String,
}

impl fmt::Debug for WebResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Set-Cookie values are sealed but still secrets of the session: not in logs.
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == "set-cookie" {
                        "[redacted]"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("WebResponse")
            .field("outcome", &self.outcome)
            .field("status", &self.status)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// `name: value` and `cache-control: no-store`, with room for the headers an answer
/// usually gets next (a challenge, cookies) without growing.
fn headers(name: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(4);
    headers.push((name, value.to_owned()));
    headers.push(("cache-control", "no-store".to_owned()));
    headers
}

impl WebResponse {
    /// An HTML page, never cached (it depends on the session).
    pub fn html(outcome: Outcome, status: u16, body: String) -> WebResponse {
        WebResponse {
            outcome,
            status,
            headers: headers("content-type", "text/html; charset=utf-8"),
            body,
        }
    }

    /// A JSON body (`content_type` e.g. `application/json`), never cached.
    pub fn json(outcome: Outcome, status: u16, content_type: &str, body: String) -> WebResponse {
        WebResponse {
            outcome,
            status,
            headers: headers("content-type", content_type),
            body,
        }
    }

    /// A `302 Found` to `location`, never cached.
    pub fn redirect(location: &str) -> WebResponse {
        WebResponse {
            outcome: Outcome::Redirect,
            status: 302,
            headers: headers("location", location),
            body: String::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> WebResponse {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds `Set-Cookie` headers.
    #[must_use]
    pub fn with_cookies(mut self, cookies: impl IntoIterator<Item = String>) -> WebResponse {
        self.headers
            .extend(cookies.into_iter().map(|c| ("set-cookie", c)));
        self
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `Location` of a redirect.
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// Whether the answer is a redirect.
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }

    /// Logs the answer once at the level it deserves (adapters call it when they turn it
    /// into a response).
    pub fn log(&self) {
        match &self.outcome {
            Outcome::Forbidden { requirement } => tracing::info!(%requirement, "forbidden"),
            Outcome::ConsentNotObtained { scopes } => {
                tracing::warn!(%scopes, "consent loop stopped")
            }
            Outcome::StoreUnavailable => tracing::error!("the session store is unreachable"),
            Outcome::GroupsUnavailable => tracing::error!("group memberships could not be read"),
            Outcome::MissingSetup => tracing::error!("the app is not set up correctly"),
            _ => {}
        }
    }
}
