"""SQL delivery needs: which releases a licence covers."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.products.models import Release, ReleaseFile


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


async def covered_releases(session: AsyncSession, product_id: str, ends_on: date) -> list[Release]:
    """Releases published by the end of the term, newest first — withdrawn ones included, so the
    caller can say ``release_withdrawn`` rather than not found."""
    params = {"product": product_id, "term_end": _end_of(ends_on)}
    return list((await session.execute(_COVERED, params)).scalars())


# Built once, its values as parameters: every query and download reads it.
_COVERED = (
    select(Release)
    .where(
        Release.product_id == bindparam("product"),
        Release.status.in_(("published", "withdrawn")),
        Release.published_at <= bindparam("term_end"),
    )
    .order_by(Release.published_at.desc(), Release.id.desc())
)


async def files_of(session: AsyncSession, release_ids: list[str]) -> list[ReleaseFile]:
    if not release_ids:
        return []
    stmt = select(ReleaseFile).where(ReleaseFile.release_id.in_(release_ids)).order_by(ReleaseFile.name)
    return list((await session.execute(stmt)).scalars())
