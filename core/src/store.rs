//! `KeyStore`: the admin operations, the verify read path and the usage flusher.

mod admin;
mod cache;
mod counters;
mod flusher;
mod options;
mod read_path;
mod schema;
mod shared;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ring::rand::SystemRandom;

use crate::audit;
use crate::backend::{Backend, KeyQuery, Meta};
use crate::error::{Error, Result};
use crate::hash::Hasher;
use crate::header::{self, HeaderError};
use crate::key::{self, KeyId, DEFAULT_PREFIX};
use crate::model::{
    self, AuditAction, AuditEntry, CreatedKey, DailyUsage, KeyInfo, KeyStatus, ListFilter, NewKey,
};
use crate::record::{Record, State, HEAD_LEN};
use crate::stats::Stats;
use crate::time;
use crate::usage::UsageBuffer;
use crate::verify::{Outcome, Verification};

use self::admin::{new_record, refuse_if_revoked};
use self::cache::RecordCache;
use self::counters::{Counters, Lookup};
use self::flusher::spawn_flusher;
pub use self::options::Options;
use self::schema::{
    check_store, migrate_records, Location, StoreCheck, META_CREATED_AT, META_PEPPER_CHECK,
    META_PREFIX, META_SCHEMA, SCHEMA_VERSION,
};
use self::shared::{blank_record, decode_stored, fill, info_of, load, Inner, View};

/// How many audit entries every binding's `audit` and the CLI's `keystead audit` return when no
/// limit is given (core's [`KeyStore::audit`] always takes one).
pub const DEFAULT_AUDIT_LIMIT: usize = 100;

/// The file a location names, for a [`FileBackend`](crate::backend::FileBackend) made by
/// `FileBackend::for_location`.
pub(crate) fn file_path_of(location: &Path) -> Result<std::path::PathBuf> {
    match Location::parse(location)? {
        Location::File(path) => Ok(path.to_owned()),
        _ => Err(Error::invalid(
            "file settings (a page cache size) apply to a store file only",
        )),
    }
}

/// A store location as it may be shown (in logs, errors, CLI output): a URL's password —
/// `user:PASSWORD@` or a `password=` parameter — replaced by `****`; a path unchanged.
///
/// # Example
/// ```
/// assert_eq!(
///     keystead::display_location("postgres://app:s3cret@db/keys?sslmode=verify-full"),
///     "postgres://app:****@db/keys?sslmode=verify-full"
/// );
/// assert_eq!(keystead::display_location("/var/lib/hub/keys.redb"), "/var/lib/hub/keys.redb");
/// ```
pub fn display_location(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let masked = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:****@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    // Query parameters may carry a password too (`password=`).
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=****")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{masked}{tail}")
}

/// A store of API keys: one embedded file by default, in memory, on PostgreSQL (feature
/// `postgres`), or on a backend of the caller's ([`KeyStore::open_with`]).
///
/// `KeyStore` is `Send + Sync`: share it (e.g. in an `Arc`) and verify from many threads.
/// Several processes of one host may open the same file; many hosts may open one PostgreSQL
/// store (docs/fleet.md).
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
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

impl KeyStore {
    /// Opens the store at `location`, creating it if there is none.
    ///
    /// The location picks the backend:
    /// - a file path or `file://PATH`: the embedded redb file (created with mode 0600; never
    ///   created through a symbolic link, though an existing store may be opened through one);
    /// - `memory:`: a new store in this process's memory, gone when the handle is dropped (for
    ///   tests and ephemeral use; each open makes a separate store);
    /// - `postgres://…` or `postgresql://…` (feature `postgres`): a store shared by many
    ///   hosts (docs/fleet.md).
    ///
    /// With a pepper, a store written before key records were authenticated is upgraded in
    /// one write transaction: every record is rewritten authenticated under the pepper
    /// (docs/storage.md); builds older than that then refuse it with `WrongPepper`.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`] for a bad prefix or actor, a pepper outside 32 to 1024 bytes
    ///   (or all zero bytes), a `path` that is a symbolic link to a missing or empty file, or
    ///   a location with another `scheme://` (or `postgres://` in a build without the
    ///   feature);
    /// - [`Error::InsecurePermissions`] for an existing file that its group or others may
    ///   write (`chmod 600` fixes it);
    /// - [`Error::PrefixMismatch`] if a prefix is given that is not the store's;
    /// - [`Error::WrongPepper`] if the pepper is not the one the store was created with;
    /// - [`Error::UnsupportedVersion`] for a store written by a newer keystead;
    /// - [`Error::Corrupt`] for a file that is not a keystead store;
    /// - [`Error::StoreNotFound`] with [`Options::create_if_missing`]`(false)` where there is
    ///   no store (nothing is created);
    /// - [`Error::Io`], [`Error::Locked`], [`Error::Storage`] for failures of the file;
    /// - [`Error::StoreUnavailable`] for a database that cannot be reached or refuses the
    ///   connection.
    pub fn open(location: impl AsRef<Path>, options: Options) -> Result<KeyStore> {
        let backend = Location::parse(location.as_ref())?.backend()?;
        Self::open_boxed(backend, options)
    }

