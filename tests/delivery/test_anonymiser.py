"""The anonymised aggregates of L4: the SQL's cells checked against a plain reading of the same rows,
then what ``anonymiser.protect`` releases from them. The red team (``tests/redteam/``) attacks the
whole through the API; these pin each part."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from catalog import policy
from catalog.delivery import anonymised_sql, anonymiser, conditions, gate, validation
from catalog.delivery.noise import Noise
from catalog.delivery.schemas import Aggregate, Condition, QueryRequest
from catalog.errors import ValidationFailed
from catalog.policy import rule
from catalog.products.dictionary import fields as fields_of
from catalog.products.models import Release

# The compiler's release and its fixtures (``store``, ``conn``): the anonymiser reads the same file.
from tests.delivery.test_compiler import ROWS, TABLE, fx_conn, fx_store  # noqa: F401

L4 = rule("L4")
NOISE = Noise(b"a test secret of at least thirty-two bytes")
SEED = ("rel_01", "visits")


def query(*where: tuple[str, str, Any], group_by: tuple[str, ...] = (), aggregates: tuple = ({"fn": "count"},)):
    return QueryRequest(
        table="visits",
        where=[Condition(field=f, op=op, value=v) for f, op, v in where],
        group_by=list(group_by),
        aggregates=[msgspec.convert(a, Aggregate) for a in aggregates],
    )


def anonymised(
    conn, path: str, q: QueryRequest, limits: dict[str, float] | None = None
) -> tuple[list[dict[str, Any]], dict[tuple, anonymised_sql.Decision]]:
    """The service's two scans: the signatures, each cell's decision, then the cells."""
    validation.validate(q, TABLE, L4, "aggregate")
    reading = conditions.read(q, fields_of(TABLE))
    limits = limits if limits is not None else anonymiser.thresholds(reading, L4, NOISE, SEED)
    decisions: dict[tuple, anonymised_sql.Decision] = {}
    if reading.atoms:
        found = anonymised_sql.signatures(q, TABLE, path, reading)
        rows = [dict(zip(found.columns, r, strict=True)) for r in conn.execute(found.sql, found.params).fetchall()]
        decisions = anonymiser.decide(rows, q, reading, limits)
    compiled = anonymised_sql.cells(q, TABLE, path, reading, decisions, anonymiser.depth(L4))
    cells = [
        dict(zip(compiled.columns, r, strict=True)) for r in conn.execute(compiled.sql, compiled.params).fetchall()
    ]
    return cells, decisions


def released(conn, path: str, q: QueryRequest, rule_=L4, limits: dict[str, float] | None = None) -> anonymiser.Released:
    cells, decisions = anonymised(conn, path, q, limits)
    reading = conditions.read(q, fields_of(TABLE))
    return anonymiser.protect(cells, q, reading, decisions, rule_, NOISE, SEED, TABLE)


def holds(row: dict[str, Any], field: str, op: str, value: Any) -> bool:
    mine = row[field]
    if op == "=":
        return mine == value
    if op == "!=":
        return mine is not None and mine != value
    if op == "in":
        return mine in value
    raise AssertionError(op)


def plain(where: list[tuple[str, str, Any]], group_by: tuple[str, ...]) -> dict[tuple, tuple[int, int]]:
    """Per cell, (persons, rows) of the rows that meet every condition: no anonymisation at all."""
    persons: dict[tuple, set[str]] = defaultdict(set)
    rows: dict[tuple, int] = defaultdict(int)
    for row in ROWS:
        if all(holds(row, *c) for c in where):
            cell = tuple(row[g] for g in group_by)
            persons[cell].add(row["person_id"])
            rows[cell] += 1
    return {cell: (len(persons[cell]), rows[cell]) for cell in persons}


def without(where: list[tuple[str, str, Any]], decision: anonymised_sql.Decision) -> list[tuple[str, str, Any]]:
    """The conditions that stayed: conjuncts off the decision's mask, list values off its positions."""
    kept, conjunct, lists = [], 0, 0
    for field, op, value in where:
        if op == "in":
            gone = decision.values[lists] if decision.values else frozenset()
            kept.append((field, op, [v for p, v in enumerate(value, 1) if p not in gone]))
            lists += 1
        else:
            if not decision.dropped >> conjunct & 1:
                kept.append((field, op, value))
            conjunct += 1
    return kept


