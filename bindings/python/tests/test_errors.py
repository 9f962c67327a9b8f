"""Every kind of core error (keystead::ErrorKind) raises its own exception class."""

from __future__ import annotations

import keystead
from keystead import _keystead


def test_every_core_error_kind_has_its_own_exported_class() -> None:
    classes = _keystead._error_classes()
    # The codes of the Node binding's errors, one per kind.
    assert "KEYSTEAD_STORE_ERROR" in classes and "KEYSTEAD_CLOSED" in classes
    seen: set[type[Exception]] = set()
    for code, cls in classes.items():
        assert code.startswith("KEYSTEAD_"), code
        # Not the fallback for a kind this binding does not map.
        assert cls is not keystead.KeysteadError, f"{code} has no class of its own"
        assert issubclass(cls, keystead.KeysteadError), code
        assert cls not in seen, f"{code} shares {cls.__name__}"
        seen.add(cls)
        assert cls.__name__ in keystead.__all__ and getattr(keystead, cls.__name__) is cls
    assert classes["KEYSTEAD_CLOSED"] is keystead.ClosedError
    assert classes["KEYSTEAD_STORE_ERROR"] is keystead.StoreError
    assert classes["KEYSTEAD_INVALID_ARGUMENT"] is keystead.InvalidArgument
    assert classes["KEYSTEAD_UNAVAILABLE"] is keystead.UnavailableError
