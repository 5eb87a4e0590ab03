"""Cursors of row answers: they continue only the query, licence and release they came from, any
change to them is refused, and they never show the record key they carry."""

from __future__ import annotations

import base64
import json
from datetime import date
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from catalog.audit import AuditEvent
from catalog.delivery import paging
from catalog.delivery.schemas import Condition, OrderBy, QueryRequest
from catalog.errors import DomainError
from catalog.metering.models import UsageEvent
from tests.delivery.conftest import visits_parquet
from tests.delivery.test_compiler import TABLE
from tests.support import Party, expect, problem

KEY = paging.cursor_key(b"p" * 40)
BY_DATE = QueryRequest(
    table="visits",
    select=["age", "visit_date"],
    where=[Condition(field="age", op=">=", value=30)],
    order_by=[OrderBy(field="visit_date", direction="desc")],
    limit=10,
)
RECORD_KEY = 2**64 - 12345  # above 2**63: a record key is an unsigned 64-bit number


def cursor(q: QueryRequest = BY_DATE, licence: str = "lic_1") -> str:
    return paging.encode(KEY, licence, "rel_1", q, [date(2024, 3, 1), RECORD_KEY])


def refused(code: str, text: str, q: QueryRequest = BY_DATE, licence: str = "lic_1", key: bytes = KEY) -> None:
    with pytest.raises(DomainError) as caught:
        paging.continue_after(key, paging.decode(key, text), licence, q, TABLE)
    assert caught.value.status == 400 and caught.value.code == code
    assert [e.field for e in caught.value.errors] == ["cursor"]


class TestRoundTrip:
    def test_a_cursor_gives_back_the_keyset_it_was_made_from(self) -> None:
        position = paging.decode(KEY, cursor())
        assert position.release_id == "rel_1"
        assert paging.continue_after(KEY, position, "lic_1", BY_DATE, TABLE) == [date(2024, 3, 1), RECORD_KEY]

    def test_another_page_size_continues_the_same_query(self) -> None:
        bigger = msgspec.structs.replace(BY_DATE, limit=500)
        assert paging.continue_after(KEY, paging.decode(KEY, cursor()), "lic_1", bigger, TABLE)[-1] == RECORD_KEY

    def test_the_record_key_is_not_in_the_cursor(self) -> None:
        first, second = cursor(), cursor()
        assert first != second  # a fresh pad each time: equal positions do not even look alike
        for text in (first, second):
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            assert RECORD_KEY.to_bytes(8, "big") not in raw and str(RECORD_KEY).encode() not in raw


class TestRefusals:
    def test_a_changed_cursor_is_invalid(self) -> None:
        text = cursor()
        flipped = text[:20] + ("A" if text[20] != "A" else "B") + text[21:]
        refused("invalid_cursor", flipped)
        refused("invalid_cursor", "bm90LWEtY3Vyc29y")
        refused("invalid_cursor", text, key=paging.cursor_key(b"q" * 40))  # another server's

    def test_another_licence_or_query_is_a_mismatch(self) -> None:
        refused("cursor_mismatch", cursor(), licence="lic_2")
        other_where = QueryRequest(
            table="visits", select=["age", "visit_date"], order_by=BY_DATE.order_by, limit=10
        )  # no where
        refused("cursor_mismatch", cursor(), q=other_where)
        other_order = QueryRequest(
            table="visits", select=["age", "visit_date"], where=BY_DATE.where, order_by=[OrderBy(field="age")]
        )
        refused("cursor_mismatch", cursor(), q=other_order)


# --- through the API --------------------------------------------------------------------------------


async def served_licence(delivery, rows: int = 1000) -> tuple[dict[str, Any], Party, Party]:
    """An L1 licence whose visits table has exactly ``rows`` rows, a person each: (licence, its
    analyst, the owner)."""
    owner = await delivery.provider()
    product = await delivery.published(owner, "L1", file=("visits.parquet", visits_parquet(rows, persons="each")))
    consumer = await delivery.consumer()
    return await delivery.licence_on(product, owner, consumer), consumer["analyst"], owner


