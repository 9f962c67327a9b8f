#!/usr/bin/env python3
"""keystead's Python binding on PostgreSQL vs a hand-rolled peer that queries PostgreSQL on
every verify (issue 14, BENCHMARKS.md).

Both read the SAME rows: the keystead store in the database of ``KEYSTEAD_TEST_PG_URL``
(``pg_compare`` leaves N keys there; this script adds ``--sample`` keys with the binding's
``create_many`` and keeps their plaintexts in memory only).

The peer is what a careful developer writes with psycopg 3: one connection, autocommit, a
server-side prepared statement (``prepare=True``)
``SELECT salt, secret_mac, state, expires_at, scopes FROM keystead_keys WHERE id = %s`` per
verify, then HMAC-SHA256(32 zero bytes, salt || id as 8 big-endian bytes || secret) with
``hmac.digest`` and ``hmac.compare_digest`` (keystead's own formula for a store without a
pepper, so the peer accepts exactly keystead's keys: checked before timing), state, expiry and
scope checks. It does no checksum check, no usage counting, no audit.

Working set: the ``--sample`` keys, warmed on both sides; ``--rounds`` interleaved rounds of
``--round-ms`` (order alternating); medians of verifies/s and the median of per-round ratios.
Run under ``scripts/test-postgres.sh`` (see BENCHMARKS.md). Needs ``keystead`` built with the
``postgres`` feature and ``psycopg`` installed in the running Python.

    pg_peer.py [--sample 1000] [--rounds 7] [--round-ms 300]
"""

from __future__ import annotations

import argparse
import hmac
import os
import statistics
import sys
import time
from datetime import datetime, timezone

import psycopg

import keystead

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DIGIT = {c: i for i, c in enumerate(ALPHABET)}
ZERO_KEY = bytes(32)
SQL = (
    "SELECT salt, secret_mac, state, expires_at, scopes FROM keystead_keys WHERE id = %s"
)


def b62(text: str) -> int:
    value = 0
    for c in text:
        value = value * 62 + DIGIT[c]
    return value


class Peer:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.cur = self.conn.cursor()

    def verify(self, key: str, scope: str) -> bool:
        # Shape: ks_ + 12 id + 43 secret + 6 checksum, base62.
        if len(key) != 64 or not key.startswith("ks_"):
            return False
        body = key[3:]
        try:
            key_id = b62(body[:12])
            secret = b62(body[12:55])
        except KeyError:
            return False
        if key_id >= 1 << 64 or secret >= 1 << 256:
            return False
        db_id = key_id ^ (1 << 63)
        if db_id >= 1 << 63:
            db_id -= 1 << 64
        self.cur.execute(SQL, (db_id,), prepare=True)
        row = self.cur.fetchone()
        if row is None:
            return False
        salt, mac, state, expires_at, scopes = row
        tag = hmac.digest(
            ZERO_KEY, bytes(salt) + key_id.to_bytes(8, "big") + secret.to_bytes(32, "big"), "sha256"
        )
        if not hmac.compare_digest(tag, bytes(mac)):
            return False
        if state != "active":
            return False
        if expires_at is not None and expires_at <= datetime.now(timezone.utc):
            return False
        return scope in scopes


def timed(fn, keys: list[str], ms: int) -> float:
    """Verifies per second over about ``ms``; every verify must succeed."""
    deadline = time.perf_counter() + ms / 1000
    start = time.perf_counter()
    done = 0
    n = len(keys)
    i = 0
    while True:
        for _ in range(100):
            i = (i + 1) % n
            if not fn(keys[i]):
                raise SystemExit("a verify failed in the timed loop")
        done += 100
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--round-ms", type=int, default=300)
    a = ap.parse_args()
    url = os.environ.get("KEYSTEAD_TEST_PG_URL")
    if not url:
        print("KEYSTEAD_TEST_PG_URL is not set: run under scripts/test-postgres.sh", file=sys.stderr)
        return 2

    store = keystead.KeyStore(url)
    with psycopg.connect(url) as c:
        total = c.execute("SELECT count(*) FROM keystead_keys").fetchone()[0]
    t = time.perf_counter()
    created = store.create_many(
        [{"name": f"py-{i}", "scopes": ["chat:completions"]} for i in range(a.sample)]
    )
    print(
        f"RESULT python create_many on postgres: {a.sample} keys in "
        f"{time.perf_counter() - t:.2f} s (store now {total + a.sample} keys)"
    )
    keys = [c.key for c in created]
    del created
    peer = Peer(url)

    # The peer accepts exactly keystead's keys: same formula, same rows.
    for k in keys:
        assert peer.verify(k, "chat:completions"), "peer rejects a keystead key"
        assert store.verify(k, scopes=["chat:completions"]).ok
    wrong = keys[0][:20] + ("A" if keys[0][20] != "A" else "B") + keys[0][21:]
    assert not peer.verify(wrong, "chat:completions"), "peer accepts a wrong secret"

    scopes = ["chat:completions"]

    def ks(k: str) -> bool:
        return store.verify(k, scopes=scopes).ok

    def pr(k: str) -> bool:
        return peer.verify(k, "chat:completions")

    ks_rates, peer_rates, ratios = [], [], []
    for r in range(a.rounds):
        if r % 2 == 0:
            k_rate = timed(ks, keys, a.round_ms)
            p_rate = timed(pr, keys, a.round_ms)
        else:
            p_rate = timed(pr, keys, a.round_ms)
            k_rate = timed(ks, keys, a.round_ms)
        print(
            f"ROUND {r}: keystead {k_rate:,.0f}/s ({1e9 / k_rate:,.0f} ns), "
            f"peer {p_rate:,.0f}/s ({1e6 / p_rate:,.1f} us), ratio {k_rate / p_rate:.1f}"
        )
        ks_rates.append(k_rate)
        peer_rates.append(p_rate)
        ratios.append(k_rate / p_rate)
    k_med = statistics.median(ks_rates)
    p_med = statistics.median(peer_rates)
    print(
        f"RESULT python on postgres, {a.sample}-key warmed working set, store of "
        f"{total + a.sample} keys: keystead {k_med:,.0f} verifies/s ({1e9 / k_med:,.0f} ns), "
        f"psycopg {psycopg.__version__} peer {p_med:,.0f}/s ({1e6 / p_med:,.1f} us), "
        f"keystead/peer {statistics.median(ratios):.1f}x (median of {a.rounds} per-round ratios)"
    )
    store.close()
    peer.conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
