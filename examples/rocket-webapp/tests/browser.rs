//! Headless Chromium (Debian's package, driven by playwright-core through
//! `interop/browser.mjs`) signs in to and out of this sample through the testkit's HTML
//! pages; screenshots land in `target/e2e/`.

use identity_testkit::suite::{e2e, SampleLauncher};

fn sample() -> SampleLauncher {
    SampleLauncher::new(env!("CARGO_BIN_EXE_rocket-webapp"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_and_out() {
    e2e::chromium_sign_in_and_out(&sample(), "rocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_entra_host_names() {
    e2e::chromium_with_entra_host_names(&sample(), "rocket-entra").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_front_channel_logout() {
    e2e::chromium_front_channel_logout(&sample(), "rocket-front-channel").await;
}
