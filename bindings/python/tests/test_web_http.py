"""keystead._http: the one decision rule the framework adapters share; and the packaging of the
adapters (optional extras, a clear ImportError without the framework)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import keystead
from keystead import InvalidArgument, KeyStore, StoreError, UnavailableError
from keystead._http import Guard, LazyStore
from web_helpers import DownStore

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "vectors"


def test_decision_is_the_cores_for_every_header_vector(store: KeyStore) -> None:
    """Status and challenge are passed through unchanged, for every header vector."""
    guard = Guard(store)
    cases = json.loads((VECTORS / "headers.json").read_text())["cases"]
    for case in cases:
        verification = store.verify_header(case["header"])
        decision = guard.check(case["header"])
        assert decision.status == verification.http_status, case["name"]
        assert decision.www_authenticate == verification.www_authenticate, case["name"]
        assert decision.code == case["verify"] == verification.code, case["name"]
        assert decision.key is None and not decision.ok and decision.retry_after is None


def test_valid_key_decision(store: KeyStore) -> None:
    created = store.create("svc", scopes=["a"])
    decision = Guard(store).check(f"Bearer {created.key}", ["a"])
    assert decision.ok and decision.status == 200 and decision.key == store.get(created.info.id)
    assert decision.key_id == created.info.id and decision.headers == {}
    refused = Guard(store).check(f"Bearer {created.key}", ["a", "b"])
    assert refused.status == 403 and refused.key is None and refused.key_id == created.info.id
    assert refused.headers == {
        "WWW-Authenticate": 'Bearer error="insufficient_scope", scope="a b"'
    }
    assert json.loads(refused.body())["error"]["type"] == "insufficient_scope"
    assert created.key not in repr(refused) and created.key not in refused.body().decode()


def test_unavailable_is_503_with_retry_after(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "ks_0KsstiOWQs3VLatBnffY2iz90qnLJ3xBL1B7T9xiDeqKev7DUrcpSPm1eFx2b"
    guard = Guard(DownStore(UnavailableError("db down")), retry_after=7)
    decision = guard.check(f"Bearer {secret}", ["a"])
    assert decision.status == 503 and decision.code == "unavailable" and not decision.ok
    assert decision.headers == {"Retry-After": "7"}
    assert json.loads(decision.body()) == {
        "error": {"type": "unavailable", "message": "The key store is unavailable; retry later."}
    }
    assert "unavailable" in caplog.text and secret not in caplog.text


def test_other_store_errors_propagate() -> None:
    """A broken or closed store is the server's fault: the framework's 500, not a verdict."""
    with pytest.raises(StoreError):
        Guard(DownStore(StoreError("disk"))).check("Bearer x")


def test_realm(store: KeyStore) -> None:
    guard = Guard(store, realm="api hub")
    assert guard.check(None).www_authenticate == 'Bearer realm="api hub"'
    assert guard.check("Bearer").www_authenticate == (
        'Bearer realm="api hub", error="invalid_request"'
    )
    for bad in ['a"b', "a\\b", "a\nb", "é"]:
        with pytest.raises(InvalidArgument):
            Guard(store, realm=bad)


@pytest.mark.parametrize("retry_after", [-1, 1.5, True, "5"])
def test_retry_after_must_be_seconds(store: KeyStore, retry_after: object) -> None:
    with pytest.raises(InvalidArgument):
        Guard(store, retry_after=retry_after)  # type: ignore[arg-type]


def test_scopes_must_be_strings(store: KeyStore) -> None:
    from keystead.asgi import KeysteadMiddleware

    async def app(scope: object, receive: object, send: object) -> None: ...

    with pytest.raises(TypeError, match="single string"):
        KeysteadMiddleware(app, store, scopes="chat:completions")
    with pytest.raises(TypeError, match="must be a str"):
        KeysteadMiddleware(app, store, scopes=[b"chat"])  # type: ignore[list-item]


def test_lazy_store_opens_once_across_threads(store_path: Path) -> None:
    KeyStore(store_path).close()
    opened: list[KeyStore] = []
    barrier = threading.Barrier(8)

    def opener() -> KeyStore:
        handle = KeyStore(store_path)
        opened.append(handle)
        return handle

    lazy = LazyStore(opener)

    def verify() -> None:
        barrier.wait(timeout=60)
        assert lazy.verify_header(None).code == "missing"

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(opened) == 1
    lazy.close()
    assert opened[0].closed


def test_lazy_store_retries_a_failed_open(store_path: Path) -> None:
    attempts: list[int] = []

    def opener() -> KeyStore:
        attempts.append(1)
        if len(attempts) == 1:
            raise UnavailableError("db down")
        return KeyStore(store_path)

    guard = Guard(LazyStore(opener))
    assert guard.check(None).status == 503
    assert guard.check(None).status == 401
    assert len(attempts) == 2


def test_lazy_store_reopens_in_another_process(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a fork (seen as a new pid) the process opens its own handle and does not close
    the parent's. The pid is simulated: a real fork of a process running the store's
    background threads is not something this test should depend on."""
    KeyStore(store_path).close()
    opened: list[KeyStore] = []

    def opener() -> KeyStore:
        opened.append(KeyStore(store_path))
        return opened[-1]

    lazy = LazyStore(opener)
    parent = lazy.get()
    assert lazy.get() is parent
    monkeypatch.setattr(os, "getpid", lambda: -1)
    child = lazy.get()
    assert child is not parent and len(opened) == 2 and not parent.closed
    lazy.close()
    assert child.closed and not parent.closed
    parent.close()


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("keystead.fastapi", "fastapi", "keystead[fastapi]"),
        ("keystead.flask", "flask", "keystead[flask]"),
        ("keystead.django", "rest_framework", "keystead[django]"),
    ],
)
def test_adapter_without_its_framework_names_the_extra(
    module: str, missing: str, extra: str
) -> None:
    """Run in a fresh interpreter where the framework cannot be imported."""
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        f"try:\n    import {module}\n"
        "except ImportError as error:\n    print(error)\n"
        "else:\n    print('imported')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert extra in result.stdout, result


