//! How soon a revocation takes effect (docs/storage.md, "Read path and staleness"):
//!
//! - through the `KeyStore` that revoked: the very next verify;
//! - through another `KeyStore` on the file, in this process or another: every verify that
//!   *starts* more than `refresh_interval` after `revoke` returned refuses the key.
//!
//! The second rule is checked on every observation (the start time and outcome of each
//! verify), not on how long the revocation took to show: that holds however slow or loaded the
//! machine is, and fails if the refresh mechanism breaks. The revoke is issued at a random point
//! of the other handle's snapshot age, so the worst case (a snapshot taken just before the
//! revoke) is sampled. The measured latencies are printed (`--nocapture`; figures in
//! BENCHMARKS.md); `KEYSTEAD_RELIABILITY_SCALE` for more trials.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Options, Outcome};
use support::Rng;

const CHILD_ENV: &str = "KEYSTEAD_LATENCY_CHILD";

/// The documented default `refresh_interval`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(1);

/// Test options; the default refresh interval is left to the library, not restated.
fn options(refresh: Duration) -> Options {
    let options = Options::new().flush_interval(Duration::ZERO);
    if refresh == DEFAULT_REFRESH {
        options
    } else {
        options.refresh_interval(refresh)
    }
}

/// One trial: the revoke (µs since the epoch, just before the call and just after it
/// returned), the start times of the other handle's verifies that still answered `valid`, and
/// when its first `revoked` answer returned.
struct Trial {
    revoke_called_us: i64,
    revoke_returned_us: i64,
    valid_starts: Vec<i64>,
    first_revoked_us: i64,
}

/// Checks the staleness rule on every trial, then prints the measured latencies (from the
/// revoke call to the first `revoked` answer): figures, not assertions.
fn check_and_report(what: &str, refresh: Duration, trials: &[Trial]) {
    let mut violations = Vec::new();
    for (i, t) in trials.iter().enumerate() {
        violations.extend(support::staleness_violations(
            &format!("{what}, trial {i}"),
            t.revoke_returned_us,
            refresh,
            &t.valid_starts,
        ));
    }
    let latencies: Vec<Duration> = trials
        .iter()
        .map(|t| Duration::from_micros((t.first_revoked_us - t.revoke_called_us).max(0) as u64))
        .collect();
    let (min, median, max) = support::summary_ms(&latencies);
    let observed: usize = trials.iter().map(|t| t.valid_starts.len() + 1).sum();
    println!(
        "revocation latency, {what}, refresh_interval {refresh:?}: {} trials, {observed} \
         verifies checked against the rule; measured min {min:.1} ms, median {median:.1} ms, \
         max {max:.1} ms",
        latencies.len(),
    );
    assert!(
        violations.is_empty(),
        "{}",
        support::first_lines(&violations)
    );
}

#[test]
fn the_revoking_handle_refuses_the_key_on_the_very_next_verify() {
    let dir = tempfile::tempdir().unwrap();
    // An hour-long refresh interval: only the handle's own write can make the change visible.
    let store = KeyStore::open(
        dir.path().join("k.redb"),
        options(Duration::from_secs(3600)),
    )
    .unwrap();
    let trials = support::scaled("KEYSTEAD_LATENCY_SAME_TRIALS", 50);
    let mut revoke_times = Vec::new();
    for i in 0..trials {
        let created = store.create(NewKey::new(format!("k{i}"))).unwrap();
        // Warm the snapshot and the record cache with the key valid.
        for _ in 0..3 {
            assert!(store.verify(created.key(), &[]).unwrap().is_valid());
        }
        let start = Instant::now();
        store.revoke(created.info().id()).unwrap();
        let next = store.verify(created.key(), &[]).unwrap().outcome();
        revoke_times.push(start.elapsed());
        assert_eq!(next, Outcome::Revoked, "trial {i}: the very next verify");
    }
    let (min, median, max) = support::summary_ms(&revoke_times);
    println!(
        "revocation latency, same handle: {trials}/{trials} refused on the very next verify \
         (revoke call + that verify: min {min:.1} ms, median {median:.1} ms, max {max:.1} ms)"
    );
}

