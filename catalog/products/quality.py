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


def table_scores(checks: list[dict[str, Any]]) -> dict[str, float]:
    """One table's score per category: the mean fraction of its checks in that category that
    anyone may see (a masked check would give its counts away through the mean)."""
    scores = {}
    for category in CATEGORIES:
        fractions = [c["fraction"] for c in checks if c["category"] == category and not c["masked"]]
        if fractions:
            scores[category] = round(sum(fractions) / len(fractions), 6)
    return scores


def summarise(tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each category's score: the mean fraction of its checks over every table, masked ones left
    out (as in ``table_scores``); how many checks ran and failed."""
    scores: dict[str, float | None] = {}
    for category in CATEGORIES:
        fractions = [
            c["fraction"] for t in tables.values() for c in t["checks"] if c["category"] == category and not c["masked"]
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
            "masked": bool((old or {}).get("masked") or (new or {}).get("masked")),
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
    """What anyone but the owner and the operator sees. A check whose failing rows belong to fewer
    than k persons is a fact about few persons: its counts and fraction are withheld ("< k"), and
    the drift entries that would give them away are left out (the scores already leave it out)."""
    tables = {}
    for table, body in report["tables"].items():
        checks = []
        for c in body["checks"]:
            if c["masked"]:
                c = {**c, "failing": f"< {k}", "failing_persons": f"< {k}", "numerator": None, "fraction": None}
            if "by_month" in c:  # a month of few rows may be a month of few persons
                c = {
                    **c,
                    "by_month": [{**m, "rows": f"< {k}" if 0 < m["rows"] < k else m["rows"]} for m in c["by_month"]],
                }
            checks.append(c)
        tables[table] = {**body, "checks": checks}
    drift = [d for d in report.get("drift", []) if not d.get("masked")]
    return {**report, "tables": tables, "drift": drift, "masked_under": k}
