//! Client credentials, on-behalf-of, device code and private_key_jwt.

mod common;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use identity_testkit::*;
use serde_json::{json, Value};

#[tokio::test]
async fn client_credentials() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let scope = format!("api://{API_APP_CLIENT_ID}/.default");
    let (s, body) = token(
        &c,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        keys_of(&body),
        keys_of(&fixture("v2-success-client-credentials-long-lived.json")["body"])
    );
    let at = body["access_token"].as_str().unwrap();
    let (_, jwks) = get_json(&c, &format!("{auth}/discovery/v2.0/keys")).await;
    assert!(verify_with_jwks(at, &jwks));
    let cl = claims(at);
    assert_eq!(cl["aud"], API_APP_CLIENT_ID);
    assert_eq!(cl["roles"], json!(["Data.Read.All"]));
    assert!(cl.get("scp").is_none());
    assert_eq!(cl["azp"], WEB_APP_CLIENT_ID);
    // The API accepts the app token through its role.
    let r = c
        .get(format!("{}/api/echo", kit.base_url()))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Graph .default: no roles granted.
    let (s, body) = token(
        &c,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert!(claims(body["access_token"].as_str().unwrap())
        .get("roles")
        .is_none());
    // Scope without /.default.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("scope", "User.Read"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "invalid_scope", 1002012);
    // Unknown resource.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("scope", "api://nope/.default"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "invalid_resource", 500011);
    // Public clients cannot.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", PUBLIC_APP_CLIENT_ID),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(s, 401);
    assert_envelope(&err, "invalid_client", 7000218);
    // Unsupported grant type.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "password"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "unsupported_grant_type", 70003);
}

