//! # The adapter behaviour suite
//!
//! One set of scenarios, run by every adapter against its sample app over real HTTP,
//! so that "the same behaviour on axum, actix-web and Rocket" is proven rather than
//! hoped for. Each scenario starts its own [`TestKit`](crate::TestKit) and its own
//! sample process (configured through the sample contract: `CLIENT_ID`, `AUTHORITY`,
//! `REDIRECT_URI`, `SCOPE`, `ENDPOINT`, `BIND_ADDR`, ...), drives it with a scripted
//! [`Browser`](crate::suite::Browser), and asserts what a user or an attacker would observe: status codes,
//! page contents, redirect targets, cookie attributes, and the provider's call
//! counters ([`TestKit::calls`](crate::TestKit::calls)).
//!
//! Enabled by the `suite` feature.
//!
//! ## Run it for an adapter
//!
//! In the sample crate, `tests/behaviour.rs` (with `identity-testkit` (feature
//! `suite`) and `tokio` as dev-dependencies):
//!
//! ```ignore
//! identity_testkit::behaviour_suite!(identity_testkit::suite::SampleLauncher::new(env!(
//!     "CARGO_BIN_EXE_axum-webapp"
//! )));
//! ```
//!
//! That generates one `#[tokio::test]` per scenario, so test runners show and retry
//! them one by one and run them in parallel. [`run_all`](crate::suite::run_all) runs them in sequence from
//! one test instead.
//!
//! ## The scenarios
//!
//! | scenario | proves |
//! |---|---|
//! | [`sign_in`](crate::suite::scenarios::sign_in) | login page → provider → callback (1 token call) → back to the page → the user's name |
//! | [`sign_out`](crate::suite::scenarios::sign_out) | end-session redirect with encoded `post_logout_redirect_uri` and `id_token_hint`; back to the app; session gone from the store |
//! | [`renewal_after_id_token_expiry`](crate::suite::scenarios::renewal_after_id_token_expiry) | expired ID token renewed by exactly one refresh; none before |
//! | [`call_api_cached_then_refreshed`](crate::suite::scenarios::call_api_cached_then_refreshed) | cached API token: 0 token calls; due for refresh: 1 |
//! | [`incremental_consent`](crate::suite::scenarios::incremental_consent) | unconsented `SCOPE` → consent round trip → back on `/call_api` |
//! | [`cae_claims_challenge`](crate::suite::scenarios::cae_claims_challenge) | CAE event → API 401 `insufficient_claims` → sign-in carrying `claims` → retried `/call_api` succeeds |
//! | [`b2c_edit_profile`](crate::suite::scenarios::b2c_edit_profile) | `/edit_profile` runs the edit-profile user flow |
//! | [`b2c_reset_password`](crate::suite::scenarios::b2c_reset_password) | `AADB2C90118` hops to the reset-password flow; signed in after it |
//! | [`provider_errors_are_escaped`](crate::suite::scenarios::provider_errors_are_escaped) | error pages show the error, escaped; no token call |
//! | [`tampered_state_is_refused`](crate::suite::scenarios::tampered_state_is_refused) | 400, no token call; the genuine callback still works |
//! | [`replayed_code_is_refused`](crate::suite::scenarios::replayed_code_is_refused) | 400 on replay, here and elsewhere; nobody signed in by it |
//! | [`two_tabs_sign_in_at_once`](crate::suite::scenarios::two_tabs_sign_in_at_once) | two pending sign-ins in one session both complete, each to its page |
//! | [`next_link_stays_on_site`](crate::suite::scenarios::next_link_stays_on_site) | `next=//evil`, `https://evil`, `/\evil` stay on the app's origin |
//! | [`cookie_flags`](crate::suite::scenarios::cookie_flags) | `HttpOnly`, `SameSite=Lax`, no `Secure` on loopback http |
//! | [`session_id_is_cycled`](crate::suite::scenarios::session_id_is_cycled) | pre-sign-in cookies do not carry the signed-in session |
//! | [`configuration_page`](crate::suite::scenarios::configuration_page) | unconfigured: "Almost there" naming the missing settings |
//! | [`single_sign_out`](crate::suite::scenarios::single_sign_out) | sign-out at the provider: back-channel logout token ends the session (a replay is refused); front-channel frame without cookies ends it too |
//! | [`groups_after_an_overage`](crate::suite::enterprise::groups_after_an_overage) | a user in 250 groups (group overage): consent for `GroupMember.Read.All` once, groups read from Graph once and kept with the session; member 200, non-member 403, Graph down 502 |
//! | [`external_id_tenant`](crate::suite::enterprise::external_id_tenant) | External ID at `{tenant}.ciamlogin.com` over TLS: sign-in, API call with the user's token, sign-out |
//! | [`device_code_sign_in`](crate::suite::enterprise::device_code_sign_in) | `REDIRECT_URI=none`: the code page; `authorization_pending` and `slow_down` are the waiting page (200, `Retry-After`), then signed in |
//! | [`external_id_custom_domain`](crate::suite::enterprise::external_id_custom_domain) | External ID on the custom domain `login.contoso.com` (`OIDC_AUTHORITY`), issuer still `{tid}.ciamlogin.com`: sign-in, API call, sign-out |
//!
//! ## Timing
//!
//! Two scenarios wait for tokens to come due: the provider's clock is shifted so that an
//! ID token needs renewal five seconds after it was issued despite the core's 120 s
//! clock-skew allowance, and access tokens live 305 s against the core's 300 s
//! refresh-ahead margin. Each scenario takes a few seconds at most otherwise.
//!
//! ## Against independent peers
//!
//! [`e2e`](crate::suite::e2e) holds the checks each sample also runs against peers we did not write:
//! panva's `oidc-provider` (`interop/op.mjs`), headless Chromium driven by playwright-core
//! (`interop/browser.mjs`), and two instances sharing a real `redis-server`. [`peers`](crate::suite::peers)
//! starts those; a missing tool skips the check with a message, or fails it when
//! `IDENTITY_TEST_TOOLS_REQUIRED` is set (`cargo xtask ci` sets it after installing
//! them).
//!
//! [`Service`](crate::suite::Service) (child processes awaited on a readiness line, output kept for failure
//! messages, killed on drop) and [`free_port`](crate::suite::free_port) are the plumbing.

