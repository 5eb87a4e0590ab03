"""Keyset pagination: ``?limit=`` (1–500, default 50) and an opaque ``?cursor=``, newest first.

The cursor is the last key of the page, so pages stay stable while rows are inserted (ids are
time-sortable) and each page is one indexed range scan, however deep.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar.params import QueryParameter
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.errors import ValidationFailed

T = TypeVar("T")
MAX_LIMIT = 500


class PageRequest(msgspec.Struct, frozen=True):
    limit: int = 50
    after: str | None = None


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> str:
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not value.isprintable() or not value:
        raise ValidationFailed.field("cursor", "is not a cursor returned by this list")
    return value


async def provide_page(
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size, 1–500.")] = 50,
    cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")] = None,
) -> PageRequest:
    return PageRequest(limit=limit, after=decode_cursor(cursor) if cursor else None)


async def paginate(
    session: AsyncSession, stmt: Select[Any], key: Any, page: PageRequest, *, rows: bool = False
) -> Page[Any]:
    """Apply the page to ``stmt`` ordered by ``key`` descending; ``rows`` keeps whole result rows."""
    if page.after is not None:
        stmt = stmt.where(key < page.after)
    result = await session.execute(stmt.order_by(key.desc()).limit(page.limit + 1))
    items = [tuple(r) for r in result.all()] if rows else list(result.scalars().all())
    more = len(items) > page.limit
    items = items[: page.limit]
    last = items[-1] if items else None
    next_cursor = None
    if more and last is not None:
        head = last[0] if rows else last
        next_cursor = encode_cursor(str(getattr(head, key.key)))
    return Page(items=items, next_cursor=next_cursor)
