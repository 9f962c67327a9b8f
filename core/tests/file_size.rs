//! A handle's own read snapshot must not pin freed pages: bulk imports through a handle that
//! also verifies keep the file compact.

mod common;

use std::time::Duration;

use keystead::{KeyStore, NewKey, Options};

fn bytes_per_key(keys: usize, verify_between_batches: bool, flush_interval: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("size.redb");
    let store = KeyStore::open(&path, Options::new().flush_interval(flush_interval)).unwrap();
    let first = store.create(NewKey::new("first")).unwrap();
    // Takes a read snapshot, as a serving process does.
    assert!(store.verify(first.key(), &[]).unwrap().is_valid());
    let mut made = 1;
    while made < keys {
        let batch = (0..500)
            .map(|i| NewKey::new(format!("bulk-{made}-{i}")))
            .collect();
        made += store.create_many(batch).unwrap().len();
        if verify_between_batches {
            assert!(store.verify(first.key(), &[]).unwrap().is_valid());
        }
    }
    drop(store);
    std::fs::metadata(&path).unwrap().len() as f64 / made as f64
}

#[test]
fn bulk_import_through_a_verifying_handle_stays_compact() {
    // Before snapshots were released after the handle's own writes, the first verify's
    // snapshot pinned every page freed during the import: ~3,300 bytes per key at 1M keys.
    for verify in [false, true] {
        let per_key = bytes_per_key(10_000, verify, Duration::ZERO);
        eprintln!("verify between batches: {verify}: {per_key:.0} bytes per key");
        assert!(
            per_key < 700.0,
            "{per_key:.0} bytes per key (verify between batches: {verify})"
        );
    }
}
