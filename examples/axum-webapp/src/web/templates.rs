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
    /// The web API the web API page calls, when enabled.
    pub(crate) web_api: Option<&'a str>,
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

/// The web API page: what your web API answered.
#[derive(Template)]
#[template(path = "call_web_api.html")]
pub(crate) struct CallWebApi<'a> {
    /// The web API's URL.
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
