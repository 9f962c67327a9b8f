//! Every core error maps to the right `KeysteadError` case, with the core's message.

mod common;

use std::time::{Duration, SystemTime};

use common::{new_key, open_temp, quiet};
use keystead_ffi::{map_error, KeyStore, KeysteadError, ListFilter, OpenOptions};

fn kind(error: &KeysteadError) -> &'static str {
    match error {
        KeysteadError::Store { .. } => "Store",
        KeysteadError::WrongPepper { .. } => "WrongPepper",
        KeysteadError::InvalidArgument { .. } => "InvalidArgument",
        KeysteadError::KeyNotFound { .. } => "KeyNotFound",
        KeysteadError::InvalidState { .. } => "InvalidState",
        KeysteadError::PrefixMismatch { .. } => "PrefixMismatch",
        KeysteadError::UnsupportedVersion { .. } => "UnsupportedVersion",
        KeysteadError::Closed { .. } => "Closed",
        KeysteadError::Unavailable { .. } => "Unavailable",
    }
}

#[test]
fn map_error_covers_every_core_error() {
    use keystead::Error;
    let cases = [
        (Error::InvalidArgument("x".into()), "InvalidArgument"),
        (Error::WrongPepper, "WrongPepper"),
        (
            Error::PrefixMismatch {
                stored: "ks".into(),
                requested: "hub".into(),
            },
            "PrefixMismatch",
        ),
        (
            Error::UnsupportedVersion {
                what: "schema",
                found: 9,
                supported: 1,
            },
            "UnsupportedVersion",
        ),
        (Error::Corrupt("c".into()), "Store"),
        (Error::Locked("l".into()), "Store"),
        (Error::Storage("s".into()), "Store"),
        (Error::Io(std::io::Error::other("disk full")), "Store"),
        (Error::InsecurePermissions { mode: 0o666 }, "Store"),
        (Error::StoreReplaced, "Store"),
        (Error::Closed, "Closed"),
        (
            Error::StoreUnavailable("connection refused".into()),
            "Unavailable",
        ),
    ];
    for (error, expected) in cases {
        let message = error.to_string();
        let mapped = map_error(error);
        assert_eq!(kind(&mapped), expected, "{message}");
        // The message is the core's, and it is what Display shows (and what crosses the FFI).
        assert_eq!(mapped.to_string(), message);
    }
    let from: KeysteadError = keystead::Error::WrongPepper.into();
    assert_eq!(kind(&from), "WrongPepper");
}

#[test]
fn errors_from_the_store() {
    let (_dir, path, store) = open_temp(quiet());

    // InvalidArgument: malformed id, bad name, bad scope, unknown status, past expiry.
    let e = store.get("not-an-id".into()).unwrap_err();
    assert_eq!(kind(&e), "InvalidArgument", "{e}");
    let e = store.create(new_key("")).unwrap_err();
    assert_eq!(kind(&e), "InvalidArgument", "{e}");
    let created = store.create(new_key("k")).unwrap();
    let id = created.info.id.clone();
    let e = store
        .set_scopes(id.clone(), vec!["no spaces".into()])
        .unwrap_err();
    assert_eq!(kind(&e), "InvalidArgument", "{e}");
    let e = store
        .list(ListFilter {
            status: Some("sleeping".into()),
            ..ListFilter::default()
        })
        .unwrap_err();
    assert_eq!(kind(&e), "InvalidArgument", "{e}");
    let e = store
        .set_expiry(
            id.clone(),
            Some(common::ms(SystemTime::now() - Duration::from_secs(1))),
        )
        .unwrap_err();
    assert_eq!(kind(&e), "InvalidArgument", "{e}");
    let e = store
        .verify(created.key.clone(), vec!["bad scope".into()])
        .unwrap_err();
    assert_eq!(kind(&e), "InvalidArgument", "{e}");

    // KeyNotFound: a well-formed id that is not in the store.
    let gone = store.create(new_key("gone")).unwrap().info.id;
    store.delete(gone.clone()).unwrap();
    let e = store.revoke(gone.clone()).unwrap_err();
    assert_eq!(kind(&e), "KeyNotFound", "{e}");
    assert!(e.to_string().contains(&gone));
    assert_eq!(store.get(gone).unwrap(), None);

    // InvalidState: enabling or rotating a revoked key.
    store.revoke(id.clone()).unwrap();
    let e = store.enable(id.clone()).unwrap_err();
    assert_eq!(kind(&e), "InvalidState", "{e}");
    let e = store.rotate(id.clone(), 0).unwrap_err();
    assert_eq!(kind(&e), "InvalidState", "{e}");
    store.close().unwrap();

    // WrongPepper and PrefixMismatch at open.
    let e = KeyStore::open(
        path.clone(),
        OpenOptions {
            pepper: Some(b"not the one, though 32 bytes or more".to_vec()),
            ..quiet()
        },
    )
    .unwrap_err();
    assert_eq!(kind(&e), "WrongPepper", "{e}");
    let e = KeyStore::open(
        path.clone(),
        OpenOptions {
            prefix: Some("hub".into()),
            ..quiet()
        },
    )
    .unwrap_err();
    assert_eq!(kind(&e), "PrefixMismatch", "{e}");
    let e = KeyStore::open(
        path,
        OpenOptions {
            prefix: Some("Not A Prefix".into()),
            ..quiet()
        },
    )
    .unwrap_err();
    assert_eq!(kind(&e), "InvalidArgument", "{e}");
}

#[test]
fn a_file_that_is_not_a_store_is_a_store_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.redb");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = KeyStore::open(path.to_str().unwrap().to_owned(), quiet()).unwrap_err();
    assert_eq!(kind(&e), "Store", "{e}");
}
