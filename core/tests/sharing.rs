//! Two handles on one file, in one process and across processes, see each other's writes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Options, Outcome};

fn opts(refresh: Duration) -> Options {
    Options::new()
        .flush_interval(Duration::ZERO)
        .refresh_interval(refresh)
}

/// Polls `f` until it returns true or `limit` passes; returns the time it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_handles_in_one_process_see_each_other_within_the_refresh_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.redb");
    let refresh = Duration::from_millis(200);
    let a = KeyStore::open(&path, opts(refresh)).unwrap();
    let b = KeyStore::open(&path, opts(refresh)).unwrap();

    let created = a.create(NewKey::new("from-a")).unwrap();
    let seen = within(Duration::from_secs(3), || {
        b.verify(created.key(), &[]).unwrap().outcome() == Outcome::Valid
    });
    assert!(seen.expect("b never saw a's key") <= refresh + Duration::from_millis(150));
    // Admin reads are never stale.
    assert!(b.get(created.info().id()).unwrap().is_some());

    b.revoke(created.info().id()).unwrap();
    // The writer sees its own change at once.
    assert_eq!(
        b.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    let seen = within(Duration::from_secs(3), || {
        a.verify(created.key(), &[]).unwrap().outcome() == Outcome::Revoked
    });
    assert!(seen.expect("a never saw the revoke") <= refresh + Duration::from_millis(150));
}

#[test]
fn usage_from_two_handles_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.redb");
    let a = KeyStore::open(&path, opts(Duration::ZERO)).unwrap();
    let b = KeyStore::open(&path, opts(Duration::ZERO)).unwrap();
    let created = a.create(NewKey::new("k")).unwrap();
    for _ in 0..30 {
        assert!(a.verify(created.key(), &[]).unwrap().is_valid());
    }
    for _ in 0..12 {
        assert!(b.verify(created.key(), &[]).unwrap().is_valid());
    }
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(a.get(created.info().id()).unwrap().unwrap().use_count(), 42);
}

const CHILD_ENV: &str = "KEYSTEAD_SHARING_CHILD";

/// Runs in the child process: verifies the key given in the environment until it is revoked,
/// and creates a key of its own for the parent to verify.
#[test]
fn child_process_role() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let key = std::env::var("KEYSTEAD_SHARING_KEY").unwrap();
    let store = KeyStore::open(&path, opts(Duration::from_millis(100))).unwrap();
    assert_eq!(store.verify(&key, &[]).unwrap().outcome(), Outcome::Valid);
    let own = store.create(NewKey::new("from-child")).unwrap();
    println!("\nCHILD_KEY={}", own.key());
    for _ in 0..20 {
        store.verify(&key, &[]).unwrap();
    }
    store.close().unwrap();
}

#[test]
fn a_second_process_sees_writes_and_its_writes_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.redb");
    let store = KeyStore::open(&path, opts(Duration::from_millis(100))).unwrap();
    let created = store.create(NewKey::new("from-parent")).unwrap();

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .env("KEYSTEAD_SHARING_KEY", created.key())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let child_key = stdout
        .lines()
        .find_map(|l| l.split("CHILD_KEY=").nth(1))
        .map(str::trim)
        .expect("child printed its key")
        .to_owned();

    let seen = within(Duration::from_secs(3), || {
        store.verify(&child_key, &[]).unwrap().outcome() == Outcome::Valid
    });
    assert!(seen.is_some(), "the child's key never verified here");
    // 1 + 20 verifies of the parent's key by the child, flushed on its close.
    let info = store.get(created.info().id()).unwrap().unwrap();
    assert_eq!(info.use_count(), 21);
}
