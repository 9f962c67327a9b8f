"""keystead: API keys for servers that embed their own key store.

>>> from datetime import timedelta
>>> import keystead
>>> with keystead.KeyStore("keystead.redb") as ks:             # doctest: +SKIP
...     created = ks.create("dev-server-integration", scopes=["chat:completions"])
...     print(created.key)                                     # show once; only a hash is stored
...     check = ks.verify_header(f"Bearer {created.key}", ["chat:completions"])
...     assert check.ok and check.http_status == 200

All logic lives in the Rust core; this package is a thin PyO3 binding. Timestamps are
timezone-aware UTC ``datetime`` objects (naive ones are refused with ``InvalidArgument``),
durations are ``timedelta``, key ids are ``str``. Every store call releases the GIL.
"""

import os as _os

from ._errors import (
    ClosedError,
    InvalidArgument,
    InvalidStateError,
    KeyNotFoundError,
    KeysteadError,
    PrefixMismatchError,
    StoreError,
    UnavailableError,
    UnsupportedVersionError,
    WrongPepperError,
)
from ._keystead import (
    _after_fork,
    AuditEntry,
    CreatedKey,
    DailyUsage,
    KeyInfo,
    KeyStore,
    Stats,
    Verification,
    __version__,
)
from ._stats import StatsDict

# A store open when the process forks (gunicorn --preload, multiprocessing's fork start
# method) works in the child: the child gets its own usage flusher and does not write the
# usage the parent had pending a second time (KeyStore::after_fork in the core).
if hasattr(_os, "register_at_fork"):  # not on Windows, which has no fork
    _os.register_at_fork(after_in_child=_after_fork)

__all__ = [
    "AuditEntry",
    "ClosedError",
    "CreatedKey",
    "DailyUsage",
    "InvalidArgument",
    "InvalidStateError",
    "KeyInfo",
    "KeyNotFoundError",
    "KeyStore",
    "KeysteadError",
    "PrefixMismatchError",
    "Stats",
    "StatsDict",
    "StoreError",
    "UnavailableError",
    "UnsupportedVersionError",
    "Verification",
    "WrongPepperError",
    "__version__",
]
