//! Secretless app credentials over real HTTP against the local provider: workload
//! identity federation (token file), a managed identity as federated credential (IMDS and
//! App Service shapes), and certificates (RSA and EC keys, chains, `x5c` for subject
//! name and issuer authentication).

use base64::Engine;
use identity_core::{
    Certificate, ClientCredential, Error, Identity, IdentityConfig, Scopes, Timeouts,
};
use identity_testkit::{
    AppRoleGrant, Endpoint, TestApp, TestKit, TestKitConfig, TrustedCertificateSubject,
    API_APP_CLIENT_ID, FEDERATION_ISSUER, FEDERATION_SUBJECT, IDENTITY_HEADER,
    USER_MANAGED_IDENTITY_CLIENT_ID, WEB_APP_CLIENT_ID,
};
use std::collections::HashMap;
use std::time::Duration;

const CERT_APP: &str = "44445555-eeee-6666-ffff-7777aaaa8888";

fn api_scope() -> Scopes {
    Scopes::parse(&format!("api://{API_APP_CLIENT_ID}/.default"))
}

fn claims_of(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// `IdentityConfig::from_lookup` over these settings, with short timeouts.
fn config_from(pairs: &[(&str, String)]) -> Result<IdentityConfig, Error> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    IdentityConfig::from_lookup(|k| map.get(k).cloned()).map(|c| {
        c.with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            total: Duration::from_secs(20),
        })
    })
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("identity-rs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test]
async fn workload_identity_reads_the_token_file_again_when_it_is_rotated() {
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let file = temp_path("azure-identity-token");
    std::fs::write(
        &file,
        kit.federated_token(FEDERATION_ISSUER, FEDERATION_SUBJECT),
    )
    .unwrap();
    // What the Azure workload-identity webhook sets in the pod.
    let config = config_from(&[
        ("AZURE_CLIENT_ID", WEB_APP_CLIENT_ID.into()),
        ("AZURE_TENANT_ID", kit.workforce_tenant_id()),
        ("AZURE_AUTHORITY_HOST", kit.base_url()),
        ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
    ])
    .unwrap();
    assert_eq!(config.client_id.as_str(), WEB_APP_CLIENT_ID);
    assert!(matches!(config.credential, ClientCredential::Assertion(_)));
    let id = Identity::new(config).unwrap();

    let token = id.get_token_for_client(&api_scope()).await.unwrap();
    let claims = claims_of(token.access_token.secret());
    assert_eq!(claims["azp"], WEB_APP_CLIENT_ID);
    assert_eq!(claims["roles"], serde_json::json!(["Data.Read.All"]));

    // The cluster rotates the file; the next token request sends the new content. Here it
    // carries a subject the app does not trust, so the provider refuses it.
    std::fs::write(
        &file,
        kit.federated_token(FEDERATION_ISSUER, "system:serviceaccount:default:other"),
    )
    .unwrap();
    let err = id
        .get_token_for_client(&Scopes::parse("https://graph.microsoft.com/.default"))
        .await
        .unwrap_err();
    let provider = err.provider_error().expect("a provider refusal");
    assert_eq!(provider.error, "invalid_client");
    assert!(provider.has_code("AADSTS70021"), "{provider}");

    std::fs::write(
        &file,
        format!(
            "{}\n",
            kit.federated_token(FEDERATION_ISSUER, FEDERATION_SUBJECT)
        ),
    )
    .unwrap();
    id.get_token_for_client(&Scopes::parse(&format!("{API_APP_CLIENT_ID}/.default")))
        .await
        .expect("a rotated valid token works again");

    std::fs::remove_file(&file).unwrap();
    let err = id
        .get_token_for_client(&Scopes::parse("https://graph.microsoft.com/User.Read.All"))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Credential(m) if m.contains("AZURE_FEDERATED_TOKEN_FILE")));
}

#[tokio::test]
async fn an_untrusted_federation_issuer_is_refused() {
    let mut config = TestKitConfig::default();
    config
        .federation_issuers
        .push(identity_testkit::FederationIssuer {
            issuer: "https://token.actions.githubusercontent.com".into(),
            public_keys: vec![],
        });
    let kit = TestKit::start(config).await.unwrap();
    let file = temp_path("token");
    std::fs::write(
        &file,
        kit.federated_token("https://token.actions.githubusercontent.com", "repo:x"),
    )
    .unwrap();
    let id = Identity::new(
        config_from(&[
            ("CLIENT_ID", WEB_APP_CLIENT_ID.into()),
            ("AUTHORITY", kit.authority()),
            ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
        ])
        .unwrap(),
    )
    .unwrap();
    let err = id.get_token_for_client(&api_scope()).await.unwrap_err();
    assert!(
        err.provider_error()
            .is_some_and(|p| p.has_code("AADSTS700211")),
        "{err}"
    );
}

