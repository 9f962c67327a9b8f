//! [`PostgresBackend`] (feature `postgres`): one store shared by the hosts of a fleet.
//!
//! The verify hot path never reaches this module for a cached key; a miss costs one
//! prepared point query. Changes reach other processes two ways: each admin write bumps a
//! gap-free generation under a row lock, logs the ids it changed in `keystead_changes` and
//! sends `NOTIFY keystead` in the same transaction; a listener thread raises the store's
//! change signal on each notification (fast path), and the read path polls the generation
//! every refresh interval (the guarantee, also when the listener is down or `listen=off`).
//! See docs/fleet.md.
//!
//! Connections live on private driver threads ([`worker`]): one for point reads, feed polls
//! and usage upserts, one for admin transactions (opened on the first write), one listener.
//! A child process after `fork` starts its own.

mod url;
mod worker;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

use self::url::Target;
use self::worker::{connect, Conn, Worker};
use super::{
    collect_changes, Backend, Changes, KeyQuery, KeyRow, Meta, Read, Txn, UsageAdd, UsageTotal,
    CHANGE_LOG_KEEP,
};
use crate::error::{Error, Result};
use crate::key::KeyId;
use crate::model::KeyStatus;

/// Newest database schema this build reads and writes.
const SCHEMA_VERSION: i32 = 1;

/// The tables of schema version 1 (docs/fleet.md, "Schema").
const SCHEMA_V1: &str = r#"
CREATE TABLE keystead_meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE keystead_state (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    generation bigint NOT NULL DEFAULT 0
);
INSERT INTO keystead_state DEFAULT VALUES;
CREATE TABLE keystead_keys (
    id          bigint PRIMARY KEY,
    public_id   text COLLATE "C" NOT NULL UNIQUE,
    name        text NOT NULL,
    scopes      text[] NOT NULL,
    metadata    jsonb NOT NULL,
    state       text NOT NULL CHECK (state IN ('active', 'disabled', 'revoked')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    salt        bytea NOT NULL,
    secret_mac  bytea NOT NULL,
    record      bytea NOT NULL,
    generation  bigint NOT NULL
);
CREATE INDEX keystead_keys_name ON keystead_keys (name text_pattern_ops);
CREATE TABLE keystead_changes (
    generation bigint PRIMARY KEY,
    key_ids    bigint[] NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE keystead_usage_daily (
    key_id       bigint NOT NULL,
    day          date NOT NULL,
    uses         bigint NOT NULL,
    last_used_at timestamptz NOT NULL,
    PRIMARY KEY (key_id, day)
);
CREATE TABLE keystead_audit (
    seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    action  text NOT NULL,
    key_id  text COLLATE "C",
    actor   text,
    detail  text NOT NULL,
    entry   bytea NOT NULL
);
"#;

/// Settings of the PostgreSQL backend only; parameters in the location override them.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    listen: bool,
    max_misses_per_sec: u32,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            listen: true,
            max_misses_per_sec: 2000,
        }
    }
}

impl PostgresOptions {
    /// The defaults: LISTEN/NOTIFY on, at most 2,000 database lookups of uncached ids per
    /// second per process.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `false` (or `listen=off` in the location), changes by other processes are seen
    /// by polling every refresh interval only: for a connection through PgBouncer's
    /// transaction pooling, which cannot LISTEN, and to save one connection per process.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// The bound on database lookups of uncached ids per second in this process (or
    /// `max_misses_per_sec=N`). Key ids are public and the checksum is computable, so
    /// random well-formed ids would otherwise each cost a query; above the bound verify
    /// fails with [`Error::StoreUnavailable`], never `not_found`.
    pub fn max_misses_per_sec(mut self, per_sec: u32) -> Self {
        self.max_misses_per_sec = per_sec.max(1);
        self
    }
}

