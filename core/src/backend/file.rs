//! The embedded default: one redb file, shared by the processes of one host (MultiWriter mode).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use redb::{
    ConcurrencyMode, Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use arc_swap::ArcSwapOption;

use super::{
    collect_changes, decode_ids, encode_ids, Backend, Changes, KeyQuery, KeyRow, Meta, Read, Txn,
    UsageAdd, UsageTotal, CHANGE_LOG_KEEP,
};
use crate::error::{Error, Result};

const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
const KEYS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("keys");
const USAGE_TOTAL: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("usage_total");
const USAGE_DAY: TableDefinition<'static, (u64, u32), u64> = TableDefinition::new("usage_day");
const AUDIT: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("audit");
/// Generation → the ids of the keys its write changed (little-endian u64s; empty: all).
const CHANGES: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("changes");
/// The meta row holding the generation (older builds bump it too, without logging).
const GENERATION: &str = "generation";

/// Maps every redb error to the crate's error; the only place redb errors are seen.
/// Runs `op`, turning a panic inside the storage engine into `Error::Corrupt`. redb panics
/// (`unreachable!`, "Invalid page type", slice bounds) on some damaged pages instead of
/// returning an error; a damaged store must be an error for the caller, never a crash of the
/// host process (core/tests/damaged_pages.rs). Every entry from the `store` module (store.rs
/// and store/) into redb goes through here; on the no-panic path it costs nothing measurable.
fn guard<T>(op: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(op)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no detail".to_owned());
        Err(Error::Corrupt(format!(
            "the storage engine failed on the store file, which is damaged ({})",
            crate::model::truncate_for_message(&why)
        )))
    })
}

fn map_err(err: impl Into<redb::Error>) -> Error {
    match err.into() {
        // redb reports a file that is not a database (bad magic number) as invalid data.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            Error::Corrupt(format!("not a keystead store: {io}"))
        }
        redb::Error::Io(io) => Error::Io(io),
        redb::Error::Corrupted(why) => Error::Corrupt(why),
        redb::Error::DatabaseAlreadyOpen => {
            Error::Locked("the file is open in a mode that excludes other processes".into())
        }
        redb::Error::LockProtocolMismatch => {
            Error::Locked("another process uses an incompatible redb locking protocol".into())
        }
        redb::Error::UpgradeRequired(version) => Error::Corrupt(format!(
            "the file uses redb file format {version}, which needs an upgrade"
        )),
        redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableDoesNotExist(_) => {
            Error::Corrupt("the file is a redb database but not a keystead store".into())
        }
        other => Error::Storage(other.to_string()),
    }
}

/// Settings of the file backend only.
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub(crate) cache_size: usize,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            cache_size: 32 << 20,
        }
    }
}

impl FileOptions {
    /// The defaults: a 32 MiB page cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The storage engine's page cache, in bytes (default 32 MiB, not redb's 1 GiB).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }
}

/// The embedded default: one redb file, shared by the processes of one host. Nothing is
/// read or created until a `KeyStore` opens it.
///
/// # Example
/// ```
/// use keystead::backend::{FileBackend, FileOptions};
/// use keystead::{KeyStore, Options};
/// # let dir = tempfile::tempdir()?;
/// let backend = FileBackend::new(dir.path().join("k.redb"), FileOptions::new().cache_size(8 << 20));
/// let store = KeyStore::open_with(backend, Options::new())?;
/// # Ok::<(), keystead::Error>(())
/// ```
pub struct FileBackend {
    path: PathBuf,
    options: FileOptions,
    opened: OnceLock<Opened>,
}

impl std::fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBackend")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The state of an opened file.
struct Opened {
    /// The file this handle opened. If the path comes to name another file (a backup renamed
    /// over it) or none, the handle fails closed with `Error::StoreReplaced`.
    identity: FileId,
    /// Replaced by a fresh handle after redb latches a failed write (see `retry`).
    db: RwLock<Arc<Database>>,
    /// The read transaction that point lookups use: renewed by `changes_since` (at most once
    /// per refresh interval on the verify path), dropped by `release_reads`.
    reads: ArcSwapOption<RedbSnapshot>,
}

