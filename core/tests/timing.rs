//! dudect-style timing tests of `verify` (Reparaz, Balasch, Verbauwhede, "Dude, is my code
//! constant time?", 2017), made to hold on a busy machine.
//!
//! Pairs compared, each a way an attacker could learn something from response times:
//!
//! - `secret prefix`: wrong secrets that share 42 of 43 characters with the real one vs. share
//!   none. A byte-wise early-exit comparison of *secrets* would leak here.
//! - `hash prefix`: wrong secrets whose HMAC equals the stored hash in its first byte (found
//!   by brute force, using the salt read from the file as a thief of the file could) vs.
//!   differs in it. This is the comparison keystead actually makes; a byte-wise early-exit
//!   compare would leak here.
//! - `unknown id`: an id that does not exist vs. an existing id with a wrong secret. Unknown
//!   ids are hashed against a dummy record so the two cost the same.
//!
//! **Method.** Each pair is measured as four classes in one run: `a1`, `a2` drawn from pool a
//! and `b1`, `b2` from pool b, in random interleaved order, so that whatever else the machine
//! does hits all four alike. The run is cut into `BATCHES` time-ordered batches; in each, the
//! slowest 10% of the batch's samples are cropped (interrupts, refreshes, migrations: noise,
//! not the code under test) and two contrasts are taken: the **test** contrast
//! `d = mean(a1 ∪ a2) − mean(b1 ∪ b2)` and the **control** contrast
//! `c = ((mean a1 − mean a2) + (mean b1 − mean b2)) / 2`, which has the same variance as `d`
//! but is zero in expectation whatever the code does. The statistic is
//! `mean(d) / sqrt(mean(c²) / BATCHES)`: the test contrast measured against the spread that
//! this run's own noise gives identical classes. Without a leak it follows Student's t with
//! `BATCHES` degrees of freedom, however loaded the machine (load widens the control's spread
//! as much as the test's); `|stat| ≥ 6` has probability below 10^-5 then. A leak of a few
//! nanoseconds gives values in the tens at these sample counts.
//!
//! Samples per pool: 40,000 in debug builds and 200,000 in release builds
//! (`KEYSTEAD_TIMING_SAMPLES`, or `KEYSTEAD_RELIABILITY_SCALE`). Release figures:
//! `cargo test --release -p keystead --test timing -- --nocapture --test-threads=1`.
//!
//! The read path caches decoded records **and known-absent ids**, per id. The first verify
//! of an id reads the file, later ones hit the cache; both classes' ids are therefore warmed
//! before measuring, so what is compared is the steady state every repeated guess sees.

mod common;
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Options, Outcome};
use ring::hmac;
use support::Rng;

/// Time-ordered batches per run: the degrees of freedom of the statistic.
const BATCHES: usize = 20;
/// Bound on |statistic| (Student's t, `BATCHES` degrees of freedom: P(|t| ≥ 6) < 10^-5).
const LIMIT: f64 = 6.0;

/// The tests of this file measure one at a time, not against each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn samples_per_class() -> usize {
    // Debug builds verify in ~6 µs, release in ~0.4 µs: both take about a second per pair.
    let default = if cfg!(debug_assertions) {
        40_000
    } else {
        200_000
    };
    support::scaled("KEYSTEAD_TIMING_SAMPLES", default)
}

/// `key` with its 43 secret characters replaced and the checksum recomputed.
fn with_secret(key: &str, secret: &str) -> String {
    assert_eq!(secret.len(), 43);
    let body_start = key.len() - 61;
    let mut out = format!("{}{}", &key[..body_start + 12], secret);
    let crc = common::crc32(out.as_bytes());
    out.push_str(&common::base62(u64::from(crc), 6));
    assert!(keystead::parse_key(&out).is_ok(), "{out}");
    out
}

fn secret_of(key: &str) -> &str {
    &key[key.len() - 49..key.len() - 6]
}

/// Per-batch means of the four classes (a1, a2, b1, b2) after the batch's crop.
struct Batch {
    means: [f64; 4],
}

