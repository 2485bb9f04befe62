//! Duplicate suppression by `eventId`, per source, within a window and a size bound.
//!
//! VoiceHub retries a webhook it got no 2xx for, and may retry one that did get it (a timeout
//! on its side). On one instance:
//! - an id whose produce succeeded within the window is a duplicate (200, nothing produced);
//! - an id whose produce is still pending makes the retry wait for that produce;
//! - an id whose produce failed is forgotten, so the retry produces it again.
//!
//! Ids are remembered as a 128-bit keyed hash of source and `eventId` (two SipHash outputs
//! under std's per-process random keys), not as strings: 100,000 of them take a few MB
//! instead of tens. Two different ids sharing a key (the second would be answered
//! `duplicate`) is as likely as a collision of a 128-bit random value among 100,000: about
//! 10^-29, if the halves behave as independent.

use std::collections::hash_map::{self, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

#[derive(Debug)]
enum Entry {
    /// Being produced. The sender is made only when a second request waits for the produce;
    /// the entry's replacement or removal when it ends, either way, drops it and so wakes the
    /// waiters.
    Pending(Option<watch::Sender<()>>),
    Done(Instant),
}

/// An id as remembered: see the module's documentation.
type Key = u128;

/// Hashes a [`Key`] for the table by taking its low half: a key already is the output of a
/// keyed hash (unpredictable without the process's random keys), so hashing it again, as
/// the default SipHash would on each of a webhook's four table operations, buys nothing.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by `Key`; this keeps any other input hashed sensibly.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        // The low 64 bits: truncation is the point.
        self.0 = key as u64;
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry, BuildHasherDefault<KeyHasher>>,
    /// Accepted ids, oldest first (with their acceptance time, to skip stale queue slots).
    accepted: VecDeque<(Key, Instant)>,
}

/// The table of recent event ids.
#[derive(Debug)]
pub struct Dedupe {
    inner: Mutex<Inner>,
    window: Duration,
    max_entries: usize,
    /// The two halves of a key.
    hashers: [RandomState; 2],
}

/// What to do with an event id.
#[derive(Debug)]
pub enum Claim {
    /// First sight: produce it, then call [`Pending::succeeded`]; dropping the guard without
    /// that releases the id. The guard can outlive the request (a delivery still under way
    /// after the request was answered 503 keeps the id pending).
    Fresh(Pending),
    /// Accepted recently: answer duplicate.
    Duplicate,
    /// Another request is producing it: wait for the change, then claim again.
    InFlight(watch::Receiver<()>),
}

/// A claimed id whose produce is under way.
#[derive(Debug)]
pub struct Pending {
    dedupe: Arc<Dedupe>,
    key: Option<Key>,
}

