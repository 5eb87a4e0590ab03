"""Downloads: streamed with ETag and Range, metered in bytes actually sent."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from catalog.metering.models import UsageEvent
from tests.delivery.conftest import visits_csv
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio


async def test_download_whole_and_ranged(client, delivery, app) -> None:
    owner = await delivery.provider()
    product = await delivery.published(owner, "L1")
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    content = visits_csv()
    listed = expect(await client.get(f"/v1/licences/{licence['id']}/files", headers=consumer["analyst"].headers), 200)
    assert [(f["name"], f["release"], f["bytes"]) for f in listed["items"]] == [("visits.csv", "1", len(content))]
    whole = await client.get(f"/v1/licences/{licence['id']}/files/visits.csv", headers=consumer["analyst"].headers)
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert whole.headers["content-length"] == str(len(content))
    part = await client.get(
        f"/v1/licences/{licence['id']}/files/visits.csv",
        headers={**consumer["analyst"].headers, "Range": "bytes=10-29"},
    )
    assert part.status_code == 206 and part.content == content[10:30]
    assert part.headers["content-range"] == f"bytes 10-29/{len(content)}"
    problem(
        await client.get(
            f"/v1/licences/{licence['id']}/files/visits.csv",
            headers={**consumer["analyst"].headers, "Range": "bytes=99999-"},
        ),
        416,
        "range_not_satisfiable",
    )
    async with app.state.sessions() as s:
        sent = (
            (
                await s.execute(
                    select(UsageEvent.quantity).where(
                        UsageEvent.licence_id == licence["id"], UsageEvent.dimension == "bytes_downloaded"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(sent) == [20, len(content)]


async def test_a_resume_under_if_range_gets_the_rest_only_of_the_same_file(client, delivery) -> None:
    owner = await delivery.provider()
    product = await delivery.published(owner, "L1")
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    content = visits_csv()
    whole = await client.get(f"/v1/licences/{licence['id']}/files/visits.csv", headers=consumer["analyst"].headers)
    etag = whole.headers["etag"]
    resumed = await client.get(
        f"/v1/licences/{licence['id']}/files/visits.csv",
        headers={**consumer["analyst"].headers, "Range": "bytes=10-", "If-Range": etag},
    )
    assert resumed.status_code == 206 and resumed.content == content[10:]
    other = await client.get(  # the file the client started is not this one: the whole of this one
        f"/v1/licences/{licence['id']}/files/visits.csv",
        headers={**consumer["analyst"].headers, "Range": "bytes=10-", "If-Range": '"' + "0" * 64 + '"'},
    )
    assert other.status_code == 200 and other.content == content and "content-range" not in other.headers


async def test_downloads_where_the_grade_forbids_them(client, delivery) -> None:
    owner = await delivery.provider()
    product = await delivery.published(owner, "L3")
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    problem(
        await client.get(f"/v1/licences/{licence['id']}/files", headers=consumer["analyst"].headers),
        403,
        "grade_forbids_delivery",
    )
    problem(
        await client.get(f"/v1/licences/{licence['id']}/files/visits.csv", headers=consumer["analyst"].headers),
        403,
        "grade_forbids_delivery",
    )


async def test_a_byte_cap_holds(client, delivery) -> None:
    owner = await delivery.provider()
    product = await delivery.published(
        owner, "L1", plans=[{"name": "Capped", "kind": "free", "currency": "CNY", "caps": {"bytes_downloaded": 1000}}]
    )
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    problem(
        await client.get(f"/v1/licences/{licence['id']}/files/visits.csv", headers=consumer["analyst"].headers),
        409,
        "quota_exceeded",
    )
    part = await client.get(
        f"/v1/licences/{licence['id']}/files/visits.csv",
        headers={**consumer["analyst"].headers, "Range": "bytes=0-499"},
    )
    assert part.status_code == 206 and len(part.content) == 500


async def test_a_csv_file_is_served_as_text_csv(client, delivery) -> None:
    owner = await delivery.provider()
    product = await delivery.published(owner, "L1")
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    url = f"/v1/licences/{licence['id']}/files/visits.csv"
    for extra in ({}, {"Range": "bytes=0-9"}):
        response = await client.get(url, headers={**consumer["analyst"].headers, **extra})
        assert response.status_code in (200, 206), response.text
        assert response.headers.get_list("content-type") == ["text/csv"]
        assert response.headers["content-disposition"] == 'attachment; filename="visits.csv"'
