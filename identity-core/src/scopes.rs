//! OAuth scopes as Entra uses them.
//!
//! Rules encoded here:
//!
//! * A [`Scopes`] value is a set: sorted (byte order, as MSAL sends them:
//!   `User.Read offline_access openid profile`) and without exact duplicates. Items given with
//!   embedded whitespace are split.
//! * **Reserved scopes** `openid profile offline_access` are added to every sign-in
//!   ([`Scopes::with_reserved`]) exactly once, whatever case the caller used, and never count
//!   as missing from a grant (Entra may leave `openid`/`offline_access` out of `scope`).
//! * **Equivalent spellings.** Entra compares scopes case-insensitively. Microsoft Graph is the
//!   default resource, so `User.Read`, `https://graph.microsoft.com/User.Read` and
//!   `00000003-0000-0000-c000-000000000000/User.Read` name the same permission (also for the
//!   national Graph hosts), and Graph scopes come back in the short form. Any other resource
//!   prefix is significant: a grant for a custom API is reported in full
//!   (`api://{app}/access_as_user`), so a requested `api://{app}/access_as_user` is matched
//!   only by that full form, and a bare granted `access_as_user` (which would mean Graph) does
//!   not satisfy it.
//! * **`.default`** (`https://graph.microsoft.com/.default`, `api://{app}/.default`) asks for
//!   whatever was consented; the response lists the individual permissions instead, so a
//!   `.default` request never counts as ungranted.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// The OpenID Connect scopes added to every sign-in.
pub const RESERVED_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// The reserved scopes as a `scope` parameter (sorted, space separated).
const RESERVED_WIRE: &str = "offline_access openid profile";

/// Resource prefixes of Microsoft Graph (the default resource), lowercase.
const GRAPH_PREFIXES: [&str; 6] = [
    "https://graph.microsoft.com/",
    "00000003-0000-0000-c000-000000000000/",
    "https://graph.microsoft.us/",
    "https://dod-graph.microsoft.us/",
    "https://microsoftgraph.chinacloudapi.cn/",
    "https://graph.microsoft.de/",
];

/// An ordered, de-duplicated set of scopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(from = "Vec<String>")]
pub struct Scopes(Vec<String>);

