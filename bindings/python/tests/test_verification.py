"""`Verification` and `KeyInfo` convert their fields when read, and `check.key` shares core's
result instead of copying it: the values and types must be those of `get(id)`. Required scopes
are read without copies: every accepted form of them must behave the same."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

import keystead
from keystead import KeyInfo, KeyStore

SCOPE = "chat:completions"
FIELDS = (
    "id",
    "name",
    "scopes",
    "metadata",
    "status",
    "created_at",
    "updated_at",
    "expires_at",
    "last_used_at",
    "use_count",
    "replaces",
    "replaced_by",
)


def assert_same_fields(got: KeyInfo, want: KeyInfo) -> None:
    for field in FIELDS:
        value, expected = getattr(got, field), getattr(want, field)
        assert type(value) is type(expected), field
        assert value == expected, field
    assert got == want
    for when in (got.created_at, got.updated_at, got.expires_at, got.last_used_at):
        if when is not None:
            assert isinstance(when, datetime)
            assert when.utcoffset() == timedelta(0)
    assert isinstance(got.scopes, tuple) and isinstance(got.metadata, dict)


def test_verification_key_fields_equal_get(store: KeyStore) -> None:
    expires = datetime.now(timezone.utc) + timedelta(days=3)
    created = store.create(
        "svc",
        scopes=[SCOPE, "embeddings"],
        metadata={"owner": "platform-team", "tier": "gold"},
        expires_at=expires,
    )
    key_id = created.info.id
    check = store.verify(created.key, [SCOPE])
    assert check.ok and check.key is not None
    stored = store.get(key_id)
    assert stored is not None
    assert_same_fields(check.key, stored)
    assert_same_fields(check.key, created.info)
    assert check.key.scopes == (SCOPE, "embeddings")
    assert check.key.metadata == {"owner": "platform-team", "tier": "gold"}
    assert check.key.status == "active"
    assert check.key.expires_at is not None
    assert abs(check.key.expires_at - expires) < timedelta(milliseconds=1)
    # the same through verify_header, and for a key that was rotated (replaces is set)
    header = store.verify_header(f"Bearer {created.key}", (SCOPE,))
    assert header.key is not None
    assert_same_fields(header.key, stored)
    rotated = store.rotate(key_id, grace=timedelta(minutes=5))
    check = store.verify(rotated.key)
    new = store.get(rotated.info.id)
    assert check.key is not None and new is not None
    assert check.key.replaces == key_id
    assert_same_fields(check.key, new)
    old_check = store.verify(created.key)  # still valid during the grace period
    old = store.get(key_id)
    assert old_check.key is not None and old is not None
    assert old_check.key.replaced_by == rotated.info.id
    assert_same_fields(old_check.key, old)


def test_a_refused_verification_names_the_key_by_id_only(store: KeyStore) -> None:
    """Issue 12 item 9: `key` only when valid, so "has a key" never admits a refused key."""
    created = store.create("svc", scopes=["embeddings"])
    key_id = created.info.id
    valid = store.verify(created.key)
    assert valid.ok and valid.key is not None and valid.key_id == key_id
    denied = store.verify(created.key, [SCOPE])
    assert denied.code == "insufficient_scope"
    assert denied.key is None and denied.key_id == key_id
    store.disable(key_id)
    disabled = store.verify(created.key)
    assert disabled.code == "disabled"
    assert disabled.key is None and disabled.key_id == key_id
    assert repr(disabled) == f"Verification(code='disabled', key_id='{key_id}')"
    store.enable(key_id)
    store.revoke(key_id)
    revoked = store.verify(created.key)
    assert revoked.code == "revoked"
    assert revoked.key is None and revoked.key_id == key_id
    typo = created.key[:-1] + ("1" if created.key[-1] == "0" else "0")
    assert store.verify(typo).key is None and store.verify(typo).key_id is None
    assert store.verify("ks_nope").key_id is None


def test_key_outlives_its_verification(store: KeyStore) -> None:
    created = store.create("svc", scopes=[SCOPE], metadata={"k": "v"})
    check = store.verify(created.key)
    key = check.key
    assert key is not None
    del check
    gc.collect()
    assert (key.id, key.name, key.scopes, key.metadata) == (
        created.info.id,
        "svc",
        (SCOPE,),
        {"k": "v"},
    )
    assert repr(key) == (
        f"KeyInfo(id='{created.info.id}', name='svc', status='active', "
        f"scopes=('{SCOPE}',))"
    )
    # each read is a fresh object: changing one changes nothing
    key.metadata["added"] = "x"
    assert key.metadata == {"k": "v"}


def test_codes_and_statuses_are_plain_str(store: KeyStore) -> None:
    created = store.create("svc")
    for _ in range(3):
        check = store.verify(created.key)
        assert type(check.code) is str and check.code == "valid"
        assert check.key is not None and type(check.key.status) is str
        assert check.key.status == "active"
        assert (check.http_status, check.www_authenticate) == (200, None)
    for value, code in (("ks_nope", "malformed"), ("", "missing")):
        check = store.verify(value)
        assert type(check.code) is str and check.code == code
        assert isinstance(check.www_authenticate, str)


def many(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 32])  # 32: the most a key can have
def test_required_scopes_in_every_form(store: KeyStore, count: int) -> None:
    scopes = many(count)
    created = store.create("svc", scopes=scopes)
    forms: list[Iterable[str]] = [
        scopes,
        tuple(scopes),
        set(scopes),
        dict.fromkeys(scopes),
        (s for s in scopes),
    ]
    for form in forms:
        assert store.verify(created.key, form).ok
        assert store.verify_header(f"Bearer {created.key}", form).ok
    # one scope more than the key has, in each position of the order given
    wanted = [*scopes, "missing"]
    denied = store.verify(created.key, tuple(wanted))
    assert denied.code == "insufficient_scope"
    assert denied.www_authenticate == (
        f'Bearer error="insufficient_scope", scope="{" ".join(wanted)}"'
    )
    assert store.verify(created.key, list(reversed(wanted))).code == "insufficient_scope"


class Backwards(list[str]):
    """A list that iterates in reverse order: its own `__iter__` must be used."""

    def __iter__(self) -> Iterator[str]:
        return reversed(self)


def test_required_scopes_subclass_iterates_its_own_way(store: KeyStore) -> None:
    key = store.create("svc", scopes=[SCOPE]).key
    denied = store.verify(key, Backwards([SCOPE, "a", "b"]))
    assert denied.www_authenticate == f'Bearer error="insufficient_scope", scope="b a {SCOPE}"'


def test_bad_required_scopes(store: KeyStore) -> None:
    key = store.create("svc").key
    bad_forms: list[object] = [[1], (SCOPE, 2), [*many(9), None]]
    for bad in bad_forms:
        with pytest.raises(TypeError):
            store.verify(key, bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            store.verify_header(f"Bearer {key}", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.verify(key, None)  # type: ignore[arg-type]
    # A lone surrogate has no UTF-8 form: the application's scope is an invalid argument.
    for lone in (["\udcff"], (SCOPE, "a\ud800"), [*many(9), "\udcff"]):
        with pytest.raises(keystead.InvalidArgument, match="lone surrogate"):
            store.verify(key, lone)
        with pytest.raises(keystead.InvalidArgument, match="lone surrogate"):
            store.verify_header(f"Bearer {key}", lone)
        with pytest.raises(keystead.InvalidArgument, match="lone surrogate"):
            store.create("other", scopes=lone)
    with pytest.raises(TypeError, match="single string"):
        store.verify_header(f"Bearer {key}", SCOPE)

    def failing() -> Iterator[str]:
        yield SCOPE
        raise RuntimeError("from the iterable")

    with pytest.raises(RuntimeError, match="from the iterable"):
        store.verify(key, failing())


def test_scope_list_changed_by_another_thread(store: KeyStore) -> None:
    """The list's items are held for the call: replacing them while the GIL is released (and
    freeing the old str objects) does not affect a verification in flight."""
    created = store.create("svc", scopes=[SCOPE, "embeddings"])
    scopes = ["".join(["chat:", "completions"]), "".join(["embed", "dings"])]
    stop = threading.Event()

    def mutate() -> None:
        while not stop.is_set():
            scopes[0] = "".join(["chat:", "completions"])
            scopes[1] = "".join(["embed", "dings"])

    codes: list[str] = []
    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            codes.append(store.verify(created.key, scopes).code)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert codes and set(codes) == {"valid"}
