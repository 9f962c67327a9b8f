//! keystead vs a hand-rolled rusqlite + HMAC-SHA256 key store, side by side (issue 8).
//!
//! ```text
//! keystead-compare [--n N] [--small-n N2] [--sample S] [--rounds R] [--round-ms MS]
//!                  [--dir DIR] [--keep]
//! keystead-compare build keystead|peer --n N --sample S --dir DIR   (one side's import)
//! keystead-compare serve keystead|peer --dir DIR --round-ms MS      (open + verify, for RSS)
//! keystead-compare diag FILE.redb        (table sizes of a keystead file; compacts a copy)
//! ```
//!
//! The default command runs everything: each side's bulk import and a verify-only process per
//! side run as child processes of this binary (so each reports its own peak RSS, `VmHWM`),
//! then both stores (and a second, small keystead store, for flatness) are opened in this
//! process and verified in interleaved rounds (the order rotates every round); medians of the
//! rounds and the median of the per-round ratios are printed, per second of wall time and per
//! second of the measuring thread's CPU time. Then keystead with 1 and 2 threads, next to a
//! share-nothing HMAC control, each thread reading its own CPU clock. Lines starting with
//! `RESULT ` are for `run.sh`; every value in them was measured in this run. Environment
//! defaults: `KEYSTEAD_COMPARE_N`, `KEYSTEAD_COMPARE_SMALL_N`, `KEYSTEAD_COMPARE_SAMPLE`,
//! `KEYSTEAD_COMPARE_ROUNDS`, `KEYSTEAD_COMPARE_ROUND_MS`.
//!
//! `build keystead` is also what the Python and Node drivers use to pre-fill a keystead store
//! (so that every language verifies against a file built the same way; for real imports there
//! are `keystead import` and the bindings' `create_many` / `createMany`); it writes `DIR/keystead.redb` and the sampled
//! plaintext keys to `DIR/keystead.sample`. With `KEYSTEAD_COMPARE_REFRESH_BETWEEN_BATCHES`
//! set, it verifies one key after each batch (a diagnostic of the file size: see
//! BENCHMARKS.md).

mod peer;

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Options, Outcome};
use peer::PeerOutcome;

const USAGE: &str = "\
usage: keystead-compare [--n N] [--small-n N2] [--sample S] [--rounds R] [--round-ms MS]
                        [--dir DIR] [--keep]
       keystead-compare build keystead|peer --n N --sample S --dir DIR
       keystead-compare serve keystead|peer --dir DIR [--round-ms MS]
       keystead-compare diag FILE.redb   (table sizes of a keystead file; compacts a copy)";
const SCOPE: &str = "chat:completions";
const BATCH: usize = 10_000;

