//! Logout notifications the testkit sends when a user signs out at it, in Entra's
//! shapes: front-channel logout URLs loaded in hidden iframes of the sign-out page with
//! `?sid=` only, and back-channel logout tokens POSTed to the apps' back-channel URIs
//! (OpenID Connect Back-Channel Logout 1.0; Entra itself does not send these, panva's
//! oidc-provider, Keycloak and Okta do).

use crate::server::Shared;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One notification to send for an ended provider session.
#[derive(Clone, Debug)]
pub(crate) enum Notice {
    /// A front-channel logout URL (with `?sid=`), for an iframe of the sign-out page.
    Frame(String),
    /// A back-channel logout token for `uri`.
    Back { uri: String, token: String },
}

/// A back-channel logout token the testkit sent, and how the app answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutDelivery {
    /// Where it was POSTed.
    pub uri: String,
    /// The signed `logout_token`.
    pub token: String,
    /// The app's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it could not be delivered, if it was not.
    pub error: Option<String>,
}

/// Sends the back-channel notices (each bounded by 5 s) before the sign-out page is
/// answered, and records them.
pub(crate) async fn deliver(sh: &Shared, notices: Vec<Notice>) {
    for notice in notices {
        let Notice::Back { uri, token } = notice else {
            continue;
        };
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            post_form(&uri, "logout_token", &token),
        )
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()));
        tracing::info!(%uri, ?outcome, "back-channel logout sent");
        let (status, error) = match outcome {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        sh.state().logout_deliveries.push(LogoutDelivery {
            uri,
            token,
            status,
            error,
        });
    }
}

/// POSTs one form field over plain HTTP/1.1 (back-channel URIs of local apps) and
/// returns the status code.
pub async fn post_form(uri: &str, name: &str, value: &str) -> Result<u16, String> {
    let url = url::Url::parse(uri).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err("the testkit sends back-channel logout over http only".into());
    }
    let host = url.host_str().ok_or("no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        if n == 0 || answer.len() > 8192 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.lines().next()))
}
