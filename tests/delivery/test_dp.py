"""catalog/delivery/dp.py: what an L5 query may ask, and the shape and noise of what it gets back."""

from __future__ import annotations

import statistics
from typing import Any

import msgspec
import pytest

from catalog.delivery import dp
from catalog.delivery.schemas import QueryRequest
from catalog.errors import Forbidden, Unprocessable, ValidationFailed
from catalog.policy import MICRO, rule
from tests.support import VISITS_TABLE

C = VISITS_TABLE["max_rows_per_person"]  # 20
COLUMNS = ["sex", "district", "_person", "hba1c", "age"]
NEAR_EXACT = 10**6 * MICRO  # ε = 10^6: noise far below the tolerances (a sum's b ≈ 0.002)
COMBOS = [(s, d) for s in ("F", "M") for d in ("Huangpu", "Xuhui", "Pudong")]


def query(**body: Any) -> QueryRequest:
    return msgspec.convert({"table": "visits", **body}, QueryRequest)


def synthetic_rows() -> list[tuple]:
    """Every (sex, district) cell populated but (M, Pudong), which is empty."""
    rows = []
    for i, (sex, district) in enumerate(c for c in COMBOS if c != ("M", "Pudong")):
        for j in range(40):  # 40 rows per cell, 10 persons of 4 rows each
            rows.append((sex, district, f"p{i}-{j % 10}", 5.0 + (j % 5), 30 + i))
    return rows


TRUE_COUNT = {c: (0 if c == ("M", "Pudong") else 10) for c in COMBOS}  # count counts persons
TRUE_SUM = {c: (0.0 if c == ("M", "Pudong") else 8 * (5.0 + 6.0 + 7.0 + 8.0 + 9.0)) for c in COMBOS}


class TestCheck:
    def test_returns_the_epsilon_to_reserve_in_micro_epsilon(self) -> None:
        q = query(group_by=["sex"], aggregates=[{"fn": "count"}, {"fn": "avg", "field": "hba1c"}], epsilon=0.25)
        assert dp.check(q, VISITS_TABLE, rule("L5")) == 250_000

    def test_epsilon_is_required(self) -> None:
        with pytest.raises(Unprocessable) as raised:
            dp.check(query(aggregates=[{"fn": "count"}]), VISITS_TABLE, rule("L5"))
        assert raised.value.code == "epsilon_required"

    def test_epsilon_above_the_per_query_limit_is_refused(self) -> None:
        limit = rule("L5").epsilon_per_query_micro
        assert limit is not None
        q = query(aggregates=[{"fn": "count"}], epsilon=limit / MICRO + 0.01)
        with pytest.raises(Unprocessable) as raised:
            dp.check(q, VISITS_TABLE, rule("L5"))
        assert raised.value.code == "epsilon_too_large"
        assert dp.check(query(aggregates=[{"fn": "count"}], epsilon=limit / MICRO), VISITS_TABLE, rule("L5")) == limit

    @pytest.mark.parametrize("cut", [{"limit": 1}, {"order_by": [{"field": "count"}]}])
    def test_an_answer_is_never_cut_or_ordered(self, cut: dict) -> None:
        q = query(group_by=["sex"], aggregates=[{"fn": "count"}], epsilon=0.1, **cut)
        with pytest.raises(ValidationFailed) as raised:
            dp.check(q, VISITS_TABLE, rule("L5"))
        assert [e.field for e in raised.value.errors] == list(cut)

    def test_group_by_needs_declared_categories(self) -> None:
        q = query(group_by=["sex", "age"], aggregates=[{"fn": "count"}], epsilon=0.1)
        with pytest.raises(ValidationFailed) as raised:
            dp.check(q, VISITS_TABLE, rule("L5"))
        assert [e.field for e in raised.value.errors or []] == ["group_by.1"]

    @pytest.mark.parametrize("fn", ["min", "max", "count_distinct"])
    def test_only_count_sum_and_avg_are_released(self, fn: str) -> None:
        q = query(aggregates=[{"fn": fn, "field": "age"}], epsilon=0.1)
        with pytest.raises(Forbidden) as raised:
            dp.check(q, VISITS_TABLE, rule("L5"))
        assert raised.value.code == "grade_forbids_delivery"

    @pytest.mark.parametrize(
        "agg",
        [
            {"fn": "sum", "field": "sex"},
            {"fn": "avg", "field": "person_id"},
            {"fn": "sum"},
            {"fn": "avg", "field": "nope"},
        ],
    )
    def test_sum_and_avg_need_a_bounded_numeric_field(self, agg: dict[str, str]) -> None:
        q = query(aggregates=[{"fn": "count"}, agg], epsilon=0.1)
        with pytest.raises(ValidationFailed) as raised:
            dp.check(q, VISITS_TABLE, rule("L5"))
        assert [e.field for e in raised.value.errors or []] == ["aggregates.1.field"]

    def test_a_numeric_field_without_bounds_is_refused(self) -> None:
        table = {**VISITS_TABLE, "fields": [*VISITS_TABLE["fields"], {"name": "los", "type": "integer"}]}
        with pytest.raises(ValidationFailed):
            dp.check(query(aggregates=[{"fn": "sum", "field": "los"}], epsilon=0.1), table, rule("L5"))

    def test_at_least_one_aggregate(self) -> None:
        with pytest.raises(ValidationFailed) as raised:
            dp.check(query(group_by=["sex"], epsilon=0.1), VISITS_TABLE, rule("L5"))
        assert [e.field for e in raised.value.errors or []] == ["aggregates"]

    def test_a_grade_without_dp_aggregate_is_refused(self) -> None:
        with pytest.raises(Forbidden) as raised:
            dp.check(query(aggregates=[{"fn": "count"}], epsilon=0.1), VISITS_TABLE, rule("L4"))
        assert raised.value.code == "grade_forbids_delivery"


