//! Local copies of Redis session records, kept coherent by the server.
//!
//! Each instance keeps the records it read, so that a repeated page view of the same
//! session costs no round trip. Redis tells the instance when a record it read changes
//! or goes away (server-assisted client-side caching: `CLIENT TRACKING` on the
//! connection, invalidation notices pushed over the same connection, RESP3), and the copy
//! is dropped. A copy is served only when all of these hold:
//!
//! * **It was read with tracking on.** Every read that may keep a copy sends
//!   `CLIENT TRACKING ON` and the `GET` together; the client re-establishes a broken
//!   connection without tracking, and announces the new connection before any answer
//!   read on it, so a read answered on another connection than its `CLIENT TRACKING ON`
//!   keeps nothing.
//! * **No notice overtook the read.** A read first marks the record pending; a notice
//!   for it (or for everything) removes the mark, and the answer is kept only if its own
//!   mark is still there. A notice that arrives after the answer was kept removes the
//!   copy. Notices are applied before every lookup.
//! * **The connection is the one that read it.** A failure of the connection (it closed,
//!   a command on it failed for the connection's sake) and a new connection (after a
//!   failure or a server restart) drop every copy: the server no longer tracks them for
//!   us. So does a notice that could not be delivered to us (the notice queue
//!   overflowed).
//! * **The connection answered within [`LIVE_FOR`].** Notices come in order with the
//!   answers on the connection: once an answer to a command sent at time `t` has been
//!   read, every notice for a change made before `t` has been applied. A copy is served
//!   only while such a `t` is less than [`LIVE_FOR`] old; under load a `PING` renews it,
//!   so a silent connection (a paused server, a partition that keeps the socket open)
//!   stops copies within [`LIVE_FOR`], and the next view waits for the store (then
//!   answers 503 as without copies).
//! * **It is younger than [`MAX_AGE`]**, and its session has not expired. The bound
//!   covers what the server announces in no way the client passes on (`FLUSHALL`,
//!   `FLUSHDB`: their notice names no key).
//!
//! What it means for a sign-out on another instance (or a single sign-out notification
//! handled there): the record's deletion reaches this instance with Redis's notice, in
//! the time of a message on an open connection; on a connection that has fallen silent,
//! within [`LIVE_FOR`]. Writes made by this instance drop its own copy before and after
//! they are sent.
//!
//! A server that does not take `CLIENT TRACKING` (older than Redis 6, or a proxy that
//! refuses it) gets a plain read per view: the first refusal turns copies off.

use super::StoredSession;
use fred::prelude::{Client, Server};
use fred::types::client::Invalidation;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{error::TryRecvError, Receiver};

/// How long after the send time of the connection's latest answered command copies are
/// still served (the bound on staleness when the connection falls silent).
pub const LIVE_FOR: Duration = Duration::from_millis(500);

/// The longest a copy is served after its read.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// The key prefix of session records, as the backend writes them.
const PREFIX: &[u8] = b"identity:session:";

/// The copies of one client, with the notices that keep them coherent.
pub(super) struct Copies {
    state: Mutex<State>,
    /// `false` once the server refused `CLIENT TRACKING` (or the client was dropped).
    on: AtomicBool,
    capacity: usize,
}

struct State {
    invalidations: Receiver<Invalidation>,
    reconnects: Receiver<Server>,
    /// Connection failures (a closed connection, a failed reconnect, ...).
    errors: Receiver<(fred::error::Error, Option<Server>)>,
    /// Bumped with every new connection and every failure.
    epoch: u64,
    next_mark: u64,
    /// The send time of the latest command answered on the current connection.
    answered: Option<Instant>,
    /// The send time of a `PING` under way that renews `answered` (one at a time; a
    /// `PING` unanswered for [`LIVE_FOR`] no longer holds the next one back).
    pinging: Option<Instant>,
    entries: HashMap<String, Entry, foldhash::fast::RandomState>,
    /// The last sweep of old copies.
    swept: Instant,
}

enum Entry {
    /// A read is under way (sent at `sent`); its answer is kept only while this mark
    /// stands. A mark whose read never ended (its request was dropped) goes with the
    /// sweep.
    Pending { mark: u64, sent: Instant },
    Held {
        record: Arc<StoredSession>,
        read_at: Instant,
    },
}

/// A read that may keep a copy: its mark, its connection epoch and its send time.
pub(super) struct Ticket {
    mark: u64,
    epoch: u64,
    sent: Instant,
}

/// A `PING` to renew the liveness of the connection (see [`Copies::lookup`]).
pub(super) struct Ping {
    epoch: u64,
    sent: Instant,
}

/// What [`Copies::lookup`] found.
pub(super) enum Lookup {
    /// A copy to serve; with a [`Ping`] to send when liveness is due for renewal.
    Copy(Arc<StoredSession>, Option<Ping>),
    /// No copy: read the store with tracking, then [`Copies::settle`].
    Read(Ticket),
    /// Copies are off (or the map is full): read the store.
    Plain,
}

