//! The room below the jobs: a handle's shared state (`Inner`, its read `View`) and the
//! small helpers that the read path, the admin writes and the flusher all use. Nothing here
//! uses those modules, so arrows between them run one way (ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use ring::rand::{SecureRandom, SystemRandom};

use super::cache::RecordCache;
use super::schema::{read_u64_meta, META_GENERATION};
use crate::backend::{Backend, Read, Snapshot, Txn};
use crate::error::{Error, Result};
use crate::hash::Hasher;
use crate::key::KeyId;
use crate::model::KeyInfo;
use crate::record::{Record, State, ALG_HMAC_SHA256_V1, HEAD_LEN};
use crate::time;
use crate::usage::UsageBuffer;

/// A read snapshot plus the cache that is valid for its generation.
pub(super) struct View {
    /// `None` once released: an idle or just-written handle holds no snapshot, because a live
    /// snapshot stops the engine from reusing pages freed after it (the file would grow).
    pub(super) snapshot: Option<Box<dyn Snapshot>>,
    /// When the snapshot was taken (ms since the epoch: the clock verify reads anyway).
    pub(super) taken_ms: i64,
    pub(super) local_epoch: u64,
    pub(super) generation: u64,
    pub(super) cache: Arc<RecordCache>,
}

impl View {
    /// Older than `interval`, or the clock went backwards since it was taken.
    pub(super) fn is_stale(&self, now_ms: i64, interval: Duration) -> bool {
        now_ms < self.taken_ms
            || now_ms.saturating_sub(self.taken_ms) >= time::duration_ms(interval)
    }
}

pub(super) struct Inner {
    pub(super) backend: Box<dyn Backend>,
    pub(super) hasher: Hasher,
    pub(super) prefix: String,
    pub(super) actor: Option<String>,
    pub(super) rng: SystemRandom,
    pub(super) refresh_interval: Duration,
    pub(super) record_cache_entries: usize,
    /// Loaded without touching a shared reference count, so verifying threads do not contend.
    pub(super) view: ArcSwap<View>,
    pub(super) refresh: Mutex<()>,
    /// Bumped after every write through this handle, so its own changes are seen at once.
    pub(super) local_epoch: AtomicU64,
    pub(super) usage: UsageBuffer,
    /// The head of a record with a random salt and hash, decoded on a first lookup of an
    /// unknown id (as a known id's head is) and verified against, so that both failure paths
    /// do the same work.
    pub(super) dummy_head: [u8; HEAD_LEN],
}

/// An active record without id, salt and hash yet.
pub(super) fn blank_record(
    now: i64,
    name: String,
    scopes: Vec<String>,
    metadata: BTreeMap<String, String>,
    expires_at: Option<i64>,
) -> Record {
    Record {
        id: 0,
        alg: ALG_HMAC_SHA256_V1,
        salt: [0; 16],
        hash: [0; 32],
        state: State::Active,
        created_at: now,
        updated_at: now,
        expires_at,
        replaces: None,
        replaced_by: None,
        name,
        scopes,
        metadata,
    }
}

pub(super) fn fill(rng: &SystemRandom, out: &mut [u8]) -> Result<()> {
    rng.fill(out)
        .map_err(|_| Error::Storage("the system random number generator failed".into()))
}

pub(super) fn load(txn: &dyn Txn, hasher: &Hasher, id: KeyId) -> Result<Record> {
    let bytes = txn.key(id.as_u64())?.ok_or(Error::KeyNotFound(id))?;
    decode_stored(id.as_u64(), &bytes, hasher)
}

/// Decodes the record stored under table key `id`, which must be the id inside it
/// (docs/storage.md): a record copied under another key is `Corrupt`, not another key's data.
pub(super) fn decode_stored(id: u64, bytes: &[u8], hasher: &Hasher) -> Result<Record> {
    let record = Record::decode(bytes, hasher.record_key())?;
    if record.id != id {
        return Err(Error::Corrupt(
            "key record: stored id does not match".into(),
        ));
    }
    Ok(record)
}

/// The snapshot of a view `Inner::view` handed out (it only hands out views that hold one).
pub(super) fn view_snapshot(view: &View) -> Result<&dyn Snapshot> {
    view.snapshot
        .as_deref()
        .ok_or_else(|| Error::Storage("verify was given a released read view".into()))
}

pub(super) fn info_of(view: &dyn Read, record: &Record) -> Result<KeyInfo> {
    let usage = view.usage_total(record.id)?.unwrap_or_default();
    let last_used = (usage.count > 0).then_some(usage.last_used_ms);
    Ok(KeyInfo::from_record(record, last_used, usage.count))
}

impl Inner {
    /// The stored form of a record: authenticated under the pepper's record key, if any.
    pub(super) fn seal(&self, record: &Record) -> Vec<u8> {
        record.encode(self.hasher.record_key())
    }

    /// Runs an admin change in one write transaction that also bumps the store generation
    /// (so every process drops cached records), then makes this handle see it at once.
    pub(super) fn write<T>(&self, mut body: impl FnMut(&mut dyn Txn) -> Result<T>) -> Result<T> {
        let mut result = None;
        self.backend.write(&mut |txn| {
            let value = body(txn)?;
            let generation = read_u64_meta(txn, META_GENERATION)?.wrapping_add(1);
            txn.set_meta(META_GENERATION, &generation.to_le_bytes())?;
            result = Some(value);
            Ok(())
        })?;
        self.local_epoch.fetch_add(1, Ordering::AcqRel);
        self.release_view(|_| true);
        result.ok_or_else(|| Error::Storage("the write transaction returned no result".into()))
    }

    /// Drops the read view's snapshot if `stale` says so, keeping its cache; the next verify
    /// takes a fresh one. Never replaces a view another thread has refreshed meanwhile.
    pub(super) fn release_view(&self, stale: impl Fn(&View) -> bool) {
        let current = self.view.load_full();
        if current.snapshot.is_none() || !stale(&current) {
            return;
        }
        let released = Arc::new(View {
            snapshot: None,
            taken_ms: current.taken_ms,
            local_epoch: current.local_epoch,
            generation: current.generation,
            cache: Arc::clone(&current.cache),
        });
        self.view.compare_and_swap(&current, released);
    }
}
