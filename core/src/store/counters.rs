//! A handle's counters (`KeyStore::stats`). The verify path's counters are striped: each
//! thread adds to one of `STRIPES` copies, each on cache lines of its own, so verifying
//! threads do not take turns owning one line; a snapshot sums the stripes. A verify adds one
//! to one slot: a slot per (outcome or error, lookup) pair, so a call costs one uncontended
//! atomic addition, and the snapshot derives the outcome and hit / miss totals. The rarer
//! counters (refreshes, flushes) share one line of their own.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::padded::Padded;
use crate::stats::{outcome_index, Stats};
use crate::verify::Verification;

const STRIPES: usize = 16;
/// Results per lookup kind: the eight outcomes, then errors.
const RESULTS: usize = 9;
const ERRORS: usize = 8;
/// `RESULTS` slots for each `Lookup` (its discriminant), 216 bytes: two cache lines a stripe.
const SLOTS: usize = RESULTS * 3;

/// Whether a verification looked in the record cache, and whether it read the backend.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Lookup {
    /// Never reached the cache (missing, malformed, wrong prefix, or failed before).
    None = 0,
    /// Answered from the cache.
    Hit = 1,
    /// Read a key record from the backend.
    Miss = 2,
}

pub(super) struct Counters {
    stripes: [Padded<[AtomicU64; SLOTS]>; STRIPES],
    cold: Padded<Cold>,
}

struct Cold {
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
    flushes: AtomicU64,
    flush_failures: AtomicU64,
    /// Nanoseconds from `base` to the last successful refresh, plus one; zero for never.
    last_refresh: AtomicU64,
    base: Instant,
}

/// Which stripe this thread adds to: handed out round-robin on a thread's first verify.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    // During thread teardown the slot may be gone: any stripe is correct, only slower.
    MINE.try_with(|mine| {
        let current = mine.get();
        if current != usize::MAX {
            return current;
        }
        let picked = NEXT.fetch_add(1, Relaxed) % STRIPES;
        mine.set(picked);
        picked
    })
    .unwrap_or(0)
}

impl Counters {
    pub(super) fn new() -> Self {
        Counters {
            stripes: std::array::from_fn(|_| Padded(std::array::from_fn(|_| AtomicU64::new(0)))),
            cold: Padded(Cold {
                refreshes: AtomicU64::new(0),
                refresh_failures: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                flush_failures: AtomicU64::new(0),
                last_refresh: AtomicU64::new(0),
                base: Instant::now(),
            }),
        }
    }

    /// Counts one verify call: its outcome or error, and its cache lookup.
    #[inline]
    pub(super) fn verified(&self, result: &Result<Verification>, lookup: Lookup) {
        let result = match result {
            Ok(verification) => outcome_index(verification.outcome()),
            Err(_) => ERRORS,
        };
        self.stripes[stripe()].0[lookup as usize * RESULTS + result].fetch_add(1, Relaxed);
    }

    pub(super) fn refreshed(&self, ok: bool) {
        self.cold.refreshes.fetch_add(1, Relaxed);
        if ok {
            let since = self.cold.base.elapsed().as_nanos();
            let since = u64::try_from(since).unwrap_or(u64::MAX - 1);
            self.cold.last_refresh.fetch_max(since + 1, Relaxed);
        } else {
            self.cold.refresh_failures.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn flushed(&self, ok: bool) {
        if ok {
            self.cold.flushes.fetch_add(1, Relaxed);
        } else {
            self.cold.flush_failures.fetch_add(1, Relaxed);
        }
    }

    /// The counters summed over the stripes; `usage_pending` and `cached_keys` are the
    /// caller's to fill in.
    pub(super) fn snapshot(&self) -> Stats {
        let mut sums = [0u64; SLOTS];
        for stripe in &self.stripes {
            for (sum, counter) in sums.iter_mut().zip(stripe.0.iter()) {
                *sum = sum.wrapping_add(counter.load(Relaxed));
            }
        }
        // Per result (outcome or error) over every lookup kind, and per lookup kind.
        let mut results = [0u64; RESULTS];
        let mut lookups = [0u64; 3];
        for (slot, sum) in sums.iter().enumerate() {
            results[slot % RESULTS] = results[slot % RESULTS].wrapping_add(*sum);
            lookups[slot / RESULTS] = lookups[slot / RESULTS].wrapping_add(*sum);
        }
        let mut outcomes = [0u64; 8];
        outcomes.copy_from_slice(&results[..8]);
        let last = self.cold.last_refresh.load(Relaxed);
        let last_refresh_age = (last != 0).then(|| {
            self.cold
                .base
                .elapsed()
                .saturating_sub(Duration::from_nanos(last - 1))
        });
        Stats {
            outcomes,
            verify_errors: results[ERRORS],
            cache_hits: lookups[Lookup::Hit as usize],
            cache_misses: lookups[Lookup::Miss as usize],
            refreshes: self.cold.refreshes.load(Relaxed),
            refresh_failures: self.cold.refresh_failures.load(Relaxed),
            flushes: self.cold.flushes.load(Relaxed),
            flush_failures: self.cold.flush_failures.load(Relaxed),
            usage_pending: 0,
            last_refresh_age,
            cached_keys: 0,
        }
    }
}