/// Revokes through `writer` at a random point of `reader`'s snapshot age and records what
/// `reader` answers until it refuses the key.
fn measure_in_process(refresh: Duration, trials: usize, rng: &mut Rng) -> Vec<Trial> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let writer = KeyStore::open(&path, options(refresh)).unwrap();
    let reader = KeyStore::open(&path, options(refresh)).unwrap();
    let mut out = Vec::new();
    for i in 0..trials {
        let created = writer.create(NewKey::new(format!("k{i}"))).unwrap();
        let created_us = support::unix_us();
        let seen = support::poll_until(&reader, created.key(), Outcome::NotFound, Outcome::Valid);
        support::assert_staleness_rule("a new key", created_us, refresh, &seen.old_starts);
        std::thread::sleep(Duration::from_micros(
            rng.below(refresh.as_micros() as u64 + 1),
        ));
        let revoke_called_us = support::unix_us();
        writer.revoke(created.info().id()).unwrap();
        let revoke_returned_us = support::unix_us();
        let seen = support::poll_until(&reader, created.key(), Outcome::Valid, Outcome::Revoked);
        out.push(Trial {
            revoke_called_us,
            revoke_returned_us,
            valid_starts: seen.old_starts,
            first_revoked_us: seen.first_new_end_us,
        });
    }
    out
}

#[test]
fn another_handle_in_this_process_refuses_the_key_after_the_refresh_interval() {
    let (mut rng, _) = Rng::from_env();
    let refresh = DEFAULT_REFRESH;
    let trials = measure_in_process(
        refresh,
        support::scaled("KEYSTEAD_LATENCY_TRIALS", 2),
        &mut rng,
    );
    check_and_report("second handle, same process", refresh, &trials);
    let refresh = Duration::from_millis(100);
    let trials = measure_in_process(
        refresh,
        support::scaled("KEYSTEAD_LATENCY_TRIALS", 8),
        &mut rng,
    );
    check_and_report("second handle, same process", refresh, &trials);
}

/// The child: for each key in turn (a line on stdin: the key and when its create returned),
/// waits until it verifies, reports READY, then polls until it is revoked and reports when the
/// first `revoked` answer returned and the start time of every verify that answered `valid`.
#[test]
#[ignore = "a child role, not a test: another_process_refuses_the_key_after_the_refresh_interval runs it in a subprocess"]
fn latency_child_role() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        panic!("a child role, not a test: another_process_refuses_the_key_after_the_refresh_interval runs it with {} set", CHILD_ENV);
    };
    let refresh = Duration::from_millis(
        std::env::var("KEYSTEAD_LATENCY_REFRESH_MS")
            .unwrap()
            .parse()
            .unwrap(),
    );
    let store = KeyStore::open(&path, options(refresh)).unwrap();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let (key, created_us) = line.split_once(' ').unwrap();
        let created_us: i64 = created_us.parse().unwrap();
        let seen = support::poll_until(&store, key, Outcome::NotFound, Outcome::Valid);
        support::assert_staleness_rule("a new key", created_us, refresh, &seen.old_starts);
        writeln!(out, "READY").unwrap();
        out.flush().unwrap();
        let seen = support::poll_until(&store, key, Outcome::Valid, Outcome::Revoked);
        let starts: Vec<String> = seen.old_starts.iter().map(i64::to_string).collect();
        writeln!(out, "SEEN {} {}", seen.first_new_end_us, starts.join(",")).unwrap();
        out.flush().unwrap();
    }
}

