//! RSA signing keys (generated once per process and reused), JWKS, and JWT helpers.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One RSA key with its published JWK members.
pub(crate) struct KeyMaterial {
    signing: SigningKey<Sha256>,
    pub(crate) public: RsaPublicKey,
    pub(crate) kid: String,
    n: String,
    e: String,
    /// A self-signed certificate for the key (DER), published as `x5c`.
    cert_der: Vec<u8>,
}

impl KeyMaterial {
    fn generate() -> KeyMaterial {
        let mut rng = rand::thread_rng();
        let private = RsaPrivateKey::new(&mut rng, 2048).expect("RSA key generation");
        let public = RsaPublicKey::from(&private);
        let der = public
            .to_public_key_der()
            .expect("SPKI encoding")
            .as_bytes()
            .to_vec();
        let cert_der = self_signed_certificate(&private).unwrap_or_else(|why| {
            // Never expected (the key is fresh and valid); keep serving without x5c.
            tracing::error!(%why, "no certificate for a signing key");
            Vec::new()
        });
        // Like Entra: `kid` equals `x5t`, the SHA-1 thumbprint of the certificate.
        let thumbprint_source = if cert_der.is_empty() { &der } else { &cert_der };
        let kid = URL_SAFE_NO_PAD.encode(
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, thumbprint_source)
                .as_ref(),
        );
        KeyMaterial {
            n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            signing: SigningKey::<Sha256>::new(private),
            public,
            kid,
            cert_der,
        }
    }

    /// The JWK as Entra publishes it: no `alg`, `kid == x5t`, the certificate in `x5c`
    /// (standard base64 DER), per-key `issuer`.
    pub(crate) fn jwk(&self, issuer: &str) -> Value {
        let mut jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": self.n,
            "e": self.e,
            "issuer": issuer,
        });
        if !self.cert_der.is_empty() {
            jwk["x5c"] = json!([STANDARD.encode(&self.cert_der)]);
        }
        jwk
    }
}

/// A self-signed certificate for `private` (DER), shaped like the ones Entra publishes:
/// subject and issuer `CN=accounts.accesscontrol.windows.net`, five years of validity.
fn self_signed_certificate(private: &RsaPrivateKey) -> Result<Vec<u8>, String> {
    use rsa::pkcs8::EncodePrivateKey;
    let pkcs8 = private.to_pkcs8_der().map_err(|e| e.to_string())?;
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        "accounts.accesscontrol.windows.net",
    );
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(5 * 365);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok(cert.der().to_vec())
}

fn pool() -> &'static Mutex<Vec<Arc<KeyMaterial>>> {
    static POOL: OnceLock<Mutex<Vec<Arc<KeyMaterial>>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Vec::new()))
}

/// Key number `i` of the process-wide pool, generated on first use. Every
/// testkit started in one process uses the same keys for the same slots, so
/// starting many kits in a test binary costs one key generation per slot.
pub(crate) fn pool_key(i: usize) -> Arc<KeyMaterial> {
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    while p.len() <= i {
        p.push(Arc::new(KeyMaterial::generate()));
    }
    p[i].clone()
}

/// Key number `i` if it was generated already (a kid can only be in use then).
pub(crate) fn pool_peek(i: usize) -> Option<Arc<KeyMaterial>> {
    pool()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(i)
        .cloned()
}

/// A key that is never published (for the `BadSignature` tamper mode).
pub(crate) fn rogue_key() -> Arc<KeyMaterial> {
    static ROGUE: OnceLock<Arc<KeyMaterial>> = OnceLock::new();
    ROGUE
        .get_or_init(|| Arc::new(KeyMaterial::generate()))
        .clone()
}

/// Key sets by name (`workforce`, `ciam:{tid}`, `b2c:{tid}:{policy}`): pool slots, newest last.
pub(crate) struct KeyStore {
    sets: HashMap<String, Vec<usize>>,
    next: usize,
    /// Per set: how many of the oldest slots are retired (never published again).
    retired: HashMap<String, usize>,
}

