"""The cell statistics ``compiler.aggregate_sql`` and ``compiler.population_sql`` compute, checked
against the same statistics computed in Python from the rows, for every kind of rule: one that only
suppresses small cells (the rows grouped once), and ones that read per-person totals (dominance,
perturbation: the rows grouped by cell and person first).

The table has persons with one to four rows, rows without a person key, null group values, null
measures, negative amounts (dominance ranks absolute totals) and a random record key per row.
"""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from catalog.delivery import compiler
from catalog.delivery.schemas import Aggregate, Condition, QueryRequest
from catalog.policy import Dominance, GradeRule, rule
from catalog.sandbox import Sandbox

TABLE: dict[str, Any] = {
    "table": "visits",
    "person_key": "person_id",
    "max_rows_per_person": 4,
    "fields": [
        {"name": "person_id", "type": "string", "sensitive": True},
        {"name": "district", "type": "string", "categories": ["Huangpu", "Xuhui", "Pudong"]},
        {"name": "sex", "type": "string", "categories": ["F", "M"]},
        {"name": "age", "type": "integer", "min": 0, "max": 120},
        {"name": "cost", "type": "number"},
    ],
}
SUPPRESSING = rule("L3")  # small-cell suppression only
EVERY_CONTROL = msgspec.structs.replace(
    rule("L3"),
    perturbation=True,
    query_set_control=True,
    secondary_suppression=True,
    dominance=Dominance(n=3, share=0.9),
)
DOMINANCE_ONLY = msgspec.structs.replace(rule("L3"), dominance=Dominance(n=2, share=0.8))
PERTURBATION_ONLY = msgspec.structs.replace(rule("L3"), perturbation=True)
RULES = {
    "suppressing": SUPPRESSING,
    "every": EVERY_CONTROL,
    "dominance": DOMINANCE_ONLY,
    "perturbation": PERTURBATION_ONLY,
}
EVERY_AGGREGATE = [
    Aggregate(fn="count"),
    Aggregate(fn="count", field="cost"),
    Aggregate(fn="sum", field="cost"),
    Aggregate(fn="avg", field="cost"),
    Aggregate(fn="sum", field="age"),
    Aggregate(fn="avg", field="age"),
    Aggregate(fn="min", field="age"),
    Aggregate(fn="max", field="cost"),
]
OLDER = [Condition(field="age", op=">=", value=40)]


def make_rows() -> list[dict[str, Any]]:
    rng = random.Random(18)
    rows: list[dict[str, Any]] = []
    for person in range(120):
        district = rng.choice(["Huangpu", "Xuhui", "Pudong", None])
        for _ in range(rng.randint(1, 4)):
            rows.append({
                "person_id": f"P{person:03d}",
                # Most persons stay in one cell; some move between districts or have no sex recorded.
                "district": district if rng.random() < 0.8 else rng.choice(["Huangpu", "Xuhui", None]),
                "sex": rng.choice(["F", "M", "M", None]),
                "age": None if rng.random() < 0.1 else rng.randint(18, 90),
                "cost": None if rng.random() < 0.15 else round(rng.uniform(-200, 5000), 2),
                "_lode_rkey": rng.getrandbits(64),
            })  # fmt: skip
    for _ in range(5):  # rows no person is known for: rows of the cell, but nobody's
        rows.append({"person_id": None, "district": "Xuhui", "sex": "F", "age": 50, "cost": 10.0,
                     "_lode_rkey": rng.getrandbits(64)})  # fmt: skip
    return rows


ROWS = make_rows()


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    with duckdb.connect() as conn:
        conn.execute(
            "CREATE TABLE t (person_id VARCHAR, district VARCHAR, sex VARCHAR, age BIGINT, cost DOUBLE, "
            "_lode_rkey UBIGINT)"
        )
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", [list(r.values()) for r in rows])
        conn.execute("COPY t TO ? (FORMAT parquet)", [str(path)])


@pytest.fixture(name="path", scope="module")
def fx_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("cells")
    write_parquet(directory / "visits.parquet", ROWS)
    yield str(directory / "visits.parquet")
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(name="conn", scope="module")
def fx_conn() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(config={"threads": 1}) as conn:
        yield conn


