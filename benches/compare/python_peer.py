#!/usr/bin/env python3
"""keystead's Python binding vs a hand-rolled Python key store, side by side (issue 8).

The peer is what a careful developer writes with the standard library only: keys
``pk_`` + 16 hex id + 64 hex secret; sqlite3 in WAL mode (synchronous=NORMAL), table
``keys(id TEXT PRIMARY KEY, salt BLOB, hash BLOB, ...)``; HMAC-SHA256(pepper, salt || secret)
with ``hmac.digest``; ``hmac.compare_digest``; one indexed lookup per verify (sqlite3 caches
the prepared statement). It does less than keystead (no checksum, audit log or usage counts).

The keystead store of N keys is filled by the Rust driver's ``build keystead`` (core
``create_many``), because the Python binding has no bulk import; the binding's own import
rate is measured with ``KeyStore.create`` (one transaction per key) on ``--create-n`` keys,
next to the peer's one-commit-per-key rate on the same count.

Verify throughput: both stores open in this process, interleaved rounds (the order alternates),
medians and the median of per-round ratios. Lines starting with ``RESULT `` are for run.sh;
``NOTAVAILABLE`` lines say what could not be measured and why. Nothing else is printed as a
number.

    python_peer.py [--n 100000] [--sample 10000] [--rounds 5] [--round-ms 500]
                   [--create-n 1000] [--bin PATH] [--dir DIR] [--keep] [--breakdown]

``--breakdown`` also times, on the keystead store, what a verify call costs apart from the
core's work: a trivial getter, a malformed key, valid keys without and with scopes.
"""

from __future__ import annotations

import argparse
import hmac
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
DEFAULT_BIN = HERE / "rust-peer" / "target" / "release" / "keystead-compare"
SCOPE = "chat:completions"
BATCH = 10_000

PEER_PEPPER = b"peer-bench-pepper-0123456789abcd"
PEER_PREFIX = "pk_"
PEER_KEY_LEN = 3 + 16 + 64
PEER_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
)
"""
PEER_SELECT = "SELECT salt, hash, state, expires_at, scopes FROM keys WHERE id = ?"
PEER_INSERT = (
    "INSERT INTO keys (id, salt, hash, name, scopes, state, created_at) "
    "VALUES (?, ?, ?, ?, ?, 0, ?)"
)


class Peer:
    """The hand-rolled store."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(PEER_SCHEMA)

    def _row(self, name: str, now: int) -> tuple[tuple[str, bytes, bytes, str, str, int], str]:
        key_id = secrets.token_hex(8)
        secret = secrets.token_bytes(32)
        salt = secrets.token_bytes(16)
        digest = hmac.digest(PEER_PEPPER, salt + secret, "sha256")
        return (key_id, salt, digest, name, SCOPE, now), PEER_PREFIX + key_id + secret.hex()

    def create_many(self, names: list[str]) -> list[str]:
        """All in one transaction."""
        now = int(time.time() * 1000)
        rows, keys = [], []
        for name in names:
            row, key = self._row(name, now)
            rows.append(row)
            keys.append(key)
        self.conn.execute("BEGIN")
        self.conn.executemany(PEER_INSERT, rows)
        self.conn.execute("COMMIT")
        return keys

    def create(self, name: str) -> str:
        """One key, one transaction (autocommit)."""
        row, key = self._row(name, int(time.time() * 1000))
        self.conn.execute(PEER_INSERT, row)
        return key

    def verify(self, presented: str, scope: Optional[str]) -> str:
        if len(presented) != PEER_KEY_LEN or not presented.startswith(PEER_PREFIX):
            return "malformed"
        key_id = presented[3:19]
        try:
            secret = bytes.fromhex(presented[19:])
        except ValueError:
            return "malformed"
        row = self.conn.execute(PEER_SELECT, (key_id,)).fetchone()
        if row is None:
            return "not_found"
        salt, stored, state, expires_at, scopes = row
        if not hmac.compare_digest(hmac.digest(PEER_PEPPER, salt + secret, "sha256"), stored):
            return "not_found"
        if state != 0:
            return "revoked"
        if expires_at is not None and expires_at <= time.time() * 1000:
            return "expired"
        if scope is not None and scope not in scopes.split(" "):
            return "insufficient_scope"
        return "valid"

    def close(self) -> None:
        self.conn.close()


