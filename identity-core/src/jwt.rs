//! Compact JWS parsing and token validation (ID tokens and access tokens).
//!
//! A token received through the browser is never trusted on its TLS origin alone: the
//! signature is checked against the provider's JWKS, with only the asymmetric algorithms
//! the provider advertises (never `none`, never HMAC), then `iss` by the
//! [`IssuerPolicy`](crate::issuer::IssuerPolicy), `aud`/`azp`, `exp`, `nbf`, `iat` with a
//! bounded clock skew, and the `nonce` of the sign-in. ID tokens must carry `sub` and
//! `iat` (OpenID Connect Core §2). Time claims are compared with saturating arithmetic:
//! absurd values are refused, never wrapped.

use crate::error::TokenRejection;
use crate::issuer::{IssuerClaims, IssuerPolicy};
use crate::metadata::{KeySet, SigningKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::CoreJwsSigningAlgorithm;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// The largest clock skew the library accepts (5 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The JOSE header members we use.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) x5t: Option<String>,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Clone, Debug)]
pub(crate) struct UnverifiedJwt {
    pub(crate) header: Header,
    pub(crate) claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl UnverifiedJwt {
    /// Splits and decodes a compact JWS. Never panics.
    pub(crate) fn parse(token: &str) -> Result<Self, TokenRejection> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed(
                "not three dot-separated parts".into(),
            ));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part.trim_end_matches('='))
                .map_err(|_| TokenRejection::Malformed(format!("{what} is not base64url")))
        };
        let header: Header = serde_json::from_slice(&decode(h, "header")?).map_err(|_| {
            TokenRejection::Malformed("header is not a JSON object with alg".into())
        })?;
        let claims: Map<String, Value> = serde_json::from_slice(&decode(p, "payload")?)
            .map_err(|_| TokenRejection::Malformed("payload is not a JSON object".into()))?;
        let signature = decode(s, "signature")?;
        Ok(Self {
            header,
            claims,
            signing_input: format!("{h}.{p}"),
            signature,
        })
    }

    /// The key id (`kid`, else `x5t`).
    pub(crate) fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref().or(self.header.x5t.as_deref())
    }

    pub(crate) fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Maps an `alg` to an asymmetric algorithm we verify. HMAC and `none` are refused.
fn asymmetric_alg(alg: &str) -> Option<CoreJwsSigningAlgorithm> {
    Some(match alg {
        "RS256" => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        "RS384" => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
        "RS512" => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
        "PS256" => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        "PS384" => CoreJwsSigningAlgorithm::RsaSsaPssSha384,
        "PS512" => CoreJwsSigningAlgorithm::RsaSsaPssSha512,
        "ES256" => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        "ES384" => CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        "EdDSA" => CoreJwsSigningAlgorithm::EdDsa,
        _ => return None,
    })
}

/// What a token must satisfy.
#[derive(Clone, Debug)]
pub(crate) struct Expectations<'a> {
    pub(crate) issuer: &'a IssuerPolicy,
    /// Accepted audiences (client id for ID tokens; API ids for access tokens).
    pub(crate) audiences: &'a [String],
    /// For ID tokens: `azp` must equal this when `aud` has several members.
    pub(crate) azp: Option<&'a str>,
    pub(crate) nonce: Option<&'a str>,
    /// An ID token: `sub` and `iat` are required (OpenID Connect Core §2).
    pub(crate) id_token: bool,
    /// A back-channel logout token: `iat` is required, `exp` optional, `nonce` forbidden.
    pub(crate) logout_token: bool,
    pub(crate) now: i64,
    pub(crate) skew: Duration,
}

/// Verifies the signature with `keys`. Returns `UnknownKey` if no key has the token's kid.
pub(crate) fn verify_signature(
    jwt: &UnverifiedJwt,
    keys: &KeySet,
    advertised: &[String],
) -> Result<(), TokenRejection> {
    verifying_key(jwt, keys, advertised).map(|_| ())
}

