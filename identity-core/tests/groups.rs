//! Group membership over real HTTP against the local provider: a user in more groups
//! than fit in a token gets a group overage, and the core resolves it through the
//! Graph-shaped `getMemberObjects` with the user's token, cached with the session.

use identity_core::store::KEY_GROUPS;
use identity_core::{
    Authority, Error, Identity, IdentityConfig, LogInOptions, MemorySession, Scopes, SessionStore,
};
use identity_testkit::{Endpoint, TestKit, TestKitConfig, WEB_APP_CLIENT_ID, WEB_APP_SECRET};

const REDIRECT: &str = "http://localhost:5000/getAToken";
const GRACE: &str = "grace@contoso.onmicrosoft.com";
const GROUP_SCOPE: &str = "https://graph.microsoft.com/GroupMember.Read.All";

async fn kit_for(user: &str) -> TestKit {
    TestKit::start(TestKitConfig::default().with_auto_approve(user))
        .await
        .unwrap()
}

fn identity(kit: &TestKit) -> Identity {
    let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    let mut config = IdentityConfig::new(WEB_APP_CLIENT_ID, authority)
        .with_client_secret(WEB_APP_SECRET)
        .with_redirect_uri(Some(REDIRECT));
    config.graph_endpoint = format!("{}/v1.0", kit.base_url());
    Identity::new(config).unwrap()
}

