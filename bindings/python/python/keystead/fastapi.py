"""FastAPI dependency: ``keystead.fastapi.require(*scopes, store=store)`` (``pip install
keystead[fastapi]``).

>>> @app.post("/api/v1/chat/completions")                          # doctest: +SKIP
... def chat(key: KeyInfo = Depends(require("chat:completions", store=store))) -> dict:
...     return {"caller": key.name}

The dependency returns the verified ``KeyInfo`` (also in ``request.state.keystead``). It is an
HTTP bearer security scheme, so the OpenAPI document lists it under
``components.securitySchemes`` (``{"type": "http", "scheme": "bearer"}``, named
``scheme_name``, default ``KeysteadBearer``) and in each route's ``security``. A refused
request raises ``HTTPException`` with the core's status and ``WWW-Authenticate`` (RFC 6750):
401 ``Bearer`` for a missing header, 401 ``invalid_token``, 400 ``invalid_request``, 403
``insufficient_scope`` with the required ``scope``; 503 with ``Retry-After`` when the store is
unavailable. The response body is ``{"detail": {"type": code, "message": ...}}``.
"""

from __future__ import annotations

try:
    from fastapi import HTTPException
    from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
    from starlette.requests import Request
except ImportError:  # tested in test_web_http; the original error stays as __context__
    raise ImportError(
        "keystead.fastapi needs FastAPI: install it with `pip install keystead[fastapi]`"
    )

from ._http import DEFAULT_RETRY_AFTER, Decision, Guard, Store, required_scopes
from .asgi import authorization
from ._keystead import KeyInfo

__all__ = ["KeysteadBearer", "require"]


class KeysteadBearer(SecurityBase):
    """The dependency ``require`` returns; a ``SecurityBase`` so that FastAPI documents it."""

    def __init__(
        self,
        scopes: tuple[str, ...],
        store: Store,
        *,
        realm: str | None = None,
        retry_after: int = DEFAULT_RETRY_AFTER,
        scheme_name: str = "KeysteadBearer",
        description: str | None = None,
    ) -> None:
        self.scopes = scopes
        self.guard = Guard(store, realm=realm, retry_after=retry_after)
        self.model = HTTPBearerModel(bearerFormat="keystead API key", description=description)
        self.scheme_name = scheme_name

    # A plain (sync) function: FastAPI runs it in its thread pool, so a store lookup that
    # goes to the database (fleet mode) never blocks the event loop.
    # ``security_scopes``: those of ``Security(dep, scopes=[...])`` (and of the dependants
    # above it), which FastAPI also lists in the OpenAPI document; required on top of
    # ``self.scopes``.
    def __call__(self, request: Request, security_scopes: SecurityScopes) -> KeyInfo:
        scopes = self.scopes + tuple(
            s for s in dict.fromkeys(security_scopes.scopes) if s not in self.scopes
        )
        # Every Authorization field, joined (as the middleware): two are malformed.
        decision: Decision = self.guard.check(authorization(request.scope), scopes)
        if decision.key is None:
            raise HTTPException(
                status_code=decision.status, detail=decision.error(), headers=decision.headers
            )
        request.state.keystead = decision.key
        return decision.key


def require(
    *scopes: str,
    store: Store,
    realm: str | None = None,
    retry_after: int = DEFAULT_RETRY_AFTER,
    scheme_name: str = "KeysteadBearer",
    description: str | None = None,
) -> KeysteadBearer:
    """A dependency requiring a valid key granting every scope of ``scopes``; use it with
    ``Depends(...)`` or ``Security(...)`` (as a parameter, or in ``dependencies=[...]``).
    ``Security(require(store=store), scopes=[...])`` requires those scopes too."""
    return KeysteadBearer(
        required_scopes(scopes),
        store,
        realm=realm,
        retry_after=retry_after,
        scheme_name=scheme_name,
        description=description,
    )
