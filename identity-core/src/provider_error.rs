//! The error envelope of Entra ID, External ID and B2C (and of any OAuth 2.0 provider).
//!
//! Errors reach the app in two shapes: a JSON body from the token or discovery endpoint
//! (`error`, `error_description`, `error_codes`, `suberror`, `claims`, `trace_id`,
//! `correlation_id`, `timestamp`, `error_uri`; older v1 and B2C errors lack some members, and
//! documentation examples show numbers as strings), and the parameters of an error redirect
//! from the authorize endpoint (`error`, `error_description`, `error_uri`, and on a cancel
//! `error_subcode=cancel`).
//!
//! Decisions are taken on `error`, then `suberror`, then the codes: the integers in
//! `error_codes` (`AADSTS{n}`) and the `AADSTS…`/`AADB2C…` codes that lead the first line of
//! the description (B2C sends its codes only there). The English text is never interpreted:
//! it changes over time and joins its trace block with either line breaks or spaces.
//!
//! * **Password reset** ([`ProviderError::is_password_reset`]): `AADB2C90118`.
//! * **User cancelled** ([`ProviderError::is_user_cancelled`]): `AADB2C90091`; an
//!   `access_denied` redirect with `error_subcode=cancel`; or `AADSTS65004` (the user, or an
//!   admin, declined consent). All three mean "the user chose not to continue": go back to the
//!   app rather than show an error page. An `access_denied` whose only hint is the English
//!   "the user canceled the authentication" is *not* recognised, by design.
//! * **Consent required** ([`ProviderError::is_consent_required`]): `error=consent_required`
//!   (authorize endpoint), `suberror=consent_required` (token endpoint, with
//!   `invalid_grant`), or `AADSTS65001`.
//! * **Interaction required** ([`ProviderError::is_interaction_required`]): the errors
//!   `interaction_required`, `login_required`, `consent_required` and `invalid_grant`; the
//!   user-actionable suberrors (`basic_action`, `additional_action`, `message_only`,
//!   `consent_required`, `user_password_expired`, `bad_token`, `token_expired`); or the codes
//!   `AADSTS50076/50079/50105/50058/50173/65001/70008/700082/70043`, `AADB2C90077`,
//!   `AADB2C90080`.
//! * **Drop the refresh token** ([`ProviderError::drop_refresh_token`]): `suberror`
//!   `bad_token`/`token_expired` (make no further silent calls with it); the codes of dead
//!   grants (`AADSTS70008`, `700082`, `700084`, `50173`, `50132`, `50133`, `70043`,
//!   `AADB2C90080`); or any other `invalid_grant`, *except* when the suberror says the grant
//!   itself is fine and only this request needs the user (`consent_required`, `basic_action`,
//!   `additional_action`, `message_only`, `client_mismatch`, `protection_policy_required`,
//!   `device_authentication_failed`): the refresh token still serves other scopes.
//! * **Logging** ([`ProviderError::summary`]): one line, from the first line of the
//!   description only, cut before any `Trace ID:` block and any `login_hint:` (B2C puts the
//!   user's e-mail there), with control characters removed and the length capped.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

const MAX_SUMMARY_TEXT: usize = 300;

/// An OAuth 2.0 / Entra error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderError {
    /// The OAuth `error` code, e.g. `invalid_grant`.
    pub error: String,
    /// `error_description`: human-readable, may contain personal data (B2C `login_hint:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// `error_codes`: the numeric AADSTS codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u32>,
    /// `suberror` (token endpoint), or `error_subcode` of an authorize redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
    /// `claims`: a claims challenge (raw JSON) to send with the next interactive request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<String>,
    /// `error_uri`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
    /// `trace_id` (or the `Trace ID:` line of a redirect's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// `correlation_id` (or the `Correlation ID:` line of a redirect's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// `timestamp` (or the `Timestamp:` line of a redirect's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The HTTP status of a JSON error; `None` for a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

impl ProviderError {
    /// Parses a JSON error body (token endpoint, discovery). `None` unless the body is a JSON
    /// object with a non-empty string `error`. Missing members are tolerated; `error_codes`
    /// may hold numbers or numeric strings.
    pub fn from_json(status: u16, body: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(body).ok()?;
        Self::from_object(status, value.as_object()?)
    }

