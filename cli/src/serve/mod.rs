//! `keystead serve`: an HTTP endpoint that checks API keys for gateways (nginx `auth_request`,
//! Caddy `forward_auth`, Envoy `ext_authz`, Traefik `forwardAuth`) and for services written in
//! languages without a binding. docs/gateways.md is the reference.
//!
//! Every path but `/metrics` and `/healthz` is the check: the request's `Authorization` header
//! is verified by the core, the scopes it needs come from the scopes table (matched against
//! the forwarded method and URI) and from `X-Keystead-Required-Scopes`, and the answer is 204
//! with the key's id, name and scopes, or the core's status and `WWW-Authenticate`.

mod metrics;
mod rules;

use std::convert::Infallible;
use std::future::Future as _;
use std::io::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Args;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use keystead::{KeyStore, Verification};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Failure, EXIT_OK};
use crate::Ctx;

use self::metrics::Metrics;
use self::rules::{encode_name, normalize_path, ScopeTable};

/// The largest request head accepted (request line and headers); a larger one gets 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// How long the server waits for the rest of the request after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT (port 0 picks a free one) or unix:/PATH
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    listen: String,
    /// The unix socket's permissions, in octal (e.g. 660 for the socket's group; a gateway
    /// worker needs write permission to connect) [default: from the umask]
    #[arg(long, value_name = "OCTAL", value_parser = socket_mode)]
    socket_mode: Option<u32>,
    /// Allow a TCP address that is not loopback (anyone who reaches it can test keys)
    #[arg(long)]
    allow_remote: bool,
    /// Required scopes per method and path: `METHOD PATH-PREFIX SCOPE...` lines
    #[arg(long, value_name = "FILE")]
    scopes_file: Option<PathBuf>,
    /// At most this many connections at once; more are answered 503 and closed
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// How long a client may take to send a request head, how long an idle keep-alive
    /// connection stays open, and how long an answer may wait for the client to read it
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = timeout)]
    header_timeout: Duration,
    /// How long a check may take before it is answered 503
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = timeout)]
    request_timeout: Duration,
    /// How late a change made elsewhere (a revoke) may be seen: the store's refresh interval
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = short_duration)]
    refresh_interval: Duration,
    /// How often usage counts are written to the store (`0ms`: only at shutdown)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = short_duration)]
    flush_interval: Duration,
    /// Verify on the blocking pool even for a file store (for the benchmark that measures what
    /// that costs; a database store always does)
    #[arg(long, hide = true)]
    blocking_verify: bool,
    /// Log one line per check on stderr: outcome, status, key id, latency (never the key)
    #[arg(long)]
    access_log: bool,
}

/// A duration for the server's flags: `250ms` as well as the CLI's `<n>s|m|h|d`.
fn short_duration(text: &str) -> Result<Duration, String> {
    if let Some(ms) = text.strip_suffix("ms") {
        if !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()) {
            return ms
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("`{}` is too large", text.escape_debug()));
        }
    }
    crate::duration::parse_duration(text)
}

/// A timeout: a [`short_duration`] that is not zero (nothing could finish in it).
fn timeout(text: &str) -> Result<Duration, String> {
    match short_duration(text)? {
        d if d.is_zero() => Err(format!(
            "`{}` is zero; a timeout must be greater than zero",
            text.escape_debug()
        )),
        d => Ok(d),
    }
}

fn socket_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o777 && !text.is_empty() => Ok(mode),
        _ => Err(format!(
            "`{}` is not an octal mode from 0 to 777, e.g. 660",
            text.escape_debug()
        )),
    }
}

/// Where the server listens.
enum Listen {
    Tcp(Vec<SocketAddr>),
    Unix(PathBuf, Option<u32>),
}

