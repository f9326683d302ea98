//! Two instances of this sample sharing a real `redis-server` and one `SESSION_SECRET`
//! (skipped with a message when `redis-server` is missing).

use identity_testkit::suite::{e2e, SampleLauncher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_sessions() {
    e2e::instances_share_sessions(&SampleLauncher::new(env!("CARGO_BIN_EXE_actix-webapp"))).await;
}
