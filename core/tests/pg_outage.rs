#![cfg(feature = "postgres")]
//! A database outage (issue 14, docs/fleet.md "Outages"): the test STOPS the PostgreSQL
//! server of `scripts/test-postgres.sh` and starts it again.
//!
//! **Run it on its own**: it is the only test in this binary, and no other test may use the
//! cluster while it runs (they would see the server go away). `cargo test` runs test binaries
//! one after another, so `scripts/test-postgres.sh -- cargo test ...` is safe; do not run this
//! binary in parallel with another one against the same cluster. If it fails mid-way, a guard
//! starts the server again so the binaries after it still have one.
//!
//! What it checks, by the clock of each verify instead of by how long anything took:
//! - while the server is down, a cached key keeps verifying `valid` until `max_staleness`
//!   after the last successful sync: every verify that *returned* before the warm-up verify's
//!   start + `max_staleness` − 500 ms (the last sync is at most `refresh_interval` before that
//!   start; the rest is margin) answered `valid`;
//! - every verify that *started* more than `max_staleness` + `refresh_interval` + 500 ms after
//!   the server was down fails with kind `Unavailable`;
//! - no verify ever answers an outcome other than `valid` (never `not_found`), and every error
//!   is of kind `Unavailable`;
//! - an uncached id fails with `Unavailable` at once (never `not_found`), and so do admin calls;
//! - once the server is back, the key verifies `valid` again, a revoke works and both this
//!   handle and another one see it.

mod common;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use keystead::{ErrorKind, KeyStore, ListFilter, NewKey, Outcome};

const REFRESH: Duration = Duration::from_millis(200);
const MAX_STALENESS: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_millis(500);

fn us(d: Duration) -> i64 {
    d.as_micros() as i64
}

