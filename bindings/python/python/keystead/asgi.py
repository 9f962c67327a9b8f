"""Pure ASGI middleware (Starlette, FastAPI, any ASGI 3 app): no dependency beyond keystead.

>>> app = KeysteadMiddleware(app, store=store, scopes=["chat:completions"],
...                          paths=["/api/"])                      # doctest: +SKIP

Every HTTP request whose path starts with one of ``paths`` (all paths when ``None``; behind a
root path, ``uvicorn --root-path`` or a ``Mount``, the path with or without it; a prefix
ending in ``/`` also covers the path without that slash: ``/api/`` protects ``/api``) must
carry a valid key granting every scope of ``scopes``; the verified ``KeyInfo`` is put in
``scope["state"]["keystead"]`` (Starlette/FastAPI: ``request.state.keystead``). A refused
request is answered by the middleware -- 400, 401 or 403 with the core's ``WWW-Authenticate``,
503 with ``Retry-After`` when the store is unavailable -- and a JSON body
``{"error": {"type": ..., "message": ...}}``. The request body is never read. A WebSocket
handshake on a protected path that is refused is closed (code 1008) before it is accepted.

Verification runs inline on the event loop: with a store file it is a hash and an in-memory
lookup with the GIL released. With a ``postgres://`` store, a key that is not cached yet is a
database query that holds the loop for its duration; there, prefer the FastAPI dependency
(``keystead.fastapi.require``), which FastAPI runs in its thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ._http import DEFAULT_RETRY_AFTER, Decision, Guard, Store, check_scopes, required_scopes

__all__ = ["KeysteadMiddleware", "authorization"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def authorization(scope: Scope) -> bytes | None:
    """The ``Authorization`` value of an ASGI scope, ``None`` when absent. Several
    ``Authorization`` fields are joined with ``", "`` (as a WSGI server does), which the core
    then refuses as malformed."""
    values = [v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"]
    if not values:
        return None
    return b", ".join(values)


class KeysteadMiddleware:
    """Requires a valid key (and ``scopes``) on the paths under ``paths``."""

    def __init__(
        self,
        app: ASGIApp,
        store: Store,
        *,
        scopes: Iterable[str] = (),
        paths: Iterable[str] | None = None,
        realm: str | None = None,
        retry_after: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        self.app = app
        self.scopes = required_scopes(scopes)
        self.paths = None if paths is None else check_scopes(paths)
        self.guard = Guard(store, realm=realm, retry_after=retry_after)

    def protects(self, path: str, root_path: str = "") -> bool:
        """Whether requests to ``path`` need a key. Behind a root path (``uvicorn
        --root-path``, a ``Mount``) ``path`` starts with ``root_path`` and the app routes on
        the rest: a prefix protects the request if it matches either."""
        if self.paths is None:
            return True
        candidates = [path]
        if root_path and path.startswith(root_path):
            rest = path[len(root_path) :]
            if rest == "" or rest.startswith("/"):
                candidates.append(rest)
        # "/api/" protects "/api" too: the path its subtree hangs from.
        return any(
            c.startswith(p) or (p.endswith("/") and c == p[:-1])
            for c in candidates
            for p in self.paths
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        path, root_path = scope.get("path", ""), scope.get("root_path", "")
        if kind not in ("http", "websocket") or not self.protects(path, root_path):
            await self.app(scope, receive, send)
            return
        decision = self.guard.check(authorization(scope), self.scopes)
        if decision.ok:
            state = scope.setdefault("state", {})
            state["keystead"] = decision.key
            await self.app(scope, receive, send)
        elif kind == "http":
            await _respond(send, decision)
        else:
            await receive()  # the "websocket.connect" event, then refuse the handshake
            await send({"type": "websocket.close", "code": 1008})


async def _respond(send: Send, decision: Decision) -> None:
    body = decision.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in decision.headers.items()]
    await send({"type": "http.response.start", "status": decision.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
