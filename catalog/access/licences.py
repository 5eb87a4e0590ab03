"""Licences: issued on approval (or renewal), accepted under the pinned terms hash, held, revoked, swept.

``pending_acceptance → declined | pending_payment | active``; ``pending_payment → active |
cancelled`` (unpaid after 30 days); ``active ⇄ suspended``; ``active | suspended → expired |
revoked``. A licence is suspended exactly while it carries a hold, and each hold records its cause
(``source``), so lifting one never lifts another. Billing activates a paid licence with
``activate_paid`` and holds one for non-payment with ``add_hold`` — circulation owns the states.

Every licence is created by ``issue_licence`` — a renewal too (``renews``: the licence it renews,
whose end it follows; ``renewal.py`` decides when one may be had) — and goes live through
``accept_terms`` (free plans) or ``activate_paid`` (priced ones). The sweep expires ended terms,
except a subscription's: an active one with no hold runs on, a term at a time (``licence.extended``).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit, outbox, policy
from catalog.access import blocklists, tell
from catalog.access import repository as repo
from catalog.access.holds import add_hold, audit_licence, inherit_holds, lift_hold
from catalog.access.models import Application, Licence, LicenceHold, LicenceParty
from catalog.access.schemas import (
    EthicsApproval,
    HoldRead,
    LicenceCondition,
    LicenceList,
    LicenceRead,
)
from catalog.auth import Principal, ensure_member_with, ensure_org_admin
from catalog.db import utcnow
from catalog.errors import Conflict, Forbidden
from catalog.ids import new_id
from catalog.pagination import PageRequest
from catalog.products import repository as products_repo
from catalog.products.models import Plan, Product
from catalog.products.terms import removed_modes

PAYMENT_WINDOW = timedelta(days=30)
FREE_KINDS = ("free", "public_interest")
LIVE = ("active", "suspended")
OPEN = ("pending_acceptance", "pending_payment", "active", "suspended")
OPERATOR_ROLES = ("compliance", "security")
PROVIDER_ROLES = ("reviewer", "publisher")


def add_months(start: date, months: int) -> date:
    month = start.month - 1 + months
    year, month = start.year + month // 12, month % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def term_months(app: Application, plan: Plan) -> int:
    """A licence's term: the months requested, at most the plan's term."""
    return min(app.requested_months, plan.term_months or app.requested_months)


def renewal_start(renewed: Licence, today: date) -> date:
    """A renewal follows on the day after the end it renews, or starts today once that has passed."""
    return renewed.ends_on + timedelta(days=1) if today <= renewed.ends_on else today


async def issue_licence(
    session: AsyncSession,
    actor: Any,
    app: Application,
    product: Product,
    conditions: Sequence[dict[str, Any]] = (),
    *,
    renews: Licence | None = None,
) -> Licence:
    """The licence an approval grants — or, with ``renews``, the renewal of that licence, on its
    plan: everything else pinned as it stands at this moment (terms, revenue-share rule, modes,
    caps), with the reviewers' conditions (``{track, text, decided_by, decided_at}``) it is granted
    under. A renewal keeps the ethics approval its predecessor carries and the holds the operator
    or the provider put on it."""
    terms = await products_repo.current_terms(session, product.id)
    rule = await products_repo.current_revenue_share(session, product.id)
    plan = await products_repo.plan(session, renews.plan_id if renews else app.plan_id)
    if terms is None or rule is None or plan is None:
        raise Conflict("The product lacks terms, a revenue-share rule or the plan.", code="product_not_available")
    today = utcnow().date()
    starts_on = renewal_start(renews, today) if renews else max(app.requested_start or today, today)
    months = term_months(app, plan)
    ethics_expires_on = date.fromisoformat(app.ethics_approval["expires_on"]) if app.ethics_approval else None
    if renews is not None and renews.ethics_expires_on is not None:
        ethics_expires_on = max(renews.ethics_expires_on, ethics_expires_on or renews.ethics_expires_on)
    now = utcnow()
    licence = Licence(
        id=new_id("lic"),
        application_id=app.id,
        renews_licence_id=renews.id if renews else None,
        consumer_org_id=app.consumer_org_id,
        product_id=product.id,
        owner_org_id=product.owner_org_id,
        plan_id=plan.id,
        terms_id=terms.id,
        terms_version=terms.version,
        terms_sha256=terms.terms_sha256,
        revenue_share_id=rule.id,
        revenue_share_version=rule.version,
        purpose=app.purpose,
        public_summary=app.project.get("public_summary"),
        analysts=list(app.analysts),
        starts_on=starts_on,
        ends_on=add_months(starts_on, months) - timedelta(days=1),
        caps=dict(plan.caps),
        cap_period=plan.cap_period,
        modes=policy.licensable_modes(product.grade, plan.modes, removed_modes(terms.local_conditions)),
        conditions=[{**c, "decided_at": c["decided_at"].isoformat()} for c in conditions],
        status="pending_acceptance",
        ethics_expires_on=ethics_expires_on,
        created_at=now,
        updated_at=now,
    )
    session.add(licence)
    await session.flush()
    parties = {(app.consumer_org_id, "consumer"), (product.owner_org_id, "owner")}
    parties |= {(p["org_id"], "provider") for p in rule.providers}
    session.add_all(LicenceParty(licence_id=licence.id, org_id=o, role=r) for o, r in sorted(parties))
    await products_repo.lock_plan(session, plan.id, now)
    await session.flush()
    audit.record(
        session,
        actor,
        "licence.issued",
        "licence",
        licence.id,
        [o for o, _ in parties],
        {
            "application_id": app.id,
            "plan_id": plan.id,
            "terms_sha256": terms.terms_sha256,
            "starts_on": starts_on,
            "ends_on": licence.ends_on,
            "modes": licence.modes,
            "conditions": licence.conditions,
            "renews_licence_id": licence.renews_licence_id,
        },
    )
    if renews is not None:
        await inherit_holds(session, renews, licence)
        await audit_licence(
            session,
            actor,
            "licence.renewal_offered",
            renews,
            {"renewal_id": licence.id, "terms_sha256": licence.terms_sha256, "starts_on": starts_on},
        )
    await tell.licence(
        session,
        "licence.offered",
        licence,
        {
            "application_id": app.id,
            "terms_sha256": licence.terms_sha256,
            "renews_licence_id": licence.renews_licence_id,
        },
    )
    return licence


async def accept_terms(session: AsyncSession, actor: Any, licence: Licence) -> None:
    """Accept a ``pending_acceptance`` licence (its terms hash already checked): a free plan goes
    active at once (suspended if a hold arrived meanwhile), a priced one awaits payment."""
    plan = await products_repo.plan(session, licence.plan_id)
    free = plan is not None and (plan.kind in FREE_KINDS or (plan.kind != "metered" and plan.amount == 0))
    now = utcnow()
    accepted = {"accepted_at": now, "accepted_by": getattr(actor, "user_id", None), "updated_at": now}
    if free:
        held = await repo.has_holds(session, licence.id)  # e.g. its organisation was blocked meanwhile
        moved = await repo.set_status(
            session,
            licence.id,
            ("pending_acceptance",),
            "suspended" if held else "active",
            activated_at=now,
            **accepted,
        )
    else:
        moved = await repo.set_status(
            session,
            licence.id,
            ("pending_acceptance",),
            "pending_payment",
            payment_due_by=now + PAYMENT_WINDOW,
            **accepted,
        )
    if not moved:
        raise Conflict(f"The licence is {licence.status}.", code="invalid_transition")
    await session.refresh(licence)
    await audit_licence(session, actor, "licence.accepted", licence, {"terms_sha256": licence.terms_sha256})
    if licence.status == "active":
        await tell.licence(session, "licence.activated", licence, {"starts_on": licence.starts_on})


def unlink_renewal(licence: Licence) -> str | None:
    """A renewal that ended unused (declined, unpaid) no longer renews its licence, which may then be
    renewed again; the licence it would have renewed is answered for the audit event."""
    renewed, licence.renews_licence_id = licence.renews_licence_id, None
    return renewed


async def end_licence(session: AsyncSession, actor: Any, licence_id: str, reason: str, *, by: str) -> bool:
    """Revoke a live licence (active or suspended); billing hears of it (to cancel a subscription)."""
    if not await repo.set_status(
        session, licence_id, LIVE, "revoked", ended_at=utcnow(), end_reason=reason, updated_at=utcnow()
    ):
        return False
    licence = await repo.licence(session, licence_id)
    assert licence is not None
    await session.refresh(licence)
    await audit_licence(session, actor, "licence.revoked", licence, {"reason": reason, "by": by})
    outbox.emit(session, "licence.revoked", {"licence_id": licence_id, "reason": reason})
    await tell.licence(session, "licence.revoked", licence, {"reason": reason, "by": by})
    return True


async def activate_paid(session: AsyncSession, licence_id: str, payment_ref: str) -> bool:
    """Billing's entry point: a paid licence goes active (or suspended, if a hold arrived meanwhile)."""
    licence = await repo.licence(session, licence_id, lock=True)
    if licence is None or licence.status != "pending_payment":
        return False
    status = "suspended" if await repo.has_holds(session, licence.id) else "active"
    await repo.set_status(
        session,
        licence.id,
        ("pending_payment",),
        status,
        activated_at=utcnow(),
        payment_due_by=None,
        updated_at=utcnow(),
    )
    await session.refresh(licence)
    await audit_licence(session, None, "licence.activated", licence, {"payment": payment_ref})
    if licence.status == "active":
        await tell.licence(session, "licence.activated", licence, {"starts_on": licence.starts_on})
    return True


