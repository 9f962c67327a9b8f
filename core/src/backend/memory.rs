//! [`MemoryBackend`]: the store lives in this process only and is gone when the last
//! `KeyStore` on it is dropped. For tests, examples, fuzzing and ephemeral development servers;
//! it shows that nothing above the seam needs redb.
//!
//! The committed state is an immutable `Arc`, so a read never blocks and never sees a
//! half-done write. A write clones the state, applies the transaction to the clone and swaps it
//! in: O(number of keys) per admin write, fine for the sizes this backend is for (use the file
//! backend for large stores).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::{
    collect_changes, Backend, Changes, KeyQuery, KeyRow, Meta, Read, Txn, UsageAdd, UsageTotal,
    CHANGE_LOG_KEEP,
};
use crate::error::{Error, Result};

#[derive(Clone, Default)]
struct State {
    /// `None` until [`Backend::open`] made the store.
    meta: Option<Meta>,
    keys: BTreeMap<u64, Vec<u8>>,
    usage_total: BTreeMap<u64, UsageTotal>,
    usage_days: BTreeMap<(u64, u32), u64>,
    audit: BTreeMap<u64, Vec<u8>>,
    generation: u64,
    /// Generation → the ids it changed (empty: everything), the last `CHANGE_LOG_KEEP`.
    changes: BTreeMap<u64, Vec<u64>>,
}

/// A store in this process's memory (see the module docs). `KeyStore::open("memory:")` makes
/// one per call; [`KeyStore::open_with`](crate::KeyStore::open_with) takes one you made.
#[derive(Default)]
pub struct MemoryBackend {
    /// The committed state; writers replace it whole.
    current: Mutex<Arc<State>>,
    /// Serializes writers, so each transaction sees the one before it.
    writer: Mutex<()>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// An empty in-memory backend; the store is made when a `KeyStore` opens it.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn load(&self) -> Arc<State> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `change` on a copy of the committed state and commits the copy.
    fn commit<T>(&self, change: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = (*self.load()).clone();
        let value = change(&mut state)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        Ok(value)
    }
}

impl Backend for MemoryBackend {
    fn inspect(&self) -> Result<Option<Meta>> {
        Ok(self.load().meta.clone())
    }

    fn open(&self, initial: &Meta, create: bool) -> Result<Meta> {
        if let Some(meta) = &self.load().meta {
            return Ok(meta.clone());
        }
        if !create {
            return Err(Error::StoreNotFound);
        }
        self.commit(|state| Ok(state.meta.get_or_insert_with(|| initial.clone()).clone()))
    }

    fn check_integrity(&self) -> Result<bool> {
        Ok(true)
    }

    fn changes_since(&self, since: Option<u64>) -> Result<Changes> {
        let state = self.load();
        let from = since.map_or(0, |s| s.saturating_add(1));
        let entries = state
            .changes
            .range(from..)
            .map(|(g, ids)| (*g, ids.clone()));
        Ok(Changes {
            generation: state.generation,
            changed: collect_changes(since, state.generation, entries),
        })
    }

    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        Ok(self.load().keys.get(&id).map(|record| {
            let n = record.len().min(head.len());
            head[..n].copy_from_slice(&record[..n]);
            record.len()
        }))
    }

    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.load().keys.get(&id).cloned())
    }

    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        Ok(self.load().usage_total.get(&id).copied())
    }

    fn read(&self) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(MemoryRead(self.load())))
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<u64> {
        self.commit(|state| {
            let mut txn = MemoryTxn {
                state: std::mem::take(state),
                changed: BTreeSet::new(),
                everything: false,
            };
            // An error drops the copy: nothing of the transaction is committed.
            body(&mut txn)?;
            let MemoryTxn {
                state: mut next,
                changed,
                everything,
            } = txn;
            if everything || !changed.is_empty() {
                next.generation += 1;
                let ids = if everything {
                    Vec::new()
                } else {
                    changed.into_iter().collect()
                };
                next.changes.insert(next.generation, ids);
                let floor = next.generation.saturating_sub(CHANGE_LOG_KEEP);
                next.changes = next.changes.split_off(&floor);
            }
            let generation = next.generation;
            *state = next;
            Ok(generation)
        })
    }

    fn add_usage(&self, batch: &[UsageAdd]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.commit(|state| {
            for add in batch {
                if !state.keys.contains_key(&add.id) {
                    continue;
                }
                let total = state.usage_total.entry(add.id).or_default();
                total.count = total.count.saturating_add(add.count);
                total.last_used_ms = total.last_used_ms.max(add.last_used_ms);
                let bucket = state.usage_days.entry((add.id, add.day)).or_default();
                *bucket = bucket.saturating_add(add.count);
            }
            Ok(())
        })
    }
}

