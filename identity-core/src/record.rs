//! The identity record: what one browser session holds about its sign-in.
//!
//! Three parts, stored under separate session keys (see [`crate::store`]) so that a page
//! view reads only the user:
//!
//! * [`User`]: a bounded set of ID-token claims and the ID token's expiry. It was
//!   validated at sign-in; a page view never parses or verifies a token again.
//! * tokens: the newest refresh token, the raw ID token (for `id_token_hint` at
//!   sign-out), and access tokens per scope set (bounded).
//! * pending sign-ins keyed by `state`: at most [`MAX_PENDING`] (several tabs), each
//!   expiring after the configured minutes. A flood of anonymous requests therefore
//!   stores a few hundred bytes per session at most, and nothing outlives its minutes.

use crate::scopes::Scopes;
use crate::types::{AccessToken, IdTokenJwt, PkceVerifier, RefreshToken};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock, RwLock};

/// Claims kept from the ID token. Everything else is dropped so the record stays small.
pub const KEPT_CLAIMS: &[&str] = &[
    "name",
    "preferred_username",
    "email",
    "emails",
    "given_name",
    "family_name",
    "oid",
    "sub",
    "tid",
    "iss",
    "aud",
    "roles",
    "groups",
    "wids",
    "tfp",
    "acr",
    "idp",
    "login_hint",
    "sid",
    "upn",
    "unique_name",
    "exp",
    "iat",
    "auth_time",
    "ver",
    "amr",
    "newUser",
    "hasgroups",
    "_claim_names",
];

/// Longest string kept per claim value (longer values are dropped).
const MAX_CLAIM_LEN: usize = 1024;
/// Most array members kept per claim (Entra switches to group overage at 200 anyway).
const MAX_CLAIM_ITEMS: usize = 200;
/// Most pending sign-ins per session.
pub const MAX_PENDING: usize = 5;
/// Most cached access tokens per session.
pub const MAX_ACCESS_TOKENS: usize = 8;

/// The signed-in user.
///
/// Built once at sign-in from the validated ID token and read on every signed-in page
/// view, so it is shaped for cheap loading: the identifying claims are plain fields, and
/// the other kept claims stay raw JSON that is parsed only when a handler asks for them
/// (roles, groups, any other claim). Cloning it is cheap (the claims are shared), and
/// the engine keeps the users it parsed by their stored text, so a page view of a known
/// session parses nothing.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "UserWire")]
pub struct User {
    /// The ID token's `exp` (seconds since the epoch).
    pub expires_at: i64,
    data: Arc<UserData>,
}

#[derive(Debug)]
struct UserData {
    name: Option<String>,
    preferred_username: Option<String>,
    oid: Option<String>,
    tid: Option<String>,
    sub: Option<String>,
    /// The kept claims, as JSON text.
    claims: Box<RawValue>,
    parsed: OnceLock<Map<String, Value>>,
}

/// The stored form of a [`User`].
#[derive(Deserialize)]
struct UserWire {
    expires_at: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    claims: Box<RawValue>,
}

impl From<UserWire> for User {
    fn from(w: UserWire) -> Self {
        User {
            expires_at: w.expires_at,
            data: Arc::new(UserData {
                name: w.name,
                preferred_username: w.preferred_username,
                oid: w.oid,
                tid: w.tid,
                sub: w.sub,
                claims: w.claims,
                parsed: OnceLock::new(),
            }),
        }
    }
}

impl Serialize for User {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Ref<'a> {
            expires_at: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            preferred_username: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            oid: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            tid: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            sub: Option<&'a str>,
            claims: &'a RawValue,
        }
        let d = &*self.data;
        Ref {
            expires_at: self.expires_at,
            name: d.name.as_deref(),
            preferred_username: d.preferred_username.as_deref(),
            oid: d.oid.as_deref(),
            tid: d.tid.as_deref(),
            sub: d.sub.as_deref(),
            claims: &d.claims,
        }
        .serialize(serializer)
    }
}

impl PartialEq for User {
    fn eq(&self, other: &Self) -> bool {
        self.expires_at == other.expires_at && self.data.claims.get() == other.data.claims.get()
    }
}

impl User {
    pub(crate) fn from_claims(all: &Map<String, Value>, expires_at: i64) -> Self {
        let mut claims = Map::new();
        for &name in KEPT_CLAIMS {
            if let Some(v) = all.get(name) {
                if let Some(v) = bounded(v) {
                    claims.insert(name.to_owned(), v);
                }
            }
        }
        let field = |n: &str| claims.get(n).and_then(Value::as_str).map(str::to_owned);
        let raw = serde_json::value::to_raw_value(&claims)
            .unwrap_or_else(|_| RawValue::from_string("{}".to_owned()).unwrap_or_default());
        User {
            expires_at,
            data: Arc::new(UserData {
                name: field("name"),
                preferred_username: field("preferred_username"),
                oid: field("oid"),
                tid: field("tid"),
                sub: field("sub"),
                claims: raw,
                parsed: OnceLock::new(),
            }),
        }
    }

