//! Claims challenges (Conditional Access step-up, Continuous Access Evaluation).
//!
//! A protected resource that needs more claims answers `401` with
//! `WWW-Authenticate: Bearer realm="", authorization_uri="…", error="insufficient_claims",
//! claims="<base64>"`. Rules encoded here:
//!
//! * The header is parsed as RFC 9110 auth-params, never by position: any parameter order,
//!   quoted values with `\` escapes, unquoted values, extra or non-standard parameters
//!   (`client_id`, camelCase `errorDescription`), several challenges in one header, and a
//!   `token68` (kept as a parameter with an empty name). Malformed input yields whatever could
//!   be recognised; the parser never panics.
//! * The same claims request travels in three encodings: **standard base64** (padded or not)
//!   in `WWW-Authenticate`; a **raw JSON string** in the token endpoint's error body (`claims`);
//!   and **URL/form-encoded raw JSON** in the `claims` parameter of the next authorize or token
//!   request. [`ClaimsChallenge`] always holds the raw JSON, validated as a JSON object and
//!   kept byte for byte.
//! * **Client capabilities.** An app that declares capabilities (`cp1`: it can handle CAE
//!   challenges, and so receives long-lived tokens) sends
//!   `{"access_token":{"xms_cc":{"values":["cp1"]}}}`, merged into any challenge under
//!   `access_token` (replacing an `xms_cc` already there), as MSAL does
//!   ([`ClaimsChallenge::merge_capabilities`]).
//! * A request that carries a claims challenge must bypass the token cache.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One challenge of a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WwwAuthenticate {
    /// The auth scheme as written, e.g. `Bearer` (compare case-insensitively).
    pub scheme: String,
    /// The auth-params in order, names as written, values unquoted and unescaped. A `token68`
    /// appears with an empty name.
    pub params: Vec<(String, String)>,
}

impl WwwAuthenticate {
    /// The value of the first parameter named `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges. Tolerant: unrecognisable
/// characters are skipped.
pub fn parse_www_authenticate(header: &str) -> Vec<WwwAuthenticate> {
    let mut p = Parser {
        chars: header.chars().collect(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|c| c == ',' || c.is_whitespace());
        if p.at_end() {
            break;
        }
        let Some(scheme) = p.token() else {
            p.pos += 1; // not a token character: skip it
            continue;
        };
        let mut params = Vec::new();
        if let Some(t68) = p.token68() {
            params.push((String::new(), t68));
        }
        loop {
            p.skip(|c| c == ',' || c.is_whitespace());
            if p.at_end() {
                break;
            }
            let start = p.pos;
            let Some(name) = p.token() else {
                p.pos += 1;
                continue;
            };
            p.skip(char::is_whitespace);
            if p.peek() != Some('=') {
                p.pos = start; // the next challenge's scheme
                break;
            }
            p.pos += 1;
            p.skip(char::is_whitespace);
            let value = if p.peek() == Some('"') {
                p.quoted()
            } else {
                p.take_while(|c| c != ',' && !c.is_whitespace())
            };
            params.push((name, value));
        }
        out.push(WwwAuthenticate { scheme, params });
    }
    out
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip(&mut self, f: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        self.skip(f);
        self.chars[start..self.pos].iter().collect()
    }

    /// An RFC 9110 token.
    fn token(&mut self) -> Option<String> {
        let t = self.take_while(is_tchar);
        (!t.is_empty()).then_some(t)
    }

    /// A token68 right after the scheme: `1*(ALPHA / DIGIT / "-._~+/") *"="` followed by the
    /// end or a comma. Leaves the position unchanged otherwise.
    fn token68(&mut self) -> Option<String> {
        let start = self.pos;
        self.skip(char::is_whitespace);
        let value_start = self.pos;
        self.skip(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c));
        if self.pos > value_start {
            self.skip(|c| c == '=');
            let end = self.pos;
            self.skip(char::is_whitespace);
            if self.at_end() || self.peek() == Some(',') {
                return Some(self.chars[value_start..end].iter().collect());
            }
        }
        self.pos = start;
        None
    }

    /// A quoted-string starting at `"`; an unterminated one runs to the end.
    fn quoted(&mut self) -> String {
        self.pos += 1;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                '"' => break,
                '\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.pos += 1;
                    }
                }
                c => out.push(c),
            }
        }
        out
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A claims request (raw JSON object) to send as the `claims` parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct ClaimsChallenge(String);

impl ClaimsChallenge {
    /// The claims challenge of a resource's `WWW-Authenticate` header: the first `Bearer`
    /// challenge with `error="insufficient_claims"` and a `claims` parameter that decodes
    /// (standard or URL-safe base64, padded or not) to a JSON object.
    pub fn from_www_authenticate(header: &str) -> Option<Self> {
        parse_www_authenticate(header)
            .iter()
            .filter(|c| c.scheme.eq_ignore_ascii_case("Bearer"))
            .filter(|c| {
                c.param("error")
                    .is_some_and(|e| e.eq_ignore_ascii_case("insufficient_claims"))
            })
            .filter_map(|c| c.param("claims"))
            .find_map(|b64| {
                let json = String::from_utf8(decode_base64(b64)?).ok()?;
                Self::from_json(&json)
            })
    }

