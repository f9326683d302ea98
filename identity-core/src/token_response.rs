//! Token endpoint responses and `client_info`.
//!
//! Rules encoded here:
//!
//! * **Numbers come as integers or strings.** v2.0 sends integers; v1.0 and the B2C
//!   documentation send strings (`"3599"`). Both are accepted for `expires_in`,
//!   `ext_expires_in`, `refresh_in`, `expires_on`, `not_before` and
//!   `refresh_token_expires_in`; any other value there (negative, fractional, not numeric) is
//!   a [`TokenParseError::InvalidField`]. So is an absurd one: lifetimes (`expires_in`,
//!   `ext_expires_in`, `refresh_in`, `refresh_token_expires_in`) above
//!   [`MAX_LIFETIME_SECS`] (ten years) and times (`expires_on`, `not_before`) after
//!   [`MAX_UNIX_TIME`] (the end of year 9999). Expiry arithmetic saturates besides, so no
//!   value a provider sends can panic or wrap around.
//! * **Success** means a 2xx status and a JSON object carrying an `access_token` or an
//!   `id_token` (B2C answers a request for only `openid offline_access` without an access
//!   token). **Error** means a JSON object with an `error` member, whatever the status
//!   (parsed as a [`ProviderError`]). A JSON object with neither, or a success body with a
//!   non-2xx status, is a [`TokenParseError`]; so is a body that is not JSON (an HTML error
//!   page from a proxy), reported with a short, control-character-free snippet.
//! * `scope` may differ from what was requested, may be empty (B2C) or absent (v1.0 returns
//!   `resource` instead); it is kept as sent.
//! * Refresh tokens rotate: a response's `refresh_token` replaces the stored one.
//! * **`client_info`** is base64url JSON `{"uid","utid"}`, usually unpadded, sometimes padded
//!   or in the standard alphabet; all are accepted. `home_account_id = uid + "." + utid`
//!   (the home tenant, which differs from `tid` for guests; for B2C `uid` carries the policy).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::provider_error::ProviderError;
use crate::scopes::Scopes;
use crate::types::{AccessToken, IdTokenJwt, RefreshToken};

const SNIPPET_CHARS: usize = 200;

/// The longest lifetime accepted in a token response, in seconds (ten years).
pub const MAX_LIFETIME_SECS: u64 = 10 * 366 * 24 * 3600;
/// The latest time accepted in a token response (9999-12-31T23:59:59Z).
pub const MAX_UNIX_TIME: u64 = 253_402_300_799;

/// A successful token endpoint response. `Debug` never shows the tokens.
#[derive(Clone, Debug, Default)]
pub struct TokenResponse {
    /// `access_token`
    pub access_token: Option<AccessToken>,
    /// `token_type`, normally `Bearer`.
    pub token_type: Option<String>,
    /// `expires_in`, seconds.
    pub expires_in: Option<u64>,
    /// `ext_expires_in`, seconds (Entra: validity during an outage).
    pub ext_expires_in: Option<u64>,
    /// `refresh_in`, seconds (Entra: when to refresh proactively).
    pub refresh_in: Option<u64>,
    /// `expires_on`, Unix time (v1.0).
    pub expires_on: Option<u64>,
    /// `not_before`, Unix time (v1.0, B2C).
    pub not_before: Option<u64>,
    /// `refresh_token`
    pub refresh_token: Option<RefreshToken>,
    /// `refresh_token_expires_in`, seconds (B2C, SPA).
    pub refresh_token_expires_in: Option<u64>,
    /// `id_token`
    pub id_token: Option<IdTokenJwt>,
    /// `scope`, space separated, as sent.
    pub scope: Option<String>,
    /// `resource` (v1.0).
    pub resource: Option<String>,
    /// `client_info`, raw; see [`TokenResponse::decoded_client_info`].
    pub client_info: Option<String>,
}

impl TokenResponse {
    /// The granted scopes, when the response lists them.
    pub fn granted_scopes(&self) -> Option<Scopes> {
        self.scope.as_deref().map(Scopes::parse)
    }

    /// The decoded `client_info`, when present and well formed.
    pub fn decoded_client_info(&self) -> Option<ClientInfo> {
        self.client_info.as_deref().and_then(ClientInfo::decode)
    }
}

/// What the token endpoint answered.
#[derive(Clone, Debug)]
pub enum TokenEndpointResult {
    /// Tokens.
    Success(TokenResponse),
    /// An OAuth error.
    Error(ProviderError),
}