/// Verifies the signature with `keys` and returns the key that verified it.
pub(crate) fn verifying_key<'k>(
    jwt: &'k UnverifiedJwt,
    keys: &'k KeySet,
    advertised: &[String],
) -> Result<&'k SigningKey, TokenRejection> {
    let alg_name = jwt.header.alg.as_str();
    let advertised_ok = if advertised.is_empty() {
        alg_name == "RS256"
    } else {
        advertised.iter().any(|a| a == alg_name)
    };
    let alg = match asymmetric_alg(alg_name) {
        Some(alg) if advertised_ok => alg,
        _ => return Err(TokenRejection::Algorithm(alg_name.to_owned())),
    };
    let kid = jwt.kid();
    let mut any = false;
    for key in keys.candidates(kid) {
        any = true;
        if key.verify(&alg, jwt.signing_input.as_bytes(), &jwt.signature) {
            return Ok(key);
        }
    }
    if any {
        Err(TokenRejection::Signature)
    } else {
        Err(TokenRejection::UnknownKey(kid.unwrap_or("").to_owned()))
    }
}

/// The issuer of the key that verifies `jwt` (for Entra's key scoping).
pub(crate) fn key_issuer<'k>(jwt: &'k UnverifiedJwt, keys: &'k KeySet) -> Option<&'k str> {
    let alg = asymmetric_alg(&jwt.header.alg)?;
    keys.candidates(jwt.kid())
        .find(|k| k.verify(&alg, jwt.signing_input.as_bytes(), &jwt.signature))
        .and_then(|k| k.issuer.as_deref())
}

fn num_claim(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    match claims.get(name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Checks everything but the signature (done before, with the key set).
pub(crate) fn check_claims(
    jwt: &UnverifiedJwt,
    keys: &KeySet,
    exp: &Expectations<'_>,
) -> Result<(), TokenRejection> {
    check_claims_signed_by(jwt, key_issuer(jwt, keys), exp)
}

/// [`check_claims`] for a token whose signature was verified by a key whose own
/// `issuer` member is `signing_key_issuer` (no second verification).
pub(crate) fn check_claims_signed_by(
    jwt: &UnverifiedJwt,
    signing_key_issuer: Option<&str>,
    exp: &Expectations<'_>,
) -> Result<(), TokenRejection> {
    let claims = &jwt.claims;
    let iss = jwt
        .str_claim("iss")
        .ok_or(TokenRejection::MissingClaim("iss"))?;
    let tid = jwt.str_claim("tid");
    exp.issuer
        .check(&IssuerClaims {
            iss,
            tid,
            tfp: jwt.str_claim("tfp"),
            acr: jwt.str_claim("acr"),
        })
        .map_err(|e| TokenRejection::Issuer(e.to_string()))?;
    exp.issuer
        .check_signing_key_issuer(signing_key_issuer, iss, tid)
        .map_err(|e| TokenRejection::Issuer(e.to_string()))?;

    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenRejection::MissingClaim("aud")),
    };
    if !auds.iter().any(|a| exp.audiences.iter().any(|e| e == a)) {
        return Err(TokenRejection::Audience(format!(
            "aud {auds:?} does not contain {:?}",
            exp.audiences
        )));
    }
    if let Some(client_id) = exp.azp {
        if auds.len() > 1 && jwt.str_claim("azp") != Some(client_id) {
            return Err(TokenRejection::Audience(format!(
                "several audiences and azp {:?} is not the client id",
                jwt.str_claim("azp")
            )));
        }
    }

    if exp.id_token {
        if jwt.str_claim("sub").is_none_or(str::is_empty) {
            return Err(TokenRejection::MissingClaim("sub"));
        }
        if num_claim(claims, "iat").is_none() {
            return Err(TokenRejection::MissingClaim("iat"));
        }
    }
    if exp.logout_token {
        if num_claim(claims, "iat").is_none() {
            return Err(TokenRejection::MissingClaim("iat"));
        }
        if claims.contains_key("nonce") {
            return Err(TokenRejection::NotALogoutToken("it carries a nonce"));
        }
    }
    let skew = exp.skew.min(MAX_CLOCK_SKEW).as_secs() as i64;
    match num_claim(claims, "exp") {
        Some(expiry) if exp.now > expiry.saturating_add(skew) => {
            return Err(TokenRejection::Expired)
        }
        Some(_) => {}
        None if exp.logout_token => {}
        None => return Err(TokenRejection::MissingClaim("exp")),
    }
    for name in ["nbf", "iat"] {
        if let Some(t) = num_claim(claims, name) {
            if t > exp.now.saturating_add(skew) {
                return Err(TokenRejection::NotYetValid);
            }
        }
    }
    if let Some(nonce) = exp.nonce {
        if !constant_time_eq(
            jwt.str_claim("nonce").unwrap_or("").as_bytes(),
            nonce.as_bytes(),
        ) {
            return Err(TokenRejection::Nonce);
        }
    }
    Ok(())
}