    pub(crate) fn from_object(status: u16, obj: &Map<String, Value>) -> Option<Self> {
        let error = non_empty(obj.get("error")?.as_str()?)?;
        let error_codes = match obj.get("error_codes") {
            Some(Value::Array(items)) => items.iter().filter_map(code_value).collect(),
            Some(v) => code_value(v).into_iter().collect(),
            None => Vec::new(),
        };
        let claims = match obj.get("claims") {
            Some(Value::String(s)) => non_empty(s),
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            _ => None,
        };
        Some(Self {
            error,
            error_description: str_member(obj, &["error_description"]),
            error_codes,
            suberror: str_member(obj, &["suberror", "subError", "sub_error"]),
            claims,
            error_uri: str_member(obj, &["error_uri"]),
            trace_id: str_member(obj, &["trace_id"]),
            correlation_id: str_member(obj, &["correlation_id"]),
            timestamp: str_member(obj, &["timestamp"]),
            http_status: Some(status),
        })
    }

    /// Parses the (decoded) parameters of an authorize error redirect. Only `error`,
    /// `error_description`, `error_uri` and `error_subcode` (stored as
    /// [`suberror`](Self::suberror)) are taken; `state` and anything else are ignored. The
    /// first occurrence of a repeated parameter wins. Trace and correlation ids are read from
    /// the description's trailer. `None` without a non-empty `error`.
    pub fn from_redirect_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<Self> {
        let (mut error, mut description, mut uri, mut subcode) = (None, None, None, None);
        for (key, value) in params {
            let slot = match key {
                "error" => &mut error,
                "error_description" => &mut description,
                "error_uri" => &mut uri,
                "error_subcode" => &mut subcode,
                _ => continue,
            };
            if slot.is_none() {
                *slot = non_empty(value);
            }
        }
        let error = error?;
        let trailer = |label: &str, words: usize| {
            description
                .as_deref()
                .and_then(|d| trailer_value(d, label, words))
        };
        Some(Self {
            trace_id: trailer("Trace ID:", 1),
            correlation_id: trailer("Correlation ID:", 1),
            timestamp: trailer("Timestamp:", 2),
            error,
            error_description: description,
            error_codes: Vec::new(),
            suberror: subcode,
            claims: None,
            error_uri: uri,
            http_status: None,
        })
    }