/// A store in a PostgreSQL database (see the module docs and docs/fleet.md).
///
/// # Example
/// ```no_run
/// use keystead::backend::{PostgresBackend, PostgresOptions};
/// use keystead::{KeyStore, Options};
/// let backend = PostgresBackend::new(
///     "postgres://keystead@db.internal/keys?sslmode=verify-full",
///     PostgresOptions::new().listen(false),
/// )?;
/// let store = KeyStore::open_with(backend, Options::new())?;
/// # Ok::<(), keystead::Error>(())
/// ```
pub struct PostgresBackend {
    target: Target,
    listen: bool,
    drivers: ArcSwapOption<Drivers>,
    spawn: Mutex<()>,
    signal: Arc<AtomicU64>,
    misses: Mutex<Bucket>,
    max_misses_per_sec: u32,
    /// Serializes this process's admin transactions on its one writer connection.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("location", &self.target.display)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// The driver threads of one process.
struct Drivers {
    pid: u32,
    query: Worker,
    writer: Worker,
    /// The listener thread stops when this is dropped.
    _alive: Arc<()>,
}

/// A token bucket for misses.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PostgresBackend {
    /// A backend for a `postgres://` or `postgresql://` location. Nothing is connected until
    /// a `KeyStore` opens it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a location that cannot be parsed, an unknown `sslmode`
    /// or an unreadable `sslrootcert` file.
    pub fn new(location: &str, options: PostgresOptions) -> Result<Self> {
        let target = url::parse(location)?;
        let listen = target.listen.unwrap_or(options.listen);
        let max_misses_per_sec = target
            .max_misses_per_sec
            .unwrap_or(options.max_misses_per_sec);
        Ok(PostgresBackend {
            target,
            listen,
            drivers: ArcSwapOption::empty(),
            spawn: Mutex::new(()),
            signal: Arc::new(AtomicU64::new(0)),
            misses: Mutex::new(Bucket {
                tokens: f64::from(max_misses_per_sec),
                at: Instant::now(),
            }),
            max_misses_per_sec,
            write_lock: Mutex::new(()),
        })
    }

    /// This process's drivers, started on first use and again in a child after `fork` (the
    /// parent's threads do not exist there; its connections are never touched).
    fn drivers(&self) -> Result<Arc<Drivers>> {
        let pid = std::process::id();
        if let Some(drivers) = self.drivers.load_full() {
            if drivers.pid == pid {
                return Ok(drivers);
            }
        }
        let _spawning = self.spawn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(drivers) = self.drivers.load_full() {
            if drivers.pid == pid {
                return Ok(drivers);
            }
        }
        let alive = Arc::new(());
        if self.listen {
            spawn_listener(
                self.target.clone(),
                Arc::clone(&self.signal),
                Arc::downgrade(&alive),
            )?;
        }
        let drivers = Arc::new(Drivers {
            pid,
            query: Worker::spawn("keystead-pg", self.target.clone())?,
            writer: Worker::spawn("keystead-pg-write", self.target.clone())?,
            _alive: alive,
        });
        self.drivers.store(Some(Arc::clone(&drivers)));
        Ok(drivers)
    }

    fn query<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.drivers()?.query.run(job)
    }

    fn take_miss_token(&self) -> Result<()> {
        let mut bucket = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        let rate = f64::from(self.max_misses_per_sec);
        let now = Instant::now();
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(rate);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(Error::StoreUnavailable(format!(
                "more than {} database lookups of uncached key ids per second in this process \
                 (max_misses_per_sec); refused to protect the database",
                self.max_misses_per_sec
            )));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

/// The message of a client error that means the database is unavailable.
fn unavailable_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "the database refused: {} ({})",
            db.message(),
            db.code().code()
        ),
        None => format!("cannot reach the database: {}", with_causes(e)),
    }
}

/// An error's text followed by its causes' (the client's own text omits them: "error
/// performing TLS handshake" hides "invalid peer certificate: UnknownIssuer").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Maps a client error: lost or refused connections are `StoreUnavailable`.
fn db_error(e: postgres::Error) -> Error {
    let unavailable = match e.as_db_error() {
        None => is_connection_failure(&e),
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 28: invalid authorization; 57P0x: shutdown,
            // cannot connect now; 53: insufficient resources (too many connections).
            code.starts_with("08")
                || code.starts_with("28")
                || code.starts_with("57P")
                || code.starts_with("53")
        }
    };
    if unavailable {
        Error::StoreUnavailable(unavailable_message(&e))
    } else if e
        .as_db_error()
        .is_some_and(|db| db.code().code() == "42P01")
    {
        Error::Corrupt(format!(
            "the database holds no complete keystead schema: {}",
            describe(&e)
        ))
    } else {
        Error::Storage(format!("database error: {}", describe(&e)))
    }
}

/// The server's message and code for a database error (its `Display` says only "db error").
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => with_causes(e),
    }
}

/// A failure to connect, or of the connection (not of a statement or its parameters).
fn is_connection_failure(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if inner.is::<std::io::Error>() {
            return true;
        }
        source = inner.source();
    }
    let text = e.to_string();
    text.starts_with("error connecting")
        || text.starts_with("error performing TLS")
        || text.contains("timed out")
}

/// A job's error: on a lost connection the connection is dropped so the next call reconnects.
fn failed(conn: &mut Conn, e: postgres::Error) -> Error {
    if is_connection_failure(&e) {
        let in_txn = conn.in_txn;
        conn.reset();
        conn.in_txn = in_txn;
    }
    db_error(e)
}

