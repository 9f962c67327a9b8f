//! The read path is driven by the backend's change feed: a change evicts only the keys it
//! names, a feed that cannot name them ("everything") drops the whole cache, and a backend
//! supplied by the caller (`KeyStore::open_with`) gets exactly the calls the contract in
//! `keystead::backend` describes. The backend here wraps the in-memory one and counts point
//! lookups, so what the cache kept is observable.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keystead::backend::{
    Backend, Changed, Changes, FileBackend, FileOptions, MemoryBackend, Meta, Read, Txn, UsageAdd,
    UsageTotal,
};
use keystead::{KeyStore, NewKey, Options, Outcome, Result};

/// The in-memory backend, counting head lookups (cache misses), and able to pretend its
/// change log was trimmed.
#[derive(Default)]
struct Counting {
    inner: MemoryBackend,
    head_lookups: AtomicUsize,
    feed_reads: AtomicUsize,
    forget_changes: AtomicBool,
}

impl Backend for Counting {
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
        self.feed_reads.fetch_add(1, Ordering::SeqCst);
        let mut changes = self.inner.changes_since(since)?;
        if self.forget_changes.load(Ordering::SeqCst) && changes.changed != Changed::Ids(vec![]) {
            changes.changed = Changed::Everything;
        }
        Ok(changes)
    }
    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        self.head_lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.key_head(id, head)
    }
    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
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
        self.inner.add_usage(batch)
    }
}

fn options() -> Options {
    common::options().refresh_interval(Duration::ZERO)
}

/// Verifies each key once.
fn verify_all(store: &KeyStore, keys: &[String]) -> Vec<Outcome> {
    keys.iter()
        .map(|k| store.verify(k, &[]).unwrap().outcome())
        .collect()
}

#[test]
fn a_change_on_another_handle_evicts_only_the_keys_it_names() {
    let backend = Arc::new(Counting::default());
    let writer = KeyStore::open_with(Arc::clone(&backend), options()).unwrap();
    let created = writer
        .create_many((0..20).map(|i| NewKey::new(format!("k{i}"))).collect())
        .unwrap();
    let keys: Vec<String> = created.iter().map(|c| c.key().to_owned()).collect();
    let reader = KeyStore::open_with(Arc::clone(&backend), options()).unwrap();
    // Warm the reader's cache: one miss per key.
    let before = backend.head_lookups.load(Ordering::SeqCst);
    assert!(verify_all(&reader, &keys)
        .iter()
        .all(|o| *o == Outcome::Valid));
    assert_eq!(backend.head_lookups.load(Ordering::SeqCst) - before, 20);
    // Warm: no lookups at all.
    let before = backend.head_lookups.load(Ordering::SeqCst);
    verify_all(&reader, &keys);
    assert_eq!(backend.head_lookups.load(Ordering::SeqCst) - before, 0);

    // Another handle revokes two keys: the reader (refresh interval 0) sees both at once and
    // looks up only those two again.
    writer.revoke(created[3].info().id()).unwrap();
    writer.revoke(created[11].info().id()).unwrap();
    let before = backend.head_lookups.load(Ordering::SeqCst);
    let outcomes = verify_all(&reader, &keys);
    assert_eq!(backend.head_lookups.load(Ordering::SeqCst) - before, 2);
    for (i, outcome) in outcomes.iter().enumerate() {
        let expected = if i == 3 || i == 11 {
            Outcome::Revoked
        } else {
            Outcome::Valid
        };
        assert_eq!(*outcome, expected, "key {i}");
    }

    // A key created after an unknown id was looked up (and cached as absent) is found: the
    // create names the id, so the negative entry goes too.
    let late = writer.create(NewKey::new("late")).unwrap();
    assert_eq!(
        reader.verify(late.key(), &[]).unwrap().outcome(),
        Outcome::Valid
    );
}

