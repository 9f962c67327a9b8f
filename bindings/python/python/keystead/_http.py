"""The one HTTP rule every framework adapter uses: (store, ``Authorization`` value, required
scopes) -> a :class:`Decision` (status, headers, body, key).

Framework-free on purpose: ``keystead.asgi``, ``keystead.fastapi``, ``keystead.flask`` and
``keystead.django`` only translate a :class:`Decision` into their own response types, so the
mapping exists once. The status and the ``WWW-Authenticate`` value come from the Rust core
(``Verification.http_status`` / ``.www_authenticate``, RFC 6750); this module adds only what the
core cannot know: an optional ``realm`` and 503 + ``Retry-After`` when the store cannot be
reached (``UnavailableError``, fleet mode) -- never a 500 for that.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, Union

from ._errors import InvalidArgument, UnavailableError
from ._keystead import KeyInfo, KeyStore, Verification, _validate_scopes

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "MESSAGES",
    "Decision",
    "Guard",
    "LazyStore",
    "Store",
    "Verifier",
    "check_scopes",
    "required_scopes",
]

logger = logging.getLogger("keystead")

#: Seconds a client is told to wait (``Retry-After``) when the store is unavailable.
DEFAULT_RETRY_AFTER = 5

#: Human-readable messages per outcome code, for response bodies.
MESSAGES = {
    "missing": "An API key is required: send `Authorization: Bearer <key>`.",
    "malformed": "The Authorization header or the API key is malformed.",
    "not_found": "The API key is not valid.",
    "disabled": "The API key is disabled.",
    "revoked": "The API key has been revoked.",
    "expired": "The API key has expired.",
    "insufficient_scope": "The API key does not grant the scope this endpoint requires.",
    "unavailable": "The key store is unavailable; retry later.",
}


class Verifier(Protocol):
    """What the adapters need from a store: ``KeyStore`` (or :class:`LazyStore`) fits."""

    def verify_header(
        self, value: str | bytes | None, scopes: Iterable[str] = ...
    ) -> Verification: ...


class LazyStore:
    """A ``KeyStore`` opened on first use, once per process (thread-safe).

    For settings-driven adapters (Flask's ``app.config``, Django's ``settings.KEYSTEAD``): the
    store is not opened at import time, and after a ``fork`` the child opens its own handle.
    If opening fails with ``UnavailableError`` (a ``postgres://`` location that cannot be
    reached) the error propagates -- a 503 for that request -- and the next call tries again.
    """

    def __init__(self, opener: Callable[[], KeyStore]) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self._store: KeyStore | None = None
        self._pid = 0

    def get(self) -> KeyStore:
        """The store, opening it if this process has not yet."""
        store, pid = self._store, os.getpid()
        if store is not None and self._pid == pid:
            return store
        with self._lock:
            if self._store is None or self._pid != pid:
                # A handle inherited through fork belongs to the parent: never reuse or
                # close it here, open this process's own.
                self._store = self._opener()
                self._pid = pid
            return self._store

    def verify_header(
        self, value: str | bytes | None, scopes: Iterable[str] = ()
    ) -> Verification:
        return self.get().verify_header(value, scopes)

    def close(self) -> None:
        """Closes this process's store, if open (the next call opens it again)."""
        with self._lock:
            if self._store is not None and self._pid == os.getpid():
                self._store.close()
            self._store = None


