"""The binding on a PostgreSQL store (fleet mode, ``postgres://`` locations): the shared
lifecycle vectors, two handles as two hosts, usage written by one and read by the other, and a
store open across ``fork`` whose child must start its own database threads.

Needs the throwaway server of scripts/test-postgres.sh (scripts/test-python.sh runs pytest
under it): without ``KEYSTEAD_TEST_PG_URL`` these tests fail, they never skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import keystead
from test_fork import run_in_child
from test_vectors import ALL_CODES, LIFECYCLE_CASES, run_lifecycle

_schemas = itertools.count()


def pg_location() -> str:
    """A location on a new, empty schema of the test server (plain TCP: the test cluster is on
    loopback and its TLS certificate is self-signed, which keystead would refuse)."""
    url = os.environ.get("KEYSTEAD_TEST_PG_URL")
    if not url:
        pytest.fail(
            "KEYSTEAD_TEST_PG_URL is not set: run pytest under scripts/test-postgres.sh "
            "(scripts/test-python.sh does)"
        )
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is not on PATH (scripts/test-postgres.sh installs it)")
    schema = f"ks_py{os.getpid()}_{next(_schemas)}_{time.time_ns() % 10**9}"
    subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f"CREATE SCHEMA {schema}", url],
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
    )
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}&sslmode=disable"


def poll(check: Callable[[], bool]) -> None:
    """Polls until `check` holds; 60 s is a hang guard, not a speed claim."""
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, "never held"
        time.sleep(0.02)


@pytest.mark.parametrize("case", LIFECYCLE_CASES, ids=[c["name"] for c in LIFECYCLE_CASES])
def test_lifecycle_vector_on_postgres(case: dict[str, Any]) -> None:
    run_lifecycle(case, pg_location())


def test_lifecycle_vectors_reach_every_outcome_code_on_postgres() -> None:
    seen: set[str] = set()
    for case in LIFECYCLE_CASES:
        seen |= run_lifecycle(case, pg_location())
    assert seen == ALL_CODES


def test_two_handles_share_keys_revocations_and_usage() -> None:
    location = pg_location()
    interval = timedelta(milliseconds=50)
    with keystead.KeyStore(location, refresh_interval=interval) as admin, keystead.KeyStore(
        location, refresh_interval=interval
    ) as host:
        created = admin.create("fleet", scopes=["chat:completions"])
        # A key created on one host verifies on another at once (a miss reads the database).
        for _ in range(3):
            assert host.verify(created.key, ["chat:completions"]).ok
        stats = host.stats()
        # Each verify was answered from the cache or read the database (how many of each
        # depends on when the create's notification evicted the id: not asserted).
        assert stats.outcomes["valid"] == 3
        assert stats.cache_hits + stats.cache_misses == 3 and stats.cache_misses >= 1
        host.flush()
        info = admin.get(created.info.id)
        assert info is not None and info.use_count == 3
        admin.revoke(created.info.id)
        poll(lambda: host.verify(created.key).code == "revoked")


def test_a_store_open_across_fork_works_in_the_child() -> None:
    location = pg_location()
    store = keystead.KeyStore(location, flush_interval=timedelta(hours=1))
    first = store.create("parent")
    assert store.verify(first.key).ok  # 1 use pending in the parent at the fork

    def child() -> None:
        # The parent's driver threads and connections did not come along: the child's first
        # database call starts its own (a miss, a write and a flush all need them).
        second = store.create("child")
        assert store.verify(second.key).ok
        assert store.verify(first.key).ok
        store.close()

    assert run_in_child(child) == 0
    store.close()
    with keystead.KeyStore(location) as reopened:
        uses = {info.name: info.use_count for info in reopened.list()}
    # The parent's pending use is written once (by the parent), not again by the child.
    assert uses == {"parent": 2, "child": 1}
