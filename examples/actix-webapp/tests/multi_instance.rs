//! Two instances of this sample sharing a real `redis-server` and one `SESSION_SECRET`
//! (skipped with a message when `redis-server` is missing).

use identity_testkit::suite::{e2e, SampleLauncher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_sessions() {
    e2e::instances_share_sessions(&SampleLauncher::new(env!("CARGO_BIN_EXE_actix-webapp"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_bounded_and_recovers() {
    e2e::redis_outage_is_bounded_and_recovers(&SampleLauncher::new(env!(
        "CARGO_BIN_EXE_actix-webapp"
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_sessions_use_tls() {
    e2e::rediss_sessions_use_tls(&SampleLauncher::new(env!("CARGO_BIN_EXE_actix-webapp"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_out_across_instances() {
    e2e::single_sign_out_across_instances(&SampleLauncher::new(env!("CARGO_BIN_EXE_actix-webapp")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_refresh_redeems_once() {
    e2e::cluster_refresh_redeems_once(&SampleLauncher::new(env!("CARGO_BIN_EXE_actix-webapp")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_views_read_redis_at_most_once() {
    e2e::page_views_read_redis_at_most_once(&SampleLauncher::new(env!(
        "CARGO_BIN_EXE_actix-webapp"
    )))
    .await;
}
