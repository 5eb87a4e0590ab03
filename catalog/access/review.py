"""Review: the tracks a grade requires, decided by their roles, and the licence an approval issues.

A reject beats a return; a return cancels the pending tracks; a resubmit reopens only the tracks
not already approved. The application row is locked for every decision, so two reviewers deciding
the last open tracks at once still leave exactly one licence.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit, policy
from catalog.access import repository as repo
from catalog.access.licences import issue_licence
from catalog.access.models import Application, Licence, ReviewTrack
from catalog.access.schemas import Decision
from catalog.auth import Principal
from catalog.db import utcnow
from catalog.errors import Conflict, Forbidden, NotFound, ValidationFailed
from catalog.ids import new_id
from catalog.products import repository as products_repo
from catalog.products.models import Product

TRACK_ROLES = {"ethics": "ethics", "security": "security", "compliance": "compliance", "operator": "admin"}
DECIDED = {
    "approve": "approved",
    "approve_with_conditions": "approved_with_conditions",
    "reject": "rejected",
    "return": "returned",
}
APPROVED = ("approved", "approved_with_conditions")


async def open_tracks(session: AsyncSession, app: Application, product: Product) -> list[str]:
    """Open the grade's tracks; on a resubmit, reopen only those not already approved."""
    existing = {t.track: t for t in (await repo.tracks(session, [app.id]))[app.id]}
    opened = []
    for name in policy.rule(product.grade).tracks:
        track = existing.get(name)
        if track is None:
            session.add(
                ReviewTrack(
                    id=new_id("trk"),
                    application_id=app.id,
                    track=name,
                    status="pending",
                    round=app.round,
                    created_at=utcnow(),
                )
            )
            opened.append(name)
        elif track.status not in APPROVED:
            track.status, track.decision, track.comment, track.conditions = "pending", None, None, None
            track.decided_by, track.decided_at, track.round = None, None, app.round
            opened.append(name)
    await session.flush()
    return opened


async def decide(session: AsyncSession, caller: Principal, app_id: str, track_name: str, data: Decision) -> Application:
    app = await repo.application(session, app_id, lock=True)
    if app is None:
        raise NotFound(f"No application {app_id}.")
    product = await products_repo.get(session, app.product_id)
    assert product is not None
    if not (caller.is_operator or caller.org_id in (app.consumer_org_id, product.owner_org_id)):
        raise NotFound(f"No application {app_id}.")  # its existence is not another tenant's business
    ensure_reviewer(caller, track_name, product)
    if data.decision in ("reject", "return") and not data.comment:
        raise ValidationFailed.field("comment", f"a comment is required to {data.decision}")
    if app.status != "under_review":
        raise Conflict(f"The application is {app.status}: nothing to decide.", code="invalid_transition")
    tracks = {t.track: t for t in (await repo.tracks(session, [app.id]))[app.id]}
    track = tracks.get(track_name)
    if track is None:
        raise NotFound(f"This application has no {track_name} track.")
    if track.status != "pending":
        raise Conflict(f"The {track_name} track is already {track.status}.", code="track_decided")
    track.status, track.decision, track.comment = DECIDED[data.decision], data.decision, data.comment
    track.conditions, track.decided_by, track.decided_at = data.conditions, caller.user_id, utcnow()
    await audit_application(
        session,
        caller,
        "application.decided",
        app,
        product,
        {"track": track_name, "decision": data.decision, "comment": data.comment},
    )
    statuses = [t.status for t in tracks.values()]
    if "rejected" in statuses:
        await _close(session, caller, app, product, "rejected", tracks)
    elif "returned" in statuses:
        await _close(session, caller, app, product, "returned", tracks)
    elif all(s in APPROVED for s in statuses):
        await approve(session, caller, app, product)
    await session.flush()
    return app


def ensure_reviewer(caller: Principal, track: str, product: Product) -> None:
    if track == "provider":
        if caller.is_member_with(product.owner_org_id, "reviewer"):
            return
        raise Forbidden("The provider track is decided by the owner's reviewer or admin.")
    role = TRACK_ROLES.get(track)
    if role is None:
        raise NotFound(f"No track {track}.")
    if not caller.is_operator_with(role):
        raise Forbidden(f"The {track} track is decided by the operator's {role} role.")


async def _close(
    session: AsyncSession,
    caller: Principal,
    app: Application,
    product: Product,
    status: str,
    tracks: dict[str, ReviewTrack],
) -> None:
    for track in tracks.values():
        if track.status == "pending":
            track.status = "cancelled"
    app.status = status
    app.decided_at = utcnow() if status == "rejected" else None
    await audit_application(session, caller, f"application.{status}", app, product, {})


async def approve(session: AsyncSession, caller: Principal, app: Application, product: Product) -> Licence:
    app.status, app.decided_at = "approved", utcnow()
    licence = await issue_licence(session, caller, app, product)
    await audit_application(session, caller, "application.approved", app, product, {"licence_id": licence.id})
    return licence


async def audit_application(
    session: AsyncSession, actor: Any, action: str, app: Application, product: Product, data: dict[str, Any]
) -> None:
    """Concerning every party: the applicant, the owner and the providers who share the product's revenue."""
    rule = await products_repo.current_revenue_share(session, product.id)
    providers = [p["org_id"] for p in rule.providers] if rule else []
    audit.record(
        session,
        actor,
        action,
        "application",
        app.id,
        [app.consumer_org_id, product.owner_org_id, *providers],
        {"product_id": product.id, **data},
    )
