"""Usage events: idempotent bulk ingest from providers, caps, and reports by period and analyst."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update

from catalog import db, outbox
from catalog.access.models import Licence
from catalog.audit import AuditEvent
from catalog.metering import reservations as metering
from catalog.metering.models import Reservation, UsageCounter, UsageEvent
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio


@pytest.fixture(name="setup")
async def fx_setup(delivery):
    owner = await delivery.provider()
    product = await delivery.published(
        owner, "L1", plans=[{"name": "Capped", "kind": "free", "currency": "CNY", "caps": {"rows_returned": 5000}}]
    )
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    return owner, consumer, licence


def events(
    licence_id: str,
    n: int,
    *,
    start: int = 0,
    quantity: int = 5,
    dimension: str = "rows_returned",
    at: datetime | None = None,
) -> list[dict]:
    at = at or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    return [
        {
            "idempotency_key": f"ev-{i}",
            "licence_id": licence_id,
            "dimension": dimension,
            "quantity": quantity,
            "occurred_at": at.isoformat(),
        }
        for i in range(start, start + n)
    ]


async def total(app, licence_id: str) -> int:
    async with app.state.sessions() as s:
        return (
            await s.execute(
                select(func.coalesce(func.sum(UsageEvent.quantity), 0)).where(UsageEvent.licence_id == licence_id)
            )
        ).scalar_one()


class TestIngest:
    async def test_the_same_batch_twice_is_inserted_then_duplicate(self, client, app, setup) -> None:
        owner, _, licence = setup
        batch = {"events": events(licence["id"], 1000)}
        first = expect(await client.post("/v1/usage-events", json=batch, headers=owner.headers), 200)
        assert (first["inserted"], first["duplicates"], first["conflicts"]) == (1000, 0, [])
        assert first["over_cap"] == []  # 1,000 × 5 rows reaches the cap of 5,000 exactly
        before = await total(app, licence["id"])
        second = expect(await client.post("/v1/usage-events", json=batch, headers=owner.headers), 200)
        assert (second["inserted"], second["duplicates"], second["conflicts"]) == (0, 1000, [])
        assert await total(app, licence["id"]) == before == 5000

    async def test_a_key_reused_with_another_payload_is_a_conflict_and_stores_nothing(self, client, app, setup) -> None:
        owner, _, licence = setup
        expect(
            await client.post("/v1/usage-events", json={"events": events(licence["id"], 2)}, headers=owner.headers), 200
        )
        changed = events(licence["id"], 3, quantity=7)
        result = expect(await client.post("/v1/usage-events", json={"events": changed}, headers=owner.headers), 200)
        assert result["inserted"] == 1 and result["duplicates"] == 0
        assert [(c["index"], c["idempotency_key"]) for c in result["conflicts"]] == [(0, "ev-0"), (1, "ev-1")]
        assert await total(app, licence["id"]) == 5 + 5 + 7

    async def test_repeats_within_a_batch_and_against_stored_events_are_told_apart(self, client, app, setup) -> None:
        """Each index is the event's place in this batch: the first of a key within the batch
        counts, a later identical one is a duplicate and a different one a conflict; against stored
        events the same, reported at the index of the key's first appearance."""
        owner, _, licence = setup
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)  # one time: a second may pass
        stored = events(licence["id"], 2, at=at)  # ev-0, ev-1 at 5 each
        expect(await client.post("/v1/usage-events", json={"events": stored}, headers=owner.headers), 200)
        ev = {e["idempotency_key"]: e for e in events(licence["id"], 4, at=at)}
        batch = [
            ev["ev-2"],  # 0: new
            ev["ev-2"],  # 1: repeats 0 exactly: duplicate
            {**ev["ev-0"], "quantity": 9},  # 2: stored with 5: conflict
            ev["ev-1"],  # 3: stored exactly: duplicate
            {**ev["ev-2"], "quantity": 8},  # 4: repeats 0 differently: conflict
            ev["ev-3"],  # 5: new
            {**ev["ev-0"], "quantity": 9},  # 6: repeats 2 exactly: duplicate of a conflict
        ]
        result = expect(await client.post("/v1/usage-events", json={"events": batch}, headers=owner.headers), 200)
        assert (result["inserted"], result["duplicates"]) == (2, 3)
        assert [(c["index"], c["idempotency_key"]) for c in result["conflicts"]] == [(2, "ev-0"), (4, "ev-2")]
        assert await total(app, licence["id"]) == 4 * 5

    async def test_reported_usage_passes_caps_flagged_over_cap(self, client, app, setup) -> None:
        owner, _, licence = setup
        result = expect(
            await client.post(
                "/v1/usage-events", json={"events": events(licence["id"], 3, quantity=2000)}, headers=owner.headers
            ),
            200,
        )
        assert result["inserted"] == 3 and result["over_cap"][0]["used"] == 6000
        async with app.state.sessions() as s:
            flagged = (
                await s.execute(select(func.count()).select_from(UsageEvent).where(UsageEvent.over_cap.is_(True)))
            ).scalar_one()
        assert flagged == 3

    async def test_the_licences_usage_says_what_is_left_of_each_cap(self, client, setup) -> None:
        owner, consumer, licence = setup
        body = {"events": events(licence["id"], 3, quantity=1000)}
        expect(await client.post("/v1/usage-events", json=body, headers=owner.headers), 200)
        usage = expect(await client.get(f"/v1/licences/{licence['id']}/usage", headers=consumer["admin"].headers), 200)
        standing = {"dimension": "rows_returned", "cap": 5000, "used": 3000, "left": 2000}
        assert usage["caps"] == [{**standing, "period_start": licence["starts_on"]}]
        assert expect(await client.get("/v1/usage", headers=consumer["admin"].headers), 200)["caps"] == []

    async def test_only_the_period_that_went_over_is_flagged(self, client, app, setup) -> None:
        """A batch that reaches back into an earlier cap period (a monthly cap here): the events of
        the period that passed its cap are flagged, those of the period that held are not."""
        owner, _, licence = setup
        today = db.utcnow().date()
        started = today - timedelta(days=45)
        async with db.write_transaction(app.state.sessions) as session:
            await session.execute(
                update(Licence)
                .where(Licence.id == licence["id"])
                .values(starts_on=started, cap_period="billing_period")
            )
        earlier = datetime.combine(started + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        batch = events(licence["id"], 1, quantity=100, at=earlier) + events(licence["id"], 2, start=1, quantity=3000)
        result = expect(await client.post("/v1/usage-events", json={"events": batch}, headers=owner.headers), 200)
        assert [(o["used"], o["cap"]) for o in result["over_cap"]] == [(6000, 5000)]
        async with app.state.sessions() as s:
            flagged = dict((await s.execute(select(UsageEvent.idempotency_key, UsageEvent.over_cap))).all())
        assert flagged == {"ev-0": False, "ev-1": True, "ev-2": True}

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"dimension": "epsilon_spent"}, "events.0.dimension"),
            ({"quantity": 0}, "events.0.quantity"),
            ({"occurred_at": "2999-01-01T00:00:00Z"}, "events.0.occurred_at"),
            ({"occurred_at": "2001-01-01T00:00:00Z"}, "events.0.occurred_at"),
            ({"licence_id": "lic_01M8KA6FHNZP644F7TPRPS09WM"}, "events.0.licence_id"),
            ({"idempotency_key": "ev-\x00"}, "events.0.idempotency_key"),  # PostgreSQL cannot store a NUL
        ],
    )
    async def test_invalid_events_are_refused_whole(self, client, app, setup, change, field) -> None:
        owner, _, licence = setup
        batch = events(licence["id"], 2)
        batch[0].update(change)
        err = problem(
            await client.post("/v1/usage-events", json={"events": batch}, headers=owner.headers),
            400,
            "validation_error",
        )
        assert field in [e["field"] for e in err["errors"]], err
        assert await total(app, licence["id"]) == 0

    async def test_batches_are_at_most_1000(self, client, setup) -> None:
        owner, _, licence = setup
        err = problem(
            await client.post("/v1/usage-events", json={"events": events(licence["id"], 1001)}, headers=owner.headers),
            400,
            "validation_error",
        )
        assert err["errors"][0]["field"] == "events"

    async def test_only_the_products_providers_or_operator_report(self, client, actors, setup, delivery) -> None:
        _, consumer, licence = setup
        other = await delivery.provider()
        problem(
            await client.post(
                "/v1/usage-events", json={"events": events(licence["id"], 1)}, headers=consumer["buyer"].headers
            ),
            403,
            "forbidden",
        )
        err = problem(
            await client.post("/v1/usage-events", json={"events": events(licence["id"], 1)}, headers=other.headers),
            400,
            "validation_error",
        )
        assert err["errors"][0]["field"] == "events.0.licence_id"
        expect(
            await client.post(
                "/v1/usage-events", json={"events": events(licence["id"], 1)}, headers=actors.operator.headers
            ),
            200,
        )

    async def test_ingest_tells_billing(self, client, app, setup) -> None:
        owner, _, licence = setup
        expect(
            await client.post("/v1/usage-events", json={"events": events(licence["id"], 3)}, headers=owner.headers), 200
        )
        async with app.state.sessions() as s:
            names = (await s.execute(select(outbox.OutboxEvent.name))).scalars().all()
        assert "usage.recorded" in names


