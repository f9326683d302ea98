//! A minimal scripted browser for the smoke checks (std only, plain `http://`): it keeps
//! cookies per host and port as a browser does, follows redirects and the login page's
//! `meta refresh`, and so signs a user in through the local provider's auto-approve mode.

use crate::Result;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One answer, read in full.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Cookies per `host:port`, as a browser keeps them (`localhost` and `127.0.0.1` are
/// different sites).
#[derive(Default)]
pub(crate) struct Browser {
    jar: BTreeMap<String, BTreeMap<String, String>>,
}

/// `http://host:port/path?query` split into `host:port` and `/path?query`.
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are followed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

/// `location` resolved against the URL it came from.
fn resolve(base: &str, location: &str) -> Result<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_owned());
    }
    let (authority, _) = split_url(base)?;
    if location.starts_with('/') {
        Ok(format!("http://{authority}{location}"))
    } else {
        Err(format!(
            "{base}: relative redirect {location:?} is not followed"
        ))
    }
}

/// The target of `<meta http-equiv="refresh" content="0; URL=...">`, HTML-unescaped.
fn meta_refresh(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let at = lower.find("http-equiv=\"refresh\"")?;
    let content = at + lower[at..].find("url=")? + 4;
    let end = content + body[content..].find(['"', '\''])?;
    Some(unescape(&body[content..end]))
}

/// Replaces HTML character references (`&amp;`, `&#38;`, `&#x2f;` ...) with characters.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

impl Browser {
    /// `GET url` with this browser's cookies for its host; stores the cookies it sets.
    pub(crate) fn get(&mut self, url: &str) -> Result<Answer> {
        let (authority, path) = split_url(url)?;
        let cookies = self
            .jar
            .get(&authority)
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        // `localhost` resolves to every loopback address; connect tries each in turn.
        // An app may print its address just before it listens: retry for a few seconds.
        let mut attempt = 0;
        let mut stream = loop {
            match TcpStream::connect(&authority) {
                Ok(s) => break s,
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(format!("{url}: {e}")),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        // HTTP/1.0: the server closes the connection after the answer and sends no chunks.
        let mut request = format!(
            "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: text/html\r\nUser-Agent: xtask-smoke\r\n"
        );
        if !cookies.is_empty() {
            request.push_str(&format!("Cookie: {cookies}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("{url}: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| format!("{url}: {e}"))?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{url}: no status line"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let answer = Answer {
            status,
            headers,
            body: String::new(),
        };
        if answer
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            body = dechunk(&body);
        }
        let jar = self.jar.entry(authority).or_default();
        for (_, set) in answer
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        {
            let pair = set.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let removed = value.is_empty() || set.to_ascii_lowercase().contains("max-age=0");
            if removed {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        Ok(Answer {
            body: String::from_utf8_lossy(&body).into_owned(),
            ..answer
        })
    }

    /// Opens `url` and follows redirects and `meta refresh`es (at most ten hops); returns
    /// the last answer and the hops, one `status url` line each.
    pub(crate) fn open(&mut self, url: &str) -> Result<(Answer, Vec<String>)> {
        let mut url = url.to_owned();
        let mut hops = Vec::new();
        for _ in 0..10 {
            let answer = self.get(&url)?;
            hops.push(format!("{} {url}", answer.status));
            let next = match answer.header("location") {
                Some(location) if (300..400).contains(&answer.status) => resolve(&url, location)?,
                _ => match meta_refresh(&answer.body) {
                    Some(target) => resolve(&url, &target)?,
                    None => return Ok((answer, hops)),
                },
            };
            url = next;
        }
        Err(format!("more than ten hops:\n  {}", hops.join("\n  ")))
    }
}

/// Signs in through the app at `home` as a newcomer would: an anonymous visit to the
/// protected page must lead to the provider's sign-in (`provider` is its `host:port`),
/// which in auto-approve mode sends the browser back signed in; the page must then show
/// `name`. The redirect and the 401 login page with a `meta refresh` both count as
/// "leads to the sign-in".
pub(crate) fn sign_in(home: &str, provider: &str, name: &str) -> Result<Vec<String>> {
    let mut browser = Browser::default();
    let (page, hops) = browser.open(home)?;
    let trace = || format!("\n  {}", hops.join("\n  "));
    let authorize = format!("http://{provider}/");
    let reached_sign_in = hops
        .iter()
        .filter_map(|h| h.split_once(' ').map(|(_, url)| url))
        .any(|url| url.starts_with(&authorize) && url.contains("/authorize?"));
    if !reached_sign_in {
        return Err(format!(
            "an anonymous visit to {home} did not lead to the provider's sign-in:{}",
            trace()
        ));
    }
    if page.status != 200 || !page.body.contains(name) {
        return Err(format!(
            "after signing in, {home} answered {} without the user's name {name:?}:{}\n{}",
            page.status,
            trace(),
            page.body.chars().take(400).collect::<String>()
        ));
    }
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_refresh_targets_are_unescaped() {
        let page = r#"<head><meta http-equiv="refresh" content="0; URL=http://127.0.0.1:1/t/oauth2/v2.0/authorize?a=1&amp;b=2"></head>"#;
        assert_eq!(
            meta_refresh(page).as_deref(),
            Some("http://127.0.0.1:1/t/oauth2/v2.0/authorize?a=1&b=2")
        );
        assert_eq!(meta_refresh("<p>no refresh</p>"), None);
        assert_eq!(unescape("a=1&#38;b=&#x2F;&#39;&lt; & x"), "a=1&b=/'< & x");
    }

    #[test]
    fn redirects_resolve_against_their_origin() {
        assert_eq!(
            resolve("http://localhost:5000/a/b", "/login?next=%2F").unwrap(),
            "http://localhost:5000/login?next=%2F"
        );
        assert_eq!(
            resolve("http://localhost:5000/", "http://127.0.0.1:8080/x").unwrap(),
            "http://127.0.0.1:8080/x"
        );
        assert_eq!(
            split_url("http://localhost/").unwrap(),
            ("localhost:80".to_owned(), "/".to_owned())
        );
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
    }
}
