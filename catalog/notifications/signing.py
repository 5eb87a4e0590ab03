"""Standard Webhooks signatures, and the endpoint secrets behind them.

A secret is ``whsec_`` + base64 of 32 random bytes; the HMAC key is those bytes. The signature is
``v1,`` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")); while a rotated-out
secret is still valid, both signatures go in the header, space-separated, so a receiver that has not
switched yet still verifies. The timestamp is the attempt's, so a retry days later is not refused as
stale by a receiver's tolerance window, while its ``webhook-id`` stays the event's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from catalog.sealing import seal, unseal

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def seal_secret(pepper: bytes, secret: str) -> tuple[bytes, str]:
    """The secret sealed under a key derived from the pepper and a fresh nonce, and that nonce."""
    nonce = secrets.token_hex(16)
    return seal(_key(pepper, nonce), secret), nonce


def open_secret(pepper: bytes, sealed: bytes, nonce: str) -> str:
    return unseal(_key(pepper, nonce), sealed)


def _key(pepper: bytes, nonce: str) -> str:
    return hmac.new(pepper, b"lode webhook secret " + nonce.encode(), hashlib.sha256).hexdigest()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_in_force: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "Lode-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_in_force),
    }
