//! A handle's counters (`KeyStore::stats`). The verify path's counters are striped: each
//! thread adds to one of `STRIPES` copies, each on its own cache line, so verifying threads
//! do not take turns owning one line; a snapshot sums the stripes. The rarer counters
//! (refreshes, flushes) share one line of their own.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::padded::Padded;
use crate::stats::{outcome_index, Stats};
use crate::verify::Verification;

const STRIPES: usize = 16;
/// Slots of a stripe after the eight outcomes.
const ERRORS: usize = 8;
const HITS: usize = 9;
const MISSES: usize = 10;
const SLOTS: usize = 11;

/// Whether a verification looked in the record cache, and whether it read the backend.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Lookup {
    /// Never reached the cache (missing, malformed, wrong prefix, or failed before).
    None,
    /// Answered from the cache.
    Hit,
    /// Read a key record from the backend.
    Miss,
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
        let stripe = &self.stripes[stripe()].0;
        let slot = match result {
            Ok(verification) => outcome_index(verification.outcome()),
            Err(_) => ERRORS,
        };
        stripe[slot].fetch_add(1, Relaxed);
        match lookup {
            Lookup::None => {}
            Lookup::Hit => {
                stripe[HITS].fetch_add(1, Relaxed);
            }
            Lookup::Miss => {
                stripe[MISSES].fetch_add(1, Relaxed);
            }
        }
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
        let mut outcomes = [0u64; 8];
        outcomes.copy_from_slice(&sums[..8]);
        let last = self.cold.last_refresh.load(Relaxed);
        let last_refresh_age = (last != 0).then(|| {
            self.cold
                .base
                .elapsed()
                .saturating_sub(Duration::from_nanos(last - 1))
        });
        Stats {
            outcomes,
            verify_errors: sums[ERRORS],
            cache_hits: sums[HITS],
            cache_misses: sums[MISSES],
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
