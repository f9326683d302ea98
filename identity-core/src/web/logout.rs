//! Single sign-out: the front-channel and back-channel logout routes.
//!
//! * **Front-channel** (OpenID Connect Front-Channel Logout 1.0, and Entra's variant):
//!   the provider's sign-out page loads `…/frontchannel_logout?sid=…[&iss=…]` in a
//!   hidden iframe. Entra sends only `sid` (its `sid` values are unique), so `iss` is
//!   optional when the authority is Entra (Entra ID, External ID, B2C) and required
//!   elsewhere. The route finds the sessions through the sign-out index of the shared
//!   session store, never through the request's cookie (a third-party iframe carries no
//!   `SameSite=Lax` cookie), ends them, and answers 200 with a small page that may be
//!   framed and is never cached. A request without `sid` (or without a needed `iss`)
//!   gets 400.
//! * **Back-channel** (OpenID Connect Back-Channel Logout 1.0): the provider POSTs a
//!   `logout_token`, validated by [`Identity::validate_logout_token`] plus a replay
//!   check of its `jti` in the shared store (kept for [`LOGOUT_TOKEN_MAX_AGE`] plus
//!   twice the clock skew; older tokens are refused by their `iat`). Answers 200, or 400
//!   with `{"error":"invalid_request",…}`; an unreachable store answers 503 (the
//!   provider may retry), never 500.
//!
//! Entra puts `sid` in ID tokens only when the app registration lists the `sid`
//! optional claim; the engine logs a warning at sign-in when it is missing.

use super::engine::WebAuth;
use super::response::{Outcome, WebResponse};
use crate::sessions::end_sign_ins;
use crate::{Error, Identity, TokenRejection, LOGOUT_TOKEN_MAX_AGE, MAX_CLOCK_SKEW};
use std::time::Duration;

/// The front-channel logout page is loaded in the provider's iframe: any ancestor may
/// frame it (browsers then ignore an `X-Frame-Options` a framework adds; adapters whose
/// framework adds one remove it from responses carrying this policy).
pub const FRAMEABLE: &str = "frame-ancestors *";

const SIGNED_OUT_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Signed out</title></head><body><p>Signed out.</p></body></html>";

/// Whether `identity`'s authority is Entra ID, External ID or B2C.
pub(super) fn is_entra_authority(identity: &Identity) -> bool {
    crate::flow::is_entra_family(&identity.config().authority)
}

impl WebAuth {
    pub(super) async fn front_channel_logout(
        &self,
        identity: &Identity,
        query: &str,
    ) -> WebResponse {
        let mut sid = None;
        let mut iss = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "sid" if !v.is_empty() => sid = Some(v.into_owned()),
                "iss" if !v.is_empty() => iss = Some(v.into_owned()),
                _ => {}
            }
        }
        let Some(sid) = sid else {
            return notice_refused(400, "the front-channel logout request names no sid");
        };
        if iss.is_none() && !is_entra_authority(identity) {
            return notice_refused(400, "the front-channel logout request names no iss");
        }
        let Some(backend) = self.session_backend() else {
            return self.missing_setup_response(
                "a session backend for single sign-out",
                "mount the adapter's session layer (it gives the engine its backend)",
            );
        };
        match end_sign_ins(&**backend, iss.as_deref(), Some(&sid), None).await {
            Ok(ended) => {
                tracing::info!(ended, "front-channel logout");
                WebResponse::html(Outcome::Page, 200, SIGNED_OUT_PAGE.to_owned())
                    .with_header("content-security-policy", FRAMEABLE)
            }
            Err(e) => self.error_response(&Error::Store(e.0)),
        }
    }

    pub(super) async fn back_channel_logout(
        &self,
        identity: &Identity,
        form: Option<&[u8]>,
    ) -> WebResponse {
        let token = form.and_then(|body| {
            form_urlencoded::parse(body)
                .find(|(k, _)| k == "logout_token")
                .map(|(_, v)| v.into_owned())
        });
        let Some(token) = token else {
            return bad_request("the request carries no logout_token");
        };
        let Some(backend) = self.session_backend() else {
            return store_unavailable("no session backend is set up for single sign-out");
        };
        let notice = match identity.validate_logout_token(&token).await {
            Ok(notice) => notice,
            Err(Error::InvalidLogoutToken(why)) => {
                tracing::warn!(reason = %why, "back-channel logout token refused");
                return bad_request(why.public_description());
            }
            Err(e) => {
                // The provider's metadata or keys cannot be read: the provider may retry.
                tracing::warn!(error = %e, "back-channel logout could not be checked");
                return store_unavailable("the logout token cannot be checked now");
            }
        };
        let ttl = LOGOUT_TOKEN_MAX_AGE + 2 * MAX_CLOCK_SKEW + Duration::from_secs(1);
        let key = format!(
            "jti:{}",
            crate::sessions::SignInRef::sub_index(&notice.iss, &notice.jti)
        );
        match backend.put_record(&key, "1", ttl, true).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("back-channel logout token replayed");
                return bad_request(TokenRejection::Replayed.public_description());
            }
            Err(e) => return store_unavailable(&e.0),
        }
        match end_sign_ins(
            &**backend,
            Some(&notice.iss),
            notice.sid.as_deref(),
            notice.sub.as_deref(),
        )
        .await
        {
            Ok(ended) => {
                tracing::info!(ended, "back-channel logout");
                WebResponse::json(Outcome::Page, 200, "application/json", "{}".to_owned())
            }
            Err(e) => store_unavailable(&e.0),
        }
    }
}

fn notice_refused(status: u16, why: &str) -> WebResponse {
    tracing::warn!(reason = why, "front-channel logout refused");
    WebResponse::html(
        Outcome::Failed,
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not signed \
             out</title></head><body><p>{}</p></body></html>",
            html_escape::encode_text(why)
        ),
    )
}

fn bad_request(why: &str) -> WebResponse {
    let body = serde_json::json!({"error": "invalid_request", "error_description": why});
    WebResponse::json(Outcome::Failed, 400, "application/json", body.to_string())
}

fn store_unavailable(why: &str) -> WebResponse {
    tracing::warn!(reason = why, "back-channel logout not processed");
    let body = serde_json::json!({"error": "temporarily_unavailable", "error_description": "try again later"});
    WebResponse::json(
        Outcome::StoreUnavailable,
        503,
        "application/json",
        body.to_string(),
    )
    .with_header("retry-after", "5")
}