    /// All codes, e.g. `AADSTS50076` or `AADB2C90118`: first from `error_codes`, then those in
    /// the first line of the description, without duplicates.
    pub fn codes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let numeric = self.error_codes.iter().map(|c| format!("AADSTS{c}"));
        let described = self.description_codes().map(str::to_owned);
        for code in numeric.chain(described) {
            if !out.contains(&code) {
                out.push(code);
            }
        }
        out
    }

    /// Whether [`codes`](Self::codes) contains `code` (case-insensitive, e.g. `AADSTS70008`).
    pub fn has_code(&self, code: &str) -> bool {
        let code = code.trim();
        if let Some(n) = strip_prefix_ci(code, "AADSTS").and_then(|n| n.parse::<u32>().ok()) {
            if self.error_codes.contains(&n) {
                return true;
            }
        }
        self.description_codes()
            .any(|c| c.eq_ignore_ascii_case(code))
    }

    /// The first B2C code (`AADB2C…`) in the description.
    pub fn b2c_code(&self) -> Option<&str> {
        self.description_codes().find(|c| c.starts_with("AADB2C"))
    }

    /// B2C "the user has forgotten their password" (`AADB2C90118`): start the password-reset
    /// user flow.
    pub fn is_password_reset(&self) -> bool {
        self.has_code("AADB2C90118")
    }

    /// The user chose not to continue (see the [module documentation](self)).
    pub fn is_user_cancelled(&self) -> bool {
        self.has_code("AADB2C90091")
            || (self.error == "access_denied" && self.suberror.as_deref() == Some("cancel"))
            || self.has_code("AADSTS65004")
    }

    /// The user cancelled a B2C user flow page (`AADB2C90091`): return them to the app
    /// rather than showing an error. Entra ID cancellations are not included.
    pub fn is_b2c_cancel(&self) -> bool {
        self.has_code("AADB2C90091")
    }

    /// Consent is missing: send the user through an interactive request.
    pub fn is_consent_required(&self) -> bool {
        self.error == "consent_required"
            || self.suberror.as_deref() == Some("consent_required")
            || self.has_code("AADSTS65001")
    }

    /// A silent request cannot succeed; the user must sign in interactively.
    pub fn is_interaction_required(&self) -> bool {
        const ERRORS: [&str; 4] = [
            "interaction_required",
            "login_required",
            "consent_required",
            "invalid_grant",
        ];
        const SUBERRORS: [&str; 7] = [
            "basic_action",
            "additional_action",
            "message_only",
            "consent_required",
            "user_password_expired",
            "bad_token",
            "token_expired",
        ];
        const CODES: [&str; 11] = [
            "AADSTS50076",
            "AADSTS50079",
            "AADSTS50105",
            "AADSTS50058",
            "AADSTS50173",
            "AADSTS65001",
            "AADSTS70008",
            "AADSTS700082",
            "AADSTS70043",
            "AADB2C90077",
            "AADB2C90080",
        ];
        ERRORS.contains(&self.error.as_str())
            || self
                .suberror
                .as_deref()
                .is_some_and(|s| SUBERRORS.contains(&s))
            || CODES.iter().any(|c| self.has_code(c))
    }

    /// The refresh token used for the failed request is dead and must be removed from the
    /// cache (see the [module documentation](self)).
    pub fn drop_refresh_token(&self) -> bool {
        const DEAD_SUBERRORS: [&str; 2] = ["bad_token", "token_expired"];
        const KEEP_SUBERRORS: [&str; 7] = [
            "consent_required",
            "basic_action",
            "additional_action",
            "message_only",
            "client_mismatch",
            "protection_policy_required",
            "device_authentication_failed",
        ];
        const DEAD_CODES: [&str; 8] = [
            "AADSTS70008",
            "AADSTS700082",
            "AADSTS700084",
            "AADSTS50173",
            "AADSTS50132",
            "AADSTS50133",
            "AADSTS70043",
            "AADB2C90080",
        ];
        let sub = self.suberror.as_deref();
        if sub.is_some_and(|s| DEAD_SUBERRORS.contains(&s)) {
            return true;
        }
        if sub.is_some_and(|s| KEEP_SUBERRORS.contains(&s)) {
            return false;
        }
        self.error == "invalid_grant" || DEAD_CODES.iter().any(|c| self.has_code(c))
    }

    /// One line for logs and error pages: `error [suberror] (codes): text`, e.g.
    /// `invalid_grant (AADSTS70008): The provided authorization code or refresh token has
    /// expired…`. The text is the first line of the description without its leading code,
    /// trace block or `login_hint:` (personal data), control characters removed, at most
    /// 300 characters.
    pub fn summary(&self) -> String {
        let mut out = clean(&self.error, 100);
        if let Some(sub) = self.suberror.as_deref() {
            out.push_str(&format!(" [{}]", clean(sub, 100)));
        }
        let codes = self.codes();
        if !codes.is_empty() {
            out.push_str(&format!(" ({})", codes.join(", ")));
        }
        if let Some(text) = self.error_description.as_deref().and_then(summary_text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        out
    }

    fn description_codes(&self) -> impl Iterator<Item = &str> {
        let first = self
            .error_description
            .as_deref()
            .map(first_line)
            .unwrap_or_default();
        first
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|t| is_code(t))
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        let ids: Vec<String> = [
            ("trace ID", &self.trace_id),
            ("correlation ID", &self.correlation_id),
        ]
        .iter()
        .filter_map(|(label, v)| v.as_deref().map(|v| format!("{label}: {}", clean(v, 64))))
        .collect();
        if !ids.is_empty() {
            write!(f, " ({})", ids.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| s.to_owned())
}

fn str_member(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match obj.get(*k)? {
        Value::String(s) => non_empty(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn code_value(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn first_line(s: &str) -> &str {
    s.split(['\r', '\n']).next().unwrap_or_default()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn is_code(token: &str) -> bool {
    ["AADSTS", "AADB2C"].iter().any(|p| {
        token.strip_prefix(p).is_some_and(|n| {
            !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit())
        })
    })
}

/// The value after `label` in a description trailer, `words` whitespace-separated words long.
fn trailer_value(description: &str, label: &str, words: usize) -> Option<String> {
    let (_, rest) = description.split_once(label)?;
    let value: Vec<&str> = rest.split_whitespace().take(words).collect();
    let value = value.join(" ");
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | ' ' | '.' | 'Z'));
    ok.then_some(value)
}

fn summary_text(description: &str) -> Option<String> {
    let mut text = first_line(description);
    for cut in [" Trace ID:", "Trace ID:", "login_hint:"] {
        if let Some(i) = text.find(cut) {
            text = &text[..i];
        }
    }
    let text = text.trim();
    // Drop a leading code, which the summary already shows.
    let text = match text.split_once(':') {
        Some((head, rest)) if is_code(head.trim()) => rest.trim(),
        _ => text,
    };
    let text = clean(text, MAX_SUMMARY_TEXT);
    (!text.is_empty()).then_some(text)
}

/// Removes control characters and caps the length (in characters).
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Value {
        let full = format!("{}/fixtures/entra/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn from_token_fixture(file: &str) -> ProviderError {
        let f = fixture(&format!("token-responses/{file}"));
        let status = u16::try_from(f["status"].as_u64().unwrap()).unwrap();
        let body = serde_json::to_vec(&f["body"]).unwrap();
        ProviderError::from_json(status, &body).unwrap_or_else(|| panic!("{file}"))
    }

    fn from_authorize_fixture(file: &str) -> ProviderError {
        let f = fixture(&format!("authorize-responses/{file}"));
        let params: Vec<(String, String)> = f["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        ProviderError::from_redirect_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .unwrap_or_else(|| panic!("{file}"))
    }

    /// (error, codes, interaction, consent, drop_rt, cancelled, password_reset)
    type Expect = (
        &'static str,
        &'static [&'static str],
        bool,
        bool,
        bool,
        bool,
        bool,
    );

    fn assert_row(name: &str, e: &ProviderError, x: Expect) {
        let (error, codes, interaction, consent, drop, cancel, reset) = x;
        assert_eq!(e.error, error, "{name}");
        assert_eq!(e.codes(), codes, "{name}");
        assert_eq!(
            e.is_interaction_required(),
            interaction,
            "{name} interaction"
        );
        assert_eq!(e.is_consent_required(), consent, "{name} consent");
        assert_eq!(e.drop_refresh_token(), drop, "{name} drop");
        assert_eq!(e.is_user_cancelled(), cancel, "{name} cancel");
        assert_eq!(e.is_password_reset(), reset, "{name} reset");
        let summary = e.summary();
        assert!(
            !summary.contains('\r') && !summary.contains('\n'),
            "{summary}"
        );
        assert!(!summary.contains("Trace ID"), "{summary}");
        assert!(summary.starts_with(error), "{summary}");
    }

    #[test]
    fn token_endpoint_errors() {
        let rows: [(&str, Expect); 10] = [
            (
                "error-consent-required-65001.json",
                (
                    "invalid_grant",
                    &["AADSTS65001"],
                    true,
                    true,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "error-interaction-required-50076.json",
                (
                    "interaction_required",
                    &["AADSTS50076"],
                    true,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "error-interaction-required-50079-claims.json",
                (
                    "interaction_required",
                    &["AADSTS50079"],
                    true,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "error-invalid-client-7000215.json",
                (
                    "invalid_client",
                    &["AADSTS7000215"],
                    false,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "error-invalid-grant-50076-ropc.json",
                (
                    "invalid_grant",
                    &["AADSTS50076"],
                    true,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "error-invalid-grant-70002-70008-v1-legacy.json",
                (
                    "invalid_grant",
                    &["AADSTS70002", "AADSTS70008"],
                    true,
                    false,
                    true,
                    false,
                    false,
                ),
            ),
            (
                "error-invalid-grant-70008.json",
                (
                    "invalid_grant",
                    &["AADSTS70008"],
                    true,
                    false,
                    true,
                    false,
                    false,
                ),
            ),
            (
                "error-invalid-grant-700082.json",
                (
                    "invalid_grant",
                    &["AADSTS700082"],
                    true,
                    false,
                    true,
                    false,
                    false,
                ),
            ),
            (
                "error-invalid-scope-70011.json",
                (
                    "invalid_scope",
                    &["AADSTS70011"],
                    false,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "b2c-error-access-denied-docs.json",
                ("access_denied", &[], false, false, false, false, false),
            ),
        ];
        for (file, expect) in rows {
            let e = from_token_fixture(file);
            assert_row(file, &e, expect);
        }

        let e = from_token_fixture("error-invalid-grant-70008.json");
        assert_eq!(e.http_status, Some(400));
        assert_eq!(
            e.trace_id.as_deref(),
            Some("0000aaaa-11bb-cccc-dd22-eeeeee333333")
        );
        assert_eq!(
            e.correlation_id.as_deref(),
            Some("aaaa0000-bb11-2222-33cc-444444dddddd")
        );
        assert_eq!(e.timestamp.as_deref(), Some("2024-05-01 10:00:00Z"));
        assert_eq!(
            e.error_uri.as_deref(),
            Some("https://login.microsoftonline.com/error?code=70008")
        );
        assert_eq!(
            e.summary(),
            "invalid_grant (AADSTS70008): The provided authorization code or refresh token has \
             expired due to inactivity. Send a new interactive authorization request for this \
             user and resource."
        );
        assert!(e
            .to_string()
            .contains("correlation ID: aaaa0000-bb11-2222-33cc-444444dddddd"));

        let e = from_token_fixture("error-invalid-client-7000215.json");
        assert_eq!(e.http_status, Some(401));

        let e = from_token_fixture("error-interaction-required-50079-claims.json");
        assert_eq!(
            e.claims.as_deref(),
            Some(
                r#"{"access_token":{"polids":{"essential":true,"values":["00aa00aa-bb11-cc22-dd33-44ee44ee44ee"]}}}"#
            )
        );
        assert_eq!(e.error_uri, None);

        // Space-joined trace block: cut from the summary.
        let e = from_token_fixture("error-invalid-grant-50076-ropc.json");
        assert!(e
            .summary()
            .starts_with("invalid_grant [basic_action] (AADSTS50076): Due to"));
        assert!(!e.summary().contains("Correlation"));
    }

    #[test]
    fn authorize_redirect_errors() {
        let rows: [(&str, Expect); 12] = [
            (
                "b2c-error-forgot-password-AADB2C90118.json",
                (
                    "access_denied",
                    &["AADB2C90118"],
                    false,
                    false,
                    false,
                    false,
                    true,
                ),
            ),
            (
                "b2c-error-forgot-password-AADB2C90118-with-login-hint.json",
                (
                    "access_denied",
                    &["AADB2C90118"],
                    false,
                    false,
                    false,
                    false,
                    true,
                ),
            ),
            (
                "b2c-error-user-cancelled-AADB2C90091.json",
                (
                    "access_denied",
                    &["AADB2C90091"],
                    false,
                    false,
                    false,
                    true,
                    false,
                ),
            ),
            (
                "b2c-error-access-denied-docs.json",
                ("access_denied", &[], false, false, false, false, false),
            ),
            (
                "entra-error-access-denied-cancel-subcode.json",
                ("access_denied", &[], false, false, false, true, false),
            ),
            (
                "entra-error-access-denied-user-canceled.json",
                ("access_denied", &[], false, false, false, false, false),
            ),
            (
                "entra-error-admin-consent-declined-65004-query.json",
                (
                    "access_denied",
                    &["AADSTS65004"],
                    false,
                    false,
                    false,
                    true,
                    false,
                ),
            ),
            (
                "entra-error-consent-declined-65004-form-post.json",
                (
                    "access_denied",
                    &["AADSTS65004"],
                    false,
                    false,
                    false,
                    true,
                    false,
                ),
            ),
            (
                "entra-error-interaction-required-50105-query.json",
                (
                    "interaction_required",
                    &["AADSTS50105"],
                    true,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "entra-error-invalid-request-900144-query.json",
                (
                    "invalid_request",
                    &["AADSTS900144"],
                    false,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "entra-error-login-required-50058-fragment.json",
                (
                    "login_required",
                    &["AADSTS50058"],
                    true,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
            (
                "entra-error-unsupported-response-type-700051-fragment.json",
                (
                    "unsupported_response_type",
                    &["AADSTS700051"],
                    false,
                    false,
                    false,
                    false,
                    false,
                ),
            ),
        ];
        for (file, expect) in rows {
            let e = from_authorize_fixture(file);
            assert_row(file, &e, expect);
            assert_eq!(e.http_status, None);
        }

        let e =
            from_authorize_fixture("b2c-error-forgot-password-AADB2C90118-with-login-hint.json");
        assert_eq!(e.b2c_code(), Some("AADB2C90118"));
        assert_eq!(
            e.summary(),
            "access_denied (AADB2C90118): The user has forgotten their password."
        );
        assert!(!e.to_string().contains("fabrikam"));
        assert_eq!(
            e.correlation_id.as_deref(),
            Some("352d35fe-ccff-4710-9a55-441a8c4bc912")
        );
        assert_eq!(e.timestamp.as_deref(), Some("2021-08-02 10:35:08Z"));

        let e = from_authorize_fixture("entra-error-access-denied-cancel-subcode.json");
        assert_eq!(e.suberror.as_deref(), Some("cancel"));
        assert_eq!(e.summary(), "access_denied [cancel]");

        let e =
            from_authorize_fixture("entra-error-unsupported-response-type-700051-fragment.json");
        assert_eq!(
            e.trace_id.as_deref(),
            Some("0000aaaa-11bb-cccc-dd22-eeeeee333333")
        );
        assert_eq!(e.timestamp.as_deref(), Some("2024-07-10 12:19:49Z"));
        assert_eq!(
            e.summary(),
            "unsupported_response_type (AADSTS700051): response_type 'token' is not enabled for the application."
        );
    }

    #[test]
    fn discovery_error() {
        let f = fixture("discovery/error-invalid-tenant.json");
        let body = serde_json::to_vec(&f["body"]).unwrap();
        let e = ProviderError::from_json(400, &body).unwrap();
        assert_eq!(e.error, "invalid_tenant");
        assert_eq!(e.codes(), ["AADSTS90002"]);
        assert!(e
            .summary()
            .starts_with("invalid_tenant (AADSTS90002): Tenant 'test' not found."));
        assert!(!e.is_interaction_required());
    }

    #[test]
    fn tolerant_json() {
        let e = ProviderError::from_json(
            400,
            br#"{"error":"invalid_grant","error_codes":["50076", 70008, "x", -1, 1e20],"suberror":"bad_token","trace_id":12}"#,
        )
        .unwrap();
        assert_eq!(e.error_codes, [50076, 70008]);
        assert_eq!(e.trace_id.as_deref(), Some("12"));
        assert!(e.drop_refresh_token());
        let e = ProviderError::from_json(400, br#"{"error":"x","error_codes":65001}"#).unwrap();
        assert!(e.is_consent_required());
        assert!(e.has_code("aadsts65001"));
        let e = ProviderError::from_json(400, br#"{"error":"x","claims":{"access_token":{}}}"#)
            .unwrap();
        assert_eq!(e.claims.as_deref(), Some(r#"{"access_token":{}}"#));

        for bad in [
            &b""[..],
            b"<html>500</html>",
            b"[]",
            b"{}",
            br#"{"error":""}"#,
            br#"{"error":5}"#,
            br#"{"access_token":"x"}"#,
            b"\xff\xfe",
        ] {
            assert_eq!(ProviderError::from_json(500, bad), None);
        }
        assert_eq!(ProviderError::from_redirect_params([("state", "x")]), None);
        assert_eq!(ProviderError::from_redirect_params([("error", " ")]), None);

        // First occurrence wins; unknown parameters are ignored.
        let e = ProviderError::from_redirect_params([
            ("error", "access_denied"),
            ("error", "server_error"),
            ("access_token", "injected"),
        ])
        .unwrap();
        assert_eq!(e.error, "access_denied");

        // Serde round trip.
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<ProviderError>(&json).unwrap(), e);
    }

    #[test]
    fn summary_is_one_safe_line() {
        let long = "AADSTS50000: ".to_owned() + &"é".repeat(1000) + "\r\nTrace ID: x";
        let e = ProviderError::from_redirect_params([
            ("error", "server_error\r\nInjected: yes"),
            ("error_description", long.as_str()),
        ])
        .unwrap();
        let s = e.summary();
        assert!(!s.contains('\n') && !s.contains('\r'));
        assert!(s.chars().count() < 450, "{}", s.chars().count());
        assert!(s.ends_with('…'));
        // Inline login_hint is cut too.
        let e = ProviderError::from_redirect_params([
            ("error", "access_denied"),
            (
                "error_description",
                "AADB2C90118: Forgot. login_hint: a@b.example",
            ),
        ])
        .unwrap();
        assert_eq!(e.summary(), "access_denied (AADB2C90118): Forgot.");
    }
}
