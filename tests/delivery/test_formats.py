"""Rows answers as files: CSV and Parquet hold the JSON answer's rows, the page travels in headers,
and an aggregate asked for as a file is refused before anything is reserved."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import duckdb
from sqlalchemy import select

from catalog.delivery import formats
from catalog.metering.models import Reservation, UsageEvent
from tests.support import expect, problem

BODY = {
    "table": "visits",
    "select": ["person_id", "age", "district", "hba1c"],
    "order_by": [{"field": "hba1c", "direction": "desc"}],
    "limit": 7,
}


async def rows_licence(delivery):
    owner = await delivery.provider()
    product = await delivery.published(owner, "L1")
    consumer = await delivery.consumer()
    return await delivery.licence_on(product, owner, consumer), consumer["analyst"]


async def as_file(client, licence_id: str, analyst, body: dict, media_type: str):
    return await client.post(
        f"/v1/licences/{licence_id}/query", json=body, headers={**analyst.headers, "Accept": media_type}
    )


class TestCsv:
    def test_nulls_booleans_dates_and_quotes(self) -> None:
        content = formats.to_csv(["a", "b", "c", "d"], [(None, True, date(2024, 2, 29), 'say "hi", then go')])
        assert content == b'a,b,c,d\r\n,true,2024-02-29,"say ""hi"", then go"\r\n'

    async def test_a_page_as_csv_is_the_json_page_with_the_page_in_headers(self, client, delivery, app) -> None:
        licence, analyst = await rows_licence(delivery)
        answer = expect(await delivery.query(licence["id"], analyst, BODY), 200)
        response = await as_file(client, licence["id"], analyst, BODY, "text/csv")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"] == 'attachment; filename="visits.csv"'
        assert response.headers["lode-truncated"] == "true" and response.headers["lode-rows"] == "7"
        assert response.headers["lode-release"] == "1"
        header, *lines = list(csv.reader(io.StringIO(response.text)))
        assert header == answer["columns"]
        assert lines == [[str(row[c]) for c in header] for row in answer["rows"]]
        # The header's cursor continues as the JSON one does.
        cursor = response.headers["lode-next-cursor"]
        after = expect(await delivery.query(licence["id"], analyst, {**BODY, "cursor": cursor}), 200)
        following = expect(await delivery.query(licence["id"], analyst, {**BODY, "cursor": answer["next_cursor"]}), 200)
        assert after["rows"] == following["rows"] and len(after["rows"]) == 7
        async with app.state.sessions() as s:
            stmt = select(UsageEvent.quantity).where(UsageEvent.dimension == "rows_returned")
            assert sorted((await s.execute(stmt)).scalars()) == [7, 7, 7, 7]


class TestParquet:
    async def test_a_page_as_parquet_is_the_json_page(self, client, delivery, tmp_path: Path) -> None:
        licence, analyst = await rows_licence(delivery)
        answer = expect(await delivery.query(licence["id"], analyst, BODY), 200)
        response = await as_file(client, licence["id"], analyst, BODY, formats.PARQUET)
        assert response.status_code == 200 and response.headers["content-type"].startswith(formats.PARQUET)
        assert response.content[:4] == b"PAR1" and response.headers["lode-next-cursor"]
        written = tmp_path / "page.parquet"
        written.write_bytes(response.content)
        with duckdb.connect() as conn:
            rows = conn.execute("SELECT * FROM read_parquet(?)", [str(written)]).fetchall()
            described = conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(written)]).fetchall()
        assert [dict(zip(answer["columns"], row, strict=True)) for row in rows] == answer["rows"]
        assert [(name, kind) for name, kind, *_ in described] == [
            ("person_id", "VARCHAR"),
            ("age", "BIGINT"),
            ("district", "VARCHAR"),
            ("hba1c", "DOUBLE"),
        ]


class TestRefused:
    async def test_an_aggregate_as_a_file_is_406_and_reserves_nothing(self, client, delivery, app) -> None:
        licence, analyst = await rows_licence(delivery)
        body = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}]}
        problem(await as_file(client, licence["id"], analyst, body, "text/csv"), 406, "not_acceptable")
        async with app.state.sessions() as s:
            assert (await s.execute(select(Reservation))).first() is None

    async def test_json_is_the_default_for_any_other_accept(self, client, delivery) -> None:
        licence, analyst = await rows_licence(delivery)
        for accept in ("*/*", "application/json", "text/html"):
            response = await as_file(client, licence["id"], analyst, BODY, accept)
            assert response.status_code == 200 and response.json()["truncated"] is True
