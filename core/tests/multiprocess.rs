//! Many processes on one file (MultiWriter): four children re-run this test binary and, for a
//! bounded time, mix verify (right and wrong keys), create, revoke and flush on one store.
//!
//! Checked: no call fails in any process; the usage counters in the store equal, key by key,
//! the valid verifies the processes counted; and a revocation made by one process is seen by
//! every other within `refresh_interval` plus a margin (docs/storage.md, "Read path and
//! staleness"), and never undone. The run lasts 3 s by default (`KEYSTEAD_MULTIPROCESS_SECS`
//! or `KEYSTEAD_RELIABILITY_SCALE` for longer).

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
/// Scheduling slack on a busy 2-core machine (four writers fsync'ing in debug builds): the
/// time between two looks at the revoked key, plus being descheduled.
const MARGIN: Duration = Duration::from_millis(400);

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

/// One child: mixed operations until the deadline, then a report on stdout.
#[test]
fn multiprocess_child_role() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
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
    let mut seen_revoked: Vec<Option<i64>> = vec![None; victims.len()];
    let mut ops = 0u64;
    let revoke_at = start_at + duration_us * (25 + 15 * me as i64) / 100;
    let mut revoked_mine = false;
    let end = start_at + duration_us;
    while support::unix_us() < start_at {
        std::thread::sleep(Duration::from_millis(1));
    }
    while support::unix_us() < end {
        // Look at every victim each round: once revoked (by whichever process), never valid.
        for (j, victim) in victims.iter().enumerate() {
            let outcome = store
                .verify(victim, &scope)
                .expect("verify victim")
                .outcome();
            ops += 1;
            match (outcome, seen_revoked[j]) {
                (Outcome::Valid, None) => *valid_uses.entry(id_of(victim)).or_default() += 1,
                (Outcome::Revoked, None) => seen_revoked[j] = Some(support::unix_us()),
                (Outcome::Revoked, Some(_)) => {}
                (other, seen) => panic!("victim {j}: {other:?} (revoked seen at {seen:?})"),
            }
        }
        if !revoked_mine && support::unix_us() >= revoke_at {
            let before = support::unix_us();
            store
                .revoke(id_of(&victims[me]).parse::<KeyId>().unwrap())
                .expect("revoke victim");
            let after = support::unix_us();
            println!("REVOKED {me} {before} {after}");
            // Same handle: the very next verify.
            assert_eq!(
                store.verify(&victims[me], &scope).unwrap().outcome(),
                Outcome::Revoked
            );
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
    store.close().expect("close");
    for (j, seen) in seen_revoked.iter().enumerate() {
        if let Some(at) = seen {
            println!("SAW {j} {at}");
        }
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
    let mut revoked_at: HashMap<usize, i64> = HashMap::new();
    let mut saw: Vec<(usize, usize, i64)> = Vec::new();
    let (mut ops, mut own) = (0u64, 0u64);
    for (i, out) in outputs.iter().enumerate() {
        for line in out.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.first().copied() {
                Some("USES") => {
                    *reported.entry(f[1].to_owned()).or_default() += f[2].parse::<u64>().unwrap()
                }
                Some("REVOKED") => {
                    revoked_at.insert(f[1].parse().unwrap(), f[2].parse().unwrap());
                }
                Some("SAW") => saw.push((i, f[1].parse().unwrap(), f[2].parse().unwrap())),
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

    // Revocations: every other process saw each one within the bound.
    assert_eq!(revoked_at.len(), CHILDREN, "every child revoked its victim");
    let mut worst = Duration::ZERO;
    let mut latencies = Vec::new();
    for j in 0..CHILDREN {
        for i in (0..CHILDREN).filter(|&i| i != j) {
            let at = saw
                .iter()
                .find(|(who, victim, _)| *who == i && *victim == j)
                .map(|s| s.2)
                .unwrap_or_else(|| panic!("process {i} never saw the revoke by process {j}"));
            let latency = Duration::from_micros((at - revoked_at[&j]).max(0) as u64);
            worst = worst.max(latency);
            latencies.push(latency);
        }
    }
    let (min, median, max) = support::summary_ms(&latencies);
    println!(
        "multiprocess: {CHILDREN} processes for {secs} s: {ops} operations ({own} keys created), \
         {total_reported} valid verifies reported = {in_store} counted in the store over {} keys; \
         cross-process revocation latency (refresh {REFRESH:?}), from the start of the revoke \
         call: min {min:.1} ms, median {median:.1} ms, max {max:.1} ms over {} observations",
        keys.len(),
        latencies.len()
    );
    assert!(
        worst <= REFRESH + MARGIN,
        "a revocation took {worst:?} to reach another process (bound {:?})",
        REFRESH + MARGIN
    );
    store.close().unwrap();
    assert!(KeyStore::check_integrity(&path).unwrap());
}
