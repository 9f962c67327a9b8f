//! The verify read path's record cache: decoded record heads, kept across generations (the
//! change feed evicts the keys that changed), sharded, bounded, with random eviction.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::model::KeyInfo;
use crate::padded::Padded;
use crate::record::{Head, State};

/// What verify needs of a key before its secret matched: the record's fixed-size head,
/// decoded on a cache miss at the same cost whatever the record weighs. The rest of the key
/// (name, scopes, metadata, usage) is decoded from the whole, checked record only after a
/// secret matched, once, into `info`. Unknown ids get an entry of the same shape decoded from
/// the dummy record's head (`present == false`), so both failure paths take the same steps.
pub(super) struct Cached {
    /// The id looked up (the map is keyed by its keyed hash).
    pub(super) id: u64,
    pub(super) present: bool,
    pub(super) salt: [u8; 16],
    pub(super) hash: [u8; 32],
    pub(super) state: State,
    pub(super) expires_at: Option<i64>,
    /// The key's info, decoded after a secret matched.
    pub(super) info: OnceLock<Arc<KeyInfo>>,
    /// The entry's index in its shard's `order`, for eviction.
    pub(super) slot: usize,
}

impl Cached {
    pub(super) fn new(id: u64, present: bool, head: &Head) -> Self {
        Cached {
            id,
            present,
            salt: head.salt,
            hash: head.hash,
            state: head.state,
            expires_at: head.expires_at,
            info: OnceLock::new(),
            slot: 0,
        }
    }
}

pub(super) const CACHE_SHARDS: usize = 16;

/// Passes on a hash computed already (the keyed hash of an id), so a lookup hashes once.
#[derive(Default)]
pub(super) struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// One shard: entries keyed by the keyed hash of their id, and those hashes in insertion
/// slots so that a random entry can be evicted in O(1).
pub(super) struct CacheShard {
    pub(super) map: HashMap<u64, Cached, BuildHasherDefault<Prehashed>>,
    pub(super) order: Vec<u64>,
    /// xorshift64* state for picking the entry to evict.
    pub(super) rng: u64,
    /// Entries of keys that exist (`present`), for `KeyStore::stats`.
    pub(super) keys: usize,
}

impl CacheShard {
    pub(super) fn evict_one(&mut self) {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % self.order.len() as u64) as usize;
        let victim = self.order.swap_remove(r);
        if self.map.remove(&victim).is_some_and(|e| e.present) {
            self.keys -= 1;
        }
        if let Some(&moved) = self.order.get(r) {
            if let Some(entry) = self.map.get_mut(&moved) {
                entry.slot = r;
            }
        }
    }
}

/// Decoded record heads (and known-absent ids), current as of the view's generation.
///
/// An id's shard and its place in the shard's table come from SipHash under a random key of
/// this cache, so nobody can choose ids that crowd one shard; a full shard evicts one random
/// entry per insert, so a flood of unknown ids cannot push a given entry out at once, and
/// memory stays bounded.
pub(super) struct RecordCache {
    pub(super) shards: [Padded<RwLock<CacheShard>>; CACHE_SHARDS],
    pub(super) per_shard: usize,
    pub(super) keys: RandomState,
    /// Bumped by each targeted eviction, before it evicts. A miss reads it before loading
    /// from the backend and caches its entry only if it is unchanged, so an entry read
    /// before a change can never be cached after that change's eviction ran.
    pub(super) evictions: AtomicU64,
}

impl RecordCache {
    pub(super) fn new(entries: usize) -> Self {
        let keys = RandomState::new();
        RecordCache {
            shards: std::array::from_fn(|i| {
                Padded(RwLock::new(CacheShard {
                    map: HashMap::default(),
                    order: Vec::new(),
                    rng: keys.hash_one(!(i as u64)) | 1,
                    keys: 0,
                }))
            }),
            per_shard: entries.div_ceil(CACHE_SHARDS),
            keys,
            evictions: AtomicU64::new(0),
        }
    }

    /// The eviction count a miss reads before it loads (see `evictions`).
    pub(super) fn eviction_epoch(&self) -> u64 {
        self.evictions.load(Ordering::SeqCst)
    }

