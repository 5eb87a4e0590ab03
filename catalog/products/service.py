"""Products: creation with provenance and legal basis, edits, the curated lifecycle, and reads.

Lifecycle: ``draft → in_review → listed ⇄ suspended → retired``; the curator returns a product
under review to ``draft`` with a comment. Listing needs the roles ``policy.py`` names for the
grade (the ``security`` role too at L4/L5); a grade only ever tightens after listing (``regrade``).
A suspension by the operator is lifted only by the operator. Every change is audited and
re-indexed for search in the same transaction.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit, policy
from catalog.auth import Principal, ensure_member_with
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, Forbidden, NotFound, Unprocessable, ValidationFailed
from catalog.geo import is_country, is_region
from catalog.ids import new_id
from catalog.notifications import audiences
from catalog.notifications import events as notices
from catalog.orgs import repository as orgs_repo
from catalog.orgs.service import slugify
from catalog.products import dictionary, search
from catalog.products import repository as repo
from catalog.products.models import Plan, Product, ProductSource
from catalog.products.reads import plan_read, release_read, summary_fields, terms_read
from catalog.products.schemas import (
    DESCRIPTIVE_FIELDS,
    Facets,
    ProductCreate,
    ProductList,
    ProductRead,
    ProductRegrade,
    ProductReview,
    ProductSummary,
    ProductUpdate,
    SourceRead,
)

TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "submit": (frozenset({"draft"}), "in_review"),
    "list": (frozenset({"in_review"}), "listed"),
    "return": (frozenset({"in_review"}), "draft"),
    "suspend": (frozenset({"listed"}), "suspended"),
    "reinstate": (frozenset({"suspended"}), "listed"),
    "retire": (frozenset({"draft", "in_review", "listed", "suspended"}), "retired"),
}
PAST = {
    "submit": "submitted",
    "list": "listed",
    "return": "returned",
    "suspend": "suspended",
    "reinstate": "reinstated",
    "retire": "retired",
}
OPERATOR_STATUS_ROLES = ("curator", "compliance", "security")
OWNER_ROLES = ("publisher",)


class ProductService:
    def __init__(self, session: AsyncSession, caller: Principal | None) -> None:
        self.session = session
        self.caller = caller

    # --- access -----------------------------------------------------------------------------

    def _is_owner(self, product: Product) -> bool:
        return self.caller is not None and self.caller.org_id == product.owner_org_id

    def sees_unlisted(self, product: Product) -> bool:
        return self.caller is not None and (self.caller.is_operator or self._is_owner(product))

    async def visible(self, key: str) -> Product:
        """The product if this caller may see it: listed ones to anyone, others to owner and operator."""
        product = await repo.get_by_id_or_slug(self.session, key)
        if product is None or (product.status != "listed" and not self.sees_unlisted(product)):
            raise NotFound(f"No product {key}.")
        return product

    async def owned(self, product_id: str) -> Product:
        product = await self.visible(product_id)
        ensure_member_with(self.caller, product.owner_org_id, *OWNER_ROLES)
        return product

    # --- create and edit --------------------------------------------------------------------

    async def create(self, data: ProductCreate) -> ProductRead:
        caller = self.caller
        assert caller is not None
        _refuse_uncirculable(data.legal_basis, data.identified, data.core_data)
        owner = (await repo.orgs(self.session, [caller.org_id]))[caller.org_id]
        jurisdiction = data.jurisdiction or owner.jurisdiction
        await self._check_fields(jurisdiction, data.spatial_coverage, data.temporal_coverage, data.sources)
        product_id = new_id("prd")
        now = utcnow()
        product = Product(
            id=product_id,
            slug=await self._slug(data),
            owner_org_id=caller.org_id,
            status="draft",
            grade=data.grade,
            title=data.title,
            summary=data.summary,
            description=data.description,
            i18n=_plain(data.i18n),
            keywords=list(data.keywords),
            data_types=list(data.data_types),
            therapeutic_areas=list(data.therapeutic_areas),
            standards=list(data.standards),
            legal_basis=data.legal_basis,
            identified=False,
            core_data=False,
            jurisdiction=jurisdiction,
            population_size=data.population_size,
            record_count=data.record_count,
            temporal_coverage=_plain(data.temporal_coverage),
            spatial_coverage=list(data.spatial_coverage),
            update_frequency=data.update_frequency,
            quality=_plain(data.quality),
            dictionary=dictionary.validate(data.dictionary) if data.dictionary else None,
            created_by=caller.user_id,
            created_at=now,
            updated_at=now,
        )
        self.session.add(product)
        await self.session.flush()
        await repo.replace_sources(self.session, product_id, _sources(product_id, data.sources))
        await self.session.flush()
        await search.index_product(self.session, product_id)
        self._audit("product.created", product, {"grade": data.grade, "title": data.title})
        return await self.read(product)

    async def update(self, product_id: str, data: ProductUpdate) -> ProductRead:
        product = await self.owned(product_id)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        if not changes:
            return await self.read(product)
        if product.status == "retired":
            raise Conflict("A retired product cannot be edited.", code="invalid_transition")
        if product.status != "draft":
            frozen = sorted(set(changes) - DESCRIPTIVE_FIELDS)
            if frozen:
                raise Conflict(
                    f"Once submitted, only descriptive fields may change; not {', '.join(frozen)}"
                    + (" (the operator may regrade to a stricter grade)" if "grade" in frozen else "")
                    + ".",
                    code="not_editable",
                    fields=frozen,
                )
        _refuse_uncirculable(
            changes.get("legal_basis", product.legal_basis),
            changes.get("identified", product.identified),
            changes.get("core_data", product.core_data),
        )
        await self._check_fields(
            changes.get("jurisdiction", product.jurisdiction),
            changes.get("spatial_coverage", []),
            changes.get("temporal_coverage"),
            changes.get("sources"),
        )
        for name, value in changes.items():
            if name == "sources":
                await repo.replace_sources(self.session, product.id, _sources(product.id, value))
            elif name == "dictionary":
                product.dictionary = dictionary.validate(value) if value else None
            elif name not in ("identified", "core_data"):
                setattr(product, name, _plain(value))
        product.updated_at = utcnow()
        await self.session.flush()
        await search.index_product(self.session, product.id)
        self._audit("product.updated", product, {"fields": sorted(changes), "status": product.status})
        return await self.read(product)

    async def _slug(self, data: ProductCreate) -> str:
        if data.slug is not None:
            if await repo.slug_taken(self.session, data.slug):
                raise Conflict(f"The slug {data.slug!r} is taken.", code="slug_taken")
            return data.slug
        english = (data.i18n or {}).get("en")
        base = slugify((english.title if english and english.title else None) or data.title)[:80] or "product"
        slug, n = base, 1
        while await repo.slug_taken(self.session, slug):
            n += 1
            slug = f"{base}-{n}"
        return slug

    async def _check_fields(self, jurisdiction: str, regions: list[str], coverage: Any, sources: Any) -> None:
        errors: list[FieldError] = []
        if not is_country(jurisdiction):
            errors.append(FieldError("jurisdiction", f"{jurisdiction!r} is not an ISO 3166-1 alpha-2 code"))
        errors += [
            FieldError(f"spatial_coverage.{i}", f"{r!r} is not an ISO 3166 code")
            for i, r in enumerate(regions)
            if not is_region(r)
        ]
        if coverage is not None and coverage.start > coverage.end:
            errors.append(FieldError("temporal_coverage.start", "start is after end"))
        if sources is not None:
            total = math.fsum(s.share for s in sources)
            if abs(total - 1) > 1e-9:
                errors.append(FieldError("sources", f"shares must sum to 1 (they sum to {total:.12g})"))
            ids = [s.org_id for s in sources if s.org_id]
            found = await repo.orgs(self.session, ids)
            errors += [
                FieldError(f"sources.{i}.org_id", "not a provider organisation")
                for i, s in enumerate(sources)
                if s.org_id and (s.org_id not in found or found[s.org_id].kind != "provider")
            ]
        if errors:
            raise ValidationFailed.of(errors)

    # --- lifecycle --------------------------------------------------------------------------

    async def _transition(self, product: Product, action: str, reason: str | None = None) -> None:
        allowed_from, to = TRANSITIONS[action]
        if product.status not in allowed_from:
            raise Conflict(
                f"Cannot {action} a product that is {product.status}.",
                code="invalid_transition",
                product_status=product.status,
            )
        before = product.status
        product.status = to
        product.status_reason = reason
        product.updated_at = utcnow()
        if to == "listed":
            product.listed_at = product.listed_at or product.updated_at
        await self.session.flush()
        await search.index_product(self.session, product.id)
        self._audit(f"product.{PAST[action]}", product, {"from": before, "to": to, "reason": reason})
        if to in ("listed", "suspended"):
            await self._tell(product, f"product.{to}", before, reason)

    async def _tell(self, product: Product, type: str, before: str, reason: str | None) -> None:
        """A listed product is public: its parties hear of it. A suspended one only its owner may read,
        with the reason; its live licensees, who lose access, are told that much and no more."""
        subject, data = ("product", product.id), {"product_id": product.id, "slug": product.slug, "from": before}
        if type == "product.listed":
            await notices.publish(self.session, type, subject, await repo.parties(self.session, product), data)
            return
        await notices.publish(self.session, type, subject, [product.owner_org_id], {**data, "reason": reason})
        licensees = await audiences.licensees(self.session, product.id)
        await notices.publish(self.session, type, subject, licensees, data)

    async def submit(self, product_id: str) -> ProductRead:
        product = await self.owned(product_id)
        missing = []
        if await repo.current_terms(self.session, product.id) is None:
            missing.append("terms")
        if not any(p.active for p in (await repo.plans(self.session, [product.id]))[product.id]):
            missing.append("an active plan")
        if await repo.current_revenue_share(self.session, product.id) is None:
            missing.append("a revenue-share rule")
        if missing and product.status == "draft":
            raise Conflict(
                f"Before review the product needs {', '.join(missing)}.", code="incomplete_product", missing=missing
            )
        await self._transition(product, "submit")
        return await self.read(product)

    async def review(self, product_id: str, data: ProductReview) -> ProductRead:
        caller = self.caller
        assert caller is not None
        product = await self.visible(product_id)
        if data.decision == "return":
            if not data.comment:
                raise ValidationFailed.field("comment", "a comment is required when returning a product")
            await self._transition(product, "return", data.comment)
            product.review_comment = data.comment
        else:
            needed = policy.rule(product.grade).listing_roles
            lacking = [r for r in needed if not caller.acts_as(r)]
            if lacking:
                raise Forbidden(
                    f"Listing a {product.grade} product also needs the {', '.join(lacking)} role.",
                    code="listing_role_required",
                    roles=list(needed),
                )
            short = policy.listing_quality_refusal(product.grade, product.measured_quality)
            if short:
                raise Unprocessable(short, code="quality_below_minimum", measured=product.measured_quality)
            product.review_comment = data.comment
            await self._transition(product, "list", data.comment)
        return await self.read(product)

    async def regrade(self, product_id: str, data: ProductRegrade) -> ProductRead:
        product = await self.visible(product_id)
        if product.status == "retired":
            raise Conflict("A retired product cannot be regraded.", code="invalid_transition")
        if not policy.is_stricter(data.grade, product.grade):
            raise Unprocessable(
                f"{data.grade} is not stricter than {product.grade}; a grade only tightens.",
                code="regrade_not_stricter",
            )
        before, product.grade = product.grade, data.grade
        product.updated_at = utcnow()
        await self.session.flush()
        await search.index_product(self.session, product.id)
        self._audit("product.regraded", product, {"from": before, "to": data.grade, "reason": data.reason})
        return await self.read(product)

    async def change_status(self, product_id: str, action: str, reason: str) -> ProductRead:
        """suspend / reinstate / retire, by the operator or the owner (not lifting the operator's hold)."""
        caller = self.caller
        assert caller is not None
        product = await self.visible(product_id)
        by_operator = caller.is_operator_with(*OPERATOR_STATUS_ROLES)
        if not by_operator:
            ensure_member_with(caller, product.owner_org_id, "publisher")
        if action == "reinstate" and product.suspended_by == "operator" and not by_operator:
            raise Forbidden("Only the operator may lift the operator's suspension.", code="operator_suspension")
        await self._transition(product, action, reason)
        if action == "suspend":
            product.suspended_by = "operator" if by_operator else "provider"
        elif action == "reinstate":
            product.suspended_by = None
        await self.session.flush()
        return await self.read(product)

    # --- reads ------------------------------------------------------------------------------

    async def get(self, key: str) -> ProductRead:
        return await self.read(await self.visible(key))

    async def viewed(self, key: str) -> tuple[ProductRead, frozenset[str]]:
        """The product as this caller sees it, and the organisations whose members see it otherwise
        than the public does (its owner, and those a plan is private to): whom a cached public view
        may not be served to."""
        product = await self.visible(key)
        read, plans = await self._read(product)
        return read, frozenset({product.owner_org_id, *(org for p in plans for org in p.private_to)})

    async def read(self, product: Product) -> ProductRead:
        return (await self._read(product))[0]

    async def _read(self, product: Product) -> tuple[ProductRead, list[Plan]]:
        sources = await repo.sources(self.session, product.id)
        terms = await repo.current_terms(self.session, product.id)
        plans = (await repo.plans(self.session, [product.id]))[product.id]
        releases = await repo.published_releases(self.session, product.id)
        files = await repo.files(self.session, [r.id for r in releases])
        sees_all = self.sees_unlisted(product)
        shown = [p for p in plans if sees_all or (p.active and self._may_see_plan(p))]
        owner = await orgs_repo.get_org(self.session, product.owner_org_id)
        assert owner is not None
        read = ProductRead(
            **summary_fields(product, plans, owner),
            description=product.description,
            legal_basis=product.legal_basis,
            identified=product.identified,
            core_data=product.core_data,
            temporal_coverage=product.temporal_coverage,
            spatial_coverage=list(product.spatial_coverage),
            update_frequency=product.update_frequency,
            quality=product.quality,
            measured_quality=product.measured_quality,
            sources=[msgspec.convert(s, SourceRead, from_attributes=True) for s in sources],
            dictionary=product.dictionary,
            review_comment=product.review_comment,
            suspended_by=product.suspended_by,
            status_reason=product.status_reason,
            terms=terms_read(terms) if terms else None,
            plans=[plan_read(p) for p in shown],
            releases=[release_read(r, files[r.id]) for r in releases],
        )
        return read, plans

    def _may_see_plan(self, plan: Plan) -> bool:
        return not plan.private_to or (self.caller is not None and self.caller.org_id in plan.private_to)

    async def list(self, query: search.SearchQuery) -> ProductList:
        result = await search.search(self.session, query)
        products = await repo.get_many(self.session, result.ids)
        plans = await repo.plans(self.session, result.ids)
        facets = {name: result.facets.get(name, {}) for name in search.FACETS}
        named = {p.owner_org_id for p in products.values()} | set(facets["provider"])
        orgs = await orgs_repo.get_orgs(self.session, sorted(named))
        items = [
            ProductSummary(**summary_fields(products[i], plans[i], orgs[products[i].owner_org_id]))
            for i in result.ids
            if i in products
        ]
        return ProductList(
            items=items,
            facets=Facets(**facets),
            provider_names={org_id: orgs[org_id].name for org_id in facets["provider"] if org_id in orgs},
            total=result.total,
            total_is_lower_bound=result.total_is_lower_bound,
            next_cursor=result.next_cursor,
        )

    def _audit(self, action: str, product: Product, data: dict[str, Any]) -> None:
        audit.record(self.session, self.caller, action, "product", product.id, [product.owner_org_id], data)


def search_scope(caller: Principal | None, statuses: list[str] | None) -> tuple[tuple[str, ...], str | None]:
    """Who may ask for which statuses: anyone listed; owners their own; the operator all. Listed
    products are the same list for every caller, which is what lets that list be cached for all."""
    if not statuses or statuses == ["listed"]:
        return ("listed",), None
    if caller is None:
        raise Forbidden("Only owners and the operator see unlisted products.")
    return tuple(statuses), None if caller.is_operator else caller.org_id


def _refuse_uncirculable(legal_basis: str | None, identified: bool, core_data: bool) -> None:
    reasons = []
    if legal_basis is None:
        reasons.append("it declares no legal basis")
    if identified:
        reasons.append("it holds identified records")
    if core_data:
        reasons.append("it is core data")
    if reasons:
        raise Unprocessable(
            f"This product cannot circulate: {'; '.join(reasons)}.", code="not_circulable", reasons=reasons
        )


def _sources(product_id: str, sources: Any) -> list[ProductSource]:
    return [
        ProductSource(
            product_id=product_id,
            position=i,
            institution=s.institution,
            org_id=s.org_id,
            system=s.system,
            share=s.share,
        )
        for i, s in enumerate(sources)
    ]


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value) if value is not None else None
