//! Criterion benchmarks of the core (see BENCHMARKS.md for results and how to run them).
//!
//! Store sizes come from `KEYSTEAD_BENCH_SIZES` (default `10000,100000,1000000`). Every loop
//! asserts its result, so a benchmark cannot silently measure the wrong path.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keystead::{parse_authorization_header, KeyStore, ListFilter, NewKey, Options, Outcome};
use keystead_benches::{bad_checksum, bench_options, fixture, unknown_id, wrong_secret};

const SAMPLE: usize = 1000;

fn sizes() -> Vec<usize> {
    std::env::var("KEYSTEAD_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn verify_benches(c: &mut Criterion) {
    for n in sizes() {
        let f = fixture(n, SAMPLE, bench_options());
        eprintln!(
            "fixture {}: {} keys imported in {:.2?} ({:.0} keys/s), file {} bytes ({:.0} B/key)",
            label(n),
            n,
            f.import_time,
            n as f64 / f.import_time.as_secs_f64(),
            std::fs::metadata(f.path()).map(|m| m.len()).unwrap_or(0),
            std::fs::metadata(f.path()).map(|m| m.len()).unwrap_or(0) as f64 / n as f64,
        );
        // A second handle on the same file with the record cache off: every verify reads its
        // record by point lookups in the B-tree (through the file backend's read transaction).
        let uncached =
            KeyStore::open(f.path(), bench_options().record_cache_entries(0)).expect("open");
        let wrong: Vec<String> = f.sample.iter().map(|k| wrong_secret(k)).collect();
        let unknown: Vec<String> = f.sample.iter().map(|k| unknown_id(k)).collect();
        let headers: Vec<String> = f.sample.iter().map(|k| format!("Bearer {k}")).collect();

        let mut group = c.benchmark_group("verify");
        group.throughput(Throughput::Elements(1));
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("valid", label(n)), |b| {
            b.iter(|| {
                i = (i + 1) % f.sample.len();
                let v = f
                    .store
                    .verify(black_box(&f.sample[i]), &["chat:completions"])
                    .unwrap();
                assert_eq!(v.outcome(), Outcome::Valid);
            })
        });
        group.bench_function(BenchmarkId::new("valid_uncached", label(n)), |b| {
            b.iter(|| {
                i = (i + 1) % f.sample.len();
                let v = uncached.verify(black_box(&f.sample[i]), &[]).unwrap();
                assert_eq!(v.outcome(), Outcome::Valid);
            })
        });
        group.bench_function(BenchmarkId::new("not_found", label(n)), |b| {
            b.iter(|| {
                i = (i + 1) % unknown.len();
                let v = f.store.verify(black_box(&unknown[i]), &[]).unwrap();
                assert_eq!(v.outcome(), Outcome::NotFound);
            })
        });
        group.bench_function(BenchmarkId::new("wrong_secret", label(n)), |b| {
            b.iter(|| {
                i = (i + 1) % wrong.len();
                let v = f.store.verify(black_box(&wrong[i]), &[]).unwrap();
                assert_eq!(v.outcome(), Outcome::NotFound);
            })
        });
        group.finish();

        let mut group = c.benchmark_group("verify_header");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("valid", label(n)), |b| {
            b.iter(|| {
                i = (i + 1) % headers.len();
                let v = f.store.verify_header(black_box(&headers[i]), &[]).unwrap();
                assert!(v.is_valid());
            })
        });
        group.finish();

        let mut group = c.benchmark_group("list");
        group.bench_function(BenchmarkId::new("first_100", label(n)), |b| {
            let filter = ListFilter::new().limit(100);
            b.iter(|| assert_eq!(f.store.list(&filter).unwrap().len(), 100))
        });
        group.finish();

        let mut group = c.benchmark_group("threads");
        let store = Arc::new(f.store);
        let sample = Arc::new(f.sample);
        for threads in [1usize, 2] {
            group.throughput(Throughput::Elements(1));
            group.bench_function(
                BenchmarkId::new(format!("verify_{threads}t"), label(n)),
                |b| b.iter_custom(|iters| parallel_verify(&store, &sample, threads, iters)),
            );
        }
        group.finish();
        drop(uncached);
    }
}

/// Runs `iters` verifies split over `threads` threads; returns the wall time.
fn parallel_verify(
    store: &Arc<KeyStore>,
    sample: &Arc<Vec<String>>,
    threads: usize,
    iters: u64,
) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(store);
            let sample = Arc::clone(sample);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per_thread as usize {
                    let key = &sample[(i * 7 + t * 13) % sample.len()];
                    assert!(store.verify(key, &[]).unwrap().is_valid());
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn parse_benches(c: &mut Criterion) {
    let f = fixture(10, 10, bench_options());
    let key = f.sample[0].clone();
    let malformed = bad_checksum(&key);
    let header = format!("Bearer {key}");
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("malformed", |b| {
        b.iter(|| {
            let v = f.store.verify(black_box(&malformed), &[]).unwrap();
            assert_eq!(v.outcome(), Outcome::Malformed);
        })
    });
    group.finish();
    let mut group = c.benchmark_group("parse_authorization_header");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bearer_key", |b| {
        b.iter(|| assert!(parse_authorization_header(black_box(header.as_bytes())).is_ok()))
    });
    group.finish();
}

fn admin_benches(c: &mut Criterion) {
    let f = fixture(10_000, 10, Options::new());
    let mut group = c.benchmark_group("admin");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("create/10k", |b| {
        b.iter(|| assert!(f.store.create(NewKey::new("bench")).unwrap().key().len() == 64))
    });
    group.bench_function("create_many_1000/10k", |b| {
        b.iter(|| {
            let batch = (0..1000).map(|_| NewKey::new("bulk")).collect();
            assert_eq!(f.store.create_many(batch).unwrap().len(), 1000)
        })
    });
    group.bench_function("rotate/10k", |b| {
        b.iter_batched(
            || {
                f.store
                    .create(NewKey::new("to-rotate"))
                    .unwrap()
                    .info()
                    .id()
            },
            |id| assert!(f.store.rotate(id, Duration::from_secs(60)).is_ok()),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = parse_benches, verify_benches, admin_benches
}
criterion_main!(benches);
