//! Client credentials: secret, certificate (`private_key_jwt`), or federated assertions
//! (workload identity, managed identity; see [`crate::federated`]).

use crate::types::{ClientId, ClientSecret};
use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The assertion type sent with `private_key_jwt` and federated credentials.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How a confidential app sends a client secret to the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretAuthMethod {
    /// `client_secret_post`: in the form body (what MSAL does). Default.
    #[default]
    Post,
    /// `client_secret_basic`: in an HTTP Basic `Authorization` header.
    Basic,
}

/// Produces client assertions for federated credentials (workload identity, managed
/// identity): called before each token request; may fetch or read a fresh token.
#[async_trait]
pub trait AssertionProvider: Send + Sync {
    /// A signed client assertion for the token endpoint `audience`.
    async fn assertion(&self, audience: &str) -> Result<String, String>;
}

/// A certificate credential (`private_key_jwt`): signs client assertions with the
/// certificate's private key, naming the certificate by its `x5t#S256` thumbprint, and,
/// with [`with_send_x5c`](Self::with_send_x5c), sending the certificate chain in `x5c`.
///
/// Keys: RSA (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, signing RS256) and EC
/// P-256 or P-384 (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, signing ES256 or
/// ES384). Encrypted keys are refused: decrypt them into the secret store you read them
/// from. Entra ID documents RSA certificates for app credentials; EC keys serve
/// providers that accept ES256/ES384 client assertions.
///
/// Certificates: the PEM may hold a chain (leaf, intermediates, root, in any order) and
/// even the private key itself. The leaf is the certificate of the private key, found by
/// comparing public keys, so a chain exported in any order works; a PEM with no
/// certificate for the key is an error.
///
/// **Subject name and issuer authentication** (an app registration that trusts a
/// certificate subject from a CA instead of one uploaded certificate) needs `x5c`: turn
/// it on with [`with_send_x5c`](Self::with_send_x5c) (`CLIENT_CERTIFICATE_SEND_X5C=true`).
/// As in MSAL, it is off by default, and `x5c` then carries the leaf first and the rest
/// of the chain in the order of the PEM.
#[derive(Clone)]
pub struct Certificate {
    key: AssertionKey,
    thumbprint_s256: String,
    /// DER certificates, leaf first.
    chain: Vec<Vec<u8>>,
    send_x5c: bool,
}

#[derive(Clone)]
enum AssertionKey {
    Rsa(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl AssertionKey {
    fn parse(pem: &str) -> Result<Self, String> {
        use p256::pkcs8::DecodePrivateKey as _;
        if pem.contains("ENCRYPTED PRIVATE KEY") || pem.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(
                "the private key is encrypted; give it decrypted (PEM), read from a \
                        secret store"
                    .to_owned(),
            );
        }
        if let Some(block) = pem_blocks(pem, "RSA PRIVATE KEY").into_iter().next() {
            let key = rsa::RsaPrivateKey::from_pkcs1_der(&block)
                .map_err(|_| "the RSA PRIVATE KEY block is not a PKCS#1 RSA key".to_owned())?;
            return Ok(Self::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key))));
        }
        if let Some(block) = pem_blocks(pem, "EC PRIVATE KEY").into_iter().next() {
            if let Ok(k) = p256::SecretKey::from_sec1_der(&block) {
                return Ok(Self::P256(p256::ecdsa::SigningKey::from(k)));
            }
            if let Ok(k) = p384::SecretKey::from_sec1_der(&block) {
                return Ok(Self::P384(p384::ecdsa::SigningKey::from(k)));
            }
            return Err("the EC PRIVATE KEY block is not a P-256 or P-384 key (SEC1)".to_owned());
        }
        if let Some(block) = pem_blocks(pem, "PRIVATE KEY").into_iter().next() {
            if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(&block) {
                return Ok(Self::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k))));
            }
            if let Ok(k) = p256::SecretKey::from_pkcs8_der(&block) {
                return Ok(Self::P256(p256::ecdsa::SigningKey::from(k)));
            }
            if let Ok(k) = p384::SecretKey::from_pkcs8_der(&block) {
                return Ok(Self::P384(p384::ecdsa::SigningKey::from(k)));
            }
            return Err(
                "the PRIVATE KEY block is not an RSA, P-256 or P-384 key (PKCS#8)".to_owned(),
            );
        }
        Err(
            "no private key found: expected a PEM block PRIVATE KEY (PKCS#8), \
             RSA PRIVATE KEY (PKCS#1) or EC PRIVATE KEY (SEC1)"
                .to_owned(),
        )
    }

    /// The public key as it appears in a certificate's `subjectPublicKey`.
    fn public_key_bits(&self) -> Vec<u8> {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        match self {
            Self::Rsa(k) => {
                let public = rsa::RsaPublicKey::from(k.as_ref().as_ref());
                public
                    .to_pkcs1_der()
                    .map(|d| d.as_bytes().to_vec())
                    .unwrap_or_default()
            }
            Self::P256(k) => k.verifying_key().to_sec1_bytes().to_vec(),
            Self::P384(k) => k.verifying_key().to_sec1_bytes().to_vec(),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "RS256",
            Self::P256(_) => "ES256",
            Self::P384(_) => "ES384",
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Rsa(k) => k.sign(input).to_vec(),
            // JWS wants the fixed-size r || s form, which `to_bytes` gives.
            Self::P256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, input);
                sig.to_bytes().to_vec()
            }
            Self::P384(k) => {
                let sig: p384::ecdsa::Signature = p384::ecdsa::signature::Signer::sign(k, input);
                sig.to_bytes().to_vec()
            }
        }
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("alg", &self.key.alg())
            .field("x5t#S256", &self.thumbprint_s256)
            .field("chain_len", &self.chain.len())
            .field("send_x5c", &self.send_x5c)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Certificate {
    /// From a PEM private key and the PEM certificate (or chain) registered with the app.
    /// See the type's documentation for the accepted forms.
    pub fn from_pem(private_key_pem: &str, certificate_pem: &str) -> Result<Self, String> {
        let key = AssertionKey::parse(private_key_pem)?;
        let mut chain = pem_blocks(certificate_pem, "CERTIFICATE");
        if chain.is_empty() {
            return Err("no PEM CERTIFICATE block found".to_owned());
        }
        let public = key.public_key_bits();
        let Some(leaf) = chain
            .iter()
            .position(|c| crate::der::certificate_public_key(c) == Some(public.as_slice()))
        else {
            return Err(format!(
                "none of the {} certificate(s) in the PEM is the certificate of the private key; \
                 check that the key and the certificate belong together",
                chain.len()
            ));
        };
        let leaf_der = chain.remove(leaf);
        chain.insert(0, leaf_der);
        let thumbprint_s256 = URL_SAFE_NO_PAD.encode(Sha256::digest(&chain[0]));
        Ok(Self {
            key,
            thumbprint_s256,
            chain,
            send_x5c: false,
        })
    }

    /// From one PEM holding both the private key and the certificate chain.
    pub fn from_pem_bundle(pem: &str) -> Result<Self, String> {
        Self::from_pem(pem, pem)
    }

    /// Sends the certificate chain in the assertion's `x5c` header (subject name and
    /// issuer authentication). Off by default.
    pub fn with_send_x5c(mut self, send: bool) -> Self {
        self.send_x5c = send;
        self
    }

    /// Whether assertions carry `x5c`.
    pub fn sends_x5c(&self) -> bool {
        self.send_x5c
    }

    /// The base64url SHA-256 thumbprint of the certificate (`x5t#S256`).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint_s256
    }

    /// The signing algorithm of the assertions (`RS256`, `ES256` or `ES384`).
    pub fn algorithm(&self) -> &'static str {
        self.key.alg()
    }

    /// How many certificates the chain holds (the leaf included).
    pub fn chain_len(&self) -> usize {
        self.chain.len()
    }

    /// A signed client assertion for `audience` (the token endpoint).
    pub fn assertion(&self, client_id: &ClientId, audience: &str, now: i64) -> String {
        let mut header = serde_json::json!({
            "alg": self.key.alg(),
            "typ": "JWT",
            "x5t#S256": self.thumbprint_s256,
        });
        if self.send_x5c {
            header["x5c"] = self.chain.iter().map(|c| STANDARD.encode(c)).collect();
        }
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id.as_str(),
            "sub": client_id.as_str(),
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// The DER content of every PEM block labelled `label`, in order.
fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(at) = rest.find(&begin) {
        let start = at + begin.len();
        let Some(len) = rest[start..].find(&end) else {
            break;
        };
        let b64: String = rest[start..start + len]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Ok(der) = STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &rest[start + len + end.len()..];
    }
    out
}

