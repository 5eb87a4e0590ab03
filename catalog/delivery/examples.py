"""Example request bodies of the delivery API (``catalog/openapi.py``): API.md's three queries, one
per mode. Which of them a licence may ask is its grade's and its plan's word. The rows example
filters on a number (HbA1c) rather than API.md's integer age: the document gives a condition's
``value`` as a ``oneOf`` listing both integer and number, which an integer matches twice."""

from __future__ import annotations

from litestar.openapi.spec import Example

QUERY = {
    "rows": Example(
        summary="Rows (L1–L3)",
        value={
            "table": "visits",
            "select": ["age", "hba1c"],
            "where": [{"field": "hba1c", "op": ">=", "value": 7.5}],
            "order_by": [{"field": "age", "direction": "desc"}],
            "limit": 100,
        },
    ),
    "aggregate": Example(
        summary="Aggregates by group (L1–L4)",
        value={
            "table": "visits",
            "group_by": ["district"],
            "aggregates": [{"fn": "count"}, {"fn": "avg", "field": "hba1c"}],
        },
    ),
    "dp_aggregate": Example(
        summary="Differentially private aggregates (L5)",
        value={"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}], "epsilon": 0.5},
    ),
}
