"""Reservations: hold before delivery, settle after, give back what failed.

Delivery runs in two phases (STYLE rule 3's exception). ``reserve`` adds the most a request can
use to the capped counters and the ε budget, each in one conditional statement, and records a
reservation; the work runs with no transaction open; ``settle`` gives back what was not used,
writes the usage events and tells billing (``usage.recorded``). ``release`` gives everything back
when the work failed — except ε once noise may have been drawn. The sweep releases reservations a
crash left open, never their ε. ``count_daily_query`` is L4's per-day query cap, on the same counters.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit, outbox, policy
from catalog.access import repository as access_repo
from catalog.access.licences import add_months
from catalog.access.models import Licence
from catalog.db import utcnow, write_transaction
from catalog.errors import Conflict, TooManyRequests
from catalog.ids import new_id, new_ids
from catalog.metering import events, once, thresholds
from catalog.metering import repository as repo
from catalog.metering.models import Reservation
from catalog.products import repository as products_repo

RESERVATION_GRACE = timedelta(minutes=10)


async def cap_period_start(session: AsyncSession, licence: Licence, at: date) -> date:
    """The start of the cap period containing ``at``: the term, or the billing period of the plan."""
    if licence.cap_period != "billing_period":
        return licence.starts_on
    plan = await products_repo.plan(session, licence.plan_id)
    step = 12 if plan is not None and plan.interval == "year" else 1
    start, n = licence.starts_on, 0
    while add_months(licence.starts_on, (n + 1) * step) <= at:
        n += 1
    return add_months(start, n * step)


class Reserved(NamedTuple):
    reservation: Reservation
    counters: dict[str, int]  # the capped counters as the reservation left them


async def reserve(
    session: AsyncSession,
    licence: Licence,
    analyst_id: str,
    kind: str,
    amounts: dict[str, int],
    epsilon_micro: int = 0,
    *,
    timeout_s: float = 30.0,
) -> Reserved:
    """Hold the most this request can use against the licence's caps and the ε budget, or refuse."""
    now = utcnow()
    period = await cap_period_start(session, licence, now.date())
    capped = {d: n for d, n in amounts.items() if d in licence.caps}
    if epsilon_micro and "epsilon_spent" in licence.caps:
        capped["epsilon_spent"] = epsilon_micro
    added = await repo.reserve_counters(session, licence.id, period, capped, {d: int(licence.caps[d]) for d in capped})
    for dimension in capped:
        if dimension not in added:
            raise Conflict(
                f"This request would pass the licence's {dimension} cap of {licence.caps[dimension]}.",
                code="quota_exceeded",
                dimension=dimension,
                cap=licence.caps[dimension],
            )
    if epsilon_micro:
        product = await products_repo.get(session, licence.product_id)
        assert product is not None
        total = policy.rule(product.grade).epsilon_total_micro or 0
        await repo.ensure_budget(session, licence.consumer_org_id, licence.product_id, total)
        spent = await repo.try_spend(session, licence.consumer_org_id, licence.product_id, epsilon_micro, total)
        if spent is None:
            raise Conflict("The ε budget for this product is spent.", code="budget_exhausted")
        await thresholds.watch_budget(session, licence, spent, total)
    reservation = Reservation(
        id=new_id("res"),
        licence_id=licence.id,
        analyst_id=analyst_id,
        kind=kind,
        amounts=capped,
        period_start=period,
        epsilon_micro=epsilon_micro,
        status="open",
        created_at=now,
        expires_at=now + timedelta(seconds=timeout_s) + RESERVATION_GRACE,
    )
    await repo.insert_reservation(session, reservation)
    return Reserved(reservation, added)


DAILY_QUERIES = "aggregate_queries_day"  # a counter only: the queries themselves are metered as queries


async def count_daily_query(session: AsyncSession, licence: Licence, cap: int) -> None:
    """Count one anonymised aggregate query against the licence's cap for this UTC day, or refuse with
    429 until midnight. A query counts once it passes the gate, whatever its answer: the cap bounds what
    an analyst may try."""
    now = utcnow()
    added = await repo.reserve_counters(session, licence.id, now.date(), {DAILY_QUERIES: 1}, {DAILY_QUERIES: cap})
    if DAILY_QUERIES not in added:
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        raise TooManyRequests(
            f"This licence has asked its {cap} anonymised aggregate queries for today (UTC); "
            "the count starts again at midnight UTC.",
            code="daily_query_limit",
            retry_after=int((midnight - now).total_seconds()) + 1,
            cap=cap,
        )


