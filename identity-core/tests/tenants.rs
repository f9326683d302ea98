//! Sign-in against every tenant type over real HTTP: B2C user flows, External ID,
//! personal accounts through `consumers` and `common`, certificate credentials, and the
//! real Entra hostnames mapped to the local provider over TLS.

use identity_core::{
    Authority, AuthorityKind, B2cUserFlows, Certificate, ClientCredential, Error, HttpClient,
    Identity, IdentityConfig, LogInOptions, MemorySession, Purpose, Timeouts, TokenRejection,
};
use identity_testkit::{TestKit, TestKitConfig, TlsConfig};
use std::time::Duration;

const CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const REDIRECT: &str = "http://localhost:5000/getAToken";

async fn kit() -> TestKit {
    let config = TestKitConfig {
        auto_approve: Some("adele@contoso.onmicrosoft.com".into()),
        ..TestKitConfig::default()
    };
    TestKit::start(config).await.unwrap()
}

fn identity(authority: Authority) -> Identity {
    Identity::new(
        IdentityConfig::new(CLIENT_ID, authority)
            .with_client_secret("testkit-secret")
            .with_redirect_uri(Some(REDIRECT))
            .with_timeouts(Timeouts {
                connect: Duration::from_secs(5),
                total: Duration::from_secs(30),
            }),
    )
    .unwrap()
}

