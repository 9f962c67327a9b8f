//! `KeyStore::stats` through the ffi types (what Swift's `store.stats()` returns).

mod common;

use common::{new_key, open_temp, quiet};

#[test]
fn counters_move_and_every_outcome_code_is_present() {
    let (_dir, _path, store) = open_temp(quiet());
    let fresh = store.stats().unwrap();
    assert_eq!(fresh.outcomes.len(), 8);
    assert!(fresh.outcomes.values().all(|n| *n == 0));
    assert_eq!(fresh.last_refresh_age_ms, None);

    let created = store.create(new_key("good")).unwrap();
    store.verify(created.key.clone(), vec![]).unwrap();
    store.verify(created.key.clone(), vec![]).unwrap();
    store
        .verify_header("Bearer nonsense".into(), vec![])
        .unwrap();
    assert!(store
        .verify(created.key.clone(), vec!["not a scope".into()])
        .is_err());

    let stats = store.stats().unwrap();
    assert_eq!(stats.outcomes["valid"], 2);
    assert_eq!(stats.outcomes["malformed"], 1);
    assert_eq!(stats.outcomes["not_found"], 0);
    assert_eq!(stats.verifications, 3);
    assert_eq!(stats.verify_errors, 1);
    assert_eq!((stats.cache_misses, stats.cache_hits), (1, 1));
    assert_eq!(stats.usage_pending, 2);
    assert_eq!(stats.cached_keys, 1);
    assert!(stats.last_refresh_age_ms.is_some());
    store.flush().unwrap();
    let after = store.stats().unwrap();
    assert_eq!((after.flushes, after.usage_pending), (1, 0));
    assert!(!format!("{after:?}").contains(&created.key));

    store.close().unwrap();
    assert!(store.stats().is_err());
}
