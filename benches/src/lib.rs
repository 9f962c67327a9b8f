//! Fixtures shared by the criterion benches and the comparison driver: stores pre-filled with
//! N keys through the public API (bulk `create_many`), and a sample of their plaintext keys
//! kept in memory only.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use keystead::{KeyStore, NewKey, Options};

/// A store with `count` keys and `sample.len()` of their plaintext keys.
pub struct Fixture {
    /// Keeps the store's directory alive.
    pub dir: tempfile::TempDir,
    /// The store.
    pub store: KeyStore,
    /// Plaintext keys of a spread of the stored keys, for verify loops.
    pub sample: Vec<String>,
    /// How long the bulk import took.
    pub import_time: Duration,
}

impl Fixture {
    /// Path of the store file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("bench.redb")
    }
}

/// Options used by every benchmark: usage flushed in the background as in production.
pub fn bench_options() -> Options {
    Options::new()
}

/// Fills a new store with `count` keys in batches of 10,000 and keeps every
/// `count / sample`-th plaintext key.
///
/// # Panics
/// On any store error: a benchmark fixture that cannot be built is a failed run.
pub fn fixture(count: usize, sample: usize, options: Options) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KeyStore::open(dir.path().join("bench.redb"), options).expect("open");
    let (keys, import_time) = fill(&store, count, sample);
    Fixture {
        dir,
        store,
        sample: keys,
        import_time,
    }
}

/// Adds `count` keys to `store` with `create_many` in batches of 10,000 (any backend) and
/// returns every `count / sample`-th plaintext key (at most `sample`) and how long it took.
///
/// # Panics
/// On any store error: a benchmark fixture that cannot be built is a failed run.
pub fn fill(store: &KeyStore, count: usize, sample: usize) -> (Vec<String>, Duration) {
    let stride = (count / sample.max(1)).max(1);
    let mut keys = Vec::with_capacity(sample);
    let start = Instant::now();
    let mut made = 0;
    while made < count {
        let n = (count - made).min(10_000);
        let batch = (made..made + n)
            .map(|i| NewKey::new(format!("bench-{i}")).scopes(["chat:completions"]))
            .collect();
        for (i, created) in store
            .create_many(batch)
            .expect("bulk create")
            .into_iter()
            .enumerate()
        {
            if (made + i) % stride == 0 && keys.len() < sample {
                keys.push(created.key().to_owned());
            }
        }
        made += n;
    }
    (keys, start.elapsed())
}

/// Changes one secret character and fixes the checksum: well-formed, but the wrong secret.
/// `unknown_id` does the same to an id character.
pub fn wrong_secret(key: &str) -> String {
    tweak(key, key.len() - 61 + 20)
}

/// A well-formed key with an id that is not in the store.
pub fn unknown_id(key: &str) -> String {
    tweak(key, key.len() - 61 + 2)
}

/// A key with a bad checksum (last character changed).
pub fn bad_checksum(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

fn tweak(key: &str, at: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = key.as_bytes()[..key.len() - 6].to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let mut crc = crc32(&bytes);
    let mut checksum = [b'0'; 6];
    for slot in checksum.iter_mut().rev() {
        *slot = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    bytes.extend_from_slice(&checksum);
    String::from_utf8(bytes).expect("ASCII")
}

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
