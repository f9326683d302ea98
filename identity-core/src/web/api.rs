//! Web APIs protected by bearer tokens: [`ApiAuth`] (the API's handle), [`ApiCaller`]
//! (the authenticated caller, with on-behalf-of), [`ApiRejection`] (the answer an API
//! owes its client), and the access rule [`meets`].
//!
//! Adapters wrap these in their extractors or guards; every rule is here:
//!
//! * accepted audiences: the builder's list, else `API_AUDIENCE` (comma or space
//!   separated), else the client id and `api://{client id}`;
//! * a missing or malformed `Authorization` header, or a token that fails validation:
//!   `401` with `WWW-Authenticate: Bearer error="invalid_token"`;
//! * scopes against app roles ([`meets`]): app-only tokens are judged by their roles,
//!   user tokens by their scopes, a role standing in;
//! * failures answer as problem JSON (RFC 7807), `503` when the provider cannot be
//!   reached, `500` with the missing settings when the API is not configured.

use super::response::{Outcome, WebResponse};
use crate::web_api::{bearer_token, default_audiences, ApiError};
use crate::{Caller, Error, Identity, IdentityConfig, Scopes, TokenForUser};
use serde_json::{json, Value};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The environment variable listing the accepted audiences (comma or space separated).
pub const API_AUDIENCE_VAR: &str = "API_AUDIENCE";

/// Splits a list of audiences on commas and white space.
pub fn split_audiences(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The handle of a web API: the core [`Identity`] and the `aud` values its bearer tokens
/// must carry. Cheap to clone. It may be *unconfigured* ([`ApiAuth::unconfigured`], or
/// [`ApiAuth::from_env`] with settings missing): every request then answers 500 with a
/// problem JSON naming the missing settings.
#[derive(Clone)]
pub struct ApiAuth {
    inner: Arc<ApiInner>,
}

struct ApiInner {
    mode: Result<Identity, Error>,
    audiences: Vec<String>,
}

impl fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ApiAuth");
        match &self.inner.mode {
            Ok(identity) => d.field("identity", identity),
            Err(error) => d.field("unconfigured", error),
        };
        d.field("audiences", &self.inner.audiences).finish()
    }
}

impl ApiAuth {
    /// An `ApiAuth` accepting the default audiences (see [`ApiAuthBuilder::audiences`]).
    pub fn new(identity: Identity) -> ApiAuth {
        Self::builder(identity).build()
    }

    /// Starts building an `ApiAuth` with options.
    pub fn builder(identity: Identity) -> ApiAuthBuilder {
        ApiAuthBuilder {
            identity,
            audiences: None,
        }
    }

    /// From the environment ([`IdentityConfig::from_env`] without a redirect URI, and
    /// `API_AUDIENCE`). Never fails: with settings missing the result is unconfigured.
    pub fn from_env() -> ApiAuth {
        let built = IdentityConfig::from_env()
            .map(|config| config.with_redirect_uri(None::<String>))
            .and_then(Identity::new);
        match built {
            Ok(identity) => Self::new(identity),
            Err(error) => Self::unconfigured(error),
        }
    }

    /// An API that answers every request with 500 and the configuration problem.
    pub fn unconfigured(error: Error) -> ApiAuth {
        tracing::error!(error = %error, "the web API is not configured; every request answers 500");
        ApiAuth {
            inner: Arc::new(ApiInner {
                mode: Err(error),
                audiences: Vec::new(),
            }),
        }
    }

    /// The core handle, unless unconfigured.
    pub fn identity(&self) -> Option<&Identity> {
        self.inner.mode.as_ref().ok()
    }

    /// Why this API is unconfigured, if it is.
    pub fn configuration_error(&self) -> Option<&Error> {
        self.inner.mode.as_ref().err()
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.inner.audiences
    }

    fn configured(&self) -> Result<&Identity, ApiRejection> {
        self.inner
            .mode
            .as_ref()
            .map_err(|e| ApiRejection::NotConfigured(e.clone()))
    }

