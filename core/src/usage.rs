//! Usage counted in memory on the verify path and flushed to the store in batches.

use std::collections::HashMap;
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

    fn merge(&mut self, other: Pending) {
        for (day, count) in other.days {
            self.add(day, count, other.last_used_ms);
        }
    }
}

/// Sharded by key id so concurrent verifies of different keys rarely share a lock.
pub(crate) struct UsageBuffer {
    shards: [Padded<Mutex<HashMap<u64, Pending>>>; SHARDS],
}

impl UsageBuffer {
    pub(crate) fn new() -> Self {
        UsageBuffer {
            shards: std::array::from_fn(|_| Padded(Mutex::new(HashMap::new()))),
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

    /// Takes everything pending; the caller puts it back with `restore` if it cannot store it.
    pub(crate) fn take(&self) -> Vec<(u64, Pending)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|poison| poison.into_inner());
            out.extend(map.drain());
        }
        out
    }

    /// The uses counted and not yet taken (for `KeyStore::stats`).
    pub(crate) fn pending(&self) -> u64 {
        let mut total = 0u64;
        for shard in &self.shards {
            let map = shard.lock().unwrap_or_else(|poison| poison.into_inner());
            for pending in map.values() {
                for &(_, count) in &pending.days {
                    total = total.saturating_add(count);
                }
            }
        }
        total
    }

    pub(crate) fn restore(&self, pending: Vec<(u64, Pending)>) {
        for (id, p) in pending {
            self.shard(id).entry(id).or_default().merge(p);
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
}
