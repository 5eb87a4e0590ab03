"""The events Lode tells, and ``publish``: one call in the transaction of the change it reports.

``publish`` writes the event, one recipient row per organisation entitled to see its subject (the
caller names them: the domain that owns the subject knows its parties), and one pending delivery for
each enabled webhook endpoint of those organisations that subscribes to the type. All of it commits
with the change or not at all, so no event is told about a change that did not happen, and none is
lost between the change and its delivery. Bodies name objects by id; they never carry data rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, get_args

import msgspec
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.db import utcnow
from catalog.ids import new_id
from catalog.notifications.models import Notice, NoticeRecipient, WebhookDelivery, WebhookEndpoint
from catalog.notifications.schemas import EventType

EVENT_TYPES: tuple[str, ...] = get_args(EventType)


async def publish(
    session: AsyncSession,
    type: str,
    subject: tuple[str, str],
    org_ids: Iterable[str | None],
    data: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    skip_endpoint: str | None = None,
) -> str | None:
    """Tell ``org_ids`` of an event about ``subject`` (type, id); the notice id, or None when an
    event with ``dedupe_key`` was told already (a reminder or threshold is told once)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    orgs = sorted({o for o in org_ids if o})
    notice_id = new_id("msg")
    now = utcnow()
    row = {
        "id": notice_id,
        "type": type,
        "subject_type": subject[0],
        "subject_id": subject[1],
        "data": msgspec.to_builtins(data),
        "occurred_at": now,
        "dedupe_key": dedupe_key,
    }
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    added = await session.execute(insert(Notice).values(row).on_conflict_do_nothing())
    if not added.rowcount:
        return None
    session.add_all(NoticeRecipient(notice_id=notice_id, org_id=o) for o in orgs)
    for endpoint_id, types in await _subscribers(session, orgs, skip_endpoint):
        if types is None or type in types:
            session.add(
                WebhookDelivery(
                    id=new_id("dlv"), endpoint_id=endpoint_id, notice_id=notice_id, next_attempt_at=now, created_at=now
                )
            )
    await session.flush()
    return notice_id


async def _subscribers(session: AsyncSession, orgs: list[str], skip: str | None) -> list[tuple[str, list[str] | None]]:
    if not orgs:
        return []
    stmt = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
        WebhookEndpoint.org_id.in_(orgs), WebhookEndpoint.enabled.is_(True)
    )
    if skip:
        stmt = stmt.where(WebhookEndpoint.id != skip)
    return [(r.id, r.event_types) for r in await session.execute(stmt)]


def body(notice: Notice) -> bytes:
    """The JSON a receiver gets: Standard Webhooks' ``type``, ``timestamp`` and ``data``, plus ``id``."""
    return msgspec.json.encode(
        {
            "id": notice.id,
            "type": notice.type,
            "timestamp": _iso(notice.occurred_at),
            "data": {"subject": {"type": notice.subject_type, "id": notice.subject_id}, **notice.data},
        }
    )


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
