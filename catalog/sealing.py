"""Sealing a short secret at rest under a key the database does not hold.

XOR with an HMAC-SHA-256 keystream keyed by ``key``: each key seals exactly one secret, so the
stream never repeats. Callers derive that key from something kept elsewhere — a browser session's
cookie token (``web/sessions.py``), or the server's pepper and a random nonce (webhook secrets).
"""

from __future__ import annotations

import hashlib
import hmac


def _keystream(key: str, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(key.encode(), b"lode web seal %d" % counter, hashlib.sha256).digest()
        counter += 1
    return out[:length]


def seal(key: str, secret: str) -> bytes:
    data = secret.encode()
    return bytes(a ^ b for a, b in zip(data, _keystream(key, len(data)), strict=True))


def unseal(key: str, sealed: bytes) -> str:
    return bytes(a ^ b for a, b in zip(sealed, _keystream(key, len(sealed)), strict=True)).decode()