/// A token endpoint response that is neither tokens nor an OAuth error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenParseError {
    /// The body is not JSON.
    #[error("the token endpoint answered HTTP {status} with a body that is not JSON: {snippet:?}")]
    NotJson {
        /// HTTP status.
        status: u16,
        /// The first 200 characters of the body, control characters replaced.
        snippet: String,
    },
    /// The body is JSON but not an object.
    #[error("the token endpoint answered HTTP {status} with JSON that is not an object")]
    NotAnObject {
        /// HTTP status.
        status: u16,
    },
    /// A known member has a value of the wrong type.
    #[error(
        "the token endpoint answered HTTP {status} with an invalid `{field}`: expected {expected}"
    )]
    InvalidField {
        /// HTTP status.
        status: u16,
        /// The member name.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A JSON object with neither tokens nor `error`.
    #[error("the token endpoint answered HTTP {status} with neither an access_token/id_token nor an error")]
    NoTokens {
        /// HTTP status.
        status: u16,
    },
    /// Tokens with a non-2xx status.
    #[error(
        "the token endpoint answered HTTP {status} with tokens; only a 2xx response is accepted"
    )]
    UnexpectedStatus {
        /// HTTP status.
        status: u16,
    },
}

/// Parses a token endpoint response (see the [module documentation](self)).
pub fn parse_token_endpoint_response(
    status: u16,
    body: &[u8],
) -> Result<TokenEndpointResult, TokenParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| TokenParseError::NotJson {
        status,
        snippet: snippet(body),
    })?;
    let obj = value
        .as_object()
        .ok_or(TokenParseError::NotAnObject { status })?;
    if obj.contains_key("error") {
        return ProviderError::from_object(status, obj)
            .map(TokenEndpointResult::Error)
            .ok_or(TokenParseError::InvalidField {
                status,
                field: "error",
                expected: "a non-empty string",
            });
    }
    let string = |field: &'static str| string_member(status, obj, field);
    let number = |field: &'static str| {
        let max = match field {
            "expires_on" | "not_before" => MAX_UNIX_TIME,
            _ => MAX_LIFETIME_SECS,
        };
        match number_member(status, obj, field)? {
            Some(n) if n > max => Err(TokenParseError::InvalidField {
                status,
                field,
                expected: if max == MAX_UNIX_TIME {
                    "a time before the year 10000"
                } else {
                    "a lifetime of at most ten years"
                },
            }),
            n => Ok(n),
        }
    };
    let response = TokenResponse {
        access_token: string("access_token")?.map(AccessToken::new),
        token_type: string("token_type")?,
        expires_in: number("expires_in")?,
        ext_expires_in: number("ext_expires_in")?,
        refresh_in: number("refresh_in")?,
        expires_on: number("expires_on")?,
        not_before: number("not_before")?,
        refresh_token: string("refresh_token")?.map(RefreshToken::new),
        refresh_token_expires_in: number("refresh_token_expires_in")?,
        id_token: string("id_token")?.map(IdTokenJwt::new),
        scope: scope_member(status, obj)?,
        resource: string("resource")?,
        client_info: string("client_info")?,
    };
    if response.access_token.is_none() && response.id_token.is_none() {
        return Err(TokenParseError::NoTokens { status });
    }
    if !(200..300).contains(&status) {
        return Err(TokenParseError::UnexpectedStatus { status });
    }
    Ok(TokenEndpointResult::Success(response))
}

/// A string member; absent, `null` and `""` are `None`.
fn string_member(
    status: u16,
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, TokenParseError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenParseError::InvalidField {
            status,
            field,
            expected: "a string",
        }),
    }
}

/// `scope` is kept even when empty (B2C sends `""`).
fn scope_member(status: u16, obj: &Map<String, Value>) -> Result<Option<String>, TokenParseError> {
    match obj.get("scope") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenParseError::InvalidField {
            status,
            field: "scope",
            expected: "a space-separated string",
        }),
    }
}

/// A non-negative integer, as a JSON number or a decimal string.
fn number_member(
    status: u16,
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<u64>, TokenParseError> {
    let invalid = TokenParseError::InvalidField {
        status,
        field,
        expected: "a non-negative integer (number or string)",
    };
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(invalid),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid),
        Some(_) => Err(invalid),
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The decoded `client_info` of a response: the account's home object and tenant ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Home object id (for B2C: `{oid}-{policy}`).
    pub uid: String,
    /// Home tenant id.
    pub utid: String,
}