/// A key id as stored in a `bigint` column: the sign bit flipped, so that `ORDER BY id`
/// is the ids' unsigned order (`public_id` holds the id as it appears in keys).
fn i(id: u64) -> i64 {
    (id ^ (1 << 63)) as i64
}

fn u(id: i64) -> u64 {
    (id as u64) ^ (1 << 63)
}

/// A generation or sequence number (well below 2^63) as a `bigint`.
fn g(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn n(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn spawn_listener(
    target: Target,
    signal: Arc<AtomicU64>,
    alive: std::sync::Weak<()>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("keystead-pg-listen".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            while alive.upgrade().is_some() {
                let Ok(mut client) = connect(&target) else {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                };
                if client.batch_execute("LISTEN keystead").is_err() {
                    std::thread::sleep(backoff);
                    continue;
                }
                // Which store this is (the channel is shared by every keystead store in the
                // database, one per schema), and anything committed while this thread was not
                // listening. Without the table yet (the store is being created), try again.
                let Ok(row) = client.query_one(
                    "SELECT 'keystead_state'::regclass::oid::bigint, generation FROM keystead_state",
                    &[],
                ) else {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                };
                backoff = Duration::from_millis(100);
                let store: i64 = row.get(0);
                signal.fetch_max(n(row.get(1)), Ordering::Relaxed);
                // LISTEN again (a no-op) so that the connection's last statement, which
                // operators see in pg_stat_activity, names what it is for.
                if client.batch_execute("LISTEN keystead").is_err() {
                    continue;
                }
                while alive.upgrade().is_some() {
                    let next = client
                        .notifications()
                        .timeout_iter(Duration::from_millis(250))
                        .next();
                    match next {
                        Ok(Some(note)) => {
                            if let Some(generation) = generation_for(store, note.payload()) {
                                signal.fetch_max(generation, Ordering::Relaxed);
                            }
                        }
                        Err(_) => break,
                        Ok(None) if client.is_closed() => break,
                        Ok(None) => {}
                    }
                }
            }
        })?;
    Ok(())
}

/// The generation a `NOTIFY keystead` payload (`<store>:<generation>`, where `<store>` is the
/// oid of the store's `keystead_state` table) announces for the store `store`; `None` for
/// another store's notification (any other schema in the same database) or a payload in any
/// other form (an older writer's bare generation, which cannot be told apart from another
/// store's: the poll every refresh interval still sees that change).
fn generation_for(store: i64, payload: &str) -> Option<u64> {
    let (of, generation) = payload.split_once(':')?;
    if of.parse::<i64>().ok()? != store {
        return None;
    }
    generation.parse().ok()
}

/// The installed schema version, or `None` without keystead's tables.
fn schema_version(conn: &mut Conn) -> Result<Option<i32>> {
    let client = conn.client()?;
    let row = client
        .query_one(
            "SELECT to_regclass('keystead_schema_version') IS NOT NULL, \
                    to_regclass('keystead_meta') IS NOT NULL",
            &[],
        )
        .map_err(|e| failed(conn, e))?;
    let (versions, meta): (bool, bool) = (row.get(0), row.get(1));
    if !versions || !meta {
        return Ok(None);
    }
    let client = conn.client()?;
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM keystead_schema_version",
            &[],
        )
        .map_err(|e| failed(conn, e))?;
    let version: i32 = row.get(0);
    if version > SCHEMA_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "database schema",
            found: version as u32,
            supported: SCHEMA_VERSION as u32,
        });
    }
    Ok((version > 0).then_some(version))
}

fn read_meta(conn: &mut Conn) -> Result<Meta> {
    let client = conn.client()?;
    let rows = client
        .query("SELECT name, value FROM keystead_meta", &[])
        .map_err(|e| failed(conn, e))?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, Vec<u8>>(1)))
        .collect())
}

