"""What a product is offered under: terms versions, plans and revenue-share rules.

Terms and revenue-share rules are versioned and immutable: a change is a new version, and a
licence pins the version it was granted under. A plan may be edited until a licence refers to it
(``Plan.locked_at``, set by circulation when it issues one); after that only its name, whether it
is active and whom it is private to may change — a new price is a new plan.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit
from catalog.auth import Principal, ensure_member_with
from catalog.currencies import is_currency
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from catalog.ids import new_id
from catalog.products import repository as repo
from catalog.products import search, terms
from catalog.products.models import Plan, Product, RevenueShareRule, Terms
from catalog.products.offer_schemas import (
    PLAN_MUTABLE_WHEN_LOCKED,
    PlanCreate,
    PlanList,
    PlanUpdate,
    RevenueSharePut,
    RevenueShareRead,
    TermsPut,
)
from catalog.products.reads import plan_read, revenue_share_read, terms_read
from catalog.products.schemas import PlanRead, TermsRead
from catalog.products.service import ProductService


class CommerceService:
    def __init__(self, session: AsyncSession, caller: Principal | None) -> None:
        self.session = session
        self.caller = caller
        self.products = ProductService(session, caller)

    # --- terms ------------------------------------------------------------------------------

    async def put_terms(self, product_id: str, data: TermsPut) -> tuple[TermsRead, bool]:
        """A new terms version (True), or the current one when the content is unchanged (False)."""
        product = await self.products.owned(product_id)
        _not_retired(product)
        content = terms.normalise(data)
        digest = terms.terms_hash(content)
        current = await repo.current_terms(self.session, product.id)
        if current is not None and current.terms_sha256 == digest:
            return terms_read(current), False
        row = Terms(
            id=new_id("trm"),
            product_id=product.id,
            version=await repo.next_version(self.session, Terms, product.id),
            terms_sha256=digest,
            created_by=self._user(),
            created_at=utcnow(),
            **content,
        )
        self.session.add(row)
        await self.session.flush()
        self._audit("terms.created", product, "terms", row.id, {"version": row.version, "terms_sha256": digest})
        return terms_read(row), True

    async def get_terms(self, product_id: str, version: int | None) -> TermsRead:
        product = await self.products.visible(product_id)
        if version is None:
            row = await repo.current_terms(self.session, product.id)
        else:
            row = await repo.terms_at(self.session, product.id, version)
        if row is None:
            raise NotFound(f"{product.id} has no terms{f' version {version}' if version else ''}.")
        return terms_read(row)

    # --- plans ------------------------------------------------------------------------------

    async def create_plan(self, product_id: str, data: PlanCreate) -> PlanRead:
        product = await self.products.owned(product_id)
        _not_retired(product)
        values = _default_interval(msgspec.structs.asdict(data))
        await self._check_plan(values)
        plan = Plan(
            id=new_id("pln"), product_id=product.id, created_at=utcnow(), updated_at=utcnow(), **_plan_columns(values)
        )
        self.session.add(plan)
        await self.session.flush()
        await search.index_product(self.session, product.id)
        self._audit(
            "plan.created",
            product,
            "plan",
            plan.id,
            {"name": plan.name, "kind": plan.kind, "amount": plan.amount, "currency": plan.currency},
        )
        return plan_read(plan)

    async def update_plan(self, plan_id: str, data: PlanUpdate) -> PlanRead:
        plan = await repo.plan(self.session, plan_id, lock=True)
        if plan is None:
            raise NotFound(f"No plan {plan_id}.")
        product = await self.products.owned(plan.product_id)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        if plan.locked_at is not None and set(changes) - PLAN_MUTABLE_WHEN_LOCKED:
            raise Conflict(
                "A licence refers to this plan: only name, active and private_to may change; "
                "a new price is a new plan.",
                code="plan_locked",
                fields=sorted(set(changes) - PLAN_MUTABLE_WHEN_LOCKED),
            )
        merged = _default_interval({**_plan_values(plan), **changes})
        await self._check_plan(merged)
        for name, value in _plan_columns(merged).items():
            setattr(plan, name, value)
        plan.updated_at = utcnow()
        await self.session.flush()
        await search.index_product(self.session, product.id)
        self._audit("plan.updated", product, "plan", plan.id, {"fields": sorted(changes)})
        return plan_read(plan)

    async def get_plan(self, plan_id: str) -> PlanRead:
        plan = await repo.plan(self.session, plan_id)
        if plan is None:
            raise NotFound(f"No plan {plan_id}.")
        product = await self.products.visible(plan.product_id)
        if not self._sees_plan(product, plan):
            raise NotFound(f"No plan {plan_id}.")
        return plan_read(plan)

    async def list_plans(self, product_id: str) -> PlanList:
        product = await self.products.visible(product_id)
        plans = (await repo.plans(self.session, [product.id]))[product.id]
        return PlanList(items=[plan_read(p) for p in plans if self._sees_plan(product, p)])

    def _sees_plan(self, product: Product, plan: Plan) -> bool:
        if self.products.sees_unlisted(product):
            return True
        org = self.caller.org_id if self.caller else None
        return plan.active and (not plan.private_to or org in plan.private_to)

    async def _check_plan(self, v: dict[str, Any]) -> None:
        errors: list[FieldError] = []
        kind, amount = v["kind"], v["amount"]
        if not is_currency(v["currency"]):
            errors.append(FieldError("currency", f"{v['currency']!r} is not an ISO 4217 currency"))
        if kind in ("free", "public_interest") and amount:
            errors.append(FieldError("amount", f"a {kind} plan costs nothing"))
        if kind in ("one_time", "subscription") and amount <= 0:
            errors.append(FieldError("amount", f"a {kind} plan needs a positive amount"))
        if kind in ("subscription", "metered") and not v.get("interval"):
            errors.append(FieldError("interval", f"a {kind} plan bills per month or year"))
        if kind not in ("subscription", "metered") and v.get("interval"):
            errors.append(FieldError("interval", f"a {kind} plan has no billing interval"))
        if kind == "metered" and not v["unit_prices"]:
            errors.append(FieldError("unit_prices", "a metered plan prices at least one usage dimension"))
        if kind != "metered" and (v["unit_prices"] or v["units"] or v["included"]):
            errors.append(FieldError("unit_prices", "unit prices, units and included usage are for metered plans"))
        for field in ("units", "included"):
            stray = set(v[field]) - set(v["unit_prices"])
            if stray:
                errors.append(FieldError(field, f"{', '.join(sorted(stray))} has no unit price"))
        if v["cap_period"] == "billing_period" and kind not in ("subscription", "metered"):
            errors.append(FieldError("cap_period", "only subscription and metered plans have billing periods"))
        if v.get("modes") is not None and len(set(v["modes"])) != len(v["modes"]):
            errors.append(FieldError("modes", "a mode is listed twice"))
        if v["private_to"]:
            found = await repo.orgs(self.session, v["private_to"])
            errors += [
                FieldError(f"private_to.{i}", "not a consumer organisation")
                for i, org in enumerate(v["private_to"])
                if org not in found or found[org].kind != "consumer"
            ]
        if errors:
            raise ValidationFailed.of(errors)

    # --- revenue shares ---------------------------------------------------------------------

    async def put_revenue_share(self, product_id: str, data: RevenueSharePut) -> RevenueShareRead:
        caller = self.caller
        assert caller is not None
        product = await self.products.visible(product_id)
        if not caller.is_operator_with("admin"):
            ensure_member_with(caller, product.owner_org_id, "admin")
        _not_retired(product)
        errors: list[FieldError] = []
        if data.operator_bps + data.fund_bps > 10_000:
            errors.append(FieldError("fund_bps", "operator_bps and fund_bps together exceed 10000"))
        ids = [p.org_id for p in data.providers]
        found = await repo.orgs(self.session, ids)
        for i, org_id in enumerate(ids):
            if org_id in ids[:i]:
                errors.append(FieldError(f"providers.{i}.org_id", "listed twice"))
            elif org_id not in found or found[org_id].kind != "provider":
                errors.append(FieldError(f"providers.{i}.org_id", "not a provider organisation"))
        if errors:
            raise ValidationFailed.of(errors)
        rule = RevenueShareRule(
            id=new_id("rsr"),
            product_id=product.id,
            version=await repo.next_version(self.session, RevenueShareRule, product.id),
            operator_bps=data.operator_bps,
            fund_bps=data.fund_bps,
            providers=[{"org_id": p.org_id, "weight": p.weight} for p in data.providers],
            created_by=caller.user_id,
            created_at=utcnow(),
        )
        self.session.add(rule)
        await self.session.flush()
        self._audit(
            "revenue_share.created",
            product,
            "revenue_share",
            rule.id,
            {
                "version": rule.version,
                "operator_bps": rule.operator_bps,
                "fund_bps": rule.fund_bps,
                "providers": rule.providers,
            },
            extra_orgs=ids,
        )
        return revenue_share_read(rule)

    async def get_revenue_share(self, product_id: str) -> RevenueShareRead:
        caller = self.caller
        product = await self.products.visible(product_id)
        rule = await repo.current_revenue_share(self.session, product.id)
        parties = {product.owner_org_id, *(p["org_id"] for p in (rule.providers if rule else []))}
        if caller is None or not (caller.is_operator or caller.org_id in parties):
            raise Forbidden("Only the owner, the providers in the rule and the operator see the revenue share.")
        if rule is None:
            raise NotFound(f"{product.id} has no revenue-share rule.")
        return revenue_share_read(rule)

    def _user(self) -> str | None:
        return self.caller.user_id if self.caller else None

    def _audit(
        self,
        action: str,
        product: Product,
        subject: str,
        subject_id: str,
        data: dict[str, Any],
        extra_orgs: list[str] | None = None,
    ) -> None:
        audit.record(
            self.session,
            self.caller,
            action,
            subject,
            subject_id,
            [product.owner_org_id, *(extra_orgs or [])],
            {"product_id": product.id, **data},
        )


def _not_retired(product: Product) -> None:
    if product.status == "retired":
        raise Conflict("The product is retired.", code="invalid_transition")


PLAN_FIELDS = (
    "name",
    "kind",
    "currency",
    "amount",
    "interval",
    "term_months",
    "tax_bps",
    "modes",
    "unit_prices",
    "units",
    "included",
    "caps",
    "cap_period",
    "private_to",
    "active",
)


def _default_interval(values: dict[str, Any]) -> dict[str, Any]:
    """A metered plan bills usage per month unless it says otherwise (API.md's metered example omits it)."""
    if values["kind"] == "metered" and values.get("interval") is None:
        return {**values, "interval": "month"}
    return values


def _plan_values(plan: Plan) -> dict[str, Any]:
    return {f: getattr(plan, f) for f in PLAN_FIELDS}


def _plan_columns(values: dict[str, Any]) -> dict[str, Any]:
    plain = msgspec.to_builtins({f: values[f] for f in PLAN_FIELDS})
    if plain["kind"] == "metered":
        plain["units"] = {d: plain["units"].get(d, 1) for d in plain["unit_prices"]}
    return plain
