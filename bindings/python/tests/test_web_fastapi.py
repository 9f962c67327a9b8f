"""keystead.fastapi.require against real FastAPI served by uvicorn on loopback; and
keystead.asgi.KeysteadMiddleware on Starlette (and FastAPI), through the same table of cases."""

from __future__ import annotations

import asyncio
import http.client
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keystead import KeyInfo, KeyStore, UnavailableError
from keystead._http import LazyStore
from keystead.asgi import KeysteadMiddleware
from keystead.fastapi import require
from web_helpers import (
    ADMIN_SCOPE,
    CASE_IDS,
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
    uvicorn_server,
)


def fastapi_app(store: Any) -> FastAPI:
    app = FastAPI()
    chat = require(SCOPE, store=store)

    @app.get("/chat")
    def chat_route(request: Request, key: KeyInfo = Depends(chat)) -> dict[str, str]:
        assert request.state.keystead == key
        return {"caller": key.name, "id": key.id}

    @app.get("/admin")
    def admin_route(key: KeyInfo = Security(require(ADMIN_SCOPE, store=store))) -> dict[str, str]:
        return {"caller": key.name, "id": key.id}

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def unreachable_store() -> LazyStore:
    location = unreachable_location()
    return LazyStore(lambda: KeyStore(location))


@pytest.fixture(scope="module")
def keys_and_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, Path]:
    path = tmp_path_factory.mktemp("fastapi") / "keystead.redb"
    return make_store(path), path