QUESTIONS = [
    ((), ("district",)),
    ((("sex", "=", "F"),), ("district",)),
    ((("district", "!=", "Huangpu"), ("sex", "=", "M")), ()),
    ((("district", "!=", "Huangpu"), ("district", "!=", "Xuhui"), ("sex", "=", "M")), ("sex",)),
    ((("district", "in", ["Huangpu", "Minhang", "Xuhui"]), ("sex", "=", "F")), ("district",)),
    ((("district", "in", ["Huangpu", "Jingan"]), ("district", "!=", "Pudong")), ()),
    # Past 64 (fail mask, list value) pairs a signature is a string of bits, not an integer.
    ((("district", "!=", "Huangpu"), ("district", "!=", "Xuhui"), *(("age", "!=", a) for a in range(21, 26))), ()),
    (
        (
            ("district", "in", ["Pudong", "Minhang", "Jingan"]),
            *(("age", "!=", a) for a in range(21, 26)),
            ("sex", "=", "F"),
        ),
        ("sex",),
    ),
]


class TestCells:
    @pytest.mark.parametrize(("where", "group_by"), QUESTIONS)
    @pytest.mark.parametrize("limit", [0, 20, 1000])  # nothing weak; the shipped floor; everything weak
    def test_a_cell_is_exactly_its_question_without_the_atoms_decided_weak(
        self, conn, store, where, group_by, limit
    ) -> None:
        q = query(*where, group_by=group_by)
        reading = conditions.read(q, fields_of(TABLE))
        cells, decisions = anonymised(conn, store[2], q, {a.key: limit for a in reading.atoms})
        found = {tuple(c[g] for g in group_by): (c["_persons"], c["_rows"]) for c in cells if c["_persons"]}
        for cell, decision in decisions.items():
            answered = plain(without(list(where), decision), group_by).get(cell)
            assert found.get(cell) == answered, (cell, decision)

    def test_two_weak_conditions_that_single_out_the_same_person_change_nothing(self, conn, store) -> None:
        # The reviewer's oracle: a person failing both dropped conditions must not vanish.
        base = [("district", "=", "Pudong"), ("sex", "=", "M")]
        rows_of = defaultdict(list)
        for r in ROWS:
            rows_of[r["person_id"]].append(r)
        victim = next(
            r for r in ROWS if r["district"] == "Pudong" and r["sex"] == "M" and len(rows_of[r["person_id"]]) == 1
        )
        both = [*base, ("age", "!=", victim["age"]), ("visit_date", "!=", victim["visit_date"].isoformat())]
        reading = conditions.read(query(*both), fields_of(TABLE))
        limits = {a.key: 20 for a in reading.atoms}
        (alone,), _ = anonymised(conn, store[2], query(*base), {a.key: 20 for a in reading.atoms[:2]})
        (padded,), decisions = anonymised(conn, store[2], query(*both), limits)
        assert next(iter(decisions.values())).dropped & 0b1100 == 0b1100  # both of the victim's conditions
        assert (padded["_persons"], padded["_rows"]) == (alone["_persons"], alone["_rows"])

    @pytest.mark.parametrize(("where", "group_by"), QUESTIONS[3:])
    def test_a_signature_is_the_set_of_each_persons_pairs(self, conn, store, where, group_by) -> None:
        q = query(*where, group_by=group_by)
        reading = conditions.read(q, fields_of(TABLE))
        found = anonymised_sql.signatures(q, TABLE, store[2], reading)
        got = defaultdict(int)
        for r in conn.execute(found.sql, found.params).fetchall():
            row = dict(zip(found.columns, r, strict=True))
            got[(tuple(row[g] for g in group_by), frozenset(anonymised_sql.pairs(row["_signature"], reading)))] += row[
                "_persons"
            ]
        held: dict[tuple, set] = defaultdict(set)
        for row in ROWS:
            lists = [
                next((a.position for a in values if row[a.field] == a.value), None) for values in reading.disjunctions
            ]
            if None in lists:
                continue  # holds no value of an in-list: in no cell whatever is dropped
            mask = sum(
                1 << j for j, (f, op, v) in enumerate(c for c in where if c[1] != "in") if not holds(row, f, op, v)
            )
            held[(tuple(row[g] for g in group_by), row["person_id"])].add((mask, tuple(lists)))
        expected = defaultdict(int)
        for (cell, _), pairs in held.items():
            expected[(cell, frozenset(pairs))] += 1
        assert dict(got) == dict(expected)

    def test_a_weak_condition_never_moves_another_conditions_decision(self) -> None:
        # Persons by signature: 19 fail only B, and one fails B and the victim's condition V as well.
        # Without in-lists a pair's number is its fail mask; a signature is the set of them as bits.
        b, v = 1 << 0, 1 << 1
        rows = [
            {"_signature": str(1 << 0), "_persons": 50},
            {"_signature": str(1 << b), "_persons": 19},
        ]
        rows.append({"_signature": str(1 << (b | v)), "_persons": 1})
        q = query(("sex", "=", "F"), ("age", "!=", 44))
        reading = conditions.read(q, fields_of(TABLE))
        limits = {reading.conjuncts[0].key: 20, reading.conjuncts[1].key: 20}
        (decision,) = anonymiser.decide(rows, q, reading, limits).values()
        # V goes first (it moves one person); B, measured without it, moves 20 and stays.
        assert decision.dropped == v


