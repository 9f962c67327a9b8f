"""Arguments, errors, opening and closing, and what reaches the store file."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import keystead
from keystead import KeyStore


def test_exception_hierarchy() -> None:
    for cls in (
        keystead.StoreError,
        keystead.WrongPepperError,
        keystead.InvalidArgument,
        keystead.KeyNotFoundError,
        keystead.InvalidStateError,
        keystead.PrefixMismatchError,
        keystead.UnsupportedVersionError,
        keystead.UnavailableError,
    ):
        assert issubclass(cls, keystead.KeysteadError)
    assert issubclass(keystead.KeysteadError, Exception)
    assert issubclass(keystead.InvalidArgument, ValueError)
    error = keystead.InvalidArgument("x")
    assert isinstance(pickle.loads(pickle.dumps(error)), keystead.InvalidArgument)


def test_module_exports() -> None:
    assert isinstance(keystead.__version__, str) and keystead.__version__
    for name in keystead.__all__:
        assert hasattr(keystead, name), name


def test_naive_datetimes_are_refused(store: KeyStore) -> None:
    naive = datetime.now() + timedelta(days=1)
    key_id = store.create("k").info.id
    with pytest.raises(keystead.InvalidArgument, match="naive"):
        store.create("x", expires_at=naive)
    with pytest.raises(ValueError, match="naive"):
        store.set_expiry(key_id, naive)
    with pytest.raises(keystead.InvalidArgument, match="naive"):
        store.usage(key_id, naive, datetime.now(timezone.utc))
    with pytest.raises(keystead.InvalidArgument, match="naive"):
        store.audit(since=naive)
    with pytest.raises(TypeError):
        store.set_expiry(key_id, "2030-01-01")  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["refresh_interval", "max_staleness", "flush_interval"])
def test_open_refuses_a_negative_interval(store_path: Path, option: str) -> None:
    with pytest.raises(keystead.InvalidArgument, match="negative"):
        KeyStore(store_path, **{option: timedelta(microseconds=-1)})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        KeyStore(store_path, **{option: 30})  # type: ignore[arg-type]
    assert not store_path.exists()


def test_max_staleness_is_an_open_option(store_path: Path) -> None:
    for staleness in (timedelta(0), timedelta(seconds=5), timedelta.max):
        with KeyStore(store_path, max_staleness=staleness) as ks:
            created = ks.create("k")
            assert ks.verify(created.key).ok


def test_bad_arguments(store: KeyStore) -> None:
    key_id = store.create("k").info.id
    with pytest.raises(keystead.InvalidArgument, match="negative"):
        store.rotate(key_id, grace=timedelta(seconds=-1))
    with pytest.raises(keystead.InvalidArgument, match="negative"):
        store.list(expiring_within=timedelta(days=-1))
    with pytest.raises(keystead.InvalidArgument, match="name"):
        store.create("   ")
    with pytest.raises(keystead.InvalidArgument, match="scope"):
        store.create("x", scopes=["has space"])
    with pytest.raises(keystead.InvalidArgument, match="metadata"):
        store.create("x", metadata={"bad key": "v"})
    with pytest.raises(keystead.InvalidArgument, match="scope"):
        store.verify("ks_whatever", ["not valid"])
    with pytest.raises(TypeError, match="single string"):
        store.create("x", scopes="chat:completions")
    with pytest.raises(TypeError, match="single string"):
        store.verify("ks_whatever", "chat:completions")
    with pytest.raises(TypeError):
        store.create("x", metadata={"n": 1})  # type: ignore[dict-item]
    # key ids
    with pytest.raises(keystead.InvalidArgument, match="key id"):
        store.get("short")
    with pytest.raises(keystead.InvalidArgument, match="key id"):
        store.disable("!!!!!!!!!!!!")
    assert store.get("000000000001") is None
    with pytest.raises(keystead.KeyNotFoundError, match="000000000001"):
        store.disable("000000000001")


def test_verify_edge_cases(store: KeyStore) -> None:
    missing = store.verify_header(None)
    assert (missing.code, missing.http_status, missing.www_authenticate) == (
        "missing",
        401,
        "Bearer",
    )
    assert store.verify_header("").code == "missing"
    assert store.verify_header("Basic dXNlcjpwYXNz").code == "missing"
    assert store.verify("").code == "missing"
    bad = store.verify_header("Bearer not-a-key")
    assert (bad.code, bad.http_status) == ("malformed", 400)
    assert bad.www_authenticate == 'Bearer error="invalid_request"'
    assert store.verify_header("Bearer \udcff").code == "malformed"  # lone surrogate
    created = store.create("k")
    # A presented key holding a lone surrogate (no UTF-8 form) is malformed, not an exception.
    for presented in ("ks_\ud800", created.key[:-1] + "\ud800", created.key + "\udcff"):
        lone = store.verify(presented)
        assert (lone.code, lone.http_status) == ("malformed", 400)
    assert store.verify_header(b"Bearer " + created.key.encode()).ok
    assert repr(store.verify(created.key)) == (
        f"Verification(code='valid', key_id='{created.info.id}')"
    )


def test_key_from_another_store_is_not_found(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "a.redb") as a, KeyStore(tmp_path / "b.redb") as b:
        key = a.create("k").key
        check = b.verify(key)
        assert (check.code, check.http_status, check.key) == ("not_found", 401, None)


def test_close(store_path: Path) -> None:
    ks = KeyStore(store_path)
    created = ks.create("k")
    assert ks.verify(created.key).ok
    assert not ks.closed
    ks.close()
    assert ks.closed
    assert "closed" in repr(ks)
    for call in (
        lambda: ks.verify(created.key),
        lambda: ks.get(created.info.id),
        lambda: ks.create("again"),
        lambda: ks.list(),
        ks.flush,
    ):
        with pytest.raises(keystead.ClosedError) as raised:
            call()
        assert type(raised.value) is keystead.ClosedError
        assert not isinstance(raised.value, keystead.StoreError)
    ks.close()  # closing twice is fine
    # the usage counted before close was flushed by it
    with KeyStore(store_path) as again:
        info = again.get(created.info.id)
        assert info is not None and info.use_count == 1


def test_context_manager_closes_even_on_error(store_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with KeyStore(store_path) as ks:
            raise RuntimeError("boom")
    assert ks.closed


def test_pepper(store_path: Path) -> None:
    with KeyStore(store_path, pepper="from-the-secret-manager-0123456789") as ks:
        key = ks.create("k").key
    # str and bytes name the same pepper
    with KeyStore(store_path, pepper=b"from-the-secret-manager-0123456789") as ks:
        assert ks.verify(key).ok
    with pytest.raises(keystead.WrongPepperError):
        KeyStore(store_path, pepper=b"another-pepper-0123456789abcdefghij")
    with pytest.raises(keystead.WrongPepperError):
        KeyStore(store_path)
    with pytest.raises(TypeError):
        KeyStore(store_path, pepper=123)  # type: ignore[arg-type]


def test_store_without_pepper_refuses_one(store_path: Path) -> None:
    KeyStore(store_path).close()
    with pytest.raises(keystead.WrongPepperError, match="pepper"):
        KeyStore(store_path, pepper="p" * 32)


def test_prefix(tmp_path: Path) -> None:
    path = tmp_path / "hub.redb"
    with KeyStore(path, prefix="hub") as ks:
        assert ks.prefix == "hub"
        key = ks.create("k").key
        assert key.startswith("hub_")
        assert ks.verify(key).ok
    with KeyStore(str(path)) as ks:  # str paths work too; the store keeps its prefix
        assert ks.prefix == "hub"
    with pytest.raises(keystead.PrefixMismatchError, match="hub"):
        KeyStore(path, prefix="ks")
    with pytest.raises(keystead.InvalidArgument, match="prefix"):
        KeyStore(tmp_path / "other.redb", prefix="Bad-Prefix")


def test_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "garbage.redb"
    path.write_bytes(b"this is not a redb file" * 100)
    with pytest.raises(keystead.StoreError):
        KeyStore(path)
    with pytest.raises(keystead.StoreError):
        KeyStore(tmp_path / "no-such-dir" / "k.redb")


def test_plaintext_key_never_reaches_the_file(store_path: Path) -> None:
    pepper = b"pepper-that-stays-in-memory-0123456789"
    keys = []
    with KeyStore(store_path, pepper=pepper, cache_size=1 << 20) as ks:
        for i in range(5):
            created = ks.create(f"k{i}", scopes=["chat:completions"])
            keys.append(created.key)
            assert ks.verify(created.key).ok
        rotated = ks.rotate(ks.list()[0].id, grace=timedelta(hours=1))
        keys.append(rotated.key)
        ks.flush()
    data = store_path.read_bytes()
    assert len(data) > 0
    for key in keys:
        secret = key[3 + 12 : 3 + 12 + 43]
        assert key.encode() not in data
        assert secret.encode() not in data
        assert key[3 + 12 :].encode() not in data
    assert pepper not in data


def test_create_many_creates_all_in_order_or_none(store: KeyStore) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=30)
    created = store.create_many(
        [
            {"name": "alice", "scopes": ["read", "write"], "metadata": {"team": "a"}},
            {"name": "bob", "expires_at": later},
            {"name": "carol", "scopes": (), "metadata": None, "expires_at": None},
        ]
    )
    assert [c.info.name for c in created] == ["alice", "bob", "carol"]
    assert created[0].info.scopes == ("read", "write")
    assert created[0].info.metadata == {"team": "a"}
    assert created[1].info.expires_at is not None
    for c in created:
        assert store.verify(c.key).ok
        assert c.key not in repr(c)
    assert store.create_many([]) == []

    # One bad item: nothing is created.
    before = len(store.list())
    bad_items: list[list[dict[str, object]]] = [
        [{"name": "ok"}, {"name": "x", "scopes": ["a b"]}],
        [{"name": "ok"}, {"scopes": ["a"]}],
        [{"name": "ok"}, {"name": "x", "nmae": "typo"}],
        [{"name": "ok"}, {"name": ""}],
    ]
    for items in bad_items:
        with pytest.raises(keystead.InvalidArgument):
            store.create_many(items)
    with pytest.raises(TypeError):
        store.create_many([{"name": "ok"}, "not a mapping"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        store.create_many({"name": "a single mapping"})  # type: ignore[dict-item]
    assert len(store.list()) == before

    # A key pasted as a field name is not echoed.
    with pytest.raises(keystead.InvalidArgument) as refused:
        store.create_many([{"name": "x", created[0].key: 1}])
    assert created[0].key not in str(refused.value)
