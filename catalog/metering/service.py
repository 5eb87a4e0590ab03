"""Metering: reserve before delivery, settle after, ingest reported usage, report it.

Delivery runs in two phases (STYLE rule 3's exception). ``reserve`` adds the most a request can
use to the capped counters and the ε budget, each in one conditional statement, and records a
reservation; the work runs with no transaction open; ``settle`` gives back what was not used,
writes the usage events and tells billing (``usage.recorded``). ``release`` gives everything back
when the work failed — except ε once noise may have been drawn. The sweep releases reservations a
crash left open, never their ε.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from catalog import audit, outbox, policy
from catalog.access import repository as access_repo
from catalog.access.licences import add_months
from catalog.access.models import Licence
from catalog.auth import Principal
from catalog.db import utcnow, write_transaction
from catalog.errors import Conflict, FieldError, TooManyRequests, ValidationFailed
from catalog.ids import new_id, new_ids
from catalog.metering import events
from catalog.metering import repository as repo
from catalog.metering.models import Reservation
from catalog.metering.schemas import (
    Conflict as ConflictRow,
)
from catalog.metering.schemas import (
    IngestResult,
    OverCap,
    UsageBatch,
    UsageReport,
    UsageRow,
)
from catalog.products import repository as products_repo

RESERVATION_GRACE = timedelta(minutes=10)
EPSILON = "epsilon_spent"
FUTURE_TOLERANCE = timedelta(minutes=5)


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


async def reserve(
    session: AsyncSession,
    licence: Licence,
    analyst_id: str,
    kind: str,
    amounts: dict[str, int],
    epsilon_micro: int = 0,
    *,
    timeout_s: float = 30.0,
) -> Reservation:
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
        if not await repo.try_spend(session, licence.consumer_org_id, licence.product_id, epsilon_micro, total):
            raise Conflict("The ε budget for this product is spent.", code="budget_exhausted")
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
    return reservation


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
    session: AsyncSession, reservation_id: str, used: dict[str, int], *, licence: Licence | None = None
) -> bool:
    """Record what was used, give back the rest; once only (False if it was already closed).

    ``licence`` is the reservation's licence when the caller holds it already (its id and parties
    never change), which spares reading it again.
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
    await repo.add_each(session, licence.id, reservation.period_start, {d: n for d, n in change.items() if n})
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
    return True


_NOTED: OrderedDict[str, None] = OrderedDict()  # (licence, hour) keys this process has emitted lately
_NOTED_MAX = 10_000
_PENDING = "lode.metering.noted"  # the session.info key of keys emitted in its open transaction


async def _note_usage(session: AsyncSession, licence_id: str, now: datetime) -> None:
    """``usage.recorded`` for server-side usage, once per licence and hour.

    Billing reports whole hours, and its hourly job reports every metered licence anyway: the event
    only lets it start sooner. One per request would make the worker repeat itself, and even the
    deduplicated insert costs a statement a request, so a process remembers what it emitted — but
    only once the transaction that emitted it has committed: a key remembered from a transaction
    that rolled back would keep every later request of that hour from emitting it at all.
    """
    key = f"usage.recorded:{licence_id}:{now:%Y-%m-%dT%H}"
    if key in _NOTED:
        return
    await outbox.emit_once(session, "usage.recorded", {"licence_ids": [licence_id], "source": "server"}, dedupe_key=key)
    sync = session.sync_session
    sync.info.setdefault(_PENDING, set()).add(key)
    if not event.contains(sync, "after_commit", _remember_committed):
        event.listen(sync, "after_commit", _remember_committed)
        event.listen(sync, "after_transaction_end", _forget_uncommitted)


def _remember_committed(sync: Session) -> None:
    if sync.in_nested_transaction():  # a savepoint released: the outer transaction may still roll back
        return
    for key in sync.info.pop(_PENDING, ()):
        _NOTED[key] = None
    while len(_NOTED) > _NOTED_MAX:
        _NOTED.popitem(last=False)


def _forget_uncommitted(sync: Session, transaction: SessionTransaction) -> None:
    # Runs after after_commit, and alone after a rollback or a close without commit: whatever the
    # outermost transaction did not commit must not be remembered by the session's next one.
    if transaction.parent is None:
        sync.info.pop(_PENDING, None)


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