impl KeyStore {
    pub(crate) fn new(names: &[String]) -> KeyStore {
        let sets = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), vec![i]))
            .collect();
        KeyStore {
            sets,
            next: names.len(),
            retired: HashMap::new(),
        }
    }

    fn slots(&mut self, set: &str) -> &mut Vec<usize> {
        if !self.sets.contains_key(set) {
            let i = self.next;
            self.next += 1;
            self.sets.insert(set.to_string(), vec![i]);
        }
        self.sets.get_mut(set).expect("inserted")
    }

    /// Current signing key slot of a set.
    pub(crate) fn current(&mut self, set: &str) -> usize {
        *self.slots(set).last().expect("non-empty")
    }

    /// Published slots: the current key and the previous one (grace period), unless an
    /// emergency rollover retired it.
    pub(crate) fn published(&mut self, set: &str) -> Vec<usize> {
        let retired = self.retired.get(set).copied().unwrap_or(0);
        let s = self.slots(set);
        let from = s.len().saturating_sub(2).max(retired).min(s.len() - 1);
        s[from..].iter().rev().copied().collect()
    }

    /// All slots published by any set.
    pub(crate) fn all_published(&mut self) -> Vec<usize> {
        let names: Vec<String> = self.sets.keys().cloned().collect();
        names.iter().flat_map(|n| self.published(n)).collect()
    }

    /// New signing key for every set; the previous one stays published.
    pub(crate) fn rotate(&mut self) {
        let mut names: Vec<String> = self.sets.keys().cloned().collect();
        names.sort();
        for n in names {
            let i = self.next;
            self.next += 1;
            self.sets.get_mut(&n).expect("known").push(i);
        }
    }
}

impl KeyStore {
    /// Emergency rollover: a new key for every set, and every older key leaves the set now.
    pub(crate) fn retire_now(&mut self) {
        self.rotate();
        let lens: Vec<(String, usize)> = self
            .sets
            .iter()
            .map(|(n, s)| (n.clone(), s.len() - 1))
            .collect();
        for (n, retired) in lens {
            self.retired.insert(n, retired);
        }
    }
}

/// base64url without padding.
pub(crate) fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Standard base64 with padding.
pub(crate) fn b64std(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decode base64url, tolerating padding and the standard alphabet.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let cleaned: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(cleaned).ok()
}

/// Sign `claims` as a compact JWS with RS256 (`typ: JWT`, `kid` in the header).
pub(crate) fn sign_rs256(key: &KeyMaterial, kid: &str, claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": kid});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key.signing.sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig.to_bytes()))
}

/// An unsigned token (`alg: none`).
pub(crate) fn sign_none(claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "none"});
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// HS256 with `secret` (the algorithm-confusion attack).
pub(crate) fn sign_hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "HS256", "kid": kid});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(input.as_bytes());
    let sig = mac.finalize().into_bytes();
    format!("{input}.{}", b64url(&sig))
}

/// A parsed (not yet verified) compact JWS.
pub(crate) struct Jws {
    pub(crate) header: Value,
    pub(crate) claims: Value,
    input: String,
    sig: Vec<u8>,
}

impl Jws {
    pub(crate) fn parse(token: &str) -> Option<Jws> {
        let mut it = token.split('.');
        let (h, c, s) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&b64url_decode(h)?).ok()?;
        let claims: Value = serde_json::from_slice(&b64url_decode(c)?).ok()?;
        Some(Jws {
            header,
            claims,
            input: format!("{h}.{c}"),
            sig: b64url_decode(s)?,
        })
    }

    /// The signed part (`header.claims`).
    pub(crate) fn signing_input(&self) -> &[u8] {
        self.input.as_bytes()
    }

    /// The signature bytes.
    pub(crate) fn signature(&self) -> &[u8] {
        &self.sig
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// RS256 signature check with one public key.
    pub(crate) fn verify_rs256(&self, key: &RsaPublicKey) -> bool {
        if self.header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return false;
        }
        let Ok(sig) = Signature::try_from(self.sig.as_slice()) else {
            return false;
        };
        VerifyingKey::<Sha256>::new(key.clone())
            .verify(self.input.as_bytes(), &sig)
            .is_ok()
    }
}
