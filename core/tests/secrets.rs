//! Plaintext keys exist only in what create/rotate return: never on disk, in Debug or errors.

mod common;

use std::time::Duration;

use common::open_new;
use keystead::{NewKey, Options};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_plaintext_key_or_secret_in_the_file() {
    let t = open_new();
    let mut keys = Vec::new();
    for i in 0..100 {
        keys.push(t.store.create(NewKey::new(format!("key-{i}"))).unwrap());
    }
    let first: Vec<_> = keys.iter().take(20).map(|k| k.info().id()).collect();
    for id in first {
        keys.push(t.store.rotate(id, Duration::from_secs(60)).unwrap());
    }
    for k in keys.iter().take(50) {
        assert!(t.store.verify(k.key(), &[]).unwrap().is_valid());
    }
    t.store.flush().unwrap();
    let path = t.path();
    let common::TempStore { dir, store, .. } = t;
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 10_000, "the file holds the records");
    // Any 16-character run of any secret (the full key contains it) anywhere in the file.
    let mut runs = std::collections::HashSet::new();
    for k in &keys {
        let key = k.key();
        let secret = &key.as_bytes()[key.len() - 49..key.len() - 6];
        runs.extend(secret.windows(16));
        // The names are stored in the clear, which shows the scan sees the records.
        assert!(contains(&bytes, k.info().name().as_bytes()));
    }
    assert!(
        bytes.windows(16).all(|w| !runs.contains(w)),
        "part of a secret is on disk"
    );
    drop(dir);
}

#[test]
fn debug_and_errors_never_show_the_key() {
    let t = open_new();
    let created = t.store.create(NewKey::new("x")).unwrap();
    let key = created.key().to_owned();
    let secret = &key[key.len() - 49..key.len() - 6];
    let debug = format!("{created:?}");
    assert!(!debug.contains(secret), "{debug}");
    assert!(debug.contains("redacted"));
    let verification = t.store.verify(&key, &[]).unwrap();
    assert!(!format!("{verification:?}").contains(secret));
    let options = Options::new().pepper(b"super-secret-pepper-0123456789abcdef".to_vec());
    assert!(!format!("{options:?}").contains("super-secret-pepper-0123456789abcdef"));
    // An error about a bad argument echoes at most a short prefix of the value, never a
    // piece of a secret someone pasted into the wrong field.
    let leaks = |err: String| {
        secret
            .as_bytes()
            .windows(6)
            .any(|w| err.as_bytes().windows(6).any(|e| e == w))
    };
    let not_a_scope = format!("{key} ");
    let err = t
        .store
        .verify(&key, &[&not_a_scope])
        .unwrap_err()
        .to_string();
    assert!(!leaks(err.clone()), "{err}");
    let err = t
        .store
        .create(NewKey::new("x").scopes([not_a_scope.clone()]))
        .unwrap_err()
        .to_string();
    assert!(!leaks(err.clone()), "{err}");
    let err = t
        .store
        .create(NewKey::new("x").metadata([(not_a_scope.clone(), "v")]))
        .unwrap_err()
        .to_string();
    assert!(!leaks(err.clone()), "{err}");
}