/// Parses `--listen` and refuses a non-loopback address without `--allow-remote`.
fn listen_address(
    text: &str,
    allow_remote: bool,
    socket_mode: Option<u32>,
) -> Result<Listen, Failure> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(Failure::usage(
                "--listen unix: needs a path, e.g. unix:/run/keystead.sock",
            ));
        }
        return Ok(Listen::Unix(PathBuf::from(path), socket_mode));
    }
    if socket_mode.is_some() {
        return Err(Failure::usage(
            "--socket-mode is for --listen unix:/PATH only",
        ));
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| {
            Failure::usage(format!(
                "--listen `{}` is not HOST:PORT or unix:/PATH ({e})",
                text.escape_debug()
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::usage(format!(
            "--listen `{}` resolves to no address",
            text.escape_debug()
        )));
    }
    if !allow_remote {
        if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(Failure::usage(format!(
                "--listen {remote} is not a loopback address: anyone who can reach it could \
                 test keys against the store; put it behind a gateway on this host, or pass \
                 --allow-remote if that is what you want"
            )));
        }
    }
    Ok(Listen::Tcp(addrs))
}

/// What every request handler shares.
struct State {
    store: KeyStore,
    table: ScopeTable,
    metrics: Metrics,
    /// Verify on the blocking pool (a database store may wait on the network on a miss).
    blocking: bool,
    request_timeout: Duration,
    access_log: bool,
}

pub fn serve(ctx: &Ctx, args: ServeArgs) -> Result<u8, Failure> {
    let listen = listen_address(&args.listen, args.allow_remote, args.socket_mode)?;
    let table = match &args.scopes_file {
        Some(path) => ScopeTable::load(path).map_err(Failure::usage)?,
        None => ScopeTable::default(),
    };
    // Every scope of the table is checked by the core's own rule (a key's scopes), here: a
    // bad one is a configuration error at start, not a 500 on the first request needing it.
    for scope in table.all_scopes() {
        if let Err(e) = keystead::NewKey::new("scopes-file")
            .scopes([scope])
            .validate()
        {
            return Err(Failure::from(e).context("the scopes file names a scope no key can have"));
        }
    }
    let options = crate::options()?
        .create_if_missing(false)
        .flush_interval(args.flush_interval)
        .refresh_interval(args.refresh_interval);
    let store = crate::open(ctx, options)?;
    let state = Arc::new(State {
        store,
        table,
        metrics: Metrics::default(),
        blocking: args.blocking_verify || crate::is_database(ctx),
        request_timeout: args.request_timeout,
        access_log: args.access_log,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::operational(format!("cannot start the server's runtime: {e}")))?;
    let limits = Limits {
        max_connections: args.max_connections as usize,
        header_timeout: args.header_timeout,
    };
    let result = runtime.block_on(run(Arc::clone(&state), listen, limits));
    // Connections still open after the drain are cut here; their handlers hold the store.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result?;
    match Arc::try_unwrap(state) {
        Ok(state) => state.store.close(),
        // A check still running on the blocking pool (a database that does not answer) holds
        // the store: write what is counted; the store closes when that check ends.
        Err(state) => state.store.flush(),
    }
    .map_err(|e| Failure::from(e).context("cannot write the last usage counts"))?;
    eprintln!("keystead serve: stopped; usage written");
    Ok(EXIT_OK)
}

struct Limits {
    max_connections: usize,
    header_timeout: Duration,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

async fn bind(listen: Listen) -> Result<Listener, Failure> {
    match listen {
        Listen::Tcp(addrs) => {
            let listener = TcpListener::bind(&addrs[..])
                .await
                .map_err(|e| Failure::operational(format!("cannot listen on {}: {e}", addrs[0])))?;
            Ok(Listener::Tcp(listener))
        }
        Listen::Unix(path, mode) => {
            let listener = UnixListener::bind(&path).map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    " (remove the file if no server is using it)"
                } else {
                    ""
                };
                Failure::operational(format!(
                    "cannot listen on unix:{}: {e}{hint}",
                    path.display()
                ))
            })?;
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(
                    |e| {
                        let _ = std::fs::remove_file(&path);
                        Failure::operational(format!(
                            "cannot set the mode of unix:{}: {e}",
                            path.display()
                        ))
                    },
                )?;
            }
            Ok(Listener::Unix(listener, path))
        }
    }
}

