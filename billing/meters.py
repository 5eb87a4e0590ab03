"""Metered plans: our usage, billed through Stripe Billing Meters — exactly once.

One Stripe meter per (product, dimension). For each metered licence with a subscription, the
billable units of a billing period are ``ceil(max(0, used − included) / unit)``, counted from our
usage events up to the last complete hour. What has not been reported yet becomes one meter event
whose identifier is derived from (licence, dimension, period, cumulative units), queued through our
outbox in the same transaction that records it as reported — so a rerun finds nothing new, and a
redelivery carries the same identifier. Our outbox, not Stripe's 24-hour identifier window, is what
prevents doubles. Usage for a period that ended more than 30 days ago (late reports) is billed as
an invoice item instead, since meter events cannot be backdated that far.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing import money
from billing import repository as repo
from billing.gateway import Gateway
from billing.models import Subscription
from catalog import outbox
from catalog.access.licences import add_months
from catalog.access.models import Licence
from catalog.db import read_transaction, utcnow, write_transaction
from catalog.metering import repository as metering_repo
from catalog.products import repository as products_repo

METER_EVENT = "meter.report"
BACKDATE_LIMIT = timedelta(days=30)
PERIODS_LOOKED_BACK = 3


async def meter_for(
    sessions: async_sessionmaker[AsyncSession], gateway: Gateway, product_id: str, dimension: str
) -> tuple[str, str]:
    """The product's Stripe meter for ``dimension`` (id, event name), made at Stripe the first time:
    looked up, made with no transaction open (key ``meter:{product}:{dimension}``), then kept."""
    async with read_transaction(sessions) as session:
        meter = await repo.meter(session, product_id, dimension)
        if meter is not None:
            return meter.meter_id, meter.event_name
    meter_id, event_name = await gateway.meter(product_id, dimension)
    async with write_transaction(sessions) as session:
        await repo.add_meter(session, product_id, dimension, meter_id, event_name)
    return meter_id, event_name


def billable(used: int, included: int, unit: int) -> int:
    return -(-max(0, used - included) // max(1, unit))  # a ceiling in integers: usage counts pass 2**53


def _periods(anchor: date, interval: str, now: datetime) -> list[tuple[date, date]]:
    step = 12 if interval == "year" else 1
    periods, start, n = [], anchor, 0
    while start <= now.date():
        end = add_months(anchor, (n + 1) * step)
        periods.append((start, end))
        n += 1
        start = end
    return periods[-PERIODS_LOOKED_BACK:]


async def queue_reports(session: AsyncSession, licence: Licence, subscription: Subscription, now: datetime) -> int:
    """Queue what is billable and not yet reported for one licence; answers how many reports."""
    plan = await products_repo.plan(session, licence.plan_id)
    if plan is None or plan.kind != "metered":
        return 0
    complete = now.replace(minute=0, second=0, microsecond=0)  # only whole hours are reported
    queued = 0
    for start, end in _periods(subscription.period_anchor, plan.interval or "month", now):
        until = min(complete, datetime.combine(end, time.min, tzinfo=UTC))
        used = await metering_repo.period_usage(
            session, licence.id, datetime.combine(start, time.min, tzinfo=UTC), until
        )
        for dimension in sorted(plan.unit_prices):
            target = billable(
                used.get(dimension, 0), int(plan.included.get(dimension, 0)), int(plan.units.get(dimension, 1))
            )
            reported = await repo.reported_units(session, licence.id, dimension, start)
            if target <= reported:
                continue
            identifier = f"lode:{licence.id}:{dimension}:{start.isoformat()}:{target}"
            backdated = datetime.combine(end, time.min, tzinfo=UTC) < now - BACKDATE_LIMIT
            timestamp = min(until, datetime.combine(end, time.min, tzinfo=UTC)) - timedelta(seconds=1)
            if not await repo.advance_reported(session, licence.id, dimension, start, reported, target):
                continue  # another worker reported this period just now
            if await outbox.emit_once(
                session,
                METER_EVENT,
                {
                    "licence_id": licence.id,
                    "product_id": licence.product_id,
                    "dimension": dimension,
                    "customer": subscription.customer_id,
                    "units": target - reported,
                    "identifier": identifier,
                    "timestamp": int(timestamp.timestamp()),
                    "invoice_item": backdated,
                    # Tax included, as in the subscription's metered price: invoice.paid takes it out.
                    "unit_amount": money.with_tax(int(plan.unit_prices[dimension]), plan.tax_bps),
                    "currency": plan.currency,
                },
                dedupe_key=identifier,
            ):
                queued += 1
    return queued


async def report_due(ctx: outbox.JobContext) -> None:
    """Periodic (hourly): queue meter reports for every metered licence with a subscription."""
    async with write_transaction(ctx.sessions) as session:
        rows = (
            await session.execute(
                select(Licence, Subscription)
                .join(Subscription, Subscription.licence_id == Licence.id)
                .where(Subscription.status != "canceled")
            )
        ).all()
        for licence, subscription in rows:
            await queue_reports(session, licence, subscription, utcnow())


async def on_usage(ctx: outbox.JobContext, payload: dict) -> None:
    """``usage.recorded``: report the licences concerned without waiting for the hourly run."""
    async with write_transaction(ctx.sessions) as session:
        for licence_id in payload.get("licence_ids", []):
            subscription = await repo.subscription(session, licence_id)
            licence = await session.get(Licence, licence_id)
            if subscription is not None and licence is not None and subscription.status != "canceled":
                await queue_reports(session, licence, subscription, utcnow())


async def send(ctx: outbox.JobContext, payload: dict) -> None:
    """Send one queued report: a meter event, or an invoice item for usage too old to meter."""
    gateway: Gateway = ctx.services["gateway"]
    if payload["invoice_item"]:
        await gateway.invoice_item(
            payload["customer"],
            payload["currency"].lower(),
            payload["units"] * payload["unit_amount"],
            f"Late usage: {payload['units']} × {payload['dimension']}",
            {"lode_licence_id": payload["licence_id"]},
            key=payload["identifier"],
        )
        return
    _, event_name = await meter_for(ctx.sessions, gateway, payload["product_id"], payload["dimension"])
    await gateway.meter_event(
        event_name, payload["customer"], payload["units"], payload["identifier"], payload["timestamp"]
    )
