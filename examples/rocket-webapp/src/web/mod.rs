//! The web part of the sample: settings, routes, handlers and templates.

mod handlers;
mod templates;

pub(crate) use templates::SamplePages;

use identity_core::Scopes;
use rocket::{routes, Build, Rocket};
use std::time::Duration;

/// Default scopes of the API page.
pub(crate) const DEFAULT_SCOPE: &str = "User.Read";
/// Default API of the API page.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://graph.microsoft.com/v1.0/me";
/// The app's own pages (the sign-in routes must not fall on them).
pub(crate) const PAGES: [&str; 4] = ["/", "/call_api", "/reports", "/team"];

/// What the pages need besides sign-in: the API to call and the scopes it needs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) scopes: Scopes,
    pub(crate) endpoint: String,
    pub(crate) http: reqwest::Client,
    /// `REPORTS_ROLE` (default `Reader`): the app role the `/reports` page requires.
    pub(crate) reports_role: String,
    /// `TEAM_GROUP`: the group (object id) the `/team` page requires; unset, the page is
    /// not enabled.
    pub(crate) team_group: Option<String>,
}

impl Settings {
    /// `SCOPE` and `ENDPOINT` from the environment; the API client trusts `SSL_CERT_FILE`
    /// too, honours `IDENTITY_RESOLVE`, and has timeouts.
    pub(crate) fn from_env() -> Result<Settings, String> {
        let scopes =
            Scopes::parse(&crate::setting("SCOPE").unwrap_or_else(|| DEFAULT_SCOPE.to_owned()));
        let endpoint = crate::setting("ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let http = identity_core::http::builder_from_env()?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for ENDPOINT: {e}"))?;
        Ok(Settings {
            scopes,
            endpoint,
            http,
            reports_role: crate::setting("REPORTS_ROLE").unwrap_or_else(|| "Reader".to_owned()),
            team_group: crate::setting("TEAM_GROUP"),
        })
    }
}

/// Mounts the app's pages; the sign-in routes come from the identity fairing.
pub(crate) fn mount(rocket: Rocket<Build>, settings: Settings) -> Rocket<Build> {
    rocket.manage(settings).mount(
        "/",
        routes![
            handlers::index,
            handlers::call_api,
            handlers::reports,
            handlers::team
        ],
    )
}
