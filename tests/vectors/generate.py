#!/usr/bin/env python3
"""Writes keys.json, headers.json and lifecycle.json: the test vectors every keystead suite consumes.

This is an independent implementation of the key format (docs/key-format.md) using only the
Python standard library (zlib's CRC-32, integer base62), so the Rust core is checked against a
second reading of the spec rather than against itself. Deterministic: re-running it must not
change the files (CI checks that).

Usage: python3 tests/vectors/generate.py [--check]
"""
import hashlib
import json
import pathlib
import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
HERE = pathlib.Path(__file__).resolve().parent


def b62(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        digits.append(ALPHABET[rem])
    assert value == 0, "width too small"
    return "".join(reversed(digits))


def det_bytes(label: str, n: int) -> bytes:
    return hashlib.sha256(label.encode()).digest()[:n]


def make_key(prefix: str, seed: str) -> tuple[str, str]:
    key_id = b62(int.from_bytes(det_bytes("id" + seed, 8), "big"), 12)
    secret = b62(int.from_bytes(det_bytes("secret" + seed, 32), "big"), 43)
    covered = f"{prefix}_{key_id}{secret}"
    return covered + b62(zlib.crc32(covered.encode()), 6), key_id


def with_checksum(covered: str) -> str:
    return covered + b62(zlib.crc32(covered.encode()), 6)


def flip(text: str, index: int) -> str:
    c = text[index]
    return text[:index] + ("B" if c != "B" else "C") + text[index + 1 :]


def key_cases() -> list[dict]:
    cases = []

    def valid(name, prefix, seed):
        key, key_id = make_key(prefix, seed)
        verify = "not_found" if prefix == "ks" else "malformed"
        cases.append(
            dict(name=name, key=key, valid=True, prefix=prefix, id=key_id, verify=verify)
        )
        return key

    def invalid(name, key, reason, verify="malformed"):
        cases.append(dict(name=name, key=key, valid=False, reason=reason, verify=verify))

    k = valid("default prefix", "ks", "1")
    valid("default prefix, second key", "ks", "2")
    valid("prefix with underscore (parsed from the right)", "sk_live", "3")
    valid("one-letter prefix", "a", "4")
    valid("16-character prefix", "abcdefghijklmnop", "5")
    valid("prefix with digits", "hub2", "6")
    zero = with_checksum("ks_" + "0" * 12 + "0" * 43)
    cases.append(dict(name="all-zero id and secret", key=zero, valid=True, prefix="ks",
                      id="0" * 12, verify="not_found"))
    max_secret = b62(2**256 - 1, 43)
    top = with_checksum("ks_" + b62(2**64 - 1, 12) + max_secret)
    cases.append(dict(name="largest id and secret", key=top, valid=True, prefix="ks",
                      id=b62(2**64 - 1, 12), verify="not_found"))

    invalid("empty (verify: no credentials at all)", "", "length", verify="missing")
    invalid("prefix only", "ks_", "length")
    # Parsed from the right: 60 characters after "ks_" leave "_" inside the 61-char body.
    invalid("one character short", k[:-1], "charset")
    invalid("shorter than any key", k[:40], "length")
    invalid("one character long", k + "A", "separator")
    invalid("17-character prefix", make_key("abcdefghijklmnopq", "7")[0], "length")
    invalid("no prefix, bare body", "_" + k[3:], "length")
    invalid("dash in body", k[:20] + "-" + k[21:], "charset")
    invalid("underscore in body", k[:20] + "_" + k[21:], "charset")
    invalid("non-ASCII in body", k[:20] + "é" + k[22:], "charset")
    invalid("space in body", k[:20] + " " + k[21:], "charset")
    invalid("missing separator", "ks" + "x" + k[3:], "separator")
    invalid("uppercase prefix", "KS" + k[2:], "prefix")
    invalid("prefix starting with a digit", with_checksum("1s_" + k[3:-6]), "prefix")
    invalid("prefix ending in underscore", with_checksum("ks__" + k[3:-6]), "prefix")
    invalid("dash in prefix", with_checksum("k-s_" + k[3:-6]), "prefix")
    invalid("flipped id character", flip(k, 5), "checksum")
    invalid("flipped secret character", flip(k, 40), "checksum")
    invalid("flipped checksum character", flip(k, len(k) - 1), "checksum")
    invalid("swapped adjacent characters", k[:10] + k[11] + k[10] + k[12:], "checksum")
    invalid("checksum over 2^32", k[:-6] + "zzzzzz", "checksum")
    invalid("secret of 2^256 or more", with_checksum("ks_" + "0" * 12 + "z" * 43), "out_of_range")
    invalid("id of 2^64 or more", with_checksum("ks_" + "z" * 12 + max_secret), "out_of_range")
    invalid("leading space", " " + k, "prefix")
    invalid("trailing newline", k + "\n", "charset")
    return cases


def header_cases() -> list[dict]:
    k, _ = make_key("ks", "1")
    other, _ = make_key("sk_live", "3")
    cases = []

    def token(name, header, tok, verify="not_found"):
        cases.append(dict(name=name, header=header, expect="token", token=tok, verify=verify))

    def missing(name, header):
        cases.append(dict(name=name, header=header, expect="missing", verify="missing"))

    def malformed(name, header):
        cases.append(dict(name=name, header=header, expect="malformed", verify="malformed"))

    token("canonical", f"Bearer {k}", k)
    token("lowercase scheme (RFC 9110: case-insensitive)", f"bearer {k}", k)
    token("uppercase scheme", f"BEARER {k}", k)
    token("mixed-case scheme", f"BeArEr {k}", k)
    token("several spaces after scheme", f"Bearer    {k}", k)
    token("leading spaces", f"   Bearer {k}", k)
    token("trailing spaces", f"Bearer {k}   ", k)
    token("leading tab", f"\tBearer {k}", k)
    token("trailing tab", f"Bearer {k}\t", k)
    token("b64token characters, not a key", "Bearer abc-._~+/XYZ", "abc-._~+/XYZ", "malformed")
    token("b64token with padding, not a key", "Bearer abc==", "abc==", "malformed")
    token("key of another prefix", f"Bearer {other}", other, "malformed")
    token("token with a bad checksum", f"Bearer {flip(k, 30)}", flip(k, 30), "malformed")
    token("short token", "Bearer x", "x", "malformed")
    missing("empty", "")
    missing("spaces only", "   ")
    missing("tab only", "\t")
    missing("Basic scheme (RFC 6750 3.1: no error code)", "Basic dXNlcjpwYXNz")
    missing("Digest scheme", 'Digest username="a", realm="b"')
    missing("unknown scheme with key", f"Token {k}")
    malformed("scheme only", "Bearer")
    malformed("scheme and spaces", "Bearer   ")
    malformed("bare key without scheme", k)
    malformed("tab between scheme and token", f"Bearer\t{k}")
    malformed("two tokens", f"Bearer {k} {k}")
    malformed("comma after token", f"Bearer {k},")
    malformed("comma-separated credentials", f"Bearer {k}, Basic abc")
    malformed("auth-param form", 'Bearer token="abc"')
    malformed("padding in the middle", "Bearer ab=c")
    malformed("padding only", "Bearer ==")
    malformed("quoted token", f'Bearer "{k}"')
    malformed("NUL in token", f"Bearer {k[:10]}\u0000{k[11:]}")
    malformed("newline in token", f"Bearer {k}\nX-Injected: 1")
    malformed("carriage return", f"Bearer {k}\r")
    malformed("non-ASCII in token", f"Bearer {k[:10]}é{k[11:]}")
    malformed("non-ASCII scheme", f"Bëarer {k}")
    malformed("fullwidth space", f"Bearer\u3000{k}")
    malformed("no space between scheme and token", f"Bearer{k}")
    malformed("colon in token", "Bearer a:b")
    malformed("semicolon in token", f"Bearer {k};")
    malformed("bearer token longer than 4 KiB", "Bearer " + "a" * 4096)
    malformed("any header longer than 4 KiB", "Basic " + "a" * 4096)
    malformed("scheme with invalid character", f"Bear(er {k}")
    malformed("control character in other scheme", "Basic a\u0001b")
    return cases


def lifecycle_cases() -> list[dict]:
    """Scripts of admin steps, each verify step with the outcome every binding must give."""
    unknown, _ = make_key("ks", "default-1")  # well-formed, in no store
    invalid_token = 'Bearer error="invalid_token"'

    def expect(code: str, status: int, challenge: str | None) -> dict:
        return {"code": code, "http_status": status, "www_authenticate": challenge}

    valid = expect("valid", 200, None)
    missing = expect("missing", 401, "Bearer")
    malformed = expect("malformed", 400, 'Bearer error="invalid_request"')
    not_found = expect("not_found", 401, invalid_token)
    disabled = expect("disabled", 401, invalid_token)
    revoked = expect("revoked", 401, invalid_token)
    expired = expect("expired", 401, invalid_token)

    def scope(*required: str) -> dict:
        joined = " ".join(required)
        return expect("insufficient_scope", 403,
                      f'Bearer error="insufficient_scope", scope="{joined}"')

    chat = ["chat:completions"]
    return [
        {
            "name": "every outcome code through the admin steps",
            "steps": [
                {"op": "create", "as": "a", "name": "dev-server-integration", "scopes": chat},
                {"op": "verify", "key": "a", "scopes": chat, "expect": valid},
                {"op": "verify_header", "header": "Bearer {a}", "scopes": chat, "expect": valid},
                {"op": "verify_header", "header": "", "scopes": [], "expect": missing},
                {"op": "verify", "raw": "ks_typo", "scopes": [], "expect": malformed},
                {"op": "verify", "raw": unknown, "scopes": [], "expect": not_found},
                {"op": "verify", "key": "a", "scopes": ["images"], "expect": scope("images")},
                {"op": "disable", "key": "a"},
                {"op": "verify", "key": "a", "scopes": chat, "expect": disabled},
                {"op": "enable", "key": "a"},
                {"op": "verify", "key": "a", "scopes": chat, "expect": valid},
                {"op": "rotate", "key": "a", "as": "b", "grace_ms": 0},
                {"op": "verify", "key": "a", "scopes": chat, "expect": expired},
                {"op": "verify", "key": "b", "scopes": chat, "expect": valid},
                {"op": "revoke", "key": "b"},
                {"op": "verify", "key": "b", "scopes": chat, "expect": revoked},
                {"op": "verify_header", "header": "Bearer {b}", "scopes": [], "expect": revoked},
            ],
        },
        {
            "name": "scopes: every required scope must be granted; the challenge lists them all",
            "steps": [
                {"op": "create", "as": "a", "name": "two-scopes", "scopes": ["embeddings", "images"]},
                {"op": "verify", "key": "a", "scopes": [], "expect": valid},
                {"op": "verify", "key": "a", "scopes": ["images", "embeddings"], "expect": valid},
                {"op": "verify", "key": "a", "scopes": ["images", "chat:completions"],
                 "expect": scope("images", "chat:completions")},
                {"op": "set_scopes", "key": "a", "scopes": ["chat:completions", "images"]},
                {"op": "verify", "key": "a", "scopes": ["images", "chat:completions"], "expect": valid},
                {"op": "verify", "key": "a", "scopes": ["embeddings"], "expect": scope("embeddings")},
            ],
        },
        {
            "name": "a key without scopes passes only checks that require none",
            "steps": [
                {"op": "create", "as": "a", "name": "no-scopes", "scopes": []},
                {"op": "verify", "key": "a", "scopes": [], "expect": valid},
                {"op": "verify", "key": "a", "scopes": chat, "expect": scope("chat:completions")},
            ],
        },
        {
            "name": "revoked is final and outranks disabled and expired",
            "steps": [
                {"op": "create", "as": "a", "name": "disabled-then-revoked", "scopes": []},
                {"op": "disable", "key": "a"},
                {"op": "revoke", "key": "a"},
                {"op": "verify", "key": "a", "scopes": [], "expect": revoked},
                {"op": "create", "as": "c", "name": "rotated-then-revoked", "scopes": []},
                {"op": "rotate", "key": "c", "as": "d", "grace_ms": 0},
                {"op": "verify", "key": "c", "scopes": [], "expect": expired},
                {"op": "revoke", "key": "c"},
                {"op": "verify", "key": "c", "scopes": [], "expect": revoked},
                {"op": "verify", "key": "d", "scopes": [], "expect": valid},
            ],
        },
        {
            "name": "a leaked key revoked during its rotation grace; the replacement stays valid",
            "steps": [
                {"op": "create", "as": "a", "name": "svc", "scopes": chat},
                {"op": "rotate", "key": "a", "as": "b", "grace_ms": 3600000},
                {"op": "verify", "key": "a", "scopes": chat, "expect": valid},
                {"op": "verify", "key": "b", "scopes": chat, "expect": valid},
                {"op": "revoke", "key": "a"},
                {"op": "verify", "key": "a", "scopes": chat, "expect": revoked},
                {"op": "verify", "key": "b", "scopes": chat, "expect": valid},
            ],
        },
        {
            "name": "a deleted key is not_found, like one that never existed",
            "steps": [
                {"op": "create", "as": "a", "name": "short-lived", "scopes": []},
                {"op": "verify", "key": "a", "scopes": [], "expect": valid},
                {"op": "delete", "key": "a"},
                {"op": "verify", "key": "a", "scopes": [], "expect": not_found},
                {"op": "verify_header", "header": "Bearer {a}", "scopes": [], "expect": not_found},
            ],
        },
    ]


def render(name: str, description: str, cases: list[dict]) -> str:
    doc = {"description": description, "generated_by": "tests/vectors/generate.py", "cases": cases}
    return json.dumps(doc, indent=2, ensure_ascii=True) + "\n"


def main() -> int:
    outputs = {
        "keys.json": render(
            "keys",
            "Key strings with expected parse results. valid=true cases give prefix and id; "
            "valid=false cases give the first failing check (reason). 'verify' is the outcome "
            "code of verify(key) on an empty store with prefix 'ks'.",
            key_cases(),
        ),
        "headers.json": render(
            "headers",
            "Authorization header values. expect is 'token' (with the extracted token), "
            "'missing' or 'malformed'. 'verify' is the outcome code of verify_header(header) "
            "on an empty store with prefix 'ks'.",
            header_cases(),
        ),
        "lifecycle.json": render(
            "lifecycle",
            "Scripts of admin steps on a new store with prefix 'ks', run in order. Ops: create "
            "(name, scopes; 'as' names the key for later steps), disable, enable, revoke, delete, "
            "set_scopes (key, scopes), rotate (key, grace_ms; 'as' names the new key), verify "
            "(key: a named key, or raw: a literal string; scopes required), verify_header (header, "
            "where {name} stands for that key; scopes required). Each verify step gives the "
            "expected code, http_status and www_authenticate (null: no header).",
            lifecycle_cases(),
        ),
    }
    check = "--check" in sys.argv
    stale = []
    for name, text in outputs.items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale vectors (run tests/vectors/generate.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
