//! `KeyStore::stats`: each counter moves exactly as `keystead::Stats` defines it, on every
//! backend; failures (a refused flush, an unreachable change feed or record) are counted
//! through a backend that fails on demand.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{every_backend, open_new_with, wrong_secret};
use keystead::backend::{Backend, Changes, MemoryBackend, Meta, Read, Txn, UsageAdd, UsageTotal};
use keystead::{Error, ErrorKind, KeyStore, NewKey, Options, Outcome, Result, Stats};

/// Test options: no background flusher, and a refresh interval long enough that the change
/// feed is read only after this handle's own writes.
fn quiet() -> Options {
    common::options().refresh_interval(Duration::from_secs(3600))
}

/// A well-formed key with this store's prefix and an id that no key has.
fn unknown_key(store: &KeyStore) -> String {
    let created = store.create(NewKey::new("doomed")).unwrap();
    let key = created.key().to_owned();
    store.delete(created.info().id()).unwrap();
    key
}

fn outcomes_counted_by_code() {
    let t = open_new_with(quiet());
    let store = &t.store;
    let good = store.create(NewKey::new("good").scopes(["read"])).unwrap();
    let revoked = store.create(NewKey::new("revoked")).unwrap();
    store.revoke(revoked.info().id()).unwrap();
    let disabled = store.create(NewKey::new("disabled")).unwrap();
    store.disable(disabled.info().id()).unwrap();

    for _ in 0..3 {
        assert!(store.verify(good.key(), &["read"]).unwrap().is_valid());
    }
    for _ in 0..2 {
        let wrong = wrong_secret(good.key());
        assert_eq!(
            store.verify(&wrong, &[]).unwrap().outcome(),
            Outcome::NotFound
        );
    }
    assert_eq!(
        store.verify(revoked.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    assert_eq!(
        store.verify(disabled.key(), &[]).unwrap().outcome(),
        Outcome::Disabled
    );
    let scope = store.verify(good.key(), &["write"]).unwrap();
    assert_eq!(scope.outcome(), Outcome::InsufficientScope);
    // Outcomes decided before any lookup count too: through `verify` and `verify_header`.
    assert_eq!(store.verify("", &[]).unwrap().outcome(), Outcome::Missing);
    assert_eq!(
        store.verify_header("", &[]).unwrap().outcome(),
        Outcome::Missing
    );
    assert_eq!(
        store.verify("ks_typo", &[]).unwrap().outcome(),
        Outcome::Malformed
    );
    let garbage = store.verify_header("Bearer a b", &[]).unwrap();
    assert_eq!(garbage.outcome(), Outcome::Malformed);

    let stats = store.stats();
    let by_code: Vec<(&str, u64)> = stats.outcomes().map(|(o, n)| (o.as_str(), n)).collect();
    assert_eq!(
        by_code,
        [
            ("valid", 3),
            ("missing", 2),
            ("malformed", 2),
            ("not_found", 2),
            ("disabled", 1),
            ("revoked", 1),
            ("expired", 0),
            ("insufficient_scope", 1),
        ]
    );
    assert_eq!(stats.outcome(Outcome::Valid), 3);
    assert_eq!(stats.verifications(), 12);
    assert_eq!(stats.verify_errors, 0);
}

fn an_invalid_required_scope_is_a_verify_error_not_an_outcome() {
    let t = open_new_with(quiet());
    let good = t.store.create(NewKey::new("good")).unwrap();
    let refused = t.store.verify(good.key(), &["not a scope"]).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
    let stats = t.store.stats();
    assert_eq!(stats.verify_errors, 1);
    assert_eq!(stats.verifications(), 0);
    assert_eq!((stats.cache_hits, stats.cache_misses), (0, 0));
}

fn a_first_lookup_misses_and_a_second_hits() {
    let t = open_new_with(quiet());
    let store = &t.store;
    let good = store.create(NewKey::new("good")).unwrap();
    let unknown = unknown_key(store);
    let hits_misses = || {
        let s = store.stats();
        (s.cache_hits, s.cache_misses)
    };
    // A wrong secret first: the head is read (a miss) and cached.
    store.verify(&wrong_secret(good.key()), &[]).unwrap();
    assert_eq!(hits_misses(), (0, 1));
    // The first match of a cached key reads its whole record: a miss again.
    assert!(store.verify(good.key(), &[]).unwrap().is_valid());
    assert_eq!(hits_misses(), (0, 2));
    // From then on the cache answers, right secret or wrong.
    assert!(store.verify(good.key(), &[]).unwrap().is_valid());
    store.verify(&wrong_secret(good.key()), &[]).unwrap();
    assert_eq!(hits_misses(), (2, 2));
    // An unknown id: a miss, then remembered as absent.
    assert_eq!(
        store.verify(&unknown, &[]).unwrap().outcome(),
        Outcome::NotFound
    );
    assert_eq!(hits_misses(), (2, 3));
    assert_eq!(
        store.verify(&unknown, &[]).unwrap().outcome(),
        Outcome::NotFound
    );
    assert_eq!(hits_misses(), (3, 3));
    // Nothing that never reaches the cache counts either way.
    store.verify("", &[]).unwrap();
    store.verify("ks_typo", &[]).unwrap();
    store.verify_header("Basic abc", &[]).unwrap();
    assert_eq!(hits_misses(), (3, 3));
    // A key with another prefix is malformed before any lookup.
    let other = good.key().replacen("ks_", "zz_", 1);
    assert_eq!(
        store.verify(&other, &[]).unwrap().outcome(),
        Outcome::Malformed
    );
    assert_eq!(hits_misses(), (3, 3));
}

fn without_a_record_cache_every_lookup_misses() {
    let t = open_new_with(quiet().record_cache_entries(0));
    let good = t.store.create(NewKey::new("good")).unwrap();
    for _ in 0..3 {
        assert!(t.store.verify(good.key(), &[]).unwrap().is_valid());
    }
    let stats = t.store.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses), (0, 3));
    assert_eq!(stats.cached_keys, 0);
}

