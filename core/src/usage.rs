//! Usage counted in memory on the verify path and flushed to the store in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::padded::Padded;
use crate::time;

const SHARDS: usize = 16;

/// Uses of one key since the last flush.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) last_used_ms: i64,
    /// (UTC day, count), almost always one entry.
    pub(crate) days: Vec<(u32, u64)>,
}

impl Pending {
    fn add(&mut self, day: u32, count: u64, at_ms: i64) {
        self.last_used_ms = self.last_used_ms.max(at_ms);
        match self.days.iter_mut().find(|(d, _)| *d == day) {
            Some((_, c)) => *c += count,
            None => self.days.push((day, count)),
        }
    }

    /// The uses this entry holds, over all its days.
    fn count(&self) -> u64 {
        self.days
            .iter()
            .fold(0u64, |total, &(_, count)| total.saturating_add(count))
    }

    fn merge(&mut self, other: Pending) {
        for (day, count) in other.days {
            self.add(day, count, other.last_used_ms);
        }
    }
}

/// Sharded by key id so concurrent verifies of different keys rarely share a lock.
pub(crate) struct UsageBuffer {
    shards: [Padded<Mutex<HashMap<u64, Pending>>>; SHARDS],
    /// Uses taken by a flush that has neither written nor put them back yet: still pending
    /// for `stats()`, which would otherwise dip to 0 during every flush (for as long as a
    /// connect timeout when the database is down).
    in_flight: AtomicU64,
}

impl UsageBuffer {
    pub(crate) fn new() -> Self {
        UsageBuffer {
            shards: std::array::from_fn(|_| Padded(Mutex::new(HashMap::new()))),
            in_flight: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        // A panic while holding a shard lock cannot leave a count half-updated, so a
        // poisoned lock is still safe to use.
        self.shards[(id as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn record(&self, id: u64, at_ms: i64) {
        self.shard(id)
            .entry(id)
            .or_default()
            .add(time::day_of(at_ms), 1, at_ms);
    }

    /// Takes everything pending; the caller then calls `written` once the batch is stored,
    /// or puts it back with `restore` if it cannot store it. Until then the taken uses still
    /// count as pending.
    pub(crate) fn take(&self) -> Vec<(u64, Pending)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|poison| poison.into_inner());
            // Counted in flight before the shard lock is released, so `pending` never
            // misses them.
            self.in_flight
                .fetch_add(map.values().map(Pending::count).sum(), Ordering::Relaxed);
            out.extend(map.drain());
        }
        out
    }

    /// A batch from `take` was stored: its uses are no longer pending.
    pub(crate) fn written(&self, batch: &[(u64, Pending)]) {
        let n = batch.iter().map(|(_, p)| p.count()).sum();
        self.settle(n);
    }

    /// Drops a batch from `take` without storing it (a child after fork drops the parent's).
    pub(crate) fn discard(&self, batch: Vec<(u64, Pending)>) {
        self.written(&batch);
    }

    fn settle(&self, n: u64) {
        // Never below 0: `saturating_sub` in a CAS loop.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// The uses counted and not yet written (for `KeyStore::stats`): those waiting for the
    /// next flush and those of a flush under way.
    pub(crate) fn pending(&self) -> u64 {
        let mut total = 0u64;
        for shard in &self.shards {
            let map = shard.lock().unwrap_or_else(|poison| poison.into_inner());
            for pending in map.values() {
                total = total.saturating_add(pending.count());
            }
        }
        total.saturating_add(self.in_flight.load(Ordering::Relaxed))
    }

    /// Puts back a batch from `take` that could not be stored.
    pub(crate) fn restore(&self, pending: Vec<(u64, Pending)>) {
        for (id, p) in pending {
            let n = p.count();
            let mut shard = self.shard(id);
            shard.entry(id).or_default().merge(p);
            // Moved back from in flight to the map under the shard lock.
            self.settle(n);
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.lock().unwrap_or_else(|p| p.into_inner()).is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_restore_lose_nothing() {
        let buffer = UsageBuffer::new();
        for i in 0..100 {
            buffer.record(i % 7, 1_000 + i as i64);
        }
        let taken = buffer.take();
        assert!(buffer.is_empty());
        let total: u64 = taken
            .iter()
            .flat_map(|(_, p)| p.days.iter().map(|d| d.1))
            .sum();
        assert_eq!(total, 100);
        buffer.record(3, 5);
        buffer.restore(taken);
        let again: u64 = buffer
            .take()
            .iter()
            .flat_map(|(_, p)| p.days.iter().map(|d| d.1))
            .sum();
        assert_eq!(again, 101);
    }

    #[test]
    fn taken_uses_stay_pending_until_written_or_put_back() {
        let buffer = UsageBuffer::new();
        for i in 0..10 {
            buffer.record(i % 3, 1_000);
        }
        assert_eq!(buffer.pending(), 10);
        let taken = buffer.take();
        assert!(buffer.is_empty());
        assert_eq!(buffer.pending(), 10, "a flush under way still owes them");
        buffer.record(1, 2_000);
        assert_eq!(buffer.pending(), 11);
        buffer.restore(taken);
        assert_eq!(buffer.pending(), 11, "put back: counted once, not twice");
        let taken = buffer.take();
        buffer.written(&taken);
        assert_eq!(buffer.pending(), 0);
        buffer.record(1, 3_000);
        buffer.discard(buffer.take());
        assert_eq!(buffer.pending(), 0);
    }
}
