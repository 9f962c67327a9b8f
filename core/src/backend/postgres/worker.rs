//! Driver threads: each owns one connection and runs the jobs sent to it, so callers on any
//! thread — plain threads, Python threads, a Node or tokio task — use the database without a
//! runtime of their own (the client crate's blocking calls panic inside a tokio runtime, and
//! a driver thread is never inside one).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use postgres::{Client, Statement};

use super::url::{Target, Tls};
use crate::error::{Error, Result};

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// After a failed connect, calls fail at once with its error for this long instead of
/// waiting for another connect timeout each (an outage must not stall every verify).
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// One connection, opened on first use and again after it was lost.
pub(super) struct Conn {
    target: Target,
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
    failed: Option<(Instant, String)>,
    /// A transaction is open: a lost connection must not be silently replaced mid-way.
    pub(super) in_txn: bool,
}

impl Conn {
    /// The connected client, connecting if needed.
    pub(super) fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
            self.statements.clear();
            if self.in_txn {
                return Err(Error::StoreUnavailable(
                    "the database connection was lost during a write; nothing of it was \
                     committed"
                        .into(),
                ));
            }
        }
        if self.client.is_none() {
            if let Some((at, why)) = &self.failed {
                if at.elapsed() < RETRY_AFTER {
                    return Err(Error::StoreUnavailable(why.clone()));
                }
            }
            match connect(&self.target) {
                Ok(client) => {
                    self.failed = None;
                    self.client = Some(client);
                }
                Err(e) => {
                    let why = super::unavailable_message(&e);
                    self.failed = Some((Instant::now(), why.clone()));
                    return Err(Error::StoreUnavailable(why));
                }
            }
        }
        self.client
            .as_mut()
            .ok_or_else(|| Error::StoreUnavailable("no connection".into()))
    }

    /// A prepared statement (prepared once per connection).
    pub(super) fn prepared(&mut self, sql: &'static str) -> Result<(Statement, &mut Client)> {
        if !self.statements.contains_key(sql) || self.client.as_ref().is_none_or(Client::is_closed)
        {
            let client = self.client()?;
            let statement = client.prepare(sql).map_err(super::db_error)?;
            self.statements.insert(sql, statement);
        }
        let statement = self.statements[sql].clone();
        Ok((statement, self.client()?))
    }

    /// Drops the connection (after an error that may have left it in an unknown state).
    pub(super) fn reset(&mut self) {
        self.client = None;
        self.statements.clear();
        self.in_txn = false;
    }
}

pub(super) fn connect(target: &Target) -> Result<Client, postgres::Error> {
    match &target.tls {
        Tls::Off => target.config.connect(postgres::NoTls),
        Tls::Rustls(config) => {
            target
                .config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                    (**config).clone(),
                ))
        }
    }
}

/// A driver thread and the queue of jobs it runs, in order.
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    pub(super) fn spawn(name: &str, target: Target) -> Result<Worker> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut conn = Conn {
                    target,
                    client: None,
                    statements: HashMap::new(),
                    failed: None,
                    in_txn: false,
                };
                // Ends when every sender is gone (the backend was dropped).
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })?;
        Ok(Worker { jobs })
    }

    /// Runs `job` on the driver thread and waits for its result. A panic inside it becomes
    /// an error and the connection is dropped.
    pub(super) fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, result) = mpsc::sync_channel(1);
        let boxed: Job = Box::new(move |conn: &mut Conn| {
            let outcome =
                std::panic::catch_unwind(AssertUnwindSafe(|| job(conn))).unwrap_or_else(|_| {
                    conn.reset();
                    Err(Error::Storage(
                        "the database driver failed on this call".into(),
                    ))
                });
            let _ = reply.send(outcome);
        });
        self.jobs
            .send(boxed)
            .map_err(|_| Error::StoreUnavailable("the database driver thread is gone".into()))?;
        result
            .recv()
            .map_err(|_| Error::StoreUnavailable("the database driver thread stopped".into()))?
    }
}
