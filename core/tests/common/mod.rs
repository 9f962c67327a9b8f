//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use keystead::{KeyStore, Options};

pub struct TempStore {
    pub dir: tempfile::TempDir,
    pub store: KeyStore,
}

impl TempStore {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("keystead.redb")
    }
}

/// Options for tests: no background flusher, so counts move only on `flush`.
pub fn options() -> Options {
    Options::new().flush_interval(Duration::ZERO)
}

pub fn open_new() -> TempStore {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path().join("keystead.redb"), options()).unwrap();
    TempStore { dir, store }
}

pub fn open_at(path: &Path, options: Options) -> KeyStore {
    KeyStore::open(path, options).unwrap()
}

/// The same key with one secret character changed and the checksum recomputed, so it is
/// well-formed but wrong.
pub fn wrong_secret(key: &str) -> String {
    let body_start = key.len() - 61;
    let mut bytes = key.as_bytes()[..key.len() - 6].to_vec();
    let i = body_start + 20;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let crc = crc32(&bytes);
    let mut out = String::from_utf8(bytes).unwrap();
    out.push_str(&base62(u64::from(crc), 6));
    out
}

/// The same key with a different id (checksum recomputed): an unknown id.
pub fn unknown_id(key: &str) -> String {
    let body_start = key.len() - 61;
    let mut bytes = key.as_bytes()[..key.len() - 6].to_vec();
    let i = body_start + 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let crc = crc32(&bytes);
    let mut out = String::from_utf8(bytes).unwrap();
    out.push_str(&base62(u64::from(crc), 6));
    out
}

fn base62(mut value: u64, width: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).unwrap()
}

/// Bitwise CRC-32/IEEE, written out here so the tests do not share the crate's implementation.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
