"""The demo's licences: one approved, active licence per grade for the demo consumers.

Each goes the whole way through circulation — application, eligibility, the review tracks the
grade requires, decided by the demo reviewers, and acceptance under the pinned terms hash. The
consumer's admin is named as an analyst too, so the printed admin key can use the data.

Of the two priced licences the demo pays one itself (``lode demo``, through simulated Stripe when
no key is set) and leaves the other awaiting payment, for a newcomer to pay on the checkout page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access import repository as access_repo
from catalog.access.licences import LicenceService
from catalog.access.models import Licence
from catalog.access.schemas import ApplicationCreate, Decision
from catalog.access.service import ApplicationService
from catalog.db import utcnow
from catalog.demo import catalog as demo
from catalog.products import repository as products_repo

if TYPE_CHECKING:
    from catalog.demo.seed import People

REVIEWERS = {"ethics": "ethics", "security": "security", "compliance": "compliance", "operator": "admin"}


class DemoLicence(NamedTuple):
    consumer: str  # org slug
    product: str  # product slug
    plan: str  # plan name
    category: str
    diseases: tuple[str, ...]
    commercial: bool
    territory: str
    summary: str
    paid_by_demo: bool = True  # False: a priced licence left for a newcomer to pay


LICENCES: tuple[DemoLicence, ...] = (
    DemoLicence("shanghai-pharma-rd", "open-checkup-sample", "Open access", "HMB", (), True, "CN",
                "Reference ranges of routine check-up results in Shanghai adults"),
    DemoLicence("rheinpharma", "open-checkup-sample", "Open access", "HMB", (), True, "DE",
                "Comparing check-up reference ranges between Shanghai and Germany"),
    DemoLicence("shanghai-pharma-rd", "checkup-cohort", "Trial", "HMB", (), True, "CN",
                "Feasibility of a metabolic-risk screening study"),
    DemoLicence("fudan-sph", "t2d-ehr-cohort", "Academic public-interest licence", "DS", ("E11",), False, "CN",
                "A study of glycaemic control in type 2 diabetes care"),
    DemoLicence("fudan-sph", "stroke-registry", "Public-interest research", "DS", ("I63",), False, "CN",
                "Regional differences in ischaemic stroke outcomes"),
    DemoLicence("fudan-sph", "parkinson-genetic-cohort", "Public-interest research", "DS", ("G20",), False, "CN",
                "Progression patterns in Parkinson's disease"),
    # A priced licence: accepted here, paid through (simulated) Stripe by the composition root.
    DemoLicence("shanghai-pharma-rd", "t2d-ehr-cohort", "Annual research licence", "DS", ("E11",), True, "CN",
                "Real-world comparative effectiveness of SGLT2 inhibitors"),
    # Another, accepted and left awaiting payment: the README's tour pays it on the checkout page.
    DemoLicence("shanghai-pharma-rd", "risk-factor-survey", "Research licence", "HMB", (), True, "CN",
                "Cardiovascular risk factors for a hypertension trial's site selection", paid_by_demo=False),
)  # fmt: skip


# The pharma company's one-month trial, ending in six days: its 7-day reminder is in the company's
# feed (and would be at its webhooks), and the trial is there to renew.
NEAR_EXPIRY = ("shanghai-pharma-rd", "checkup-cohort")
NEAR_EXPIRY_DAYS = 6


async def bring_near_expiry(session: AsyncSession, people: People) -> dict[str, Any] | None:
    """Move the NEAR_EXPIRY licence's term so it ends in six days, once (a later seed leaves it be)."""
    consumer, slug = NEAR_EXPIRY
    product = await products_repo.get_by_id_or_slug(session, slug)
    assert product is not None
    licence = await access_repo.licence_of(session, people.org_ids[consumer], product.id)
    if licence is None:
        return None
    ends_on = utcnow().date() + timedelta(days=NEAR_EXPIRY_DAYS)
    if licence.ends_on > ends_on and licence.renews_licence_id is None:
        licence.starts_on, licence.ends_on = ends_on - (licence.ends_on - licence.starts_on), ends_on
        await session.flush()
    return {"licence_id": licence.id, "consumer": consumer, "product": slug, "ends_on": licence.ends_on.isoformat()}


def paid_by_demo(made: dict[str, Any]) -> bool:
    """Whether the demo pays for this licence itself (``made`` as ``ensure_licence`` answers it)."""
    return next(s.paid_by_demo for s in LICENCES if (s.consumer, s.product) == (made["consumer"], made["product"]))


async def ensure_licence(session: AsyncSession, people: People, spec: DemoLicence) -> dict[str, Any]:
    consumer_id = people.org_ids[spec.consumer]
    product = await products_repo.get_by_id_or_slug(session, spec.product)
    assert product is not None, spec.product
    existing = await access_repo.licence_of(session, consumer_id, product.id)
    if existing is None:
        existing = await _approve(session, people, spec, product.id)
    return {
        "licence_id": existing.id,
        "consumer": spec.consumer,
        "product": spec.product,
        "grade": product.grade,
        "status": existing.status,
    }


async def _approve(session: AsyncSession, people: People, spec: DemoLicence, product_id: str) -> Licence:
    plans = (await products_repo.plans(session, [product_id]))[product_id]
    plan = next(p for p in plans if p.name == spec.plan)
    buyer = people.principal(spec.consumer, "buyer")
    org = demo.org(spec.consumer)
    analysts = [
        people.users[(spec.consumer, org.admin.email)],
        people.users[(spec.consumer, org.member("analyst").email)],
    ]
    body = msgspec.convert({
        "product_id": product_id, "plan_id": plan.id,
        "purpose": {"category": spec.category, "commercial": spec.commercial, "disease_codes": list(spec.diseases),
                    "description": spec.summary, "territory": spec.territory},
        "project": {"title": f"{spec.summary} (internal project)", "summary": spec.summary,
                    "public_summary": spec.summary},
        "analysts": analysts,
        "ethics_approval": {"committee": f"{org.institution} IRB", "reference": "DEMO-2026-01",
                            "approved_on": "2026-01-05", "expires_on": "2028-01-04"},
        "requested_months": min(12, plan.term_months or 12),
    }, ApplicationCreate)  # fmt: skip
    applications = ApplicationService(session, buyer)
    app = await applications.submit((await applications.create(body)).id)
    owner = demo.product(spec.product).owner
    for track in [t.track for t in app.tracks if t.status == "pending"]:
        if track == "provider":
            reviewer = people.principal(owner, "reviewer")
        else:
            reviewer = people.principal("operator", REVIEWERS[track])
        app = await ApplicationService(session, reviewer).decide(app.id, track, Decision(decision="approve"))
    assert app.licence_id is not None
    licences = LicenceService(session, buyer)
    pinned = await licences.get(app.licence_id)
    await licences.accept(app.licence_id, pinned.terms_sha256)
    licence = await session.get(Licence, app.licence_id)
    assert licence is not None
    return licence