fn cached_keys_count_keys_not_unknown_ids() {
    let t = open_new_with(quiet());
    let store = &t.store;
    assert_eq!(store.stats().cached_keys, 0);
    let a = store.create(NewKey::new("a")).unwrap();
    let b = store.create(NewKey::new("b")).unwrap();
    let unknown = unknown_key(store);
    store.verify(a.key(), &[]).unwrap();
    store.verify(b.key(), &[]).unwrap();
    store.verify(&unknown, &[]).unwrap();
    assert_eq!(store.stats().cached_keys, 2);
    // Deleting a key evicts it at this handle's next verify; its id is then cached as absent.
    store.delete(a.info().id()).unwrap();
    assert_eq!(
        store.verify(a.key(), &[]).unwrap().outcome(),
        Outcome::NotFound
    );
    assert_eq!(store.stats().cached_keys, 1);
}

fn usage_pending_and_flushes() {
    let t = open_new_with(quiet());
    let store = &t.store;
    let good = store.create(NewKey::new("good")).unwrap();
    for _ in 0..3 {
        store.verify(good.key(), &[]).unwrap();
    }
    // Refused verifications are not uses.
    store.verify(&wrong_secret(good.key()), &[]).unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.usage_pending, stats.flushes, stats.flush_failures),
        (3, 0, 0)
    );
    store.flush().unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.usage_pending, stats.flushes, stats.flush_failures),
        (0, 1, 0)
    );
    // Nothing pending: nothing written, nothing counted.
    store.flush().unwrap();
    assert_eq!(store.stats().flushes, 1);
    store.verify(good.key(), &[]).unwrap();
    assert_eq!(store.stats().usage_pending, 1);
    // `usage` flushes first.
    let now = std::time::SystemTime::now();
    store.usage(good.info().id(), now, now).unwrap();
    let stats = store.stats();
    assert_eq!((stats.usage_pending, stats.flushes), (0, 2));
}

