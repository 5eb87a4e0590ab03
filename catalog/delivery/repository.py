"""SQL delivery needs: which releases a licence covers, and the query log its auditor reads."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any

import msgspec
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.audit import AuditEvent
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


class LoggedQuery(msgspec.Struct, frozen=True):
    """One anonymised aggregate query from the audit log: who asked what, and what the answer did."""

    seq: int
    licence_id: str
    analyst_id: str | None
    data: dict[str, Any]


async def anonymised_queries_since(session: AsyncSession, since: datetime) -> list[LoggedQuery]:
    """Every ``licence.queried`` event since ``since`` whose answer was anonymised, oldest first."""
    stmt = (
        select(AuditEvent.seq, AuditEvent.subject_id, AuditEvent.actor_user_id, AuditEvent.data)
        .where(AuditEvent.action == "licence.queried", AuditEvent.occurred_at >= since)
        .order_by(AuditEvent.seq)
    )
    found = []
    for seq, licence_id, analyst_id, data in (await session.execute(stmt)).all():
        parsed = json.loads(data)
        if parsed.get("anonymised"):
            found.append(LoggedQuery(seq=seq, licence_id=licence_id, analyst_id=analyst_id, data=parsed))
    return found


async def flags_since(session: AsyncSession, since: datetime, action: str) -> set[tuple[str, str | None, str]]:
    """(licence, analyst, pattern) of every ``action`` event since ``since``: what is flagged already."""
    stmt = select(AuditEvent.subject_id, AuditEvent.data).where(
        AuditEvent.action == action, AuditEvent.occurred_at >= since
    )
    flagged = set()
    for licence_id, data in (await session.execute(stmt)).all():
        parsed = json.loads(data)
        flagged.add((licence_id, parsed.get("analyst_id"), parsed.get("pattern")))
    return flagged
