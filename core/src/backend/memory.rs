//! An in-memory backend: the store lives in this process only and is gone when the last
//! `KeyStore` on it is dropped. For tests, examples and ephemeral development servers; it
//! shows that nothing above the seam needs redb.
//!
//! Snapshots are immutable `Arc`s of the whole state, so a read never blocks and never sees a
//! half-done write. A write clones the state, applies the transaction to the clone and swaps it
//! in under a lock: O(number of keys) per admin write, fine for the sizes this backend is for
//! (use the file backend for large stores).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Backend, Read, Snapshot, Txn, UsageTotal};
use crate::error::Result;

#[derive(Clone, Default)]
struct State {
    initialized: bool,
    meta: BTreeMap<String, Vec<u8>>,
    keys: BTreeMap<u64, Vec<u8>>,
    usage_total: BTreeMap<u64, UsageTotal>,
    usage_days: BTreeMap<(u64, u32), u64>,
    audit: BTreeMap<u64, Vec<u8>>,
}

/// The in-memory store (see the module docs).
#[derive(Default)]
pub(crate) struct Memory {
    /// The committed state; writers replace it whole.
    current: Mutex<Arc<State>>,
    /// Serializes writers, so each transaction sees the one before it.
    writer: Mutex<()>,
}

impl Memory {
    pub(crate) fn new() -> Memory {
        Memory::default()
    }

    fn load(&self) -> Arc<State> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Backend for Memory {
    fn is_new(&self) -> Result<bool> {
        Ok(!self.load().initialized)
    }

    fn initialize(&self, meta: &[(&str, &[u8])]) -> Result<bool> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.initialized {
            return Ok(false);
        }
        let mut state = State {
            initialized: true,
            ..State::default()
        };
        for (name, value) in meta {
            state.meta.insert((*name).to_owned(), value.to_vec());
        }
        *current = Arc::new(state);
        Ok(true)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        Ok(Box::new(MemorySnapshot(self.load())))
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut txn = MemoryTxn((*self.load()).clone());
        // An error drops the clone: nothing of the transaction is committed.
        body(&mut txn)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(txn.0);
        Ok(())
    }
}

struct MemorySnapshot(Arc<State>);
struct MemoryTxn(State);

impl Snapshot for MemorySnapshot {}

fn read_state(state: &State) -> &State {
    state
}

macro_rules! impl_read {
    ($t:ty, $state:ident => $get:expr) => {
        impl Read for $t {
            fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
                let $state = self;
                Ok(read_state($get).meta.get(name).cloned())
            }
            fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
                let $state = self;
                Ok(read_state($get).keys.get(&id).cloned())
            }
            fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
                let $state = self;
                Ok(read_state($get).keys.get(&id).map(|record| {
                    let n = record.len().min(head.len());
                    head[..n].copy_from_slice(&record[..n]);
                    record.len()
                }))
            }
            fn scan_keys(
                &self,
                after: Option<u64>,
                visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
            ) -> Result<()> {
                let $state = self;
                let keys = &read_state($get).keys;
                let range = match after {
                    Some(after) => {
                        keys.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    }
                    None => keys.range(..),
                };
                for (id, bytes) in range {
                    if !visit(*id, bytes)? {
                        break;
                    }
                }
                Ok(())
            }
            fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
                let $state = self;
                Ok(read_state($get).usage_total.get(&id).copied())
            }
            fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>> {
                let $state = self;
                if from > to {
                    return Ok(Vec::new());
                }
                Ok(read_state($get)
                    .usage_days
                    .range((id, from)..=(id, to))
                    .map(|((_, day), count)| (*day, *count))
                    .collect())
            }
            fn scan_audit_newest_first(
                &self,
                visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
            ) -> Result<()> {
                let $state = self;
                for (seq, bytes) in read_state($get).audit.iter().rev() {
                    if !visit(*seq, bytes)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    };
}

impl_read!(MemorySnapshot, s => &s.0);
impl_read!(MemoryTxn, s => &s.0);

impl Txn for MemoryTxn {
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.0.meta.insert(name.to_owned(), value.to_vec());
        Ok(())
    }

    fn put_key(&mut self, id: u64, record: &[u8]) -> Result<()> {
        self.0.keys.insert(id, record.to_vec());
        Ok(())
    }

    fn delete_key(&mut self, id: u64) -> Result<bool> {
        Ok(self.0.keys.remove(&id).is_some())
    }

    fn add_usage(&mut self, id: u64, day: u32, count: u64, last_used_ms: i64) -> Result<()> {
        let total = self.0.usage_total.entry(id).or_default();
        total.count = total.count.saturating_add(count);
        total.last_used_ms = total.last_used_ms.max(last_used_ms);
        let bucket = self.0.usage_days.entry((id, day)).or_default();
        *bucket = bucket.saturating_add(count);
        Ok(())
    }

    fn delete_usage(&mut self, id: u64) -> Result<()> {
        self.0.usage_total.remove(&id);
        self.0.usage_days.retain(|(key_id, _), _| *key_id != id);
        Ok(())
    }

    fn append_audit(&mut self, entry: &[u8]) -> Result<u64> {
        let next = self.0.audit.keys().next_back().map_or(1, |last| last + 1);
        self.0.audit.insert(next, entry.to_vec());
        Ok(next)
    }
}