    /// All kept claims (parsed on first use).
    pub fn claims(&self) -> &Map<String, Value> {
        let d = &*self.data;
        d.parsed
            .get_or_init(|| serde_json::from_str(d.claims.get()).unwrap_or_default())
    }

    /// A string claim.
    pub fn claim(&self, name: &str) -> Option<&str> {
        let field = match name {
            "name" => &self.data.name,
            "preferred_username" => &self.data.preferred_username,
            "oid" => &self.data.oid,
            "tid" => &self.data.tid,
            "sub" => &self.data.sub,
            _ => return self.claims().get(name).and_then(Value::as_str),
        };
        // Records written before the fields existed carry the claim only in `claims`.
        field
            .as_deref()
            .or_else(|| self.claims().get(name).and_then(Value::as_str))
    }
    /// `name`.
    pub fn name(&self) -> Option<&str> {
        self.claim("name")
    }
    /// `preferred_username` (mutable; never use it as an identifier).
    pub fn preferred_username(&self) -> Option<&str> {
        self.claim("preferred_username")
    }
    /// `oid`: the user's object id in the tenant.
    pub fn oid(&self) -> Option<&str> {
        self.claim("oid")
    }
    /// `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.claim("sub")
    }
    /// `tid`: the tenant that signed the user in (absent on B2C).
    pub fn tid(&self) -> Option<&str> {
        self.claim("tid")
    }
    /// App roles (`roles`).
    pub fn roles(&self) -> Vec<&str> {
        self.list("roles")
    }
    /// Group ids (`groups`) as the ID token carried them. Empty when the token carried
    /// a group overage instead (see [`has_group_overage`](Self::has_group_overage)); use
    /// [`Identity::user_groups`](crate::Identity::user_groups), which resolves an overage.
    pub fn groups(&self) -> Vec<&str> {
        self.list("groups")
    }
    /// Whether the ID token replaced `groups` by a group overage: `_claim_names` names
    /// `groups` (the code flow), or `hasgroups` is `true` (the implicit flow).
    pub fn has_group_overage(&self) -> bool {
        let claims = self.claims();
        let named = claims
            .get("_claim_names")
            .and_then(Value::as_object)
            .is_some_and(|names| names.contains_key("groups"));
        named || claims.get("hasgroups").and_then(Value::as_bool) == Some(true)
    }
    /// Whether the user has this app role.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().contains(&role)
    }
    /// Whether the ID token lists this group. With a group overage it lists none: use
    /// [`Identity::is_member_of`](crate::Identity::is_member_of) instead.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups().iter().any(|g| g.eq_ignore_ascii_case(group))
    }
    /// A stable identifier: `tid`/`oid` when present, else `iss`/`sub`.
    pub fn id(&self) -> String {
        match (self.tid(), self.oid()) {
            (Some(t), Some(o)) => format!("{t}/{o}"),
            _ => format!(
                "{}/{}",
                self.claim("iss").unwrap_or(""),
                self.sub().unwrap_or("")
            ),
        }
    }
    fn list(&self, name: &str) -> Vec<&str> {
        self.claims()
            .get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// The users a process parsed, by their stored JSON text: a page view whose session holds
/// a user text seen before gets the parsed [`User`] (a shared clone) instead of parsing
/// it again. The parse is a pure function of the text and the whole text is compared on
/// a hit, so this changes no outcome; it only saves work. Bounded: when full, it starts
/// over empty (one parse per active session follows).
#[derive(Debug)]
pub(crate) struct UserCache {
    capacity: usize,
    /// Seeded per process; a collision only costs a parse (the text is compared).
    hasher: foldhash::fast::RandomState,
    /// Read-mostly: page views of known users share the read lock.
    map: RwLock<HashMap<u64, (Box<str>, User)>>,
}

impl Default for UserCache {
    fn default() -> Self {
        UserCache::new(DEFAULT_USER_CACHE)
    }
}

/// Default size of a [`UserCache`] (users; about a kilobyte each).
pub(crate) const DEFAULT_USER_CACHE: usize = 4096;

impl UserCache {
    /// A cache of at most `capacity` users (`0`: parse every time).
    pub(crate) fn new(capacity: usize) -> Self {
        UserCache {
            capacity,
            hasher: foldhash::fast::RandomState::default(),
            map: RwLock::default(),
        }
    }

    /// The user stored as `text`, from the cache or parsed.
    pub(crate) fn parse(&self, text: &str) -> serde_json::Result<User> {
        if self.capacity == 0 {
            return serde_json::from_str(text);
        }
        let key = self.hasher.hash_one(text);
        {
            let map = self.map.read().unwrap_or_else(|p| p.into_inner());
            if let Some((known, user)) = map.get(&key) {
                if **known == *text {
                    return Ok(user.clone());
                }
            }
        }
        let user: User = serde_json::from_str(text)?;
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, (text.into(), user.clone()));
        Ok(user)
    }
}

