//! Bad input never panics: every parser of provider and browser input is fed thousands of
//! random and mutated inputs.

use identity_core::challenge::{parse_www_authenticate, ClaimsChallenge};
use identity_core::provider_error::ProviderError;
use identity_core::token_response::{parse_token_endpoint_response, ClientInfo};
use identity_core::{safe_next_link, Authority, Scopes};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, seeds: &[&[u8]]) -> Vec<u8> {
        let mut out = seeds[(self.next() % seeds.len() as u64) as usize].to_vec();
        let edits = self.next() % 8;
        for _ in 0..edits {
            let pos = if out.is_empty() {
                0
            } else {
                (self.next() % out.len() as u64) as usize
            };
            match self.next() % 4 {
                0 if !out.is_empty() => {
                    out.remove(pos);
                }
                1 => out.insert(pos, (self.next() % 256) as u8),
                2 if !out.is_empty() => {
                    out[pos] = b"{}[]\",:=\\%&?/.0aZ\x00"[(self.next() % 18) as usize]
                }
                _ => out.truncate(pos),
            }
        }
        out
    }
}

const SEEDS: &[&[u8]] = &[
    br#"{"access_token":"a","token_type":"Bearer","expires_in":"3599","refresh_token":"r","id_token":"x.y.z","scope":"openid"}"#,
    br#"{"error":"invalid_grant","error_description":"AADSTS70008: expired\r\nTrace ID: 1","error_codes":[70008],"suberror":"bad_token","claims":"{\"access_token\":{}}"}"#,
    br#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ==""#,
    b"https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/",
    b"https://contoso.b2clogin.com/tfp/contoso.onmicrosoft.com/B2C_1_susi",
    b"eyJ1aWQiOiJ1IiwidXRpZCI6InQifQ",
    b"",
];

#[test]
fn parsers_never_panic_on_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let input = rng.bytes(SEEDS);
        let text = String::from_utf8_lossy(&input);
        let status = [200u16, 400, 401, 500][(rng.next() % 4) as usize];
        let _ = parse_token_endpoint_response(status, &input);
        let _ = ProviderError::from_json(status, &input);
        let _ = ProviderError::from_redirect_params([
            ("error", text.as_ref()),
            ("error_description", text.as_ref()),
        ]);
        let _ = parse_www_authenticate(&text);
        let _ = ClaimsChallenge::from_www_authenticate(&text);
        let _ = ClaimsChallenge::from_json(&text);
        let _ = ClientInfo::decode(&text);
        let _ = Authority::parse(&text);
        let _ = Authority::oidc(&text);
        let s = Scopes::parse(&text);
        let _ = (
            s.with_reserved().to_wire(),
            s.cache_key(),
            s.ungranted(&text),
        );
        if let Some(next) = safe_next_link(&text) {
            assert!(
                next.starts_with('/') && !next.starts_with("//") && !next.contains('\\'),
                "{next:?}"
            );
        }
    }
}

#[test]
fn an_error_body_is_never_mistaken_for_tokens() {
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let input = rng.bytes(&[SEEDS[1]]);
        if let Ok(identity_core::token_response::TokenEndpointResult::Success(t)) =
            parse_token_endpoint_response(400, &input)
        {
            panic!(
                "a 400 answer parsed as tokens: {t:?} from {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
