"""One KeyStore shared by many threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keystead
from keystead import KeyStore

THREADS = 8
PER_KEY = 500


def test_concurrent_verification_counts_every_use(store: KeyStore) -> None:
    keys = [store.create(f"k{i}", scopes=["chat:completions"]) for i in range(4)]
    headers = [f"Bearer {k.key}" for k in keys]

    def work(i: int) -> str:
        check = store.verify_header(headers[i % len(headers)], ["chat:completions"])
        return check.code

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        codes = list(pool.map(work, range(PER_KEY * len(keys))))
    assert codes == ["valid"] * (PER_KEY * len(keys))

    store.flush()
    for created in keys:
        info = store.get(created.info.id)
        assert info is not None
        assert info.use_count == PER_KEY
    assert sum(k.use_count for k in store.list()) == PER_KEY * len(keys)


def test_admin_changes_while_verifying(store: KeyStore) -> None:
    created = store.create("k")
    stop = threading.Event()
    seen: set[str] = set()
    errors: list[BaseException] = []

    def verifier() -> None:
        try:
            while not stop.is_set():
                seen.add(store.verify(created.key).code)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=verifier) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(20):
            store.disable(created.info.id)
            store.enable(created.info.id)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors
    assert seen and seen <= {"valid", "disabled"}
    assert store.verify(created.key).ok


def test_close_while_other_threads_verify(store_path: Path) -> None:
    ks = KeyStore(store_path)
    key = ks.create("k").key
    results: list[str] = []
    lock = threading.Lock()
    started = threading.Barrier(5)

    def verifier() -> None:
        started.wait(timeout=30)
        for _ in range(2000):
            code: str
            try:
                code = ks.verify(key).code
            except keystead.ClosedError:
                code = "closed"
            except keystead.KeysteadError as error:
                code = repr(error)
            with lock:
                results.append(code)
            if code == "closed":
                return

    threads = [threading.Thread(target=verifier) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait(timeout=30)
    ks.close()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert set(results) <= {"valid", "closed"}
    with KeyStore(store_path) as again:
        info = again.list()[0]
        # every verification that returned valid before close was flushed by close
        assert info.use_count == results.count("valid")
