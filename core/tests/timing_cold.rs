//! The cold path of `verify`: the first lookup of an id after the record cache lost it (an
//! attacker can force that by flooding the cache with unknown ids). An existing id with a
//! wrong secret and an unknown id must cost the same there too, whatever the existing
//! record weighs — otherwise the response time tells which ids exist.
//!
//! Method (dudect-style, with a control measured in the same run): four classes are measured
//! in random interleaved order — `A` existing ids with wrong secrets, `B` unknown ids, and two
//! control classes `C1`, `C2` drawn from one pool (existing ids with wrong secrets). Every
//! record carries ~4 KB of metadata, and the record cache holds 16 entries for pools of
//! thousands of ids: nearly every lookup is a cache miss that evicts another entry, i.e. the
//! first lookup of that id after a flood. The run is split into `BATCHES` time-ordered batches
//! with the same number of samples of each class; per batch the slowest 10% of its samples
//! (interrupts, page faults: noise) are cropped and
//!   d_i = mean(A) − mean(B)   (the contrast under test)
//!   c_i = mean(C1) − mean(C2) (a contrast that is zero by construction: the noise)
//! The statistic is mean(d) / sqrt(mean(c²) / BATCHES): the test contrast in units of the
//! standard error the control shows. Identical classes give a t-like value with `BATCHES`
//! degrees of freedom (|stat| > 6 has probability well under 10⁻⁴); a cold path that decodes
//! a whole record for existing ids but a small dummy for unknown ones (58 vs 7 µs before the
//! fix) gives hundreds. No time bound is asserted.
//!
//! Status: both tests are `#[ignore]`d because they still fail. Decoding only a fixed-size
//! head on a miss removed the record-size-dependent cost (release, 20,000 samples/class:
//! existing 3,239 ns vs unknown 1,701 ns, stat ≈ 340, before), but what remains is still seen
//! (stat 12-18 in release and debug): redb's `get` returns sooner when it finds nothing than
//! when it builds a guard over a found value (~25 ns release, measured on its own), and where
//! in the B-tree a record sits (records of different sizes differ by ~25 ns too, the small ones
//! being slower). A lookup of the first key >= the id (which always lands on a record) cut the
//! found / not-found gap to ~3 ns in isolation but not in the whole miss (~15 ns the other
//! way), and made a miss ~50% slower, so it was not kept. Run them with `--ignored` to see the
//! current figures.
//!
//! Run: `cargo test -p keystead --test timing_cold -- --nocapture` (release figures with
//! `--release`; samples via `KEYSTEAD_TIMING_COLD_SAMPLES` or `KEYSTEAD_RELIABILITY_SCALE`).

mod common;
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Options, Outcome};
use support::Rng;

const BATCHES: usize = 20;
const STAT_LIMIT: f64 = 6.0;
/// Existing keys; as many unknown ids.
const POOL: usize = 1024;

fn samples_per_class() -> usize {
    let default = if cfg!(debug_assertions) {
        4_000
    } else {
        20_000
    };
    support::scaled("KEYSTEAD_TIMING_COLD_SAMPLES", default).max(BATCHES * 10)
}

/// About 4 KB of metadata: four 1,000-character values.
fn heavy_metadata(i: usize) -> Vec<(String, String)> {
    (0..4)
        .map(|k| {
            let c = char::from(b'a' + ((i + k) % 26) as u8);
            (format!("m{k}"), c.to_string().repeat(1000))
        })
        .collect()
}

/// Mean of the samples at or below `limit`.
fn cropped_mean(samples: &[f64], limit: f64) -> f64 {
    let kept: Vec<f64> = samples.iter().copied().filter(|v| *v <= limit).collect();
    support::mean_var(&kept).0
}

/// A store whose record cache holds 16 entries (one per shard), so that with pools of
/// thousands of ids nearly every lookup is a miss that evicts another entry: the flood is the
/// other lookups. `heavy` keys carry ~4 KB of metadata, `light` ones none.
fn cold_store(
    heavy: usize,
    light: usize,
) -> (tempfile::TempDir, KeyStore, Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(
        dir.path().join("k.redb"),
        Options::new()
            .flush_interval(Duration::ZERO)
            // A long-lived snapshot: what is measured is the lookup, not a refresh.
            .refresh_interval(Duration::from_secs(3600))
            .record_cache_entries(16),
    )
    .unwrap();
    let create = |n: usize, meta: bool| -> Vec<String> {
        if n == 0 {
            return Vec::new();
        }
        store
            .create_many(
                (0..n)
                    .map(|i| {
                        let new = NewKey::new(format!("cold-{meta}-{i}"));
                        if meta {
                            new.metadata(heavy_metadata(i))
                        } else {
                            new
                        }
                    })
                    .collect(),
            )
            .unwrap()
            .iter()
            .map(|k| k.key().to_owned())
            .collect()
    };
    let heavy = create(heavy, true);
    let light = create(light, false);
    (dir, store, heavy, light)
}