impl Dedupe {
    /// An empty table.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            window,
            max_entries,
            hashers: [RandomState::new(), RandomState::new()],
        }
    }

    fn key(&self, source: &str, event_id: &str) -> Key {
        let [high, low] = self
            .hashers
            .each_ref()
            .map(|h| h.hash_one((source, event_id)));
        (Key::from(high) << 64) | Key::from(low)
    }

    /// Claims `event_id` of `source`.
    pub fn claim(self: &Arc<Self>, source: &str, event_id: &str) -> Claim {
        let key = self.key(source, event_id);
        let now = Instant::now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        match inner.entries.entry(key) {
            hash_map::Entry::Occupied(entry) => match entry.into_mut() {
                Entry::Done(_) => Claim::Duplicate,
                Entry::Pending(waiters) => Claim::InFlight(
                    waiters
                        .get_or_insert_with(|| watch::channel(()).0)
                        .subscribe(),
                ),
            },
            hash_map::Entry::Vacant(entry) => {
                entry.insert(Entry::Pending(None));
                Claim::Fresh(Pending {
                    dedupe: Arc::clone(self),
                    key: Some(key),
                })
            }
        }
    }

    /// How many ids are remembered (accepted or pending).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((key, at)) = inner.accepted.front() {
            let too_old = now.duration_since(*at) > self.window;
            if !too_old && inner.accepted.len() <= self.max_entries {
                break;
            }
            if matches!(inner.entries.get(key), Some(Entry::Done(t)) if t == at) {
                inner.entries.remove(key);
            }
            inner.accepted.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pending {
    /// The produce was acknowledged: remember the id as accepted (waiters see a duplicate).
    pub fn succeeded(mut self) {
        if let Some(key) = self.key.take() {
            let now = Instant::now();
            let mut inner = self.dedupe.lock();
            let pending = inner.entries.insert(key, Entry::Done(now));
            inner.accepted.push_back((key, now));
            self.dedupe.expire(&mut inner, now);
            drop(inner);
            // Wakes the waiters (they see a duplicate), outside the lock they take next.
            drop(pending);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Wakes the waiters (they claim again) once the lock is released.
            let pending = self.dedupe.lock().entries.remove(&key);
            drop(pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(claim: Claim) -> Pending {
        match claim {
            Claim::Fresh(pending) => pending,
            other => panic!("expected fresh, got {other:?}"),
        }
    }

    #[test]
    fn an_accepted_id_is_a_duplicate_per_source() {
        let dedupe = Arc::new(Dedupe::new(Duration::from_secs(60), 10));
        fresh(dedupe.claim("a", "e1")).succeeded();
        assert!(matches!(dedupe.claim("a", "e1"), Claim::Duplicate));
        assert!(matches!(dedupe.claim("b", "e1"), Claim::Fresh(_)));
    }

    #[test]
    fn source_and_id_are_hashed_apart_not_concatenated() {
        let dedupe = Arc::new(Dedupe::new(Duration::from_secs(60), 10));
        fresh(dedupe.claim("a", "bc")).succeeded();
        assert!(matches!(dedupe.claim("ab", "c"), Claim::Fresh(_)));
        assert!(matches!(dedupe.claim("a", "bc"), Claim::Duplicate));
    }

    #[test]
    fn a_failed_produce_releases_the_id() {
        let dedupe = Arc::new(Dedupe::new(Duration::from_secs(60), 10));
        drop(fresh(dedupe.claim("a", "e1")));
        assert!(matches!(dedupe.claim("a", "e1"), Claim::Fresh(_)));
    }

    #[tokio::test]
    async fn a_retry_waits_for_the_pending_produce_then_sees_its_outcome() {
        let dedupe = Arc::new(Dedupe::new(Duration::from_secs(60), 10));
        let pending = fresh(dedupe.claim("a", "e1"));
        let Claim::InFlight(mut rx) = dedupe.claim("a", "e1") else {
            panic!("expected in flight");
        };
        pending.succeeded();
        assert!(rx.changed().await.is_err(), "the waiter is woken");
        assert!(matches!(dedupe.claim("a", "e1"), Claim::Duplicate));
    }

    #[tokio::test]
    async fn every_waiter_on_a_failed_produce_is_woken_and_one_claims_it_again() {
        let dedupe = Arc::new(Dedupe::new(Duration::from_secs(60), 10));
        let pending = fresh(dedupe.claim("a", "e1"));
        let waiters: Vec<_> = (0..2)
            .map(|_| match dedupe.claim("a", "e1") {
                Claim::InFlight(rx) => rx,
                other => panic!("expected in flight, got {other:?}"),
            })
            .collect();
        drop(pending);
        for mut rx in waiters {
            assert!(rx.changed().await.is_err(), "the waiter is woken");
        }
        let again = fresh(dedupe.claim("a", "e1"));
        assert!(matches!(dedupe.claim("a", "e1"), Claim::InFlight(_)));
        again.succeeded();
        assert!(matches!(dedupe.claim("a", "e1"), Claim::Duplicate));
    }

    #[test]
    fn the_oldest_ids_are_forgotten_beyond_the_size_bound() {
        let dedupe = Arc::new(Dedupe::new(Duration::from_secs(60), 2));
        for id in ["e1", "e2", "e3"] {
            fresh(dedupe.claim("a", id)).succeeded();
        }
        assert_eq!(dedupe.len(), 2);
        assert!(matches!(dedupe.claim("a", "e1"), Claim::Fresh(_)));
        assert!(matches!(dedupe.claim("a", "e3"), Claim::Duplicate));
    }

    #[test]
    fn a_table_key_is_the_low_half_of_the_id_key() {
        let mut hasher = KeyHasher::default();
        hasher.write_u128((7 << 64) | 42);
        assert_eq!(hasher.finish(), 42);
    }

    #[test]
    fn ids_are_forgotten_after_the_window() {
        let dedupe = Arc::new(Dedupe::new(Duration::ZERO, 10));
        fresh(dedupe.claim("a", "e1")).succeeded();
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(dedupe.claim("a", "e1"), Claim::Fresh(_)));
    }
}
