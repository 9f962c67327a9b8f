//! keystead-ffi: the uniffi layer that the Swift binding is generated from.
//!
//! It is deliberately thin: one Object, [`KeyStore`], wrapping the core
//! [`keystead::KeyStore`]; plain Records mirroring the core data types (ids are the 12-character
//! strings, statuses, outcome codes and audit actions are the stable lowercase names the core
//! documents for bindings); and one error enum, [`KeysteadError`], mapped from
//! [`keystead::Error`] by [`map_error`]. Every rule (validation, limits, verification) lives
//! in the core.
//!
//! Plaintext key material crosses the boundary in exactly one place: [`CreatedKey::key`].
//!
//! Regenerate the Swift bindings with `bindings/swift/generate.sh`; `scripts/test-swift.sh`
//! checks that the committed files match.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keystead as ks;
use keystead::Zeroizing;

// The uniffi namespace, and so the generated file names (`keystead.swift`, `keysteadFFI.h`,
// `keysteadFFI.modulemap`). The exported C symbols are named after the crate instead:
// `uniffi_keystead_ffi_fn_*`, `ffi_keystead_ffi_*`.
uniffi::setup_scaffolding!("keystead");

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Every failure of the API. A presented key that does not verify is never an error: it is a
/// `Verification` with `ok == false`.
///
/// Each case carries a human-readable message (never key material). In Swift it is
/// `KeysteadError.KeyNotFound(message:)` etc.
// Flat: only the message crosses the boundary. (A rich error with a `message` field would
// clash with `Throwable.message` in uniffi's Kotlin, should that binding return.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum KeysteadError {
    /// The file could not be used: I/O failure, lock held by another process, corruption or
    /// another storage-engine failure.
    #[error("{message}")]
    Store {
        /// What went wrong.
        message: String,
    },
    /// The pepper given at open is not the one the store was created with.
    #[error("{message}")]
    WrongPepper {
        /// What went wrong.
        message: String,
    },
    /// An argument is out of bounds: name, scope, metadata, prefix, expiry, key id, status name.
    #[error("{message}")]
    InvalidArgument {
        /// What went wrong.
        message: String,
    },
    /// No key with this id exists in the store.
    #[error("{message}")]
    KeyNotFound {
        /// What went wrong.
        message: String,
    },
    /// The key's state forbids the operation, e.g. enabling a revoked key.
    #[error("{message}")]
    InvalidState {
        /// What went wrong.
        message: String,
    },
    /// A prefix was requested at open that differs from the store's own.
    #[error("{message}")]
    PrefixMismatch {
        /// What went wrong.
        message: String,
    },
    /// The file was written by a newer keystead.
    #[error("{message}")]
    UnsupportedVersion {
        /// What went wrong.
        message: String,
    },
    /// The `KeyStore` was closed; open a new one.
    #[error("{message}")]
    Closed {
        /// What went wrong.
        message: String,
    },
    /// The store's database cannot be reached now (down, unreachable, refused the connection)
    /// or this process exceeded its bound on database lookups; retrying later may succeed.
    /// Never a statement about a key: a verify that cannot be judged fails with this instead
    /// of answering `not_found`.
    #[error("{message}")]
    Unavailable {
        /// What went wrong.
        message: String,
    },
}

/// How each core [`ks::ErrorKind`] becomes a [`KeysteadError`] case: the one table. `None` for
/// a kind this layer does not know yet (a later core), which [`map_error`] reports as `Store`.
fn case_of(kind: ks::ErrorKind) -> Option<fn(String) -> KeysteadError> {
    use ks::ErrorKind as K;
    Some(match kind {
        K::InvalidArgument => |message| KeysteadError::InvalidArgument { message },
        K::KeyNotFound => |message| KeysteadError::KeyNotFound { message },
        K::InvalidState => |message| KeysteadError::InvalidState { message },
        K::WrongPepper => |message| KeysteadError::WrongPepper { message },
        K::PrefixMismatch => |message| KeysteadError::PrefixMismatch { message },
        K::UnsupportedVersion => |message| KeysteadError::UnsupportedVersion { message },
        // Corrupt, Locked, Storage, Io, InsecurePermissions (the message names `chmod 600`),
        // StoreReplaced.
        K::Store => |message| KeysteadError::Store { message },
        K::Closed => |message| KeysteadError::Closed { message },
        K::Unavailable => |message| KeysteadError::Unavailable { message },
        _ => return None,
    })
}