/// Reads a numeric claim (numbers or numeric strings).
pub(crate) fn numeric(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    num_claim(claims, name)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_tokens_never_panic() {
        for t in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "e30.e30",
            "W10.e30.",
            "e30.W10.",
            "\u{0}.\u{1}.\u{2}",
        ] {
            assert!(
                matches!(UnverifiedJwt::parse(t), Err(TokenRejection::Malformed(_))),
                "{t:?}"
            );
        }
        // Structurally valid (alg none, empty signature): parsed, then refused at verification.
        assert!(UnverifiedJwt::parse("eyJhbGciOiJub25lIn0.e30.").is_ok());
        assert!(matches!(
            UnverifiedJwt::parse("a.b"),
            Err(TokenRejection::Malformed(_))
        ));
    }

    mod properties {
        use super::super::*;
        use crate::authority::Authority;
        use proptest::prelude::*;

        fn b64(v: &Value) -> String {
            URL_SAFE_NO_PAD.encode(v.to_string())
        }

        fn claim_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::json!(f)),
                ".{0,24}".prop_map(Value::from),
                prop::collection::vec(".{0,8}".prop_map(Value::from), 0..3).prop_map(Value::from),
            ]
        }

        fn claims() -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::vec(
                (
                    prop::sample::select(
                        &[
                            "iss", "aud", "exp", "nbf", "iat", "sub", "tid", "nonce", "azp", "tfp",
                        ][..],
                    ),
                    claim_value(),
                ),
                0..10,
            )
            .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn parsing_never_panics(token in ".{0,300}") {
                let _ = UnverifiedJwt::parse(&token);
            }

            #[test]
            fn parsed_tokens_are_checked_without_panics_and_unsigned_ones_never_verify(
                alg in prop::sample::select(&["RS256", "none", "HS256", "ES256", "PS512", ""][..]),
                claims in claims(),
                sig in prop::collection::vec(any::<u8>(), 0..64),
                id_token in any::<bool>(),
                now in any::<i64>(),
            ) {
                let token = format!(
                    "{}.{}.{}",
                    b64(&serde_json::json!({"alg": alg, "kid": "k"})),
                    b64(&Value::Object(claims.clone())),
                    URL_SAFE_NO_PAD.encode(&sig)
                );
                let jwt = UnverifiedJwt::parse(&token).unwrap();
                let keys = KeySet::default();
                prop_assert!(verify_signature(&jwt, &keys, &["RS256".into(), alg.into()]).is_err());
                let authority = Authority::parse("https://login.microsoftonline.com/common").unwrap();
                let policy = IssuerPolicy::new(&authority, "https://login.microsoftonline.com/{tenantid}/v2.0");
                let audiences = ["client".to_owned()];
                let result = check_claims(&jwt, &keys, &Expectations {
                    logout_token: false,
                    issuer: &policy,
                    audiences: &audiences,
                    azp: Some("client"),
                    nonce: Some("n"),
                    id_token,
                    now,
                    skew: Duration::from_secs(u64::MAX),
                });
                if result.is_ok() && id_token {
                    prop_assert!(claims.get("sub").and_then(Value::as_str).is_some_and(|s| !s.is_empty()));
                    prop_assert!(numeric(&claims, "iat").is_some());
                }
            }
        }
    }

    #[test]
    fn none_and_hmac_are_refused() {
        let jwt = UnverifiedJwt::parse("eyJhbGciOiJub25lIn0.e30.").unwrap();
        assert_eq!(
            verify_signature(&jwt, &KeySet::default(), &["none".to_string()]),
            Err(TokenRejection::Algorithm("none".into()))
        );
        let hs = UnverifiedJwt::parse("eyJhbGciOiJIUzI1NiJ9.e30.c2ln").unwrap();
        assert!(matches!(
            verify_signature(&hs, &KeySet::default(), &["HS256".to_string()]),
            Err(TokenRejection::Algorithm(_))
        ));
    }

    #[test]
    fn unadvertised_algorithm_is_refused() {
        let jwt = UnverifiedJwt::parse("eyJhbGciOiJQUzI1NiJ9.e30.c2ln").unwrap();
        assert!(matches!(
            verify_signature(&jwt, &KeySet::default(), &["RS256".to_string()]),
            Err(TokenRejection::Algorithm(_))
        ));
    }
}
