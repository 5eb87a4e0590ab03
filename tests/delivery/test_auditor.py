"""The offline query auditor: L4 query patterns flagged for the security role, never refused."""

from __future__ import annotations

from catalog import outbox
from catalog.delivery import auditor
from catalog.delivery.repository import LoggedQuery
from tests.support import expect, problem


def logged(seq: int, where: list[dict], group_by: list[str] | None = None, low_effect: int = 0) -> LoggedQuery:
    query = {"table": "visits", "aggregates": [{"fn": "count"}], "where": where, "group_by": group_by or []}
    return LoggedQuery(seq=seq, licence_id="lic_1", analyst_id="usr_1", data={"query": query, "low_effect": low_effect})


class TestPatterns:
    def test_an_honest_cross_tab_shows_nothing(self) -> None:
        found = auditor.patterns(
            [
                logged(1, [], ["district"]),
                logged(2, [], ["district", "sex"]),
                logged(3, [{"field": "sex", "op": "=", "value": "F"}], ["district"]),
            ]
        )
        assert all(count < auditor.THRESHOLDS[name] for name, (count, _) in found.items())

    def test_split_averaging_and_padding_are_counted(self) -> None:
        groupings = [["sex"], ["district"], ["age"], ["sex", "district"], ["a"], ["b"], ["c"], ["d"], ["e"]]
        split = [logged(i, [{"field": "dx", "op": "=", "value": "X"}], g) for i, g in enumerate(groupings)]
        pads = [logged(100 + i, [{"field": "dx", "op": "in", "value": ["R01", f"C{i}"]}]) for i in range(9)]
        found = auditor.patterns(split + pads)
        assert found["split_averaging"][0] == 9 and found["padding"][0] == 9
        assert found["padding"][1] == list(range(100, 109))


class TestJob:
    async def test_a_differencing_analyst_is_flagged_once_and_listed_for_security(self, client, delivery, app) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L4")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        for low in range(0, 105, 5):
            base = {"table": "visits", "aggregates": [{"fn": "count"}]}
            ranged = [{"field": "age", "op": "between", "value": [low, low + 60]}]
            but_three = [*ranged, {"field": "district", "op": "!=", "value": "Chongming"}]
            for where in (ranged, but_three):
                expect(await delivery.query(licence["id"], consumer["analyst"], {**base, "where": where}), 200)
        context = outbox.JobContext(sessions=app.state.sessions, services={})
        await auditor.audit_queries(context)
        await auditor.audit_queries(context)  # flagged once per pattern within the window

        security = await delivery.actors.member(delivery.actors.operator.org_id, ["security"])
        alerts = expect(await client.get("/v1/query-alerts", headers=security.headers), 200)["items"]
        patterns = sorted(a["data"]["pattern"] for a in alerts)
        assert patterns == ["differencing", "low_effect"]
        assert {a["subject_id"] for a in alerts} == {licence["id"]}
        assert all(a["data"]["analyst_id"] == consumer["analyst"].user_id for a in alerts)
        assert all(a["org_ids"] == [] for a in alerts)  # the analyst's organisation is not told

        mine = expect(await client.get(f"/v1/query-alerts?licence_id={licence['id']}", headers=security.headers), 200)
        assert len(mine["items"]) == 2
        problem(await client.get("/v1/query-alerts", headers=consumer["admin"].headers), 403, "forbidden")
        curator = await delivery.actors.member(delivery.actors.operator.org_id, ["curator"])
        problem(await client.get("/v1/query-alerts", headers=curator.headers), 403, "forbidden")