def test_core_package_imports_no_framework() -> None:
    """``import keystead`` (and the ASGI middleware) pulls in no web framework."""
    code = (
        "import sys, keystead, keystead.asgi\n"
        "print(sorted(m for m in ('fastapi', 'starlette', 'flask', 'django', 'rest_framework')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
    assert keystead.__name__ == "keystead"


def test_django_adapter_imports_before_settings_are_configured() -> None:
    """Settings may name ``keystead.django``'s classes, so importing it must not need them."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import keystead.django; print('imported')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.stdout.strip() == "imported", result.stderr


@pytest.mark.parametrize("scope", ["no spaces", "", "é"])
def test_a_scope_no_key_can_have_is_refused_when_the_app_is_set_up(
    store: KeyStore, scope: str
) -> None:
    # Core's scope rule, applied at setup: otherwise every request would fail with a 500.
    import keystead.asgi
    import keystead.fastapi
    import keystead.flask

    async def app(
        scope: keystead.asgi.Scope, receive: keystead.asgi.Receive, send: keystead.asgi.Send
    ) -> None:
        raise AssertionError("never called")

    with pytest.raises(InvalidArgument):
        keystead.fastapi.require(scope, store=store)
    with pytest.raises(InvalidArgument):
        keystead.asgi.KeysteadMiddleware(app, store, scopes=[scope])
    with pytest.raises(InvalidArgument):
        keystead.flask.require(scope)
    # A valid scope is accepted by all three.
    keystead.fastapi.require("chat:completions", store=store)
    keystead.asgi.KeysteadMiddleware(app, store, scopes=["chat:completions"])
    keystead.flask.require("chat:completions")
