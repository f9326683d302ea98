//! Copies of Redis sessions against a real `redis-server` (skipped when it is missing):
//! repeated reads cost no command, a change or a deletion made by another instance
//! reaches the copy, and a silent or broken connection stops the copies.
#![cfg(feature = "redis")]

use identity_core::sessions::copies::LIVE_FOR;
use identity_core::sessions::{SessionBackend, StoreUrl, StoredSession};
use identity_testkit::suite::peers::RedisServer;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TIMEOUT: Duration = Duration::from_secs(1);

async fn backend(redis: &RedisServer) -> Arc<dyn SessionBackend> {
    StoreUrl::parse(&redis.url())
        .unwrap()
        .open(10, TIMEOUT)
        .await
        .unwrap()
}

fn session(value: &str) -> StoredSession {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    StoredSession {
        data: HashMap::from([("visits".to_owned(), value.to_owned())]),
        expires_at: now.as_secs() as i64 + 3600,
    }
}

async fn value(backend: &dyn SessionBackend, id: &str) -> Option<String> {
    let record = backend.load_shared(id).await.unwrap();
    record.map(|r| r.data["visits"].clone())
}

/// The commands `redis` ran while `backend` read `id` `times` times, each read showing
/// `expected`.
async fn commands_for_reads(
    redis: &RedisServer,
    backend: &dyn SessionBackend,
    id: &str,
    expected: &str,
    times: usize,
) -> BTreeMap<String, i64> {
    redis
        .calls_during(async {
            for n in 0..times {
                assert_eq!(
                    value(backend, id).await.as_deref(),
                    Some(expected),
                    "read {n}"
                );
            }
        })
        .await
        .unwrap()
}

