//! keystead on PostgreSQL against keystead on a file, in one process (issue 14, BENCHMARKS.md).
//!
//! Runs under `scripts/test-postgres.sh`, which exports `KEYSTEAD_TEST_PG_URL` (the store's
//! role), `KEYSTEAD_TEST_PG_ADMIN_URL` (superuser, for the server's statistics and logging
//! settings) and `KEYSTEAD_TEST_PG_LOG` (the server log):
//!
//! ```sh
//! bash scripts/test-postgres.sh -- cargo run --release -p keystead-benches --features postgres \
//!     --bin pg_compare -- --n 1000000
//! ```
//!
//! 1. **Cached verify**: a file store and a PostgreSQL store of `--n` keys each (`create_many`,
//!    10,000 per batch); the same `--sample` keys of each, warmed, verified in `--rounds`
//!    interleaved rounds of `--round-ms` (order alternating). Medians of ns/verify, median of
//!    the per-round PostgreSQL/file ratios.
//! 2. **Round trips of the timed loop**: the statements the measuring handle's connections
//!    sent, counted in the server log (`log_statement = all` for that role only, its own
//!    `application_name`), and the `xact_commit` / `tup_returned` delta of the database in
//!    `pg_stat_database` (read after 11 s idle, so every backend has flushed its counters).
//!    First with production defaults (refresh poll every 1 s, usage flush every 1 s: these
//!    background round trips are reported, not hidden), then with `refresh_interval` 1 h and
//!    `flush_interval` 0 — that loop must make no round trip at all (asserted).
//! 3. **Cold misses**: a new handle per batch of `--cold-batch` keys, each verified once
//!    (first verify of an existing key, not cached), then as many unknown ids; each verify
//!    timed alone; p50 / p90 / p99 / max. The same on the file backend, for context.
//!
//! Leaves the PostgreSQL store's keys in the database (for `pg_peer.py`). Prints `RESULT`
//! lines; plaintext keys are never printed.

use std::fs;
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use keystead::{KeyStore, Options, Outcome};
use keystead_benches::{fill, unknown_id};

struct Args {
    n: usize,
    sample: usize,
    rounds: usize,
    round_ms: u64,
    cold_batches: usize,
    cold_batch: usize,
    settle_s: u64,
}

fn args() -> Args {
    let mut a = Args {
        n: 100_000,
        sample: 1000,
        rounds: 7,
        round_ms: 300,
        cold_batches: 8,
        cold_batch: 250,
        settle_s: 11,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> usize {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| die(&format!("{flag} needs a number")))
        };
        match flag.as_str() {
            "--n" => a.n = value(),
            "--sample" => a.sample = value(),
            "--rounds" => a.rounds = value(),
            "--round-ms" => a.round_ms = value() as u64,
            "--cold-batches" => a.cold_batches = value(),
            "--cold-batch" => a.cold_batch = value(),
            "--settle-s" => a.settle_s = value() as u64,
            "-h" | "--help" => {
                println!(
                    "pg_compare [--n 100000] [--sample 1000] [--rounds 7] [--round-ms 300] \
                     [--cold-batches 8] [--cold-batch 250] [--settle-s 11]"
                );
                std::process::exit(0);
            }
            other => die(&format!("unknown argument {other}")),
        }
    }
    a
}

fn die(message: &str) -> ! {
    eprintln!("pg_compare: {message}");
    std::process::exit(2);
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        die(&format!(
            "{name} is not set: run under `bash scripts/test-postgres.sh -- ...`"
        ))
    })
}

