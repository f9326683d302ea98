//! Device code sign-in (RFC 8628 polling), over real HTTP against the local Entra-shaped
//! provider (identity-testkit), whose token endpoint is scripted to answer each state.
#![cfg(feature = "pages")]

use identity_core::web::Route;
use identity_core::{
    Authority, DevicePoll, Error, Identity, IdentityConfig, LogInOptions, LoggedIn, MemorySession,
    Timeouts, WebAuth, WebRequest,
};
use identity_testkit::{DeviceAnswer, Endpoint, TestKit, TestKitConfig};
use std::time::Duration;

const CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const SECRET: &str = "testkit-secret";
const USER: &str = "adele@contoso.onmicrosoft.com";

async fn kit_with(f: impl FnOnce(&mut TestKitConfig)) -> TestKit {
    let mut config = TestKitConfig {
        auto_approve: Some(USER.into()),
        ..TestKitConfig::default()
    };
    f(&mut config);
    TestKit::start(config).await.expect("testkit starts")
}

/// A provider that approves every device code at once unless scripted otherwise, and
/// announces a polling interval of `interval` seconds.
async fn kit(interval: u64) -> TestKit {
    let kit = kit_with(|_| {}).await;
    kit.set_device_code_interval(interval);
    kit
}

/// An app without a redirect URI: device code sign-in.
fn identity(kit: &TestKit) -> Identity {
    let authority = Authority::entra(&kit.base_url(), &kit.workforce_tenant_id()).unwrap();
    let config = IdentityConfig::new(CLIENT_ID, authority)
        .with_client_secret(SECRET)
        .with_redirect_uri(None::<String>)
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(5),
            total: Duration::from_secs(30),
        });
    Identity::new(config).unwrap()
}

/// Starts a device code sign-in; returns the code the user is shown.
async fn start(id: &Identity, session: &MemorySession) -> String {
    let start = id.log_in(session, LogInOptions::default()).await.unwrap();
    start.user_code.expect("a device code sign-in shows a code")
}

fn pending(poll: DevicePoll) -> (Duration, String) {
    match poll {
        DevicePoll::Pending {
            retry_after,
            instructions,
        } => (retry_after, instructions.user_code.unwrap()),
        other => panic!("expected pending, got {other:?}"),
    }
}

fn signed_in(poll: DevicePoll) -> LoggedIn {
    match poll {
        DevicePoll::SignedIn(done) => done,
        other => panic!("expected signed in, got {other:?}"),
    }
}