/// The one mapping from core errors to [`KeysteadError`], by the error's kind; the message is
/// the core's.
pub fn map_error(error: ks::Error) -> KeysteadError {
    let case = case_of(error.kind()).unwrap_or(|message| KeysteadError::Store { message });
    case(error.to_string())
}

impl From<ks::Error> for KeysteadError {
    fn from(error: ks::Error) -> Self {
        map_error(error)
    }
}

type Result<T, E = KeysteadError> = std::result::Result<T, E>;

// Times cross the boundary as whole milliseconds since the Unix epoch (`Int64` in Swift), and
// durations as whole milliseconds: uniffi's own `Date` and `TimeInterval` conversions trap in
// the generated Swift on a NaN, infinite, negative or out-of-range value, which would crash the
// host process on bad input. An `Int64` cannot trap; every value is checked here and by the
// core (bindings/swift/Sources/keystead/KeysteadDates.swift converts to and from `Date`).

/// A time given as milliseconds since the epoch (negative: before it). Out-of-range values
/// saturate, and the core refuses times it cannot store (after 9999-12-31).
fn time_of_ms(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    let time = if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    // Only where the platform's clock type cannot hold it: past the year 9999 (refused by the
    // core as such), or long before the epoch (in the past, as the value was).
    time.unwrap_or(if ms >= 0 {
        UNIX_EPOCH + Duration::from_secs(253_402_300_800)
    } else {
        UNIX_EPOCH
    })
}

/// A stored time as milliseconds since the epoch (saturating; stored times are within
/// 0001..=9999 anyway).
fn ms_of_time(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// A duration given in milliseconds; negative is `InvalidArgument` naming `what`.
fn duration_of_ms(what: &str, ms: i64) -> Result<Duration, ks::Error> {
    u64::try_from(ms).map(Duration::from_millis).map_err(|_| {
        ks::Error::InvalidArgument(format!("{what} must not be negative, got {ms} ms"))
    })
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// How a store is opened. Every field is optional; unset means the core default.
///
/// `Debug` (exported: Swift's `debugDescription`) never shows the pepper.
#[derive(Clone, Default, PartialEq, Eq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct OpenOptions {
    /// The key prefix (`[a-z][a-z0-9_]{0,15}`): used when creating the store, checked against an
    /// existing one. A new store gets `ks`.
    #[uniffi(default)]
    pub prefix: Option<String>,
    /// A secret mixed into every hash: 32 to 1024 random bytes from a secret manager (shorter
    /// is `InvalidArgument`). Opening with a different pepper than the store was created with
    /// fails with `WrongPepper`. The FFI copies of these bytes are not wiped; the core's copy is.
    #[uniffi(default)]
    pub pepper: Option<Vec<u8>>,
    /// The storage engine's page cache, in bytes (default 32 MiB).
    #[uniffi(default)]
    pub cache_size: Option<u64>,
    /// How long verify may judge by the last read of the change feed before seeing other
    /// processes' changes, in milliseconds (default 1000; zero reads it on every verify; negative is
    /// `InvalidArgument`).
    #[uniffi(default)]
    pub refresh_interval_ms: Option<i64>,
    /// How long cached keys keep verifying while the store's database cannot be reached, in
    /// milliseconds after the last successful sync (default 30000); past it, and at once for
    /// a key that is not cached, verify fails with `Unavailable`. Negative is
    /// `InvalidArgument`.
    #[uniffi(default)]
    pub max_staleness_ms: Option<i64>,
    /// How often counted usage is written in the background, in milliseconds (default 1000;
    /// zero: only on `flush`, `close` and when the object is freed).
    #[uniffi(default)]
    pub flush_interval_ms: Option<i64>,
    /// How many key records verify keeps decoded in memory (default 65,536; 0 disables).
    #[uniffi(default)]
    pub record_cache_entries: Option<u64>,
    /// Who is making changes, recorded with every audit entry of this handle.
    #[uniffi(default)]
    pub actor: Option<String>,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("prefix", &self.prefix)
            .field("pepper", &self.pepper.as_ref().map(|_| "<redacted>"))
            .field("cache_size", &self.cache_size)
            .field("refresh_interval_ms", &self.refresh_interval_ms)
            .field("max_staleness_ms", &self.max_staleness_ms)
            .field("flush_interval_ms", &self.flush_interval_ms)
            .field("record_cache_entries", &self.record_cache_entries)
            .field("actor", &self.actor)
            .finish()
    }
}

