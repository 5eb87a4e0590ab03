"""Block-lists: a provider's (for its products) and the platform's (the operator's, for all).

A blocked organisation is refused at eligibility and its live licences concerned by the list get an
``org_blocked`` hold whose source is the list's organisation; un-verifying an organisation does the
same with the source ``verification``. Unblocking lifts only the hold that list set.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit
from catalog.access import repository as repo
from catalog.access.holds import add_hold, lift_hold
from catalog.access.models import BlocklistEntry
from catalog.access.schemas import BlocklistCreate, BlocklistEntryRead, BlocklistRead
from catalog.auth import Principal, ensure_org_admin, ensure_sees_org
from catalog.db import utcnow
from catalog.errors import Conflict, Forbidden, NotFound, ValidationFailed
from catalog.orgs import repository as orgs_repo
from catalog.pagination import PageRequest

HELD = ("pending_acceptance", "pending_payment", "active", "suspended")
VERIFICATION = "verification"


async def block(session: AsyncSession, actor: Any, list_org_id: str, blocked_org_id: str, reason: str) -> bool:
    """Put the organisation on the list and hold its licences the list concerns; False if already there."""
    if await repo.blocklist_entry(session, list_org_id, blocked_org_id) is not None:
        return False
    session.add(
        BlocklistEntry(
            list_org_id=list_org_id,
            blocked_org_id=blocked_org_id,
            reason=reason,
            created_by=getattr(actor, "user_id", None),
            created_at=utcnow(),
        )
    )
    await session.flush()
    for licence in await _concerned(session, list_org_id, blocked_org_id):
        await add_hold(session, actor, licence, "org_blocked", list_org_id, reason)
    audit.record(
        session,
        actor,
        "org.blocked",
        "org",
        blocked_org_id,
        [list_org_id, blocked_org_id],
        {"list_org_id": list_org_id, "reason": reason},
    )
    return True


async def unblock(session: AsyncSession, actor: Any, list_org_id: str, blocked_org_id: str) -> None:
    entry = await repo.blocklist_entry(session, list_org_id, blocked_org_id)
    if entry is None:
        raise NotFound(f"{blocked_org_id} is not on this block-list.")
    await session.delete(entry)
    await session.flush()
    for licence in await _concerned(session, list_org_id, blocked_org_id):
        await lift_hold(session, actor, licence, "org_blocked", list_org_id, "unblocked")
    audit.record(
        session,
        actor,
        "org.unblocked",
        "org",
        blocked_org_id,
        [list_org_id, blocked_org_id],
        {"list_org_id": list_org_id},
    )


async def _concerned(session: AsyncSession, list_org_id: str, blocked_org_id: str) -> list[Any]:
    org = await orgs_repo.get_org(session, list_org_id)
    platform = org is not None and org.kind == "operator"
    return await repo.licences_of_consumer(session, blocked_org_id, HELD, None if platform else list_org_id)


async def on_verification_changed(session: AsyncSession, actor: Any, org_id: str, status: str) -> None:
    """Hook the composition root gives the organisations service: un-verifying holds every licence."""
    for licence in await repo.licences_of_consumer(session, org_id, HELD):
        if status == "verified":
            await lift_hold(session, actor, licence, "org_blocked", VERIFICATION, "organisation verified")
        else:
            await add_hold(session, actor, licence, "org_blocked", VERIFICATION, "organisation no longer verified")


class BlocklistService:
    def __init__(self, session: AsyncSession, caller: Principal) -> None:
        self.session = session
        self.caller = caller

    async def _list_owner(self, org_id: str) -> None:
        ensure_sees_org(self.caller, org_id)  # another tenant's list: 404, as for a made-up id
        org = await orgs_repo.get_org(self.session, org_id)
        if org is None:
            raise NotFound(f"No organisation {org_id}.")
        if org.kind == "consumer":
            raise Forbidden("Only providers and the operator keep block-lists.")
        ensure_org_admin(self.caller, org_id)

    async def list(self, org_id: str, page: PageRequest) -> BlocklistRead:
        await self._list_owner(org_id)
        result = await repo.list_blocklist(self.session, org_id, page)
        return BlocklistRead(items=[_read(e) for e in result.items], next_cursor=result.next_cursor)

    async def add(self, org_id: str, data: BlocklistCreate) -> BlocklistEntryRead:
        await self._list_owner(org_id)
        target = await orgs_repo.get_org(self.session, data.org_id)
        if target is None or target.kind != "consumer":
            raise ValidationFailed.field("org_id", "not a consumer organisation")
        if not await block(self.session, self.caller, org_id, data.org_id, data.reason):
            raise Conflict(f"{data.org_id} is already on this block-list.", code="already_blocked")
        entry = await repo.blocklist_entry(self.session, org_id, data.org_id)
        assert entry is not None
        return _read(entry)

    async def remove(self, org_id: str, blocked_org_id: str) -> None:
        await self._list_owner(org_id)
        await unblock(self.session, self.caller, org_id, blocked_org_id)


def _read(entry: BlocklistEntry) -> BlocklistEntryRead:
    return BlocklistEntryRead(
        list_org_id=entry.list_org_id,
        blocked_org_id=entry.blocked_org_id,
        reason=entry.reason,
        created_by=entry.created_by,
        created_at=entry.created_at,
    )
