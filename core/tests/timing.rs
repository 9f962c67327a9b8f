//! dudect-style timing tests of `verify` (Reparaz, Balasch, Verbauwhede, "Dude, is my code
//! constant time?", 2017): two classes of inputs are measured in random interleaved order, the
//! slowest samples are cropped (they are interrupts, refreshes, migrations: noise, not the
//! code under test), and Welch's t-statistic says whether the two means differ.
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
//! Threshold: dudect reads |t| > 4.5 as "probably leaking". Here the samples per class are
//! 40,000 in debug builds and 200,000 in release builds (`KEYSTEAD_TIMING_SAMPLES`, or
//! `KEYSTEAD_RELIABILITY_SCALE`); at those counts a data-dependent difference of a few
//! nanoseconds gives |t| in the tens or hundreds, while the control below (two classes drawn
//! from one pool) stays under ~4, and reached 4.5 only at 10^6 samples on a shared 2-core
//! machine. We assert |t| < 10 on the 90th-percentile crop: loose enough that background load
//! alone does not fail CI, tight enough that a leak of that size does. Release figures:
//! `cargo test --release -p keystead --test timing -- --nocapture --test-threads=1`.
//!
//! The read path caches decoded records **and known-absent ids**, per id. The first verify
//! of an id reads the file, later ones hit the cache; both classes' ids are therefore warmed
//! before measuring, so what is compared is the steady state every repeated guess sees. The
//! cold first lookup of an id is not measured: reading and decoding a record costs more than
//! finding none, which tells at most whether that id exists — the question the `unknown id`
//! pair asks of the steady state — and happens once per id per store generation.

mod common;
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Options, Outcome};
use ring::hmac;
use support::Rng;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const T_LIMIT: f64 = 10.0;

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

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn base62_u64(mut value: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).unwrap()
}

/// A 256-bit big-endian number as 43 base62 digits.
fn base62_u256(mut n: [u8; 32]) -> String {
    let mut digits = vec![b'0'; 43];
    for slot in digits.iter_mut().rev() {
        let mut rem = 0u32;
        for byte in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 62) as u8;
            rem = cur % 62;
        }
        *slot = ALPHABET[rem as usize];
    }
    String::from_utf8(digits).unwrap()
}

fn decode_u256(text: &str) -> [u8; 32] {
    let mut n = [0u8; 32];
    for c in text.bytes() {
        let mut carry = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        for byte in n.iter_mut().rev() {
            let cur = u32::from(*byte) * 62 + carry;
            *byte = cur as u8;
            carry = cur >> 8;
        }
    }
    n
}

/// `key` with its 43 secret characters replaced and the checksum recomputed.
fn with_secret(key: &str, secret: &str) -> String {
    assert_eq!(secret.len(), 43);
    let body_start = key.len() - 61;
    let mut out = format!("{}{}", &key[..body_start + 12], secret);
    let crc = crc32(out.as_bytes());
    out.push_str(&base62_u64(u64::from(crc), 6));
    assert!(keystead::parse_key(&out).is_ok(), "{out}");
    out
}

fn secret_of(key: &str) -> &str {
    &key[key.len() - 49..key.len() - 6]
}

/// Times `verify` on inputs of class `a` and class `b` in random interleaved order, each
/// sample a random input of its class's pool; returns nanoseconds per class.
fn measure(
    store: &KeyStore,
    a: &[String],
    b: &[String],
    n: usize,
    rng: &mut Rng,
) -> (Vec<f64>, Vec<f64>) {
    let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut buffer = String::with_capacity(128);
    while ta.len() < n || tb.len() < n {
        let pick_a = if ta.len() == n {
            false
        } else if tb.len() == n {
            true
        } else {
            rng.chance(50)
        };
        let pool = if pick_a { a } else { b };
        // Every input is copied to the same buffer, so no class gets luckier addresses.
        buffer.clear();
        buffer.push_str(&pool[rng.below(pool.len() as u64) as usize]);
        let start = Instant::now();
        let result = store.verify(black_box(buffer.as_str()), &[]);
        let elapsed = start.elapsed().as_nanos() as f64;
        black_box(&result);
        if pick_a {
            ta.push(elapsed);
        } else {
            tb.push(elapsed);
        }
    }
    (ta, tb)
}

/// Keeps the samples below the pooled `q` quantile; returns Welch's t on what is left.
fn cropped_t(a: &[f64], b: &[f64], q: f64) -> f64 {
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let limit = support::quantile(&pooled, q);
    let keep = |x: &[f64]| {
        x.iter()
            .copied()
            .filter(|v| *v <= limit)
            .collect::<Vec<_>>()
    };
    support::welch_t(&keep(a), &keep(b))
}

/// Measures, prints and checks one pair of classes; returns t on the p90 crop.
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
    let (ta, tb) = measure(store, a, b, n, rng);
    let (ma, _) = support::mean_var(&ta);
    let (mb, _) = support::mean_var(&tb);
    let t_all = support::welch_t(&ta, &tb);
    let t99 = cropped_t(&ta, &tb, 0.99);
    let t90 = cropped_t(&ta, &tb, 0.90);
    let t50 = cropped_t(&ta, &tb, 0.50);
    println!(
        "timing [{}] {name}: {n} samples/class, median {:.0} vs {:.0} ns, mean {:.0} vs {:.0} ns; \
         t = {t_all:.2} (all), {t99:.2} (p99), {t90:.2} (p90, asserted |t| < {T_LIMIT}), {t50:.2} (p50)",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        support::quantile(&ta, 0.5),
        support::quantile(&tb, 0.5),
        ma,
        mb,
    );
    t90
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
    assert!(t.abs() < T_LIMIT, "t = {t:.2} (seed {seed})");
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
        let key = by_id[&base62_u64(id, 12)];
        let tag = |secret: &[u8; 32]| {
            let mut message = Vec::with_capacity(56);
            message.extend_from_slice(&salt);
            message.extend_from_slice(&id.to_be_bytes());
            message.extend_from_slice(secret);
            hmac::sign(&hmac_key, &message)
        };
        // The model of the stored hash is right: the real secret gives it.
        assert_eq!(tag(&decode_u256(secret_of(key))).as_ref(), &hash[..]);
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
        near.push(with_secret(key, &base62_u256(matching)));
        far.push(with_secret(key, &base62_u256(differing)));
    }
    let store = KeyStore::open(&path, Options::new().flush_interval(Duration::ZERO)).unwrap();
    let t = compare(
        "hash prefix: first byte equal vs different",
        &store,
        &near,
        &far,
        &mut rng,
    );
    assert!(t.abs() < T_LIMIT, "t = {t:.2} (seed {seed})");
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
    assert!(t.abs() < T_LIMIT, "t = {t:.2} (seed {seed})");
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
    assert!(t.abs() < T_LIMIT, "t = {t:.2} (seed {seed})");
}