fn bounded(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) if s.len() > MAX_CLAIM_LEN => None,
        Value::Array(a) => Some(Value::Array(
            a.iter()
                .take(MAX_CLAIM_ITEMS)
                .filter(|x| !matches!(x, Value::String(s) if s.len() > MAX_CLAIM_LEN))
                .cloned()
                .collect(),
        )),
        Value::Object(o) if o.len() > 16 => None,
        other => Some(other.clone()),
    }
}

/// An access token cached for a scope set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CachedToken {
    pub(crate) key: String,
    pub(crate) scopes: Scopes,
    pub(crate) access_token: AccessToken,
    pub(crate) expires_at: i64,
}

/// The token part of the record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Tokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<RefreshToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<IdTokenJwt>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) access_tokens: Vec<CachedToken>,
    /// The B2C user flow that issued the refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<String>,
}

impl Tokens {
    pub(crate) fn find(&self, key: &str) -> Option<&CachedToken> {
        self.access_tokens.iter().find(|t| t.key == key)
    }

    pub(crate) fn put(&mut self, token: CachedToken) {
        self.access_tokens.retain(|t| t.key != token.key);
        self.access_tokens.push(token);
        if self.access_tokens.len() > MAX_ACCESS_TOKENS {
            self.access_tokens
                .sort_by_key(|t| std::cmp::Reverse(t.expires_at));
            self.access_tokens.truncate(MAX_ACCESS_TOKENS);
        }
    }
}

/// What a pending sign-in is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Sign-in (or incremental consent).
    SignIn,
    /// B2C edit-profile user flow.
    EditProfile,
    /// B2C reset-password user flow.
    ResetPassword,
}

/// One sign-in started by `log_in` and not completed yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingLogin {
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) verifier: PkceVerifier,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: Scopes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) next_link: Option<String>,
    pub(crate) created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<String>,
    pub(crate) purpose: Purpose,
}

/// Pending sign-ins of one session.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) logins: Vec<PendingLogin>,
}

impl Pending {
    /// The JSON text of these pending sign-ins: what `serde_json::to_string` writes
    /// (a test holds the two equal), written in one pass. The strings of a pending
    /// sign-in are random tokens and URLs, which need no escaping: they are copied as
    /// they are, and only a string that does need it goes through `serde_json`.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.logins.len() * 320);
        out.push_str("{\"logins\":[");
        for (i, login) in self.logins.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            login.write_json(&mut out);
        }
        out.push_str("]}");
        out
    }
}

impl PendingLogin {
    fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        let field = |out: &mut String, name: &str, value: &str| {
            out.push_str(name);
            push_json_str(out, value);
        };
        field(out, "{\"state\":", &self.state);
        field(out, ",\"nonce\":", &self.nonce);
        field(out, ",\"verifier\":", self.verifier.secret());
        field(out, ",\"redirect_uri\":", &self.redirect_uri);
        out.push_str(",\"scopes\":[");
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(out, scope);
        }
        out.push(']');
        if let Some(next) = &self.next_link {
            field(out, ",\"next_link\":", next);
        }
        let _ = write!(out, ",\"created_at\":{}", self.created_at);
        if let Some(policy) = &self.policy {
            field(out, ",\"policy\":", policy);
        }
        field(out, ",\"purpose\":", self.purpose.wire_name());
        out.push('}');
    }
}

impl Purpose {
    /// The serialised name (`rename_all = "snake_case"`; a test holds them equal).
    fn wire_name(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign_in",
            Purpose::EditProfile => "edit_profile",
            Purpose::ResetPassword => "reset_password",
        }
    }
}

/// `text` as a JSON string, exactly as `serde_json` writes it.
fn push_json_str(out: &mut String, text: &str) {
    // No early exit: the scan is one vectorised pass over the bytes.
    let needs_escape = text.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else if let Ok(escaped) = serde_json::to_string(text) {
        out.push_str(&escaped);
    }
}

