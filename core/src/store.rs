//! `KeyStore`: the admin operations, the verify read path and the usage flusher.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::audit;
use crate::backend::memory::Memory;
use crate::backend::redb_file::{self, RedbFile};
use crate::backend::{Backend, Read, Snapshot, Txn};
use crate::error::{Error, Result};
use crate::hash::Hasher;
use crate::header::{self, HeaderError};
use crate::key::{self, KeyId, DEFAULT_PREFIX};
use crate::model::{
    self, AuditAction, AuditEntry, CreatedKey, DailyUsage, KeyInfo, KeyStatus, ListFilter, NewKey,
};
use crate::padded::Padded;
use crate::record::{Head, Record, State, ALG_HMAC_SHA256_V1, HEAD_LEN};
use crate::time;
use crate::usage::UsageBuffer;
use crate::verify::{Outcome, Verification};

/// Newest store schema this build reads and writes.
const SCHEMA_VERSION: u32 = 1;
const META_SCHEMA: &str = "schema_version";
const META_PREFIX: &str = "prefix";
const META_PEPPER_CHECK: &str = "pepper_check";
const META_GENERATION: &str = "generation";
const META_CREATED_AT: &str = "created_at";

/// How many audit entries every binding's `audit` and the CLI's `keystead audit` return when no
/// limit is given (core's [`KeyStore::audit`] always takes one).
pub const DEFAULT_AUDIT_LIMIT: usize = 100;

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
///     .cache_size(16 << 20)
///     .refresh_interval(Duration::from_millis(500));
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct Options {
    prefix: Option<String>,
    pepper: Option<Zeroizing<Vec<u8>>>,
    cache_size: usize,
    refresh_interval: Duration,
    flush_interval: Duration,
    record_cache_entries: usize,
    actor: Option<String>,
    create_if_missing: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prefix: None,
            pepper: None,
            cache_size: 32 << 20,
            refresh_interval: Duration::from_secs(1),
            flush_interval: Duration::from_secs(1),
            record_cache_entries: 65_536,
            actor: None,
            create_if_missing: true,
        }
    }
}

impl Options {
    /// The defaults: the store's own prefix (`ks` for a new store), no pepper, a 32 MiB page
    /// cache, a 1 s refresh interval, a 1 s usage flush interval, 65,536 cached records.
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
    /// The storage engine's page cache, in bytes.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }
    /// How long verify may use one read snapshot before taking a fresh one. This bounds how
    /// late a change made by another process (or another `KeyStore` on the same file) is seen;
    /// changes made through this `KeyStore` are seen at once. Zero takes a snapshot per verify.
    /// It also bounds how long a replaced store file is served: the first refresh after the
    /// path came to name another file fails with [`Error::StoreReplaced`].
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
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
            .field("cache_size", &self.cache_size)
            .field("refresh_interval", &self.refresh_interval)
            .field("flush_interval", &self.flush_interval)
            .field("record_cache_entries", &self.record_cache_entries)
            .field("actor", &self.actor)
            .field("create_if_missing", &self.create_if_missing)
            .finish()
    }
}

/// What verify needs of a key before its secret matched: the record's fixed-size head,
/// decoded on a cache miss at the same cost whatever the record weighs. The rest of the key
/// (name, scopes, metadata, usage) is decoded from the whole, checked record only after a
/// secret matched, once, into `info`. Unknown ids get an entry of the same shape decoded from
/// the dummy record's head (`present == false`), so both failure paths take the same steps.
struct Cached {
    /// The id looked up (the map is keyed by its keyed hash).
    id: u64,
    present: bool,
    salt: [u8; 16],
    hash: [u8; 32],
    state: State,
    expires_at: Option<i64>,
    /// The key's info, decoded after a secret matched.
    info: OnceLock<Arc<KeyInfo>>,
    /// The entry's index in its shard's `order`, for eviction.
    slot: usize,
}

impl Cached {
    fn new(id: u64, present: bool, head: &Head) -> Self {
        Cached {
            id,
            present,
            salt: head.salt,
            hash: head.hash,
            state: head.state,
            expires_at: head.expires_at,
            info: OnceLock::new(),
            slot: 0,
        }
    }
}

const CACHE_SHARDS: usize = 16;

/// Passes on a hash computed already (the keyed hash of an id), so a lookup hashes once.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// One shard: entries keyed by the keyed hash of their id, and those hashes in insertion
/// slots so that a random entry can be evicted in O(1).
struct CacheShard {
    map: HashMap<u64, Cached, BuildHasherDefault<Prehashed>>,
    order: Vec<u64>,
    /// xorshift64* state for picking the entry to evict.
    rng: u64,
}

impl CacheShard {
    fn evict_one(&mut self) {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % self.order.len() as u64) as usize;
        let victim = self.order.swap_remove(r);
        self.map.remove(&victim);
        if let Some(&moved) = self.order.get(r) {
            if let Some(entry) = self.map.get_mut(&moved) {
                entry.slot = r;
            }
        }
    }
}

/// Decoded record heads (and known-absent ids) of one store generation.
///
/// An id's shard and its place in the shard's table come from SipHash under a random key of
/// this cache, so nobody can choose ids that crowd one shard; a full shard evicts one random
/// entry per insert, so a flood of unknown ids cannot push a given entry out at once, and
/// memory stays bounded.
struct RecordCache {
    shards: [Padded<RwLock<CacheShard>>; CACHE_SHARDS],
    per_shard: usize,
    keys: RandomState,
}

impl RecordCache {
    fn new(entries: usize) -> Self {
        let keys = RandomState::new();
        RecordCache {
            shards: std::array::from_fn(|i| {
                Padded(RwLock::new(CacheShard {
                    map: HashMap::default(),
                    order: Vec::new(),
                    rng: keys.hash_one(!(i as u64)) | 1,
                }))
            }),
            per_shard: entries.div_ceil(CACHE_SHARDS),
            keys,
        }
    }

