//! Issue 12, "records authenticated under a pepper": with a pepper, someone who can write the
//! store file (but does not know the pepper) must not be able to bring a revoked key back, or
//! change any other field of a record. Each edit below is what such an attacker can do with
//! the documented format (docs/storage.md): recompute a CRC, or rewrite a record as the older
//! CRC-protected version. Verify must give an error (`Corrupt`), never `valid`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keystead::{Error, KeyStore, NewKey, Options, Outcome};
use redb::ReadableDatabase;

const PEPPER: &[u8] = b"0123456789abcdef0123456789abcdef-pepper";
const KEYS: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("keys");
const META: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");

fn options() -> Options {
    Options::new()
        .flush_interval(Duration::ZERO)
        .pepper(PEPPER.to_vec())
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    (dir, path)
}

fn db(path: &Path) -> redb::Database {
    redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(path)
        .unwrap()
}

fn read_record(path: &Path, id: u64) -> Vec<u8> {
    let db = db(path);
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(KEYS).unwrap();
    let value = table.get(id).unwrap().unwrap().value().to_vec();
    value
}

fn write_record(path: &Path, id: u64, bytes: &[u8]) {
    let db = db(path);
    let txn = db.begin_write().unwrap();
    txn.open_table(KEYS).unwrap().insert(id, bytes).unwrap();
    txn.commit().unwrap();
}

/// Offset of the state byte: version, algorithm, id (8), salt (16), hash (32).
const STATE_AT: usize = 58;
/// Length of the trailer: 4 (CRC-32, version 1) or 32 (HMAC-SHA256, version 2).
fn trailer_len(record: &[u8]) -> usize {
    if record[0] == 1 {
        4
    } else {
        32
    }
}

/// The attacker's edit: `record` with its state set to active (0), written as a version-1
/// record with a correct CRC.
fn as_active_v1(record: &[u8]) -> Vec<u8> {
    let mut body = record[..record.len() - trailer_len(record)].to_vec();
    body[0] = 1;
    body[STATE_AT] = 0;
    let crc = common::crc32(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// The attacker's other edit: the state byte set to active in place, and the trailer's first
/// four bytes replaced by a CRC of what precedes it (all a CRC-trusting reader would check).
fn as_active_in_place(record: &[u8]) -> Vec<u8> {
    let mut bytes = record.to_vec();
    bytes[STATE_AT] = 0;
    let body_len = bytes.len() - trailer_len(record);
    let crc = common::crc32(&bytes[..body_len]);
    bytes[body_len..body_len + 4].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn id_of(key: &str) -> u64 {
    let body = &key[key.len() - 61..];
    body[..12].bytes().fold(0u64, |acc, c| {
        let d = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
            .iter()
            .position(|&a| a == c)
            .unwrap() as u64;
        acc * 62 + d
    })
}

/// Verify of the edited record must fail; the edit must never make the key valid.
fn assert_refused(path: &Path, key: &str, id: keystead::KeyId, what: &str) {
    let store = KeyStore::open(path, options()).unwrap();
    match store.verify(key, &[]) {
        Err(Error::Corrupt(_)) => {}
        other => panic!("{what}: verify of an edited revoked record gave {other:?}"),
    }
    // Admin reads refuse it too.
    assert!(
        matches!(store.get(id), Err(Error::Corrupt(_))),
        "{what}: get"
    );
}

#[test]
fn an_edited_revoked_record_in_a_peppered_store_is_corrupt_never_valid() {
    for (what, edit) in [
        (
            "rewritten as version 1 with a CRC",
            as_active_v1 as fn(&[u8]) -> Vec<u8>,
        ),
        ("state byte edited, CRC recomputed", as_active_in_place),
    ] {
        let (_dir, path) = temp();
        let store = KeyStore::open(&path, options()).unwrap();
        let created = store.create(NewKey::new("victim")).unwrap();
        let id = created.info().id();
        store.revoke(id).unwrap();
        assert_eq!(
            store.verify(created.key(), &[]).unwrap().outcome(),
            Outcome::Revoked
        );
        let raw_id = id_of(created.key());
        drop(store);

        let record = read_record(&path, raw_id);
        assert_eq!(
            record[STATE_AT], 2,
            "the state byte is where docs/storage.md says"
        );
        write_record(&path, raw_id, &edit(&record));
        assert_refused(&path, created.key(), id, what);
    }
}

/// A peppered store written before records were authenticated (version-1 records, the
/// version-1 pepper check) is upgraded when opened: its records become version 2, and from
/// then on the same edit is refused.
#[test]
fn a_legacy_peppered_store_is_upgraded_on_open_and_then_protected() {
    let (_dir, path) = temp();
    let store = KeyStore::open(&path, options()).unwrap();
    let live = store.create(NewKey::new("live")).unwrap();
    let revoked = store.create(NewKey::new("revoked")).unwrap();
    store.revoke(revoked.info().id()).unwrap();
    let (live_id, revoked_id) = (id_of(live.key()), id_of(revoked.key()));
    drop(store);

    // Make it what an older build wrote: CRC records, and HMAC(pepper, "...check v1").
    for id in [live_id, revoked_id] {
        let record = read_record(&path, id);
        assert_eq!(
            record[0], 2,
            "a peppered store writes authenticated records"
        );
        let mut body = record[..record.len() - 32].to_vec();
        body[0] = 1;
        let crc = common::crc32(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        write_record(&path, id, &body);
    }
    let legacy_check = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, PEPPER),
        b"keystead pepper check v1",
    );
    {
        let db = db(&path);
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("pepper_check", legacy_check.as_ref())
            .unwrap();
        txn.commit().unwrap();
    }

    let store = KeyStore::open(&path, options()).unwrap();
    assert!(store.verify(live.key(), &[]).unwrap().is_valid());
    assert_eq!(
        store.verify(revoked.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    drop(store);
    assert_eq!(read_record(&path, live_id)[0], 2, "upgraded on open");
    assert_eq!(read_record(&path, revoked_id)[0], 2, "upgraded on open");

    let record = read_record(&path, revoked_id);
    write_record(&path, revoked_id, &as_active_v1(&record));
    assert_refused(
        &path,
        revoked.key(),
        revoked.info().id(),
        "after the upgrade",
    );
    // The untouched key still verifies.
    let store = KeyStore::open(&path, options()).unwrap();
    assert!(store.verify(live.key(), &[]).unwrap().is_valid());
}
