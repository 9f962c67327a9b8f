//! CPU time per cached verify with several threads verifying on one store handle at once,
//! for comparing two builds on a busy machine (like `verify_cpu`, which runs one thread).
//!
//! Each thread runs the loop of criterion's `verify/valid/<n>` over its own stretch of the
//! 1,000-key sample and reads its own CPU time from `/proc/thread-self/schedstat` (Linux), so
//! time spent waiting for a CPU is left out, while time lost to cache lines bouncing between
//! cores (shared counters, locks) is counted. One `RESULT` line per round:
//! `threads cpu_ns_per_verify` (the mean over the threads).
//!
//! `cargo run --release -p keystead-benches --example verify_threads -- [N_KEYS] [ROUNDS]
//! [VERIFIES_PER_THREAD] [THREADS]` (defaults 100,000 keys, 5 rounds of 1,000,000, 2 threads).

use std::hint::black_box;

use keystead::Outcome;
use keystead_benches::{bench_options, fixture};

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat is readable (Linux)")
}

fn main() {
    let args: Result<Vec<u64>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    let Ok(args) = args else {
        eprintln!("usage: verify_threads [N_KEYS] [ROUNDS] [VERIFIES_PER_THREAD] [THREADS]");
        std::process::exit(2);
    };
    let n = args.first().copied().unwrap_or(100_000) as usize;
    let rounds = args.get(1).copied().unwrap_or(5);
    let verifies = args.get(2).copied().unwrap_or(1_000_000).max(1);
    let threads = args.get(3).copied().unwrap_or(2).max(1) as usize;
    let f = fixture(n, 1000, bench_options());
    for key in &f.sample {
        let v = f.store.verify(key, &["chat:completions"]).unwrap();
        assert_eq!(v.outcome(), Outcome::Valid);
    }
    for _ in 0..rounds {
        let per_thread: Vec<f64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let f = &f;
                    scope.spawn(move || {
                        let mut i = t * f.sample.len() / threads;
                        let cpu = thread_cpu_ns();
                        for _ in 0..verifies {
                            i = (i + 1) % f.sample.len();
                            let v = f
                                .store
                                .verify(black_box(&f.sample[i]), &["chat:completions"])
                                .unwrap();
                            assert_eq!(v.outcome(), Outcome::Valid);
                        }
                        (thread_cpu_ns() - cpu) as f64 / verifies as f64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mean = per_thread.iter().sum::<f64>() / per_thread.len() as f64;
        println!("RESULT {threads} {mean:.1}");
    }
}