#[derive(Clone)]
struct Config {
    n: usize,
    sample: usize,
    rounds: usize,
    round: Duration,
    dir: Option<PathBuf>,
    keep: bool,
    /// A second, small keystead store verified in the same rounds (flatness across sizes); 0: none.
    small_n: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn parse_config(args: &[String]) -> Result<Config, String> {
    let mut c = Config {
        n: env_or("KEYSTEAD_COMPARE_N", 1_000_000),
        sample: env_or("KEYSTEAD_COMPARE_SAMPLE", 10_000),
        rounds: env_or("KEYSTEAD_COMPARE_ROUNDS", 5),
        round: Duration::from_millis(env_or("KEYSTEAD_COMPARE_ROUND_MS", 500)),
        dir: None,
        keep: false,
        small_n: env_or("KEYSTEAD_COMPARE_SMALL_N", 10_000),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        let number = |s: String| -> Result<usize, String> {
            s.replace('_', "")
                .parse()
                .map_err(|_| format!("not a number: {s}"))
        };
        match arg.as_str() {
            "--n" => c.n = number(value("--n")?)?,
            "--sample" => c.sample = number(value("--sample")?)?,
            "--rounds" => c.rounds = number(value("--rounds")?)?,
            "--round-ms" => c.round = Duration::from_millis(number(value("--round-ms")?)? as u64),
            "--dir" => c.dir = Some(PathBuf::from(value("--dir")?)),
            "--keep" => c.keep = true,
            "--small-n" => c.small_n = number(value("--small-n")?)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if c.n == 0 || c.sample == 0 || c.rounds == 0 {
        return Err("--n, --sample and --rounds must be positive".into());
    }
    c.sample = c.sample.min(c.n);
    Ok(c)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => child(&args[1..], true),
        Some("serve") => child(&args[1..], false),
        Some("diag") => args
            .get(1)
            .ok_or_else(|| USAGE.to_owned())
            .and_then(|p| diag(Path::new(p))),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => parse_config(&args).and_then(|c| run(&c)),
    };
    if let Err(e) = result {
        eprintln!("keystead-compare: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement helpers

/// Peak resident set size of this process so far, in KiB (`VmHWM` of /proc/self/status).
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `op` over and over for at least `for_at_least`; returns operations per second of wall
/// time, and per second of this thread's CPU time (which a busy machine does not inflate).
fn rate(for_at_least: Duration, mut op: impl FnMut(usize)) -> (f64, f64) {
    let cpu_start = thread_cpu_secs();
    let start = Instant::now();
    let mut done = 0usize;
    loop {
        for _ in 0..64 {
            op(done);
            done += 1;
        }
        let elapsed = start.elapsed();
        if elapsed >= for_at_least {
            let cpu = thread_cpu_secs() - cpu_start;
            return (done as f64 / elapsed.as_secs_f64(), done as f64 / cpu);
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn file_bytes(paths: &[PathBuf]) -> u64 {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn keystead_path(dir: &Path) -> PathBuf {
    dir.join("keystead.redb")
}

fn peer_path(dir: &Path) -> PathBuf {
    dir.join("peer.sqlite")
}

/// The peer's files: the database plus its WAL and shared-memory index if they remain.
fn peer_files(dir: &Path) -> Vec<PathBuf> {
    ["peer.sqlite", "peer.sqlite-wal", "peer.sqlite-shm"]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

fn read_sample(dir: &Path, side: &str) -> Result<Vec<String>, String> {
    let path = dir.join(format!("{side}.sample"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// Changes the last character (keeping it a base62 / hex digit): a one-character typo.
fn typo(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).expect("ASCII")
}

fn kv(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Child processes: one side's import, or one side's verify-only process

fn child(args: &[String], build: bool) -> Result<(), String> {
    let side = args.first().cloned().unwrap_or_default();
    let c = parse_config(&args[1.min(args.len())..])?;
    let dir = c.dir.clone().ok_or("--dir is required")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out: Vec<(&str, String)> = Vec::new();
    match (side.as_str(), build) {
        ("keystead", true) => {
            let refresh_between_batches =
                std::env::var_os("KEYSTEAD_COMPARE_REFRESH_BETWEEN_BATCHES").is_some();
            let path = keystead_path(&dir);
            let _ = std::fs::remove_file(&path);
            let store = KeyStore::open(&path, Options::new()).map_err(|e| e.to_string())?;
            let stride = (c.n / c.sample).max(1);
            let mut sample = Vec::with_capacity(c.sample);
            let start = Instant::now();
            let mut made = 0;
            while made < c.n {
                let n = (c.n - made).min(BATCH);
                let batch = (made..made + n)
                    .map(|i| NewKey::new(format!("bench-{i}")).scopes([SCOPE]))
                    .collect();
                let created = store.create_many(batch).map_err(|e| e.to_string())?;
                if refresh_between_batches {
                    // Diagnostic: a verify after a write makes the handle drop its read
                    // snapshot and take a new one, so redb may reuse the pages freed since.
                    store
                        .verify(created[0].key(), &[])
                        .map_err(|e| e.to_string())?;
                }
                for (i, k) in created.iter().enumerate() {
                    if (made + i) % stride == 0 && sample.len() < c.sample {
                        sample.push(k.key().to_owned());
                    }
                }
                made += n;
            }
            let import = start.elapsed();
            store.close().map_err(|e| e.to_string())?;
            write_sample(&dir, "keystead", &sample)?;
            out.push((
                "import_keys_per_s",
                format!("{:.0}", c.n as f64 / import.as_secs_f64()),
            ));
            out.push(("file_bytes", file_bytes(&[path]).to_string()));
        }
        ("peer", true) => {
            let path = peer_path(&dir);
            for f in peer_files(&dir) {
                let _ = std::fs::remove_file(f);
            }
            let mut conn = peer::open(&path).map_err(|e| e.to_string())?;
            let stride = (c.n / c.sample).max(1);
            let mut sample = Vec::with_capacity(c.sample);
            let start = Instant::now();
            let mut made = 0;
            while made < c.n {
                let n = (c.n - made).min(BATCH);
                let names: Vec<String> = (made..made + n).map(|i| format!("bench-{i}")).collect();
                let keys =
                    peer::create_many(&mut conn, &names, SCOPE).map_err(|e| e.to_string())?;
                for (i, k) in keys.into_iter().enumerate() {
                    if (made + i) % stride == 0 && sample.len() < c.sample {
                        sample.push(k);
                    }
                }
                made += n;
            }
            let import = start.elapsed();
            conn.close().map_err(|(_, e)| e.to_string())?;
            write_sample(&dir, "peer", &sample)?;
            out.push((
                "import_keys_per_s",
                format!("{:.0}", c.n as f64 / import.as_secs_f64()),
            ));
            out.push(("file_bytes", file_bytes(&peer_files(&dir)).to_string()));
        }
        ("keystead", false) => {
            let sample = read_sample(&dir, "keystead")?;
            let store =
                KeyStore::open(keystead_path(&dir), Options::new()).map_err(|e| e.to_string())?;
            let (r, _) = rate(c.round, |i| {
                let v = store.verify(black_box(&sample[i % sample.len()]), &[SCOPE]);
                assert_eq!(v.expect("verify").outcome(), Outcome::Valid);
            });
            out.push(("verifies_per_s", format!("{r:.0}")));
            store.close().map_err(|e| e.to_string())?;
        }
        ("peer", false) => {
            let sample = read_sample(&dir, "peer")?;
            let conn = peer::open(&peer_path(&dir)).map_err(|e| e.to_string())?;
            let mut verifier = peer::Verifier::new(&conn).map_err(|e| e.to_string())?;
            let (r, _) = rate(c.round, |i| {
                let v = verifier.verify(black_box(&sample[i % sample.len()]), Some(SCOPE));
                assert_eq!(v.expect("verify"), PeerOutcome::Valid);
            });
            out.push(("verifies_per_s", format!("{r:.0}")));
        }
        _ => return Err(format!("unknown side `{side}` (keystead or peer)")),
    }
    if let Some(hwm) = vm_hwm_kib() {
        out.push(("vm_hwm_kib", hwm.to_string()));
    }
    println!("CHILD {}", kv(&out));
    Ok(())
}

fn write_sample(dir: &Path, side: &str, sample: &[String]) -> Result<(), String> {
    let path = dir.join(format!("{side}.sample"));
    let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    for k in sample {
        writeln!(f, "{k}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs this binary as a child and returns the `key=value` pairs of its `CHILD` line.
fn spawn(
    mode: &str,
    side: &str,
    c: &Config,
    dir: &Path,
) -> Result<HashMap<String, String>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .args([
            mode,
            side,
            "--n",
            &c.n.to_string(),
            "--sample",
            &c.sample.to_string(),
        ])
        .args(["--round-ms", &(c.round.as_millis() * 2).to_string()])
        .arg("--dir")
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("child `{mode} {side}` failed: {}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD "))
        .ok_or_else(|| format!("child `{mode} {side}` printed no result"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The whole comparison

struct Contestant<'a> {
    name: &'static str,
    op: Box<dyn FnMut(usize) + 'a>,
}

/// Interleaved rounds: every round runs each contestant once, in an order rotated by one each
/// round. Returns each contestant's rate per round: per second of wall time, and per second of
/// CPU time.
fn interleaved(
    rounds: usize,
    round: Duration,
    contestants: &mut [Contestant<'_>],
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let k = contestants.len();
    let mut rates = vec![Vec::with_capacity(rounds); k];
    let mut cpu_rates = vec![Vec::with_capacity(rounds); k];
    // Warm-up: one short pass each (page cache, record cache, branch predictors).
    for c in contestants.iter_mut() {
        rate(round / 4, &mut c.op);
    }
    for r in 0..rounds {
        for j in 0..k {
            let idx = (r + j) % k;
            let c = &mut contestants[idx];
            let (wall, cpu) = rate(round, &mut c.op);
            rates[idx].push(wall);
            cpu_rates[idx].push(cpu);
        }
        eprint!(".");
    }
    eprintln!();
    (rates, cpu_rates)
}

fn ratio_median(a: &[f64], b: &[f64]) -> f64 {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&ratios)
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.1} k/s", r / 1e3)
    }
}

fn run(c: &Config) -> Result<(), String> {
    let dir = c.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("keystead-compare-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(c, &dir);
    if !c.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The `RESULT` lines printed so far, kept for the summary.
#[derive(Default)]
struct Results(Vec<(String, String)>);

impl Results {
    /// Prints `RESULT rust.KEY=VALUE` (for `run.sh`) and keeps the value.
    fn put(&mut self, k: &str, v: String) {
        println!("RESULT rust.{k}={v}");
        self.0.push((k.to_owned(), v));
    }

    fn get(&self, k: &str) -> Option<String> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn num(&self, k: &str) -> Option<f64> {
        self.get(k).and_then(|v| v.parse::<f64>().ok())
    }
}

fn run_in(c: &Config, dir: &Path) -> Result<(), String> {
    let mut results = Results::default();
    eprintln!(
        "keystead-compare: N={} keys, sample {}, {} rounds of {} ms, in {}",
        c.n,
        c.sample,
        c.rounds,
        c.round.as_millis(),
        dir.display()
    );
    results.put("n", c.n.to_string());
    let small_dir = dir.join("small");
    import_both(c, dir, &small_dir, &mut results)?;
    serve_rss(c, dir, &mut results)?;

    let ks_sample = read_sample(dir, "keystead")?;
    let peer_sample = read_sample(dir, "peer")?;
    let store = KeyStore::open(keystead_path(dir), Options::new()).map_err(|e| e.to_string())?;
    let conn = peer::open(&peer_path(dir)).map_err(|e| e.to_string())?;
    let verifier = std::cell::RefCell::new(peer::Verifier::new(&conn).map_err(|e| e.to_string())?);
    let samples = Samples {
        keystead: &ks_sample,
        peer: &peer_sample,
    };
    verify_valid(c, dir, &small_dir, &store, &verifier, samples, &mut results)?;
    verify_typos(c, &store, &verifier, samples, &mut results);
    drop(verifier);
    drop(conn);
    threads(c, &store, &ks_sample, &mut results);
    store.close().map_err(|e| e.to_string())?;
    print_summary(c, &results);
    Ok(())
}

/// The sampled plaintext keys of each side.
#[derive(Clone, Copy)]
struct Samples<'a> {
    keystead: &'a [String],
    peer: &'a [String],
}

/// Step 1: imports, each in its own process (one run each: at 1M keys a run takes a while), and the
/// second, small keystead store.
fn import_both(
    c: &Config,
    dir: &Path,
    small_dir: &Path,
    results: &mut Results,
) -> Result<(), String> {
    eprintln!(
        "importing {} keys into keystead (create_many, batches of {BATCH}) ...",
        c.n
    );
    let ks_build = spawn("build", "keystead", c, dir)?;
    eprintln!(
        "importing {} keys into the peer (rusqlite, one transaction per {BATCH}) ...",
        c.n
    );
    let peer_build = spawn("build", "peer", c, dir)?;
    for (side, m) in [("keystead", &ks_build), ("peer", &peer_build)] {
        let bytes: f64 = m["file_bytes"].parse().unwrap_or(0.0);
        results.put(
            &format!("{side}.import_keys_per_s"),
            m["import_keys_per_s"].clone(),
        );
        results.put(&format!("{side}.file_bytes"), m["file_bytes"].clone());
        results.put(
            &format!("{side}.bytes_per_key"),
            format!("{:.1}", bytes / c.n as f64),
        );
        if let Some(h) = m.get("vm_hwm_kib") {
            results.put(&format!("{side}.import_peak_rss_kib"), h.clone());
        }
    }

    if c.small_n > 0 {
        eprintln!(
            "importing {} keys into a second, small keystead store ...",
            c.small_n
        );
        let small = Config {
            n: c.small_n,
            sample: c.sample.min(c.small_n),
            ..c.clone()
        };
        spawn("build", "keystead", &small, small_dir)?;
    }
    Ok(())
}

/// Step 2: a verify-only process per side: the peak RSS a server holding N keys would have.
fn serve_rss(c: &Config, dir: &Path, results: &mut Results) -> Result<(), String> {
    eprintln!("verify-only child processes (peak RSS) ...");
    for side in ["keystead", "peer"] {
        let m = spawn("serve", side, c, dir)?;
        if let Some(h) = m.get("vm_hwm_kib") {
            results.put(&format!("{side}.serve_peak_rss_kib"), h.clone());
        }
    }
    Ok(())
}

/// Step 3: verify throughput of valid keys, single thread, interleaved: keystead with and without
/// its record cache, the peer, and the small keystead store.
fn verify_valid(
    c: &Config,
    dir: &Path,
    small_dir: &Path,
    store: &KeyStore,
    verifier: &std::cell::RefCell<peer::Verifier<'_>>,
    samples: Samples<'_>,
    results: &mut Results,
) -> Result<(), String> {
    let (ks_sample, peer_sample) = (samples.keystead, samples.peer);
    let uncached = KeyStore::open(keystead_path(dir), Options::new().record_cache_entries(0))
        .map_err(|e| e.to_string())?;
    let small = if c.small_n > 0 {
        let store =
            KeyStore::open(keystead_path(small_dir), Options::new()).map_err(|e| e.to_string())?;
        Some((store, read_sample(small_dir, "keystead")?))
    } else {
        None
    };

    eprintln!("verify, valid keys, 1 thread ({} rounds) ", c.rounds);
    let mut contestants = vec![
        Contestant {
            name: "keystead",
            op: Box::new(|i| {
                let v = store.verify(black_box(&ks_sample[i % ks_sample.len()]), &[SCOPE]);
                assert_eq!(v.expect("verify").outcome(), Outcome::Valid);
            }),
        },
        Contestant {
            name: "keystead_uncached",
            op: Box::new(|i| {
                let v = uncached.verify(black_box(&ks_sample[i % ks_sample.len()]), &[SCOPE]);
                assert_eq!(v.expect("verify").outcome(), Outcome::Valid);
            }),
        },
        Contestant {
            name: "peer",
            op: Box::new(|i| {
                let v = verifier
                    .borrow_mut()
                    .verify(black_box(&peer_sample[i % peer_sample.len()]), Some(SCOPE));
                assert_eq!(v.expect("verify"), PeerOutcome::Valid);
            }),
        },
    ];
    if let Some((small_store, small_sample)) = &small {
        contestants.push(Contestant {
            name: "keystead_small",
            op: Box::new(move |i| {
                let v =
                    small_store.verify(black_box(&small_sample[i % small_sample.len()]), &[SCOPE]);
                assert_eq!(v.expect("verify").outcome(), Outcome::Valid);
            }),
        });
    }
    let (rates, cpu) = interleaved(c.rounds, c.round, &mut contestants);
    let names: Vec<&str> = contestants.iter().map(|c| c.name).collect();
    drop(contestants);
    for ((name, r), rc) in names.iter().zip(&rates).zip(&cpu) {
        results.put(&format!("{name}.verify_per_s"), format!("{:.0}", median(r)));
        results.put(
            &format!("{name}.verify_ns"),
            format!("{:.0}", 1e9 / median(r)),
        );
        results.put(
            &format!("{name}.verify_per_cpu_s"),
            format!("{:.0}", median(rc)),
        );
        results.put(
            &format!("{name}.verify_cpu_ns"),
            format!("{:.0}", 1e9 / median(rc)),
        );
    }
    results.put(
        "ratio.verify",
        format!("{:.2}", ratio_median(&rates[0], &rates[2])),
    );
    results.put(
        "ratio.verify_uncached",
        format!("{:.2}", ratio_median(&rates[1], &rates[2])),
    );
    results.put(
        "ratio.verify_cpu",
        format!("{:.2}", ratio_median(&cpu[0], &cpu[2])),
    );
    results.put(
        "ratio.verify_uncached_cpu",
        format!("{:.2}", ratio_median(&cpu[1], &cpu[2])),
    );
    if small.is_some() {
        results.put("keystead_small.n", c.small_n.to_string());
        // > 1 means verify at N keys is slower than at small_n keys.
        results.put(
            "ratio.verify_ns_n_over_small",
            format!("{:.2}", ratio_median(&rates[3], &rates[0])),
        );
        results.put(
            "ratio.verify_cpu_ns_n_over_small",
            format!("{:.2}", ratio_median(&cpu[3], &cpu[0])),
        );
    }
    drop(small);
    Ok(())
}

/// Step 4: a one-character typo: keystead rejects it by checksum; the peer must look it up.
fn verify_typos(
    c: &Config,
    store: &KeyStore,
    verifier: &std::cell::RefCell<peer::Verifier<'_>>,
    samples: Samples<'_>,
    results: &mut Results,
) {
    let ks_typos: Vec<String> = samples.keystead.iter().map(|k| typo(k)).collect();
    let peer_typos: Vec<String> = samples.peer.iter().map(|k| typo(k)).collect();
    eprintln!(
        "verify, one-character typo, 1 thread ({} rounds) ",
        c.rounds
    );
    let mut contestants = vec![
        Contestant {
            name: "keystead",
            op: Box::new(|i| {
                let v = store.verify(black_box(&ks_typos[i % ks_typos.len()]), &[SCOPE]);
                assert_eq!(v.expect("verify").outcome(), Outcome::Malformed);
            }),
        },
        Contestant {
            name: "peer",
            op: Box::new(|i| {
                let v = verifier
                    .borrow_mut()
                    .verify(black_box(&peer_typos[i % peer_typos.len()]), Some(SCOPE));
                assert_eq!(v.expect("verify"), PeerOutcome::NotFound);
            }),
        },
    ];
    let (typo_rates, typo_cpu) = interleaved(c.rounds, c.round, &mut contestants);
    drop(contestants);
    results.put(
        "keystead.typo_per_s",
        format!("{:.0}", median(&typo_rates[0])),
    );
    results.put("peer.typo_per_s", format!("{:.0}", median(&typo_rates[1])));
    results.put(
        "ratio.typo",
        format!("{:.2}", ratio_median(&typo_rates[0], &typo_rates[1])),
    );
    results.put(
        "keystead.typo_per_cpu_s",
        format!("{:.0}", median(&typo_cpu[0])),
    );
    results.put(
        "peer.typo_per_cpu_s",
        format!("{:.0}", median(&typo_cpu[1])),
    );
    results.put(
        "ratio.typo_cpu",
        format!("{:.2}", ratio_median(&typo_cpu[0], &typo_cpu[1])),
    );
}

/// Step 5: keystead, 1 vs 2 threads, interleaved, next to a share-nothing HMAC control.
fn threads(c: &Config, store: &KeyStore, ks_sample: &[String], results: &mut Results) {
    eprintln!("keystead verify, 1 vs 2 threads ({} rounds) ", c.rounds);
    // Each thread also reads its own CPU time, so a shortfall can be told apart: contention in
    // keystead (less work per CPU-second) or a busy machine (fewer CPU-seconds per second).
    let verify_op = |t: usize, i: usize| {
        let key = &ks_sample[(i * 7 + t * 4099) % ks_sample.len()];
        let v = store.verify(black_box(key), &[SCOPE]).expect("verify");
        assert!(v.is_valid());
    };
    // Both threads walking the same keys at the same time (one busy client): the per-key
    // reference counts, the record-cache shard lock and the usage shard lock are then shared.
    let same_key_op = |_t: usize, i: usize| {
        let key = &ks_sample[(i * 7) % ks_sample.len()];
        let v = store.verify(black_box(key), &[SCOPE]).expect("verify");
        assert!(v.is_valid());
    };
    // The control: HMAC-SHA256 of thread-local data, which shares nothing between threads.
    // If it, too, does less work per CPU-second with 2 threads, the two CPUs are slowing each
    // other down (e.g. SMT siblings on the host), not keystead's shared state.
    let control_op = |t: usize, i: usize| {
        let mut secret = [t as u8; 32];
        secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
        black_box(peer::mac(black_box(&[7u8; 16]), &secret));
    };
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let (mut ctl_one, mut ctl_two) = (Vec::new(), Vec::new());
    let (mut same_one, mut same_two) = (Vec::new(), Vec::new());
    threaded(c.round, 1, &verify_op);
    threaded(c.round, 1, &control_op);
    for r in 0..c.rounds {
        if r % 2 == 0 {
            one.push(threaded(c.round, 1, &verify_op));
            two.push(threaded(c.round, 2, &verify_op));
            ctl_one.push(threaded(c.round, 1, &control_op));
            ctl_two.push(threaded(c.round, 2, &control_op));
            same_one.push(threaded(c.round, 1, &same_key_op));
            same_two.push(threaded(c.round, 2, &same_key_op));
        } else {
            same_two.push(threaded(c.round, 2, &same_key_op));
            same_one.push(threaded(c.round, 1, &same_key_op));
            ctl_two.push(threaded(c.round, 2, &control_op));
            ctl_one.push(threaded(c.round, 1, &control_op));
            two.push(threaded(c.round, 2, &verify_op));
            one.push(threaded(c.round, 1, &verify_op));
        }
        eprint!(".");
    }
    eprintln!();
    let col = |v: &[(f64, f64, f64)], i: usize| -> Vec<f64> {
        v.iter().map(|t| [t.0, t.1, t.2][i]).collect()
    };
    results.put(
        "keystead.verify_1t_per_s",
        format!("{:.0}", median(&col(&one, 0))),
    );
    results.put(
        "keystead.verify_2t_per_s",
        format!("{:.0}", median(&col(&two, 0))),
    );
    results.put(
        "ratio.threads_2_over_1",
        format!("{:.2}", ratio_median(&col(&two, 0), &col(&one, 0))),
    );
    // Verifies per CPU-second of the verifying threads, and how many CPUs they got.
    results.put(
        "keystead.verify_1t_per_cpu_s",
        format!("{:.0}", median(&col(&one, 1))),
    );
    results.put(
        "keystead.verify_2t_per_cpu_s",
        format!("{:.0}", median(&col(&two, 1))),
    );
    results.put(
        "keystead.cpus_used_1t",
        format!("{:.2}", median(&col(&one, 2))),
    );
    results.put(
        "keystead.cpus_used_2t",
        format!("{:.2}", median(&col(&two, 2))),
    );
    // Work per CPU-second, 2 threads over 1: keystead, and the share-nothing control.
    results.put(
        "ratio.threads_per_cpu_2_over_1",
        format!("{:.2}", ratio_median(&col(&two, 1), &col(&one, 1))),
    );
    results.put(
        "control.hmac_1t_per_s",
        format!("{:.0}", median(&col(&ctl_one, 0))),
    );
    results.put(
        "control.hmac_2t_per_s",
        format!("{:.0}", median(&col(&ctl_two, 0))),
    );
    results.put(
        "ratio.control_threads_2_over_1",
        format!("{:.2}", ratio_median(&col(&ctl_two, 0), &col(&ctl_one, 0))),
    );
    results.put(
        "ratio.control_threads_per_cpu_2_over_1",
        format!("{:.2}", ratio_median(&col(&ctl_two, 1), &col(&ctl_one, 1))),
    );
    results.put(
        "control.cpus_used_2t",
        format!("{:.2}", median(&col(&ctl_two, 2))),
    );
    results.put(
        "keystead.same_key_1t_per_s",
        format!("{:.0}", median(&col(&same_one, 0))),
    );
    results.put(
        "keystead.same_key_2t_per_s",
        format!("{:.0}", median(&col(&same_two, 0))),
    );
    results.put(
        "ratio.same_key_threads_2_over_1",
        format!(
            "{:.2}",
            ratio_median(&col(&same_two, 0), &col(&same_one, 0))
        ),
    );
    results.put(
        "ratio.same_key_threads_per_cpu_2_over_1",
        format!(
            "{:.2}",
            ratio_median(&col(&same_two, 1), &col(&same_one, 1))
        ),
    );
}

/// Runs `op` on `threads` threads for `round`; returns operations per second of wall time, per
/// second of the threads' CPU time, and the CPUs they got (CPU time over wall time).
fn threaded(
    round: Duration,
    threads: usize,
    op: &(dyn Fn(usize, usize) + Sync),
) -> (f64, f64, f64) {
    let deadline = Instant::now() + round;
    let start = Instant::now();
    let (total, cpu): (usize, f64) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let cpu_start = thread_cpu_secs();
                    let mut done = 0usize;
                    loop {
                        for _ in 0..64 {
                            op(t, done);
                            done += 1;
                        }
                        if Instant::now() >= deadline {
                            return (done, thread_cpu_secs() - cpu_start);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .fold((0, 0.0), |(n, c), (dn, dc)| (n + dn, c + dc))
    });
    let wall = start.elapsed().as_secs_f64();
    (total as f64 / wall, total as f64 / cpu, cpu / wall)
}

/// The human-readable summary of every result.
fn print_summary(c: &Config, results: &Results) {
    let get = |k: &str| results.get(k);
    let num = |k: &str| results.num(k);
    let mib = |k: &str| {
        num(k)
            .map(|v| format!("{:.1} MiB", v / 1024.0))
            .unwrap_or("-".into())
    };
    println!();
    println!(
        "Rust, N = {} keys, sample {}, {} interleaved rounds of {} ms (medians)",
        c.n,
        c.sample,
        c.rounds,
        c.round.as_millis()
    );
    println!(
        "{:<36} {:>16} {:>16} {:>8}",
        "", "keystead", "rusqlite peer", "ratio"
    );
    let row = |label: &str, a: Option<f64>, b: Option<f64>, ratio: Option<f64>| {
        println!(
            "{:<36} {:>16} {:>16} {:>8}",
            label,
            a.map(fmt_rate).unwrap_or("-".into()),
            b.map(fmt_rate).unwrap_or("-".into()),
            ratio.map(|r| format!("{r:.2}x")).unwrap_or("-".into())
        );
    };
    row(
        "verify valid (record cache on)",
        num("keystead.verify_per_s"),
        num("peer.verify_per_s"),
        num("ratio.verify"),
    );
    row(
        "verify valid (record cache off)",
        num("keystead_uncached.verify_per_s"),
        num("peer.verify_per_s"),
        num("ratio.verify_uncached"),
    );
    if let (Some(small_rate), Some(r)) = (
        num("keystead_small.verify_per_s"),
        num("ratio.verify_ns_n_over_small"),
    ) {
        println!(
            "{:<36} {:>16} {:>16} {:>8}",
            format!("keystead verify at {} keys", c.small_n),
            fmt_rate(small_rate),
            "",
            format!("{r:.2}x")
        );
        println!(
            "  (ratio: time per verify at {} keys / at {} keys, same rounds)",
            c.n, c.small_n
        );
    }
    row(
        "verify one-char typo",
        num("keystead.typo_per_s"),
        num("peer.typo_per_s"),
        num("ratio.typo"),
    );
    println!("per second of CPU time of the measuring thread (not inflated by a busy machine):");
    row(
        "  verify valid (record cache on)",
        num("keystead.verify_per_cpu_s"),
        num("peer.verify_per_cpu_s"),
        num("ratio.verify_cpu"),
    );
    row(
        "  verify valid (record cache off)",
        num("keystead_uncached.verify_per_cpu_s"),
        num("peer.verify_per_cpu_s"),
        num("ratio.verify_uncached_cpu"),
    );
    row(
        "  verify one-char typo",
        num("keystead.typo_per_cpu_s"),
        num("peer.typo_per_cpu_s"),
        num("ratio.typo_cpu"),
    );
    row(
        "bulk import (keys/s)",
        num("keystead.import_keys_per_s"),
        num("peer.import_keys_per_s"),
        None,
    );
    println!(
        "{:<36} {:>16} {:>16}",
        "file bytes per key",
        get("keystead.bytes_per_key").unwrap_or("-".into()),
        get("peer.bytes_per_key").unwrap_or("-".into())
    );
    println!(
        "{:<36} {:>16} {:>16}",
        "peak RSS, import process",
        mib("keystead.import_peak_rss_kib"),
        mib("peer.import_peak_rss_kib")
    );
    println!(
        "{:<36} {:>16} {:>16}",
        "peak RSS, open + verify process",
        mib("keystead.serve_peak_rss_kib"),
        mib("peer.serve_peak_rss_kib")
    );
    println!(
        "{:<36} {:>16} {:>16} {:>8}",
        "keystead 1 vs 2 threads",
        num("keystead.verify_1t_per_s")
            .map(fmt_rate)
            .unwrap_or("-".into()),
        num("keystead.verify_2t_per_s")
            .map(fmt_rate)
            .unwrap_or("-".into()),
        num("ratio.threads_2_over_1")
            .map(|r| format!("{r:.2}x"))
            .unwrap_or("-".into())
    );
    if let (Some(a), Some(b)) = (num("keystead.cpus_used_1t"), num("keystead.cpus_used_2t")) {
        println!(
            "  (CPUs the verifying threads got: {a:.2} with 1 thread, {b:.2} with 2; verifies per CPU-second: {} | {})",
            num("keystead.verify_1t_per_cpu_s").map(fmt_rate).unwrap_or("-".into()),
            num("keystead.verify_2t_per_cpu_s").map(fmt_rate).unwrap_or("-".into())
        );
    }
    println!(
        "{:<36} {:>16} {:>16} {:>8}",
        "control: HMAC only, 1 vs 2 threads",
        num("control.hmac_1t_per_s")
            .map(fmt_rate)
            .unwrap_or("-".into()),
        num("control.hmac_2t_per_s")
            .map(fmt_rate)
            .unwrap_or("-".into()),
        num("ratio.control_threads_2_over_1")
            .map(|r| format!("{r:.2}x"))
            .unwrap_or("-".into())
    );
    println!(
        "{:<36} {:>16} {:>16} {:>8}",
        "keystead, both threads on the same keys",
        num("keystead.same_key_1t_per_s")
            .map(fmt_rate)
            .unwrap_or("-".into()),
        num("keystead.same_key_2t_per_s")
            .map(fmt_rate)
            .unwrap_or("-".into()),
        num("ratio.same_key_threads_2_over_1")
            .map(|r| format!("{r:.2}x"))
            .unwrap_or("-".into())
    );
    if let Some(r) = num("ratio.same_key_threads_per_cpu_2_over_1") {
        println!("  (same keys: work per CPU-second, 2 threads / 1 thread {r:.2})");
    }
    if let (Some(k), Some(ctl)) = (
        num("ratio.threads_per_cpu_2_over_1"),
        num("ratio.control_threads_per_cpu_2_over_1"),
    ) {
        println!("  (work per CPU-second, 2 threads / 1 thread: keystead {k:.2}, share-nothing control {ctl:.2})");
    }
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always supported
    // on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

// ---------------------------------------------------------------------------------------------
// Diagnostics: where the bytes of a keystead file go

fn diag(path: &Path) -> Result<(), String> {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
    let copy = path.with_extension("diag-copy.redb");
    std::fs::copy(path, &copy).map_err(|e| format!("copy {}: {e}", path.display()))?;
    let before = file_bytes(std::slice::from_ref(&copy));
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let mut db = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .open(&copy)?;
        {
            let read = db.begin_read()?;
            println!(
                "{:<12} {:>10} {:>14} {:>14} {:>14} {:>10} {:>8}",
                "table", "entries", "stored B", "metadata B", "fragmented B", "leaf pg", "height"
            );
            for handle in read.list_tables()? {
                let name = handle.name().to_owned();
                let def: redb::TableDefinition<'_, &[u8], &[u8]> =
                    redb::TableDefinition::new(&name);
                // Key types differ per table; untyped access is enough for stats and length.
                match read.open_untyped_table(def) {
                    Ok(t) => {
                        let st = t.stats()?;
                        println!(
                            "{:<12} {:>10} {:>14} {:>14} {:>14} {:>10} {:>8}",
                            name,
                            t.len()?,
                            st.stored_bytes(),
                            st.metadata_bytes(),
                            st.fragmented_bytes(),
                            st.leaf_pages(),
                            st.tree_height()
                        );
                    }
                    Err(e) => println!("{name}: {e}"),
                }
            }
        }
        let stats = db.begin_write()?.stats()?;
        println!(
            "database: allocated pages {} x {} B = {} B; stored {} B, metadata {} B, fragmented {} B; file {} B",
            stats.allocated_pages(),
            stats.page_size(),
            stats.allocated_pages() * stats.page_size() as u64,
            stats.stored_bytes(),
            stats.metadata_bytes(),
            stats.fragmented_bytes(),
            before
        );
        let start = Instant::now();
        let mut passes = 0;
        while db.compact()? {
            passes += 1;
        }
        drop(db);
        println!(
            "after compact() ({passes} passes, {:.1?}): file {} B (was {} B)",
            start.elapsed(),
            file_bytes(std::slice::from_ref(&copy)),
            before
        );
        Ok(())
    })();
    let _ = std::fs::remove_file(&copy);
    result.map_err(|e| e.to_string())
}
