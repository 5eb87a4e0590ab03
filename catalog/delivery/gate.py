"""The gate every delivery request passes before any data is touched: the caller's licence and
its product once ``usable.decide`` has nothing to say, the release the request reads, the grade's
and the licence's word on the mode, and the most rows an answer may hold (what is reserved). What
the first phase established travels on as a ``Gate`` to the work and the settlement.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit, policy
from catalog.access import repository as access_repo
from catalog.access import usable
from catalog.access.models import Licence
from catalog.auth import Principal
from catalog.db import utcnow
from catalog.delivery import compiler, paging
from catalog.delivery.schemas import MAX_GROUPS, QueryRequest
from catalog.errors import DomainError, Forbidden, NotFound
from catalog.products.models import Product, Release


class Gate(msgspec.Struct, kw_only=True):
    """What the first phase established, for the work and the settlement."""

    licence: Licence
    product: Product
    release: Release
    mode: str
    table: dict[str, Any] | None
    reservation_id: str
    counters: dict[str, int] = {}  # the capped counters as the reservation left them
    epsilon_micro: int = 0
    rows: int = 0  # the most rows the answer may hold (what was reserved)
    after: list[Any] | None = None  # a rows page's keyset: where the cursor it came with stopped


async def usable_licence(session: AsyncSession, caller: Principal, licence_id: str) -> tuple[Licence, Product]:
    """The caller's licence and its product, once ``usable.decide`` passes (the grade's own word on
    the mode comes later); refusals carry API.md's codes, and a licence the caller is no party to is
    404, as if absent."""
    party = None if caller.is_operator else caller.org_id
    found = await access_repo.standing(session, licence_id, caller.user_id, party=party)
    if found is None:
        raise NotFound(f"No licence {licence_id}.")
    refusal = usable.decide(found, caller, utcnow())
    if refusal is not None:
        raise DomainError(refusal.detail, code=refusal.code, status=refusal.status, **refusal.extra)
    return found.licence, found.product


def allow_mode(product: Product, licence: Licence, mode: str) -> None:
    if not policy.allows(product.grade, mode):
        raise Forbidden(
            f"A {product.grade} product is never delivered as {mode}.", code="grade_forbids_delivery", mode=mode
        )
    if mode not in licence.modes:
        raise Forbidden(f"This licence's plan or terms do not include {mode}.", code="mode_not_licensed", mode=mode)


def pick_release(releases: list[Release], version: str | None, *, cursor_release: str | None = None) -> Release:
    """The named release, or the newest published one the licence covers — or, for a cursor, the
    release it was returned for (``cursor_release``, an id), which ``version`` may name but not change."""
    if cursor_release is not None:
        chosen = next((r for r in releases if r.id == cursor_release), None)
        if chosen is None or (version is not None and version != chosen.version):
            raise paging.mismatch("was returned for another release")
        version = chosen.version
    if version is None:
        published = [r for r in releases if r.status == "published"]
        if not published:
            if releases:
                raise Forbidden("Every release this licence covers was withdrawn.", code="release_withdrawn")
            raise NotFound("No published release is covered by this licence.")
        return published[0]
    chosen = next((r for r in releases if r.version == version), None)
    if chosen is None:
        raise NotFound(f"Release {version} is not covered by this licence.")
    if chosen.status == "withdrawn":
        raise Forbidden(f"Release {version} was withdrawn.", code="release_withdrawn")
    return chosen


def isolating_columns(release: Release, table: dict[str, Any], rule: policy.GradeRule) -> frozenset[str]:
    """The columns of ``table`` that single persons out under ``rule``: declared so by the provider, or
    found so at publish (more persons than ``isolating_share`` hold a value no one else holds)."""
    if rule.anonymisation is None:
        return frozenset()
    measured = ((release.tables or {}).get(table["table"]) or {}).get("uniqueness") or {}
    share = rule.anonymisation.isolating_share
    return frozenset(f["name"] for f in table["fields"] if f.get("isolating") or measured.get(f["name"], 0.0) > share)


def most_rows(q: QueryRequest, table: dict[str, Any], mode: str) -> int:
    """The most rows an answer can hold: what is reserved against a rows cap, and the answer's cut.

    Rows mode returns ``limit`` (default 100). A differentially private answer is every combination of
    the groups' categories. An aggregate is one row without groups; with only categorised groups it is
    at most every combination (each may also be null); otherwise ``limit``, default 100, as in rows mode.
    """
    if mode == "rows":
        return q.limit or compiler.DEFAULT_LIMIT
    fields = {f["name"]: f for f in table["fields"]}
    categories = [fields[g].get("categories") for g in q.group_by]
    if mode == "dp_aggregate":
        return math.prod(len(c or ()) for c in categories)
    if all(categories):
        combinations = math.prod(len(c) + 1 for c in categories)
        return min(q.limit or combinations, combinations, MAX_GROUPS)
    return q.limit or compiler.DEFAULT_LIMIT


def audit_use(session: AsyncSession, caller: Principal, gate: Gate, action: str, data: dict[str, Any]) -> None:
    """The audit event of one use of a licence (who, what, how much — never the data), concerning the
    consumer and the product's owner."""
    audit.record(
        session,
        caller,
        action,
        "licence",
        gate.licence.id,
        [gate.licence.consumer_org_id, gate.licence.owner_org_id],
        data,
    )
