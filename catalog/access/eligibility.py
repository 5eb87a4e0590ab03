"""The eligibility engine: a pure function from the facts of a request to every blocker.

It answers before anyone applies (``GET /v1/products/{id}/eligibility``) and again at submit, with
the same stable codes, so a consumer sees every reason at once instead of one per attempt.

Use conditions follow the GA4GH Data Use Ontology: NRES/GRU permit any research; HMB permits
health, disease-specific and methods research (not ancestry); DS narrows to its diseases (matched
by ICD-10 prefix, so E11.9 falls under E11); POA permits ancestry research; NPOA and NMDS prohibit
ancestry and methods research. Grade rules (who may licence, cross-border) come from policy.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import msgspec

from catalog import policy
from catalog.geo import country_of
from catalog.products.terms import condition


class Blocker(msgspec.Struct, frozen=True):
    code: str
    message: str
    field: str | None = None


Add = Callable[[Blocker], None]


class OrgFacts(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str
    jurisdiction: str
    for_profit: bool


class PlanFacts(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    active: bool
    private_to: list[str]
    term_months: int | None


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the decision depends on; ``None`` for what the caller did not declare."""

    grade: str
    product_jurisdiction: str
    use_conditions: list[dict]
    local_conditions: list[str]
    max_term_months: int | None
    plan: PlanFacts | None
    org: OrgFacts
    blocked_by: list[str]
    category: str | None
    commercial: bool
    disease_codes: list[str]
    territory: str
    months: int | None
    ethics_expires_on: date | None
    analysts: list[str] | None
    project_reference: str | None
    today: date


def evaluate(r: Request) -> list[Blocker]:
    blockers: list[Blocker] = []
    add = blockers.append
    rule = policy.rule(r.grade)
    codes = {c["code"] for c in r.use_conditions}
    home = country_of(r.product_jurisdiction)

    standing = policy.org_standing_refusal(r.grade, r.org.status, country_of(r.org.jurisdiction) == home)
    if standing == "org_not_verified":
        add(Blocker("org_not_verified", "Your organisation must be verified by the operator first."))
    elif standing == "cross_border":
        add(Blocker("cross_border", f"A {r.grade} product is licensed only to organisations in {home}."))
    if r.blocked_by:
        add(Blocker("org_blocked", "Your organisation is on a block-list for this product."))

    if r.commercial and codes & {"NCU", "NPUNCU"}:
        add(Blocker("ncu_commercial_use", "The terms allow non-commercial use only.", "commercial"))
    if r.org.for_profit and codes & {"NPU", "NPUNCU"}:
        add(Blocker("npu_for_profit_org", "The terms allow use by not-for-profit organisations only."))
    if r.category is not None and not _permits(codes, r.category):
        add(Blocker("category_not_permitted", f"The terms do not permit {r.category} research.", "category"))
    ds = condition(r.use_conditions, "DS")
    if ds is not None:
        allowed = ds.get("diseases", [])
        declared = r.disease_codes
        if not declared or any(not any(d.startswith(a) for a in allowed) for d in declared):
            add(
                Blocker(
                    "ds_disease_mismatch",
                    f"Use is limited to research on {', '.join(allowed)}; declare disease codes within them.",
                    "disease_codes",
                )
            )
    if r.category == "MDS" and "NMDS" in codes:
        add(Blocker("nmds_methods_use", "The terms prohibit general methods research.", "category"))
    gs = condition(r.use_conditions, "GS")
    if gs is not None and country_of(r.territory) not in {country_of(g) for g in gs.get("regions", [])}:
        add(Blocker("gs_territory", f"Processing must stay within {', '.join(gs['regions'])}.", "territory"))
    if (not rule.cross_border or "no_cross_border" in r.local_conditions) and standing != "cross_border":
        if country_of(r.org.jurisdiction) != home or country_of(r.territory) != home:
            add(Blocker("cross_border", f"This data may not be used or processed outside {home}.", "territory"))
    if "genetic_resources" in r.local_conditions and country_of(r.org.jurisdiction) != home:
        add(
            Blocker(
                "genetic_resources_foreign_org", f"Human genetic resources: only organisations in {home} may use them."
            )
        )
    _named_parties(r, add)
    if rule.ethics_required or "IRB" in codes:
        if r.ethics_expires_on is None:
            add(Blocker("ethics_approval_missing", "An unexpired ethics approval is required.", "ethics_approval"))
        elif r.ethics_expires_on < r.today:
            add(Blocker("ethics_approval_expired", "The ethics approval has expired.", "ethics_approval.expires_on"))
    _plan(r, add)
    ts = condition(r.use_conditions, "TS")
    limits = [m for m in (r.max_term_months, ts.get("months") if ts else None) if m]
    if r.months is not None and limits and r.months > min(limits):
        add(Blocker("term_too_long", f"The terms allow at most {min(limits)} months.", "months"))
    return blockers


def _permits(codes: set[str], category: str) -> bool:
    if category == "POA" and "NPOA" in codes:
        return False
    if codes & {"NRES", "GRU"}:
        return True
    if "HMB" in codes and category in ("HMB", "DS", "MDS"):
        return True
    return category in codes & {"DS", "POA"}


def _named_parties(r: Request, add: Add) -> None:
    """IS names institutions (org ids), US users (every named analyst), PS projects (a reference)."""
    ids_is = condition(r.use_conditions, "IS")
    ids_us = condition(r.use_conditions, "US")
    ids_ps = condition(r.use_conditions, "PS")
    named = (
        (ids_is is not None and r.org.id not in ids_is.get("ids", []))
        or (ids_us is not None and (not r.analysts or not set(r.analysts) <= set(ids_us.get("ids", []))))
        or (ids_ps is not None and r.project_reference not in ids_ps.get("ids", []))
    )
    if named:
        add(Blocker("restricted_to_named_parties", "The terms restrict use to named institutions, users or projects."))


def _plan(r: Request, add: Add) -> None:
    plan = r.plan
    if plan is None:
        return
    if not plan.active or (plan.private_to and r.org.id not in plan.private_to):
        add(Blocker("plan_not_available", "This plan is not available to your organisation.", "plan_id"))
    if plan.kind == "public_interest":
        if r.commercial:
            add(
                Blocker(
                    "public_interest_commercial", "Public-interest plans are for non-commercial purposes.", "commercial"
                )
            )
        if r.org.for_profit:
            add(
                Blocker("public_interest_for_profit_org", "Public-interest plans are for not-for-profit organisations.")
            )
