"""Type information for the native module ``keystead._keystead`` (re-exported by ``keystead``)."""

import builtins
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from os import PathLike
from types import TracebackType
from typing import ClassVar, Literal, final

from keystead._stats import StatsDict

__version__: str
__all__ = [
    "__version__",
    "KeyStore",
    "KeyInfo",
    "CreatedKey",
    "Verification",
    "DailyUsage",
    "AuditEntry",
    "Stats",
    "_error_classes",
    "_after_fork",
    "_validate_scopes",
]

def _error_classes() -> dict[str, type[Exception]]:
    """``{code: exception class}`` for every kind of core error (for the tests)."""

def _validate_scopes(scopes: Iterable[str]) -> None:
    """Raises ``InvalidArgument`` for a scope no key can have (core's rule; no store needed)."""

def _after_fork() -> None:
    """Makes every open store the child's own after ``os.fork()`` (registered by the package)."""

_Status = Literal["active", "disabled", "revoked", "expired"]
_Code = Literal[
    "valid",
    "missing",
    "malformed",
    "not_found",
    "disabled",
    "revoked",
    "expired",
    "insufficient_scope",
]
_Action = Literal[
    "create",
    "rename",
    "set_scopes",
    "set_metadata",
    "set_expiry",
    "disable",
    "enable",
    "revoke",
    "rotate",
    "delete",
]

