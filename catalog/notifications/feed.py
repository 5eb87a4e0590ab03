"""The in-app feed: the caller's organisation's events, newest first, read or unread per member."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import Principal
from catalog.db import utcnow
from catalog.errors import ValidationFailed
from catalog.notifications import repository as repo
from catalog.notifications.models import Notice
from catalog.notifications.schemas import MarkedRead, MarkRead, NotificationList, NotificationRead, Subject
from catalog.pagination import PageRequest


class FeedService:
    def __init__(self, session: AsyncSession, caller: Principal) -> None:
        self.session = session
        self.caller = caller

    async def list(self, page: PageRequest, *, unread_only: bool, type: str | None) -> NotificationList:
        found, unread = await repo.feed(
            self.session, self.caller.org_id, self.caller.user_id, page, unread_only=unread_only, type=type
        )
        return NotificationList(
            items=[_read(notice, read) for notice, read in found.items], next_cursor=found.next_cursor, unread=unread
        )

    async def mark_read(self, data: MarkRead) -> MarkedRead:
        org_id, user_id = self.caller.org_id, self.caller.user_id
        if data.all == bool(data.ids):
            raise ValidationFailed.field("ids", "give the ids to mark read, or all: true (not both)")
        if data.all:
            newest = await repo.newest_for(self.session, org_id)
            if newest is not None:
                await repo.set_mark(self.session, user_id, org_id, newest)
        else:
            ids = list(dict.fromkeys(data.ids))
            visible = await repo.visible_ids(self.session, org_id, ids)
            unknown = sorted(set(ids) - set(visible))
            if unknown:  # another organisation's notice answers as a made-up one does
                raise ValidationFailed.field("ids", f"no notification {unknown[0]} in your feed")
            await repo.add_reads(self.session, user_id, visible, utcnow())
        through = await repo.mark(self.session, user_id, org_id)
        return MarkedRead(unread=await repo.unread(self.session, org_id, user_id, through))


def _read(notice: Notice, read: bool) -> NotificationRead:
    return NotificationRead(
        id=notice.id,
        type=notice.type,
        occurred_at=notice.occurred_at,
        subject=Subject(type=notice.subject_type, id=notice.subject_id),
        data=dict(notice.data),
        read=read,
    )