#[test]
fn a_feed_that_cannot_name_the_changes_drops_the_whole_cache() {
    let backend = Arc::new(Counting::default());
    let writer = KeyStore::open_with(Arc::clone(&backend), options()).unwrap();
    let created = writer
        .create_many((0..10).map(|i| NewKey::new(format!("k{i}"))).collect())
        .unwrap();
    let keys: Vec<String> = created.iter().map(|c| c.key().to_owned()).collect();
    let reader = KeyStore::open_with(Arc::clone(&backend), options()).unwrap();
    verify_all(&reader, &keys);
    backend.forget_changes.store(true, Ordering::SeqCst);
    writer.disable(created[0].info().id()).unwrap();
    let before = backend.head_lookups.load(Ordering::SeqCst);
    let outcomes = verify_all(&reader, &keys);
    assert_eq!(backend.head_lookups.load(Ordering::SeqCst) - before, 10);
    assert_eq!(outcomes[0], Outcome::Disabled);
    assert!(outcomes[1..].iter().all(|o| *o == Outcome::Valid));
}

#[test]
fn a_cached_key_costs_no_backend_call_within_the_refresh_interval() {
    let backend = Arc::new(Counting::default());
    let store = KeyStore::open_with(
        Arc::clone(&backend),
        common::options().refresh_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    assert!(store.verify(created.key(), &[]).unwrap().is_valid());
    let feeds = backend.feed_reads.load(Ordering::SeqCst);
    let heads = backend.head_lookups.load(Ordering::SeqCst);
    for _ in 0..1000 {
        assert!(store.verify(created.key(), &[]).unwrap().is_valid());
    }
    assert_eq!(backend.feed_reads.load(Ordering::SeqCst), feeds);
    assert_eq!(backend.head_lookups.load(Ordering::SeqCst), heads);
}

/// The file backend logs each write's ids; a write that bumps the generation without a log
/// entry (as builds before the change log do) makes readers drop everything, so they never
/// keep a key that such a write changed.
#[test]
fn a_file_written_without_a_change_log_entry_drops_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let store = KeyStore::open(&path, options()).unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    let reader = KeyStore::open(&path, options()).unwrap();
    assert!(reader.verify(created.key(), &[]).unwrap().is_valid());

    let backend = FileBackend::new(&path, FileOptions::new());
    let meta = backend.inspect().unwrap().unwrap();
    backend.open(&meta, false).unwrap();
    let before = backend.changes_since(None).unwrap().generation;
    // An "older build" deletes the key and bumps the generation by hand, logging nothing.
    {
        let db = redb::Database::builder()
            .set_cache_size(1 << 20)
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .open(&path)
            .unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut keys = txn
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("keys"))
                .unwrap();
            keys.remove(created.info().id().as_u64()).unwrap();
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("generation", (before + 1).to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let changes = backend.changes_since(Some(before)).unwrap();
    assert_eq!(changes.generation, before + 1);
    assert_eq!(changes.changed, Changed::Everything);
    assert_eq!(
        reader.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::NotFound
    );
}

/// The file backend's own log names exactly the ids a write changed.
#[test]
fn the_file_backend_logs_the_ids_each_write_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let store = KeyStore::open(&path, options()).unwrap();
    let a = store.create(NewKey::new("a")).unwrap();
    let b = store.create(NewKey::new("b")).unwrap();
    let backend = FileBackend::new(&path, FileOptions::new());
    backend.open(&Meta::new(), false).unwrap();
    let start = backend.changes_since(None).unwrap().generation;
    store.revoke(a.info().id()).unwrap();
    store.delete(b.info().id()).unwrap();
    // A no-op change writes nothing and takes no generation.
    store.revoke(a.info().id()).unwrap();
    let changes = backend.changes_since(Some(start)).unwrap();
    assert_eq!(changes.generation, start + 2);
    assert_eq!(
        changes.changed,
        Changed::Ids(vec![a.info().id().as_u64(), b.info().id().as_u64()])
    );
    // Usage flushes are not changes.
    assert!(store.verify(a.key(), &[]).is_ok());
    store.flush().unwrap();
    assert_eq!(
        backend.changes_since(Some(start + 2)).unwrap().changed,
        Changed::Ids(vec![])
    );
}