async fn run(state: Arc<State>, listen: Listen, limits: Limits) -> Result<(), Failure> {
    let listener = bind(listen).await?;
    let shown = match &listener {
        Listener::Tcp(l) => l
            .local_addr()
            .map(|a| a.to_string())
            .map_err(|e| Failure::operational(format!("cannot read the bound address: {e}")))?,
        Listener::Unix(_, path) => format!("unix:{}", path.display()),
    };
    // Watched before the server says it is listening (a supervisor may stop it the moment it
    // reads that line), and for the whole loop: a `ctrl_c()` future made anew each turn would
    // miss a SIGINT delivered between two turns.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| Failure::operational(format!("cannot watch SIGTERM: {e}")))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| Failure::operational(format!("cannot watch SIGINT: {e}")))?;
    // The one line on stdout: what a script or test reads to find the server.
    println!("listening on {shown}");
    let _ = std::io::stdout().flush();

    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(2 * MAX_HEADER_BYTES);
    let builder = Arc::new(builder);
    // A client that does not read its answers gets as long as one that is slow to send a head.
    let write_timeout = limits.header_timeout;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();

    loop {
        let accepted = tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            accepted = accept(&listener) => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                eprintln!("keystead serve: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            state.metrics.connection_refused();
            tokio::spawn(refuse(stream));
            continue;
        };
        match stream {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
                spawn_connection(&state, &builder, &graceful, s, write_timeout, permit);
            }
            Stream::Unix(s) => {
                spawn_connection(&state, &builder, &graceful, s, write_timeout, permit)
            }
        }
    }
    // Stop accepting: the listener goes first, then the connections finish what they have.
    if let Listener::Unix(l, path) = listener {
        drop(l);
        let _ = std::fs::remove_file(path);
    } else {
        drop(listener);
    }
    eprintln!("keystead serve: stopping; finishing open requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("keystead serve: some connections did not finish in time; closing them");
    }
    Ok(())
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Stream> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
    }
}