/// Applies missing migrations and writes `initial` meta rows if there are none, in one
/// transaction under an advisory lock, so concurrent openers apply each migration once.
fn migrate(conn: &mut Conn, initial: &Meta) -> Result<()> {
    let result = (|| -> Result<()> {
        let client = conn.client()?;
        client
            .batch_execute(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('keystead:migrate')); \
                 CREATE TABLE IF NOT EXISTS keystead_schema_version ( \
                     version int PRIMARY KEY, name text NOT NULL, \
                     applied_at timestamptz NOT NULL DEFAULT now(), \
                     applied_by text NOT NULL DEFAULT current_user)",
            )
            .map_err(db_error)?;
        let version: i32 = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM keystead_schema_version",
                &[],
            )
            .map_err(db_error)?
            .get(0);
        if version > SCHEMA_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "database schema",
                found: version as u32,
                supported: SCHEMA_VERSION as u32,
            });
        }
        if version < 1 {
            client.batch_execute(SCHEMA_V1).map_err(db_error)?;
            client
                .execute(
                    "INSERT INTO keystead_schema_version (version, name) VALUES (1, 'initial')",
                    &[],
                )
                .map_err(db_error)?;
        }
        let present: i64 = client
            .query_one("SELECT count(*) FROM keystead_meta", &[])
            .map_err(db_error)?
            .get(0);
        if present == 0 {
            for (name, value) in initial {
                client
                    .execute(
                        "INSERT INTO keystead_meta (name, value) VALUES ($1, $2) \
                         ON CONFLICT (name) DO NOTHING",
                        &[name, value],
                    )
                    .map_err(db_error)?;
            }
        }
        client.batch_execute("COMMIT").map_err(db_error)?;
        Ok(())
    })();
    if result.is_err() {
        if let Ok(client) = conn.client() {
            let _ = client.batch_execute("ROLLBACK");
        }
    }
    result
}

impl Backend for PostgresBackend {
    fn inspect(&self) -> Result<Option<Meta>> {
        self.query(|conn| {
            if schema_version(conn)?.is_none() {
                return Ok(None);
            }
            let meta = read_meta(conn)?;
            Ok((!meta.is_empty()).then_some(meta))
        })
    }

    fn open(&self, initial: &Meta, create: bool) -> Result<Meta> {
        let initial = initial.clone();
        self.query(move |conn| {
            let exists =
                schema_version(conn)? == Some(SCHEMA_VERSION) && !read_meta(conn)?.is_empty();
            if !exists {
                if !create {
                    return Err(Error::StoreNotFound);
                }
                migrate(conn, &initial)?;
            }
            read_meta(conn)
        })
    }

    fn check_integrity(&self) -> Result<bool> {
        self.query(|conn| {
            if schema_version(conn)? != Some(SCHEMA_VERSION) {
                return Ok(false);
            }
            let client = conn.client()?;
            let row = client
                .query_one(
                    "SELECT (SELECT count(*) FROM keystead_state) = 1, \
                            coalesce((SELECT max(c.generation) FROM keystead_changes c), 0) \
                              <= (SELECT generation FROM keystead_state), \
                            NOT EXISTS (SELECT 1 FROM keystead_keys k \
                                        WHERE k.generation > (SELECT generation FROM keystead_state))",
                    &[],
                )
                .map_err(|e| failed(conn, e))?;
            Ok(row.get::<_, bool>(0) && row.get::<_, bool>(1) && row.get::<_, bool>(2))
        })
    }

    fn changes_since(&self, since: Option<u64>) -> Result<Changes> {
        self.query(move |conn| {
            let (statement, client) = conn.prepared("SELECT generation FROM keystead_state")?;
            let generation = client.query_one(&statement, &[]);
            let generation = n(generation.map_err(|e| failed(conn, e))?.get(0));
            let changed = match since {
                Some(since) if since < generation => {
                    let (statement, client) = conn.prepared(
                        "SELECT generation, key_ids FROM keystead_changes \
                         WHERE generation > $1 AND generation <= $2 ORDER BY generation",
                    )?;
                    let rows = client.query(&statement, &[&g(since), &g(generation)]);
                    let rows = rows.map_err(|e| failed(conn, e))?;
                    let entries = rows.into_iter().map(|row| {
                        let ids: Vec<i64> = row.get(1);
                        (n(row.get(0)), ids.into_iter().map(u).collect::<Vec<u64>>())
                    });
                    collect_changes(Some(since), generation, entries)
                }
                since => collect_changes(since, generation, std::iter::empty()),
            };
            Ok(Changes {
                generation,
                changed,
            })
        })
    }

