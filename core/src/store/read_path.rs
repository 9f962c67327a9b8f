//! The verify read path: the current read view and its staleness bound (the backend's change
//! feed, read at most once per refresh interval, evicts changed keys from the cache), loading
//! a record's head on a cache miss, and judging a presented secret against it.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::cache::{Cached, RecordCache};
use super::counters::Lookup;
use super::shared::{decode_stored, info_with, unavailable_reason, Inner, View};
use crate::backend::Changed;
use crate::error::{Error, ErrorKind, Result};
use crate::key::{self, KeyId};
use crate::model::{KeyInfo, KeyStatus};
use crate::record::{Head, HEAD_LEN};
use crate::time;
use crate::verify::{Outcome, Verification};

impl Inner {
    /// The current read view, refreshed if this handle wrote since it was taken or if it is
    /// older than the refresh interval.
    ///
    /// The staleness bound is a guarantee, not a goal: a verify whose clock read (`now_ms`)
    /// comes more than `refresh_interval` after a commit returned never judges by a state
    /// older than that commit. The view's `taken_ms` is read before the change feed is, and
    /// a thread that finds the view stale while another refreshes it waits for that refresh
    /// (once per interval, a few microseconds) instead of using the stale view.
    pub(super) fn view(&self, now_ms: i64) -> Result<arc_swap::Guard<Arc<View>>> {
        let epoch = self.local_epoch.load(Ordering::Acquire);
        let current = self.view.load();
        if current.local_epoch == epoch && !current.is_stale(now_ms) && !self.signalled(&current) {
            return Ok(current);
        }
        let _guard = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have refreshed while this one waited: a view whose clock read is
        // in a later millisecond than this caller's was taken after it, so it is fresh enough
        // for this caller whatever the interval (an equal millisecond proves nothing).
        let epoch = self.local_epoch.load(Ordering::Acquire);
        let current = self.view.load();
        if current.local_epoch == epoch
            && !self.signalled(&current)
            && (current.taken_ms > now_ms || !current.is_stale(now_ms))
        {
            return Ok(current);
        }
        self.restart_flusher_after_fork();
        let changes = self.backend.changes_since(Some(current.generation));
        self.counters.refreshed(changes.is_ok());
        let changes = match changes {
            Ok(changes) => changes,
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                return self.serve_stale(&current, now_ms, e);
            }
            Err(e) => return Err(e),
        };
        // The backend now answers lookups at least as new as `changes.generation`; evicting
        // after that (cache.rs, `evictions`) keeps entries read before it out of the cache.
        let cache = match changes.changed {
            Changed::Everything => Arc::new(RecordCache::new(self.record_cache_entries)),
            Changed::Ids(ids) => {
                if !ids.is_empty() {
                    current.cache.evict(&ids);
                }
                Arc::clone(&current.cache)
            }
        };
        let fresh = Arc::new(self.new_view(now_ms, now_ms, epoch, changes.generation, cache));
        self.view.store(Arc::clone(&fresh));
        Ok(arc_swap::Guard::from_inner(fresh))
    }

    /// Whether the backend heard of a change newer than the view (a database notification):
    /// then the view is refreshed at once instead of at the end of the interval.
    fn signalled(&self, view: &View) -> bool {
        self.signal
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed) > view.generation)
    }

    /// The backend cannot be reached: keep judging cached keys by the last synced state
    /// until `max_staleness` after that sync (misses fail at once, in `load`), then fail
    /// closed. The next attempt to reach it comes a refresh interval later.
    fn serve_stale(
        &self,
        current: &View,
        now_ms: i64,
        error: Error,
    ) -> Result<arc_swap::Guard<Arc<View>>> {
        let since = now_ms.saturating_sub(current.synced_ms);
        if since > time::duration_ms(self.max_staleness) {
            return Err(Error::StoreUnavailable(format!(
                "{}; no successful sync for {} ms, more than max_staleness ({} ms), so cached \
                 keys are no longer trusted",
                unavailable_reason(&error),
                since,
                time::duration_ms(self.max_staleness)
            )));
        }
        let held = Arc::new(self.new_view(
            now_ms,
            current.synced_ms,
            current.local_epoch,
            current.generation,
            Arc::clone(&current.cache),
        ));
        self.view.store(Arc::clone(&held));
        Ok(arc_swap::Guard::from_inner(held))
    }

    /// Reads the head of an id missing from the cache from the backend.
    pub(super) fn load(&self, id: u64) -> Result<Cached> {
        // Both branches copy and decode a head of the same size (a record's or the dummy's),
        // so a first lookup costs the same whether or not the id exists, and whatever the
        // record's name, scopes and metadata weigh. (What remains is the storage engine's
        // found / not-found lookup: ~25 ns of a cold lookup; core/tests/timing_cold.rs.)
        let mut head = [0u8; HEAD_LEN];
        match self.backend.key_head(id, &mut head)? {
            None => {
                head.copy_from_slice(&self.dummy_head);
                Ok(Cached::new(id, false, &Head::decode(&head)?))
            }
            Some(len) if len < HEAD_LEN => Err(Error::Corrupt("key record: truncated".into())),
            Some(_) => Ok(Cached::new(id, true, &Head::decode(&head)?)),
        }
    }

    /// The info of a key whose secret matched: the whole record, decoded and checked, must
    /// agree with the head the secret was judged against. Runs once per cached entry.
    /// `None` if the key changed since its head was read (the backend now holds a newer
    /// record, or none): the caller judges again by the newer state. Sets `read` if it
    /// reads the backend.
    pub(super) fn info(&self, entry: &Cached, read: &Cell<bool>) -> Result<Option<Arc<KeyInfo>>> {
        if let Some(info) = entry.info.get() {
            return Ok(Some(Arc::clone(info)));
        }
        read.set(true);
        let Some(bytes) = self.backend.key(entry.id)? else {
            return Ok(None);
        };
        let record = decode_stored(entry.id, &bytes, &self.hasher)?;
        let expected = Head {
            id: entry.id,
            salt: entry.salt,
            hash: entry.hash,
            state: entry.state,
            expires_at: entry.expires_at,
        };
        if Head::of(&record) != expected {
            return Ok(None);
        }
        let info = Arc::new(info_with(&record, self.backend.usage_total(entry.id)?));
        Ok(Some(Arc::clone(entry.info.get_or_init(|| info))))
    }

    /// Verifies `presented` and counts the call (stats): its outcome or error, and whether
    /// the record cache answered it.
    pub(super) fn check(&self, presented: &str, required_scopes: &[&str]) -> Result<Verification> {
        let mut lookup = Lookup::None;
        let result = self.check_uncounted(presented, required_scopes, &mut lookup);
        self.counters.verified(&result, lookup);
        result
    }

    fn check_uncounted(
        &self,
        presented: &str,
        required_scopes: &[&str],
        lookup: &mut Lookup,
    ) -> Result<Verification> {
        let Ok(parsed) = key::parse(presented) else {
            // Only a failed parse needs to tell "nothing presented" from "not a key".
            let blank = presented.bytes().all(|b| b == b' ' || b == b'\t');
            let outcome = if blank {
                Outcome::Missing
            } else {
                Outcome::Malformed
            };
            return Ok(Verification::without_key(outcome));
        };
        if parsed.prefix != self.prefix {
            return Ok(Verification::without_key(Outcome::Malformed));
        }
        let id = parsed.id.as_u64();
        // One clock read serves the view's staleness, expiry and usage.
        let now = time::now_ms();
        let view = self.view(now)?;
        // Unknown ids have an entry too (with the dummy's salt and hash): hashed and compared
        // like a real one. `read` is set by anything that reads a key record from the backend.
        let read = Cell::new(false);
        let judge = |entry: &Cached| self.judge(entry, &parsed.secret, required_scopes, now, &read);
        let judged = match view.cache.with(id, judge) {
            Some(judged) => {
                *lookup = if read.get() {
                    Lookup::Miss
                } else {
                    Lookup::Hit
                };
                judged?
            }
            None => {
                *lookup = Lookup::Miss;
                let epoch = view.cache.eviction_epoch();
                let entry = self.load(id)?;
                view.cache.insert_with(entry, epoch, judge)?
            }
        };
        if let Some(verification) = judged {
            return Ok(verification);
        }
        // The key changed after its head was read (a backend that reads the live state can
        // be ahead of the change feed): judge by the newer state, uncached until the feed
        // reports the change.
        *lookup = Lookup::Miss;
        view.cache.remove(id);
        for _ in 0..3 {
            if let Some(verification) = judge(&self.load(id)?)? {
                return Ok(verification);
            }
        }
        Err(Error::Storage(
            "the key kept changing while it was verified".into(),
        ))
    }

    /// Judges `secret` against a cached (or just loaded) entry; `None` if the key changed
    /// since the entry was read.
    pub(super) fn judge(
        &self,
        entry: &Cached,
        secret: &[u8; 32],
        required_scopes: &[&str],
        now: i64,
        read: &Cell<bool>,
    ) -> Result<Option<Verification>> {
        let id = entry.id;
        let computed = self.hasher.hash(&entry.salt, id, secret);
        let matched = bool::from(computed.ct_eq(&entry.hash)) & entry.present;
        if !matched {
            return Ok(Some(Verification::without_key(Outcome::NotFound)));
        }
        // Nothing about the key is told before its whole record has been checked.
        let Some(info) = self.info(entry, read)? else {
            return Ok(None);
        };
        let outcome = match KeyStatus::of(entry.state, entry.expires_at, now) {
            KeyStatus::Revoked => Outcome::Revoked,
            KeyStatus::Expired => Outcome::Expired,
            KeyStatus::Disabled => Outcome::Disabled,
            KeyStatus::Active => {
                let granted = &info.scopes;
                if required_scopes
                    .iter()
                    .all(|s| granted.iter().any(|g| g == s))
                {
                    Outcome::Valid
                } else {
                    Outcome::InsufficientScope
                }
            }
        };
        let key_id = Some(KeyId::from_u64(id));
        if outcome != Outcome::Valid {
            // A refused key is named by its id only, so "has a key" never admits it.
            return Ok(Some(Verification {
                outcome,
                key: None,
                key_id,
                required_scopes: if outcome == Outcome::InsufficientScope {
                    required_scopes.iter().map(|s| (*s).to_owned()).collect()
                } else {
                    Vec::new()
                },
            }));
        }
        self.usage.record(id, now);
        Ok(Some(Verification {
            outcome,
            key: Some(info),
            key_id,
            required_scopes: Vec::new(),
        }))
    }
}
