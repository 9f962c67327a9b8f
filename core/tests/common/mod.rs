//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use keystead::backend::MemoryBackend;
use keystead::{KeyStore, Options};

pub struct TempStore {
    pub dir: tempfile::TempDir,
    pub store: KeyStore,
    /// The in-memory backend the store is on, if it is.
    pub memory: Option<Arc<MemoryBackend>>,
    /// The database location the store is on, if it is.
    pub location: Option<String>,
}

impl TempStore {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("keystead.redb")
    }

    /// Another handle on the same store (as another process of the host would open it).
    pub fn open_another(&self, options: Options) -> KeyStore {
        match (&self.memory, &self.location) {
            (Some(memory), _) => KeyStore::open_with(Arc::clone(memory), options),
            (None, Some(location)) => KeyStore::open(location, options),
            (None, None) => KeyStore::open(self.path(), options),
        }
        .unwrap()
    }
}

/// Options for tests: no background flusher, so counts move only on `flush`.
pub fn options() -> Options {
    Options::new().flush_interval(Duration::ZERO)
}

/// The storage backends the behavioural tests run against (`every_backend!`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded redb file, the default.
    File,
    /// `memory:`, the in-memory backend.
    Memory,
    /// PostgreSQL at `KEYSTEAD_TEST_PG_URL`, one fresh schema per store (feature `postgres`).
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::File) };
}

/// Runs `test` with `open_new` opening stores on `backend` (in this thread).
pub fn with_backend(backend: Backend, test: fn()) {
    BACKEND.with(|b| b.set(backend));
    test();
}

/// A new, empty store on the backend of the running test (the file unless `every_backend!`
/// runs it on another).
pub fn open_new() -> TempStore {
    open_new_with(options())
}

/// As [`open_new`], with these options.
pub fn open_new_with(options: Options) -> TempStore {
    let dir = tempfile::tempdir().unwrap();
    let mut location = None;
    let mut memory = None;
    let store = match BACKEND.with(std::cell::Cell::get) {
        Backend::File => KeyStore::open(dir.path().join("keystead.redb"), options),
        Backend::Memory => {
            let shared = Arc::new(MemoryBackend::new());
            memory = Some(Arc::clone(&shared));
            KeyStore::open_with(shared, options)
        }
        Backend::Postgres => {
            let url = pg_plain_location();
            let store = KeyStore::open(&url, options);
            location = Some(url);
            store
        }
    };
    TempStore {
        dir,
        store: store.unwrap(),
        memory,
        location,
    }
}

/// The test server's URL. With feature `postgres` the PostgreSQL tests need a server:
/// `scripts/test-postgres.sh` starts one and sets `KEYSTEAD_TEST_PG_URL`; without it they
/// fail, never skip.
pub fn pg_url() -> String {
    std::env::var("KEYSTEAD_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "KEYSTEAD_TEST_PG_URL is not set: run the PostgreSQL tests through \
             scripts/test-postgres.sh (it starts a throwaway server), or point the variable \
             at a server of your own"
        )
    })
}

/// A location for a new, empty store: a fresh schema in the test database, chosen with
/// the connection's `search_path`.
#[cfg(feature = "postgres")]
pub fn pg_location() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let url = pg_url();
    let schema = format!(
        "ks_t{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to KEYSTEAD_TEST_PG_URL: {e}"));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// [`pg_location`] over plain TCP (`sslmode=disable`): the test cluster is on loopback, and
/// keystead verifies any TLS certificate it is offered (also under the default `prefer`),
/// while the `--tls` cluster's is self-signed. The TLS tests use `pg_location` itself.
#[cfg(feature = "postgres")]
pub fn pg_plain_location() -> String {
    format!("{}&sslmode=disable", pg_location())
}

#[cfg(not(feature = "postgres"))]
pub fn pg_location() -> String {
    unreachable!("the PostgreSQL tests are compiled only with feature `postgres`")
}

#[cfg(not(feature = "postgres"))]
pub fn pg_plain_location() -> String {
    unreachable!("the PostgreSQL tests are compiled only with feature `postgres`")
}

/// Runs each named test function (a plain `fn()` without `#[test]`) once per backend, as
/// `file::NAME` and `memory::NAME`: one behavioural suite for every backend, so a new backend
/// gets them all by adding one module here.
#[allow(unused_macros)]
macro_rules! every_backend {
    ($($test:ident),* $(,)?) => {
        mod file {
            $(#[test] fn $test() { $crate::common::with_backend($crate::common::Backend::File, super::$test) })*
        }
        mod memory {
            $(#[test] fn $test() { $crate::common::with_backend($crate::common::Backend::Memory, super::$test) })*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(#[test] fn $test() { $crate::common::with_backend($crate::common::Backend::Postgres, super::$test) })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use every_backend;

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

/// The 62 digits of keys, in value order (docs/key-format.md).
pub const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `value` as `width` base62 digits, most significant first.
pub fn base62(mut value: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).unwrap()
}

/// Base62 digits back to their value (panics on a non-digit: test input is well-formed).
pub fn base62_decode(text: &str) -> u64 {
    text.bytes().fold(0u64, |acc, c| {
        acc * 62 + ALPHABET.iter().position(|&a| a == c).unwrap() as u64
    })
}

/// A 256-bit big-endian number as 43 base62 digits.
pub fn base62_u256(mut n: [u8; 32]) -> String {
    let mut digits = vec![b'0'; 43];
    for slot in digits.iter_mut().rev() {
        let mut rem = 0u32;
        for byte in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 62) as u8;
            rem = cur % 62;
        }
        *slot = ALPHABET[rem as usize];
    }
    String::from_utf8(digits).unwrap()
}

/// 43 base62 digits back to the 256-bit big-endian number.
pub fn base62_decode_u256(text: &str) -> [u8; 32] {
    let mut n = [0u8; 32];
    for c in text.bytes() {
        let mut carry = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        for byte in n.iter_mut().rev() {
            let cur = u32::from(*byte) * 62 + carry;
            *byte = cur as u8;
            carry = cur >> 8;
        }
    }
    n
}

/// Bitwise CRC-32/IEEE, written out here so the tests do not share the crate's implementation.
pub fn crc32(bytes: &[u8]) -> u32 {
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
