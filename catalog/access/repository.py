"""SQL for applications, tracks, licences, holds and block-lists — scoped to the parties."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime
from typing import NamedTuple

from sqlalchemy import Select, bindparam, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from catalog.access.models import (
    Application,
    BlocklistEntry,
    Licence,
    LicenceHold,
    LicenceParty,
    ReviewDecider,
    ReviewTrack,
)
from catalog.auth import Principal
from catalog.db import utcnow
from catalog.errors import NotFound
from catalog.orgs.models import Membership, Organisation
from catalog.pagination import Page, PageRequest, paginate
from catalog.products.models import Plan, Product

# --- applications -------------------------------------------------------------------------------


async def application(session: AsyncSession, app_id: str, *, lock: bool = False) -> Application | None:
    stmt = select(Application).where(Application.id == app_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


def _application_scope(stmt: Select, caller: Principal) -> Select:
    """Consumers see their own; providers those for their products; the operator all."""
    if caller.is_operator:
        return stmt
    if caller.org_kind == "provider":
        owned = select(Product.id).where(Product.owner_org_id == caller.org_id)
        return stmt.where(Application.product_id.in_(owned))
    return stmt.where(Application.consumer_org_id == caller.org_id)


async def list_applications(
    session: AsyncSession, caller: Principal, page: PageRequest, status: str | None, product_id: str | None
) -> Page[Application]:
    stmt = _application_scope(select(Application), caller)
    if status:
        stmt = stmt.where(Application.status == status)
    if product_id:
        stmt = stmt.where(Application.product_id == product_id)
    return await paginate(session, stmt, Application.id, page)


async def tracks(session: AsyncSession, app_ids: Sequence[str]) -> dict[str, list[ReviewTrack]]:
    found: dict[str, list[ReviewTrack]] = {a: [] for a in app_ids}
    if app_ids:
        stmt = select(ReviewTrack).where(ReviewTrack.application_id.in_(app_ids)).order_by(ReviewTrack.id)
        for row in (await session.execute(stmt)).scalars():
            found[row.application_id].append(row)
    return found


async def decided_track(session: AsyncSession, app_id: str, user_id: str) -> str | None:
    """The track of the application this person decided before, in any round."""
    stmt = select(ReviewDecider.track).where(ReviewDecider.application_id == app_id, ReviewDecider.user_id == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def licence_ids_for(session: AsyncSession, app_ids: Sequence[str]) -> dict[str, str]:
    """Each application's newest licence: the one its approval issued, or its latest renewal."""
    if not app_ids:
        return {}
    stmt = (
        select(Licence.application_id, func.max(Licence.id))
        .where(Licence.application_id.in_(app_ids))
        .group_by(Licence.application_id)
    )
    return {app_id: lic_id for app_id, lic_id in (await session.execute(stmt)).all()}


# --- licences -----------------------------------------------------------------------------------


