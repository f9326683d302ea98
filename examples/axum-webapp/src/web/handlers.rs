//! The handlers of `/`, `/call_api` and `/call_web_api`.

use super::templates::{ApiError, CallApi, CallWebApi, Index, Restricted};
use super::{AppState, Settings};
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use identity_axum::{IdentitySession, User};
use identity_core::{ClaimsChallenge, Scopes};

/// Largest API answer shown.
const MAX_API_BODY: usize = 1024 * 1024;

/// An HTML page that depends on the signed-in user: never cached.
fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut res = (status, html).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be rendered.",
            )
                .into_response()
        }
    }
}

/// `/`: sign-in required; greets the user by the `name` claim.
pub(crate) async fn index(State(app): State<AppState>, user: User) -> Response {
    let name = user
        .name()
        .or_else(|| user.preferred_username())
        .unwrap_or("there");
    page(
        StatusCode::OK,
        &Index {
            name,
            endpoint: &app.settings.endpoint,
            web_api: app.settings.web_api.as_ref().map(|w| w.endpoint.as_str()),
            edit_profile: app.auth.core().routes().edit_profile.as_deref(),
            logout: &app.auth.core().routes().logout,
        },
    )
}

/// `/reports`: only for users holding the app role `REPORTS_ROLE`; others get the 403
/// page.
pub(crate) async fn reports(State(app): State<AppState>, user: User) -> Response {
    let role = &app.settings.reports_role;
    if let Err(refused) = user.require_role(role) {
        return refused.into_response();
    }
    let text = format!("you hold the app role {role}.");
    restricted("Reports", &user, &text)
}

/// `/team`: only for members of the group `TEAM_GROUP`; others get the 403 page. Users in
/// more groups than a token carries (group overage) are checked through Microsoft Graph.
pub(crate) async fn team(State(app): State<AppState>, identity: IdentitySession) -> Response {
    let Some(group) = &app.settings.team_group else {
        return api_error_with(
            StatusCode::NOT_FOUND,
            "/team",
            "The team page is not enabled: set TEAM_GROUP to a group's object id.",
            None,
        );
    };
    match identity.require_group(group).await {
        Ok(user) => restricted("Team", &user, "you are a member of the team's group."),
        Err(refused) => refused.into_response(),
    }
}

fn restricted(title: &str, user: &User, text: &str) -> Response {
    let name = user.name().unwrap_or("you");
    page(StatusCode::OK, &Restricted { title, name, text })
}

/// `/call_api`: gets a token for `SCOPE` (signing in or consenting first when needed),
/// calls `ENDPOINT` with it and shows the JSON answer.
pub(crate) async fn call_api(State(app): State<AppState>, identity: IdentitySession) -> Response {
    let settings = &app.settings;
    match call_endpoint(settings, &identity, &settings.scopes, &settings.endpoint).await {
        Ok(result) => page(
            StatusCode::OK,
            &CallApi {
                endpoint: &settings.endpoint,
                result: &result,
            },
        ),
        Err(response) => response,
    }
}

/// `/call_web_api` (when `WEB_API_ENDPOINT` and `WEB_API_SCOPE` are set): gets a token
/// for `WEB_API_SCOPE` (signing in or consenting first when needed), calls your web API
/// (e.g. `examples/web-api`, which calls a further API on behalf of the user) and shows
/// its JSON answer.
pub(crate) async fn call_web_api(
    State(app): State<AppState>,
    identity: IdentitySession,
) -> Response {
    let settings = &app.settings;
    let Some(web_api) = &settings.web_api else {
        return api_error_with(
            StatusCode::NOT_FOUND,
            "/call_web_api",
            "The web API page is not enabled: set WEB_API_ENDPOINT (e.g. \
             http://127.0.0.1:5002/api/me) and WEB_API_SCOPE (e.g. \
             api://<api client id>/access_as_user).",
            None,
        );
    };
    match call_endpoint(settings, &identity, &web_api.scopes, &web_api.endpoint).await {
        Ok(result) => page(
            StatusCode::OK,
            &CallWebApi {
                endpoint: &web_api.endpoint,
                result: &result,
            },
        ),
        Err(response) => response,
    }
}

/// Gets a token for `scopes`, calls `endpoint` with it and returns its answer
/// (pretty-printed when JSON); else the response to answer with: the login page
/// (sign-in, consent, claims challenge) or the API error page.
async fn call_endpoint(
    settings: &Settings,
    identity: &IdentitySession,
    scopes: &Scopes,
    endpoint: &str,
) -> Result<String, Response> {
    let token = identity
        .token_for(scopes)
        .await
        .map_err(IntoResponse::into_response)?;
    let answer = settings
        .http
        .get(endpoint)
        .bearer_auth(token.access_token.secret())
        .header(header::ACCEPT, "application/json")
        .send()
        .await;
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, %endpoint, "the API could not be reached");
            return Err(api_error(
                endpoint,
                &format!("The API could not be reached: {e}"),
                None,
            ));
        }
    };
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        // Conditional access or continuous access evaluation: the API asks for a new
        // token satisfying a claims challenge.
        let challenge = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(ClaimsChallenge::from_www_authenticate);
        if let Some(claims) = challenge {
            tracing::info!("the API sent a claims challenge; asking the user to sign in again");
            return Err(identity
                .challenge(scopes, Some(claims))
                .await
                .into_response());
        }
    }
    let body = match read_limited(response).await {
        Ok(b) => b,
        Err(problem) => return Err(api_error(endpoint, &problem, None)),
    };
    if !status.is_success() {
        return Err(api_error(
            endpoint,
            &format!("The API answered HTTP {status}."),
            Some(&body),
        ));
    }
    Ok(match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or(body),
        Err(_) => body,
    })
}

async fn read_limited(mut response: reqwest::Response) -> Result<String, String> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_API_BODY {
                    return Err(format!("The API answered more than {MAX_API_BODY} bytes."));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(format!("The API answer could not be read: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn api_error(endpoint: &str, problem: &str, body: Option<&str>) -> Response {
    api_error_with(StatusCode::BAD_GATEWAY, endpoint, problem, body)
}

fn api_error_with(
    status: StatusCode,
    endpoint: &str,
    problem: &str,
    body: Option<&str>,
) -> Response {
    page(
        status,
        &ApiError {
            endpoint,
            problem,
            body,
        },
    )
}
