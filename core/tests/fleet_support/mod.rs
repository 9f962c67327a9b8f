//! Helpers of the fleet tests (fleet.rs, fleet_restart.rs; issue 14): "hosts" are child
//! processes that re-run the test binary as a role (an `#[ignore]`d test) on one PostgreSQL
//! store, as the hosts of a fleet would. The parent talks to a host over its stdin (one command
//! a line) and reads its replies on stdout: lines that start with `@` (the test harness's own
//! lines are skipped). A host's stderr is inherited, so its panics show in the test output.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use keystead::{KeyStore, Options, Outcome, Result as KsResult, Verification};

use crate::support;

/// The store location of a host (a `postgres://` URL).
pub const LOCATION: &str = "KEYSTEAD_FLEET_LOCATION";
/// `refresh_interval` of a host, in milliseconds.
pub const REFRESH_MS: &str = "KEYSTEAD_FLEET_REFRESH_MS";
/// Keys a host verifies before it answers `READY` (comma-separated).
pub const KEYS: &str = "KEYSTEAD_FLEET_KEYS";
/// When a host opens its store (µs since the epoch), so that several open at once.
pub const START_AT_US: &str = "KEYSTEAD_FLEET_START_AT_US";

/// The environment variable `name` of a host (it was set by the parent).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// The location of a host, or a clear panic when a role is run by hand.
pub fn child_location(role: &str) -> String {
    std::env::var(LOCATION).unwrap_or_else(|_| {
        panic!("{role} is a child role, not a test: the fleet tests run it with {LOCATION} set")
    })
}

/// The keys in [`KEYS`] (none if unset).
pub fn env_keys() -> Vec<String> {
    std::env::var(KEYS)
        .map(|v| {
            v.split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Sleeps until [`START_AT_US`], if it is set.
pub fn wait_for_start() {
    if let Ok(at) = std::env::var(START_AT_US) {
        let at: i64 = at.parse().unwrap();
        while support::unix_us() < at {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// A host's reply to the parent (one line on stdout; `println!` flushes at the newline).
pub fn reply(text: &str) {
    println!("@{text}");
}

/// An outcome or an error kind as one word: `Valid`, `Revoked`, `Err:Unavailable`, ...
pub fn word(result: &KsResult<Verification>) -> String {
    match result {
        Ok(v) => format!("{:?}", v.outcome()),
        Err(e) => format!("Err:{:?}", e.kind()),
    }
}

/// `location` with one more query parameter.
pub fn with_param(location: &str, param: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}{param}")
}

/// The id (as in keys) of a key.
pub fn id_of(key: &str) -> keystead::KeyId {
    keystead::parse_key(key).unwrap().id
}

/// A child process serving one store, driven over stdin/stdout.
pub struct Host {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<String>,
}

impl Host {
    /// Starts the role `role` (an ignored test of this binary) with `envs`.
    pub fn spawn(role: &str, name: &str, envs: &[(&str, String)]) -> Host {
        let mut command = support::role_command(role);
        for (k, v) in envs {
            command.env(k, v);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix('@') {
                    if tx.send(rest.to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        Host {
            name: name.to_owned(),
            child,
            stdin,
            replies,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot send {line:?}: {e}", self.name));
    }

    /// The next reply, or `None` once the host's stdout is closed; panics if none comes in
    /// [`support::EVENTUALLY`] (a liveness bound, not a performance one).
    pub fn next_reply(&mut self) -> Option<String> {
        match self.replies.recv_timeout(support::EVENTUALLY) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: no reply in {:?}", self.name, support::EVENTUALLY)
            }
        }
    }

    /// The next reply, which must start with the word `what`; returns the words after it.
    pub fn expect(&mut self, what: &str) -> Vec<String> {
        let Some(line) = self.next_reply() else {
            let status = self.child.wait();
            panic!(
                "{}: exited ({status:?}) while the parent waited for {what}",
                self.name
            );
        };
        let mut words = line.split(' ').map(str::to_owned);
        let first = words.next().unwrap_or_default();
        assert_eq!(first, what, "{}: unexpected reply {line:?}", self.name);
        words.collect()
    }

    /// Sends `CHECK key` and returns the outcome word.
    pub fn check(&mut self, key: &str) -> String {
        self.send(&format!("CHECK {key}"));
        self.expect("OUTCOME").join(" ")
    }

    /// Sends `QUIT` (unless the host already exited: a role that ends by itself has closed
    /// its stdin), closes stdin and waits for a successful exit.
    pub fn finish(mut self) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "QUIT").and_then(|()| stdin.flush());
        }
        self.stdin = None;
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} failed: {status}", self.name);
    }

    /// SIGKILL, then waits for it (kill -9 of a host).
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "{} was not killed: {status}", self.name);
    }

    /// Every reply the host wrote before its stdout closed (after it exited).
    pub fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = self.next_reply() {
            out.push(line);
        }
        out
    }
}

