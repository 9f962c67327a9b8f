//! `Options`: how a store is opened.

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

/// How a store is opened. Built with chained setters from [`Options::new`].
///
/// # Example
/// ```
/// use std::time::Duration;
/// use keystead::Options;
/// # let pepper_from_the_secret_manager = vec![0x5a_u8; 32];
/// let options = Options::new()
///     .prefix("hub")
///     // 32 to 1024 random bytes from a secret manager (`keystead pepper generate` makes some).
///     .pepper(pepper_from_the_secret_manager)
///     .refresh_interval(Duration::from_millis(500));
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct Options {
    pub(super) prefix: Option<String>,
    pub(super) pepper: Option<Zeroizing<Vec<u8>>>,
    pub(super) refresh_interval: Duration,
    pub(super) max_staleness: Duration,
    pub(super) flush_interval: Duration,
    pub(super) record_cache_entries: usize,
    pub(super) actor: Option<String>,
    pub(super) create_if_missing: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prefix: None,
            pepper: None,
            refresh_interval: Duration::from_secs(1),
            max_staleness: Duration::from_secs(30),
            flush_interval: Duration::from_secs(1),
            record_cache_entries: 65_536,
            actor: None,
            create_if_missing: true,
        }
    }
}

impl Options {
    /// The defaults: the store's own prefix (`ks` for a new store), no pepper, a 1 s refresh interval, a 1 s usage flush interval, 65,536 cached records.
    pub fn new() -> Self {
        Self::default()
    }
    /// The key prefix: used when creating the store, checked against an existing one.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }
    /// A secret mixed into every hash: 32 to 1024 bytes of random data, kept in a secret
    /// manager, never in the store's directory (`keystead pepper generate` prints 32 random
    /// bytes in base64; that text, as is, makes a good pepper). A stolen store file is useless
    /// for offline guessing without it, and every key record is authenticated under a key
    /// derived from it, so whoever can write the file but lacks the pepper cannot change a key
    /// (e.g. un-revoke it): the edit reads as [`Error::Corrupt`]. The store keeps an HMAC under
    /// the pepper to detect a wrong one, so a guessable pepper (a word, a short string) can be
    /// found from a copy of the file; that is why shorter peppers are refused. Opening with a
    /// different pepper than the store was created with fails with [`Error::WrongPepper`].
    ///
    /// Checked by [`KeyStore::open`]: a pepper shorter than 32 bytes, longer than 1024 or all
    /// zero bytes is [`Error::InvalidArgument`].
    pub fn pepper(mut self, pepper: impl Into<Vec<u8>>) -> Self {
        self.pepper = Some(Zeroizing::new(pepper.into()));
        self
    }
    /// How long verify may judge by the store as it last read the backend's change feed
    /// before reading it again. This bounds how late a change made by another process (or
    /// another `KeyStore` on the same store) is seen; changes made through this `KeyStore` are
    /// seen at once. Zero reads the feed on every verify.
    /// It also bounds how long a replaced store file is served: the first refresh after the
    /// path came to name another file fails with [`Error::StoreReplaced`].
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }
    /// How long cached keys keep verifying while the backend is unavailable (a database
    /// that cannot be reached; default 30 s) after its last successful sync. Past that,
    /// verify fails closed with [`Error::StoreUnavailable`](crate::Error::StoreUnavailable);
    /// a key that is not cached fails with it at once. It never turns into an outcome about
    /// the key.
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = staleness;
        self
    }
    /// How often counted usage is written to the store in the background; zero writes it only
    /// on [`KeyStore::flush`], [`KeyStore::close`] and drop.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }
    /// How many key records verify keeps decoded in memory (0 disables the cache).
    pub fn record_cache_entries(mut self, entries: usize) -> Self {
        self.record_cache_entries = entries;
        self
    }
    /// Who is making changes, recorded with every audit entry of this handle: at most
    /// [`MAX_ACTOR_CHARS`](crate::MAX_ACTOR_CHARS) characters, not blank, without control,
    /// invisible or direction-changing characters ([`KeyStore::open`] refuses others).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
    /// Whether [`KeyStore::open`] creates a store where there is none (the default, `true`).
    /// With `false` it only opens an existing store: a missing or empty file (or `memory:`) is
    /// [`Error::StoreNotFound`] and no file is created or written — for tools that must never make a store by mistake at a mistyped path.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("prefix", &self.prefix)
            .field("pepper", &self.pepper.as_ref().map(|_| "<redacted>"))
            .field("refresh_interval", &self.refresh_interval)
            .field("max_staleness", &self.max_staleness)
            .field("flush_interval", &self.flush_interval)
            .field("record_cache_entries", &self.record_cache_entries)
            .field("actor", &self.actor)
            .field("create_if_missing", &self.create_if_missing)
            .finish()
    }
}
