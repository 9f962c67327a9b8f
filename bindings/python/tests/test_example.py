"""The ASGI example (examples/chat_server.py) served by uvicorn in another process, called over
HTTP exactly as a client would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystead import KeyStore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENDPOINT = "/api/v1/chat/completions"
BODY = {"model": "aignehub/gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hello!"}]}
START_TIMEOUT = 30.0
SERVER_REFRESH = 1.0  # the example server's refresh interval: the core's default, in seconds
EVENTUALLY = 120.0  # liveness only: a working server is far quicker, a broken one never


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(store_path: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Starts uvicorn on a free port; retries if another process took the port meanwhile."""
    env = dict(os.environ, KEYSTEAD_STORE=str(store_path))
    for _ in range(3):
        port = free_port()
        with log.open("ab") as out:
            server = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "--factory",
                    "chat_server:create_app_from_env", "--app-dir", str(EXAMPLES),
                    "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return server, base
            except httpx.TransportError:
                time.sleep(0.1)
        stop(server)
    raise AssertionError(f"uvicorn did not start; its log:\n{log.read_text(errors='replace')}")


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture
def served(store_path: Path, tmp_path: Path) -> Iterator[tuple[KeyStore, str]]:
    """An admin handle on the store and the base URL of a server using the same file."""
    with KeyStore(store_path) as admin:
        server, base = start_server(store_path, tmp_path / "uvicorn.log")
        try:
            yield admin, base
        finally:
            stop(server)


def post(base: str, key: str | None, body: Any = BODY) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{base}{ENDPOINT}", json=body, headers=headers, timeout=10)


def post_new_key(base: str, key: str) -> httpx.Response:
    """Posts with a key created (before this call) after the server started: the server sees
    it once its refresh interval (1 s) has passed, so until then it may answer 401 not_found.
    A request sent after that must not; how long it took is not asserted."""
    created_at = time.time()
    deadline = time.monotonic() + EVENTUALLY
    while True:
        sent = time.time()
        response = post(base, key)
        if response.status_code != 401:
            return response
        assert response.json()["error"]["type"] == "not_found"
        assert sent <= created_at + SERVER_REFRESH, "the server missed a key after its refresh"
        assert time.monotonic() < deadline, "new key never seen by the server"
        time.sleep(0.1)


def test_valid_key(served: tuple[KeyStore, str]) -> None:
    admin, base = served
    created = admin.create("dev-server-integration", scopes=["chat:completions"])
    response = post_new_key(base, created.key)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "aignehub/gpt-3.5-turbo"
    assert data["choices"][0]["message"]["role"] == "assistant"
    assert "Hello!" in data["choices"][0]["message"]["content"]
    assert "www-authenticate" not in response.headers
    # a bad body is the endpoint's business, after authentication
    assert post(base, created.key, {"messages": []}).status_code == 400


def test_missing_and_wrong_keys(served: tuple[KeyStore, str], tmp_path: Path) -> None:
    _, base = served
    missing = post(base, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["type"] == "missing"

    with KeyStore(tmp_path / "elsewhere.redb") as other:
        foreign = other.create("not-in-this-store", scopes=["chat:completions"]).key
    wrong = post(base, foreign)
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert wrong.json()["error"]["type"] == "not_found"

    typo = post(base, "ks_not-a-real-key")
    assert typo.status_code == 400
    assert typo.headers["www-authenticate"] == 'Bearer error="invalid_request"'


def test_revoked_key(served: tuple[KeyStore, str]) -> None:
    admin, base = served
    created = admin.create("to-revoke", scopes=["chat:completions"])
    assert post_new_key(base, created.key).status_code == 200
    admin.revoke(created.info.id)
    revoked_at = time.time()
    # a request sent more than the server's refresh interval (1 s) after the revoke is refused
    deadline = time.monotonic() + EVENTUALLY
    while True:
        sent = time.time()
        response = post(base, created.key)
        if response.status_code != 200:
            break
        assert sent <= revoked_at + SERVER_REFRESH, "a request after the refresh was let in"
        assert time.monotonic() < deadline, "revocation never seen by the server"
        time.sleep(0.1)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"]["type"] == "revoked"


def test_key_without_the_scope(served: tuple[KeyStore, str]) -> None:
    admin, base = served
    created = admin.create("embeddings-only", scopes=["embeddings"])
    response = post_new_key(base, created.key)
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="chat:completions"'
    )
    assert response.json()["error"]["type"] == "insufficient_scope"