impl Drop for Host {
    /// A host left running by a failed test is stopped (only this child, by its handle).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Options of a host: usage written only on close unless the role says otherwise.
pub fn host_options() -> Options {
    let refresh = std::env::var(REFRESH_MS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    Options::new()
        .flush_interval(Duration::ZERO)
        .refresh_interval(Duration::from_millis(refresh))
        .actor(format!("fleet-host-{}", std::process::id()))
}

/// What a `WATCH` saw: the key verified in a loop from valid until revoked.
pub struct Watched {
    /// Start of the last verify that answered valid (µs since the epoch).
    pub last_valid_start_us: i64,
    /// Start and end of the first verify that answered revoked.
    pub first_revoked_start_us: i64,
    pub first_revoked_end_us: i64,
    pub valid_verifies: u64,
}

/// The role of a serving host: opens the store (at [`START_AT_US`] if set), verifies [`KEYS`],
/// answers `@OPENED <prefix>` and `@READY`, then runs commands until `QUIT` or end of input:
///
/// - `CHECK <key>`: one verify; `@OUTCOME <word>` ([`word`]);
/// - `CREATE <name>`: `@KEY <key>`;
/// - `WATCH <key>`: verifies the key in a loop (every ~0.2 ms, recording each start time);
///   `@WATCHING` after the first valid answer, `@SEEN <last valid start> <first revoked start>
///   <first revoked end> <valid verifies>` (µs since the epoch) at the first revoked one. Any
///   other outcome, or an error, fails the host.
pub fn serving_host_role(role: &str) {
    let location = child_location(role);
    wait_for_start();
    let store = KeyStore::open(&location, host_options()).expect("open the store");
    reply(&format!("OPENED {}", store.prefix()));
    for key in env_keys() {
        let outcome = store.verify(&key, &[]).expect("warm-up verify").outcome();
        assert_eq!(outcome, Outcome::Valid, "warm-up verify");
    }
    reply("READY");
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (command, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match command {
            "CHECK" => reply(&format!("OUTCOME {}", word(&store.verify(arg, &[])))),
            "CREATE" => {
                let created = store
                    .create(keystead::NewKey::new(arg))
                    .expect("create a key");
                reply(&format!("KEY {}", created.key()));
            }
            "WATCH" => {
                let w = watch(&store, arg);
                reply(&format!(
                    "SEEN {} {} {} {}",
                    w.last_valid_start_us,
                    w.first_revoked_start_us,
                    w.first_revoked_end_us,
                    w.valid_verifies
                ));
            }
            "QUIT" => break,
            other => panic!("unknown command {other:?}"),
        }
    }
    store.close().expect("close");
}

/// See [`serving_host_role`], `WATCH`.
pub fn watch(store: &KeyStore, key: &str) -> Watched {
    let deadline = Instant::now() + support::EVENTUALLY;
    let mut last_valid_start_us = None;
    let mut valid_verifies = 0;
    loop {
        let start = support::unix_us();
        let result = store.verify(key, &[]);
        let end = support::unix_us();
        match result.as_ref().map(Verification::outcome) {
            Ok(Outcome::Valid) => {
                if last_valid_start_us.is_none() {
                    reply("WATCHING");
                }
                last_valid_start_us = Some(start);
                valid_verifies += 1;
            }
            Ok(Outcome::Revoked) => {
                return Watched {
                    last_valid_start_us: last_valid_start_us
                        .expect("the watched key was revoked before it was ever valid"),
                    first_revoked_start_us: start,
                    first_revoked_end_us: end,
                    valid_verifies,
                };
            }
            _ => panic!("watched key: {} (only valid, then revoked)", word(&result)),
        }
        assert!(
            Instant::now() < deadline,
            "the revocation never showed in {:?}",
            support::EVENTUALLY
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Milliseconds between two µs timestamps (signed).
pub fn ms(from_us: i64, to_us: i64) -> f64 {
    (to_us - from_us) as f64 / 1e3
}

/// `p50 X ms, p99 Y ms` of signed millisecond samples.
pub fn p50_p99(samples: &[f64]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms (min {:.2}, max {:.2}, n={})",
        support::quantile(samples, 0.5),
        support::quantile(samples, 0.99),
        support::quantile(samples, 0.0),
        support::quantile(samples, 1.0),
        samples.len()
    )
}
