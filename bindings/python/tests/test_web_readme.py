"""The README's framework snippets, run as written (only the store path is replaced) and
called over HTTP on loopback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from web_helpers import KEY_NAME, get, make_store, uvicorn_server, werkzeug_server

README = Path(__file__).resolve().parents[1] / "README.md"
ENDPOINT = "/api/v1/chat/completions"


def snippet(starting_with: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    for block in blocks:
        # Flask/DRF snippets are indented inside a list item.
        lines = block.splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        code = "\n".join(line[indent:] for line in lines) + "\n"
        if code.startswith(starting_with):
            return code
    raise AssertionError(f"no README snippet starting with {starting_with!r}")


def run(code: str, store: Path) -> dict[str, Any]:
    assert '"keystead.redb"' in code
    namespace: dict[str, Any] = {"__name__": "readme_snippet"}
    exec(compile(code.replace('"keystead.redb"', repr(str(store))), "README", "exec"), namespace)
    return namespace


def test_readme_opens_with_the_fastapi_example() -> None:
    first = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert first is not None and first.group(1).startswith("from fastapi import")
    assert 'Depends(ks.require("chat:completions", store=store))' in first.group(1)


def test_readme_fastapi_example(tmp_path: Path) -> None:
    path = tmp_path / "keystead.redb"
    keys = make_store(path)
    namespace = run(snippet("from fastapi import"), path)
    with uvicorn_server(namespace["app"]) as base:
        answer = get(base, ENDPOINT, f"Bearer {keys.valid}", method="POST")
        assert answer.status == 200 and answer.body == {"caller": KEY_NAME}
        answer = get(base, ENDPOINT, None, method="POST")
        assert answer.status == 401 and answer.headers["www-authenticate"] == "Bearer"
        doc = get(base, "/openapi.json", None).body
        assert doc["components"]["securitySchemes"]["KeysteadBearer"]["scheme"] == "bearer"
    namespace["store"].close()


def test_readme_flask_example(tmp_path: Path) -> None:
    path = tmp_path / "keystead.redb"
    keys = make_store(path)
    namespace = run(snippet("from flask import"), path)
    app: Flask = namespace["app"]

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    with werkzeug_server(app) as base:
        answer = get(base, ENDPOINT, f"Bearer {keys.valid}", method="POST")
        assert answer.status == 200 and answer.body == {"caller": KEY_NAME}
        answer = get(base, ENDPOINT, f"Bearer {keys.revoked}", method="POST")
        assert answer.status == 401
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    app.extensions["keystead"].store.close()


@pytest.mark.parametrize("name", ["KeysteadAuthentication", "HasScopes", "required_scopes"])
def test_readme_drf_snippet_names_what_exists(name: str) -> None:
    """The DRF snippet needs settings and a project; test_web_django serves the same view
    shape. Here: the snippet uses the names the module defines."""
    import keystead.django

    code = snippet("# settings.py")
    assert name in code
    assert name == "required_scopes" or hasattr(keystead.django, name)
