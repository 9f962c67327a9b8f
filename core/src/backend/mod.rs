//! The storage seam. Everything above this module talks to these traits only; redb lives in
//! `backend::redb_file`, and a server-backed store for multi-host fleets can implement the same
//! traits later.
//!
//! Values are opaque bytes produced by `record` and `audit` (or fixed-size usage counters), so a
//! backend never interprets key records.

pub(crate) mod memory;
pub(crate) mod redb_file;

use crate::error::Result;

/// Totals of one key's usage, as flushed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageTotal {
    pub(crate) count: u64,
    pub(crate) last_used_ms: i64,
}

/// A store that can hand out consistent read views and run atomic write transactions.
pub(crate) trait Backend: Send + Sync {
    /// Whether the store holds nothing yet (a new or empty file).
    fn is_new(&self) -> Result<bool>;
    /// Creates the store's tables and writes `meta` in one transaction, unless another handle
    /// initialized it first; returns whether this call did.
    fn initialize(&self, meta: &[(&str, &[u8])]) -> Result<bool>;
    /// A consistent view of the store as of now; it does not change while held.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>>;
    /// Runs `body` in one atomic, durable write transaction: all of its changes commit, or none.
    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()>;
}

/// Reads shared by snapshots and write transactions.
pub(crate) trait Read {
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>>;
    fn key(&self, id: u64) -> Result<Option<Vec<u8>>>;
    /// Copies the first `head.len()` bytes of a key's record into `head` (fewer if it is
    /// shorter) without copying the rest; returns the record's full length, or `None`.
    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>>;
    /// Calls `visit` for each key with id > `after`, in id order, until it returns `false`.
    fn scan_keys(
        &self,
        after: Option<u64>,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()>;
    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>>;
    /// Daily counts of one key for days `from..=to`, in day order.
    fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>>;
    /// Calls `visit` for audit entries newest first until it returns `false`.
    fn scan_audit_newest_first(
        &self,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()>;
}

/// A read view that may be shared between threads.
pub(crate) trait Snapshot: Read + Send + Sync {}

/// The operations of a write transaction.
pub(crate) trait Txn: Read {
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()>;
    fn put_key(&mut self, id: u64, record: &[u8]) -> Result<()>;
    fn delete_key(&mut self, id: u64) -> Result<bool>;
    /// Adds `count` uses to the key's total and to its bucket for `day`.
    fn add_usage(&mut self, id: u64, day: u32, count: u64, last_used_ms: i64) -> Result<()>;
    /// Removes a key's usage totals and buckets.
    fn delete_usage(&mut self, id: u64) -> Result<()>;
    /// Appends an audit entry under the next sequence number, which it returns.
    fn append_audit(&mut self, entry: &[u8]) -> Result<u64>;
}
