"""Measured quality: releases published with defects of known size, on SQLite and PostgreSQL; the
report finds exactly those counts, a clean release scores clean, the counts a buyer sees are
masked under k, drift is measured, stricter thresholds fail, and search filters on the scores."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

import pytest

from catalog.products import profiling, quality
from tests.support import Actors, expect, problem

PEOPLE = {
    "table": "people",
    "person_key": "person_id",
    "max_rows_per_person": 1,
    "fields": [
        {"name": "person_id", "type": "string", "sensitive": True},
        {"name": "birth_year", "type": "integer", "min": 1900, "max": 2025},
        {"name": "sex", "type": "string", "categories": ["F", "M"]},
    ],
}
VISITS = {
    "table": "visits",
    "person_key": "person_id",
    "max_rows_per_person": 5,
    "fields": [
        {"name": "person_id", "type": "string", "sensitive": True},
        {"name": "visit_date", "type": "date"},
        {"name": "diagnosis", "type": "string", "code_system": "ICD-10"},
        {"name": "loinc", "type": "string", "code_system": "LOINC"},
        {"name": "unit", "type": "string", "code_system": "UCUM"},
        {"name": "hba1c", "type": "number", "min": 3, "max": 20, "code_system": "LOINC 4548-4"},
        {"name": "setting", "type": "string", "categories": ["inpatient", "outpatient"]},
    ],
}
PERIOD = {"start": "2024-01-01", "end": "2024-12-31"}
PERSONS = 200  # p000 … p199, each with a people row and four visits


def people_csv() -> bytes:
    rows = [["person_id", "birth_year", "sex"]] + [[f"p{i:03d}", 1950 + i % 50, "FM"[i % 2]] for i in range(PERSONS)]
    return _csv(rows)


def visits_rows(*, nulls: int = 0, bad_icd: int = 0, duplicates: int = 0, future: int = 0, out_of_bounds: int = 0,
                before_birth: int = 0, bad_loinc: int = 0, bad_unit: int = 0, bad_setting: int = 0,
                crowded: int = 0) -> list[list[Any]]:  # fmt: skip
    """800 clean visits (200 persons × 4, every month of 2024 among them) with defects planted on
    distinct rows, so each check counts exactly its own."""
    rows = []
    for i in range(4 * PERSONS):
        person = i // 4
        day = date(2024, 1 + i % 12, 1 + i % 28)
        rows.append([f"p{person:03d}", day.isoformat(), "E11.9", "4548-4", "%", 5 + (i % 50) / 10, "outpatient"])
    plan = [
        (nulls, lambda r: r.__setitem__(5, "")),
        (bad_icd, lambda r: r.__setitem__(2, "E1")),
        (future, lambda r: r.__setitem__(1, (date.today() + timedelta(days=30)).isoformat())),
        (out_of_bounds, lambda r: r.__setitem__(5, 42.0)),
        (before_birth, lambda r: r.__setitem__(1, "1949-06-01")),
        (bad_loinc, lambda r: r.__setitem__(3, "4548-5")),
        (bad_unit, lambda r: r.__setitem__(4, "mmol per L")),
        (bad_setting, lambda r: r.__setitem__(6, "home")),
    ]
    at = 0
    for count, plant in plan:
        for row in rows[at : at + count]:
            plant(row)
        at += count
    at += -at % 4  # from a person's first row on, one duplicate per person: none passes five rows
    rows += [list(rows[at + 4 * j]) for j in range(duplicates)]
    for extra in range(crowded):  # each crowded person gets two more visits: six, past five
        rows += [[f"p{extra:03d}", f"2024-06-{15 + n}", "E11.9", "4548-4", "%", 6.0, "inpatient"] for n in range(2)]
    return rows


def _csv(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


async def publish(client, owner, product, version: str, visits: list[list[Any]], **release: Any) -> dict[str, Any]:
    base = f"/v1/products/{product['id']}/releases"
    expect(await client.post(base, json={"version": version, **release}, headers=owner.headers), 201)
    header = [["person_id", "visit_date", "diagnosis", "loinc", "unit", "hba1c", "setting"]]
    expect(await client.put(f"{base}/{version}/files/people.csv", content=people_csv(), headers=owner.headers), 201)
    body = _csv(header + visits)
    expect(await client.put(f"{base}/{version}/files/visits.csv", content=body, headers=owner.headers), 201)
    return expect(await client.post(f"{base}/{version}/publish", headers=owner.headers), 200)


def checks(report: dict[str, Any], table: str) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(c["check"], c.get("column")): c for c in report["tables"][table]["checks"]}


@pytest.fixture(name="owner")
async def fx_owner(actors: Actors):
    return await actors.org("provider")


@pytest.fixture(name="product")
async def fx_product(catalogue, owner):
    return await catalogue.draft(owner, dictionary=[PEOPLE, VISITS], temporal_coverage=PERIOD)


async def test_a_clean_release_scores_clean(client, owner, product) -> None:
    published = await publish(client, owner, product, "1", visits_rows())
    assert published["quality"]["failed"] == 0
    assert published["quality"]["scores"] == {"conformance": 1.0, "completeness": 1.0, "plausibility": 1.0}
    report = expect(await client.get(f"/v1/products/{product['id']}/releases/1/quality", headers=owner.headers), 200)
    visits = checks(report, "visits")
    assert all(c["failing"] == 0 for c in visits.values()), [c for c in visits.values() if c["failing"]]
    assert checks(report, "people")[("persons_with_rows", None)]["numerator"] == PERSONS
    covered = visits[("period_months_covered", "visit_date")]
    assert covered["numerator"] == 12 and [m["month"] for m in covered["by_month"]][:2] == ["2024-01", "2024-02"]
    assert sum(m["rows"] for m in covered["by_month"]) == 4 * PERSONS
    assert {c["category"] for c in visits.values()} == set(quality.CATEGORIES)


async def test_planted_defects_are_counted_exactly(client, owner, product, catalogue) -> None:
    defects = {"nulls": 80, "bad_icd": 12, "duplicates": 11, "future": 13, "out_of_bounds": 14, "before_birth": 15,
               "bad_loinc": 16, "bad_unit": 17, "bad_setting": 18, "crowded": 3}  # fmt: skip
    await publish(client, owner, product, "1", visits_rows(**defects))
    report = expect(await client.get(f"/v1/products/{product['id']}/releases/1/quality", headers=owner.headers), 200)
    visits = checks(report, "visits")
    rows = 4 * PERSONS + defects["duplicates"] + 2 * defects["crowded"]
    assert report["tables"]["visits"]["rows"] == rows
    expected = {
        ("not_null", "hba1c"): 80,  # 10 % of the 800 visits
        ("icd10_shape", "diagnosis"): 12,
        ("no_duplicate_rows", None): 11,
        ("not_in_future", "visit_date"): 13,
        ("within_bounds", "hba1c"): 14,
        ("not_before_birth", "visit_date"): 15,
        ("loinc_check_digit", "loinc"): 16,
        ("ucum_parses", "unit"): 17,
        ("in_categories", "setting"): 18,
        ("rows_per_person_within_limit", None): 3,
        ("person_key_present", "person_id"): 0,
    }
    assert {key: visits[key]["failing"] for key in expected} == expected
    assert visits[("not_null", "hba1c")]["fraction"] == pytest.approx(1 - 80 / rows, abs=1e-6)
    assert visits[("rows_per_person_within_limit", None)]["denominator"] == PERSONS  # counted in persons
    failed = {key for key, c in visits.items() if not c["passed"]}
    assert ("not_null", "hba1c") in failed and ("icd10_shape", "diagnosis") in failed  # 90 % < 95 %, 98.3 % < 99 %
    assert report["summary"]["failed"] == len(failed) + sum(
        not c["passed"] for c in report["tables"]["people"]["checks"]
    )

    assert visits[("icd10_shape", "diagnosis")]["failing_persons"] == 3  # 12 rows of 3 persons
    assert visits[("icd10_shape", "diagnosis")]["masked"] and not visits[("not_null", "hba1c")]["masked"]

    # A buyer sees a check whose failing rows belong to fewer than k (10) persons as "< 10", with
    # nothing that gives its counts away: not its fraction, not the scores, not the drift.
    listed = await catalogue_list(client, catalogue, owner, product)
    seen = expect(await client.get(f"/v1/products/{listed['id']}/releases/1/quality"), 200)
    for key in (("rows_per_person_within_limit", None), ("icd10_shape", "diagnosis")):
        hidden = checks(seen, "visits")[key]
        assert hidden["masked"] and hidden["failing_persons"] == "< 10", key
        assert hidden["failing"] is None and hidden["fraction"] is None, key
    shown = checks(seen, "visits")[("not_null", "hba1c")]
    assert shown["failing"] == 80 and not shown["masked"]  # 20 persons: shown
    # No check shows the totals that would let a masked count be worked out from another's.
    assert not any("numerator" in c or "denominator" in c for t in seen["tables"].values() for c in t["checks"])
    covered = checks(seen, "visits")[("period_months_covered", "visit_date")]["by_month"]
    assert all(set(m) == {"month", "covered"} for m in covered)
    visible = [c for t in report["tables"].values() for c in t["checks"] if not quality.masked(c, 10)]
    plausible = [c["fraction"] for c in visible if c["category"] == "plausibility"]
    assert seen["summary"]["scores"]["plausibility"] == pytest.approx(sum(plausible) / len(plausible), abs=1e-6)
    assert report["summary"] == seen["summary"]  # the scores never counted a masked check
    assert listed["measured_quality"]["scores"] == report["summary"]["scores"]


async def catalogue_list(client, catalogue, owner, product) -> dict[str, Any]:
    offer = await catalogue.offer(owner, product["id"])
    assert offer
    expect(await client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
    curator = await catalogue.curator()
    return expect(
        await client.post(f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers),
        200,
    )


async def test_drift_thresholds_and_the_products_measured_scores(client, owner, product, catalogue) -> None:
    await publish(client, owner, product, "1", visits_rows())
    second = await publish(
        client, owner, product, "2", visits_rows(nulls=40), quality_thresholds={"completeness": 0.99}
    )
    report = expect(await client.get(f"/v1/products/{product['id']}/releases/2/quality", headers=owner.headers), 200)
    moved = {(d["check"], d["column"]): d for d in report["drift"]}
    assert all(d["previous"] is not None and d["current"] is not None for d in report["drift"])  # the same checks
    assert moved[("not_null", "hba1c")]["previous"] == 1.0
    assert moved[("not_null", "hba1c")]["change"] == pytest.approx(-0.05, abs=1e-6)
    assert report["thresholds"]["completeness"] == 0.99  # tightened; the others stay Lode's defaults
    assert checks(report, "visits")[("not_null", "hba1c")]["passed"] is False  # 95 % passes 0.95, not 0.99
    assert second["quality"]["failed"] >= 1

    loosened = await publish(client, owner, product, "3", visits_rows(), quality_thresholds={"completeness": 0.5})
    assert loosened["quality"]
    third = expect(await client.get(f"/v1/products/{product['id']}/releases/3/quality", headers=owner.headers), 200)
    assert third["thresholds"]["completeness"] == quality.DEFAULT_THRESHOLDS["completeness"]  # never loosened

    listed = await catalogue_list(client, catalogue, owner, product)
    assert listed["measured_quality"]["version"] == "3"
    assert listed["quality"] == product["quality"]  # what the provider declared stays beside it
    found = expect(await client.get("/v1/products", params={"min_plausibility": 0.99}), 200)
    assert product["id"] in [p["id"] for p in found["items"]]
    assert found["facets"]["plausibility"]
    problem(await client.get("/v1/products", params={"min_completeness": 0.97}), 400, "validation_error")


async def test_a_draft_has_no_report(client, owner, product) -> None:
    expect(
        await client.post(f"/v1/products/{product['id']}/releases", json={"version": "1"}, headers=owner.headers), 201
    )
    problem(
        await client.get(f"/v1/products/{product['id']}/releases/1/quality", headers=owner.headers), 404, "not_found"
    )


def test_the_code_checks() -> None:
    assert profiling.loinc_valid("4548-4") and profiling.loinc_valid("13457-7") and not profiling.loinc_valid("4548-5")
    assert not profiling.loinc_valid("4548") and not profiling.loinc_valid("abc-1")
    assert (
        profiling.ucum_parses("mmol/L")
        and profiling.ucum_parses("10*9/L")
        and profiling.ucum_parses("mL/min/{1.73_m2}")
    )
    assert not profiling.ucum_parses("mmol per L") and not profiling.ucum_parses("")
    assert quality.bucket(1.0) == "1.00" and quality.bucket(0.994) == "0.99" and quality.bucket(0.5) == "0.00"
    assert quality.buckets_from(0.95) == ("1.00", "0.99", "0.98", "0.95") and quality.buckets_from(0.97) is None


async def test_a_policy_may_require_a_measured_score_to_list(client, owner, product, catalogue, tmp_path) -> None:
    from catalog import policy

    rules = tmp_path / "policy.toml"
    rules.write_text("[L3]\nmin_quality = { completeness = 0.995 }\n", encoding="utf-8")
    policy.install(policy.load(rules))
    try:
        await catalogue.offer(owner, product["id"])
        expect(await client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
        curator = await catalogue.curator()
        review = f"/v1/products/{product['id']}/review"
        refused = problem(
            await client.post(review, json={"decision": "list"}, headers=curator.headers), 422, "quality_below_minimum"
        )
        assert "publish a release first" in refused["detail"]
        await publish(client, owner, product, "1", visits_rows(nulls=80))  # completeness: 0.9923 < 0.995
        refused = problem(
            await client.post(review, json={"decision": "list"}, headers=curator.headers), 422, "quality_below_minimum"
        )
        assert "completeness" in refused["detail"] and refused["measured"]["version"] == "1"
        await publish(client, owner, product, "2", visits_rows())
        listed = expect(await client.post(review, json={"decision": "list"}, headers=curator.headers), 200)
        assert listed["status"] == "listed" and listed["measured_quality"]["version"] == "2"
    finally:
        policy.install(policy.DEFAULT_POLICY)


async def test_the_products_measured_quality_is_its_newest_published_releases(client, owner, product) -> None:
    base = f"/v1/products/{product['id']}"
    expect(await client.post(f"{base}/releases", json={"version": "old"}, headers=owner.headers), 201)
    await publish(client, owner, product, "new", visits_rows(nulls=80))
    # The draft made first, published last, does not take over: releases count in the order made.
    expect(await client.put(f"{base}/releases/old/files/people.csv", content=people_csv(), headers=owner.headers), 201)
    header = [["person_id", "visit_date", "diagnosis", "loinc", "unit", "hba1c", "setting"]]
    visits = _csv(header + visits_rows())
    expect(await client.put(f"{base}/releases/old/files/visits.csv", content=visits, headers=owner.headers), 201)
    expect(await client.post(f"{base}/releases/old/publish", headers=owner.headers), 200)
    measured = expect(await client.get(base, headers=owner.headers), 200)["measured_quality"]
    assert measured["version"] == "new" and measured["scores"]["completeness"] < 1
    # Withdrawn, the newest no longer speaks for the product: the one before it does.
    expect(
        await client.post(f"{base}/releases/new/withdraw", json={"reason": "wrong extract"}, headers=owner.headers), 200
    )
    measured = expect(await client.get(base, headers=owner.headers), 200)["measured_quality"]
    assert measured["version"] == "old" and measured["scores"]["completeness"] == 1.0


def test_masking_follows_the_k_in_force_when_the_report_is_read() -> None:
    check = {
        "category": "plausibility",
        "check": "not_in_future",
        "column": "d",
        "numerator": 88,
        "denominator": 100,
        "failing": 12,
        "failing_persons": 12,
        "masked": False,
        "fraction": 0.88,
        "threshold": 0.99,
        "passed": False,
    }
    other = {**check, "check": "no_duplicate_rows", "column": None, "failing": 0, "failing_persons": 0, "fraction": 1.0}
    report = {"tables": {"t": {"checks": [check, other]}}, "drift": [], "summary": {}}
    at_10 = checks(quality.public_view(report, 10), "t")[("not_in_future", "d")]
    at_20 = checks(quality.public_view(report, 20), "t")[("not_in_future", "d")]  # a policy file raised k
    assert at_10["failing"] == 12 and at_20["failing"] is None and at_20["failing_persons"] == "< 20"
    assert quality.public_view(report, 20)["summary"]["scores"]["plausibility"] == 1.0  # the masked one left out


def test_drift_names_checks_added_and_dropped() -> None:
    def report(*checks: tuple[str, str, float]) -> dict[str, Any]:
        rows = [{"check": c, "column": col, "fraction": f, "masked": False} for c, col, f in checks]
        return {"tables": {"t": {"checks": rows}}}

    before = report(("not_null", "a", 1.0), ("not_null", "gone", 0.9), ("within_bounds", "a", 0.99))
    after = report(("not_null", "a", 0.95), ("not_null", "new", 1.0), ("within_bounds", "a", 0.99))
    moved = {
        (d["check"], d["column"]): (d["previous"], d["current"], d["change"]) for d in quality.drift(after, before)
    }
    assert moved == {
        ("not_null", "a"): (1.0, 0.95, -0.05),
        ("not_null", "gone"): (0.9, None, None),
        ("not_null", "new"): (None, 1.0, None),
    }
    assert quality.drift(after, None) == []
