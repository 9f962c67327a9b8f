//! `close()` through `&self`: later calls fail with `Closed`, closing twice is fine, the file
//! is released, and calls racing with close either complete or fail cleanly.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{new_key, open_temp, quiet};
use keystead_ffi::{check_integrity, KeyStore, KeysteadError, ListFilter};

fn is_closed_error<T: std::fmt::Debug>(result: Result<T, KeysteadError>) -> bool {
    matches!(result, Err(KeysteadError::Closed { .. }))
}

#[test]
fn every_call_after_close_fails_with_closed() {
    let (_dir, path, store) = open_temp(quiet());
    let created = store.create(new_key("k")).unwrap();
    let id = created.info.id.clone();
    assert!(!store.is_closed());
    store.close().unwrap();
    assert!(store.is_closed());

    let now = SystemTime::now();
    assert!(is_closed_error(store.prefix()));
    assert!(is_closed_error(store.create(new_key("x"))));
    assert!(is_closed_error(store.get(id.clone())));
    assert!(is_closed_error(store.list(ListFilter::default())));
    assert!(is_closed_error(store.rename(id.clone(), "y".into())));
    assert!(is_closed_error(
        store.set_metadata(id.clone(), HashMap::new())
    ));
    assert!(is_closed_error(store.set_scopes(id.clone(), vec![])));
    assert!(is_closed_error(store.set_expiry(id.clone(), None)));
    assert!(is_closed_error(store.disable(id.clone())));
    assert!(is_closed_error(store.enable(id.clone())));
    assert!(is_closed_error(store.revoke(id.clone())));
    assert!(is_closed_error(store.rotate(id.clone(), 0)));
    assert!(is_closed_error(store.delete(id.clone())));
    assert!(is_closed_error(store.verify(created.key.clone(), vec![])));
    assert!(is_closed_error(
        store.verify_header(format!("Bearer {}", created.key), vec![])
    ));
    assert!(is_closed_error(store.usage(
        id.clone(),
        common::ms(now),
        common::ms(now)
    )));
    assert!(is_closed_error(store.audit(None, 10)));
    assert!(is_closed_error(store.flush()));
    // Closed wins over argument errors.
    assert!(is_closed_error(store.get("not-an-id".into())));
    assert!(is_closed_error(store.list(ListFilter {
        status: Some("sleeping".into()),
        ..ListFilter::default()
    })));
    let message = store.flush().unwrap_err().to_string();
    assert_eq!(message, "the key store is closed");

    // Closing again is allowed.
    store.close().unwrap();
    assert_eq!(format!("{store:?}"), "KeyStore(closed)");

    // The file is released: it can be checked and opened again, and the key is still there.
    assert!(check_integrity(path.clone()).unwrap());
    let again = KeyStore::open(path, quiet()).unwrap();
    assert!(again.verify(created.key, vec![]).unwrap().ok);
    again.close().unwrap();
}

#[test]
fn close_flushes_usage() {
    let (_dir, path, store) = open_temp(quiet());
    let created = store.create(new_key("k")).unwrap();
    for _ in 0..3 {
        assert!(store.verify(created.key.clone(), vec![]).unwrap().ok);
    }
    store.close().unwrap();
    let again = KeyStore::open(path, quiet()).unwrap();
    assert_eq!(again.get(created.info.id).unwrap().unwrap().use_count, 3);
}

#[test]
fn dropping_without_close_releases_the_file() {
    let (_dir, path, store) = open_temp(quiet());
    let created = store.create(new_key("k")).unwrap();
    assert!(store.verify(created.key.clone(), vec![]).unwrap().ok);
    drop(store);
    let again = KeyStore::open(path, quiet()).unwrap();
    assert_eq!(again.get(created.info.id).unwrap().unwrap().use_count, 1);
}

#[test]
fn calls_racing_with_close_complete_or_fail_cleanly() {
    let (_dir, _path, store) = open_temp(quiet());
    let store = Arc::new(store);
    let created = store.create(new_key("k")).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let key = created.key.clone();
            std::thread::spawn(move || {
                let mut closed = 0;
                for _ in 0..200 {
                    match store.verify(key.clone(), vec![]) {
                        Ok(check) => assert!(check.ok),
                        Err(KeysteadError::Closed { .. }) => closed += 1,
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
                closed
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(5));
    store.close().unwrap();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(store.is_closed());
    assert!(is_closed_error(store.verify(created.key.clone(), vec![])));
}
