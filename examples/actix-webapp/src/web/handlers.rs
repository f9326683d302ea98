//! The handlers of `/` and `/call_api`.

use super::templates::{ApiError, CallApi, Index, Restricted};
use super::Settings;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;
use identity_actix::{Auth, AuthRejection, IdentitySession, User};
use identity_core::ClaimsChallenge;

/// Largest API answer shown.
const MAX_API_BODY: usize = 1024 * 1024;

/// An HTML page that depends on the signed-in user: never cached.
fn page(status: StatusCode, template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            HttpResponse::InternalServerError().body("The page could not be rendered.")
        }
    }
}

/// `/`: sign-in required; greets the user by the `name` claim.
pub(crate) async fn index(
    user: User,
    auth: web::Data<Auth>,
    settings: web::Data<Settings>,
) -> HttpResponse {
    let name = user
        .name()
        .or_else(|| user.preferred_username())
        .unwrap_or("there");
    page(
        StatusCode::OK,
        &Index {
            name,
            endpoint: &settings.endpoint,
            edit_profile: auth.core().routes().edit_profile.as_deref(),
            logout: &auth.core().routes().logout,
        },
    )
}

/// `/reports`: only for users holding the app role `REPORTS_ROLE`; others get the 403
/// page.
pub(crate) async fn reports(
    user: User,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, AuthRejection> {
    let role = &settings.reports_role;
    user.require_role(role)?;
    Ok(restricted(
        "Reports",
        &user,
        &format!("you hold the app role {role}."),
    ))
}

/// `/team`: only for members of the group `TEAM_GROUP`; others get the 403 page. Users in
/// more groups than a token carries (group overage) are checked through Microsoft Graph.
pub(crate) async fn team(
    identity: IdentitySession,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, AuthRejection> {
    let Some(group) = &settings.team_group else {
        return Ok(HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("The team page is not enabled: set TEAM_GROUP to a group's object id."));
    };
    let user = identity.require_group(group).await?;
    Ok(restricted(
        "Team",
        &user,
        "you are a member of the team's group.",
    ))
}

fn restricted(title: &str, user: &User, text: &str) -> HttpResponse {
    let name = user.name().unwrap_or("you");
    page(StatusCode::OK, &Restricted { title, name, text })
}

/// `/call_api`: gets a token for `SCOPE` (signing in or consenting first when needed),
/// calls `ENDPOINT` with it and shows the JSON answer.
pub(crate) async fn call_api(
    identity: IdentitySession,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, AuthRejection> {
    let token = identity.token_for(&settings.scopes).await?;
    let answer = settings
        .http
        .get(&settings.endpoint)
        .bearer_auth(token.access_token.secret())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await;
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, endpoint = %settings.endpoint, "the API could not be reached");
            return Ok(api_error(
                &settings.endpoint,
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
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(ClaimsChallenge::from_www_authenticate);
        if let Some(claims) = challenge {
            tracing::info!("the API sent a claims challenge; asking the user to sign in again");
            return Err(identity.challenge(&settings.scopes, Some(claims)).await);
        }
    }
    let body = match read_limited(response).await {
        Ok(b) => b,
        Err(problem) => return Ok(api_error(&settings.endpoint, &problem, None)),
    };
    if !status.is_success() {
        return Ok(api_error(
            &settings.endpoint,
            &format!("The API answered HTTP {status}."),
            Some(&body),
        ));
    }
    let result = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or(body),
        Err(_) => body,
    };
    Ok(page(
        StatusCode::OK,
        &CallApi {
            endpoint: &settings.endpoint,
            result: &result,
        },
    ))
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

fn api_error(endpoint: &str, problem: &str, body: Option<&str>) -> HttpResponse {
    page(
        StatusCode::BAD_GATEWAY,
        &ApiError {
            endpoint,
            problem,
            body,
        },
    )
}
