"""What circulation tells the parties: application and licence events, and expiry reminders.

Each event goes to the organisations entitled to see its subject through the API, and no one
else: an application to its applicant, the product's owner and — for the tracks it reviews — the
operator (co-providers in the revenue share do not see applications); a licence to its parties
(consumer, owner, every provider in its pinned revenue share).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import policy
from catalog.access import repository as repo
from catalog.access.models import Application, Licence
from catalog.notifications import events as notices
from catalog.notifications.models import Notice
from catalog.orgs import repository as orgs_repo
from catalog.products.models import Product

REMINDERS = (1, 7, 30)  # days before a licence's last day


async def application(
    session: AsyncSession, type: str, app: Application, product: Product, data: dict[str, Any] | None = None
) -> None:
    orgs = [app.consumer_org_id, product.owner_org_id]
    if any(track != "provider" for track in policy.rule(product.grade).tracks):
        orgs.append(await orgs_repo.operator_id(session))
    body = {"application_id": app.id, "product_id": product.id, "status": app.status, **(data or {})}
    await notices.publish(session, type, ("application", app.id), orgs, body)


async def licence(
    session: AsyncSession,
    type: str,
    lic: Licence,
    data: dict[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
) -> None:
    body = {
        "licence_id": lic.id,
        "product_id": lic.product_id,
        "consumer_org_id": lic.consumer_org_id,
        "status": lic.status,
        "ends_on": lic.ends_on,
        **(data or {}),
    }
    parties = await repo.party_org_ids(session, lic.id)
    await notices.publish(session, type, ("licence", lic.id), parties, body, dedupe_key=dedupe_key)


def reminder_due(ends_on: date, today: date) -> int | None:
    """The reminder a licence ending on ``ends_on`` is due today: the smallest of 1, 7 and 30 days
    that its days left do not exceed (10 days left: the 30-day one, with ``days_left`` 10; a later
    reminder is never followed by an earlier one it skipped)."""
    left = (ends_on - today).days
    if left < 0:
        return None
    return next((days for days in REMINDERS if left <= days), None)


def reminder_key(lic: Licence, days: int) -> str:
    return f"licence.expiring:{lic.id}:{days}"


async def expiring(session: AsyncSession, licences: list[Licence], today: date) -> int:
    """Tell each licence's parties its reminder due today, once; how many were told."""
    due = {lic.id: days for lic in licences if (days := reminder_due(lic.ends_on, today)) is not None}
    keys = {lic.id: reminder_key(lic, due[lic.id]) for lic in licences if lic.id in due}
    if not keys:
        return 0
    told = set((await session.execute(select(Notice.dedupe_key).where(Notice.dedupe_key.in_(keys.values())))).scalars())
    sent = 0
    for lic in licences:
        key = keys.get(lic.id)
        if key is None or key in told:
            continue
        left = (lic.ends_on - today).days
        await licence(session, "licence.expiring", lic, {"days_left": left, "reminder": due[lic.id]}, dedupe_key=key)
        sent += 1
    return sent


def horizon(today: date) -> date:
    return today + timedelta(days=max(REMINDERS))
