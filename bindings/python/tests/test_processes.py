"""Two processes sharing one store file (multiprocessing with spawn)."""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from keystead import KeyStore

TIMEOUT = 60.0  # generous bound for a spawned interpreter to start on a loaded machine
REFRESH = 1.0  # the refresh interval this test opens its store with, in seconds
EVENTUALLY = 120.0  # liveness only: a working store is far quicker, a broken one never


def admin_process(path: str, conn: Connection) -> None:
    """Creates a key, then revokes it on request, then reports its usage."""
    with KeyStore(path) as ks:
        created = ks.create("shared", scopes=["chat:completions"])
        conn.send((created.key, created.info.id))
        assert conn.recv() == "revoke"
        ks.revoke(created.info.id)
        conn.send("revoked")
        assert conn.recv() == "usage?"
        info = ks.get(created.info.id)
        conn.send(None if info is None else info.use_count)


def expect(conn: Connection) -> Any:
    assert conn.poll(TIMEOUT), "the other process did not answer in time"
    return conn.recv()


def test_two_processes_share_a_store(store_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    # Open the file first so that both processes use it concurrently.
    with KeyStore(store_path, refresh_interval=timedelta(seconds=REFRESH)) as ks:
        admin = ctx.Process(target=admin_process, args=(str(store_path), child), daemon=True)
        admin.start()
        try:
            key, key_id = expect(parent)
            created_at = time.time()  # the other process's create returned before this
            assert isinstance(key, str) and isinstance(key_id, str)
            # The staleness rule (docs/storage.md): a verify that starts more than the refresh
            # interval after a change returned sees it. Checked on every verify, by the clock
            # the core uses; how long it took is not asserted (machines are slow at times).
            deadline = time.monotonic() + EVENTUALLY
            while True:
                started = time.time()
                check = ks.verify(key, ["chat:completions"])
                if check.code != "not_found":
                    break
                assert started <= created_at + REFRESH, "a verify after the refresh interval missed the key"
                assert time.monotonic() < deadline, "key created by the other process never seen"
                time.sleep(0.05)
            assert check.ok and check.key is not None and check.key.id == key_id
            for _ in range(9):
                assert ks.verify(key).ok
            valid = 10

            parent.send("revoke")
            assert expect(parent) == "revoked"
            revoked_at = time.time()  # the revoke returned before this
            deadline = time.monotonic() + EVENTUALLY
            while True:
                started = time.time()
                code = ks.verify(key).code
                if code != "valid":
                    break
                valid += 1  # still valid here until the refresh interval has passed
                assert started <= revoked_at + REFRESH, "a verify after the refresh interval was valid"
                assert time.monotonic() < deadline, "revocation never seen"
                time.sleep(0.05)
            assert code == "revoked"

            ks.flush()  # the valid uses counted by this process, seen by the other one
            parent.send("usage?")
            assert expect(parent) == valid
        finally:
            admin.join(timeout=TIMEOUT)
            if admin.is_alive():
                admin.kill()
        assert admin.exitcode == 0
