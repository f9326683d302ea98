//! Small helpers: time, random values, encoding, Entra error envelopes.

use crate::keys::b64url;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde_json::{json, Value};

/// `YYYY-MM-DD HH:MM:SSZ`, the Entra `timestamp` format.
pub(crate) fn fmt_timestamp(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// `n` random bytes, base64url.
pub(crate) fn random_b64(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut buf);
    b64url(&buf)
}

/// A random GUID string.
pub(crate) fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Percent-encode a query component (`application/x-www-form-urlencoded`).
pub(crate) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Encode key/value pairs as a query string.
pub(crate) fn encode_pairs(pairs: &[(&str, String)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish()
}

/// HTML-escape text content.
pub(crate) fn esc(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

/// HTML-escape an attribute value (double-quoted).
pub(crate) fn attr(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s).into_owned()
}

/// An OAuth error as Entra sends it from the token and discovery endpoints.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) code: u32,
    pub(crate) message: String,
    pub(crate) suberror: Option<&'static str>,
    pub(crate) claims: Option<String>,
}

impl OAuthError {
    pub(crate) fn new(error: &'static str, code: u32, message: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            code,
            message: message.into(),
            suberror: None,
            claims: None,
        }
    }
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    pub(crate) fn suberror(mut self, s: &'static str) -> Self {
        self.suberror = Some(s);
        self
    }
    pub(crate) fn claims(mut self, c: String) -> Self {
        self.claims = Some(c);
        self
    }

    /// The Entra v2 envelope: `error, error_description, error_codes, timestamp,
    /// trace_id, correlation_id, error_uri` (+ `suberror`, `claims`).
    pub(crate) fn body(&self, base: &str, now: i64, correlation: &str) -> Value {
        let trace = guid();
        let ts = fmt_timestamp(now);
        let mut v = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{base}/error?code={}", self.code),
        });
        if let Some(s) = self.suberror {
            v["suberror"] = json!(s);
        }
        if let Some(c) = &self.claims {
            v["claims"] = json!(c);
        }
        v
    }

    /// The B2C shape: only `error` and `error_description` with an AADB2C code.
    pub(crate) fn b2c_body(&self, now: i64, correlation: &str) -> Value {
        let (code, msg) = b2c_equivalent(self.code, &self.message);
        json!({
            "error": self.error,
            "error_description": format!(
                "{code}: {msg}\r\nCorrelation ID: {correlation}\r\nTimestamp: {}\r\n",
                fmt_timestamp(now)
            ),
        })
    }
}

fn b2c_equivalent(code: u32, msg: &str) -> (&'static str, String) {
    match code {
        54005 | 70008 | 70000 | 500112 | 501481 | 9002313 => (
            "AADB2C90080",
            format!(
                "The provided grant has expired. Please re-authenticate and try again. ({msg})"
            ),
        ),
        7000218 => (
            "AADB2C90079",
            "Clients must send a client_secret when redeeming a confidential grant.".into(),
        ),
        7000215 => (
            "AADB2C90081",
            "The specified client_secret does not match the expected value for this client.".into(),
        ),
        700016 => (
            "AADB2C90117",
            format!("The application was not found. ({msg})"),
        ),
        _ => ("AADB2C99002", msg.to_string()),
    }
}

/// JSON response with Entra's token-endpoint headers.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&guid()) {
        h.insert("x-ms-request-id", v);
    }
    h.insert(
        "x-ms-ests-server",
        HeaderValue::from_static("identity-testkit"),
    );
    r
}

/// HTML response.
pub(crate) fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    r
}

/// 302 to `location`, with extra `Set-Cookie` headers.
pub(crate) fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// Parse the `Cookie` header into pairs.
pub(crate) fn cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn timestamps() {
        assert_eq!(fmt_timestamp(1_700_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(fmt_timestamp(0), "1970-01-01 00:00:00Z");
    }
}
