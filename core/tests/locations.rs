//! `KeyStore::open` by location: a file path (the embedded default), `file://PATH`, or
//! `memory:`; anything else that looks like a URL is a typed error naming what is supported.

mod common;

use keystead::{Error, KeyStore, NewKey, Options, Outcome};

fn invalid_message(location: &str) -> String {
    match KeyStore::open(location, common::options()) {
        Err(Error::InvalidArgument(message)) => message,
        other => panic!("{location}: expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn memory_stores_are_separate_and_complete() {
    let a = KeyStore::open("memory:", common::options().actor("tests")).unwrap();
    let b = KeyStore::open("memory:", common::options()).unwrap();
    let created = a
        .create(NewKey::new("k").scopes(["chat:completions"]))
        .unwrap();
    assert!(a
        .verify(created.key(), &["chat:completions"])
        .unwrap()
        .is_valid());
    // Each open is a store of its own.
    assert_eq!(
        b.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::NotFound
    );
    assert!(b.get(created.info().id()).unwrap().is_none());
    // Usage and audit work as on a file.
    a.flush().unwrap();
    assert_eq!(a.get(created.info().id()).unwrap().unwrap().use_count(), 1);
    a.revoke(created.info().id()).unwrap();
    let audit = a.audit(None, 10).unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].actor.as_deref(), Some("tests"));
    assert_eq!(
        a.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    a.close().unwrap();
}

#[test]
fn memory_stores_check_prefix_and_create_nothing_on_disk() {
    let before: Vec<_> = std::fs::read_dir(".")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let store = KeyStore::open("memory:", Options::new().prefix("hub")).unwrap();
    assert_eq!(store.prefix(), "hub");
    assert!(store
        .create(NewKey::new("k"))
        .unwrap()
        .key()
        .starts_with("hub_"));
    drop(store);
    let after: Vec<_> = std::fs::read_dir(".")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        before, after,
        "memory: wrote a file in the working directory"
    );
    assert!(matches!(
        KeyStore::check_integrity("memory:"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn file_urls_name_the_same_file_as_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let url = format!("file://{}", path.display());
    let store = KeyStore::open(&url, common::options()).unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    drop(store);
    let again = KeyStore::open(&path, common::options()).unwrap();
    assert!(again.verify(created.key(), &[]).unwrap().is_valid());
    assert!(KeyStore::check_integrity(&url).unwrap());
    assert!(invalid_message("file://").contains("names no file"));
}

#[test]
fn unknown_schemes_are_typed_errors_naming_the_supported_ones() {
    for location in ["redis://localhost/0", "S3://bucket/key", "sqlite+wal://x"] {
        let message = invalid_message(location);
        assert!(
            message.contains("unknown store location scheme"),
            "{message}"
        );
        assert!(message.contains("memory:"), "{message}");
        assert!(message.contains("file://"), "{message}");
    }
    // PostgreSQL is never taken as a file name: without feature `postgres` it is named as
    // not supported by this build; with it, a server that cannot be reached is `Unavailable`.
    for location in [
        "postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
        "postgresql://u:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
    ] {
        #[cfg(not(feature = "postgres"))]
        let message = {
            let message = invalid_message(location);
            assert!(message.contains("no PostgreSQL support"), "{message}");
            message
        };
        #[cfg(feature = "postgres")]
        let message = match KeyStore::open(location, common::options()) {
            Err(e @ Error::StoreUnavailable(_)) => format!("{e} {e:?}"),
            other => panic!("{location}: expected StoreUnavailable, got {other:?}"),
        };
        assert!(
            !message.contains("hunter2"),
            "the password is never echoed: {message}"
        );
    }
    assert!(!std::path::Path::new("postgres:").exists());
    assert!(!std::path::Path::new("postgresql:").exists());
}

#[test]
fn paths_that_only_look_like_urls_are_files() {
    // No `scheme://` (or an invalid scheme) is a plain path.
    let dir = tempfile::tempdir().unwrap();
    for name in ["memory", "memory:x", "memory:"] {
        // Joined to a directory, even `memory:` is a path (only the bare string is special).
        let path = dir.path().join(name);
        let store = KeyStore::open(&path, common::options()).unwrap();
        store.create(NewKey::new("k")).unwrap();
        drop(store);
        assert!(path.exists(), "{name}");
    }
}
