//! Just enough X.509 and JWS verification for client assertions: read the parts of a
//! certificate, verify a certificate's signature by its issuer, and verify RS256, ES256
//! and ES384 signatures with a certificate's or SPKI's key. Never panics.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

struct Tlv<'a> {
    tag: u8,
    raw: &'a [u8],
    content: &'a [u8],
}

fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((
        Tlv {
            tag,
            raw: &input[..end],
            content: &input[header..end],
        },
        &input[end..],
    ))
}

fn children(content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (t, next) = read(rest)?;
        out.push(t);
        rest = next;
    }
    Some(out)
}

/// A public key: its algorithm (and curve) and its bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PublicKey {
    kind: KeyKind,
    bits: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
}

impl PublicKey {
    /// From a DER SubjectPublicKeyInfo.
    pub(crate) fn from_spki(spki: &[u8]) -> Option<Self> {
        let (seq, _) = read(spki)?;
        Self::from_spki_content(seq.content)
    }

    fn from_spki_content(content: &[u8]) -> Option<Self> {
        let parts = children(content)?;
        let alg = children(parts.first()?.content)?;
        let oid = alg.first()?.content;
        let kind = if oid == RSA_ENCRYPTION {
            KeyKind::Rsa
        } else if oid == EC_PUBLIC_KEY {
            match alg.get(1)?.content {
                c if c == P256 => KeyKind::P256,
                c if c == P384 => KeyKind::P384,
                _ => return None,
            }
        } else {
            return None;
        };
        let bits = parts.get(1).filter(|b| b.tag == 0x03)?.content.get(1..)?;
        Some(Self {
            kind,
            bits: bits.to_vec(),
        })
    }

    /// Verifies a JWS signature (`alg` from its header) over `input`.
    pub(crate) fn verify_jws(&self, alg: &str, input: &[u8], sig: &[u8]) -> bool {
        let algorithm: &dyn VerificationAlgorithm = match (alg, self.kind) {
            ("RS256", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA256,
            ("ES256", KeyKind::P256) => &signature::ECDSA_P256_SHA256_FIXED,
            ("ES384", KeyKind::P384) => &signature::ECDSA_P384_SHA384_FIXED,
            _ => return false,
        };
        UnparsedPublicKey::new(algorithm, &self.bits)
            .verify(input, sig)
            .is_ok()
    }
}

/// The parts of a certificate the checks need.
pub(crate) struct Certificate {
    tbs: Vec<u8>,
    signature_algorithm: Vec<u8>,
    signature: Vec<u8>,
    issuer: Vec<u8>,
    subject: Vec<u8>,
    pub(crate) public_key: PublicKey,
}

impl Certificate {
    pub(crate) fn parse(der: &[u8]) -> Option<Self> {
        let (cert, _) = read(der)?;
        let parts = children(cert.content)?;
        let tbs = parts.first()?;
        let sig_alg = children(parts.get(1)?.content)?;
        let signature = parts.get(2).filter(|b| b.tag == 0x03)?.content.get(1..)?;
        let fields = children(tbs.content)?;
        let skip = usize::from(fields.first()?.tag == 0xa0);
        let issuer = fields.get(skip + 2)?;
        let subject = fields.get(skip + 4)?;
        let spki = fields.get(skip + 5)?;
        Some(Self {
            tbs: tbs.raw.to_vec(),
            signature_algorithm: sig_alg.first()?.content.to_vec(),
            signature: signature.to_vec(),
            issuer: issuer.raw.to_vec(),
            subject: subject.raw.to_vec(),
            public_key: PublicKey::from_spki_content(spki.content)?,
        })
    }

    /// The subject's common name.
    pub(crate) fn subject_cn(&self) -> Option<String> {
        let (name, _) = read(&self.subject)?;
        for rdn in children(name.content)? {
            for atv in children(rdn.content)? {
                let pair = children(atv.content)?;
                if pair.first()?.content == COMMON_NAME {
                    return String::from_utf8(pair.get(1)?.content.to_vec()).ok();
                }
            }
        }
        None
    }

    /// Whether `issuer` issued this certificate: names match and its key verifies the
    /// signature.
    pub(crate) fn is_issued_by(&self, issuer: &Certificate) -> bool {
        if self.issuer != issuer.subject {
            return false;
        }
        let key = &issuer.public_key;
        let algorithm: &dyn VerificationAlgorithm =
            match (self.signature_algorithm.as_slice(), key.kind) {
                (a, KeyKind::Rsa) if a == SHA256_WITH_RSA => &signature::RSA_PKCS1_2048_8192_SHA256,
                (a, KeyKind::P256) if a == ECDSA_SHA256 => &signature::ECDSA_P256_SHA256_ASN1,
                (a, KeyKind::P384) if a == ECDSA_SHA384 => &signature::ECDSA_P384_SHA384_ASN1,
                (a, KeyKind::P384) if a == ECDSA_SHA256 => &signature::ECDSA_P384_SHA256_ASN1,
                _ => return false,
            };
        UnparsedPublicKey::new(algorithm, &key.bits)
            .verify(&self.tbs, &self.signature)
            .is_ok()
    }
}

/// The DER contents of every `label` block of a PEM text.
pub(crate) fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
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
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &rest[start + len + end.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rcgen_certificates_and_their_issuer() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Contoso CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "app.contoso.com");
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let ca = Certificate::parse(ca.der()).unwrap();
        let parsed = Certificate::parse(leaf.der()).unwrap();
        assert_eq!(parsed.subject_cn().as_deref(), Some("app.contoso.com"));
        assert!(parsed.is_issued_by(&ca));
        assert!(!ca.is_issued_by(&parsed));
        assert_eq!(
            Some(parsed.public_key),
            PublicKey::from_spki(&leaf_key.public_key_der())
        );
        assert!(Certificate::parse(b"\x30\x03\x02\x01").is_none());
    }
}
