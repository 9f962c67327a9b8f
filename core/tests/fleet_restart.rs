#![cfg(feature = "postgres")]
//! Fleet mode (issue 14): the PostgreSQL server is restarted while another host verifies in
//! a loop. Alone in its test binary, because a restart cuts every connection to the cluster:
//! cargo runs test binaries one after another, so no other test shares the outage.
//!
//! Host B verifies through two stores: one whose keys are cached (served from the last synced
//! state during the outage, for up to `max_staleness`) and one without a record cache (every
//! verify is a database lookup, so it meets the outage). Every answer must be `valid` or an
//! error of kind `Unavailable` — never `not_found` or another outcome about a key. After the
//! restart B reconnects (a lookup answers valid again) and a revoke by A is seen by B by the
//! staleness rule of docs/storage.md.
//!
//! Run: `bash scripts/test-postgres.sh -- cargo test -p keystead --features postgres --test fleet_restart`

mod common;
mod fleet_support;
mod support;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fleet_support::{id_of, reply, word, Host, KEYS, LOCATION, REFRESH_MS};
use keystead::{ErrorKind, KeyStore, NewKey, Options, Outcome};

const REFRESH: Duration = Duration::from_secs(1);

#[test]
#[ignore = "a child role, not a test: verifies_through_a_server_restart runs it in a subprocess"]
fn fleet_restart_host_role() {
    let location = fleet_support::child_location("fleet_restart_host_role");
    let keys = fleet_support::env_keys();
    let victim = fleet_support::env("KEYSTEAD_FLEET_VICTIM");
    let cached = KeyStore::open(&location, fleet_support::host_options()).expect("open");
    let uncached = KeyStore::open(
        &location,
        fleet_support::host_options().record_cache_entries(0),
    )
    .expect("open");
    for key in keys.iter().chain([&victim]) {
        assert_eq!(cached.verify(key, &[]).unwrap().outcome(), Outcome::Valid);
    }
    let (tx, commands) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    reply("READY");

    // Answers per (store, outcome word).
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut restarted = false;
    let mut reconnected = false;
    let mut last_valid_start = 0i64;
    let deadline = Instant::now() + support::EVENTUALLY;
    let mut i = 0usize;
    loop {
        if let Ok(command) = commands.try_recv() {
            assert_eq!(command, "RESTARTED");
            restarted = true;
        }
        // The victim, cached: valid until A revokes it (after the restart), then revoked.
        let start = support::unix_us();
        let result = cached.verify(&victim, &[]);
        let end = support::unix_us();
        *seen.entry(format!("victim {}", word(&result))).or_default() += 1;
        match result.as_ref().map(|v| v.outcome()) {
            Ok(Outcome::Valid) => last_valid_start = start,
            Ok(Outcome::Revoked) => {
                assert!(reconnected, "revoked before A revoked it");
                reply(&format!("SEEN {last_valid_start} {start} {end}"));
                break;
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {}
            _ => panic!("victim (cached store): {}", word(&result)),
        }
        // Another key through each store.
        let key = &keys[i % keys.len()];
        i += 1;
        for (name, store) in [("cached", &cached), ("uncached", &uncached)] {
            let result = store.verify(key, &[]);
            *seen.entry(format!("{name} {}", word(&result))).or_default() += 1;
            match result.as_ref().map(|v| v.outcome()) {
                Ok(Outcome::Valid) => {
                    if name == "uncached" && restarted && !reconnected {
                        reconnected = true;
                        reply("RECONNECTED");
                    }
                }
                Err(e) if e.kind() == ErrorKind::Unavailable => {}
                _ => panic!(
                    "{name} store: {} (only valid or unavailable)",
                    word(&result)
                ),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no end in {:?}",
            support::EVENTUALLY
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let counts: Vec<String> = seen.iter().map(|(k, v)| format!("{k}={v}")).collect();
    reply(&format!("COUNTS {}", counts.join(";").replace(' ', "_")));
    // The command reader still waits for QUIT.
    let _ = commands.recv_timeout(support::EVENTUALLY);
    cached.close().expect("close");
    uncached.close().expect("close");
}

#[test]
fn verifies_through_a_server_restart() {
    let ctl = std::env::var("KEYSTEAD_TEST_PG_CTL").unwrap_or_else(|_| {
        panic!(
            "KEYSTEAD_TEST_PG_CTL is not set: run this test through scripts/test-postgres.sh \
             (it starts a throwaway server this test may restart)"
        )
    });
    let location = common::pg_plain_location();
    let a = KeyStore::open(
        &location,
        Options::new()
            .flush_interval(Duration::ZERO)
            .refresh_interval(REFRESH),
    )
    .unwrap();
    let keys: Vec<String> = (0..16)
        .map(|i| {
            a.create(NewKey::new(format!("r{i}")))
                .unwrap()
                .key()
                .to_owned()
        })
        .collect();
    let victim = a.create(NewKey::new("victim")).unwrap();
    let mut b = Host::spawn(
        "fleet_restart_host_role",
        "B",
        &[
            (LOCATION, location.clone()),
            (REFRESH_MS, REFRESH.as_millis().to_string()),
            (KEYS, keys.join(",")),
            ("KEYSTEAD_FLEET_VICTIM", victim.key().to_owned()),
        ],
    );
    b.expect("READY");
    // B is verifying in its loop; restart the server under it.
    std::thread::sleep(Duration::from_millis(300));
    let restart = std::process::Command::new(&ctl)
        .arg("restart")
        .output()
        .unwrap();
    assert!(
        restart.status.success(),
        "`{ctl} restart` failed: {}",
        String::from_utf8_lossy(&restart.stderr)
    );
    b.send("RESTARTED");
    b.expect("RECONNECTED");

    // A's connections were cut too: its revoke may fail as unavailable until it reconnects
    // (never with another error). Revoking twice changes nothing.
    let deadline = Instant::now() + support::EVENTUALLY;
    let mut unavailable = 0;
    loop {
        match a.revoke(id_of(victim.key())) {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::Unavailable => unavailable += 1,
            Err(e) => panic!("revoke after the restart: {e}"),
        }
        assert!(Instant::now() < deadline, "A never reconnected");
        std::thread::sleep(Duration::from_millis(50));
    }
    let returned = support::unix_us();
    let seen: Vec<i64> = b
        .expect("SEEN")
        .iter()
        .map(|w| w.parse().unwrap())
        .collect();
    let counts = b.expect("COUNTS").join(" ");
    b.finish();
    eprintln!(
        "server restart: B's answers {counts}; A's revoke failed {unavailable} time(s) as \
         unavailable first; measured: revoke seen by B {:.2} ms after it returned",
        fleet_support::ms(returned, seen[2])
    );
    support::assert_staleness_rule(
        "B sees A's revoke after the restart",
        returned,
        REFRESH,
        &[seen[0]],
    );
    assert!(!counts.contains("NotFound"), "{counts}");
}