impl Copies {
    pub(super) fn new(client: &Client, capacity: usize) -> Copies {
        use fred::interfaces::{EventInterface, TrackingInterface};
        Copies::from_channels(
            client.invalidation_rx(),
            client.reconnect_rx(),
            client.error_rx(),
            capacity,
        )
    }

    fn from_channels(
        invalidations: Receiver<Invalidation>,
        reconnects: Receiver<Server>,
        errors: Receiver<(fred::error::Error, Option<Server>)>,
        capacity: usize,
    ) -> Copies {
        Copies {
            state: Mutex::new(State {
                invalidations,
                reconnects,
                errors,
                epoch: 0,
                next_mark: 0,
                answered: None,
                pinging: None,
                entries: HashMap::default(),
                swept: Instant::now(),
            }),
            on: AtomicBool::new(true),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.apply_notices() {
            self.on.store(false, Ordering::Relaxed);
        }
        state
    }

    /// Whether copies are on.
    pub(super) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// The copy of session `id` if one may be served (`now_secs`: the clock, for the
    /// session's expiry), else how to read it.
    pub(super) fn lookup(&self, id: &str, now_secs: i64) -> Lookup {
        if !self.is_on() {
            return Lookup::Plain;
        }
        let now = Instant::now();
        let mut state = self.lock();
        if !self.is_on() {
            return Lookup::Plain;
        }
        let live_until = state.answered.map(|t| t + LIVE_FOR);
        if let (Some(Entry::Held { record, read_at }), Some(live_until)) =
            (state.entries.get(id), live_until)
        {
            if now < live_until && now < *read_at + MAX_AGE && record.expires_at > now_secs {
                let record = Arc::clone(record);
                let renew = now + LIVE_FOR / 2 > live_until
                    && state.pinging.is_none_or(|sent| sent + LIVE_FOR < now);
                if renew {
                    state.pinging = Some(now);
                }
                let ping = renew.then_some(Ping {
                    epoch: state.epoch,
                    sent: now,
                });
                return Lookup::Copy(record, ping);
            }
        }
        // Old copies and abandoned marks are swept once the map is half full (at most
        // once a second: a sweep holds the lock while it walks the map).
        if state.entries.len() * 2 >= self.capacity {
            state.sweep(now);
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(id) {
            return Lookup::Plain;
        }
        state.next_mark += 1;
        let mark = state.next_mark;
        state
            .entries
            .insert(id.to_owned(), Entry::Pending { mark, sent: now });
        Lookup::Read(Ticket {
            mark,
            epoch: state.epoch,
            sent: now,
        })
    }

    /// The answer to a read with `ticket`: kept as the copy of `id` if no notice, new
    /// connection or write overtook it. `None` (no such session) keeps nothing.
    pub(super) fn settle(&self, id: &str, ticket: Ticket, record: Option<&Arc<StoredSession>>) {
        let mut state = self.lock();
        if state.epoch != ticket.epoch {
            return;
        }
        state.answered_at(ticket.sent);
        let ours = matches!(state.entries.get(id), Some(Entry::Pending { mark, .. }) if *mark == ticket.mark);
        if !ours {
            return;
        }
        match record {
            Some(record) => {
                state.entries.insert(
                    id.to_owned(),
                    Entry::Held {
                        record: Arc::clone(record),
                        read_at: ticket.sent,
                    },
                );
            }
            None => {
                state.entries.remove(id);
            }
        }
    }

    /// A read with `ticket` failed: its mark goes.
    pub(super) fn abandon(&self, id: &str, ticket: Ticket) {
        let mut state = self.lock();
        if matches!(state.entries.get(id), Some(Entry::Pending { mark, .. }) if *mark == ticket.mark)
        {
            state.entries.remove(id);
        }
    }

    /// The server refused `CLIENT TRACKING`: copies are off for good.
    pub(super) fn turn_off(&self) {
        self.on.store(false, Ordering::Relaxed);
        self.lock().entries.clear();
    }

    /// Drops the copy of `id` (and any read of it under way): this instance writes it.
    pub(super) fn forget(&self, id: &str) {
        if self.is_on() {
            self.lock().entries.remove(id);
        }
    }

    /// The answer to `ping` arrived (`answered`), or it failed.
    pub(super) fn pinged(&self, ping: Ping, answered: bool) {
        let mut state = self.lock();
        if state.pinging == Some(ping.sent) {
            state.pinging = None;
        }
        if answered && state.epoch == ping.epoch {
            state.answered_at(ping.sent);
        }
    }

    /// How many copies (and reads under way) are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl State {
    /// Applies the notices received since the last call; `true` when the client is gone.
    fn apply_notices(&mut self) -> bool {
        let mut broken = false;
        let mut lost = false;
        let open = drain(&mut self.reconnects, |_| broken = true)
            & drain(&mut self.errors, |_| broken = true);
        let entries = &mut self.entries;
        let heard = drain(&mut self.invalidations, |notice| match notice {
            Some(notice) => {
                for key in &notice.keys {
                    let id = key.as_bytes().strip_prefix(PREFIX);
                    if let Some(Ok(id)) = id.map(std::str::from_utf8) {
                        entries.remove(id);
                    }
                }
            }
            None => lost = true,
        });
        if broken || !open || !heard {
            self.new_connection();
        } else if lost {
            self.entries.clear();
        }
        !(open && heard)
    }

    fn new_connection(&mut self) {
        self.epoch += 1;
        self.answered = None;
        self.entries.clear();
    }

    fn answered_at(&mut self, sent: Instant) {
        if self.answered.is_none_or(|t| t < sent) {
            self.answered = Some(sent);
        }
    }

    /// Removes copies and marks past [`MAX_AGE`] (at most once a second).
    fn sweep(&mut self, now: Instant) {
        if now < self.swept + Duration::from_secs(1) {
            return;
        }
        self.swept = now;
        self.entries.retain(|_, entry| match entry {
            Entry::Pending { sent: at, .. } | Entry::Held { read_at: at, .. } => {
                now < *at + MAX_AGE
            }
        });
    }
}

/// Takes every message waiting on `rx`, calling `each` with it, or with `None` for
/// messages lost (the queue overflowed or closed); `false` when the sender is gone.
fn drain<T: Clone>(rx: &mut Receiver<T>, mut each: impl FnMut(Option<T>)) -> bool {
    loop {
        match rx.try_recv() {
            Ok(message) => each(Some(message)),
            Err(TryRecvError::Lagged(_)) => each(None),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Closed) => {
                each(None);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::{channel, Sender};

    struct Server_ {
        invalidations: Sender<Invalidation>,
        reconnects: Sender<Server>,
        errors: Sender<(fred::error::Error, Option<Server>)>,
    }

    impl Server_ {
        fn invalidate(&self, ids: &[&str]) {
            let keys = ids
                .iter()
                .map(|id| format!("identity:session:{id}").into())
                .collect();
            let _ = self.invalidations.send(Invalidation {
                keys,
                server: Server::new("127.0.0.1", 6379),
            });
        }
    }

    fn copies(capacity: usize) -> (Copies, Server_) {
        let (invalidations, i) = channel(4);
        let (reconnects, r) = channel(4);
        let (errors, e) = channel(4);
        (
            Copies::from_channels(i, r, e, capacity),
            Server_ {
                invalidations,
                reconnects,
                errors,
            },
        )
    }

    fn record(value: &str, expires_at: i64) -> Arc<StoredSession> {
        Arc::new(StoredSession {
            data: HashMap::from([("k".to_owned(), value.to_owned())]),
            expires_at,
        })
    }

    const NOW: i64 = 1_000_000;

    /// Reads `id`, answered with `value`; the ticket is settled.
    fn read(c: &Copies, id: &str, value: &str) {
        match c.lookup(id, NOW) {
            Lookup::Read(ticket) => c.settle(id, ticket, Some(&record(value, NOW + 60))),
            _ => panic!("expected a read of {id}"),
        }
    }

    fn copy(c: &Copies, id: &str) -> Option<String> {
        match c.lookup(id, NOW) {
            Lookup::Copy(record, _) => Some(record.data["k"].clone()),
            Lookup::Read(ticket) => {
                c.abandon(id, ticket);
                None
            }
            Lookup::Plain => None,
        }
    }

    #[test]
    fn a_read_is_kept_and_served_until_its_notice() {
        let (c, server) = copies(10);
        read(&c, "a", "1");
        read(&c, "b", "1");
        assert_eq!(copy(&c, "a").as_deref(), Some("1"));
        server.invalidate(&["a", "other"]);
        assert_eq!(copy(&c, "a"), None, "the notice drops the copy");
        assert_eq!(copy(&c, "b").as_deref(), Some("1"), "other copies stay");
    }

    #[test]
    fn a_notice_that_overtakes_the_answer_wins() {
        let (c, server) = copies(10);
        let Lookup::Read(ticket) = c.lookup("a", NOW) else {
            panic!("a read")
        };
        // The record changes while the read is under way: its notice is applied first.
        server.invalidate(&["a"]);
        c.settle("a", ticket, Some(&record("old", NOW + 60)));
        assert_eq!(copy(&c, "a"), None, "the overtaken answer was kept");

        // Two reads at once: only the later mark may keep its answer.
        let Lookup::Read(first) = c.lookup("b", NOW) else {
            panic!("a read")
        };
        let Lookup::Read(second) = c.lookup("b", NOW) else {
            panic!("a read")
        };
        c.settle("b", first, Some(&record("first", NOW + 60)));
        assert_eq!(copy(&c, "b"), None);
        let Lookup::Read(third) = c.lookup("b", NOW) else {
            panic!("a read")
        };
        c.settle("b", second, Some(&record("second", NOW + 60)));
        c.settle("b", third, Some(&record("third", NOW + 60)));
        assert_eq!(copy(&c, "b").as_deref(), Some("third"));

        // This instance's own write: a read under way keeps nothing.
        let Lookup::Read(ticket) = c.lookup("c", NOW) else {
            panic!("a read")
        };
        c.forget("c");
        c.settle("c", ticket, Some(&record("before the write", NOW + 60)));
        assert_eq!(copy(&c, "c"), None);
    }

    #[test]
    fn a_new_connection_or_a_failure_drops_every_copy_and_every_read_under_way() {
        let (c, server) = copies(10);
        read(&c, "a", "1");
        let Lookup::Read(under_way) = c.lookup("b", NOW) else {
            panic!("a read")
        };
        let _ = server.reconnects.send(Server::new("127.0.0.1", 6379));
        assert_eq!(copy(&c, "a"), None, "a copy outlived its connection");
        // Answered on the new connection, which the read's `CLIENT TRACKING ON` may
        // not have reached.
        c.settle("b", under_way, Some(&record("1", NOW + 60)));
        assert_eq!(copy(&c, "b"), None, "a read across connections was kept");

        read(&c, "a", "2");
        assert_eq!(copy(&c, "a").as_deref(), Some("2"), "copies resume");
        let _ = server
            .errors
            .send((fred::error::Error::new_canceled(), None));
        assert_eq!(copy(&c, "a"), None, "a copy outlived a connection failure");
    }

    #[test]
    fn lost_notices_drop_every_copy() {
        let (c, server) = copies(10);
        read(&c, "a", "1");
        for _ in 0..6 {
            server.invalidate(&["other"]);
        }
        assert_eq!(copy(&c, "a"), None, "a copy outlived a lost notice");
        drop(server);
        assert!(
            matches!(c.lookup("a", NOW), Lookup::Plain),
            "no client, no copies"
        );
        assert!(!c.is_on());
    }

    #[test]
    fn copies_end_with_their_session_and_are_bounded_in_number() {
        let (c, _server) = copies(2);
        match c.lookup("a", NOW) {
            Lookup::Read(ticket) => c.settle("a", ticket, Some(&record("1", NOW + 1))),
            _ => panic!("a read"),
        }
        assert!(matches!(c.lookup("a", NOW), Lookup::Copy(..)));
        assert!(
            matches!(c.lookup("a", NOW + 1), Lookup::Read(_)),
            "an expired session was served"
        );
        c.forget("a");
        read(&c, "b", "1");
        read(&c, "c", "1");
        assert!(matches!(c.lookup("d", NOW), Lookup::Plain), "past capacity");
        assert_eq!(c.len(), 2);
        // An absent session keeps no entry.
        c.forget("b");
        let Lookup::Read(ticket) = c.lookup("b", NOW) else {
            panic!("a read")
        };
        c.settle("b", ticket, None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn copies_need_a_recent_answer_on_their_connection() {
        let (c, _server) = copies(10);
        read(&c, "a", "1");
        // Half of the window left: the lookup asks for one PING, and only one.
        std::thread::sleep(LIVE_FOR / 2 + Duration::from_millis(20));
        let Lookup::Copy(_, Some(ping)) = c.lookup("a", NOW) else {
            panic!("a copy and a ping")
        };
        assert!(matches!(c.lookup("a", NOW), Lookup::Copy(_, None)));
        let sent = ping.sent;
        c.pinged(ping, true);
        std::thread::sleep(LIVE_FOR / 2 + Duration::from_millis(20));
        // The answered PING renewed the window from its send time.
        assert!(sent.elapsed() < LIVE_FOR);
        assert!(matches!(c.lookup("a", NOW), Lookup::Copy(..)));
        std::thread::sleep(LIVE_FOR);
        let Lookup::Read(ticket) = c.lookup("a", NOW) else {
            panic!("a silent connection still served its copy")
        };
        c.abandon("a", ticket);
        // A failed PING renews nothing.
        read(&c, "a", "2");
        std::thread::sleep(LIVE_FOR / 2 + Duration::from_millis(20));
        let Lookup::Copy(_, Some(ping)) = c.lookup("a", NOW) else {
            panic!("a copy and a ping")
        };
        c.pinged(ping, false);
        std::thread::sleep(LIVE_FOR / 2);
        assert!(matches!(c.lookup("a", NOW), Lookup::Read(_)));
    }
}