#![cfg(feature = "suite")]

mod browser;
pub mod e2e;
pub mod enterprise;
mod html;
mod launcher;
pub mod peers;
mod process;
mod proxy;
pub mod scenarios;

pub use browser::{origin, Browser, BrowserBuilder, HeldCookie, Page};
pub use html::{unescape, Button, Form};
pub use launcher::{Launch, Sample, SampleLauncher, CONTRACT_VARIABLES, START_TIMEOUT};
pub use process::{free_port, which, Service};
pub use proxy::{TlsProxy, PUBLIC_HOST};

use std::future::Future;
use std::pin::Pin;

type Scenario = for<'a> fn(&'a SampleLauncher) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

macro_rules! scenario_table {
    ($($name:ident),* $(,)?) => {
        /// The name of every scenario, in the order [`run_all`] runs them.
        pub const SCENARIOS: &[&str] = &[$(stringify!($name)),*];

        fn table() -> Vec<(&'static str, Scenario)> {
            vec![$((stringify!($name), |l| Box::pin(scenarios::$name(l)) as Pin<Box<dyn Future<Output = ()> + Send + '_>>)),*]
        }

        /// Generates one `#[tokio::test]` per scenario of the behaviour suite, each
        /// running it against the sample the given [`SampleLauncher`] expression
        /// starts. The calling crate needs `tokio` (with `macros` and `rt-multi-thread`).
        #[macro_export]
        macro_rules! behaviour_suite {
            ($launcher:expr) => {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let launcher: $crate::suite::SampleLauncher = $launcher;
                        $crate::suite::scenarios::$name(&launcher).await;
                    }
                )*

                /// The same scenarios in the production shape: the app on http behind a
                /// TLS-terminating proxy, with an https `REDIRECT_URI`.
                mod behind_tls_proxy {
                    $(
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $name() {
                            let launcher: $crate::suite::SampleLauncher = $launcher;
                            let launcher = launcher.behind_tls_proxy();
                            $crate::suite::scenarios::$name(&launcher).await;
                        }
                    )*
                }
            };
        }
    };
}

scenario_table!(
    sign_in,
    sign_out,
    renewal_after_id_token_expiry,
    call_api_cached_then_refreshed,
    incremental_consent,
    cae_claims_challenge,
    b2c_edit_profile,
    b2c_reset_password,
    provider_errors_are_escaped,
    tampered_state_is_refused,
    replayed_code_is_refused,
    two_tabs_sign_in_at_once,
    next_link_stays_on_site,
    cookie_flags,
    session_id_is_cycled,
    configuration_page,
    sign_out_during_refresh_stays_signed_out,
    roles_and_groups,
    app_pages_are_used,
    consent_loop_is_stopped,
    json_callers_get_a_json_401,
    single_sign_out,
    groups_after_an_overage,
    external_id_tenant,
    external_id_custom_domain,
    device_code_sign_in,
);

/// Runs every scenario in sequence (each in its own task, so one failure does not hide
/// the others) and panics listing the failed ones.
pub async fn run_all(launcher: &SampleLauncher) {
    let mut failed = Vec::new();
    for (name, scenario) in table() {
        let launcher = launcher.clone();
        let outcome = tokio::spawn(async move { scenario(&launcher).await }).await;
        if outcome.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}