@pytest.fixture(scope="module")
def fastapi_served(keys_and_path: tuple[Keys, Path]) -> Iterator[tuple[str, Keys]]:
    keys, path = keys_and_path
    with KeyStore(path) as store, uvicorn_server(fastapi_app(store)) as base:
        yield base, keys


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fastapi_dependency(
    fastapi_served: tuple[str, Keys], case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base, keys = fastapi_served
    check(base, keys, case, lambda body: body["detail"])
    assert_no_key_material(caplog.text, keys)


def test_fastapi_unavailable_store_is_503(
    keys_and_path: tuple[Keys, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys, _ = keys_and_path
    with uvicorn_server(fastapi_app(unreachable_store())) as base:
        check(base, keys, UNAVAILABLE, lambda body: body["detail"])
    assert "the key store is unavailable" in caplog.text
    assert_no_key_material(caplog.text, keys)


def test_unreachable_location_raises_unavailable() -> None:
    """The premise of the 503 tests: the binding has PostgreSQL support, and a location on a
    closed port raises UnavailableError (not StoreError, not a hang)."""
    with pytest.raises(UnavailableError):
        KeyStore(unreachable_location())


def test_openapi_documents_bearer_scheme(fastapi_served: tuple[str, Keys]) -> None:
    base, _ = fastapi_served
    doc = get(base, "/openapi.json", None).body
    schemes = doc["components"]["securitySchemes"]
    assert schemes["KeysteadBearer"]["type"] == "http"
    assert schemes["KeysteadBearer"]["scheme"] == "bearer"
    assert doc["paths"]["/chat"]["get"]["security"] == [{"KeysteadBearer": []}]
    assert doc["paths"]["/admin"]["get"]["security"] == [{"KeysteadBearer": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]


def test_security_scopes_are_required(keys_and_path: tuple[Keys, Path]) -> None:
    """FastAPI's own way to ask a security dependency for scopes, ``Security(dep,
    scopes=[...])`` (which the OpenAPI document then lists), is enforced, not ignored."""
    keys, path = keys_and_path
    with KeyStore(path) as store:
        app = FastAPI()
        api_key = require(store=store)

        @app.get("/admin")
        def admin(key: KeyInfo = Security(api_key, scopes=[ADMIN_SCOPE])) -> str:
            return key.name

        @app.get("/chat", dependencies=[Security(api_key, scopes=[SCOPE])])
        def chat() -> bool:
            return True

        with uvicorn_server(app) as base:
            answer = get(base, "/admin", f"Bearer {keys.valid}")
            assert answer.status == 403, answer
            assert answer.headers["www-authenticate"] == (
                f'Bearer error="insufficient_scope", scope="{ADMIN_SCOPE}"'
            )
            assert get(base, "/chat", f"Bearer {keys.valid}").status == 200
            assert get(base, "/chat", None).status == 401


def test_realm_is_added_to_the_challenge(keys_and_path: tuple[Keys, Path]) -> None:
    keys, path = keys_and_path
    store = KeyStore(path)
    app = FastAPI()

    @app.get("/chat")
    def chat(key: KeyInfo = Depends(require(SCOPE, store=store, realm="hub"))) -> str:
        return key.name

    with store, uvicorn_server(app) as base:
        assert get(base, "/chat", None).headers["www-authenticate"] == 'Bearer realm="hub"'
        answer = get(base, "/chat", f"Bearer {keys.revoked}")
        assert answer.headers["www-authenticate"] == (
            'Bearer realm="hub", error="invalid_token"'
        )


# --- the pure ASGI middleware, on Starlette ------------------------------------------------


async def whoami(request: StarletteRequest) -> Response:
    key = request.state.keystead
    assert isinstance(key, KeyInfo)
    return JSONResponse({"caller": key.name, "id": key.id})


async def healthz(request: StarletteRequest) -> Response:
    assert not hasattr(request.state, "keystead")
    return JSONResponse({"ok": True})


def starlette_app(store: Any) -> Any:
    """/chat needs SCOPE, /admin needs ADMIN_SCOPE: two middlewares on path prefixes;
    /healthz is not protected."""
    inner = Starlette(
        routes=[
            Route("/chat", whoami),
            Route("/admin", whoami),
            Route("/healthz", healthz),
        ]
    )
    chat = KeysteadMiddleware(inner, store, scopes=[SCOPE], paths=["/chat"])
    return KeysteadMiddleware(chat, store, scopes=[ADMIN_SCOPE], paths=["/admin"])


@pytest.fixture(scope="module")
def starlette_served(keys_and_path: tuple[Keys, Path]) -> Iterator[tuple[str, Keys]]:
    keys, path = keys_and_path
    with KeyStore(path) as store, uvicorn_server(starlette_app(store)) as base:
        yield base, keys


def middleware_error(body: Any) -> Any:
    return body["error"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_asgi_middleware(
    starlette_served: tuple[str, Keys], case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base, keys = starlette_served
    check(base, keys, case, middleware_error)
    assert_no_key_material(caplog.text, keys)


def test_asgi_middleware_unavailable_store_is_503(
    keys_and_path: tuple[Keys, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys, _ = keys_and_path
    with uvicorn_server(starlette_app(unreachable_store())) as base:
        check(base, keys, UNAVAILABLE, middleware_error)
        # A path the middleware does not protect never touches the store.
        assert get(base, "/healthz", None).status == 200
    assert_no_key_material(caplog.text, keys)


def test_asgi_middleware_protects_every_path_by_default(
    keys_and_path: tuple[Keys, Path],
) -> None:
    keys, path = keys_and_path
    inner = Starlette(routes=[Route("/healthz", whoami), Route("/x/y", whoami)])
    with KeyStore(path) as store, uvicorn_server(KeysteadMiddleware(inner, store)) as base:
        for route in ("/healthz", "/x/y", "/nowhere"):
            assert get(base, route, None).status == 401
            assert get(base, route, f"Bearer {keys.valid}").status in (200, 404)
        assert get(base, "/x/y", f"Bearer {keys.valid}").body["caller"] == "dev-server-integration"


def test_asgi_middleware_on_fastapi(keys_and_path: tuple[Keys, Path]) -> None:
    keys, path = keys_and_path
    app = FastAPI()

    @app.get("/api/me")
    def me(request: Request) -> dict[str, str]:
        key: KeyInfo = request.state.keystead
        return {"caller": key.name}

    @app.get("/healthz")
    def health() -> bool:
        return True

    with KeyStore(path) as store:
        app.add_middleware(KeysteadMiddleware, store=store, scopes=[SCOPE], paths=["/api/"])
        with uvicorn_server(app) as base:
            assert get(base, "/api/me", None).status == 401
            assert get(base, "/api/me", f"Bearer {keys.valid}").body == {
                "caller": "dev-server-integration"
            }


def test_asgi_middleware_protects_its_paths_under_a_root_path(
    keys_and_path: tuple[Keys, Path],
) -> None:
    """Behind a proxy (uvicorn --root-path /hub) scope["path"] starts with the root path and
    Starlette routes on the rest: ``paths=["/chat"]`` must still protect /chat."""
    keys, path = keys_and_path
    with KeyStore(path) as store, uvicorn_server(starlette_app(store), root_path="/hub") as base:
        assert get(base, "/chat", None).status == 401
        assert get(base, "/admin", f"Bearer {keys.valid}").status == 403
        assert get(base, "/chat", f"Bearer {keys.valid}").body["caller"] == "dev-server-integration"
        assert get(base, "/healthz", None).status == 200


def test_asgi_middleware_prefix_with_a_slash_protects_the_bare_path(
    keys_and_path: tuple[Keys, Path],
) -> None:
    """``paths=["/api/"]`` (the README's form) also protects ``/api`` itself: a router with
    ``prefix="/api"`` serves a route there."""
    keys, path = keys_and_path
    app = FastAPI()
    router = APIRouter(prefix="/api")

    @router.get("")
    def root(request: Request) -> dict[str, str]:
        key: KeyInfo = request.state.keystead
        return {"caller": key.name}

    app.include_router(router)
    with KeyStore(path) as store:
        app.add_middleware(KeysteadMiddleware, store=store, paths=["/api/"])
        with uvicorn_server(app) as base:
            assert get(base, "/api", None).status == 401
            assert get(base, "/api", f"Bearer {keys.valid}").body == {
                "caller": "dev-server-integration"
            }
            assert get(base, "/apix", None).status == 404


def test_asgi_middleware_refuses_websocket_handshake(keys_and_path: tuple[Keys, Path]) -> None:
    """Called directly (no server): a refused handshake is closed before the app sees it."""
    keys, path = keys_and_path
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    with KeyStore(path) as store:
        middleware = KeysteadMiddleware(app, store, scopes=[SCOPE])
        scope: dict[str, Any] = {"type": "websocket", "path": "/ws", "headers": []}
        asyncio.run(middleware(scope, receive, send))
        assert sent == [{"type": "websocket.close", "code": 1008}] and reached == []
        headers = [(b"authorization", f"Bearer {keys.valid}".encode())]
        scope = {"type": "websocket", "path": "/ws", "headers": headers}
        asyncio.run(middleware(scope, receive, send))
        assert reached == ["websocket"] and scope["state"]["keystead"].name == "dev-server-integration"


def test_asgi_middleware_joins_repeated_authorization_headers(
    keys_and_path: tuple[Keys, Path],
) -> None:
    """Two Authorization fields are not "the first one wins": the core judges them malformed."""
    keys, path = keys_and_path
    statuses: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("must not be reached")

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body must not be read")

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    bearer = f"Bearer {keys.valid}".encode()
    scope = {
        "type": "http",
        "path": "/chat",
        "headers": [(b"authorization", bearer), (b"Authorization", bearer)],
    }
    with KeyStore(path) as store:
        asyncio.run(KeysteadMiddleware(app, store)(scope, receive, send))
    assert statuses == [400]


def test_fastapi_dependency_refuses_repeated_authorization_headers(
    fastapi_served: tuple[str, Keys],
) -> None:
    """As the middleware: two Authorization fields are malformed, not "the first one wins"
    (a proxy that judged the last one would disagree with the app about the caller)."""
    base, keys = fastapi_served
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("GET", "/chat")
        connection.putheader("Authorization", f"Bearer {keys.valid}")
        connection.putheader("Authorization", f"Bearer {keys.revoked}")
        connection.endheaders()
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 400
    assert response.getheader("www-authenticate") == 'Bearer error="invalid_request"'


@pytest.mark.parametrize("adapter", ["fastapi", "asgi"])
def test_store_down_at_verification_is_503(
    keys_and_path: tuple[Keys, Path], adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Unavailable after opening (fleet mode, the database went down): still 503, not 500."""
    caplog.set_level(logging.DEBUG)
    keys, _ = keys_and_path
    store = DownStore(UnavailableError("database unreachable"))
    app = fastapi_app(store) if adapter == "fastapi" else starlette_app(store)
    error_of = (lambda body: body["detail"]) if adapter == "fastapi" else middleware_error
    with uvicorn_server(app) as base:
        check(base, keys, UNAVAILABLE, error_of)
    assert_no_key_material(caplog.text, keys)
