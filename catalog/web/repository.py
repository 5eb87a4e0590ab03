"""The web sessions' SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.web.models import WebSession


async def delete_lapsed(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(WebSession).where(WebSession.expires_at < now))


async def get(session: AsyncSession, session_id: str) -> WebSession | None:
    return (await session.execute(select(WebSession).where(WebSession.id == session_id))).scalar_one_or_none()


async def delete_one(session: AsyncSession, session_id: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.id == session_id))
