//! The storage seam: what a backend must provide for a [`KeyStore`](crate::KeyStore).
//!
//! Everything above this module talks to [`Backend`] only. Two backends ship in this crate:
//! [`FileBackend`] (one redb file, the embedded default) and [`MemoryBackend`] (one process,
//! gone when dropped). A caller may supply its own with
//! [`KeyStore::open_with`](crate::KeyStore::open_with).
//!
//! # The contract
//!
//! A backend stores opaque byte values that the store produces: sealed key records (each
//! authenticated under the store's pepper, so a backend cannot forge one the store accepts),
//! audit entries and meta rows. It never needs to interpret them; [`KeyRow`] hands it the
//! searchable fields of each key as well, for a backend that keeps them in columns (and
//! pushes [`KeyQuery`] filters down to them).
//!
//! The shape serves both an embedded file and a database server:
//! - **Opening** is two steps: [`inspect`](Backend::inspect) reads the meta rows without
//!   writing anything (so a wrong pepper or a newer schema is refused before the store is
//!   touched), then [`open`](Backend::open) makes the store ready, creating it from the given
//!   meta rows if there is none.
//! - **Reads for verify are point lookups** ([`key_head`](Backend::key_head),
//!   [`key`](Backend::key), [`usage_total`](Backend::usage_total)) on the backend itself, not
//!   on a snapshot the store holds: a backend answers from whatever it has that is at least as
//!   new as its last [`changes_since`](Backend::changes_since) call (redb: a read transaction
//!   it renews there; a database: the current committed state).
//! - **A change feed** tells the store's record cache what to drop: each committed write that
//!   changed keys gets the next **generation** (1, 2, 3, …, no gaps) and the list of ids it
//!   changed; [`changes_since`](Backend::changes_since) returns those ids, or
//!   [`Changed::Everything`] when the backend cannot list them all (a trimmed log, a gap,
//!   a write by an older build).
//! - **Admin reads** go through a short-lived consistent view ([`read`](Backend::read)), with
//!   listing shaped so that a database can filter and page in its query.
//! - **Writes** run in one atomic, durable transaction ([`write`](Backend::write)); audit
//!   sequence numbers are assigned by the backend.
//! - **Usage** arrives as one pre-aggregated, sorted batch ([`add_usage`](Backend::add_usage)),
//!   and is read per key and day ([`Read::usage_days`]) or summed over all keys for a range
//!   of days ([`Read::usage_per_key`], which has a provided, slower default).
//!
//! Errors are the crate's [`Error`](crate::Error): a backend reports a damaged store as
//! `Corrupt`, an unreachable one as `Io` or `Storage`, never as a missing key.

mod file;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::error::Result;
use crate::model::KeyStatus;

pub use self::file::{FileBackend, FileOptions};
pub use self::memory::MemoryBackend;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresBackend, PostgresOptions};

/// The meta rows of a store: schema version, prefix, pepper check value, creation time.
/// Names and values are the store's; a backend keeps them as given.
pub type Meta = BTreeMap<String, Vec<u8>>;

/// Totals of one key's usage, as flushed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotal {
    /// Successful verifications counted.
    pub count: u64,
    /// The latest of them, in ms since the Unix epoch.
    pub last_used_ms: i64,
}

/// Uses of one key on one UTC day, to add to its totals (see [`Backend::add_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageAdd {
    /// The key's id.
    pub id: u64,
    /// Days since the Unix epoch (UTC).
    pub day: u32,
    /// Uses to add.
    pub count: u64,
    /// The latest use among them, ms since the Unix epoch.
    pub last_used_ms: i64,
}

/// What the store's keys did since a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The store's generation now (0 for a store never written to).
    pub generation: u64,
    /// Which keys changed between the generation asked about and `generation`.
    pub changed: Changed,
}

/// The keys named by a [`Changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// These ids (possibly repeated, in any order); empty if nothing changed.
    Ids(Vec<u64>),
    /// The backend cannot say which: drop everything cached.
    Everything,
}