@final
class KeyInfo:
    """Everything about a key except its secret. Immutable; compares by value."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def metadata(self) -> dict[str, str]: ...
    @property
    def status(self) -> _Status:
        """The status at the time of the access (expiry is evaluated then)."""
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def last_used_at(self) -> datetime | None: ...
    @property
    def use_count(self) -> int: ...
    @property
    def replaces(self) -> str | None: ...
    @property
    def replaced_by(self) -> str | None: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class CreatedKey:
    """A newly created key: the only time the plaintext exists. ``repr()`` never shows it."""

    @property
    def key(self) -> str:
        """The full key to hand to the client, once; it cannot be recovered."""
    @property
    def info(self) -> KeyInfo: ...

@final
class Verification:
    """The outcome of checking a presented credential (never an exception)."""

    @property
    def ok(self) -> bool: ...
    @property
    def code(self) -> _Code: ...
    @property
    def key(self) -> KeyInfo | None:
        """The key, only for a valid key (``ok``); ``None`` for every refused outcome."""
    @property
    def key_id(self) -> str | None:
        """The id of the key whose secret matched, for logs: set for ``valid`` and for the
        outcomes refused after the secret matched (``disabled``, ``revoked``, ``expired``,
        ``insufficient_scope``); ``None`` for ``missing``, ``malformed``, ``not_found``."""
    @property
    def http_status(self) -> int:
        """200, 400, 401 or 403."""
    @property
    def www_authenticate(self) -> str | None:
        """The ``WWW-Authenticate`` value to answer with, ``None`` for a valid key."""

@final
class DailyUsage:
    """Successful verifications of one key on one UTC day."""

    @property
    def day(self) -> datetime:
        """Midnight UTC at the start of the day."""
    @property
    def count(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class AuditEntry:
    """One entry of the audit log."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str | None: ...
    @property
    def action(self) -> _Action: ...
    @property
    def key_id(self) -> str: ...
    @property
    def detail(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Stats:
    """A snapshot of one store handle's counters since it was opened (``KeyStore.stats()``).

    Counters only grow; docs/metrics.md defines each field, with the same names in every
    binding.
    """

    @property
    def outcomes(self) -> dict[str, int]:
        """Verifications by outcome code, every code present (zero if none)."""
    @property
    def verifications(self) -> int:
        """Verifications that ended in an outcome (the sum of ``outcomes``)."""
    @property
    def verify_errors(self) -> int:
        """Verify calls that raised instead (e.g. ``UnavailableError``)."""
    @property
    def cache_hits(self) -> int:
        """Verifications of a well-formed key answered without reading a key record."""
    @property
    def cache_misses(self) -> int:
        """Verifications of a well-formed key that read a key record from the store."""
    @property
    def refreshes(self) -> int:
        """Reads of the store's change feed by the verify path (failed ones too)."""
    @property
    def refresh_failures(self) -> int: ...
    @property
    def flushes(self) -> int:
        """Batches of usage counts written to the store."""
    @property
    def flush_failures(self) -> int: ...
    @property
    def usage_pending(self) -> int:
        """Successful verifications counted in memory, not yet written."""
    @property
    def last_refresh_age(self) -> timedelta | None:
        """Since the last successful change-feed read; ``None`` before the first."""
    @property
    def cached_keys(self) -> int:
        """Keys whose records are in the verify cache now."""
    def as_dict(self) -> StatsDict:
        """Every field by name (``outcomes`` as a dict of its own)."""
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class KeyStore:
    """A store of API keys in one file, shared by the threads and processes of a host.

    Every call releases the GIL. After ``close()`` every call raises ``ClosedError``.
    """

    def __new__(
        cls,
        path: str | PathLike[str],
        prefix: str | None = None,
        pepper: bytes | str | None = None,
        cache_size: int | None = None,
        *,
        actor: str | None = None,
        refresh_interval: timedelta | None = None,
        max_staleness: timedelta | None = None,
        flush_interval: timedelta | None = None,
    ) -> KeyStore: ...
    @property
    def prefix(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def create(
        self,
        name: str,
        *,
        scopes: Iterable[str] = ...,
        metadata: Mapping[str, str] | None = None,
        expires_at: datetime | None = None,
    ) -> CreatedKey: ...
    def create_many(self, keys: Iterable[Mapping[str, object]]) -> builtins.list[CreatedKey]:
        """Creates many keys in one transaction: all of them, or none if any is invalid. Each
        item is a mapping of ``create``'s arguments (``name`` required; ``scopes``,
        ``metadata``, ``expires_at``); the keys come back in the same order."""
    def get(self, id: str) -> KeyInfo | None: ...
    def list(
        self,
        *,
        status: _Status | None = None,
        scope: str | None = None,
        name_prefix: str | None = None,
        expiring_within: timedelta | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[KeyInfo]: ...
    def rename(self, id: str, name: str) -> KeyInfo: ...
    def set_metadata(self, id: str, metadata: Mapping[str, str]) -> KeyInfo: ...
    def set_scopes(self, id: str, scopes: Iterable[str]) -> KeyInfo: ...
    def set_expiry(self, id: str, expires_at: datetime | None) -> KeyInfo:
        """Sets or clears the expiry: in the future and not after 9999-12-31T23:59:59Z
        (``InvalidArgument`` otherwise). A rotated key's expiry can only be brought forward
        (``InvalidStateError``)."""
    def disable(self, id: str) -> KeyInfo: ...
    def enable(self, id: str) -> KeyInfo: ...
    def revoke(self, id: str) -> KeyInfo: ...
    def rotate(self, id: str, grace: timedelta = ...) -> CreatedKey:
        """Issues a replacement; the old key keeps verifying for ``grace`` (default: none).
        A grace ending after 9999-12-31T23:59:59Z raises ``InvalidArgument``."""
    def delete(self, id: str) -> None: ...
    def verify(self, key: str, scopes: Iterable[str] = ...) -> Verification:
        """Checks a presented key: a bad one is a ``Verification`` (a ``str`` with lone
        surrogates is ``malformed``), never an exception. A required scope that is not valid
        Unicode raises ``InvalidArgument``."""
    def verify_header(
        self, value: str | bytes | None, scopes: Iterable[str] = ...
    ) -> Verification: ...
    def usage(self, id: str, since: datetime, until: datetime) -> builtins.list[DailyUsage]:
        """Daily counts for the UTC days from ``since`` to ``until`` inclusive (core's
        ``from``/``to``); flushes this handle's pending usage first."""
    def audit(self, since: datetime | None = None, limit: int = ...) -> builtins.list[AuditEntry]:
        """The audit log, newest first (at most 100 entries unless ``limit`` says otherwise:
        core's ``DEFAULT_AUDIT_LIMIT``, as in every binding and the CLI)."""
    def flush(self) -> None: ...
    def stats(self) -> Stats:
        """A snapshot of this handle's counters (cheap: no store access)."""
    def close(self) -> None: ...
    def __enter__(self) -> KeyStore: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> bool: ...
