"""Usage on the demo licences: a few real queries per licence, as its analyst, so a newcomer sees
usage reports, budgets and audit records from the first minute.

Each goes through the delivery service exactly as an API call would (gate, reservation, DuckDB,
settlement). A licence that already has usage is left alone, so a rerun changes nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import policy
from catalog.access.models import Licence
from catalog.auth import Principal
from catalog.db import read_transaction
from catalog.delivery.noise import Noise
from catalog.delivery.schemas import QueryRequest
from catalog.delivery.service import DeliveryService
from catalog.metering.models import UsageEvent
from catalog.products import repository as products_repo
from catalog.storage import Storage


def _queries(grade: str, modes: list[str], table: dict[str, Any]) -> list[dict[str, Any]]:
    """Questions the grade answers and the licence covers: rows, grouped aggregates, DP at L5."""
    fields = {f["name"]: f for f in table["fields"]}
    groups = [n for n, f in fields.items() if f.get("categories") and not f.get("sensitive")][:1]
    numbers = [
        n
        for n, f in fields.items()
        if f["type"] in ("integer", "number")
        and not f.get("sensitive")
        and f.get("min") is not None
        and f.get("max") is not None
    ][:1]
    plain = [n for n, f in fields.items() if not f.get("sensitive")][:4]
    rule = policy.rule(grade)
    asked: list[dict[str, Any]] = []
    aggregates = [{"fn": "count"}] + ([{"fn": "avg", "field": numbers[0]}] if numbers else [])
    if rule.allows("rows") and "rows" in modes:
        asked.append({"table": table["table"], "select": plain, "limit": 20})
    if rule.allows("aggregate") and "aggregate" in modes:
        asked.append({"table": table["table"], "group_by": groups, "aggregates": aggregates})
    if rule.allows("dp_aggregate") and "dp_aggregate" in modes and groups:
        asked.append({"table": table["table"], "group_by": groups, "aggregates": aggregates, "epsilon": 0.25})
    return asked


async def add_usage(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, noise: Noise, licence_id: str, analyst: Principal
) -> int:
    async with read_transaction(sessions) as session:
        used = (
            await session.execute(
                select(func.count()).select_from(UsageEvent).where(UsageEvent.licence_id == licence_id)
            )
        ).scalar_one()
        licence = await session.get(Licence, licence_id)
        if used or licence is None or licence.status != "active":
            return 0
        product = await products_repo.get(session, licence.product_id)
        releases = await products_repo.published_releases(session, licence.product_id)
    assert product is not None
    service = DeliveryService(sessions, storage, analyst, noise=noise)
    asked = 0
    for table in releases[0].dictionary if releases else []:
        for body in _queries(product.grade, list(licence.modes), table):
            await service.query(licence_id, msgspec.convert(body, QueryRequest))
            asked += 1
    return asked