@dataclass(frozen=True)
class Decision:
    """What to answer. ``ok`` means: run the endpoint with ``key``; otherwise answer
    ``status`` with ``headers`` and ``body()``."""

    status: int
    #: The core's outcome code (``valid``, ``missing``, ``malformed``, ``not_found``,
    #: ``disabled``, ``revoked``, ``expired``, ``insufficient_scope``) or ``unavailable``.
    code: str
    #: The verified key; ``None`` unless ``ok``.
    key: KeyInfo | None
    #: The id of the key whose secret matched (for logs), see ``Verification.key_id``.
    key_id: str | None
    www_authenticate: str | None
    retry_after: int | None

    @property
    def ok(self) -> bool:
        return self.key is not None

    @property
    def headers(self) -> dict[str, str]:
        """``WWW-Authenticate`` (refused credentials) and ``Retry-After`` (503)."""
        headers = {}
        if self.www_authenticate is not None:
            headers["WWW-Authenticate"] = self.www_authenticate
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def error(self) -> dict[str, str]:
        """``{"type": code, "message": ...}``: the body's ``error`` member."""
        return {"type": self.code, "message": MESSAGES.get(self.code, "")}

    def body(self) -> bytes:
        """The JSON body of a refusal: ``{"error": {"type": code, "message": ...}}``."""
        return json.dumps({"error": self.error()}).encode()


def _check_realm(realm: str | None) -> str | None:
    # A quoted-string of RFC 9110 without escapes: printable ASCII except '"' and '\'.
    if realm is not None and (
        not isinstance(realm, str)
        or any(c in '"\\' or not (" " <= c <= "~") for c in realm)
    ):
        raise InvalidArgument("realm must be printable ASCII without '\"' or '\\'")
    return realm


def required_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """:func:`check_scopes`, then core's scope rule: ``InvalidArgument`` now, when the app is
    set up, for a scope no key can have (which would otherwise fail every request)."""
    result = check_scopes(scopes)
    _validate_scopes(result)
    return result


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The required scopes as a tuple; ``TypeError`` for a bare string or a non-string."""
    if isinstance(scopes, (str, bytes)):
        raise TypeError("scopes must be an iterable of str, not a single string")
    result = tuple(scopes)
    for scope in result:
        if not isinstance(scope, str):
            raise TypeError(f"a scope must be a str, not {type(scope).__name__}")
    return result


Store = Union[Verifier, KeyStore]


class Guard:
    """The shared decision rule, configured once per app: the store, an optional ``realm``
    (added to every ``WWW-Authenticate`` challenge) and the ``Retry-After`` seconds of a 503.
    """

    def __init__(
        self,
        store: Store,
        *,
        realm: str | None = None,
        retry_after: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise InvalidArgument("retry_after must be a non-negative int (seconds)")
        self.store = store
        self.realm = _check_realm(realm)
        self.retry_after = retry_after

    def _challenge(self, value: str | None) -> str | None:
        if value is None or self.realm is None:
            return value
        # The core's value is "Bearer" or "Bearer <params>": put realm first (RFC 6750 §3).
        scheme, _, params = value.partition(" ")
        realm = f'realm="{self.realm}"'
        return f"{scheme} {realm}, {params}" if params else f"{scheme} {realm}"

    def decide(self, verification: Verification) -> Decision:
        """The decision for the core's verdict (status and challenge exactly as it gives)."""
        return Decision(
            status=verification.http_status,
            code=verification.code,
            key=verification.key if verification.ok else None,
            key_id=verification.key_id,
            www_authenticate=self._challenge(verification.www_authenticate),
            retry_after=None,
        )

    def unavailable(self) -> Decision:
        """503 with ``Retry-After``: the store could not judge the key."""
        return Decision(
            status=503,
            code="unavailable",
            key=None,
            key_id=None,
            www_authenticate=None,
            retry_after=self.retry_after,
        )

    def check(self, authorization: str | bytes | None, scopes: Iterable[str] = ()) -> Decision:
        """Verifies the ``Authorization`` value (``None`` when absent) for ``scopes``.

        ``UnavailableError`` becomes a 503 decision (logged without the credentials); every
        other exception -- a closed store, a broken store file -- propagates, because it is
        the server's fault and the framework's 500 handling applies.
        """
        try:
            verification = self.store.verify_header(authorization, scopes)
        except UnavailableError:
            # The message may name the database; the credentials never reach the log.
            logger.warning("keystead: the key store is unavailable; answering 503")
            return self.unavailable()
        return self.decide(verification)