class TestReports:
    async def test_by_day_and_hour_in_a_time_zone(self, client, app, setup) -> None:
        owner, consumer, licence = setup
        at = datetime.now(UTC).replace(hour=23, minute=30, second=0, microsecond=0) - timedelta(days=1)
        async with db.write_transaction(app.state.sessions) as session:  # a licence that started last week
            await session.execute(
                update(Licence).where(Licence.id == licence["id"]).values(starts_on=at.date() - timedelta(days=7))
            )
        batch = events(licence["id"], 2, at=at) + events(licence["id"], 1, start=10, at=at + timedelta(hours=1))
        expect(await client.post("/v1/usage-events", json={"events": batch}, headers=owner.headers), 200)
        since = (at - timedelta(days=1)).isoformat().replace("+00:00", "Z")
        utc = expect(
            await client.get(
                f"/v1/licences/{licence['id']}/usage", params={"since": since}, headers=consumer["buyer"].headers
            ),
            200,
        )
        assert [(r["period"][:10], r["quantity"]) for r in utc["rows"]] == [
            (at.date().isoformat(), 10),
            ((at + timedelta(hours=1)).date().isoformat(), 5),
        ]
        shanghai = expect(
            await client.get(
                f"/v1/licences/{licence['id']}/usage",
                params={"since": since, "tz": "Asia/Shanghai"},
                headers=owner.headers,
            ),
            200,
        )
        assert [r["quantity"] for r in shanghai["rows"]] == [15] and shanghai["rows"][0]["period"].endswith("+08:00")
        hourly = expect(
            await client.get(
                "/v1/usage", params={"since": since, "granularity": "hour"}, headers=consumer["buyer"].headers
            ),
            200,
        )
        assert [r["quantity"] for r in hourly["rows"]] == [10, 5] and hourly["totals"] == {"rows_returned": 15}
        problem(
            await client.get("/v1/usage", params={"tz": "Mars/Olympus"}, headers=owner.headers), 400, "validation_error"
        )

    async def test_since_is_inclusive_and_until_exclusive_to_the_microsecond(self, client, app, setup) -> None:
        """On a whole second too: SQLite compares stored times as text, so every path that writes
        them must write SQLAlchemy's one form (events once went in as ``…:00+00:00``, which sorts
        before ``…:00.000000`` and fell out of the window that starts at that very second)."""
        owner, _, licence = setup
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
        batch = events(licence["id"], 1, at=at) + events(licence["id"], 1, start=1, at=at + timedelta(microseconds=1))
        expect(await client.post("/v1/usage-events", json={"events": batch}, headers=owner.headers), 200)

        async def quantity(**window: datetime) -> int:
            params = {k: v.isoformat().replace("+00:00", "Z") for k, v in window.items()}
            report = expect(
                await client.get(f"/v1/licences/{licence['id']}/usage", params=params, headers=owner.headers), 200
            )
            return report["totals"].get("rows_returned", 0)

        assert await quantity(since=at) == 10
        assert await quantity(since=at, until=at + timedelta(microseconds=1)) == 5
        assert await quantity(since=at + timedelta(microseconds=1)) == 5
        assert await quantity(since=at - timedelta(hours=1), until=at) == 0

    async def test_epsilon_is_one_unit_across_usage_budget_and_answers(self, client, delivery) -> None:
        """Usage counts ε in micro-ε integers with the decimal beside them; the budget shows both;
        the answer's epsilon_spent is the same decimal."""
        owner = await delivery.provider()
        product = await delivery.published(owner, "L5")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        body = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}]}
        spent = [
            expect(await delivery.query(licence["id"], consumer["analyst"], {**body, "epsilon": e}), 200)[
                "epsilon_spent"
            ]
            for e in (0.1, 0.2)
        ]
        assert spent == [0.1, 0.2]
        usage = expect(await client.get(f"/v1/licences/{licence['id']}/usage", headers=consumer["buyer"].headers), 200)
        rows = [r for r in usage["rows"] if r["dimension"] == "epsilon_spent"]  # one a day: two if midnight passed
        assert all(r["epsilon"] * 1_000_000 == r["quantity"] for r in rows) and rows
        assert usage["totals"]["epsilon_spent"] == 300_000
        assert usage["epsilon_spent"] == 0.3  # 0.1 + 0.2 summed as integers: exactly 0.3
        assert {r["epsilon"] for r in usage["rows"] if r["dimension"] != "epsilon_spent"} == {None}
        budget = expect(
            await client.get(f"/v1/licences/{licence['id']}/budget", headers=consumer["buyer"].headers), 200
        )
        assert (budget["spent"], budget["spent_micro"]) == (0.3, 300_000)
        assert (budget["left"], budget["left_micro"]) == (2.7, 2_700_000)
        assert (budget["total_micro"], budget["per_query_max_micro"]) == (3_000_000, 500_000)

    async def test_others_see_nothing(self, client, setup, delivery) -> None:
        owner, _, licence = setup
        expect(
            await client.post("/v1/usage-events", json={"events": events(licence["id"], 1)}, headers=owner.headers), 200
        )
        stranger = await delivery.consumer()
        problem(
            await client.get(f"/v1/licences/{licence['id']}/usage", headers=stranger["buyer"].headers), 404, "not_found"
        )
        assert expect(await client.get("/v1/usage", headers=stranger["buyer"].headers), 200)["rows"] == []


