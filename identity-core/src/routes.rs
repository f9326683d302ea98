//! [`RoutePlan`]: the sign-in routes of a web app, derived from its redirect URI as the
//! Python `identity` library derives them, and [`derive_key`] for the adapters' cookie
//! keys.
//!
//! Every adapter builds one `RoutePlan` at startup and mounts its routes at the paths it
//! names:
//!
//! * the callback at the redirect URI's path (`/getAToken` for
//!   `http://localhost:5000/getAToken`);
//! * `login`, `logout`, `frontchannel_logout`, `backchannel_logout` and, with a B2C
//!   edit-profile user flow, `edit_profile` in the same directory (`/auth/login` beside
//!   `/auth/callback`);
//! * the home page (default `/`) and its absolute URL on the redirect URI's origin, the
//!   `post_logout_redirect_uri`.
//!
//! ```
//! use identity_core::RoutePlan;
//!
//! let plan = RoutePlan::from_redirect_uri(Some("https://app.example/auth/callback"), None, true)?;
//! assert_eq!(plan.callback, "/auth/callback");
//! assert_eq!(plan.login, "/auth/login");
//! assert_eq!(plan.logout, "/auth/logout");
//! assert_eq!(plan.edit_profile.as_deref(), Some("/auth/edit_profile"));
//! assert_eq!(plan.home, "/");
//! assert_eq!(plan.home_url, "https://app.example/");
//! assert!(plan.secure_cookies);
//! # Ok::<(), identity_core::Error>(())
//! ```

use crate::Error;
use sha2::{Digest, Sha512};

/// The public paths (what a browser sees) of the sign-in routes and of the home page, and
/// whether cookies are marked `Secure`, all derived from the redirect URI.
///
/// Build it with [`RoutePlan::from_redirect_uri`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePlan {
    /// The callback: the redirect URI's path (`/auth_response` for device code sign-in,
    /// where there is no redirect URI and the callback only polls).
    pub callback: String,
    /// The sign-in route, beside the callback (`…/login`).
    pub login: String,
    /// The sign-out route, beside the callback (`…/logout`).
    pub logout: String,
    /// The B2C edit-profile route, beside the callback (`…/edit_profile`), when an
    /// edit-profile user flow is configured.
    pub edit_profile: Option<String>,
    /// The front-channel logout route, beside the callback (`…/frontchannel_logout`):
    /// what to register as the app's "Front-channel logout URL" in the Entra portal
    /// (`frontchannel_logout_uri` at other providers), on the redirect URI's origin.
    pub frontchannel_logout: String,
    /// The back-channel logout route, beside the callback (`…/backchannel_logout`):
    /// the `backchannel_logout_uri` to register at providers that send logout tokens.
    pub backchannel_logout: String,
    /// The path of the app's home page (default `/`).
    pub home: String,
    /// The absolute URL of the home page on the redirect URI's origin (the
    /// `post_logout_redirect_uri`); the bare home path when there is no redirect URI.
    pub home_url: String,
    /// Whether cookies are marked `Secure`: false only for an `http` redirect URI
    /// (browsers drop `Secure` cookies over plain http).
    pub secure_cookies: bool,
    /// The redirect URI when it is plain `http` on a host that is not loopback.
    insecure_redirect_uri: Option<String>,
}

impl RoutePlan {
    /// The routes for `redirect_uri` (the `REDIRECT_URI` setting), as the Python library
    /// derives them: the callback at its path; `login`, `logout` and (when
    /// `edit_profile`) `edit_profile` in the same directory; the home page at `home`
    /// (default `/`) and its absolute URL on the redirect URI's origin.
    ///
    /// Without a redirect URI (device code sign-in) the callback is `/auth_response`, the
    /// other routes sit beside it and the home URL is the bare home path.
    ///
    /// Fails with [`Error::Config`] when the redirect URI is not an absolute URL, has no
    /// path or a path ending in `/`, or its path is one of the other routes (e.g.
    /// `…/login`), and when `home` does not start with `/`.
    pub fn from_redirect_uri(
        redirect_uri: Option<&str>,
        home: Option<&str>,
        edit_profile: bool,
    ) -> Result<RoutePlan, Error> {
        Self::from_setting("REDIRECT_URI", redirect_uri, home, edit_profile)
    }

