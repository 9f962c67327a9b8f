"""Shared by the framework tests (test_web_*.py): one table of requests and expected answers,
the store they run against, and servers on loopback (uvicorn, werkzeug, Django's own), so that
every adapter is held to the same cases and they cannot drift."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keystead

SCOPE = "chat:completions"
ADMIN_SCOPE = "admin:keys"
KEY_NAME = "dev-server-integration"
START_TIMEOUT = 60.0  # hang guard only


@dataclass(frozen=True)
class Keys:
    """Keys in the test store (all created, and revoked/deleted, before any server opens it)."""

    valid: str
    revoked: str
    unknown: str  # well-formed, this store's prefix, deleted: not_found


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    #: Which Authorization value to send: a ``Keys`` field, "none", or a literal "raw:..."
    credential: str
    status: int
    www_authenticate: str | None
    error: str | None  # the error "type" in the body; None for 200

    def header(self, keys: Keys) -> str | None:
        if self.credential == "none":
            return None
        if self.credential.startswith("raw:"):
            return self.credential[4:]
        key: str = getattr(keys, self.credential)
        return f"Bearer {key}"


INVALID_TOKEN = 'Bearer error="invalid_token"'

#: Every adapter serves GET /chat (requires SCOPE) and GET /admin (requires ADMIN_SCOPE), both
#: answering {"caller": key.name, "id": key.id}.
CASES = [
    Case("valid key", "/chat", "valid", 200, None, None),
    Case("no header", "/chat", "none", 401, "Bearer", "missing"),
    Case("revoked key", "/chat", "revoked", 401, INVALID_TOKEN, "revoked"),
    Case("unknown key", "/chat", "unknown", 401, INVALID_TOKEN, "not_found"),
    Case(
        "malformed header",
        "/chat",
        'raw:Bearer token="abc"',
        400,
        'Bearer error="invalid_request"',
        "malformed",
    ),
    Case(
        "missing scope",
        "/admin",
        "valid",
        403,
        f'Bearer error="insufficient_scope", scope="{ADMIN_SCOPE}"',
        "insufficient_scope",
    ),
]
CASE_IDS = [case.name for case in CASES]

#: Against a server whose store is a postgres:// location on a closed loopback port.
UNAVAILABLE = Case("store unavailable", "/chat", "valid", 503, None, "unavailable")
RETRY_AFTER = "5"


#: Sockets bound (never listening) for the life of the test process: their ports refuse
#: connections, and no other socket can take them meanwhile.
_reserved: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port nothing listens on: bound and kept, but not listening, so a connection
    is refused. (Released at once instead, another process or this test's own server, which
    binds port 0 right after, could take it before the store connects.)"""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _reserved.append(sock)
    port: int = sock.getsockname()[1]
    return port


def unreachable_location() -> str:
    """A PostgreSQL location that refuses connections: opening it raises UnavailableError."""
    return f"postgres://keystead@127.0.0.1:{closed_port()}/keystead"


PEPPER = "a-test-pepper-of-at-least-thirty-two-bytes"


class DownStore:
    """A store that raises ``error`` at verification time: an open ``postgres://`` store
    whose database went down, asked about a key it has not cached (UnavailableError)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def verify_header(
        self, value: str | bytes | None, scopes: Iterable[str] = ()
    ) -> keystead.Verification:
        raise self.error


def make_store(path: Path, pepper: str | None = None) -> Keys:
    """Creates the test keys in the store file at ``path`` and closes it."""
    ks = keystead.KeyStore(path, pepper=pepper)
    try:
        valid = ks.create(KEY_NAME, scopes=[SCOPE]).key
        revoked = ks.create("revoked-key", scopes=[SCOPE])
        ks.revoke(revoked.info.id)
        unknown = ks.create("deleted-key", scopes=[SCOPE])
        ks.delete(unknown.info.id)
    finally:
        ks.close()
    return Keys(valid=valid, revoked=revoked.key, unknown=unknown.key)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: Any


def get(base: str, path: str, authorization: str | None, method: str = "GET") -> Answer:
    """A request over real HTTP (urllib); any status is an answer, not an exception."""
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    body: Any
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return Answer(status, {k.lower(): v for k, v in headers.items()}, body)


def check(base: str, keys: Keys, case: Case, error_of: Callable[[Any], Any]) -> None:
    """Sends ``case`` and asserts the answer. ``error_of`` extracts the ``{"type",
    "message"}`` error object from a refusal's body (each framework wraps it its own way)."""
    answer = get(base, case.path, case.header(keys))
    assert answer.status == case.status, (case.name, answer)
    assert answer.headers.get("www-authenticate") == case.www_authenticate, (case.name, answer)
    if case.status == 503:
        assert answer.headers.get("retry-after") == RETRY_AFTER, answer
    else:
        assert "retry-after" not in answer.headers, answer
    if case.status == 200:
        assert answer.body["caller"] == KEY_NAME, answer
    else:
        assert error_of(answer.body)["type"] == case.error, answer


def assert_no_key_material(log: str, keys: Keys) -> None:
    """No key, and no key's secret part, appears in ``log``."""
    for key in (keys.valid, keys.revoked, keys.unknown):
        secret = key.split("_", 1)[1]
        assert key not in log and secret not in log


def wait_until_serving(base: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            get(base, "/healthz", None)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def uvicorn_server(app: Any, root_path: str = "") -> Iterator[str]:
    """Serves an ASGI app with uvicorn in a thread on a free loopback port (``root_path``:
    uvicorn's ``--root-path``, the prefix of an app behind a proxy)."""
    import uvicorn

    # log_config=None: uvicorn's loggers propagate to the root logger (pytest's caplog).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="off", root_path=root_path
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT)


@contextmanager
def werkzeug_server(app: Any) -> Iterator[str]:
    """Serves a WSGI app with werkzeug's server in a thread on a free loopback port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        wait_until_serving(base)
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=START_TIMEOUT)
        server.server_close()


@contextmanager
def django_server() -> Iterator[str]:
    """Serves the configured Django project with Django's own WSGI server (runserver's)."""
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        wait_until_serving(base)
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=START_TIMEOUT)
        server.server_close()
