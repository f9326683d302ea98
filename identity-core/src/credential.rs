//! Client credentials: secret, certificate (`private_key_jwt`), or an assertion callback.

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

/// An RSA certificate credential: signs `private_key_jwt` assertions with an
/// `x5t#S256` header naming the certificate.
#[derive(Clone)]
pub struct Certificate {
    key: rsa::pkcs1v15::SigningKey<Sha256>,
    thumbprint_s256: String,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("x5t#S256", &self.thumbprint_s256)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Certificate {
    /// From a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) and the
    /// PEM certificate registered with the app.
    pub fn from_pem(private_key_pem: &str, certificate_pem: &str) -> Result<Self, String> {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_key_pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(private_key_pem))
            .map_err(|_| "the private key is not an RSA key in PKCS#8 or PKCS#1 PEM".to_owned())?;
        let der =
            pem_block(certificate_pem, "CERTIFICATE").ok_or("no PEM CERTIFICATE block found")?;
        let thumbprint_s256 = URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
        Ok(Self {
            key: rsa::pkcs1v15::SigningKey::new(key),
            thumbprint_s256,
        })
    }

    /// The base64url SHA-256 thumbprint of the certificate (`x5t#S256`).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint_s256
    }

    /// A signed client assertion for `audience` (the token endpoint).
    pub fn assertion(&self, client_id: &ClientId, audience: &str, now: i64) -> String {
        let header =
            serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5t#S256": self.thumbprint_s256 });
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
        let sig = self.key.sign(input.as_bytes()).to_bytes();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
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
