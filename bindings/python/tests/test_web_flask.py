"""keystead.flask against real Flask served by werkzeug on loopback, through the shared table."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g

from keystead import KeyInfo, KeyStore, UnavailableError
from keystead._http import Store
from keystead.flask import Keystead, require
from web_helpers import (
    ADMIN_SCOPE,
    CASE_IDS,
    KEY_NAME,
    PEPPER,
    CASES,
    SCOPE,
    UNAVAILABLE,
    Case,
    DownStore,
    Keys,
    assert_no_key_material,
    check,
    get,
    make_store,
    unreachable_location,
    werkzeug_server,
)


def flask_app(config: dict[str, Any], store: Store | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    Keystead(app, store=store)

    @app.get("/chat")
    @require(SCOPE)
    def chat() -> dict[str, str]:
        key: KeyInfo = g.keystead
        return {"caller": key.name, "id": key.id}

    @app.get("/admin")
    @require(ADMIN_SCOPE)
    async def admin() -> dict[str, str]:  # async views work too
        key: KeyInfo = g.keystead
        return {"caller": key.name, "id": key.id}

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def body_error(body: Any) -> Any:
    return body["error"]


@pytest.fixture(scope="module")
def keys_and_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, Path]:
    path = tmp_path_factory.mktemp("flask") / "keystead.redb"
    return make_store(path), path


@pytest.fixture(scope="module")
def served(keys_and_path: tuple[Keys, Path]) -> Iterator[tuple[str, Keys]]:
    """The store is opened by the extension from app.config, on the first request."""
    keys, path = keys_and_path
    app = flask_app({"KEYSTEAD_LOCATION": str(path)})
    with werkzeug_server(app) as base:
        yield base, keys


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_flask(served: tuple[str, Keys], case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    base, keys = served
    check(base, keys, case, body_error)
    assert_no_key_material(caplog.text, keys)


def test_flask_unavailable_store_is_503(
    keys_and_path: tuple[Keys, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys, _ = keys_and_path
    app = flask_app({"KEYSTEAD_LOCATION": unreachable_location()})
    with werkzeug_server(app) as base:
        check(base, keys, UNAVAILABLE, body_error)
        # Opening is retried on the next request, still 503 (not a cached failure or a 500).
        check(base, keys, UNAVAILABLE, body_error)
    assert_no_key_material(caplog.text, keys)


def test_flask_store_passed_to_extension_and_realm_from_config(
    keys_and_path: tuple[Keys, Path],
) -> None:
    keys, path = keys_and_path
    with KeyStore(path) as store:
        app = flask_app({"KEYSTEAD_REALM": "hub"}, store=store)
        with werkzeug_server(app) as base:
            assert get(base, "/chat", f"Bearer {keys.valid}").status == 200
            answer = get(base, "/admin", f"Bearer {keys.valid}")
            assert answer.headers["www-authenticate"] == (
                f'Bearer realm="hub", error="insufficient_scope", scope="{ADMIN_SCOPE}"'
            )


def test_flask_needs_a_location_or_a_store() -> None:
    with pytest.raises(RuntimeError, match="KEYSTEAD_LOCATION"):
        Keystead(Flask(__name__))


def test_flask_require_without_extension_is_a_clear_error() -> None:
    app = Flask(__name__)

    @app.get("/chat")
    @require(SCOPE)
    def chat() -> str:
        return "unreachable"

    app.testing = True
    with pytest.raises(RuntimeError, match=r"Keystead\(app\)"):
        app.test_client().get("/chat")


def test_flask_pepper_from_config(tmp_path: Path) -> None:
    path = tmp_path / "peppered.redb"
    keys = make_store(path, pepper=PEPPER)
    app = flask_app({"KEYSTEAD_LOCATION": str(path), "KEYSTEAD_PEPPER": PEPPER})
    with werkzeug_server(app) as base:
        assert get(base, "/chat", f"Bearer {keys.valid}").body["caller"] == KEY_NAME


def test_flask_store_down_at_verification_is_503(keys_and_path: tuple[Keys, Path]) -> None:
    """Unavailable after opening (fleet mode, the database went down): still 503, not 500."""
    keys, _ = keys_and_path
    app = flask_app({}, store=DownStore(UnavailableError("database unreachable")))
    with werkzeug_server(app) as base:
        check(base, keys, UNAVAILABLE, body_error)
