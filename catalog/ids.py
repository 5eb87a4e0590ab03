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
    "res bud dsp acc mtr jrn chk xrv msg wep dlv".split()
)
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every pair of digits, indexed by the 10 bits it encodes: 13 lookups spell the 130 bits (two zero
# bits, then 128) of a ULID. Usage ingest mints 1,000 ids a request, and a digit-at-a-time loop
# showed in its profile.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = range(120, -1, -10)
_PATTERN = re.compile(r"^([a-z]{3})_([0-9A-HJKMNP-TV-Z]{26})$")
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def new_id(prefix: str) -> str:
    return new_ids(prefix, 1)[0]


def new_ids(prefix: str, n: int) -> list[str]:
    """``n`` ids in ascending order, minted at once (a 1,000-event usage batch takes one lock)."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        if rand + n > 1 << 80:  # the random part would wrap: take the next millisecond instead
            ms, rand = ms + 1, int.from_bytes(os.urandom(9), "big")
        _last_ms, _last_rand = ms, rand + n - 1
    base = (ms << 80) | rand
    if n < 1024:
        # Only the last two digits (20 bits) change from one id to the next, unless adding carries
        # into the digits above them: spell those once for each value they take.
        ids = []
        heads: dict[int, str] = {}
        for value in range(base, base + n):
            high = value >> 20
            head = heads.get(high)
            if head is None:
                head = heads[high] = f"{prefix}_{encode(value)[:-4]}"
            ids.append(head + _PAIRS[(value >> 10) & 1023] + _PAIRS[value & 1023])
        return ids
    return [f"{prefix}_{encode(base + i)}" for i in range(n)]


def encode(value: int) -> str:
    """The 26 Crockford base32 digits of a 128-bit ``value``, most significant first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def is_id(value: str, prefix: str | None = None) -> bool:
    match = _PATTERN.match(value)
    return bool(match) and (prefix is None or match.group(1) == prefix)
