//! Cookie rules: names (`__Host-` over https), flags, and the sealed pending sign-in
//! cookie.
//!
//! Every cookie the library sets is `HttpOnly`, `SameSite=Lax` (`Strict` would drop it
//! when the provider redirects back), `Path=/`, and `Secure` with the `__Host-` prefix
//! whenever the redirect URI is https — also when the app itself listens on plain http
//! behind a TLS-terminating proxy, which is how production deployments run. Over plain
//! http (loopback development) the names lose the prefix and the `Secure` flag, which
//! browsers would otherwise refuse.

use serde_json::Value;
use std::time::Duration;

/// The session cookie's base name (`__Host-identity` over https).
pub const SESSION_COOKIE: &str = "identity";
/// The pending sign-in cookie's base name (`__Host-identity_pending` over https).
pub const PENDING_COOKIE: &str = "identity_pending";
/// Largest sealed pending-cookie value written: older pending sign-ins (other tabs) are
/// dropped beyond it, so the cookie and the session cookie together stay far below the
/// 4 KB browsers accept per cookie.
pub const PENDING_COOKIE_BUDGET: usize = 2048;
/// Hard limit for a cookie holding a single pending sign-in.
const PENDING_COOKIE_MAX: usize = 3800;

/// The cookie names and flags of one app, derived from its redirect URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookiePolicy {
    secure: bool,
    session_name: String,
    pending_name: String,
    pending_ttl: Duration,
}

impl CookiePolicy {
    /// The policy for an app whose redirect URI is https (`secure`) or plain http.
    pub fn new(secure: bool, pending_ttl: Duration) -> CookiePolicy {
        let name = |base: &str| {
            if secure {
                format!("__Host-{base}")
            } else {
                base.to_owned()
            }
        };
        CookiePolicy {
            secure,
            session_name: name(SESSION_COOKIE),
            pending_name: name(PENDING_COOKIE),
            pending_ttl,
        }
    }

    /// Whether cookies carry `Secure` (and the `__Host-` prefix).
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The session cookie's name: `__Host-identity` over https, `identity` over http.
    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    /// The pending sign-in cookie's name.
    pub fn pending_name(&self) -> &str {
        &self.pending_name
    }

    /// How long a pending sign-in cookie lives (the core's pending sign-in lifetime).
    pub fn pending_ttl(&self) -> Duration {
        self.pending_ttl
    }

    /// A `Set-Cookie` value with this policy's flags; `max_age` `None` makes a browser
    /// session cookie, `Some(ZERO)` removes the cookie.
    ///
    /// Written directly, in the order and form of the `cookie` crate's `Set-Cookie`
    /// (a login page sends one; formatting through the crate cost a few thousand
    /// instructions). `name` and `value` are the engine's: a cookie name and a sealed or
    /// URL-safe value, neither of which needs quoting.
    pub fn set_cookie(&self, name: &str, value: &str, max_age: Option<Duration>) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(name.len() + value.len() + 72);
        out.push_str(name);
        out.push('=');
        out.push_str(value);
        out.push_str("; HttpOnly; SameSite=Lax");
        if self.secure {
            out.push_str("; Secure");
        }
        out.push_str("; Path=/");
        if let Some(age) = max_age {
            let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
            // Writing to a `String` cannot fail.
            let _ = write!(out, "; Max-Age={secs}");
        }
        out
    }
}

/// The value of cookie `name` in a request's `Cookie` header values.
pub fn find_cookie<'h>(headers: impl IntoIterator<Item = &'h str>, name: &str) -> Option<&'h str> {
    headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

/// Seals and opens the pending sign-in cookie (AES-256-GCM with a key derived from the
/// session secret; the cookie name is bound into the seal).
///
/// The sealed form is the `cookie` crate's private cookie value: standard base64 (with
/// padding) of a random 12-byte nonce, the ciphertext and the 16-byte tag, the cookie
/// name as associated data, the second half of the 64-byte key as the AES key. Values
/// sealed by either open with the other. The ciphers are keyed once, when the seal is
/// made.
#[derive(Clone)]
pub struct PendingSeal {
    /// The current key first, then keys of previous secrets (still opened, never used
    /// to seal).
    keys: Vec<aes_gcm::Aes256Gcm>,
}

/// The nonce's and the tag's lengths in a sealed value.
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

impl std::fmt::Debug for PendingSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingSeal([redacted])")
    }
}