/// Over the connection limit: a short 503 and close, without reading the request.
async fn refuse(stream: Stream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
        Content-Length: 0\r\nConnection: close\r\n\r\n";
    let write = async {
        match stream {
            Stream::Tcp(mut s) => {
                let _ = s.write_all(BUSY).await;
                let _ = s.shutdown().await;
            }
            Stream::Unix(mut s) => {
                let _ = s.write_all(BUSY).await;
                let _ = s.shutdown().await;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

fn spawn_connection<S>(
    state: &Arc<State>,
    builder: &hyper::server::conn::http1::Builder,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    stream: S,
    write_timeout: Duration,
    permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler_state = Arc::clone(state);
    let service = hyper::service::service_fn(move |req| {
        let state = Arc::clone(&handler_state);
        async move { Ok::<_, Infallible>(handle(&state, &req).await) }
    });
    let io = TokioIo::new(WriteTimeout::new(stream, write_timeout));
    let conn = graceful.watch(builder.serve_connection(io, service));
    let state = Arc::clone(state);
    state.metrics.connection_opened();
    tokio::spawn(async move {
        // A header timeout, a garbage request or a reset ends only this connection.
        let _ = conn.await;
        state.metrics.connection_closed();
        drop(permit);
    });
}

/// A connection whose writes wait at most `limit` for the client to take the bytes: hyper's
/// header timeout does not run while it waits to write, so a client that pipelines requests
/// and never reads the answers would otherwise hold its connection (and a slot of
/// `--max-connections`) for as long as it likes.
struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes on a write's result; a write still pending after `limit` is an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client does not read its answers",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    if !body.is_empty() {
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

async fn handle(state: &Arc<State>, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/metrics" || path == "/healthz" {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return respond(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        if path == "/healthz" {
            return respond(StatusCode::OK, "ok\n");
        }
        let mut response =
            Response::new(Full::new(Bytes::from(state.metrics.render(&state.store))));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return response;
    }
    let started = Instant::now();
    let (response, outcome, key_id) = check(state, req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe(status, outcome, elapsed);
    if state.access_log {
        eprintln!(
            "keystead serve: check status={status} outcome={} key={} latency_us={}",
            outcome.unwrap_or("-"),
            key_id.as_deref().unwrap_or("-"),
            elapsed.as_micros()
        );
    }
    response
}

/// The one value the headers `names` carry; `Err` if they carry different values (a header
/// given twice, or X-Forwarded-* and X-Original-* that disagree): a gateway that appends its
/// own after the client's, or sets only one of the pair and passes the client's other, would
/// otherwise let the client's choose the rule.
fn forwarded_header<'a>(
    headers: &'a HeaderMap,
    names: &[&str],
) -> Result<Option<&'a HeaderValue>, ()> {
    let mut found: Option<&HeaderValue> = None;
    for name in names {
        for value in headers.get_all(*name) {
            match found {
                Some(seen) if seen != value => return Err(()),
                _ => found = Some(value),
            }
        }
    }
    Ok(found)
}

/// The scopes a request needs: the table's for the forwarded method and path, plus those of
/// `X-Keystead-Required-Scopes`. `Err` is the answer for a request that cannot be judged.
fn required_scopes(state: &State, req: &Request<Incoming>) -> Result<Vec<String>, &'static str> {
    let headers = req.headers();
    let mut scopes: Vec<String> = Vec::new();
    if !state.table.is_empty() {
        let method = forwarded_header(headers, &["x-forwarded-method", "x-original-method"])
            .map_err(|()| "the forwarded method headers disagree\n")?;
        let method = match method {
            Some(v) => v
                .to_str()
                .map_err(|_| "the forwarded method is not text\n")?
                .to_owned(),
            None => req.method().as_str().to_owned(),
        };
        // One method, a token (RFC 9110 §9.1): anything else (empty, two joined by a proxy)
        // would match no method rule and be judged by the `*` rules alone.
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if method.is_empty() || !method.bytes().all(is_tchar) {
            return Err("the forwarded method is not one HTTP method\n");
        }
        let path = forwarded_header(headers, &["x-forwarded-uri", "x-original-uri"])
            .map_err(|()| "the forwarded URI headers disagree\n")?;
        let path = match path {
            // Raw UTF-8 as a gateway passes a client's path on (`to_str` is visible ASCII only);
            // normalize_path refuses control characters.
            Some(v) => std::str::from_utf8(v.as_bytes())
                .map_err(|_| "the forwarded URI is not UTF-8\n")?
                .to_owned(),
            // Envoy's ext_authz sends the original path behind its `path_prefix` (/check).
            None => {
                let p = req.uri().path();
                match p.strip_prefix("/check") {
                    Some("") => "/".to_owned(),
                    Some(rest) if rest.starts_with('/') => rest.to_owned(),
                    _ => p.to_owned(),
                }
            }
        };
        let path = normalize_path(&path).map_err(|_| "the forwarded URI is not a usable path\n")?;
        scopes.extend(state.table.lookup(&method, &path));
    }
    for value in headers.get_all("x-keystead-required-scopes") {
        let text = value
            .to_str()
            .map_err(|_| "X-Keystead-Required-Scopes is not text\n")?;
        scopes.extend(text.split_ascii_whitespace().map(str::to_owned));
    }
    scopes.sort_unstable();
    scopes.dedup();
    Ok(scopes)
}

