//! The handlers of `/` and `/call_api`.

use super::templates::{ApiError, CallApi, Index};
use super::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use identity_axum::{IdentitySession, User};
use identity_core::ClaimsChallenge;

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
            edit_profile: app.auth.edit_profile_path(),
            logout: app.auth.logout_path(),
        },
    )
}

/// `/call_api`: gets a token for `SCOPE` (signing in or consenting first when needed),
/// calls `ENDPOINT` with it and shows the JSON answer.
pub(crate) async fn call_api(State(app): State<AppState>, identity: IdentitySession) -> Response {
    let settings = &app.settings;
    let token = match identity.token_for(&settings.scopes).await {
        Ok(token) => token,
        Err(rejection) => return rejection.into_response(),
    };
    let answer = settings
        .http
        .get(&settings.endpoint)
        .bearer_auth(token.access_token.secret())
        .header(header::ACCEPT, "application/json")
        .send()
        .await;
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, endpoint = %settings.endpoint, "the API could not be reached");
            return api_error(
                &settings.endpoint,
                &format!("The API could not be reached: {e}"),
                None,
            );
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
            return identity
                .challenge(&settings.scopes, Some(claims))
                .await
                .into_response();
        }
    }
    let body = match read_limited(response).await {
        Ok(b) => b,
        Err(problem) => return api_error(&settings.endpoint, &problem, None),
    };
    if !status.is_success() {
        return api_error(
            &settings.endpoint,
            &format!("The API answered HTTP {status}."),
            Some(&body),
        );
    }
    let result = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or(body),
        Err(_) => body,
    };
    page(
        StatusCode::OK,
        &CallApi {
            endpoint: &settings.endpoint,
            result: &result,
        },
    )
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
    page(
        StatusCode::BAD_GATEWAY,
        &ApiError {
            endpoint,
            problem,
            body,
        },
    )
}
