"""Row answers in pages: where a page stops, and the cursor that goes on from there.

The order. A rows answer is ordered by the query's ``order_by`` (nulls last), then by the hidden
record key (``RECORD_KEY``: 64 random bits per row, drawn once at publish and stored in the
release's Parquet file, see ``catalog/storage.py``). A published file never changes, so that is one
fixed order of its rows whatever the query: the rows after a page's last row are the same however
often, and by whichever API worker, they are asked for. Record keys are distinct in practice (two
of ten million rows share one with probability ≈ 3·10⁻⁶); were two equal, a page cut exactly
between them would skip the second.

The next page is every row strictly after the previous page's last row in that order — a keyset,
not an offset, so a deep page costs what the first does (``compiler.rows_sql`` writes the SQL).
Each page is a query of its own: reserved, metered (``queries``, ``rows_returned``) and audited.

The cursor is opaque: base64url of a msgpack payload followed by a 16-byte HMAC-SHA-256 tag under
a key derived from the server's pepper. The payload names the licence, the release and a digest
of the query (every field but ``cursor``, ``limit`` and ``release``: a page may be larger or
smaller than the last), so a cursor continues only the query it came from — another licence,
release or query is 400 ``cursor_mismatch``. It holds the last row's ``order_by`` values, which
the client has seen, and its record key, which a consumer must never learn (cell-key perturbation
draws noise from record keys): the key travels XORed with HMAC-SHA-256(key, nonce) for a random
nonce per cursor. Any change to a cursor breaks the tag: 400 ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import date
from typing import Any

import msgspec

from catalog.delivery.schemas import QueryRequest
from catalog.errors import DomainError, FieldError
from catalog.products.dictionary import fields as fields_of

VERSION = 1
TAG_BYTES = 16
NONCE_BYTES = 12


class Position(msgspec.Struct, array_like=True, frozen=True):
    """Where a page stopped: the row the next page starts after."""

    version: int
    licence_id: str
    release_id: str
    query: bytes  # query_digest of the query the page answered
    values: list[Any]  # the last row's order_by values
    nonce: bytes
    masked_key: bytes  # its record key XORed with the pad of ``nonce``


def cursor_key(pepper: bytes) -> bytes:
    """The cursor's signing key: the pepper's, but never the key API keys are hashed with."""
    return hmac.new(pepper, b"lode query cursor v1", hashlib.sha256).digest()


def query_digest(q: QueryRequest) -> bytes:
    """What makes two requests the same query: everything but where it starts and how much it takes."""
    same = msgspec.structs.replace(q, cursor=None, limit=None, release=None)
    return hashlib.sha256(msgspec.json.encode(same)).digest()[:16]


def encode(key: bytes, licence_id: str, release_id: str, q: QueryRequest, last: list[Any]) -> str:
    """The cursor after ``last``: its ``order_by`` values, then its record key (``rows_sql``'s keyset)."""
    *values, record_key = last
    nonce = secrets.token_bytes(NONCE_BYTES)
    masked = (record_key ^ _pad(key, nonce)).to_bytes(8, "big")
    position = Position(VERSION, licence_id, release_id, query_digest(q), values, nonce, masked)
    payload = msgspec.msgpack.encode(position)
    return base64.urlsafe_b64encode(payload + _tag(key, payload)).rstrip(b"=").decode()


def decode(key: bytes, cursor: str) -> Position:
    """The position a cursor names, if this server made it and nobody changed it; else 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if len(raw) <= TAG_BYTES or not hmac.compare_digest(tag, _tag(key, payload)):
        raise _invalid("is not a cursor this API returned, or was changed")
    try:
        position = msgspec.msgpack.decode(payload, type=Position)
    except msgspec.DecodeError:  # signed by us, so only an older format can get here
        raise _invalid("comes from an older version of this API; start the query again") from None
    if position.version != VERSION or len(position.masked_key) != 8:
        raise _invalid("comes from an older version of this API; start the query again")
    return position


def continue_after(
    key: bytes, position: Position, licence_id: str, q: QueryRequest, table: dict[str, Any]
) -> list[Any]:
    """The keyset ``rows_sql`` continues after, once the cursor is shown to belong to this licence
    and this query (its release is the caller's to check); the record key unmasked, and each value
    in its field's Python type (msgpack carries a date as its ISO text)."""
    if position.licence_id != licence_id:
        raise mismatch("was returned for another licence")
    if not hmac.compare_digest(position.query, query_digest(q)):
        raise mismatch("continues another query: send the same table, select, where and order_by")
    fields = fields_of(table)
    if len(position.values) != len(q.order_by):
        raise mismatch("continues another query: send the same table, select, where and order_by")
    values = [
        date.fromisoformat(v) if isinstance(v, str) and fields[o.field]["type"] == "date" else v
        for o, v in zip(q.order_by, position.values, strict=True)
    ]
    record_key = int.from_bytes(position.masked_key, "big") ^ _pad(key, position.nonce)
    return [*values, record_key]


def mismatch(why: str) -> DomainError:
    return DomainError(
        f"cursor: this cursor {why}.", code="cursor_mismatch", status=400, errors=[FieldError("cursor", why)]
    )


def _invalid(why: str) -> DomainError:
    return DomainError(
        f"cursor: this cursor {why}.", code="invalid_cursor", status=400, errors=[FieldError("cursor", why)]
    )


def _pad(key: bytes, nonce: bytes) -> int:
    return int.from_bytes(hmac.new(key, b"pad" + nonce, hashlib.sha256).digest()[:8], "big")


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, b"tag" + payload, hashlib.sha256).digest()[:TAG_BYTES]