fn refreshes_and_their_age() {
    let t = open_new_with(quiet());
    let store = &t.store;
    // The read made while opening is not a refresh.
    let stats = store.stats();
    assert_eq!((stats.refreshes, stats.refresh_failures), (0, 0));
    assert_eq!(stats.last_refresh_age, None);
    // A write through this handle makes its next verify read the feed, once.
    let good = store.create(NewKey::new("good")).unwrap();
    assert_eq!(store.stats().refreshes, 0);
    store.verify(good.key(), &[]).unwrap();
    store.verify(good.key(), &[]).unwrap();
    let stats = store.stats();
    assert_eq!((stats.refreshes, stats.refresh_failures), (1, 0));
    let age = stats.last_refresh_age.expect("refreshed once");
    assert!(age < Duration::from_secs(3600), "{age:?}");
    // The age grows while nothing refreshes (`>=`: the clock may not have ticked).
    assert!(store.stats().last_refresh_age.unwrap() >= age);

    // A zero interval reads the feed on every verify.
    let eager = t.open_another(common::options().refresh_interval(Duration::ZERO));
    for _ in 0..4 {
        eager.verify(good.key(), &[]).unwrap();
    }
    assert_eq!(eager.stats().refreshes, 4);
}

fn counters_belong_to_one_handle() {
    let t = open_new_with(quiet());
    let good = t.store.create(NewKey::new("good")).unwrap();
    t.store.verify(good.key(), &[]).unwrap();
    let other = t.open_another(quiet());
    let fresh = other.stats();
    assert_eq!(fresh.verifications(), 0);
    assert_eq!(
        (fresh.cache_hits, fresh.cache_misses, fresh.usage_pending),
        (0, 0, 0)
    );
    assert_eq!(t.store.stats().verifications(), 1);
}

/// Many threads verifying at once lose no count (the counters are striped per thread).
fn concurrent_verifications_are_all_counted() {
    const THREADS: usize = 4;
    const EACH: u64 = 500;
    let t = open_new_with(quiet());
    let good = t.store.create(NewKey::new("good")).unwrap();
    std::thread::scope(|scope| {
        for i in 0..THREADS {
            let store = &t.store;
            let key = good.key();
            scope.spawn(move || {
                for _ in 0..EACH {
                    if i % 2 == 0 {
                        assert!(store.verify(key, &[]).unwrap().is_valid());
                    } else {
                        store.verify("ks_typo", &[]).unwrap();
                    }
                }
            });
        }
    });
    let stats = t.store.stats();
    let half = EACH * THREADS as u64 / 2;
    assert_eq!(stats.outcome(Outcome::Valid), half);
    assert_eq!(stats.outcome(Outcome::Malformed), half);
    assert_eq!(stats.cache_hits + stats.cache_misses, half);
    assert_eq!(stats.usage_pending, half);
}

every_backend!(
    outcomes_counted_by_code,
    an_invalid_required_scope_is_a_verify_error_not_an_outcome,
    a_first_lookup_misses_and_a_second_hits,
    without_a_record_cache_every_lookup_misses,
    cached_keys_count_keys_not_unknown_ids,
    usage_pending_and_flushes,
    refreshes_and_their_age,
    counters_belong_to_one_handle,
    concurrent_verifications_are_all_counted,
);

/// The in-memory backend, made to fail usage writes, change-feed reads or point lookups on
/// demand (as a database that went away would: `StoreUnavailable`).
#[derive(Default)]
struct Failing {
    inner: MemoryBackend,
    usage: AtomicBool,
    feed: AtomicBool,
    lookups: AtomicBool,
    /// `add_usage` waits while this is set, and raises `stalled` when it starts waiting.
    stall: AtomicBool,
    stalled: AtomicBool,
}

fn gone(what: &str) -> Error {
    Error::StoreUnavailable(format!("test: {what} fails"))
}

