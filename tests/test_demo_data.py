"""The demo marketplace's content: valid bodies, a complete catalogue, and synthetic files that match it."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any, get_args

import duckdb
import msgspec
import pytest

from catalog.demo import data
from catalog.demo.catalog import ALL_ORGS, OPERATOR, ORGS, PRODUCTS, RELEASE_VERSION, DemoProduct, org, product
from catalog.demo.dictionaries import DISTRICTS
from catalog.orgs.schemas import MemberCreate, OrgCreate
from catalog.products.offer_schemas import PlanCreate, RevenueSharePut, TermsPut
from catalog.products.schemas import DataType, Grade, PlanKind, ProductCreate, ReleaseCreate

SEED = "lode-demo"
FAKE_IDS = {o.slug: "org_" + hashlib.sha256(o.slug.encode()).hexdigest()[:26].upper() for o in ALL_ORGS}
DUCKDB_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "date": "DATE", "boolean": "BOOLEAN"}
ROLES = {
    "operator": {"admin", "curator", "compliance", "ethics", "security", "finance"},
    "provider": {"admin", "publisher", "reviewer"},
    "consumer": {"admin", "buyer", "analyst"},
}
DUO = {"NRES", "GRU", "HMB", "DS", "POA", "RS", "NMDS", "GSO", "NPUNCU", "PUB", "COL", "IRB", "GS", "MOR", "TS",
       "US", "PS", "IS", "RTN", "CC", "NPOA", "NPU", "NCU"}  # fmt: skip


def one(sql: str) -> Any:
    row = duckdb.connect().execute(sql).fetchone()
    assert row is not None
    return row[0]


def roundtrip(value: msgspec.Struct) -> None:
    assert msgspec.convert(msgspec.to_builtins(value), type(value)) == value


@pytest.fixture(scope="module", name="dataset")
def fx_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    return data.write_all(tmp_path_factory.mktemp("demo-data"), SEED)


class TestOrganisations:
    def test_bodies_round_trip(self) -> None:
        for demo_org in ALL_ORGS:
            roundtrip(demo_org.org)
            for member in demo_org.members:
                roundtrip(member)
                assert isinstance(member, MemberCreate)
            assert isinstance(demo_org.org, OrgCreate)
            assert demo_org.org.slug == demo_org.slug

    def test_the_parties(self) -> None:
        kinds = Counter((o.org.kind, o.org.org_type) for o in ORGS)
        assert kinds[("provider", "hospital")] == 3
        assert kinds[("consumer", "pharma")] == 2 and kinds[("consumer", "university")] == 1
        hospitals = [o for o in ORGS if o.org.kind == "provider"]
        assert all(o.org.jurisdiction == "CN" and not o.org.for_profit for o in hospitals)
        pharma = [o.org for o in ORGS if o.org.org_type == "pharma"]
        assert all(p.for_profit for p in pharma)
        assert {p.jurisdiction for p in pharma} >= {"CN"} and {p.jurisdiction for p in pharma} - {"CN"}
        assert not org("fudan-sph").org.for_profit
        assert OPERATOR.slug == "operator" and OPERATOR.org.kind == "operator"

    def test_members_have_roles_of_their_kind_and_unique_demo_emails(self) -> None:
        emails = [m.email for o in ALL_ORGS for m in o.members]
        assert len(emails) == len(set(emails))
        for demo_org in ALL_ORGS:
            roles = {r for m in demo_org.members for r in m.roles}
            assert roles == ROLES[demo_org.org.kind], demo_org.slug
            assert all(m.email.endswith(f"@{demo_org.slug}.demo.lode") for m in demo_org.members)
            assert demo_org.admin.email == f"admin@{demo_org.slug}.demo.lode"


class TestProducts:
    def test_bodies_round_trip(self) -> None:
        for item in PRODUCTS:
            roundtrip(item.product)
            roundtrip(item.terms)
            roundtrip(item.release)
            body = item.product_create(FAKE_IDS)
            roundtrip(body)
            assert isinstance(body, ProductCreate) and isinstance(item.terms, TermsPut)
            for plan in item.plan_creates(FAKE_IDS):
                roundtrip(plan)
                assert isinstance(plan, PlanCreate)
            share = item.revenue_share_put(FAKE_IDS)
            roundtrip(share)
            assert isinstance(share, RevenueSharePut) and isinstance(item.release, ReleaseCreate)

    def test_catalogue_breadth(self) -> None:
        assert len(PRODUCTS) >= 12
        assert len({p.slug for p in PRODUCTS}) == len(PRODUCTS)
        assert {p.grade for p in PRODUCTS} == set(get_args(Grade))
        types = {t for p in PRODUCTS for t in p.product.data_types}
        assert types >= {"ehr", "lab", "imaging_report", "physical_exam", "claims", "clinical_trial"}
        assert types <= set(get_args(DataType))
        assert {p.plan.kind for item in PRODUCTS for p in item.plans} == set(get_args(PlanKind))

    def test_circulable_and_bilingual(self) -> None:
        keywords = {k for p in PRODUCTS for k in p.product.keywords}
        assert {"diabetes", "糖尿病", "liver cancer", "肝癌"} <= keywords
        for item in PRODUCTS:
            body = item.product
            assert body.slug == item.slug
            assert not body.identified and not body.core_data and body.legal_basis and body.jurisdiction == "CN"
            assert body.i18n and set(body.i18n) == {"en", "zh"}
            assert body.title == f"{body.i18n['zh'].title} — {body.i18n['en'].title}"
            assert body.therapeutic_areas and body.standards and body.quality and body.update_frequency
            assert body.temporal_coverage and body.temporal_coverage.start < body.temporal_coverage.end
            assert body.record_count == sum(item.rows.values())
            assert item.release.version == RELEASE_VERSION and item.release.dictionary is None

    def test_sources_and_revenue_shares(self) -> None:
        for item in PRODUCTS:
            assert abs(sum(s.share for s in item.product.sources) - 1) < 1e-9
            assert item.owner in item.source_orgs
            assert all(org(s).org.kind == "provider" for s in item.source_orgs if s)
            weights = dict(item.provider_weights)
            assert weights and all(w >= 1 for w in weights.values())
            assert set(weights) == {s for s in item.source_orgs if s}
            assert 0 <= item.operator_bps + item.fund_bps < 10_000
            share = item.revenue_share_put(FAKE_IDS)
            assert [p.org_id for p in share.providers] == [FAKE_IDS[s] for s in weights]
            body = item.product_create(FAKE_IDS)
            assert [s.org_id for s in body.sources] == [FAKE_IDS[s] for s in item.source_orgs]
        shared = product("t2d-ehr-cohort")
        assert [(s, x.share) for s, x in zip(shared.source_orgs, shared.product.sources, strict=True)] == [
            ("ruijin", 0.7), ("zhongshan", 0.3),
        ]  # fmt: skip
        assert dict(shared.provider_weights) == {"ruijin": 70, "zhongshan": 30}

    def test_plans_fit_their_kind_and_the_grade(self) -> None:
        modes = {"L1": {"download", "rows", "aggregate"}, "L2": {"download", "rows", "aggregate"},
                 "L3": {"rows", "aggregate"}, "L4": {"aggregate"}, "L5": {"dp_aggregate"}}  # fmt: skip
        for item in PRODUCTS:
            for demo_plan in item.plans:
                plan = demo_plan.plan
                assert plan.modes is None or set(plan.modes) <= modes[item.grade], (item.slug, plan.name)
                if plan.kind in ("free", "public_interest"):
                    assert plan.amount == 0 and not plan.unit_prices
                if plan.kind in ("one_time", "subscription"):
                    assert plan.amount > 0 and plan.term_months
                if plan.kind == "subscription":
                    assert plan.interval in ("month", "year")
                if plan.kind == "metered":
                    assert plan.unit_prices and set(plan.unit_prices) == set(plan.units) and plan.interval
                assert all(org(s).org.kind == "consumer" for s in demo_plan.private_to)
        example = next(p.plan for i in PRODUCTS for p in i.plans if p.plan.name == "Annual research licence")
        assert (example.kind, example.amount, example.term_months) == ("one_time", 5_000_000, 12)
        assert any(p.plan.kind == "free" and p.plan.caps for i in PRODUCTS for p in i.plans)
        assert any(p.plan.kind == "metered" and p.plan.cap_period == "billing_period" and p.plan.included
                   for i in PRODUCTS for p in i.plans)  # fmt: skip
        assert any(p.private_to for i in PRODUCTS for p in i.plans)

    def test_terms(self) -> None:
        params = set()
        for item in PRODUCTS:
            codes = [c if isinstance(c, str) else c.code for c in item.terms.use_conditions]
            assert set(codes) <= DUO, item.slug
            for c in item.terms.use_conditions:
                if not isinstance(c, str) and c.params:
                    params |= {k for k, v in msgspec.to_builtins(c.params).items() if v is not None}
            assert item.terms.max_term_months and item.terms.clauses
        assert params >= {"diseases", "regions", "months"}
        local = {c for p in PRODUCTS for c in p.terms.local_conditions}
        assert local == {"no_linkage", "no_cross_border", "enclave_only", "genetic_resources"}
        genetic = [p for p in PRODUCTS if "genetic_resources" in p.terms.local_conditions]
        assert genetic and all("genomic" in p.product.data_types for p in genetic)


def check_dictionary(item: DemoProduct) -> None:
    population = item.product.population_size
    assert population
    for table in item.product.dictionary or []:
        names = [f.name for f in table.fields]
        assert len(names) == len(set(names)), table.table
        assert table.person_key in names
        assert next(f for f in table.fields if f.name == table.person_key).sensitive
        rows = item.rows[table.table]
        assert rows <= population * table.max_rows_per_person
        for f in table.fields:
            if f.min is not None or f.max is not None:
                assert f.type in ("integer", "number"), (table.table, f.name)
                assert f.min is not None and f.max is not None and f.min <= f.max
            if f.categories is not None:
                assert f.type in ("string", "integer"), (table.table, f.name)
                kind = str if f.type == "string" else int
                assert all(isinstance(c, kind) for c in f.categories) and len(set(f.categories)) == len(f.categories)
            if f.name == "district":
                assert f.categories == DISTRICTS and len(DISTRICTS) == 16
            if f.name == "sex":
                assert f.categories == ["F", "M"]
            if f.code_system and f.code_system.startswith("LOINC "):
                assert f.type == "number"
    assert max(item.rows.values()) >= population  # everyone appears somewhere


def test_dictionaries_are_consistent() -> None:
    for item in PRODUCTS:
        check_dictionary(item)


def check_file(path: Path, table: dict[str, Any], rows: int, coverage: tuple[date, date]) -> dict[str, Any]:
    con = duckdb.connect()
    # read as publish reads uploads: the sniffer types every column from all the rows
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{path}', header = true, sample_size = -1)")
    relation = "t"
    described = con.execute(f"DESCRIBE {relation}").fetchall()
    assert [(r[0], r[1]) for r in described] == [(f["name"], DUCKDB_TYPES[f["type"]]) for f in table["fields"]]
    aggregates = ["count(*)"]
    for f in table["fields"]:
        col = f'"{f["name"]}"'
        distinct = f"list(DISTINCT {col})" if f.get("categories") else "NULL"
        aggregates += [f"count({col})", f"min({col})", f"max({col})", distinct]
    result = con.execute(f"SELECT {', '.join(aggregates)} FROM {relation}").fetchone()
    assert result is not None and result[0] == rows
    for i, f in enumerate(table["fields"]):
        count, lo, hi, distinct = result[1 + 4 * i : 5 + 4 * i]
        assert count == rows, f"{f['name']} has empty cells"
        if f.get("min") is not None:
            assert f["min"] <= lo and hi <= f["max"], (f["name"], lo, hi)
        if f.get("categories"):
            assert set(distinct) <= set(f["categories"]), (f["name"], set(distinct) - set(f["categories"]))
        if f["type"] == "date":
            assert coverage[0] <= lo and hi <= coverage[1], (f["name"], lo, hi)
    key = table["person_key"]
    per_person = con.execute(f'SELECT count(*) n FROM {relation} GROUP BY "{key}" ORDER BY n DESC LIMIT 1').fetchone()
    assert per_person is not None and per_person[0] <= table["max_rows_per_person"]
    persons = con.execute(f'SELECT count(DISTINCT "{key}") FROM {relation}').fetchone()
    return {"persons": persons[0] if persons else 0}


class TestGeneratedFiles:
    def test_files_match_their_dictionaries(self, dataset: dict[str, dict[str, Path]]) -> None:
        for item in PRODUCTS:
            tc = item.product.temporal_coverage
            assert tc is not None
            assert set(dataset[item.slug]) == set(item.rows)
            for table in item.tables:
                path = dataset[item.slug][table["table"]]
                assert path.name == f"{table['table']}.csv"
                rows = item.rows[table["table"]]
                found = check_file(path, table, rows, (tc.start, tc.end))
                assert found["persons"] == min(rows, item.product.population_size or 0), (item.slug, table["table"])

    def test_the_largest_table_has_at_least_200k_rows(self, dataset: dict[str, dict[str, Path]]) -> None:
        largest = max(((i.slug, t, n) for i in PRODUCTS for t, n in i.rows.items()), key=lambda x: x[2])
        assert largest[2] >= 200_000
        assert one(f"SELECT count(*) FROM read_csv('{dataset[largest[0]][largest[1]]}')") == largest[2]

    def test_l4_data_has_a_small_district_and_enough_persons(self, dataset: dict[str, dict[str, Path]]) -> None:
        l4 = [i for i in PRODUCTS if i.grade == "L4"]
        assert l4
        for item in l4:
            for name, path in dataset[item.slug].items():
                cells = (
                    duckdb.connect()
                    .execute(f"SELECT district, count(DISTINCT person_id) FROM read_csv('{path}') GROUP BY district")
                    .fetchall()
                )
                assert any(0 < n < 10 for _, n in cells), (item.slug, name, cells)
                assert sum(n for _, n in cells) >= 1000
                assert sum(1 for _, n in cells if n >= 10) >= 10

    def test_a_person_is_the_same_person_in_every_table(self, dataset: dict[str, dict[str, Path]]) -> None:
        files = dataset["t2d-ehr-cohort"]
        mismatches = one(
            f"SELECT count(*) FROM read_csv('{files['visits']}') v JOIN read_csv('{files['patients']}') p "
            "USING (person_id) WHERE v.sex <> p.sex OR v.district <> p.district "
            "OR abs(year(v.visit_date) - p.birth_year - v.age) > 1"
        )
        assert mismatches == 0
        orphans = one(
            f"SELECT count(*) FROM read_csv('{files['visits']}') WHERE person_id NOT IN "
            f"(SELECT person_id FROM read_csv('{files['patients']}'))"
        )
        assert orphans == 0


class TestDeterminism:
    def write_small(self, directory: Path, seed: str, check: bool = False) -> dict[str, bytes]:
        out = {}
        for item in PRODUCTS:
            tc = item.product.temporal_coverage
            for table in item.tables:
                rows = min(item.rows[table["table"]], 2_000)
                persons = max(min(rows, 500), -(-rows // table["max_rows_per_person"]))
                path = directory / item.slug / f"{table['table']}.csv"
                data.write_table(item.slug, table, rows, path, seed, persons=persons)
                if check:
                    check_file(path, table, rows, (tc.start, tc.end) if tc else data.DEFAULT_COVERAGE)
                out[f"{item.slug}/{table['table']}"] = path.read_bytes()
        return out

    def test_same_seed_same_bytes_other_seed_other_bytes(self, tmp_path: Path) -> None:
        first = self.write_small(tmp_path / "a", SEED, check=True)
        assert first == self.write_small(tmp_path / "b", SEED)
        other = self.write_small(tmp_path / "c", "another-seed")
        assert all(first[k] != other[k] for k in first)

    def test_full_size_files_are_reproduced(self, dataset: dict[str, dict[str, Path]], tmp_path: Path) -> None:
        item = product("hcc-treatment-cohort")
        again = data.write_product(item, tmp_path, SEED)
        for name, path in again.items():
            assert path.read_bytes() == dataset[item.slug][name].read_bytes()


def test_rows_per_person_adds_up_within_the_cap() -> None:
    for persons, rows, cap in [(10, 5, 3), (10, 10, 1), (100, 1_000, 10), (1_000, 1_500, 4), (50, 400, 8)]:
        counts = data.rows_per_person(persons, rows, cap, random.Random(f"{persons}/{rows}"))
        assert sum(counts) == rows and all(1 <= c <= cap for c in counts)
        assert len(counts) == min(persons, rows)


def test_unknown_fields_follow_their_dictionary(tmp_path: Path) -> None:
    table = {
        "table": "things", "person_key": "subject", "max_rows_per_person": 4,
        "fields": [
            {"name": "subject", "type": "string", "sensitive": True},
            {"name": "when", "type": "date"},
            {"name": "score", "type": "integer", "min": 5, "max": 9},
            {"name": "level", "type": "number", "min": -1.5, "max": 2.5},
            {"name": "grade", "type": "integer", "categories": [1, 2, 3]},
            {"name": "colour", "type": "string", "categories": ["red", "green", "blue"]},
            {"name": "ok", "type": "boolean"},
            {"name": "visit_date", "type": "date"},
        ],
    }  # fmt: skip
    coverage = (date(2020, 1, 1), date(2020, 12, 31))
    path = tmp_path / "things.csv"
    data.write_table("not-a-demo-product", table, 1_000, path, SEED, coverage=coverage)
    assert check_file(path, table, 1_000, coverage)["persons"] >= 250