struct MemoryRead(Arc<State>);

struct MemoryTxn {
    state: State,
    changed: BTreeSet<u64>,
    everything: bool,
}

impl MemoryRead {
    fn as_ref(&self) -> &State {
        &self.0
    }
}

impl MemoryTxn {
    fn as_ref(&self) -> &State {
        &self.state
    }
}

macro_rules! impl_read {
    ($t:ty) => {
        impl Read for $t {
            fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
                Ok(self
                    .as_ref()
                    .meta
                    .as_ref()
                    .and_then(|m| m.get(name).cloned()))
            }

            fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
                Ok(self.as_ref().keys.get(&id).cloned())
            }

            fn list_keys(
                &self,
                query: &KeyQuery<'_>,
                visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
            ) -> Result<()> {
                use std::ops::Bound::{Excluded, Unbounded};
                let keys = &self.as_ref().keys;
                let range = match query.after {
                    Some(after) => keys.range((Excluded(after), Unbounded)),
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
                Ok(self.as_ref().usage_total.get(&id).copied())
            }

            fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>> {
                if from > to {
                    return Ok(Vec::new());
                }
                Ok(self
                    .as_ref()
                    .usage_days
                    .range((id, from)..=(id, to))
                    .map(|((_, day), count)| (*day, *count))
                    .collect())
            }

            fn usage_per_key(&self, from: u32, to: u32) -> Result<Vec<(u64, u64)>> {
                let state = self.as_ref();
                let mut out = Vec::new();
                if from > to {
                    return Ok(out);
                }
                // Keys with any usage at all, then a range of days of each (no full scan).
                for &id in state.usage_total.keys() {
                    let count = state
                        .usage_days
                        .range((id, from)..=(id, to))
                        .fold(0u64, |sum, (_, n)| sum.saturating_add(*n));
                    if count > 0 && state.keys.contains_key(&id) {
                        out.push((id, count));
                    }
                }
                Ok(out)
            }

            fn scan_audit_newest_first(
                &self,
                visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
            ) -> Result<()> {
                for (seq, bytes) in self.as_ref().audit.iter().rev() {
                    if !visit(*seq, bytes)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    };
}

impl_read!(MemoryRead);
impl_read!(MemoryTxn);

impl Txn for MemoryTxn {
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.state
            .meta
            .get_or_insert_with(Meta::new)
            .insert(name.to_owned(), value.to_vec());
        self.everything = true;
        Ok(())
    }

    fn put_key(&mut self, row: &KeyRow<'_>) -> Result<()> {
        self.state.keys.insert(row.id, row.record.to_vec());
        self.changed.insert(row.id);
        Ok(())
    }

    fn delete_key(&mut self, id: u64) -> Result<bool> {
        let existed = self.state.keys.remove(&id).is_some();
        self.state.usage_total.remove(&id);
        self.state.usage_days.retain(|(key_id, _), _| *key_id != id);
        self.changed.insert(id);
        Ok(existed)
    }

    fn append_audit(&mut self, entry: &[u8]) -> Result<u64> {
        let next = self
            .state
            .audit
            .keys()
            .next_back()
            .map_or(1, |last| last + 1);
        self.state.audit.insert(next, entry.to_vec());
        Ok(next)
    }
}
