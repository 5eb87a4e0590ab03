"""The Idempotency-Key store.

A request carrying ``Idempotency-Key`` first claims the key for its organisation in a short
transaction of its own (so a concurrent duplicate sees the claim at once and gets 409
``idempotency_in_progress`` with ``Retry-After``). The claim must come before the request's own
transaction exists — on SQLite that transaction may hold the write lock the claim needs, and on
either database a claim made inside it would only be seen once it commits — so ``idempotent``
refuses (a programming error, 500) to claim on a session whose transaction has begun.

The handler's work and the stored response are then written in the request's own transaction:
either both are committed or neither, so a replay can never return a response whose effects were
rolled back. A handler that commits its own phases instead (billing's checkout waits on Stripe
between short transactions, STYLE rule 3's exception) passes no session: its response is kept in a
short transaction after it, which is safe because such work is itself idempotent (deterministic
Stripe keys, one open checkout per licence) — a crash in between only means a retry does it again.
If the handler fails, the claim is released and the client may retry; if the process dies
mid-request, the claim's lease expires.

Kept 24 hours per (organisation, key). The fingerprint covers method, path and body, so the same
key with another request is refused with 422 ``idempotency_key_reused``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.params import HeaderParameter
from sqlalchemy import Integer, String, Text, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, utcnow, write_transaction
from catalog.errors import Conflict, Unprocessable, ValidationFailed

RETENTION = timedelta(hours=24)
LEASE = timedelta(seconds=60)
HEADER = "Idempotency-Key"
RETRY_AFTER_S = 1  # most requests finish within a second; a client asked to wait longer would idle

# Declared by each route that takes it, so the OpenAPI document shows it; ``idempotent`` reads it.
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name=HEADER,
        # Its length (1–255) is checked by ``idempotent``, which names the header in the refusal.
        description="Makes the request safe to retry (1–255 characters): the first response is kept 24 h and replayed.",
    ),
]


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    response_headers: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    locked_until: Mapped[datetime | None]


class ClaimInsideTransaction(RuntimeError):
    """A programming error: a route began its transaction before claiming its Idempotency-Key."""


async def idempotent(
    request: Request[Any, Any, Any],
    org_id: str,
    session: AsyncSession | None,
    run: Callable[[], Awaitable[Response[Any]]],
) -> Response[Any]:
    """Run ``run`` at most once per (organisation, Idempotency-Key); replay its response after.

    ``session`` is the request's transaction, not begun yet; None when ``run`` commits its own."""
    if session is not None and session.in_transaction():  # checked with or without a key: a bug either way
        raise ClaimInsideTransaction(
            f"{request.method} {request.url.path} began its transaction before its Idempotency-Key was claimed."
        )
    key = request.headers.get(HEADER)
    if key is None:
        return await run()
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ValidationFailed.field(HEADER, "must be 1 to 255 printable characters")
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + await request.body()
    ).hexdigest()
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    replay = await _claim(sessions, org_id, key, fingerprint)
    if replay is not None:
        return replay
    try:
        response = await run()
    except BaseException:
        if session is not None:
            # End the request's transaction first: on SQLite it holds the write lock the release needs.
            await session.rollback()
        await _release(sessions, org_id, key)
        raise
    if session is not None:
        await _complete(session, org_id, key, response)
    else:
        async with write_transaction(sessions) as own:
            await _complete(own, org_id, key, response)
    return response


async def _complete(session: AsyncSession, org_id: str, key: str, response: Response[Any]) -> None:
    body = msgspec.json.encode(response.content)
    headers = {k: v for k, v in response.headers.items() if k.lower() == "location"}
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.org_id == org_id, IdempotencyRecord.key == key)
        .values(
            status="completed",
            response_status=response.status_code,
            response_body=body.decode(),
            response_headers=headers,
            locked_until=None,
        )
        .execution_options(synchronize_session=False)
    )


async def _claim(
    sessions: async_sessionmaker[AsyncSession], org_id: str, key: str, fingerprint: str
) -> Response[Any] | None:
    now = utcnow()
    for _ in range(2):
        try:
            async with write_transaction(sessions) as s:
                await s.execute(
                    delete(IdempotencyRecord).where(
                        IdempotencyRecord.org_id == org_id,
                        IdempotencyRecord.key == key,
                        IdempotencyRecord.expires_at < now,
                    )
                )
                s.add(
                    IdempotencyRecord(
                        org_id=org_id,
                        key=key,
                        fingerprint=fingerprint,
                        status="in_progress",
                        created_at=now,
                        expires_at=now + RETENTION,
                        locked_until=now + LEASE,
                    )
                )
            return None
        except IntegrityError:
            pass
        async with write_transaction(sessions) as s:
            existing = (
                await s.execute(
                    select(IdempotencyRecord).where(IdempotencyRecord.org_id == org_id, IdempotencyRecord.key == key)
                )
            ).scalar_one_or_none()
            if existing is None:
                continue  # released between our insert and this read: claim again
            if existing.fingerprint != fingerprint:
                raise Unprocessable(
                    "This Idempotency-Key was used with a different request.", code="idempotency_key_reused"
                )
            if existing.status == "completed":
                return Response(
                    content=(existing.response_body or "").encode(),
                    status_code=existing.response_status or 200,
                    headers={**(existing.response_headers or {}), "Idempotent-Replayed": "true"},
                    media_type="application/json",
                )
            taken = await s.execute(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.org_id == org_id,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.locked_until < now,
                )
                .values(locked_until=now + LEASE)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount == 1:
                return None  # the earlier attempt died mid-request; this one carries on
            raise _in_progress()
    raise _in_progress()


def _in_progress() -> Conflict:
    return Conflict(
        "A request with this Idempotency-Key is still in progress; retry once it has finished.",
        code="idempotency_in_progress",
        retry_after=RETRY_AFTER_S,
    )


async def _release(sessions: async_sessionmaker[AsyncSession], org_id: str, key: str) -> None:
    async with write_transaction(sessions) as s:
        await s.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.org_id == org_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.status == "in_progress",
            )
        )
