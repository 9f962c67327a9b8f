//! Helpers shared by the ffi integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{SystemTime, UNIX_EPOCH};

use keystead_ffi::{KeyStore, NewKey, OpenOptions};

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub fn open_temp(options: OpenOptions) -> (tempfile::TempDir, String, KeyStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir
        .path()
        .join("keystead.redb")
        .to_str()
        .expect("utf-8 temp path")
        .to_owned();
    let store = KeyStore::open(path.clone(), options).expect("open");
    (dir, path, store)
}

/// Options without the background flusher, so tests control when usage is written.
pub fn quiet() -> OpenOptions {
    OpenOptions {
        flush_interval_ms: Some(0),
        ..OpenOptions::default()
    }
}

pub fn new_key(name: &str) -> NewKey {
    NewKey {
        name: name.to_owned(),
        scopes: Vec::new(),
        metadata: Default::default(),
        expires_at_ms: None,
    }
}

/// A time as the FFI carries it: milliseconds since the epoch.
pub fn ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}