/// A JSON array of the scopes, as they are (no copy of the set first).
impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Scopes {
    /// Builds a set from scope strings (items containing whitespace are split).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        let mut items: Vec<String> = Vec::new();
        for s in scopes {
            let s: String = s.into();
            if !s.is_empty() && !s.contains(char::is_whitespace) {
                // One scope: kept as it is, without another copy.
                items.push(s);
            } else {
                items.extend(s.split_whitespace().map(str::to_owned));
            }
        }
        items.sort();
        items.dedup();
        Self(items)
    }

    /// Parses a space-separated list (the `scope` parameter or a `SCOPE` setting).
    pub fn parse(space_separated: &str) -> Self {
        Self::new(space_separated.split_whitespace())
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `scope` parameter: sorted and space separated.
    pub fn to_wire(&self) -> String {
        self.0.join(" ")
    }

    /// These scopes plus `openid profile offline_access`, each exactly once (a reserved scope
    /// given in another case is replaced by the lowercase one).
    pub fn with_reserved(&self) -> Scopes {
        let mut out = self.without_reserved().0;
        out.extend(RESERVED_SCOPES.iter().map(|s| (*s).to_owned()));
        // Every item is one scope already: sort and deduplicate as `new` does.
        out.sort();
        out.dedup();
        Self(out)
    }

    /// The `scope` parameter of [`with_reserved`](Self::with_reserved), without building
    /// the set when these scopes are reserved ones only (the plain sign-in).
    pub(crate) fn wire_with_reserved(&self) -> std::borrow::Cow<'static, str> {
        if self.iter().all(is_reserved) {
            std::borrow::Cow::Borrowed(RESERVED_WIRE)
        } else {
            std::borrow::Cow::Owned(self.with_reserved().to_wire())
        }
    }

    /// These scopes without `openid profile offline_access` (any case).
    pub fn without_reserved(&self) -> Scopes {
        Self(
            self.iter()
                .filter(|s| !is_reserved(s))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// A normalised key for token caches: lowercase, Graph resource prefix removed, reserved
    /// scopes removed, sorted, space separated.
    pub fn cache_key(&self) -> String {
        let mut keys: Vec<String> = self
            .iter()
            .filter(|s| !is_reserved(s))
            .map(normalise)
            .collect();
        keys.sort();
        keys.dedup();
        keys.join(" ")
    }

    /// The requested scopes that `granted` (a response's `scope`) does not cover, compared
    /// case-insensitively with Graph prefixes ignored. Reserved scopes and `.default` never
    /// count as ungranted. See the [module documentation](self) for custom APIs.
    pub fn ungranted(&self, granted: &str) -> Scopes {
        let granted: HashSet<String> = granted.split_whitespace().map(normalise).collect();
        Self(
            self.iter()
                .filter(|s| !is_reserved(s) && !is_default(s))
                .filter(|s| !granted.contains(&normalise(s)))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether every scope of `other` (reserved scopes aside) is in this set, with the same
    /// equivalences as [`ungranted`](Self::ungranted). Unlike `ungranted`, `.default` is an
    /// ordinary scope here.
    pub fn contains_all(&self, other: &Scopes) -> bool {
        let mine: HashSet<String> = self.iter().map(normalise).collect();
        other
            .iter()
            .filter(|s| !is_reserved(s))
            .all(|s| mine.contains(&normalise(s)))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

impl From<Vec<String>> for Scopes {
    fn from(v: Vec<String>) -> Self {
        Self::new(v)
    }
}

impl From<Scopes> for Vec<String> {
    fn from(s: Scopes) -> Self {
        s.0
    }
}

fn is_reserved(scope: &str) -> bool {
    RESERVED_SCOPES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(scope))
}

fn is_default(scope: &str) -> bool {
    let lower = scope.to_ascii_lowercase();
    lower == ".default" || lower.ends_with("/.default")
}

/// Lowercase, with a Graph resource prefix removed.
fn normalise(scope: &str) -> String {
    let lower = scope.to_lowercase();
    for prefix in GRAPH_PREFIXES {
        if let Some(rest) = lower.strip_prefix(prefix) {
            if !rest.is_empty() {
                return rest.to_owned();
            }
        }
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_parameter_with_reserved_scopes_only_is_the_constant() {
        for text in ["", "openid", "OpenID profile offline_access"] {
            let scopes = Scopes::parse(text);
            assert_eq!(
                scopes.wire_with_reserved(),
                scopes.with_reserved().to_wire()
            );
            assert_eq!(scopes.wire_with_reserved(), RESERVED_WIRE);
        }
        let scopes = Scopes::parse("User.Read openid");
        assert_eq!(
            scopes.wire_with_reserved(),
            "User.Read offline_access openid profile"
        );
    }

    #[test]
    fn json_form_is_the_array_of_the_sorted_scopes() {
        let scopes = Scopes::parse("User.Read openid Mail.Read");
        let text = serde_json::to_string(&scopes).unwrap();
        assert_eq!(text, r#"["Mail.Read","User.Read","openid"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&text).unwrap(), scopes);
    }

    #[test]
    fn set_semantics_and_wire_form() {
        let s = Scopes::new(["User.Read", "Mail.Read User.Read", " ", "offline_access"]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.to_wire(), "Mail.Read User.Read offline_access");
        assert_eq!(Scopes::parse("  b   a b "), Scopes::new(["a", "b"]));
        assert!(Scopes::parse("").is_empty());
        assert_eq!(Scopes::default().to_wire(), "");
        // seed-spec V2 / V7: sorted, reserved added.
        assert_eq!(
            Scopes::parse("User.Read").with_reserved().to_wire(),
            "User.Read offline_access openid profile"
        );
        assert_eq!(
            Scopes::default().with_reserved().to_wire(),
            "offline_access openid profile"
        );
        assert_eq!(
            Scopes::parse("OpenID Profile openid User.Read")
                .with_reserved()
                .to_wire(),
            "User.Read offline_access openid profile"
        );
        assert_eq!(
            Scopes::parse("OpenID User.Read offline_access")
                .without_reserved()
                .to_wire(),
            "User.Read"
        );
        assert_eq!(Scopes::parse("a b").iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(Scopes::parse("b a").to_string(), "a b");
    }

    #[test]
    fn serde_normalises() {
        let s: Scopes = serde_json::from_str(r#"["b","a","b"]"#).unwrap();
        assert_eq!(s, Scopes::parse("a b"));
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"["a","b"]"#);
    }

    #[test]
    fn cache_key_normalises() {
        let a = Scopes::parse("https://graph.microsoft.com/User.Read openid Mail.Read");
        let b = Scopes::parse("mail.read 00000003-0000-0000-c000-000000000000/user.read profile");
        assert_eq!(a.cache_key(), "mail.read user.read");
        assert_eq!(a.cache_key(), b.cache_key());
        assert_ne!(
            Scopes::parse("api://x/access_as_user").cache_key(),
            Scopes::parse("access_as_user").cache_key()
        );
    }

    #[test]
    fn ungranted_rules() {
        let requested = Scopes::parse(
            "User.Read https://graph.microsoft.com/Mail.Read api://app/access_as_user \
             https://graph.microsoft.com/.default openid profile offline_access",
        );
        // Graph scopes come back short; custom API in full; reserved scopes left out.
        let granted = "user.read Mail.Read api://app/access_as_user email";
        assert!(requested.ungranted(granted).is_empty());

        let short_custom = "User.Read Mail.Read access_as_user";
        assert_eq!(
            requested.ungranted(short_custom).to_wire(),
            "api://app/access_as_user"
        );
        assert_eq!(
            Scopes::parse("00000003-0000-0000-c000-000000000000/Files.Read")
                .ungranted("https://graph.microsoft.com/files.read"),
            Scopes::default()
        );
        assert_eq!(
            Scopes::parse("Calendars.Read User.Read")
                .ungranted("User.Read")
                .to_wire(),
            "Calendars.Read"
        );
        // A short requested scope means Graph: a custom API grant does not cover it.
        assert_eq!(
            Scopes::parse("access_as_user")
                .ungranted("api://app/access_as_user")
                .to_wire(),
            "access_as_user"
        );
        // B2C returns an empty scope for openid-only requests.
        assert!(Scopes::parse("openid offline_access")
            .ungranted("")
            .is_empty());
        assert!(Scopes::parse("api://app/.default").ungranted("").is_empty());
        // Other resources are not interchangeable.
        assert_eq!(
            Scopes::parse("https://management.azure.com/user_impersonation")
                .ungranted("user_impersonation")
                .len(),
            1
        );
    }

    #[test]
    fn contains_all_rules() {
        let cached = Scopes::parse("https://graph.microsoft.com/User.Read Mail.Read openid");
        assert!(cached.contains_all(&Scopes::parse("user.read")));
        assert!(cached.contains_all(&Scopes::parse("User.Read profile offline_access")));
        assert!(!cached.contains_all(&Scopes::parse("User.Read Files.Read")));
        assert!(!cached.contains_all(&Scopes::parse(".default")));
        assert!(cached.contains_all(&Scopes::default()));
    }
}
