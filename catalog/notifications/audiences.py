"""Audiences a domain cannot compute itself without reaching up the dependency chain.

Products tell live licensees of a suspension or a new release, but products sit below access
(``orgs ← products ← access``): who holds a live licence is access's knowledge. The composition
root (``app.py``) provides that lookup here by name, and products ask for it by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

Lookup = Callable[[AsyncSession, str], Awaitable[list[str]]]
_LOOKUPS: dict[str, Lookup] = {}


def provide(name: str, lookup: Lookup) -> None:
    _LOOKUPS[name] = lookup


async def licensees(session: AsyncSession, product_id: str) -> list[str]:
    """Organisations holding a live licence on the product (access's lookup, provided by app.py)."""
    return await _LOOKUPS["licensees"](session, product_id)
