//! The usage flusher: the background thread that writes the usage buffer (usage.rs) to the
//! store every `flush_interval` and lets an idle handle's snapshot go.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::shared::Inner;
use crate::error::Result;
use crate::time;

pub(super) struct Flusher {
    pub(super) stop: Arc<(Mutex<bool>, Condvar)>,
    pub(super) thread: Option<JoinHandle<()>>,
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
                // An idle handle lets go of its snapshot so other processes' writes can
                // reuse freed pages.
                let interval = inner.refresh_interval;
                inner.release_view(|view| view.is_stale(time::now_ms(), interval));
            }
        })?;
    Ok(Flusher {
        stop,
        thread: Some(thread),
    })
}

impl Inner {
    pub(super) fn flush(&self) -> Result<()> {
        let pending = self.usage.take();
        if pending.is_empty() {
            return Ok(());
        }
        let result = self.backend.write(&mut |txn| {
            for (id, uses) in &pending {
                // Uses of a key deleted since are dropped with it.
                if txn.key(*id)?.is_none() {
                    continue;
                }
                for (day, count) in &uses.days {
                    txn.add_usage(*id, *day, *count, uses.last_used_ms)?;
                }
            }
            Ok(())
        });
        if result.is_err() {
            self.usage.restore(pending);
        }
        result
    }
}