    /// Drops the entries of `ids` (keys that changed).
    pub(super) fn evict(&self, ids: &[u64]) {
        self.evictions.fetch_add(1, Ordering::SeqCst);
        for &id in ids {
            self.remove(id);
        }
    }

    /// Drops the entry of `id`, if cached.
    pub(super) fn remove(&self, id: u64) {
        let (h, shard) = self.locate(id);
        let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
        if shard.map.get(&h).is_none_or(|e| e.id != id) {
            return;
        }
        if let Some(entry) = shard.map.remove(&h) {
            if entry.present {
                shard.keys -= 1;
            }
            let slot = entry.slot;
            shard.order.swap_remove(slot);
            if let Some(&moved) = shard.order.get(slot) {
                if let Some(moved) = shard.map.get_mut(&moved) {
                    moved.slot = slot;
                }
            }
        }
    }

    /// The keyed hash of `id` and its shard.
    pub(super) fn locate(&self, id: u64) -> (u64, &RwLock<CacheShard>) {
        let h = self.keys.hash_one(id);
        // The top bits pick the shard; the table inside uses the low ones.
        (h, &self.shards[(h >> 60) as usize % CACHE_SHARDS])
    }

    /// Runs `f` on the cached entry under the shard's read lock.
    pub(super) fn with<R>(&self, id: u64, f: impl FnOnce(&Cached) -> R) -> Option<R> {
        let (h, shard) = self.locate(id);
        let shard = shard.read().unwrap_or_else(|p| p.into_inner());
        shard.map.get(&h).filter(|e| e.id == id).map(f)
    }

    /// Caches `entry`, loaded after [`eviction_epoch`](Self::eviction_epoch) returned `epoch`
    /// (evicting a random entry of a full shard), and runs `f` on the cached entry: `entry`,
    /// or one another thread cached for the id meanwhile. If an eviction ran since `epoch`,
    /// `entry` may predate a change: `f` runs on it but it is not cached.
    pub(super) fn insert_with<R>(
        &self,
        entry: Cached,
        epoch: u64,
        f: impl FnOnce(&Cached) -> R,
    ) -> R {
        if self.per_shard == 0 {
            return f(&entry);
        }
        let id = entry.id;
        let (h, shard) = self.locate(id);
        let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
        if self.evictions.load(Ordering::SeqCst) != epoch {
            return f(&entry);
        }
        match shard.map.get(&h) {
            Some(existing) if existing.id == id => return f(existing),
            // Two ids with one 64-bit keyed hash: serve this one uncached.
            Some(_) => return f(&entry),
            None => {}
        }
        if shard.order.len() >= self.per_shard {
            shard.evict_one();
        }
        let slot = shard.order.len();
        shard.order.push(h);
        if entry.present {
            shard.keys += 1;
        }
        let stored = shard.map.entry(h).or_insert(Cached { slot, ..entry });
        f(stored)
    }

