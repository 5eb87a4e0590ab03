"""Measured data quality: the report's reading — categories and thresholds, scores, drift against
the previous release, the buckets search facets count, and what a buyer may see of it.

The checks themselves run at publish (``profiling.py``). A check failed by fewer persons than the
grade's k is ``masked``: the owner and the operator see it whole; it is left out of every score,
and anyone else sees its counts as "< k" (``public_view``).
"""

from __future__ import annotations

from typing import Any

CATEGORIES = ("conformance", "completeness", "plausibility")
# The lowest passing fraction of each category's checks; a provider may ask for more, never less.
DEFAULT_THRESHOLDS = {"conformance": 0.99, "completeness": 0.95, "plausibility": 0.99}


# Measured-quality facets: a product's score falls in the bucket of the highest bound it reaches, so
# "at least 0.95" is the buckets from 0.95 up (search's ``min_completeness=0.95`` and the like).
BUCKETS = ("1.00", "0.99", "0.98", "0.95", "0.90", "0.80", "0.00")


def bucket(score: float) -> str:
    return next(b for b in BUCKETS if score >= float(b) - 1e-9)


def buckets_from(minimum: float) -> tuple[str, ...] | None:
    """The buckets a minimum score selects; None when it is not one of the bounds."""
    if f"{minimum:.2f}" not in BUCKETS or abs(minimum - round(minimum, 2)) > 1e-9:
        return None
    return tuple(b for b in BUCKETS if float(b) >= minimum - 1e-9)


def masked(check: dict[str, Any], k: int) -> bool:
    """A check failed by fewer than k persons is a fact about few persons. Decided when the report
    is read, with the k in force then (a policy file may raise it after publish)."""
    persons = check.get("failing_persons")
    return isinstance(persons, int) and 0 < persons < k


def table_scores(checks: list[dict[str, Any]], k: int) -> dict[str, float]:
    """One table's score per category: the mean fraction of its checks in that category, masked
    ones left out — the mean would otherwise give a masked count away."""
    scores = {}
    for category in CATEGORIES:
        fractions = [c["fraction"] for c in checks if c["category"] == category and not masked(c, k)]
        if fractions:
            scores[category] = round(sum(fractions) / len(fractions), 6)
    return scores


def summarise(tables: dict[str, dict[str, Any]], k: int) -> dict[str, Any]:
    """Each category's score over every table, masked checks left out (as in ``table_scores``); how
    many checks ran and failed. A defect confined to fewer than k persons therefore lowers no score
    (and no listing minimum or search filter reads it) — it shows in its own check, to the owner."""
    scores: dict[str, float | None] = {}
    for category in CATEGORIES:
        fractions = [
            c["fraction"]
            for t in tables.values()
            for c in t["checks"]
            if c["category"] == category and not masked(c, k)
        ]
        scores[category] = round(sum(fractions) / len(fractions), 6) if fractions else None
    failed = sum(1 for t in tables.values() for c in t["checks"] if not c["passed"])
    checks = sum(len(t["checks"]) for t in tables.values())
    return {"scores": scores, "checks": checks, "failed": failed}


def drift(current: dict[str, Any], previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per check, how its fraction moved since the previous published release — including checks
    the new release added (``previous`` null) or dropped (``current`` null)."""
    if not previous:
        return []

    def index(report: dict[str, Any]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
        return {
            (t, c["check"], c.get("column")): c for t, body in report.get("tables", {}).items() for c in body["checks"]
        }

    before, now = index(previous), index(current)
    moved = []
    for key in sorted(before.keys() | now.keys(), key=str):
        old, new = before.get(key), now.get(key)
        was, is_ = (old or {}).get("fraction"), (new or {}).get("fraction")
        if was == is_:
            continue
        table, check, column = key
        moved.append({
            "table": table, "check": check, "column": column, "previous": was, "current": is_,
            "change": round(is_ - was, 6) if was is not None and is_ is not None else None,
            "masked": bool((old or {}).get("masked") or (new or {}).get("masked")),  # as of publish
        })  # fmt: skip
    return moved


def thresholds_for(requested: dict[str, float] | None) -> dict[str, float]:
    """The defaults, raised (never lowered) where the provider asked for more."""
    merged = dict(DEFAULT_THRESHOLDS)
    for category, value in (requested or {}).items():
        if category in merged:
            merged[category] = max(merged[category], float(value))
    return merged


def public_view(report: dict[str, Any], k: int) -> dict[str, Any]:
    """What anyone but the owner and the operator sees, with the k in force now.

    Counts of few persons must not be worked out from the rest, and the checks share totals (a
    column's code check counts its non-null values, every table's "persons with rows" counts the
    release's persons, the months add up to the dated rows). So no check shows its numerator or
    denominator; an unmasked check shows its fraction and failing count, a masked one "< k"
    persons and nothing else; "persons with rows" is masked in every table once it is in one; the
    months say only whether they are covered; the scores are recomputed without the masked checks,
    and drift entries about them are left out."""
    share_masked = any(
        masked(c, k) for body in report["tables"].values() for c in body["checks"] if c["check"] == "persons_with_rows"
    )
    tables = {}
    for table, body in report["tables"].items():
        checks = []
        for c in body["checks"]:
            hidden = masked(c, k) or (share_masked and c["check"] == "persons_with_rows")
            shown = {key: value for key, value in c.items() if key not in ("numerator", "denominator", "masked")}
            if hidden:
                shown.update(failing=None, fraction=None, failing_persons=f"< {k}")
            if "by_month" in shown:
                shown["by_month"] = [{"month": m["month"], "covered": bool(m["rows"])} for m in shown["by_month"]]
            checks.append({**shown, "masked": hidden})
        tables[table] = {**body, "checks": checks}
    hidden = {
        (table, c["check"], c.get("column")) for table, body in tables.items() for c in body["checks"] if c["masked"]
    }
    drift = [
        d
        for d in report.get("drift", [])
        if not d.get("masked") and (d["table"], d["check"], d["column"]) not in hidden
    ]
    return {**report, "tables": tables, "drift": drift, "summary": summarise(report["tables"], k), "masked_under": k}
