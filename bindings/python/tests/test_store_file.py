"""The store file: a store others may write, and a file replaced under an open store, are
``StoreError`` (core's ``InsecurePermissions`` and ``StoreReplaced``); a short pepper is
``InvalidArgument``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

import keystead
from keystead import KeyStore

unix_only = pytest.mark.skipif(sys.platform == "win32", reason="file modes and inodes are Unix")


@unix_only
def test_a_store_others_may_write_is_a_store_error(store_path: Path) -> None:
    KeyStore(store_path).close()
    os.chmod(store_path, 0o666)
    with pytest.raises(keystead.StoreError, match="chmod 600"):
        KeyStore(store_path)
    os.chmod(store_path, 0o644)
    KeyStore(store_path).close()


@unix_only
def test_a_replaced_store_file_is_a_store_error(store_path: Path, tmp_path: Path) -> None:
    with KeyStore(store_path) as ks:
        created = ks.create("k")
        copy = tmp_path / "copy.redb"
        shutil.copy(store_path, copy)
        os.replace(copy, store_path)
        with pytest.raises(keystead.StoreError, match="replaced"):
            ks.revoke(created.info.id)
    with KeyStore(store_path) as ks:
        assert ks.verify(created.key).ok


def test_a_pepper_shorter_than_32_bytes_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "k.redb"
    short: str | bytes
    for short in ("p", b"pepper", "x" * 31):
        with pytest.raises(keystead.InvalidArgument, match="32 to 1024 bytes"):
            KeyStore(path, pepper=short)
        assert not path.exists()
    KeyStore(path, pepper="x" * 32).close()
