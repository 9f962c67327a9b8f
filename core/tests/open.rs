//! Opening stores: prefixes, peppers, versions, foreign and damaged files, permissions.

mod common;

use std::time::Duration;

use common::options;
use keystead::{Error, KeyStore, NewKey, Options, Outcome};

/// Compares files by a digest, so a failure does not print megabytes.
fn digest(path: &std::path::Path) -> (usize, u64) {
    let bytes = std::fs::read(path).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (bytes.len(), h)
}

fn temp() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    (dir, path)
}

#[test]
fn prefix_is_chosen_at_creation_and_checked_later() {
    let (_dir, path) = temp();
    let s = KeyStore::open(&path, options().prefix("hub_live")).unwrap();
    let key = s.create(NewKey::new("x")).unwrap();
    assert!(key.key().starts_with("hub_live_"));
    drop(s);
    let s = KeyStore::open(&path, options()).unwrap();
    assert_eq!(s.prefix(), "hub_live");
    assert!(s.verify(key.key(), &[]).unwrap().is_valid());
    drop(s);
    match KeyStore::open(&path, options().prefix("ks")) {
        Err(Error::PrefixMismatch { stored, requested }) => {
            assert_eq!((stored.as_str(), requested.as_str()), ("hub_live", "ks"));
        }
        other => panic!("{other:?}"),
    }
    for bad in ["", "Hub", "9a", "a_", "a-b", "abcdefghijklmnopq"] {
        let (_d, p) = temp();
        assert!(matches!(
            KeyStore::open(&p, options().prefix(bad)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(!p.exists(), "a rejected open must not create a file");
    }
}

#[test]
fn default_prefix_is_ks() {
    let (_dir, path) = temp();
    let s = KeyStore::open(&path, options()).unwrap();
    assert_eq!(s.prefix(), keystead::DEFAULT_PREFIX);
    assert_eq!(s.prefix(), "ks");
}

#[test]
fn wrong_pepper_is_a_clear_error_and_changes_nothing() {
    let (_dir, path) = temp();
    let s = KeyStore::open(
        &path,
        options().pepper(b"pepper-one-0123456789abcdefghijklmn".to_vec()),
    )
    .unwrap();
    let key = s.create(NewKey::new("x")).unwrap();
    drop(s);
    let before = digest(&path);
    for wrong in [Some(b"pepper-two-0123456789abcdefghijklmn".to_vec()), None] {
        let opts = match wrong {
            Some(p) => options().pepper(p),
            None => options(),
        };
        let err = KeyStore::open(&path, opts).unwrap_err();
        assert!(matches!(err, Error::WrongPepper), "{err:?}");
        assert!(err.to_string().contains("pepper"));
    }
    assert_eq!(digest(&path), before, "file untouched");
    let s = KeyStore::open(
        &path,
        options().pepper(b"pepper-one-0123456789abcdefghijklmn".to_vec()),
    )
    .unwrap();
    assert!(s.verify(key.key(), &[]).unwrap().is_valid());
}

#[test]
fn pepper_given_to_a_store_created_without_one_is_wrong() {
    let (_dir, path) = temp();
    drop(KeyStore::open(&path, options()).unwrap());
    assert!(matches!(
        KeyStore::open(
            &path,
            options().pepper(b"late-pepper-0123456789abcdefghijklmn".to_vec())
        ),
        Err(Error::WrongPepper)
    ));
    assert!(matches!(
        KeyStore::open(&path, options().pepper(Vec::new())),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn newer_schema_is_refused_without_touching_the_file() {
    let (_dir, path) = temp();
    drop(KeyStore::open(&path, options()).unwrap());
    {
        let db = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .open(&path)
            .unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
            let mut table = txn.open_table(meta).unwrap();
            table
                .insert("schema_version", 2u32.to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let before = digest(&path);
    let err = KeyStore::open(&path, options()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                what: "schema",
                found: 2,
                supported: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(digest(&path), before);
}

#[test]
fn a_foreign_redb_file_is_not_a_store() {
    let (_dir, path) = temp();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, u64, u64> = redb::TableDefinition::new("other");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = digest(&path);
    let err = KeyStore::open(&path, options()).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert_eq!(digest(&path), before);
}

#[test]
fn garbage_and_truncated_files_are_errors_not_panics() {
    let (_dir, path) = temp();
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = KeyStore::open(&path, options()).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(_) | Error::Storage(_) | Error::Io(_)),
        "{err:?}"
    );
    assert!(std::fs::read(&path).unwrap() == garbage, "file untouched");

    let (_dir2, path2) = temp();
    let s = KeyStore::open(&path2, options()).unwrap();
    for i in 0..20 {
        s.create(NewKey::new(format!("k{i}"))).unwrap();
    }
    drop(s);
    let full = std::fs::read(&path2).unwrap();
    for len in [0usize, 10, 512, 4096, full.len() / 2] {
        std::fs::write(&path2, &full[..len]).unwrap();
        let result = KeyStore::open(&path2, options());
        if len == 0 {
            // An empty file is a new store.
            assert!(result.is_ok());
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::Corrupt(_) | Error::Storage(_) | Error::Io(_)),
                "{len}: {err:?}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn the_file_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = temp();
    drop(KeyStore::open(&path, options()).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
}

#[test]
fn a_missing_directory_is_an_io_error() {
    let (_dir, path) = temp();
    let nested = path.with_file_name("no/such/dir/k.redb");
    assert!(matches!(
        KeyStore::open(&nested, options()),
        Err(Error::Io(_))
    ));
}

#[test]
fn errors_display_without_key_material() {
    let (_dir, path) = temp();
    let s = KeyStore::open(&path, Options::new().flush_interval(Duration::ZERO)).unwrap();
    let created = s.create(NewKey::new("x")).unwrap();
    s.revoke(created.info().id()).unwrap();
    let err = s.enable(created.info().id()).unwrap_err().to_string();
    assert!(err.contains(&created.info().id().to_string()));
    assert!(!err.contains(&created.key()[15..]));
    assert_eq!(
        s.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
}

#[test]
fn create_if_missing_false_opens_only_an_existing_store() {
    let (dir, path) = temp();
    let only_open = || options().create_if_missing(false);

    // Missing: a typed error, and no file appears (nor a temporary one beside it).
    let err = KeyStore::open(&path, only_open()).unwrap_err();
    assert!(matches!(err, Error::StoreNotFound), "{err:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // An empty file stays empty.
    std::fs::write(&path, b"").unwrap();
    let err = KeyStore::open(&path, only_open()).unwrap_err();
    assert!(matches!(err, Error::StoreNotFound), "{err:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    std::fs::remove_file(&path).unwrap();

    // A dangling link: its target is not made.
    #[cfg(unix)]
    {
        let link = dir.path().join("link.redb");
        let target = dir.path().join("target.redb");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = KeyStore::open(&link, only_open()).unwrap_err();
        assert!(matches!(err, Error::StoreNotFound), "{err:?}");
        assert!(!target.exists());
        std::fs::remove_file(&link).unwrap();
    }

    // `memory:` has no existing store to open.
    let err = KeyStore::open("memory:", only_open()).unwrap_err();
    assert!(matches!(err, Error::StoreNotFound), "{err:?}");

    // An existing store opens as usual; the default still creates.
    let created = KeyStore::open(&path, options())
        .unwrap()
        .create(NewKey::new("x"))
        .unwrap();
    let store = KeyStore::open(&path, only_open()).unwrap();
    assert!(store.verify(created.key(), &[]).unwrap().is_valid());
    assert!(!Error::StoreNotFound.to_string().is_empty());
}