def rate(seconds: float, op: Callable[[int], None]) -> tuple[float, float]:
    """Runs op(i) repeatedly for at least `seconds`; returns operations per second of wall
    time and per second of this thread's CPU time (the binding runs on the calling thread)."""
    perf = time.perf_counter
    cpu_start = time.thread_time()
    start = perf()
    done = 0
    while True:
        for _ in range(64):
            op(done)
            done += 1
        elapsed = perf() - start
        if elapsed >= seconds:
            return done / elapsed, done / (time.thread_time() - cpu_start)


def interleaved(
    rounds: int, seconds: float, ops: list[Callable[[int], None]]
) -> tuple[list[list[float]], list[list[float]]]:
    for op in ops:  # warm-up
        rate(seconds / 4, op)
    rates: list[list[float]] = [[] for _ in ops]
    cpu: list[list[float]] = [[] for _ in ops]
    for r in range(rounds):
        order = list(range(len(ops)))
        if r % 2:
            order.reverse()
        for j in order:
            wall, per_cpu = rate(seconds, ops[j])
            rates[j].append(wall)
            cpu[j].append(per_cpu)
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rates, cpu


def ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def typo(key: str) -> str:
    return key[:-1] + ("b" if key[-1] == "a" else "a")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=int(os.environ.get("KEYSTEAD_COMPARE_PY_N", 100_000)))
    p.add_argument("--sample", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=int(os.environ.get("KEYSTEAD_COMPARE_ROUNDS", 5)))
    p.add_argument("--round-ms", type=int, default=int(os.environ.get("KEYSTEAD_COMPARE_ROUND_MS", 500)))
    p.add_argument("--create-n", type=int, default=1000,
                   help="keys created one per transaction, for the per-key import rates")
    p.add_argument("--bin", default=os.environ.get("KEYSTEAD_COMPARE_BIN", str(DEFAULT_BIN)),
                   help="the Rust driver, used to pre-fill the keystead store")
    p.add_argument("--dir", default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--breakdown", action="store_true")
    args = p.parse_args()
    sample_n = min(args.sample, args.n)
    seconds = args.round_ms / 1000

    def result(name: str, value: object) -> None:
        print(f"RESULT python.{name}={value}", flush=True)

    def unavailable(what: str, why: str) -> None:
        print(f"NOTAVAILABLE python.{what}: {why}", flush=True)

    try:
        import keystead  # type: ignore[import-not-found]
        binding_error = None
    except Exception as e:  # ImportError, or a broken native module
        keystead = None
        binding_error = f"cannot import the keystead Python binding ({type(e).__name__}: {e})"

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="keystead-compare-py-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"python_peer: Python {sys.version.split()[0]}, N={args.n}, sample {sample_n}, "
          f"{args.rounds} rounds of {args.round_ms} ms, in {work}", file=sys.stderr)
    result("n", args.n)
    try:
        # --- peer: bulk import of N keys, one transaction per batch
        for f in ("peer.sqlite", "peer.sqlite-wal", "peer.sqlite-shm"):
            (work / f).unlink(missing_ok=True)
        peer = Peer(work / "peer.sqlite")
        stride = max(args.n // sample_n, 1)
        peer_sample: list[str] = []
        start = time.perf_counter()
        made = 0
        while made < args.n:
            n = min(args.n - made, BATCH)
            keys = peer.create_many([f"bench-{i}" for i in range(made, made + n)])
            for i, k in enumerate(keys):
                if (made + i) % stride == 0 and len(peer_sample) < sample_n:
                    peer_sample.append(k)
            made += n
        result("peer.import_keys_per_s", f"{args.n / (time.perf_counter() - start):.0f}")

        # --- per-key create (one transaction each), both sides, interleaved in halves
        peer_single = Peer(work / "peer-single.sqlite")
        ks_single = None
        if keystead is not None:
            try:
                ks_single = keystead.KeyStore(str(work / "create-single.redb"))
            except Exception as e:
                unavailable("keystead.create_keys_per_s", f"KeyStore() failed: {e}")
        half = max(args.create_n // 2, 1)
        peer_t = ks_t = 0.0
        for part in range(2):
            t0 = time.perf_counter()
            for i in range(half):
                peer_single.create(f"single-{part}-{i}")
            peer_t += time.perf_counter() - t0
            if ks_single is not None:
                t0 = time.perf_counter()
                for i in range(half):
                    ks_single.create(f"single-{part}-{i}", scopes=[SCOPE])
                ks_t += time.perf_counter() - t0
        peer_single.close()
        result("peer.create_keys_per_s", f"{2 * half / peer_t:.0f}")
        if ks_single is not None:
            ks_single.close()
            result("keystead.create_keys_per_s", f"{2 * half / ks_t:.0f}")

        # --- keystead store of N keys, pre-filled by the Rust driver
        store = None
        if keystead is None:
            unavailable("keystead", binding_error or "unknown")
        elif not Path(args.bin).is_file():
            unavailable("keystead", f"the Rust driver {args.bin} is not built "
                        "(cargo build --release in benches/compare/rust-peer; run.sh does it)")
        else:
            print(f"pre-filling keystead with {args.n} keys ({args.bin} build keystead) ...",
                  file=sys.stderr)
            out = subprocess.run(
                [args.bin, "build", "keystead", "--n", str(args.n), "--sample", str(sample_n),
                 "--dir", str(work)],
                check=True, stdout=subprocess.PIPE, text=True,
            ).stdout
            fields = dict(kv.split("=", 1) for line in out.splitlines()
                          if line.startswith("CHILD ") for kv in line[6:].split())
            result("keystead.prefill_keys_per_s", fields["import_keys_per_s"])
            store = keystead.KeyStore(str(work / "keystead.redb"))
        ks_sample = (work / "keystead.sample").read_text().split() if store is not None else []

        # --- verify: valid keys, then one-character typos
        scopes = [SCOPE]

        def peer_valid(i: int) -> None:
            assert peer.verify(peer_sample[i % len(peer_sample)], SCOPE) == "valid"

        peer_typos = [typo(k) for k in peer_sample]

        def peer_typo(i: int) -> None:
            assert peer.verify(peer_typos[i % len(peer_typos)], SCOPE) == "not_found"

        if store is not None:
            ks_typos = [typo(k) for k in ks_sample]

            def ks_valid(i: int) -> None:
                assert store.verify(ks_sample[i % len(ks_sample)], scopes).ok

            def ks_typo(i: int) -> None:
                assert store.verify(ks_typos[i % len(ks_typos)], scopes).code == "malformed"

            print("verify, valid keys", file=sys.stderr)
            for what, ops in (("verify", [ks_valid, peer_valid]), ("typo", [ks_typo, peer_typo])):
                (ks_r, peer_r), (ks_c, peer_c) = interleaved(args.rounds, seconds, ops)
                result(f"keystead.{what}_per_s", f"{statistics.median(ks_r):.0f}")
                result(f"peer.{what}_per_s", f"{statistics.median(peer_r):.0f}")
                result(f"ratio.{what}", f"{ratio(ks_r, peer_r):.2f}")
                result(f"keystead.{what}_per_cpu_s", f"{statistics.median(ks_c):.0f}")
                result(f"peer.{what}_per_cpu_s", f"{statistics.median(peer_c):.0f}")
                result(f"ratio.{what}_cpu", f"{ratio(ks_c, peer_c):.2f}")
                if what == "verify":
                    print("verify, one-character typo", file=sys.stderr)
            if args.breakdown:
                print("breakdown of the binding's verify call", file=sys.stderr)
                parts: dict[str, Callable[[int], None]] = {
                    "prefix_getter": lambda i: store.prefix,
                    "malformed_no_scopes": lambda i: store.verify(ks_typos[i % len(ks_typos)]),
                    "valid_no_scopes": lambda i: store.verify(ks_sample[i % len(ks_sample)]),
                    "valid_with_scopes": lambda i: store.verify(ks_sample[i % len(ks_sample)], scopes),
                }
                rates, _ = interleaved(args.rounds, seconds, list(parts.values()))
                for name, r in zip(parts, rates):
                    result(f"breakdown.{name}_ns", f"{1e9 / statistics.median(r):.0f}")
            store.close()
        else:
            print("verify, valid keys (peer only)", file=sys.stderr)
            (peer_r,), (peer_c,) = interleaved(args.rounds, seconds, [peer_valid])
            result("peer.verify_per_s", f"{statistics.median(peer_r):.0f}")
            result("peer.verify_per_cpu_s", f"{statistics.median(peer_c):.0f}")
        peer.close()
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