    /// The keyed hash of `id` and its shard.
    fn locate(&self, id: u64) -> (u64, &RwLock<CacheShard>) {
        let h = self.keys.hash_one(id);
        // The top bits pick the shard; the table inside uses the low ones.
        (h, &self.shards[(h >> 60) as usize % CACHE_SHARDS])
    }

    /// Runs `f` on the cached entry under the shard's read lock.
    fn with<R>(&self, id: u64, f: impl FnOnce(&Cached) -> R) -> Option<R> {
        let (h, shard) = self.locate(id);
        let shard = shard.read().unwrap_or_else(|p| p.into_inner());
        shard.map.get(&h).filter(|e| e.id == id).map(f)
    }

    /// Caches `entry` (evicting a random entry of a full shard) and runs `f` on the cached
    /// entry: `entry`, or one another thread cached for the id meanwhile.
    fn insert_with<R>(&self, entry: Cached, f: impl FnOnce(&Cached) -> R) -> R {
        if self.per_shard == 0 {
            return f(&entry);
        }
        let id = entry.id;
        let (h, shard) = self.locate(id);
        let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
        match shard.map.get(&h) {
            Some(existing) if existing.id == id => return f(existing),
            // Two ids with one 64-bit keyed hash: serve this one uncached.
            Some(_) => return f(&entry),
            None => {}
        }
        if shard.order.len() >= self.per_shard {
            shard.evict_one();
        }
        let slot = shard.order.len();
        shard.order.push(h);
        let stored = shard.map.entry(h).or_insert(Cached { slot, ..entry });
        f(stored)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    #[cfg(test)]
    fn contains(&self, id: u64) -> bool {
        self.with(id, |_| ()).is_some()
    }
}

/// A read snapshot plus the cache that is valid for its generation.
struct View {
    /// `None` once released: an idle or just-written handle holds no snapshot, because a live
    /// snapshot stops the engine from reusing pages freed after it (the file would grow).
    snapshot: Option<Box<dyn Snapshot>>,
    /// When the snapshot was taken (ms since the epoch: the clock verify reads anyway).
    taken_ms: i64,
    local_epoch: u64,
    generation: u64,
    cache: Arc<RecordCache>,
}

impl View {
    /// Older than `interval`, or the clock went backwards since it was taken.
    fn is_stale(&self, now_ms: i64, interval: Duration) -> bool {
        now_ms < self.taken_ms
            || now_ms.saturating_sub(self.taken_ms) >= time::duration_ms(interval)
    }
}

struct Inner {
    backend: Box<dyn Backend>,
    hasher: Hasher,
    prefix: String,
    actor: Option<String>,
    rng: SystemRandom,
    refresh_interval: Duration,
    record_cache_entries: usize,
    /// Loaded without touching a shared reference count, so verifying threads do not contend.
    view: ArcSwap<View>,
    refresh: Mutex<()>,
    /// Bumped after every write through this handle, so its own changes are seen at once.
    local_epoch: AtomicU64,
    usage: UsageBuffer,
    /// The head of a record with a random salt and hash, decoded on a first lookup of an
    /// unknown id (as a known id's head is) and verified against, so that both failure paths
    /// do the same work.
    dummy_head: [u8; HEAD_LEN],
}

struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// A store of API keys in one embedded file.
///
/// `KeyStore` is `Send + Sync`: share it (e.g. in an `Arc`) and verify from many threads.
/// Several processes of one host may open the same file.
///
/// # Example
/// ```
/// use keystead::{KeyStore, NewKey, Options};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("keystead.redb");
/// let store = KeyStore::open(&path, Options::new())?;
/// let created = store.create(NewKey::new("dev-server-integration").scopes(["chat:completions"]))?;
/// let header = format!("Bearer {}", created.key());
/// let check = store.verify_header(&header, &["chat:completions"])?;
/// assert!(check.is_valid());
/// assert_eq!(check.key().unwrap().name(), "dev-server-integration");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KeyStore {
    inner: Arc<Inner>,
    flusher: Option<Flusher>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

/// What [`check_store`] found.
struct StoreCheck {
    prefix: String,
    generation: u64,
    /// A peppered store written before key records were authenticated: its records are
    /// version 1 and its pepper check the version-1 value (see [`migrate_records`]).
    legacy_records: bool,
}

/// Checks a store's schema version, prefix and pepper.
fn check_store(view: &dyn Read, requested: Option<&str>, hasher: &Hasher) -> Result<StoreCheck> {
    let schema = view
        .meta(META_SCHEMA)?
        .ok_or_else(|| Error::Corrupt("not a keystead store (no schema version)".into()))?;
    let schema = <[u8; 4]>::try_from(schema.as_slice())
        .map(u32::from_le_bytes)
        .map_err(|_| Error::Corrupt("schema version has the wrong length".into()))?;
    if schema > SCHEMA_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "schema",
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    if schema == 0 {
        return Err(Error::Corrupt("schema version 0".into()));
    }
    let stored = view
        .meta(META_PREFIX)?
        .and_then(|p| String::from_utf8(p).ok())
        .filter(|p| key::is_valid_prefix(p))
        .ok_or_else(|| Error::Corrupt("missing or invalid prefix".into()))?;
    if let Some(requested) = requested {
        if requested != stored {
            return Err(Error::PrefixMismatch {
                stored,
                requested: requested.to_owned(),
            });
        }
    }
    let check = view
        .meta(META_PEPPER_CHECK)?
        .ok_or_else(|| Error::Corrupt("missing pepper check".into()))?;
    let current = bool::from(check.as_slice().ct_eq(&hasher.pepper_check()));
    let legacy = hasher
        .legacy_pepper_check()
        .is_some_and(|legacy| bool::from(check.as_slice().ct_eq(&legacy)));
    if !current && !legacy {
        return Err(Error::WrongPepper);
    }
    Ok(StoreCheck {
        prefix: stored,
        generation: read_u64_meta(view, META_GENERATION)?,
        legacy_records: legacy,
    })
}

/// Authenticates every key record of a peppered store written before records were: each
/// version-1 record (CRC-checked) is rewritten as version 2 under the record key, and the
/// pepper check becomes the version-2 value, all in one transaction (another handle may have
/// done it first: then nothing is written). From then on a version-1 record in this store is
/// `Corrupt`, and builds that predate authenticated records refuse it as `WrongPepper`.
fn migrate_records(backend: &dyn Backend, hasher: &Hasher) -> Result<()> {
    backend.write(&mut |txn| {
        let check = txn.meta(META_PEPPER_CHECK)?.unwrap_or_default();
        if bool::from(check.as_slice().ct_eq(&hasher.pepper_check())) {
            return Ok(());
        }
        let mut records = Vec::new();
        txn.scan_keys(None, &mut |id, bytes| {
            let record = Record::decode(bytes, None)?;
            if record.id != id {
                return Err(Error::Corrupt(
                    "key record: stored id does not match".into(),
                ));
            }
            records.push(record);
            Ok(true)
        })?;
        for record in &records {
            txn.put_key(record.id, &record.encode(hasher.record_key()))?;
        }
        txn.set_meta(META_PEPPER_CHECK, &hasher.pepper_check())?;
        let generation = read_u64_meta(txn, META_GENERATION)?.wrapping_add(1);
        txn.set_meta(META_GENERATION, &generation.to_le_bytes())
    })
}

fn read_u64_meta(view: &dyn Read, name: &str) -> Result<u64> {
    match view.meta(name)? {
        None => Ok(0),
        Some(bytes) => bytes
            .as_slice()
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| Error::Corrupt(format!("meta `{name}` has the wrong length"))),
    }
}

