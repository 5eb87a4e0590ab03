"""Prefixed, time-sortable identifiers: ``<prefix>_<ULID>``.

A ULID is 48 bits of milliseconds since the epoch and 80 random bits in Crockford base32, so ids
sort by creation time (cursor pagination relies on it) and reveal nothing guessable. Within one
process, ids minted in the same millisecond increment the random part, so they stay ordered.
"""

from __future__ import annotations

import os
import re
import threading
import time

PREFIXES = frozenset(
    "org usr key prd rel trm rsr pln app trk lic use aud pay rfd xfr alc evt mem fil blk job idm whk inb ent "
    "res bud dsp acc mtr jrn chk xrv".split()
)
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PATTERN = re.compile(r"^([a-z]{3})_([0-9A-HJKMNP-TV-Z]{26})$")
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def new_id(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_rand = ms, rand
    value = (ms << 80) | rand
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def is_id(value: str, prefix: str | None = None) -> bool:
    match = _PATTERN.match(value)
    return bool(match) and (prefix is None or match.group(1) == prefix)