    fn key_head(&self, id: u64, head: &mut [u8]) -> Result<Option<usize>> {
        self.take_miss_token()?;
        let record = Backend::key(self, id)?;
        Ok(record.map(|record| {
            let n = record.len().min(head.len());
            head[..n].copy_from_slice(&record[..n]);
            record.len()
        }))
    }

    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        self.query(move |conn| key_of(conn, id))
    }

    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        self.query(move |conn| usage_total_of(conn, id))
    }

    fn change_signal(&self) -> Option<Arc<AtomicU64>> {
        self.listen.then(|| Arc::clone(&self.signal))
    }

    fn read(&self) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(PgRead {
            drivers: self.drivers()?,
        }))
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>) -> Result<u64> {
        let _writing = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let drivers = self.drivers()?;
        let generation = drivers.writer.run(|conn| {
            conn.in_txn = false;
            let client = conn.client()?;
            let begun = client.batch_execute("BEGIN").and_then(|()| {
                client.query_one("SELECT generation FROM keystead_state FOR UPDATE", &[])
            });
            match begun {
                Ok(row) => {
                    conn.in_txn = true;
                    Ok(n(row.get(0)))
                }
                Err(e) => {
                    let _ = conn.client().map(|c| c.batch_execute("ROLLBACK"));
                    Err(failed(conn, e))
                }
            }
        })?;
        let mut txn = PgTxn {
            drivers: Arc::clone(&drivers),
            next: generation.wrapping_add(1),
            changed: BTreeSet::new(),
            everything: false,
        };
        if let Err(e) = body(&mut txn) {
            let _ = drivers.writer.run(|conn| {
                conn.in_txn = false;
                if let Ok(client) = conn.client() {
                    let _ = client.batch_execute("ROLLBACK");
                }
                Ok(())
            });
            return Err(e);
        }
        let PgTxn {
            next,
            changed,
            everything,
            ..
        } = txn;
        drivers.writer.run(move |conn| {
            let result = (|| -> Result<u64> {
                let client = conn.client()?;
                let committed = if everything || !changed.is_empty() {
                    let ids: Vec<i64> = if everything {
                        Vec::new()
                    } else {
                        changed.iter().map(|&id| i(id)).collect()
                    };
                    let floor = g(next.saturating_sub(CHANGE_LOG_KEEP));
                    client
                        .execute(
                            "UPDATE keystead_state SET generation = $1",
                            &[&g(next)],
                        )
                        .and_then(|_| {
                            client.execute(
                                "INSERT INTO keystead_changes (generation, key_ids) VALUES ($1, $2)",
                                &[&g(next), &ids],
                            )
                        })
                        .and_then(|_| {
                            client.execute(
                                "DELETE FROM keystead_changes WHERE generation <= $1",
                                &[&floor],
                            )
                        })
                        .and_then(|_| {
                            client.execute(
                                "SELECT pg_notify('keystead', \
                                 'keystead_state'::regclass::oid::bigint || ':' || $1::text)",
                                &[&next.to_string()],
                            )
                        })
                        .map(|_| next)
                } else {
                    Ok(next.wrapping_sub(1))
                };
                let generation = committed.map_err(db_error)?;
                client.batch_execute("COMMIT").map_err(db_error)?;
                Ok(generation)
            })();
            if result.is_err() {
                if let Ok(client) = conn.client() {
                    let _ = client.batch_execute("ROLLBACK");
                }
            }
            conn.in_txn = false;
            result
        })
    }

    fn add_usage(&self, batch: &[UsageAdd]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = batch.iter().map(|a| i(a.id)).collect();
        let days: Vec<i32> = batch.iter().map(|a| a.day as i32).collect();
        let counts: Vec<i64> = batch
            .iter()
            .map(|a| i64::try_from(a.count).unwrap_or(i64::MAX))
            .collect();
        let lasts: Vec<i64> = batch.iter().map(|a| a.last_used_ms).collect();
        self.query(move |conn| {
            // The batch is sorted by (id, day) with no repeats (the store aggregates it), so
            // concurrent flushers lock rows in one order and each row appears once.
            let (statement, client) = conn.prepared(
                "INSERT INTO keystead_usage_daily (key_id, day, uses, last_used_at) \
                 SELECT u.id, DATE '1970-01-01' + u.day, u.n, \
                        TIMESTAMPTZ 'epoch' + u.last * INTERVAL '1 millisecond' \
                 FROM unnest($1::int8[], $2::int4[], $3::int8[], $4::int8[]) \
                      WITH ORDINALITY AS u(id, day, n, last, ord) \
                 WHERE EXISTS (SELECT 1 FROM keystead_keys k WHERE k.id = u.id) \
                 ORDER BY u.ord \
                 ON CONFLICT (key_id, day) DO UPDATE \
                 SET uses = keystead_usage_daily.uses + excluded.uses, \
                     last_used_at = greatest(keystead_usage_daily.last_used_at, excluded.last_used_at)",
            )?;
            let done = client.execute(&statement, &[&ids, &days, &counts, &lasts]);
            done.map(drop).map_err(|e| failed(conn, e))
        })
    }
}

fn key_of(conn: &mut Conn, id: u64) -> Result<Option<Vec<u8>>> {
    let (statement, client) = conn.prepared("SELECT record FROM keystead_keys WHERE id = $1")?;
    let row = client.query_opt(&statement, &[&i(id)]);
    Ok(row.map_err(|e| failed(conn, e))?.map(|row| row.get(0)))
}