#[tokio::test]
async fn on_behalf_of() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let t = sign_in(
        &c,
        &auth,
        &format!("openid offline_access api://{API_APP_CLIENT_ID}/access_as_user"),
    )
    .await;
    let user_at = t["access_token"].as_str().unwrap().to_string();
    let cl = claims(&user_at);
    assert_eq!(cl["aud"], API_APP_CLIENT_ID);
    assert_eq!(cl["scp"], "access_as_user");
    let r = c
        .get(format!("{}/api/echo", kit.base_url()))
        .bearer_auth(&user_at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(
        echoed["claims"]["oid"],
        "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
    );
    let obo = |scope: &'static str, assertion: String, secret: &'static str| {
        let c = c.clone();
        let auth = auth.clone();
        async move {
            token(
                &c,
                &auth,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("client_id", API_APP_CLIENT_ID),
                    ("client_secret", secret),
                    ("assertion", &assertion),
                    ("requested_token_use", "on_behalf_of"),
                    ("scope", scope),
                ],
            )
            .await
        }
    };
    let (s, body) = obo(
        "https://graph.microsoft.com/User.Read offline_access",
        user_at.clone(),
        API_APP_SECRET,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body["refresh_token"].is_string());
    assert!(body.get("id_token").is_none());
    let g = claims(body["access_token"].as_str().unwrap());
    assert_eq!(g["aud"], GRAPH_APP_ID);
    assert_eq!(g["azp"], API_APP_CLIENT_ID);
    assert_eq!(g["oid"], "00aa00aa-bb11-cc22-dd33-44ee44ee44ee");
    let r = c
        .get(kit.api_url())
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Not consented downstream.
    let (s, err) = obo(
        "https://graph.microsoft.com/Mail.Read",
        user_at.clone(),
        API_APP_SECRET,
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "invalid_grant", 65001);
    assert_eq!(err["suberror"], "consent_required");
    // MFA-protected downstream scope.
    let (s, err) = obo(
        "https://graph.microsoft.com/Files.ReadWrite.All",
        user_at.clone(),
        API_APP_SECRET,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(err["error"], "interaction_required");
    assert!(err["claims"].is_string());
    // An assertion for another audience (a Graph token) is refused.
    let graph_t = sign_in(&c, &auth, "openid User.Read").await;
    let (s, err) = obo(
        "https://graph.microsoft.com/User.Read",
        graph_t["access_token"].as_str().unwrap().to_string(),
        API_APP_SECRET,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(err["error"], "invalid_grant");
    // Tampered assertion.
    let (s, _) = obo(
        "https://graph.microsoft.com/User.Read",
        format!("{user_at}x"),
        API_APP_SECRET,
    )
    .await;
    assert_eq!(s, 400);
    // Wrong secret.
    let (s, _) = obo("https://graph.microsoft.com/User.Read", user_at, "nope").await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn device_code_auto_and_interactive() {
    let c = client();
    // Auto-approve: approved at once.
    let kit = auto_kit().await;
    let auth = kit.authority();
    let r = c
        .post(format!("{auth}/oauth2/v2.0/devicecode"))
        .form(&[
            ("client_id", PUBLIC_APP_CLIENT_ID),
            ("scope", "openid offline_access User.Read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    for k in [
        "user_code",
        "device_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    ] {
        assert!(d.get(k).is_some(), "{k}");
    }
    assert!(d["expires_in"].is_u64() && d["interval"].is_u64());
    let (s, t) = token(
        &c,
        &auth,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", PUBLIC_APP_CLIENT_ID),
            ("device_code", d["device_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        claims(t["id_token"].as_str().unwrap())["aud"],
        PUBLIC_APP_CLIENT_ID
    );
    drop(kit);

    // Interactive: pending until the user approves on the verification page.
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let auth = kit.authority();
    let d: Value = c
        .post(format!("{auth}/oauth2/v2.0/devicecode"))
        .form(&[
            ("client_id", PUBLIC_APP_CLIENT_ID),
            ("scope", "openid User.Read"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dc = d["device_code"].as_str().unwrap().to_string();
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", PUBLIC_APP_CLIENT_ID),
        ("device_code", dc.as_str()),
    ];
    let poll = || token(&c, &auth, &form);
    let (s, err) = poll().await;
    assert_eq!(s, 400);
    assert_envelope(&err, "authorization_pending", 70016);
    let page = d["verification_uri"].as_str().unwrap();
    let html = c.get(page).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("name=\"user_code\""));
    let r = c
        .post(page)
        .form(&[
            ("user_code", d["user_code"].as_str().unwrap()),
            ("username", "alex@contoso.onmicrosoft.com"),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("incorrect"));
    let r = c
        .post(page)
        .form(&[
            ("user_code", d["user_code"].as_str().unwrap()),
            ("username", "alex@contoso.onmicrosoft.com"),
            ("password", "password"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("You have signed in"));
    assert_eq!(kit.calls(Endpoint::DeviceAuth), 3);
    let (s, t) = poll().await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        claims(t["id_token"].as_str().unwrap())["preferred_username"],
        "alex@contoso.onmicrosoft.com"
    );
    // Expiry via the clock.
    let d: Value = c
        .post(format!("{auth}/oauth2/v2.0/devicecode"))
        .form(&[("client_id", PUBLIC_APP_CLIENT_ID), ("scope", "openid")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    kit.set_clock_offset(1000);
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", PUBLIC_APP_CLIENT_ID),
            ("device_code", d["device_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "expired_token", 70019);
}

#[tokio::test]
async fn private_key_jwt() {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::signature::{SignatureEncoding, Signer};
    use sha2::Sha256;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let client_id = "44445555-eeee-6666-ffff-7777aaaa8888";
    let app = TestApp {
        client_id: client_id.into(),
        name: "Cert App".into(),
        client_secret: None,
        redirect_uris: vec![REDIRECT.into()],
        allow_loopback_any_port: true,
        post_logout_redirect_uris: vec![],
        public_keys: vec![pem],
        app_id_uri: None,
        scopes: vec![],
        app_roles: vec![],
        granted_app_roles: vec![AppRoleGrant {
            resource: format!("api://{API_APP_CLIENT_ID}"),
            role: "Data.Read.All".into(),
        }],
        federated_credentials: vec![],
        trusted_certificate_subjects: vec![],
        frontchannel_logout_uri: None,
        backchannel_logout_uri: None,
    };
    let kit = TestKit::start(TestKitConfig::default().with_app(app))
        .await
        .unwrap();
    let c = client();
    let auth = kit.authority();
    let token_url = format!("{auth}/oauth2/v2.0/token");
    let signer = SigningKey::<Sha256>::new(key);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let make = |aud: &str, exp: i64| {
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": "AAAA"});
        let cl = json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": exp, "nbf": now, "iat": now, "jti": uuid::Uuid::new_v4().to_string()});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(cl.to_string())
        );
        let sig = signer.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    let scope = format!("api://{API_APP_CLIENT_ID}/.default");
    let send = |assertion: String| {
        let c = c.clone();
        let auth = auth.clone();
        let scope = scope.clone();
        async move {
            token(
                &c,
                &auth,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                    ("scope", &scope),
                ],
            )
            .await
        }
    };
    let (s, body) = send(make(&token_url, now + 600)).await;
    assert_eq!(s, 200, "{body}");
    let cl = claims(body["access_token"].as_str().unwrap());
    assert_eq!(cl["azpacr"], "2");
    assert_eq!(cl["roles"], json!(["Data.Read.All"]));
    let (s, err) = send(make("https://elsewhere.example/token", now + 600)).await;
    assert_eq!(s, 401);
    assert_eq!(err["error"], "invalid_client");
    let (s, _) = send(make(&token_url, now - 3600)).await;
    assert_eq!(s, 401);
    let mut bad = make(&token_url, now + 600);
    bad.push('A');
    let (s, err) = send(bad).await;
    assert_eq!(s, 401);
    assert_envelope(&err, "invalid_client", 700027);
    // No credential at all.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(s, 401);
    assert_envelope(&err, "invalid_client", 7000218);
}