impl ClientInfo {
    /// Decodes base64url (or standard base64), padded or not, of `{"uid": …, "utid": …}`.
    /// `None` when malformed or when either member is missing or empty.
    pub fn decode(b64: &str) -> Option<Self> {
        let normalised: String = b64
            .trim()
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        let bytes = URL_SAFE_NO_PAD.decode(normalised).ok()?;
        let info: Self = serde_json::from_slice(&bytes).ok()?;
        (!info.uid.is_empty() && !info.utid.is_empty()).then_some(info)
    }

    /// `uid.utid`, the MSAL home account id.
    pub fn home_account_id(&self) -> String {
        format!("{}.{}", self.uid, self.utid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Value {
        let full = format!("{}/fixtures/entra/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn parse_fixture(file: &str) -> (Value, Result<TokenEndpointResult, TokenParseError>) {
        let f = fixture(&format!("token-responses/{file}"));
        let status = u16::try_from(f["status"].as_u64().unwrap()).unwrap();
        let body = serde_json::to_vec(&f["body"]).unwrap();
        (
            f["body"].clone(),
            parse_token_endpoint_response(status, &body),
        )
    }

    fn num(v: &Value) -> Option<u64> {
        match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    #[test]
    fn every_fixture_parses() {
        let dir = format!(
            "{}/fixtures/entra/token-responses",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let (body, result) = parse_fixture(&name);
            seen += 1;
            match result.unwrap_or_else(|e| panic!("{name}: {e}")) {
                TokenEndpointResult::Success(r) => {
                    assert!(!name.contains("error"), "{name}");
                    assert_eq!(
                        r.access_token.as_ref().map(|t| t.secret()),
                        body["access_token"].as_str(),
                        "{name}"
                    );
                    assert_eq!(
                        r.refresh_token.as_ref().map(|t| t.secret()),
                        body["refresh_token"].as_str()
                    );
                    assert_eq!(
                        r.id_token.as_ref().map(|t| t.secret()),
                        body["id_token"].as_str()
                    );
                    assert_eq!(r.expires_in, num(&body["expires_in"]), "{name}");
                    assert_eq!(r.ext_expires_in, num(&body["ext_expires_in"]));
                    assert_eq!(r.expires_on, num(&body["expires_on"]));
                    assert_eq!(r.not_before, num(&body["not_before"]));
                    assert_eq!(
                        r.refresh_token_expires_in,
                        num(&body["refresh_token_expires_in"])
                    );
                    assert_eq!(r.scope.as_deref(), body["scope"].as_str());
                    assert_eq!(r.resource.as_deref(), body["resource"].as_str());
                    assert_eq!(r.client_info.as_deref(), body["client_info"].as_str());
                    let debug = format!("{r:?}");
                    for secret in ["access_token", "refresh_token", "id_token"] {
                        if let Some(s) = body[secret].as_str().filter(|s| s.len() > 20) {
                            assert!(!debug.contains(s), "{name}: {secret} leaked in Debug");
                        }
                    }
                }
                TokenEndpointResult::Error(e) => {
                    assert!(name.contains("error"), "{name}");
                    assert_eq!(Some(e.error.as_str()), body["error"].as_str());
                }
            }
        }
        assert!(seen >= 15, "{seen}");
    }

    #[test]
    fn string_and_integer_numbers() {
        let (_, r) = parse_fixture("v1-success-client-credentials.json");
        let TokenEndpointResult::Success(r) = r.unwrap() else {
            panic!("not a success")
        };
        assert_eq!(r.expires_in, Some(3599));
        assert_eq!(r.expires_on, Some(1_597_522_331));
        assert_eq!(r.not_before, Some(1_597_518_431));
        assert_eq!(r.resource.as_deref(), Some("https://management.azure.com"));
        assert_eq!(r.scope, None);

        let (_, r) = parse_fixture("b2c-success-msal-shape.json");
        let TokenEndpointResult::Success(r) = r.unwrap() else {
            panic!("not a success")
        };
        assert!(r.access_token.is_none() && r.id_token.is_some());
        assert_eq!(r.scope.as_deref(), Some(""));
        assert_eq!(r.refresh_token_expires_in, Some(1_209_600));
        assert_eq!(
            r.decoded_client_info().unwrap().home_account_id(),
            "52f6cad9-b822-4492-b742-e60cd2d55ee2-b2c_1_signupsignin1.775527ff-9a37-4307-8b3d-cc311f58d925"
        );

        let (_, r) = parse_fixture("v2-success-authcode.json");
        let TokenEndpointResult::Success(r) = r.unwrap() else {
            panic!("not a success")
        };
        assert_eq!(r.expires_in, Some(3599));
        let granted = r.granted_scopes().unwrap();
        assert!(granted.iter().any(|s| s == "User.Read"));
    }

    #[test]
    fn rejects_bad_bodies() {
        let html = b"<html>\r\n<body>502 Bad Gateway</body></html>";
        match parse_token_endpoint_response(502, html) {
            Err(TokenParseError::NotJson { status, snippet }) => {
                assert_eq!(status, 502);
                assert!(snippet.starts_with("<html>"));
                assert!(!snippet.contains('\r'));
            }
            other => panic!("{other:?}"),
        }
        let long = vec![b'x'; 5000];
        match parse_token_endpoint_response(200, &long) {
            Err(TokenParseError::NotJson { snippet, .. }) => assert_eq!(snippet.len(), 200),
            other => panic!("{other:?}"),
        }
        let cases: [(&[u8], u16, TokenParseError); 7] = [
            (b"[1]", 200, TokenParseError::NotAnObject { status: 200 }),
            (b"{}", 200, TokenParseError::NoTokens { status: 200 }),
            (
                br#"{"token_type":"Bearer","expires_in":3599}"#,
                200,
                TokenParseError::NoTokens { status: 200 },
            ),
            (
                br#"{"access_token":"a","expires_in":"soon"}"#,
                200,
                TokenParseError::InvalidField {
                    status: 200,
                    field: "expires_in",
                    expected: "a non-negative integer (number or string)",
                },
            ),
            (
                br#"{"access_token":"a","expires_in":-5}"#,
                200,
                TokenParseError::InvalidField {
                    status: 200,
                    field: "expires_in",
                    expected: "a non-negative integer (number or string)",
                },
            ),
            (
                br#"{"access_token":7}"#,
                200,
                TokenParseError::InvalidField {
                    status: 200,
                    field: "access_token",
                    expected: "a string",
                },
            ),
            (
                br#"{"access_token":"a"}"#,
                302,
                TokenParseError::UnexpectedStatus { status: 302 },
            ),
        ];
        for (body, status, expected) in cases {
            assert_eq!(
                parse_token_endpoint_response(status, body).err(),
                Some(expected.clone()),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(!expected.to_string().is_empty());
        }
        assert!(matches!(
            parse_token_endpoint_response(400, br#"{"error":null}"#),
            Err(TokenParseError::InvalidField { field: "error", .. })
        ));
        // An error member wins even with status 200.
        assert!(matches!(
            parse_token_endpoint_response(200, br#"{"error":"invalid_grant","access_token":"a"}"#),
            Ok(TokenEndpointResult::Error(_))
        ));
    }

    #[test]
    fn client_info_examples() {
        let f = fixture("client-info/client-info-examples.json");
        for case in f["cases"].as_array().unwrap() {
            let raw = case["client_info"].as_str().unwrap();
            let info = ClientInfo::decode(raw).unwrap();
            assert_eq!(
                info.uid,
                case["client_info_decoded"]["uid"].as_str().unwrap()
            );
            assert_eq!(
                info.utid,
                case["client_info_decoded"]["utid"].as_str().unwrap()
            );
            assert_eq!(
                info.home_account_id(),
                case["home_account_id"].as_str().unwrap()
            );
            // Padded and standard-alphabet forms decode the same.
            let bytes = URL_SAFE_NO_PAD.decode(raw).unwrap();
            let padded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            assert_eq!(ClientInfo::decode(&padded), Some(info.clone()));
            let url_padded = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
            assert_eq!(ClientInfo::decode(&url_padded), Some(info));
        }
        // seed-spec V5.
        let info = ClientInfo::decode("eyJ1aWQiOiAib2lkMSIsICJ1dGlkIjogInRpZCJ9").unwrap();
        assert_eq!(info.home_account_id(), "oid1.tid");
        for bad in ["", "!!!", "e30", "eyJ1aWQiOiIifQ", "bnVsbA", "W10"] {
            assert_eq!(ClientInfo::decode(bad), None, "{bad}");
        }
    }
}
