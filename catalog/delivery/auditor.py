"""The offline query auditor: reads the log of anonymised (L4) queries and flags the patterns of the
attacks the anonymiser is built to withstand, so the operator's security team can look at the
analyst — it never refuses a query (a refusal that depends on the data would itself be an oracle).

Every ``INTERVAL`` the worker runs ``audit_queries`` over the last ``WINDOW`` of ``licence.queried``
events whose answer was anonymised, per licence and analyst:

* ``differencing`` — pairs of queries alike but for one or two extra conditions (one asks for a
  population, the other for the same population minus a sliver): the shape of the equality oracle
  and of difference attacks;
* ``low_effect`` — queries in which a condition was answered as absent because it moved too few
  persons; honest cross-tabs rarely have any;
* ``split_averaging`` — one population split by many different group-bys, whose totals an attacker
  averages;
* ``padding`` — one value of an in-list asked alongside many different companions, as trackers pad
  a small group into large ones.

A pattern at or above its threshold is recorded once per licence, analyst and pattern within the
window, as the audit event ``licence.queries_flagged`` (concerning the operator only: flagging an
analyst must not tip them off). ``GET /v1/query-alerts`` lists them for the security role.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta
from typing import Any

from catalog import audit, outbox
from catalog.db import read_transaction, utcnow, write_transaction
from catalog.delivery import repository as repo

INTERVAL = timedelta(minutes=10)
WINDOW = timedelta(hours=24)
FLAGGED = "licence.queries_flagged"
THRESHOLDS = {"differencing": 10, "low_effect": 20, "split_averaging": 8, "padding": 8}


async def audit_queries(ctx: outbox.JobContext) -> None:
    """Periodic: flag what the last day's anonymised queries add up to, once per pattern. The log is
    read in one read transaction and weighed with none open; only new flags take a short write."""
    since = utcnow() - WINDOW
    async with read_transaction(ctx.sessions) as session:
        logged = await repo.anonymised_queries_since(session, since)
        flagged = await repo.flags_since(session, since, FLAGGED)
    by_asker: dict[tuple[str, str | None], list[repo.LoggedQuery]] = defaultdict(list)
    for query in logged:
        by_asker[(query.licence_id, query.analyst_id)].append(query)
    new = [
        (licence_id, analyst_id, pattern, count, examples)
        for (licence_id, analyst_id), queries in by_asker.items()
        for pattern, (count, examples) in patterns(queries).items()
        if count >= THRESHOLDS[pattern] and (licence_id, analyst_id, pattern) not in flagged
    ]
    if not new:
        return
    async with write_transaction(ctx.sessions) as session:
        for licence_id, analyst_id, pattern, count, examples in new:
            audit.record(
                session,
                audit.SYSTEM,
                FLAGGED,
                "licence",
                licence_id,
                [],
                {
                    "analyst_id": analyst_id,
                    "pattern": pattern,
                    "count": count,
                    "threshold": THRESHOLDS[pattern],
                    "window_hours": int(WINDOW.total_seconds() // 3600),
                    "examples": examples[:10],  # audit seqs of queries that show it
                },
            )


def patterns(queries: list[repo.LoggedQuery]) -> dict[str, tuple[int, list[int]]]:
    """Each pattern's count over ``queries`` (one analyst on one licence) and seqs that show it."""
    shapes: dict[str, dict[frozenset[str], int]] = defaultdict(dict)
    splits: dict[str, set[str]] = defaultdict(set)
    split_seqs: dict[str, list[int]] = defaultdict(list)
    companions: dict[str, set[str]] = defaultdict(set)
    companion_seqs: dict[str, list[int]] = defaultdict(list)
    low: list[int] = []
    for logged in queries:
        q = logged.data.get("query") or {}
        where = frozenset(_key(c) for c in q.get("where") or [])
        shape = _key({"table": q.get("table"), "aggregates": q.get("aggregates"), "group_by": q.get("group_by")})
        shapes[shape].setdefault(where, logged.seq)
        population = _key({"table": q.get("table"), "where": sorted(where)})
        splits[population].add(_key(sorted(q.get("group_by") or [])))
        split_seqs[population].append(logged.seq)
        for condition in q.get("where") or []:
            if condition.get("op") == "in" and isinstance(condition.get("value"), list):
                values = [_key(v) for v in condition["value"]]
                for value in values:
                    mine = f"{condition.get('field')}={value}"
                    companions[mine].update(v for v in values if v != value)
                    companion_seqs[mine].append(logged.seq)
        if logged.data.get("low_effect"):
            low.append(logged.seq)
    pairs: list[int] = []
    for asked in shapes.values():
        for where, seq in asked.items():
            if any(where - {c} in asked for c in where) or any(
                where - {c, d} in asked for c in where for d in where if c < d
            ):
                pairs.append(seq)
    widest_split = max(splits, key=lambda p: len(splits[p]), default=None)
    widest_pad = max(companions, key=lambda v: len(companions[v]), default=None)
    return {
        "differencing": (len(pairs), pairs),
        "low_effect": (len(low), low),
        "split_averaging": (
            (len(splits[widest_split]), split_seqs[widest_split]) if widest_split is not None else (0, [])
        ),
        "padding": ((len(companions[widest_pad]), companion_seqs[widest_pad]) if widest_pad is not None else (0, [])),
    }


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
