from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import keystead


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "keystead.redb"


@pytest.fixture
def store(store_path: Path) -> Iterator[keystead.KeyStore]:
    with keystead.KeyStore(store_path) as ks:
        yield ks