class LicenceService:
    def __init__(self, session: AsyncSession, caller: Principal) -> None:
        self.session = session
        self.caller = caller

    async def _party_licence(self, licence_id: str, *, lock: bool = False) -> Licence:
        return await repo.party_licence(self.session, self.caller, licence_id, lock=lock)

    async def get(self, licence_id: str) -> LicenceRead:
        return await self.read(await self._party_licence(licence_id))

    async def list(self, page: PageRequest, status: str | None, product_id: str | None) -> LicenceList:
        product_id = await products_repo.id_of(self.session, product_id)
        result = await repo.list_licences(self.session, self.caller, page, status, product_id)
        holds = await repo.holds(self.session, [lic.id for lic in result.items])
        return LicenceList(items=[_read(lic, holds[lic.id]) for lic in result.items], next_cursor=result.next_cursor)

    async def read(self, licence: Licence) -> LicenceRead:
        return _read(licence, (await repo.holds(self.session, [licence.id]))[licence.id])

    def _consumer(self, licence: Licence) -> None:
        ensure_member_with(self.caller, licence.consumer_org_id, "buyer")

    async def accept(self, licence_id: str, terms_sha256: str) -> LicenceRead:
        licence = await self._party_licence(licence_id, lock=True)
        self._consumer(licence)
        if licence.status != "pending_acceptance":
            raise Conflict(f"The licence is {licence.status}.", code="invalid_transition")
        if terms_sha256 != licence.terms_sha256:
            raise Conflict(
                "Those are not the terms this licence pins; read them again.",
                code="terms_mismatch",
                terms_sha256=licence.terms_sha256,
            )
        await accept_terms(self.session, self.caller, licence)
        return await self.read(licence)

    async def decline(self, licence_id: str) -> LicenceRead:
        licence = await self._party_licence(licence_id, lock=True)
        self._consumer(licence)
        if not await repo.set_status(
            self.session,
            licence.id,
            ("pending_acceptance",),
            "declined",
            ended_at=utcnow(),
            end_reason="declined",
            updated_at=utcnow(),
        ):
            raise Conflict(f"The licence is {licence.status}.", code="invalid_transition")
        await self.session.refresh(licence)
        await audit_licence(
            self.session, self.caller, "licence.declined", licence, {"renewed": unlink_renewal(licence)}
        )
        return await self.read(licence)

    def _hold_cause(self, licence: Licence) -> tuple[str, str]:
        """(kind, source) of the hold this caller may set or lift: the operator's, or its own org's."""
        if self.caller.is_operator_with(*OPERATOR_ROLES):
            return "operator", "operator"
        if self.caller.is_member_with(licence.owner_org_id, *PROVIDER_ROLES):
            return "provider", licence.owner_org_id
        raise Forbidden("Only the operator, or the provider for its own products, may do this.")

    async def suspend(self, licence_id: str, reason: str) -> LicenceRead:
        licence = await self._party_licence(licence_id, lock=True)
        kind, source = self._hold_cause(licence)
        if licence.status not in OPEN:
            raise Conflict(f"The licence is {licence.status}.", code="invalid_transition")
        if not await add_hold(self.session, self.caller, licence, kind, source, reason):
            raise Conflict("You already hold this licence.", code="already_held")
        return await self.read(licence)

    async def reinstate(self, licence_id: str, reason: str) -> LicenceRead:
        licence = await self._party_licence(licence_id, lock=True)
        kind, source = self._hold_cause(licence)
        if not await lift_hold(self.session, self.caller, licence, kind, source, reason):
            raise Conflict("There is no hold of yours to lift.", code="no_such_hold")
        return await self.read(licence)

    async def revoke(self, licence_id: str, reason: str, block_org: bool) -> LicenceRead:
        licence = await self._party_licence(licence_id, lock=True)
        kind, _ = self._hold_cause(licence)
        if block_org:  # a block-list is its organisation's admin's to change
            ensure_org_admin(self.caller, self.caller.org_id)
        if not await end_licence(self.session, self.caller, licence.id, reason, by=kind):
            raise Conflict(f"The licence is {licence.status}.", code="invalid_transition")
        await self.session.refresh(licence)
        if block_org:
            list_org = self.caller.org_id
            await blocklists.block(
                self.session, self.caller, list_org, licence.consumer_org_id, f"licence revoked: {reason}"
            )
        return await self.read(licence)

    async def renew_ethics(self, licence_id: str, data: EthicsApproval) -> LicenceRead:
        licence = await self._party_licence(licence_id, lock=True)
        self._consumer(licence)
        if data.expires_on < utcnow().date():
            raise Conflict("That approval has already expired.", code="ethics_approval_expired")
        licence.ethics_expires_on = data.expires_on
        await self.session.flush()
        await audit_licence(
            self.session,
            self.caller,
            "licence.ethics_renewed",
            licence,
            {"committee": data.committee, "reference": data.reference, "expires_on": data.expires_on},
        )
        await lift_hold(self.session, self.caller, licence, "ethics_expired", "ethics", "ethics approval renewed")
        return await self.read(licence)


