"""May this analyst use this licence now? API.md's delivery table, decided in one place.

Delivery asks before every query and download, so revocation, expiry, a new hold, lapsed ethics
or a removed analyst cut access on the very next request. The grade's part (named analysts, ethics)
comes from ``policy.rule``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import policy
from catalog.access import repository as repo
from catalog.access.models import Licence
from catalog.auth import Principal


class Refusal(msgspec.Struct, frozen=True):
    code: str
    status: int
    detail: str
    extra: dict[str, Any] = {}


async def refusal(session: AsyncSession, licence: Licence, analyst: Principal, at: datetime) -> Refusal | None:
    """Why this analyst may not use this licence now (API.md's delivery table), or None."""
    found = await repo.standing(session, licence.id, analyst.user_id, party=None)
    assert found is not None
    return decide(found, analyst, at)


def decide(standing: repo.Standing, analyst: Principal, at: datetime) -> Refusal | None:
    """The refusal ``standing`` calls for, or None: read in the same transaction as the work it
    guards, never from what the request's key said of the caller."""
    licence, product = standing.licence, standing.product
    rule = policy.rule(product.grade)
    today = at.date()
    roles = standing.roles or []
    named = rule.named_analysts or bool(licence.analysts)  # names on a licence bind at every grade
    if (
        analyst.org_id != licence.consumer_org_id
        or not ("analyst" in roles or "admin" in roles)
        or (named and analyst.user_id not in licence.analysts)
    ):
        return Refusal("not_named_analyst", 403, "You are not a named analyst of this licence.")
    if licence.status == "revoked":
        return Refusal("licence_revoked", 403, "The licence was revoked.")
    if licence.status == "expired" or today > licence.ends_on:
        return Refusal("licence_expired", 403, f"The licence ended on {licence.ends_on}.")
    if rule.ethics_required and (licence.ethics_expires_on is None or licence.ethics_expires_on < today):
        return Refusal("ethics_approval_expired", 403, "The ethics approval behind this licence has expired.")
    if licence.status != "active" or standing.holds:
        return Refusal(
            "licence_not_active",
            403,
            f"The licence is {licence.status}.",
            {"licence_status": licence.status, "holds": standing.holds},
        )
    if today < licence.starts_on:
        return Refusal("licence_not_started", 403, f"The licence starts on {licence.starts_on}.")
    if product.status in ("suspended", "retired"):
        return Refusal("product_suspended", 403, f"The product is {product.status}.")
    return None


async def check_usable(session: AsyncSession, licence: Licence, analyst: Principal, at: datetime) -> str | None:
    """The refusal's code, or None when the analyst may use the licence."""
    found = await refusal(session, licence, analyst, at)
    return found.code if found else None