impl Pending {
    /// Drops expired entries, then adds `login`, evicting the oldest beyond [`MAX_PENDING`].
    pub(crate) fn push(&mut self, login: PendingLogin, now: i64, ttl: i64) {
        self.purge(now, ttl);
        self.logins.push(login);
        if self.logins.len() > MAX_PENDING {
            let excess = self.logins.len() - MAX_PENDING;
            self.logins.drain(..excess);
        }
    }

    pub(crate) fn purge(&mut self, now: i64, ttl: i64) {
        self.logins
            .retain(|l| now - l.created_at <= ttl && l.created_at <= now + 60);
    }

    /// Removes and returns the entry for `state`, if present and fresh.
    pub(crate) fn take(&mut self, state: &str, now: i64, ttl: i64) -> Option<PendingLogin> {
        self.purge(now, ttl);
        let pos = self
            .logins
            .iter()
            .position(|l| crate::jwt::constant_time_eq(l.state.as_bytes(), state.as_bytes()))?;
        Some(self.logins.remove(pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_json_is_what_serde_json_writes() {
        let plain = login("c8Wa5JMFh-TBlro3_67Xof9pFounz9BqRv7LNxbadj4", 1_700_000_000);
        let mut odd = login("st\"ate\\ \u{1}\n\t é 😀 </script>", -5);
        odd.scopes = Scopes::parse("openid profile offline_access User.Read");
        odd.next_link = Some("/a?b=\"c\"&d=\u{7f}\u{2028}".into());
        odd.policy = Some("B2C_1_signupsignin".into());
        odd.purpose = Purpose::EditProfile;
        let mut reset = login("r", 0);
        reset.purpose = Purpose::ResetPassword;
        reset.next_link = Some(String::new());
        for logins in [vec![], vec![plain.clone()], vec![plain, odd, reset]] {
            let pending = Pending { logins };
            assert_eq!(pending.to_json(), serde_json::to_string(&pending).unwrap());
            let back: Pending = serde_json::from_str(&pending.to_json()).unwrap();
            assert_eq!(back.logins.len(), pending.logins.len());
        }
    }

    fn login(state: &str, at: i64) -> PendingLogin {
        PendingLogin {
            state: state.into(),
            nonce: "n".into(),
            verifier: PkceVerifier::new("v"),
            redirect_uri: "http://localhost/cb".into(),
            scopes: Scopes::default(),
            next_link: None,
            created_at: at,
            policy: None,
            purpose: Purpose::SignIn,
        }
    }

    #[test]
    fn pending_is_bounded_and_expires() {
        let mut p = Pending::default();
        for i in 0..20 {
            p.push(login(&format!("s{i}"), 1000), 1000, 600);
        }
        assert_eq!(p.logins.len(), MAX_PENDING);
        assert!(p.take("s0", 1000, 600).is_none(), "oldest evicted");
        assert!(p.take("s19", 1000, 600).is_some());
        assert!(p.take("s19", 1000, 600).is_none(), "single use");
        assert!(p.take("s18", 1000 + 601, 600).is_none(), "expired");
        assert!(p.logins.is_empty(), "expired entries purged");
    }

    #[test]
    fn user_round_trips_and_reads_older_records() {
        let mut all = Map::new();
        all.insert("name".into(), Value::from("Adele"));
        all.insert("oid".into(), Value::from("o"));
        all.insert("roles".into(), Value::from(vec!["Reader"]));
        let u = User::from_claims(&all, 7);
        let text = serde_json::to_string(&u).unwrap();
        let back: User = serde_json::from_str(&text).unwrap();
        assert_eq!(back, u);
        assert_eq!(back.name(), Some("Adele"));
        assert!(back.has_role("Reader"));
        let old: User =
            serde_json::from_str(r#"{"claims":{"name":"Old","tid":"t"},"expires_at":1}"#).unwrap();
        assert_eq!(old.name(), Some("Old"));
        assert_eq!(old.tid(), Some("t"));
        assert_eq!(old.oid(), None);
    }

    #[test]
    fn user_keeps_only_bounded_claims() {
        let mut all = Map::new();
        all.insert("name".into(), Value::from("Adele"));
        all.insert("secret_blob".into(), Value::from("x"));
        all.insert("email".into(), Value::from("y".repeat(5000)));
        all.insert(
            "groups".into(),
            Value::from((0..500).map(|i| i.to_string()).collect::<Vec<_>>()),
        );
        let u = User::from_claims(&all, 5);
        assert_eq!(u.name(), Some("Adele"));
        assert!(!u.claims().contains_key("secret_blob"));
        assert!(!u.claims().contains_key("email"));
        assert_eq!(u.groups().len(), MAX_CLAIM_ITEMS);
    }
}
