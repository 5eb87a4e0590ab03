"""The query compiler: every query is checked against the dictionary and the grade's rule, and what
reaches DuckDB is SQL built from dictionary identifiers with every user value bound.

The table: persons with several rows each, one district of exactly three persons, one district whose
cost two persons dominate, values outside the dictionary's bounds, nulls, and a random hidden record
key per row, written as Parquet and read through the store's sandbox."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from catalog.delivery import compiler, validation
from catalog.delivery.schemas import MAX_GROUPS, Aggregate, Condition, OrderBy, QueryRequest
from catalog.errors import Forbidden, ValidationFailed
from catalog.policy import Dominance, rule
from catalog.storage import RECORD_KEY, Storage

# L4 as it was before its revision — cell-key perturbation, exact query-set refusals, dominance — which a
# policy file may still switch on below L4: the controls these tests exercise. The anonymised L4 has its own tests.
CELL_KEY = msgspec.structs.replace(
    rule("L4"),
    anonymisation=None,
    perturbation=True,
    query_set_control=True,
    secondary_suppression=True,
    dominance=Dominance(n=2, share=0.9),
)
L1, L3, L4 = rule("L1"), rule("L3"), CELL_KEY
DISTRICTS = {"Huangpu": 3, "Xuhui": 14, "Pudong": 25, "Jingan": 12, "Minhang": 30}
TABLE: dict[str, Any] = {
    "table": "visits",
    "person_key": "person_id",
    "max_rows_per_person": 2,
    "fields": [
        {"name": "person_id", "type": "string", "sensitive": True},
        {"name": "age", "type": "integer", "min": 0, "max": 120},
        {"name": "sex", "type": "string", "categories": ["F", "M"]},
        {"name": "district", "type": "string", "categories": list(DISTRICTS)},
        {"name": "hba1c", "type": "number", "min": 3, "max": 20},
        {"name": "cost", "type": "number", "min": 0, "max": 100000},
        {"name": "visit_date", "type": "date"},
        {"name": "smoker", "type": "boolean"},
    ],
}
COLUMNS = [f["name"] for f in TABLE["fields"]]
TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "date": "DATE", "boolean": "BOOLEAN"}
DOMINANT = ("P043", "P044")  # the two big spenders in Jingan


def make_rows() -> list[dict[str, Any]]:
    rng = random.Random(20240611)
    rows: list[dict[str, Any]] = []
    person = 0
    for district, persons in DISTRICTS.items():
        for _ in range(persons):
            pid = f"P{person:03d}"
            for visit in range(1 + person % 3):
                n = len(rows)
                rows.append(
                    {
                        "person_id": pid,
                        "age": 130 if n == 0 else -5 if n == 1 else 20 + person % 60,
                        "sex": "F" if person % 2 else "M",
                        "district": district,
                        "hba1c": None if n % 7 == 3 else 25.0 if n == 2 else 5.0 + (person % 10) * 0.5,
                        "cost": 50_000.0 if pid in DOMINANT else 100.0 + person + visit,
                        "visit_date": date(2024, 1, 1) + timedelta(days=person * 3 + visit),
                        "smoker": person % 4 == 0,
                        "_lode_rkey": rng.getrandbits(64),
                    }
                )
            person += 1
    return rows


ROWS = make_rows()


def build_store(tmp_path: Path) -> tuple[Storage, str, str]:
    """(storage, the release's tables directory the sandbox may read, the table's Parquet path)."""
    storage = Storage(tmp_path / "objects", memory_limit="256MB", timeout_s=10.0)
    path = Path(storage.location("releases/rel_01/tables/visits.parquet"))
    path.parent.mkdir(parents=True)
    write_parquet(path, TABLE, ROWS)
    return storage, storage.tables_location("rel_01"), str(path)


def write_parquet(path: Path, table: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    columns = [(f["name"], TYPES[f["type"]]) for f in table["fields"]] + [("_lode_rkey", "UBIGINT")]
    quoted = [f'"{name.replace(chr(34), chr(34) * 2)}"' for name, _ in columns]
    with duckdb.connect() as conn:
        conn.execute(f"CREATE TABLE t ({', '.join(f'{q} {t}' for q, (_, t) in zip(quoted, columns, strict=True))})")
        marks = ", ".join("?" for _ in columns)
        conn.executemany(f"INSERT INTO t VALUES ({marks})", [[r[name] for name, _ in columns] for r in rows])
        conn.execute("COPY t TO ? (FORMAT parquet)", [str(path)])


@pytest.fixture(name="store")
def fx_store(tmp_path: Path) -> tuple[Storage, str, str]:
    return build_store(tmp_path)


@pytest.fixture(name="conn")
def fx_conn(store: tuple[Storage, str, str]) -> Iterator[duckdb.DuckDBPyConnection]:
    storage, release, _ = store
    with storage.sandbox.open_connection(release) as conn:
        yield conn


@pytest.fixture(name="path")
def fx_path(store: tuple[Storage, str, str]) -> str:
    return store[2]


def query(**fields: Any) -> QueryRequest:
    return QueryRequest(table="visits", **fields)


def where(field: str, op: str, value: Any = None) -> list[Condition]:
    return [Condition(field=field, op=op, value=value)]


def refused(q: QueryRequest, grade_rule: Any = L1) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validation.validate(q, TABLE, grade_rule, compiler.mode_of(q))
    return caught.value


def refused_as(q: QueryRequest, mode: str) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validation.validate(q, TABLE, L1, mode)
    return caught.value


def paths(error: Exception) -> list[str]:
    return [e.field for e in error.errors]


class TestModeOf:
    def test_rows_aggregate_and_dp(self) -> None:
        assert compiler.mode_of(query(select=["age"])) == "rows"
        assert compiler.mode_of(query(group_by=["sex"])) == "aggregate"
        assert compiler.mode_of(query(aggregates=[Aggregate(fn="count")], epsilon=0.1)) == "dp_aggregate"


class TestInjection:
    def test_the_schema_refuses_hostile_names_and_operators(self) -> None:
        hostile = [
            {"table": "visits; DROP TABLE x"},
            {"table": "visits", "select": ["age; DROP TABLE x"]},
            {"table": "visits", "where": [{"field": "age", "op": "= 1 OR 1=1", "value": 1}]},
            {"table": "visits", "where": [{"field": "age) OR (1=1", "op": "=", "value": 1}]},
            {"table": "visits", "order_by": [{"field": "age DESC; --"}]},
        ]
        for body in hostile:
            with pytest.raises(msgspec.ValidationError):
                msgspec.convert(body, QueryRequest)

    def test_validate_refuses_them_when_the_schema_was_bypassed(self) -> None:
        assert paths(refused(QueryRequest(table="visits; DROP TABLE x", select=["age"]))) == ["table"]
        assert paths(refused(query(select=["age; DROP TABLE x"]))) == ["select.0"]
        error = refused(query(select=["age"], where=where("age", "= 1 OR 1=1", 1)))
        assert paths(error) == ["where.0.op"]
        error = refused(query(aggregates=[Aggregate(fn="count); DROP TABLE x; --")]))  # type: ignore[arg-type]
        assert paths(error) == ["aggregates.0.fn"]
        error = refused(query(select=["age"], order_by=[OrderBy(field="age", direction="desc; --")]))  # type: ignore[arg-type]
        assert paths(error) == ["order_by.0.direction"]

    def test_a_hostile_value_is_bound_and_matches_nothing(self, conn: duckdb.DuckDBPyConnection, path: str) -> None:
        hostile = "x' OR '1'='1"
        q = query(select=["age"], where=where("district", "=", hostile))
        validation.validate(q, TABLE, L1, "rows")
        compiled = compiler.rows_sql(q, TABLE, path)
        assert hostile not in compiled.sql and "'" not in compiled.sql
        assert hostile in compiled.params
        assert compiler.run(conn, compiled) == []

    def test_no_user_value_or_path_appears_in_the_sql(self, path: str) -> None:
        q = query(
            where=[
                Condition(field="district", op="in", value=["Xuhui", "Pudong"]),
                Condition(field="age", op="between", value=[31, 47]),
                Condition(field="visit_date", op=">=", value="2024-01-09"),
            ],
            group_by=["sex"],
            aggregates=[Aggregate(fn="sum", field="cost")],
        )
        for compiled in (
            compiler.aggregate_sql(q, TABLE, path, L4),
            compiler.population_sql(q, TABLE, path),
            compiler.dp_rows_sql(q, TABLE, path),
        ):
            for text in ("Xuhui", "Pudong", "31", "47", "2024", path):
                assert text not in compiled.sql
            assert {"Xuhui", "Pudong", 31, 47, date(2024, 1, 9), path} <= set(compiled.params)

    def test_a_dictionary_name_with_quotes_is_quoted(self, tmp_path: Path) -> None:
        odd = 'a"b; DROP TABLE x'
        table = {
            "table": "odd",
            "person_key": "pid",
            "max_rows_per_person": 5,
            "fields": [{"name": "pid", "type": "string"}, {"name": odd, "type": "integer"}],
        }
        storage = Storage(tmp_path / "objects")
        target = Path(storage.location("releases/rel_01/tables/odd.parquet"))
        target.parent.mkdir(parents=True)
        write_parquet(target, table, [{"pid": "p", odd: 7, "_lode_rkey": 1}])
        q = QueryRequest(table="odd", select=[odd], where=[Condition(field=odd, op="=", value=7)])
        validation.validate(q, table, L1, "rows")
        with storage.sandbox.open_connection(storage.tables_location("rel_01")) as conn:
            assert compiler.run(conn, compiler.rows_sql(q, table, str(target))) == [{odd: 7, RECORD_KEY: 1}]


class TestValidate:
    def test_unknown_columns_are_named_in_every_position(self) -> None:
        error = refused(query(select=["nope"], where=where("ghost", "=", 1), order_by=[OrderBy(field="phantom")]))
        assert paths(error) == ["where.0.field", "select.0", "order_by.0.field"]
        error = refused(query(group_by=["ghost"], aggregates=[Aggregate(fn="sum", field="nope")]))
        assert paths(error) == ["group_by.0", "aggregates.0.field"]
        assert error.status == 400 and error.code == "validation_error"

    @pytest.mark.parametrize(
        ("field", "op", "value"),
        [
            ("district", "in", "Xuhui"),
            ("district", "in", []),
            ("age", "between", [1, 2, 3]),
            ("age", "between", 4),
            ("hba1c", "is_null", 5),
            ("age", "=", [1]),
            ("age", "=", None),
            ("age", ">", "30"),
            ("age", "=", True),
            ("hba1c", "<", float("nan")),
            ("age", "=", 2**70),
            ("visit_date", ">", "yesterday"),
            ("visit_date", "=", 20240101),
            ("smoker", "=", "yes"),
            ("district", "=", 5),
            ("district", "in", ["Xuhui", None]),
        ],
    )
    def test_a_value_that_does_not_suit_the_op_or_the_field_is_refused(self, field: str, op: str, value: Any) -> None:
        assert paths(refused(query(select=["age"], where=where(field, op, value)))) == ["where.0.value"]

    def test_a_range_comparison_on_a_boolean_is_refused(self) -> None:
        assert paths(refused(query(select=["age"], where=where("smoker", "<", True)))) == ["where.0.op"]

    def test_a_value_outside_the_categories_is_allowed(self) -> None:
        validation.validate(query(select=["age"], where=where("district", "=", "Atlantis")), TABLE, L1, "rows")

    def test_limit_is_checked_by_the_schema_and_again_by_validate(self) -> None:
        for limit in (0, -1, 10_001):
            with pytest.raises(msgspec.ValidationError):
                msgspec.convert({"table": "visits", "limit": limit}, QueryRequest)
        assert paths(refused(query(select=["age"], limit=0))) == ["limit"]
        assert paths(refused(query(aggregates=[Aggregate(fn="count")], limit=MAX_GROUPS + 1))) == ["limit"]

    @pytest.mark.parametrize(
        ("aggregate", "where_"),
        [
            (Aggregate(fn="sum", field="district"), "aggregates.0.field"),
            (Aggregate(fn="avg", field="visit_date"), "aggregates.0.field"),
            (Aggregate(fn="min", field="smoker"), "aggregates.0.field"),
            (Aggregate(fn="count_distinct"), "aggregates.0.field"),
            (Aggregate(fn="sum"), "aggregates.0.field"),
        ],
    )
    def test_an_aggregate_must_suit_its_field(self, aggregate: Aggregate, where_: str) -> None:
        assert paths(refused(query(aggregates=[aggregate]))) == [where_]

    def test_order_by_names_an_output_column(self) -> None:
        q = query(group_by=["sex"], aggregates=[Aggregate(fn="count")], order_by=[OrderBy(field="age")])
        assert paths(refused(q)) == ["order_by.0.field"]
        q = query(
            group_by=["sex"], aggregates=[Aggregate(fn="sum", field="cost")], order_by=[OrderBy(field="sum_cost")]
        )
        validation.validate(q, TABLE, L4, "aggregate")
        validation.validate(query(order_by=[OrderBy(field="cost")]), TABLE, L3, "rows")  # the default select

    def test_shape_problems_are_refused(self) -> None:
        assert paths(refused(query(group_by=["sex", "sex"], aggregates=[Aggregate(fn="count")]))) == ["group_by.1"]
        twice = [Aggregate(fn="count"), Aggregate(fn="count")]
        assert paths(refused(query(aggregates=twice))) == ["aggregates.1"]
        assert paths(refused(query(group_by=["sex"]))) == ["aggregates"]
        assert paths(refused(query(select=["age"], aggregates=[Aggregate(fn="count")]))) == ["select"]
        assert paths(refused(query(select=["age"], epsilon=0.1))) == ["epsilon"]
        assert paths(refused(query(select=["age"], epsilon=0.1, aggregates=[Aggregate(fn="count")]))) == ["select"]

    def test_a_dp_query_cannot_aggregate_a_field_it_groups_by(self) -> None:
        aggregates = [Aggregate(fn="count", field="sex")]
        assert paths(refused(query(group_by=["sex"], aggregates=aggregates, epsilon=0.1), rule("L5"))) == [
            "aggregates.0.field"
        ]
        validation.validate(query(group_by=["sex"], aggregates=aggregates), TABLE, L1, "aggregate")

    def test_the_caller_may_answer_an_aggregate_query_with_dp_but_not_as_rows(self) -> None:
        q = query(group_by=["sex"], aggregates=[Aggregate(fn="avg", field="hba1c")])
        validation.validate(q, TABLE, rule("L5"), "dp_aggregate")
        assert paths(refused_as(q, "rows")) == ["body"]
        assert paths(refused_as(query(select=["age"]), "aggregate"))[0] == "body"


class TestGradeRule:
    @pytest.mark.parametrize(
        ("q", "where_"),
        [
            (query(select=["person_id"]), "select.0"),
            (query(select=["age"], where=where("person_id", "=", "P001")), "where.0.field"),
            (query(group_by=["person_id"], aggregates=[Aggregate(fn="count")]), "group_by.0"),
            (query(aggregates=[Aggregate(fn="count_distinct", field="person_id")]), "aggregates.0.field"),
        ],
    )
    def test_sensitive_columns_are_refused_at_l3_and_allowed_at_l1(self, q: QueryRequest, where_: str) -> None:
        with pytest.raises(Forbidden) as caught:
            validation.validate(q, TABLE, L3, compiler.mode_of(q))
        assert caught.value.code == "sensitive_column" and paths(caught.value) == [where_]
        validation.validate(q, TABLE, L1, compiler.mode_of(q))

    def test_the_default_select_holds_what_the_grade_allows(self, conn: duckdb.DuckDBPyConnection, path: str) -> None:
        q = query()
        validation.validate(q, TABLE, L3, "rows")
        at_l3 = compiler.rows_sql(q, TABLE, path, L3)
        assert "person_id" not in at_l3.columns and at_l3.columns[0] == "age"
        assert compiler.rows_sql(q, TABLE, path).columns == at_l3.columns  # no rule: the safe default
        at_l1 = compiler.rows_sql(q, TABLE, path, L1)
        # One row past the page, which says the answer was cut.
        assert at_l1.columns[0] == "person_id" and at_l1.params[-1] == compiler.DEFAULT_LIMIT + 1
        assert len(compiler.run(conn, at_l1)) == compiler.DEFAULT_LIMIT + 1 < len(ROWS)

    def test_an_aggregate_outside_the_grade_is_refused(self) -> None:
        q = query(aggregates=[Aggregate(fn="count"), Aggregate(fn="max", field="age")])
        with pytest.raises(Forbidden) as caught:
            validation.validate(q, TABLE, L4, "aggregate")
        assert caught.value.code == "grade_forbids_delivery" and paths(caught.value) == ["aggregates.1.fn"]
        validation.validate(q, TABLE, L1, "aggregate")


def matching(predicate: Any) -> int:
    return sum(1 for row in ROWS if predicate(row))


class TestOperators:
    @pytest.mark.parametrize(
        ("field", "op", "value", "predicate"),
        [
            ("district", "=", "Xuhui", lambda r: r["district"] == "Xuhui"),
            ("district", "!=", "Xuhui", lambda r: r["district"] != "Xuhui"),
            ("age", "<", 40, lambda r: r["age"] < 40),
            ("age", "<=", 40, lambda r: r["age"] <= 40),
            ("age", ">", 40.5, lambda r: r["age"] > 40.5),
            ("age", ">=", 40, lambda r: r["age"] >= 40),
            ("hba1c", "!=", 5.0, lambda r: r["hba1c"] is not None and r["hba1c"] != 5.0),
            ("district", "in", ["Xuhui", "Jingan"], lambda r: r["district"] in ("Xuhui", "Jingan")),
            ("district", "not_in", ["Xuhui", "Jingan"], lambda r: r["district"] not in ("Xuhui", "Jingan")),
            ("age", "between", [30, 45], lambda r: 30 <= r["age"] <= 45),
            ("hba1c", "is_null", None, lambda r: r["hba1c"] is None),
            ("hba1c", "not_null", None, lambda r: r["hba1c"] is not None),
            ("visit_date", "<", "2024-03-01", lambda r: r["visit_date"] < date(2024, 3, 1)),
            (
                "visit_date",
                "between",
                ["2024-02-01", "2024-04-01"],
                lambda r: date(2024, 2, 1) <= r["visit_date"] <= date(2024, 4, 1),
            ),
            ("smoker", "=", True, lambda r: r["smoker"]),
            ("smoker", "in", [False], lambda r: not r["smoker"]),
        ],
    )
    def test_each_operator_matches_what_python_matches(
        self, conn: duckdb.DuckDBPyConnection, path: str, field: str, op: str, value: Any, predicate: Any
    ) -> None:
        q = query(select=["person_id", field], where=where(field, op, value), limit=10_000)
        validation.validate(q, TABLE, L1, "rows")
        rows = compiler.run(conn, compiler.rows_sql(q, TABLE, path, L1))
        assert len(rows) == matching(predicate) > 0

    def test_conditions_combine_with_and_and_order_applies(self, conn: duckdb.DuckDBPyConnection, path: str) -> None:
        q = query(
            select=["age", "district"],
            where=[Condition(field="district", op="=", value="Pudong"), Condition(field="age", op=">", value=50)],
            order_by=[OrderBy(field="age", direction="desc")],
            limit=3,
        )
        rows = compiler.run(conn, compiler.rows_sql(q, TABLE, path, L1))
        expected = sorted((r["age"] for r in ROWS if r["district"] == "Pudong" and r["age"] > 50), reverse=True)
        assert [r["age"] for r in rows] == expected[:4]  # the page of 3 and the row past it


def ordered(rows: list[dict[str, Any]], order_by: list[OrderBy]) -> list[dict[str, Any]]:
    """Python's version of a page's order: each order_by key (nulls last), then the record key."""
    rows = sorted(rows, key=lambda r: r[RECORD_KEY])
    for o in reversed(order_by):  # stable sorts, least significant key first
        present = [r for r in rows if r[o.field] is not None]
        rows = sorted(present, key=lambda r: r[o.field], reverse=o.direction == "desc") + [
            r for r in rows if r[o.field] is None
        ]
    return rows


class TestRowPages:
    SELECT = ["person_id", "age", "district", "hba1c", "visit_date", "smoker"]

    @pytest.mark.parametrize(
        "order_by",
        [
            [],
            [OrderBy(field="hba1c")],  # with nulls
            [OrderBy(field="hba1c", direction="desc"), OrderBy(field="visit_date")],
            [OrderBy(field="smoker"), OrderBy(field="age", direction="desc")],
            [OrderBy(field="district", direction="desc"), OrderBy(field="visit_date", direction="desc")],
        ],
    )
    @pytest.mark.parametrize("size", [1, 7, 50])
    def test_pages_joined_are_the_whole_answer_in_one_fixed_order(
        self, conn: duckdb.DuckDBPyConnection, path: str, order_by: list[OrderBy], size: int
    ) -> None:
        q = query(select=self.SELECT, where=where("age", ">=", 0), order_by=order_by, limit=10_000)
        whole = compiler.run(conn, compiler.rows_sql(q, TABLE, path, L1))
        expected = ordered([r for r in ROWS if r["age"] >= 0], order_by)
        assert whole == [{c: r[c] for c in [*self.SELECT, RECORD_KEY]} for r in expected]
        pages: list[dict[str, Any]] = []
        after = None
        while True:
            page = msgspec.structs.replace(q, limit=size)
            fetched = compiler.run(conn, compiler.rows_sql(page, TABLE, path, L1, after=after))
            pages += fetched[:size]
            if len(fetched) <= size:
                break
            last = fetched[size - 1]
            after = [*(last[o.field] for o in order_by), last[RECORD_KEY]]
        assert pages == whole

    def test_a_page_as_parquet_holds_the_page_in_order_without_the_keys(
        self, store: tuple[Storage, str, str], tmp_path: Path
    ) -> None:
        storage, release, path = store
        q = query(select=["age", "hba1c"], order_by=[OrderBy(field="hba1c", direction="desc")], limit=5)
        page = compiler.rows_sql(q, TABLE, path, L1)
        target = storage.root / "tmp" / "page.parquet"
        with storage.sandbox.open_connection(release, target.parent) as conn:
            fetched, content = compiler.run_page_to_parquet(conn, q, page, str(target))
            expected = compiler.run(conn, page)
        assert [dict(zip(page.columns, row, strict=True)) for row in fetched] == expected and len(expected) == 6
        written = tmp_path / "written.parquet"
        written.write_bytes(content)
        with duckdb.connect() as plain:
            rows = plain.execute("SELECT * FROM read_parquet(?)", [str(written)]).fetchall()
            types = [
                t for _, t, *_ in plain.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(written)]).fetchall()
            ]
        assert rows == [(r["age"], r["hba1c"]) for r in expected[:5]] and types == ["BIGINT", "DOUBLE"]


def cells_by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows}


class TestAggregateSql:
    def test_a_cell_carries_persons_rows_key_aggregates_and_dominance(
        self, conn: duckdb.DuckDBPyConnection, path: str
    ) -> None:
        q = query(
            group_by=["district"],
            aggregates=[Aggregate(fn="count"), Aggregate(fn="sum", field="cost"), Aggregate(fn="avg", field="hba1c")],
        )
        compiled = compiler.aggregate_sql(q, TABLE, path, L4)
        assert compiled.params[-1] == MAX_GROUPS + 1
        cells = cells_by(compiler.run(conn, compiled), "district")
        jingan = [r for r in ROWS if r["district"] == "Jingan"]
        per_person: dict[str, float] = defaultdict(float)
        for r in jingan:
            per_person[r["person_id"]] += r["cost"]
        top = sorted(per_person.values(), reverse=True)
        cell = cells["Jingan"]
        assert cell["_persons"] == cell["count"] == 12  # at L4 a count counts persons
        assert cell["_rows"] == len(jingan)
        assert cell["sum_cost"] == pytest.approx(sum(r["cost"] for r in jingan))
        assert (cell["_top1_sum_cost"], cell["_top2_sum_cost"]) == pytest.approx((top[0], top[1]))
        assert cell["_abs_sum_cost"] == pytest.approx(sum(top))
        assert per_person[DOMINANT[0]] in (cell["_top1_sum_cost"], cell["_top2_sum_cost"])
        values = [r["hba1c"] for r in jingan if r["hba1c"] is not None]
        assert cell["_n_avg_hba1c"] == len(values) and cell["_sum_avg_hba1c"] == pytest.approx(sum(values))
        assert cell["_ckey"] == sum(r["_lode_rkey"] for r in jingan) % 2**32
        assert cells["Huangpu"]["_persons"] == 3

    def test_count_counts_rows_where_the_rule_has_no_query_set_control(
        self, conn: duckdb.DuckDBPyConnection, path: str
    ) -> None:
        q = query(group_by=["district"], aggregates=[Aggregate(fn="count"), Aggregate(fn="count", field="hba1c")])
        cells = cells_by(compiler.run(conn, compiler.aggregate_sql(q, TABLE, path, L1)), "district")
        xuhui = [r for r in ROWS if r["district"] == "Xuhui"]
        assert cells["Xuhui"]["count"] == len(xuhui)
        assert cells["Xuhui"]["count_hba1c"] == sum(r["hba1c"] is not None for r in xuhui)

    def test_the_cell_key_depends_only_on_the_contributing_rows(
        self, conn: duckdb.DuckDBPyConnection, path: str
    ) -> None:
        grouped = query(group_by=["district"], aggregates=[Aggregate(fn="count")])
        filtered = query(where=where("district", "=", "Xuhui"), aggregates=[Aggregate(fn="count")])
        first = compiler.run(conn, compiler.aggregate_sql(grouped, TABLE, path, L4))
        assert compiler.run(conn, compiler.aggregate_sql(grouped, TABLE, path, L4)) == first
        (alone,) = compiler.run(conn, compiler.aggregate_sql(filtered, TABLE, path, L4))
        assert alone["_ckey"] == cells_by(first, "district")["Xuhui"]["_ckey"]

    def test_a_null_group_is_a_cell_with_its_own_statistics(self, conn: duckdb.DuckDBPyConnection, path: str) -> None:
        q = query(group_by=["hba1c"], aggregates=[Aggregate(fn="sum", field="cost")])
        # A rule with dominance: the per-person statistics are computed only for a rule that reads them.
        cells = cells_by(compiler.run(conn, compiler.aggregate_sql(q, TABLE, path, L4)), "hba1c")
        nulls = [r for r in ROWS if r["hba1c"] is None]
        assert cells[None]["_rows"] == len(nulls) and cells[None]["_top1_sum_cost"] is not None
        assert list(cells)[-1] is None  # nulls sort last

    def test_order_by_an_aggregate_and_a_whole_table_cell(self, conn: duckdb.DuckDBPyConnection, path: str) -> None:
        q = query(group_by=["district"], aggregates=[Aggregate(fn="count")], order_by=[OrderBy(field="count")])
        rows = compiler.run(conn, compiler.aggregate_sql(q, TABLE, path, L4))
        assert [r["district"] for r in rows] == ["Huangpu", "Jingan", "Xuhui", "Pudong", "Minhang"]
        (total,) = compiler.run(
            conn, compiler.aggregate_sql(query(aggregates=[Aggregate(fn="sum", field="age")]), TABLE, path, L4)
        )
        assert total["_persons"] == 84 and total["sum_age"] == sum(r["age"] for r in ROWS)
        empty = query(where=where("district", "=", "Atlantis"), aggregates=[Aggregate(fn="sum", field="age")])
        (nothing,) = compiler.run(conn, compiler.aggregate_sql(empty, TABLE, path, L4))
        assert nothing["_persons"] == 0 and nothing["sum_age"] is None


class TestPopulationSql:
    def test_persons_matching_and_in_the_table(self, conn: duckdb.DuckDBPyConnection, path: str) -> None:
        q = query(where=where("district", "=", "Huangpu"), aggregates=[Aggregate(fn="count")])
        assert compiler.run(conn, compiler.population_sql(q, TABLE, path)) == [
            {"persons_matching": 3, "persons_total": 84}
        ]
        whole = query(aggregates=[Aggregate(fn="count")])
        assert compiler.run(conn, compiler.population_sql(whole, TABLE, path))[0]["persons_matching"] == 84


class TestDpRowsSql:
    def test_each_person_is_capped_to_their_first_rows_by_record_key(
        self, conn: duckdb.DuckDBPyConnection, path: str
    ) -> None:
        q = query(
            group_by=["sex"],
            aggregates=[Aggregate(fn="sum", field="age"), Aggregate(fn="avg", field="hba1c"), Aggregate(fn="count")],
            epsilon=0.5,
        )
        validation.validate(q, TABLE, rule("L5"), "dp_aggregate")
        compiled = compiler.dp_rows_sql(q, TABLE, path)
        assert compiled.columns == ["sex", "_person", "age", "hba1c"]
        rows = compiler.run(conn, compiled)
        cap = TABLE["max_rows_per_person"]
        assert max(Counter(r["_person"] for r in rows).values()) == cap
        by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in ROWS:
            by_person[r["person_id"]].append(r)
        kept = {id(r) for rs in by_person.values() for r in sorted(rs, key=lambda r: r["_lode_rkey"])[:cap]}
        expected = Counter((r["person_id"], r["age"]) for r in ROWS if id(r) in kept)
        clamp = {(p, min(max(a, 0), 120)) for p, a in expected}
        assert {(r["_person"], r["age"]) for r in rows} == clamp
        assert len(rows) == len(kept)

    def test_values_are_clamped_to_the_bounds_and_nulls_stay_null(
        self, conn: duckdb.DuckDBPyConnection, path: str
    ) -> None:
        q = query(aggregates=[Aggregate(fn="sum", field="age"), Aggregate(fn="sum", field="hba1c")], epsilon=0.5)
        rows = compiler.run(conn, compiler.dp_rows_sql(q, TABLE, path))
        ages = {r["age"] for r in rows}
        assert min(ages) >= 0 and max(ages) <= 120
        hba1c = [r["hba1c"] for r in rows]
        assert None in hba1c and max(h for h in hba1c if h is not None) <= 20

    def test_the_where_applies_before_the_cap(self, conn: duckdb.DuckDBPyConnection, path: str) -> None:
        q = query(where=where("district", "=", "Xuhui"), aggregates=[Aggregate(fn="count")], epsilon=0.5)
        rows = compiler.run(conn, compiler.dp_rows_sql(q, TABLE, path))
        xuhui = Counter(r["person_id"] for r in ROWS if r["district"] == "Xuhui")
        assert len(rows) == sum(min(n, 2) for n in xuhui.values())