    /// A claims challenge given as raw JSON (the token endpoint's `claims` member). `None`
    /// unless it is a JSON object.
    pub fn from_json(raw: &str) -> Option<Self> {
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(_)) => Some(Self(raw.to_owned())),
            _ => None,
        }
    }

    /// The raw JSON.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `claims` parameter to send: the challenge with the client capabilities merged in
    /// as `{"access_token":{"xms_cc":{"values":[…]}}}`. Empty capability strings are ignored;
    /// `None` when there is neither a challenge nor a capability.
    pub fn merge_capabilities(
        challenge: Option<&ClaimsChallenge>,
        capabilities: &[String],
    ) -> Option<ClaimsChallenge> {
        let caps: Vec<&str> = capabilities
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .collect();
        if caps.is_empty() {
            return challenge.cloned();
        }
        let mut root: Map<String, Value> = challenge
            .and_then(|c| serde_json::from_str(&c.0).ok())
            .unwrap_or_default();
        let access_token = root
            .entry("access_token")
            .or_insert_with(|| Value::Object(Map::new()));
        if !access_token.is_object() {
            *access_token = Value::Object(Map::new());
        }
        if let Value::Object(at) = access_token {
            at.insert("xms_cc".to_owned(), json!({ "values": caps }));
        }
        Some(Self(Value::Object(root).to_string()))
    }
}

impl TryFrom<String> for ClaimsChallenge {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::from_json(&raw).ok_or_else(|| "a claims challenge must be a JSON object".to_owned())
    }
}