/// Where a store lives, as named to [`KeyStore::open`].
#[derive(Clone, Copy)]
enum Location<'a> {
    /// A redb file (the embedded default): a plain path or `file://PATH`.
    File(&'a Path),
    /// `memory:`: a new store in this process's memory.
    Memory,
}

impl<'a> Location<'a> {
    /// The schemes `open` understands, for error messages.
    const SUPPORTED: &'static str = "a file path, `file://PATH` or `memory:`";

    fn parse(path: &'a Path) -> Result<Location<'a>> {
        let Some(text) = path.to_str() else {
            return Ok(Location::File(path));
        };
        if text == "memory:" {
            return Ok(Location::Memory);
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Location::File(path));
        };
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !is_scheme {
            return Ok(Location::File(path));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "file" if !rest.is_empty() => Ok(Location::File(Path::new(rest))),
            "file" => Err(Error::invalid("`file://` names no file")),
            "postgres" | "postgresql" => Err(Error::invalid(format!(
                "`{scheme}://` stores are not supported by this build of keystead yet; \
                 supported: {}",
                Self::SUPPORTED
            ))),
            _ => Err(Error::invalid(format!(
                "unknown store location scheme `{}://`; supported: {}",
                model::truncate_for_message(scheme),
                Self::SUPPORTED
            ))),
        }
    }
}

impl KeyStore {
    /// Opens the store at `path`, creating the file (mode 0600) if it does not exist. A store is
    /// never created through a symbolic link (an existing store may be opened through one).
    ///
    /// `path` is a location: a file path or `file://PATH` (the embedded redb file), or
    /// `memory:` for a new store in this process's memory, gone when the handle is dropped
    /// (for tests and ephemeral use; each open makes a separate store).
    ///
    /// With a pepper, a store written before key records were authenticated is upgraded in
    /// one write transaction: every record is rewritten authenticated under the pepper
    /// (docs/storage.md); builds older than that then refuse it with `WrongPepper`.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`] for a bad prefix or actor, a pepper outside 32 to 1024 bytes
    ///   (or all zero bytes), a `path` that is a symbolic link to a missing or empty file, or
    ///   a location with a `scheme://` other than `file://`;
    /// - [`Error::InsecurePermissions`] for an existing file that its group or others may
    ///   write (`chmod 600` fixes it);
    /// - [`Error::PrefixMismatch`] if a prefix is given that is not the store's;
    /// - [`Error::WrongPepper`] if the pepper is not the one the store was created with;
    /// - [`Error::UnsupportedVersion`] for a store written by a newer keystead;
    /// - [`Error::Corrupt`] for a file that is not a keystead store;
    /// - [`Error::StoreNotFound`] with [`Options::create_if_missing`]`(false)` where there is
    ///   no store (nothing is created);
    /// - [`Error::Io`], [`Error::Locked`], [`Error::Storage`] for failures of the file.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<KeyStore> {
        if let Some(actor) = &options.actor {
            model::validate_actor(actor)?;
        }
        if let Some(prefix) = &options.prefix {
            if !key::is_valid_prefix(prefix) {
                return Err(Error::invalid(format!(
                    "prefix `{}` is not [a-z][a-z0-9_]{{0,15}} without a trailing `_`",
                    model::truncate_for_message(prefix)
                )));
            }
        }
        let hasher = Hasher::new(options.pepper.as_deref().map(Vec::as_slice))?;
        let requested = options.prefix.as_deref();
        let location = Location::parse(path.as_ref())?;
        if let Location::File(path) = location {
            // Refuse a wrong pepper, prefix or version before opening the file for writing.
            redb_file::inspect(path, |view| check_store(view, requested, &hasher))?;
        }
        let prefix = requested.unwrap_or(DEFAULT_PREFIX);
        let schema = SCHEMA_VERSION.to_le_bytes();
        let check = hasher.pepper_check();
        let generation = 0u64.to_le_bytes();
        let created = time::now_ms().to_le_bytes();
        let initial_meta: [(&str, &[u8]); 5] = [
            (META_SCHEMA, &schema),
            (META_PREFIX, prefix.as_bytes()),
            (META_PEPPER_CHECK, &check),
            (META_GENERATION, &generation),
            (META_CREATED_AT, &created),
        ];
        let create = options.create_if_missing;
        let backend: Box<dyn Backend> = match location {
            Location::File(path) => Box::new(RedbFile::open(
                path,
                options.cache_size,
                &initial_meta,
                create,
            )?),
            Location::Memory if !create => return Err(Error::StoreNotFound),
            Location::Memory => Box::new(Memory::new()),
        };
        // A redb file with no tables at all (not made by keystead) becomes a store in place.
        if backend.is_new()? {
            if !create {
                return Err(Error::StoreNotFound);
            }
            backend.initialize(&initial_meta)?;
        }
        let mut snapshot = backend.snapshot()?;
        let mut checked = check_store(&*snapshot, requested, &hasher)?;
        if checked.legacy_records {
            drop(snapshot);
            migrate_records(&*backend, &hasher)?;
            snapshot = backend.snapshot()?;
            checked = check_store(&*snapshot, requested, &hasher)?;
        }
        let StoreCheck {
            prefix: stored_prefix,
            generation,
            ..
        } = checked;