/// The credential of the app.
#[derive(Clone, Default)]
pub enum ClientCredential {
    /// A public client (device code only; no confidential grants).
    #[default]
    None,
    /// A client secret.
    Secret(ClientSecret, SecretAuthMethod),
    /// A certificate (`private_key_jwt`).
    Certificate(Box<Certificate>),
    /// A federated credential: assertions produced by a callback.
    Assertion(Arc<dyn AssertionProvider>),
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Secret(_, m) => write!(f, "Secret([redacted], {m:?})"),
            Self::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
            Self::Assertion(_) => f.write_str("Assertion(..)"),
        }
    }
}

impl ClientCredential {
    /// A client secret sent with `client_secret_post`.
    pub fn secret(secret: impl Into<String>) -> Self {
        Self::Secret(ClientSecret::new(secret), SecretAuthMethod::Post)
    }

    /// Whether the app can use confidential grants.
    pub fn is_confidential(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// Form parameters and Basic credentials that authenticate a token request.
pub(crate) struct ClientAuth {
    pub(crate) form: Vec<(&'static str, String)>,
    pub(crate) basic: Option<(String, String)>,
}

impl ClientCredential {
    pub(crate) async fn authenticate(
        &self,
        client_id: &ClientId,
        token_endpoint: &str,
        now: i64,
    ) -> Result<ClientAuth, String> {
        let mut form = vec![];
        let mut basic = None;
        match self {
            Self::None => form.push(("client_id", client_id.to_string())),
            Self::Secret(secret, SecretAuthMethod::Post) => {
                form.push(("client_id", client_id.to_string()));
                form.push(("client_secret", secret.secret().to_owned()));
            }
            Self::Secret(secret, SecretAuthMethod::Basic) => {
                basic = Some((client_id.to_string(), secret.secret().to_owned()));
            }
            Self::Certificate(cert) => {
                form.push(("client_id", client_id.to_string()));
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
                form.push((
                    "client_assertion",
                    cert.assertion(client_id, token_endpoint, now),
                ));
            }
            Self::Assertion(provider) => {
                form.push(("client_id", client_id.to_string()));
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
                form.push((
                    "client_assertion",
                    provider.assertion(token_endpoint).await?,
                ));
            }
        }
        Ok(ClientAuth { form, basic })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_an_error() {
        assert!(Certificate::from_pem("nope", "nope").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = ClientCredential::secret("s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