/// Times `verify` on the four classes (a1, a2 from pool `a`; b1, b2 from pool `b`), `per_class`
/// samples each, in `BATCHES` batches of random interleaved order; each sample is a random input
/// of its pool. Returns per-batch cropped means and, for the printed summary, all raw samples.
fn measure(
    store: &KeyStore,
    a: &[String],
    b: &[String],
    per_class: usize,
    rng: &mut Rng,
) -> (Vec<Batch>, [Vec<f64>; 4]) {
    let per_batch = per_class.div_ceil(BATCHES).max(2);
    let mut all: [Vec<f64>; 4] = Default::default();
    let mut batches = Vec::with_capacity(BATCHES);
    let mut buffer = String::with_capacity(128);
    let mut schedule: Vec<usize> = Vec::with_capacity(4 * per_batch);
    let mut times = Vec::with_capacity(4 * per_batch);
    for _ in 0..BATCHES {
        schedule.clear();
        for class in 0..4 {
            schedule.extend(std::iter::repeat_n(class, per_batch));
        }
        // Fisher–Yates: a random interleaving of the four classes.
        for i in (1..schedule.len()).rev() {
            schedule.swap(i, rng.below(i as u64 + 1) as usize);
        }
        times.clear();
        for &class in &schedule {
            let pool = if class < 2 { a } else { b };
            // Every input is copied to the same buffer, so no class gets luckier addresses.
            buffer.clear();
            buffer.push_str(&pool[rng.below(pool.len() as u64) as usize]);
            let start = Instant::now();
            let result = store.verify(black_box(buffer.as_str()), &[]);
            let elapsed = start.elapsed().as_nanos() as f64;
            black_box(&result);
            times.push(elapsed);
        }
        let limit = support::quantile(&times, 0.90);
        let mut sums = [0.0f64; 4];
        let mut counts = [0usize; 4];
        let mut raw_sums = [0.0f64; 4];
        for (&class, &t) in schedule.iter().zip(&times) {
            all[class].push(t);
            raw_sums[class] += t;
            if t <= limit {
                sums[class] += t;
                counts[class] += 1;
            }
        }
        // A class cropped away entirely (it is that much slower) keeps its raw mean.
        let means = std::array::from_fn(|k| {
            if counts[k] > 0 {
                sums[k] / counts[k] as f64
            } else {
                raw_sums[k] / per_batch as f64
            }
        });
        batches.push(Batch { means });
    }
    (batches, all)
}

/// The test contrast's mean over the batches divided by the control contrast's spread (see
/// the module docs); also returns the mean test contrast in nanoseconds.
fn statistic(batches: &[Batch]) -> (f64, f64) {
    let n = batches.len() as f64;
    let mut sum_d = 0.0;
    let mut sum_c2 = 0.0;
    for batch in batches {
        let [a1, a2, b1, b2] = batch.means;
        let d = (a1 + a2) / 2.0 - (b1 + b2) / 2.0;
        let c = ((a1 - a2) + (b1 - b2)) / 2.0;
        sum_d += d;
        sum_c2 += c * c;
    }
    let mean_d = sum_d / n;
    let se = (sum_c2 / n / n).sqrt();
    let stat = if se == 0.0 { 0.0 } else { mean_d / se };
    (stat, mean_d)
}

/// Measures, prints and returns the statistic for one pair of classes.
fn compare(name: &str, store: &KeyStore, a: &[String], b: &[String], rng: &mut Rng) -> f64 {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for input in a.iter().chain(b) {
        assert_eq!(
            store.verify(input, &[]).unwrap().outcome(),
            Outcome::NotFound
        );
    }
    // Warm-up: the snapshot, every id's cache entry (record or known-absent), the CPU.
    for _ in 0..20 {
        for input in a.iter().chain(b) {
            black_box(store.verify(input, &[]).unwrap());
        }
    }
    let n = samples_per_class();
    let (batches, all) = measure(store, a, b, n / 2, rng);
    let (stat, mean_d) = statistic(&batches);
    let pool_a: Vec<f64> = all[0].iter().chain(&all[1]).copied().collect();
    let pool_b: Vec<f64> = all[2].iter().chain(&all[3]).copied().collect();
    let welch = support::welch_t(&pool_a, &pool_b);
    let control_welch = support::welch_t(&all[0], &all[1]);
    println!(
        "timing [{}] {name}: {} samples/pool in {BATCHES} batches, median {:.0} vs {:.0} ns; \
         test contrast {mean_d:+.1} ns, statistic {stat:.2} (asserted |stat| < {LIMIT}); \
         for reference, uncropped Welch t {welch:.2} (test), {control_welch:.2} (control a1 vs a2)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        pool_a.len(),
        support::quantile(&pool_a, 0.5),
        support::quantile(&pool_b, 0.5),
    );
    stat
}

/// A store with `n` keys (created in one transaction); returns them too.
fn store_with_keys(n: usize) -> (tempfile::TempDir, KeyStore, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(
        dir.path().join("k.redb"),
        Options::new().flush_interval(Duration::ZERO),
    )
    .unwrap();
    let keys = store
        .create_many((0..n).map(|i| NewKey::new(format!("timed-{i}"))).collect())
        .unwrap()
        .iter()
        .map(|k| k.key().to_owned())
        .collect();
    (dir, store, keys)
}

/// `secret` with its last character changed.
fn last_changed(secret: &str) -> String {
    let last = secret.as_bytes()[42];
    format!("{}{}", &secret[..42], if last == b'0' { '1' } else { '0' })
}

/// Each class is a pool of inputs over the same ids, drawn from the same distribution of
/// values, so that what differs between the classes is only their relation to the stored
/// secrets. A large pool matters: with a handful of fixed inputs, per-input effects (how a
/// value decodes, where an id lands in the cache's hash table) do not average out, and the
/// t statistic grows with the sample count even for identical classes.
const POOL: usize = 256;

