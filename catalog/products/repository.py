"""SQL for products, sources, releases and files, terms, plans and revenue-share rules."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, column, delete, func, or_, select, table, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from catalog.orgs.models import Organisation
from catalog.pagination import Page, PageRequest, paginate
from catalog.products.models import Plan, Product, ProductSource, Release, ReleaseFile, RevenueShareRule, Terms

# Moved by triggers (migration 0017) whenever something a public catalogue view shows changes; not
# a model, as nothing but those triggers writes it.
CATALOGUE_VERSION = table("catalogue_version", column("id", Integer), column("version", BigInteger))
_VERSION = select(CATALOGUE_VERSION.c.version).where(CATALOGUE_VERSION.c.id == 1)
VERSION_SQL = "SELECT version FROM catalogue_version WHERE id = 1"


async def catalogue_version(conn: AsyncConnection) -> int:
    return int((await conn.execute(_VERSION)).scalar() or 0)


def catalogue_version_now(conn: sqlite3.Connection) -> int:
    """The same read on a plain sqlite3 connection (the reader's own, on SQLite); fetchall, so the
    statement is reset and the connection holds no read snapshot afterwards."""
    rows = conn.execute(VERSION_SQL).fetchall()
    return int(rows[0][0]) if rows else 0


async def catalogue_version_pg(conn: Any) -> int:
    """The same read on a plain asyncpg connection (the reader's own, on PostgreSQL)."""
    return int(await conn.fetchval(VERSION_SQL) or 0)


async def get(session: AsyncSession, product_id: str) -> Product | None:
    return await session.get(Product, product_id)


def _keyed(key: str) -> ColumnElement[bool]:
    """A product named by its id or its slug: every route that takes a product accepts either."""
    return or_(Product.id == key, Product.slug == key)


async def get_by_id_or_slug(session: AsyncSession, key: str) -> Product | None:
    return (await session.execute(select(Product).where(_keyed(key)))).scalars().first()


async def id_of(session: AsyncSession, key: str | None) -> str | None:
    """The id of the product ``key`` names (an id or a slug), for filters that match on ids; a key
    that names no product comes back as it is, so the filter matches nothing."""
    if key is None:
        return None
    return (await session.execute(select(Product.id).where(_keyed(key)))).scalars().first() or key


async def get_many(session: AsyncSession, ids: Sequence[str]) -> dict[str, Product]:
    if not ids:
        return {}
    rows = (await session.execute(select(Product).where(Product.id.in_(set(ids))))).scalars()
    return {p.id: p for p in rows}


async def current_terms_of(session: AsyncSession, product_ids: Sequence[str]) -> dict[str, Terms]:
    """The newest terms of each product, in one query."""
    if not product_ids:
        return {}
    newest = (
        select(Terms.product_id, func.max(Terms.version).label("version"))
        .where(Terms.product_id.in_(product_ids))
        .group_by(Terms.product_id)
        .subquery()
    )
    stmt = select(Terms).join(newest, (Terms.product_id == newest.c.product_id) & (Terms.version == newest.c.version))
    return {t.product_id: t for t in (await session.execute(stmt)).scalars()}


async def published_releases_of(session: AsyncSession, product_ids: Sequence[str]) -> dict[str, list[Release]]:
    found: dict[str, list[Release]] = {p: [] for p in product_ids}
    if product_ids:
        stmt = (
            select(Release)
            .where(Release.product_id.in_(product_ids), Release.status == "published")
            .order_by(Release.published_at.desc())
        )
        for row in (await session.execute(stmt)).scalars():
            found[row.product_id].append(row)
    return found


async def listed(session: AsyncSession) -> list[Product]:
    stmt = select(Product).where(Product.status == "listed").order_by(Product.id)
    return list((await session.execute(stmt)).scalars())


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    return (await session.execute(select(Product.id).where(Product.slug == slug))).first() is not None


async def sources(session: AsyncSession, product_id: str) -> list[ProductSource]:
    stmt = select(ProductSource).where(ProductSource.product_id == product_id).order_by(ProductSource.position)
    return list((await session.execute(stmt)).scalars())


async def replace_sources(session: AsyncSession, product_id: str, rows: list[ProductSource]) -> None:
    await session.execute(delete(ProductSource).where(ProductSource.product_id == product_id))
    session.add_all(rows)


async def operator_org(session: AsyncSession) -> Organisation | None:
    stmt = select(Organisation).where(Organisation.kind == "operator").limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def orgs(session: AsyncSession, org_ids: Sequence[str]) -> dict[str, Organisation]:
    if not org_ids:
        return {}
    rows = (await session.execute(select(Organisation).where(Organisation.id.in_(set(org_ids))))).scalars()
    return {o.id: o for o in rows}


# --- releases -----------------------------------------------------------------------------------


async def release(session: AsyncSession, product_id: str, version: str) -> Release | None:
    stmt = select(Release).where(Release.product_id == product_id, Release.version == version)
    return (await session.execute(stmt)).scalar_one_or_none()


async def release_for_update(session: AsyncSession, product_id: str, version: str) -> Release | None:
    stmt = select(Release).where(Release.product_id == product_id, Release.version == version).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_release_status(session: AsyncSession, release_id: str, expected: str, status: str) -> bool:
    result = await session.execute(
        update(Release)
        .where(Release.id == release_id, Release.status == expected)
        .values(status=status, publishing_since=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def latest_release(session: AsyncSession, product_id: str) -> Release | None:
    stmt = select(Release).where(Release.product_id == product_id).order_by(Release.id.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def latest_published_release(
    session: AsyncSession, product_id: str, *, before: str | None = None
) -> Release | None:
    """The newest published release (by id, as releases are made), or the newest made before
    ``before``: what a new release's quality report measures its drift against."""
    stmt = select(Release).where(Release.product_id == product_id, Release.status == "published")
    if before is not None:
        stmt = stmt.where(Release.id < before)
    return (await session.execute(stmt.order_by(Release.id.desc()).limit(1))).scalar_one_or_none()


async def lock_product(session: AsyncSession, product_id: str) -> None:
    """Take the product row's lock for the rest of the transaction (PostgreSQL; SQLite writers are serial)."""
    await session.execute(select(Product.id).where(Product.id == product_id).with_for_update(key_share=True))


async def list_releases(
    session: AsyncSession, product_id: str, page: PageRequest, statuses: Sequence[str] | None
) -> Page[Release]:
    stmt = select(Release).where(Release.product_id == product_id)
    if statuses is not None:
        stmt = stmt.where(Release.status.in_(statuses))
    return await paginate(session, stmt, Release.id, page)


async def published_releases(session: AsyncSession, product_id: str) -> list[Release]:
    stmt = (
        select(Release)
        .where(Release.product_id == product_id, Release.status == "published")
        .order_by(Release.published_at.desc(), Release.id.desc())
    )
    return list((await session.execute(stmt)).scalars())


async def files(session: AsyncSession, release_ids: Sequence[str]) -> dict[str, list[ReleaseFile]]:
    found: dict[str, list[ReleaseFile]] = {r: [] for r in release_ids}
    if release_ids:
        stmt = select(ReleaseFile).where(ReleaseFile.release_id.in_(release_ids)).order_by(ReleaseFile.name)
        for row in (await session.execute(stmt)).scalars():
            found[row.release_id].append(row)
    return found


async def file(session: AsyncSession, release_id: str, name: str) -> ReleaseFile | None:
    stmt = select(ReleaseFile).where(ReleaseFile.release_id == release_id, ReleaseFile.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


# --- terms, plans, revenue shares ---------------------------------------------------------------


async def current_terms(session: AsyncSession, product_id: str) -> Terms | None:
    stmt = select(Terms).where(Terms.product_id == product_id).order_by(Terms.version.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def terms_at(session: AsyncSession, product_id: str, version: int) -> Terms | None:
    stmt = select(Terms).where(Terms.product_id == product_id, Terms.version == version)
    return (await session.execute(stmt)).scalar_one_or_none()


async def next_version(session: AsyncSession, model: type[Terms] | type[RevenueShareRule], product_id: str) -> int:
    stmt = select(func.coalesce(func.max(model.version), 0)).where(model.product_id == product_id)
    return int((await session.execute(stmt)).scalar_one()) + 1


async def plans(session: AsyncSession, product_ids: Sequence[str]) -> dict[str, list[Plan]]:
    found: dict[str, list[Plan]] = {p: [] for p in product_ids}
    if product_ids:
        stmt = select(Plan).where(Plan.product_id.in_(product_ids)).order_by(Plan.id)
        for row in (await session.execute(stmt)).scalars():
            found[row.product_id].append(row)
    return found


async def plan(session: AsyncSession, plan_id: str, *, lock: bool = False) -> Plan | None:
    if not lock:
        return await session.get(Plan, plan_id)
    # Locked for an edit: a licence issued meanwhile (lock_plan) waits, so a price cannot change
    # after the check that no licence refers to the plan.
    return (await session.execute(select(Plan).where(Plan.id == plan_id).with_for_update())).scalar_one_or_none()


async def lock_plan(session: AsyncSession, plan_id: str, now: datetime) -> None:
    """Freeze a plan's price once a licence refers to it (first reference wins; later ones no-op)."""
    await session.execute(
        update(Plan)
        .where(Plan.id == plan_id, Plan.locked_at.is_(None))
        .values(locked_at=now)
        .execution_options(synchronize_session=False)
    )


async def parties(session: AsyncSession, product: Product) -> list[str]:
    """The owner and every provider sharing the product's revenue."""
    rule = await current_revenue_share(session, product.id)
    return [product.owner_org_id, *(p["org_id"] for p in (rule.providers if rule else []))]


async def current_revenue_share(session: AsyncSession, product_id: str) -> RevenueShareRule | None:
    stmt = (
        select(RevenueShareRule)
        .where(RevenueShareRule.product_id == product_id)
        .order_by(RevenueShareRule.version.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def revenue_share(session: AsyncSession, rule_id: str) -> RevenueShareRule | None:
    return await session.get(RevenueShareRule, rule_id)