async fn authorize(client: &reqwest::Client, auth_uri: &str) -> Vec<(String, String)> {
    let resp = client.get(auth_uri).send().await.unwrap();
    assert!(
        resp.status().is_redirection(),
        "authorize answered {}",
        resp.status()
    );
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in_with(
    id: &Identity,
    session: &MemorySession,
    client: &reqwest::Client,
    options: LogInOptions,
) -> Result<identity_core::LoggedIn, Error> {
    let start = id.log_in(session, options).await?;
    let params = authorize(client, &start.auth_uri).await;
    id.complete_log_in(
        session,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2c_sign_in_edit_profile_and_sign_out() {
    let kit = kit().await;
    let authority = Authority::b2c(
        &kit.base_url(),
        "contosob2c.onmicrosoft.com",
        "B2C_1_signupsignin1",
    )
    .unwrap();
    assert!(authority.is_b2c());
    let config = IdentityConfig::new(CLIENT_ID, authority)
        .with_client_secret("testkit-secret")
        .with_redirect_uri(Some(REDIRECT))
        .with_b2c_user_flows(B2cUserFlows {
            edit_profile: Some("B2C_1_profileediting1".into()),
            reset_password: Some("B2C_1_passwordreset1".into()),
        });
    let id = Identity::new(config).unwrap();
    let session = MemorySession::new();
    let done = sign_in_with(&id, &session, &browser(), LogInOptions::default())
        .await
        .unwrap();
    assert_eq!(done.user.name(), Some("Bob B2C"));
    assert!(done
        .user
        .claim("tfp")
        .is_some_and(|p| p.eq_ignore_ascii_case("B2C_1_signupsignin1")));
    assert_eq!(done.user.tid(), None, "B2C tokens carry no tid");

    let edited = sign_in_with(
        &id,
        &session,
        &browser(),
        LogInOptions {
            purpose: Some(Purpose::EditProfile),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(edited.purpose, Purpose::EditProfile);
    assert!(edited
        .user
        .claim("tfp")
        .is_some_and(|p| p.eq_ignore_ascii_case("B2C_1_profileediting1")));

    let out = id
        .log_out(&session, "http://localhost:5000/")
        .await
        .unwrap();
    assert!(
        out.to_ascii_lowercase().contains("b2c_1_profileediting1"),
        "end session of the flow that issued the tokens: {out}"
    );
    assert!(out.contains("id_token_hint="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2c_without_the_flow_is_a_configuration_error() {
    let kit = kit().await;
    let authority = Authority::b2c(
        &kit.base_url(),
        "contosob2c.onmicrosoft.com",
        "B2C_1_signupsignin1",
    )
    .unwrap();
    let id = identity(authority);
    let err = id
        .log_in(
            &MemorySession::new(),
            LogInOptions {
                purpose: Some(Purpose::EditProfile),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("EDITPROFILE_USER_FLOW"));
    // And B2C offers no device code sign-in.
    let authority = Authority::b2c(
        &kit.base_url(),
        "contosob2c.onmicrosoft.com",
        "B2C_1_signupsignin1",
    )
    .unwrap();
    let id =
        Identity::new(IdentityConfig::new(CLIENT_ID, authority).with_redirect_uri(None::<String>))
            .unwrap();
    let err = id
        .log_in(&MemorySession::new(), LogInOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeviceCodeUnsupported), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_id_sign_in() {
    let kit = kit().await;
    let authority =
        Authority::external_id(&kit.base_url(), "11112222-bbbb-3333-cccc-4444dddd5555").unwrap();
    let id = identity(authority);
    let done = sign_in_with(
        &id,
        &MemorySession::new(),
        &browser(),
        LogInOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(done.user.name(), Some("Carol Customer"));
    assert_eq!(
        done.user.tid(),
        Some("11112222-bbbb-3333-cccc-4444dddd5555")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_accounts_through_consumers_and_common() {
    let kit = kit().await;
    let consumers = identity(Authority::entra(&kit.base_url(), "consumers").unwrap());
    let done = sign_in_with(
        &consumers,
        &MemorySession::new(),
        &browser(),
        LogInOptions {
            login_hint: Some("megan@outlook.com".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        done.user.tid(),
        Some("9188040d-6c67-4c5b-b112-36a304b66dad")
    );

    // `common` advertises the {tenantid} template; both kinds of account get in.
    let common = identity(Authority::entra(&kit.base_url(), "common").unwrap());
    let msa = sign_in_with(
        &common,
        &MemorySession::new(),
        &browser(),
        LogInOptions {
            login_hint: Some("megan@outlook.com".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(msa.user.name(), Some("Megan Bowen"));
    let work = sign_in_with(
        &common,
        &MemorySession::new(),
        &browser(),
        LogInOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(work.user.tid(), Some(kit.workforce_tenant_id().as_str()));

    // A work-or-school-only app refuses personal accounts, and says why.
    let mut config = IdentityConfig::new(
        CLIENT_ID,
        Authority::entra(&kit.base_url(), "common").unwrap(),
    )
    .with_client_secret("testkit-secret")
    .with_redirect_uri(Some(REDIRECT));
    config.reject_personal_accounts = true;
    let strict = Identity::new(config).unwrap();
    let err = sign_in_with(
        &strict,
        &MemorySession::new(),
        &browser(),
        LogInOptions {
            login_hint: Some("megan@outlook.com".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidIdToken(TokenRejection::Issuer(_))),
        "{err:?}"
    );

    // A tenant allow-list admits only its tenants.
    let mut config = IdentityConfig::new(
        CLIENT_ID,
        Authority::entra(&kit.base_url(), "common").unwrap(),
    )
    .with_client_secret("testkit-secret")
    .with_redirect_uri(Some(REDIRECT));
    config.allowed_tenants = vec!["bbbbcccc-1111-dddd-2222-eeee3333ffff".into()];
    let listed = Identity::new(config).unwrap();
    let err = sign_in_with(
        &listed,
        &MemorySession::new(),
        &browser(),
        LogInOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credential_signs_private_key_jwt() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let signer = rcgen::KeyPair::from_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert_pem = rcgen::CertificateParams::new(vec!["webapp.example".to_owned()])
        .unwrap()
        .self_signed(&signer)
        .unwrap()
        .pem();

    let mut config = TestKitConfig {
        auto_approve: Some("adele@contoso.onmicrosoft.com".into()),
        ..TestKitConfig::default()
    };
    let mut app = config.default_app().unwrap().clone();
    app.client_secret = None;
    app.public_keys = vec![public_pem];
    config = config.with_app_replaced(app);
    let kit = TestKit::start(config).await.unwrap();

    let cert = Certificate::from_pem(&key_pem, &cert_pem).unwrap();
    assert_eq!(cert.thumbprint().len(), 43, "base64url SHA-256");
    assert!(!format!("{cert:?}").contains("PRIVATE"));
    let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    let id = Identity::new(
        IdentityConfig::new(CLIENT_ID, authority)
            .with_credential(ClientCredential::Certificate(Box::new(cert)))
            .with_redirect_uri(Some(REDIRECT)),
    )
    .unwrap();
    let done = sign_in_with(
        &id,
        &MemorySession::new(),
        &browser(),
        LogInOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(done.user.name(), Some("Adele Vance"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_entra_hostnames_mapped_to_the_local_provider_over_tls() {
    let config = TestKitConfig {
        auto_approve: Some("adele@contoso.onmicrosoft.com".into()),
        tls: Some(TlsConfig::default()),
        ..TestKitConfig::default()
    };
    let kit = TestKit::start(config).await.unwrap();
    let ca = reqwest::Certificate::from_pem(kit.ca_pem().unwrap().as_bytes()).unwrap();
    let port = kit.addr().port();
    let hosts = [
        "login.microsoftonline.com",
        "contosob2c.b2clogin.com",
        "contosoext.ciamlogin.com",
    ];
    let prepare = |b: reqwest::ClientBuilder| {
        hosts
            .iter()
            .fold(b.add_root_certificate(ca.clone()), |b, h| {
                b.resolve(h, kit.addr())
            })
    };
    let http =
        HttpClient::from_builder(prepare(reqwest::Client::builder()), Timeouts::default()).unwrap();
    let browser = prepare(reqwest::Client::builder())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let cases = [
        (format!("https://login.microsoftonline.com:{port}/contoso.onmicrosoft.com"), "Adele Vance"),
        (format!("https://contosob2c.b2clogin.com:{port}/contosob2c.onmicrosoft.com/B2C_1_signupsignin1"), "Bob B2C"),
        (format!("https://contosoext.ciamlogin.com:{port}"), "Carol Customer"),
    ];
    for (url, name) in cases {
        let authority = Authority::parse(&url).unwrap();
        match (authority.kind(), name) {
            (AuthorityKind::EntraId { .. }, "Adele Vance")
            | (AuthorityKind::B2c { .. }, "Bob B2C")
            | (AuthorityKind::ExternalId { .. }, "Carol Customer") => {}
            (kind, _) => panic!("{url} detected as {kind:?}"),
        }
        let id = Identity::new(
            IdentityConfig::new(CLIENT_ID, authority)
                .with_client_secret("testkit-secret")
                .with_redirect_uri(Some(REDIRECT))
                .with_http_client(http.clone()),
        )
        .unwrap();
        let done = sign_in_with(
            &id,
            &MemorySession::new(),
            &browser,
            LogInOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(done.user.name(), Some(name), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_id_on_a_custom_domain_signs_in_with_the_ciamlogin_issuer() {
    let config = TestKitConfig {
        auto_approve: Some("carol@example.com".into()),
        tls: Some(TlsConfig::default()),
        ..TestKitConfig::default()
    };
    let kit = TestKit::start(config).await.unwrap();
    let ca = reqwest::Certificate::from_pem(kit.ca_pem().unwrap().as_bytes()).unwrap();
    let port = kit.addr().port();
    let prepare = |b: reqwest::ClientBuilder| {
        b.add_root_certificate(ca.clone())
            .resolve(identity_testkit::CUSTOM_DOMAIN, kit.addr())
    };
    let http =
        HttpClient::from_builder(prepare(reqwest::Client::builder()), Timeouts::default()).unwrap();
    let browser = prepare(reqwest::Client::builder())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tid = identity_testkit::EXTERNAL_ID_TENANT_ID;
    // What a user sets: OIDC_AUTHORITY=https://login.contoso.com/{tenant id}/v2.0
    let config = IdentityConfig::from_lookup(|k| match k {
        "CLIENT_ID" => Some(CLIENT_ID.into()),
        "CLIENT_SECRET" => Some("testkit-secret".into()),
        "OIDC_AUTHORITY" => Some(format!("https://login.contoso.com:{port}/{tid}/v2.0")),
        "REDIRECT_URI" => Some(REDIRECT.into()),
        _ => None,
    })
    .unwrap()
    .with_http_client(http);
    let id = Identity::new(config).unwrap();
    let meta = id
        .metadata()
        .discovery(id.config().authority.discovery_url().as_str())
        .await
        .unwrap();
    assert_eq!(
        meta.issuer,
        format!("https://{tid}.ciamlogin.com/{tid}/v2.0")
    );
    assert!(
        meta.authorization_endpoint
            .starts_with(&format!("https://login.contoso.com:{port}/{tid}/")),
        "the endpoints are on the custom domain: {}",
        meta.authorization_endpoint
    );
    let session = MemorySession::new();
    let done = sign_in_with(&id, &session, &browser, LogInOptions::default())
        .await
        .unwrap();
    assert_eq!(done.user.name(), Some("Carol Customer"));
    assert_eq!(
        done.user.claim("iss"),
        Some(format!("https://{tid}.ciamlogin.com/{tid}/v2.0").as_str())
    );
    let end = id
        .log_out(&session, "http://localhost:5000/")
        .await
        .unwrap();
    assert!(
        end.starts_with(&format!(
            "https://login.contoso.com:{port}/{tid}/oauth2/v2.0/logout?"
        )),
        "{end}"
    );
}
