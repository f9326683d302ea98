//! The web part of the sample: settings, routes, handlers and templates.

mod handlers;
mod templates;

pub(crate) use templates::SamplePages;

use actix_web::web;
use identity_actix::Auth;
use identity_core::{Error, Scopes};
use std::time::Duration;

/// Default scopes of the API page.
pub(crate) const DEFAULT_SCOPE: &str = "User.Read";
/// Default API of the API page.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://graph.microsoft.com/v1.0/me";
/// The app's own pages, which the redirect URI must not take.
const OWN_PAGES: [&str; 4] = ["/", "/call_api", "/reports", "/team"];

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
    /// (and honours `IDENTITY_RESOLVE`) too, has timeouts and follows no redirect.
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

/// `auth`, unless its callback would take one of the app's own pages.
pub(crate) fn checked(auth: Auth) -> Auth {
    let callback = auth.core().routes().callback.as_str();
    if auth.core().identity().is_some() && OWN_PAGES.contains(&callback) {
        Auth::unconfigured(Error::config(format!(
            "REDIRECT_URI's path {callback:?} is one of the app's pages; use e.g. /getAToken"
        )))
    } else {
        auth
    }
}

/// The app's pages and the sign-in routes (`web::Data<Auth>` included). The identity
/// middleware goes around them (see main.rs).
pub(crate) fn configure(cfg: &mut web::ServiceConfig, auth: &Auth, settings: &Settings) {
    auth.configure(cfg);
    cfg.app_data(web::Data::new(settings.clone()))
        .route("/", web::get().to(handlers::index))
        .route("/call_api", web::get().to(handlers::call_api))
        .route("/reports", web::get().to(handlers::reports))
        .route("/team", web::get().to(handlers::team));
}
