"""SQL for the feed and for webhook endpoints and their delivery log."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.notifications.models import (
    Notice,
    NoticeMark,
    NoticeRead,
    NoticeRecipient,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from catalog.pagination import Page, PageRequest, paginate


def _read_clause(user_id: str, mark: str | None):  # type: ignore[no-untyped-def]
    one_by_one = exists().where(NoticeRead.user_id == user_id, NoticeRead.notice_id == Notice.id)
    return or_(Notice.id <= mark, one_by_one) if mark else one_by_one


async def mark(session: AsyncSession, user_id: str, org_id: str) -> str | None:
    found = await session.get(NoticeMark, (user_id, org_id))
    return found.read_through if found else None


async def feed(
    session: AsyncSession, org_id: str, user_id: str, page: PageRequest, *, unread_only: bool, type: str | None
) -> tuple[Page[tuple[Notice, bool]], int]:
    through = await mark(session, user_id, org_id)
    read = _read_clause(user_id, through)
    stmt = select(Notice, read.label("read")).join(
        NoticeRecipient, and_(NoticeRecipient.notice_id == Notice.id, NoticeRecipient.org_id == org_id)
    )
    if unread_only:
        stmt = stmt.where(~read)
    if type:
        stmt = stmt.where(Notice.type == type)
    page_rows = await paginate(session, stmt, Notice.id, page, rows=True)
    items = [(notice, bool(is_read)) for notice, is_read in page_rows.items]
    return Page(items=items, next_cursor=page_rows.next_cursor), await unread(session, org_id, user_id, through)


async def unread(session: AsyncSession, org_id: str, user_id: str, through: str | None) -> int:
    stmt = (
        select(func.count())
        .select_from(NoticeRecipient)
        .join(Notice, Notice.id == NoticeRecipient.notice_id)
        .where(NoticeRecipient.org_id == org_id, ~_read_clause(user_id, through))
    )
    return (await session.execute(stmt)).scalar_one()


async def visible_ids(session: AsyncSession, org_id: str, ids: Sequence[str]) -> list[str]:
    stmt = select(NoticeRecipient.notice_id).where(NoticeRecipient.org_id == org_id, NoticeRecipient.notice_id.in_(ids))
    return list((await session.execute(stmt)).scalars())


async def add_reads(session: AsyncSession, user_id: str, ids: Sequence[str], at: object) -> None:
    if not ids:
        return
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    rows = [{"user_id": user_id, "notice_id": i, "read_at": at} for i in ids]
    await session.execute(insert(NoticeRead).values(rows).on_conflict_do_nothing())


async def newest_for(session: AsyncSession, org_id: str) -> str | None:
    stmt = select(func.max(NoticeRecipient.notice_id)).where(NoticeRecipient.org_id == org_id)
    return (await session.execute(stmt)).scalar_one()


async def set_mark(session: AsyncSession, user_id: str, org_id: str, through: str) -> None:
    """Move the member's read-through mark forward (never back), and forget the one-by-one reads it covers."""
    found = await session.get(NoticeMark, (user_id, org_id), with_for_update=True)
    if found is None:
        session.add(NoticeMark(user_id=user_id, org_id=org_id, read_through=through))
    elif found.read_through < through:
        found.read_through = through
    await session.execute(delete(NoticeRead).where(NoticeRead.user_id == user_id, NoticeRead.notice_id <= through))
    await session.flush()


async def endpoints(session: AsyncSession, org_id: str, page: PageRequest) -> Page[WebhookEndpoint]:
    return await paginate(
        session, select(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id), WebhookEndpoint.id, page
    )


async def endpoint_count(session: AsyncSession, org_id: str) -> int:
    stmt = select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id)
    return (await session.execute(stmt)).scalar_one()


async def endpoint(
    session: AsyncSession, org_id: str, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint | None:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.org_id == org_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def deliveries(
    session: AsyncSession, endpoint_id: str, page: PageRequest, status: str | None
) -> Page[tuple[WebhookDelivery, Notice]]:
    stmt = (
        select(WebhookDelivery, Notice)
        .join(Notice, Notice.id == WebhookDelivery.notice_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
    )
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    return await paginate(session, stmt, WebhookDelivery.id, page, rows=True)


async def delivery(
    session: AsyncSession, endpoint_id: str, delivery_id: str, *, lock: bool = False
) -> tuple[WebhookDelivery, Notice] | None:
    stmt = (
        select(WebhookDelivery, Notice)
        .join(Notice, Notice.id == WebhookDelivery.notice_id)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
    )
    if lock:
        stmt = stmt.with_for_update(of=WebhookDelivery)
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row else None


async def attempts(session: AsyncSession, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
    found: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if delivery_ids:
        stmt = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
        )
        for row in (await session.execute(stmt)).scalars():
            found[row.delivery_id].append(row)
    return found
