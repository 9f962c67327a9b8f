//! How soon a revocation takes effect (docs/storage.md, "Read path and staleness"):
//!
//! - through the `KeyStore` that revoked: the very next verify;
//! - through another `KeyStore` on the file, in this process or another: within
//!   `refresh_interval` (default 1 s) plus one verify.
//!
//! Latency is measured from just before the `revoke` call (so it includes the commit) to the
//! first verify that returns `revoked`, while the other handle polls every millisecond. The
//! revoke is issued at a random point of the other handle's snapshot age, so the worst case
//! (a snapshot taken just before the revoke) is sampled. Run with `--nocapture` for the
//! figures; `KEYSTEAD_RELIABILITY_SCALE` for more trials.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Options, Outcome};
use support::Rng;

/// Scheduling slack on a busy machine, on top of the documented bound.
const MARGIN: Duration = Duration::from_millis(300);
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

fn report(what: &str, refresh: Duration, latencies: &[Duration]) {
    let (min, median, max) = support::summary_ms(latencies);
    println!(
        "revocation latency, {what}, refresh_interval {refresh:?}: {} trials, min {min:.1} ms, \
         median {median:.1} ms, max {max:.1} ms (bound {:?} + one verify)",
        latencies.len(),
        refresh
    );
    for latency in latencies {
        assert!(
            *latency <= refresh + MARGIN,
            "{what}: a revocation took {latency:?} (refresh_interval {refresh:?})"
        );
    }
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

/// Revokes through `writer` at a random point of `reader`'s snapshot age and measures how long
/// `reader` keeps accepting the key.
fn measure_in_process(refresh: Duration, trials: usize, rng: &mut Rng) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let writer = KeyStore::open(&path, options(refresh)).unwrap();
    let reader = KeyStore::open(&path, options(refresh)).unwrap();
    let mut latencies = Vec::new();
    for i in 0..trials {
        let created = writer.create(NewKey::new(format!("k{i}"))).unwrap();
        support::within(refresh * 3 + Duration::from_secs(2), || {
            reader.verify(created.key(), &[]).unwrap().is_valid()
        })
        .expect("the reader sees the new key");
        std::thread::sleep(Duration::from_micros(
            rng.below(refresh.as_micros() as u64 + 1),
        ));
        assert!(reader.verify(created.key(), &[]).unwrap().is_valid());
        let start = Instant::now();
        writer.revoke(created.info().id()).unwrap();
        loop {
            let outcome = reader.verify(created.key(), &[]).unwrap().outcome();
            if outcome == Outcome::Revoked {
                break;
            }
            assert_eq!(outcome, Outcome::Valid);
            assert!(
                start.elapsed() < refresh * 5 + Duration::from_secs(5),
                "the reader never saw the revoke"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(start.elapsed());
    }
    latencies
}

#[test]
fn another_handle_in_this_process_refuses_the_key_within_the_refresh_interval() {
    let (mut rng, _) = Rng::from_env();
    let refresh = DEFAULT_REFRESH;
    let latencies = measure_in_process(
        refresh,
        support::scaled("KEYSTEAD_LATENCY_TRIALS", 2),
        &mut rng,
    );
    report("second handle, same process", refresh, &latencies);
    let refresh = Duration::from_millis(100);
    let latencies = measure_in_process(
        refresh,
        support::scaled("KEYSTEAD_LATENCY_TRIALS", 8),
        &mut rng,
    );
    report("second handle, same process", refresh, &latencies);
}

/// The child: for each key in turn, verifies it (valid) until told it is ready, then polls
/// until it is revoked and reports when it saw that.
#[test]
fn latency_child_role() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
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
        let key = line.unwrap();
        support::within(refresh * 3 + Duration::from_secs(2), || {
            store.verify(&key, &[]).unwrap().is_valid()
        })
        .expect("the child sees the new key");
        writeln!(out, "READY").unwrap();
        out.flush().unwrap();
        let start = Instant::now();
        loop {
            let outcome = store.verify(&key, &[]).unwrap().outcome();
            if outcome == Outcome::Revoked {
                break;
            }
            assert_eq!(outcome, Outcome::Valid);
            assert!(start.elapsed() < refresh * 5 + Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        writeln!(out, "SEEN {}", support::unix_us()).unwrap();
        out.flush().unwrap();
    }
}

fn measure_across_processes(refresh: Duration, trials: usize, rng: &mut Rng) -> Vec<Duration> {
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
    let mut latencies = Vec::new();
    for i in 0..trials {
        let created = writer.create(NewKey::new(format!("k{i}"))).unwrap();
        writeln!(stdin, "{}", created.key()).unwrap();
        stdin.flush().unwrap();
        next_line("READY");
        std::thread::sleep(Duration::from_micros(
            rng.below(refresh.as_micros() as u64 + 1),
        ));
        let start = support::unix_us();
        writer.revoke(created.info().id()).unwrap();
        let seen: i64 = next_line("SEEN").parse().unwrap();
        latencies.push(Duration::from_micros((seen - start).max(0) as u64));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    latencies
}

#[test]
fn another_process_refuses_the_key_within_the_refresh_interval() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let (mut rng, _) = Rng::from_env();
    let refresh = DEFAULT_REFRESH;
    let latencies = measure_across_processes(
        refresh,
        support::scaled("KEYSTEAD_LATENCY_TRIALS", 2),
        &mut rng,
    );
    report("other process", refresh, &latencies);
    let refresh = Duration::from_millis(100);
    let latencies = measure_across_processes(
        refresh,
        support::scaled("KEYSTEAD_LATENCY_TRIALS", 8),
        &mut rng,
    );
    report("other process", refresh, &latencies);
}