        let rng = SystemRandom::new();
        let mut dummy_record = blank_record(0, String::new(), Vec::new(), BTreeMap::new(), None);
        fill(&rng, &mut dummy_record.salt)?;
        fill(&rng, &mut dummy_record.hash)?;
        let mut dummy_head = [0u8; HEAD_LEN];
        dummy_head.copy_from_slice(&dummy_record.encode(hasher.record_key())[..HEAD_LEN]);
        let view = View {
            snapshot: Some(snapshot),
            taken_ms: time::now_ms(),
            local_epoch: 0,
            generation,
            cache: Arc::new(RecordCache::new(options.record_cache_entries)),
        };
        let inner = Arc::new(Inner {
            backend,
            hasher,
            prefix: stored_prefix,
            actor: options.actor,
            rng,
            refresh_interval: options.refresh_interval,
            record_cache_entries: options.record_cache_entries,
            view: ArcSwap::from_pointee(view),
            refresh: Mutex::new(()),
            local_epoch: AtomicU64::new(0),
            usage: UsageBuffer::new(),
            dummy_head,
        });
        let flusher = (!options.flush_interval.is_zero())
            .then(|| spawn_flusher(Arc::downgrade(&inner), options.flush_interval))
            .transpose()?;
        Ok(KeyStore { inner, flusher })
    }

    /// Runs the storage engine's full integrity check on a store file. It opens a handle of its
    /// own (other handles may stay open); run it while nothing writes, e.g. after a crash or
    /// before a backup. Returns `Ok(true)` if the file is intact.
    ///
    /// # Errors
    /// As for [`KeyStore::open`]; a damaged file gives `Ok(false)` or [`Error::Corrupt`].
    pub fn check_integrity(path: impl AsRef<Path>) -> Result<bool> {
        match Location::parse(path.as_ref())? {
            Location::File(path) => redb_file::check_file_integrity(path),
            Location::Memory => Err(Error::invalid(
                "an in-memory store (`memory:`) has no file to check; each open makes a new one",
            )),
        }
    }

    /// The prefix of every key this store issues, e.g. `ks`.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Creates a key. The plaintext is in the returned [`CreatedKey`] and nowhere else.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or over-long name, a bad scope, metadata over
    /// the limits or an expiry in the past; storage errors as for [`KeyStore::open`].
    ///
    /// # Example
    /// ```
    /// # use keystead::{KeyStore, NewKey, Options};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = KeyStore::open(dir.path().join("k.redb"), Options::new())?;
    /// let created = store.create(NewKey::new("analytics-script-key"))?;
    /// assert!(created.key().starts_with("ks_"));
    /// assert_eq!(format!("{created:?}").contains(created.key()), false);
    /// # Ok::<(), keystead::Error>(())
    /// ```
    pub fn create(&self, new: NewKey) -> Result<CreatedKey> {
        self.create_many(vec![new])?
            .pop()
            .ok_or_else(|| Error::Storage("the batch of one created no key".into()))
    }

    /// Creates many keys in one transaction: all of them, or none if any is invalid or the
    /// write fails. For imports and provisioning; much faster than one `create` per key, since
    /// the file is synced once.
    ///
    /// # Errors
    /// As for [`create`](Self::create); the first invalid entry fails the whole batch.
    pub fn create_many(&self, keys: Vec<NewKey>) -> Result<Vec<CreatedKey>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = time::now_ms();
        let mut templates = Vec::with_capacity(keys.len());
        for new in keys {
            templates.push(new_record(new, now)?);
        }
        let inner = &self.inner;
        inner.write(|txn| {
            let mut created = Vec::with_capacity(templates.len());
            for template in &templates {
                let key = inner.insert_new(txn, template.clone(), now)?;
                inner.append_audit(txn, AuditAction::Create, key.info.id, &key.info.name)?;
                created.push(key);
            }
            Ok(created)
        })
    }

    /// The key with this id, or `None`.
    ///
    /// # Errors
    /// Storage errors only.
    pub fn get(&self, id: KeyId) -> Result<Option<KeyInfo>> {
        let snapshot = self.inner.backend.snapshot()?;
        match snapshot.key(id.as_u64())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(info_of(
                &*snapshot,
                &decode_stored(id.as_u64(), &bytes, &self.inner.hasher)?,
            )?)),
        }
    }

    /// Keys matching `filter`, in id order; page with [`ListFilter::after`] and
    /// [`ListFilter::limit`].
    ///
    /// # Errors
    /// Storage errors only.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<KeyInfo>> {
        let snapshot = self.inner.backend.snapshot()?;
        let now = time::now_ms();
        let limit = filter.limit.unwrap_or(usize::MAX);
        let horizon = filter
            .expiring_within
            .map(|d| now.saturating_add(time::duration_ms(d)));
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut error = None;
        let hasher = &self.inner.hasher;
        snapshot.scan_keys(filter.after.map(KeyId::as_u64), &mut |id, bytes| {
            let record = decode_stored(id, bytes, hasher)?;
            let status = KeyStatus::of(record.state, record.expires_at, now);
            let keep = filter.status.is_none_or(|s| s == status)
                && filter
                    .name_prefix
                    .as_deref()
                    .is_none_or(|p| record.name.starts_with(p))
                && filter
                    .scope
                    .as_deref()
                    .is_none_or(|s| record.scopes.iter().any(|x| x == s))
                && horizon.is_none_or(|h| {
                    status != KeyStatus::Expired
                        && status != KeyStatus::Revoked
                        && record.expires_at.is_some_and(|at| at <= h)
                });
            if keep {
                match info_of(&*snapshot, &record) {
                    Ok(info) => out.push(info),
                    Err(e) => {
                        error = Some(e);
                        return Ok(false);
                    }
                }
            }
            Ok(out.len() < limit)
        })?;
        match error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Renames a key.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidArgument`] for a bad name, storage errors.
    pub fn rename(&self, id: KeyId, name: &str) -> Result<KeyInfo> {
        model::validate_name(name)?;
        self.inner.update(id, AuditAction::Rename, |record| {
            if record.name == name {
                return Ok(None);
            }
            let detail = format!("{} -> {}", record.name, name);
            record.name = name.to_owned();
            Ok(Some(detail))
        })
    }

    /// Replaces a key's metadata.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidArgument`] past the limits, storage errors.
    pub fn set_metadata(&self, id: KeyId, metadata: BTreeMap<String, String>) -> Result<KeyInfo> {
        model::validate_metadata(&metadata)?;
        self.inner.update(id, AuditAction::SetMetadata, |record| {
            if record.metadata == metadata {
                return Ok(None);
            }
            record.metadata = metadata.clone();
            Ok(Some(format!("{} entries", metadata.len())))
        })
    }

    /// Replaces a key's scopes.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidArgument`] for a bad scope, storage errors.
    pub fn set_scopes<S: AsRef<str>>(&self, id: KeyId, scopes: &[S]) -> Result<KeyInfo> {
        let owned: Vec<String> = scopes.iter().map(|s| s.as_ref().to_owned()).collect();
        let scopes = model::normalize_scopes(&owned)?;
        self.inner.update(id, AuditAction::SetScopes, |record| {
            if record.scopes == scopes {
                return Ok(None);
            }
            record.scopes = scopes.clone();
            Ok(Some(scopes.join(" ")))
        })
    }

    /// Sets (or with `None` clears) a key's expiry; a new expiry must be in the future and
    /// not after 9999-12-31T23:59:59Z. A key replaced by [`rotate`](Self::rotate) can only
    /// have its grace period shortened: a later expiry, or none, would revive it.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidArgument`] for a past or too distant time,
    /// [`Error::InvalidState`] for a revoked key, or a rotated key given a later expiry or
    /// none; storage errors.
    pub fn set_expiry(&self, id: KeyId, expires_at: Option<SystemTime>) -> Result<KeyInfo> {
        let at = expires_at
            .map(|t| time::checked_to_ms(t, "the expiry"))
            .transpose()?;
        if at.is_some_and(|at| at <= time::now_ms()) {
            return Err(Error::invalid("the expiry must be in the future"));
        }
        self.inner.update(id, AuditAction::SetExpiry, |record| {
            refuse_if_revoked(record, "given a new expiry")?;
            if record.expires_at == at {
                return Ok(None);
            }
            // A rotated key's expiry is the end of its grace period (rotate always sets one).
            let extends = match (record.expires_at, at) {
                (Some(current), Some(new)) => new > current,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if record.replaced_by.is_some() && extends {
                return Err(Error::InvalidState {
                    id,
                    state: "rotated",
                    operation: "given a later expiry (its grace period can only be shortened)",
                });
            }
            record.expires_at = at;
            Ok(Some(at.map_or_else(
                || "never".to_owned(),
                |ms| format!("{ms} ms"),
            )))
        })
    }

    /// Stops a key from verifying until [`enable`](Self::enable); a disabled key stays disabled.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidState`] for a revoked key, storage errors.
    pub fn disable(&self, id: KeyId) -> Result<KeyInfo> {
        self.inner
            .set_state(id, State::Disabled, AuditAction::Disable, "disabled")
    }

    /// Lets a disabled key verify again.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidState`] for a revoked key, storage errors.
    pub fn enable(&self, id: KeyId) -> Result<KeyInfo> {
        self.inner
            .set_state(id, State::Active, AuditAction::Enable, "enabled")
    }

    /// Permanently stops a key from verifying. Revoking a revoked key changes nothing.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], storage errors.
    pub fn revoke(&self, id: KeyId) -> Result<KeyInfo> {
        self.inner
            .set_state(id, State::Revoked, AuditAction::Revoke, "revoked")
    }

    /// Issues a replacement key with the same name, scopes and metadata (and no expiry). The
    /// old key keeps verifying until `min(now + grace, its own expiry)`; the two records link
    /// to each other. A zero grace ends the old key at once.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidState`] for a revoked or already rotated key,
    /// [`Error::InvalidArgument`] for a grace period that would end after
    /// 9999-12-31T23:59:59Z, storage errors.
    pub fn rotate(&self, id: KeyId, grace: Duration) -> Result<CreatedKey> {
        let inner = &self.inner;
        inner.write(|txn| {
            let now = time::now_ms();
            let mut old = load(txn, &inner.hasher, id)?;
            refuse_if_revoked(&old, "rotated")?;
            if old.replaced_by.is_some() {
                return Err(Error::InvalidState {
                    id,
                    state: "rotated",
                    operation: "rotated again",
                });
            }
            let template = Record {
                replaces: Some(old.id),
                ..blank_record(
                    now,
                    old.name.clone(),
                    old.scopes.clone(),
                    old.metadata.clone(),
                    None,
                )
            };
            let grace_end = now.saturating_add(time::duration_ms(grace));
            if grace_end > time::LATEST_MS {
                return Err(Error::invalid(
                    "the grace period would end after 9999-12-31T23:59:59Z, the latest time \
                     keystead stores",
                ));
            }
            let created = inner.insert_new(txn, template, now)?;
            old.expires_at = Some(old.expires_at.map_or(grace_end, |at| at.min(grace_end)));
            old.replaced_by = Some(created.info.id.as_u64());
            old.updated_at = now;
            txn.put_key(old.id, &inner.seal(&old))?;
            let detail = format!(
                "replaced by {}, grace {} s",
                created.info.id,
                grace.as_secs()
            );
            inner.append_audit(txn, AuditAction::Rotate, id, &detail)?;
            inner.append_audit(
                txn,
                AuditAction::Create,
                created.info.id,
                &format!("rotation of {id}"),
            )?;
            Ok(created)
        })
    }

    /// Removes a key and its usage counters. Its audit entries stay; links from the key it
    /// replaced or was replaced by keep naming its id.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], storage errors.
    pub fn delete(&self, id: KeyId) -> Result<()> {
        let inner = &self.inner;
        inner.write(|txn| {
            let record = load(txn, &inner.hasher, id)?;
            txn.delete_key(id.as_u64())?;
            txn.delete_usage(id.as_u64())?;
            inner.append_audit(txn, AuditAction::Delete, id, &record.name)
        })
    }

    /// Verifies a bare key (e.g. from an `x-api-key` header) and checks that it grants every
    /// scope in `required_scopes`.
    ///
    /// Never writes: a valid use is counted in memory and flushed later.
    ///
    /// # Errors
    /// Only operational failures (storage; [`Error::StoreReplaced`] once the store file was
    /// replaced or removed), or [`Error::InvalidArgument`] for a required scope that no key
    /// could have. A bad credential is an [`Outcome`], not an error.
    ///
    /// # Example
    /// ```
    /// # use keystead::{KeyStore, NewKey, Options, Outcome};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = KeyStore::open(dir.path().join("k.redb"), Options::new())?;
    /// let created = store.create(NewKey::new("x").scopes(["embeddings"]))?;
    /// assert_eq!(store.verify(created.key(), &["embeddings"])?.outcome(), Outcome::Valid);
    /// assert_eq!(store.verify(created.key(), &["images"])?.http_status(), 403);
    /// assert_eq!(store.verify("ks_typo", &[])?.outcome(), Outcome::Malformed);
    /// # Ok::<(), keystead::Error>(())
    /// ```
    pub fn verify(&self, presented: &str, required_scopes: &[&str]) -> Result<Verification> {
        for scope in required_scopes {
            if !model::is_valid_scope(scope) {
                return Err(Error::invalid(format!(
                    "required scope `{}` is not a valid scope",
                    model::truncate_for_message(scope)
                )));
            }
        }
        self.inner.check(presented, required_scopes)
    }

    /// Verifies the value of an `Authorization` header (`Bearer <key>`).
    ///
    /// # Errors
    /// As for [`verify`](Self::verify).
    pub fn verify_header(
        &self,
        authorization: impl AsRef<[u8]>,
        required_scopes: &[&str],
    ) -> Result<Verification> {
        match header::parse_authorization_header(authorization.as_ref()) {
            Ok(token) => self.verify(token, required_scopes),
            Err(HeaderError::Missing) => Ok(Verification::without_key(Outcome::Missing)),
            Err(_) => Ok(Verification::without_key(Outcome::Malformed)),
        }
    }

    /// Daily counts of successful verifications of a key for the UTC days from `from` to `to`
    /// inclusive (days with no use are left out). Flushes this handle's pending usage first.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidArgument`] for a bound after
    /// 9999-12-31T23:59:59Z, storage errors.
    pub fn usage(&self, id: KeyId, from: SystemTime, to: SystemTime) -> Result<Vec<DailyUsage>> {
        self.flush()?;
        let snapshot = self.inner.backend.snapshot()?;
        if snapshot.key(id.as_u64())?.is_none() {
            return Err(Error::KeyNotFound(id));
        }
        let from_day = time::day_of(time::checked_to_ms(from, "the start of the range")?);
        let to_day = time::day_of(time::checked_to_ms(to, "the end of the range")?);
        Ok(snapshot
            .usage_days(id.as_u64(), from_day, to_day)?
            .into_iter()
            .map(|(day, count)| DailyUsage {
                day: time::from_ms(i64::from(day) * time::DAY_MS),
                count,
            })
            .collect())
    }

    /// The audit log, newest first: at most `limit` entries committed at or after `since`.
    /// Bindings and the CLI ask for [`DEFAULT_AUDIT_LIMIT`] entries when no limit is given.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `since` after 9999-12-31T23:59:59Z; storage errors.
    pub fn audit(&self, since: Option<SystemTime>, limit: usize) -> Result<Vec<AuditEntry>> {
        let snapshot = self.inner.backend.snapshot()?;
        let since = match since {
            Some(t) => time::checked_to_ms(t, "`since`")?,
            None => i64::MIN,
        };
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        snapshot.scan_audit_newest_first(&mut |seq, bytes| {
            let entry = audit::decode(seq, bytes)?;
            if time::to_ms(entry.at) < since {
                return Ok(false);
            }
            out.push(entry);
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Writes the usage counted so far to the store. Also runs in the background every flush
    /// interval, and on [`close`](Self::close) and drop.
    ///
    /// # Errors
    /// Storage errors; the counts are kept and written by a later flush.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Flushes usage and closes the store, reporting a failure to flush that drop would hide.
    ///
    /// # Errors
    /// Storage errors from the last flush.
    pub fn close(mut self) -> Result<()> {
        self.stop_flusher();
        self.inner.flush()
    }

    fn stop_flusher(&mut self) {
        if let Some(mut flusher) = self.flusher.take() {
            let (lock, signal) = &*flusher.stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            signal.notify_all();
            if let Some(thread) = flusher.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        self.stop_flusher();
        // Nothing can report an error from drop; `close` is the way to see it.
        let _ = self.inner.flush();
    }
}

fn spawn_flusher(inner: Weak<Inner>, interval: Duration) -> Result<Flusher> {
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

/// Validates a new key's fields and returns its record, still without id, salt and hash.
fn new_record(new: NewKey, now: i64) -> Result<Record> {
    new.validate()?;
    let scopes = model::normalize_scopes(&new.scopes)?;
    let expires_at = new.expires_at.map(time::to_ms);
    Ok(blank_record(
        now,
        new.name,
        scopes,
        new.metadata,
        expires_at,
    ))
}

/// An active record without id, salt and hash yet.
fn blank_record(
    now: i64,
    name: String,
    scopes: Vec<String>,
    metadata: BTreeMap<String, String>,
    expires_at: Option<i64>,
) -> Record {
    Record {
        id: 0,
        alg: ALG_HMAC_SHA256_V1,
        salt: [0; 16],
        hash: [0; 32],
        state: State::Active,
        created_at: now,
        updated_at: now,
        expires_at,
        replaces: None,
        replaced_by: None,
        name,
        scopes,
        metadata,
    }
}

fn fill(rng: &SystemRandom, out: &mut [u8]) -> Result<()> {
    rng.fill(out)
        .map_err(|_| Error::Storage("the system random number generator failed".into()))
}

fn load(txn: &dyn Txn, hasher: &Hasher, id: KeyId) -> Result<Record> {
    let bytes = txn.key(id.as_u64())?.ok_or(Error::KeyNotFound(id))?;
    decode_stored(id.as_u64(), &bytes, hasher)
}

/// Decodes the record stored under table key `id`, which must be the id inside it
/// (docs/storage.md): a record copied under another key is `Corrupt`, not another key's data.
fn decode_stored(id: u64, bytes: &[u8], hasher: &Hasher) -> Result<Record> {
    let record = Record::decode(bytes, hasher.record_key())?;
    if record.id != id {
        return Err(Error::Corrupt(
            "key record: stored id does not match".into(),
        ));
    }
    Ok(record)
}

fn refuse_if_revoked(record: &Record, operation: &'static str) -> Result<()> {
    if record.state == State::Revoked {
        return Err(Error::InvalidState {
            id: KeyId::from_u64(record.id),
            state: "revoked",
            operation,
        });
    }
    Ok(())
}

/// The snapshot of a view `Inner::view` handed out (it only hands out views that hold one).
fn view_snapshot(view: &View) -> Result<&dyn Snapshot> {
    view.snapshot
        .as_deref()
        .ok_or_else(|| Error::Storage("verify was given a released read view".into()))
}

fn info_of(view: &dyn Read, record: &Record) -> Result<KeyInfo> {
    let usage = view.usage_total(record.id)?.unwrap_or_default();
    let last_used = (usage.count > 0).then_some(usage.last_used_ms);
    Ok(KeyInfo::from_record(record, last_used, usage.count))
}

impl Inner {
    /// The stored form of a record: authenticated under the pepper's record key, if any.
    fn seal(&self, record: &Record) -> Vec<u8> {
        record.encode(self.hasher.record_key())
    }

    /// Runs an admin change in one write transaction that also bumps the store generation
    /// (so every process drops cached records), then makes this handle see it at once.
    fn write<T>(&self, mut body: impl FnMut(&mut dyn Txn) -> Result<T>) -> Result<T> {
        let mut result = None;
        self.backend.write(&mut |txn| {
            let value = body(txn)?;
            let generation = read_u64_meta(txn, META_GENERATION)?.wrapping_add(1);
            txn.set_meta(META_GENERATION, &generation.to_le_bytes())?;
            result = Some(value);
            Ok(())
        })?;
        self.local_epoch.fetch_add(1, Ordering::AcqRel);
        self.release_view(|_| true);
        result.ok_or_else(|| Error::Storage("the write transaction returned no result".into()))
    }

    /// Drops the read view's snapshot if `stale` says so, keeping its cache; the next verify
    /// takes a fresh one. Never replaces a view another thread has refreshed meanwhile.
    fn release_view(&self, stale: impl Fn(&View) -> bool) {
        let current = self.view.load_full();
        if current.snapshot.is_none() || !stale(&current) {
            return;
        }
        let released = Arc::new(View {
            snapshot: None,
            taken_ms: current.taken_ms,
            local_epoch: current.local_epoch,
            generation: current.generation,
            cache: Arc::clone(&current.cache),
        });
        self.view.compare_and_swap(&current, released);
    }

    /// Read-modify-write of one record; `change` returns the audit detail, or `None` if it
    /// changed nothing (then nothing is written or audited).
    fn update(
        &self,
        id: KeyId,
        action: AuditAction,
        mut change: impl FnMut(&mut Record) -> Result<Option<String>>,
    ) -> Result<KeyInfo> {
        self.write(|txn| {
            let mut record = load(txn, &self.hasher, id)?;
            if let Some(detail) = change(&mut record)? {
                record.updated_at = time::now_ms();
                txn.put_key(record.id, &self.seal(&record))?;
                self.append_audit(txn, action, id, &detail)?;
            }
            info_of(txn, &record)
        })
    }

    fn set_state(
        &self,
        id: KeyId,
        target: State,
        action: AuditAction,
        verb: &'static str,
    ) -> Result<KeyInfo> {
        self.update(id, action, |record| {
            if record.state == target {
                return Ok(None);
            }
            if record.state == State::Revoked {
                return Err(Error::InvalidState {
                    id,
                    state: "revoked",
                    operation: verb,
                });
            }
            record.state = target;
            Ok(Some(String::new()))
        })
    }

    /// Fills in a fresh id, salt and hash for `record`, stores it, and returns the key.
    fn insert_new(&self, txn: &mut dyn Txn, mut record: Record, now: i64) -> Result<CreatedKey> {
        let mut id_bytes = [0u8; 8];
        let id = loop {
            fill(&self.rng, &mut id_bytes)?;
            let candidate = u64::from_be_bytes(id_bytes);
            // 0 is the dummy record's id; a collision of 64 random bits is astronomically
            // rare but checked, since the id is the lookup key.
            if candidate != 0 && txn.key(candidate)?.is_none() {
                break candidate;
            }
        };
        let mut secret = Zeroizing::new([0u8; 32]);
        fill(&self.rng, &mut secret[..])?;
        fill(&self.rng, &mut record.salt)?;
        record.id = id;
        record.hash = self.hasher.hash(&record.salt, id, &secret);
        record.created_at = now;
        record.updated_at = now;
        txn.put_key(id, &self.seal(&record))?;
        let key = key::format(&self.prefix, KeyId::from_u64(id), &secret);
        Ok(CreatedKey {
            key,
            info: KeyInfo::from_record(&record, None, 0),
        })
    }

    fn append_audit(
        &self,
        txn: &mut dyn Txn,
        action: AuditAction,
        id: KeyId,
        detail: &str,
    ) -> Result<()> {
        // Entries are kept in commit order with non-decreasing timestamps, even if clocks of
        // processes sharing the file differ slightly, so `audit(since)` can stop early.
        let mut last = i64::MIN;
        txn.scan_audit_newest_first(&mut |_, bytes| {
            last = audit::at_ms(bytes).unwrap_or(i64::MIN);
            Ok(false)
        })?;
        let at = time::now_ms().max(last);
        txn.append_audit(&audit::encode(
            at,
            self.actor.as_deref(),
            action,
            id,
            detail,
        ))?;
        Ok(())
    }

    /// The current read view, refreshed if this handle wrote since it was taken or if it is
    /// older than the refresh interval.
    ///
    /// The staleness bound is a guarantee, not a goal: a verify whose clock read (`now_ms`)
    /// comes more than `refresh_interval` after a commit returned never judges by a snapshot
    /// older than that commit. The view's `taken_ms` is read before its snapshot is taken, and
    /// a thread that finds the view stale while another refreshes it waits for that refresh
    /// (once per interval, a few microseconds) instead of using the stale view.
    fn view(&self, now_ms: i64) -> Result<arc_swap::Guard<Arc<View>>> {
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
    fn load(&self, view: &View, id: u64) -> Result<Cached> {
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
    fn info(&self, view: &View, entry: &Cached) -> Result<Arc<KeyInfo>> {
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

    fn check(&self, presented: &str, required_scopes: &[&str]) -> Result<Verification> {
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

    fn judge(
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

    fn flush(&self) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> Cached {
        let head = Head {
            id,
            salt: [0; 16],
            hash: [0; 32],
            state: State::Active,
            expires_at: None,
        };
        Cached::new(id, false, &head)
    }

    fn insert(cache: &RecordCache, id: u64) {
        cache.insert_with(entry(id), |_| ());
    }

    /// A flood of unknown ids (each cached, like any miss) keeps memory bounded and evicts one
    /// entry per insert, not whole shards: most of the entries cached before it survive.
    #[test]
    fn a_flood_of_unknown_ids_neither_grows_the_cache_nor_clears_it() {
        const CAPACITY: usize = 1024;
        let cache = RecordCache::new(CAPACITY);
        let hot: Vec<u64> = (1..=CAPACITY as u64).map(|i| i << 20).collect();
        for &id in &hot {
            insert(&cache, id);
        }
        // The flood: one tenth of the capacity, with ids all in one residue class mod 16
        // (which, with `id % 16` shards, all landed in one shard).
        for i in 0..(CAPACITY as u64 / 10) {
            insert(&cache, 0xF00D_0000_0000 + i * 16);
            assert!(cache.len() <= CAPACITY + CACHE_SHARDS);
        }
        let survivors = hot.iter().filter(|&&id| cache.contains(id)).count();
        // Shard fill is uneven, so the flood evicts about one entry per insert that lands
        // in a full shard: ~90% stay. Clearing a full shard would have left ~0-50%.
        assert!(
            survivors >= CAPACITY * 3 / 4,
            "{survivors} of {CAPACITY} cached entries survived a flood of {}",
            CAPACITY / 10
        );
        // A long flood keeps the cache at its capacity, never above.
        for i in 0..(CAPACITY as u64 * 20) {
            insert(&cache, 0xBEEF_0000_0000 + i);
        }
        let per_shard = CAPACITY.div_ceil(CACHE_SHARDS);
        assert!(cache.len() <= per_shard * CACHE_SHARDS);
        assert!(cache.len() >= per_shard * CACHE_SHARDS * 9 / 10);
    }

    /// Ids that share their low bits spread over the shards (the shard comes from a keyed
    /// hash, not from the id).
    #[test]
    fn ids_chosen_to_share_a_shard_spread_over_all_of_them() {
        let cache = RecordCache::new(1 << 16);
        let mut used = [0usize; CACHE_SHARDS];
        for i in 0..1600u64 {
            let (h, _) = cache.locate(i * 16);
            used[(h >> 60) as usize] += 1;
        }
        assert!(used.iter().all(|&n| n > 40), "{used:?}");
    }

    #[test]
    fn a_disabled_cache_holds_nothing() {
        let cache = RecordCache::new(0);
        insert(&cache, 7);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_finds_what_it_holds_and_only_that() {
        let cache = RecordCache::new(64);
        insert(&cache, 7);
        assert!(cache.contains(7));
        assert!(!cache.contains(8));
        // A second insert of one id keeps the first entry (it may hold decoded info).
        let first = cache.insert_with(entry(7), |e| e.info.set(Arc::new(dummy_info())).is_ok());
        assert!(first);
        assert!(cache.insert_with(entry(7), |e| e.info.get().is_some()));
    }

    fn dummy_info() -> KeyInfo {
        KeyInfo::from_record(
            &blank_record(0, "x".into(), Vec::new(), BTreeMap::new(), None),
            None,
            0,
        )
    }
}