/// The managed identity token used as the client assertion, for one kit whose managed
/// identity tokens live `lifetime`.
async fn managed_identity_calls(lifetime: Duration) -> (u64, u64) {
    let kit = TestKit::start(TestKitConfig {
        managed_identity_token_lifetime: lifetime,
        ..TestKitConfig::default()
    })
    .await
    .unwrap();
    let id = Identity::new(
        config_from(&[
            ("CLIENT_ID", WEB_APP_CLIENT_ID.into()),
            ("AUTHORITY", kit.authority()),
            ("MANAGED_IDENTITY_CLIENT_ID", "system".into()),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", kit.base_url()),
        ])
        .unwrap(),
    )
    .unwrap();
    id.get_token_for_client(&api_scope()).await.unwrap();
    assert_eq!(kit.calls(Endpoint::ManagedIdentity), 1);
    id.get_token_for_client(&Scopes::parse("https://graph.microsoft.com/.default"))
        .await
        .unwrap();
    (
        kit.calls(Endpoint::ManagedIdentity),
        kit.calls(Endpoint::Token),
    )
}

#[tokio::test]
async fn managed_identity_from_imds_is_cached_until_near_expiry() {
    // Deterministic on a loaded machine: one token that lives an hour, one that is
    // already inside the five-minute renewal window when it arrives.
    assert_eq!(
        managed_identity_calls(Duration::from_secs(3600)).await,
        (1, 2),
        "the managed identity token is reused while it lives"
    );
    assert_eq!(
        managed_identity_calls(Duration::from_secs(290)).await,
        (2, 2),
        "renewed when less than five minutes remain"
    );
}

#[tokio::test]
async fn managed_identity_from_the_app_service_endpoint() {
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let settings = |header: &str, identity: &str| {
        vec![
            ("CLIENT_ID", WEB_APP_CLIENT_ID.to_owned()),
            ("AUTHORITY", kit.authority()),
            ("MANAGED_IDENTITY_CLIENT_ID", identity.to_owned()),
            ("IDENTITY_ENDPOINT", kit.app_service_identity_endpoint()),
            ("IDENTITY_HEADER", header.to_owned()),
            // Ignored: the App Service variables take precedence, as in MSAL.
            (
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                "http://127.0.0.1:9".to_owned(),
            ),
        ]
    };
    let id = Identity::new(
        config_from(&settings(IDENTITY_HEADER, USER_MANAGED_IDENTITY_CLIENT_ID)).unwrap(),
    )
    .unwrap();
    let token = id.get_token_for_client(&api_scope()).await.unwrap();
    assert_eq!(
        claims_of(token.access_token.secret())["azp"],
        WEB_APP_CLIENT_ID
    );
    assert_eq!(kit.calls(Endpoint::ManagedIdentity), 1);

    let wrong_header = Identity::new(
        config_from(&settings("not-the-header", USER_MANAGED_IDENTITY_CLIENT_ID)).unwrap(),
    )
    .unwrap();
    let err = wrong_header
        .get_token_for_client(&Scopes::parse("https://graph.microsoft.com/.default"))
        .await
        .unwrap_err();
    match &err {
        Error::Credential(m) => {
            assert!(m.contains("HTTP 401"), "{m}");
            assert!(!m.contains("not-the-header"), "the header is a secret: {m}");
        }
        other => panic!("{other:?}"),
    }
    let unknown = Identity::new(
        config_from(&settings(
            IDENTITY_HEADER,
            "99999999-0000-0000-0000-000000000000",
        ))
        .unwrap(),
    )
    .unwrap();
    let err = unknown
        .get_token_for_client(&Scopes::parse(&format!("{API_APP_CLIENT_ID}/.default")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Credential(m) if m.contains("Identity not found")),
        "{err}"
    );
}

/// A certificate for `key_pem` (PKCS#8) issued by `ca` with subject `cn`.
fn leaf_certificate(
    key_pem: &str,
    alg: &'static rcgen::SignatureAlgorithm,
    cn: &str,
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
) -> String {
    let key = rcgen::KeyPair::from_pem_and_sign_algo(key_pem, alg).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.signed_by(&key, ca, ca_key).unwrap().pem()
}

fn certificate_authority() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Contoso Issuing CA");
    (params.self_signed(&key).unwrap(), key)
}

fn cert_app(public_keys: Vec<String>, trusted: Vec<TrustedCertificateSubject>) -> TestApp {
    TestApp {
        client_id: CERT_APP.into(),
        name: "Cert App".into(),
        client_secret: None,
        redirect_uris: vec![],
        allow_loopback_any_port: true,
        post_logout_redirect_uris: vec![],
        public_keys,
        app_id_uri: None,
        scopes: vec![],
        app_roles: vec![],
        granted_app_roles: vec![AppRoleGrant {
            resource: format!("api://{API_APP_CLIENT_ID}"),
            role: "Data.Read.All".into(),
        }],
        federated_credentials: vec![],
        trusted_certificate_subjects: trusted,
        frontchannel_logout_uri: None,
        backchannel_logout_uri: None,
    }
}

fn identity_with(kit: &TestKit, cert: Certificate) -> Identity {
    let authority =
        identity_core::Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    Identity::new(
        IdentityConfig::new(CERT_APP, authority)
            .with_credential(ClientCredential::Certificate(Box::new(cert))),
    )
    .unwrap()
}