    /// Validates the request's `Authorization` header value: the caller, or the answer.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<ApiCaller, ApiRejection> {
        let identity = self.configured()?;
        let token = bearer_token(authorization)?;
        let (caller, token) = identity
            .validate_access_token_shared(token, &self.inner.audiences)
            .await?;
        Ok(ApiCaller {
            caller,
            token,
            api: self.clone(),
        })
    }

    /// [`authenticate`](Self::authenticate), then the access rule ([`meets`]).
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        scopes: &[&str],
        app_roles: &[&str],
    ) -> Result<ApiCaller, ApiRejection> {
        let caller = self.authenticate(authorization).await?;
        meets(&caller, scopes, app_roles)?;
        Ok(caller)
    }
}

/// Options of an [`ApiAuth`]; from [`ApiAuth::builder`].
#[must_use]
#[derive(Debug)]
pub struct ApiAuthBuilder {
    identity: Identity,
    audiences: Option<Vec<String>>,
}

impl ApiAuthBuilder {
    /// The accepted `aud` values. Default: `API_AUDIENCE` when set, else the client id
    /// and `api://{client id}`.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = Some(audiences.into_iter().map(Into::into).collect());
        self
    }

    /// Builds the `ApiAuth`.
    pub fn build(self) -> ApiAuth {
        let audiences = match self.audiences {
            Some(a) if !a.is_empty() => a,
            _ => match std::env::var(API_AUDIENCE_VAR).map(|v| split_audiences(&v)) {
                Ok(a) if !a.is_empty() => a,
                _ => default_audiences(self.identity.config().client_id.as_str()),
            },
        };
        tracing::info!(audiences = ?audiences, "web API accepts bearer tokens for these audiences");
        ApiAuth {
            inner: Arc::new(ApiInner {
                mode: Ok(self.identity),
                audiences,
            }),
        }
    }
}

/// The authenticated caller of a web API: the validated claims ([`Caller`], through
/// `Deref`) and the bearer token, for on-behalf-of calls.
#[derive(Clone)]
pub struct ApiCaller {
    caller: Caller,
    /// Shared with the validated-token cache.
    token: Arc<str>,
    api: ApiAuth,
}

impl fmt::Debug for ApiCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCaller")
            .field("caller", &self.caller)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl Deref for ApiCaller {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl ApiCaller {
    /// The validated claims.
    pub fn into_inner(self) -> Caller {
        self.caller
    }

    /// The caller's bearer token (the on-behalf-of assertion).
    pub fn bearer_token(&self) -> &str {
        &self.token
    }

    /// The API's handle.
    pub fn api(&self) -> &ApiAuth {
        &self.api
    }

    /// Requires every delegated scope in `scopes`; else 403 `insufficient_scope`.
    pub fn require_scopes(&self, scopes: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.caller.require_scopes(scopes)?)
    }

    /// Requires one of the app `roles`; else 403 `insufficient_scope`.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), ApiRejection> {
        Ok(self.caller.require_any_role(roles)?)
    }

    /// An access token to `scopes` of a downstream API, on behalf of this caller (cached
    /// per caller, incoming token and scopes). When the user must satisfy more (consent,
    /// MFA, a claims challenge), the rejection is a `401` whose `WWW-Authenticate` carries
    /// what the calling client needs to ask for.
    pub async fn on_behalf_of(&self, scopes: &Scopes) -> Result<TokenForUser, ApiRejection> {
        let identity = self.api.configured()?;
        match identity
            .acquire_token_on_behalf_of(&self.caller, &self.token, scopes)
            .await
        {
            Ok(token) => Ok(token),
            Err(error @ Error::Config { .. }) => Err(ApiRejection::NotConfigured(error)),
            Err(error) => {
                let api_error = ApiError::from_obo(error);
                if let ApiError::Unavailable(why) = &api_error {
                    tracing::warn!(%why, scopes = %scopes, "on-behalf-of exchange failed");
                }
                Err(ApiRejection::Api(api_error))
            }
        }
    }
}

/// Whether `caller` meets the requirement, as the error to answer if not. App-only
/// tokens are judged by their roles; user tokens by their scopes, a role standing in.
/// Empty lists require nothing.
pub fn meets(caller: &Caller, scopes: &[&str], roles: &[&str]) -> Result<(), ApiError> {
    match (scopes.is_empty(), roles.is_empty()) {
        (true, true) => Ok(()),
        (true, false) => caller.require_any_role(roles),
        (false, true) => caller.require_scopes(scopes),
        (false, false) if caller.is_app_only() => caller.require_any_role(roles),
        (false, false) => caller
            .require_scopes(scopes)
            .or_else(|scope_error| caller.require_any_role(roles).map_err(|_| scope_error)),
    }
}

