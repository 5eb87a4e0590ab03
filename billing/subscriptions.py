"""Keeping Stripe subscriptions in step with licences (outbox handlers for circulation's events).

A revoked or expired licence cancels its subscription; a suspended one pauses collection (its
invoices are voided while suspended); reinstating resumes it. Idempotency keys carry the licence and
the transition, so a redelivered event changes nothing at Stripe.
"""

from __future__ import annotations

from billing import repository as repo
from billing.gateway import Gateway
from catalog import outbox
from catalog.db import read_transaction, write_transaction


async def _subscription(ctx: outbox.JobContext, licence_id: str) -> tuple[str, str] | None:
    async with read_transaction(ctx.sessions) as session:
        sub = await repo.subscription(session, licence_id)
        return (sub.subscription_id, sub.status) if sub else None


async def on_ended(ctx: outbox.JobContext, payload: dict) -> None:
    found = await _subscription(ctx, payload["licence_id"])
    if found is None or found[1] == "canceled":
        return
    gateway: Gateway = ctx.services["gateway"]
    await gateway.cancel_subscription(found[0], key=f"cancel:{payload['licence_id']}")
    async with write_transaction(ctx.sessions) as session:
        sub = await repo.subscription(session, payload["licence_id"])
        if sub is not None:
            sub.status = "canceled"


async def _pause(ctx: outbox.JobContext, licence_id: str, paused: bool, event_id: str | None) -> None:
    found = await _subscription(ctx, licence_id)
    if found is None or found[1] == "canceled":
        return
    gateway: Gateway = ctx.services["gateway"]
    await gateway.pause_subscription(found[0], paused, key=f"{'pause' if paused else 'resume'}:{event_id}")
    async with write_transaction(ctx.sessions) as session:
        sub = await repo.subscription(session, licence_id)
        if sub is not None and sub.status != "canceled":
            sub.status = "paused" if paused else "active"


async def on_suspended(ctx: outbox.JobContext, payload: dict) -> None:
    await _pause(ctx, payload["licence_id"], True, ctx.event_id)


async def on_reinstated(ctx: outbox.JobContext, payload: dict) -> None:
    await _pause(ctx, payload["licence_id"], False, ctx.event_id)