impl TryFrom<OpenOptions> for ks::Options {
    type Error = ks::Error;

    /// Fails with `InvalidArgument` for a negative interval or staleness bound.
    fn try_from(options: OpenOptions) -> Result<Self, ks::Error> {
        let mut out = ks::Options::new();
        if let Some(prefix) = options.prefix {
            out = out.prefix(prefix);
        }
        if let Some(pepper) = options.pepper {
            out = out.pepper(pepper);
        }
        if let Some(ms) = options.refresh_interval_ms {
            out = out.refresh_interval(duration_of_ms("refresh_interval_ms", ms)?);
        }
        if let Some(ms) = options.max_staleness_ms {
            out = out.max_staleness(duration_of_ms("max_staleness_ms", ms)?);
        }
        if let Some(ms) = options.flush_interval_ms {
            out = out.flush_interval(duration_of_ms("flush_interval_ms", ms)?);
        }
        if let Some(entries) = options.record_cache_entries {
            out = out.record_cache_entries(to_usize(entries));
        }
        if let Some(actor) = options.actor {
            out = out.actor(actor);
        }
        Ok(out)
    }
}

/// What to create: a name plus optional scopes, metadata and expiry.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewKey {
    /// A descriptive name, e.g. `dev-server-integration` (1 to 128 characters).
    pub name: String,
    /// The scopes the key grants, e.g. `chat:completions`.
    #[uniffi(default)]
    pub scopes: Vec<String>,
    /// Free-form string metadata.
    #[uniffi(default)]
    pub metadata: HashMap<String, String>,
    /// When the key stops verifying, in milliseconds since the epoch; must be in the future.
    #[uniffi(default)]
    pub expires_at_ms: Option<i64>,
}

impl From<NewKey> for ks::NewKey {
    fn from(new: NewKey) -> Self {
        let mut out = ks::NewKey::new(new.name)
            .scopes(new.scopes)
            .metadata(new.metadata);
        if let Some(ms) = new.expires_at_ms {
            out = out.expires_at(time_of_ms(ms));
        }
        out
    }
}

/// Everything about a key except its secret.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct KeyInfo {
    /// The public 12-character id.
    pub id: String,
    /// The descriptive name.
    pub name: String,
    /// The scopes the key grants, sorted.
    pub scopes: Vec<String>,
    /// Free-form string metadata.
    pub metadata: HashMap<String, String>,
    /// `active`, `disabled`, `revoked` or `expired`, as of when this value was made.
    pub status: String,
    /// When the key was created (milliseconds since the epoch, like every time here).
    pub created_at_ms: i64,
    /// When the key's record last changed.
    pub updated_at_ms: i64,
    /// When the key stops verifying, if ever.
    pub expires_at_ms: Option<i64>,
    /// The last successful verification recorded in the store (usage is flushed in batches).
    pub last_used_at_ms: Option<i64>,
    /// Successful verifications recorded in the store (usage is flushed in batches).
    pub use_count: u64,
    /// The id of the key this one replaced by rotation.
    pub replaces: Option<String>,
    /// The id of the key that replaced this one by rotation.
    pub replaced_by: Option<String>,
}

