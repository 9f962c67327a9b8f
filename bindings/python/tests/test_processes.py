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
    with KeyStore(store_path, refresh_interval=timedelta(seconds=1)) as ks:
        admin = ctx.Process(target=admin_process, args=(str(store_path), child), daemon=True)
        admin.start()
        try:
            key, key_id = expect(parent)
            assert isinstance(key, str) and isinstance(key_id, str)
            # A change made by another process is seen within the refresh interval.
            deadline = time.monotonic() + 5
            while (check := ks.verify(key, ["chat:completions"])).code == "not_found":
                assert time.monotonic() < deadline, "key created by the other process not seen"
                time.sleep(0.05)
            assert check.ok and check.key is not None and check.key.id == key_id
            for _ in range(9):
                assert ks.verify(key).ok
            valid = 10

            parent.send("revoke")
            assert expect(parent) == "revoked"
            revoked_at = time.monotonic()
            while (code := ks.verify(key).code) == "valid":
                valid += 1  # still valid here until the refresh interval has passed
                assert time.monotonic() - revoked_at < 5, "revocation not seen within 5 s"
                time.sleep(0.05)
            assert code == "revoked"
            # core's refresh interval is 1 s; allow for scheduling delays
            assert time.monotonic() - revoked_at < 3

            ks.flush()  # the valid uses counted by this process, seen by the other one
            parent.send("usage?")
            assert expect(parent) == valid
        finally:
            admin.join(timeout=TIMEOUT)
            if admin.is_alive():
                admin.kill()
        assert admin.exitcode == 0