async def past_its_time(app, consumer, licence) -> Reservation:
    """A query's reservation of 400 rows, open past its expiry, as a crashed (or slow) request leaves it."""
    async with db.write_transaction(app.state.sessions) as session:
        lic = await session.get(Licence, licence["id"])
        reservation, _ = await metering.reserve(
            session, lic, consumer["analyst"].user_id, "query", {"queries": 1, "rows_returned": 400}
        )
        await session.execute(update(Reservation).values(expires_at=db.utcnow() - timedelta(seconds=1)))
    return reservation


class TestReservations:
    async def test_the_sweep_gives_back_what_a_crash_left_reserved(self, client, app, setup) -> None:
        _, consumer, licence = setup
        async with db.write_transaction(app.state.sessions) as session:
            lic = await session.get(Licence, licence["id"])
            reservation, _ = await metering.reserve(
                session, lic, consumer["analyst"].user_id, "query", {"queries": 1, "rows_returned": 400}
            )
        async with app.state.sessions() as s:
            assert (await s.execute(select(UsageCounter.used))).scalar_one() == 400
        async with db.write_transaction(app.state.sessions) as session:
            await session.execute(update(Reservation).values(expires_at=db.utcnow() - timedelta(seconds=1)))
        await metering.sweep_reservations(outbox.JobContext(sessions=app.state.sessions, services={}))
        async with app.state.sessions() as s:
            assert (await s.execute(select(UsageCounter.used))).scalar_one() == 0
            closed = await s.get(Reservation, reservation.id)
        assert closed.status == "expired"

    async def test_several_capped_dimensions_are_given_back_and_settled_together(self, app, delivery) -> None:
        owner = await delivery.provider()
        caps = {"queries": 50, "rows_returned": 5000}
        product = await delivery.published(
            owner, "L1", plans=[{"name": "Capped", "kind": "free", "currency": "CNY", "caps": caps}]
        )
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        amounts = {"queries": 1, "rows_returned": 400}

        async def counters() -> dict[str, int]:
            async with app.state.sessions() as s:
                return dict((await s.execute(select(UsageCounter.dimension, UsageCounter.used))).all())

        async with db.write_transaction(app.state.sessions) as session:
            lic = await session.get(Licence, licence["id"])
            failed, _ = await metering.reserve(session, lic, consumer["analyst"].user_id, "query", amounts)
            settled, _ = await metering.reserve(session, lic, consumer["analyst"].user_id, "query", amounts)
        assert await counters() == {"queries": 2, "rows_returned": 800}
        async with db.write_transaction(app.state.sessions) as session:
            assert await metering.release(session, failed.id, keep_epsilon=False)  # the work failed
        assert await counters() == {"queries": 1, "rows_returned": 400}
        async with db.write_transaction(app.state.sessions) as session:
            assert await metering.settle(session, settled.id, {"queries": 1, "rows_returned": 37})
        assert await counters() == {"queries": 1, "rows_returned": 37}

    async def test_work_that_outlives_its_reservation_is_still_counted(self, client, app, setup) -> None:
        """A download slower than its reservation: the sweep gives the hold back, the settle still counts."""
        _, consumer, licence = setup
        reservation = await past_its_time(app, consumer, licence)
        await metering.sweep_reservations(outbox.JobContext(sessions=app.state.sessions, services={}))
        async with db.write_transaction(app.state.sessions) as session:
            assert await metering.settle(session, reservation.id, {"queries": 1, "rows_returned": 250})
        async with db.write_transaction(app.state.sessions) as session:  # once only
            assert not await metering.settle(session, reservation.id, {"queries": 1, "rows_returned": 250})
        async with app.state.sessions() as s:
            assert (await s.execute(select(UsageCounter.used))).scalar_one() == 250
            recorded = (
                await s.execute(select(UsageEvent.quantity).where(UsageEvent.dimension == "rows_returned"))
            ).scalars()
            assert list(recorded) == [250]
            assert (await s.get(Reservation, reservation.id)).status == "settled"

    async def test_an_expiry_is_audited_once_and_a_late_settle_is_counted_once(self, app, setup) -> None:
        owner, consumer, licence = setup
        reservation = await past_its_time(app, consumer, licence)
        for _ in range(2):  # a second sweep finds nothing left to expire
            await metering.sweep_reservations(outbox.JobContext(sessions=app.state.sessions, services={}))
        async with db.write_transaction(app.state.sessions) as session:
            assert await metering.settle(session, reservation.id, {"queries": 1, "rows_returned": 250})
        async with app.state.sessions() as s:
            expired = (await s.execute(select(AuditEvent).where(AuditEvent.action == "reservation.expired"))).scalars()
            (event,) = list(expired)
            assert (await s.execute(select(UsageCounter.used))).scalar_one() == 250
        assert event.subject_id == reservation.id and event.actor_user_id is None
        assert set(event.org_ids) == {consumer["analyst"].org_id, owner.org_id}
        data = json.loads(event.data)
        assert (data["licence_id"], data["kind"], data["reserved"]) == (licence["id"], "query", {"rows_returned": 400})


