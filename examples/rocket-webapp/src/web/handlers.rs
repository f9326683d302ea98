//! The handlers of `/`, `/call_api`, `/reports` and `/team`.

use super::templates::{ApiError, CallApi, Index, Restricted};
use super::Settings;
use askama::Template;
use identity_core::web::Route;
use identity_core::ClaimsChallenge;
use identity_rocket::{Auth, AuthRejection, IdentitySession, User};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder};
use rocket::{get, Request, Response, State};
use std::io::Cursor;

/// Largest API answer shown.
const MAX_API_BODY: usize = 1024 * 1024;

/// An HTML page that depends on the signed-in user: never cached.
pub(crate) struct Page {
    status: Status,
    html: String,
}

impl Page {
    fn render(status: Status, template: &impl Template) -> Page {
        match template.render() {
            Ok(html) => Page { status, html },
            Err(e) => {
                tracing::error!(error = %e, "a page could not be rendered");
                Page {
                    status: Status::InternalServerError,
                    html: "The page could not be rendered.".to_owned(),
                }
            }
        }
    }
}

impl<'r> Responder<'r, 'static> for Page {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .status(self.status)
            .header(ContentType::HTML)
            .header(Header::new("Cache-Control", "no-store"))
            .sized_body(self.html.len(), Cursor::new(self.html))
            .ok()
    }
}

/// `/`: sign-in required; greets the user by the `name` claim.
#[get("/")]
pub(crate) fn index(user: User, auth: &State<Auth>, settings: &State<Settings>) -> Page {
    let name = user
        .name()
        .or_else(|| user.preferred_username())
        .unwrap_or("there");
    Page::render(
        Status::Ok,
        &Index {
            name,
            endpoint: &settings.endpoint,
            edit_profile: auth.core().route_path(Route::EditProfile),
            logout: auth.core().route_path(Route::Logout).unwrap_or("/logout"),
        },
    )
}

/// `/reports`: only for users holding the app role `REPORTS_ROLE`; others get the 403
/// page.
#[get("/reports")]
pub(crate) fn reports(
    user: User,
    auth: &State<Auth>,
    settings: &State<Settings>,
) -> Result<Page, AuthRejection> {
    let role = &settings.reports_role;
    auth.core().require_role(&user, role)?;
    Ok(restricted(
        "Reports",
        &user,
        &format!("you hold the app role {role}."),
    ))
}

/// `/team`: only for members of the group `TEAM_GROUP`; others get the 403 page. Users in
/// more groups than a token carries (group overage) are checked through Microsoft Graph.
#[get("/team")]
pub(crate) async fn team(
    identity: IdentitySession<'_>,
    settings: &State<Settings>,
) -> Result<Page, AuthRejection> {
    let Some(group) = &settings.team_group else {
        return Ok(Page::render(
            Status::NotFound,
            &ApiError {
                endpoint: "/team",
                problem: "The team page is not enabled: set TEAM_GROUP to a group's object id.",
                body: None,
            },
        ));
    };
    let user = identity.require_group(group).await?;
    Ok(restricted(
        "Team",
        &user,
        "you are a member of the team's group.",
    ))
}

fn restricted(title: &str, user: &User, text: &str) -> Page {
    let name = user.name().unwrap_or("you");
    Page::render(Status::Ok, &Restricted { title, name, text })
}

/// `/call_api`: gets a token for `SCOPE` (signing in or consenting first when needed),
/// calls `ENDPOINT` with it and shows the JSON answer.
#[get("/call_api")]
pub(crate) async fn call_api(
    identity: IdentitySession<'_>,
    settings: &State<Settings>,
) -> Result<Page, AuthRejection> {
    let token = identity.token_for(&settings.scopes).await?;
    let answer = settings
        .http
        .get(&settings.endpoint)
        .bearer_auth(token.access_token.secret())
        .header("accept", "application/json")
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
            .get_all("www-authenticate")
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
    Ok(Page::render(
        Status::Ok,
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

fn api_error(endpoint: &str, problem: &str, body: Option<&str>) -> Page {
    Page::render(
        Status::BadGateway,
        &ApiError {
            endpoint,
            problem,
            body,
        },
    )
}
