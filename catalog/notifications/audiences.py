"""Who is entitled to hear of a product's events: the parties each domain names for its subjects.

Applications and licences name their own parties (``access``: consumer, owner, the providers in the
revenue share, and the operator for the tracks it reviews); these are the product-wide audiences.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access.models import Licence
from catalog.products import repository as products_repo
from catalog.products.models import Product

LIVE = ("active", "suspended")


async def product_parties(session: AsyncSession, product: Product) -> list[str]:
    """The owner and every provider sharing the product's revenue."""
    rule = await products_repo.current_revenue_share(session, product.id)
    return [product.owner_org_id, *(p["org_id"] for p in (rule.providers if rule else []))]


async def licensees(session: AsyncSession, product_id: str) -> list[str]:
    """Organisations holding a live licence on the product."""
    stmt = select(Licence.consumer_org_id).where(Licence.product_id == product_id, Licence.status.in_(LIVE)).distinct()
    return list((await session.execute(stmt)).scalars())
