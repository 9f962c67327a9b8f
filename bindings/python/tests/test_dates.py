"""Far-future dates and huge durations (issue 12, item 4): a typed ``InvalidArgument``
(a ``ValueError``), never ``OverflowError`` or a misleading "must not be negative"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import keystead
from keystead import KeyStore


def test_huge_grace_is_refused_as_too_far_not_negative(store: KeyStore) -> None:
    created = store.create("far")
    for grace in (timedelta(days=200_000_000), timedelta.max):
        with pytest.raises(keystead.InvalidArgument) as raised:
            store.rotate(created.info.id, grace=grace)
        assert "negative" not in str(raised.value)
        assert "9999" in str(raised.value)
    info = store.get(created.info.id)
    assert info is not None
    assert info.replaced_by is None
    assert info.expires_at is None


def test_datetimes_after_9999_are_refused(store: KeyStore) -> None:
    created = store.create("dates")
    minus_five = timezone(timedelta(hours=-5))
    # datetime.max is after 23:59:59; the second one is 10000-01-01T04:00Z in UTC.
    for when in (
        datetime.max.replace(tzinfo=timezone.utc),
        datetime(9999, 12, 31, 23, 0, tzinfo=minus_five),
    ):
        with pytest.raises(keystead.InvalidArgument):
            store.set_expiry(created.info.id, when)
        with pytest.raises(keystead.InvalidArgument):
            store.create("x", expires_at=when)
        with pytest.raises(keystead.InvalidArgument):
            store.usage(created.info.id, datetime(1970, 1, 1, tzinfo=timezone.utc), when)
        with pytest.raises(keystead.InvalidArgument):
            store.audit(since=when)
    latest = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    assert store.set_expiry(created.info.id, latest).expires_at == latest


def test_a_rotated_key_cannot_be_revived(store: KeyStore) -> None:
    created = store.create("svc")
    store.rotate(created.info.id, grace=timedelta(hours=1))
    with pytest.raises(keystead.InvalidStateError):
        store.set_expiry(created.info.id, None)
