//! Settings, routes and handlers of the web API.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use identity_axum::identity_core::web_api::ApiError;
use identity_axum::identity_core::{ClaimsChallenge, Error, Identity, IdentityConfig, Scopes};
use identity_axum::{ApiAccess, ApiAuth, ApiCaller, ApiRejection, ApiRequirement};
use serde_json::{json, Value};
use std::time::Duration;

/// The delegated scope `/api/me` requires (exposed by the API's registration).
pub(crate) const API_SCOPE: &str = "access_as_user";
/// The app role `/api/app` requires (defined by the API's registration).
pub(crate) const APP_ROLE: &str = "Data.Read.All";
/// Default downstream API.
pub(crate) const DEFAULT_DOWNSTREAM_ENDPOINT: &str = "https://graph.microsoft.com/v1.0/me";
/// Default scopes asked for the downstream API.
pub(crate) const DEFAULT_DOWNSTREAM_SCOPE: &str = "User.Read";
/// Largest downstream answer relayed.
const MAX_DOWNSTREAM_BODY: usize = 1024 * 1024;

/// The API's handle from the environment: `CLIENT_ID` (the API's own registration),
/// `CLIENT_SECRET` (needed for on-behalf-of), `AUTHORITY` / `OIDC_AUTHORITY` / `B2C_*`,
/// `API_AUDIENCE`; `SSL_CERT_FILE` and `IDENTITY_RESOLVE` for the provider's client.
/// Unconfigured when anything is missing, naming every missing setting.
pub(crate) fn api_auth_from_env() -> ApiAuth {
    let has = |k: &str| crate::setting(k).is_some();
    let credential =
        has("CLIENT_SECRET") || (has("CLIENT_CERTIFICATE") && has("CLIENT_PRIVATE_KEY"));
    let secret = "CLIENT_SECRET".to_owned();
    match IdentityConfig::from_env() {
        Err(Error::Config {
            message,
            mut missing,
        }) => {
            let message = if missing.is_empty() {
                message
            } else {
                if !credential {
                    missing.push(secret);
                }
                format!("missing settings: {}", missing.join(", "))
            };
            ApiAuth::unconfigured(Error::Config { message, missing })
        }
        Err(other) => ApiAuth::unconfigured(other),
        Ok(config) if !config.credential.is_confidential() => {
            ApiAuth::unconfigured(Error::Config {
                message: "missing settings: CLIENT_SECRET (the API calls DOWNSTREAM_ENDPOINT on \
                          behalf of its callers, which needs a client credential)"
                    .into(),
                missing: vec![secret],
            })
        }
        // An API signs nobody in: no redirect URI.
        Ok(config) => match Identity::new(config.with_redirect_uri(None::<String>)) {
            Ok(identity) => ApiAuth::new(identity),
            Err(error) => ApiAuth::unconfigured(error),
        },
    }
}

/// What `/api/me` calls on behalf of its caller.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) downstream_endpoint: String,
    pub(crate) downstream_scopes: Scopes,
    pub(crate) http: reqwest::Client,
}

impl Settings {
    /// `DOWNSTREAM_ENDPOINT` and `DOWNSTREAM_SCOPE` (space separated); the client trusts
    /// `SSL_CERT_FILE` and honours `IDENTITY_RESOLVE` too, and has timeouts.
    pub(crate) fn from_env() -> Result<Settings, String> {
        let downstream_endpoint = crate::setting("DOWNSTREAM_ENDPOINT")
            .unwrap_or_else(|| DEFAULT_DOWNSTREAM_ENDPOINT.to_owned());
        let downstream_scopes = Scopes::parse(
            &crate::setting("DOWNSTREAM_SCOPE")
                .unwrap_or_else(|| DEFAULT_DOWNSTREAM_SCOPE.to_owned()),
        );
        let http = identity_core::http::builder_from_env()?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for DOWNSTREAM_ENDPOINT: {e}"))?;
        Ok(Settings {
            downstream_endpoint,
            downstream_scopes,
            http,
        })
    }
}