    /// Opens the store of a backend the caller made: a [`FileBackend`](crate::backend::FileBackend)
    /// with its own [`FileOptions`](crate::backend::FileOptions), a
    /// [`MemoryBackend`](crate::backend::MemoryBackend) shared by several handles, or a
    /// backend of the caller's (see [`Backend`] for the contract).
    ///
    /// # Errors
    /// As for [`KeyStore::open`].
    ///
    /// # Example
    /// ```
    /// use keystead::backend::MemoryBackend;
    /// use keystead::{KeyStore, NewKey, Options};
    /// let store = KeyStore::open_with(MemoryBackend::new(), Options::new())?;
    /// let created = store.create(NewKey::new("ephemeral"))?;
    /// assert!(store.verify(created.key(), &[])?.is_valid());
    /// # Ok::<(), keystead::Error>(())
    /// ```
    pub fn open_with(backend: impl Backend, options: Options) -> Result<KeyStore> {
        Self::open_boxed(Box::new(backend), options)
    }

    fn open_boxed(backend: Box<dyn Backend>, options: Options) -> Result<KeyStore> {
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
        // Refuse a wrong pepper, prefix or version before opening the store for writing.
        if let Some(meta) = backend.inspect()? {
            check_store(&meta, requested, &hasher)?;
        }
        let prefix = requested.unwrap_or(DEFAULT_PREFIX);
        let initial: Meta = [
            (META_SCHEMA, SCHEMA_VERSION.to_le_bytes().to_vec()),
            (META_PREFIX, prefix.as_bytes().to_vec()),
            (META_PEPPER_CHECK, hasher.pepper_check().to_vec()),
            (META_CREATED_AT, time::now_ms().to_le_bytes().to_vec()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        let meta = backend.open(&initial, options.create_if_missing)?;
        let mut checked = check_store(&meta, requested, &hasher)?;
        if checked.legacy_records {
            migrate_records(&*backend, &hasher)?;
            let meta = backend.open(&initial, false)?;
            checked = check_store(&meta, requested, &hasher)?;
        }
        let StoreCheck {
            prefix: stored_prefix,
            ..
        } = checked;
        let taken_ms = time::now_ms();
        let generation = backend.changes_since(None)?.generation;
        let signal = backend.change_signal();

        let rng = SystemRandom::new();
        let mut dummy_record = blank_record(0, String::new(), Vec::new(), BTreeMap::new(), None);
        fill(&rng, &mut dummy_record.salt)?;
        fill(&rng, &mut dummy_record.hash)?;
        let mut dummy_head = [0u8; HEAD_LEN];
        dummy_head.copy_from_slice(&dummy_record.encode(hasher.record_key())[..HEAD_LEN]);
        let placeholder = View {
            taken_ms,
            synced_ms: taken_ms,
            fresh_until_ms: taken_ms,
            local_epoch: 0,
            generation,
            cache: Arc::new(RecordCache::new(options.record_cache_entries)),
        };
        let mut inner = Inner {
            backend,
            hasher,
            prefix: stored_prefix,
            actor: options.actor,
            rng,
            refresh_interval: options.refresh_interval,
            max_staleness: options.max_staleness,
            record_cache_entries: options.record_cache_entries,
            signal,
            view: ArcSwap::from_pointee(placeholder),
            refresh: Mutex::new(()),
            local_epoch: AtomicU64::new(0),
            usage: UsageBuffer::new(),
            dummy_head,
            flusher: Mutex::new(None),
            flush_interval: options.flush_interval,
            this: OnceLock::new(),
            counters: Counters::new(),
        };
        let view = inner.new_view(
            taken_ms,
            taken_ms,
            0,
            generation,
            Arc::new(RecordCache::new(options.record_cache_entries)),
        );
        inner.view = ArcSwap::from_pointee(view);
        let inner = Arc::new(inner);
        let _ = inner.this.set(Arc::downgrade(&inner));
        if !options.flush_interval.is_zero() {
            let flusher = spawn_flusher(Arc::downgrade(&inner), options.flush_interval)?;
            *inner.flusher.lock().unwrap_or_else(|p| p.into_inner()) = Some(flusher);
        }
        Ok(KeyStore { inner })
    }

    /// Runs the storage engine's full integrity check on a store file. It opens a handle of its
    /// own (other handles may stay open); run it while nothing writes, e.g. after a crash or
    /// before a backup. Returns `Ok(true)` if the file is intact.
    ///
    /// # Errors
    /// As for [`KeyStore::open`]; a damaged file gives `Ok(false)` or [`Error::Corrupt`].
    pub fn check_integrity(location: impl AsRef<Path>) -> Result<bool> {
        match Location::parse(location.as_ref())? {
            Location::Memory => Err(Error::invalid(
                "an in-memory store (`memory:`) has no file to check; each open makes a new one",
            )),
            location => location.backend()?.check_integrity(),
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
        let snapshot = self.inner.backend.read()?;
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
        let snapshot = self.inner.backend.read()?;
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
        // The backend may narrow the rows by this; each row is checked below all the same.
        let query = KeyQuery {
            after: filter.after.map(KeyId::as_u64),
            name_prefix: filter.name_prefix.as_deref(),
            scope: filter.scope.as_deref(),
            state: match filter.status {
                Some(KeyStatus::Expired) | None => None,
                Some(status) => Some(status),
            },
            expires_before_ms: horizon,
        };
        snapshot.list_keys(&query, &mut |id, bytes| {
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
            inner.put(txn, &old)?;
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
                let refused = Err(Error::invalid(format!(
                    "required scope `{}` is not a valid scope",
                    model::truncate_for_message(scope)
                )));
                self.inner.counters.verified(&refused, Lookup::None);
                return refused;
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
        let outcome = match header::parse_authorization_header(authorization.as_ref()) {
            Ok(token) => return self.verify(token, required_scopes),
            Err(HeaderError::Missing) => Outcome::Missing,
            Err(_) => Outcome::Malformed,
        };
        let verification = Ok(Verification::without_key(outcome));
        self.inner.counters.verified(&verification, Lookup::None);
        verification
    }

    /// A snapshot of this handle's counters: verifications by outcome, verify errors, record
    /// cache hits and misses, change-feed refreshes, usage flushes and what is pending, and
    /// the cached key count ([`Stats`] defines each; docs/metrics.md).
    ///
    /// Cheap (a few dozen relaxed loads and one short lock per usage and cache shard; no
    /// backend access), so a metrics scrape may call it at any rate. The counters are this
    /// handle's since it was opened; they never decrease.
    ///
    /// # Example
    /// ```
    /// # use keystead::{KeyStore, NewKey, Options, Outcome};
    /// let store = KeyStore::open("memory:", Options::new())?;
    /// store.verify_header("Bearer nonsense", &[])?;
    /// let stats = store.stats();
    /// assert_eq!(stats.outcome(Outcome::Malformed), 1);
    /// assert_eq!(stats.verifications(), 1);
    /// assert_eq!(stats.last_refresh_age, None);
    /// # Ok::<(), keystead::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let mut stats = inner.counters.snapshot();
        stats.usage_pending = inner.usage.pending();
        stats.cached_keys = inner.view.load().cache.key_count();
        stats
    }

    /// Daily counts of successful verifications of a key for the UTC days from `from` to `to`
    /// inclusive (days with no use are left out). Flushes this handle's pending usage first.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::InvalidArgument`] for a bound after
    /// 9999-12-31T23:59:59Z, storage errors.
    pub fn usage(&self, id: KeyId, from: SystemTime, to: SystemTime) -> Result<Vec<DailyUsage>> {
        self.flush()?;
        let snapshot = self.inner.backend.read()?;
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

    /// The `limit` keys with the most successful verifications on the UTC days from `from`
    /// to `to` inclusive, with the totals of all keys over those days.
    ///
    /// Keys are ranked by their count in the range, highest first; equal counts by id, lowest
    /// first. Keys without a use in the range are left out. The sums come from one read of
    /// the backend ([`Read::usage_per_key`](crate::backend::Read::usage_per_key): one
    /// `GROUP BY` on PostgreSQL), then one lookup per returned key. A deleted key's usage is
    /// gone with it. Like [`usage`](Self::usage), this flushes this handle's pending usage
    /// first, on every backend; uses counted by other handles (other processes) show once
    /// they flush, at their flush interval or close.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bound after 9999-12-31T23:59:59Z, storage errors.
    ///
    /// # Example
    /// ```
    /// # use keystead::{KeyStore, NewKey, Options};
    /// # use std::time::{Duration, SystemTime};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = KeyStore::open(dir.path().join("k.redb"), Options::new())?;
    /// let busy = store.create(NewKey::new("busy"))?;
    /// let quiet = store.create(NewKey::new("quiet"))?;
    /// for _ in 0..3 {
    ///     store.verify(busy.key(), &[])?;
    /// }
    /// store.verify(quiet.key(), &[])?;
    /// let now = SystemTime::now();
    /// let week = store.busiest_keys(now - Duration::from_secs(6 * 86_400), now, 1)?;
    /// assert_eq!(week.keys.len(), 1);
    /// assert_eq!(week.keys[0].key.name(), "busy");
    /// assert_eq!(week.keys[0].count, 3);
    /// assert_eq!((week.total, week.keys_used), (4, 2));
    /// # Ok::<(), keystead::Error>(())
    /// ```
    pub fn busiest_keys(
        &self,
        from: SystemTime,
        to: SystemTime,
        limit: usize,
    ) -> Result<model::BusiestKeys> {
        let from_day = time::day_of(time::checked_to_ms(from, "the start of the range")?);
        let to_day = time::day_of(time::checked_to_ms(to, "the end of the range")?);
        self.flush()?;
        let snapshot = self.inner.backend.read()?;
        let mut sums = snapshot.usage_per_key(from_day, to_day)?;
        sums.retain(|&(_, count)| count > 0);
        let total = sums
            .iter()
            .fold(0u64, |sum, &(_, count)| sum.saturating_add(count));
        let keys_used = sums.len();
        sums.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut keys = Vec::new();
        for (id, count) in sums {
            if keys.len() >= limit {
                break;
            }
            // A backend whose reads are not one snapshot (PostgreSQL) may have lost the key
            // to a delete since the sums were read: then it is no longer a key to show.
            let Some(bytes) = snapshot.key(id)? else {
                continue;
            };
            let key = info_of(&*snapshot, &decode_stored(id, &bytes, &self.inner.hasher)?)?;
            keys.push(model::KeyUsage { key, count });
        }
        Ok(model::BusiestKeys {
            keys,
            total,
            keys_used,
        })
    }

    /// The audit log, newest first: at most `limit` entries committed at or after `since`.
    /// Bindings and the CLI ask for [`DEFAULT_AUDIT_LIMIT`] entries when no limit is given.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `since` after 9999-12-31T23:59:59Z; storage errors.
    pub fn audit(&self, since: Option<SystemTime>, limit: usize) -> Result<Vec<AuditEntry>> {
        let snapshot = self.inner.backend.read()?;
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

    /// Makes a handle inherited through `fork` this process's own; call it in the child right
    /// after the fork, before the child verifies (the Python binding does it for every open
    /// store through `os.register_at_fork`).
    ///
    /// The child drops the usage counted before the fork (the parent writes those counts; the
    /// child would count them twice) and starts its own usage flusher: a child has only the
    /// thread that forked, not the parent's flusher. Without this call a child still works —
    /// the missing flusher is noticed and restarted at the next refresh, and `close` and drop
    /// never wait for the parent's thread — but usage pending at the fork may be written by both.
    ///
    /// Opening stores after the fork is simpler and safer still: a fork taken while another
    /// thread of the parent held one of the handle's locks leaves that lock held in the child.
    ///
    /// # Example
    /// ```
    /// use keystead::{KeyStore, Options};
    /// let store = KeyStore::open("memory:", Options::new())?;
    /// // in the child process, right after fork():
    /// store.after_fork();
    /// # Ok::<(), keystead::Error>(())
    /// ```
    pub fn after_fork(&self) {
        let inherited = self
            .inner
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|f| !f.is_ours());
        if inherited {
            self.inner.usage.discard(self.inner.usage.take());
            self.inner.restart_flusher_after_fork();
        }
    }

    fn stop_flusher(&mut self) {
        let flusher = self
            .inner
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(flusher) = flusher {
            flusher.stop();
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
