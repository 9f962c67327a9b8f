//! nginx (`auth_request`) and Caddy (`forward_auth`) in front of a tiny upstream, asking a real
//! `keystead serve` about every request, each on loopback ports with its config in a temporary
//! directory. The configs are `tests/gateways/nginx.conf` and `tests/gateways/Caddyfile`, the
//! same text docs/gateways.md shows (checked below).
//!
//! Needs nginx and caddy (Debian's packages): run `scripts/test-gateways.sh`, which installs
//! them and runs these tests with `--ignored`.

#![allow(dead_code)]

mod serve_support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serve_support::*;

const NGINX_CONF: &str = include_str!("gateways/nginx.conf");
const CADDYFILE: &str = include_str!("gateways/Caddyfile");
const UPSTREAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateways/upstream.py");
const DOCS: &str = include_str!("../../docs/gateways.md");

/// The scopes file both gateways are tested with.
const SCOPES: &str = "\
# method  path-prefix  scopes
*         /v1/chat     chat:write
*         /public
";

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    /// SIGTERM first (nginx's master then stops its workers), SIGKILL after the hang guard.
    fn drop(&mut self) {
        // Already gone (and reaped): its pid may belong to another process by now.
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < GUARD {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago. Another process may take it before the
/// gateway binds it: [`start_gateway`] then tries another.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn upstream() -> (Proc, String) {
    let mut child = Command::new("python3")
        .arg(UPSTREAM)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("upstream did not start: {line:?}"))
        .to_owned();
    (Proc(child), addr)
}

fn fill(template: &str, tmp: &Path, keystead: &str, upstream: &str, listen: &str) -> String {
    template
        .replace("@TMP@", tmp.to_str().unwrap())
        .replace("@KEYSTEAD@", keystead)
        .replace("@UPSTREAM@", upstream)
        .replace("@LISTEN@", listen)
}

