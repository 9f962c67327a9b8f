//! Hostile input and a hostile environment: every case gives a typed `keystead::Error` (or a
//! verify outcome), never a panic or a `valid`, and leaves an existing store file as it was.
//!
//! Extends open.rs (which covers wrong peppers, a newer `schema_version`, foreign, garbage and
//! truncated files at open) with: oversize and NUL / non-UTF-8 headers, oversize admin input,
//! damaged and newer-version records and audit entries, read-only files, directories and
//! filesystems, a full disk, and pepper bounds.
//!
//! Tests run as root here, and root ignores permission bits: the read-only cases then use
//! `chattr +i` (immutable file or directory) and a read-only bind mount, and the full disk is
//! a 1 MiB tmpfs. Where none of that is possible the case fails and says why: a case that
//! cannot run is never counted as a pass.

mod common;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keystead::{Error, KeyStatus, KeyStore, ListFilter, NewKey, Options, Outcome};
use redb::ReadableTable;
use support::digest;

fn options() -> Options {
    Options::new().flush_interval(Duration::ZERO)
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    (dir, path)
}

/// A case whose environment cannot be set up here fails, naming why: it is never counted as
/// a pass. (CI runs as root, where every case runs.)
fn skipped(case: &str, why: &str) {
    panic!("{case}: cannot run here ({why}); run the tests as root, as CI does");
}