/// Waits until `d` has passed (and a little more, for the clock's granularity).
async fn wait(d: Duration) {
    tokio::time::sleep(d + Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_polls_wait_then_sign_in() {
    let kit = kit(1).await;
    let id = identity(&kit);
    let session = MemorySession::new();
    let code = start(&id, &session).await;
    kit.script_device_code([DeviceAnswer::Pending, DeviceAnswer::Pending]);
    kit.reset_counters();

    let (retry_after, shown) = pending(id.poll_device_code(&session).await.unwrap());
    assert_eq!(retry_after, Duration::from_secs(1));
    assert_eq!(shown, code, "the waiting answer shows the same code again");
    wait(retry_after).await;
    let (retry_after, _) = pending(id.poll_device_code(&session).await.unwrap());
    wait(retry_after).await;
    assert_eq!(session.cycles(), 0);
    let done = signed_in(id.poll_device_code(&session).await.unwrap());

    assert_eq!(done.user.name(), Some("Adele Vance"));
    assert_eq!(kit.calls(Endpoint::Token), 3, "one provider call per poll");
    assert_eq!(session.cycles(), 1, "the session id is cycled at sign-in");
    assert_eq!(
        id.get_user(&session).await.unwrap().unwrap().name(),
        Some("Adele Vance")
    );
    // The sign-in in progress was consumed.
    let err = id.poll_device_code(&session).await.unwrap_err();
    assert!(matches!(err, Error::UnknownState), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_grows_the_interval_by_five_seconds_for_later_polls() {
    let kit = kit(1).await;
    let id = identity(&kit);
    let session = MemorySession::new();
    start(&id, &session).await;
    kit.script_device_code([DeviceAnswer::SlowDown]);
    kit.reset_counters();

    let (retry_after, _) = pending(id.poll_device_code(&session).await.unwrap());
    assert_eq!(retry_after, Duration::from_secs(6), "1 s + 5 s");
    assert_eq!(kit.calls(Endpoint::Token), 1);

    // Past the announced interval but within the grown one: the provider is not asked.
    wait(Duration::from_secs(1)).await;
    let (left, _) = pending(id.poll_device_code(&session).await.unwrap());
    assert!(
        left <= Duration::from_millis(4950) && left >= Duration::from_secs(4),
        "{left:?}"
    );
    assert_eq!(
        kit.calls(Endpoint::Token),
        1,
        "the grown interval is remembered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_before_the_interval_makes_no_provider_call() {
    let kit = kit(5).await;
    let id = identity(&kit);
    let session = MemorySession::new();
    let code = start(&id, &session).await;
    kit.script_device_code([DeviceAnswer::Pending]);
    kit.reset_counters();

    let (retry_after, _) = pending(id.poll_device_code(&session).await.unwrap());
    assert_eq!(retry_after, Duration::from_secs(5));
    for _ in 0..3 {
        let (left, shown) = pending(id.poll_device_code(&session).await.unwrap());
        assert!(
            left <= Duration::from_secs(5) && left > Duration::from_secs(4),
            "{left:?}"
        );
        assert_eq!(shown, code);
    }
    assert_eq!(kit.calls(Endpoint::Token), 1, "early polls stay local");
    // The old entry point answers the same, as a typed error.
    match id.complete_log_in(&session, std::iter::empty()).await {
        Err(Error::DeviceCodePending { retry_after }) => {
            assert!(retry_after <= Duration::from_secs(5), "{retry_after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kit.calls(Endpoint::Token), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_log_in_answers_pending_as_a_202_error_then_signs_in() {
    let kit = kit(1).await;
    let id = identity(&kit);
    let session = MemorySession::new();
    start(&id, &session).await;
    kit.script_device_code([DeviceAnswer::Pending]);

    let err = id
        .complete_log_in(&session, std::iter::empty())
        .await
        .unwrap_err();
    let Error::DeviceCodePending { retry_after } = err else {
        panic!("{err:?}");
    };
    assert_eq!(retry_after, Duration::from_secs(1));
    assert_eq!(err.status_code(), 202);
    assert!(err.to_string().contains("poll again in 1 s"), "{err}");
    wait(retry_after).await;
    let done = id
        .complete_log_in(&session, std::iter::empty())
        .await
        .unwrap();
    assert_eq!(done.user.name(), Some("Adele Vance"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_forgets_the_sign_in_and_says_to_start_again() {
    let kit = kit(1).await;
    let id = identity(&kit);
    let session = MemorySession::new();
    start(&id, &session).await;
    kit.script_device_code([DeviceAnswer::Expired]);
    kit.reset_counters();

    let err = id.poll_device_code(&session).await.unwrap_err();
    assert!(matches!(err, Error::DeviceCodeExpired), "{err:?}");
    assert_eq!(err.status_code(), 400);
    assert!(err.to_string().contains("Start the sign-in again"), "{err}");
    // Forgotten: the next poll does not ask the provider about a dead code.
    let err = id.poll_device_code(&session).await.unwrap_err();
    assert!(matches!(err, Error::UnknownState), "{err:?}");
    assert_eq!(kit.calls(Endpoint::Token), 1);
    // A new sign-in works.
    start(&id, &session).await;
    signed_in(id.poll_device_code(&session).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_past_its_lifetime_expires_without_a_provider_call() {
    let kit = kit_with(|c| c.device_code_lifetime = Duration::from_secs(1)).await;
    let id = identity(&kit);
    let session = MemorySession::new();
    start(&id, &session).await;
    kit.reset_counters();
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let err = id.poll_device_code(&session).await.unwrap_err();
    assert!(matches!(err, Error::DeviceCodeExpired), "{err:?}");
    assert_eq!(kit.calls(Endpoint::Token), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_sign_in_is_forgotten_with_a_clear_error() {
    for answer in [DeviceAnswer::Denied, DeviceAnswer::Declined] {
        let kit = kit(1).await;
        let id = identity(&kit);
        let session = MemorySession::new();
        start(&id, &session).await;
        kit.script_device_code([answer]);

        let err = id.poll_device_code(&session).await.unwrap_err();
        let Error::DeviceCodeDenied { description } = &err else {
            panic!("{answer:?}: {err:?}");
        };
        assert!(description.contains("denied"), "{description}");
        assert_eq!(err.status_code(), 403);
        assert!(err.to_string().contains("Start the sign-in again"), "{err}");
        let err = id.poll_device_code(&session).await.unwrap_err();
        assert!(matches!(err, Error::UnknownState), "{answer:?}: {err:?}");
        assert!(id.get_user(&session).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_shows_a_self_reloading_waiting_page_then_signs_in() {
    let kit = kit(2).await;
    let id = identity(&kit);
    let web = WebAuth::builder(id)
        .session_secret("a test secret of at least thirty-two characters")
        .build()
        .unwrap();
    let store = MemorySession::new();
    let login = web
        .handle(Route::Login, &WebRequest::new("/login"), &store, None)
        .await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("id=\"user_code\""), "{}", login.body);
    assert!(
        login
            .body
            .contains("http-equiv=\"refresh\" content=\"2; URL=/auth_response\""),
        "the login page polls at the provider's interval: {}",
        login.body
    );

    kit.script_device_code([DeviceAnswer::Pending]);
    kit.reset_counters();
    let callback = WebRequest::new("/auth_response");
    let waiting = web.handle(Route::Callback, &callback, &store, None).await;
    assert_eq!(waiting.status, 200, "{}", waiting.body);
    assert_eq!(waiting.header("cache-control"), Some("no-store"));
    assert_eq!(waiting.header("retry-after"), Some("2"));
    assert!(
        waiting.body.contains("id=\"device_waiting\""),
        "{}",
        waiting.body
    );
    assert!(waiting
        .body
        .contains("http-equiv=\"refresh\" content=\"2; URL=/auth_response\""));
    // A reload before the interval: the same page, no provider call.
    let early = web.handle(Route::Callback, &callback, &store, None).await;
    assert_eq!(early.status, 200);
    assert!(early.body.contains("id=\"device_waiting\""));
    assert_eq!(kit.calls(Endpoint::Token), 1);

    wait(Duration::from_secs(2)).await;
    let done = web.handle(Route::Callback, &callback, &store, None).await;
    assert!(done.is_redirect(), "{done:?} {}", done.body);
    assert_eq!(done.location(), Some("/"));
    assert_eq!(store.cycles(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_answers_a_declined_or_expired_code_with_an_error_page_to_start_again() {
    for (answer, status, title) in [
        (DeviceAnswer::Denied, 403, "The sign-in was declined"),
        (DeviceAnswer::Expired, 400, "The sign-in code expired"),
    ] {
        let kit = kit(1).await;
        let web = WebAuth::builder(identity(&kit))
            .session_secret("a test secret of at least thirty-two characters")
            .build()
            .unwrap();
        let store = MemorySession::new();
        web.handle(Route::Login, &WebRequest::new("/login"), &store, None)
            .await;
        kit.script_device_code([answer]);
        let page = web
            .handle(
                Route::Callback,
                &WebRequest::new("/auth_response"),
                &store,
                None,
            )
            .await;
        assert_eq!(page.status, status, "{answer:?}: {}", page.body);
        assert!(page.body.contains(title), "{}", page.body);
        assert!(
            page.body.contains("href=\"/login\""),
            "a link to start again: {}",
            page.body
        );
        assert!(!page.body.contains("http-equiv"), "no more polling");
    }
}