impl From<&ks::KeyInfo> for KeyInfo {
    fn from(info: &ks::KeyInfo) -> Self {
        KeyInfo {
            id: info.id().to_string(),
            name: info.name().to_owned(),
            scopes: info.scopes().to_vec(),
            metadata: info
                .metadata()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            status: info.status().as_str().to_owned(),
            created_at_ms: ms_of_time(info.created_at()),
            updated_at_ms: ms_of_time(info.updated_at()),
            expires_at_ms: info.expires_at().map(ms_of_time),
            last_used_at_ms: info.last_used_at().map(ms_of_time),
            use_count: info.use_count(),
            replaces: info.replaces().map(|id| id.to_string()),
            replaced_by: info.replaced_by().map(|id| id.to_string()),
        }
    }
}

impl From<ks::KeyInfo> for KeyInfo {
    fn from(info: ks::KeyInfo) -> Self {
        KeyInfo::from(&info)
    }
}

/// A newly created (or rotated-in) key.
///
/// `key` is the ONE place where plaintext key material crosses the FFI boundary. Show it to
/// the user once and drop it: only its hash is stored, so it cannot be recovered. The core
/// wipes its own copy; the copies made to hand it over (the Rust `String` here, the transfer
/// buffer, the Swift string) cannot be wiped. `Debug` and `Display` never show it,
/// and they are exported, so Swift's `description`/`debugDescription` (what `print` and string
/// interpolation use) do not either. (Swift's `dump()` reflects over
/// the stored fields and would show it.)
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
#[uniffi::export(Debug, Display)]
pub struct CreatedKey {
    /// The full key, e.g. `ks_...` (61 characters after the prefix and `_`). Plaintext.
    pub key: String,
    /// The stored information about the key.
    pub info: KeyInfo,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

impl fmt::Display for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} ({:?}, key redacted)",
            self.info.id, self.info.name
        )
    }
}

impl From<ks::CreatedKey> for CreatedKey {
    fn from(created: ks::CreatedKey) -> Self {
        // `key` is a `Zeroizing<String>`: the core's copy is wiped when it drops here. The
        // `String` made here is moved into uniffi's lowering, which copies it into the buffer
        // handed to Swift and frees it unwiped: a copy this layer cannot reach.
        let (key, info) = created.into_parts();
        CreatedKey {
            key: key.as_str().to_owned(),
            info: KeyInfo::from(info),
        }
    }
}

/// The result of `verify` / `verify_header`: answer the request with `http_status` and, when
/// set, a `WWW-Authenticate: <www_authenticate>` header.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Verification {
    /// Whether the credential is accepted (`code == "valid"`).
    pub ok: bool,
    /// The stable outcome code: `valid`, `missing`, `malformed`, `not_found`, `disabled`,
    /// `revoked`, `expired` or `insufficient_scope`.
    pub code: String,
    /// The key, only for a valid key (`ok`): a refused key is never described here, so
    /// checking "has a key" cannot admit it.
    pub key: Option<KeyInfo>,
    /// The id of the key whose secret matched, for logs: set for `valid` and for the outcomes
    /// refused after the secret matched (`disabled`, `revoked`, `expired`,
    /// `insufficient_scope`); none for `missing`, `malformed`, `not_found`.
    pub key_id: Option<String>,
    /// 200, 400, 401 or 403.
    pub http_status: u16,
    /// The RFC 6750 `WWW-Authenticate` value, or none for a valid key.
    pub www_authenticate: Option<String>,
}

impl From<ks::Verification> for Verification {
    fn from(check: ks::Verification) -> Self {
        Verification {
            ok: check.is_valid(),
            code: check.code().to_owned(),
            key: check.key().map(KeyInfo::from),
            key_id: check.key_id().map(|id| id.to_string()),
            http_status: check.http_status(),
            www_authenticate: check.www_authenticate(),
        }
    }
}