/// Undoes an environment change (chattr, mount) when dropped, also when a test panics.
struct Undo(Vec<(&'static str, Vec<String>)>);

impl Drop for Undo {
    fn drop(&mut self) {
        for (program, args) in self.0.drain(..).rev() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Err(e) = support::run(program, &args) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Makes `path` (file or directory) immutable with `chattr +i`, which binds root too.
fn immutable(path: &Path) -> Result<Undo, String> {
    let p = path.display().to_string();
    support::run("chattr", &["+i", &p])?;
    Ok(Undo(vec![("chattr", vec!["-i".into(), p])]))
}

/// Mounts a tmpfs of `size` on `dir` (root only).
fn tmpfs(dir: &Path, size: &str) -> Result<Undo, String> {
    if !support::is_root() {
        return Err("not root, cannot mount a small tmpfs".into());
    }
    let d = dir.display().to_string();
    support::run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            &d,
        ],
    )?;
    Ok(Undo(vec![("umount", vec![d])]))
}

/// Fills the filesystem of `dir` with a file; returns it (delete it to free the space).
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0x5a_u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    // Whatever is left is smaller than a page.
    while file.write_all(&[0x5a]).is_ok() {}
    filler
}

fn is_storage_full(err: &Error) -> bool {
    matches!(err, Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull)
}

// ---- headers ----

#[test]
fn oversize_headers_are_malformed_and_count_nothing() {
    let t = common::open_new();
    let created = t.store.create(NewKey::new("k")).unwrap();
    let key = created.key();
    let check = |header: &[u8], expected: Outcome| {
        let v = t.store.verify_header(header, &[]).unwrap();
        assert_eq!(v.outcome(), expected, "header of {} bytes", header.len());
        v
    };
    // The limit itself: a valid key padded with spaces to exactly 4 KiB is still accepted.
    let exact = format!(
        "Bearer {key}{}",
        " ".repeat(keystead::MAX_HEADER_LEN - 7 - key.len())
    );
    assert_eq!(exact.len(), keystead::MAX_HEADER_LEN);
    check(exact.as_bytes(), Outcome::Valid);
    // One byte over, in front or behind, and far over: malformed without a lookup.
    let over_end = format!("{exact} ");
    let over_front = format!(" {exact}");
    let huge_token = format!("Bearer {key}{}", "A".repeat(1 << 20));
    let huge_spaces = format!("Bearer {key}{}", " ".repeat(1 << 20));
    let many_keys = vec![format!("Bearer {key}"); 200].join(", ");
    for header in [
        &over_end,
        &over_front,
        &huge_token,
        &huge_spaces,
        &many_keys,
    ] {
        let v = check(header.as_bytes(), Outcome::Malformed);
        assert_eq!(v.http_status(), 400);
        assert!(v.key().is_none());
        assert_eq!(
            v.www_authenticate().as_deref(),
            Some("Bearer error=\"invalid_request\"")
        );
    }
    // 16 MiB of NUL bytes: refused by length alone.
    check(&vec![0u8; 16 << 20], Outcome::Malformed);
    // Only the one valid verify was counted.
    t.store.flush().unwrap();
    assert_eq!(
        t.store
            .get(created.info().id())
            .unwrap()
            .unwrap()
            .use_count(),
        1
    );
}

#[test]
fn nul_and_non_utf8_bytes_in_headers_are_malformed() {
    let t = common::open_new();
    let created = t.store.create(NewKey::new("k")).unwrap();
    let key = created.key().as_bytes();
    let cat = |parts: &[&[u8]]| parts.concat();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("NUL after the key", cat(&[b"Bearer ", key, b"\0"])),
        ("NUL before the key", cat(&[b"Bearer \0", key])),
        ("NUL as the separator", cat(&[b"Bearer\0", key])),
        ("NUL in the scheme", cat(&[b"Bea\0rer ", key])),
        ("0xFF after the key", cat(&[b"Bearer ", key, b"\xff"])),
        ("overlong UTF-8 '/'", cat(&[b"Bearer ", key, b"\xc0\xaf"])),
        ("lone continuation byte", cat(&[b"Bearer \x80", key])),
        ("UTF-8 BOM first", cat(&[b"\xef\xbb\xbfBearer ", key])),
        ("NBSP separator", cat(&[b"Bearer\xc2\xa0", key])),
        (
            "ideographic space separator",
            cat(&[b"Bearer\xe3\x80\x80", key]),
        ),
        (
            "U+2028 after the key",
            cat(&[b"Bearer ", key, b"\xe2\x80\xa8"]),
        ),
        (
            "CRLF header injection",
            cat(&[b"Bearer ", key, b"\r\nX-Admin: 1"]),
        ),
        ("Latin-1 scheme", cat(&[b"B\xe9arer ", key])),
        ("another scheme, binary", cat(&[b"Basic \xff\xfe", key])),
    ];
    // Every single byte of the key replaced by NUL, 0x80 and 0xFF.
    for i in 0..key.len() {
        for bad in [0u8, 0x80, 0xff] {
            let mut k = key.to_vec();
            k[i] = bad;
            cases.push(("key byte replaced", cat(&[b"Bearer ", &k])));
        }
    }
    for (what, header) in &cases {
        let v = t
            .store
            .verify_header(header, &[])
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(v.outcome(), Outcome::Malformed, "{what}: {header:?}");
    }
    // The bare-key API takes &str: NUL and non-ASCII characters, at every position, with
    // byte lengths that pass the length check.
    let text = created.key();
    for i in 0..text.len() {
        for bad in ["\0", "é", "\u{2028}", "\u{feff}", "０"] {
            let mut s = String::new();
            s.push_str(&text[..i]);
            s.push_str(bad);
            s.push_str(&text[i + 1..]);
            let v = t.store.verify(&s, &[]).unwrap();
            assert_eq!(v.outcome(), Outcome::Malformed, "{bad:?} at {i}");
        }
    }
    t.store.flush().unwrap();
    assert_eq!(
        t.store
            .get(created.info().id())
            .unwrap()
            .unwrap()
            .use_count(),
        0
    );
}

// ---- admin input ----

