//! CPU time per cached verify, for comparing two builds on a busy machine.
//!
//! criterion measures wall time, which on a shared machine mostly measures how much CPU the
//! benchmark got. This driver runs the loop of criterion's `verify/valid/<n>` (the same
//! fixture, the same 1,000-key sample, the same call and assertion) and reads the thread's own
//! CPU time from `/proc/thread-self/schedstat` (Linux), so time spent waiting for a CPU is left
//! out. It prints one `RESULT` line per round: `cpu_ns_per_verify wall_ns_per_verify`. The
//! kernel updates that counter at scheduler ticks (a few ms), so keep rounds long: the default
//! of 2,000,000 verifies takes about a second.
//!
//! `cargo run --release -p keystead-benches --example verify_cpu -- [N_KEYS] [ROUNDS] [VERIFIES]`
//! (defaults 1,000,000 keys, 10 rounds of 2,000,000 verifies).

use std::hint::black_box;
use std::time::Instant;

use keystead::Outcome;
use keystead_benches::{bench_options, fixture};

/// Nanoseconds this thread has run on a CPU (first field of schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat is readable (Linux)")
}

fn main() {
    let args: Result<Vec<u64>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    let Ok(args) = args else {
        eprintln!("usage: verify_cpu [N_KEYS] [ROUNDS] [VERIFIES] (whole numbers)");
        std::process::exit(2);
    };
    let n = args.first().copied().unwrap_or(1_000_000) as usize;
    let rounds = args.get(1).copied().unwrap_or(10);
    let verifies = args.get(2).copied().unwrap_or(2_000_000).max(1);
    let f = fixture(n, 1000, bench_options());
    eprintln!("fixture: {n} keys in {:.2?}", f.import_time);
    // Warm up: the first verify after the import reads the change feed / a new snapshot.
    for key in &f.sample {
        assert_eq!(
            f.store
                .verify(key, &["chat:completions"])
                .unwrap()
                .outcome(),
            Outcome::Valid
        );
    }
    let mut i = 0usize;
    for _ in 0..rounds {
        let cpu = thread_cpu_ns();
        let wall = Instant::now();
        for _ in 0..verifies {
            i = (i + 1) % f.sample.len();
            let v = f
                .store
                .verify(black_box(&f.sample[i]), &["chat:completions"])
                .unwrap();
            assert_eq!(v.outcome(), Outcome::Valid);
        }
        let wall = wall.elapsed().as_nanos() as f64 / verifies as f64;
        let cpu = (thread_cpu_ns() - cpu) as f64 / verifies as f64;
        println!("RESULT {cpu:.1} {wall:.1}");
    }
}
