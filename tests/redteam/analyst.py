"""The attacker's only tool: a licensed analyst's key and the documented query endpoint.

``Analyst.count`` asks ``POST /v1/licences/{id}/query`` for person counts of the red team's
table and returns what the answer releases: a number per cell, ``None`` for a suppressed cell, or
``REFUSED`` when Lode refused the query because of the data (``query_set_too_small``) — a refusal is
itself an answer an attacker reads. Queries the attacker has asked before are answered from its own
notes (Lode would give the same answer again) and are not counted twice; every other request counts
against the suite's budget, refused or not.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.redteam.population import TABLE

REFUSED = "refused"  # refused because of the data: an answer in itself
INVALID = "invalid"  # refused on the query's text alone (a column that may not be filtered, …)
Where = list[dict[str, Any]]


class BudgetExceeded(Exception):
    pass


def eq(field: str, value: Any) -> dict[str, Any]:
    return {"field": field, "op": "=", "value": value}


def ne(field: str, value: Any) -> dict[str, Any]:
    return {"field": field, "op": "!=", "value": value}


def isin(field: str, values: list[Any]) -> dict[str, Any]:
    return {"field": field, "op": "in", "value": list(values)}


def between(field: str, low: Any, high: Any) -> dict[str, Any]:
    return {"field": field, "op": "between", "value": [low, high]}


class Analyst:
    def __init__(self, client: httpx.AsyncClient, licence_id: str, headers: dict[str, str]) -> None:
        self.client = client
        self.licence_id = licence_id
        self.path = f"/v1/licences/{licence_id}/query"
        self.headers = headers
        self.queries = 0
        self.budget: int | None = None
        self._notes: dict[str, Any] = {}

    def allow(self, budget: int | None) -> None:
        """Start a new budget: at most ``budget`` more queries (None: no limit)."""
        self.budget = None if budget is None else self.queries + budget

    async def answer(self, body: dict[str, Any]) -> Any:
        key = json.dumps(body, sort_keys=True)
        if key in self._notes:
            return self._notes[key]
        if self.budget is not None and self.queries >= self.budget:
            raise BudgetExceeded
        self.queries += 1
        response = await self.client.post(self.path, json=body, headers=self.headers)
        if response.status_code == 422 and response.json().get("code") == "query_set_too_small":
            result: Any = REFUSED
        elif response.status_code in (400, 403):
            result = INVALID
        else:
            assert response.status_code == 200, response.text
            result = response.json()
        self._notes[key] = result
        return result

    async def count(self, where: Where, group_by: list[str] | None = None) -> Any:
        """Persons matching ``where``: one value (``None`` if suppressed) without ``group_by``, else a dict
        of group values → value; ``REFUSED`` when the query was refused on the data."""
        body: dict[str, Any] = {"table": TABLE["table"], "aggregates": [{"fn": "count"}], "where": where}
        if group_by:
            body["group_by"] = group_by
        answer = await self.answer(body)
        if answer in (REFUSED, INVALID):
            return answer
        if not group_by:
            return answer["rows"][0]["count"] if answer["rows"] else None
        return {tuple(row[g] for g in group_by): row["count"] for row in answer["rows"]}