/// The routes, behind the layer that validates bearer tokens (or, unconfigured, answers
/// every request with the 500 problem).
pub(crate) fn app(api: ApiAuth, settings: Settings) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/app", get(app_data))
        .fallback(not_found)
        .with_state(settings)
        .layer(api.layer())
}

/// A problem JSON answer (RFC 7807).
fn problem(status: StatusCode, kind: &str, title: &str, detail: &str, extra: Value) -> Response {
    let mut body = json!({
        "type": format!("urn:identity-rs:problem:{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let mut res = (status, body.to_string()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn downstream_failed(settings: &Settings, detail: &str, extra: Value) -> Response {
    tracing::warn!(endpoint = %settings.downstream_endpoint, "{detail}");
    problem(
        StatusCode::BAD_GATEWAY,
        "downstream_failed",
        "The downstream API call failed",
        detail,
        extra,
    )
}

/// `GET /api/me`: scope `access_as_user`; calls `DOWNSTREAM_ENDPOINT` with a token for
/// `DOWNSTREAM_SCOPE` obtained on behalf of the caller and returns its JSON.
async fn me(State(settings): State<Settings>, caller: ApiCaller) -> Response {
    if let Err(rejection) = caller.require_scopes(&[API_SCOPE]) {
        return rejection.into_response();
    }
    let token = match caller.on_behalf_of(&settings.downstream_scopes).await {
        Ok(token) => token,
        Err(rejection) => return rejection.into_response(),
    };
    tracing::debug!(from_cache = token.from_cache, "downstream token");
    let answer = settings
        .http
        .get(&settings.downstream_endpoint)
        .bearer_auth(token.access_token.secret())
        .header(header::ACCEPT, "application/json")
        .send()
        .await;
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            return downstream_failed(
                &settings,
                &format!("the downstream API could not be reached: {e}"),
                json!({}),
            )
        }
    };
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        // Conditional access or continuous access evaluation downstream: pass the claims
        // challenge to the client, which must get a new token for this API with it.
        let challenge = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(ClaimsChallenge::from_www_authenticate);
        if let Some(claims) = challenge {
            return ApiRejection::from(ApiError::InteractionRequired {
                scopes: settings.downstream_scopes.clone(),
                claims: Some(claims),
                reason: "the downstream API asked for more claims".into(),
            })
            .into_response();
        }
    }
    let body = match read_limited(response).await {
        Ok(b) => b,
        Err(problem) => return downstream_failed(&settings, &problem, json!({})),
    };
    let parsed = serde_json::from_slice::<Value>(&body);
    if !status.is_success() {
        let body = match parsed {
            Ok(json) => json,
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        };
        return downstream_failed(
            &settings,
            &format!("the downstream API answered HTTP {status}"),
            json!({ "downstream_status": status.as_u16(), "downstream_body": body }),
        );
    }
    match parsed {
        Ok(json) => {
            let mut res = Json(json).into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => downstream_failed(
            &settings,
            &format!("the downstream API answered something that is not JSON: {e}"),
            json!({}),
        ),
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the downstream answer could not be read: {e}"))?
    {
        if bytes.len() + chunk.len() > MAX_DOWNSTREAM_BODY {
            return Err(format!(
                "the downstream API answered more than {MAX_DOWNSTREAM_BODY} bytes"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The requirement of `/api/app`: the app role `Data.Read.All`.
struct ReadAll;
impl ApiRequirement for ReadAll {
    const APP_ROLES: &'static [&'static str] = &[APP_ROLE];
}

/// `GET /api/app`: app role `Data.Read.All` (app-only tokens: client credentials);
/// returns the calling app's id and roles.
async fn app_data(caller: ApiAccess<ReadAll>) -> Response {
    let mut res = Json(json!({
        "app_id": caller.client_id(),
        "tenant_id": caller.tid(),
        "roles": caller.roles(),
        "app_only": caller.is_app_only(),
    }))
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        "this API serves GET /api/me and GET /api/app",
        json!({}),
    )
}