    /// How many cached entries are of keys that exist.
    pub(super) fn key_count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).keys as u64)
            .sum()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    #[cfg(test)]
    pub(super) fn contains(&self, id: u64) -> bool {
        self.with(id, |_| ()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    // Test-only: a blank record to make a `KeyInfo` from (the cache itself uses nothing above it).
    use crate::store::shared::blank_record;

    fn entry(id: u64) -> Cached {
        let head = Head {
            id,
            salt: [0; 16],
            hash: [0; 32],
            state: State::Active,
            expires_at: None,
        };
        Cached::new(id, false, &head)
    }

    fn insert(cache: &RecordCache, id: u64) {
        cache.insert_with(entry(id), cache.eviction_epoch(), |_| ());
    }

    /// A flood of unknown ids (each cached, like any miss) keeps memory bounded and evicts one
    /// entry per insert, not whole shards: most of the entries cached before it survive.
    #[test]
    fn a_flood_of_unknown_ids_neither_grows_the_cache_nor_clears_it() {
        const CAPACITY: usize = 1024;
        let cache = RecordCache::new(CAPACITY);
        let hot: Vec<u64> = (1..=CAPACITY as u64).map(|i| i << 20).collect();
        for &id in &hot {
            insert(&cache, id);
        }
        // The flood: one tenth of the capacity, with ids all in one residue class mod 16
        // (which, with `id % 16` shards, all landed in one shard).
        for i in 0..(CAPACITY as u64 / 10) {
            insert(&cache, 0xF00D_0000_0000 + i * 16);
            assert!(cache.len() <= CAPACITY + CACHE_SHARDS);
        }
        let survivors = hot.iter().filter(|&&id| cache.contains(id)).count();
        // Shard fill is uneven, so the flood evicts about one entry per insert that lands
        // in a full shard: ~90% stay. Clearing a full shard would have left ~0-50%.
        assert!(
            survivors >= CAPACITY * 3 / 4,
            "{survivors} of {CAPACITY} cached entries survived a flood of {}",
            CAPACITY / 10
        );
        // A long flood keeps the cache at its capacity, never above.
        for i in 0..(CAPACITY as u64 * 20) {
            insert(&cache, 0xBEEF_0000_0000 + i);
        }
        let per_shard = CAPACITY.div_ceil(CACHE_SHARDS);
        assert!(cache.len() <= per_shard * CACHE_SHARDS);
        assert!(cache.len() >= per_shard * CACHE_SHARDS * 9 / 10);
    }

    /// Ids that share their low bits spread over the shards (the shard comes from a keyed
    /// hash, not from the id).
    #[test]
    fn ids_chosen_to_share_a_shard_spread_over_all_of_them() {
        let cache = RecordCache::new(1 << 16);
        let mut used = [0usize; CACHE_SHARDS];
        for i in 0..1600u64 {
            let (h, _) = cache.locate(i * 16);
            used[(h >> 60) as usize] += 1;
        }
        assert!(used.iter().all(|&n| n > 40), "{used:?}");
    }

    #[test]
    fn a_disabled_cache_holds_nothing() {
        let cache = RecordCache::new(0);
        insert(&cache, 7);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_finds_what_it_holds_and_only_that() {
        let cache = RecordCache::new(64);
        insert(&cache, 7);
        assert!(cache.contains(7));
        assert!(!cache.contains(8));
        // A second insert of one id keeps the first entry (it may hold decoded info).
        let epoch = cache.eviction_epoch();
        let first = cache.insert_with(entry(7), epoch, |e| {
            e.info.set(Arc::new(dummy_info())).is_ok()
        });
        assert!(first);
        assert!(cache.insert_with(entry(7), epoch, |e| e.info.get().is_some()));
    }

    /// Targeted eviction drops exactly the named ids and keeps the slots consistent, so
    /// random eviction afterwards still finds every remaining entry.
    #[test]
    fn evicting_ids_drops_exactly_those() {
        let cache = RecordCache::new(1 << 12);
        for id in 1..=200u64 {
            insert(&cache, id);
        }
        cache.evict(&(1..=200u64).filter(|id| id % 3 == 0).collect::<Vec<_>>());
        for id in 1..=200u64 {
            assert_eq!(cache.contains(id), id % 3 != 0, "id {id}");
        }
        for shard in &cache.shards {
            let shard = shard.read().unwrap();
            for (i, h) in shard.order.iter().enumerate() {
                assert_eq!(shard.map[h].slot, i);
            }
        }
    }

    /// A miss loaded before an eviction ran is served but not cached: it may show the key
    /// as it was before the change the eviction is for.
    #[test]
    fn an_entry_loaded_before_an_eviction_is_not_cached_after_it() {
        let cache = RecordCache::new(64);
        let epoch = cache.eviction_epoch();
        // The change's eviction runs while the miss is loading.
        cache.evict(&[7]);
        let served = cache.insert_with(entry(7), epoch, |e| e.id);
        assert_eq!(served, 7);
        assert!(!cache.contains(7));
        // A miss that starts after the eviction is cached.
        cache.insert_with(entry(7), cache.eviction_epoch(), |_| ());
        assert!(cache.contains(7));
    }

    fn dummy_info() -> KeyInfo {
        KeyInfo::from_record(
            &blank_record(0, "x".into(), Vec::new(), BTreeMap::new(), None),
            None,
            0,
        )
    }
}
