//! The room below the jobs: a handle's shared state (`Inner`, its read `View`) and the
//! small helpers that the read path, the admin writes and the flusher all use. Nothing here
//! uses those modules, so arrows between them run one way (ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use ring::rand::{SecureRandom, SystemRandom};

use super::cache::RecordCache;
use super::counters::Counters;
use super::flusher::Flusher;
use crate::backend::{Backend, KeyRow, Read, Txn, UsageTotal};
use crate::error::{Error, Result};
use crate::hash::Hasher;
use crate::key::KeyId;
use crate::model::{KeyInfo, KeyStatus};
use crate::record::{Record, State, ALG_HMAC_SHA256_V1, HEAD_LEN};
use crate::time;
use crate::usage::UsageBuffer;

/// The read path's view of the store: the generation it has caught up with and the cache
/// that holds for it (entries of keys changed since were evicted when it was taken).
pub(super) struct View {
    /// When the change feed was last asked (ms since the epoch: the clock verify reads
    /// anyway), read before it was asked.
    pub(super) taken_ms: i64,
    /// When the change feed last answered (`taken_ms` unless the backend was unavailable).
    pub(super) synced_ms: i64,
    /// The view is used until then: the earlier of `taken_ms + refresh_interval` and
    /// `synced_ms + max_staleness`.
    pub(super) fresh_until_ms: i64,
    pub(super) local_epoch: u64,
    pub(super) generation: u64,
    pub(super) cache: Arc<RecordCache>,
}

impl View {
    /// Past its `fresh_until_ms`, or the clock went backwards since it was taken.
    pub(super) fn is_stale(&self, now_ms: i64) -> bool {
        now_ms < self.taken_ms || now_ms >= self.fresh_until_ms
    }
}

/// The message of an `Unavailable` error, without its "unavailable:" preamble.
pub(super) fn unavailable_reason(error: &Error) -> String {
    match error {
        Error::StoreUnavailable(why) => why.clone(),
        other => other.to_string(),
    }
}

pub(super) struct Inner {
    pub(super) backend: Box<dyn Backend>,
    pub(super) hasher: Hasher,
    pub(super) prefix: String,
    pub(super) actor: Option<String>,
    pub(super) rng: SystemRandom,
    pub(super) refresh_interval: Duration,
    /// How long cached keys keep verifying while the backend is unavailable.
    pub(super) max_staleness: Duration,
    pub(super) record_cache_entries: usize,
    /// Raised by the backend when it hears of a newer generation (see `Backend::change_signal`).
    pub(super) signal: Option<Arc<AtomicU64>>,
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
    /// The usage flusher (flusher.rs), `None` with a zero flush interval or once stopped.
    pub(super) flusher: Mutex<Option<Flusher>>,
    pub(super) flush_interval: Duration,
    /// This handle's own `Weak`, for a flusher started after `fork`.
    pub(super) this: OnceLock<Weak<Inner>>,
    /// What `KeyStore::stats` reports.
    pub(super) counters: Counters,
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

/// A key's info from its record and its usage totals.
pub(super) fn info_with(record: &Record, usage: Option<UsageTotal>) -> KeyInfo {
    let usage = usage.unwrap_or_default();
    let last_used = (usage.count > 0).then_some(usage.last_used_ms);
    KeyInfo::from_record(record, last_used, usage.count)
}

pub(super) fn info_of(view: &dyn Read, record: &Record) -> Result<KeyInfo> {
    Ok(info_with(record, view.usage_total(record.id)?))
}

impl Inner {
    /// A view of generation `generation` whose feed was asked at `taken_ms` and last answered
    /// at `synced_ms`.
    pub(super) fn new_view(
        &self,
        taken_ms: i64,
        synced_ms: i64,
        local_epoch: u64,
        generation: u64,
        cache: Arc<RecordCache>,
    ) -> View {
        let fresh_until_ms = taken_ms
            .saturating_add(time::duration_ms(self.refresh_interval))
            .min(synced_ms.saturating_add(time::duration_ms(self.max_staleness)));
        View {
            taken_ms,
            synced_ms,
            fresh_until_ms,
            local_epoch,
            generation,
            cache,
        }
    }

    /// Stores a record, sealed: authenticated under the pepper's record key, if any.
    pub(super) fn put(&self, txn: &mut dyn Txn, record: &Record) -> Result<()> {
        let sealed = record.encode(self.hasher.record_key());
        txn.put_key(&row_of(record, &sealed))
    }

    /// Runs an admin change in one write transaction (the backend logs the changed ids
    /// under the next generation, so every handle drops them from its cache), then makes this
    /// handle see it at once.
    pub(super) fn write<T>(&self, mut body: impl FnMut(&mut dyn Txn) -> Result<T>) -> Result<T> {
        let mut result = None;
        self.backend.write(&mut |txn| {
            result = Some(body(txn)?);
            Ok(())
        })?;
        self.local_epoch.fetch_add(1, Ordering::AcqRel);
        result.ok_or_else(|| Error::Storage("the write transaction returned no result".into()))
    }
}

/// The row a backend stores for `record`, whose sealed form is `sealed`.
pub(super) fn row_of<'a>(record: &'a Record, sealed: &'a [u8]) -> KeyRow<'a> {
    KeyRow {
        id: record.id,
        record: sealed,
        salt: &record.salt,
        secret_hash: &record.hash,
        name: &record.name,
        scopes: &record.scopes,
        metadata: &record.metadata,
        state: match record.state {
            State::Active => KeyStatus::Active,
            State::Disabled => KeyStatus::Disabled,
            State::Revoked => KeyStatus::Revoked,
        },
        created_at_ms: record.created_at,
        updated_at_ms: record.updated_at,
        expires_at_ms: record.expires_at,
    }
}