/// Which file a path names: device and inode number (on Unix; elsewhere nothing is compared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            FileId {}
        }
    }
}

/// Opens an existing file for redb. It never creates one: redb's `Builder::create` would make a
/// missing file (or the target of a dangling symlink) with the umask's mode, while every file
/// keystead creates is made by `create_private_file`, mode 0600. A file that others may write
/// is refused (`check_mode`).
fn open_db(path: &Path, cache_size: usize) -> Result<(Database, FileId)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let meta = file.metadata()?;
    check_mode(&meta)?;
    let backend = redb::backends::FileBackend::new(file).map_err(map_err)?;
    let db = Database::builder()
        .set_cache_size(cache_size)
        .set_concurrency_mode(ConcurrencyMode::MultiWriter)
        .create_with_backend(backend)
        .map_err(map_err)?;
    Ok((db, FileId::of(&meta)))
}

/// Refuses a store file that its group or others may write: whoever can write it can change
/// any key's state, and without a pepper mint keys. (Readable by others is not refused here;
/// the CLI warns about it.)
fn check_mode(meta: &std::fs::Metadata) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(Error::InsecurePermissions { mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// A store is never created through a symbolic link: the path must name the file itself. A
/// dangling link (or one to an empty file) at the store path is refused, so no file is made
/// at a place the link chooses, with a mode keystead does not control.
fn refuse_symlink_at_creation(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::invalid(format!(
            "{} is a symbolic link to a missing or empty file; keystead creates a store only \
             at a path that is not a link (create it at the link's target instead)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

impl FileBackend {
    /// A backend for the store file at `path` (see [`KeyStore::open`](crate::KeyStore::open)
    /// for what opening it does).
    pub fn new(path: impl Into<PathBuf>, options: FileOptions) -> Self {
        FileBackend {
            path: path.into(),
            options,
            opened: OnceLock::new(),
        }
    }

    /// A backend for a location as [`KeyStore::open`](crate::KeyStore::open) takes it (a path
    /// or `file://PATH`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a location that is not a file.
    pub fn for_location(location: impl AsRef<Path>, options: FileOptions) -> Result<Self> {
        Ok(Self::new(
            crate::store::file_path_of(location.as_ref())?,
            options,
        ))
    }

    fn opened(&self) -> Result<&Opened> {
        self.opened
            .get()
            .ok_or_else(|| Error::Storage("the store file is not open yet".into()))
    }

    /// Fails with `Error::StoreReplaced` unless the path still names the file this handle
    /// opened. One `stat`: run when a read transaction is taken (at most once per refresh
    /// interval on the verify path) and around every write, never per verify.
    fn ensure_same_file(&self) -> Result<()> {
        let identity = self.opened()?.identity;
        match std::fs::metadata(&self.path) {
            Ok(meta) if FileId::of(&meta) == identity => Ok(()),
            Ok(_) => Err(Error::StoreReplaced),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::StoreReplaced),
            Err(e) => Err(Error::Io(e)),
        }
    }

    fn db(&self) -> Result<Arc<Database>> {
        let opened = self.opened()?;
        Ok(Arc::clone(
            &opened.db.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    /// Runs `op`; if redb refuses because an earlier write failed (it then refuses every
    /// later one until the database is reopened, e.g. after a full disk), reopens the file and
    /// tries once more, so the handle recovers once the cause is gone.
    fn retry<T>(&self, mut op: impl FnMut(&Database) -> Result<T, RetryableError>) -> Result<T> {
        let opened = self.opened()?;
        let db = self.db()?;
        match op(&db) {
            Err(RetryableError::PreviousIo) => {
                let (fresh, identity) = open_db(&self.path, self.options.cache_size)?;
                // Never carry on with whatever file the path names now.
                if identity != opened.identity {
                    return Err(Error::StoreReplaced);
                }
                let fresh = Arc::new(fresh);
                {
                    let mut slot = opened.db.write().unwrap_or_else(|p| p.into_inner());
                    if Arc::ptr_eq(&slot, &db) {
                        *slot = Arc::clone(&fresh);
                    }
                }
                op(&*self.db()?).map_err(RetryableError::into_error)
            }
            other => other.map_err(RetryableError::into_error),
        }
    }

    /// A fresh read transaction on the file (after checking it is still the same file).
    fn snapshot(&self) -> Result<RedbSnapshot> {
        self.ensure_same_file()?;
        self.retry(|db| {
            let txn = db.begin_read()?;
            let keys = txn.open_table(KEYS)?;
            Ok(RedbSnapshot { txn, keys })
        })
    }

    /// The read transaction for point lookups, taking one if none is held.
    fn reads(&self) -> Result<Arc<RedbSnapshot>> {
        let opened = self.opened()?;
        if let Some(held) = opened.reads.load_full() {
            return Ok(held);
        }
        let fresh = Arc::new(guard(|| self.snapshot())?);
        opened.reads.store(Some(Arc::clone(&fresh)));
        Ok(fresh)
    }
}

/// An error from inside a `retry` operation: redb's "a previous I/O error occurred", or any
/// other error already mapped.
enum RetryableError {
    PreviousIo,
    Other(Error),
}

impl RetryableError {
    fn into_error(self) -> Error {
        match self {
            RetryableError::PreviousIo => {
                Error::Storage("an earlier write failed and reopening the file did not help".into())
            }
            RetryableError::Other(e) => e,
        }
    }
}

impl<E: Into<redb::Error>> From<E> for RetryableError {
    fn from(err: E) -> Self {
        match err.into() {
            redb::Error::PreviousIo => RetryableError::PreviousIo,
            other => RetryableError::Other(map_err(other)),
        }
    }
}

/// Builds a new store in `.<name>.<unique>.tmp` beside `path`, then links it into place
/// (or, for an existing empty file, renames it over that file). If another process created
/// the store first, its store is kept and ours discarded.
fn create_atomically(path: &Path, replace_empty: bool, meta: &Meta) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keystead".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    create_private_file(&tmp)?;
    let result = (|| -> Result<()> {
        {
            let (db, _) = open_db(&tmp, 1 << 20)?;
            let txn = db.begin_write().map_err(map_err)?;
            {
                let mut table = txn.open_table(META).map_err(map_err)?;
                for (key, value) in meta {
                    table
                        .insert(key.as_str(), value.as_slice())
                        .map_err(map_err)?;
                }
            }
            create_tables(&txn)?;
            txn.commit().map_err(map_err)?;
        }
        std::fs::File::open(&tmp)?.sync_all()?;
        if replace_empty {
            std::fs::rename(&tmp, path)?;
        } else {
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => {}
                // Another process created the store meanwhile: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        // Make the new directory entry durable too.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Creates a new file with mode 0600, so the store is never world-readable.
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(Error::Io)
}

/// Every table of a store, created with it (the change log also by the first write of a
/// build that logs changes, so files made by older builds open unchanged).
fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(KEYS).map_err(map_err)?;
    txn.open_table(USAGE_TOTAL).map_err(map_err)?;
    txn.open_table(USAGE_DAY).map_err(map_err)?;
    txn.open_table(AUDIT).map_err(map_err)?;
    txn.open_table(CHANGES).map_err(map_err)?;
    Ok(())
}

fn read_meta(txn: &ReadTransaction) -> Result<Meta> {
    let table = txn.open_table(META).map_err(map_err)?;
    let mut meta = Meta::new();
    for entry in table.range::<&str>(..).map_err(map_err)? {
        let (name, value) = entry.map_err(map_err)?;
        meta.insert(name.value().to_owned(), value.value().to_vec());
    }
    Ok(meta)
}

fn generation_of(value: Option<&[u8]>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(bytes) => bytes
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| Error::Corrupt("meta `generation` has the wrong length".into())),
    }
}

impl Backend for FileBackend {
    fn inspect(&self) -> Result<Option<Meta>> {
        inspect(&self.path)
    }

    fn open(&self, initial: &Meta, create: bool) -> Result<Meta> {
        if self.opened.get().is_none() {
            let size = match std::fs::metadata(&self.path) {
                Ok(m) => Some(m.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::Io(e)),
            };
            if size.is_none_or(|len| len == 0) {
                if !create {
                    return Err(Error::StoreNotFound);
                }
                refuse_symlink_at_creation(&self.path)?;
                create_atomically(&self.path, size == Some(0), initial)?;
            }
            let (db, identity) = guard(|| open_db(&self.path, self.options.cache_size))?;
            // Another thread may have opened it meanwhile; either handle serves.
            let _ = self.opened.set(Opened {
                identity,
                db: RwLock::new(Arc::new(db)),
                reads: ArcSwapOption::empty(),
            });
        }
        guard(|| {
            // A redb file with no tables at all (not made by keystead) becomes a store in place.
            let is_new = self.retry(|db| {
                let txn = db.begin_read()?;
                let mut tables = txn.list_tables()?;
                Ok(tables.next().is_none())
            })?;
            if is_new {
                if !create {
                    return Err(Error::StoreNotFound);
                }
                let txn = self.db()?.begin_write().map_err(map_err)?;
                {
                    let mut table = txn.open_table(META).map_err(map_err)?;
                    if table.is_empty().map_err(map_err)? {
                        for (name, value) in initial {
                            table
                                .insert(name.as_str(), value.as_slice())
                                .map_err(map_err)?;
                        }
                    }
                }
                create_tables(&txn)?;
                txn.commit().map_err(map_err)?;
            }
            let txn = self.db()?.begin_read().map_err(map_err)?;
            read_meta(&txn)
        })
    }

    fn check_integrity(&self) -> Result<bool> {
        check_file_integrity(&self.path)
    }

    fn changes_since(&self, since: Option<u64>) -> Result<Changes> {
        guard(|| {
            let snapshot = self.snapshot()?;
            let meta = snapshot.txn.open_table(META).map_err(map_err)?;
            let generation = generation_of(
                meta.get(GENERATION)
                    .map_err(map_err)?
                    .as_ref()
                    .map(|v| v.value()),
            )?;
            let changed = match (since, snapshot.txn.open_table(CHANGES)) {
                (Some(since), Ok(log)) if since < generation => {
                    let mut entries = Vec::new();
                    for entry in log.range(since + 1..=generation).map_err(map_err)? {
                        let (g, ids) = entry.map_err(map_err)?;
                        entries.push((g.value(), decode_ids(ids.value())));
                    }
                    collect_changes(Some(since), generation, entries.into_iter())
                }
                (since, _) => collect_changes(since, generation, std::iter::empty()),
            };
            self.opened()?.reads.store(Some(Arc::new(snapshot)));
            Ok(Changes {
                generation,
                changed,
            })
        })
    }

    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        let reads = self.reads()?;
        guard(|| {
            let value = reads.keys.get(id).map_err(map_err)?;
            Ok(value.map(|v| copy_head(v.value(), head)))
        })
    }

    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        Read::key(&*self.reads()?, id)
    }

    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        Read::usage_total(&*self.reads()?, id)
    }

    fn release_reads(&self) {
        if let Some(opened) = self.opened.get() {
            opened.reads.store(None);
        }
    }

    fn read(&self) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(guard(|| self.snapshot())?))
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<u64> {
        guard(|| {
            self.ensure_same_file()?;
            // A held read transaction would pin every page this write frees (the file would
            // grow by the whole rewritten tree each time); lookups take a fresh one when needed.
            self.release_reads();
            // Retrying after a latched error runs `body` again on a fresh transaction; the failed
            // one committed nothing.
            let generation = self.retry(|db| {
                let txn = db.begin_write()?;
                let mut write = RedbWrite {
                    txn,
                    changed: BTreeSet::new(),
                    everything: false,
                };
                if let Err(e) = body(&mut write) {
                    let _ = write.txn.abort();
                    return Err(RetryableError::Other(e));
                }
                let generation = write.log_changes().map_err(RetryableError::Other)?;
                write.txn.commit()?;
                Ok(generation)
            })?;
            // A commit that raced with a replacement of the file went to the old file, which no
            // new handle reads: report it as failed rather than done.
            self.ensure_same_file()?;
            Ok(generation)
        })
    }

    fn add_usage(&self, batch: &[UsageAdd]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        guard(|| {
            self.ensure_same_file()?;
            self.retry(|db| {
                let txn = db.begin_write()?;
                {
                    let keys = txn.open_table(KEYS)?;
                    let mut totals = txn.open_table(USAGE_TOTAL)?;
                    let mut days = txn.open_table(USAGE_DAY)?;
                    for add in batch {
                        // Uses of a key deleted since are dropped with it.
                        if keys.get(add.id)?.is_none() {
                            continue;
                        }
                        let old = usage_total(&totals, add.id)
                            .map_err(RetryableError::Other)?
                            .unwrap_or_default();
                        let mut bytes = [0u8; 16];
                        bytes[..8]
                            .copy_from_slice(&old.count.saturating_add(add.count).to_le_bytes());
                        bytes[8..]
                            .copy_from_slice(&old.last_used_ms.max(add.last_used_ms).to_le_bytes());
                        totals.insert(add.id, bytes.as_slice())?;
                        let previous = days.get((add.id, add.day))?.map_or(0, |v| v.value());
                        days.insert((add.id, add.day), previous.saturating_add(add.count))?;
                    }
                }
                txn.commit()?;
                Ok(())
            })
        })
    }
}

/// Reads an existing store's meta rows without opening it for writing, so that checks which
/// refuse it (wrong pepper, prefix or version, not a store at all) leave the file
/// byte-for-byte as it was. Returns `Ok(None)` for a missing or empty file, which is created by
/// the writable open.
fn inspect(path: &Path) -> Result<Option<Meta>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => return Ok(None),
        // Refused before anything is read (`open_db` checks the opened file again).
        Ok(meta) => check_mode(&meta)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io(e)),
    }
    guard(|| {
        let db = match Database::builder()
            .set_cache_size(1 << 20)
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .open_read_only(path)
        {
            Ok(db) => db,
            // Needs a repair only a writable open can make; the writable open checks again.
            Err(redb::DatabaseError::RepairAborted) => return Ok(None),
            Err(e) => return Err(map_err(e)),
        };
        let txn = db.begin_read().map_err(map_err)?;
        match txn.open_table(META) {
            // A redb file without tables: the writable open makes it a store (or refuses).
            Err(redb::TableError::TableDoesNotExist(_)) => {
                if txn.list_tables().map_err(map_err)?.next().is_none() {
                    return Ok(None);
                }
                Err(Error::Corrupt(
                    "the file is a redb database but not a keystead store".into(),
                ))
            }
            Err(e) => Err(map_err(e)),
            Ok(_) => read_meta(&txn).map(Some),
        }
    })
}

