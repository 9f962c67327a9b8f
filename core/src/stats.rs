//! A snapshot of a store handle's counters: what a hub feeds its own metrics system
//! (docs/metrics.md lists the fields and their meanings once, for every binding).

use std::time::Duration;

use crate::verify::Outcome;

/// Every [`Outcome`], in the order of [`Stats::outcomes`].
pub(crate) const OUTCOMES: [Outcome; 8] = Outcome::ALL;

/// The index of `outcome` in [`OUTCOMES`].
pub(crate) const fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Valid => 0,
        Outcome::Missing => 1,
        Outcome::Malformed => 2,
        Outcome::NotFound => 3,
        Outcome::Disabled => 4,
        Outcome::Revoked => 5,
        Outcome::Expired => 6,
        Outcome::InsufficientScope => 7,
    }
}

/// A snapshot of one [`KeyStore`](crate::KeyStore) handle's counters, from
/// [`KeyStore::stats`](crate::KeyStore::stats).
///
/// The counters count what this handle did since it was opened (other handles and processes
/// on the same store keep their own); they only grow. Each is read on its own, without a
/// lock, so a snapshot taken while other threads verify may count a verification in one
/// counter and not yet in another (e.g. an outcome before its cache hit).
///
/// # Example
/// ```
/// use keystead::{KeyStore, NewKey, Options, Outcome};
/// let store = KeyStore::open("memory:", Options::new())?;
/// let created = store.create(NewKey::new("ci"))?;
/// store.verify(created.key(), &[])?;
/// store.verify(created.key(), &[])?;
/// store.verify("not a key", &[])?;
///
/// let stats = store.stats();
/// assert_eq!(stats.outcome(Outcome::Valid), 2);
/// assert_eq!(stats.outcome(Outcome::Malformed), 1);
/// // The first verify of the key read it from the store; the second was answered from memory.
/// assert_eq!((stats.cache_misses, stats.cache_hits), (1, 1));
/// assert_eq!(stats.usage_pending, 2);
/// for (outcome, count) in stats.outcomes() {
///     println!("keystead_verifications_total{{outcome=\"{outcome}\"}} {count}");
/// }
/// # Ok::<(), keystead::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Verifications by outcome, indexed as [`OUTCOMES`]; read through [`Stats::outcomes`].
    pub(crate) outcomes: [u64; 8],
    /// Calls of `verify` / `verify_header` that returned an error instead of an outcome
    /// (e.g. `Unavailable`, or an invalid required scope).
    pub verify_errors: u64,
    /// Verifications of a well-formed key with this store's prefix answered from the record
    /// cache, without reading a key record from the backend.
    pub cache_hits: u64,
    /// Verifications of a well-formed key with this store's prefix that read a key record
    /// from the backend: the head of a key (or unknown id) not cached yet, or the whole
    /// record the first time a cached key's secret matched. A read that failed counts too.
    /// Verifications that never reach the cache (missing, malformed, wrong prefix, or an
    /// error before the lookup) are neither hits nor misses.
    pub cache_misses: u64,
    /// Reads of the backend's change feed by the verify path since the handle was opened
    /// (at most one per refresh interval, and after this handle's own writes). The read made
    /// while opening is not counted.
    pub refreshes: u64,
    /// Those reads that failed (counted in `refreshes` too).
    pub refresh_failures: u64,
    /// Batches of usage counts written to the backend, by the background flusher, `flush`,
    /// `usage`, `close` or drop. A flush with nothing pending writes nothing and is not
    /// counted.
    pub flushes: u64,
    /// Usage writes that failed (not counted in `flushes`); their counts are kept for the
    /// next flush.
    pub flush_failures: u64,
    /// Successful verifications counted in memory and not yet written to the backend,
    /// including those of a flush under way (they leave this count when the write succeeds,
    /// and stay in it when it fails).
    pub usage_pending: u64,
    /// How long ago the verify path last read the change feed successfully; `None` before its
    /// first successful read since the handle was opened.
    pub last_refresh_age: Option<Duration>,
    /// Keys whose record heads are in the record cache now (unknown ids remembered as absent
    /// are not counted).
    pub cached_keys: u64,
}

impl Stats {
    /// The number of verifications that ended in `outcome`.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome_index(outcome)]
    }

    /// Every outcome with its count, each once, in a fixed order (`valid` first); use
    /// [`Outcome::as_str`] for a label.
    pub fn outcomes(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        OUTCOMES
            .iter()
            .zip(self.outcomes.iter())
            .map(|(o, n)| (*o, *n))
    }

    /// Verifications that ended in an outcome (any outcome; errors are not counted).
    pub fn verifications(&self) -> u64 {
        self.outcomes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `OUTCOMES` and `outcome_index` agree, and name every outcome once.
    #[test]
    fn every_outcome_has_its_own_slot() {
        let mut codes: Vec<&str> = Vec::new();
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            assert_eq!(outcome_index(*outcome), i);
            codes.push(outcome.as_str());
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), OUTCOMES.len());
    }
}
