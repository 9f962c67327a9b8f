//! Many processes on one file (MultiWriter): four children re-run this test binary and, for a
//! bounded time, mix verify (right and wrong keys), create, revoke and flush on one store.
//!
//! Checked: no call fails in any process; the usage counters in the store equal, key by key,
//! the valid verifies the processes counted; and a revocation made by one process holds in
//! every other by the staleness rule of docs/storage.md ("Read path and staleness"): no verify
//! that *started* more than `refresh_interval` after the revoke returned answers `valid`, and
//! once a process saw it revoked it never sees it valid again. Each child keeps checking every
//! victim after its timed phase until it has seen all of them revoked, so the rule is exercised
//! however slow the machine. Latencies are printed, not asserted. The run lasts 3 s by default
//! (`KEYSTEAD_MULTIPROCESS_SECS` or `KEYSTEAD_RELIABILITY_SCALE` for longer).

mod common;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use keystead::{KeyId, KeyStore, ListFilter, NewKey, Options, Outcome};
use support::Rng;

const CHILD_ENV: &str = "KEYSTEAD_MP_CHILD";
const CHILDREN: usize = 4;
/// The children's refresh interval: the documented bound for seeing another process's change.
const REFRESH: Duration = Duration::from_millis(100);

fn child_options() -> Options {
    Options::new()
        .refresh_interval(REFRESH)
        .flush_interval(Duration::from_millis(250))
        .actor(format!("mp-child-{}", std::process::id()))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

fn id_of(key: &str) -> String {
    keystead::parse_key(key).unwrap().id.to_string()
}

/// What one child saw of the victims (keys that each child revokes once).
struct Watch {
    /// When each victim first answered `revoked` here (µs since the epoch).
    seen_revoked: Vec<Option<i64>>,
    /// The start time of the latest verify of each victim that answered `valid`.
    last_valid_start: Vec<Option<i64>>,
}

impl Watch {
    /// Verifies victim `j`: valid until it shows revoked, then never valid again.
    fn look(
        &mut self,
        store: &KeyStore,
        victims: &[String],
        j: usize,
        valid_uses: &mut HashMap<String, u64>,
    ) {
        let started = support::unix_us();
        let outcome = store
            .verify(&victims[j], &["chat:completions"])
            .expect("verify victim")
            .outcome();
        match (outcome, self.seen_revoked[j]) {
            (Outcome::Valid, None) => {
                *valid_uses.entry(id_of(&victims[j])).or_default() += 1;
                self.last_valid_start[j] = Some(started);
            }
            (Outcome::Revoked, None) => self.seen_revoked[j] = Some(support::unix_us()),
            (Outcome::Revoked, Some(_)) => {}
            (other, seen) => panic!("victim {j}: {other:?} (revoked seen at {seen:?})"),
        }
    }
}

/// Revokes this child's victim and reports when the call was made and when it returned.
fn revoke_mine(store: &KeyStore, me: usize, victim: &str) {
    let before = support::unix_us();
    store
        .revoke(id_of(victim).parse::<KeyId>().unwrap())
        .expect("revoke victim");
    let after = support::unix_us();
    println!("REVOKED {me} {before} {after}");
    // Same handle: the very next verify.
    assert_eq!(
        store
            .verify(victim, &["chat:completions"])
            .unwrap()
            .outcome(),
        Outcome::Revoked
    );
}

/// One child: mixed operations until the deadline, then a report on stdout.
#[test]
#[ignore = "a child role, not a test: four_processes_share_one_store runs it in a subprocess"]
fn multiprocess_child_role() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        panic!(
            "a child role, not a test: four_processes_share_one_store runs it with {} set",
            CHILD_ENV
        );
    };
    let me: usize = env("KEYSTEAD_MP_INDEX").parse().unwrap();
    let shared: Vec<String> = env("KEYSTEAD_MP_SHARED")
        .split(',')
        .map(str::to_owned)
        .collect();
    let victims: Vec<String> = env("KEYSTEAD_MP_VICTIMS")
        .split(',')
        .map(str::to_owned)
        .collect();
    let start_at: i64 = env("KEYSTEAD_MP_START_US").parse().unwrap();
    let duration_us: i64 = env("KEYSTEAD_MP_DURATION_US").parse().unwrap();
    let mut rng = Rng::new(env("KEYSTEAD_MP_SEED").parse().unwrap());
    let store = KeyStore::open(&path, child_options()).expect("open");
    let scope = ["chat:completions"];

    let mut valid_uses: HashMap<String, u64> = HashMap::new();
    let mut own: Vec<(String, String, bool)> = Vec::new(); // (id, key, revoked)
    let mut watch = Watch {
        seen_revoked: vec![None; victims.len()],
        last_valid_start: vec![None; victims.len()],
    };
    let mut ops = 0u64;
    let revoke_at = start_at + duration_us * (25 + 15 * me as i64) / 100;
    let mut revoked_mine = false;
    let end = start_at + duration_us;
    while support::unix_us() < start_at {
        std::thread::sleep(Duration::from_millis(1));
    }
    while support::unix_us() < end {
        // Look at every victim each round: once revoked (by whichever process), never valid.
        for j in 0..victims.len() {
            watch.look(&store, &victims, j, &mut valid_uses);
            ops += 1;
        }
        if !revoked_mine && support::unix_us() >= revoke_at {
            revoke_mine(&store, me, &victims[me]);
            ops += 2;
            revoked_mine = true;
        }
        let roll = rng.below(100);
        ops += 1;
        if roll < 55 {
            let key = rng.pick(&shared).unwrap();
            let v = store
                .verify_header(format!("Bearer {key}"), &scope)
                .expect("verify");
            assert_eq!(v.outcome(), Outcome::Valid);
            *valid_uses.entry(id_of(key)).or_default() += 1;
        } else if roll < 65 {
            let key = rng.pick(&shared).unwrap();
            let wrong = if rng.chance(50) {
                common::wrong_secret(key)
            } else {
                common::unknown_id(key)
            };
            assert_eq!(
                store.verify(&wrong, &scope).expect("verify").outcome(),
                Outcome::NotFound
            );
        } else if roll < 75 {
            let created = store
                .create(NewKey::new(format!("mp-{me}")).scopes(scope))
                .expect("create");
            // Its own write is seen at once.
            assert!(store.verify(created.key(), &scope).unwrap().is_valid());
            *valid_uses
                .entry(created.info().id().to_string())
                .or_default() += 1;
            own.push((
                created.info().id().to_string(),
                created.key().to_owned(),
                false,
            ));
        } else if roll < 80 {
            if let Some(i) = (!own.is_empty()).then(|| rng.below(own.len() as u64) as usize) {
                if !own[i].2 {
                    store
                        .revoke(own[i].0.parse::<KeyId>().unwrap())
                        .expect("revoke");
                    own[i].2 = true;
                    assert_eq!(
                        store.verify(&own[i].1, &scope).unwrap().outcome(),
                        Outcome::Revoked
                    );
                }
            }
        } else if roll < 90 {
            store.flush().expect("flush");
        } else if let Some((id, key, revoked)) = rng.pick(&own) {
            let outcome = store.verify(key, &scope).expect("verify").outcome();
            if *revoked {
                assert_eq!(outcome, Outcome::Revoked);
            } else {
                assert_eq!(outcome, Outcome::Valid);
                *valid_uses.entry(id.clone()).or_default() += 1;
            }
        }
    }
    // A child descheduled through its revoke time revokes now, so every victim is revoked.
    if !revoked_mine {
        revoke_mine(&store, me, &victims[me]);
        ops += 2;
    }
    // Keep looking until every victim showed revoked: the rule is then exercised for every
    // (process, victim) pair, whatever the scheduling was.
    let deadline = std::time::Instant::now() + support::EVENTUALLY;
    while watch.seen_revoked.iter().any(Option::is_none) {
        assert!(
            std::time::Instant::now() < deadline,
            "some revocations never showed in {:?}",
            support::EVENTUALLY
        );
        for j in 0..victims.len() {
            if watch.seen_revoked[j].is_none() {
                watch.look(&store, &victims, j, &mut valid_uses);
                ops += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    store.close().expect("close");
    for j in 0..victims.len() {
        println!(
            "SAW {j} {} {}",
            watch.seen_revoked[j].unwrap(),
            watch.last_valid_start[j].unwrap_or(i64::MIN)
        );
    }
    for (id, n) in &valid_uses {
        println!("USES {id} {n}");
    }
    println!("OPS {ops} OWN {}", own.len());
}

#[test]
fn four_processes_share_one_store() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let secs = support::scaled("KEYSTEAD_MULTIPROCESS_SECS", 3);
    let (mut rng, seed) = Rng::from_env();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.redb");
    let store = KeyStore::open(&path, Options::new()).unwrap();
    let make = |prefix: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                store
                    .create(NewKey::new(format!("{prefix}-{i}")).scopes(["chat:completions"]))
                    .unwrap()
                    .key()
                    .to_owned()
            })
            .collect()
    };
    let shared = make("shared", 6);
    let victims = make("victim", CHILDREN);
    store.close().unwrap();

    let start_at = support::unix_us() + 700_000;
    let children: Vec<_> = (0..CHILDREN)
        .map(|i| {
            support::spawn_role(
                "multiprocess_child_role",
                &[
                    (CHILD_ENV, path.display().to_string()),
                    ("KEYSTEAD_MP_INDEX", i.to_string()),
                    ("KEYSTEAD_MP_SHARED", shared.join(",")),
                    ("KEYSTEAD_MP_VICTIMS", victims.join(",")),
                    ("KEYSTEAD_MP_START_US", start_at.to_string()),
                    (
                        "KEYSTEAD_MP_DURATION_US",
                        (secs as i64 * 1_000_000).to_string(),
                    ),
                    ("KEYSTEAD_MP_SEED", rng.next_u64().to_string()),
                ],
                false,
            )
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .enumerate()
        .map(|(i, child)| {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "child {i} failed (seed {seed}): {stdout}"
            );
            stdout
        })
        .collect();

    let mut reported: HashMap<String, u64> = HashMap::new();
    // victim -> (revoke called, revoke returned), µs since the epoch.
    let mut revoked_at: HashMap<usize, (i64, i64)> = HashMap::new();
    // (process, victim, first seen revoked, start of the last verify that answered valid).
    let mut saw: Vec<(usize, usize, i64, i64)> = Vec::new();
    let (mut ops, mut own) = (0u64, 0u64);
    for (i, out) in outputs.iter().enumerate() {
        for line in out.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.first().copied() {
                Some("USES") => {
                    *reported.entry(f[1].to_owned()).or_default() += f[2].parse::<u64>().unwrap()
                }
                Some("REVOKED") => {
                    revoked_at.insert(
                        f[1].parse().unwrap(),
                        (f[2].parse().unwrap(), f[3].parse().unwrap()),
                    );
                }
                Some("SAW") => saw.push((
                    i,
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                )),
                Some("OPS") => {
                    ops += f[1].parse::<u64>().unwrap();
                    own += f[3].parse::<u64>().unwrap();
                }
                _ => {}
            }
        }
    }

    // Usage: the store's counters are exactly the valid verifies the processes did.
    let store = KeyStore::open(&path, Options::new()).unwrap();
    let keys = store.list(&ListFilter::new()).unwrap();
    assert_eq!(keys.len(), shared.len() + victims.len() + own as usize);
    let mut in_store = 0u64;
    for key in &keys {
        let expected = reported.get(&key.id().to_string()).copied().unwrap_or(0);
        assert_eq!(
            key.use_count(),
            expected,
            "key {} ({})",
            key.id(),
            key.name()
        );
        in_store += key.use_count();
    }
    let total_reported: u64 = reported.values().sum();
    assert_eq!(in_store, total_reported);

    // Revocations: every process saw every one, and by the staleness rule.
    assert_eq!(revoked_at.len(), CHILDREN, "every child revoked its victim");
    let mut violations = Vec::new();
    let mut latencies = Vec::new();
    for j in 0..CHILDREN {
        let (called, returned) = revoked_at[&j];
        for i in (0..CHILDREN).filter(|&i| i != j) {
            let &(_, _, seen, last_valid) = saw
                .iter()
                .find(|(who, victim, _, _)| *who == i && *victim == j)
                .unwrap_or_else(|| panic!("process {i} never saw the revoke by process {j}"));
            violations.extend(support::staleness_violations(
                &format!("process {i}, victim of process {j} (seed {seed})"),
                returned,
                REFRESH,
                &[last_valid],
            ));
            latencies.push(Duration::from_micros((seen - called).max(0) as u64));
        }
    }
    let (min, median, max) = support::summary_ms(&latencies);
    println!(
        "multiprocess: {CHILDREN} processes for {secs} s: {ops} operations ({own} keys created), \
         {total_reported} valid verifies reported = {in_store} counted in the store over {} keys; \
         cross-process revocation latency (refresh {REFRESH:?}), from the start of the revoke \
         call: min {min:.1} ms, median {median:.1} ms, max {max:.1} ms over {} observations \
         (measured, not asserted: the staleness rule is)",
        keys.len(),
        latencies.len()
    );
    assert!(
        violations.is_empty(),
        "{}",
        support::first_lines(&violations)
    );
    store.close().unwrap();
    assert!(KeyStore::check_integrity(&path).unwrap());
}