/// Reads `id` on `backend` until it shows `expected`, for at most `within`.
async fn until_seen(
    backend: &dyn SessionBackend,
    id: &str,
    expected: Option<&str>,
    within: Duration,
) {
    let start = Instant::now();
    loop {
        let seen = value(backend, id).await;
        if seen.as_deref() == expected {
            return;
        }
        assert!(
            start.elapsed() < within,
            "still {seen:?} instead of {expected:?} after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A Redis server and a backend on it holding session `s1` (value "1"), read twice so
/// that the backend holds a copy.
async fn one_copy() -> (RedisServer, Arc<dyn SessionBackend>) {
    let redis = RedisServer::start().await.unwrap();
    let b = backend(&redis).await;
    assert!(b.create("s1", &session("1")).await.unwrap());
    assert_eq!(value(&*b, "s1").await.as_deref(), Some("1"));
    assert_eq!(value(&*b, "s1").await.as_deref(), Some("1"));
    (redis, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_reads_use_the_copy_and_other_instances_writes_reach_it() {
    if !RedisServer::available() {
        return;
    }
    let redis = RedisServer::start().await.unwrap();
    let (a, b) = (backend(&redis).await, backend(&redis).await);
    assert!(format!("{b:?}").contains("local_copies: true"), "{b:?}");
    assert!(a.create("s1", &session("1")).await.unwrap());

    // The first read on B goes to Redis (with tracking on); the next ones do not.
    let first = commands_for_reads(&redis, &*b, "s1", "1", 1).await;
    assert_eq!(first.get("get"), Some(&1), "{first:?}");
    let repeated = commands_for_reads(&redis, &*b, "s1", "1", 20).await;
    assert_eq!(repeated.get("get"), None, "20 repeated reads: {repeated:?}");

    // A changes the session: Redis's notice reaches B's copy.
    assert!(a.save("s1", &session("2")).await.unwrap());
    until_seen(&*b, "s1", Some("2"), LIVE_FOR).await;
    // B's own write is read back at once, from its next read.
    assert!(b.save("s1", &session("3")).await.unwrap());
    assert_eq!(value(&*b, "s1").await.as_deref(), Some("3"));
    until_seen(&*a, "s1", Some("3"), LIVE_FOR).await;

    // A signs the session out: B no longer has it.
    assert_eq!(value(&*b, "s1").await.as_deref(), Some("3"));
    a.delete("s1").await.unwrap();
    until_seen(&*b, "s1", None, LIVE_FOR).await;
    // A save from a request that was in flight does not bring it back, on either side.
    assert!(!b.save("s1", &session("4")).await.unwrap());
    assert_eq!(value(&*b, "s1").await, None);
    assert_eq!(value(&*a, "s1").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_store_stops_the_copies() {
    if !RedisServer::available() {
        return;
    }
    let (redis, b) = one_copy().await;

    // Redis stops answering, the connection stays open.
    redis.pause(2500).await.unwrap();
    tokio::time::sleep(LIVE_FOR + Duration::from_millis(50)).await;
    let read = b.load_shared("s1").await;
    assert!(
        read.is_err(),
        "a copy was served while the store had been silent for longer than {LIVE_FOR:?}"
    );
    // It answers again: so does the session.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let start = Instant::now();
    while b.load_shared("s1").await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(value(&*b, "s1").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_drops_the_copies() {
    if !RedisServer::available() {
        return;
    }
    let (redis, b) = one_copy().await;

    // Every client connection is closed; the session changes while B reconnects, on a
    // connection B's copy was never tracked on.
    let killed = redis
        .command(&["CLIENT", "KILL", "TYPE", "normal"])
        .await
        .unwrap();
    assert!(killed.starts_with(':'), "{killed}");
    let c = backend(&redis).await;
    assert!(c.save("s1", &session("2")).await.unwrap());

    // B's first answer after that is the new record (or a store error while it
    // reconnects), never its old copy.
    let start = Instant::now();
    loop {
        match b.load_shared("s1").await {
            Ok(record) => {
                let seen = record.map(|r| r.data["visits"].clone());
                assert_eq!(seen.as_deref(), Some("2"), "a copy outlived its connection");
                break;
            }
            Err(_) => {
                assert!(start.elapsed() < Duration::from_secs(10), "no recovery");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // And copies work again on the new connection. (The read that sees the change may
    // keep nothing: a notice for the change, owed to B's earlier read, can reach B after
    // the answer, and a notice always wins. The next read keeps its answer.)
    assert!(c.save("s1", &session("3")).await.unwrap());
    until_seen(&*b, "s1", Some("3"), LIVE_FOR).await;
    assert_eq!(value(&*b, "s1").await.as_deref(), Some("3"));
    let repeated = commands_for_reads(&redis, &*b, "s1", "3", 5).await;
    assert_eq!(repeated.get("get"), None, "{repeated:?}");
}

/// A server that refuses a command the copies need (`HELLO`, as servers before Redis 6
/// and some proxies do; `CLIENT`, as some proxies do) still serves sessions: every read
/// goes to the store, and writes, deletions and sign-out indexes work as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_resp3_or_tracking_is_read_on_every_view() {
    if !RedisServer::available() {
        return;
    }
    for refused in ["HELLO", "CLIENT"] {
        let redis = RedisServer::start_with(&["--rename-command", refused, "refused-here"])
            .await
            .unwrap();
        let b = backend(&redis).await;
        assert!(b.create("s1", &session("1")).await.unwrap(), "{refused}");
        let used = commands_for_reads(&redis, &*b, "s1", "1", 5).await;
        // Without `HELLO` there is no tracking to ask for; a refused `CLIENT TRACKING`
        // is asked for once (with the first read), then copies are off.
        assert_eq!(used.get("get"), Some(&5), "{refused}: {used:?}");
        assert!(
            format!("{b:?}").contains("local_copies: false"),
            "{refused}: {b:?}"
        );
        assert!(b.save("s1", &session("2")).await.unwrap(), "{refused}");
        assert_eq!(value(&*b, "s1").await.as_deref(), Some("2"), "{refused}");
        b.delete("s1").await.unwrap();
        assert_eq!(value(&*b, "s1").await, None, "{refused}");
    }
}

#[test]
fn the_behaviour_suite_waits_out_the_same_liveness_window() {
    assert_eq!(
        LIVE_FOR,
        identity_testkit::suite::e2e::REDIS_COPIES_LIVE_FOR
    );
}