fn usage_total_of(conn: &mut Conn, id: u64) -> Result<Option<UsageTotal>> {
    let (statement, client) = conn.prepared(
        "SELECT sum(uses)::int8, \
                (extract(epoch FROM max(last_used_at)) * 1000)::int8 \
         FROM keystead_usage_daily WHERE key_id = $1",
    )?;
    let row = client.query_one(&statement, &[&i(id)]);
    let row = row.map_err(|e| failed(conn, e))?;
    let count: Option<i64> = row.get(0);
    let last: Option<i64> = row.get(1);
    Ok(count.map(|count| UsageTotal {
        count: n(count),
        last_used_ms: last.unwrap_or(0),
    }))
}

/// Reads shared by [`PgRead`] (autocommit, on the query connection) and [`PgTxn`] (inside
/// the write transaction, on the writer connection).
fn read_on(worker: &Worker) -> WorkerRead<'_> {
    WorkerRead(worker)
}

struct WorkerRead<'a>(&'a Worker);

impl WorkerRead<'_> {
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.0.run(move |conn| {
            let client = conn.client()?;
            let row = client.query_opt("SELECT value FROM keystead_meta WHERE name = $1", &[&name]);
            Ok(row.map_err(|e| failed(conn, e))?.map(|row| row.get(0)))
        })
    }

    fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
        self.0.run(move |conn| key_of(conn, id))
    }

    fn list_keys(
        &self,
        query: &KeyQuery<'_>,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        const PAGE: i64 = 500;
        let mut after = query.after.map(i);
        let name_prefix = query.name_prefix.map(like_prefix);
        let scope = query.scope.map(str::to_owned);
        let state = query.state.map(state_text);
        let expires_before = query.expires_before_ms;
        loop {
            let (name_prefix, scope, state) = (name_prefix.clone(), scope.clone(), state);
            let page: Vec<(u64, Vec<u8>)> = self.0.run(move |conn| {
                let client = conn.client()?;
                let rows = client.query(
                    "SELECT id, record FROM keystead_keys \
                     WHERE ($1::int8 IS NULL OR id > $1) \
                       AND ($2::text IS NULL OR name LIKE $2) \
                       AND ($3::text IS NULL OR $3 = ANY (scopes)) \
                       AND ($4::text IS NULL OR state = $4) \
                       AND ($5::int8 IS NULL OR expires_at <= TIMESTAMPTZ 'epoch' + $5::int8 * INTERVAL '1 millisecond') \
                     ORDER BY id LIMIT $6",
                    &[&after, &name_prefix, &scope, &state, &expires_before, &PAGE],
                );
                let rows = rows.map_err(|e| failed(conn, e))?;
                Ok(rows
                    .into_iter()
                    .map(|row| (u(row.get(0)), row.get(1)))
                    .collect())
            })?;
            let full = page.len() as i64 == PAGE;
            for (id, record) in &page {
                if !visit(*id, record)? {
                    return Ok(());
                }
                after = Some(i(*id));
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
        self.0.run(move |conn| usage_total_of(conn, id))
    }

    fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>> {
        if from > to || from > LAST_DAY {
            return Ok(Vec::new());
        }
        let (from, to) = (from, to.min(LAST_DAY));
        self.0.run(move |conn| {
            let client = conn.client()?;
            let rows = client.query(
                "SELECT (day - DATE '1970-01-01')::int8, uses FROM keystead_usage_daily \
                 WHERE key_id = $1 AND day BETWEEN DATE '1970-01-01' + $2::int4 \
                                               AND DATE '1970-01-01' + $3::int4 \
                 ORDER BY day",
                &[&i(id), &(from as i32), &(to as i32)],
            );
            let rows = rows.map_err(|e| failed(conn, e))?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    (
                        u32::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                        n(row.get(1)),
                    )
                })
                .collect())
        })
    }

    fn usage_per_key(&self, from: u32, to: u32) -> Result<Vec<(u64, u64)>> {
        if from > to || from > LAST_DAY {
            return Ok(Vec::new());
        }
        let (from, to) = (from as i32, to.min(LAST_DAY) as i32);
        self.0.run(move |conn| {
            // One statement: the sums per key, of keys that still exist (a flush racing a
            // delete could otherwise leave rows of a deleted key behind).
            let (statement, client) = conn.prepared(
                "SELECT u.key_id, sum(u.uses)::int8 FROM keystead_usage_daily u \
                 WHERE u.day BETWEEN DATE '1970-01-01' + $1::int4 \
                                 AND DATE '1970-01-01' + $2::int4 \
                   AND EXISTS (SELECT 1 FROM keystead_keys k WHERE k.id = u.key_id) \
                 GROUP BY u.key_id HAVING sum(u.uses) > 0 ORDER BY u.key_id",
            )?;
            let rows = client.query(&statement, &[&from, &to]);
            let rows = rows.map_err(|e| failed(conn, e))?;
            Ok(rows
                .into_iter()
                .map(|row| (u(row.get(0)), n(row.get(1))))
                .collect())
        })
    }

    fn scan_audit_newest_first(
        &self,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut before = i64::MAX;
        loop {
            let page: Vec<(i64, Vec<u8>)> = self.0.run(move |conn| {
                let client = conn.client()?;
                let rows = client.query(
                    "SELECT seq, entry FROM keystead_audit WHERE seq < $1 ORDER BY seq DESC LIMIT 200",
                    &[&before],
                );
                let rows = rows.map_err(|e| failed(conn, e))?;
                Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
            })?;
            for (seq, entry) in &page {
                if !visit(n(*seq), entry)? {
                    return Ok(());
                }
                before = *seq;
            }
            if page.len() < 200 {
                return Ok(());
            }
        }
    }
}