/// The check: an answer, the outcome's code (if the core judged the key) and the key's id.
async fn check(
    state: &Arc<State>,
    req: &Request<Incoming>,
) -> (Response<Body>, Option<&'static str>, Option<String>) {
    let scopes = match required_scopes(state, req) {
        Ok(s) => s,
        Err(why) => return (respond(StatusCode::BAD_REQUEST, why), None, None),
    };
    // Several Authorization fields are one comma-joined value (RFC 9110 §5.3); the core's
    // parser refuses that as malformed, which is what it is.
    let mut values = req.headers().get_all(AUTHORIZATION).iter();
    let authorization: Vec<u8> = match (values.next(), values.next()) {
        (None, _) => Vec::new(),
        (Some(one), None) => one.as_bytes().to_vec(),
        (Some(first), Some(_)) => {
            let mut joined = first.as_bytes().to_vec();
            for v in req.headers().get_all(AUTHORIZATION).iter().skip(1) {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(v.as_bytes());
            }
            joined
        }
    };
    let authorization = keystead::Zeroizing::new(authorization);
    let verified = if state.blocking {
        let shared = Arc::clone(state);
        let job = tokio::task::spawn_blocking(move || {
            let required: Vec<&str> = scopes.iter().map(String::as_str).collect();
            shared.store.verify_header(&authorization[..], &required)
        });
        match tokio::time::timeout(state.request_timeout, job).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                return (
                    respond(StatusCode::INTERNAL_SERVER_ERROR, "the check failed\n"),
                    None,
                    None,
                )
            }
            Err(_) => return (unavailable("the check timed out\n"), None, None),
        }
    } else {
        let required: Vec<&str> = scopes.iter().map(String::as_str).collect();
        state.store.verify_header(&authorization[..], &required)
    };
    match verified {
        Ok(v) => {
            let id = v.key_id().map(|id| id.to_string());
            (answer(&v), Some(v.code()), id)
        }
        Err(e) => {
            let response = match e.kind() {
                keystead::ErrorKind::Unavailable => {
                    unavailable("the key store cannot be reached now\n")
                }
                keystead::ErrorKind::InvalidArgument => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "a required scope (X-Keystead-Required-Scopes) is not a valid scope\n",
                ),
                _ => {
                    eprintln!(
                        "keystead serve: check failed: {}",
                        crate::output::printable(&keystead::redact_keys(&e.to_string()))
                    );
                    respond(StatusCode::INTERNAL_SERVER_ERROR, "the check failed\n")
                }
            };
            (response, None, None)
        }
    }
}

fn unavailable(body: &'static str) -> Response<Body> {
    let mut response = respond(StatusCode::SERVICE_UNAVAILABLE, body);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The answer for a verification: 204 with the key's headers, or the core's status and
/// `WWW-Authenticate`.
fn answer(v: &Verification) -> Response<Body> {
    let status = StatusCode::from_u16(v.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = if v.is_valid() {
        respond(StatusCode::NO_CONTENT, "")
    } else {
        respond(status, "")
    };
    let headers = response.headers_mut();
    headers.insert("x-keystead-outcome", HeaderValue::from_static(v.code()));
    if let Some(key) = v.key() {
        let values = [
            ("x-keystead-key-id", key.id().to_string()),
            ("x-keystead-key-name", encode_name(key.name())),
            ("x-keystead-scopes", key.scopes().join(" ")),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    if let Some(challenge) = v.www_authenticate() {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_allow_remote() {
        assert!(listen_address("127.0.0.1:0", false, None).is_ok());
        assert!(listen_address("[::1]:0", false, None).is_ok());
        assert!(listen_address("unix:/tmp/x.sock", false, Some(0o660)).is_ok());
        assert!(listen_address("127.0.0.1:0", false, Some(0o660)).is_err());
        let e = listen_address("0.0.0.0:8080", false, None).err().unwrap();
        assert_eq!(e.code, crate::error::EXIT_USAGE);
        assert!(e.message.contains("--allow-remote"), "{}", e.message);
        assert!(listen_address("0.0.0.0:8080", true, None).is_ok());
        assert!(listen_address("nonsense", false, None).is_err());
        assert!(listen_address("unix:", false, None).is_err());
        assert_eq!(socket_mode("660"), Ok(0o660));
        assert!(socket_mode("888").is_err() && socket_mode("1777").is_err());
    }

    // `0s` is refused by the CLI's duration rule, but `0ms` got through: a zero
    // --request-timeout answers every check on the blocking pool 503, a zero --header-timeout
    // cuts every connection.
    #[test]
    fn zero_timeouts_are_refused() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        use clap::Parser as _;
        for flag in ["--request-timeout", "--header-timeout"] {
            for zero in ["0ms", "0s"] {
                assert!(
                    Cli::try_parse_from(["serve", flag, zero]).is_err(),
                    "{flag} {zero}"
                );
            }
            assert!(
                Cli::try_parse_from(["serve", flag, "250ms"]).is_ok(),
                "{flag}"
            );
        }
        assert!(Cli::try_parse_from(["serve", "--flush-interval", "0ms"]).is_ok());
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(short_duration("2s").unwrap(), Duration::from_secs(2));
        assert!(short_duration("ms").is_err());
        assert!(short_duration("1.5s").is_err());
    }
}