impl Backend for Failing {
    fn inspect(&self) -> Result<Option<Meta>> {
        self.inner.inspect()
    }
    fn open(&self, initial: &Meta, create: bool) -> Result<Meta> {
        self.inner.open(initial, create)
    }
    fn check_integrity(&self) -> Result<bool> {
        self.inner.check_integrity()
    }
    fn changes_since(&self, since: Option<u64>) -> Result<Changes> {
        if self.feed.load(Ordering::SeqCst) {
            return Err(gone("the change feed"));
        }
        self.inner.changes_since(since)
    }
    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        if self.lookups.load(Ordering::SeqCst) {
            return Err(gone("a lookup"));
        }
        self.inner.key_head(id, head)
    }
    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        if self.lookups.load(Ordering::SeqCst) {
            return Err(gone("a lookup"));
        }
        self.inner.key(id)
    }
    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        self.inner.usage_total(id)
    }
    fn read(&self) -> Result<Box<dyn Read + '_>> {
        self.inner.read()
    }
    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<u64> {
        self.inner.write(body)
    }
    fn add_usage(&self, batch: &[UsageAdd]) -> Result<()> {
        if self.stall.load(Ordering::SeqCst) {
            self.stalled.store(true, Ordering::SeqCst);
            while self.stall.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if self.usage.load(Ordering::SeqCst) {
            return Err(gone("add_usage"));
        }
        self.inner.add_usage(batch)
    }
}

#[test]
fn a_failed_flush_is_counted_and_its_counts_stay_pending() {
    let backend = Arc::new(Failing::default());
    let store = KeyStore::open_with(Arc::clone(&backend), quiet()).unwrap();
    let good = store.create(NewKey::new("good")).unwrap();
    store.verify(good.key(), &[]).unwrap();
    store.verify(good.key(), &[]).unwrap();
    backend.usage.store(true, Ordering::SeqCst);
    assert_eq!(store.flush().unwrap_err().kind(), ErrorKind::Unavailable);
    let stats = store.stats();
    assert_eq!(
        (stats.flushes, stats.flush_failures, stats.usage_pending),
        (0, 1, 2)
    );
    backend.usage.store(false, Ordering::SeqCst);
    store.flush().unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.flushes, stats.flush_failures, stats.usage_pending),
        (1, 1, 0)
    );
}

/// A flush under way still owes its counts: `usage_pending` does not dip to 0 while the
/// backend takes its time (on PostgreSQL, up to a connect timeout when the server is down),
/// which would hide a growing backlog from an alert on it (docs/metrics.md).
#[test]
fn a_flush_under_way_keeps_its_counts_pending() {
    let backend = Arc::new(Failing::default());
    let store = KeyStore::open_with(Arc::clone(&backend), quiet()).unwrap();
    let good = store.create(NewKey::new("good")).unwrap();
    store.verify(good.key(), &[]).unwrap();
    store.verify(good.key(), &[]).unwrap();
    backend.stall.store(true, Ordering::SeqCst);
    /// Lets the stalled flush go also when an assertion below fails (else the scope would
    /// wait for it forever).
    struct Release<'a>(&'a AtomicBool);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    std::thread::scope(|scope| {
        let flushing = scope.spawn(|| store.flush());
        let _release = Release(&backend.stall);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !backend.stalled.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the flush never reached add_usage"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // The batch is with the backend now, neither written nor put back.
        store.verify(good.key(), &[]).unwrap();
        assert_eq!(store.stats().usage_pending, 3);
        backend.stall.store(false, Ordering::SeqCst);
        flushing.join().unwrap().unwrap();
    });
    let stats = store.stats();
    assert_eq!((stats.usage_pending, stats.flushes), (1, 1));
    store.flush().unwrap();
    assert_eq!(store.stats().usage_pending, 0);
}

