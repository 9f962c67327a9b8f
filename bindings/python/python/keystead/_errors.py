"""The exceptions of keystead. The native module raises these (mapped from core's errors)."""


class KeysteadError(Exception):
    """Base class of every error keystead raises."""


class StoreError(KeysteadError):
    """The store file failed: I/O, corruption, locked by another process, storage engine,
    a store file others may write (``chmod 600`` fixes it), or a store file replaced or removed
    under an open store (open it again)."""


class UnavailableError(KeysteadError):
    """The store's database cannot be reached now (down, unreachable, refused the connection:
    authentication or TLS), or this process exceeded its bound on database lookups. Retrying
    later may succeed. Never a statement about a key: a ``verify`` that cannot judge a key
    raises it instead of answering ``not_found`` (cached keys keep verifying for
    ``max_staleness`` after the last successful sync)."""


class ClosedError(KeysteadError):
    """The ``KeyStore`` was closed (``close()`` or the end of its ``with`` block); open a new
    one. Every call after ``close()`` raises it."""


class WrongPepperError(KeysteadError):
    """The pepper does not match the one the store was created with."""


class InvalidArgument(KeysteadError, ValueError):
    """An argument is out of bounds: name, scope, metadata, prefix, expiry, key id, limit,
    a naive datetime or a negative timedelta."""


class KeyNotFoundError(KeysteadError, LookupError):
    """No key with this id exists in the store."""


class InvalidStateError(KeysteadError):
    """The key's state forbids the operation, e.g. enabling a revoked key."""


class PrefixMismatchError(KeysteadError):
    """A prefix was requested that differs from the store's own."""


class UnsupportedVersionError(KeysteadError):
    """The store was written by a newer keystead whose format this version cannot read."""