/// `url` with extra query parameters.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// Verifies `keys` in order, round-robin, for about `ms`; ns per verify.
fn timed_loop(store: &KeyStore, keys: &[String], ms: u64) -> (f64, u64) {
    let deadline = Duration::from_millis(ms);
    let start = Instant::now();
    let mut done = 0u64;
    let mut i = 0usize;
    loop {
        for _ in 0..1000 {
            i = (i + 1) % keys.len();
            let v = store
                .verify(black_box(&keys[i]), &["chat:completions"])
                .expect("verify");
            assert_eq!(v.outcome(), Outcome::Valid);
        }
        done += 1000;
        if start.elapsed() >= deadline {
            break;
        }
    }
    (start.elapsed().as_nanos() as f64 / done as f64, done)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report_latencies(label: &str, mut us: Vec<f64>) {
    us.sort_by(|a, b| a.total_cmp(b));
    println!(
        "RESULT {label}: n={} p50={:.1}us p90={:.1}us p99={:.1}us max={:.1}us",
        us.len(),
        percentile(&us, 50.0),
        percentile(&us, 90.0),
        percentile(&us, 99.0),
        us[us.len() - 1],
    );
}

/// The server's counters and log, read as superuser.
struct Server {
    admin: postgres::Client,
    log: String,
    /// The store's database.
    db: String,
}

impl Server {
    fn stats(&mut self) -> (i64, i64) {
        let row = self
            .admin
            .query_one(
                "SELECT xact_commit, tup_returned FROM pg_stat_database WHERE datname = $1",
                &[&self.db],
            )
            .expect("pg_stat_database");
        (row.get(0), row.get(1))
    }

    /// Counters after `settle_s` of idle: a backend flushes its statistics at most once a
    /// second while busy and within 10 s of going idle.
    fn settled_stats(&mut self, settle_s: u64) -> (i64, i64) {
        std::thread::sleep(Duration::from_secs(settle_s));
        self.admin
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .expect("clear snapshot");
        self.stats()
    }

    fn log_len(&self) -> u64 {
        fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Statements logged for `app` since byte `from` of the server log.
    fn statements_since(&self, from: u64, app: &str) -> (usize, Vec<String>) {
        let mut file = fs::File::open(&self.log).expect("server log");
        file.seek(SeekFrom::Start(from)).expect("seek");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read log");
        let tag = format!("app={app} ");
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains(&tag) && (l.contains("statement: ") || l.contains("execute ")))
            .map(|l| {
                let at = l.find("LOG:").unwrap_or(0);
                l[at..].chars().take(100).collect()
            })
            .collect();
        (lines.len(), lines)
    }
}

fn main() {
    let a = args();
    let url = env("KEYSTEAD_TEST_PG_URL");
    let admin_url = env("KEYSTEAD_TEST_PG_ADMIN_URL");
    let log = env("KEYSTEAD_TEST_PG_LOG");
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).expect("admin connect");
    // The database of the store, for pg_stat_database (the admin session is in another one).
    let db: String = {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query_one("SELECT current_database()", &[])
            .expect("db")
            .get(0)
    };
    for sql in [
        "ALTER SYSTEM SET log_line_prefix = '%m [%p] app=%a '",
        "ALTER SYSTEM SET autovacuum = off",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(sql).expect("server settings");
    }
    let mut server = Server { admin, log, db };
    println!(
        "CONDITIONS keys={} sample={} rounds={} round_ms={} cold={}x{} (autovacuum off, \
         loopback TCP, no TLS)",
        a.n, a.sample, a.rounds, a.round_ms, a.cold_batches, a.cold_batch
    );

    // --- fill both stores with N keys; keep a spread of plaintext keys
    let cold_total = a.cold_batches * a.cold_batch;
    let counted = 20; // keys whose cold verify's statements are counted (not timed)
    let dir = tempfile::tempdir().expect("temp dir");
    let file_path = dir.path().join("bench.redb");
    let (file_keys, file_time) = {
        let store = KeyStore::open(&file_path, Options::new()).expect("open file");
        let r = fill(&store, a.n, a.sample + cold_total + counted);
        store.close().expect("close");
        r
    };
    println!(
        "RESULT import file: {} keys in {:.1} s = {:.0} keys/s",
        a.n,
        file_time.as_secs_f64(),
        a.n as f64 / file_time.as_secs_f64()
    );
    let (pg_keys, pg_time) = {
        let store = KeyStore::open(&url, Options::new()).expect("open postgres");
        let r = fill(&store, a.n, a.sample + cold_total + counted);
        store.close().expect("close");
        r
    };
    println!(
        "RESULT import postgres: {} keys in {:.1} s = {:.0} keys/s",
        a.n,
        pg_time.as_secs_f64(),
        a.n as f64 / pg_time.as_secs_f64()
    );
    assert_eq!(
        file_keys.len(),
        a.sample + cold_total + counted,
        "sample too large for --n"
    );
    assert_eq!(
        pg_keys.len(),
        a.sample + cold_total + counted,
        "sample too large for --n"
    );
    server
        .admin
        .batch_execute("VACUUM ANALYZE")
        .expect("vacuum");

    // --- cached verify, interleaved rounds, production defaults
    // Only the measuring handles' role sessions log their statements (new connections).
    let role: String = {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query_one("SELECT current_user::text", &[])
            .expect("role")
            .get(0)
    };
    server
        .admin
        .batch_execute(&format!("ALTER ROLE {role} SET log_statement = 'all'"))
        .expect("log_statement");
    let app = "keystead-bench-cached";
    let file_store = KeyStore::open(&file_path, Options::new()).expect("open file");
    let pg_store = KeyStore::open(
        with_params(&url, &format!("application_name={app}")),
        Options::new(),
    )
    .expect("open postgres");
    let file_hot = &file_keys[..a.sample];
    let pg_hot = &pg_keys[..a.sample];
    for _ in 0..2 {
        for k in file_hot {
            assert_eq!(
                file_store
                    .verify(k, &["chat:completions"])
                    .unwrap()
                    .outcome(),
                Outcome::Valid
            );
        }
        for k in pg_hot {
            assert_eq!(
                pg_store.verify(k, &["chat:completions"]).unwrap().outcome(),
                Outcome::Valid
            );
        }
    }
    let log_from = server.log_len();
    let wall = Instant::now();
    let (mut file_ns, mut pg_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut pg_verifies = 0u64;
    for round in 0..a.rounds {
        let (f, p) = if round % 2 == 0 {
            let f = timed_loop(&file_store, file_hot, a.round_ms);
            (f, timed_loop(&pg_store, pg_hot, a.round_ms))
        } else {
            let p = timed_loop(&pg_store, pg_hot, a.round_ms);
            (timed_loop(&file_store, file_hot, a.round_ms), p)
        };
        println!(
            "ROUND {round}: file {:.0} ns, postgres {:.0} ns, postgres/file {:.3}",
            f.0,
            p.0,
            p.0 / f.0
        );
        file_ns.push(f.0);
        pg_ns.push(p.0);
        ratios.push(p.0 / f.0);
        pg_verifies += p.1;
    }
    let pg_wall = wall.elapsed();
    std::thread::sleep(Duration::from_millis(200)); // let the log writer catch up
    let (default_statements, sample_lines) = server.statements_since(log_from, app);
    println!(
        "RESULT cached verify, {} keys, {}-key warmed sample: file {:.0} ns, postgres {:.0} ns \
         (medians of {} rounds), postgres/file {:.3} (median of per-round ratios)",
        a.n,
        a.sample,
        median(&mut file_ns),
        median(&mut pg_ns),
        a.rounds,
        median(&mut ratios)
    );
    println!(
        "RESULT cached verify, production defaults (refresh 1 s, usage flush 1 s): {} statements \
         from the postgres handle over {:.1} s of rounds ({} verifies on postgres) = {:.2e} per verify",
        default_statements,
        pg_wall.as_secs_f64(),
        pg_verifies,
        default_statements as f64 / pg_verifies as f64
    );
    for l in sample_lines.iter().take(6) {
        println!("  logged: {l}");
    }
    drop(file_store);
    pg_store.close().expect("close");

    // --- strict: no refresh, no usage flush inside the loop: zero round trips (asserted)
    let app = "keystead-bench-strict";
    let strict = KeyStore::open(
        with_params(&url, &format!("application_name={app}")),
        Options::new()
            .refresh_interval(Duration::from_secs(3600))
            .flush_interval(Duration::ZERO),
    )
    .expect("open postgres");
    for k in pg_hot {
        assert_eq!(
            strict.verify(k, &["chat:completions"]).unwrap().outcome(),
            Outcome::Valid
        );
    }
    let before = server.settled_stats(a.settle_s);
    let log_from = server.log_len();
    let (ns, verifies) = timed_loop(&strict, pg_hot, 2000);
    let after = server.settled_stats(a.settle_s);
    let (statements, lines) = server.statements_since(log_from, app);
    println!(
        "RESULT round trips of the timed loop (refresh_interval 1 h, flush_interval 0): \
         {verifies} verifies ({ns:.0} ns each), statements logged {statements}, \
         pg_stat_database xact_commit +{}, tup_returned +{} (measured over the loop plus \
         {} s idle on both sides)",
        after.0 - before.0,
        after.1 - before.1,
        a.settle_s
    );
    assert_eq!(statements, 0, "the timed loop sent statements: {lines:?}");
    assert_eq!(after.0, before.0, "xact_commit moved during the timed loop");
    strict.close().expect("close");

    // --- statements per cold verify (not timed; log_statement is still on for the role)
    let app = "keystead-bench-count";
    let counting = KeyStore::open(
        with_params(&url, &format!("application_name={app}")),
        Options::new()
            .refresh_interval(Duration::from_secs(3600))
            .flush_interval(Duration::ZERO),
    )
    .expect("open postgres");
    let _ = counting.verify(&unknown_id(&pg_keys[1]), &[]);
    let extra = &pg_keys[a.sample + cold_total..];
    for (label, keys, expect) in [
        ("existing key", extra.to_vec(), Outcome::Valid),
        (
            "unknown id",
            extra.iter().map(|k| unknown_id(k)).collect(),
            Outcome::NotFound,
        ),
    ] {
        std::thread::sleep(Duration::from_millis(200));
        let from = server.log_len();
        for k in &keys {
            let v = counting.verify(k, &["chat:completions"]).expect("verify");
            assert_eq!(v.outcome(), expect);
        }
        std::thread::sleep(Duration::from_millis(200));
        let (statements, lines) = server.statements_since(from, app);
        println!(
            "RESULT statements per cold verify, {label}: {statements} for {} first verifies = {:.2}",
            keys.len(),
            statements as f64 / keys.len() as f64
        );
        let mut kinds: Vec<String> = lines
            .iter()
            .map(|l| {
                l.split(": ")
                    .nth(2)
                    .unwrap_or("")
                    .chars()
                    .take(60)
                    .collect()
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        for k in kinds {
            println!("  statement: {k}");
        }
    }
    counting.close().expect("close");
    server
        .admin
        .batch_execute(&format!("ALTER ROLE {role} RESET log_statement"))
        .expect("reset log_statement");

    // --- cold misses: a new handle per batch; each key verified once
    let cold_url = with_params(&url, "max_misses_per_sec=1000000");
    let cold = |label: &str, open: &dyn Fn() -> KeyStore, keys: &[String], warm: &str| {
        let (mut valid, mut unknown) = (Vec::new(), Vec::new());
        for batch in keys.chunks(a.cold_batch) {
            let store = open();
            // Not timed: the handle's first lookup (connections are set up on open).
            let _ = store.verify(warm, &[]);
            for k in batch {
                let t = Instant::now();
                let v = store
                    .verify(black_box(k), &["chat:completions"])
                    .expect("verify");
                valid.push(t.elapsed().as_nanos() as f64 / 1000.0);
                assert_eq!(v.outcome(), Outcome::Valid);
            }
            for k in batch {
                let k = unknown_id(k);
                let t = Instant::now();
                let v = store.verify(black_box(&k), &[]).expect("verify");
                unknown.push(t.elapsed().as_nanos() as f64 / 1000.0);
                assert_eq!(v.outcome(), Outcome::NotFound);
            }
            drop(store);
        }
        report_latencies(
            &format!("cold miss {label}, existing key (first verify)"),
            valid,
        );
        report_latencies(&format!("cold miss {label}, unknown id"), unknown);
    };
    cold(
        "postgres",
        &|| KeyStore::open(&cold_url, Options::new()).expect("open postgres"),
        &pg_keys[a.sample..a.sample + cold_total],
        &unknown_id(&pg_keys[0]),
    );
    cold(
        "file",
        &|| KeyStore::open(&file_path, Options::new()).expect("open file"),
        &file_keys[a.sample..a.sample + cold_total],
        &unknown_id(&file_keys[0]),
    );
}
