"""The anonymised aggregates of L4: the SQL's cells checked against a plain reading of the same rows,
then what ``anonymiser.protect`` releases from them. The red team (``tests/redteam/``) attacks the
whole through the API; these pin each part."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from catalog import policy
from catalog.delivery import anonymised_sql, anonymiser, conditions, gate, validation
from catalog.delivery.noise import Noise
from catalog.delivery.schemas import Aggregate, Condition, QueryRequest
from catalog.policy import rule
from catalog.products.dictionary import fields as fields_of
from catalog.products.models import Release
from catalog.storage import Storage
from tests.delivery.test_compiler import ROWS, TABLE, build_store

L4 = rule("L4")
NOISE = Noise(b"a test secret of at least thirty-two bytes")
SEED = ("rel_01", "visits")


@pytest.fixture(name="store")
def fx_store(tmp_path: Path) -> tuple[Storage, Path, str]:
    return build_store(tmp_path)


@pytest.fixture(name="conn")
def fx_conn(store: tuple[Storage, Path, str]) -> Iterator[duckdb.DuckDBPyConnection]:
    storage, release, _ = store
    with storage.sandbox.open_connection(release) as conn:
        yield conn


def query(*where: tuple[str, str, Any], group_by: tuple[str, ...] = (), aggregates: tuple = ({"fn": "count"},)):
    return QueryRequest(
        table="visits",
        where=[Condition(field=f, op=op, value=v) for f, op, v in where],
        group_by=list(group_by),
        aggregates=[msgspec.convert(a, Aggregate) for a in aggregates],
    )


def cells(conn, path: str, q: QueryRequest, limits: dict[str, float] | None = None) -> list[dict[str, Any]]:
    validation.validate(q, TABLE, L4, "aggregate")
    reading = conditions.read(q, fields_of(TABLE))
    limits = limits if limits is not None else anonymiser.thresholds(reading, L4, NOISE, SEED)
    compiled = anonymised_sql.cells(q, TABLE, path, reading, limits, anonymiser.DEPTH)
    return [dict(zip(compiled.columns, r, strict=True)) for r in conn.execute(compiled.sql, compiled.params).fetchall()]


def released(conn, path: str, q: QueryRequest, rule_=L4) -> anonymiser.Released:
    reading = conditions.read(q, fields_of(TABLE))
    found = cells(conn, path, q)
    return anonymiser.protect(found, q, reading, rule_, NOISE, SEED, TABLE)


def holds(row: dict[str, Any], field: str, op: str, value: Any) -> bool:
    mine = row[field]
    if op == "=":
        return mine == value
    if op == "!=":
        return mine is not None and mine != value
    if op == "in":
        return mine in value
    raise AssertionError(op)


def reference(q: QueryRequest, limits: dict[str, float]) -> dict[tuple, dict[str, int]]:
    """Per cell: persons as asked, and persons and rows once every conjunct whose effect (the persons who
    fail it alone and pass nowhere) is under its limit is dropped — the semantics the SQL implements."""
    conj = [(c.field, c.op, c.value) for c in q.where]
    keys = [conditions.read(query(c), fields_of(TABLE)).atoms[0].key for c in conj]
    by_cell: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in ROWS:
        mask = sum(1 << j for j, c in enumerate(conj) if not holds(row, *c))
        by_cell[tuple(row[g] for g in q.group_by)][row["person_id"]].append(mask)
    out = {}
    for cell, persons in by_cell.items():
        effect = [
            sum(1 for masks in persons.values() if 0 not in masks and (1 << j) in masks) for j in range(len(conj))
        ]
        dropped = sum(1 << j for j in range(len(conj)) if effect[j] < limits[keys[j]])
        asked = sum(1 for masks in persons.values() if 0 in masks)
        counted = [
            masks
            for masks in persons.values()
            if 0 in masks or any(m and m == m & dropped and m & (m - 1) == 0 for m in masks)
        ]
        rows = sum(1 for masks in persons.values() for m in masks if m == 0 or (m & (m - 1) == 0 and m & dropped))
        out[cell] = {"asked": asked, "persons": len(counted), "rows": rows}
    return out


class TestCells:
    @pytest.mark.parametrize(
        ("where", "group_by", "limit"),
        [
            ((), ("district",), 20),
            ((("sex", "=", "F"),), ("district",), 20),
            ((("district", "!=", "Huangpu"), ("sex", "=", "M")), (), 20),
            ((("district", "!=", "Huangpu"), ("sex", "=", "M")), ("district",), 20),
            ((("district", "!=", "Huangpu"), ("sex", "=", "M")), ("district",), 1000),  # every atom low-effect
            ((("sex", "=", "F"),), ("sex",), 0),  # nothing low-effect
        ],
    )
    def test_persons_and_rows_match_a_plain_reading_of_the_rows(self, conn, store, where, group_by, limit) -> None:
        q = query(*where, group_by=group_by)
        reading = conditions.read(q, fields_of(TABLE))
        limits = {a.key: limit for a in reading.atoms}
        expected = reference(q, limits)
        found = {tuple(c[g] for g in group_by): c for c in cells(conn, store[2], q, limits)}
        assert set(found) == set(expected)
        for cell, want in expected.items():
            got = found[cell]
            assert (got["_asked"], got["_persons"], got["_rows"] or 0) == (want["asked"], want["persons"], want["rows"])

    def test_an_in_list_value_held_by_few_persons_is_dropped_from_the_list(self, conn, store) -> None:
        q = query(("district", "in", ["Huangpu", "Minhang"]))  # 3 and 30 persons
        reading = conditions.read(q, fields_of(TABLE))
        limits = {a.key: 10 for a in reading.atoms}
        (cell,) = cells(conn, store[2], q, limits)
        assert cell["_xl0"] == [True, False]
        assert (cell["_asked"], cell["_persons"]) == (33, 30)


class TestRelease:
    def test_the_same_question_gets_the_same_answer_and_noise_with_an_sd(self, conn, store) -> None:
        q = query(group_by=("district",))
        first, second = released(conn, store[2], q), released(conn, store[2], q)
        assert first == second
        released_ = {r["district"]: r["count"] for r in first.rows}
        assert set(released_) <= {"Pudong", "Minhang"}  # 3, 14 and 12 persons are under the floor of 20
        layers = 1 + 2  # the group value, the table, the question
        assert all(
            sd["count"] == pytest.approx(L4.anonymisation.layer_sd * layers**0.5, rel=1e-2) for sd in first.noise_sd
        )
        assert {s.group["district"] for s in first.suppressed} == set(TABLE["fields"][3]["categories"]) - set(released_)

    def test_a_low_effect_condition_changes_nothing_at_all(self, conn, store) -> None:
        plain = released(conn, store[2], query(("sex", "=", "M")))
        padded = released(conn, store[2], query(("sex", "=", "M"), ("district", "!=", "Huangpu")))
        assert padded.rows == plain.rows and padded.noise_sd == plain.noise_sd
        assert [(n.condition, n.field, n.cells) for n in padded.low_effect] == [("where.1", "district", None)]

    def test_dropping_a_condition_never_releases_what_was_asked_too_narrowly(self, conn, store) -> None:
        narrow = query(("district", "=", "Huangpu"))  # 3 persons as asked
        reading = conditions.read(narrow, fields_of(TABLE))
        found = cells(conn, store[2], narrow, {a.key: 1000 for a in reading.atoms})  # as if every atom were weak
        assert found[0]["_asked"] == 3 and found[0]["_persons"] == 84
        answer = anonymiser.protect(found, narrow, reading, L4, NOISE, SEED, TABLE)
        assert answer.rows == [] and answer.suppressed[0].reason == "small_cell"

    def test_sums_flatten_the_largest_contributions_and_scale_noise_by_the_next(self, conn, store) -> None:
        no_dominance = msgspec.structs.replace(L4, dominance=None)
        q = query(group_by=("sex",), aggregates=({"fn": "sum", "field": "cost"}, {"fn": "avg", "field": "cost"}))
        answer = released(conn, store[2], q, no_dominance)
        for row, sds in zip(answer.rows, answer.noise_sd, strict=True):
            mine = [r for r in ROWS if r["sex"] == row["sex"]]
            true = sum(r["cost"] for r in mine)
            # the two 50,000-a-visit spenders are brought down to the next contributors: far below the truth
            assert row["sum_cost"] < true - 50_000
            # the noise is sized by the next few contributions (hundreds), not by the largest (100,000)
            assert sds["sum_cost"] < 10_000 and row["sum_cost"] == round(row["sum_cost"], 2)

    def test_the_dominance_rule_still_withholds_a_sum_two_persons_hold(self, conn, store) -> None:
        q = query(("district", "=", "Jingan"), aggregates=({"fn": "count"}, {"fn": "sum", "field": "cost"}))
        low = msgspec.structs.replace(L4, anonymisation=msgspec.structs.replace(L4.anonymisation, min_persons=10))
        answer = released(conn, store[2], q, low)
        assert answer.rows and answer.rows[0]["sum_cost"] is None and answer.rows[0]["count"] is not None
        assert [s.reason for s in answer.suppressed] == ["dominance"]


class TestConditions:
    def test_one_value_in_a_list_is_an_equality(self) -> None:
        one, other = (
            conditions.read(query(c), fields_of(TABLE)).atoms for c in (("sex", "in", ["F"]), ("sex", "=", "F"))
        )
        assert [a.key for a in one] == [a.key for a in other]

    def test_not_in_is_one_atom_per_value_and_repeats_merge(self) -> None:
        reading = conditions.read(
            query(("district", "not_in", ["Huangpu", "Xuhui", "Huangpu"]), ("district", "!=", "Xuhui")),
            fields_of(TABLE),
        )
        assert [a.key for a in reading.conjuncts] == ['!=|district|"Huangpu"', '!=|district|"Xuhui"']

    @pytest.mark.parametrize(
        ("kind", "low", "high", "snapped"),
        [
            ("integer", 31, 47, (0, 50)),
            ("integer", 61, 67, (60, 70)),
            ("integer", 65, 75, (60, 80)),
            ("integer", 40, 40, (40, 41)),
            ("number", 6.5, 7.0, (Decimal("6.5"), Decimal("7.0"))),
            ("number", 0.1, 0.35, (Decimal("0"), Decimal("0.5"))),
            ("date", date(2020, 1, 15), date(2020, 12, 31), (date(2020, 1, 1), date(2021, 1, 1))),
            ("date", date(2020, 3, 2), date(2020, 3, 30), (date(2020, 3, 1), date(2020, 4, 1))),
            ("date", date(2020, 11, 5), date(2021, 2, 1), (date(2020, 1, 1), date(2022, 1, 1))),
        ],
    )
    def test_a_range_becomes_the_smallest_grid_bucket_that_covers_it(self, kind, low, high, snapped) -> None:
        assert conditions.snap(kind, low, high) == snapped


class TestIsolating:
    def test_declared_or_measured_columns_isolate_under_the_policy_share(self) -> None:
        table = {**TABLE, "fields": [*TABLE["fields"][:-1], {**TABLE["fields"][-1], "isolating": True}]}
        release = Release(id="rel_01", tables={"visits": {"uniqueness": {"age": 0.8, "cost": 0.5, "sex": 0.0}}})
        assert gate.isolating_columns(release, table, L4) == {"age", "smoker"}  # 0.5 is not more than half
        assert gate.isolating_columns(release, table, rule("L3")) == frozenset()  # no anonymisation, no refusal


class TestNoise:
    def test_a_seed_always_draws_the_same_and_another_secret_draws_otherwise(self) -> None:
        again = Noise(b"a test secret of at least thirty-two bytes")
        other = Noise(b"another secret of at least thirty-two bytes")
        draws = [NOISE.normal("x", str(i)) for i in range(2000)]
        assert draws == [again.normal("x", str(i)) for i in range(2000)]
        assert draws != [other.normal("x", str(i)) for i in range(2000)]
        mean = sum(draws) / len(draws)
        sd = (sum((d - mean) ** 2 for d in draws) / len(draws)) ** 0.5
        assert abs(mean) < 0.1 and abs(sd - 1) < 0.1

    def test_a_short_secret_is_refused(self) -> None:
        with pytest.raises(ValueError):
            Noise(b"short")


class TestPolicy:
    def write(self, tmp_path: Path, text: str) -> Path:
        path = tmp_path / "policy.toml"
        path.write_text(text)
        return path

    def test_a_file_may_tighten_the_anonymisation(self, tmp_path) -> None:
        path = self.write(tmp_path, "[L4.anonymisation]\nlayer_sd = 2.5\nmin_persons = 30\ndaily_queries = 200\n")
        tightened = policy.load(path).rule("L4").anonymisation
        assert tightened is not None
        assert (tightened.layer_sd, tightened.min_persons, tightened.daily_queries) == (2.5, 30, 200)
        assert tightened.threshold_sd == L4.anonymisation.threshold_sd

    @pytest.mark.parametrize(
        ("text", "named"),
        [
            ("[L4.anonymisation]\nlayer_sd = 0.5\n", "L4.anonymisation.layer_sd"),
            ("[L4.anonymisation]\nthreshold_sd = 1\n", "L4.anonymisation.threshold_sd"),
            ("[L4.anonymisation]\nmin_persons = 5\n", "L4.anonymisation.min_persons"),
            ("[L4.anonymisation]\nmax_conditions = 50\n", "L4.anonymisation.max_conditions"),
            ("[L4.anonymisation]\ndaily_queries = 100000\n", "L4.anonymisation.daily_queries"),
            ("[L4.anonymisation]\nisolating_share = 0.9\n", "L4.anonymisation.isolating_share"),
            ("[L4.anonymisation]\nnoise = 0\n", "L4.anonymisation.noise"),
            ("[L4]\nquery_set_control = true\n", "L4.query_set_control"),
            ("[L4]\nperturbation = true\n", "L4.perturbation"),
            ("[L3.anonymisation]\nlayer_sd = 3\n", "L3.anonymisation"),
        ],
    )
    def test_a_file_can_never_loosen_it_or_bring_back_an_oracle(self, tmp_path, text, named) -> None:
        with pytest.raises(policy.PolicyError) as caught:
            policy.load(self.write(tmp_path, text))
        assert any(p.startswith(f"LODE_POLICY_FILE: {named} ") for p in caught.value.problems), caught.value.problems
