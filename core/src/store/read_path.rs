//! The verify read path: the current read view and its staleness bound, loading a record's
//! head on a cache miss, and judging a presented secret against it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::cache::{Cached, RecordCache};
use super::schema::{read_u64_meta, META_GENERATION};
use super::shared::{info_of, view_snapshot, Inner, View};
use crate::error::{Error, Result};
use crate::key::{self, KeyId};
use crate::model::{KeyInfo, KeyStatus};
use crate::record::{Head, Record, HEAD_LEN};
use crate::time;
use crate::verify::{Outcome, Verification};

impl Inner {
    /// The current read view, refreshed if this handle wrote since it was taken or if it is
    /// older than the refresh interval.
    ///
    /// The staleness bound is a guarantee, not a goal: a verify whose clock read (`now_ms`)
    /// comes more than `refresh_interval` after a commit returned never judges by a snapshot
    /// older than that commit. The view's `taken_ms` is read before its snapshot is taken, and
    /// a thread that finds the view stale while another refreshes it waits for that refresh
    /// (once per interval, a few microseconds) instead of using the stale view.
    pub(super) fn view(&self, now_ms: i64) -> Result<arc_swap::Guard<Arc<View>>> {
        let epoch = self.local_epoch.load(Ordering::Acquire);
        let current = self.view.load();
        let must_refresh = current.local_epoch != epoch || current.snapshot.is_none();
        if !must_refresh && !current.is_stale(now_ms, self.refresh_interval) {
            return Ok(current);
        }
        let _guard = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have refreshed while this one waited: a view whose clock read is
        // in a later millisecond than this caller's was taken after it, so it is fresh enough
        // for this caller whatever the interval (an equal millisecond proves nothing).
        let epoch = self.local_epoch.load(Ordering::Acquire);
        let current = self.view.load();
        if current.local_epoch == epoch
            && current.snapshot.is_some()
            && (current.taken_ms > now_ms || !current.is_stale(now_ms, self.refresh_interval))
        {
            return Ok(current);
        }
        let snapshot = self.backend.snapshot()?;
        let generation = read_u64_meta(&*snapshot, META_GENERATION)?;
        let cache = if generation == current.generation {
            Arc::clone(&current.cache)
        } else {
            Arc::new(RecordCache::new(self.record_cache_entries))
        };
        let fresh = Arc::new(View {
            snapshot: Some(snapshot),
            taken_ms: now_ms,
            local_epoch: epoch,
            generation,
            cache,
        });
        self.view.store(Arc::clone(&fresh));
        // Hand out this view, not a reload: a concurrent write may already have released it
        // in the slot, but this caller's snapshot stays valid while it holds it.
        Ok(arc_swap::Guard::from_inner(fresh))
    }

    /// Reads the head of an id missing from the cache from the snapshot.
    pub(super) fn load(&self, view: &View, id: u64) -> Result<Cached> {
        let snapshot = view_snapshot(view)?;
        // Both branches copy and decode a head of the same size (a record's or the dummy's),
        // so a first lookup costs the same whether or not the id exists, and whatever the
        // record's name, scopes and metadata weigh. (What remains is the storage engine's
        // found / not-found lookup: ~25 ns of a cold lookup; core/tests/timing_cold.rs.)
        let mut head = [0u8; HEAD_LEN];
        match snapshot.key_head(id, &mut head)? {
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
    pub(super) fn info(&self, view: &View, entry: &Cached) -> Result<Arc<KeyInfo>> {
        if let Some(info) = entry.info.get() {
            return Ok(Arc::clone(info));
        }
        let snapshot = view_snapshot(view)?;
        let bytes = snapshot
            .key(entry.id)?
            .ok_or_else(|| Error::Corrupt("key record vanished from its snapshot".into()))?;
        let record = Record::decode(&bytes, self.hasher.record_key())?;
        let head = Head::of(&record);
        let expected = Head {
            id: entry.id,
            salt: entry.salt,
            hash: entry.hash,
            state: entry.state,
            expires_at: entry.expires_at,
        };
        if head != expected {
            return Err(Error::Corrupt(
                "key record: stored id or head does not match".into(),
            ));
        }
        let info = Arc::new(info_of(snapshot, &record)?);
        Ok(Arc::clone(entry.info.get_or_init(|| info)))
    }

    pub(super) fn check(&self, presented: &str, required_scopes: &[&str]) -> Result<Verification> {
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
        // like a real one.
        let judge = |entry: &Cached| self.judge(&view, entry, &parsed.secret, required_scopes, now);
        match view.cache.with(id, judge) {
            Some(verification) => verification,
            None => {
                let entry = self.load(&view, id)?;
                view.cache.insert_with(entry, judge)
            }
        }
    }

    pub(super) fn judge(
        &self,
        view: &View,
        entry: &Cached,
        secret: &[u8; 32],
        required_scopes: &[&str],
        now: i64,
    ) -> Result<Verification> {
        let id = entry.id;
        let computed = self.hasher.hash(&entry.salt, id, secret);
        let matched = bool::from(computed.ct_eq(&entry.hash)) & entry.present;
        if !matched {
            return Ok(Verification::without_key(Outcome::NotFound));
        }
        // Nothing about the key is told before its whole record has been checked.
        let info = self.info(view, entry)?;
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
            return Ok(Verification {
                outcome,
                key: None,
                key_id,
                required_scopes: if outcome == Outcome::InsufficientScope {
                    required_scopes.iter().map(|s| (*s).to_owned()).collect()
                } else {
                    Vec::new()
                },
            });
        }
        self.usage.record(id, now);
        Ok(Verification {
            outcome,
            key: Some(info),
            key_id,
            required_scopes: Vec::new(),
        })
    }
}