class TestRelease:
    def test_every_combination_of_declared_categories_is_released_in_order(self) -> None:
        q = query(
            group_by=["sex", "district"], aggregates=[{"fn": "count"}, {"fn": "sum", "field": "hba1c"}], epsilon=0.5
        )
        answer = dp.release(q, VISITS_TABLE, COLUMNS, synthetic_rows(), 500_000)
        assert answer.columns == ["sex", "district", "count", "sum_hba1c"]
        assert [(r["sex"], r["district"]) for r in answer.rows] == COMBOS  # (M, Pudong) is empty yet present
        assert answer.epsilon_spent_micro == 500_000
        assert all(isinstance(r["count"], int) for r in answer.rows)
        assert all(isinstance(r["sum_hba1c"], float) for r in answer.rows)

    def test_without_group_by_one_row(self) -> None:
        answer = dp.release(
            query(aggregates=[{"fn": "count"}], epsilon=0.5), VISITS_TABLE, COLUMNS, synthetic_rows(), 500_000
        )
        assert answer.columns == ["count"]
        assert len(answer.rows) == 1 and isinstance(answer.rows[0]["count"], int)

    def test_noise_differs_between_two_answers(self) -> None:
        q = query(group_by=["sex", "district"], aggregates=[{"fn": "count"}], epsilon=0.5)
        first = dp.release(q, VISITS_TABLE, COLUMNS, synthetic_rows(), 500_000)
        second = dp.release(q, VISITS_TABLE, COLUMNS, synthetic_rows(), 500_000)
        assert [r["count"] for r in first.rows] != [r["count"] for r in second.rows]

    def test_with_a_large_epsilon_answers_approach_the_truth(self) -> None:
        q = query(
            group_by=["sex", "district"],
            aggregates=[
                {"fn": "count"},
                {"fn": "sum", "field": "hba1c"},
                {"fn": "avg", "field": "hba1c"},
                {"fn": "avg", "field": "age"},
            ],
            epsilon=0.5,
        )
        answer = dp.release(q, VISITS_TABLE, COLUMNS, synthetic_rows(), NEAR_EXACT)
        for row in answer.rows:
            cell = (row["sex"], row["district"])
            assert row["count"] == TRUE_COUNT[cell]
            assert row["sum_hba1c"] == pytest.approx(TRUE_SUM[cell], abs=1.0)
            if TRUE_COUNT[cell]:
                assert row["avg_hba1c"] == pytest.approx(7.0, abs=0.05)
                assert row["avg_age"] == pytest.approx(30 + COMBOS.index(cell), abs=0.1)
            else:
                assert row["avg_hba1c"] is None and row["avg_age"] is None  # noisy count ≤ 0

    def test_averages_stay_within_the_field_bounds_under_heavy_noise(self) -> None:
        q = query(group_by=["sex", "district"], aggregates=[{"fn": "avg", "field": "hba1c"}], epsilon=0.01)
        for _ in range(20):
            answer = dp.release(q, VISITS_TABLE, COLUMNS, synthetic_rows(), 10_000)
            for row in answer.rows:
                assert row["avg_hba1c"] is None or 3 <= row["avg_hba1c"] <= 20

    def test_values_are_clamped_persons_capped_and_undeclared_keys_dropped(self) -> None:
        rows = [("F", "Huangpu", "heavy", 99.0, 200) for _ in range(3 * C)]  # one person, 60 rows, out of bounds
        rows.append(("X", "Huangpu", "other", 5.0, 40))  # sex "X" is not a declared category
        q = query(group_by=["sex"], aggregates=[{"fn": "count"}, {"fn": "sum", "field": "hba1c"}], epsilon=0.5)
        answer = dp.release(q, VISITS_TABLE, COLUMNS, rows, NEAR_EXACT)
        assert answer.rows == [
            {"sex": "F", "count": 1, "sum_hba1c": pytest.approx(C * 20.0, abs=0.5)},  # one person, c rows kept
            {"sex": "M", "count": 0, "sum_hba1c": pytest.approx(0.0, abs=0.5)},
        ]

    def test_count_of_a_field_counts_its_non_null_rows(self) -> None:
        rows = [("F", "Huangpu", f"p{i}", None if i % 2 else 6.0, 40) for i in range(10)]
        q = query(aggregates=[{"fn": "count"}, {"fn": "count", "field": "hba1c"}], epsilon=0.5)
        answer = dp.release(q, VISITS_TABLE, COLUMNS, rows, NEAR_EXACT)
        assert answer.rows == [{"count": 10, "count_hba1c": 5}]


class TestNoiseScale:
    def test_laplace_scale_is_sensitivity_over_each_aggregates_share_of_epsilon(self) -> None:
        """ε = 0.5 split over two aggregates: b = c/0.25 for counts, c·max|bound|/0.25 for sums.

        For Laplace noise the mean absolute deviation is b; 150 answers × 6 cells give a standard
        error of about 3 %, so a 15 % tolerance fails by chance about once in 10^5 runs.
        """
        q = query(
            group_by=["sex", "district"], aggregates=[{"fn": "count"}, {"fn": "sum", "field": "hba1c"}], epsilon=0.5
        )
        rows = synthetic_rows()
        count_noise: list[float] = []
        sum_noise: list[float] = []
        for _ in range(150):
            for row in dp.release(q, VISITS_TABLE, COLUMNS, rows, 500_000).rows:
                cell = (row["sex"], row["district"])
                count_noise.append(abs(row["count"] - TRUE_COUNT[cell]))
                sum_noise.append(abs(row["sum_hba1c"] - TRUE_SUM[cell]))
        assert statistics.fmean(count_noise) == pytest.approx(C / 0.25, rel=0.15)
        assert statistics.fmean(sum_noise) == pytest.approx(C * 20 / 0.25, rel=0.15)