/// The last UTC day a store holds usage for (9999-12-31, the latest time the store accepts).
/// Ranges of days are clamped to it, so that a range to `u32::MAX` (all days) neither wraps
/// in the `int4` parameter nor leaves PostgreSQL's date range.
const LAST_DAY: u32 = 2_932_896;

/// `prefix%` for LIKE, with `%`, `_` and `\` escaped.
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn state_text(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Disabled => "disabled",
        KeyStatus::Revoked => "revoked",
        _ => "active",
    }
}

/// Admin reads: each answered from the latest committed state.
struct PgRead {
    drivers: Arc<Drivers>,
}

macro_rules! forward_read {
    ($t:ty, $worker:ident) => {
        impl Read for $t {
            fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
                read_on(&self.drivers.$worker).meta(name)
            }
            fn key(&self, id: u64) -> Result<Option<Vec<u8>>> {
                read_on(&self.drivers.$worker).key(id)
            }
            fn list_keys(
                &self,
                query: &KeyQuery<'_>,
                visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
            ) -> Result<()> {
                read_on(&self.drivers.$worker).list_keys(query, visit)
            }
            fn usage_total(&self, id: u64) -> Result<Option<UsageTotal>> {
                read_on(&self.drivers.$worker).usage_total(id)
            }
            fn usage_days(&self, id: u64, from: u32, to: u32) -> Result<Vec<(u32, u64)>> {
                read_on(&self.drivers.$worker).usage_days(id, from, to)
            }
            fn usage_per_key(&self, from: u32, to: u32) -> Result<Vec<(u64, u64)>> {
                read_on(&self.drivers.$worker).usage_per_key(from, to)
            }
            fn scan_audit_newest_first(
                &self,
                visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
            ) -> Result<()> {
                read_on(&self.drivers.$worker).scan_audit_newest_first(visit)
            }
        }
    };
}

forward_read!(PgRead, query);
forward_read!(PgTxn, writer);

/// A write transaction on the writer connection, holding the `keystead_state` row lock from
/// its start (so generations, audit sequence numbers and commits are in one order).
struct PgTxn {
    drivers: Arc<Drivers>,
    /// The generation this transaction commits as, if it changes keys.
    next: u64,
    changed: BTreeSet<u64>,
    everything: bool,
}