class TestBillingIsTold:
    """Settling server-side usage emits ``usage.recorded`` once per licence and hour per process."""

    @staticmethod
    async def reservations(app, licence: dict, analyst_id: str, n: int) -> list[Reservation]:
        async with db.write_transaction(app.state.sessions) as session:
            lic = await session.get(Licence, licence["id"])
            return [
                (
                    await metering.reserve(session, lic, analyst_id, "query", {"queries": 1, "rows_returned": 10})
                ).reservation
                for _ in range(n)
            ]

    @staticmethod
    async def usage_recorded(app, licence: dict) -> list[str]:
        async with app.state.sessions() as s:
            keys = await s.execute(
                select(outbox.OutboxEvent.dedupe_key).where(
                    outbox.OutboxEvent.name == "usage.recorded",
                    outbox.OutboxEvent.dedupe_key.like(f"usage.recorded:{licence['id']}:%"),
                )
            )
            return list(keys.scalars())

    async def test_a_settle_that_rolled_back_does_not_stop_the_next_from_telling_billing(self, app, setup) -> None:
        _, consumer, licence = setup
        failed, settled = await self.reservations(app, licence, consumer["analyst"].user_id, 2)
        with pytest.raises(RuntimeError):
            async with db.write_transaction(app.state.sessions) as session:
                assert await metering.settle(session, failed.id, {"queries": 1, "rows_returned": 7})
                raise RuntimeError("the request failed after settling; its transaction rolls back")
        assert await self.usage_recorded(app, licence) == []
        async with db.write_transaction(app.state.sessions) as session:
            assert await metering.settle(session, settled.id, {"queries": 1, "rows_returned": 7})
        assert len(await self.usage_recorded(app, licence)) == 1

    async def test_once_committed_the_same_hour_costs_no_further_outbox_statement(self, app, setup) -> None:
        _, consumer, licence = setup
        first, second = await self.reservations(app, licence, consumer["analyst"].user_id, 2)
        async with db.write_transaction(app.state.sessions) as session:
            assert await metering.settle(session, first.id, {"queries": 1, "rows_returned": 7})
        statements: list[str] = []

        def seen(conn, cursor, statement, parameters, context, executemany) -> None:
            statements.append(statement)

        engine = app.state.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            async with db.write_transaction(app.state.sessions) as session:
                assert await metering.settle(session, second.id, {"queries": 1, "rows_returned": 7})
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert statements and not [s for s in statements if "outbox_events" in s]
        assert len(await self.usage_recorded(app, licence)) == 1