/// Which keys `list` returns, and how many. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ListFilter {
    /// Only keys with this status now: `active`, `disabled`, `revoked` or `expired`.
    #[uniffi(default)]
    pub status: Option<String>,
    /// Only keys whose name starts with this.
    #[uniffi(default)]
    pub name_prefix: Option<String>,
    /// Only keys that grant this scope.
    #[uniffi(default)]
    pub scope: Option<String>,
    /// Only keys that have not expired yet but will within this many milliseconds.
    #[uniffi(default)]
    pub expiring_within_ms: Option<i64>,
    /// Paging: only keys with an id after this one (the last id of the previous page).
    #[uniffi(default)]
    pub after: Option<String>,
    /// Paging: at most this many keys.
    #[uniffi(default)]
    pub limit: Option<u32>,
}

impl TryFrom<ListFilter> for ks::ListFilter {
    type Error = ks::Error;

    /// Fails with `InvalidArgument` for an unknown status name or a malformed `after` id.
    fn try_from(filter: ListFilter) -> Result<Self, ks::Error> {
        let mut out = ks::ListFilter::new();
        if let Some(status) = filter.status {
            out = out.status(ks::KeyStatus::parse(&status)?);
        }
        if let Some(prefix) = filter.name_prefix {
            out = out.name_prefix(prefix);
        }
        if let Some(scope) = filter.scope {
            out = out.scope(scope);
        }
        if let Some(ms) = filter.expiring_within_ms {
            out = out.expiring_within(duration_of_ms("expiring_within_ms", ms)?);
        }
        if let Some(after) = filter.after {
            out = out.after(after.parse()?);
        }
        if let Some(limit) = filter.limit {
            out = out.limit(to_usize(u64::from(limit)));
        }
        Ok(out)
    }
}

/// Successful verifications of one key on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DailyUsage {
    /// Midnight UTC at the start of the day, in milliseconds since the epoch.
    pub day_ms: i64,
    /// Successful verifications that day.
    pub count: u64,
}