fn measure_across_processes(refresh: Duration, trials: usize, rng: &mut Rng) -> Vec<Trial> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let writer = KeyStore::open(&path, options(refresh)).unwrap();
    let mut child = support::role_command("latency_child_role")
        .env(CHILD_ENV, &path)
        .env(
            "KEYSTEAD_LATENCY_REFRESH_MS",
            refresh.as_millis().to_string(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = |want: &str| loop {
        let line = lines.next().expect("the child ended early").unwrap();
        if let Some(rest) = line.strip_prefix(want) {
            return rest.trim().to_owned();
        }
    };
    let mut out = Vec::new();
    for i in 0..trials {
        let created = writer.create(NewKey::new(format!("k{i}"))).unwrap();
        writeln!(stdin, "{} {}", created.key(), support::unix_us()).unwrap();
        stdin.flush().unwrap();
        next_line("READY");
        std::thread::sleep(Duration::from_micros(
            rng.below(refresh.as_micros() as u64 + 1),
        ));
        let revoke_called_us = support::unix_us();
        writer.revoke(created.info().id()).unwrap();
        let revoke_returned_us = support::unix_us();
        let seen = next_line("SEEN");
        let mut fields = seen.split(' ');
        let first_revoked_us: i64 = fields.next().unwrap().parse().unwrap();
        let valid_starts = fields
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        out.push(Trial {
            revoke_called_us,
            revoke_returned_us,
            valid_starts,
            first_revoked_us,
        });
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    out
}

#[test]
fn another_process_refuses_the_key_after_the_refresh_interval() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let (mut rng, _) = Rng::from_env();
    let refresh = DEFAULT_REFRESH;
    let trials = measure_across_processes(
        refresh,
        support::scaled("KEYSTEAD_LATENCY_TRIALS", 2),
        &mut rng,
    );
    check_and_report("other process", refresh, &trials);
    let refresh = Duration::from_millis(100);
    let trials = measure_across_processes(
        refresh,
        support::scaled("KEYSTEAD_LATENCY_TRIALS", 8),
        &mut rng,
    );
    check_and_report("other process", refresh, &trials);
}

/// Several threads verify through one handle while another handle revokes: the rule holds for
/// every thread, including those that find the view stale while another thread is refreshing
/// it (they wait for that refresh rather than use the stale view).
#[test]
fn every_thread_of_another_handle_refuses_the_key_after_the_refresh_interval() {
    let (mut rng, _) = Rng::from_env();
    let refresh = Duration::from_millis(20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let writer = KeyStore::open(&path, options(refresh)).unwrap();
    let reader = KeyStore::open(&path, options(refresh)).unwrap();
    let threads = 4;
    let mut trials = Vec::new();
    for i in 0..support::scaled("KEYSTEAD_LATENCY_TRIALS", 8) {
        let created = writer.create(NewKey::new(format!("k{i}"))).unwrap();
        let created_us = support::unix_us();
        let seen = support::poll_until(&reader, created.key(), Outcome::NotFound, Outcome::Valid);
        support::assert_staleness_rule("a new key", created_us, refresh, &seen.old_starts);
        std::thread::sleep(Duration::from_micros(
            rng.below(refresh.as_micros() as u64 + 1),
        ));
        let (revoke_called_us, revoke_returned_us, seen) = std::thread::scope(|scope| {
            let pollers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        support::poll_until(
                            &reader,
                            created.key(),
                            Outcome::Valid,
                            Outcome::Revoked,
                        )
                    })
                })
                .collect();
            let called = support::unix_us();
            writer.revoke(created.info().id()).unwrap();
            let returned = support::unix_us();
            let seen: Vec<_> = pollers.into_iter().map(|p| p.join().unwrap()).collect();
            (called, returned, seen)
        });
        for s in seen {
            trials.push(Trial {
                revoke_called_us,
                revoke_returned_us,
                valid_starts: s.old_starts,
                first_revoked_us: s.first_new_end_us,
            });
        }
    }
    check_and_report("4 threads of a second handle", refresh, &trials);
}
