"""The public data-use register: who uses which product for what, as the public summary says it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access import repository as repo
from catalog.access.schemas import RegisterEntry, RegisterRead
from catalog.pagination import PageRequest


async def register(session: AsyncSession, page: PageRequest) -> RegisterRead:
    """The public data-use register: the public summary, never the confidential project title."""
    result = await repo.register(session, page)
    return RegisterRead(
        items=[
            RegisterEntry(
                licence_id=lic.id,
                organisation={"id": org.id, "name": org.name},
                product={"id": product.id, "title": product.title},
                purpose_category=lic.purpose["category"],
                public_summary=lic.public_summary,
                starts_on=lic.starts_on,
                ends_on=lic.ends_on,
                status=lic.status,
                approved_at=lic.created_at,
            )
            for lic, org, product in result.items
        ],
        next_cursor=result.next_cursor,
    )
