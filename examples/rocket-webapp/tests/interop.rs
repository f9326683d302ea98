//! This sample against panva's `oidc-provider`, an OpenID provider we did not write
//! (`interop/op.mjs`; skipped with a message when `node` is missing).

use identity_testkit::suite::{e2e, SampleLauncher};

fn sample() -> SampleLauncher {
    SampleLauncher::new(env!("CARGO_BIN_EXE_rocket-webapp"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_api_refresh_sign_out() {
    e2e::interop_sign_in_api_refresh_sign_out(&sample()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_scope() {
    e2e::interop_incremental_scope(&sample()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_channel_logout() {
    e2e::interop_back_channel_logout(&sample()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_refresh_redeems_once() {
    e2e::interop_cluster_refresh_redeems_once(&sample()).await;
}