/// Whether process `pid` holds a socket listening on `port` (from /proc: the listening
/// sockets' inodes in /proc/net/tcp and tcp6 — nginx binds 127.0.0.1:PORT, Caddy [::]:PORT —
/// and the process's sockets in /proc/PID/fd). Connecting would not tell: another process may
/// be listening on that port.
fn listens_on(pid: u32, port: u16) -> bool {
    let port = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[1].ends_with(&port) && fields[3] == "0A" {
                inodes.push(format!("socket:[{}]", fields[9]));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

/// Waits until the gateway listens on `addr` (itself, not another process that took the
/// port); `Err` with the exit status if it ended first.
fn wait_listening(addr: &str, what: &str, proc: &mut Proc) -> Result<(), ExitStatus> {
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let started = Instant::now();
    while !listens_on(proc.0.id(), port) {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return Err(status);
        }
        assert!(started.elapsed() < GUARD, "{what} never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts a gateway (`spawn` writes its config for the given `127.0.0.1:PORT` and starts it)
/// on a free port. The port is only known to be free when [`free_port`] returns: if another
/// process (another test's server, a client's ephemeral port) took it before the gateway
/// bound it, the gateway exits with "address already in use" (its log, `log`), and this tries
/// another port instead of failing the test, or sending the test's requests to whatever
/// holds that port.
fn start_gateway(what: &str, log: &Path, mut spawn: impl FnMut(&str) -> Proc) -> (Proc, String) {
    for _ in 0..10 {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut proc = spawn(&listen);
        match wait_listening(&listen, what, &mut proc) {
            Ok(()) => return (proc, listen),
            Err(status) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                assert!(
                    text.to_ascii_lowercase().contains("address already in use"),
                    "{what} exited: {status}\n{text}"
                );
            }
        }
    }
    panic!("{what}: ten free ports were all taken before it could bind them");
}

fn start_nginx(tmp: &Path, keystead: &str, upstream: &str) -> (Proc, String) {
    let conf = tmp.join("nginx.conf");
    let log = tmp.join("error.log");
    start_gateway("nginx", &log, |listen| {
        // nginx appends: only this attempt's lines may decide whether it is retried.
        let _ = std::fs::remove_file(&log);
        std::fs::write(&conf, fill(NGINX_CONF, tmp, keystead, upstream, listen)).unwrap();
        Proc(
            Command::new("nginx")
                .arg("-p")
                .arg(tmp)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx is not installed: run scripts/test-gateways.sh"),
        )
    })
}

fn start_caddy(tmp: &Path, keystead: &str, upstream: &str) -> (Proc, String) {
    let conf = tmp.join("Caddyfile");
    let log = tmp.join("caddy.log");
    start_gateway("caddy", &log, |listen| {
        std::fs::write(&conf, fill(CADDYFILE, tmp, keystead, upstream, listen)).unwrap();
        Proc(
            Command::new("caddy")
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&conf)
                .env("HOME", tmp)
                .env("XDG_CONFIG_HOME", tmp.join("config"))
                .env("XDG_DATA_HOME", tmp.join("data"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
                .spawn()
                .expect("caddy is not installed: run scripts/test-gateways.sh"),
        )
    })
}

/// The seed's requests, end to end through a gateway at `front`.
/// `malformed`: the status the client gets for a malformed key (nginx turns the check's 400
/// into 500; Caddy passes it on).
fn check_end_to_end(store: &TestStore, keys: &Keys, front: &str, malformed: u16) {
    let Keys { key, id, plain } = keys;
    let gw = Gateway(front.to_owned());

    // 200: a valid key with the scope reaches the upstream, which learns the key's id and name.
    let r = gw.get(
        "/v1/chat/completions",
        &[("Authorization", &format!("Bearer {key}"))],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let echoed: serde_json::Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let headers = &echoed["headers"];
    assert_eq!(headers["x-keystead-key-id"], id.as_str(), "{echoed}");
    let name = headers["x-keystead-key-name"].as_str().unwrap();
    assert_eq!(percent_decode(name), "Prüfung ✓ gateway");
    assert_eq!(headers["x-keystead-scopes"], "chat:write");
    assert_eq!(echoed["path"], "/v1/chat/completions");

    // 401 without a key, with the challenge passed through to the client.
    let r = gw.get("/v1/chat/completions", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{r:?}");

    let r = gw.get(
        "/v1/chat/completions",
        &[("Authorization", "Bearer ks_typo")],
    );
    assert_eq!(r.status, malformed, "{r:?}");

    // 403 for a key without the scope, with the scope named.
    let plain_auth = format!("Bearer {plain}");
    let r = gw.get("/v1/chat/completions", &[("Authorization", &plain_auth)]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"chat:write\""),
        "{r:?}"
    );
    // A client's own forwarded-URI headers do not choose the rule: the gateway's replace them
    // (nginx: 403), or disagree with them and the check is refused (Caddy passes the client's
    // X-Original-URI next to its own X-Forwarded-Uri: 400).
    let r = gw.get(
        "/v1/chat/completions",
        &[
            ("Authorization", &plain_auth),
            ("X-Forwarded-Uri", "/public"),
            ("X-Original-URI", "/public"),
            ("X-Forwarded-Method", "GET"),
        ],
    );
    assert!(r.status == 403 || r.status == 400, "{r:?}");
    // Nor can a client forge the key headers the upstream trusts.
    let r = gw.get(
        "/public/x",
        &[
            ("Authorization", &plain_auth),
            ("X-Keystead-Scopes", "chat:write admin"),
            ("X-Keystead-Key-Name", "forged"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let echoed: serde_json::Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let scopes = echoed["headers"]["x-keystead-scopes"]
        .as_str()
        .unwrap_or("");
    assert!(
        scopes.is_empty(),
        "forged scopes reached the upstream: {echoed}"
    );
    assert_eq!(echoed["headers"]["x-keystead-key-name"], "no-scopes");

    // 401 after a revoke, within the refresh interval (1 s; polled with a hang guard only).
    store.cli(&["revoke", id]);
    let r = poll(|| {
        let r = gw.get(
            "/v1/chat/completions",
            &[("Authorization", &format!("Bearer {key}"))],
        );
        (r.status != 200).then_some(r)
    });
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{r:?}"
    );
}

struct Gateway(String);

impl Gateway {
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        // The site's own address as Host: Caddy routes by it.
        let mut raw = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.0);
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("Connection: close\r\n\r\n");
        raw_request(&self.0, &raw)
    }
}

fn raw_request(addr: &str, raw: &str) -> Reply {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    let mut reply = Reply::parse(&text);
    // Caddy and nginx may answer in chunks; the upstream's JSON is one chunk.
    if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        reply.body = dechunk(&reply.body);
    }
    reply
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

struct Keys {
    key: String,
    id: String,
    plain: String,
}

fn setup() -> (TestStore, Keys, Server, Proc, String) {
    setup_at(None, &[])
}

/// `listen`: where keystead listens (`None`: a free loopback port).
fn setup_at(listen: Option<&str>, extra: &[&str]) -> (TestStore, Keys, Server, Proc, String) {
    let store = TestStore::new();
    // Made before the server starts: a key made elsewhere is seen within the refresh interval.
    let (key, id) = store.create("Prüfung ✓ gateway", &["chat:write"]);
    let (plain, _) = store.create("no-scopes", &[]);
    let keys = Keys { key, id, plain };
    let scopes = store.dir.path().join("scopes.txt");
    std::fs::write(&scopes, SCOPES).unwrap();
    let mut args = vec!["--scopes-file", scopes.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = match listen {
        Some(listen) => Server::start_at(&store, listen, &args),
        None => Server::start(&store, &args),
    };
    let (up, up_addr) = upstream();
    (store, keys, server, up, up_addr)
}

#[test]
#[ignore = "needs nginx: run scripts/test-gateways.sh"]
fn nginx_auth_request_end_to_end() {
    let (store, keys, server, _up, up_addr) = setup();
    let tmp = tempfile::tempdir().unwrap();
    let (_nginx, front) = start_nginx(tmp.path(), &server.addr, &up_addr);
    check_end_to_end(&store, &keys, &front, 500);
}

/// nginx reaching keystead over a unix socket (`server unix:/PATH;`, the note in the docs).
#[test]
#[ignore = "needs nginx: run scripts/test-gateways.sh"]
fn nginx_auth_request_over_a_unix_socket() {
    use std::os::unix::fs::PermissionsExt;
    // nginx's workers run as another user (`nobody` under a root master): they need to reach
    // the directory and write to the socket.
    let sock_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sock_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = format!("unix:{}", sock_dir.path().join("keystead.sock").display());
    let (store, keys, server, _up, up_addr) = setup_at(Some(&sock), &["--socket-mode", "666"]);
    assert_eq!(server.addr, sock);
    let tmp = tempfile::tempdir().unwrap();
    let (_nginx, front) = start_nginx(tmp.path(), &server.addr, &up_addr);
    check_end_to_end(&store, &keys, &front, 500);
}

#[test]
#[ignore = "needs caddy: run scripts/test-gateways.sh"]
fn caddy_forward_auth_end_to_end() {
    let (store, keys, server, _up, up_addr) = setup();
    let tmp = tempfile::tempdir().unwrap();
    let (_caddy, front) = start_caddy(tmp.path(), &server.addr, &up_addr);
    check_end_to_end(&store, &keys, &front, 400);
}

/// docs/gateways.md shows the tested configs as they are.
#[test]
fn the_docs_show_the_tested_configs() {
    for (name, text) in [("nginx.conf", NGINX_CONF), ("Caddyfile", CADDYFILE)] {
        assert!(
            DOCS.contains(text),
            "docs/gateways.md lacks the tested {name}"
        );
    }
    assert!(
        DOCS.contains(SCOPES),
        "docs/gateways.md lacks the tested scopes file"
    );
}