def _read(licence: Licence, holds: list[LicenceHold]) -> LicenceRead:
    return LicenceRead(
        id=licence.id,
        application_id=licence.application_id,
        renews_licence_id=licence.renews_licence_id,
        consumer_org_id=licence.consumer_org_id,
        product_id=licence.product_id,
        owner_org_id=licence.owner_org_id,
        plan_id=licence.plan_id,
        terms_id=licence.terms_id,
        terms_version=licence.terms_version,
        terms_sha256=licence.terms_sha256,
        revenue_share_id=licence.revenue_share_id,
        revenue_share_version=licence.revenue_share_version,
        purpose=licence.purpose,
        analysts=list(licence.analysts),
        starts_on=licence.starts_on,
        ends_on=licence.ends_on,
        caps=dict(licence.caps),
        cap_period=licence.cap_period,
        modes=list(licence.modes),
        conditions=[msgspec.convert(c, LicenceCondition, strict=False) for c in licence.conditions],
        status=licence.status,
        holds=[HoldRead(kind=h.kind, source=h.source, reason=h.reason, set_at=h.set_at) for h in holds],
        ethics_expires_on=licence.ethics_expires_on,
        payment_due_by=licence.payment_due_by,
        accepted_at=licence.accepted_at,
        activated_at=licence.activated_at,
        ended_at=licence.ended_at,
        end_reason=licence.end_reason,
        created_at=licence.created_at,
    )
