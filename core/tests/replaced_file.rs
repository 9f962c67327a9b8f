//! A store file replaced under a long-lived handle (a backup renamed over the path, or the file
//! removed). The handle must not keep serving the old file past `refresh_interval`, nor write to
//! it: it fails closed with `Error::StoreReplaced` (docs/storage.md, "The file, its mode and
//! symbolic links").
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::options;
use keystead::{Error, KeyStore, ListFilter, NewKey, Outcome};

const CHILD_ENV: &str = "KEYSTEAD_REPLACED_FILE_CHILD";
const REFRESH: Duration = Duration::from_millis(200);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// How a verify or write ended, as one word the parent can compare without naming variants.
fn word<T>(result: &keystead::Result<T>, ok: impl Fn(&T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        Err(e) => format!("error:{e:?}"),
    }
}

/// The child: holds one handle on `<dir>/keystead.redb` and verifies the key in
/// `<dir>/key.txt` until `<dir>/stop` appears, printing `verify <start ms> <outcome>` per call;
/// then tries one write and prints `write <outcome>`.
#[test]
fn replaced_file_child_role() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = KeyStore::open(
        dir.join("keystead.redb"),
        options().refresh_interval(REFRESH),
    )
    .unwrap();
    let key = std::fs::read_to_string(dir.join("key.txt")).unwrap();
    let mut out = std::io::stdout().lock();
    let mut ready = false;
    while !dir.join("stop").exists() {
        let start = now_ms();
        let result = store.verify(&key, &[]);
        let outcome = word(&result, |v| v.code().to_owned());
        writeln!(out, "verify {start} {outcome}").unwrap();
        if !ready && outcome == "valid" {
            std::fs::write(dir.join("ready"), b"").unwrap();
            ready = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let write = store.create(NewKey::new("written-after-the-replacement"));
    writeln!(out, "write {}", word(&write, |_| "ok".to_owned())).unwrap();
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_handle_in_another_process_stops_serving_a_replaced_file_within_the_refresh_interval() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    let store = KeyStore::open(&path, options()).unwrap();
    let created = store.create(NewKey::new("restored-away")).unwrap();
    store.close().unwrap();
    // The "backup" that will be renamed over the store: the same store with the key revoked.
    let replacement = dir.path().join("replacement.redb");
    std::fs::copy(&path, &replacement).unwrap();
    let copy = KeyStore::open(&replacement, options()).unwrap();
    copy.revoke(created.info().id()).unwrap();
    copy.close().unwrap();
    std::fs::write(dir.path().join("key.txt"), created.key()).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "replaced_file_child_role",
            "--quiet",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The child's lines as they come, so the parent can stop it once it has seen enough.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let child_stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(child_stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_for(&dir.path().join("ready"), "the child's first valid verify");
    // Let the child's view of the old file be well established, then replace the file.
    std::thread::sleep(REFRESH * 2);
    std::fs::rename(&replacement, &path).unwrap();
    let renamed = now_ms();
    let deadline = renamed + REFRESH.as_millis() as i64;
    // Stop the child once it has made five verifies that started past the deadline (the ones
    // the property is about), however long a busy machine takes to run them: a fixed sleep
    // here left a child that was not scheduled in time with fewer than five.
    let mut stdout = String::new();
    let mut late_seen = 0;
    let give_up = Instant::now() + Duration::from_secs(60);
    while late_seen < 5 {
        let line = lines
            .recv_timeout(give_up.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| panic!("waiting for the child's verifies: {e}\n{stdout}"));
        let mut fields = line.split(' ');
        if fields.next() == Some("verify")
            && fields.next().and_then(|t| t.parse::<i64>().ok()) > Some(deadline)
        {
            late_seen += 1;
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    std::fs::write(dir.path().join("stop"), b"").unwrap();
    for line in lines {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    reader.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed:\n{stdout}");

    let mut before = 0;
    let mut late = 0;
    let mut write = None;
    for line in stdout.lines() {
        let mut fields = line.split(' ');
        match fields.next() {
            Some("verify") => {
                let start: i64 = fields.next().unwrap().parse().unwrap();
                let outcome = fields.next().unwrap();
                if start < renamed && outcome == "valid" {
                    before += 1;
                }
                // The property: a verify that started more than refresh_interval after the
                // rename returned never answers from the old file.
                if start > deadline {
                    late += 1;
                    assert_eq!(
                        outcome,
                        "error:StoreReplaced",
                        "a verify started {} ms after the rename answered {outcome}",
                        start - renamed
                    );
                }
            }
            Some("write") => write = fields.next().map(str::to_owned),
            _ => {}
        }
    }
    assert!(before > 0, "the key verified before the rename:\n{stdout}");
    assert!(
        late >= 5,
        "only {late} verifies after the deadline:\n{stdout}"
    );
    assert_eq!(write.as_deref(), Some("error:StoreReplaced"), "{stdout}");

    // The child's refused write reached neither file; the new file is the replacement.
    let store = KeyStore::open(&path, options()).unwrap();
    let names: Vec<String> = store
        .list(&ListFilter::new())
        .unwrap()
        .iter()
        .map(|k| k.name().to_owned())
        .collect();
    assert_eq!(names, ["restored-away"]);
    assert_eq!(
        store.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
}

#[test]
fn writes_through_a_handle_whose_file_was_replaced_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    let store = KeyStore::open(&path, options()).unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    let id = created.info().id();
    let replacement = dir.path().join("replacement.redb");
    std::fs::copy(&path, &replacement).unwrap();
    std::fs::rename(&replacement, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(store.revoke(id), Err(Error::StoreReplaced)));
    assert!(matches!(
        store.create(NewKey::new("new")),
        Err(Error::StoreReplaced)
    ));
    // Admin reads use a fresh snapshot, so they refuse too.
    assert!(matches!(store.get(id), Err(Error::StoreReplaced)));
    assert!(matches!(
        store.list(&ListFilter::new()),
        Err(Error::StoreReplaced)
    ));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the new file changed"
    );
    let message = Error::StoreReplaced.to_string();
    assert!(message.contains("open the store again"), "{message}");
    // Opening again uses the new file.
    drop(store);
    let store = KeyStore::open(&path, options()).unwrap();
    assert!(store.verify(created.key(), &[]).unwrap().is_valid());
}

#[test]
fn a_removed_store_file_fails_closed_and_is_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    let store = KeyStore::open(&path, options().refresh_interval(Duration::ZERO)).unwrap();
    let created = store.create(NewKey::new("k")).unwrap();
    assert!(store.verify(created.key(), &[]).unwrap().is_valid());
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        store.verify(created.key(), &[]),
        Err(Error::StoreReplaced)
    ));
    assert!(matches!(
        store.create(NewKey::new("again")),
        Err(Error::StoreReplaced)
    ));
    assert!(!path.exists(), "the handle recreated the file");
}

#[test]
fn a_handle_verifies_normally_while_its_file_stays_in_place() {
    // The check compares the file, not its contents: writes by this and other handles, and a
    // rename of the directory entry onto itself, change nothing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystead.redb");
    let a = KeyStore::open(&path, options().refresh_interval(Duration::ZERO)).unwrap();
    let b = KeyStore::open(&path, options()).unwrap();
    let created = b.create(NewKey::new("k")).unwrap();
    assert!(a.verify(created.key(), &[]).unwrap().is_valid());
    std::fs::rename(&path, &path).unwrap();
    let link = dir.path().join("second-name.redb");
    std::fs::hard_link(&path, &link).unwrap();
    a.revoke(created.info().id()).unwrap();
    assert_eq!(
        b.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
}