impl PendingSeal {
    /// A seal from 64 bytes of key material.
    pub fn new(key: &[u8; 64]) -> PendingSeal {
        Self::with_previous(key, &[])
    }

    /// A seal that seals with `key` and still opens what `previous` keys sealed (secret
    /// rotation).
    pub fn with_previous(key: &[u8; 64], previous: &[[u8; 64]]) -> PendingSeal {
        use aes_gcm::KeyInit;
        PendingSeal {
            keys: std::iter::once(key)
                .chain(previous)
                .map(|k| {
                    aes_gcm::Aes256Gcm::new(aes_gcm::Key::<aes_gcm::Aes256Gcm>::from_slice(
                        &k[32..],
                    ))
                })
                .collect(),
        }
    }

    /// Opens a value sealed under `name` with any of the keys; `None` when it was
    /// tampered with or sealed with an unknown key.
    pub fn open_text(&self, name: &str, sealed: &str) -> Option<String> {
        use aes_gcm::aead::{Aead, Payload};
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if data.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, msg) = data.split_at(NONCE_LEN);
        let nonce = aes_gcm::Nonce::from_slice(nonce);
        let payload = || Payload {
            msg,
            aad: name.as_bytes(),
        };
        let plain = self
            .keys
            .iter()
            .find_map(|key| key.decrypt(nonce, payload()).ok())?;
        String::from_utf8(plain).ok()
    }

    /// Seals `plain` under `name` (the name is bound into the seal) with the current key.
    pub fn seal_text(&self, name: &str, plain: &str) -> Option<String> {
        use aes_gcm::AeadInPlace;
        use base64::Engine;
        use rand::RngCore;
        let key = self.keys.first()?;
        let mut data = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        data.resize(NONCE_LEN, 0);
        rand::thread_rng().fill_bytes(&mut data);
        data.extend_from_slice(plain.as_bytes());
        let (nonce, msg) = data.split_at_mut(NONCE_LEN);
        let tag = key
            .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(nonce), name.as_bytes(), msg)
            .ok()?;
        data.extend_from_slice(&tag);
        Some(base64::engine::general_purpose::STANDARD.encode(&data))
    }

    /// Opens a sealed value; `None` when it was tampered with or sealed with another key.
    pub fn open(&self, name: &str, sealed: &str) -> Option<Value> {
        let Some(plain) = self.open_text(name, sealed) else {
            tracing::info!(
                "the pending sign-in cookie does not open (tampered, or SESSION_SECRET \
                 differs between instances or restarts); ignoring it"
            );
            return None;
        };
        serde_json::from_str(&plain).ok()
    }

    /// [`seal`](Self::seal) from the JSON text of the pending sign-ins: the text is sealed
    /// as it is when it fits the budget (the common case: no parse into a tree and no
    /// second serialisation); otherwise the entries are dropped as `seal` does.
    pub(crate) fn seal_json(&self, name: &str, text: String) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Logins {
            logins: Vec<serde::de::IgnoredAny>,
        }
        let count = |text: &str| {
            serde_json::from_str::<Logins>(text)
                .map(|l| l.logins.len())
                .unwrap_or(0)
        };
        // The core writes `{"logins":[...]}` (compact): an empty list is known without a
        // parse, and a seal within the budget needs no count.
        if text.starts_with(r#"{"logins":[]"#) {
            return None;
        }
        let standard = text.starts_with(r#"{"logins":[{"#);
        let sealed = self.seal_text(name, &text)?;
        if standard && sealed.len() <= PENDING_COOKIE_BUDGET {
            return Some(sealed);
        }
        let n = count(&text);
        if n == 0 {
            return None;
        }
        if n <= 1 && sealed.len() <= PENDING_COOKIE_MAX {
            return Some(sealed);
        }
        self.seal(name, serde_json::from_str(&text).ok()?)
    }

    /// Opens the pending sign-ins cookie to its JSON text; `None` (and a log line) when
    /// it was tampered with or sealed with another key.
    pub(crate) fn open_json(&self, name: &str, sealed: &str) -> Option<String> {
        let plain = self.open_text(name, sealed);
        if plain.is_none() {
            tracing::info!(
                "the pending sign-in cookie does not open (tampered, or SESSION_SECRET \
                 differs between instances or restarts); ignoring it"
            );
        }
        plain
    }

    /// Seals the pending sign-ins (`{"logins": [...]}`, oldest first). Drops the oldest
    /// entries until the value fits [`PENDING_COOKIE_BUDGET`] (a single sign-in with a very
    /// long next link loses the link, not the sign-in); `None` when nothing is left, which
    /// means "remove the cookie".
    pub fn seal(&self, name: &str, mut value: Value) -> Option<String> {
        let logins_len = |v: &Value| {
            v.get("logins")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0)
        };
        if logins_len(&value) == 0 {
            return None;
        }
        loop {
            let sealed = self.seal_text(name, &value.to_string())?;
            let n = logins_len(&value);
            if sealed.len() <= PENDING_COOKIE_BUDGET
                || (n <= 1 && sealed.len() <= PENDING_COOKIE_MAX)
            {
                return Some(sealed);
            }
            let logins = value.get_mut("logins")?.as_array_mut()?;
            if n > 1 {
                // Oldest first: the newest tab's sign-in is kept.
                logins.remove(0);
            } else {
                let only = logins.first_mut()?.as_object_mut()?;
                if only.remove("next_link").is_none() {
                    tracing::warn!("a pending sign-in does not fit in a cookie; dropping it");
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The seal is the `cookie` crate's private cookie: each opens what the other sealed
    /// (pending sign-ins started before an upgrade still complete), under the same name
    /// only, and a changed byte or another key opens nothing.
    #[test]
    fn the_seal_is_the_cookie_crates_private_cookie() {
        let master: [u8; 64] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let other: [u8; 64] = std::array::from_fn(|i| (i * 5 + 1) as u8);
        let key = cookie::Key::from(&master);
        let seal = super::PendingSeal::new(&master);
        for plain in ["", "x", r#"{"logins":[{"state":"é"}]}"#, &"a".repeat(3000)] {
            let ours = seal.seal_text("identity.pending", plain).unwrap();
            let opened = cookie::CookieJar::new()
                .private(&key)
                .decrypt(cookie::Cookie::new("identity.pending", ours.clone()))
                .map(|c| c.value().to_owned());
            assert_eq!(opened.as_deref(), Some(plain));
            let mut jar = cookie::CookieJar::new();
            jar.private_mut(&key)
                .add(cookie::Cookie::new("identity.pending", plain.to_owned()));
            let theirs = jar.get("identity.pending").unwrap().value().to_owned();
            assert_eq!(
                seal.open_text("identity.pending", &theirs).as_deref(),
                Some(plain)
            );
            assert_eq!(
                seal.open_text("identity.other", &ours),
                None,
                "another name"
            );
            let rotated = super::PendingSeal::with_previous(&other, &[master]);
            assert_eq!(
                rotated.open_text("identity.pending", &ours).as_deref(),
                Some(plain)
            );
            assert_eq!(
                super::PendingSeal::new(&other).open_text("identity.pending", &ours),
                None
            );
            let mut bytes = ours.into_bytes();
            bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            assert_eq!(
                seal.open_text("identity.pending", &altered),
                None,
                "altered"
            );
        }
        assert_eq!(
            seal.open_text("identity.pending", "AAAA"),
            None,
            "too short"
        );
        assert_eq!(seal.open_text("identity.pending", "not base64!"), None);
    }

    /// The `Set-Cookie` value is the one the `cookie` crate builds for the same flags.
    #[test]
    fn set_cookie_is_the_cookie_crates_form() {
        for secure in [false, true] {
            let policy = super::CookiePolicy::new(secure, std::time::Duration::from_secs(600));
            for max_age in [None, Some(0), Some(600), Some(u64::MAX)] {
                let age = max_age.map(std::time::Duration::from_secs);
                let mut built = cookie::Cookie::build(("identity", "a+b/c=="))
                    .http_only(true)
                    .secure(secure)
                    .same_site(cookie::SameSite::Lax)
                    .path("/");
                if let Some(age) = age {
                    let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
                    built = built.max_age(cookie::time::Duration::seconds(secs));
                }
                assert_eq!(
                    policy.set_cookie("identity", "a+b/c==", age),
                    built.build().to_string(),
                    "secure {secure}, max-age {max_age:?}"
                );
            }
        }
    }

    use super::*;

    fn login(i: usize, next: &str) -> Value {
        serde_json::json!({
            "state": format!("{i:0>43}"),
            "nonce": "n".repeat(43),
            "verifier": "v".repeat(43),
            "redirect_uri": "https://app.example/getAToken",
            "scopes": ["User.Read"],
            "next_link": next,
            "created_at": 1_700_000_000 + i,
            "purpose": "sign_in",
        })
    }

    #[test]
    fn names_carry_the_host_prefix_over_https_only() {
        let https = CookiePolicy::new(true, Duration::from_secs(600));
        assert_eq!(https.session_name(), "__Host-identity");
        assert_eq!(https.pending_name(), "__Host-identity_pending");
        let c = https.set_cookie(https.pending_name(), "v", Some(Duration::from_secs(600)));
        for flag in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=600",
        ] {
            assert!(c.contains(flag), "{c}");
        }
        let http = CookiePolicy::new(false, Duration::from_secs(600));
        assert_eq!(http.session_name(), "identity");
        let c = http.set_cookie(http.session_name(), "v", None);
        assert!(!c.contains("Secure") && c.contains("HttpOnly"), "{c}");
    }

    #[test]
    fn the_pending_cookie_stays_within_budget_and_keeps_the_newest() {
        let seal = PendingSeal::new(&[7; 64]);
        let logins: Vec<Value> = (0..8).map(|i| login(i, "/call_api?x=1")).collect();
        let sealed = seal
            .seal(PENDING_COOKIE, serde_json::json!({ "logins": logins }))
            .unwrap();
        assert!(sealed.len() <= PENDING_COOKIE_BUDGET, "{}", sealed.len());
        let v = seal.open(PENDING_COOKIE, &sealed).unwrap();
        let kept = v["logins"].as_array().unwrap();
        assert!(kept.len() >= 2);
        assert_eq!(kept.last().unwrap()["created_at"], 1_700_000_007);
        // Bound to its name and key.
        assert!(seal.open("__Host-identity_pending", &sealed).is_none());
        assert!(PendingSeal::new(&[8; 64])
            .open(PENDING_COOKIE, &sealed)
            .is_none());
    }

    #[test]
    fn a_huge_next_link_is_dropped_not_the_sign_in() {
        let seal = PendingSeal::new(&[7; 64]);
        let long = format!("/{}", "a".repeat(3000));
        let sealed = seal
            .seal(
                PENDING_COOKIE,
                serde_json::json!({ "logins": [login(1, &long)] }),
            )
            .unwrap();
        assert!(sealed.len() <= PENDING_COOKIE_MAX);
        let v = seal.open(PENDING_COOKIE, &sealed).unwrap();
        assert!(v["logins"][0].get("next_link").is_none());
        assert!(seal
            .seal(PENDING_COOKIE, serde_json::json!({ "logins": [] }))
            .is_none());
    }

    #[test]
    fn sealing_the_json_text_keeps_it_as_is_within_budget_and_trims_like_seal_beyond() {
        let seal = PendingSeal::new(&[7; 64]);
        let one = serde_json::json!({ "logins": [login(1, "/a")] }).to_string();
        let sealed = seal.seal_json(PENDING_COOKIE, one.clone()).unwrap();
        assert_eq!(
            seal.open_json(PENDING_COOKIE, &sealed).as_deref(),
            Some(&*one)
        );
        let many: Vec<Value> = (0..8).map(|i| login(i, "/call_api?x=1")).collect();
        let sealed = seal
            .seal_json(
                PENDING_COOKIE,
                serde_json::json!({ "logins": many }).to_string(),
            )
            .unwrap();
        assert!(sealed.len() <= PENDING_COOKIE_BUDGET, "{}", sealed.len());
        let kept = seal.open(PENDING_COOKIE, &sealed).unwrap();
        assert_eq!(
            kept["logins"].as_array().unwrap().last().unwrap()["created_at"],
            1_700_000_007
        );
        assert!(seal
            .seal_json(PENDING_COOKIE, r#"{"logins":[]}"#.to_owned())
            .is_none());
        assert!(seal.open_json("other", &sealed).is_none());
    }

    #[test]
    fn cookie_lookup_reads_every_header() {
        let headers = ["a=1; identity_pending=xyz", "identity=2"];
        assert_eq!(find_cookie(headers, PENDING_COOKIE), Some("xyz"));
        assert_eq!(find_cookie(headers, SESSION_COOKIE), Some("2"));
        assert_eq!(find_cookie(headers, "b"), None);
    }
}
