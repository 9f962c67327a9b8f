"""A key's whole life through the binding: create, verify, disable/enable, rotate, revoke,
delete; scopes, expiry, usage and the audit log."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import keystead
from keystead import KeyStore

SCOPE = "chat:completions"


def now() -> datetime:
    return datetime.now(timezone.utc)


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


def test_create_returns_the_key_once_and_never_shows_it(store: KeyStore) -> None:
    created = store.create(
        "dev-server-integration",
        scopes=[SCOPE, "embeddings", SCOPE],
        metadata={"owner": "platform-team"},
    )
    key = created.key
    assert isinstance(key, str)
    assert key.startswith("ks_") and len(key) == 3 + 61
    for shown in (repr(created), str(created), repr(created.info)):
        assert key not in shown
        assert key[3 + 12 :] not in shown  # not even the secret part
    assert "<redacted>" in repr(created)

    info = created.info
    assert key[3:15] == info.id
    assert info.name == "dev-server-integration"
    assert info.scopes == ("chat:completions", "embeddings")  # sorted, deduplicated
    assert info.metadata == {"owner": "platform-team"}
    assert info.status == "active"
    assert_utc(info.created_at)
    assert abs(info.created_at - now()) < timedelta(minutes=1)
    assert info.updated_at == info.created_at
    assert info.expires_at is None
    assert info.last_used_at is None
    assert info.use_count == 0
    assert info.replaces is None and info.replaced_by is None
    assert store.get(info.id) == info


def test_key_info_is_frozen(store: KeyStore) -> None:
    info = store.create("frozen").info
    with pytest.raises(AttributeError):
        info.name = "other"  # type: ignore[misc]
    info.metadata["added"] = "x"  # a copy: the KeyInfo does not change
    assert info.metadata == {}


def test_full_lifecycle(store: KeyStore) -> None:
    created = store.create("svc", scopes=[SCOPE])
    key, key_id = created.key, created.info.id

    ok = store.verify(key, [SCOPE])
    assert (ok.ok, ok.code, ok.http_status, ok.www_authenticate) == (True, "valid", 200, None)
    assert ok.key is not None and ok.key.id == key_id
    header = store.verify_header(f"Bearer {key}", (SCOPE,))
    assert header.ok and header.key is not None and header.key.name == "svc"

    # scopes
    denied = store.verify(key, [SCOPE, "admin"])
    assert (denied.ok, denied.code, denied.http_status) == (False, "insufficient_scope", 403)
    assert denied.www_authenticate == (
        'Bearer error="insufficient_scope", scope="chat:completions admin"'
    )
    assert denied.key is None and denied.key_id == key_id

    # disable / enable
    assert store.disable(key_id).status == "disabled"
    check = store.verify(key)
    assert (check.code, check.http_status) == ("disabled", 401)
    assert check.www_authenticate == 'Bearer error="invalid_token"'
    assert store.enable(key_id).status == "active"
    assert store.verify(key).ok

    # rotate with a grace period: both keys work, the records link to each other
    rotated = store.rotate(key_id, grace=timedelta(minutes=5))
    new_key, new_id = rotated.key, rotated.info.id
    assert new_id != key_id and new_key != key
    assert key not in repr(rotated) and new_key not in repr(rotated)
    assert rotated.info.replaces == key_id
    assert rotated.info.scopes == (SCOPE,)
    assert store.verify(new_key, [SCOPE]).ok
    assert store.verify(key, [SCOPE]).ok
    old = store.get(key_id)
    assert old is not None and old.replaced_by == new_id
    assert old.expires_at is not None
    assert timedelta(minutes=4) < old.expires_at - now() <= timedelta(minutes=5)
    with pytest.raises(keystead.InvalidStateError):
        store.rotate(key_id)

    # revoke
    assert store.revoke(key_id).status == "revoked"
    assert store.verify(key).code == "revoked"
    assert store.revoke(key_id).status == "revoked"  # revoking again changes nothing
    with pytest.raises(keystead.InvalidStateError, match="revoked"):
        store.enable(key_id)
    with pytest.raises(keystead.InvalidStateError):
        store.set_expiry(key_id, now() + timedelta(days=1))
    assert store.verify(new_key).ok

    # delete
    store.delete(key_id)
    assert store.get(key_id) is None
    assert store.verify(key).code == "not_found"
    with pytest.raises(keystead.KeyNotFoundError):
        store.delete(key_id)
    assert store.get(new_id) is not None


def test_rotate_without_grace_ends_the_old_key_at_once(store: KeyStore) -> None:
    created = store.create("svc")
    rotated = store.rotate(created.info.id)
    assert store.verify(created.key).code == "expired"
    assert store.verify(rotated.key).ok


def test_expiry(store: KeyStore) -> None:
    created = store.create("short-lived", expires_at=now() + timedelta(minutes=1))
    assert_utc(created.info.expires_at)
    assert store.verify(created.key).ok
    assert store.list(expiring_within=timedelta(hours=1)) == [store.get(created.info.id)]

    # 800 ms ahead; should the machine stall past it first, the call is refused (an expiry in
    # the past) and retried further ahead
    ahead = timedelta(milliseconds=800)
    while True:
        soon = now() + ahead
        try:
            info = store.set_expiry(created.info.id, soon)
            break
        except keystead.InvalidArgument:
            if now() < soon:
                raise
            ahead *= 2
    assert info.expires_at is not None
    assert abs(info.expires_at - soon) < timedelta(milliseconds=2)  # stored in milliseconds
    time.sleep(max(0.0, (soon - now()).total_seconds()) + 0.1)
    check = store.verify(created.key)
    assert (check.code, check.http_status) == ("expired", 401)
    assert store.get(created.info.id).status == "expired"  # type: ignore[union-attr]

    # an expired key can be given a new expiry, or none
    assert store.set_expiry(created.info.id, None).expires_at is None
    assert store.verify(created.key).ok

    with pytest.raises(keystead.InvalidArgument, match="future"):
        store.create("late", expires_at=now() - timedelta(seconds=1))
    with pytest.raises(keystead.InvalidArgument, match="future"):
        store.set_expiry(created.info.id, now() - timedelta(seconds=1))


def test_other_timezones_are_converted_to_utc(store: KeyStore) -> None:
    local = timezone(timedelta(hours=-5))
    at = datetime.now(local) + timedelta(days=1)
    info = store.create("tz", expires_at=at).info
    assert info.expires_at is not None
    assert_utc(info.expires_at)
    assert abs(info.expires_at - at) < timedelta(milliseconds=2)


def test_usage_counts_after_flush(store: KeyStore) -> None:
    created = store.create("counted", scopes=[SCOPE])
    other = store.create("other")
    for _ in range(7):
        assert store.verify(created.key, [SCOPE]).ok
    store.verify(created.key, ["admin"])  # refused: not counted
    store.verify_header(f"Bearer {created.key}")
    store.flush()

    info = store.get(created.info.id)
    assert info is not None
    assert info.use_count == 8
    assert_utc(info.last_used_at)
    assert info.last_used_at is not None
    assert abs(info.last_used_at - now()) < timedelta(minutes=1)

    today = now().replace(hour=0, minute=0, second=0, microsecond=0)
    days = store.usage(created.info.id, today - timedelta(days=7), now())
    assert len(days) == 1
    assert days[0].day == today
    assert_utc(days[0].day)
    assert days[0].count == 8
    assert store.usage(other.info.id, today, now()) == []
    assert store.usage(created.info.id, today - timedelta(days=7), today - timedelta(days=1)) == []
    with pytest.raises(keystead.KeyNotFoundError):
        store.usage("000000000001", today, now())


def test_audit_log(store_path: Path) -> None:
    start = now() - timedelta(seconds=1)
    with KeyStore(store_path, actor="alice@example.com") as ks:
        created = ks.create("audited")
        key_id = created.info.id
        ks.rename(key_id, "audited-2")
        ks.set_scopes(key_id, ["embeddings"])
        ks.set_metadata(key_id, {"team": "ml"})
        ks.set_expiry(key_id, now() + timedelta(days=30))
        ks.disable(key_id)
        ks.enable(key_id)
        rotated = ks.rotate(key_id, grace=timedelta(hours=1))
        ks.revoke(key_id)
        ks.delete(key_id)

        entries = ks.audit()
        actions = [e.action for e in entries]
        assert actions == [
            "delete",
            "revoke",
            "create",  # the replacement
            "rotate",
            "enable",
            "disable",
            "set_expiry",
            "set_metadata",
            "set_scopes",
            "rename",
            "create",
        ]
        assert [e.seq for e in entries] == sorted((e.seq for e in entries), reverse=True)
        assert all(e.actor == "alice@example.com" for e in entries)
        assert all(start <= e.at <= now() for e in entries)
        assert_utc(entries[0].at)
        assert entries[-1].key_id == key_id
        assert entries[-1].detail == "audited"
        assert entries[-2].detail == "audited -> audited-2"
        assert entries[2].key_id == rotated.info.id
        assert rotated.info.id in entries[3].detail
        for entry in entries:
            assert created.key not in repr(entry) and created.key not in entry.detail
            assert rotated.key not in entry.detail

        assert len(ks.audit(limit=3)) == 3
        assert ks.audit(limit=0) == []
        assert ks.audit(since=now() + timedelta(minutes=1)) == []
        assert len(ks.audit(since=start)) == len(entries)


def test_audit_returns_100_entries_by_default() -> None:
    # core's DEFAULT_AUDIT_LIMIT, the default of every binding and the CLI (it was 50 here)
    with KeyStore("memory:") as ks:
        key_id = ks.create("audited").info.id
        for i in range(120):
            ks.rename(key_id, f"audited-{i}")
        entries = ks.audit()
        assert len(entries) == 100
        assert entries[0].detail == "audited-118 -> audited-119"
        assert len(ks.audit(limit=500)) == 121


def test_list_filters_and_paging(store: KeyStore) -> None:
    a = store.create("web-a", scopes=[SCOPE]).info
    b = store.create("web-b", scopes=["embeddings"]).info
    c = store.create("batch-c", scopes=[SCOPE], expires_at=now() + timedelta(hours=2)).info
    store.disable(b.id)

    everything = store.list()
    assert sorted(k.id for k in everything) == sorted([a.id, b.id, c.id])
    assert [k.id for k in everything] == sorted(k.id for k in everything)  # id order
    assert {k.id for k in store.list(status="active")} == {a.id, c.id}
    assert [k.id for k in store.list(status="disabled")] == [b.id]
    assert {k.id for k in store.list(scope=SCOPE)} == {a.id, c.id}
    assert {k.id for k in store.list(name_prefix="web-")} == {a.id, b.id}
    assert [k.id for k in store.list(expiring_within=timedelta(hours=3))] == [c.id]
    assert store.list(expiring_within=timedelta(hours=1)) == []

    first = store.list(limit=2)
    rest = store.list(after=first[-1].id)
    assert [k.id for k in first + rest] == [k.id for k in everything]
    assert store.list(limit=0) == []

    with pytest.raises(keystead.InvalidArgument, match="status"):
        store.list(status="bogus")  # type: ignore[arg-type]


def test_setters(store: KeyStore) -> None:
    key_id = store.create("before", scopes=["a"], metadata={"k": "v"}).info.id
    assert store.rename(key_id, "after").name == "after"
    assert store.set_scopes(key_id, {"b", "c"}).scopes == ("b", "c")  # any iterable
    assert store.set_scopes(key_id, []).scopes == ()
    assert store.set_metadata(key_id, {"x": "1", "y": "2"}).metadata == {"x": "1", "y": "2"}
    info = store.set_metadata(key_id, {})
    assert info.metadata == {}
    assert info.updated_at >= info.created_at
    assert store.get(key_id) == info