def expected_cells(query: QueryRequest, grade_rule: GradeRule, keep: Callable[[dict], bool]) -> dict[tuple, dict]:
    """Every statistic of every cell, from the rows in Python."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for row in ROWS:
        if keep(row):
            cells[tuple(row[g] for g in query.group_by)].append(row)
    if not query.group_by and not cells:
        cells[()] = []
    per_person_stats = grade_rule.dominance is not None or grade_rule.perturbation
    depth = compiler.dominance_depth(grade_rule)
    found = {}
    for key, rows in cells.items():
        persons = {r["person_id"] for r in rows if r["person_id"] is not None}
        cell: dict[str, Any] = dict(zip(query.group_by, key, strict=True))
        cell |= {"_persons": len(persons), "_rows": len(rows)}
        perturbed = grade_rule.perturbation and rows  # SQL's SUM of no rows is null
        cell["_ckey"] = sum(r["_lode_rkey"] for r in rows) % 2**32 if perturbed else None
        for aggregate in query.aggregates:
            name, field = compiler.output_name(aggregate), aggregate.field
            values = [r[field] for r in rows if field is not None and r[field] is not None]
            if field is None:
                cell[name] = len(persons) if grade_rule.query_set_control else len(rows)
            elif aggregate.fn == "count":
                cell[name] = len(values)
            elif aggregate.fn == "count_distinct":
                cell[name] = len(set(values))
            elif aggregate.fn in ("min", "max"):
                cell[name] = (min if aggregate.fn == "min" else max)(values) if values else None
            else:
                total = sum(values) if values else None
                cell[name] = total if aggregate.fn == "sum" else (total / len(values) if values else None)
                if aggregate.fn == "avg":
                    cell |= {f"_sum_{name}": total, f"_n_{name}": len(values)}
                if per_person_stats:
                    totals: dict[Any, list[float]] = defaultdict(list)
                    for r in rows:
                        totals[r["person_id"]] += [r[field]] if r[field] is not None else []
                    largest = sorted((abs(sum(v)) for v in totals.values() if v), reverse=True)
                    for i in range(1, depth + 1):
                        cell[f"_top{i}_{name}"] = largest[i - 1] if i <= len(largest) else None
                    cell[f"_abs_{name}"] = sum(largest) if largest else None
        found[key] = cell
    return found


def same(value: Any, expected: Any) -> bool:
    if isinstance(expected, float) and value is not None:
        return value == pytest.approx(expected, rel=1e-9)
    return value == expected and type(value) is type(expected)


def check(conn: duckdb.DuckDBPyConnection, path: str, query: QueryRequest, grade_rule: GradeRule, keep: Any) -> None:
    compiled = compiler.aggregate_sql(query, TABLE, path, grade_rule)
    answered = {tuple(c[g] for g in query.group_by): c for c in compiler.run(conn, compiled)}
    expected = expected_cells(query, grade_rule, keep)
    assert set(answered) == set(expected)
    for key, cell in expected.items():
        wrong = {n: (answered[key].get(n), v) for n, v in cell.items() if not same(answered[key].get(n), v)}
        assert not wrong, (key, wrong)


class TestAggregateCells:
    @pytest.mark.parametrize("rule_name", list(RULES))
    @pytest.mark.parametrize("group_by", [[], ["district"], ["district", "sex"]])
    def test_every_statistic_matches_the_rows(
        self, conn: duckdb.DuckDBPyConnection, path: str, rule_name: str, group_by: list[str]
    ) -> None:
        query = QueryRequest(table="visits", group_by=group_by, aggregates=EVERY_AGGREGATE)
        check(conn, path, query, RULES[rule_name], lambda row: True)

    @pytest.mark.parametrize("rule_name", list(RULES))
    def test_a_where_keeps_only_its_rows(self, conn: duckdb.DuckDBPyConnection, path: str, rule_name: str) -> None:
        query = QueryRequest(table="visits", group_by=["district"], aggregates=EVERY_AGGREGATE, where=OLDER)
        check(conn, path, query, RULES[rule_name], lambda row: row["age"] is not None and row["age"] >= 40)

    @pytest.mark.parametrize("rule_name", list(RULES))
    def test_count_distinct_beside_per_person_statistics(
        self, conn: duckdb.DuckDBPyConnection, path: str, rule_name: str
    ) -> None:
        aggregates = [Aggregate(fn="count_distinct", field="age"), Aggregate(fn="sum", field="cost")]
        for group_by in ([], ["district", "sex"]):
            query = QueryRequest(table="visits", group_by=group_by, aggregates=aggregates)
            check(conn, path, query, RULES[rule_name], lambda row: True)

    @pytest.mark.parametrize("rule_name", list(RULES))
    def test_nothing_matching_is_one_empty_cell_without_groups(
        self, conn: duckdb.DuckDBPyConnection, path: str, rule_name: str
    ) -> None:
        nobody = [Condition(field="district", op="=", value="Atlantis")]
        query = QueryRequest(table="visits", aggregates=[*EVERY_AGGREGATE, Aggregate(fn="count_distinct", field="age")],
                             where=nobody)  # fmt: skip
        check(conn, path, query, RULES[rule_name], lambda row: False)

    def test_per_person_statistics_group_the_rows_once_without_a_window(
        self, conn: duckdb.DuckDBPyConnection, path: str
    ) -> None:
        query = QueryRequest(table="visits", group_by=["district"], aggregates=EVERY_AGGREGATE)
        compiled = compiler.aggregate_sql(query, TABLE, path, EVERY_CONTROL)
        plan = conn.execute(f"EXPLAIN {compiled.sql}", compiled.params).fetchall()[0][1]
        assert plan.count("READ_PARQUET") == 1
        assert "WINDOW" not in plan.upper()


class TestPopulation:
    @pytest.mark.parametrize(
        ("where", "keep"),
        [
            (OLDER, lambda row: row["age"] is not None and row["age"] >= 40),
            ([Condition(field="sex", op="!=", value="M")], lambda row: row["sex"] is not None and row["sex"] != "M"),
            ([], lambda row: True),
        ],
    )
    def test_persons_matching_and_in_the_table(
        self, conn: duckdb.DuckDBPyConnection, path: str, where: list[Condition], keep: Any
    ) -> None:
        query = QueryRequest(table="visits", aggregates=[Aggregate(fn="count")], where=where)
        (answer,) = compiler.run(conn, compiler.population_sql(query, TABLE, path))
        everyone = {r["person_id"] for r in ROWS if r["person_id"] is not None}
        matching = {r["person_id"] for r in ROWS if r["person_id"] is not None and keep(r)}
        assert answer == {"persons_matching": len(matching), "persons_total": len(everyone)}
        # The release's own count of persons, bound: only the rows the where keeps are read.
        known = compiler.population_sql(query, TABLE, path, persons_total=len(everyone))
        assert compiler.run(conn, known) == [answer]


class TestSpilling:
    def test_an_aggregate_over_more_than_the_memory_limit_spills_and_answers(self, tmp_path: Path) -> None:
        """A table whose persons take more memory to group than a query may use: the sandboxed
        connection spills to its temporary directory and answers, as DuckDB's own count does."""
        directory = tmp_path / "releases" / "tables"
        directory.mkdir(parents=True)
        (tmp_path / "tmp").mkdir()  # where a sandboxed connection spills (the store makes it)
        path = directory / "visits.parquet"
        with duckdb.connect() as conn:
            conn.execute(
                "COPY (SELECT printf('%016x', hash(i // 2)) AS person_id, ['Huangpu', 'Xuhui'][1 + i % 2] AS district, "
                "NULL::VARCHAR AS sex, CAST(i % 90 AS BIGINT) AS age, (i % 1000) / 10.0 AS cost, "
                "hash(i, 7) AS _lode_rkey FROM range(1000000) t(i)) TO ? (FORMAT parquet)",
                [str(path)],
            )
            expected = conn.execute(
                "SELECT district, COUNT(DISTINCT person_id), SUM(cost) FROM read_parquet(?) GROUP BY district "
                "ORDER BY district",
                [str(path)],
            ).fetchall()
        sandbox = Sandbox(tmp_path, memory_limit="48MB", timeout_s=60, work_timeout_s=60)
        conn = sandbox.open_connection(directory)
        try:
            query = QueryRequest(
                table="visits",
                group_by=["district"],
                aggregates=[Aggregate(fn="count"), Aggregate(fn="sum", field="cost")],
            )
            for grade_rule in (SUPPRESSING, EVERY_CONTROL):
                cells = compiler.run(conn, compiler.aggregate_sql(query, TABLE, str(path), grade_rule))
                answered = [(c["district"], c["_persons"], c["sum_cost"]) for c in cells]
                assert [a[:2] for a in answered] == [e[:2] for e in expected]
                assert [a[2] for a in answered] == pytest.approx([e[2] for e in expected])
            population = compiler.population_sql(
                QueryRequest(table="visits", aggregates=[Aggregate(fn="count")], where=OLDER), TABLE, str(path)
            )
            (persons,) = compiler.run(conn, population)
            assert persons["persons_total"] == 500_000
        finally:
            conn.close()
            sandbox.close()