impl From<ks::DailyUsage> for DailyUsage {
    fn from(usage: ks::DailyUsage) -> Self {
        DailyUsage {
            day_ms: ms_of_time(usage.day),
            count: usage.count,
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AuditEntry {
    /// Position in the log, increasing.
    pub seq: u64,
    /// When the change was committed, in milliseconds since the epoch.
    pub at_ms: i64,
    /// Who made it (`OpenOptions.actor`).
    pub actor: Option<String>,
    /// `create`, `rename`, `set_scopes`, `set_metadata`, `set_expiry`, `disable`, `enable`,
    /// `revoke`, `rotate` or `delete`.
    pub action: String,
    /// The id of the key concerned.
    pub key_id: String,
    /// A short description, e.g. the new name. Never key material.
    pub detail: String,
}

impl From<ks::AuditEntry> for AuditEntry {
    fn from(entry: ks::AuditEntry) -> Self {
        AuditEntry {
            seq: entry.seq,
            at_ms: ms_of_time(entry.at),
            actor: entry.actor,
            action: entry.action.as_str().to_owned(),
            key_id: entry.key_id.to_string(),
            detail: entry.detail,
        }
    }
}

/// A snapshot of one store handle's counters since it was opened (`KeyStore.stats()`); they
/// only grow. docs/metrics.md defines each field, with the same names in every binding.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Stats {
    /// Verifications by outcome code (`valid`, `not_found`, ...), every code present.
    pub outcomes: HashMap<String, u64>,
    /// Verifications that ended in an outcome (the sum of `outcomes`).
    pub verifications: u64,
    /// Verify calls that failed instead of answering (e.g. `Unavailable`).
    pub verify_errors: u64,
    /// Verifications of a well-formed key answered without reading a key record.
    pub cache_hits: u64,
    /// Verifications of a well-formed key that read a key record from the store.
    pub cache_misses: u64,
    /// Reads of the store's change feed by the verify path (failed ones too).
    pub refreshes: u64,
    /// Those reads that failed.
    pub refresh_failures: u64,
    /// Batches of usage counts written to the store.
    pub flushes: u64,
    /// Usage writes that failed (their counts are kept for the next flush).
    pub flush_failures: u64,
    /// Successful verifications counted in memory, not yet written.
    pub usage_pending: u64,
    /// Milliseconds since the last successful change-feed read; `nil` before the first.
    pub last_refresh_age_ms: Option<u64>,
    /// Keys whose records are in the verify cache now.
    pub cached_keys: u64,
}

impl From<ks::Stats> for Stats {
    fn from(s: ks::Stats) -> Self {
        Stats {
            outcomes: s
                .outcomes()
                .map(|(outcome, n)| (outcome.as_str().to_owned(), n))
                .collect(),
            verifications: s.verifications(),
            verify_errors: s.verify_errors,
            cache_hits: s.cache_hits,
            cache_misses: s.cache_misses,
            refreshes: s.refreshes,
            refresh_failures: s.refresh_failures,
            flushes: s.flushes,
            flush_failures: s.flush_failures,
            usage_pending: s.usage_pending,
            last_refresh_age_ms: s
                .last_refresh_age
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            cached_keys: s.cached_keys,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The KeyStore object
// ---------------------------------------------------------------------------------------------

/// An open key store. Safe to share between threads.
///
/// `close()` flushes pending usage and releases the file; it waits for calls in progress, and
/// every later call fails with `KeysteadError.Closed`. Closing twice is allowed. Freeing the
/// object without `close()` also flushes and releases the file, but cannot report a failure.
#[derive(uniffi::Object)]
pub struct KeyStore {
    // `None` once closed. Calls hold the read lock while they run, so `close` (write lock)
    // waits for them and no call can see a half-closed store.
    inner: RwLock<Option<ks::KeyStore>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.read() {
            Some(store) => f.debug_tuple("KeyStore").field(store).finish(),
            None => f.write_str("KeyStore(closed)"),
        }
    }
}

impl KeyStore {
    fn read(&self) -> RwLockReadGuard<'_, Option<ks::KeyStore>> {
        // A panic while closing cannot leave the Option half-written; ignore poisoning.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(&self, call: impl FnOnce(&ks::KeyStore) -> Result<T, ks::Error>) -> Result<T> {
        match &*self.read() {
            Some(store) => call(store).map_err(map_error),
            None => Err(map_error(ks::Error::Closed)),
        }
    }

    /// Like `with`, parsing `id` first (after the closed check, so a closed store always
    /// answers `Closed`).
    fn with_id<T>(
        &self,
        id: &str,
        call: impl FnOnce(&ks::KeyStore, ks::KeyId) -> Result<T, ks::Error>,
    ) -> Result<T> {
        self.with(|store| call(store, id.parse()?))
    }
}

#[uniffi::export]
impl KeyStore {
    /// Opens the store at `path`, creating the file (mode 0600) if it does not exist.
    #[uniffi::constructor(default(options))]
    pub fn open(path: String, options: OpenOptions) -> Result<Self> {
        let cache_size = options.cache_size;
        let options = ks::Options::try_from(options)?;
        // The page cache is a setting of the file backend, not of every store.
        let store = match cache_size {
            Some(bytes) => {
                let file = ks::backend::FileOptions::new().cache_size(to_usize(bytes));
                ks::KeyStore::open_with(
                    ks::backend::FileBackend::for_location(&path, file)?,
                    options,
                )?
            }
            None => ks::KeyStore::open(path, options)?,
        };
        Ok(KeyStore {
            inner: RwLock::new(Some(store)),
        })
    }

    /// The prefix of every key this store issues, e.g. `ks`.
    pub fn prefix(&self) -> Result<String> {
        self.with(|store| Ok(store.prefix().to_owned()))
    }

    /// Creates a key. The plaintext is in the returned `CreatedKey.key` and nowhere else.
    pub fn create(&self, new_key: NewKey) -> Result<CreatedKey> {
        self.with(|store| store.create(new_key.into()).map(CreatedKey::from))
    }

    /// The key with this id, or none.
    pub fn get(&self, id: String) -> Result<Option<KeyInfo>> {
        self.with_id(&id, |store, id| Ok(store.get(id)?.map(KeyInfo::from)))
    }

    /// Keys matching `filter`, in id order.
    #[uniffi::method(default(filter))]
    pub fn list(&self, filter: ListFilter) -> Result<Vec<KeyInfo>> {
        self.with(|store| {
            Ok(store
                .list(&ks::ListFilter::try_from(filter)?)?
                .into_iter()
                .map(KeyInfo::from)
                .collect())
        })
    }

    /// Renames a key.
    pub fn rename(&self, id: String, name: String) -> Result<KeyInfo> {
        self.with_id(&id, |store, id| store.rename(id, &name).map(KeyInfo::from))
    }

    /// Replaces a key's metadata.
    pub fn set_metadata(&self, id: String, metadata: HashMap<String, String>) -> Result<KeyInfo> {
        let metadata: BTreeMap<String, String> = metadata.into_iter().collect();
        self.with_id(&id, |store, id| {
            store.set_metadata(id, metadata).map(KeyInfo::from)
        })
    }

    /// Replaces a key's scopes.
    pub fn set_scopes(&self, id: String, scopes: Vec<String>) -> Result<KeyInfo> {
        self.with_id(&id, |store, id| {
            store.set_scopes(id, &scopes).map(KeyInfo::from)
        })
    }

    /// Sets (or with none clears) a key's expiry, in milliseconds since the epoch; a new expiry
    /// must be in the future.
    pub fn set_expiry(&self, id: String, expires_at_ms: Option<i64>) -> Result<KeyInfo> {
        self.with_id(&id, |store, id| {
            store
                .set_expiry(id, expires_at_ms.map(time_of_ms))
                .map(KeyInfo::from)
        })
    }

    /// Stops a key from verifying until `enable`.
    pub fn disable(&self, id: String) -> Result<KeyInfo> {
        self.with_id(&id, |store, id| store.disable(id).map(KeyInfo::from))
    }

    /// Lets a disabled key verify again.
    pub fn enable(&self, id: String) -> Result<KeyInfo> {
        self.with_id(&id, |store, id| store.enable(id).map(KeyInfo::from))
    }

    /// Permanently stops a key from verifying.
    pub fn revoke(&self, id: String) -> Result<KeyInfo> {
        self.with_id(&id, |store, id| store.revoke(id).map(KeyInfo::from))
    }

    /// Issues a replacement key; the old one keeps verifying for `grace_ms` milliseconds
    /// (negative is `InvalidArgument`).
    pub fn rotate(&self, id: String, grace_ms: i64) -> Result<CreatedKey> {
        self.with_id(&id, |store, id| {
            let grace = duration_of_ms("grace_ms", grace_ms)?;
            store.rotate(id, grace).map(CreatedKey::from)
        })
    }

    /// Removes a key and its usage counters (its audit entries stay).
    pub fn delete(&self, id: String) -> Result<()> {
        self.with_id(&id, |store, id| store.delete(id))
    }

    /// Verifies a bare key (e.g. from an `x-api-key` header) and checks that it grants every
    /// scope in `required_scopes`. A bad credential is a `Verification`, not an error.
    #[uniffi::method(default(required_scopes))]
    pub fn verify(&self, presented: String, required_scopes: Vec<String>) -> Result<Verification> {
        // This copy of the presented key (lifted from the caller's buffer) is wiped on drop.
        let presented = Zeroizing::new(presented);
        let scopes: Vec<&str> = required_scopes.iter().map(String::as_str).collect();
        self.with(|store| store.verify(&presented, &scopes).map(Verification::from))
    }

    /// Verifies the value of an `Authorization` header (`Bearer <key>`).
    #[uniffi::method(default(required_scopes))]
    pub fn verify_header(
        &self,
        authorization: String,
        required_scopes: Vec<String>,
    ) -> Result<Verification> {
        // This copy of the header (and so of the key) is wiped on drop.
        let authorization = Zeroizing::new(authorization);
        let scopes: Vec<&str> = required_scopes.iter().map(String::as_str).collect();
        self.with(|store| {
            store
                .verify_header(authorization.as_str(), &scopes)
                .map(Verification::from)
        })
    }

    /// Daily counts of successful verifications for the UTC days from `from_ms` to `to_ms`
    /// (milliseconds since the epoch) inclusive; days with no use are left out.
    pub fn usage(&self, id: String, from_ms: i64, to_ms: i64) -> Result<Vec<DailyUsage>> {
        self.with_id(&id, |store, id| {
            Ok(store
                .usage(id, time_of_ms(from_ms), time_of_ms(to_ms))?
                .into_iter()
                .map(DailyUsage::from)
                .collect())
        })
    }

    /// The audit log, newest first: at most `limit` entries committed at or after `since_ms`
    /// (milliseconds since the epoch).
    // uniffi takes only a literal default: `limit` is core's DEFAULT_AUDIT_LIMIT, checked by
    // `tests::audit_limit_default_is_the_core_constant`.
    #[uniffi::method(default(since_ms = None, limit = 100))]
    pub fn audit(&self, since_ms: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        self.with(|store| {
            Ok(store
                .audit(since_ms.map(time_of_ms), to_usize(u64::from(limit)))?
                .into_iter()
                .map(AuditEntry::from)
                .collect())
        })
    }

    /// Writes the usage counted so far to the store.
    pub fn flush(&self) -> Result<()> {
        self.with(ks::KeyStore::flush)
    }

    /// A snapshot of this handle's counters (cheap: no store access). docs/metrics.md.
    pub fn stats(&self) -> Result<Stats> {
        self.with(|store| Ok(store.stats().into()))
    }

    /// Flushes usage and closes the store, reporting a failure to flush. Later calls fail with
    /// `Closed`; closing again does nothing.
    pub fn close(&self) -> Result<()> {
        let store = self
            .inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match store {
            Some(store) => store.close().map_err(map_error),
            None => Ok(()),
        }
    }

    /// Whether `close` has been called.
    pub fn is_closed(&self) -> bool {
        self.read().is_none()
    }
}

/// Runs the storage engine's full integrity check on a store file that is not open in this
/// process. Returns true if the file is intact.
#[uniffi::export]
pub fn check_integrity(path: String) -> Result<bool> {
    Ok(ks::KeyStore::check_integrity(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_error_kind_has_its_own_case() {
        let mut seen = Vec::new();
        for &kind in ks::ErrorKind::ALL {
            let case = case_of(kind).unwrap_or_else(|| panic!("{kind:?} has no case"));
            let mapped = case(String::new());
            let name = format!("{mapped:?}");
            let name = name
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            assert!(!seen.contains(&name), "{kind:?} shares the case {name}");
            seen.push(name);
        }
    }

    #[test]
    fn audit_limit_default_is_the_core_constant() {
        let declared = format!(
            "#[uniffi::method(default(since_ms = None, limit = {}))]",
            ks::DEFAULT_AUDIT_LIMIT
        );
        assert!(include_str!("lib.rs").contains(&declared), "{declared}");
        // And the Swift that repeats it: the generated method and the hand-written Date form.
        let limit = ks::DEFAULT_AUDIT_LIMIT;
        let generated = include_str!("../../bindings/swift/Sources/keystead/keystead.swift");
        let generated_default = format!("limit: UInt32 = UInt32({limit})");
        assert!(
            generated.contains(&generated_default),
            "{generated_default}"
        );
        let dates = include_str!("../../bindings/swift/Sources/keystead/KeysteadDates.swift");
        let dates_default = format!("audit(since: Date?, limit: UInt32 = {limit})");
        assert!(dates.contains(&dates_default), "{dates_default}");
    }
}