#[test]
fn wrong_secrets_take_the_same_time_whatever_they_share_with_the_real_one() {
    let (mut rng, seed) = Rng::from_env();
    let (_dir, store, keys) = store_with_keys(POOL);
    // Class A: key i's id with key i's secret, last character changed (42 of 43 shared).
    // Class B: key i's id with another key's secret, last character changed (the first
    // character differs too, so no prefix is shared).
    let near: Vec<String> = keys
        .iter()
        .map(|k| with_secret(k, &last_changed(secret_of(k))))
        .collect();
    let far: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let other = (1..POOL)
                .map(|d| &keys[(i + d) % POOL])
                .find(|o| secret_of(o).as_bytes()[0] != secret_of(k).as_bytes()[0])
                .unwrap();
            with_secret(k, &last_changed(secret_of(other)))
        })
        .collect();
    let t = compare(
        "secret prefix: 42 chars vs 0 chars",
        &store,
        &near,
        &far,
        &mut rng,
    );
    assert!(t.abs() < LIMIT, "statistic {t:.2} (seed {seed})");
}

/// The salt, hash and id of every key, read from the file as a thief of the file could.
fn records(path: &std::path::Path) -> Vec<(u64, [u8; 16], [u8; 32])> {
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(path)
        .unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let keys: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("keys");
    let table = txn.open_table(keys).unwrap();
    redb::ReadableTable::iter(&table)
        .unwrap()
        .map(|entry| {
            let (id, record) = entry.unwrap();
            let record = record.value();
            // Record v1: version, algorithm, id (8), salt (16), hash (32), ...
            let mut salt = [0u8; 16];
            let mut hash = [0u8; 32];
            salt.copy_from_slice(&record[10..26]);
            hash.copy_from_slice(&record[26..58]);
            (id.value(), salt, hash)
        })
        .collect()
}

#[test]
fn wrong_secrets_take_the_same_time_whatever_their_hash_shares_with_the_stored_one() {
    let (mut rng, seed) = Rng::from_env();
    let (dir, store, keys) = store_with_keys(POOL);
    let path = dir.path().join("k.redb");
    store.close().unwrap();
    let by_id: std::collections::HashMap<String, &String> = keys
        .iter()
        .map(|k| (keystead::parse_key(k).unwrap().id.to_string(), k))
        .collect();
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &[0u8; 32]);
    let (mut near, mut far) = (Vec::new(), Vec::new());
    for (id, salt, hash) in records(&path) {
        let key = by_id[&common::base62(id, 12)];
        let tag = |secret: &[u8; 32]| {
            let mut message = Vec::with_capacity(56);
            message.extend_from_slice(&salt);
            message.extend_from_slice(&id.to_be_bytes());
            message.extend_from_slice(secret);
            hmac::sign(&hmac_key, &message)
        };
        // The model of the stored hash is right: the real secret gives it.
        assert_eq!(
            tag(&common::base62_decode_u256(secret_of(key))).as_ref(),
            &hash[..]
        );
        let mut random_secret = || {
            let mut secret = [0u8; 32];
            for chunk in secret.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            secret
        };
        // A first byte that matches (a byte-wise compare would go on to the second) and one
        // that does not (it would stop at once). Matching more bytes costs 256 times more
        // HMACs per byte; a pool of keys matters more here than a longer match.
        let matching = loop {
            let secret = random_secret();
            if tag(&secret).as_ref()[0] == hash[0] {
                break secret;
            }
        };
        let differing = loop {
            let secret = random_secret();
            if tag(&secret).as_ref()[0] != hash[0] {
                break secret;
            }
        };
        near.push(with_secret(key, &common::base62_u256(matching)));
        far.push(with_secret(key, &common::base62_u256(differing)));
    }
    let store = KeyStore::open(&path, Options::new().flush_interval(Duration::ZERO)).unwrap();
    let t = compare(
        "hash prefix: first byte equal vs different",
        &store,
        &near,
        &far,
        &mut rng,
    );
    assert!(t.abs() < LIMIT, "statistic {t:.2} (seed {seed})");
}

#[test]
fn an_unknown_id_takes_the_same_time_as_a_wrong_secret() {
    let (mut rng, seed) = Rng::from_env();
    let (_dir, store, keys) = store_with_keys(POOL);
    let unknown: Vec<String> = keys.iter().map(|k| common::unknown_id(k)).collect();
    let wrong: Vec<String> = keys.iter().map(|k| common::wrong_secret(k)).collect();
    let t = compare(
        "unknown id vs wrong secret",
        &store,
        &unknown,
        &wrong,
        &mut rng,
    );
    assert!(t.abs() < LIMIT, "statistic {t:.2} (seed {seed})");
}

/// The harness itself: two classes drawn from the same pool must not differ. If this fails,
/// the machine is too noisy for the other results to mean anything.
#[test]
fn control_identical_classes_do_not_differ() {
    let (mut rng, seed) = Rng::from_env();
    let (_dir, store, keys) = store_with_keys(POOL);
    let wrong: Vec<String> = keys.iter().map(|k| common::wrong_secret(k)).collect();
    let t = compare(
        "control: wrong secret vs wrong secret",
        &store,
        &wrong,
        &wrong,
        &mut rng,
    );
    assert!(t.abs() < LIMIT, "statistic {t:.2} (seed {seed})");
}
