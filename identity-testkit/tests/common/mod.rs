//! Helpers shared by the integration tests: a no-redirect HTTP client, PKCE,
//! authorize/redeem round trips, and RS256 verification against the JWKS.
#![allow(dead_code, unreachable_pub)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use identity_testkit::{TestKit, TestKitConfig, WEB_APP_CLIENT_ID, WEB_APP_SECRET};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

pub const REDIRECT: &str = "http://localhost:5000/getAToken";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn auto_kit() -> TestKit {
    TestKit::start(TestKitConfig::default().with_auto_approve("adele@contoso.onmicrosoft.com"))
        .await
        .unwrap()
}

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn query_of(location: &str) -> HashMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    let q = url.fragment().or(url.query()).unwrap_or("").to_string();
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// GET authorize (auto-approve kit) and return the redirect parameters.
pub async fn authorize(
    c: &reqwest::Client,
    authority: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut params: Vec<(&str, &str)> = vec![
        ("client_id", WEB_APP_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile offline_access User.Read"),
        ("state", "st=="),
        ("nonce", "n-0S6_WzA2Mj"),
    ];
    for (k, v) in extra {
        params.retain(|(pk, _)| pk != k);
        params.push((k, v));
    }
    let r = c
        .get(format!("{authority}/oauth2/v2.0/authorize"))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "authorize: {}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(REDIRECT) || !loc.is_empty());
    query_of(&loc)
}

/// Auth code + PKCE round trip with the default web app; returns the token response.
pub async fn sign_in(c: &reqwest::Client, authority: &str, scope: &str) -> Value {
    let (verifier, challenge) = pkce();
    let q = authorize(
        c,
        authority,
        &[
            ("scope", scope),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let code = q.get("code").expect("code in redirect").clone();
    let r = c
        .post(format!("{authority}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub async fn token(c: &reqwest::Client, authority: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = c
        .post(format!("{authority}/oauth2/v2.0/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

pub fn decode_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn claims(token: &str) -> Value {
    decode_part(token, 1)
}

pub fn header(token: &str) -> Value {
    decode_part(token, 0)
}

/// Verify an RS256 JWT against a JWKS document; true when a key with the
/// token's kid verifies the signature.
pub fn verify_with_jwks(token: &str, jwks: &Value) -> bool {
    let kid = header(token)["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut parts = token.rsplitn(2, '.');
    let sig = URL_SAFE_NO_PAD
        .decode(parts.next().unwrap())
        .unwrap_or_default();
    let input = parts.next().unwrap();
    for k in jwks["keys"].as_array().unwrap() {
        if k["kid"] != kid.as_str() {
            continue;
        }
        let n = BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(k["n"].as_str().unwrap()).unwrap());
        let e = BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(k["e"].as_str().unwrap()).unwrap());
        let key = RsaPublicKey::new(n, e).unwrap();
        let Ok(sig) = Signature::try_from(sig.as_slice()) else {
            return false;
        };
        return VerifyingKey::<Sha256>::new(key)
            .verify(input.as_bytes(), &sig)
            .is_ok();
    }
    false
}

pub async fn get_json(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

/// The Entra error envelope member set.
pub fn assert_envelope(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
    assert!(
        d.contains("\r\nTrace ID: ")
            && d.contains("\r\nCorrelation ID: ")
            && d.contains("\r\nTimestamp: ")
    );
    for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[k].is_string(), "{k} missing in {body}");
    }
}
