//! The usage flusher: the background thread that writes the usage buffer (usage.rs) to the
//! store every `flush_interval` and lets an idle handle's backend release what it holds for reads.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use std::collections::BTreeMap;

use super::shared::Inner;
use crate::backend::UsageAdd;
use crate::error::Result;
use crate::time;

/// The running flusher of one handle.
///
/// After `fork` the child inherits this value but not the thread (a child process has only
/// the thread that forked): `pid` tells the two apart, so the child never signals or joins a
/// thread of its parent's (a join there panics, a lock the thread held at the fork may never
/// be released) and starts its own instead (`Inner::after_fork`).
pub(super) struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    pid: u32,
}

impl Flusher {
    /// Whether the thread was started by this process (false in a child after `fork`).
    pub(super) fn is_ours(&self) -> bool {
        self.pid == std::process::id()
    }

    /// Stops the thread and waits for it; in a child after `fork`, where the thread does
    /// not exist, only forgets it (without touching its lock).
    pub(super) fn stop(mut self) {
        if !self.is_ours() {
            // The parent's thread and its stop flag: leaked on purpose, a few bytes once per
            // fork. Dropping the handle would detach a thread id of the parent's.
            std::mem::forget(self.thread.take());
            std::mem::forget(self.stop);
            return;
        }
        let (lock, signal) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        signal.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(super) fn spawn_flusher(inner: Weak<Inner>, interval: Duration) -> Result<Flusher> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let signal = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("keystead-flush".into())
        .spawn(move || {
            let (lock, condvar) = &*signal;
            loop {
                // Waiting on the predicate also catches a stop signalled before the first wait.
                let stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                let (stopped, _) = condvar
                    .wait_timeout_while(stopped, interval, |stopped| !*stopped)
                    .unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    return;
                }
                drop(stopped);
                let Some(inner) = inner.upgrade() else { return };
                // A failed flush keeps its counts for the next try.
                let _ = inner.flush();
                // An idle handle lets go of what the backend holds for reads (redb: a read
                // transaction) so other processes' writes can reuse freed pages.
                if inner.view.load().is_stale(time::now_ms()) {
                    inner.backend.release_reads();
                }
            }
        })?;
    Ok(Flusher {
        stop,
        thread: Some(thread),
        pid: std::process::id(),
    })
}

impl Inner {
    /// In a child after `fork`: replaces the parent's flusher, whose thread did not come along,
    /// with one of this process's. Runs at each refresh (once per refresh interval at most) and
    /// from `KeyStore::after_fork`; does nothing in the process that started the flusher.
    pub(super) fn restart_flusher_after_fork(&self) {
        let mut slot = self.flusher.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|f| !f.is_ours()) {
            if let Some(old) = slot.take() {
                old.stop();
            }
            if let Some(this) = self.this.get() {
                // If no thread can be started, usage is written by `flush`, `close` and drop.
                *slot = spawn_flusher(Weak::clone(this), self.flush_interval).ok();
            }
        }
    }

    /// Writes the pending counts as one batch, aggregated per key and day and sorted, so
    /// that concurrent flushers (other handles, other processes or hosts) take row locks in
    /// one order. A failed flush keeps the counts for the next.
    pub(super) fn flush(&self) -> Result<()> {
        let pending = self.usage.take();
        if pending.is_empty() {
            return Ok(());
        }
        let mut rows: BTreeMap<(u64, u32), (u64, i64)> = BTreeMap::new();
        for (id, uses) in &pending {
            for &(day, count) in &uses.days {
                let row = rows.entry((*id, day)).or_insert((0, i64::MIN));
                row.0 = row.0.saturating_add(count);
                row.1 = row.1.max(uses.last_used_ms);
            }
        }
        let batch: Vec<UsageAdd> = rows
            .into_iter()
            .map(|((id, day), (count, last_used_ms))| UsageAdd {
                id,
                day,
                count,
                last_used_ms,
            })
            .collect();
        let result = self.backend.add_usage(&batch);
        self.counters.flushed(result.is_ok());
        match result {
            Ok(()) => self.usage.written(&pending),
            Err(_) => self.usage.restore(pending),
        }
        result
    }
}
