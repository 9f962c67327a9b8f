//! The embedded default: one redb file, shared by the processes of one host (MultiWriter mode).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{
    ConcurrencyMode, Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::{Backend, Read, Snapshot, Txn, UsageTotal};
use crate::error::{Error, Result};

const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
const KEYS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("keys");
const USAGE_TOTAL: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("usage_total");
const USAGE_DAY: TableDefinition<'static, (u64, u32), u64> = TableDefinition::new("usage_day");
const AUDIT: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("audit");

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

pub(crate) struct RedbFile {
    path: PathBuf,
    cache_size: usize,
    /// The file this handle opened. If the path comes to name another file (a backup renamed
    /// over it) or none, the handle fails closed with `Error::StoreReplaced`.
    identity: FileId,
    /// Replaced by a fresh handle after redb latches a failed write (see `retry`).
    db: RwLock<Arc<Database>>,
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

impl RedbFile {
    /// Opens the store at `path`. A missing or empty file is first built complete — every
    /// table plus `meta` — in a temporary file beside it and then moved into place, so a crash
    /// or a full disk during creation never leaves a half-made store behind. Without `create`,
    /// a missing or empty file is `Error::StoreNotFound` and nothing is made.
    pub(crate) fn open(
        path: &Path,
        cache_size: usize,
        meta: &[(&str, &[u8])],
        create: bool,
    ) -> Result<Self> {
        let size = match std::fs::metadata(path) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::Io(e)),
        };
        if size.is_none_or(|len| len == 0) {
            if !create {
                return Err(Error::StoreNotFound);
            }
            refuse_symlink_at_creation(path)?;
            create_atomically(path, size == Some(0), meta)?;
        }
        let (db, identity) = guard(|| open_db(path, cache_size))?;
        Ok(RedbFile {
            path: path.to_owned(),
            cache_size,
            identity,
            db: RwLock::new(Arc::new(db)),
        })
    }

    /// Fails with `Error::StoreReplaced` unless the path still names the file this handle
    /// opened. One `stat`: run when a snapshot is taken (at most once per refresh interval on
    /// the verify path) and around every write, never per verify.
    fn ensure_same_file(&self) -> Result<()> {
        match std::fs::metadata(&self.path) {
            Ok(meta) if FileId::of(&meta) == self.identity => Ok(()),
            Ok(_) => Err(Error::StoreReplaced),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::StoreReplaced),
            Err(e) => Err(Error::Io(e)),
        }
    }

    fn db(&self) -> Arc<Database> {
        Arc::clone(&self.db.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `op`; if redb refuses because an earlier write failed (it then refuses every
    /// later one until the database is reopened, e.g. after a full disk), reopens the file and
    /// tries once more, so the handle recovers once the cause is gone.
    fn retry<T>(&self, mut op: impl FnMut(&Database) -> Result<T, RetryableError>) -> Result<T> {
        let db = self.db();
        match op(&db) {
            Err(RetryableError::PreviousIo) => {
                let (fresh, identity) = open_db(&self.path, self.cache_size)?;
                // Never carry on with whatever file the path names now.
                if identity != self.identity {
                    return Err(Error::StoreReplaced);
                }
                let fresh = Arc::new(fresh);
                {
                    let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
                    if Arc::ptr_eq(&slot, &db) {
                        *slot = Arc::clone(&fresh);
                    }
                }
                op(&self.db()).map_err(RetryableError::into_error)
            }
            other => other.map_err(RetryableError::into_error),
        }
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
fn create_atomically(path: &Path, replace_empty: bool, meta: &[(&str, &[u8])]) -> Result<()> {
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
                    table.insert(*key, *value).map_err(map_err)?;
                }
            }
            txn.open_table(KEYS).map_err(map_err)?;
            txn.open_table(USAGE_TOTAL).map_err(map_err)?;
            txn.open_table(USAGE_DAY).map_err(map_err)?;
            txn.open_table(AUDIT).map_err(map_err)?;
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

impl Backend for RedbFile {
    fn is_new(&self) -> Result<bool> {
        guard(|| {
            self.retry(|db| {
                let txn = db.begin_read()?;
                let mut tables = txn.list_tables()?;
                Ok(tables.next().is_none())
            })
        })
    }

    fn initialize(&self, meta: &[(&str, &[u8])]) -> Result<bool> {
        guard(|| {
            let txn = self.db().begin_write().map_err(map_err)?;
            {
                let mut table = txn.open_table(META).map_err(map_err)?;
                if !table.is_empty().map_err(map_err)? {
                    return Ok(false);
                }
                for (name, value) in meta {
                    table.insert(*name, *value).map_err(map_err)?;
                }
            }
            txn.open_table(KEYS).map_err(map_err)?;
            txn.open_table(USAGE_TOTAL).map_err(map_err)?;
            txn.open_table(USAGE_DAY).map_err(map_err)?;
            txn.open_table(AUDIT).map_err(map_err)?;
            txn.commit().map_err(map_err)?;
            Ok(true)
        })
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        guard(|| {
            self.ensure_same_file()?;
            self.retry(|db| {
                let txn = db.begin_read()?;
                let keys = txn.open_table(KEYS)?;
                Ok(Box::new(RedbSnapshot { txn, keys }) as Box<dyn Snapshot>)
            })
        })
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<()> {
        guard(|| {
            self.ensure_same_file()?;
            // Retrying after a latched error runs `body` again on a fresh transaction; the failed
            // one committed nothing.
            self.retry(|db| {
                let txn = db.begin_write()?;
                let mut write = RedbWrite { txn };
                match body(&mut write) {
                    Ok(()) => Ok(write.txn.commit()?),
                    Err(e) => {
                        let _ = write.txn.abort();
                        Err(RetryableError::Other(e))
                    }
                }
            })?;
            // A commit that raced with a replacement of the file went to the old file, which no
            // new handle reads: report it as failed rather than done.
            self.ensure_same_file()
        })
    }
}

/// Reads an existing store without opening it for writing, so that checks which refuse it
/// (wrong pepper, prefix or version, not a store at all) leave the file byte-for-byte as it was.
/// Returns `Ok(None)` for a missing or empty file, which is created by the writable open.
pub(crate) fn inspect<T>(
    path: &Path,
    check: impl FnOnce(&dyn Read) -> Result<T>,
) -> Result<Option<T>> {
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
        let keys = txn.open_table(KEYS).map_err(map_err)?;
        let snapshot = RedbSnapshot { txn, keys };
        check(&snapshot).map(Some)
    })
}

/// Runs redb's integrity check on a store file that no other handle in this process has open.
pub(crate) fn check_file_integrity(path: &Path) -> Result<bool> {
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

impl Snapshot for RedbSnapshot {}

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

    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        guard(|| {
            let value = self.keys.get(id).map_err(map_err)?;
            Ok(value.map(|v| copy_head(v.value(), head)))
        })
    }

    fn scan_keys(
        &self,
        after: Option<u64>,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        guard(|| scan_keys(&self.keys, after, visit))
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

    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        let table = self.txn.open_table(KEYS).map_err(map_err)?;
        let value = table.get(id).map_err(map_err)?;
        Ok(value.map(|v| copy_head(v.value(), head)))
    }

    fn scan_keys(
        &self,
        after: Option<u64>,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let table = self.txn.open_table(KEYS).map_err(map_err)?;
        scan_keys(&table, after, visit)
    }

    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        let table = self.txn.open_table(USAGE_TOTAL).map_err(map_err)?;
        usage_total(&table, id)
    }

    fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>> {
        let table = self.txn.open_table(USAGE_DAY).map_err(map_err)?;
        usage_days(&table, id, from, to)
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
        Ok(())
    }

    fn put_key(&mut self, id: u64, record: &[u8]) -> Result<()> {
        let mut table = self.txn.open_table(KEYS).map_err(map_err)?;
        table.insert(id, record).map_err(map_err)?;
        Ok(())
    }

    fn delete_key(&mut self, id: u64) -> Result<bool> {
        let mut table = self.txn.open_table(KEYS).map_err(map_err)?;
        let removed = table.remove(id).map_err(map_err)?;
        Ok(removed.is_some())
    }

    fn add_usage(&mut self, id: u64, day: u32, count: u64, last_used_ms: i64) -> Result<()> {
        let mut totals = self.txn.open_table(USAGE_TOTAL).map_err(map_err)?;
        let old = usage_total(&totals, id)?.unwrap_or_default();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&old.count.saturating_add(count).to_le_bytes());
        bytes[8..].copy_from_slice(&old.last_used_ms.max(last_used_ms).to_le_bytes());
        totals.insert(id, bytes.as_slice()).map_err(map_err)?;
        let mut days = self.txn.open_table(USAGE_DAY).map_err(map_err)?;
        let previous = days
            .get((id, day))
            .map_err(map_err)?
            .map_or(0, |v| v.value());
        days.insert((id, day), previous.saturating_add(count))
            .map_err(map_err)?;
        Ok(())
    }

    fn delete_usage(&mut self, id: u64) -> Result<()> {
        let mut totals = self.txn.open_table(USAGE_TOTAL).map_err(map_err)?;
        totals.remove(id).map_err(map_err)?;
        let mut days = self.txn.open_table(USAGE_DAY).map_err(map_err)?;
        days.retain_in((id, 0)..=(id, u32::MAX), |_, _| false)
            .map_err(map_err)?;
        Ok(())
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
