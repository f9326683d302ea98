//! The web part of the sample: settings, routes, handlers and templates.

mod handlers;
mod templates;

pub(crate) use templates::SamplePages;

use axum::routing::get;
use axum::Router;
use identity_axum::Auth;
use identity_core::{Error, Scopes};
use std::time::Duration;

/// Default scopes of the API page.
pub(crate) const DEFAULT_SCOPE: &str = "User.Read";
/// Default API of the API page.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://graph.microsoft.com/v1.0/me";

/// What the pages need besides sign-in: the API to call and the scopes it needs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) scopes: Scopes,
    pub(crate) endpoint: String,
    pub(crate) http: reqwest::Client,
    /// Your own web API (e.g. `examples/web-api`), when `WEB_API_ENDPOINT` and
    /// `WEB_API_SCOPE` are set: the `/call_web_api` page.
    pub(crate) web_api: Option<WebApi>,
    /// `REPORTS_ROLE` (default `Reader`): the app role the `/reports` page requires.
    pub(crate) reports_role: String,
    /// `TEAM_GROUP`: the group (object id) the `/team` page requires; unset, the page is
    /// not enabled.
    pub(crate) team_group: Option<String>,
}

/// A web API of your own that the `/call_web_api` page calls.
#[derive(Clone, Debug)]
pub(crate) struct WebApi {
    /// `WEB_API_ENDPOINT`, e.g. `http://127.0.0.1:5002/api/me`.
    pub(crate) endpoint: String,
    /// `WEB_API_SCOPE`, e.g. `api://<api client id>/access_as_user`.
    pub(crate) scopes: Scopes,
}

impl Settings {
    /// `SCOPE` and `ENDPOINT` from the environment; the API client trusts `SSL_CERT_FILE`
    /// too and has timeouts.
    pub(crate) fn from_env() -> Result<Settings, String> {
        let scopes =
            Scopes::parse(&crate::setting("SCOPE").unwrap_or_else(|| DEFAULT_SCOPE.to_owned()));
        let endpoint = crate::setting("ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let web_api = match (
            crate::setting("WEB_API_ENDPOINT"),
            crate::setting("WEB_API_SCOPE"),
        ) {
            (Some(endpoint), Some(scope)) => Some(WebApi {
                endpoint,
                scopes: Scopes::parse(&scope),
            }),
            (None, None) => None,
            _ => {
                return Err(
                    "set both WEB_API_ENDPOINT and WEB_API_SCOPE (the web API page \
                            calls the first with a token for the second), or neither"
                        .to_owned(),
                )
            }
        };
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
            web_api,
            reports_role: crate::setting("REPORTS_ROLE").unwrap_or_else(|| "Reader".to_owned()),
            team_group: crate::setting("TEAM_GROUP"),
        })
    }
}

/// State of the handlers.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) auth: Auth,
    pub(crate) settings: Settings,
}

/// The app's routes and the sign-in routes. The identity layer (sessions and `Auth`)
/// goes around them (see main.rs).
pub(crate) fn app(auth: Auth, settings: Settings) -> Router {
    let own = ["/", "/call_api", "/call_web_api", "/reports", "/team"];
    let auth = if own.contains(&auth.core().routes().callback.as_str()) {
        Auth::unconfigured(Error::config(format!(
            "REDIRECT_URI's path {:?} is one of the app's pages; use e.g. /getAToken",
            auth.core().routes().callback.as_str()
        )))
    } else {
        auth
    };
    let state = AppState {
        auth: auth.clone(),
        settings,
    };
    Router::new()
        .route("/", get(handlers::index))
        .route("/call_api", get(handlers::call_api))
        .route("/call_web_api", get(handlers::call_web_api))
        .route("/reports", get(handlers::reports))
        .route("/team", get(handlers::team))
        .merge(auth.router())
        .with_state(state)
        // The Auth checked above (unconfigured when the redirect URI collides).
        .layer(auth.layer())
}