#[tokio::test]
async fn rsa_pkcs1_and_ec_sec1_keys_sign_assertions() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let (ca, ca_key) = certificate_authority();

    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let rsa_pkcs8 = rsa_key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let rsa_cert = leaf_certificate(&rsa_pkcs8, &rcgen::PKCS_RSA_SHA256, "rsa", &ca, &ca_key);
    let rsa_pkcs1 = rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap();
    let rsa_public = rsa_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();

    let ec = rcgen::KeyPair::generate().unwrap();
    let ec_pkcs8 = ec.serialize_pem();
    let ec_cert = leaf_certificate(
        &ec_pkcs8,
        &rcgen::PKCS_ECDSA_P256_SHA256,
        "ec",
        &ca,
        &ca_key,
    );
    let ec_sec1 = {
        use p256::pkcs8::DecodePrivateKey;
        p256::SecretKey::from_pkcs8_pem(&ec_pkcs8)
            .unwrap()
            .to_sec1_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    };
    let ec_public = ec.public_key_pem();

    let cases = [
        ("RSA PKCS#1", rsa_pkcs1.to_string(), &rsa_cert, "RS256"),
        ("RSA PKCS#8", rsa_pkcs8.to_string(), &rsa_cert, "RS256"),
        ("EC SEC1", ec_sec1, &ec_cert, "ES256"),
        ("EC PKCS#8", ec_pkcs8.clone(), &ec_cert, "ES256"),
    ];
    for (what, key, cert, alg) in cases {
        // A kit per case: app-only tokens are cached per authority and scopes.
        let kit = TestKit::start(TestKitConfig::default().with_app(cert_app(
            vec![rsa_public.clone(), ec_public.clone()],
            vec![],
        )))
        .await
        .unwrap();
        let certificate =
            Certificate::from_pem(&key, cert).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(certificate.algorithm(), alg, "{what}");
        assert!(!certificate.sends_x5c(), "x5c is off by default");
        let token = identity_with(&kit, certificate)
            .get_token_for_client(&api_scope())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            claims_of(token.access_token.secret())["azpacr"],
            "2",
            "{what}"
        );
    }
    // A certificate that is not the key's is refused before any call.
    let err = Certificate::from_pem(&rsa_pkcs1, &ec_cert).unwrap_err();
    assert!(
        err.contains("not the certificate of the private key") || err.contains("none of the"),
        "{err}"
    );
}

#[tokio::test]
async fn subject_name_and_issuer_needs_x5c_with_the_chain() {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let (ca, ca_key) = certificate_authority();
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let leaf = leaf_certificate(
        &key_pem,
        &rcgen::PKCS_RSA_SHA256,
        "app.contoso.com",
        &ca,
        &ca_key,
    );
    let kit = TestKit::start(TestKitConfig::default().with_app(cert_app(
        vec![],
        vec![TrustedCertificateSubject {
            subject: "app.contoso.com".into(),
            issuer_certificate: ca.pem(),
        }],
    )))
    .await
    .unwrap();
    // The chain as one PEM, CA first: the leaf is found by its key, whatever the order.
    let chain = format!("{}{}", ca.pem(), leaf);

    let without = identity_with(&kit, Certificate::from_pem(&key_pem, &chain).unwrap());
    let err = without
        .get_token_for_client(&api_scope())
        .await
        .unwrap_err();
    assert!(
        err.provider_error()
            .is_some_and(|p| p.has_code("AADSTS700027")),
        "{err}"
    );

    // The same from the environment: one PEM holding the key and the chain, x5c on.
    let bundle = temp_path("app.pem");
    std::fs::write(&bundle, format!("{key_pem}{chain}")).unwrap();
    let config = config_from(&[
        ("CLIENT_ID", CERT_APP.into()),
        ("AUTHORITY", kit.authority()),
        ("CLIENT_CERTIFICATE", bundle.display().to_string()),
        ("CLIENT_CERTIFICATE_SEND_X5C", "true".into()),
    ])
    .unwrap();
    match &config.credential {
        ClientCredential::Certificate(c) => {
            assert!(c.sends_x5c());
            assert_eq!(c.chain_len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let with = Identity::new(config).unwrap();
    let token = with.get_token_for_client(&api_scope()).await.unwrap();
    assert_eq!(claims_of(token.access_token.secret())["azp"], CERT_APP);

    // Another CA's certificate with the trusted subject is refused.
    let (other_ca, other_key) = certificate_authority();
    let forged = leaf_certificate(
        &key_pem,
        &rcgen::PKCS_RSA_SHA256,
        "app.contoso.com",
        &other_ca,
        &other_key,
    );
    let forged_id = identity_with(
        &kit,
        Certificate::from_pem(&key_pem, &forged)
            .unwrap()
            .with_send_x5c(true),
    );
    let err = forged_id
        .get_token_for_client(&Scopes::parse("https://graph.microsoft.com/.default"))
        .await
        .unwrap_err();
    assert!(
        err.provider_error()
            .is_some_and(|p| p.has_code("AADSTS700027")),
        "{err}"
    );
}
