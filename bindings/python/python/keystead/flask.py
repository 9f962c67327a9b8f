"""Flask extension and decorator (``pip install keystead[flask]``).

>>> app.config["KEYSTEAD_LOCATION"] = "keystead.redb"             # doctest: +SKIP
>>> Keystead(app)
>>> @app.post("/api/v1/chat/completions")
... @require("chat:completions")
... def chat():
...     return {"caller": g.keystead.name}

The store is ``Keystead(app, store=...)``'s, or opened on first use (once per process) from
``app.config``: ``KEYSTEAD_LOCATION`` (a file path or a ``postgres://`` URL) and optionally
``KEYSTEAD_PEPPER``, ``KEYSTEAD_REALM``, ``KEYSTEAD_RETRY_AFTER``. A decorated view runs only
for a valid key granting every required scope, with its ``KeyInfo`` in ``flask.g.keystead``;
otherwise the decorator answers 400/401/403 with the core's ``WWW-Authenticate`` or 503 with
``Retry-After`` (store unavailable), and a JSON body ``{"error": {"type", "message"}}``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

try:
    from flask import Flask, Response, current_app, g, request
except ImportError:  # tested in test_web_http; the original error stays as __context__
    raise ImportError(
        "keystead.flask needs Flask: install it with `pip install keystead[flask]`"
    )

from ._http import DEFAULT_RETRY_AFTER, Decision, Guard, LazyStore, Store, required_scopes
from ._keystead import KeyStore

__all__ = ["Keystead", "require"]

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "keystead"


class Keystead:
    """The extension: ``Keystead(app)`` or ``ext = Keystead(); ext.init_app(app)``."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        store: Store | None = None,
        realm: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.store = store
        self.realm = realm
        self.retry_after = retry_after
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        store = self.store
        if store is None:
            config = app.config
            if not config.get("KEYSTEAD_LOCATION"):
                raise RuntimeError(
                    "keystead.flask: set app.config['KEYSTEAD_LOCATION'] or pass store="
                )
            location = str(config["KEYSTEAD_LOCATION"])
            pepper = config.get("KEYSTEAD_PEPPER")

            def open_store() -> KeyStore:
                return KeyStore(location, pepper=pepper)

            store = LazyStore(open_store)
        realm = self.realm if self.realm is not None else app.config.get("KEYSTEAD_REALM")
        retry_after = self.retry_after
        if retry_after is None:
            retry_after = app.config.get("KEYSTEAD_RETRY_AFTER", DEFAULT_RETRY_AFTER)
        app.extensions[EXTENSION] = Guard(store, realm=realm, retry_after=retry_after)


def _respond(decision: Decision) -> Response:
    return Response(
        decision.body(),
        status=decision.status,
        headers=decision.headers,
        mimetype="application/json",
    )


def require(*scopes: str) -> Callable[[F], F]:
    """Decorates a view: it runs only for a valid key granting every scope of ``scopes``."""
    required = required_scopes(scopes)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            guard = current_app.extensions.get(EXTENSION)
            if not isinstance(guard, Guard):
                raise RuntimeError("keystead.flask: call Keystead(app) before using @require")
            decision = guard.check(request.headers.get("Authorization"), required)
            if decision.key is None:
                return _respond(decision)
            g.keystead = decision.key
            return current_app.ensure_sync(view)(*args, **kwargs)

        return cast(F, guarded)

    return decorate