class MeteringService:
    def __init__(self, session: AsyncSession, caller: Principal) -> None:
        self.session = session
        self.caller = caller

    async def ingest(self, batch: UsageBatch) -> IngestResult:
        """Usage a provider delivered outside Lode: validated whole, inserted in one statement.

        Up to 1,000 events a request, so each event costs little plain Python: its time checked
        and put in UTC once, the batch built a column at a time (``events.usage_columns``), and the
        later steps skipped when, as usual, every event went in.
        """
        ids = sorted({e.licence_id for e in batch.events})
        # Only licences of the caller's products (the operator: any); the rest are refused below.
        party = None if self.caller.is_operator else self.caller.org_id
        licences = {
            lic.id: lic
            for lic in await access_repo.licences_by_ids(self.session, ids, party=party, roles=("owner", "provider"))
        }
        now = utcnow()
        latest = now + FUTURE_TOLERANCE
        terms = {lid: (lic.starts_on, lic.ends_on) for lid, lic in licences.items()}
        errors: list[FieldError] = []
        moments: list[datetime] = []  # each event's time in UTC
        for i, e in enumerate(batch.events):
            term = terms.get(e.licence_id)
            at = e.occurred_at
            if term is None:
                errors.append(FieldError(f"events.{i}.licence_id", "not a licence of your products"))
            elif at.tzinfo is None:
                errors.append(FieldError(f"events.{i}.occurred_at", "needs a time zone (RFC 3339)"))
            elif at > latest:
                errors.append(FieldError(f"events.{i}.occurred_at", "more than 5 minutes in the future"))
            else:
                at = at.astimezone(UTC)
                if not term[0] <= at.date() <= term[1]:
                    errors.append(FieldError(f"events.{i}.occurred_at", "outside the licence's term"))
                moments.append(at)
        if errors:
            raise ValidationFailed.of(errors, shown=20)
        owners = {lid: events.Owner.of(lic) for lid, lic in licences.items()}
        licence_ids = [e.licence_id for e in batch.events]
        keys = [e.idempotency_key for e in batch.events]
        columns = events.usage_columns(
            [owners[lid] for lid in licence_ids],
            new_ids("use", len(keys)),
            keys,
            [e.dimension for e in batch.events],
            [e.quantity for e in batch.events],
            moments,
            [e.analyst_id for e in batch.events],
            source="reported",
            reported_by=self.caller.org_id,
            created=now,
        )
        digests = columns["payload_sha256"]
        first: dict[tuple[str, str], int] = {}
        conflicts: list[ConflictRow] = []
        duplicates = 0
        unique: list[int] = []
        for i, pair in enumerate(zip(licence_ids, keys, strict=True)):  # a key twice in a batch: the first counts
            seen = first.setdefault(pair, i)
            if seen == i:
                unique.append(i)
            elif digests[seen] == digests[i]:
                duplicates += 1
            else:
                reason = "the key is used for another event in this batch"
                conflicts.append(ConflictRow(index=i, idempotency_key=keys[i], reason=reason))
        if len(unique) < len(keys):
            columns = events.take(columns, unique)
        inserted = await repo.insert_events(self.session, columns)
        fresh = columns
        if len(inserted) < len(unique):
            pairs = list(zip(columns["licence_id"], columns["idempotency_key"], strict=True))
            fresh = events.take(columns, [j for j, pair in enumerate(pairs) if pair in inserted])
            rest = [j for j, pair in enumerate(pairs) if pair not in inserted]
            existing = await repo.existing_events(self.session, [pairs[j] for j in rest])
            for j in rest:
                if existing.get(pairs[j]) == columns["payload_sha256"][j]:
                    duplicates += 1
                else:
                    conflicts.append(
                        ConflictRow(
                            index=first[pairs[j]],
                            idempotency_key=pairs[j][1],
                            reason="the key was used before with a different event",
                        )
                    )
        over = await self._count_towards_caps(fresh, licences)
        if inserted:
            outbox.emit(
                self.session,
                "usage.recorded",
                {"licence_ids": sorted({lic for lic, _ in inserted}), "source": "reported"},
            )
        return IngestResult(
            inserted=len(inserted),
            duplicates=duplicates,
            conflicts=sorted(conflicts, key=lambda c: c.index),
            over_cap=over,
        )

    async def _count_towards_caps(self, columns: events.Columns, licences: dict[str, Licence]) -> list[OverCap]:
        """Reported usage counts toward caps and is accepted past them, flagged over_cap."""
        caps_of = {lid: lic.caps for lid, lic in licences.items()}
        by_day: dict[tuple[str, str, date], int] = defaultdict(int)
        for licence_id, dimension, at, quantity in zip(
            columns["licence_id"], columns["dimension"], columns["occurred_at"], columns["quantity"], strict=True
        ):
            if dimension in caps_of[licence_id]:
                by_day[(licence_id, dimension, at.date())] += quantity
        totals: dict[tuple[str, str, date], int] = defaultdict(int)
        periods: dict[tuple[str, date], date] = {}
        for (licence_id, dimension, day), quantity in by_day.items():
            period = periods.get((licence_id, day))
            if period is None:
                period = periods[(licence_id, day)] = await cap_period_start(self.session, licences[licence_id], day)
            totals[(licence_id, dimension, period)] += quantity
        totals = dict(sorted(totals.items()))
        used_now = await repo.add_counters(self.session, totals)
        over = []
        for licence_id, dimension, period in totals:
            used = used_now[(licence_id, dimension, period)]
            cap = int(caps_of[licence_id][dimension])
            if used > cap:
                over.append(OverCap(licence_id=licence_id, dimension=dimension, used=used, cap=cap))
                # Only this period's events: a batch may reach back into an earlier period that held.
                each = zip(
                    columns["licence_id"], columns["dimension"], columns["occurred_at"], columns["idempotency_key"],
                    strict=True,
                )  # fmt: skip
                keys = [
                    key
                    for lid, dim, at, key in each
                    if lid == licence_id and dim == dimension and periods.get((lid, at.date())) == period
                ]
                await repo.flag_over_cap(self.session, licence_id, keys)
        return over

    async def report(
        self, licence_id: str | None, granularity: str, tz: str, since: datetime | None, until: datetime | None
    ) -> UsageReport:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationFailed.field("tz", f"{tz!r} is not an IANA time zone such as Asia/Shanghai") from None
        until = (until or utcnow()).astimezone(UTC)
        since = (since or until - timedelta(days=30)).astimezone(UTC)
        if since >= until:
            raise ValidationFailed.field("since", "must be before until")
        if licence_id is not None:
            await access_repo.party_licence(self.session, self.caller, licence_id)
        scope = access_repo.licence_scope_ids(self.caller)
        buckets = await repo.usage_buckets(self.session, scope, since, until, licence_id)
        sums: dict[tuple[str, str, str | None, str], int] = defaultdict(int)
        for bucket, dimension, analyst, lic, quantity in buckets:
            local = datetime.fromtimestamp(bucket * repo.BUCKET_SECONDS, UTC).astimezone(zone)
            start = local.replace(minute=0, second=0, microsecond=0)
            if granularity == "day":
                start = start.replace(hour=0)
            sums[(start.isoformat(), dimension, analyst, lic)] += quantity
        rows = [
            UsageRow(period=p, dimension=d, analyst_id=a, licence_id=lic, quantity=q, epsilon=_epsilon(d, q))
            for (p, d, a, lic), q in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3], kv[0][2] or ""))
        ]
        totals: dict[str, int] = defaultdict(int)
        for row in rows:
            totals[row.dimension] += row.quantity
        return UsageReport(
            granularity=granularity,
            tz=tz,
            since=since,
            until=until,
            rows=rows,
            totals=dict(totals),
            epsilon_spent=totals.get(EPSILON, 0) / policy.MICRO,
        )


def _epsilon(dimension: str, quantity: int) -> float | None:
    """ε as the decimal budgets and answers show, beside the micro-ε integer usage is counted in
    (divided once from the integer sum, so no float error accumulates)."""
    return quantity / policy.MICRO if dimension == EPSILON else None
