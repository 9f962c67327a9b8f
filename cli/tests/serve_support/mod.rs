//! Shared by the `serve` tests: a store in a temporary directory, the server as a child
//! process on a free port, and a raw HTTP/1.1 client over std sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_keystead");
/// A hang guard for every wait; never an assertion about speed.
pub const GUARD: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub db: String,
}

impl TestStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keys.redb").to_str().unwrap().to_owned();
        TestStore { dir, db }
    }

    /// A store at another location (a database URL).
    pub fn at(db: String) -> Self {
        TestStore {
            dir: tempfile::tempdir().unwrap(),
            db,
        }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        let out = Command::new(BIN)
            .env("KEYSTEAD_DB", &self.db)
            .env_remove("KEYSTEAD_PEPPER")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        out
    }

    pub fn cli(&self, args: &[&str]) -> Out {
        let out = self.run(args);
        assert_eq!(out.code, 0, "keystead {args:?}: {out:?}");
        out
    }

    /// Creates a key: (the key, its id).
    pub fn create(&self, name: &str, scopes: &[&str]) -> (String, String) {
        let mut args = vec!["--json", "create", "--name", name];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        let out = self.cli(&args);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        (
            v["key"].as_str().unwrap().to_owned(),
            v["id"].as_str().unwrap().to_owned(),
        )
    }

    /// The same key with another secret and a correct checksum: well-formed, but wrong.
    pub fn wrong_secret(&self, key: &str) -> String {
        altered(key, 12 + 20)
    }

    /// A well-formed key with an id no store has.
    pub fn unknown_id(&self, key: &str) -> String {
        altered(key, 5)
    }
}

/// `key` with the character `at` places into its body changed and the checksum fixed.
fn altered(key: &str, at: usize) -> String {
    {
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let body_at = key.len() - 61;
        let mut bytes = key.as_bytes()[..key.len() - 6].to_vec();
        let i = body_at + at;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let mut crc = crc32fast::hash(&bytes);
        let mut sum = [b'0'; 6];
        for slot in sum.iter_mut().rev() {
            *slot = B62[(crc % 62) as usize];
            crc /= 62;
        }
        bytes.extend_from_slice(&sum);
        String::from_utf8(bytes).unwrap()
    }
}

/// A running `keystead serve`.
pub struct Server {
    child: Option<Child>,
    /// `HOST:PORT`, or `unix:/path`.
    pub addr: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The threads that copy the child's stdout and stderr into the two buffers above; each
    /// ends at EOF, i.e. once the child has exited and everything it wrote has been read.
    collectors: Vec<thread::JoinHandle<()>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            into.lock().unwrap().push_str(&line);
            line.clear();
        }
    })
}

impl Server {
    pub fn start(store: &TestStore, extra: &[&str]) -> Server {
        Server::start_at(store, "127.0.0.1:0", extra)
    }

    /// Starts the server and reads the address it prints (`listening on ADDR`) on stdout.
    pub fn start_at(store: &TestStore, listen: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .env("KEYSTEAD_DB", &store.db)
            .env_remove("KEYSTEAD_PEPPER")
            .args(["serve", "--listen", listen])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_collector = collect(child.stderr.take().unwrap(), Arc::clone(&stderr));
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let Some(addr) = first.trim_end().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            // Everything the server wrote to stderr before it died, for the message.
            let _ = stderr_collector.join();
            panic!(
                "the server did not start: {first:?}; stderr: {}",
                stderr.lock().unwrap()
            );
        };
        let addr = addr.to_owned();
        let stdout = Arc::new(Mutex::new(first.clone()));
        let stdout_collector = collect(reader, Arc::clone(&stdout));
        Server {
            child: Some(child),
            addr,
            stdout,
            stderr,
            collectors: vec![stdout_collector, stderr_collector],
        }
    }

    /// One request on its own connection; the raw request text is sent as it is.
    pub fn request(&self, raw: &str) -> Reply {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            // A reset after the answer (the server closed with unread input) still answered.
            Err(e) if !buf.is_empty() || e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("reading the answer: {e}"),
        }
        Reply::parse(&String::from_utf8_lossy(&buf))
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("Connection: close\r\n\r\n");
        self.request(&raw)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal (`TERM`, `INT`) and waits for the exit: (code, stdout, stderr).
    pub fn signal_and_wait(mut self, signal: &str) -> (Option<i32>, String, String) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            if started.elapsed() > GUARD {
                let _ = child.kill();
                panic!("the server did not stop after SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        };
        // The reader threads see EOF once the process is gone: wait for them to have read
        // everything it wrote (a fixed sleep here lost the last lines, e.g. "usage written",
        // whenever a busy machine ran a reader thread later than that).
        for collector in self.collectors.drain(..) {
            collector.join().unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        (code, stdout, stderr)
    }

    pub fn stop(self) -> (Option<i32>, String, String) {
        self.signal_and_wait("TERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Calls `f` until it gives a value, for at most [`GUARD`].
pub fn poll<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < GUARD, "gave up waiting");
        thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn parse(text: &str) -> Reply {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes `%XX` escapes (the encoding of `X-Keystead-Key-Name`).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