    /// [`RoutePlan::from_redirect_uri`], naming the setting `setting` in its error
    /// messages (e.g. `redirect_uri` where settings are read in lower case).
    pub fn from_setting(
        setting: &str,
        redirect_uri: Option<&str>,
        home: Option<&str>,
        edit_profile: bool,
    ) -> Result<RoutePlan, Error> {
        let (callback, origin, parsed) = match redirect_uri {
            Some(uri) => {
                let u = url::Url::parse(uri).map_err(|e| {
                    Error::config(format!("{setting} {uri:?} is not an absolute URL: {e}"))
                })?;
                let path = u.path().to_owned();
                if path.is_empty() || path == "/" || path.ends_with('/') {
                    return Err(Error::config(format!(
                        "{setting} {uri:?} must contain a path that does not end with '/', \
                         e.g. http://localhost:5000/getAToken"
                    )));
                }
                (path, Some(u.origin().ascii_serialization()), Some(u))
            }
            // Device code sign-in: no redirect URI, the callback only polls.
            None => ("/auth_response".to_owned(), None, None),
        };
        let dir = &callback[..callback.rfind('/').unwrap_or(0)];
        let home = match home {
            Some(h) if h.starts_with('/') => h.to_owned(),
            Some(h) => {
                return Err(Error::config(format!(
                    "the home path {h:?} must start with '/'"
                )))
            }
            None => "/".to_owned(),
        };
        let home_url = match &origin {
            Some(o) => format!("{o}{home}"),
            None => home.clone(),
        };
        let (secure_cookies, insecure_redirect_uri) = match &parsed {
            Some(u) if u.scheme() == "http" => (false, (!is_loopback(u)).then(|| u.to_string())),
            _ => (true, None),
        };
        let plan = RoutePlan {
            login: format!("{dir}/login"),
            logout: format!("{dir}/logout"),
            edit_profile: edit_profile.then(|| format!("{dir}/edit_profile")),
            frontchannel_logout: format!("{dir}/frontchannel_logout"),
            backchannel_logout: format!("{dir}/backchannel_logout"),
            callback,
            home,
            home_url,
            secure_cookies,
            insecure_redirect_uri,
        };
        let taken = [
            Some(&plan.login),
            Some(&plan.logout),
            plan.edit_profile.as_ref(),
            Some(&plan.frontchannel_logout),
            Some(&plan.backchannel_logout),
        ];
        if taken.iter().flatten().any(|r| **r == plan.callback) {
            return Err(Error::config(format!(
                "{setting}'s path {:?} is one of the sign-in routes; use e.g. /getAToken",
                plan.callback
            )));
        }
        Ok(plan)
    }

    /// The routes of a default app (`/getAToken`, `/login`, `/logout`, home `/`), cookies
    /// not `Secure`: for an unconfigured app whose redirect URI cannot be used.
    pub fn fallback() -> RoutePlan {
        RoutePlan {
            callback: "/getAToken".into(),
            login: "/login".into(),
            logout: "/logout".into(),
            edit_profile: None,
            frontchannel_logout: "/frontchannel_logout".into(),
            backchannel_logout: "/backchannel_logout".into(),
            home: "/".into(),
            home_url: "/".into(),
            secure_cookies: false,
            insecure_redirect_uri: None,
        }
    }

