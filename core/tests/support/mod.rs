//! Helpers for the reliability and security tests (issue 9): a small seeded random number
//! generator, child-process roles, file digests, polling and environment-scaled workloads.
//!
//! Kept apart from `common/mod.rs` (owned by the lead); a test file uses both with
//! `mod common; mod support;`.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Multiplier for every workload of these tests (trials, samples, durations), from
/// `KEYSTEAD_RELIABILITY_SCALE` (default 1). `scripts/reliability.sh` sets it for long runs.
pub fn scale() -> f64 {
    std::env::var("KEYSTEAD_RELIABILITY_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(1.0)
}

/// `default` scaled by [`scale`], or the value of `var` if it is set.
pub fn scaled(var: &str, default: usize) -> usize {
    if let Some(v) = std::env::var(var).ok().and_then(|v| v.parse().ok()) {
        return v;
    }
    ((default as f64) * scale()).round().max(1.0) as usize
}

/// xorshift64* seeded from the clock and pid, or from `KEYSTEAD_RELIABILITY_SEED` to replay.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> (Rng, u64) {
        let seed = std::env::var("KEYSTEAD_RELIABILITY_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                t ^ (u64::from(std::process::id()) << 32)
            });
        (Rng::new(seed), seed)
    }

    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams (never 0).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len() as u64) as usize])
        }
    }
}

/// Compares files by a digest, so a failure does not print megabytes (as in open.rs).
pub fn digest(path: &Path) -> (usize, u64) {
    let bytes = std::fs::read(path).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (bytes.len(), h)
}

/// Polls `f` until it returns true or `limit` passes; returns the time it took.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Milliseconds since the Unix epoch: a clock that processes of one host share.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Microseconds since the Unix epoch.
pub fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A command that re-runs this test binary with only the child role `role` (an ignored test
/// that acts only when its environment variable is set), output not captured.
pub fn role_command(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--ignored",
        "--exact",
        role,
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ]);
    command
}

/// Starts `role` with the given environment, stdout piped (stderr inherited unless `quiet`).
pub fn spawn_role(role: &str, envs: &[(&str, String)], quiet: bool) -> Child {
    let mut command = role_command(role);
    for (k, v) in envs {
        command.env(k, v);
    }
    command.stdout(Stdio::piped()).stdin(Stdio::null());
    if quiet {
        command.stderr(Stdio::piped());
    }
    command.spawn().unwrap()
}

/// Whether this process runs as root (which ignores permission bits), from /proc.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Runs a command, returning whether it succeeded (and its stderr when it did not).
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `{program}`: {e}")),
    }
}

/// Appends a line to a journal file and syncs it before returning, so that a line present
/// after a SIGKILL means the operation it names had returned.
pub struct Journal(std::fs::File);

impl Journal {
    pub fn open(path: &Path) -> Journal {
        Journal(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        )
    }

    pub fn line(&mut self, text: &str) {
        self.0.write_all(text.as_bytes()).unwrap();
        self.0.write_all(b"\n").unwrap();
        self.0.sync_data().unwrap();
    }
}

/// Welch's t statistic of two samples.
pub fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let se = (va / a.len() as f64 + vb / b.len() as f64).sqrt();
    if se == 0.0 {
        0.0
    } else {
        (ma - mb) / se
    }
}

pub fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var)
}

