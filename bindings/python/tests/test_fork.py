"""A store open when the process forks (gunicorn --preload, multiprocessing's fork start
method): the child can use and close it, its usage reaches the store through the child's own
flusher, and the usage the parent had pending at the fork is written once, not twice.

Each child reports through its exit status only (0 = every check passed), so a failing check
or an exception in the child fails the test in the parent.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from keystead import KeyStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run_in_child(body: Callable[[], None]) -> int:
    """Forks; the child runs `body` and exits 0 if it returned, 1 if it raised."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_usage_pending_at_the_fork_is_written_once_and_the_child_closes(tmp_path: Path) -> None:
    path = tmp_path / "keys.redb"
    # A flush interval far beyond the test: the parent's 3 uses stay pending across the fork.
    store = KeyStore(path, flush_interval=timedelta(hours=1))
    created = store.create("forked")
    for _ in range(3):
        assert store.verify(created.key).ok

    def child() -> None:
        for _ in range(2):
            assert store.verify(created.key).ok
        # Writes the child's 2 uses; before the fix this joined the parent's flusher thread,
        # which does not exist in the child, and panicked.
        store.close()

    assert run_in_child(child) == 0
    store.close()
    with KeyStore(path) as reopened:
        info = reopened.get(created.info.id)
        assert info is not None
        # 3 from the parent + 2 from the child; 8 if the child wrote the parent's 3 again.
        assert info.use_count == 5


def test_the_childs_own_flusher_writes_its_usage_without_close(tmp_path: Path) -> None:
    path = tmp_path / "keys.redb"
    store = KeyStore(path, flush_interval=timedelta(milliseconds=50))
    created = store.create("forked")
    store.flush()

    def child() -> None:
        for _ in range(4):
            assert store.verify(created.key).ok
        # No flush or close here: only a flusher thread of the child's can write these.
        with KeyStore(path) as observer:
            deadline = time.monotonic() + 60  # a hang guard, not a speed claim
            while True:
                info = observer.get(created.info.id)
                assert info is not None
                if info.use_count == 4:
                    return
                assert time.monotonic() < deadline, f"use_count stayed {info.use_count}"
                time.sleep(0.05)

    assert run_in_child(child) == 0
    store.close()