fn decode_base64(input: &str) -> Option<Vec<u8>> {
    let normalised: String = input
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    STANDARD_NO_PAD.decode(normalised).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn fixture(path: &str) -> Value {
        let full = format!("{}/fixtures/entra/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn graph_cae_header() {
        let f = fixture("claims-challenge/www-authenticate-cae-graph.json");
        let header = f["headers"]["WWW-Authenticate"].as_str().unwrap();
        let challenges = parse_www_authenticate(header);
        assert_eq!(challenges.len(), 1);
        let c = &challenges[0];
        assert_eq!(c.scheme, "Bearer");
        for (name, value) in f["parsed"].as_object().unwrap() {
            if name == "scheme" {
                continue;
            }
            assert_eq!(c.param(name), value.as_str(), "{name}");
        }
        assert_eq!(c.param("ERRORDESCRIPTION"), c.param("errorDescription"));
        let claims = ClaimsChallenge::from_www_authenticate(header).unwrap();
        assert_eq!(claims.as_str(), f["claims_decoded"].as_str().unwrap());
    }

    #[test]
    fn docs_examples() {
        let f = fixture("claims-challenge/www-authenticate-docs-examples.json");
        for ex in f["examples"].as_array().unwrap() {
            let header = ex["headers"]["WWW-Authenticate"].as_str().unwrap();
            let claims = ClaimsChallenge::from_www_authenticate(header).unwrap();
            assert_eq!(claims.as_str(), ex["claims_decoded"].as_str().unwrap());
        }
    }

    #[test]
    fn merge_rule() {
        let f = fixture("claims-challenge/claims-request-parameter.json");
        let cp1 = vec!["cp1".to_owned()];
        let only = ClaimsChallenge::merge_capabilities(None, &cp1).unwrap();
        assert_eq!(
            only.as_str(),
            f["client_capability_only"]["json"].as_str().unwrap()
        );
        let encoded: String = form_urlencoded::byte_serialize(only.as_str().as_bytes()).collect();
        assert_eq!(
            encoded,
            f["client_capability_only"]["authorize_query_value"]
                .as_str()
                .unwrap()
        );

        let challenge =
            ClaimsChallenge::from_json(f["challenge_from_resource"]["json"].as_str().unwrap())
                .unwrap();
        let merged = ClaimsChallenge::merge_capabilities(Some(&challenge), &cp1).unwrap();
        let expected: Value = serde_json::from_str(
            f["capability_merged_with_challenge"]["json"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(merged.as_str()).unwrap(),
            expected
        );

        assert_eq!(ClaimsChallenge::merge_capabilities(None, &[]), None);
        assert_eq!(
            ClaimsChallenge::merge_capabilities(None, &[" ".to_owned()]),
            None
        );
        assert_eq!(
            ClaimsChallenge::merge_capabilities(Some(&challenge), &[]),
            Some(challenge.clone())
        );
        // An existing xms_cc is replaced; other members are kept; odd shapes are repaired.
        let odd = ClaimsChallenge::from_json(
            r#"{"id_token":{"auth_time":{"essential":true}},"access_token":{"xms_cc":{"values":["old"]}}}"#,
        )
        .unwrap();
        let merged: Value = serde_json::from_str(
            ClaimsChallenge::merge_capabilities(Some(&odd), &cp1)
                .unwrap()
                .as_str(),
        )
        .unwrap();
        assert_eq!(merged["access_token"]["xms_cc"]["values"], json!(["cp1"]));
        assert_eq!(merged["id_token"]["auth_time"]["essential"], json!(true));
        let not_obj = ClaimsChallenge::from_json(r#"{"access_token":5}"#).unwrap();
        let merged = ClaimsChallenge::merge_capabilities(Some(&not_obj), &cp1).unwrap();
        assert_eq!(merged.as_str(), only.as_str());
    }

    #[test]
    fn token_endpoint_claims_member() {
        let f = fixture("token-responses/error-interaction-required-50079-claims.json");
        let raw = f["body"]["claims"].as_str().unwrap();
        assert_eq!(ClaimsChallenge::from_json(raw).unwrap().as_str(), raw);
        for bad in ["", "[]", "\"x\"", "{", "null", "eyJ9"] {
            assert_eq!(ClaimsChallenge::from_json(bad), None, "{bad}");
        }
        let c: ClaimsChallenge = serde_json::from_str(r#""{\"a\":{}}""#).unwrap();
        assert_eq!(c.as_str(), r#"{"a":{}}"#);
        assert!(serde_json::from_str::<ClaimsChallenge>(r#""[1]""#).is_err());
        assert_eq!(serde_json::to_string(&c).unwrap(), r#""{\"a\":{}}""#);
    }

    #[test]
    fn several_challenges_escapes_and_token68() {
        let h = r#"Basic realm="x, \"y\"", Negotiate, Bearer error=insufficient_claims, claims=eyJhIjp7fX0 , Basic dXNlcjpwdw=="#;
        let c = parse_www_authenticate(h);
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Negotiate", "Bearer", "Basic"]);
        assert_eq!(c[0].param("realm"), Some(r#"x, "y""#));
        assert!(c[1].params.is_empty());
        assert_eq!(c[2].param("claims"), Some("eyJhIjp7fX0"));
        assert_eq!(c[3].params, [(String::new(), "dXNlcjpwdw==".to_owned())]);
        assert_eq!(
            ClaimsChallenge::from_www_authenticate(h).unwrap().as_str(),
            r#"{"a":{}}"#
        );
        // URL-safe alphabet and whitespace are tolerated.
        let c = parse_www_authenticate(
            r#"bearer  error = "INSUFFICIENT_CLAIMS" ,claims="eyJh Ijp7fX0=""#,
        );
        assert_eq!(c[0].param("error"), Some("INSUFFICIENT_CLAIMS"));
        assert!(ClaimsChallenge::from_www_authenticate(
            r#"bearer  error = "INSUFFICIENT_CLAIMS" ,claims="eyJh Ijp7fX0=""#
        )
        .is_some());
    }

    #[test]
    fn rejects_non_challenges() {
        let obj = base64::engine::general_purpose::STANDARD.encode(r#"{"a":1}"#);
        let arr = base64::engine::general_purpose::STANDARD.encode("[1]");
        for h in [
            format!(r#"Basic error="insufficient_claims", claims="{obj}""#),
            format!(r#"Bearer error="invalid_token", claims="{obj}""#),
            format!(r#"Bearer claims="{obj}""#),
            format!(r#"Bearer error="insufficient_claims", claims="{arr}""#),
            r#"Bearer error="insufficient_claims", claims="!!!""#.to_owned(),
            r#"Bearer error="insufficient_claims", claims="/w==""#.to_owned(),
            r#"Bearer error="insufficient_claims""#.to_owned(),
            String::new(),
        ] {
            assert_eq!(ClaimsChallenge::from_www_authenticate(&h), None, "{h}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for h in [
            "",
            "\"",
            "=",
            ",,,",
            "Bearer",
            "Bearer ",
            "Bearer error=",
            "Bearer error=\"",
            "Bearer error=\"\\",
            "Bearer =x",
            "Bearer a==b",
            "ü ö=ä, \u{0}=\u{7f}",
            "Bearer realm=\"\u{1F600}\\\u{1F600}\"",
            "\\\\\\\"\"\"",
        ] {
            let _ = parse_www_authenticate(h);
            let _ = ClaimsChallenge::from_www_authenticate(h);
        }
        let alphabet: Vec<char> = "Bearer error=\"insufficient_claims\", claims=eyJ\\ =,\t\"é🦀"
            .chars()
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..5_000 {
            let len = rng.gen_range(0..60);
            let s: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let _ = parse_www_authenticate(&s);
            let _ = ClaimsChallenge::from_www_authenticate(&s);
        }
    }
}