/// Runs redb's integrity check on a store file that no other handle in this process has open.
fn check_file_integrity(path: &Path) -> Result<bool> {
    guard(|| {
        let mut db = Database::builder()
            .set_cache_size(4 << 20)
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .open(path)
            .map_err(map_err)?;
        db.check_integrity().map_err(map_err)
    })
}

struct RedbSnapshot {
    txn: ReadTransaction,
    keys: ReadOnlyTable<u64, &'static [u8]>,
}

impl Read for RedbSnapshot {
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        guard(|| {
            let table = self.txn.open_table(META).map_err(map_err)?;
            let value = table.get(name).map_err(map_err)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        guard(|| {
            let value = self.keys.get(id).map_err(map_err)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    fn list_keys(
        &self,
        query: &KeyQuery<'_>,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        // Every row is passed; the store filters (redb has no secondary indexes here).
        guard(|| scan_keys(&self.keys, query.after, visit))
    }

    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        guard(|| {
            let table = self.txn.open_table(USAGE_TOTAL).map_err(map_err)?;
            usage_total(&table, id)
        })
    }

    fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>> {
        guard(|| {
            let table = self.txn.open_table(USAGE_DAY).map_err(map_err)?;
            usage_days(&table, id, from, to)
        })
    }

    fn usage_per_key(&self, from: u32, to: u32) -> Result<Vec<(u64, u64)>> {
        guard(|| {
            let totals = self.txn.open_table(USAGE_TOTAL).map_err(map_err)?;
            let days = self.txn.open_table(USAGE_DAY).map_err(map_err)?;
            usage_per_key(&totals, &days, from, to)
        })
    }

    fn scan_audit_newest_first(
        &self,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        guard(|| {
            let table = self.txn.open_table(AUDIT).map_err(map_err)?;
            scan_audit(&table, visit)
        })
    }
}

fn scan_keys(
    table: &impl ReadableTable<u64, &'static [u8]>,
    after: Option<u64>,
    visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<()> {
    let range = match after {
        Some(u64::MAX) => return Ok(()),
        Some(after) => table.range(after + 1..).map_err(map_err)?,
        None => table.range::<u64>(..).map_err(map_err)?,
    };
    for entry in range {
        let (id, record) = entry.map_err(map_err)?;
        if !visit(id.value(), record.value())? {
            break;
        }
    }
    Ok(())
}

/// Copies the start of `value` into `head`; returns `value`'s length.
fn copy_head(value: &[u8], head: &mut [u8]) -> usize {
    let n = value.len().min(head.len());
    head[..n].copy_from_slice(&value[..n]);
    value.len()
}

fn usage_total(
    table: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<UsageTotal>> {
    let Some(value) = table.get(id).map_err(map_err)? else {
        return Ok(None);
    };
    let bytes = value.value();
    if bytes.len() != 16 {
        return Err(Error::Corrupt("usage total: wrong length".into()));
    }
    let mut count = [0u8; 8];
    let mut last = [0u8; 8];
    count.copy_from_slice(&bytes[..8]);
    last.copy_from_slice(&bytes[8..]);
    Ok(Some(UsageTotal {
        count: u64::from_le_bytes(count),
        last_used_ms: i64::from_le_bytes(last),
    }))
}

fn usage_days(
    table: &impl ReadableTable<(u64, u32), u64>,
    id: u64,
    from: u32,
    to: u32,
) -> Result<Vec<(u32, u64)>> {
    let mut out = Vec::new();
    if from > to {
        return Ok(out);
    }
    for entry in table.range((id, from)..=(id, to)).map_err(map_err)? {
        let (key, count) = entry.map_err(map_err)?;
        out.push((key.value().1, count.value()));
    }
    Ok(out)
}

/// The keys with any usage (the totals table: `delete_key` removes a key's row there and
/// `add_usage` adds none for a missing key), each summed over a range of its days: one seek
/// per key that was ever used, not a scan of every day of every key.
fn usage_per_key(
    totals: &impl ReadableTable<u64, &'static [u8]>,
    days: &impl ReadableTable<(u64, u32), u64>,
    from: u32,
    to: u32,
) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    if from > to {
        return Ok(out);
    }
    for entry in totals.range::<u64>(..).map_err(map_err)? {
        let id = entry.map_err(map_err)?.0.value();
        let mut count = 0u64;
        for day in days.range((id, from)..=(id, to)).map_err(map_err)? {
            count = count.saturating_add(day.map_err(map_err)?.1.value());
        }
        if count > 0 {
            out.push((id, count));
        }
    }
    Ok(out)
}

fn scan_audit(
    table: &impl ReadableTable<u64, &'static [u8]>,
    visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<()> {
    for entry in table.range::<u64>(..).map_err(map_err)?.rev() {
        let (seq, bytes) = entry.map_err(map_err)?;
        if !visit(seq.value(), bytes.value())? {
            break;
        }
    }
    Ok(())
}

struct RedbWrite {
    txn: WriteTransaction,
    changed: BTreeSet<u64>,
    /// A meta row changed: the commit tells readers to drop everything.
    everything: bool,
}

impl RedbWrite {
    /// If this transaction changed keys or meta rows: the next generation, with the changed
    /// ids in the change log (trimmed to the last `CHANGE_LOG_KEEP`). Returns the generation
    /// the commit leaves.
    fn log_changes(&mut self) -> Result<u64> {
        let mut meta = self.txn.open_table(META).map_err(map_err)?;
        let generation = generation_of(
            meta.get(GENERATION)
                .map_err(map_err)?
                .as_ref()
                .map(|v| v.value()),
        )?;
        if !self.everything && self.changed.is_empty() {
            return Ok(generation);
        }
        let next = generation.wrapping_add(1);
        meta.insert(GENERATION, next.to_le_bytes().as_slice())
            .map_err(map_err)?;
        let ids: Vec<u64> = if self.everything {
            Vec::new()
        } else {
            self.changed.iter().copied().collect()
        };
        let mut log = self.txn.open_table(CHANGES).map_err(map_err)?;
        log.insert(next, encode_ids(&ids).as_slice())
            .map_err(map_err)?;
        let floor = next.saturating_sub(CHANGE_LOG_KEEP);
        if floor > 0 {
            log.retain_in(..floor, |_, _| false).map_err(map_err)?;
        }
        Ok(next)
    }
}

impl Read for RedbWrite {
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let table = self.txn.open_table(META).map_err(map_err)?;
        let value = table.get(name).map_err(map_err)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        let table = self.txn.open_table(KEYS).map_err(map_err)?;
        let value = table.get(id).map_err(map_err)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn list_keys(
        &self,
        query: &KeyQuery<'_>,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let table = self.txn.open_table(KEYS).map_err(map_err)?;
        scan_keys(&table, query.after, visit)
    }

    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        let table = self.txn.open_table(USAGE_TOTAL).map_err(map_err)?;
        usage_total(&table, id)
    }

    fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>> {
        let table = self.txn.open_table(USAGE_DAY).map_err(map_err)?;
        usage_days(&table, id, from, to)
    }

    fn usage_per_key(&self, from: u32, to: u32) -> Result<Vec<(u64, u64)>> {
        let totals = self.txn.open_table(USAGE_TOTAL).map_err(map_err)?;
        let days = self.txn.open_table(USAGE_DAY).map_err(map_err)?;
        usage_per_key(&totals, &days, from, to)
    }

    fn scan_audit_newest_first(
        &self,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let table = self.txn.open_table(AUDIT).map_err(map_err)?;
        scan_audit(&table, visit)
    }
}

impl Txn for RedbWrite {
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        let mut table = self.txn.open_table(META).map_err(map_err)?;
        table.insert(name, value).map_err(map_err)?;
        self.everything = true;
        Ok(())
    }

    fn put_key(&mut self, row: &KeyRow<'_>) -> Result<()> {
        let mut table = self.txn.open_table(KEYS).map_err(map_err)?;
        table.insert(row.id, row.record).map_err(map_err)?;
        self.changed.insert(row.id);
        Ok(())
    }

    fn delete_key(&mut self, id: u64) -> Result<bool> {
        let removed = {
            let mut table = self.txn.open_table(KEYS).map_err(map_err)?;
            let removed = table.remove(id).map_err(map_err)?;
            removed.is_some()
        };
        let mut totals = self.txn.open_table(USAGE_TOTAL).map_err(map_err)?;
        totals.remove(id).map_err(map_err)?;
        let mut days = self.txn.open_table(USAGE_DAY).map_err(map_err)?;
        days.retain_in((id, 0)..=(id, u32::MAX), |_, _| false)
            .map_err(map_err)?;
        self.changed.insert(id);
        Ok(removed)
    }

    fn append_audit(&mut self, entry: &[u8]) -> Result<u64> {
        let mut table = self.txn.open_table(AUDIT).map_err(map_err)?;
        let next = match table.last().map_err(map_err)? {
            Some((seq, _)) => seq.value() + 1,
            None => 1,
        };
        table.insert(next, entry).map_err(map_err)?;
        Ok(next)
    }
}