/// Measures classes `a` and `b` and a control pair drawn from `a`, interleaved at random in
/// `BATCHES` time-ordered batches; prints and returns the statistic (see the file's doc).
fn cold_contrast(
    name: &str,
    store: &KeyStore,
    a: &[String],
    b: &[String],
    rng: &mut Rng,
    seed: u64,
) -> f64 {
    for input in a.iter().chain(b) {
        assert_eq!(
            store.verify(input, &[]).unwrap().outcome(),
            Outcome::NotFound
        );
    }
    let per_batch = samples_per_class() / BATCHES;
    let mut buffer = String::with_capacity(128);
    let mut contrasts = Vec::with_capacity(BATCHES);
    let mut controls = Vec::with_capacity(BATCHES);
    let mut means = [0f64; 4];
    for _ in 0..BATCHES {
        // The same number of samples of each class, in random order.
        let mut order: Vec<usize> = (0..4)
            .flat_map(|c| std::iter::repeat_n(c, per_batch))
            .collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut samples: [Vec<f64>; 4] = Default::default();
        for class in order {
            let pool = if class == 1 { b } else { a };
            // Every input is copied to the same buffer, so no class gets luckier addresses.
            buffer.clear();
            buffer.push_str(&pool[rng.below(pool.len() as u64) as usize]);
            let start = Instant::now();
            let result = store.verify(black_box(buffer.as_str()), &[]);
            let elapsed = start.elapsed().as_nanos() as f64;
            assert_eq!(result.unwrap().outcome(), Outcome::NotFound);
            samples[class].push(elapsed);
        }
        let pooled: Vec<f64> = samples.iter().flatten().copied().collect();
        let limit = support::quantile(&pooled, 0.90);
        let m: Vec<f64> = samples.iter().map(|s| cropped_mean(s, limit)).collect();
        contrasts.push(m[0] - m[1]);
        controls.push(m[2] - m[3]);
        for (sum, mean) in means.iter_mut().zip(&m) {
            *sum += mean / BATCHES as f64;
        }
    }
    let b_f = BATCHES as f64;
    let mean_d = contrasts.iter().sum::<f64>() / b_f;
    let noise = (controls.iter().map(|c| c * c).sum::<f64>() / b_f).sqrt();
    let stat = mean_d / (noise / b_f.sqrt());
    // The control's own statistic, for the record: the harness working as intended.
    let control_stat = (controls.iter().sum::<f64>() / b_f) / (noise / b_f.sqrt());
    println!(
        "timing_cold [{}] {name}: {} samples/class in {BATCHES} batches, p90-cropped means \
         {:.0} vs {:.0} ns (control {:.0} / {:.0}); contrast {mean_d:.0} ns, control rms \
         {noise:.0} ns; stat = {stat:.2} (asserted |stat| < {STAT_LIMIT}), control's own \
         {control_stat:.2}; seed {seed}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        per_batch * BATCHES,
        means[0],
        means[1],
        means[2],
        means[3],
    );
    stat
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(mut value: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).unwrap()
}

/// `key` with a random id (checksum recomputed): an unknown id drawn from the same uniform
/// distribution as real ids, so that unknown ids land all over the table like existing ones
/// (changing one character of an existing id would cluster them in a few leaves).
fn random_id(key: &str, rng: &mut Rng) -> String {
    let body_start = key.len() - 61;
    let id = base62(rng.next_u64(), 12);
    let mut out = format!(
        "{}{}{}",
        &key[..body_start],
        id,
        &key[body_start + 12..key.len() - 6]
    );
    let crc = common::crc32(out.as_bytes());
    out.push_str(&base62(u64::from(crc), 6));
    assert!(keystead::parse_key(&out).is_ok(), "{out}");
    out
}

#[test]
#[ignore = "still fails: redb's found vs not-found lookup (~25-35 ns release, ~500 ns debug; stat 12-18) and B-tree layout remain; was ~1,500 ns, stat ~340, before the head-only miss"]
fn the_first_lookup_of_an_existing_id_costs_what_an_unknown_ids_does() {
    let (mut rng, seed) = Rng::from_env();
    let (_dir, store, heavy, _) = cold_store(POOL, 0);
    let wrong: Vec<String> = heavy.iter().map(|k| common::wrong_secret(k)).collect();
    let unknown: Vec<String> = heavy.iter().map(|k| random_id(k, &mut rng)).collect();
    let stat = cold_contrast(
        "existing id (4 KB metadata), wrong secret vs unknown id",
        &store,
        &wrong,
        &unknown,
        &mut rng,
        seed,
    );
    assert!(
        stat.abs() < STAT_LIMIT,
        "the cold lookup tells existing from unknown ids: stat = {stat:.2} (seed {seed})"
    );
}

#[test]
#[ignore = "still fails: redb's found vs not-found lookup (~25-35 ns release, ~500 ns debug; stat 12-18) and B-tree layout remain; was ~1,500 ns, stat ~340, before the head-only miss"]
fn the_first_lookup_costs_the_same_whatever_the_record_weighs() {
    let (mut rng, seed) = Rng::from_env();
    let (_dir, store, heavy, light) = cold_store(POOL, POOL);
    let heavy: Vec<String> = heavy.iter().map(|k| common::wrong_secret(k)).collect();
    let light: Vec<String> = light.iter().map(|k| common::wrong_secret(k)).collect();
    let stat = cold_contrast(
        "wrong secret: record with 4 KB metadata vs without",
        &store,
        &heavy,
        &light,
        &mut rng,
        seed,
    );
    assert!(
        stat.abs() < STAT_LIMIT,
        "the cold lookup tells heavy from light records: stat = {stat:.2} (seed {seed})"
    );
}
