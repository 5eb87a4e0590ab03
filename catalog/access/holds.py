"""Holds: the reasons a licence is suspended, each lifted only by the cause that set it.

A live licence is ``suspended`` exactly while it has at least one hold. Operator and provider
suspensions, billing's ``non_payment``, the ethics sweep and block-lists all come through here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit, outbox
from catalog.access import repository as repo
from catalog.access import tell
from catalog.access.models import Licence, LicenceHold
from catalog.db import utcnow

INHERITED = ("operator", "provider")


async def add_hold(session: AsyncSession, actor: Any, licence: Licence, kind: str, source: str, reason: str) -> bool:
    """Hold the licence for this cause; a live licence becomes suspended. False if already held so."""
    added = await repo.add_hold(
        session,
        LicenceHold(
            licence_id=licence.id,
            kind=kind,
            source=source,
            reason=reason,
            set_by=getattr(actor, "user_id", None),
            set_at=utcnow(),
        ),
    )
    if added:
        if await repo.set_status(session, licence.id, ("active",), "suspended", updated_at=utcnow()):
            # Billing pauses a subscription's collection while its licence is suspended.
            outbox.emit(session, "licence.suspended", {"licence_id": licence.id})
            await session.refresh(licence)
            await tell.licence(session, "licence.suspended", licence, {"hold": kind, "reason": reason})
        await session.refresh(licence)
        await audit_licence(session, actor, "licence.held", licence, {"kind": kind, "source": source, "reason": reason})
    return added


async def lift_hold(session: AsyncSession, actor: Any, licence: Licence, kind: str, source: str, reason: str) -> bool:
    """Lift only this cause's hold; the licence is active again when no hold remains."""
    lifted = await repo.lift_hold(session, licence.id, kind, source)
    if lifted:
        if not await repo.has_holds(session, licence.id) and await repo.set_status(
            session, licence.id, ("suspended",), "active", updated_at=utcnow()
        ):
            outbox.emit(session, "licence.reinstated", {"licence_id": licence.id})
            await session.refresh(licence)
            await tell.licence(session, "licence.resumed", licence, {"hold_lifted": kind})
        await session.refresh(licence)
        await audit_licence(
            session, actor, "licence.hold_lifted", licence, {"kind": kind, "source": source, "reason": reason}
        )
    return lifted


async def inherit_holds(session: AsyncSession, renewed: Licence, renewal: Licence) -> None:
    """A renewal is held for what holds the licence it renews by a party's decision (the operator's,
    the provider's); billing's, the ethics sweep's and block-lists' holds follow their own causes."""
    for hold in (await repo.holds(session, [renewed.id]))[renewed.id]:
        if hold.kind in INHERITED:
            reason = hold.reason or f"held on {renewed.id}"
            await add_hold(session, None, renewal, hold.kind, hold.source, reason)


async def audit_licence(session: AsyncSession, actor: Any, action: str, licence: Licence, data: dict[str, Any]) -> None:
    orgs = await repo.party_org_ids(session, licence.id)
    audit.record(session, actor, action, "licence", licence.id, orgs, {"status": licence.status, **data})