async def licence(session: AsyncSession, licence_id: str, *, lock: bool = False) -> Licence | None:
    stmt = select(Licence).where(Licence.id == licence_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def licence_of(session: AsyncSession, consumer_org_id: str, product_id: str) -> Licence | None:
    """The consumer's first licence for a product, if any."""
    stmt = (
        select(Licence)
        .where(Licence.consumer_org_id == consumer_org_id, Licence.product_id == product_id)
        .order_by(Licence.id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def renewal_of(session: AsyncSession, licence_id: str) -> Licence | None:
    """The licence that renews this one, if any (there is at most one)."""
    stmt = select(Licence).where(Licence.renews_licence_id == licence_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def extend_term(session: AsyncSession, licence_id: str, ends_on: date, new_ends_on: date) -> bool:
    """Move an active, unheld licence's end from ``ends_on`` to ``new_ends_on`` in one conditional
    statement: a hold or another sweep that got there first leaves it alone."""
    result = await session.execute(
        update(Licence)
        .where(
            Licence.id == licence_id,
            Licence.status == "active",
            Licence.ends_on == ends_on,
            ~exists().where(LicenceHold.licence_id == Licence.id),
        )
        .values(ends_on=new_ends_on, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _licence_scope(stmt: Select, caller: Principal) -> Select:
    """The parties: the consumer, the owner, every provider in the pinned rule, and the operator."""
    if caller.is_operator:
        return stmt
    return stmt.where(Licence.id.in_(parties_of(caller.org_id)))


def parties_of(org_id: str, roles: Sequence[str] | None = None) -> Select:
    stmt = select(LicenceParty.licence_id).where(LicenceParty.org_id == org_id)
    if roles is not None:
        stmt = stmt.where(LicenceParty.role.in_(roles))
    return stmt


def licence_scope_ids(caller: Principal) -> Select:
    """The ids of the licences this caller is a party to (the operator: all)."""
    if caller.is_operator:
        return select(Licence.id)
    return parties_of(caller.org_id)


async def licences_by_ids(
    session: AsyncSession, ids: Sequence[str], *, party: str | None, roles: Sequence[str]
) -> list[Licence]:
    """The licences among ``ids``; with ``party``, only those where that organisation is a party in
    one of ``roles`` (None: every licence, for the operator)."""
    if not ids:
        return []
    if party is None:
        return list((await session.execute(_licences_by_ids(), {"ids": list(ids)})).scalars())
    params = {"ids": list(ids), "party": party, "roles": list(roles)}
    return list((await session.execute(_party_licences_by_ids(), params)).scalars())


@functools.cache
def _licences_by_ids() -> Select:
    return select(Licence).where(Licence.id.in_(bindparam("ids", expanding=True)))


@functools.cache
def _party_licences_by_ids() -> Select:
    """Built once: usage ingest reads its licences this way on every batch, and building the
    statement cost more than running it (the parameters: ids, party, roles)."""
    parties = select(LicenceParty.licence_id).where(
        LicenceParty.org_id == bindparam("party"), LicenceParty.role.in_(bindparam("roles", expanding=True))
    )
    return _licences_by_ids().where(Licence.id.in_(parties))


async def party_org_ids(session: AsyncSession, licence_id: str) -> list[str]:
    stmt = select(LicenceParty.org_id).where(LicenceParty.licence_id == licence_id)
    return sorted(set((await session.execute(stmt)).scalars()))


async def party_licence(session: AsyncSession, caller: Principal, licence_id: str, *, lock: bool = False) -> Licence:
    """The licence, when the caller is one of its parties or the operator; else 404, as if absent."""
    stmt = select(Licence).with_for_update() if lock else select(Licence)
    found = (await session.execute(_licence_scope(stmt.where(Licence.id == licence_id), caller))).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No licence {licence_id}.")
    return found


class Standing(NamedTuple):
    """What deciding whether an analyst may use a licence reads: the licence, its product, the
    analyst's roles in the consumer organisation (None if not a member) and the kinds of its holds."""

    licence: Licence
    product: Product
    roles: list[str] | None
    holds: list[str]


async def standing(session: AsyncSession, licence_id: str, analyst_id: str, *, party: str | None) -> Standing | None:
    """The licence's ``Standing`` for this analyst, in one statement; with ``party``, only if that
    organisation is one of its parties (None otherwise, as for a licence that does not exist).

    Every delivery request starts here, so the statement is built once (with its values as
    parameters) and reads the membership and holds by joins rather than a statement each.
    """
    params = {"licence": licence_id, "analyst": analyst_id}
    if party is not None:
        params["party"] = party
    rows = (await session.execute(_standing_statement(party is not None), params)).all()
    if not rows:
        return None
    licence, product, roles, _ = rows[0]
    return Standing(licence, product, roles, [kind for *_, kind in rows if kind is not None])


@functools.cache
def _standing_statement(scoped: bool) -> Select:
    stmt = (
        select(Licence, Product, Membership.roles, LicenceHold.kind)
        .join(Product, Product.id == Licence.product_id)
        .outerjoin(
            Membership,
            (Membership.org_id == Licence.consumer_org_id) & (Membership.user_id == bindparam("analyst")),
        )
        .outerjoin(LicenceHold, LicenceHold.licence_id == Licence.id)
        .where(Licence.id == bindparam("licence"))
        .order_by(LicenceHold.set_at, LicenceHold.kind)
    )
    if scoped:
        parties = select(LicenceParty.licence_id).where(LicenceParty.org_id == bindparam("party"))
        stmt = stmt.where(Licence.id.in_(parties))
    return stmt


async def list_licences(
    session: AsyncSession, caller: Principal, page: PageRequest, status: str | None, product_id: str | None
) -> Page[Licence]:
    stmt = _licence_scope(select(Licence), caller)
    if status:
        stmt = stmt.where(Licence.status == status)
    if product_id:
        stmt = stmt.where(Licence.product_id == product_id)
    return await paginate(session, stmt, Licence.id, page)


async def holds(session: AsyncSession, licence_ids: Sequence[str]) -> dict[str, list[LicenceHold]]:
    found: dict[str, list[LicenceHold]] = {lic: [] for lic in licence_ids}
    if licence_ids:
        stmt = select(LicenceHold).where(LicenceHold.licence_id.in_(licence_ids)).order_by(LicenceHold.set_at)
        for row in (await session.execute(stmt)).scalars():
            found[row.licence_id].append(row)
    return found


async def add_hold(session: AsyncSession, hold: LicenceHold) -> bool:
    """Insert the hold unless the same cause already holds the licence; True if it was new."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    values = {
        "licence_id": hold.licence_id,
        "kind": hold.kind,
        "source": hold.source,
        "reason": hold.reason,
        "set_by": hold.set_by,
        "set_at": hold.set_at,
    }
    result = await session.execute(insert(LicenceHold).values(**values).on_conflict_do_nothing())
    return bool(result.rowcount)


async def lift_hold(session: AsyncSession, licence_id: str, kind: str, source: str) -> bool:
    result = await session.execute(
        delete(LicenceHold).where(
            LicenceHold.licence_id == licence_id, LicenceHold.kind == kind, LicenceHold.source == source
        )
    )
    return bool(result.rowcount)


async def has_holds(session: AsyncSession, licence_id: str) -> bool:
    stmt = select(exists().where(LicenceHold.licence_id == licence_id))
    return bool((await session.execute(stmt)).scalar())


async def set_status(
    session: AsyncSession, licence_id: str, expected: Sequence[str], status: str, **values: object
) -> bool:
    """Move a licence between states in one conditional statement (STYLE rule 5)."""
    result = await session.execute(
        update(Licence)
        .where(Licence.id == licence_id, Licence.status.in_(expected))
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def licences_of_consumer(
    session: AsyncSession, consumer_org_id: str, statuses: Sequence[str], owner_org_id: str | None = None
) -> list[Licence]:
    stmt = select(Licence).where(Licence.consumer_org_id == consumer_org_id, Licence.status.in_(statuses))
    if owner_org_id is not None:
        stmt = stmt.where(Licence.id.in_(parties_of(owner_org_id, ("owner", "provider"))))
    return list((await session.execute(stmt)).scalars())


async def licences_due(session: AsyncSession, today: date, now: datetime) -> dict[str, list[Licence]]:
    """What the sweep acts on: ended terms, unpaid past the deadline, lapsed ethics approvals."""
    ended = select(Licence).where(
        Licence.status.in_(("active", "suspended", "pending_acceptance", "pending_payment")), Licence.ends_on < today
    )
    unpaid = select(Licence).where(Licence.status == "pending_payment", Licence.payment_due_by < now)
    lapsed = select(Licence).where(
        Licence.status.in_(("active", "suspended")),
        Licence.ethics_expires_on < today,
        ~exists().where(LicenceHold.licence_id == Licence.id, LicenceHold.kind == "ethics_expired"),
    )
    return {
        "ended": list((await session.execute(ended)).scalars()),
        "unpaid": list((await session.execute(unpaid)).scalars()),
        "lapsed": list((await session.execute(lapsed)).scalars()),
    }


async def licensees(session: AsyncSession, product_id: str) -> list[str]:
    """Organisations holding a live licence on the product."""
    stmt = (
        select(Licence.consumer_org_id)
        .where(Licence.product_id == product_id, Licence.status.in_(("active", "suspended")))
        .distinct()
    )
    return list((await session.execute(stmt)).scalars())


async def licences_ending(session: AsyncSession, today: date, until: date) -> list[Licence]:
    """Live licences whose last day falls in ``[today, until]`` and that will not run on by
    themselves: no live renewal, and not a subscription (which renews itself while paid)."""
    renewed = aliased(Licence)
    stmt = (
        select(Licence)
        .join(Plan, Plan.id == Licence.plan_id)
        .where(
            Licence.status.in_(("active", "suspended")),
            Licence.ends_on >= today,
            Licence.ends_on <= until,
            Plan.kind != "subscription",
            # Renewed: the renewal is accepted and live (one still awaiting acceptance or payment
            # may never be, so the reminders go on until it is).
            ~exists().where(renewed.renews_licence_id == Licence.id, renewed.status.in_(("active", "suspended"))),
        )
    )
    return list((await session.execute(stmt)).scalars())


async def register(session: AsyncSession, page: PageRequest) -> Page[tuple[Licence, Organisation, Product]]:
    stmt = (
        select(Licence, Organisation, Product)
        .join(Organisation, Organisation.id == Licence.consumer_org_id)
        .join(Product, Product.id == Licence.product_id)
        .where(Licence.status.notin_(("declined", "cancelled")))
    )
    return await paginate(session, stmt, Licence.id, page, rows=True)


# --- members and block-lists --------------------------------------------------------------------


async def memberships(session: AsyncSession, org_id: str, user_ids: Sequence[str]) -> dict[str, Membership]:
    if not user_ids:
        return {}
    stmt = select(Membership).where(Membership.org_id == org_id, Membership.user_id.in_(user_ids))
    return {m.user_id: m for m in (await session.execute(stmt)).scalars()}


async def blocking_lists(session: AsyncSession, blocked_org_id: str, list_org_ids: Sequence[str]) -> list[str]:
    """Which of these lists name the organisation."""
    stmt = select(BlocklistEntry.list_org_id).where(
        BlocklistEntry.blocked_org_id == blocked_org_id, BlocklistEntry.list_org_id.in_(list_org_ids)
    )
    return list((await session.execute(stmt)).scalars())


async def blocklist_entry(session: AsyncSession, list_org_id: str, blocked_org_id: str) -> BlocklistEntry | None:
    return await session.get(BlocklistEntry, (list_org_id, blocked_org_id))


async def list_blocklist(session: AsyncSession, list_org_id: str, page: PageRequest) -> Page[BlocklistEntry]:
    stmt = select(BlocklistEntry).where(BlocklistEntry.list_org_id == list_org_id)
    return await paginate(session, stmt, BlocklistEntry.blocked_org_id, page)
