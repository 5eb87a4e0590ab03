"""Review: the tracks a grade requires, decided by their roles, and the licence an approval issues.

A reject beats a return; a return cancels the pending tracks; a resubmit reopens only the tracks
not already approved. The application row is locked for every decision, so two reviewers deciding
the last open tracks at once still leave exactly one licence.

Four eyes. A track is decided only by someone granted that track's role itself — the owner's
``reviewer``, the operator's ``ethics``, ``security``, ``compliance``, or ``admin`` for the
operator track; an admin's acting in every role of its organisation does not reach review. And
one person decides at most one track of an application, in every round: whoever decided (or
returned) a track may decide that same track again after a resubmit, never another one
(409 ``four_eyes``). The conditions of ``approve_with_conditions`` decisions are copied onto the
licence the approval issues.

Renewal. A renewal keeps the application's approvals; when the product now requires tracks the
application was not approved on (a stricter grade), ``reopen_for_renewal`` reopens only those, in a
new round, and remembers the licence being renewed. Their approval issues the renewal instead of a
fresh licence; a reject ends the attempt, the application's earlier approval standing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit, policy
from catalog.access import repository as repo
from catalog.access import tell
from catalog.access.licences import issue_licence
from catalog.access.models import Application, Licence, ReviewDecider, ReviewTrack
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
    if data.decision == "approve_with_conditions" and not data.conditions:
        raise ValidationFailed.field("conditions", "required to approve with conditions")
    if data.decision != "approve_with_conditions" and data.conditions is not None:
        raise ValidationFailed.field("conditions", "given only with approve_with_conditions")
    if app.status != "under_review":
        raise Conflict(f"The application is {app.status}: nothing to decide.", code="invalid_transition")
    tracks = {t.track: t for t in (await repo.tracks(session, [app.id]))[app.id]}
    track = tracks.get(track_name)
    if track is None:
        raise NotFound(f"This application has no {track_name} track.")
    if track.status != "pending":
        raise Conflict(f"The {track_name} track is already {track.status}.", code="track_decided")
    await _one_track_each(session, caller, app, track_name)
    track.status, track.decision, track.comment = DECIDED[data.decision], data.decision, data.comment
    track.conditions, track.decided_by, track.decided_at = data.conditions, caller.user_id, utcnow()
    await audit_application(
        session,
        caller,
        "application.decided",
        app,
        product,
        {"track": track_name, "decision": data.decision, "comment": data.comment, "conditions": data.conditions},
    )
    await tell.application(
        session, "application.track_decided", app, product, {"track": track_name, "decision": data.decision}
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
    """The track's own role, granted explicitly (an admin does not act in it by being admin)."""
    if track == "provider":
        if caller.org_id == product.owner_org_id and caller.holds("reviewer"):
            return
        raise Forbidden("The provider track is decided by a member of the owner with the reviewer role.")
    role = TRACK_ROLES.get(track)
    if role is None:
        raise NotFound(f"No track {track}.")
    if not (caller.is_operator and caller.holds(role)):
        raise Forbidden(f"The {track} track is decided by an operator member with the {role} role.")


async def _one_track_each(session: AsyncSession, caller: Principal, app: Application, track: str) -> None:
    """Four eyes: the first decision binds a person to its track of this application for good."""
    decided = await repo.decided_track(session, app.id, caller.user_id)
    if decided is None:
        session.add(ReviewDecider(application_id=app.id, user_id=caller.user_id, track=track, created_at=utcnow()))
    elif decided != track:
        raise Conflict(
            f"You decided the {decided} track of this application; another person must decide the {track} track.",
            code="four_eyes",
            decided_track=decided,
        )


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
    if status == "rejected" and app.renewing_licence_id:
        renewing, app.status, app.renewing_licence_id = app.renewing_licence_id, "approved", None
        await audit_application(session, caller, "application.renewal_rejected", app, product, {"licence_id": renewing})
        await tell.application(session, "application.decided", app, product, {"decision": status, "renews": renewing})
        return
    app.status = status
    app.decided_at = utcnow() if status == "rejected" else None
    await audit_application(session, caller, f"application.{status}", app, product, {})
    await tell.application(session, "application.decided", app, product, {"decision": status})


async def approve(session: AsyncSession, caller: Principal, app: Application, product: Product) -> Licence | None:
    """All tracks approved: the licence — or, for a renewal, the renewal of the licence it renews
    (None if that licence was revoked meanwhile: nothing is left to renew)."""
    app.status, app.decided_at = "approved", utcnow()
    renews = await repo.licence(session, app.renewing_licence_id, lock=True) if app.renewing_licence_id else None
    app.renewing_licence_id = None
    if renews is not None and (renews.status == "revoked" or await repo.renewal_of(session, renews.id)):
        await audit_application(session, caller, "application.renewal_lapsed", app, product, {"licence_id": renews.id})
        return None
    conditions = await approved_conditions(session, app, product)
    licence = await issue_licence(session, caller, app, product, conditions, renews=renews)
    await audit_application(session, caller, "application.approved", app, product, {"licence_id": licence.id})
    await tell.application(
        session, "application.decided", app, product, {"decision": "approved", "licence_id": licence.id}
    )
    return licence


async def approved_conditions(session: AsyncSession, app: Application, product: Product) -> list[dict[str, Any]]:
    """The conditions of the application's ``approve_with_conditions`` tracks, in the grade's track order."""
    order = policy.rule(product.grade).tracks
    conditional = sorted(
        (t for t in (await repo.tracks(session, [app.id]))[app.id] if t.status == "approved_with_conditions"),
        key=lambda t: order.index(t.track) if t.track in order else len(order),
    )
    return [
        {"track": t.track, "text": t.conditions, "decided_by": t.decided_by, "decided_at": t.decided_at}
        for t in conditional
    ]


async def missing_tracks(session: AsyncSession, app: Application, product: Product) -> list[str]:
    """The tracks the product's grade now requires that the application is not approved on."""
    approved = {t.track for t in (await repo.tracks(session, [app.id]))[app.id] if t.status in APPROVED}
    return [t for t in policy.rule(product.grade).tracks if t not in approved]


async def reopen_for_renewal(
    session: AsyncSession, caller: Principal, app: Application, product: Product, renews: Licence
) -> list[str]:
    """Put the application back under review for the renewal of ``renews``, reopening only the
    tracks it is not approved on; the approved ones stand."""
    app.round, app.status, app.submitted_at = app.round + 1, "under_review", utcnow()
    app.renewing_licence_id = renews.id
    tracks = await open_tracks(session, app, product)
    await audit_application(
        session,
        caller,
        "application.renewal_submitted",
        app,
        product,
        {"round": app.round, "tracks": tracks, "licence_id": renews.id},
    )
    await tell.application(session, "application.submitted", app, product, {"tracks": tracks, "renews": renews.id})
    return tracks


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