#[test]
fn oversize_and_control_input_to_admin_calls_is_refused_and_changes_nothing() {
    let t = common::open_new();
    let created = t
        .store
        .create(
            NewKey::new("original")
                .scopes(["a:b"])
                .metadata([("owner", "me")]),
        )
        .unwrap();
    let id = created.info().id();
    let path = t.path();
    let before_info = t.store.get(id).unwrap().unwrap();
    let before_audit = t.store.audit(None, 1000).unwrap().len();
    let before = digest(&path);
    let mib = "x".repeat(1 << 20);
    let long_meta: BTreeMap<String, String> = [("k".to_owned(), mib.clone())].into();
    let many_meta: BTreeMap<String, String> =
        (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let total_meta: BTreeMap<String, String> = (0..5)
        .map(|i| (format!("k{i}"), "v".repeat(1000)))
        .collect();
    let nul_value: BTreeMap<String, String> = [("k".to_owned(), "a\0b".to_owned())].into();
    let nul_key: BTreeMap<String, String> = [("k\0".to_owned(), "v".to_owned())].into();
    let results: Vec<(&str, keystead::Result<()>)> = vec![
        (
            "1 MiB name",
            t.store.create(NewKey::new(mib.clone())).map(drop),
        ),
        ("NUL in name", t.store.create(NewKey::new("a\0b")).map(drop)),
        ("rename 1 MiB", t.store.rename(id, &mib).map(drop)),
        (
            "rename 129 chars",
            t.store.rename(id, &"é".repeat(129)).map(drop),
        ),
        ("rename NUL", t.store.rename(id, "a\0b").map(drop)),
        ("rename newline", t.store.rename(id, "a\nb").map(drop)),
        (
            "1 MiB scope",
            t.store.set_scopes(id, &[mib.as_str()]).map(drop),
        ),
        ("NUL scope", t.store.set_scopes(id, &["a\0"]).map(drop)),
        (
            "non-ASCII scope",
            t.store.set_scopes(id, &["chät"]).map(drop),
        ),
        (
            "33 scopes",
            t.store
                .set_scopes(id, &(0..33).map(|i| format!("s{i}")).collect::<Vec<_>>())
                .map(drop),
        ),
        (
            "1 MiB metadata value",
            t.store.set_metadata(id, long_meta).map(drop),
        ),
        (
            "33 metadata entries",
            t.store.set_metadata(id, many_meta).map(drop),
        ),
        (
            "5000 bytes of metadata",
            t.store.set_metadata(id, total_meta).map(drop),
        ),
        (
            "NUL in a metadata value",
            t.store.set_metadata(id, nul_value).map(drop),
        ),
        (
            "NUL in a metadata key",
            t.store.set_metadata(id, nul_key).map(drop),
        ),
        (
            "1 MiB required scope",
            t.store.verify(created.key(), &[mib.as_str()]).map(drop),
        ),
        ("1 MiB key id", mib.parse::<keystead::KeyId>().map(drop)),
        ("1 MiB status", KeyStatus::parse(&mib).map(drop)),
    ];
    for (what, result) in results {
        match result {
            Err(Error::InvalidArgument(message)) => {
                // Errors echo a short piece of the input at most, never a megabyte.
                assert!(
                    message.len() < 300,
                    "{what}: {} bytes of message",
                    message.len()
                );
                assert!(!message.contains('\0'), "{what}: raw NUL in {message:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(t.store.get(id).unwrap().unwrap(), before_info);
    assert_eq!(t.store.audit(None, 1000).unwrap().len(), before_audit);
    assert_eq!(t.store.list(&ListFilter::new()).unwrap().len(), 1);
    assert_eq!(digest(&path), before, "refused calls wrote to the file");
}

// ---- damaged and foreign files ----

#[test]
fn a_truncated_store_is_refused_and_left_as_it_was() {
    // open.rs checks that truncated files are errors; here, that the refusal writes nothing.
    let (_dir, path) = temp();
    let s = KeyStore::open(&path, options()).unwrap();
    for i in 0..40 {
        s.create(NewKey::new(format!("k{i}"))).unwrap();
    }
    drop(s);
    let full = std::fs::read(&path).unwrap();
    for len in [1usize, 9, 511, 4096, full.len() / 3, full.len() - 1] {
        std::fs::write(&path, &full[..len]).unwrap();
        let before = digest(&path);
        let err = KeyStore::open(&path, options()).map(drop).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt(_) | Error::Storage(_) | Error::Io(_)),
            "{len}: {err:?}"
        );
        assert_eq!(
            digest(&path),
            before,
            "truncated to {len}: the refused open wrote"
        );
    }
}

/// Replaces every occurrence of `needle` in the file (old copies in free pages included).
fn damage(path: &Path, needle: &[u8], replacement: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let mut count = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i..i + needle.len()].copy_from_slice(replacement);
            count += 1;
        }
        i += 1;
    }
    std::fs::write(path, bytes).unwrap();
    count
}