async fn sign_in(id: &Identity, session: &MemorySession, scopes: &str) -> identity_core::User {
    let start = id
        .log_in(
            session,
            LogInOptions {
                scopes: Scopes::parse(scopes),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&start.auth_uri)
        .send()
        .await
        .unwrap();
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
    .unwrap()
    .user
}

#[tokio::test]
async fn group_overage_is_resolved_through_graph_and_cached_with_the_session() {
    let kit = kit_for(GRACE).await;
    let id = identity(&kit);
    let session = MemorySession::new();
    let user = sign_in(&id, &session, "").await;
    assert!(user.has_group_overage(), "250 groups do not fit in a token");
    assert!(user.groups().is_empty());

    // GroupMember.Read.All was never consented: the app must ask for it (incremental consent).
    match id
        .is_member_of(&session, "00000007-7e7e-4c4c-9d9d-0a0a0a0a0a0a")
        .await
    {
        Err(Error::InteractionRequired { scopes, .. }) => {
            assert_eq!(scopes, Scopes::parse(GROUP_SCOPE));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kit.calls(Endpoint::MemberObjects), 0);

    sign_in(&id, &session, GROUP_SCOPE).await;
    let groups = id.user_groups(&session).await.unwrap();
    assert_eq!(groups.len(), 250);
    assert_eq!(kit.calls(Endpoint::MemberObjects), 1);
    assert!(id
        .is_member_of(&session, "00000007-7E7E-4C4C-9D9D-0A0A0A0A0A0A")
        .await
        .unwrap());
    assert!(!id
        .is_member_of(&session, "5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c")
        .await
        .unwrap());
    assert_eq!(
        kit.calls(Endpoint::MemberObjects),
        1,
        "the groups are cached with the session"
    );
    assert!(session.get(KEY_GROUPS).await.unwrap().is_some());

    // Another session of the same user resolves its own groups.
    let other = MemorySession::new();
    sign_in(&id, &other, GROUP_SCOPE).await;
    assert!(id
        .is_member_of(&other, "000000f9-7e7e-4c4c-9d9d-0a0a0a0a0a0a")
        .await
        .unwrap());
    assert_eq!(kit.calls(Endpoint::MemberObjects), 2);

    // Signing out clears them with the rest of the record.
    id.log_out(&session, "http://localhost:5000/")
        .await
        .unwrap();
    assert!(session.get(KEY_GROUPS).await.unwrap().is_none());
    assert!(matches!(
        id.user_groups(&session).await,
        Err(Error::InteractionRequired { .. })
    ));
}

#[tokio::test]
async fn groups_in_the_token_need_no_graph_call() {
    let kit = kit_for("adele@contoso.onmicrosoft.com").await;
    let id = identity(&kit);
    let session = MemorySession::new();
    let user = sign_in(&id, &session, "").await;
    assert!(!user.has_group_overage());
    assert_eq!(
        id.user_groups(&session).await.unwrap(),
        vec!["5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c".to_owned()]
    );
    assert!(id
        .is_member_of(&session, "5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c")
        .await
        .unwrap());
    assert_eq!(kit.calls(Endpoint::MemberObjects), 0);
}

#[tokio::test]
async fn a_graph_refusal_fails_the_check_with_the_permission_to_grant() {
    let kit = kit_for(GRACE).await;
    let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    let mut config = IdentityConfig::new(WEB_APP_CLIENT_ID, authority)
        .with_client_secret(WEB_APP_SECRET)
        .with_redirect_uri(Some(REDIRECT));
    config.graph_endpoint = format!("{}/v1.0", kit.base_url());
    // A token without a group permission: Graph answers 403.
    config.group_scopes = Scopes::parse("User.Read");
    let id = Identity::new(config).unwrap();
    let session = MemorySession::new();
    sign_in(&id, &session, "User.Read").await;
    match id.is_member_of(&session, "x").await {
        Err(e @ Error::Graph { .. }) => {
            assert_eq!(e.status_code(), 502);
            assert!(e.to_string().contains("GroupMember.Read.All"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// The engine's group check over real HTTP: a group overage asks for consent to the Graph
/// permission (a sign-in that returns to the page), then reads the groups once; when
/// Graph does not answer within the configured timeout the answer is a 502 page, soon.
#[cfg(feature = "pages")]
mod engine {
    use super::*;
    use identity_core::web::{Outcome, Route, WebAuth, WebRequest, WebResponse};
    use identity_core::Timeouts;
    use identity_testkit::Fault;
    use std::time::{Duration, Instant};

    const GRACES_GROUP: &str = "00000007-7e7e-4c4c-9d9d-0a0a0a0a0a0a";

    fn web(kit: &TestKit, total: Duration) -> WebAuth {
        let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
        let mut config = IdentityConfig::new(WEB_APP_CLIENT_ID, authority)
            .with_client_secret(WEB_APP_SECRET)
            .with_redirect_uri(Some(REDIRECT))
            .with_timeouts(Timeouts {
                connect: Duration::from_secs(2),
                total,
            });
        config.graph_endpoint = format!("{}/v1.0", kit.base_url());
        WebAuth::builder(Identity::new(config).unwrap())
            .session_secret("a test secret of at least thirty-two characters")
            .build()
            .unwrap()
    }

    /// Follows a sign-in answer through the (headless) provider and the callback.
    async fn complete(web: &WebAuth, store: &MemorySession, answer: &WebResponse) -> String {
        let Outcome::SignInRequired {
            auth_uri: Some(auth_uri),
        } = &answer.outcome
        else {
            panic!("not a sign-in: {answer:?}");
        };
        let pending: Vec<String> = answer
            .headers
            .iter()
            .filter(|(k, _)| *k == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next().map(str::to_owned))
            .collect();
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(auth_uri)
            .send()
            .await
            .unwrap();
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let callback = location.strip_prefix("http://localhost:5000").unwrap();
        let req = pending
            .iter()
            .fold(WebRequest::new(callback), |r, c| r.cookie_header(c));
        let done = web.handle(Route::Callback, &req, store, None).await;
        assert!(done.is_redirect(), "{done:?} {}", done.body);
        done.location().unwrap().to_owned()
    }

    async fn signed_in(web: &WebAuth, store: &MemorySession) -> identity_core::User {
        let page = WebRequest::new("/");
        let answer = web.require_user(&page, store).await.unwrap_err();
        complete(web, store, &answer).await;
        web.require_user(&page, store).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overage_asks_for_the_graph_permission_then_reads_the_groups_once() {
        let kit = kit_for(GRACE).await;
        let web = web(&kit, Duration::from_secs(10));
        let store = MemorySession::new();
        let user = signed_in(&web, &store).await;
        assert!(user.has_group_overage());
        let team = WebRequest::new("/team?tab=1");

        let consent = web
            .require_group(&team, &store, &user, GRACES_GROUP)
            .await
            .unwrap_err();
        assert_eq!(consent.status, 401, "{}", consent.body);
        let Outcome::SignInRequired { auth_uri: Some(u) } = &consent.outcome else {
            panic!("{consent:?}");
        };
        assert!(u.contains("GroupMember.Read.All"), "{u}");
        assert_eq!(kit.calls(Endpoint::MemberObjects), 0);
        assert_eq!(complete(&web, &store, &consent).await, "/team?tab=1");

        web.require_group(&team, &store, &user, &GRACES_GROUP.to_uppercase())
            .await
            .unwrap();
        let refused = web
            .require_group(&team, &store, &user, "5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c")
            .await
            .unwrap_err();
        assert_eq!(refused.status, 403);
        assert!(matches!(refused.outcome, Outcome::Forbidden { .. }));
        assert_eq!(
            kit.calls(Endpoint::MemberObjects),
            1,
            "cached in the session"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_graph_that_does_not_answer_in_time_is_a_502_page_not_a_pass() {
        let kit = kit_for(GRACE).await;
        let web = web(&kit, Duration::from_secs(1));
        let store = MemorySession::new();
        let user = signed_in(&web, &store).await;
        let team = WebRequest::new("/team");
        let consent = web
            .require_group(&team, &store, &user, GRACES_GROUP)
            .await
            .unwrap_err();
        complete(&web, &store, &consent).await;

        kit.set_fault(
            Endpoint::MemberObjects,
            Some(Fault::Slow(Duration::from_secs(10))),
        );
        let started = Instant::now();
        let failed = web
            .require_group(&team, &store, &user, GRACES_GROUP)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "bounded by the timeout: {:?}",
            started.elapsed()
        );
        assert_eq!(failed.status, 502, "{}", failed.body);
        assert_eq!(failed.outcome, Outcome::GroupsUnavailable);
        assert!(
            failed.body.contains("GroupMember.Read.All"),
            "{}",
            failed.body
        );
        assert_eq!(failed.header("retry-after"), Some("5"));

        kit.set_fault(Endpoint::MemberObjects, None);
        web.require_group(&team, &store, &user, GRACES_GROUP)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_in_the_token_are_checked_without_graph() {
        let kit = kit_for("adele@contoso.onmicrosoft.com").await;
        let web = web(&kit, Duration::from_secs(10));
        let store = MemorySession::new();
        let user = signed_in(&web, &store).await;
        let page = WebRequest::new("/team");
        web.require_group(&page, &store, &user, "5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c")
            .await
            .unwrap();
        let refused = web
            .require_group(&page, &store, &user, GRACES_GROUP)
            .await
            .unwrap_err();
        assert_eq!(refused.status, 403);
        assert!(refused.body.contains(GRACES_GROUP), "{}", refused.body);
        assert_eq!(kit.calls(Endpoint::MemberObjects), 0);
    }
}