/// A key record to store, with the fields a backend may keep in columns of its own.
/// `record` is the authoritative value; the other fields are copies for querying.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct KeyRow<'a> {
    /// The key's id (the table key).
    pub id: u64,
    /// The sealed record, returned unchanged by [`Backend::key`].
    pub record: &'a [u8],
    /// The key's salt (not secret).
    pub salt: &'a [u8],
    /// The HMAC of the key's secret (not the secret; useless without the pepper's key and
    /// the secret, but for the store's eyes only).
    pub secret_hash: &'a [u8],
    /// The key's name.
    pub name: &'a str,
    /// Its scopes, sorted.
    pub scopes: &'a [String],
    /// Its metadata.
    pub metadata: &'a BTreeMap<String, String>,
    /// `Active`, `Disabled` or `Revoked` (expiry is a time, below; never `Expired`).
    pub state: KeyStatus,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When it last changed, ms since the Unix epoch.
    pub updated_at_ms: i64,
    /// When it expires, ms since the Unix epoch.
    pub expires_at_ms: Option<i64>,
}

/// A filter for [`Read::list_keys`]. A backend may push any part of it down into its query,
/// or ignore it: the store checks every row it is given against the filter again, so rows
/// that do not match may be passed, but **a matching row must never be left out**.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct KeyQuery<'a> {
    /// Only ids greater than this (paging).
    pub after: Option<u64>,
    /// Only names that start with this.
    pub name_prefix: Option<&'a str>,
    /// Only keys granting this scope.
    pub scope: Option<&'a str>,
    /// Only keys whose stored state is this (`Active`, `Disabled` or `Revoked`).
    pub state: Option<KeyStatus>,
    /// Only keys with an expiry at or before this (ms since the Unix epoch).
    pub expires_before_ms: Option<i64>,
}

/// A store backend (see the [module docs](self) for the contract).
pub trait Backend: Send + Sync + 'static {
    /// The store's meta rows if there is a store, read without writing anything; `None` if
    /// there is none yet (or it cannot be read without the writable open, which checks again).
    ///
    /// # Errors
    /// Failures to read; `Corrupt` for something that is not a store.
    fn inspect(&self) -> Result<Option<Meta>>;

    /// Makes the store ready for the other calls and returns its meta rows. If there is no
    /// store, creates one holding `initial` when `create` is true (a concurrent opener may
    /// win: then its rows are returned), or fails with `StoreNotFound`.
    ///
    /// # Errors
    /// `StoreNotFound`, failures to open or create.
    fn open(&self, initial: &Meta, create: bool) -> Result<Meta>;

    /// Runs the backend's own integrity check; `Ok(true)` if the store is intact.
    ///
    /// # Errors
    /// Failures to run it; `Corrupt` for a damaged store.
    fn check_integrity(&self) -> Result<bool>;

    /// The generation now and the keys changed after `since`; with `None`, the generation
    /// and [`Changed::Everything`]. Point lookups after this call return data at least as new
    /// as the returned generation.
    ///
    /// # Errors
    /// Failures to read (and `StoreReplaced` for a file that was replaced).
    fn changes_since(&self, since: Option<u64>) -> Result<Changes>;

    /// Copies the first `head.len()` bytes of a key's record into `head` (fewer if it is
    /// shorter) and returns the record's full length, or `None` for no such key.
    ///
    /// # Errors
    /// Failures to read.
    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>>;

    /// A key's whole record, or `None`.
    ///
    /// # Errors
    /// Failures to read.
    fn key(&self, id: u64) -> Result<Option<Vec<u8>>>;

    /// A key's usage totals, or `None` if it has none.
    ///
    /// # Errors
    /// Failures to read.
    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>>;

    /// A counter the backend raises (`fetch_max`) to the newest generation it heard of
    /// between feed reads, e.g. from a database notification. The store reads it on every
    /// verify (one atomic load) and reads the feed at once when it is ahead; without one,
    /// changes by others are seen at the next refresh interval.
    fn change_signal(&self) -> Option<Arc<AtomicU64>> {
        None
    }

    /// Lets go of anything held for reads (redb: its read transaction, so that other
    /// processes' writes can reuse freed pages). Called when a handle is idle.
    fn release_reads(&self) {}

    /// A consistent view for one admin call (get, list, usage, audit); drop it soon.
    ///
    /// # Errors
    /// Failures to read.
    fn read(&self) -> Result<Box<dyn Read + '_>>;

    /// Runs `body` in one atomic, durable transaction: all of its changes commit or none.
    /// If it changed keys, the commit takes the next generation and logs their ids (see the
    /// module docs); returns the generation after the commit.
    ///
    /// # Errors
    /// `body`'s error (nothing is committed), or a failure to commit.
    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<u64>;

    /// Adds a batch of uses, atomically: every key's total count and latest use, and its
    /// count of each day. `batch` is sorted by id and day with no repeats (so concurrent
    /// flushers lock rows in one order). Uses of keys that no longer exist are dropped.
    ///
    /// # Errors
    /// Failures to write; then nothing of the batch was added.
    fn add_usage(&self, batch: &[UsageAdd]) -> Result<()>;
}

