//! The testkit's own certificate authority and server certificate.

use crate::config::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

pub(crate) struct TlsSetup {
    pub(crate) server_config: Arc<rustls::ServerConfig>,
    pub(crate) ca_pem: String,
}

/// Names on the server certificate.
pub(crate) const DEFAULT_NAMES: [&str; 7] = [
    "localhost",
    "127.0.0.1",
    "login.microsoftonline.com",
    "login.windows.net",
    "graph.microsoft.com",
    "*.b2clogin.com",
    "*.ciamlogin.com",
];

fn ca_params() -> Result<CertificateParams, String> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "identity-testkit local CA");
    dn.push(DnType::OrganizationName, "identity-testkit");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Create (or load from `ca_dir`) the CA, issue the leaf, build the rustls config.
pub(crate) fn setup(cfg: &TlsConfig) -> Result<TlsSetup, String> {
    // The CA certificate is re-created from its key and fixed subject, so a
    // leaf it signs chains to a `ca.pem` saved by an earlier run.
    let (ca_key, saved_pem) = match &cfg.ca_dir {
        Some(dir) if dir.join("ca.key").exists() && dir.join("ca.pem").exists() => {
            let key_pem = std::fs::read_to_string(dir.join("ca.key")).map_err(|e| e.to_string())?;
            let pem = std::fs::read_to_string(dir.join("ca.pem")).map_err(|e| e.to_string())?;
            (
                KeyPair::from_pem(&key_pem).map_err(|e| e.to_string())?,
                Some(pem),
            )
        }
        _ => (KeyPair::generate().map_err(|e| e.to_string())?, None),
    };
    let ca_cert = ca_params()?
        .self_signed(&ca_key)
        .map_err(|e| e.to_string())?;
    let ca_pem = match saved_pem {
        Some(p) => p,
        None => {
            let pem = ca_cert.pem();
            if let Some(dir) = &cfg.ca_dir {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                std::fs::write(dir.join("ca.pem"), &pem).map_err(|e| e.to_string())?;
                std::fs::write(dir.join("ca.key"), ca_key.serialize_pem())
                    .map_err(|e| e.to_string())?;
            }
            pem
        }
    };
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    names.extend(cfg.extra_names.iter().cloned());
    let mut leaf = CertificateParams::new(names).map_err(|e| e.to_string())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "identity-testkit");
    leaf.distinguished_name = dn;
    let leaf_key = KeyPair::generate().map_err(|e| e.to_string())?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(leaf_cert.der().to_vec()),
                CertificateDer::from(ca_cert.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| e.to_string())?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsSetup {
        server_config: Arc::new(sc),
        ca_pem,
    })
}
