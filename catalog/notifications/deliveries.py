"""Webhook deliveries in the database: claimed under a lease, each try recorded in its own short
transaction, retried with exponential backoff over three days, the endpoint disabled when it has
failed throughout.

Backoff: 5 s after the first failure, four times longer after each (20 s, 80 s, 5 min, 21 min,
85 min, 5.7 h), then every 12 h, each ±10 % so a recovering receiver is not hit by every retry
at once; a delivery whose first try is three days old when it fails again is ``failed``. If the
endpoint has had no success since that delivery's first try, it has failed for three days straight:
it is disabled and its organisation told (``webhook.disabled``, to its feed and its other
endpoints). Re-enabling it (PATCH) lets its pending deliveries go again.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog.db import write_transaction
from catalog.notifications import events
from catalog.notifications.models import Notice, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from catalog.notifications.signing import open_secret

RETRY_SPAN = timedelta(days=3)
FIRST_RETRY = timedelta(seconds=5)
LONGEST_WAIT = timedelta(hours=12)


class Claimed(msgspec.Struct, kw_only=True):
    """What one try needs, read in the claim's transaction so the try holds no connection."""

    delivery_id: str
    endpoint_id: str
    org_id: str
    lock_token: str
    attempt: int
    url: str
    secrets: list[str]
    msg_id: str
    body: bytes


class Outcome(msgspec.Struct, kw_only=True):
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff(attempts: int) -> timedelta:
    wait = min(FIRST_RETRY * 4 ** max(attempts - 1, 0), LONGEST_WAIT)
    return wait * (0.9 + random.random() / 5)


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    *,
    limit: int,
    busy: Iterable[str],
    lease: timedelta,
    at: datetime,
    pepper: bytes,
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries, at most one per endpoint and none to an endpoint in
    ``busy`` (one this worker is calling already), so a slow receiver holds one slot, not all."""
    busy = set(busy)
    token = secrets.token_hex(8)
    async with write_transaction(sessions) as session:
        due = and_(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= at,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < at),
        )
        # The oldest due delivery of each endpoint not being called, oldest first: however long one
        # endpoint's backlog, every other endpoint's next delivery is among the candidates.
        first = (
            select(
                WebhookDelivery.id,
                WebhookDelivery.next_attempt_at,
                func.row_number()
                .over(
                    partition_by=WebhookDelivery.endpoint_id,
                    order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id),
                )
                .label("n"),
            )
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(due, WebhookEndpoint.enabled.is_(True))
        )
        if busy:
            first = first.where(WebhookDelivery.endpoint_id.notin_(busy))
        first = first.subquery()
        candidates = select(first.c.id).where(first.c.n == 1).order_by(first.c.next_attempt_at, first.c.id).limit(limit)
        # Locked apart from the window (PostgreSQL locks no rows of a windowed query); a row another
        # worker claimed meanwhile is skipped, or no longer due once its lock is ours.
        locked = (
            select(WebhookDelivery.id)
            .where(WebhookDelivery.id.in_(candidates.scalar_subquery()), due)
            .with_for_update(skip_locked=True)
        )
        ids = list((await session.execute(locked)).scalars())
        if not ids:
            return []
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(locked_until=at + lease, lock_token=token, attempts=WebhookDelivery.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        rows = await session.execute(
            select(WebhookDelivery, WebhookEndpoint, Notice)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .join(Notice, Notice.id == WebhookDelivery.notice_id)
            .where(WebhookDelivery.id.in_(ids))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        )
        return [
            Claimed(
                delivery_id=delivery.id,
                endpoint_id=endpoint.id,
                org_id=endpoint.org_id,
                lock_token=token,
                attempt=delivery.attempts,
                url=endpoint.url,
                secrets=secrets_in_force(endpoint, pepper, at),
                msg_id=notice.id,
                body=events.body(notice),
            )
            for delivery, endpoint, notice in rows
        ]


def secrets_in_force(endpoint: WebhookEndpoint, pepper: bytes, at: datetime) -> list[str]:
    """The secrets to sign with now; none if they cannot be unsealed (the pepper changed since they
    were sealed): that endpoint's tries then fail, and no other endpoint's claim is held up."""
    sealed = [(endpoint.secret_sealed, endpoint.secret_nonce)]
    if (
        endpoint.previous_secret_sealed is not None
        and endpoint.previous_secret_nonce is not None
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > at
    ):
        sealed.append((endpoint.previous_secret_sealed, endpoint.previous_secret_nonce))
    try:
        return [open_secret(pepper, secret, nonce) for secret, nonce in sealed]
    except UnicodeDecodeError:
        return []


async def record(
    sessions: async_sessionmaker[AsyncSession], claimed: Claimed, outcome: Outcome, at: datetime
) -> str | None:
    """Record one try and move the delivery on; its new status, or None if this worker's lease was
    lost meanwhile (the worker holding it now records its own try instead)."""
    async with write_transaction(sessions) as session:
        delivery = (
            await session.execute(
                select(WebhookDelivery)
                .where(WebhookDelivery.id == claimed.delivery_id, WebhookDelivery.lock_token == claimed.lock_token)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if delivery is None or delivery.status != "pending":
            return None
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                attempt=claimed.attempt,
                attempted_at=at,
                status_code=outcome.status_code,
                duration_ms=outcome.duration_ms,
                error=outcome.error,
            )
        )
        delivery.first_attempt_at = delivery.first_attempt_at or at
        delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
        delivery.locked_until, delivery.lock_token = None, None
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
        assert endpoint is not None
        if outcome.ok:
            delivery.status, delivery.delivered_at = "delivered", at
            endpoint.last_success_at = max(endpoint.last_success_at or at, at)
        elif at - delivery.first_attempt_at >= RETRY_SPAN:
            delivery.status = "failed"
            if endpoint.enabled and (
                endpoint.last_success_at is None or endpoint.last_success_at < delivery.first_attempt_at
            ):
                await _disable(session, endpoint, at)
        else:
            delivery.next_attempt_at = at + backoff(delivery.attempts)
        return delivery.status


async def _disable(session: AsyncSession, endpoint: WebhookEndpoint, at: datetime) -> None:
    endpoint.enabled = False
    endpoint.disabled_at = at
    endpoint.disabled_reason = "every delivery failed for three days"
    await session.flush()
    await events.publish(
        session,
        "webhook.disabled",
        ("webhook_endpoint", endpoint.id),
        [endpoint.org_id],
        {"endpoint_id": endpoint.id, "url": endpoint.url, "reason": endpoint.disabled_reason},
        skip_endpoint=endpoint.id,
    )


async def redeliver(session: AsyncSession, delivery: WebhookDelivery, at: datetime) -> None:
    """Send again now, whatever its status: a fresh three days of retries, the same ``webhook-id``."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id)
        .values(
            status="pending",
            next_attempt_at=at,
            first_attempt_at=None,
            locked_until=None,
            lock_token=None,
            delivered_at=None,
        )
        .execution_options(synchronize_session=False)
    )


async def restart_pending(session: AsyncSession, endpoint_id: str, at: datetime) -> None:
    """An endpoint enabled again: its pending deliveries are due now, with three days of retries ahead."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(next_attempt_at=at, first_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