/// A shared backend: several `KeyStore` handles (e.g. with different options) on one
/// [`MemoryBackend`] or one backend of the caller's.
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn inspect(&self) -> Result<Option<Meta>> {
        (**self).inspect()
    }
    fn open(&self, initial: &Meta, create: bool) -> Result<Meta> {
        (**self).open(initial, create)
    }
    fn check_integrity(&self) -> Result<bool> {
        (**self).check_integrity()
    }
    fn changes_since(&self, since: Option<u64>) -> Result<Changes> {
        (**self).changes_since(since)
    }
    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        (**self).key_head(id, head)
    }
    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        (**self).key(id)
    }
    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        (**self).usage_total(id)
    }
    fn release_reads(&self) {
        (**self).release_reads();
    }
    fn change_signal(&self) -> Option<Arc<AtomicU64>> {
        (**self).change_signal()
    }
    fn read(&self) -> Result<Box<dyn Read + '_>> {
        (**self).read()
    }
    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<u64> {
        (**self).write(body)
    }
    fn add_usage(&self, batch: &[UsageAdd]) -> Result<()> {
        (**self).add_usage(batch)
    }
}

/// Reads of a consistent view, shared by [`Backend::read`] and write transactions.
pub trait Read {
    /// A meta row.
    ///
    /// # Errors
    /// Failures to read.
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// A key's whole record.
    ///
    /// # Errors
    /// Failures to read.
    fn key(&self, id: u64) -> Result<Option<Vec<u8>>>;

    /// Calls `visit` with `(id, record)` for the keys that may match `query`, in id order,
    /// until it returns `false` (see [`KeyQuery`]).
    ///
    /// # Errors
    /// Failures to read, or `visit`'s error.
    fn list_keys(
        &self,
        query: &KeyQuery<'_>,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()>;

    /// A key's usage totals.
    ///
    /// # Errors
    /// Failures to read.
    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>>;

    /// Daily counts of one key for days `from..=to`, in day order.
    ///
    /// # Errors
    /// Failures to read.
    fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>>;

    /// Calls `visit` with `(sequence, entry)` for audit entries newest first until it returns
    /// `false`.
    ///
    /// # Errors
    /// Failures to read, or `visit`'s error.
    fn scan_audit_newest_first(
        &self,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()>;

    /// Every key's count for days `from..=to` summed: `(id, count)` for each existing key
    /// with at least one use in that range, each id once, in id order (empty if
    /// `from > to`). Usage of a deleted key is never counted.
    ///
    /// The provided implementation lists every key ([`list_keys`](Self::list_keys) with the
    /// default query) and reads [`usage_days`](Self::usage_days) of each: correct for any
    /// backend that keeps this trait's contract, but one read per key. A backend that can sum
    /// in one pass (a `GROUP BY`, a scan of its usage table) should override it; the shipped
    /// backends do.
    ///
    /// # Errors
    /// Failures to read.
    fn usage_per_key(&self, from: u32, to: u32) -> Result<Vec<(u64, u64)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        self.list_keys(&KeyQuery::default(), &mut |id, _| {
            ids.push(id);
            Ok(true)
        })?;
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            let count = self
                .usage_days(id, from, to)?
                .into_iter()
                .fold(0u64, |sum, (_, n)| sum.saturating_add(n));
            if count > 0 {
                out.push((id, count));
            }
        }
        Ok(out)
    }
}