    /// Logs a warning when the redirect URI is plain `http` on a host that is not
    /// loopback: cookies then go without the `Secure` flag and sign-ins can be
    /// intercepted. Adapters call it once, when they start configured.
    pub fn warn_if_insecure(&self) {
        if let Some(uri) = &self.insecure_redirect_uri {
            tracing::warn!(
                redirect_uri = %uri,
                "the redirect URI is plain http on a non-loopback host: cookies are sent \
                 without the Secure flag and sign-ins can be intercepted; use https"
            );
        }
    }
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A 64-byte cookie key from the app's secret (`SESSION_SECRET`): SHA-512 over `label`, a
/// zero byte, and `secret`.
///
/// The label names the key's purpose and version (e.g. `b"identity-actix session cookie
/// key v1"`), so one secret yields independent keys per purpose. Adapters must keep their
/// labels: changing one changes the key, and the cookies and sessions encrypted with the
/// old key stop opening.
pub fn derive_key(label: &[u8], secret: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(label);
    h.update([0]);
    h.update(secret);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(uri: &str) -> RoutePlan {
        RoutePlan::from_redirect_uri(Some(uri), None, false).unwrap()
    }

    fn message(e: Error) -> String {
        match e {
            Error::Config { message, .. } => message,
            other => panic!("not a configuration error: {other}"),
        }
    }

    #[test]
    fn routes_sit_beside_the_callback() {
        let p = plan("http://localhost:5000/getAToken");
        assert_eq!(p.callback, "/getAToken");
        assert_eq!(p.login, "/login");
        assert_eq!(p.logout, "/logout");
        assert_eq!(p.edit_profile, None);
        assert_eq!(p.home, "/");
        assert_eq!(p.home_url, "http://localhost:5000/");
    }

    #[test]
    fn nested_directories_keep_the_routes_together() {
        let p = RoutePlan::from_redirect_uri(Some("https://h.example/auth/callback"), None, true)
            .unwrap();
        assert_eq!(p.callback, "/auth/callback");
        assert_eq!(p.login, "/auth/login");
        assert_eq!(p.logout, "/auth/logout");
        assert_eq!(p.edit_profile.as_deref(), Some("/auth/edit_profile"));
        assert_eq!(p.home, "/");
        assert_eq!(p.home_url, "https://h.example/");

        let p = plan("https://h.example/a/b/cb?x=1");
        assert_eq!(p.callback, "/a/b/cb");
        assert_eq!(p.login, "/a/b/login");
    }

    #[test]
    fn home_is_absolute_on_the_redirect_uri_origin() {
        let p =
            RoutePlan::from_redirect_uri(Some("https://h.example:8443/cb"), Some("/app/"), false)
                .unwrap();
        assert_eq!(p.home, "/app/");
        assert_eq!(p.home_url, "https://h.example:8443/app/");

        let e = RoutePlan::from_redirect_uri(Some("http://h/cb"), Some("home"), false).unwrap_err();
        assert_eq!(message(e), "the home path \"home\" must start with '/'");
    }

    #[test]
    fn device_code_has_no_redirect_uri() {
        let p = RoutePlan::from_redirect_uri(None, None, false).unwrap();
        assert_eq!(p.callback, "/auth_response");
        assert_eq!(p.login, "/login");
        assert_eq!(p.logout, "/logout");
        assert_eq!(p.home, "/");
        assert_eq!(p.home_url, "/");
        assert!(p.secure_cookies);

        let p = RoutePlan::from_redirect_uri(None, Some("/app"), false).unwrap();
        assert_eq!(p.home_url, "/app");
    }

    #[test]
    fn bad_redirect_uris_are_refused() {
        for bad in [
            "http://h",
            "http://h/",
            "http://h/x/",
            "not a url",
            "/getAToken",
        ] {
            assert!(
                RoutePlan::from_redirect_uri(Some(bad), None, false).is_err(),
                "{bad}"
            );
        }
        let e = RoutePlan::from_redirect_uri(Some("http://h/x/"), None, false).unwrap_err();
        assert_eq!(
            message(e),
            "REDIRECT_URI \"http://h/x/\" must contain a path that does not end with '/', \
             e.g. http://localhost:5000/getAToken"
        );
        let e = RoutePlan::from_redirect_uri(Some("/getAToken"), None, false).unwrap_err();
        assert!(message(e).starts_with("REDIRECT_URI \"/getAToken\" is not an absolute URL: "));
        let e =
            RoutePlan::from_setting("redirect_uri", Some("http://h/"), None, false).unwrap_err();
        assert!(message(e).starts_with("redirect_uri \"http://h/\" must contain a path"));
    }

    #[test]
    fn a_callback_on_another_route_is_refused() {
        for bad in ["http://h/login", "http://h/a/logout"] {
            let e = RoutePlan::from_redirect_uri(Some(bad), None, false).unwrap_err();
            assert!(message(e).contains("is one of the sign-in routes"), "{bad}");
        }
        assert!(plan("http://h/edit_profile").edit_profile.is_none());
        let e =
            RoutePlan::from_redirect_uri(Some("http://h/a/edit_profile"), None, true).unwrap_err();
        assert_eq!(
            message(e),
            "REDIRECT_URI's path \"/a/edit_profile\" is one of the sign-in routes; use e.g. \
             /getAToken"
        );
    }

    #[test]
    fn cookies_are_secure_unless_http() {
        assert!(plan("https://h.example/cb").secure_cookies);
        for http in [
            "http://localhost:5000/cb",
            "http://127.0.0.1/cb",
            "http://[::1]/cb",
            "http://h.example/cb",
        ] {
            assert!(!plan(http).secure_cookies, "{http}");
        }
        assert_eq!(plan("http://localhost:5000/cb").insecure_redirect_uri, None);
        assert_eq!(plan("http://[::1]/cb").insecure_redirect_uri, None);
        assert_eq!(
            plan("http://h.example/cb").insecure_redirect_uri.as_deref(),
            Some("http://h.example/cb")
        );
        assert_eq!(plan("https://h.example/cb").insecure_redirect_uri, None);
        assert!(!RoutePlan::fallback().secure_cookies);
    }

    #[test]
    fn keys_follow_label_and_secret() {
        let a = derive_key(b"a", b"secret");
        assert_eq!(a, derive_key(b"a", b"secret"));
        assert_ne!(a, derive_key(b"b", b"secret"));
        assert_ne!(a, derive_key(b"a", b"other"));
        // The label and the secret are kept apart by the zero byte.
        assert_ne!(derive_key(b"ab", b"c"), derive_key(b"a", b"bc"));
        let mut h = Sha512::new();
        h.update(b"label\0secret");
        let expected: [u8; 64] = h.finalize().into();
        assert_eq!(derive_key(b"label", b"secret"), expected);
    }
}