/// Why a web API did not run its handler.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ApiRejection {
    /// The token is missing or invalid, lacks a scope or role, or the provider is down.
    Api(ApiError),
    /// The API is not configured.
    NotConfigured(Error),
    /// A piece of the app's setup is missing; the text says what to add.
    MissingSetup(&'static str),
}

impl fmt::Display for ApiRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiRejection::Api(e) => e.fmt(f),
            ApiRejection::NotConfigured(e) => e.fmt(f),
            ApiRejection::MissingSetup(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for ApiRejection {}

impl From<ApiError> for ApiRejection {
    fn from(error: ApiError) -> Self {
        ApiRejection::Api(error)
    }
}

impl ApiRejection {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiRejection::Api(e) => e.status_code(),
            ApiRejection::NotConfigured(_) | ApiRejection::MissingSetup(_) => 500,
        }
    }

    /// The [`ApiError`], if that is the reason.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ApiRejection::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge, if any.
    pub fn www_authenticate(&self) -> Option<String> {
        self.api_error().and_then(ApiError::www_authenticate)
    }

    /// The RFC 7807 problem body.
    pub fn problem_json(&self) -> Value {
        match self {
            ApiRejection::Api(e) => e.problem_json(),
            ApiRejection::NotConfigured(error) => {
                let (detail, missing) = match error {
                    Error::Config { message, missing } => (message.clone(), missing.clone()),
                    other => (other.to_string(), Vec::new()),
                };
                json!({
                    "type": "urn:identity-rs:problem:not_configured",
                    "title": "The API is not configured",
                    "status": 500,
                    "detail": detail,
                    "missing": missing,
                })
            }
            ApiRejection::MissingSetup(text) => json!({
                "type": "urn:identity-rs:problem:missing_setup",
                "title": "The API is not set up correctly",
                "status": 500,
                "detail": text,
            }),
        }
    }

    /// The answer: status, problem JSON, `WWW-Authenticate`, `Cache-Control: no-store`.
    /// Logged once here.
    pub fn to_response(&self) -> WebResponse {
        let status = self.status();
        match self {
            ApiRejection::Api(e) if status >= 500 => {
                tracing::warn!(error = %e, "web API request failed")
            }
            ApiRejection::Api(e) => tracing::info!(error = %e, status, "bearer token refused"),
            ApiRejection::NotConfigured(_) => {}
            ApiRejection::MissingSetup(text) => tracing::error!("{text}"),
        }
        let outcome = match self {
            ApiRejection::Api(_) => Outcome::Failed,
            ApiRejection::NotConfigured(_) => Outcome::NotConfigured,
            ApiRejection::MissingSetup(_) => Outcome::MissingSetup,
        };
        let mut res = WebResponse::json(
            outcome,
            status,
            "application/problem+json",
            self.problem_json().to_string(),
        );
        if let Some(challenge) = self.www_authenticate() {
            res = res.with_header("www-authenticate", challenge);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(claims: Value) -> Caller {
        Caller {
            claims: std::sync::Arc::new(claims.as_object().cloned().unwrap_or_default()),
        }
    }

    #[test]
    fn app_tokens_need_a_role_user_tokens_a_scope() {
        let user = caller(json!({"scp": "access_as_user", "roles": ["Data.Read.All"]}));
        let app = caller(json!({"roles": ["Data.Read.All"], "idtyp": "app"}));
        assert!(meets(&user, &["access_as_user"], &[]).is_ok());
        assert!(meets(&app, &["access_as_user"], &[]).is_err());
        assert!(meets(&app, &[], &["Data.Read.All"]).is_ok());
        assert!(meets(&app, &["access_as_user"], &["Data.Read.All"]).is_ok());
        assert!(meets(&user, &["Mail.Read"], &["Data.Read.All"]).is_ok());
        assert!(meets(&user, &["Mail.Read"], &["Other"]).is_err());
        assert!(meets(&user, &[], &[]).is_ok());
    }

    #[test]
    fn audiences_split_on_commas_and_spaces() {
        assert_eq!(
            split_audiences("api://a, b  c,,"),
            vec!["api://a".to_owned(), "b".into(), "c".into()]
        );
    }
}
