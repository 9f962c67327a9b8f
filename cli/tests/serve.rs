//! `keystead serve`: the built binary on a free loopback port (or a unix socket), driven by raw
//! HTTP/1.1 over std sockets. Timeouts here are hang guards only, never assertions on speed.

#![allow(dead_code)]

mod serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use serve_support::*;

#[test]
fn a_valid_key_gets_204_with_its_id_name_and_scopes() {
    let store = TestStore::new();
    let (key, id) = store.create("Prüfung ✓ 1", &["chat:write", "embeddings"]);
    let server = Server::start(&store, &[]);
    let r = server.get("/check", &[("Authorization", &format!("Bearer {key}"))]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("x-keystead-key-id"), Some(id.as_str()));
    // Percent-encoded UTF-8 (docs/gateways.md): ASCII on the wire, the name after decoding.
    let name = r.header("x-keystead-key-name").unwrap();
    assert!(name.is_ascii(), "{name}");
    assert_eq!(percent_decode(name), "Prüfung ✓ 1");
    assert_eq!(r.header("x-keystead-scopes"), Some("chat:write embeddings"));
    assert_eq!(r.header("x-keystead-outcome"), Some("valid"));
    assert_eq!(r.header("www-authenticate"), None);
}

#[test]
fn refusals_carry_the_cores_status_and_www_authenticate() {
    let store = TestStore::new();
    let (key, id) = store.create("svc", &["chat:write"]);
    let (revoked, revoked_id) = store.create("old", &[]);
    store.cli(&["revoke", &revoked_id]);
    let server = Server::start(&store, &[]);
    let bearer = format!("Bearer {key}");

    let r = server.get("/check", &[]);
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    assert_eq!(r.header("x-keystead-outcome"), Some("missing"));

    let r = server.get("/check", &[("Authorization", "Bearer ks_nonsense")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_request\"")
    );

    // The same id with another secret: not found, indistinguishable from an unknown id.
    let wrong = store.wrong_secret(&key);
    let r = server.get("/check", &[("Authorization", &format!("Bearer {wrong}"))]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(r.header("x-keystead-key-id"), None);

    let r = server.get("/check", &[("Authorization", &format!("Bearer {revoked}"))]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-keystead-outcome"), Some("revoked"));

    let r = server.get(
        "/check",
        &[
            ("Authorization", &bearer),
            ("X-Keystead-Required-Scopes", "chat:write  admin:all"),
        ],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"admin:all chat:write\"")
    );
    assert_eq!(
        r.header("x-keystead-key-id"),
        None,
        "only a valid key is named"
    );

    let r = server.get(
        "/check",
        &[
            ("Authorization", &bearer),
            ("X-Keystead-Required-Scopes", "chat:write"),
        ],
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-keystead-key-id"), Some(id.as_str()));

    // Two Authorization fields are one comma-joined value: malformed, never the first wins.
    let r = server.get(
        "/check",
        &[("Authorization", &bearer), ("Authorization", &bearer)],
    );
    assert_eq!(r.status, 400, "{r:?}");

    // A required scope no key could have is the gateway's mistake: 500, not a verdict.
    let r = server.get(
        "/check",
        &[
            ("Authorization", &bearer),
            ("X-Keystead-Required-Scopes", "bad*scope"),
        ],
    );
    assert!(r.status == 500 || r.status == 400, "{r:?}");
    assert_ne!(r.status, 204);
}

const TABLE: &str = "\
# method  path-prefix       scopes
*         /                 base
POST      /v1/chat          chat:write
GET       /v1/chat          chat:read
*         /v1/public
";

#[test]
fn the_scopes_file_is_matched_against_the_forwarded_method_and_uri() {
    let store = TestStore::new();
    let (reader, _) = store.create("reader", &["base", "chat:read"]);
    let (writer, _) = store.create("writer", &["base", "chat:write"]);
    let table = store.dir.path().join("scopes.txt");
    std::fs::write(&table, TABLE).unwrap();
    let server = Server::start(&store, &["--scopes-file", table.to_str().unwrap()]);
    let status = |key: &str, extra: &[(&str, &str)], path: &str| {
        let auth = format!("Bearer {key}");
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        server.get(path, &headers).status
    };
    // Caddy / Traefik: X-Forwarded-Method and X-Forwarded-Uri.
    let caddy =
        |m: &'static str, u: &'static str| [("X-Forwarded-Method", m), ("X-Forwarded-Uri", u)];
    assert_eq!(
        status(
            &writer,
            &caddy("POST", "/v1/chat/completions?x=1"),
            "/check"
        ),
        204
    );
    assert_eq!(
        status(&reader, &caddy("POST", "/v1/chat/completions"), "/check"),
        403
    );
    assert_eq!(
        status(&reader, &caddy("GET", "/v1/chat/history"), "/check"),
        204
    );
    assert_eq!(status(&writer, &caddy("GET", "/v1/chat"), "/check"), 403);
    // Another spelling of the same path is matched by the same rule, or refused.
    assert_eq!(
        status(&reader, &caddy("POST", "//v1/%63hat/x"), "/check"),
        403
    );
    assert_eq!(
        status(&reader, &caddy("POST", "/v1/public/../chat"), "/check"),
        400
    );
    assert_eq!(
        status(&reader, &caddy("POST", "/v1/public/x"), "/check"),
        204
    );
    // nginx: X-Original-Method and X-Original-URI (set in its config).
    let nginx = [
        ("X-Original-Method", "POST"),
        ("X-Original-URI", "/v1/chat"),
    ];
    assert_eq!(status(&reader, &nginx, "/auth"), 403);
    assert_eq!(status(&writer, &nginx, "/auth"), 204);
    // Envoy: the original method and path behind the `/check` path prefix.
    let r = server.request(&format!(
        "POST /check/v1/chat/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {reader}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(r.status, 403, "{r:?}");
    // The gateway's header adds to the table's scopes; it never removes one.
    let mut extra = caddy("GET", "/v1/chat").to_vec();
    extra.push(("X-Keystead-Required-Scopes", "chat:write"));
    assert_eq!(status(&reader, &extra, "/check"), 403);
}

#[test]
fn a_forwarded_uri_or_method_given_twice_is_refused_not_first_wins() {
    // A gateway that appends its X-Forwarded-Uri (HAProxy `add-header`, a proxy chain) after
    // the client's own must not let the client's, coming first, pick the rule.
    let store = TestStore::new();
    let (reader, _) = store.create("reader", &["base", "chat:read"]);
    let table = store.dir.path().join("scopes.txt");
    std::fs::write(&table, TABLE).unwrap();
    let server = Server::start(&store, &["--scopes-file", table.to_str().unwrap()]);
    let auth = format!("Bearer {reader}");
    let r = server.get(
        "/check",
        &[
            ("Authorization", &auth),
            ("X-Forwarded-Method", "POST"),
            ("X-Forwarded-Uri", "/v1/public/x"),
            ("X-Forwarded-Uri", "/v1/chat/completions"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = server.get(
        "/check",
        &[
            ("Authorization", &auth),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Method", "POST"),
            ("X-Forwarded-Uri", "/v1/chat/completions"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
}

#[test]
fn x_forwarded_and_x_original_that_disagree_are_refused() {
    // An nginx config that sets only X-Original-URI (nginx's own auth_request example) passes
    // the client's X-Forwarded-Uri through, and keystead prefers that one: the client's path
    // would choose the rule. Two sources that disagree cannot be judged.
    let store = TestStore::new();
    let (reader, _) = store.create("reader", &["base", "chat:read"]);
    let table = store.dir.path().join("scopes.txt");
    std::fs::write(&table, TABLE).unwrap();
    let server = Server::start(&store, &["--scopes-file", table.to_str().unwrap()]);
    let auth = format!("Bearer {reader}");
    let r = server.get(
        "/check",
        &[
            ("Authorization", &auth),
            ("X-Forwarded-Uri", "/v1/public/x"),
            ("X-Original-Method", "POST"),
            ("X-Original-URI", "/v1/chat/completions"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = server.get(
        "/check",
        &[
            ("Authorization", &auth),
            ("X-Forwarded-Method", "GET"),
            ("X-Original-Method", "POST"),
            ("X-Original-URI", "/v1/chat/completions"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    // The same value in both is no conflict.
    let r = server.get(
        "/check",
        &[
            ("Authorization", &auth),
            ("X-Forwarded-Method", "GET"),
            ("X-Original-Method", "GET"),
            ("X-Forwarded-Uri", "/v1/chat/x"),
            ("X-Original-URI", "/v1/chat/x"),
        ],
    );
    assert_eq!(r.status, 204, "{r:?}");
}

#[test]
fn a_forwarded_uri_with_raw_utf8_is_matched_like_its_percent_encoded_form() {
    // nginx's $request_uri and Caddy's {uri} carry a client's raw UTF-8 path bytes as they
    // came; the table decodes `%C3%A4` to `ä`, so the raw `ä` is the same path.
    let store = TestStore::new();
    let (reader, _) = store.create("reader", &["base", "chat:read"]);
    let table = store.dir.path().join("scopes.txt");
    std::fs::write(&table, TABLE).unwrap();
    let server = Server::start(&store, &["--scopes-file", table.to_str().unwrap()]);
    let auth = format!("Bearer {reader}");
    for uri in ["/v1/public/%C3%A4", "/v1/public/ä"] {
        let r = server.get(
            "/check",
            &[
                ("Authorization", &auth),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", uri),
            ],
        );
        assert_eq!(r.status, 204, "{uri}: {r:?}");
    }
    let r = server.get(
        "/check",
        &[
            ("Authorization", &auth),
            ("X-Forwarded-Method", "POST"),
            ("X-Forwarded-Uri", "/v1/chat/ä"),
        ],
    );
    assert_eq!(r.status, 403, "{r:?}");
}

#[test]
fn a_forwarded_method_that_is_not_one_method_is_refused() {
    // An empty method, or two joined by a proxy that merges repeated fields, matches no
    // method rule and would be judged by the `*` rules alone.
    let store = TestStore::new();
    let (reader, _) = store.create("reader", &["base", "chat:read"]);
    let table = store.dir.path().join("scopes.txt");
    std::fs::write(&table, TABLE).unwrap();
    let server = Server::start(&store, &["--scopes-file", table.to_str().unwrap()]);
    let auth = format!("Bearer {reader}");
    for method in ["GET, POST", "", "POST /v1/public"] {
        let r = server.get(
            "/check",
            &[
                ("Authorization", &auth),
                ("X-Forwarded-Method", method),
                ("X-Forwarded-Uri", "/v1/chat/completions"),
            ],
        );
        assert_eq!(r.status, 400, "{method:?}: {r:?}");
    }
}

#[test]
fn a_bad_scopes_file_or_a_remote_address_is_refused_at_start() {
    let store = TestStore::new();
    store.cli(&["init"]);
    let table = store.dir.path().join("scopes.txt");
    std::fs::write(&table, "* /a ok\nPOST v1 chat\n").unwrap();
    let out = store.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--scopes-file",
        table.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);

    std::fs::write(&table, "* /a bad*scope\n").unwrap();
    let out = store.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--scopes-file",
        table.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{out:?}");

    let out = store.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("not a loopback address"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--allow-remote"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "it must not listen: {}", out.stdout);
}

#[test]
fn an_oversized_request_head_gets_431_and_the_server_goes_on() {
    let store = TestStore::new();
    let (key, _) = store.create("svc", &[]);
    let server = Server::start(&store, &[]);
    let big = "a".repeat(9 * 1024);
    let r = server.get("/check", &[("X-Padding", &big)]);
    assert_eq!(r.status, 431, "{r:?}");
    let huge = "a".repeat(64 * 1024);
    let r = server.get("/check", &[("X-Padding", &huge)]);
    assert_eq!(r.status, 431, "{r:?}");
    let r = server.get("/check", &[("Authorization", &format!("Bearer {key}"))]);
    assert_eq!(r.status, 204);
}

#[test]
fn metrics_do_not_show_a_431_series_that_never_counts() {
    // hyper answers an oversized head itself, before the check: a
    // `keystead_check_requests_total{status="431"}` series would read 0 while 431s are sent.
    let store = TestStore::new();
    store.create("svc", &[]);
    let server = Server::start(&store, &[]);
    let big = "a".repeat(9 * 1024);
    assert_eq!(server.get("/check", &[("X-Padding", &big)]).status, 431);
    let body = server.get("/metrics", &[]).body;
    let line = body
        .lines()
        .find(|l| l.starts_with("keystead_check_requests_total{status=\"431\"}"));
    assert!(
        line.is_none() || line == Some("keystead_check_requests_total{status=\"431\"} 1"),
        "{line:?}"
    );
}

#[test]
fn a_client_that_never_reads_its_answers_is_cut_off_too() {
    // Pipelined checks whose answers are never read: once the socket buffers are full the
    // server waits to write, where --header-timeout does not apply. At --max-connections such
    // clients would refuse everyone else with 503 for as long as they stay connected.
    let store = TestStore::new();
    let (key, _) = store.create("svc", &[]);
    let server = Server::start(
        &store,
        &["--header-timeout", "300ms", "--max-connections", "1"],
    );
    let mut stuck = TcpStream::connect(&server.addr).unwrap();
    stuck.set_nonblocking(true).unwrap();
    let requests = "GET /check HTTP/1.1\r\nHost: t\r\n\r\n".repeat(1000);
    let mut blocked_since: Option<Instant> = None;
    let started = Instant::now();
    // Write until the server has stopped reading for a while (its writes are blocked).
    while blocked_since.is_none_or(|t| t.elapsed() < Duration::from_secs(1)) {
        assert!(
            started.elapsed() < GUARD,
            "the server never stopped reading"
        );
        match stuck.write(requests.as_bytes()) {
            Ok(_) => blocked_since = None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked_since.get_or_insert_with(Instant::now);
                thread::sleep(Duration::from_millis(20));
            }
            // Cut off already.
            Err(_) => break,
        }
    }
    // The stuck connection is closed in time, and the slot serves another client.
    let auth = format!("Bearer {key}");
    poll(|| {
        let r = server.get("/check", &[("Authorization", &auth)]);
        (r.status == 204).then_some(())
    });
    drop(stuck);
}

#[test]
fn slow_and_garbage_clients_do_not_stall_others_and_are_cut_off() {
    let store = TestStore::new();
    let (key, _) = store.create("svc", &[]);
    let server = Server::start(&store, &["--header-timeout", "2s"]);
    let addr = server.addr.clone();

    // Slow loris: one byte a second, never finishing the head.
    let mut lorises = Vec::new();
    for _ in 0..4 {
        let addr = addr.clone();
        lorises.push(thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let head = b"GET /check HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let started = Instant::now();
            for &b in head.iter().cycle() {
                assert!(started.elapsed() < GUARD, "the slow client was never cut off");
                if s.write_all(&[b]).is_err() {
                    return started.elapsed();
                }
                let mut buf = [0u8; 256];
                match s.read(&mut buf) {
                    // Closed, or answered (408 or the like): cut off either way.
                    Ok(_) => return started.elapsed(),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return started.elapsed(),
                }
                thread::sleep(Duration::from_millis(800));
            }
            unreachable!()
        }));
    }
    // Garbage: bytes that are not HTTP, and a connection that sends nothing at all.
    let mut garbage = TcpStream::connect(&addr).unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
        .unwrap();
    let silent = TcpStream::connect(&addr).unwrap();

    // Meanwhile a normal client is answered, many times over.
    for _ in 0..20 {
        let r = server.get("/check", &[("Authorization", &format!("Bearer {key}"))]);
        assert_eq!(r.status, 204, "{r:?}");
    }
    // The garbage connection got an error answer or was closed, not left hanging.
    garbage
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = garbage.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
        "{reply}"
    );
    // The silent one is closed by the header timeout (the hang guard is 30 s, the limit 2 s).
    let mut silent = silent;
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    let read = silent.read_to_end(&mut buf);
    assert!(
        read.is_ok(),
        "the silent connection was not closed: {read:?}"
    );
    for loris in lorises {
        loris.join().unwrap();
    }
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let store = TestStore::new();
    let (key, _) = store.create("svc", &[]);
    let server = Server::start(&store, &["--header-timeout", "1s"]);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(
        format!("GET /check HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    // The answer, then EOF when the idle connection is closed (a hang would hit the guard).
    let read = s.read_to_end(&mut buf);
    assert!(read.is_ok(), "{read:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
}

#[test]
fn past_the_connection_limit_a_client_gets_503_and_others_still_work() {
    let store = TestStore::new();
    let (key, _) = store.create("svc", &[]);
    let server = Server::start(
        &store,
        &["--max-connections", "2", "--header-timeout", "60s"],
    );
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    // Let the server accept both before the third arrives (they are accepted in order).
    let r = poll(|| {
        let r = server.get("/check", &[("Authorization", &format!("Bearer {key}"))]);
        (r.status == 503).then_some(r)
    });
    assert_eq!(r.header("retry-after"), Some("1"));
    let metrics = server.get("/metrics", &[]);
    assert_eq!(metrics.status, 503, "metrics too is past the limit");
    drop(held);
    let r = poll(|| {
        let r = server.get("/check", &[("Authorization", &format!("Bearer {key}"))]);
        (r.status == 204).then_some(r)
    });
    assert_eq!(r.status, 204);
    let m = server.get("/metrics", &[]).body;
    assert!(
        m.lines().any(
            |l| l.starts_with("keystead_serve_connections_refused_total ") && !l.ends_with(" 0")
        ),
        "{m}"
    );
}

#[test]
fn the_key_never_appears_in_the_servers_output() {
    let store = TestStore::new();
    let (key, id) = store.create("svc", &["a"]);
    let server = Server::start(&store, &["--access-log"]);
    let wrong = store.wrong_secret(&key);
    let cases = [
        format!("Bearer {key}"),
        format!("Bearer {wrong}"),
        format!("Bearer {key}x"),
        format!("Basic {key}"),
        key.clone(),
    ];
    for auth in &cases {
        let r = server.get(
            "/check",
            &[("Authorization", auth), ("X-Keystead-Required-Scopes", "a")],
        );
        assert_ne!(r.status, 0);
    }
    let r = server.get(
        "/check",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("X-Keystead-Required-Scopes", "b"),
        ],
    );
    assert_eq!(r.status, 403);
    let (code, stdout, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
    // The log names the key by its id, and has a line per check.
    assert!(stderr.contains(&format!("key={id}")), "{stderr}");
    assert_eq!(
        stderr.matches("keystead serve: check ").count(),
        cases.len() + 1,
        "{stderr}"
    );
    let secret = key.rsplit('_').next().unwrap();
    for text in [&stdout, &stderr] {
        assert!(!text.contains(&key), "{text}");
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(&wrong), "{text}");
    }
}

#[test]
fn sigterm_drains_and_writes_usage() {
    graceful_stop_writes_usage("TERM");
}

#[test]
fn sigint_drains_and_writes_usage() {
    graceful_stop_writes_usage("INT");
}

fn graceful_stop_writes_usage(signal: &str) {
    const N: u64 = 7;
    let store = TestStore::new();
    let (key, id) = store.create("svc", &[]);
    // Usage is written only at shutdown, so the count below comes from the close.
    let server = Server::start(&store, &["--flush-interval", "0ms"]);
    for _ in 0..N {
        let r = server.get("/check", &[("Authorization", &format!("Bearer {key}"))]);
        assert_eq!(r.status, 204);
    }
    let (code, _, stderr) = server.signal_and_wait(signal);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("usage written"), "{stderr}");
    let out = store.run(&["--json", "usage", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["total"], N, "{v}");
}

#[test]
fn a_unix_socket_serves_checks_and_is_removed_at_shutdown() {
    let store = TestStore::new();
    let (key, id) = store.create("svc", &[]);
    let sock = store.dir.path().join("ks.sock");
    let server = Server::start_at(
        &store,
        &format!("unix:{}", sock.display()),
        &["--socket-mode", "640"],
    );
    assert_eq!(server.addr, format!("unix:{}", sock.display()));
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    }
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!("GET /check HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let r = Reply::parse(&buf);
    assert_eq!(r.status, 204, "{buf}");
    assert_eq!(r.header("x-keystead-key-id"), Some(id.as_str()));
    let (code, _, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!sock.exists(), "the socket file is left behind");
}

#[test]
fn metrics_count_checks_by_status_with_a_latency_histogram() {
    let store = TestStore::new();
    let (key, _) = store.create("svc", &[]);
    let server = Server::start(&store, &[]);
    for _ in 0..3 {
        assert_eq!(
            server
                .get("/check", &[("Authorization", &format!("Bearer {key}"))])
                .status,
            204
        );
    }
    assert_eq!(server.get("/check", &[]).status, 401);
    assert_eq!(server.get("/healthz", &[]).status, 200);
    let r = server.get("/metrics", &[]);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        "keystead_check_requests_total{status=\"204\"} 3",
        "keystead_check_requests_total{status=\"401\"} 1",
        "keystead_check_outcomes_total{outcome=\"valid\"} 3",
        "keystead_check_outcomes_total{outcome=\"missing\"} 1",
        "keystead_check_duration_seconds_bucket{le=\"+Inf\"} 4",
        "keystead_check_duration_seconds_count 4",
        "# TYPE keystead_check_duration_seconds histogram",
        // The store handle's own counters (KeyStore::stats): the missing header never
        // reached a cache lookup; the first valid check read the key, the other two did not.
        "keystead_verifications_total{outcome=\"valid\"} 3",
        "keystead_verifications_total{outcome=\"missing\"} 1",
        "keystead_cache_misses_total 1",
        "keystead_cache_hits_total 2",
        "# TYPE keystead_usage_pending gauge",
    ] {
        assert!(
            r.body.lines().any(|l| l == line),
            "no `{line}` in\n{}",
            r.body
        );
    }
    assert_eq!(server.request("POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").status, 405);
}

#[test]
fn a_revoke_elsewhere_is_seen_within_the_refresh_interval() {
    let store = TestStore::new();
    let (key, id) = store.create("svc", &[]);
    let server = Server::start(&store, &["--refresh-interval", "1s"]);
    let auth = format!("Bearer {key}");
    assert_eq!(
        server.get("/check", &[("Authorization", &auth)]).status,
        204
    );
    store.cli(&["revoke", &id]);
    let r = poll(|| {
        let r = server.get("/check", &[("Authorization", &auth)]);
        (r.status != 204).then_some(r)
    });
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-keystead-outcome"), Some("revoked"));
}

#[test]
fn after_sigterm_an_idle_connection_is_closed_and_no_new_one_is_accepted() {
    let store = TestStore::new();
    let (key, _) = store.create("svc", &[]);
    // A long header timeout: only the shutdown can close the idle connection below quickly.
    let server = Server::start(&store, &["--header-timeout", "300s"]);
    let addr = server.addr.clone();
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(
        format!("GET /check HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut first = [0u8; 12];
    idle.set_read_timeout(Some(GUARD)).unwrap();
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 204");
    let (code, _, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
    // The kept-alive connection was closed by the shutdown, not left to the 300 s timeout.
    let mut rest = Vec::new();
    assert!(idle.read_to_end(&mut rest).is_ok());
    assert!(
        TcpStream::connect(&addr).is_err(),
        "still accepting after shutdown"
    );
}