async def pages(delivery, licence_id: str, analyst: Party, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of ``body``'s answer, following next_cursor until an answer is not truncated."""
    answers = [expect(await delivery.query(licence_id, analyst, body), 200)]
    while answers[-1]["truncated"]:
        assert len(answers) < 100, "a cursor that never ends"
        cursor = answers[-1]["next_cursor"]
        answers.append(expect(await delivery.query(licence_id, analyst, {**body, "cursor": cursor}), 200))
    assert answers[-1]["next_cursor"] is None
    return answers


async def audited(app, licence_id: str, action: str) -> list[dict[str, Any]]:
    async with app.state.sessions() as s:
        stmt = select(AuditEvent.data).where(AuditEvent.subject_id == licence_id, AuditEvent.action == action)
        return [json.loads(d) for d in (await s.execute(stmt.order_by(AuditEvent.seq))).scalars()]


class TestPages:
    @pytest.mark.parametrize("order_by", [[], [{"field": "age", "direction": "desc"}, {"field": "hba1c"}]])
    async def test_ten_pages_of_100_are_the_1000_row_answer(self, app, delivery, order_by) -> None:
        licence, analyst, _ = await served_licence(delivery)
        body = {"table": "visits", "select": ["person_id", "age", "hba1c"], "order_by": order_by}
        whole = expect(await delivery.query(licence["id"], analyst, {**body, "limit": 1000}), 200)
        assert len(whole["rows"]) == 1000 and whole["truncated"] is False and whole["next_cursor"] is None
        answers = await pages(delivery, licence["id"], analyst, {**body, "limit": 100})
        assert [len(a["rows"]) for a in answers] == [100] * 10
        assert [a["truncated"] for a in answers] == [True] * 9 + [False]
        assert [row for a in answers for row in a["rows"]] == whole["rows"]
        # Each page is a query of its own: metered and audited.
        async with app.state.sessions() as s:
            stmt = select(UsageEvent.dimension, UsageEvent.quantity).where(UsageEvent.licence_id == licence["id"])
            metered = (await s.execute(stmt)).all()
        assert sorted(q for d, q in metered if d == "queries") == [1] * 11
        assert sorted(q for d, q in metered if d == "rows_returned") == [100] * 10 + [1000]
        events = await audited(app, licence["id"], "licence.queried")
        assert [(e["rows"], e["continued"], e["truncated"]) for e in events] == [(1000, False, False)] + [
            (100, False, True)
        ] + [(100, True, True)] * 8 + [(100, True, False)]

    async def test_a_cursor_stays_on_its_release(self, delivery) -> None:
        licence, analyst, owner = await served_licence(delivery, rows=300)
        body = {"table": "visits", "select": ["person_id"], "limit": 200}
        first = expect(await delivery.query(licence["id"], analyst, body), 200)
        await delivery.release(owner, licence["product_id"], "2")  # visits.csv: 126 other rows
        newest = expect(await delivery.query(licence["id"], analyst, body), 200)
        assert newest["release"] == "2" and len(newest["rows"]) == 126
        rest = expect(await delivery.query(licence["id"], analyst, {**body, "cursor": first["next_cursor"]}), 200)
        assert rest["release"] == "1" and len(rest["rows"]) == 100 and rest["truncated"] is False
        assert not {r["person_id"] for r in rest["rows"]} & {r["person_id"] for r in first["rows"]}
        moved = {**body, "cursor": first["next_cursor"], "release": "2"}
        problem(await delivery.query(licence["id"], analyst, moved), 400, "cursor_mismatch")

    async def test_a_cursor_continues_only_its_query_on_its_licence(self, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L1")
        consumer = await delivery.consumer()
        licence, other = [await delivery.licence_on(product, owner, consumer) for _ in range(2)]
        analyst = consumer["analyst"]
        body = {"table": "visits", "select": ["age"], "limit": 10}
        cursor = expect(await delivery.query(licence["id"], analyst, body), 200)["next_cursor"]
        err = problem(await delivery.query(other["id"], analyst, {**body, "cursor": cursor}), 400, "cursor_mismatch")
        assert [e["field"] for e in err["errors"]] == ["cursor"]
        changed = {**body, "select": ["hba1c"], "cursor": cursor}
        problem(await delivery.query(licence["id"], analyst, changed), 400, "cursor_mismatch")
        forged = {**body, "cursor": cursor[:-4] + ("AAAA" if not cursor.endswith("AAAA") else "BBBB")}
        problem(await delivery.query(licence["id"], analyst, forged), 400, "invalid_cursor")
        aggregate = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}], "cursor": cursor}
        err = problem(await delivery.query(licence["id"], analyst, aggregate), 400, "validation_error")
        assert [e["field"] for e in err["errors"]] == ["cursor"]
