"""The shared vectors of tests/vectors: every binding must reach the same outcome codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import keystead

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "vectors"


def cases(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = data["cases"]
    assert found, f"no cases in {name}"
    return found


KEY_CASES = cases("keys.json")
HEADER_CASES = cases("headers.json")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> keystead.KeyStore:
    ks = keystead.KeyStore(tmp_path_factory.mktemp("vectors") / "v.redb", prefix="ks")
    assert ks.prefix == "ks"
    return ks


@pytest.mark.parametrize("case", KEY_CASES, ids=[c["name"] for c in KEY_CASES])
def test_key_vector(empty_store: keystead.KeyStore, case: dict[str, Any]) -> None:
    check = empty_store.verify(case["key"])
    assert check.code == case["verify"]
    assert not check.ok
    assert check.key is None
    assert check.http_status in (400, 401)
    assert check.www_authenticate is not None


@pytest.mark.parametrize("case", HEADER_CASES, ids=[c["name"] for c in HEADER_CASES])
def test_header_vector(empty_store: keystead.KeyStore, case: dict[str, Any]) -> None:
    header: str = case["header"]
    assert empty_store.verify_header(header).code == case["verify"]
    # The same value as raw bytes (as ASGI servers hand it over) gives the same outcome.
    assert empty_store.verify_header(header.encode("utf-8")).code == case["verify"]
