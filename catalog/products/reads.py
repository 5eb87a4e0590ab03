"""Read bodies of the catalogue, built from ORM rows (ORM objects never leave the services)."""

from __future__ import annotations

from typing import Any

import msgspec

from catalog.orgs.models import Organisation
from catalog.products.models import Plan, Product, Release, ReleaseFile, RevenueShareRule, Terms
from catalog.products.offer_schemas import RevenueShareRead
from catalog.products.schemas import OrgRef, PlanRead, ReleaseFileRead, ReleaseRead, TermsRead


def org_ref(org: Organisation) -> OrgRef:
    return OrgRef(id=org.id, name=org.name, slug=org.slug)


def summary_fields(product: Product, plans: list[Plan], owner: Organisation) -> dict[str, Any]:
    kinds = sorted({p.kind for p in plans if p.active and not p.private_to})
    return {
        "id": product.id,
        "slug": product.slug,
        "status": product.status,
        "grade": product.grade,
        "title": product.title,
        "summary": product.summary,
        "i18n": product.i18n,
        "keywords": list(product.keywords),
        "data_types": list(product.data_types),
        "therapeutic_areas": list(product.therapeutic_areas),
        "standards": list(product.standards),
        "jurisdiction": product.jurisdiction,
        "owner_org_id": product.owner_org_id,
        "owner_org": org_ref(owner),
        "pricing": kinds,
        "population_size": product.population_size,
        "record_count": product.record_count,
        "listed_at": product.listed_at,
        "created_at": product.created_at,
        "updated_at": product.updated_at,
    }


def terms_read(terms: Terms) -> TermsRead:
    return msgspec.convert(terms, TermsRead, from_attributes=True)


def plan_read(plan: Plan) -> PlanRead:
    return PlanRead(
        id=plan.id,
        product_id=plan.product_id,
        name=plan.name,
        kind=plan.kind,
        currency=plan.currency,
        amount=plan.amount,
        interval=plan.interval,
        term_months=plan.term_months,
        tax_bps=plan.tax_bps,
        modes=plan.modes,
        unit_prices=plan.unit_prices,
        units=plan.units,
        included=plan.included,
        caps=plan.caps,
        cap_period=plan.cap_period,
        private_to=list(plan.private_to),
        active=plan.active,
        locked=plan.locked_at is not None,
        created_at=plan.created_at,
    )


def release_read(release: Release, files: list[ReleaseFile]) -> ReleaseRead:
    return ReleaseRead(
        id=release.id,
        product_id=release.product_id,
        version=release.version,
        notes=release.notes,
        status=release.status,
        dictionary=release.dictionary,
        files=[
            ReleaseFileRead(
                name=f.name,
                table=f.table_name,
                format=f.format,
                sha256=f.sha256,
                bytes=f.bytes,
                rows=f.rows,
                columns=list(f.columns),
                created_at=f.created_at,
            )
            for f in files
        ],
        tables=release.tables,
        quality=(release.quality or {}).get("summary"),
        published_at=release.published_at,
        withdrawn_at=release.withdrawn_at,
        withdraw_reason=release.withdraw_reason,
        created_at=release.created_at,
    )


def revenue_share_read(rule: RevenueShareRule) -> RevenueShareRead:
    return msgspec.convert(rule, RevenueShareRead, from_attributes=True)
