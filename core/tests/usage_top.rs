//! `KeyStore::busiest_keys` and the backend read under it, `Read::usage_per_key`, on every
//! backend: ranking (count, then id), the range of days, the totals, deleted keys, usage still
//! pending in the handle, and the trait's provided (per-key) implementation agreeing with each
//! backend's own.
//!
//! Uses on fixed past days are added through a second handle on the same store's backend
//! (`Backend::add_usage`, the call the store's flusher makes), so the days do not depend on
//! when the test runs.

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keystead::backend::{
    Backend, Changes, FileBackend, FileOptions, KeyQuery, Meta, Read, Txn, UsageAdd, UsageTotal,
};
use keystead::{BusiestKeys, ErrorKind, KeyId, KeyStore, NewKey, Result};

use common::{every_backend, TempStore};

/// A fixed UTC day (2024-10-04) and its neighbours.
const DAY: u32 = 20_000;

fn day(d: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(d) * 86_400)
}

/// Another backend handle on the store `t` is on.
fn second_handle(t: &TempStore) -> Arc<dyn Backend> {
    let backend: Arc<dyn Backend> = match (&t.memory, &t.location) {
        (Some(memory), _) => memory.clone(),
        (None, Some(location)) => postgres_handle(location),
        (None, None) => Arc::new(FileBackend::new(t.path(), FileOptions::new())),
    };
    backend.open(&Meta::new(), false).unwrap();
    backend
}

#[cfg(feature = "postgres")]
fn postgres_handle(location: &str) -> Arc<dyn Backend> {
    use keystead::backend::{PostgresBackend, PostgresOptions};
    Arc::new(PostgresBackend::new(location, PostgresOptions::new()).unwrap())
}

#[cfg(not(feature = "postgres"))]
fn postgres_handle(_: &str) -> Arc<dyn Backend> {
    unreachable!("the PostgreSQL tests are compiled only with feature `postgres`")
}

fn add(backend: &dyn Backend, id: KeyId, d: u32, count: u64) {
    backend
        .add_usage(&[UsageAdd {
            id: id.as_u64(),
            day: d,
            count,
            last_used_ms: i64::from(d) * 86_400_000 + 1_000,
        }])
        .unwrap();
}

fn create(store: &KeyStore, name: &str) -> KeyId {
    store.create(NewKey::new(name)).unwrap().info().id()
}

/// (name, count) of each ranked key.
fn ranked(top: &BusiestKeys) -> Vec<(String, u64)> {
    top.keys
        .iter()
        .map(|k| (k.key.name().to_owned(), k.count))
        .collect()
}

/// Four keys with uses on fixed days, some outside the week `DAY - 6 ..= DAY`; ids sorted so
/// that a tie is broken by id.
fn fixture(t: &TempStore) -> (Arc<dyn Backend>, Vec<KeyId>) {
    let mut ids: Vec<KeyId> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| create(&t.store, n))
        .collect();
    ids.sort_by_key(|id| id.as_u64());
    // Rename so that names follow id order: "k0" has the lowest id.
    for (i, id) in ids.iter().enumerate() {
        t.store.rename(*id, &format!("k{i}")).unwrap();
    }
    let backend = second_handle(t);
    // k0: 5 in the week (2 + 3), 100 the day before it starts.
    add(&*backend, ids[0], DAY - 6, 2);
    add(&*backend, ids[0], DAY, 3);
    add(&*backend, ids[0], DAY - 7, 100);
    // k1: 7 in the week.
    add(&*backend, ids[1], DAY - 3, 7);
    // k2: 5 in the week, tied with k0 (k0 has the lower id, so ranks first).
    add(&*backend, ids[2], DAY - 1, 5);
    // k3: only after the week.
    add(&*backend, ids[3], DAY + 1, 9);
    (backend, ids)
}

fn ranks_by_count_then_id_over_the_range() {
    let t = common::open_new();
    let (_backend, ids) = fixture(&t);
    let top = t.store.busiest_keys(day(DAY - 6), day(DAY), 10).unwrap();
    assert_eq!(
        ranked(&top),
        vec![("k1".into(), 7), ("k0".into(), 5), ("k2".into(), 5)]
    );
    assert_eq!((top.total, top.keys_used), (17, 3));
    // The key comes with its all-time figures, as `get` gives them.
    assert_eq!(top.keys[1].key, t.store.get(ids[0]).unwrap().unwrap());
    assert_eq!(top.keys[1].key.use_count(), 105);

    // A limit cuts the list, not the totals.
    let two = t.store.busiest_keys(day(DAY - 6), day(DAY), 2).unwrap();
    assert_eq!(ranked(&two), vec![("k1".into(), 7), ("k0".into(), 5)]);
    assert_eq!((two.total, two.keys_used), (17, 3));
    let none = t.store.busiest_keys(day(DAY - 6), day(DAY), 0).unwrap();
    assert!(none.keys.is_empty());
    assert_eq!((none.total, none.keys_used), (17, 3));

    // Times inside a day count the whole UTC day; one day alone.
    let one = t
        .store
        .busiest_keys(
            day(DAY + 1) + Duration::from_secs(5),
            day(DAY + 1) + Duration::from_secs(86_399),
            10,
        )
        .unwrap();
    assert_eq!(ranked(&one), vec![("k3".into(), 9)]);
    // A range with no uses, and a reversed one.
    let empty = t
        .store
        .busiest_keys(day(DAY + 2), day(DAY + 9), 10)
        .unwrap();
    assert_eq!(empty, BusiestKeys::default());
    let reversed = t.store.busiest_keys(day(DAY), day(DAY - 6), 10).unwrap();
    assert_eq!(reversed, BusiestKeys::default());
}

