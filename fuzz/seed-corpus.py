#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/, deterministically.

- parse_key: every key string of tests/vectors/keys.json;
- parse_authorization_header: every header value of tests/vectors/headers.json (bar the two
  over-long ones, cut to just over the 4 KiB limit to keep the corpus small);
- decode_record: a few valid key records in the documented layout (core/src/record.rs and
  codec.rs: version 1, little-endian integers, u16-length strings, CRC-32 trailer);
- store_ops: a few fixed pseudo-random byte strings (the `arbitrary` op decoder reads any bytes);
  the target runs an input on a store file rather than `memory:` when the CRC-32 of its bytes
  is a multiple of 32 (FILE_EVERY), so one more seed, the longest with its last byte changed,
  is one of those.

Files are named by the SHA-1 of their content, as libFuzzer names corpus entries. Existing files
in those directories are removed first. Run from anywhere:  python3 fuzz/seed-corpus.py
"""

import hashlib
import json
import random
import shutil
import struct
import zlib
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"
MAX_HEADER_LEN = 4096


def write(target: str, seeds: list[bytes]) -> None:
    out = CORPUS / target
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for seed in seeds:
        (out / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"{target}: {len(set(seeds))} seeds")


def vectors(name: str) -> list[dict]:
    return json.loads((ROOT / "tests" / "vectors" / name).read_text(encoding="utf-8"))["cases"]


def string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<H", len(b)) + b


def record(
    *,
    id: int,
    salt: bytes,
    hash: bytes,
    state: int,
    created_at: int,
    updated_at: int,
    expires_at: int | None = None,
    replaces: int | None = None,
    replaced_by: int | None = None,
    name: str,
    scopes: list[str] = (),
    metadata: dict[str, str] | None = None,
) -> bytes:
    metadata = metadata or {}
    flags = (expires_at is not None) | (replaces is not None) << 1 | (replaced_by is not None) << 2
    out = struct.pack("<BBQ", 1, 1, id) + salt + hash
    out += struct.pack("<Bqq", state, created_at, updated_at) + bytes([flags])
    if expires_at is not None:
        out += struct.pack("<q", expires_at)
    if replaces is not None:
        out += struct.pack("<Q", replaces)
    if replaced_by is not None:
        out += struct.pack("<Q", replaced_by)
    out += string(name)
    scopes = sorted(set(scopes), key=lambda s: s.encode("utf-8"))
    out += struct.pack("<H", len(scopes)) + b"".join(string(s) for s in scopes)
    keys = sorted(metadata, key=lambda k: k.encode("utf-8"))
    out += struct.pack("<H", len(keys))
    out += b"".join(string(k) + string(metadata[k]) for k in keys)
    return out + struct.pack("<I", zlib.crc32(out))


def main() -> None:
    write("parse_key", [c["key"].encode("utf-8") for c in vectors("keys.json")])

    headers = []
    for c in vectors("headers.json"):
        h = c["header"].encode("utf-8")
        headers.append(h[: MAX_HEADER_LEN + 1])
    write("parse_authorization_header", headers)

    t = 1_700_000_000_000
    records = [
        record(id=1, salt=bytes(16), hash=bytes(32), state=0, created_at=t, updated_at=t, name="k"),
        record(
            id=0x0123456789ABCDEF,
            salt=bytes(range(16)),
            hash=bytes(range(32, 64)),
            state=1,
            created_at=t,
            updated_at=t + 1,
            expires_at=t + 86_400_000,
            replaced_by=9,
            name="dev-server-integration",
            scopes=["chat:completions", "embeddings"],
            metadata={"owner": "team-a", "env": "prod"},
        ),
        record(
            id=2**64 - 1,
            salt=b"\xff" * 16,
            hash=b"\xee" * 32,
            state=2,
            created_at=-1,
            updated_at=2**63 - 1,
            expires_at=-(2**63),
            replaces=7,
            replaced_by=8,
            name="clé 🔑",
            scopes=["a", "b:read", "x/y.z-1"],
            metadata={"k": ""},
        ),
    ]
    write("decode_record", records)

    rng = random.Random(7)
    store_ops = [bytes(rng.randrange(256) for _ in range(n)) for n in (16, 64, 128, 256, 512)]
    longest = store_ops[-1]
    on_file = next(
        seed
        for last in range(256)
        if zlib.crc32(seed := longest[:-1] + bytes([last])) % 32 == 0
    )
    write("store_ops", store_ops + [on_file])


if __name__ == "__main__":
    main()
