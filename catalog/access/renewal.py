"""Renewal: a new licence of the same application, following on from the one it renews.

A live licence (active or suspended) may be renewed before its end, an expired one up to 30 days
after it; the renewal starts the day after the old end, or today once that has passed, and the
old licence runs to its end untouched. A licence is renewed at most once (``renews_licence_id``
is unique, so two racing requests leave one renewal). The renewal pins the product's current
terms and revenue-share rule and the old licence's plan, which must still be offered (409
``plan_unavailable``); the application must still be eligible (409 ``renewal_blocked`` lists the
blockers, e.g. an ethics approval a stricter grade now requires).

Unchanged terms: the renewal is accepted at once — a free plan goes active, a priced one awaits
payment through checkout. Changed terms: it awaits acceptance of the new hash. The application's
approvals are kept unless the product now requires review tracks it was not approved on: then
only those reopen (``in_review``) and their approval issues the renewal (``review.approve``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access import repository as repo
from catalog.access import review
from catalog.access.holds import audit_licence
from catalog.access.licences import LIVE, LicenceService, accept_terms, issue_licence
from catalog.access.models import Application, Licence
from catalog.access.schemas import RenewalRead
from catalog.access.service import ApplicationService
from catalog.auth import Principal, ensure_member_with
from catalog.db import utcnow
from catalog.errors import Conflict
from catalog.products import repository as products_repo
from catalog.products.models import Product

GRACE = timedelta(days=30)  # an expired licence may still be renewed this long after its end


class RenewalService:
    def __init__(self, session: AsyncSession, caller: Principal) -> None:
        self.session = session
        self.caller = caller

    async def renew(self, licence_id: str) -> RenewalRead:
        """Renew a licence for its consumer's admin or buyers (another organisation: 404)."""
        licence = await repo.party_licence(self.session, self.caller, licence_id, lock=True)
        ensure_member_with(self.caller, licence.consumer_org_id, "buyer")
        renewal = await repo.renewal_of(self.session, licence.id)
        if renewal is not None:
            raise Conflict(
                f"The licence is already renewed by {renewal.id}.", code="already_renewed", renewal_id=renewal.id
            )
        _ensure_renewable(licence)
        plan = await products_repo.plan(self.session, licence.plan_id)
        if plan is not None and plan.kind == "subscription":
            raise Conflict(
                "A subscription renews itself while it is paid; there is nothing to renew.", code="renewal_not_needed"
            )
        app = await repo.application(self.session, licence.application_id, lock=True)
        assert app is not None
        if app.renewing_licence_id is not None:
            raise Conflict(
                "A renewal of this application's licence is under review.",
                code="renewal_in_review",
                application_id=app.id,
            )
        product = await products_repo.get(self.session, licence.product_id)
        assert product is not None
        await self._ensure_eligible(app, product, licence)
        missing = await review.missing_tracks(self.session, app, product)
        if missing:
            reopened = await review.reopen_for_renewal(self.session, self.caller, app, product, licence)
            await audit_licence(
                self.session,
                self.caller,
                "licence.renewal_requested",
                licence,
                {"application_id": app.id, "reopened_tracks": reopened},
            )
            return RenewalRead(status="in_review", licence=None, application_id=app.id, reopened_tracks=reopened)
        renewal = await offer_renewal(self.session, self.caller, app, product, licence)
        read = await LicenceService(self.session, self.caller).read(renewal)
        return RenewalRead(status="offered", licence=read, application_id=app.id, reopened_tracks=[])

    async def _ensure_eligible(self, app: Application, product: Product, licence: Licence) -> None:
        if product.status != "listed":
            raise Conflict("The product is no longer listed.", code="product_not_available")
        applications = ApplicationService(self.session, self.caller)
        blockers = await applications.blockers_of(app, product, licence.plan_id, licence.ethics_expires_on)
        if any(b.code == "plan_not_available" for b in blockers):
            raise Conflict("The licence's plan is no longer offered to you.", code="plan_unavailable")
        if blockers:
            raise Conflict(
                "The application is no longer eligible: " + "; ".join(b.message for b in blockers),
                code="renewal_blocked",
                blockers=[{"code": b.code, "message": b.message, "field": b.field} for b in blockers],
            )


async def offer_renewal(
    session: AsyncSession, caller: Principal, app: Application, product: Product, licence: Licence
) -> Licence:
    """Issue the renewal of ``licence`` under the application's approvals; under unchanged terms the
    caller's request is its acceptance."""
    conditions = await review.approved_conditions(session, app, product)
    renewal = await issue_licence(session, caller, app, product, conditions, renews=licence)
    if renewal.terms_sha256 == licence.terms_sha256:
        await accept_terms(session, caller, renewal)
    return renewal


def _ensure_renewable(licence: Licence) -> None:
    today = utcnow().date()
    if licence.status in LIVE and today <= licence.ends_on:
        return
    if licence.status in (*LIVE, "expired"):
        last = licence.ends_on + GRACE
        if today <= last:
            return
        raise Conflict(
            f"The licence ended on {licence.ends_on.isoformat()}; it could be renewed until {last.isoformat()}.",
            code="not_renewable",
            ends_on=licence.ends_on.isoformat(),
        )
    raise Conflict(f"A licence that is {licence.status} cannot be renewed.", code="not_renewable")
