//! Two handles on one file, in one process and across processes, see each other's writes:
//! every verify that *starts* more than `refresh_interval` after a change's call returned
//! judges by the changed store (docs/storage.md, "Read path and staleness"). The rule is
//! checked on every verify the tests make, never as a time bound.

mod common;
mod support;

use std::process::Command;
use std::time::Duration;

use keystead::{KeyStore, NewKey, Options, Outcome};

fn opts(refresh: Duration) -> Options {
    Options::new()
        .flush_interval(Duration::ZERO)
        .refresh_interval(refresh)
}

common::every_backend!(
    two_handles_in_one_process_see_each_other_after_the_refresh_interval,
    usage_from_two_handles_adds_up,
);

fn two_handles_in_one_process_see_each_other_after_the_refresh_interval() {
    let refresh = Duration::from_millis(200);
    let t = common::open_new_with(opts(refresh));
    let a = &t.store;
    let b = t.open_another(opts(refresh));
    // b read the change feed at open, before a's write.

    let created = a.create(NewKey::new("from-a")).unwrap();
    let created_us = support::unix_us();
    let seen = support::poll_until(&b, created.key(), Outcome::NotFound, Outcome::Valid);
    support::assert_staleness_rule("b sees a's new key", created_us, refresh, &seen.old_starts);
    // Admin reads are never stale.
    assert!(b.get(created.info().id()).unwrap().is_some());

    b.revoke(created.info().id()).unwrap();
    let revoked_us = support::unix_us();
    // The writer sees its own change at once.
    assert_eq!(
        b.verify(created.key(), &[]).unwrap().outcome(),
        Outcome::Revoked
    );
    let seen = support::poll_until(a, created.key(), Outcome::Valid, Outcome::Revoked);
    support::assert_staleness_rule("a sees b's revoke", revoked_us, refresh, &seen.old_starts);
}

fn usage_from_two_handles_adds_up() {
    let t = common::open_new_with(opts(Duration::ZERO));
    let a = &t.store;
    let b = t.open_another(opts(Duration::ZERO));
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
#[ignore = "a child role, not a test: a_second_process_sees_writes_and_its_writes_are_seen runs it in a subprocess"]
fn child_process_role() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        panic!("a child role, not a test: a_second_process_sees_writes_and_its_writes_are_seen runs it with {} set", CHILD_ENV);
    };
    let key = std::env::var("KEYSTEAD_SHARING_KEY").unwrap();
    let store = KeyStore::open(&path, opts(Duration::from_millis(100))).unwrap();
    assert_eq!(store.verify(&key, &[]).unwrap().outcome(), Outcome::Valid);
    let own = store.create(NewKey::new("from-child")).unwrap();
    println!("\nCHILD_KEY={} {}", own.key(), support::unix_us());
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
            "--ignored",
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
    let (child_key, created_us) = stdout
        .lines()
        .find_map(|l| l.split("CHILD_KEY=").nth(1))
        .and_then(|rest| rest.trim().split_once(' '))
        .expect("child printed its key");
    let created_us: i64 = created_us.parse().unwrap();

    let seen = support::poll_until(&store, child_key, Outcome::NotFound, Outcome::Valid);
    support::assert_staleness_rule(
        "the parent sees the child's key",
        created_us,
        Duration::from_millis(100),
        &seen.old_starts,
    );
    // 1 + 20 verifies of the parent's key by the child, flushed on its close.
    let info = store.get(created.info().id()).unwrap().unwrap();
    assert_eq!(info.use_count(), 21);
}
