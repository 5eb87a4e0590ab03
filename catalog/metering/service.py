"""Metering: ingest the usage providers report, and report usage to the parties.

What Lode delivers itself is metered by ``reservations.py`` (reserve before, settle after); both
write the same events and counters, and both count towards the licence's caps.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import outbox, policy
from catalog.access import repository as access_repo
from catalog.access.models import Licence
from catalog.auth import Principal
from catalog.db import utcnow
from catalog.errors import FieldError, ValidationFailed
from catalog.ids import new_ids
from catalog.metering import events, thresholds
from catalog.metering import repository as repo
from catalog.metering.reservations import cap_period_start
from catalog.metering.schemas import (
    CapStanding,
    IngestResult,
    OverCap,
    UsageBatch,
    UsageReport,
    UsageRow,
)
from catalog.metering.schemas import (
    Conflict as ConflictRow,
)

EPSILON = "epsilon_spent"
FUTURE_TOLERANCE = timedelta(minutes=5)


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
            await thresholds.watch_caps(self.session, licences[licence_id], period, {dimension: used})
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
        caps: list[CapStanding] = []
        if licence_id is not None:
            licence = await access_repo.party_licence(self.session, self.caller, licence_id)
            caps = await self._caps(licence)
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
            caps=caps,
        )

    async def _caps(self, licence: Licence) -> list[CapStanding]:
        """The counters the caps are enforced on (``reservations.reserve``), for the current period."""
        period = await cap_period_start(self.session, licence, utcnow().date())
        used = await repo.counters(self.session, licence.id, period)
        return [
            CapStanding(
                dimension=d,
                cap=int(cap),
                used=used.get(d, 0),
                left=max(int(cap) - used.get(d, 0), 0),
                period_start=period,
            )
            for d, cap in sorted(licence.caps.items())
        ]


def _epsilon(dimension: str, quantity: int) -> float | None:
    """ε as the decimal budgets and answers show, beside the micro-ε integer usage is counted in
    (divided once from the integer sum, so no float error accumulates)."""
    return quantity / policy.MICRO if dimension == EPSILON else None
