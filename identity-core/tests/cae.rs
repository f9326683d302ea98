//! Continuous access evaluation end to end against the local provider: after a CAE event
//! the API refuses the cached token with a claims challenge, the app signs the user in
//! again carrying the claims, and the retried call succeeds.

use identity_core::{
    Authority, ClaimsChallenge, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes,
};
use identity_testkit::{TestKit, TestKitConfig, WEB_APP_CLIENT_ID, WEB_APP_SECRET};

const ADELE: &str = "adele@contoso.onmicrosoft.com";
const REDIRECT: &str = "http://localhost:5000/getAToken";

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(id: &Identity, session: &MemorySession, options: LogInOptions) -> String {
    let start = id.log_in(session, options).await.unwrap();
    let resp = browser().get(&start.auth_uri).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let params: Vec<(String, String)> = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    id.complete_log_in(
        session,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .await
    .unwrap();
    start.auth_uri
}

/// Calls the Graph-shaped API: the status and the claims challenge, if any.
async fn call_api(kit: &TestKit, token: &str) -> (u16, Option<ClaimsChallenge>) {
    let resp = browser()
        .get(kit.api_url())
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(ClaimsChallenge::from_www_authenticate);
    (resp.status().as_u16(), challenge)
}

#[tokio::test]
async fn a_cae_challenge_is_answered_by_a_sign_in_carrying_the_claims() {
    let kit = TestKit::start(TestKitConfig::default().with_auto_approve(ADELE))
        .await
        .unwrap();
    let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    let mut config = IdentityConfig::new(WEB_APP_CLIENT_ID, authority)
        .with_client_secret(WEB_APP_SECRET)
        .with_redirect_uri(Some(REDIRECT));
    // The app declares it handles CAE challenges (cp1), as MSAL apps do.
    config.client_capabilities = vec!["cp1".into()];
    let id = Identity::new(config).unwrap();
    let session = MemorySession::new();
    let scopes = Scopes::parse("User.Read");
    sign_in(&id, &session, LogInOptions::default()).await;

    let first = id.get_token_for_user(&session, &scopes).await.unwrap();
    assert_eq!(call_api(&kit, first.access_token.secret()).await.0, 200);

    kit.cae_event(ADELE);
    let cached = id.get_token_for_user(&session, &scopes).await.unwrap();
    assert!(cached.from_cache, "the app does not know of the event");
    let (status, challenge) = call_api(&kit, cached.access_token.secret()).await;
    assert_eq!(status, 401);
    let claims = challenge.expect("401 insufficient_claims with a claims challenge");
    assert!(claims.as_str().contains("\"nbf\""), "{}", claims.as_str());

    // What a sample's /call_api does: an interactive sign-in with the claims, then retry.
    let auth_uri = sign_in(
        &id,
        &session,
        LogInOptions {
            scopes: scopes.clone(),
            claims: Some(claims.clone()),
            ..Default::default()
        },
    )
    .await;
    let sent: String = url::Url::parse(&auth_uri)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "claims")
        .map(|(_, v)| v.into_owned())
        .expect("the authorize request carries claims");
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert!(sent["access_token"]["nbf"]["essential"] == true);
    assert_eq!(
        sent["access_token"]["xms_cc"]["values"],
        serde_json::json!(["cp1"]),
        "the client capabilities are merged into the challenge"
    );

    let renewed = id.get_token_for_user(&session, &scopes).await.unwrap();
    assert_ne!(
        renewed.access_token.secret(),
        first.access_token.secret(),
        "the sign-in replaced the revoked token"
    );
    assert_eq!(call_api(&kit, renewed.access_token.secret()).await.0, 200);
}