async def settle(
    session: AsyncSession,
    reservation_id: str,
    used: dict[str, int],
    *,
    licence: Licence | None = None,
    counters: dict[str, int] | None = None,
) -> bool:
    """Record what was used, give back the rest; once only (False if it was already closed).

    ``licence`` is the reservation's licence when the caller holds it already (its id and parties
    never change), which spares reading it again; ``counters``, what ``reserve`` answered, the
    counters as they stood then, which are how they stand now when nothing is given back.
    """
    reservation = await repo.close_reservation(session, reservation_id, "settled")
    late = reservation is None
    if late:  # the sweep gave the hold back while the work ran on (a slow download): the use still counts
        reservation = await repo.close_reservation(session, reservation_id, "settled", was="expired")
    if reservation is None:
        return False
    if licence is None or licence.id != reservation.licence_id:
        licence = await access_repo.licence(session, reservation.licence_id)
    assert licence is not None
    if late:
        change = {d: int(used.get(d, 0)) for d in reservation.amounts}
    else:
        change = {d: int(used.get(d, 0)) - int(reserved) for d, reserved in reservation.amounts.items()}
    # When anything is given back, every reserved counter is in the statement (a zero step for some)
    # so it answers them all as they now stand; when nothing is, they stand as reserve left them.
    # Either way the thresholds are judged without a second read.
    if any(change.values()):
        used_now = await repo.add_each(session, licence.id, reservation.period_start, change)
    else:
        used_now = dict(counters or {})
    now = utcnow()
    spent = [(dimension, quantity) for dimension, quantity in used.items() if quantity > 0]
    n = len(spent)
    columns = events.usage_columns(
        [events.Owner.of(licence)] * n,
        new_ids("use", n),
        [f"res:{reservation.id}:{dimension}" for dimension, _ in spent],
        [dimension for dimension, _ in spent],
        [quantity for _, quantity in spent],
        [now] * n,
        [reservation.analyst_id] * n,
        source="server",
        reported_by=None,
        created=now,
    )
    await repo.insert_events(session, columns)
    if spent:
        await _note_usage(session, licence.id, now)
        await thresholds.watch_caps(session, licence, reservation.period_start, used_now)
    return True


async def _note_usage(session: AsyncSession, licence_id: str, now: datetime) -> None:
    """``usage.recorded`` for server-side usage, once per licence and hour.

    Billing reports whole hours, and its hourly job reports every metered licence anyway: the event
    only lets it start sooner. One per request would make the worker repeat itself, and even the
    deduplicated insert costs a statement a request, so a process remembers what it emitted
    (``once.py``).
    """
    key = f"usage.recorded:{licence_id}:{now:%Y-%m-%dT%H}"
    if once.told(key):
        return
    await outbox.emit_once(session, "usage.recorded", {"licence_ids": [licence_id], "source": "server"}, dedupe_key=key)
    once.remember(session, key)


async def release(session: AsyncSession, reservation_id: str, *, keep_epsilon: bool, status: str = "released") -> bool:
    """Give the whole reservation back (the work failed); ε stays spent if noise may have been drawn.

    The sweep closes as ``expired`` instead: the work may still be running, and ``settle`` then
    counts what it used after all.
    """
    reservation = await repo.close_reservation(session, reservation_id, status)
    if reservation is None:
        return False
    await repo.add_each(
        session,
        reservation.licence_id,
        reservation.period_start,
        {d: -int(reserved) for d, reserved in reservation.amounts.items()},
    )
    if reservation.epsilon_micro and not keep_epsilon:
        licence = await access_repo.licence(session, reservation.licence_id)
        assert licence is not None
        await repo.refund(session, licence.consumer_org_id, licence.product_id, reservation.epsilon_micro)
    return True


async def sweep_reservations(ctx: outbox.JobContext) -> None:
    """Periodic: release what crashed (or very slow) requests left reserved — counters back, ε kept.

    Each expiry is audited (``reservation.expired``, with what was held): a request that died
    between its two phases leaves that trace, and the use it may have made is not metered. Work
    that was only slow still settles afterwards (``settle`` takes an expired reservation once) and
    is audited then as usual, so nothing is counted twice.
    """
    async with write_transaction(ctx.sessions) as session:
        for reservation in await repo.stale_reservations(session, utcnow()):
            if not await release(session, reservation.id, keep_epsilon=True, status="expired"):
                continue
            licence = await access_repo.licence(session, reservation.licence_id)
            assert licence is not None
            audit.record(
                session,
                None,
                "reservation.expired",
                "reservation",
                reservation.id,
                [licence.consumer_org_id, licence.owner_org_id],
                {
                    "licence_id": reservation.licence_id,
                    "analyst_id": reservation.analyst_id,
                    "kind": reservation.kind,
                    "reserved": reservation.amounts,
                    "epsilon_micro_kept": reservation.epsilon_micro,
                    "created_at": reservation.created_at.isoformat(),
                },
            )