/// The value at quantile `q` (0..=1) of `x` (sorted copy).
pub fn quantile(x: &[f64], q: f64) -> f64 {
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Summary of durations in milliseconds: (min, median, max).
pub fn summary_ms(values: &[Duration]) -> (f64, f64, f64) {
    let ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    (quantile(&ms, 0.0), quantile(&ms, 0.5), quantile(&ms, 1.0))
}

/// The staleness rule of docs/storage.md ("Read path and staleness"), checked on what a test
/// saw instead of on how long it took: a verify that *started* more than `refresh` after a
/// change's call returned (`changed_us`, read just after it returned) must not show the state
/// before the change. `old_state_starts` are the start times (µs since the epoch, read just
/// before each verify that still showed the old state). Returns a message per violation.
///
/// The rule holds however slow the machine is — a descheduled verify only starts later — and
/// breaks if the refresh mechanism does, which is what these tests are for. How long the change
/// took to show is a measurement, printed by the tests, never asserted.
pub fn staleness_violations(
    what: &str,
    changed_us: i64,
    refresh: Duration,
    old_state_starts: &[i64],
) -> Vec<String> {
    let bound = changed_us + refresh.as_micros() as i64;
    old_state_starts
        .iter()
        .filter(|&&start| start > bound)
        .map(|start| {
            format!(
                "{what}: a verify started {:.3} ms after the change returned still showed the \
                 old state (refresh_interval {refresh:?})",
                (start - changed_us) as f64 / 1e3
            )
        })
        .collect()
}

/// Asserts the staleness rule (see [`staleness_violations`]).
pub fn assert_staleness_rule(
    what: &str,
    changed_us: i64,
    refresh: Duration,
    old_state_starts: &[i64],
) {
    let violations = staleness_violations(what, changed_us, refresh, old_state_starts);
    assert!(violations.is_empty(), "{}", first_lines(&violations));
}

/// The first five messages, and how many more there were.
pub fn first_lines(messages: &[String]) -> String {
    let mut out = messages
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    if messages.len() > 5 {
        out.push_str(&format!("\n({} more)", messages.len() - 5));
    }
    out
}

/// How long a test waits for something that must happen eventually (liveness). Not a
/// performance bound: a machine that is merely slow finishes long before it; a broken
/// mechanism never does.
pub const EVENTUALLY: Duration = Duration::from_secs(120);

/// Verifies `key` repeatedly until `done(outcome)`, recording the start time (µs since the
/// epoch) of every verify whose outcome was `old`. Panics if `EVENTUALLY` passes first or an
/// outcome other than `old` or the awaited one appears.
pub fn poll_until(
    store: &keystead::KeyStore,
    key: &str,
    old: keystead::Outcome,
    new: keystead::Outcome,
) -> PollResult {
    let deadline = Instant::now() + EVENTUALLY;
    let mut old_starts = Vec::new();
    loop {
        let start = unix_us();
        let outcome = store.verify(key, &[]).unwrap().outcome();
        let end = unix_us();
        if outcome == new {
            return PollResult {
                old_starts,
                first_new_end_us: end,
            };
        }
        assert_eq!(outcome, old, "unexpected outcome while waiting for {new:?}");
        old_starts.push(start);
        assert!(
            Instant::now() < deadline,
            "{new:?} never showed in {EVENTUALLY:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What [`poll_until`] saw.
pub struct PollResult {
    /// Start times of the verifies that still showed the old outcome.
    pub old_starts: Vec<i64>,
    /// When the first verify showing the new outcome returned (µs since the epoch).
    pub first_new_end_us: i64,
}

/// Verifies `key` until a verify that started at or after `expires_at` has answered, checking
/// every answer by the clock instead of by a time bound: a verify that returned before
/// `expires_at` must answer `valid`, one that started at or after it `expired`, one that
/// straddles it either; once `expired`, never `valid` again. Returns how many verifies answered
/// `valid` (zero on a machine slow enough to reach the expiry before the first verify).
pub fn check_expiry_rule(store: &keystead::KeyStore, key: &str, expires_at: SystemTime) -> usize {
    use keystead::Outcome;
    let deadline = Instant::now()
        + EVENTUALLY
        + expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
    let mut valid = 0;
    let mut expired_seen = false;
    loop {
        let start = SystemTime::now();
        let outcome = store.verify(key, &[]).unwrap().outcome();
        let end = SystemTime::now();
        if end < expires_at {
            assert_eq!(
                outcome,
                Outcome::Valid,
                "a verify that ended before the expiry"
            );
        }
        if start >= expires_at {
            assert_eq!(
                outcome,
                Outcome::Expired,
                "a verify that started at the expiry or later"
            );
            return valid;
        }
        match outcome {
            Outcome::Valid => {
                assert!(!expired_seen, "valid again after expired");
                valid += 1;
            }
            Outcome::Expired => expired_seen = true,
            other => panic!("unexpected outcome {other:?} around the expiry"),
        }
        assert!(Instant::now() < deadline, "the expiry never took effect");
        std::thread::sleep(Duration::from_millis(1));
    }
}
