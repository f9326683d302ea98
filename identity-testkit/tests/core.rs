//! Discovery, JWKS, authorization code + PKCE, refresh, counters and the control API.

mod common;
use common::*;
use identity_testkit::*;
use serde_json::{json, Value};

#[tokio::test]
async fn discovery_matches_fixture_member_sets() {
    let kit = auto_kit().await;
    let c = client();
    let base = kit.base_url();
    let tid = kit.workforce_tenant_id();
    for (path, fix) in [
        (
            format!("{base}/{tid}/v2.0/.well-known/openid-configuration"),
            "v2-tenant.json",
        ),
        (
            format!("{base}/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"),
            "v2-tenant.json",
        ),
        (
            format!("{base}/common/v2.0/.well-known/openid-configuration"),
            "v2-common.json",
        ),
        (
            format!("{base}/organizations/v2.0/.well-known/openid-configuration"),
            "v2-organizations.json",
        ),
        (
            format!("{base}/consumers/v2.0/.well-known/openid-configuration"),
            "v2-consumers.json",
        ),
        (
            format!("{base}/common/.well-known/openid-configuration"),
            "v1-common.json",
        ),
    ] {
        let (s, doc) = get_json(&c, &path).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(keys_of(&doc), keys_of(&fixture(fix)), "{path}");
        for k in ["token_endpoint", "authorization_endpoint", "jwks_uri"] {
            assert!(doc[k].as_str().unwrap().starts_with(&base), "{k}");
        }
    }
    let (_, doc) = get_json(
        &c,
        &format!("{base}/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(doc["issuer"], format!("{base}/{tid}/v2.0"));
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/{tid}/oauth2/v2.0/token")
    );
    let (_, doc) = get_json(
        &c,
        &format!("{base}/common/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(doc["issuer"], format!("{base}/{{tenantid}}/v2.0"));
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/common/oauth2/v2.0/token")
    );
    assert!(doc["tenant_region_scope"].is_null());
    let (_, doc) = get_json(
        &c,
        &format!("{base}/consumers/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(doc["issuer"], format!("{base}/{CONSUMERS_TENANT_ID}/v2.0"));
    let (_, doc) = get_json(
        &c,
        &format!("{base}/{tid}/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(doc["issuer"], format!("{base}/{tid}/"));
}

#[tokio::test]
async fn unknown_tenant_is_invalid_tenant_400() {
    let kit = auto_kit().await;
    let (s, body) = get_json(
        &client(),
        &format!(
            "{}/test/v2.0/.well-known/openid-configuration",
            kit.base_url()
        ),
    )
    .await;
    assert_eq!(s, 400);
    let fix = fixture("error-invalid-tenant.json");
    assert_eq!(keys_of(&body), keys_of(&fix["body"]));
    assert_envelope(&body, "invalid_tenant", 90002);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("Tenant 'test' not found"));
}

/// The key's `x5c` is one DER certificate whose thumbprint is `x5t` and which holds the
/// key's modulus, as Entra publishes it.
fn x5c_matches_the_key(k: &Value) {
    use base64::Engine;
    let x5c = k["x5c"].as_array().expect("x5c is an array");
    assert_eq!(x5c.len(), 1, "one self-signed certificate per key");
    let der = base64::engine::general_purpose::STANDARD
        .decode(x5c[0].as_str().unwrap())
        .expect("x5c is standard base64");
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    assert_eq!(
        k["x5t"].as_str().unwrap(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1.as_ref())
    );
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(k["n"].as_str().unwrap())
        .unwrap();
    assert!(
        der.windows(n.len()).any(|w| w == n.as_slice()),
        "the certificate carries the key's modulus"
    );
    let cn = b"accounts.accesscontrol.windows.net";
    assert!(der.windows(cn.len()).any(|w| w == cn));
}

#[tokio::test]
async fn jwks_shape() {
    let kit = auto_kit().await;
    let (s, jwks) = get_json(
        &client(),
        &format!("{}/discovery/v2.0/keys", kit.authority()),
    )
    .await;
    assert_eq!(s, 200);
    let fix = fixture("common-v2-keys.json");
    let fix_members = keys_of(&fix["keys"][0]);
    for k in jwks["keys"].as_array().unwrap() {
        assert_eq!(keys_of(k), fix_members);
        assert_eq!(k["kid"], k["x5t"]);
        x5c_matches_the_key(k);
        assert!(k.get("alg").is_none());
        assert_eq!(k["issuer"], format!("{}/v2.0", kit.authority()));
    }
    let (_, common) = get_json(
        &client(),
        &format!("{}/common/discovery/v2.0/keys", kit.base_url()),
    )
    .await;
    assert_eq!(
        common["keys"][0]["issuer"],
        format!("{}/{{tenantid}}/v2.0", kit.base_url())
    );
}

/// Every key Entra-shaped tenants publish carries `x5c` and `x5t` (with `kid == x5t`):
/// the External ID tenant's, and both keys after a rotation (the new one and the previous
/// one kept for its grace period).
#[tokio::test]
async fn every_published_key_carries_x5c_and_x5t() {
    let kit = auto_kit().await;
    kit.rotate_keys();
    let base = kit.base_url();
    for url in [
        format!("{}/discovery/v2.0/keys", kit.authority()),
        format!("{base}/{EXTERNAL_ID_TENANT_ID}/discovery/v2.0/keys"),
    ] {
        let (s, jwks) = get_json(&client(), &url).await;
        assert_eq!(s, 200, "{url}");
        let keys = jwks["keys"].as_array().expect("keys");
        assert!(keys.len() >= 2, "{url}: the new key and the previous one");
        for k in keys {
            assert!(k["x5t"].is_string() && k["x5c"].is_array(), "{url}: {k}");
            assert_eq!(k["kid"], k["x5t"], "{url}");
            x5c_matches_the_key(k);
        }
    }
}

#[tokio::test]
async fn auth_code_pkce_round_trip_and_token_shapes() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let (verifier, challenge) = pkce();
    let q = authorize(
        &c,
        &auth,
        &[
            ("scope", "openid profile email offline_access User.Read"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("client_info", "1"),
            ("state", "eyJpZCI6IjEifQ=="),
        ],
    )
    .await;
    let fix = fixture("entra-success-code-query.json");
    assert_eq!(
        keys_of(&serde_json::to_value(&q).unwrap()),
        keys_of(&fix["params"])
    );
    assert_eq!(q["state"], "eyJpZCI6IjEifQ==");
    let (s, body) = token(
        &c,
        &auth,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_info", "1"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let fix = fixture("v2-success-authcode.json");
    assert_eq!(keys_of(&body), keys_of(&fix["body"]));
    assert!(body["expires_in"].is_u64() && body["ext_expires_in"].is_u64());
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
    let scope = body["scope"].as_str().unwrap();
    for s in ["openid", "profile", "email", "offline_access", "User.Read"] {
        assert!(scope.split(' ').any(|x| x == s), "{scope}");
    }
    let (_, jwks) = get_json(&c, &format!("{auth}/discovery/v2.0/keys")).await;
    let idt = body["id_token"].as_str().unwrap();
    assert!(verify_with_jwks(idt, &jwks));
    let h = header(idt);
    assert_eq!(h, json!({"typ": "JWT", "alg": "RS256", "kid": h["kid"]}));
    let cl = claims(idt);
    let mut expected = keys_of(&fixture("v2-workforce.json")["payload"]);
    expected.insert("roles".into());
    expected.insert("groups".into());
    assert_eq!(keys_of(&cl), expected);
    assert_eq!(cl["iss"], format!("{auth}/v2.0"));
    assert_eq!(cl["aud"], WEB_APP_CLIENT_ID);
    assert_eq!(cl["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(cl["tid"], WORKFORCE_TENANT_ID);
    assert_eq!(cl["oid"], "00aa00aa-bb11-cc22-dd33-44ee44ee44ee");
    assert_eq!(cl["ver"], "2.0");
    assert_eq!(cl["sid"], q["session_state"].as_str());
    assert_eq!(
        cl["exp"].as_i64().unwrap() - cl["iat"].as_i64().unwrap(),
        3900
    );
    assert_eq!(cl["roles"], json!(["Reader"]));
    let at = body["access_token"].as_str().unwrap();
    assert!(verify_with_jwks(at, &jwks));
    let ac = claims(at);
    assert_eq!(ac["aud"], GRAPH_APP_ID);
    assert!(ac["scp"]
        .as_str()
        .unwrap()
        .split(' ')
        .any(|s| s == "User.Read"));
    assert_eq!(ac["azp"], WEB_APP_CLIENT_ID);
    assert_eq!(ac["ver"], "2.0");
    let ci: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            body["client_info"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        ci,
        json!({"uid": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee", "utid": WORKFORCE_TENANT_ID})
    );

    // The same code again: AADSTS54005.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "invalid_grant", 54005);
}

#[tokio::test]
async fn refresh_rotates_and_revocation_stops_it() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let first = sign_in(&c, &auth, "openid profile offline_access User.Read").await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_string();
    let form = |rt: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", WEB_APP_CLIENT_ID.to_string()),
            ("client_secret", WEB_APP_SECRET.to_string()),
            ("refresh_token", rt.to_string()),
            (
                "scope",
                "openid profile offline_access User.Read".to_string(),
            ),
        ]
    };
    let f1 = form(&rt1);
    let f1: Vec<(&str, &str)> = f1.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, second) = token(&c, &auth, &f1).await;
    assert_eq!(s, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    let idt = claims(second["id_token"].as_str().unwrap());
    assert!(idt.get("nonce").is_none());
    assert_eq!(
        idt["oid"],
        claims(first["id_token"].as_str().unwrap())["oid"]
    );
    // The old refresh token stays valid, as at Entra.
    let (s, _) = token(&c, &auth, &f1).await;
    assert_eq!(s, 200);
    kit.revoke_refresh_tokens("adele@contoso.onmicrosoft.com");
    let (s, err) = token(&c, &auth, &f1).await;
    assert_eq!(s, 400);
    assert_envelope(&err, "invalid_grant", 70008);
    assert_eq!(
        keys_of(&err),
        keys_of(&fixture("error-invalid-grant-70008.json")["body"])
    );
}

#[tokio::test]
async fn client_and_grant_errors() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let (verifier, challenge) = pkce();
    let pk = [
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let code = |q: std::collections::HashMap<String, String>| q["code"].clone();
    // Wrong secret: 401 invalid_client 7000215.
    let cd = code(authorize(&c, &auth, &pk).await);
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", "nope"),
            ("code", &cd),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 401);
    assert_envelope(&err, "invalid_client", 7000215);
    assert_eq!(
        keys_of(&err),
        keys_of(&fixture("error-invalid-client-7000215.json")["body"])
    );
    // Missing credential: 401 7000218.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("code", &cd),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 401);
    assert_envelope(&err, "invalid_client", 7000218);
    // Basic auth works; wrong redirect_uri: 500112.
    let r = c
        .post(format!("{auth}/oauth2/v2.0/token"))
        .basic_auth(WEB_APP_CLIENT_ID, Some(WEB_APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", cd.as_str()),
            ("redirect_uri", "http://localhost:5000/other"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_envelope(&r.json().await.unwrap(), "invalid_grant", 500112);
    // PKCE mismatch: 501481.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &cd),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "wrong-verifier-wrong-verifier-wrong-verifier",
            ),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "invalid_grant", 501481);
    // Code of another client: 70000.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", API_APP_CLIENT_ID),
            ("client_secret", API_APP_SECRET),
            ("code", &cd),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "invalid_grant", 70000);
    // Still redeemable by its own client after the failures.
    let (s, _) = token(
        &c,
        &auth,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &cd),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 200);
    // Unknown client: unauthorized_client 700016.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "deadbeef-0000-0000-0000-000000000000"),
            ("client_secret", "x"),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "unauthorized_client", 700016);
}

#[tokio::test]
async fn authorize_errors() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    // Unregistered redirect URI: an error page, not a redirect.
    let r = c
        .get(format!("{auth}/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", WEB_APP_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "https://evil.example/cb"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("AADSTS50011"));
    // Loopback with another port and the registered path is accepted.
    let q = authorize(
        &c,
        &auth,
        &[("redirect_uri", "http://127.0.0.1:61234/getAToken")],
    )
    .await;
    assert!(q.contains_key("code"));
    // Unknown client: error page AADSTS700016.
    let r = c
        .get(format!("{auth}/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", "deadbeef-0000-0000-0000-000000000000"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("AADSTS700016"));
    // response_type token: unsupported_response_type.
    let q = authorize(&c, &auth, &[("response_type", "token")]).await;
    assert_eq!(q["error"], "unsupported_response_type");
    assert!(q["error_description"].starts_with("AADSTS700051"));
    // PKCE plain refused.
    let q = authorize(
        &c,
        &auth,
        &[
            ("code_challenge", "abc"),
            ("code_challenge_method", "plain"),
        ],
    )
    .await;
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st==");
    // prompt=none without a session: login_required 50058.
    let q = authorize(&c, &auth, &[("prompt", "none")]).await;
    assert_eq!(q["error"], "login_required");
    assert!(q["error_description"].starts_with("AADSTS50058: "));
    // form_post answers with an auto-submitting form.
    let r = c
        .get(format!("{auth}/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", WEB_APP_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("response_mode", "form_post"),
            ("state", "<s>"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"code\"") && html.contains("&lt;s&gt;") && !html.contains("<s>"));
}

#[tokio::test]
async fn sso_cookie_allows_prompt_none() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let r = c
        .get(format!("{auth}/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", WEB_APP_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = c
        .get(format!("{auth}/oauth2/v2.0/authorize"))
        .header("cookie", cookie)
        .query(&[
            ("client_id", WEB_APP_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("prompt", "none"),
        ])
        .send()
        .await
        .unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert!(q.contains_key("code"), "{q:?}");
}

#[tokio::test]
async fn counters_and_control_api() {
    let kit = auto_kit().await;
    let c = client();
    let base = kit.base_url();
    get_json(
        &c,
        &format!("{}/v2.0/.well-known/openid-configuration", kit.authority()),
    )
    .await;
    get_json(
        &c,
        &format!("{}/v2.0/.well-known/openid-configuration", kit.authority()),
    )
    .await;
    sign_in(&c, &kit.authority(), "openid User.Read").await;
    assert_eq!(kit.calls(Endpoint::Discovery), 2);
    assert_eq!(kit.calls(Endpoint::Authorize), 1);
    assert_eq!(kit.calls(Endpoint::Token), 1);
    let (s, counters) = get_json(&c, &format!("{base}/_testkit/counters")).await;
    assert_eq!(s, 200);
    assert_eq!(counters["token"], 1);
    assert_eq!(counters["discovery"], 2);
    c.post(format!("{base}/_testkit/counters/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(kit.calls(Endpoint::Token), 0);
    let (_, cfg) = get_json(&c, &format!("{base}/_testkit/config")).await;
    assert!(!cfg.to_string().contains("testkit-secret"));
    assert!(!cfg.to_string().contains("\"password\""));
    assert_eq!(cfg["authorities"]["common"], format!("{base}/common"));
    // Control calls are not counted.
    assert_eq!(kit.calls(Endpoint::Discovery), 0);
    // Fault and tamper via HTTP.
    let r = c
        .post(format!("{base}/_testkit/fault"))
        .json(&json!({"endpoint": "token", "fault": {"status": 503}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, body) = token(
        &c,
        &kit.authority(),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(s, 503);
    assert_eq!(body["error"], "temporarily_unavailable");
    c.post(format!("{base}/_testkit/fault"))
        .json(&json!({"endpoint": "token", "fault": null}))
        .send()
        .await
        .unwrap();
    let r = c
        .post(format!("{base}/_testkit/tamper"))
        .json(&json!({"tamper": "wrong_audience"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = sign_in(&c, &kit.authority(), "openid User.Read").await;
    assert_ne!(
        claims(t["id_token"].as_str().unwrap())["aud"],
        WEB_APP_CLIENT_ID
    );
    let r = c
        .post(format!("{base}/_testkit/tamper"))
        .json(&json!({"tamper": "bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    c.post(format!("{base}/_testkit/tamper"))
        .json(&json!({"tamper": null}))
        .send()
        .await
        .unwrap();
    let r = c
        .post(format!("{base}/_testkit/clock"))
        .json(&json!({"offset_secs": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = sign_in(&c, &kit.authority(), "openid User.Read").await;
    let iat = claims(t["id_token"].as_str().unwrap())["iat"]
        .as_i64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((iat - now - 3600).abs() < 10);
    let r = c
        .post(format!("{base}/_testkit/rotate-keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{base}/_testkit/revoke"))
        .json(&json!({"username": "adele@contoso.onmicrosoft.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn key_rotation_keeps_previous_key_for_one_rotation() {
    let kit = auto_kit().await;
    let c = client();
    let url = format!("{}/discovery/v2.0/keys", kit.authority());
    let kids = |v: &Value| {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (_, j0) = get_json(&c, &url).await;
    let t0 = sign_in(&c, &kit.authority(), "openid User.Read").await;
    let k0 = kids(&j0);
    assert_eq!(k0.len(), 1);
    kit.rotate_keys();
    let (_, j1) = get_json(&c, &url).await;
    let k1 = kids(&j1);
    assert_eq!(k1.len(), 2);
    assert!(k1.contains(&k0[0]));
    let t1 = sign_in(&c, &kit.authority(), "openid User.Read").await;
    let new_kid = header(t1["id_token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_kid, k0[0]);
    assert!(verify_with_jwks(t0["id_token"].as_str().unwrap(), &j1));
    assert!(verify_with_jwks(t1["id_token"].as_str().unwrap(), &j1));
    kit.rotate_keys();
    let (_, j2) = get_json(&c, &url).await;
    let k2 = kids(&j2);
    assert_eq!(k2.len(), 2);
    assert!(!k2.contains(&k0[0]));
    assert!(k2.contains(&new_kid));
}

#[tokio::test]
async fn openidconnect_accepts_the_jwks_and_id_token_signature() {
    use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
    use openidconnect::JsonWebKey;
    let kit = auto_kit().await;
    let c = client();
    let t = sign_in(&c, &kit.authority(), "openid User.Read").await;
    let jwks_text = c
        .get(format!("{}/discovery/v2.0/keys", kit.authority()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let set: CoreJsonWebKeySet = serde_json::from_str(&jwks_text).unwrap();
    let idt = t["id_token"].as_str().unwrap();
    let (input, sig) = idt.rsplit_once('.').unwrap();
    let sig =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    let ok = set.keys().iter().any(|k| {
        k.verify_signature(
            &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            input.as_bytes(),
            &sig,
        )
        .is_ok()
    });
    assert!(ok);
}

#[tokio::test]
async fn control_api_fault_forms_and_instance_discovery() {
    let kit = auto_kit().await;
    let c = client();
    let base = kit.base_url();
    let disco = format!("{}/v2.0/.well-known/openid-configuration", kit.authority());
    for (fault, check) in [
        (json!({"slow_ms": 50}), 200u16),
        (json!("malformed_json"), 200),
        (json!({"status": 429}), 429),
    ] {
        let r = c
            .post(format!("{base}/_testkit/fault"))
            .json(&json!({"endpoint": "discovery", "fault": fault}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(c.get(&disco).send().await.unwrap().status().as_u16(), check);
    }
    c.post(format!("{base}/_testkit/fault"))
        .json(&json!({"endpoint": "discovery", "fault": "down"}))
        .send()
        .await
        .unwrap();
    assert!(client().get(&disco).send().await.is_err());
    let r = c
        .post(format!("{base}/_testkit/fault"))
        .json(&json!({"endpoint": "nope", "fault": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    c.post(format!("{base}/_testkit/fault"))
        .json(&json!({"endpoint": "discovery", "fault": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(c.get(&disco).send().await.unwrap().status(), 200);
    // MSAL-style instance discovery points back at this host.
    let (s, inst) = get_json(&c, &format!("{base}/common/discovery/instance?api-version=1.1&authorization_endpoint={}/oauth2/v2.0/authorize", kit.authority())).await;
    assert_eq!(s, 200);
    assert_eq!(inst["tenant_discovery_endpoint"], format!("{disco}"));
    // v1 keys path serves the same key set.
    let (s, v1) = get_json(&c, &format!("{}/discovery/keys", kit.authority())).await;
    assert_eq!(s, 200);
    assert!(!v1["keys"].as_array().unwrap().is_empty());
}
