//! The sample's pages (askama; every value is HTML-escaped).

use askama::Template;

/// The home page of a signed-in user.
#[derive(Template)]
#[template(path = "index.html")]
pub(crate) struct Index<'a> {
    /// The user's `name` claim (or a fallback).
    pub(crate) name: &'a str,
    /// The API the API page calls.
    pub(crate) endpoint: &'a str,
    /// The B2C edit-profile link, when configured.
    pub(crate) edit_profile: Option<&'a str>,
    /// The sign-out link.
    pub(crate) logout: &'a str,
}

/// The API page: what the API answered.
#[derive(Template)]
#[template(path = "call_api.html")]
pub(crate) struct CallApi<'a> {
    /// The API's URL.
    pub(crate) endpoint: &'a str,
    /// The answer, pretty-printed JSON (or the raw text).
    pub(crate) result: &'a str,
}

/// The API failed.
#[derive(Template)]
#[template(path = "api_error.html")]
pub(crate) struct ApiError<'a> {
    /// The API's URL.
    pub(crate) endpoint: &'a str,
    /// What happened.
    pub(crate) problem: &'a str,
    /// The API's answer, if any.
    pub(crate) body: Option<&'a str>,
}

/// A page only some users may see (`/reports`, `/team`).
#[derive(Template)]
#[template(path = "restricted.html")]
pub(crate) struct Restricted<'a> {
    /// Heading.
    pub(crate) title: &'a str,
    /// The user's name.
    pub(crate) name: &'a str,
    /// Why the user may see it.
    pub(crate) text: &'a str,
}

/// The sign-in page in the sample's layout (the app's own [`Pages`](identity_core::Pages)).
#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn<'a> {
    auth_uri: &'a str,
    user_code: Option<&'a str>,
    device_poll_uri: &'a str,
    reset_password_uri: Option<&'a str>,
}

/// The authentication error page in the sample's layout.
#[derive(Template)]
#[template(path = "auth_error.html")]
struct AuthError<'a> {
    title: &'a str,
    error: Option<&'a str>,
    description: Option<&'a str>,
    redirect_uri: Option<&'a str>,
    home_uri: &'a str,
    retry_uri: Option<&'a str>,
}

/// The sample's own login and error pages (the configuration page stays the library's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SamplePages;

impl identity_core::Pages for SamplePages {
    fn login(&self, page: &identity_core::LoginPage) -> String {
        SignIn {
            auth_uri: &page.auth_uri,
            user_code: page.user_code.as_deref(),
            device_poll_uri: &page.device_poll_uri,
            reset_password_uri: page.reset_password_uri.as_deref(),
        }
        .render()
        .unwrap_or_else(|_| identity_core::DefaultPages.login(page))
    }

    fn error(&self, page: &identity_core::ErrorPage) -> String {
        AuthError {
            title: &page.title,
            error: page.error.as_deref(),
            description: page.description.as_deref(),
            redirect_uri: page.redirect_uri.as_deref(),
            home_uri: &page.home_uri,
            retry_uri: page.retry_uri.as_deref(),
        }
        .render()
        .unwrap_or_else(|_| identity_core::DefaultPages.error(page))
    }

    fn config(&self, page: &identity_core::ConfigPage) -> String {
        identity_core::DefaultPages.config(page)
    }
}
