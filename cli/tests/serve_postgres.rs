//! `keystead serve --db postgres://…`: checks on a PostgreSQL store, a revoke made by another
//! process seen, and 503 with `Retry-After` once the database cannot be reached. The server
//! reaches PostgreSQL through a TCP relay in this test that can cut every connection.
//! Needs the server `scripts/test-postgres.sh` starts (`KEYSTEAD_TEST_PG_URL`); without it the
//! test fails, it does not skip.

#![allow(dead_code)]

mod serve_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serve_support::*;

/// Forwards connections to `target` until [`Relay::cut`].
struct Relay {
    addr: String,
    stop: Arc<AtomicBool>,
    /// While set, nothing is forwarded: the database seems to hang.
    frozen: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stop2, open2, frozen2) = (Arc::clone(&stop), Arc::clone(&open), Arc::clone(&frozen));
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut open = open2.lock().unwrap();
                // `cut` sets `stop` under this lock: a connection accepted as it ran is dropped.
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&frozen2),
                );
                pipe(server, client, Arc::clone(&frozen2));
            }
            // Dropping the listener refuses every later connection.
        });
        Relay {
            addr,
            stop,
            frozen,
            open,
        }
    }

    /// Stops accepting and closes every relayed connection.
    fn cut(&self) {
        let mut open = self.open.lock().unwrap();
        self.stop.store(true, Ordering::SeqCst);
        for s in open.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, frozen: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            while frozen.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
            }
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Read before the freeze, held until it ends.
                    while frozen.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(20));
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// A fresh schema in the test database: (the direct URL, the relayed URL, the relay).
fn locations(test: &str) -> (String, String, Relay) {
    let url = std::env::var("KEYSTEAD_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "KEYSTEAD_TEST_PG_URL is not set: run through scripts/test-postgres.sh (the \
             README's test command does)"
        )
    });
    let schema = format!("ks_serve_{test}_{}", std::process::id());
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    // postgres://user:pw@HOST:PORT/db
    let (before, rest) = url.split_once('@').unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let relay = Relay::start(hostport.to_owned());
    let query = format!("?sslmode=disable&options=-csearch_path%3D{schema}");
    (
        format!("{url}{query}"),
        format!("{before}@{}/{db}{query}", relay.addr),
        relay,
    )
}

#[test]
fn serve_checks_keys_on_postgres_and_answers_503_when_it_is_gone() {
    let (direct, relayed, relay) = locations("gone");
    let admin = TestStore::at(direct);
    let (key, id) = admin.create("pg key ✓", &["chat:write"]);
    let (other, other_id) = admin.create("other", &[]);

    let served = TestStore::at(relayed);
    let server = Server::start(&served, &["--refresh-interval", "1s"]);
    let auth = format!("Bearer {key}");
    let r = server.get(
        "/check",
        &[
            ("Authorization", &auth),
            ("X-Keystead-Required-Scopes", "chat:write"),
        ],
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("x-keystead-key-id"), Some(id.as_str()));
    assert_eq!(
        percent_decode(r.header("x-keystead-key-name").unwrap()),
        "pg key ✓"
    );
    let r = server.get("/check", &[("Authorization", &format!("Bearer {other}"))]);
    assert_eq!(r.status, 204, "{r:?}");

    // A revoke by another process (the CLI, straight to the database) is seen.
    admin.cli(&["revoke", &other_id]);
    let r = poll(|| {
        let r = server.get("/check", &[("Authorization", &format!("Bearer {other}"))]);
        (r.status != 204).then_some(r)
    });
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("x-keystead-outcome"), Some("revoked"));

    // The database is gone: a key that is not cached cannot be judged, and is never called
    // unknown: 503 with Retry-After.
    relay.cut();
    let unknown = served.unknown_id(&key);
    let r = server.get("/check", &[("Authorization", &format!("Bearer {unknown}"))]);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("www-authenticate"), None);
    let metrics = server.get("/metrics", &[]).body;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("keystead_check_requests_total{status=\"503\"} ")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[test]
fn a_check_that_waits_on_a_hung_database_is_answered_503_at_the_request_timeout() {
    let (direct, relayed, relay) = locations("hung");
    let admin = TestStore::at(direct);
    let (key, _) = admin.create("k", &[]);
    let served = TestStore::at(relayed);
    let server = Server::start(&served, &["--request-timeout", "1s"]);
    // The first check reads the key through the relay; a busy machine can take longer than
    // the 1 s timeout for that (503 "timed out"), and the read then completes on its own:
    // ask again until the key is cached and answered.
    let r = poll(|| {
        let r = server.get("/check", &[("Authorization", &format!("Bearer {key}"))]);
        if r.status == 503 && r.body.contains("timed out") {
            return None;
        }
        Some(r)
    });
    assert_eq!(r.status, 204, "{r:?}");

    // The database stops answering (connections stay open): a miss waits on it, and the
    // server answers at --request-timeout instead of holding the client (the hang guard is
    // the client's 60 s read timeout).
    relay.frozen.store(true, Ordering::SeqCst);
    let unknown = served.unknown_id(&key);
    let r = server.get("/check", &[("Authorization", &format!("Bearer {unknown}"))]);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.body.contains("timed out"), "{r:?}");
    // Meanwhile the server answers others (the wait is on the blocking pool).
    assert_eq!(server.get("/healthz", &[]).status, 200);
    relay.frozen.store(false, Ordering::SeqCst);
}
