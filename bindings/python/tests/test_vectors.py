"""The shared vectors of tests/vectors: every binding must reach the same outcome codes."""

from __future__ import annotations

import json
from datetime import timedelta
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


LIFECYCLE_CASES = cases("lifecycle.json")
ALL_CODES = {
    "valid",
    "missing",
    "malformed",
    "not_found",
    "disabled",
    "revoked",
    "expired",
    "insufficient_scope",
}


def run_lifecycle(case: dict[str, Any], path: Path | str) -> set[str]:
    """Runs one script of lifecycle.json; returns the outcome codes it reached."""
    seen: set[str] = set()
    keys: dict[str, tuple[str, str]] = {}  # name -> (key, id)
    with keystead.KeyStore(path, prefix="ks") as ks:
        for i, step in enumerate(case["steps"]):
            at = f"{case['name']}, step {i}"
            op = step["op"]
            if op == "create":
                created = ks.create(step["name"], scopes=step["scopes"])
                keys[step["as"]] = (created.key, created.info.id)
            elif op in ("disable", "enable", "revoke", "delete"):
                getattr(ks, op)(keys[step["key"]][1])
            elif op == "set_scopes":
                ks.set_scopes(keys[step["key"]][1], step["scopes"])
            elif op == "rotate":
                rotated = ks.rotate(keys[step["key"]][1], grace=timedelta(milliseconds=step["grace_ms"]))
                keys[step["as"]] = (rotated.key, rotated.info.id)
            elif op in ("verify", "verify_header"):
                if op == "verify":
                    presented = step["raw"] if "raw" in step else keys[step["key"]][0]
                    check = ks.verify(presented, step["scopes"])
                else:
                    header = step["header"]
                    for name, (key, _) in keys.items():
                        header = header.replace("{" + name + "}", key)
                    check = ks.verify_header(header, step["scopes"])
                expect = step["expect"]
                assert check.code == expect["code"], at
                assert check.http_status == expect["http_status"], at
                assert check.www_authenticate == expect["www_authenticate"], at
                assert check.ok == (expect["code"] == "valid"), at
                seen.add(check.code)
            else:
                raise AssertionError(f"{at}: unknown op {op}")
    return seen


@pytest.mark.parametrize("case", LIFECYCLE_CASES, ids=[c["name"] for c in LIFECYCLE_CASES])
def test_lifecycle_vector(case: dict[str, Any], tmp_path: Path) -> None:
    run_lifecycle(case, tmp_path / "l.redb")


def test_lifecycle_vectors_reach_every_outcome_code(tmp_path: Path) -> None:
    seen: set[str] = set()
    for i, case in enumerate(LIFECYCLE_CASES):
        seen |= run_lifecycle(case, tmp_path / f"l{i}.redb")
    assert seen == ALL_CODES
