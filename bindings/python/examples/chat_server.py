"""An OpenAI-style chat endpoint protected by keystead API keys (Starlette + uvicorn).

Run it against a store (create a key first, e.g. with the keystead CLI or
``keystead.KeyStore(path).create("dev", scopes=["chat:completions"]).key``)::

    KEYSTEAD_STORE=keystead.redb uvicorn --factory chat_server:create_app_from_env \\
        --app-dir bindings/python/examples --port 8000

    curl -X POST http://127.0.0.1:8000/api/v1/chat/completions \\
        -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
        -d '{"model": "aignehub/gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hello!"}]}'

``require_api_key`` is the reusable part: decorate any endpoint with the scopes it needs.
Failures are answered exactly as keystead decides: 400 (malformed credentials), 401 (missing,
unknown, disabled, revoked or expired key) or 403 (missing scope), with ``WWW-Authenticate``.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import keystead

Endpoint = Callable[[Request], Awaitable[Response]]

MESSAGES = {
    "missing": "An API key is required: send `Authorization: Bearer <key>`.",
    "malformed": "The Authorization header or the API key is malformed.",
    "not_found": "The API key is not valid.",
    "disabled": "The API key is disabled.",
    "revoked": "The API key has been revoked.",
    "expired": "The API key has expired.",
    "insufficient_scope": "The API key does not grant the scope this endpoint requires.",
}


def require_api_key(store: keystead.KeyStore, *scopes: str) -> Callable[[Endpoint], Endpoint]:
    """Decorates an endpoint so that it runs only for a valid key granting every scope.

    The verified key's ``KeyInfo`` is put in ``request.state.api_key``. Verification is a
    hash and an in-memory lookup with the GIL released, so it is called inline.
    """

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            check = store.verify_header(request.headers.get("authorization"), scopes)
            if not check.ok:
                headers = {}
                if check.www_authenticate is not None:
                    headers["WWW-Authenticate"] = check.www_authenticate
                body = {"error": {"type": check.code, "message": MESSAGES.get(check.code, "")}}
                return JSONResponse(body, status_code=check.http_status, headers=headers)
            request.state.api_key = check.key
            return await endpoint(request)

        return guarded

    return decorate


def create_app(store: keystead.KeyStore, *, close_store: bool = False) -> Starlette:
    """The app; with ``close_store`` the store is closed (usage flushed) at shutdown."""

    @require_api_key(store, "chat:completions")
    async def chat_completions(request: Request) -> Response:
        try:
            body: Any = await request.json()
            model = body["model"]
            messages = body["messages"]
            last = messages[-1]["content"]
            if not isinstance(model, str) or not isinstance(last, str):
                raise TypeError
        except (ValueError, KeyError, IndexError, TypeError):
            error = {"type": "invalid_request", "message": "expected a model and messages"}
            return JSONResponse({"error": error}, status_code=400)
        reply = f"You said: {last}"
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(last.split()),
                    "completion_tokens": len(reply.split()),
                    "total_tokens": len(last.split()) + len(reply.split()),
                },
            }
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if close_store:
            store.close()

    return Starlette(
        routes=[
            Route("/api/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def create_app_from_env() -> Starlette:
    """For ``uvicorn --factory``: the store is ``$KEYSTEAD_STORE``, the pepper (if any)
    ``$KEYSTEAD_PEPPER``."""
    store = keystead.KeyStore(
        os.environ.get("KEYSTEAD_STORE", "keystead.redb"),
        pepper=os.environ.get("KEYSTEAD_PEPPER") or None,
    )
    return create_app(store, close_store=True)
