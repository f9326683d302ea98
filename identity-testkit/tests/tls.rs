//! HTTPS with the testkit's own CA and real Entra host names mapped to it.

mod common;
use common::*;
use identity_testkit::*;

#[tokio::test]
async fn tls_with_mapped_hostnames() {
    let kit = TestKit::start(
        TestKitConfig::default()
            .with_tls()
            .with_auto_approve("adele@contoso.onmicrosoft.com"),
    )
    .await
    .unwrap();
    assert!(kit.base_url().starts_with("https://"));
    let ca = reqwest::Certificate::from_pem(kit.ca_pem().unwrap().as_bytes()).unwrap();
    let addr = kit.addr();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("login.microsoftonline.com", addr)
        .resolve("contosob2c.b2clogin.com", addr)
        .resolve("contosoext.ciamlogin.com", addr)
        .resolve("graph.microsoft.com", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let port = addr.port();
    let host = format!("https://login.microsoftonline.com:{port}");
    let (s, doc) = get_json(
        &c,
        &format!("{host}/{WORKFORCE_TENANT_ID}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(doc["issuer"], format!("{host}/{WORKFORCE_TENANT_ID}/v2.0"));
    let (_, v1) = get_json(
        &c,
        &format!("{host}/{WORKFORCE_TENANT_ID}/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(
        v1["issuer"],
        format!("https://sts.windows.net/{WORKFORCE_TENANT_ID}/")
    );
    let (s, b2c) = get_json(&c, &format!("https://contosob2c.b2clogin.com:{port}/contosob2c.onmicrosoft.com/B2C_1_signupsignin1/v2.0/.well-known/openid-configuration")).await;
    assert_eq!(s, 200);
    assert_eq!(
        b2c["issuer"],
        format!("https://contosob2c.b2clogin.com:{port}/{B2C_TENANT_ID}/v2.0/")
    );
    let (s, ciam) = get_json(&c, &format!("https://contosoext.ciamlogin.com:{port}/contosoext.onmicrosoft.com/v2.0/.well-known/openid-configuration")).await;
    assert_eq!(s, 200);
    assert_eq!(
        ciam["issuer"],
        format!("https://{EXTERNAL_ID_TENANT_ID}.ciamlogin.com/{EXTERNAL_ID_TENANT_ID}/v2.0")
    );
    // A full sign-in over TLS, then Graph on its own host name.
    let t = sign_in(
        &c,
        &format!("{host}/{WORKFORCE_TENANT_ID}"),
        "openid User.Read",
    )
    .await;
    assert_eq!(
        claims(t["id_token"].as_str().unwrap())["iss"],
        format!("{host}/{WORKFORCE_TENANT_ID}/v2.0")
    );
    let r = c
        .get(format!("https://graph.microsoft.com:{port}/v1.0/me"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client that does not trust the CA fails.
    let untrusting = reqwest::Client::builder()
        .resolve("login.microsoftonline.com", addr)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!(
            "{host}/common/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn ca_dir_is_reused_across_starts() {
    let dir = std::env::temp_dir().join(format!("testkit-ca-{}", uuid::Uuid::new_v4()));
    let cfg = || TestKitConfig {
        tls: Some(TlsConfig {
            ca_dir: Some(dir.clone()),
            extra_names: vec![],
        }),
        ..TestKitConfig::default()
    };
    let k1 = TestKit::start(cfg()).await.unwrap();
    let pem1 = k1.ca_pem().unwrap();
    k1.shutdown().await;
    let k2 = TestKit::start(cfg()).await.unwrap();
    assert_eq!(k2.ca_pem().unwrap(), pem1);
    // The saved CA still validates the new server certificate.
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem1.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = c
        .get(format!(
            "https://localhost:{}/common/v2.0/.well-known/openid-configuration",
            k2.addr().port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let kit = auto_kit().await;
    let url = format!(
        "{}/common/v2.0/.well-known/openid-configuration",
        kit.base_url()
    );
    let c = client();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    kit.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).send().await.is_err());
}