class TestRelease:
    def test_the_same_question_gets_the_same_answer_and_noise_with_an_sd(self, conn, store) -> None:
        q = query(group_by=("district",))
        first, second = released(conn, store[2], q), released(conn, store[2], q)
        assert first == second
        released_ = {r["district"]: r["count"] for r in first.rows}
        assert set(released_) <= {"Pudong", "Minhang"}  # 3, 14 and 12 persons are under the floor of 20
        layers = 1 + 2  # the group value, the table, the question
        sd = L4.anonymisation.layer_sd * layers**0.5
        assert all(sds["count"] == pytest.approx(sd, rel=1e-2) for sds in first.noise_sd)
        districts = set(TABLE["fields"][3]["categories"])
        assert {s.group["district"] for s in first.suppressed} == districts - set(released_)

    def test_a_low_effect_condition_changes_nothing_at_all(self, conn, store) -> None:
        plain_ = released(conn, store[2], query(("sex", "=", "M")))
        padded = released(conn, store[2], query(("sex", "=", "M"), ("district", "!=", "Huangpu")))
        assert padded.rows == plain_.rows and padded.noise_sd == plain_.noise_sd
        assert [(n.condition, n.field, n.cells) for n in padded.low_effect] == [("where.1", "district", None)]

    def test_a_cell_is_released_on_its_answer_alone(self, conn, store) -> None:
        # As asked, Huangpu holds 3; with the condition answered as absent the cell is everyone. What is
        # released is the answer's; had the question's own size decided, "released, but withheld with c
        # added" would say that c removes someone.
        narrow = query(("district", "=", "Huangpu"))
        reading = conditions.read(narrow, fields_of(TABLE))
        answer = released(conn, store[2], narrow, limits={a.key: 1000 for a in reading.atoms})
        everyone = released(conn, store[2], query())
        assert answer.rows == everyone.rows and answer.low_effect[0].condition == "where.0"

    def test_an_average_s_sd_is_sized_by_the_released_count_not_the_true_one(self, conn, store) -> None:
        q = query(group_by=("sex",), aggregates=({"fn": "count"}, {"fn": "avg", "field": "hba1c"}))
        answer = released(conn, store[2], q)
        true = {s: len({r["person_id"] for r in ROWS if r["sex"] == s}) for s in ("F", "M")}
        for row, sds in zip(answer.rows, answer.noise_sd, strict=True):
            assert row["count"] != true[row["sex"]]  # the noise moved it (so the test tells the two apart)
            scale = sds["avg_hba1c"] * row["count"] / (L4.anonymisation.layer_sd * 3**0.5)
            mantissa = scale / 10 ** math.floor(math.log10(scale))
            assert any(abs(mantissa - m) < 0.01 * m for m in (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8, 10))

    def test_sums_flatten_the_largest_contributions_and_scale_noise_by_the_next(self, conn, store) -> None:
        q = query(group_by=("sex",), aggregates=({"fn": "sum", "field": "cost"}, {"fn": "avg", "field": "cost"}))
        answer = released(conn, store[2], q, L4)
        for row, sds in zip(answer.rows, answer.noise_sd, strict=True):
            mine = [r for r in ROWS if r["sex"] == row["sex"]]
            true = sum(r["cost"] for r in mine)
            # the two 50,000-a-visit spenders are brought down to the next contributors: far below the truth
            assert row["sum_cost"] < true - 50_000
            # the noise is sized by the next few contributions (hundreds), not by the largest (100,000)
            assert sds["sum_cost"] < 10_000 and row["sum_cost"] == round(row["sum_cost"], 2)


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
            ("integer", -1, 1, (-2, 2)),  # reaching both sides of zero: the bucket centred on it
            ("integer", -30, -12, (-50, 0)),
            ("number", -0.5, 0.25, (Decimal("-0.5"), Decimal("0.5"))),
            ("date", date(2020, 1, 15), date(2020, 12, 31), (date(2020, 1, 1), date(2021, 1, 1))),
            ("date", date(2020, 3, 2), date(2020, 3, 30), (date(2020, 3, 1), date(2020, 4, 1))),
            ("date", date(2020, 11, 5), date(2021, 2, 1), (date(2020, 1, 1), date(2022, 1, 1))),
        ],
    )
    def test_a_range_becomes_the_smallest_grid_bucket_that_covers_it(self, kind, low, high, snapped) -> None:
        assert conditions.snap(kind, low, high, 2) == snapped

    def test_a_number_bucket_is_never_narrower_than_the_column_s_precision(self) -> None:
        assert conditions.snap("number", 1234.5, 1234.5, 0) == (Decimal(1234), Decimal(1236))
        assert conditions.snap("number", 1234.5, 1234.5, 2) == (Decimal("1234.5"), Decimal("1234.51"))

    @pytest.mark.parametrize(
        ("field", "value", "says"),
        [
            ("age", [40, 30], "low no greater than high"),
            ("visit_date", ["2024-01-01", "9999-12-31"], "out of range"),
            ("cost", [-1e16, 1], "out of range"),
        ],
    )
    def test_a_range_it_cannot_read_is_a_400(self, field, value, says) -> None:
        with pytest.raises(ValidationFailed) as refused:
            validation.validate(query((field, "between", value)), TABLE, L4, "aggregate")
        assert refused.value.errors[0].field == "where.0.value" and says in refused.value.errors[0].message


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
            ("[L4]\nsecondary_suppression = true\n", "L4.secondary_suppression"),
            ("[L4.dominance]\nn = 2\nshare = 0.9\n", "L4.dominance"),
            ("[L3.anonymisation]\nlayer_sd = 3\n", "L3.anonymisation"),
        ],
    )
    def test_a_file_can_never_loosen_it_or_bring_back_an_oracle(self, tmp_path, text, named) -> None:
        with pytest.raises(policy.PolicyError) as caught:
            policy.load(self.write(tmp_path, text))
        assert any(p.startswith(f"LODE_POLICY_FILE: {named} ") for p in caught.value.problems), caught.value.problems