#[test]
fn the_background_flusher_is_counted_too() {
    let backend = Arc::new(Failing::default());
    let options = quiet().flush_interval(Duration::from_millis(20));
    let store = KeyStore::open_with(Arc::clone(&backend), options).unwrap();
    let good = store.create(NewKey::new("good")).unwrap();
    backend.usage.store(true, Ordering::SeqCst);
    store.verify(good.key(), &[]).unwrap();
    let waited = |done: &dyn Fn(&Stats) -> bool| {
        // A hang guard only: the flusher runs every 20 ms.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&store.stats()) {
            assert!(Instant::now() < deadline, "{:?}", store.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // The failed flush's count is still pending (also while the next attempt holds it:
    // a_flush_under_way_keeps_its_counts_pending); one that lost the count never shows 1.
    waited(&|s| s.flush_failures >= 1 && s.usage_pending == 1);
    backend.usage.store(false, Ordering::SeqCst);
    waited(&|s| s.flushes == 1);
    assert_eq!(store.stats().usage_pending, 0);
}

#[test]
fn an_unreachable_backend_counts_refresh_failures_and_verify_errors() {
    let backend = Arc::new(Failing::default());
    let options = common::options()
        .refresh_interval(Duration::ZERO)
        .max_staleness(Duration::from_secs(3600));
    let store = KeyStore::open_with(Arc::clone(&backend), options).unwrap();
    let good = store.create(NewKey::new("good")).unwrap();
    let unknown = unknown_key(&store);
    assert!(store.verify(good.key(), &[]).unwrap().is_valid());
    let before = store.stats();
    assert_eq!(before.refresh_failures, 0);
    assert!(before.last_refresh_age.is_some());

    backend.feed.store(true, Ordering::SeqCst);
    backend.lookups.store(true, Ordering::SeqCst);
    // A cached key keeps verifying (within max_staleness): a failed refresh, then a hit.
    assert!(store.verify(good.key(), &[]).unwrap().is_valid());
    let stats = store.stats();
    assert_eq!(stats.refreshes, before.refreshes + 1);
    assert_eq!(stats.refresh_failures, 1);
    assert_eq!(stats.cache_hits, before.cache_hits + 1);
    // An id not cached cannot be looked up: an error, not an outcome, and a miss.
    let failed = store.verify(&unknown, &[]).unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Unavailable);
    let stats = store.stats();
    assert_eq!(stats.verify_errors, 1);
    assert_eq!(stats.cache_misses, before.cache_misses + 1);
    assert_eq!(stats.verifications(), before.verifications() + 1);
    assert_eq!(stats.refresh_failures, 2);
    // The last successful refresh is still the one before the failures.
    assert!(stats.last_refresh_age.unwrap() >= before.last_refresh_age.unwrap());

    backend.feed.store(false, Ordering::SeqCst);
    backend.lookups.store(false, Ordering::SeqCst);
    assert_eq!(
        store.verify(&unknown, &[]).unwrap().outcome(),
        Outcome::NotFound
    );
    let stats = store.stats();
    assert_eq!(stats.refresh_failures, 2);
    assert_eq!(stats.refreshes, before.refreshes + 3);
}

#[test]
fn debug_of_stats_names_no_key() {
    let t = open_new_with(quiet());
    let good = t.store.create(NewKey::new("good")).unwrap();
    t.store.verify(good.key(), &[]).unwrap();
    let shown = format!("{:?}", t.store.stats());
    assert!(!shown.contains(good.key()));
    assert!(shown.contains("cache_misses: 1"), "{shown}");
}

/// More threads than counter stripes (16): threads share stripes and still lose no count.
#[test]
fn more_threads_than_stripes_lose_no_count() {
    const THREADS: u64 = 40;
    const EACH: u64 = 200;
    let store = KeyStore::open("memory:", quiet()).unwrap();
    let good = store.create(NewKey::new("good")).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..EACH {
                    assert!(store.verify(good.key(), &[]).unwrap().is_valid());
                }
            });
        }
    });
    let stats = store.stats();
    assert_eq!(stats.outcome(Outcome::Valid), THREADS * EACH);
    assert_eq!(stats.cache_hits + stats.cache_misses, THREADS * EACH);
}