fn ctl(action: &str) -> Result<(), String> {
    let ctl = std::env::var("KEYSTEAD_TEST_PG_CTL").unwrap_or_else(|_| {
        panic!(
            "KEYSTEAD_TEST_PG_CTL is not set: run this test through scripts/test-postgres.sh, \
             which starts a throwaway server this test may stop"
        )
    });
    let out = Command::new(&ctl)
        .arg(action)
        .output()
        .map_err(|e| format!("cannot run {ctl}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{ctl} {action}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Starts the server again if the test ends (or panics) while it is stopped.
struct ServerBack {
    stopped: bool,
}

impl Drop for ServerBack {
    fn drop(&mut self) {
        if self.stopped {
            if let Err(e) = ctl("start") {
                eprintln!("pg_outage: could not start the server again: {e}");
            }
        }
    }
}

/// Asserts that `result` is an error of kind `Unavailable` (what an outage must give).
fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: keystead::Result<T>) {
    match result {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::Unavailable,
            "{what} during the outage: wrong error kind: {e}"
        ),
        Ok(v) => panic!("{what} during the outage succeeded: {v:?}"),
    }
}

/// The outage checks on the admin calls and an uncached id (at whatever moment they run).
fn check_calls_during_outage(store: &KeyStore, key: &str, when: &str) {
    let unknown = common::unknown_id(key);
    assert_unavailable(
        &format!("a verify of an uncached id ({when})"),
        store.verify(&unknown, &[]).map(|v| v.outcome()),
    );
    assert_unavailable(
        &format!("create ({when})"),
        store
            .create(NewKey::new("during-outage"))
            .map(|c| c.info().id()),
    );
    assert_unavailable(
        &format!("list ({when})"),
        store.list(&ListFilter::new()).map(|l| l.len()),
    );
}

#[test]
fn cached_keys_outlive_an_outage_for_max_staleness_then_fail_closed() {
    let location = common::pg_plain_location();
    let options = || {
        common::options()
            .refresh_interval(REFRESH)
            .max_staleness(MAX_STALENESS)
    };
    let store = KeyStore::open(&location, options()).unwrap();
    // Another handle (as another host would hold), to see the revoke after the outage.
    let other = KeyStore::open(&location, options()).unwrap();
    let created = store.create(NewKey::new("outage")).unwrap();
    let key = created.key().to_owned();
    let id = created.info().id();
    assert_eq!(other.verify(&key, &[]).unwrap().outcome(), Outcome::Valid);

    // Warm the key (cached, view synced); the last sync is at most REFRESH before this start.
    let warm_us = support::unix_us();
    assert_eq!(store.verify(&key, &[]).unwrap().outcome(), Outcome::Valid);

    let mut guard = ServerBack { stopped: true };
    ctl("stop").unwrap();
    let stopped_us = support::unix_us();

    // Every verify that returned before this must be valid (the store read its clock before
    // it returned, and the last sync was at or after warm_us - REFRESH).
    let valid_until_us = warm_us + us(MAX_STALENESS) - us(MARGIN);
    // Every verify that started after this must fail (the last sync was before the stop).
    let failing_from_us = stopped_us + us(MAX_STALENESS) + us(REFRESH) + us(MARGIN);

    check_calls_during_outage(&store, &key, "just after the stop");

    let deadline = Instant::now() + support::EVENTUALLY + MAX_STALENESS;
    let mut observations: Vec<(i64, i64, Result<Outcome, ErrorKind>)> = Vec::new();
    let mut errors_after_bound = 0;
    let mut messages = Vec::new();
    while errors_after_bound < 20 {
        let start = support::unix_us();
        let result = store.verify(&key, &[]);
        let end = support::unix_us();
        let result = match result {
            Ok(v) => Ok(v.outcome()),
            Err(e) => {
                if messages.is_empty() {
                    messages.push(e.to_string());
                }
                Err(e.kind())
            }
        };
        if start > failing_from_us && result.is_err() {
            errors_after_bound += 1;
        }
        observations.push((start, end, result));
        assert!(
            Instant::now() < deadline,
            "verify never failed after max_staleness"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut problems = Vec::new();
    for &(start, end, result) in &observations {
        let at = |t: i64| (t - stopped_us) as f64 / 1e3;
        match result {
            Ok(Outcome::Valid) => {}
            Ok(other) => problems.push(format!(
                "a verify started {:.1} ms after the stop answered {other:?}: an outage must \
                 never become an outcome about the key",
                at(start)
            )),
            Err(kind) if kind != ErrorKind::Unavailable => problems.push(format!(
                "a verify started {:.1} ms after the stop failed with kind {kind:?}, not \
                 Unavailable",
                at(start)
            )),
            Err(_) => {}
        }
        if end < valid_until_us && result != Ok(Outcome::Valid) {
            problems.push(format!(
                "a verify that returned {:.1} ms after the stop (within max_staleness of the \
                 last sync) answered {result:?}, not valid",
                at(end)
            ));
        }
        if start > failing_from_us && result.is_ok() {
            problems.push(format!(
                "a verify started {:.1} ms after the stop (past max_staleness) answered \
                 {result:?}: cached keys must no longer be trusted",
                at(start)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", support::first_lines(&problems));
    let valid = observations
        .iter()
        .filter(|o| o.2 == Ok(Outcome::Valid))
        .count();
    let last_valid_ms = observations
        .iter()
        .filter(|o| o.2 == Ok(Outcome::Valid))
        .map(|o| (o.0 - stopped_us) as f64 / 1e3)
        .fold(f64::NAN, f64::max);
    println!(
        "outage: {} verifies, {valid} valid (the last started {last_valid_ms:.0} ms after the \
         stop), then unavailable: {}",
        observations.len(),
        messages.first().map(String::as_str).unwrap_or("")
    );
    assert!(
        messages.iter().all(|m| !m.contains(&key)),
        "an error message holds the key"
    );

    check_calls_during_outage(&store, &key, "after max_staleness");

    ctl("start").unwrap();
    guard.stopped = false;

    // Back: valid again (errors of kind Unavailable only while reconnecting).
    let deadline = Instant::now() + support::EVENTUALLY;
    loop {
        match store.verify(&key, &[]) {
            Ok(v) if v.outcome() == Outcome::Valid => break,
            Ok(v) => panic!("after the restart the key answered {:?}", v.outcome()),
            Err(e) if e.kind() == ErrorKind::Unavailable => {}
            Err(e) => panic!("after the restart verify failed with {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the key never verified again after the restart"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + support::EVENTUALLY;
    let revoked = loop {
        match store.revoke(id) {
            Ok(info) => break info,
            Err(e) if e.kind() == ErrorKind::Unavailable => {}
            Err(e) => panic!("revoke after the restart failed with {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "revoke never worked after the restart"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(revoked.status(), keystead::KeyStatus::Revoked);
    assert_eq!(
        store.verify(&key, &[]).unwrap().outcome(),
        Outcome::Revoked,
        "the handle that revoked must see it at once"
    );
    let deadline = Instant::now() + support::EVENTUALLY;
    loop {
        match other.verify(&key, &[]) {
            Ok(v) if v.outcome() == Outcome::Revoked => break,
            Ok(v) => assert_eq!(v.outcome(), Outcome::Valid, "the other handle"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Unavailable, "the other handle: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the other handle never saw the revoke"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        store
            .list(&ListFilter::new())
            .unwrap()
            .iter()
            .map(|k| k.id())
            .collect::<Vec<_>>(),
        vec![id],
        "nothing created during the outage"
    );
}
