"""`KeyStore.stats()`: a typed snapshot of the handle's counters that moves as core defines
(docs/metrics.md), with the same field names as every binding."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import keystead
from keystead import KeyStore, Stats

CODES = [
    "valid",
    "missing",
    "malformed",
    "not_found",
    "disabled",
    "revoked",
    "expired",
    "insufficient_scope",
]


def quiet(path: Path | str) -> KeyStore:
    """No background flusher, and no change-feed read but after this handle's own writes."""
    return KeyStore(path, flush_interval=timedelta(0), refresh_interval=timedelta(hours=1))


def test_a_new_handle_has_counted_nothing(store_path: Path) -> None:
    with quiet(store_path) as ks:
        stats = ks.stats()
        assert isinstance(stats, Stats)
        assert stats.outcomes == {code: 0 for code in CODES}
        assert list(stats.outcomes) == CODES
        assert stats.verifications == 0
        assert stats.last_refresh_age is None
        assert (stats.cache_hits, stats.cache_misses, stats.usage_pending) == (0, 0, 0)


def test_counters_move_as_defined(store_path: Path) -> None:
    with quiet(store_path) as ks:
        good = ks.create("good", scopes=["read"])
        revoked = ks.create("revoked")
        ks.revoke(revoked.info.id)
        for _ in range(3):
            assert ks.verify(good.key, ["read"]).ok
        assert ks.verify(revoked.key, []).code == "revoked"
        assert ks.verify_header("Bearer nonsense").code == "malformed"
        assert ks.verify(good.key, ["write"]).code == "insufficient_scope"
        with pytest.raises(keystead.InvalidArgument):
            ks.verify(good.key, ["not a scope"])

        stats = ks.stats()
        assert stats.outcomes == {
            **{code: 0 for code in CODES},
            "valid": 3,
            "revoked": 1,
            "malformed": 1,
            "insufficient_scope": 1,
        }
        assert stats.verifications == 6
        assert stats.verify_errors == 1
        # First verify of each key read it (a miss); the rest were answered from memory.
        assert (stats.cache_misses, stats.cache_hits) == (2, 3)
        assert stats.cached_keys == 2
        assert stats.usage_pending == 3
        assert stats.refreshes >= 1 and stats.refresh_failures == 0
        age = stats.last_refresh_age
        assert isinstance(age, timedelta) and timedelta(0) <= age < timedelta(hours=1)

        ks.flush()
        after = ks.stats()
        assert (after.flushes, after.flush_failures, after.usage_pending) == (1, 0, 0)
        # A snapshot is a value: the earlier one did not move.
        assert stats.usage_pending == 3
        assert stats != after


def test_as_dict_has_every_field(store_path: Path) -> None:
    with quiet(store_path) as ks:
        created = ks.create("good")
        ks.verify(created.key)
        stats = ks.stats()
        as_dict = stats.as_dict()
        assert list(as_dict) == [
            "outcomes",
            "verifications",
            "verify_errors",
            "cache_hits",
            "cache_misses",
            "refreshes",
            "refresh_failures",
            "flushes",
            "flush_failures",
            "usage_pending",
            "last_refresh_age",
            "cached_keys",
        ]
        for name, value in as_dict.items():
            assert getattr(stats, name) == value
        assert as_dict["outcomes"]["valid"] == 1
        assert created.key not in repr(stats)
        assert repr(stats).startswith("Stats(outcomes={'valid': 1")


def test_stats_of_a_closed_store_raise(store_path: Path) -> None:
    ks = quiet(store_path)
    ks.close()
    with pytest.raises(keystead.ClosedError):
        ks.stats()


def test_handles_count_their_own(store_path: Path) -> None:
    with quiet(store_path) as writer, quiet(store_path) as reader:
        created = writer.create("good")
        writer.verify(created.key)
        assert reader.stats().verifications == 0
        assert writer.stats().verifications == 1
