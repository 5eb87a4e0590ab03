"""Disclosure control over aggregate cells: what each grade's rule suppresses, perturbs and refuses,
run on the cells DuckDB computes from the compiler's SQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.delivery import compiler, disclosure, validation
from catalog.delivery.schemas import Aggregate, Condition, OrderBy, QueryRequest
from catalog.errors import Unprocessable
from catalog.policy import rule
from tests.delivery.test_compiler import CELL_KEY, ROWS, TABLE, build_store

L1, L4 = rule("L1"), CELL_KEY
HIDDEN = ("_persons", "_rows", "_ckey")


class Table(NamedTuple):
    conn: duckdb.DuckDBPyConnection
    path: str


@pytest.fixture(name="visits")
def fx_visits(tmp_path: Path) -> Iterator[Table]:
    storage, release, path = build_store(tmp_path)
    with storage.sandbox.open_connection(release) as conn:
        yield Table(conn, path)


def answer(table: Table, q: QueryRequest, grade_rule: Any) -> disclosure.Protected:
    """What the service does for an aggregate query: validate, control the query set, compute, protect."""
    conn, path = table
    validation.validate(q, TABLE, grade_rule, compiler.mode_of(q))
    (population,) = compiler.run(conn, compiler.population_sql(q, TABLE, path))
    disclosure.check_query_set(population["persons_matching"], population["persons_total"], bool(q.where), grade_rule)
    cells = compiler.run(conn, compiler.aggregate_sql(q, TABLE, path, grade_rule))
    return disclosure.protect(cells, q, grade_rule)


def query(**fields: Any) -> QueryRequest:
    return QueryRequest(table="visits", **fields)


def by(rows: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


def persons(district: str) -> int:
    return len({r["person_id"] for r in ROWS if r["district"] == district})


def reasons(protected: disclosure.Protected) -> dict[tuple[Any, ...], dict[str, str]]:
    found: dict[tuple[Any, ...], dict[str, str]] = defaultdict(dict)
    for note in protected.suppressed:
        for column in note.columns:
            found[tuple(note.group.values())][column] = note.reason
    return found


COUNT = [Aggregate(fn="count")]


class TestQuerySetControl:
    def test_a_where_selecting_three_persons_is_refused(self, visits: Table) -> None:
        q = query(where=[Condition(field="district", op="=", value="Huangpu")], aggregates=COUNT)
        with pytest.raises(Unprocessable) as caught:
            answer(visits, q, L4)
        assert caught.value.code == "query_set_too_small" and caught.value.status == 422
        assert "3" not in caught.value.detail  # the refusal does not tell the count it protects

    def test_a_where_selecting_everyone_but_three_persons_is_refused(self, visits: Table) -> None:
        for op, value in (("!=", "Huangpu"), ("not_in", ["Huangpu"])):
            q = query(where=[Condition(field="district", op=op, value=value)], aggregates=COUNT)
            with pytest.raises(Unprocessable, match="fewer than 10"):
                answer(visits, q, L4)

    def test_a_whole_table_query_and_a_wide_where_are_allowed(self, visits: Table) -> None:
        (total,) = answer(visits, query(aggregates=COUNT), L4).rows
        assert abs(total["count"] - 84) <= 2
        wide = query(where=[Condition(field="district", op="in", value=["Pudong", "Minhang"])], aggregates=COUNT)
        assert answer(visits, wide, L4).rows
        everyone = query(where=[Condition(field="age", op=">=", value=-10)], aggregates=COUNT)
        assert answer(visits, everyone, L4).rows  # an empty complement is not a small one

    def test_only_rules_with_query_set_control_refuse(self) -> None:
        disclosure.check_query_set(3, 84, True, L1)
        disclosure.check_query_set(84, 84, False, L4)
        disclosure.check_query_set(84, 84, True, L4)
        disclosure.check_query_set(10, 20, True, L4)
        for matching, total, has_where in ((9, 84, True), (75, 84, True), (9, 9, False), (0, 84, True)):
            with pytest.raises(Unprocessable):
                disclosure.check_query_set(matching, total, has_where, L4)


class TestL4:
    def test_the_small_cell_and_its_partner_are_suppressed_and_the_rest_perturbed(self, visits: Table) -> None:
        q = query(group_by=["district"], aggregates=COUNT)
        protected = answer(visits, q, L4)
        rows = by(protected.rows, "district")
        assert rows["Huangpu"]["count"] is None
        # The smallest other cell goes too, so the total minus the rest does not give Huangpu back.
        assert rows["Jingan"]["count"] is None
        assert reasons(protected) == {("Huangpu",): {"count": "small_cell"}, ("Jingan",): {"count": "secondary"}}
        assert protected.perturbed
        for district in ("Xuhui", "Pudong", "Minhang"):
            assert abs(rows[district]["count"] - persons(district)) <= 2
        assert rows["Xuhui"]["count"] != persons("Xuhui")  # under 2k persons: never exact
        assert all(set(r) == {"district", "count"} for r in protected.rows)

    def test_asking_twice_or_another_way_gives_the_same_answer(self, visits: Table) -> None:
        q = query(group_by=["district"], aggregates=[*COUNT, Aggregate(fn="sum", field="age")])
        first = answer(visits, q, L4)
        assert answer(visits, q, L4) == first
        alone = query(where=[Condition(field="district", op="=", value="Pudong")], aggregates=q.aggregates)
        (pudong,) = answer(visits, alone, L4).rows
        assert pudong == {k: v for k, v in by(first.rows, "district")["Pudong"].items() if k != "district"}

    def test_totals_are_perturbed_too(self, visits: Table) -> None:
        q = query(aggregates=[*COUNT, Aggregate(fn="sum", field="age"), Aggregate(fn="avg", field="age")])
        protected = answer(visits, q, L4)
        (total,) = protected.rows
        assert protected.perturbed and protected.suppressed == []
        true_sum = sum(r["age"] for r in ROWS)
        largest = max(sum(r["age"] for r in ROWS if r["person_id"] == p) for p in {r["person_id"] for r in ROWS})
        assert isinstance(total["sum_age"], int) and abs(total["sum_age"] - true_sum) <= 0.5 * largest + 1

    def test_an_average_agrees_with_the_released_sum_and_count(self, visits: Table) -> None:
        aggregates = [Aggregate(fn=fn, field="hba1c") for fn in ("count", "sum", "avg")]
        protected = answer(visits, query(group_by=["sex"], aggregates=aggregates), L4)
        for row in protected.rows:
            assert row["avg_hba1c"] * row["count_hba1c"] == pytest.approx(row["sum_hba1c"])

    def test_perturbed_sums_and_averages_keep_the_columns_precision(self, visits: Table) -> None:
        conn, path = visits
        aggregates = [Aggregate(fn="sum", field="hba1c"), Aggregate(fn="avg", field="hba1c")]
        q = query(group_by=["sex"], aggregates=aggregates)
        cells = compiler.run(conn, compiler.aggregate_sql(q, TABLE, path, L4))
        unrounded = disclosure.protect(cells, q, L4)
        rounded = disclosure.protect(cells, q, L4, {"hba1c": 1})
        assert any(round(r["avg_hba1c"], 1) != r["avg_hba1c"] for r in unrounded.rows)  # noise leaves long tails
        for before, after in zip(unrounded.rows, rounded.rows, strict=True):
            assert after["sum_hba1c"] == round(before["sum_hba1c"], 1)
            assert after["avg_hba1c"] == round(before["avg_hba1c"], 1)

    def test_a_sum_two_persons_dominate_is_suppressed(self, visits: Table) -> None:
        q = query(
            group_by=["district"], aggregates=[Aggregate(fn="sum", field="cost"), Aggregate(fn="avg", field="age")]
        )
        protected = answer(visits, q, L4)
        rows = by(protected.rows, "district")
        assert rows["Jingan"]["sum_cost"] is None and rows["Xuhui"]["sum_cost"] is not None
        # Huangpu and Jingan already hide two sums of the margin; Huangpu's average needs a partner,
        # and the smallest other cell is Jingan's.
        assert reasons(protected) == {
            ("Huangpu",): {"sum_cost": "small_cell", "avg_age": "small_cell"},
            ("Jingan",): {"sum_cost": "dominance", "avg_age": "secondary"},
        }
        jingan = [n for n in protected.suppressed if n.group == {"district": "Jingan"}]
        assert [(n.reason, n.columns) for n in jingan] == [("dominance", ["sum_cost"]), ("secondary", ["avg_age"])]

    def test_no_margin_of_a_two_way_table_has_a_lone_suppression(self, visits: Table) -> None:
        protected = answer(visits, query(group_by=["district", "sex"], aggregates=COUNT), L4)
        hidden = {(r["district"], r["sex"]) for r in protected.rows if r["count"] is None}
        assert ("Huangpu", "F") in hidden and ("Huangpu", "M") in hidden
        for index in (0, 1):
            lines: dict[str, list[bool]] = defaultdict(list)
            for r in protected.rows:
                key = (r["district"], r["sex"])
                lines[key[1 - index]].append(key in hidden)
            assert all(sum(line) != 1 for line in lines.values() if len(line) > 1)

    def test_order_and_limit_apply_to_released_values(self, visits: Table) -> None:
        q = query(group_by=["district"], aggregates=COUNT, order_by=[OrderBy(field="count", direction="desc")], limit=4)
        protected = answer(visits, q, L4)
        counts = [r["count"] for r in protected.rows]
        assert len(counts) == 4 and counts[-1] is None
        assert counts[:3] == sorted(counts[:3], reverse=True)
        assert {tuple(n.group.values()) for n in protected.suppressed} <= {(r["district"],) for r in protected.rows}


class TestL1:
    def test_small_cells_are_suppressed_without_perturbation(self, visits: Table) -> None:
        q = query(group_by=["district"], aggregates=[*COUNT, Aggregate(fn="max", field="age")])
        protected = answer(visits, q, L1)
        rows = by(protected.rows, "district")
        assert not protected.perturbed
        assert rows["Huangpu"] == {"district": "Huangpu", "count": None, "max_age": None}
        assert reasons(protected) == {("Huangpu",): {"count": "small_cell", "max_age": "small_cell"}}
        xuhui = [r for r in ROWS if r["district"] == "Xuhui"]
        assert rows["Xuhui"] == {"district": "Xuhui", "count": len(xuhui), "max_age": max(r["age"] for r in xuhui)}

    def test_a_narrow_where_is_answered_with_its_cell_suppressed(self, visits: Table) -> None:
        q = query(where=[Condition(field="district", op="=", value="Huangpu")], aggregates=COUNT)
        protected = answer(visits, q, L1)
        assert protected.rows == [{"count": None}]
        assert [(n.group, n.reason) for n in protected.suppressed] == [({}, "small_cell")]


def grid_cells(draw: Any) -> list[dict[str, Any]]:
    rows, columns = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    cells = []
    for a in range(rows):
        for b in range(columns):
            if draw(st.booleans()) or (a, b) == (0, 0):
                n = draw(st.integers(1, 40))
                cells.append(
                    {"a": a, "b": b, "_persons": n, "_rows": n, "_ckey": draw(st.integers(0, 2**32 - 1)), "count": n}
                )
    return cells


@settings(max_examples=200, deadline=None)
@given(st.composite(grid_cells)())
def test_suppression_holds_for_any_two_way_table(cells: list[dict[str, Any]]) -> None:
    q = query(group_by=["a", "b"], aggregates=COUNT)
    protected = disclosure.protect(cells, q, L4)
    hidden = {(r["a"], r["b"]) for r in protected.rows if r["count"] is None}
    assert {(c["a"], c["b"]) for c in cells if c["_persons"] < L4.k} <= hidden
    for fixed, free in (("a", "b"), ("b", "a")):
        lines: dict[int, list[bool]] = defaultdict(list)
        for r in protected.rows:
            lines[r[fixed]].append((r["a"], r["b"]) in hidden)
        assert all(sum(line) != 1 for line in lines.values() if len(line) > 1), free
    for r, cell in zip(protected.rows, cells, strict=True):
        assert set(r) == {"a", "b", "count"}
        if r["count"] is not None:
            assert r["count"] != cell["count"] or cell["_persons"] >= 2 * L4.k
            assert abs(r["count"] - cell["count"]) <= 2