#[test]
fn a_damaged_key_record_is_corrupt_never_valid() {
    let (_dir, path) = temp();
    let s = KeyStore::open(&path, options()).unwrap();
    let victim = s.create(NewKey::new("canary-record-0001")).unwrap();
    let id = victim.info().id();
    drop(s);
    // A bit flip inside the record (its name), as a bad disk or a careless editor would.
    assert!(damage(&path, b"canary-record-0001", b"canary-record-0003") > 0);
    let s = KeyStore::open(&path, options()).unwrap();
    match s.verify(victim.key(), &[]) {
        Err(Error::Corrupt(_)) => {}
        other => panic!("verify of a damaged record: {other:?}"),
    }
    assert!(matches!(s.get(id), Err(Error::Corrupt(_))));
    assert!(matches!(s.list(&ListFilter::new()), Err(Error::Corrupt(_))));
    // Admin writes on it are refused too, rather than re-encoding damaged data.
    assert!(matches!(s.revoke(id), Err(Error::Corrupt(_))));
}

/// Sets byte `at` of the record (or audit entry) and recomputes its CRC-32 trailer, so the
/// value is well-formed apart from what the test changes.
fn patch_with_crc(bytes: &mut [u8], at: usize, value: u8) {
    bytes[at] = value;
    let body = bytes.len() - 4;
    let crc = common::crc32(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
}

fn redb_db(path: &Path) -> redb::Database {
    redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(path)
        .unwrap()
}

/// Patches byte `at` of the key record `id` (CRC recomputed).
fn patch_record(path: &Path, id: u64, at: usize, value: u8) {
    let db = redb_db(path);
    let txn = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("keys");
        let mut table = txn.open_table(def).unwrap();
        let mut bytes = table.get(id).unwrap().unwrap().value().to_vec();
        patch_with_crc(&mut bytes, at, value);
        table.insert(id, bytes.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

fn id_u64(key: &str) -> u64 {
    // The 12 id characters after `<prefix>_`, base62.
    common::base62_decode(&key[key.len() - 61..][..12])
}

#[test]
fn newer_record_hash_and_audit_versions_are_refused_and_change_nothing() {
    let (_dir, path) = temp();
    let s = KeyStore::open(&path, options()).unwrap();
    let newer = s.create(NewKey::new("newer-record")).unwrap();
    let new_alg = s.create(NewKey::new("newer-hash")).unwrap();
    let plain = s.create(NewKey::new("plain")).unwrap();
    drop(s);
    patch_record(&path, id_u64(newer.key()), 0, 3); // record version 3 (2 is this build's MAC'd one)
    patch_record(&path, id_u64(new_alg.key()), 1, 2); // hash algorithm 2
    {
        // The newest audit entry: version 2.
        let db = redb_db(&path);
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("audit");
            let mut table = txn.open_table(def).unwrap();
            let (seq, mut bytes) = {
                let (k, v) = table.last().unwrap().unwrap();
                (k.value(), v.value().to_vec())
            };
            patch_with_crc(&mut bytes, 0, 2);
            table.insert(seq, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let s = KeyStore::open(&path, options()).unwrap();
    let before = digest(&path);
    match s.verify(newer.key(), &[]) {
        Err(Error::UnsupportedVersion {
            what: "record",
            found: 3,
            supported: 2,
        }) => {}
        other => panic!("record v3: {other:?}"),
    }
    match s.verify(new_alg.key(), &[]) {
        Err(Error::UnsupportedVersion {
            what: "hash algorithm",
            found: 2,
            ..
        }) => {}
        other => panic!("hash algorithm 2: {other:?}"),
    }
    assert!(matches!(
        s.get(newer.info().id()),
        Err(Error::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        s.audit(None, 10),
        Err(Error::UnsupportedVersion {
            what: "audit entry",
            found: 2,
            ..
        })
    ));
    // The records this build does read are unaffected.
    assert!(s.verify(plain.key(), &[]).unwrap().is_valid());
    // A newer record is not rewritten by an admin call of this (older) build.
    assert!(matches!(
        s.revoke(newer.info().id()),
        Err(Error::UnsupportedVersion { .. })
    ));
    assert_eq!(
        digest(&path),
        before,
        "refused reads and writes changed the file"
    );
}

#[test]
fn a_malformed_schema_version_is_refused_and_changes_nothing() {
    for value in [vec![1u8, 0, 0], vec![0u8; 4], vec![1u8, 0, 0, 0, 0]] {
        let (_dir, path) = temp();
        drop(KeyStore::open(&path, options()).unwrap());
        {
            let db = redb_db(&path);
            let txn = db.begin_write().unwrap();
            {
                let meta: redb::TableDefinition<'_, &str, &[u8]> =
                    redb::TableDefinition::new("meta");
                txn.open_table(meta)
                    .unwrap()
                    .insert("schema_version", value.as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let before = digest(&path);
        let err = KeyStore::open(&path, options()).map(drop).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{value:?}: {err:?}");
        assert_eq!(digest(&path), before);
    }
}

// ---- read-only files, directories and filesystems ----

#[test]
fn a_read_only_store_file_is_an_io_error_and_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = temp();
    let s = KeyStore::open(&path, options()).unwrap();
    let key = s.create(NewKey::new("k")).unwrap();
    drop(s);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let before = digest(&path);
    let writable_anyway = std::fs::OpenOptions::new().write(true).open(&path).is_ok();
    if writable_anyway {
        // Root: the mode bits do not bind it. Make the file immutable instead.
        println!("chmod 0400 does not bind this process (root); using chattr +i");
        match immutable(&path) {
            Ok(_undo) => {
                let err = KeyStore::open(&path, options()).map(drop).unwrap_err();
                assert!(matches!(err, Error::Io(_)), "{err:?}");
                println!("immutable store file: {err}");
                assert_eq!(digest(&path), before);
            }
            Err(why) => skipped("read-only store file", &why),
        }
    } else {
        let err = KeyStore::open(&path, options()).map(drop).unwrap_err();
        match &err {
            Error::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied),
            other => panic!("{other:?}"),
        }
        assert_eq!(digest(&path), before);
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = KeyStore::open(&path, options()).unwrap();
    assert!(s.verify(key.key(), &[]).unwrap().is_valid());
    drop(s);
    drop(dir);
}

#[test]
fn a_store_on_a_read_only_filesystem_is_an_io_error_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("ro");
    std::fs::create_dir(&mount_point).unwrap();
    let path = mount_point.join("keystead.redb");
    drop(KeyStore::open(&path, options()).unwrap());
    let before = digest(&path);
    if !support::is_root() {
        skipped(
            "read-only filesystem",
            "not root, cannot bind-mount read-only",
        );
        return;
    }
    let m = mount_point.display().to_string();
    if let Err(why) = support::run("mount", &["--bind", &m, &m]) {
        skipped("read-only filesystem", &why);
        return;
    }
    let undo = Undo(vec![("umount", vec![m.clone()])]);
    if let Err(why) = support::run("mount", &["-o", "remount,bind,ro", &m]) {
        skipped("read-only filesystem", &why);
        return;
    }
    let err = KeyStore::open(&path, options()).map(drop).unwrap_err();
    match &err {
        Error::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{e}"),
        other => panic!("{other:?}"),
    }
    println!("store on a read-only filesystem: {err}");
    // A new store there: refused the same way, no file appears.
    let err = KeyStore::open(mount_point.join("new.redb"), options())
        .map(drop)
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(!mount_point.join("new.redb").exists());
    drop(undo);
    assert_eq!(digest(&path), before);
}

#[test]
fn a_read_only_directory_refuses_a_new_store_but_serves_an_existing_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing.redb");
    let s = KeyStore::open(&existing, options()).unwrap();
    let key = s.create(NewKey::new("k")).unwrap();
    drop(s);
    let new = dir.path().join("new.redb");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = dir.path().join("probe");
    let binds = std::fs::File::create(&probe).is_err();
    let _ = std::fs::remove_file(&probe);
    let _undo = if binds {
        None
    } else {
        println!("chmod 0500 does not bind this process (root); using chattr +i on the directory");
        match immutable(dir.path()) {
            Ok(undo) => Some(undo),
            Err(why) => {
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                    .unwrap();
                skipped("read-only directory", &why);
                return;
            }
        }
    };
    let err = KeyStore::open(&new, options()).map(drop).unwrap_err();
    match &err {
        Error::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(!new.exists());
    // The existing store needs no new file beside it (no lock or journal files).
    let s = KeyStore::open(&existing, options()).unwrap();
    assert!(s.verify(key.key(), &[]).unwrap().is_valid());
    let other = s
        .create(NewKey::new("created in a read-only directory"))
        .unwrap();
    assert!(s.verify(other.key(), &[]).unwrap().is_valid());
    s.close().unwrap();
    drop(_undo);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

// ---- full disk ----

/// A store with one key on a 1 MiB tmpfs; `None` (after printing why) if it cannot be made.
fn store_on_small_tmpfs(case: &str) -> Option<(tempfile::TempDir, Undo, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    std::fs::create_dir(&mount_point).unwrap();
    match tmpfs(&mount_point, "1m") {
        Ok(undo) => Some((dir, undo, mount_point)),
        Err(why) => {
            skipped(case, &why);
            None
        }
    }
}

#[test]
fn a_full_disk_fails_the_write_with_storage_full_and_keeps_the_store_intact() {
    let Some((_dir, _undo, mount_point)) = store_on_small_tmpfs("full disk: failed write") else {
        return;
    };
    let path = mount_point.join("keystead.redb");
    let s = KeyStore::open(&path, options()).unwrap();
    let mut kept: Vec<_> = (0..3)
        .map(|i| s.create(NewKey::new(format!("before-{i}"))).unwrap())
        .collect();
    let filler = fill(&mount_point);
    // Creates may still fit in free pages inside the file for a while; each one that returns
    // Ok is acknowledged and must survive.
    let meta = [("blob", "v".repeat(1000))];
    let mut refused = None;
    for i in 0..200 {
        match s.create(NewKey::new(format!("on-full-{i}")).metadata(meta.clone())) {
            Ok(k) => kept.push(k),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("200 creates succeeded on a full disk");
    assert!(is_storage_full(&err), "{err:?}");
    println!("create on a full disk: {err}");
    drop(s);
    std::fs::remove_file(filler).unwrap();
    assert!(KeyStore::check_integrity(&path).unwrap());
    let s = KeyStore::open(&path, options()).unwrap();
    let listed = s.list(&ListFilter::new()).unwrap();
    assert_eq!(
        listed.len(),
        kept.len(),
        "the refused create left nothing behind"
    );
    for k in &kept {
        assert!(s.verify(k.key(), &[]).unwrap().is_valid());
    }
    s.create(NewKey::new("after")).unwrap();
}

/// A write that fails for lack of space (a usage flush, the write a busy server makes most,
/// or an admin write) must not take verification down with it: verify only reads. And once
/// space is freed, the same handle must write again and the usage it kept must land: a server
/// should not need a restart because its disk was full for a moment.
#[test]
fn a_handle_whose_write_hit_a_full_disk_keeps_verifying_and_recovers() {
    let Some((_dir, _undo, mount_point)) = store_on_small_tmpfs("full disk: recovery") else {
        return;
    };
    let path = mount_point.join("keystead.redb");
    let refresh = Duration::from_millis(50);
    let s = KeyStore::open(&path, options().refresh_interval(refresh)).unwrap();
    let warm = s.create(NewKey::new("warm")).unwrap();
    let cold = s.create(NewKey::new("cold")).unwrap();
    for _ in 0..5 {
        assert!(s.verify(warm.key(), &[]).unwrap().is_valid());
    }
    let filler = fill(&mount_point);
    // The usage flush may still fit in free pages inside the file; then creates fill it up.
    let flush = s.flush();
    let mut failed = flush.as_ref().err().map(|e| format!("flush: {e}"));
    for i in 0..200 {
        if failed.is_some() {
            break;
        }
        let meta = [("blob", "v".repeat(1000))];
        if let Err(e) = s.create(NewKey::new(format!("fill-{i}")).metadata(meta)) {
            failed = Some(format!("create {i}: {e}"));
        }
    }
    let failed = failed.expect("no write failed on the full disk (test setup)");
    let outcome = |key: &str| {
        s.verify(key, &[])
            .map(|v| v.outcome())
            .map_err(|e| e.to_string())
    };
    // While the disk is full: a key already in the read cache, and one that is not.
    let warm_during = outcome(warm.key());
    let cold_during = outcome(cold.key());
    std::fs::remove_file(&filler).unwrap();
    // Past the refresh interval, so verify needs a new snapshot.
    std::thread::sleep(refresh * 3);
    let warm_after = outcome(warm.key());
    let cold_after = outcome(cold.key());
    let create_after = s.create(NewKey::new("after")).map(drop);
    let flush_after = s.flush();
    let uses = s.get(warm.info().id()).map(|k| k.map(|k| k.use_count()));
    println!(
        "full disk, one handle: {failed}; verify while full: cached key {warm_during:?},          uncached key {cold_during:?}; after freeing space: verify {warm_after:?} /          {cold_after:?}, create {create_after:?}, flush {flush_after:?}, use count {uses:?}"
    );
    assert_eq!(
        warm_during,
        Ok(Outcome::Valid),
        "verify (cached key) while the disk is full"
    );
    assert_eq!(
        cold_during,
        Ok(Outcome::Valid),
        "verify (uncached key) while the disk is full"
    );
    assert_eq!(
        warm_after,
        Ok(Outcome::Valid),
        "verify after the space was freed"
    );
    assert_eq!(
        cold_after,
        Ok(Outcome::Valid),
        "verify after the space was freed"
    );
    assert!(
        create_after.is_ok(),
        "writes still fail after the space was freed"
    );
    assert!(
        flush_after.is_ok(),
        "flush still fails after the space was freed"
    );
    // 5 before the disk filled + 2 valid verifies since, none lost.
    assert_eq!(uses.unwrap(), Some(7));
}

/// Creating a store on a full disk fails; after space is freed, the same call must work. The
/// failed first open must not leave a file that no later open accepts.
#[test]
fn a_first_open_on_a_full_disk_can_be_retried_once_space_is_freed() {
    let Some((_dir, _undo, mount_point)) = store_on_small_tmpfs("full disk: first open") else {
        return;
    };
    let filler = fill(&mount_point);
    let path = mount_point.join("keystead.redb");
    let err = KeyStore::open(&path, options()).map(drop).unwrap_err();
    assert!(is_storage_full(&err), "{err:?}");
    let left = std::fs::metadata(&path).map(|m| m.len()).ok();
    std::fs::remove_file(filler).unwrap();
    match KeyStore::open(&path, options()) {
        Ok(s) => {
            let k = s.create(NewKey::new("k")).unwrap();
            assert!(s.verify(k.key(), &[]).unwrap().is_valid());
        }
        Err(e) => {
            panic!("the failed first open left a file ({left:?} bytes) that no open accepts: {e:?}")
        }
    }
}

// ---- peppers ----

#[test]
fn pepper_bounds_and_binary_peppers() {
    let (_dir, path) = temp();
    for (what, pepper) in [
        ("31 bytes", vec![7u8; 31]),
        ("a word", b"pepper".to_vec()),
        ("1025 bytes", vec![7u8; 1025]),
        ("1 MiB", vec![7u8; 1 << 20]),
        ("all zero bytes", vec![0u8; 32]),
        ("one zero byte", vec![0u8]),
    ] {
        match KeyStore::open(&path, options().pepper(pepper)) {
            Err(Error::InvalidArgument(m)) => {
                assert!(m.len() < 200, "{what}: {m}");
                assert!(
                    m.contains("32 to 1024 bytes") || m.contains("zero"),
                    "{what}: {m}"
                );
            }
            other => panic!("{what}: {:?}", other.map(drop)),
        }
        assert!(!path.exists(), "{what}: a refused open created the file");
    }
    // Peppers are bytes, not text: NUL and non-UTF-8 bytes work, 32 to 1024 of them.
    let shortest: Vec<u8> = (1..=32u8).collect();
    drop(KeyStore::open(&path, options().pepper(shortest)).unwrap());
    std::fs::remove_file(&path).unwrap();
    let pepper: Vec<u8> = (0..1024u32).map(|i| (i * 131 % 256) as u8).collect();
    assert!(pepper.contains(&0) && std::str::from_utf8(&pepper).is_err());
    let s = KeyStore::open(&path, options().pepper(pepper.clone())).unwrap();
    let k = s.create(NewKey::new("k")).unwrap();
    drop(s);
    let before = digest(&path);
    for i in [0usize, 511, 1023] {
        let mut wrong = pepper.clone();
        wrong[i] ^= 1;
        assert!(matches!(
            KeyStore::open(&path, options().pepper(wrong)),
            Err(Error::WrongPepper)
        ));
    }
    // A prefix of the right pepper is a different HMAC key, not a match.
    assert!(matches!(
        KeyStore::open(&path, options().pepper(pepper[..1023].to_vec())),
        Err(Error::WrongPepper)
    ));
    assert_eq!(digest(&path), before);
    let s = KeyStore::open(&path, options().pepper(pepper)).unwrap();
    assert!(s.verify(k.key(), &[]).unwrap().is_valid());
}

/// docs/storage.md: a record's id must equal its table key. A record copied under another key
/// (by someone who can write the file) is `Corrupt` for every admin read and write, and never
/// makes the other key valid.
#[test]
fn a_record_stored_under_another_id_is_corrupt() {
    let (_dir, path) = temp();
    let s = KeyStore::open(&path, options()).unwrap();
    let a = s.create(NewKey::new("a")).unwrap();
    let b = s.create(NewKey::new("b")).unwrap();
    s.close().unwrap();
    {
        let db = redb_db(&path);
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("keys");
            let mut table = txn.open_table(def).unwrap();
            let bytes = table
                .get(id_u64(a.key()))
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            table.insert(id_u64(b.key()), bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let s = KeyStore::open(&path, options()).unwrap();
    let id = b.info().id();
    assert!(matches!(s.get(id), Err(Error::Corrupt(_))));
    assert!(matches!(s.list(&ListFilter::new()), Err(Error::Corrupt(_))));
    assert!(matches!(s.revoke(id), Err(Error::Corrupt(_))));
    for key in [a.key(), b.key()] {
        let verdict = s.verify(key, &[]);
        assert!(
            !matches!(&verdict, Ok(v) if v.is_valid() && v.key_id() == Some(id)),
            "{verdict:?}"
        );
    }
    assert!(
        s.verify(a.key(), &[]).unwrap().is_valid(),
        "a's own record is intact"
    );
}
