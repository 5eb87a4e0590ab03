"""The licences' periodic sweep: what time does to them.

Ended terms expire (a paid-up subscription runs on instead: it renews itself while paid), licences
unpaid for 30 days are cancelled, lapsed ethics approvals are held, and the parties of every live
licence nearing its end are reminded 30, 7 and 1 days before it — each reminder once (``tell.py``).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import outbox, policy
from catalog.access import repository as repo
from catalog.access import tell
from catalog.access.holds import add_hold, audit_licence
from catalog.access.licences import OPEN, add_months, term_months, unlink_renewal
from catalog.access.models import Licence
from catalog.db import utcnow, write_transaction
from catalog.outbox import JobContext
from catalog.products import repository as products_repo


async def sweep(ctx: JobContext) -> None:
    """Periodic: expire ended terms, cancel licences unpaid for 30 days, hold lapsed ethics approvals."""
    async with write_transaction(ctx.sessions) as session:
        now = utcnow()
        due = await repo.licences_due(session, now.date(), now)
        for licence in due["ended"]:
            if await _extend_subscription(session, licence, now.date()):
                continue
            if await repo.set_status(session, licence.id, OPEN, "expired", ended_at=now, end_reason="term ended"):
                await audit_licence(session, None, "licence.expired", licence, {"ends_on": licence.ends_on})
                outbox.emit(session, "licence.expired", {"licence_id": licence.id})
                await session.refresh(licence)
                await tell.licence(session, "licence.expired", licence)
        for licence in due["unpaid"]:
            if await repo.set_status(
                session, licence.id, ("pending_payment",), "cancelled", ended_at=now, end_reason="unpaid after 30 days"
            ):
                renewed = unlink_renewal(licence)
                await audit_licence(
                    session, None, "licence.cancelled", licence, {"reason": "unpaid", "renewed": renewed}
                )
        for licence in due["lapsed"]:
            product = await products_repo.get(session, licence.product_id)
            if product is not None and policy.rule(product.grade).ethics_required:
                await add_hold(session, None, licence, "ethics_expired", "ethics", "the ethics approval expired")
        today = now.date()
        await tell.expiring(session, await repo.licences_ending(session, today, tell.horizon(today)), today)


async def _extend_subscription(session: AsyncSession, licence: Licence, today: date) -> bool:
    """A subscription renews itself while paid: an active licence with no hold (billing holds one
    whose invoice is unpaid) runs on to the first end of a term, counted from its start, that
    reaches today. False for anything else, which then expires."""
    if licence.status != "active":
        return False
    plan = await products_repo.plan(session, licence.plan_id)
    app = await repo.application(session, licence.application_id)
    if plan is None or plan.kind != "subscription" or app is None:
        return False
    months, terms = term_months(app, plan), 1
    ends_on = licence.ends_on
    while ends_on <= licence.ends_on or ends_on < today:
        terms += 1
        ends_on = add_months(licence.starts_on, months * terms) - timedelta(days=1)
    before = licence.ends_on
    if not await repo.extend_term(session, licence.id, before, ends_on):
        return False
    await session.refresh(licence)
    await audit_licence(session, None, "licence.extended", licence, {"from": before, "to": ends_on})
    return True