/// The operations of a write transaction.
pub trait Txn: Read {
    /// Sets a meta row (the commit then says [`Changed::Everything`]).
    ///
    /// # Errors
    /// Failures to write.
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()>;

    /// Inserts or replaces a key's record.
    ///
    /// # Errors
    /// Failures to write.
    fn put_key(&mut self, row: &KeyRow<'_>) -> Result<()>;

    /// Removes a key (and its usage); returns whether it existed.
    ///
    /// # Errors
    /// Failures to write.
    fn delete_key(&mut self, id: u64) -> Result<bool>;

    /// Appends an audit entry under the next sequence number, which it returns. Sequence
    /// numbers grow with commit order.
    ///
    /// # Errors
    /// Failures to write.
    fn append_audit(&mut self, entry: &[u8]) -> Result<u64>;
}

/// The ids named by the change-log entries of generations `since + 1 ..= now`, if `entries`
/// holds exactly one entry per generation in that range (none missing: a gap means some
/// writer did not log, e.g. an older build). An empty entry means "everything".
pub(crate) fn collect_changes(
    since: Option<u64>,
    now: u64,
    entries: impl Iterator<Item = (u64, Vec<u64>)>,
) -> Changed {
    let Some(since) = since else {
        return Changed::Everything;
    };
    if since == now {
        return Changed::Ids(Vec::new());
    }
    if since > now {
        return Changed::Everything;
    }
    let mut expected = since + 1;
    let mut ids = Vec::new();
    for (generation, changed) in entries {
        if generation != expected || changed.is_empty() {
            return Changed::Everything;
        }
        ids.extend(changed);
        expected += 1;
    }
    if expected != now + 1 {
        return Changed::Everything;
    }
    Changed::Ids(ids)
}

/// Encodes a change-log entry: the ids as little-endian u64s (empty: everything).
pub(crate) fn encode_ids(ids: &[u64]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

/// Decodes a change-log entry; a malformed one reads as "everything" (empty).
pub(crate) fn decode_ids(bytes: &[u8]) -> Vec<u64> {
    if bytes.len() % 8 != 0 {
        return Vec::new();
    }
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// How many generations of the change log a backend keeps; a handle further behind than
/// that drops its whole cache.
pub(crate) const CHANGE_LOG_KEEP: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_log_gives_the_ids_and_any_gap_gives_everything() {
        let log = |gens: &[u64]| gens.iter().map(|&g| (g, vec![g * 10])).collect::<Vec<_>>();
        assert_eq!(
            collect_changes(Some(2), 4, log(&[3, 4]).into_iter()),
            Changed::Ids(vec![30, 40])
        );
        assert_eq!(
            collect_changes(Some(4), 4, log(&[]).into_iter()),
            Changed::Ids(vec![])
        );
        assert_eq!(
            collect_changes(Some(2), 4, log(&[4]).into_iter()),
            Changed::Everything
        );
        assert_eq!(
            collect_changes(Some(2), 4, log(&[3]).into_iter()),
            Changed::Everything
        );
        assert_eq!(
            collect_changes(Some(5), 4, log(&[]).into_iter()),
            Changed::Everything
        );
        assert_eq!(
            collect_changes(None, 4, log(&[]).into_iter()),
            Changed::Everything
        );
        let with_everything = vec![(3, vec![1]), (4, vec![])];
        assert_eq!(
            collect_changes(Some(2), 4, with_everything.into_iter()),
            Changed::Everything
        );
        assert_eq!(decode_ids(&encode_ids(&[1, u64::MAX])), vec![1, u64::MAX]);
        assert_eq!(decode_ids(&[1, 2, 3]), Vec::<u64>::new());
    }
}
