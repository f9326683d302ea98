//! B2C, External ID, consent, MFA, logout, protected APIs, faults and tampering.

mod common;
use common::*;
use identity_testkit::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SUSI: &str = "B2C_1_signupsignin1";

fn params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = vec![
        ("client_id", WEB_APP_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid offline_access"),
        ("state", "abc=="),
        ("nonce", "nonce-1"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    for (k, v) in extra {
        p.retain(|(a, _)| a != k);
        p.push((k.to_string(), v.to_string()));
    }
    p
}

#[tokio::test]
async fn b2c_discovery_keys_and_tokens() {
    let kit = auto_kit().await;
    let c = client();
    let base = kit.base_url();
    let auth = kit.b2c_authority(SUSI);
    let (s, doc) = get_json(&c, &format!("{auth}/v2.0/.well-known/openid-configuration")).await;
    assert_eq!(s, 200);
    assert_eq!(keys_of(&doc), keys_of(&fixture("b2c-userflow-path.json")));
    assert_eq!(doc["issuer"], format!("{base}/{B2C_TENANT_ID}/v2.0/"));
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/contosob2c.onmicrosoft.com/b2c_1_signupsignin1/oauth2/v2.0/token")
    );
    // Query form, lower-case policy.
    let (s, qdoc) = get_json(&c, &format!("{base}/contosob2c.onmicrosoft.com/v2.0/.well-known/openid-configuration?p=b2c_1_signupsignin1")).await;
    assert_eq!(s, 200);
    assert_eq!(
        keys_of(&qdoc),
        keys_of(&fixture("b2c-custom-policy-query.json"))
    );
    assert!(qdoc["jwks_uri"]
        .as_str()
        .unwrap()
        .ends_with("/discovery/v2.0/keys?p=b2c_1_signupsignin1"));
    // Unknown policy.
    let (s, _) = get_json(
        &c,
        &format!(
            "{base}/contosob2c.onmicrosoft.com/B2C_1_nope/v2.0/.well-known/openid-configuration"
        ),
    )
    .await;
    assert_eq!(s, 400);
    // Distinct keys per policy.
    let (_, k1) = get_json(&c, &format!("{auth}/discovery/v2.0/keys")).await;
    let (_, k2) = get_json(
        &c,
        &format!(
            "{}/discovery/v2.0/keys",
            kit.b2c_authority("B2C_1_profileediting1")
        ),
    )
    .await;
    assert_ne!(k1["keys"][0]["kid"], k2["keys"][0]["kid"]);
    // Sign-in: B2C claim set, no access token for openid-only scopes.
    let t = sign_in(&c, &auth, "openid offline_access").await;
    assert!(t.get("access_token").is_none());
    assert!(t["refresh_token"].is_string());
    let idt = t["id_token"].as_str().unwrap();
    assert!(verify_with_jwks(idt, &k1));
    assert!(!verify_with_jwks(idt, &k2));
    let cl = claims(idt);
    assert_eq!(cl["ver"], "1.0");
    assert!(cl.get("tid").is_none());
    assert_eq!(cl["tfp"], SUSI);
    assert_eq!(cl["emails"], json!(["bob@contoso.com"]));
    assert_eq!(cl["oid"], "52f6cad9-b822-4492-b742-e60cd2d55ee2");
    assert_eq!(cl["sub"], cl["oid"]);
    assert_eq!(cl["nonce"], "n-0S6_WzA2Mj");
    assert!(cl["auth_time"].is_i64());
    assert_eq!(cl["iss"], format!("{base}/{B2C_TENANT_ID}/v2.0/"));
    // No session_state on B2C redirects; client_info uid carries the policy.
    let q = authorize(&c, &auth, &[("client_info", "1")]).await;
    assert!(!q.contains_key("session_state"));
    let ci = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &q["client_info"],
        )
        .unwrap(),
    )
    .unwrap();
    assert!(ci.contains("-b2c_1_signupsignin1"));
    // An API scope gives an access token.
    let t = sign_in(
        &c,
        &auth,
        &format!("openid offline_access {WEB_APP_CLIENT_ID}"),
    )
    .await;
    assert_eq!(
        claims(t["access_token"].as_str().unwrap())["aud"],
        WEB_APP_CLIENT_ID
    );
    // B2C errors: only error + error_description.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("refresh_token", "garbage"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        keys_of(&err),
        keys_of(&json!({"error": 1, "error_description": 1}))
    );
    assert!(err["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADB2C"));
    // No device code endpoint for B2C.
    let r = c
        .post(format!("{auth}/oauth2/v2.0/devicecode"))
        .form(&[("client_id", WEB_APP_CLIENT_ID), ("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn b2c_forgot_password_cancel_and_pages() {
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let c = client();
    let auth = kit.b2c_authority(SUSI);
    let url = format!("{auth}/oauth2/v2.0/authorize");
    let page = c.get(&url).query(&params(&[])).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Forgot your password?") && html.contains("bob@contoso.com"));
    assert!(!html.contains("adele@"));
    for (action, code, fix) in [
        (
            "forgot",
            "AADB2C90118",
            "b2c-error-forgot-password-AADB2C90118.json",
        ),
        (
            "cancel",
            "AADB2C90091",
            "b2c-error-user-cancelled-AADB2C90091.json",
        ),
    ] {
        let r = c
            .post(&url)
            .form(&params(&[("_action", action)]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let q = query_of(r.headers()["location"].to_str().unwrap());
        let f = fixture(fix);
        let mut want = keys_of(&f["params"]);
        want.insert("state".into());
        assert_eq!(keys_of(&serde_json::to_value(&q).unwrap()), want);
        assert_eq!(q["error"], "access_denied");
        assert!(q["error_description"].starts_with(&format!("{code}: ")));
        assert!(q["error_description"].ends_with("\r\n"));
        assert_eq!(q["state"], "abc==");
    }
    // Wrong password re-renders the page; right password returns a code.
    let r = c
        .post(&url)
        .form(&params(&[
            ("_action", "login"),
            ("username", "bob@contoso.com"),
            ("password", "bad"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(&url)
        .form(&params(&[
            ("_action", "login"),
            ("username", "bob@contoso.com"),
            ("password", "password"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(query_of(r.headers()["location"].to_str().unwrap()).contains_key("code"));
    // Password reset flow page, then a code.
    let reset = format!(
        "{}/oauth2/v2.0/authorize",
        kit.b2c_authority("B2C_1_passwordreset1")
    );
    let r = c.get(&reset).query(&params(&[])).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("Reset your password"));
    let r = c
        .post(&reset)
        .form(&params(&[
            ("_action", "reset"),
            ("username", "bob@contoso.com"),
            ("new_password", "x"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(query_of(r.headers()["location"].to_str().unwrap()).contains_key("code"));
}

#[tokio::test]
async fn external_id_and_host_dispatch() {
    let kit = auto_kit().await;
    let c = client();
    let base = kit.base_url();
    let tid = EXTERNAL_ID_TENANT_ID;
    let (s, doc) = get_json(
        &c,
        &format!(
            "{}/v2.0/.well-known/openid-configuration",
            kit.external_id_authority()
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(keys_of(&doc), keys_of(&fixture("ciam-tenant.json")));
    assert_eq!(doc["issuer"], format!("{base}/{tid}/v2.0"));
    // On a ciamlogin.com host: issuer on {tid}.ciamlogin.com; the subdomain path resolves.
    let r = c
        .get(format!(
            "{base}/contosoext.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        ))
        .header("host", "contosoext.ciamlogin.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        doc["issuer"],
        format!("https://{tid}.ciamlogin.com/{tid}/v2.0")
    );
    assert!(doc["token_endpoint"]
        .as_str()
        .unwrap()
        .starts_with("http://contosoext.ciamlogin.com/"));
    // Host-based dispatch: a ciamlogin host does not serve workforce tenants, b2clogin only B2C.
    let r = c
        .get(format!(
            "{}/v2.0/.well-known/openid-configuration",
            kit.authority()
        ))
        .header("host", "contosoext.ciamlogin.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!(
            "{}/v2.0/.well-known/openid-configuration",
            kit.authority()
        ))
        .header("host", "contosob2c.b2clogin.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!(
            "{base}/contosob2c.onmicrosoft.com/{SUSI}/v2.0/.well-known/openid-configuration"
        ))
        .header("host", "contosob2c.b2clogin.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Tokens: CIAM user, CIAM keys.
    let t = sign_in(
        &c,
        &kit.external_id_authority(),
        "openid offline_access User.Read",
    )
    .await;
    let cl = claims(t["id_token"].as_str().unwrap());
    assert_eq!(cl["tid"], tid);
    assert_eq!(cl["preferred_username"], "carol@example.com");
    let want: std::collections::BTreeSet<String> = keys_of(&fixture("ciam.json")["payload"])
        .into_iter()
        .filter(|k| k != "nonce" && k != "email")
        .collect();
    assert!(keys_of(&cl).is_superset(&want));
    let (_, keys) = get_json(
        &c,
        &format!("{}/discovery/v2.0/keys", kit.external_id_authority()),
    )
    .await;
    assert!(verify_with_jwks(t["id_token"].as_str().unwrap(), &keys));
    let (_, wf_keys) = get_json(&c, &format!("{}/discovery/v2.0/keys", kit.authority())).await;
    assert!(!verify_with_jwks(t["id_token"].as_str().unwrap(), &wf_keys));
}

#[tokio::test]
async fn common_organizations_consumers() {
    let kit = auto_kit().await;
    let c = client();
    let base = kit.base_url();
    let t = sign_in(&c, &kit.consumers_authority(), "openid User.Read").await;
    let cl = claims(t["id_token"].as_str().unwrap());
    assert_eq!(cl["tid"], CONSUMERS_TENANT_ID);
    assert_eq!(cl["iss"], format!("{base}/{CONSUMERS_TENANT_ID}/v2.0"));
    assert_eq!(cl["preferred_username"], "megan@outlook.com");
    // common: the user's home tenant.
    let q = authorize(
        &c,
        &kit.common_authority(),
        &[("login_hint", "megan@outlook.com")],
    )
    .await;
    let (_, t) = token(
        &c,
        &kit.common_authority(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(
        claims(t["id_token"].as_str().unwrap())["tid"],
        CONSUMERS_TENANT_ID
    );
    let t = sign_in(&c, &kit.common_authority(), "openid User.Read").await;
    assert_eq!(
        claims(t["id_token"].as_str().unwrap())["iss"],
        format!("{}/v2.0", kit.authority())
    );
    // organizations never signs in a personal account.
    let q = authorize(
        &c,
        &kit.organizations_authority(),
        &[("login_hint", "megan@outlook.com")],
    )
    .await;
    let (_, t) = token(
        &c,
        &kit.organizations_authority(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(
        claims(t["id_token"].as_str().unwrap())["tid"],
        WORKFORCE_TENANT_ID
    );
}

#[tokio::test]
async fn consent_required_and_interactive_consent() {
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let c = client();
    let auth = kit.authority();
    let url = format!("{auth}/oauth2/v2.0/authorize");
    // Interactive: sign-in page, then consent page for Mail.Read.
    let html = c
        .get(&url)
        .query(&params(&[("scope", "openid offline_access User.Read")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("adele@contoso.onmicrosoft.com") && !html.contains("bob@contoso.com"));
    let r = c
        .post(&url)
        .form(&params(&[
            ("scope", "openid offline_access User.Read"),
            ("_action", "login"),
            ("username", "adele@contoso.onmicrosoft.com"),
            ("password", "password"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let code = query_of(r.headers()["location"].to_str().unwrap())["code"].clone();
    let (_, t) = token(
        &c,
        &auth,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    // Refresh for an unconsented scope: invalid_grant + consent_required 65001.
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("refresh_token", &rt),
            ("scope", "https://graph.microsoft.com/Mail.Read"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "invalid_grant", 65001);
    assert_eq!(err["suberror"], "consent_required");
    assert_eq!(
        keys_of(&err),
        keys_of(&fixture("error-consent-required-65001.json")["body"])
    );
    // Incremental consent: SSO cookie skips the password, consent page appears.
    let html = c
        .get(&url)
        .header("cookie", &cookie)
        .query(&params(&[("scope", "openid Mail.Read")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Permissions requested") && html.contains("Mail.Read"));
    let pending = html
        .split("name=\"_pending\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = c
        .post(&url)
        .form(&params(&[
            ("scope", "openid Mail.Read"),
            ("_action", "consent_cancel"),
            ("_pending", &pending),
        ]))
        .send()
        .await
        .unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS65004: "));
    let html = c
        .get(&url)
        .header("cookie", &cookie)
        .query(&params(&[("scope", "openid Mail.Read")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pending = html
        .split("name=\"_pending\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = c
        .post(&url)
        .form(&params(&[
            ("scope", "openid Mail.Read"),
            ("_action", "consent_accept"),
            ("_pending", &pending),
        ]))
        .send()
        .await
        .unwrap();
    assert!(query_of(r.headers()["location"].to_str().unwrap()).contains_key("code"));
    let (s, t) = token(
        &c,
        &auth,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("refresh_token", &rt),
            ("scope", "Mail.Read"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert!(claims(t["access_token"].as_str().unwrap())["scp"]
        .as_str()
        .unwrap()
        .contains("Mail.Read"));
    // prompt=login forces the password page again.
    let html = c
        .get(&url)
        .header("cookie", &cookie)
        .query(&params(&[("prompt", "login")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"password\""));
    // HTML escaping of reflected values.
    let html = c
        .get(&url)
        .query(&params(&[("login_hint", "\"><script>x</script>")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>x</script>"));
}

#[tokio::test]
async fn mfa_interaction_required_with_claims() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let t = sign_in(&c, &auth, "openid offline_access User.Read").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let (s, err) = token(
        &c,
        &auth,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("refresh_token", rt),
            ("scope", "Files.ReadWrite.All"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope(&err, "interaction_required", 50076);
    let claims_json: Value = serde_json::from_str(err["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims_json["access_token"]["capolids"]["essential"], true);
    let mut want = keys_of(&fixture("error-interaction-required-50076.json")["body"]);
    want.insert("claims".into());
    assert_eq!(keys_of(&err), want);
    // Step up with the claims challenge: the new refresh token carries MFA.
    let t = sign_in(&c, &auth, "openid offline_access Files.ReadWrite.All").await;
    let (s, ok) = token(
        &c,
        &auth,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("scope", "Files.ReadWrite.All"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{ok}");
}

#[tokio::test]
async fn logout_checks_post_logout_redirect() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let t = sign_in(&c, &auth, "openid User.Read").await;
    let idt = t["id_token"].as_str().unwrap();
    let url = format!("{auth}/oauth2/v2.0/logout");
    let r = c
        .get(&url)
        .query(&[
            ("post_logout_redirect_uri", "http://localhost:5000/"),
            ("id_token_hint", idt),
            ("state", "s1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://localhost:5000/?state=s1");
    let r = c
        .get(&url)
        .query(&[
            ("post_logout_redirect_uri", "http://localhost:5000/"),
            ("client_id", WEB_APP_CLIENT_ID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let r = c
        .get(&url)
        .query(&[
            ("post_logout_redirect_uri", "https://evil.example/"),
            ("client_id", WEB_APP_CLIENT_ID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let r = c
        .get(&url)
        .query(&[("post_logout_redirect_uri", "http://localhost:5000/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(&url)
        .query(&[("id_token_hint", "eyJhbGciOiJub25lIn0.e30.")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You signed out"));
    // B2C logout with the policy in the path.
    let r = c
        .get(format!("{}/oauth2/v2.0/logout", kit.b2c_authority(SUSI)))
        .query(&[
            ("post_logout_redirect_uri", "http://localhost:5000/"),
            ("client_id", WEB_APP_CLIENT_ID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test]
async fn protected_api_and_cae() {
    let kit = auto_kit().await;
    let c = client();
    let t = sign_in(&c, &kit.authority(), "openid User.Read").await;
    let at = t["access_token"].as_str().unwrap();
    let r = c.get(kit.api_url()).bearer_auth(at).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["displayName"], "Adele Vance");
    assert_eq!(me["userPrincipalName"], "adele@contoso.onmicrosoft.com");
    assert_eq!(me["id"], "00aa00aa-bb11-cc22-dd33-44ee44ee44ee");
    for k in ["@odata.context", "mail", "givenName", "surname"] {
        assert!(me.get(k).is_some());
    }
    let r = c
        .get(kit.api_url())
        .bearer_auth(format!("{at}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let h = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        h.starts_with("Bearer realm=\"\", authorization_uri=\""),
        "{h}"
    );
    assert!(h.contains(&format!(
        "authorization_uri=\"{}/oauth2/authorize\"",
        kit.authority()
    )));
    assert!(h.contains("error=\"invalid_token\""));
    // CAE: tokens issued before the event are challenged; new ones pass.
    kit.cae_event("adele@contoso.onmicrosoft.com");
    let r = c.get(kit.api_url()).bearer_auth(at).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let h = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(h.contains("error=\"insufficient_claims\""), "{h}");
    let b64 = h.split("claims=\"").nth(1).unwrap().trim_end_matches('"');
    let decoded: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap(),
    )
    .unwrap();
    assert_eq!(decoded["access_token"]["nbf"]["essential"], true);
    assert!(decoded["access_token"]["nbf"]["value"].is_string());
    let t2 = sign_in(&c, &kit.authority(), "openid User.Read").await;
    let r = c
        .get(kit.api_url())
        .bearer_auth(t2["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Control-API CAE event.
    let r = c
        .post(format!("{}/_testkit/cae-event", kit.base_url()))
        .json(&json!({"username": "adele@contoso.onmicrosoft.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(kit.api_url())
        .bearer_auth(t2["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A token for another API is rejected by /v1.0/me.
    let t3 = sign_in(
        &c,
        &kit.authority(),
        &format!("openid api://{API_APP_CLIENT_ID}/access_as_user"),
    )
    .await;
    let r = c
        .get(kit.api_url())
        .bearer_auth(t3["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{}/api/echo", kit.base_url()))
        .bearer_auth(t3["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Expired by the clock.
    kit.set_clock_offset(7200);
    let r = c
        .get(format!("{}/api/echo", kit.base_url()))
        .bearer_auth(t3["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn faults() {
    let kit = auto_kit().await;
    let c = client();
    let disco = format!("{}/v2.0/.well-known/openid-configuration", kit.authority());
    kit.set_fault(
        Endpoint::Discovery,
        Some(Fault::Slow(Duration::from_millis(400))),
    );
    let start = Instant::now();
    let (s, _) = get_json(&c, &disco).await;
    assert_eq!(s, 200);
    assert!(start.elapsed() >= Duration::from_millis(400));
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(quick.get(&disco).send().await.unwrap_err().is_timeout());
    kit.set_fault(Endpoint::Discovery, Some(Fault::Status(500)));
    let (s, body) = get_json(&c, &disco).await;
    assert_eq!(s, 500);
    assert_envelope(&body, "temporarily_unavailable", 90033);
    kit.set_fault(Endpoint::Discovery, Some(Fault::MalformedJson));
    let r = c.get(&disco).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());
    kit.set_fault(Endpoint::Discovery, Some(Fault::Down));
    assert!(c.get(&disco).send().await.is_err());
    kit.set_fault(Endpoint::Discovery, None);
    let (s, _) = get_json(&c, &disco).await;
    assert_eq!(s, 200);
    assert_eq!(kit.calls(Endpoint::Discovery), 6);
    // Faults are per endpoint.
    kit.set_fault(Endpoint::Token, Some(Fault::Down));
    let (s, _) = get_json(&c, &disco).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn tamper_modes_produce_their_defects() {
    let kit = auto_kit().await;
    let c = client();
    let auth = kit.authority();
    let (_, jwks) = get_json(&c, &format!("{auth}/discovery/v2.0/keys")).await;
    let kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for mode in [
        Tamper::WrongIssuer,
        Tamper::WrongAudience,
        Tamper::Expired,
        Tamper::NotYetValid,
        Tamper::BadSignature,
        Tamper::UnknownKid,
        Tamper::WrongNonce,
        Tamper::MissingNonce,
        Tamper::AlgNone,
        Tamper::Hs256,
        Tamper::MissingSub,
        Tamper::MissingIat,
    ] {
        kit.set_tamper(Some(mode));
        let t = sign_in(&c, &auth, "openid User.Read").await;
        let idt = t["id_token"].as_str().unwrap();
        let (h, cl) = (header(idt), claims(idt));
        match mode {
            Tamper::WrongIssuer => assert_ne!(cl["iss"], format!("{auth}/v2.0")),
            Tamper::WrongAudience => assert_ne!(cl["aud"], WEB_APP_CLIENT_ID),
            Tamper::Expired => assert!(cl["exp"].as_i64().unwrap() < now),
            Tamper::NotYetValid => assert!(cl["nbf"].as_i64().unwrap() > now + 600),
            Tamper::BadSignature => {
                assert!(kids.contains(&h["kid"].as_str().unwrap().to_string()));
                assert!(!verify_with_jwks(idt, &jwks));
            }
            Tamper::UnknownKid => assert!(!kids.contains(&h["kid"].as_str().unwrap().to_string())),
            Tamper::WrongNonce => assert_ne!(cl["nonce"], "n-0S6_WzA2Mj"),
            Tamper::MissingNonce => assert!(cl.get("nonce").is_none()),
            Tamper::AlgNone => {
                assert_eq!(h["alg"], "none");
                assert!(idt.ends_with('.'));
            }
            Tamper::Hs256 => assert_eq!(h["alg"], "HS256"),
            Tamper::MissingSub => assert!(cl.get("sub").is_none() && cl.get("iat").is_some()),
            Tamper::MissingIat => assert!(cl.get("iat").is_none() && cl.get("sub").is_some()),
        }
        if !matches!(
            mode,
            Tamper::BadSignature | Tamper::UnknownKid | Tamper::AlgNone | Tamper::Hs256
        ) {
            assert!(
                verify_with_jwks(idt, &jwks),
                "{mode:?} keeps a valid signature"
            );
        }
    }
    kit.set_tamper(None);
    let t = sign_in(&c, &auth, "openid User.Read").await;
    assert!(verify_with_jwks(t["id_token"].as_str().unwrap(), &jwks));
}

#[tokio::test]
async fn interactive_pages_edit_profile_cancel_and_userinfo() {
    let kit = TestKit::start(TestKitConfig::default()).await.unwrap();
    let c = client();
    // B2C edit profile: sign in, edit page, then a code.
    let edit = format!(
        "{}/oauth2/v2.0/authorize",
        kit.b2c_authority("B2C_1_profileediting1")
    );
    let html = c
        .get(&edit)
        .query(&params(&[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"password\""));
    let r = c
        .post(&edit)
        .form(&params(&[
            ("_action", "login"),
            ("username", "bob@contoso.com"),
            ("password", "password"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Edit your profile"));
    let pending = html
        .split("name=\"_pending\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = c
        .post(&edit)
        .form(&params(&[
            ("_action", "edit"),
            ("_pending", &pending),
            ("display_name", "Bob"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let q = query_of(r.headers()["location"].to_str().unwrap());
    let (s, t) = token(
        &c,
        &kit.b2c_authority("B2C_1_profileediting1"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        claims(t["id_token"].as_str().unwrap())["tfp"],
        "B2C_1_profileediting1"
    );
    // Workforce cancel: access_denied with error_subcode=cancel.
    let url = format!("{}/oauth2/v2.0/authorize", kit.authority());
    let r = c
        .post(&url)
        .form(&params(&[("_action", "cancel")]))
        .send()
        .await
        .unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["error_subcode"], "cancel");
    assert_eq!(q["state"], "abc==");
    // Wrong password: AADSTS50126 on the page.
    let r = c
        .post(&url)
        .form(&params(&[
            ("_action", "login"),
            ("username", "adele@contoso.onmicrosoft.com"),
            ("password", "nope"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("AADSTS50126"));
    // A B2C user cannot sign in to the workforce tenant.
    let r = c
        .post(&url)
        .form(&params(&[
            ("_action", "login"),
            ("username", "bob@contoso.com"),
            ("password", "password"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Userinfo with a Graph token.
    let r = c
        .post(&url)
        .form(&params(&[
            ("scope", "openid email User.Read"),
            ("_action", "login"),
            ("username", "alex@contoso.onmicrosoft.com"),
            ("password", "password"),
        ]))
        .send()
        .await
        .unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    let (_, t) = token(
        &c,
        &kit.authority(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB_APP_CLIENT_ID),
            ("client_secret", WEB_APP_SECRET),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    let (s, ui) = {
        let r = c
            .get(format!("{}/oidc/userinfo", kit.base_url()))
            .bearer_auth(t["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(s, 200);
    assert_eq!(ui["name"], "Alex Wilber");
    assert_eq!(ui["email"], "alex@contoso.onmicrosoft.com");
    assert_eq!(kit.calls(Endpoint::Userinfo), 1);
}

#[tokio::test]
async fn busy_time_counts_the_providers_own_answering_time_per_endpoint() {
    let kit = auto_kit().await;
    let c = client();
    assert_eq!(kit.busy(Endpoint::Token), Duration::ZERO);
    // A slow answer is time the provider spends: it is counted, for its endpoint only.
    kit.set_fault(
        Endpoint::Token,
        Some(Fault::Slow(Duration::from_millis(120))),
    );
    let started = Instant::now();
    let r = c
        .post(format!("{}/oauth2/v2.0/token", kit.authority()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let wall = started.elapsed();
    assert!(r.status().is_client_error(), "{}", r.status());
    let busy = kit.busy(Endpoint::Token);
    assert!(busy >= Duration::from_millis(120), "{busy:?}");
    assert!(busy <= wall, "{busy:?} > {wall:?}");
    assert_eq!(kit.busy(Endpoint::Discovery), Duration::ZERO);
    kit.reset_counters();
    assert_eq!(kit.busy(Endpoint::Token), Duration::ZERO);
}
