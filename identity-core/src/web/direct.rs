//! The signed-in user read straight from a stored session record
//! ([`WebAuth::user_in_backend`](super::WebAuth::user_in_backend)), and what that read
//! remembers of in-process records.

use crate::sessions::StoredSession;
use crate::User;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

/// What a direct read of a session record found: the signed-in user, with nothing else
/// to do for this request but, when [`touch_due`](Self::touch_due) says so, the
/// idle-timeout touch.
#[derive(Clone, Debug)]
pub struct BackendUser {
    /// The signed-in user.
    pub user: User,
    /// When the record expires (seconds since the epoch).
    pub expires_at: i64,
    /// Whether the session must be written back with its expiry pushed
    /// ([`SessionPolicy::needs_touch`](crate::sessions::SessionPolicy::needs_touch)), as
    /// of the read.
    pub touch_due: bool,
}

/// The user part and the sign-in time of in-process session records, by record.
///
/// An in-process backend hands out its own shared copy of a record
/// ([`SessionBackend::load_shared`](crate::sessions::SessionBackend::load_shared)) until
/// the record is replaced, so the same record is read again on every page view of its
/// session. The entry for a record is found by the record's address and holds a weak
/// reference to it: while the entry lives, that allocation cannot be reused for another
/// record, and a shared record is never changed in place (a save replaces it), so an
/// entry at the address of a live record is that record's. The user's freshness and the
/// lifetimes are checked on every read, against the clock; only the parsing is saved.
/// Bounded: when full, it starts over empty.
#[derive(Debug)]
pub(crate) struct RecordUsers {
    capacity: usize,
    map: RwLock<HashMap<usize, Entry, foldhash::fast::RandomState>>,
}

#[derive(Debug)]
struct Entry {
    /// Keeps the record's allocation (not its values) while the entry lives.
    record: Weak<StoredSession>,
    user: User,
    since: Option<i64>,
}

impl RecordUsers {
    pub(crate) fn new(capacity: usize) -> Self {
        RecordUsers {
            capacity,
            map: RwLock::default(),
        }
    }

    /// The user and sign-in time remembered for `record`.
    pub(crate) fn get(&self, record: &Arc<StoredSession>) -> Option<(User, Option<i64>)> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let entry = map.get(&(Arc::as_ptr(record) as usize))?;
        // The weak reference held the allocation: same address, same record.
        debug_assert!(std::ptr::eq(entry.record.as_ptr(), Arc::as_ptr(record)));
        Some((entry.user.clone(), entry.since))
    }

    /// Remembers what `record` holds.
    pub(crate) fn insert(&self, record: &Arc<StoredSession>, user: User, since: Option<i64>) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            map.clear();
        }
        let entry = Entry {
            record: Arc::downgrade(record),
            user,
            since,
        };
        map.insert(Arc::as_ptr(record) as usize, entry);
    }
}

/// The text form of a 128-bit session id: URL-safe base64 without padding of its 16
/// bytes, as tower-sessions writes its ids, made on the stack (22 characters).
#[derive(Clone, Copy)]
pub struct SessionIdText([u8; 22]);

impl SessionIdText {
    /// The text of the id whose bytes are `bytes` (tower-sessions: the id's
    /// little-endian bytes).
    pub fn new(bytes: [u8; 16]) -> Self {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = [0u8; 22];
        let sextet = |n: u32| ALPHABET[(n & 63) as usize];
        for (i, group) in bytes.chunks(3).enumerate() {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |n, (j, b)| n | u32::from(*b) << (16 - 8 * j));
            let o = &mut out[i * 4..];
            o[0] = sextet(n >> 18);
            o[1] = sextet(n >> 12);
            if group.len() > 1 {
                o[2] = sextet(n >> 6);
            }
            if group.len() > 2 {
                o[3] = sextet(n);
            }
        }
        SessionIdText(out)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only alphabet characters were written: ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for SessionIdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A session id is a bearer secret.
        f.write_str("SessionIdText(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn session_id_text_is_url_safe_base64_without_padding() {
        let mut bytes = [0u8; 16];
        for seed in 0u32..2000 {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32 * 3) >> 7) as u8
                    ^ (i as u8).wrapping_mul(37);
            }
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(SessionIdText::new(bytes).as_str(), expected);
        }
        assert_eq!(
            SessionIdText::new([0xff; 16]).as_str(),
            "_____________________w"
        );
        assert_eq!(
            SessionIdText::new([0; 16]).as_str(),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
    }

    fn record(user: &str) -> Arc<StoredSession> {
        Arc::new(StoredSession {
            data: [("identity.user".to_owned(), user.to_owned())].into(),
            expires_at: 0,
        })
    }

    fn user(name: &str) -> User {
        serde_json::from_str(&format!(
            r#"{{"expires_at":1,"name":"{name}","claims":{{}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn an_entry_is_found_only_for_its_own_live_record() {
        let users = RecordUsers::new(8);
        let first = record("a");
        users.insert(&first, user("Adele"), Some(5));
        let (found, since) = users.get(&first).expect("remembered");
        assert_eq!(found.name(), Some("Adele"));
        assert_eq!(since, Some(5));
        // The same values in another record (a replaced record): not found.
        let second = record("a");
        assert!(users.get(&second).is_none());
        // The first record dropped: its allocation stays held, no new record takes its
        // address while the entry lives.
        drop(first);
        let others: Vec<_> = (0..64).map(|_| record("b")).collect();
        assert!(others.iter().all(|r| users.get(r).is_none()));
    }

    #[test]
    fn a_full_memo_starts_over() {
        let users = RecordUsers::new(2);
        let records: Vec<_> = (0..3).map(|_| record("a")).collect();
        for r in &records {
            users.insert(r, user("A"), None);
        }
        assert!(users.get(&records[0]).is_none());
        assert!(users.get(&records[2]).is_some());
        let none = RecordUsers::new(0);
        none.insert(&records[0], user("A"), None);
        assert!(none.get(&records[0]).is_none());
    }
}
