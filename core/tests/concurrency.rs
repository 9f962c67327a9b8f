//! `KeyStore` is shared between threads; verify runs concurrently with admin writes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use keystead::{KeyStore, NewKey, Outcome};

#[test]
fn key_store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KeyStore>();
    assert_send_sync::<keystead::Verification>();
    assert_send_sync::<keystead::CreatedKey>();
}

common::every_backend!(
    threads_verify_concurrently_and_every_use_is_counted,
    a_revoke_is_seen_by_every_thread_of_the_same_handle_at_once,
);

fn threads_verify_concurrently_and_every_use_is_counted() {
    let t = common::open_new();
    let store = Arc::new(t.store);
    let keys: Vec<String> = (0..8)
        .map(|i| {
            store
                .create(NewKey::new(format!("k{i}")))
                .unwrap()
                .key()
                .to_owned()
        })
        .collect();
    let keys = Arc::new(keys);
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let store = Arc::clone(&store);
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                for i in 0..500 {
                    let key = &keys[(i + n) % keys.len()];
                    assert_eq!(store.verify(key, &[]).unwrap().outcome(), Outcome::Valid);
                }
            })
        })
        .collect();
    // Admin writes while the verifiers run.
    for i in 0..5 {
        store.create(NewKey::new(format!("extra{i}"))).unwrap();
    }
    for th in threads {
        th.join().unwrap();
    }
    store.flush().unwrap();
    let total: u64 = store
        .list(&keystead::ListFilter::new())
        .unwrap()
        .iter()
        .map(|k| k.use_count())
        .sum();
    assert_eq!(total, 4 * 500);
}

fn a_revoke_is_seen_by_every_thread_of_the_same_handle_at_once() {
    let t = common::open_new();
    let store = Arc::new(t.store);
    let created = store.create(NewKey::new("k")).unwrap();
    let key = created.key().to_owned();
    // Warm the read view and cache.
    assert!(store.verify(&key, &[]).unwrap().is_valid());
    store.revoke(created.info().id()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let key = key.clone();
            std::thread::spawn(move || store.verify(&key, &[]).unwrap().outcome())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Outcome::Revoked);
    }
    // Even with a long refresh interval: own writes never wait for it.
    let slow_store =
        common::open_new_with(common::options().refresh_interval(Duration::from_secs(3600)));
    let slow = &slow_store.store;
    let c = slow.create(NewKey::new("k")).unwrap();
    assert!(slow.verify(c.key(), &[]).unwrap().is_valid());
    slow.disable(c.info().id()).unwrap();
    assert_eq!(
        slow.verify(c.key(), &[]).unwrap().outcome(),
        Outcome::Disabled
    );
}