fn a_deleted_keys_usage_is_gone() {
    let t = common::open_new();
    let (backend, ids) = fixture(&t);
    t.store.delete(ids[1]).unwrap();
    let top = t.store.busiest_keys(day(DAY - 6), day(DAY), 10).unwrap();
    assert_eq!(ranked(&top), vec![("k0".into(), 5), ("k2".into(), 5)]);
    assert_eq!((top.total, top.keys_used), (10, 2));
    // Uses flushed for it after the delete (a flusher that counted them before) are dropped.
    add(&*backend, ids[1], DAY, 50);
    let after = t.store.busiest_keys(day(DAY - 6), day(DAY), 10).unwrap();
    assert_eq!(after, top);
    assert_eq!(
        backend
            .read()
            .unwrap()
            .usage_per_key(DAY - 6, DAY)
            .unwrap()
            .len(),
        2
    );
}

fn pending_uses_of_this_handle_are_included() {
    let t = common::open_new();
    let created = t.store.create(NewKey::new("now")).unwrap();
    // `options()` has no background flusher: the uses are only in this handle's buffer.
    for _ in 0..3 {
        assert!(t.store.verify(created.key(), &[]).unwrap().is_valid());
    }
    let now = SystemTime::now();
    let top = t
        .store
        .busiest_keys(now - Duration::from_secs(86_400), now, 5)
        .unwrap();
    assert_eq!(ranked(&top), vec![("now".into(), 3)]);
    // Another handle sees what this one flushed (busiest_keys flushed it).
    let other = t.open_another(common::options());
    let seen = other
        .busiest_keys(now - Duration::from_secs(86_400), now, 5)
        .unwrap();
    assert_eq!(seen, top);
}

fn a_bound_after_9999_is_refused() {
    let t = common::open_new();
    let late = UNIX_EPOCH + Duration::from_secs(253_402_300_800); // 10000-01-01
    let err = t.store.busiest_keys(day(DAY), late, 5).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = t.store.busiest_keys(late, late, 5).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

fn the_provided_implementation_agrees_with_the_backends_own() {
    let t = common::open_new();
    let (backend, ids) = fixture(&t);
    t.store.delete(ids[3]).unwrap();
    let own = backend.read().unwrap();
    let plain = PlainRead(backend.read().unwrap());
    for (from, to) in [
        (DAY - 6, DAY),
        (DAY - 7, DAY + 1),
        (0, u32::MAX),
        (DAY, DAY),
        (DAY + 1, DAY),
    ] {
        assert_eq!(
            plain.usage_per_key(from, to).unwrap(),
            own.usage_per_key(from, to).unwrap(),
            "days {from}..={to}"
        );
    }
    let mut wanted = vec![
        (ids[0].as_u64(), 105),
        (ids[1].as_u64(), 7),
        (ids[2].as_u64(), 5),
    ];
    wanted.sort_unstable();
    assert_eq!(own.usage_per_key(0, u32::MAX).unwrap(), wanted);

    // And a store on a backend that only has the provided one ranks the same.
    let store = KeyStore::open_with(Plain(Arc::clone(&backend)), common::options()).unwrap();
    assert_eq!(
        store.busiest_keys(day(DAY - 6), day(DAY), 10).unwrap(),
        t.store.busiest_keys(day(DAY - 6), day(DAY), 10).unwrap()
    );
}

every_backend!(
    ranks_by_count_then_id_over_the_range,
    a_deleted_keys_usage_is_gone,
    pending_uses_of_this_handle_are_included,
    a_bound_after_9999_is_refused,
    the_provided_implementation_agrees_with_the_backends_own,
);

/// A third party's backend: forwards everything, but its reads do not override
/// `usage_per_key`, so they get the trait's provided implementation.
struct Plain(Arc<dyn Backend>);

struct PlainRead<'a>(Box<dyn Read + 'a>);

impl Read for PlainRead<'_> {
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.0.meta(name)
    }
    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        self.0.key(id)
    }
    fn list_keys(
        &self,
        query: &KeyQuery<'_>,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.0.list_keys(query, visit)
    }
    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        self.0.usage_total(id)
    }
    fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>> {
        self.0.usage_days(id, from, to)
    }
    fn scan_audit_newest_first(
        &self,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.0.scan_audit_newest_first(visit)
    }
}

impl Backend for Plain {
    fn inspect(&self) -> Result<Option<Meta>> {
        self.0.inspect()
    }
    fn open(&self, initial: &Meta, create: bool) -> Result<Meta> {
        self.0.open(initial, create)
    }
    fn check_integrity(&self) -> Result<bool> {
        self.0.check_integrity()
    }
    fn changes_since(&self, since: Option<u64>) -> Result<Changes> {
        self.0.changes_since(since)
    }
    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        self.0.key_head(id, head)
    }
    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        self.0.key(id)
    }
    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        self.0.usage_total(id)
    }
    fn change_signal(&self) -> Option<Arc<AtomicU64>> {
        self.0.change_signal()
    }
    fn read(&self) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(PlainRead(self.0.read()?)))
    }
    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<u64> {
        self.0.write(body)
    }
    fn add_usage(&self, batch: &[UsageAdd]) -> Result<()> {
        self.0.add_usage(batch)
    }
}
