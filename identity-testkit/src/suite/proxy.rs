//! [`TlsProxy`]: a TLS-terminating reverse proxy in front of a sample, so the suite runs
//! in the production shape: the browser speaks https to a public host name, the app
//! listens on plain http, and the `Host` header the browser sent reaches the app
//! unchanged (as with a proxy that preserves `Host`).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// The public host name the suite gives a sample behind the proxy.
pub const PUBLIC_HOST: &str = "app.contoso.test";

/// A running TLS-terminating proxy; stops when dropped.
#[derive(Debug)]
pub struct TlsProxy {
    addr: SocketAddr,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn certificate(host: &str) -> Result<(String, Arc<rustls::ServerConfig>), String> {
    let err = |e: rcgen::Error| e.to_string();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "identity-testkit proxy CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = CertificateParams::new(vec![host.to_owned(), "localhost".to_owned()])
        .map_err(err)?
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .map_err(err)?;
    let chain = vec![
        CertificateDer::from(leaf.der().to_vec()),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok((ca_cert.pem(), Arc::new(config)))
}

impl TlsProxy {
    /// Listens on a free loopback port and forwards every connection, decrypted, to
    /// `127.0.0.1:{app_port}`. Its certificate names [`PUBLIC_HOST`].
    pub async fn start(app_port: u16) -> Result<TlsProxy, String> {
        let (ca_pem, config) = certificate(PUBLIC_HOST)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let Ok(mut app) = TcpStream::connect(("127.0.0.1", app_port)).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut app).await;
                });
            }
        });
        Ok(TlsProxy { addr, ca_pem, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The public base URL: `https://app.contoso.test:{port}`.
    pub fn public_base(&self) -> String {
        format!("https://{PUBLIC_HOST}:{}", self.addr.port())
    }

    /// The CA certificate (PEM) the browser must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}