impl Txn for PgTxn {
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        let (name, value) = (name.to_owned(), value.to_vec());
        self.drivers.writer.run(move |conn| {
            let client = conn.client()?;
            let done = client.execute(
                "INSERT INTO keystead_meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &value],
            );
            done.map(drop).map_err(|e| failed(conn, e))
        })?;
        self.everything = true;
        Ok(())
    }

    fn put_key(&mut self, row: &KeyRow<'_>) -> Result<()> {
        let params = OwnedRow::of(row, self.next);
        self.drivers.writer.run(move |conn| {
            let (statement, client) = conn.prepared(
                "INSERT INTO keystead_keys (id, public_id, name, scopes, metadata, state, \
                     created_at, updated_at, expires_at, salt, secret_mac, record, generation) \
                 VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, \
                     TIMESTAMPTZ 'epoch' + $7::int8 * INTERVAL '1 millisecond', \
                     TIMESTAMPTZ 'epoch' + $8::int8 * INTERVAL '1 millisecond', \
                     TIMESTAMPTZ 'epoch' + $9::int8 * INTERVAL '1 millisecond', $10, $11, $12, $13) \
                 ON CONFLICT (id) DO UPDATE SET public_id = excluded.public_id, \
                     name = excluded.name, scopes = excluded.scopes, metadata = excluded.metadata, \
                     state = excluded.state, created_at = excluded.created_at, \
                     updated_at = excluded.updated_at, expires_at = excluded.expires_at, \
                     salt = excluded.salt, secret_mac = excluded.secret_mac, \
                     record = excluded.record, generation = excluded.generation",
            )?;
            let p = &params;
            let values: [&(dyn ToSql + Sync); 13] = [
                &p.id,
                &p.public_id,
                &p.name,
                &p.scopes,
                &p.metadata,
                &p.state,
                &p.created_at,
                &p.updated_at,
                &p.expires_at,
                &p.salt,
                &p.secret_mac,
                &p.record,
                &p.generation,
            ];
            let done = client.execute(&statement, &values);
            done.map(drop).map_err(|e| failed(conn, e))
        })?;
        self.changed.insert(row.id);
        Ok(())
    }

    fn delete_key(&mut self, id: u64) -> Result<bool> {
        let existed = self.drivers.writer.run(move |conn| {
            let client = conn.client()?;
            let done = client
                .execute("DELETE FROM keystead_keys WHERE id = $1", &[&i(id)])
                .and_then(|n| {
                    client
                        .execute(
                            "DELETE FROM keystead_usage_daily WHERE key_id = $1",
                            &[&i(id)],
                        )
                        .map(|_| n)
                });
            done.map(|n| n > 0).map_err(|e| failed(conn, e))
        })?;
        self.changed.insert(id);
        Ok(existed)
    }

    fn append_audit(&mut self, entry: &[u8]) -> Result<u64> {
        // The readable columns are a copy for operators; `entry` is what the store reads.
        let decoded = crate::audit::decode(0, entry)?;
        let at_ms = crate::time::to_ms(decoded.at);
        let action = decoded.action.as_str().to_owned();
        let key_id = decoded.key_id.to_string();
        let actor = decoded.actor.clone();
        let detail = decoded.detail.clone();
        let entry = entry.to_vec();
        self.drivers.writer.run(move |conn| {
            let client = conn.client()?;
            let row = client.query_one(
                "INSERT INTO keystead_audit (at, action, key_id, actor, detail, entry) \
                 VALUES (TIMESTAMPTZ 'epoch' + $1::int8 * INTERVAL '1 millisecond', $2, $3, $4, $5, $6) \
                 RETURNING seq",
                &[&at_ms, &action, &key_id, &actor, &detail, &entry],
            );
            Ok(n(row.map_err(|e| failed(conn, e))?.get(0)))
        })
    }
}

/// A key row's values, owned, for the driver thread.
struct OwnedRow {
    id: i64,
    public_id: String,
    name: String,
    scopes: Vec<String>,
    metadata: String,
    state: &'static str,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    salt: Vec<u8>,
    secret_mac: Vec<u8>,
    record: Vec<u8>,
    generation: i64,
}

impl OwnedRow {
    fn of(row: &KeyRow<'_>, generation: u64) -> OwnedRow {
        OwnedRow {
            id: i(row.id),
            public_id: KeyId::from_u64(row.id).to_string(),
            name: row.name.to_owned(),
            scopes: row.scopes.to_vec(),
            metadata: json_object(row.metadata),
            state: state_text(row.state),
            created_at: row.created_at_ms,
            updated_at: row.updated_at_ms,
            expires_at: row.expires_at_ms,
            salt: row.salt.to_vec(),
            secret_mac: row.secret_hash.to_vec(),
            record: row.record.to_vec(),
            generation: g(generation),
        }
    }
}

/// A JSON object of string values.
fn json_object(map: &std::collections::BTreeMap<String, String>) -> String {
    fn string(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    let mut out = String::from("{");
    for (n, (key, value)) in map.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        string(&mut out, key);
        out.push(':');
        string(&mut out, value);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_becomes_valid_json() {
        let mut map = std::collections::BTreeMap::new();
        map.insert("team".to_owned(), "a\"b\\c\nd".to_owned());
        map.insert("x".to_owned(), String::new());
        assert_eq!(json_object(&map), r#"{"team":"a\"b\\c\u000ad","x":""}"#);
        assert_eq!(like_prefix("a_b%"), "a\\_b\\%%");
    }

    #[test]
    fn a_notification_counts_only_for_its_own_store() {
        assert_eq!(generation_for(16_384, "16384:7"), Some(7));
        assert_eq!(generation_for(16_384, "16385:7"), None);
        // An older writer's bare generation could be any store's.
        assert_eq!(generation_for(16_384, "7"), None);
        for junk in [
            "",
            ":",
            "16384:",
            ":7",
            "16384:x",
            "x:7",
            "16384:7:8",
            "16384:-1",
        ] {
            assert_eq!(generation_for(16_384, junk), None, "{junk:?}");
        }
    }
}
