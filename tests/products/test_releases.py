"""Releases: their own dictionary, streamed files with recorded facts, publish against the dictionary."""

from __future__ import annotations

import hashlib

import pytest

from tests.support import VISITS_TABLE, Actors, expect, problem

pytestmark = pytest.mark.asyncio


def visits_csv(rows: int = 30) -> bytes:
    lines = ["person_id,age,sex,district,hba1c"]
    districts = ["Huangpu", "Xuhui", "Pudong"]
    for i in range(rows):
        lines.append(f"p{i // 2:04d},{30 + i % 50},{'FM'[i % 2]},{districts[i % 3]},{5 + (i % 40) / 10}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(name="owner")
async def fx_owner(actors: Actors):
    return await actors.org("provider")


@pytest.fixture(name="product")
async def fx_product(catalogue, owner):
    return await catalogue.draft(owner)


async def new_release(client, owner, product, version="2025.1", **body):
    return expect(
        await client.post(
            f"/v1/products/{product['id']}/releases", json={"version": version, **body}, headers=owner.headers
        ),
        201,
    )


class TestCreate:
    async def test_the_first_release_copies_the_products_dictionary_then_the_previous(
        self, client, owner, product
    ) -> None:
        first = await new_release(client, owner, product)
        assert first["dictionary"][0]["table"] == "visits" and first["status"] == "draft"
        custom = [{**VISITS_TABLE, "table": "labs"}]
        second = await new_release(client, owner, product, "2025.2", dictionary=custom)
        third = await new_release(client, owner, product, "2025.3")
        assert second["dictionary"][0]["table"] == third["dictionary"][0]["table"] == "labs"

    async def test_versions_are_unique(self, client, owner, product) -> None:
        await new_release(client, owner, product)
        problem(
            await client.post(
                f"/v1/products/{product['id']}/releases", json={"version": "2025.1"}, headers=owner.headers
            ),
            409,
            "version_exists",
        )
        problem(
            await client.post(
                f"/v1/products/{product['id']}/releases", json={"version": "../x"}, headers=owner.headers
            ),
            400,
            "validation_error",
        )

    async def test_a_dictionary_is_required_somewhere(self, client, owner, catalogue) -> None:
        bare = await catalogue.draft(owner, dictionary=None)
        problem(
            await client.post(f"/v1/products/{bare['id']}/releases", json={"version": "1"}, headers=owner.headers),
            422,
            "dictionary_required",
        )


class TestUpload:
    async def test_an_upload_records_sha256_rows_and_schema(self, client, owner, product) -> None:
        await new_release(client, owner, product)
        content = visits_csv()
        url = f"/v1/products/{product['id']}/releases/2025.1/files/visits.csv"
        stored = expect(await client.put(url, content=content, headers=owner.headers), 201)
        assert stored["sha256"] == hashlib.sha256(content).hexdigest()
        assert stored["bytes"] == len(content) and stored["rows"] == 30 and stored["table"] == "visits"
        assert {c["name"]: c["type"] for c in stored["columns"]} == {
            "person_id": "VARCHAR",
            "age": "BIGINT",
            "sex": "VARCHAR",
            "district": "VARCHAR",
            "hba1c": "DOUBLE",
        }
        release = expect(await client.get(f"/v1/products/{product['id']}/releases/2025.1", headers=owner.headers), 200)
        assert [f["name"] for f in release["files"]] == ["visits.csv"]

    @pytest.mark.parametrize("name", ["..%2Fetc.csv", ".hidden.csv", "visits.txt", "vi%5Csits.csv", "a b.csv"])
    async def test_bad_file_names_are_refused(self, client, owner, product, name) -> None:
        await new_release(client, owner, product)
        response = await client.put(
            f"/v1/products/{product['id']}/releases/2025.1/files/{name}", content=b"a,b\n1,2\n", headers=owner.headers
        )
        assert response.status_code in (400, 404), response.text
        if response.status_code == 400:
            assert response.json()["code"] == "validation_error"

    async def test_only_the_owner_uploads(self, client, owner, product, actors) -> None:
        await new_release(client, owner, product)
        other = await actors.org("provider")
        url = f"/v1/products/{product['id']}/releases/2025.1/files/visits.csv"
        problem(await client.put(url, content=visits_csv(), headers=other.headers), 404, "not_found")

    async def test_an_unreadable_file_is_422(self, client, owner, product) -> None:
        await new_release(client, owner, product)
        url = f"/v1/products/{product['id']}/releases/2025.1/files/visits.parquet"
        problem(await client.put(url, content=b"not parquet at all", headers=owner.headers), 422, "unreadable_file")

    async def test_a_nul_in_a_column_name_is_422_and_nothing_is_kept(self, client, owner, product, app) -> None:
        await new_release(client, owner, product)
        url = f"/v1/products/{product['id']}/releases/2025.1/files/visits.csv"
        err = problem(await client.put(url, content=b"a\x00b,c\n1,2\n", headers=owner.headers), 422, "unreadable_file")
        assert "NUL" in err["detail"]
        release = expect(await client.get(f"/v1/products/{product['id']}/releases/2025.1", headers=owner.headers), 200)
        assert release["files"] == []
        assert await app.state.storage.store.keys(f"releases/{release['id']}/uploads/") == []


class TestPublish:
    async def test_publish_writes_tables_with_hidden_keys_and_freezes(self, client, owner, product, app) -> None:
        await new_release(client, owner, product)
        base = f"/v1/products/{product['id']}/releases/2025.1"
        expect(await client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
        published = expect(await client.post(f"{base}/publish", headers=owner.headers), 200)
        assert published["status"] == "published" and published["published_at"]
        assert published["tables"]["visits"]["rows"] == 30 and published["tables"]["visits"]["persons"] == 15
        storage = app.state.storage
        path = storage.table_location(published["id"], "visits", published["tables"])
        assert await storage.store.keys(f"releases/{published['id']}/tables/") == [
            f"releases/{published['id']}/tables/visits-{published['tables']['visits']['sha256']}.parquet"
        ]
        with storage.sandbox.open_connection(storage.tables_location(published["id"])) as conn:
            columns = [r[0] for r in conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()]
        assert columns == ["person_id", "age", "sex", "district", "hba1c", "_lode_rkey"]
        problem(
            await client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=owner.headers),
            409,
            "release_frozen",
        )
        problem(await client.post(f"{base}/publish", headers=owner.headers), 409, "invalid_transition")

    async def test_a_dictionary_that_disagrees_with_the_files_is_refused(self, client, owner, product) -> None:
        await new_release(client, owner, product)
        base = f"/v1/products/{product['id']}/releases/2025.1"
        err = problem(await client.post(f"{base}/publish", headers=owner.headers), 409, "dictionary_mismatch")
        assert any("visits" in p for p in err["problems"])
        wrong = b"person_id,age,sex,hba1c\np1,40,F,6.1\n"
        expect(await client.put(f"{base}/files/visits.csv", content=wrong, headers=owner.headers), 201)
        err = problem(await client.post(f"{base}/publish", headers=owner.headers), 409, "dictionary_mismatch")
        assert any("district" in p for p in err["problems"])
        typed = b"person_id,age,sex,district,hba1c\np1,forty,F,Xuhui,6.1\n"
        expect(await client.put(f"{base}/files/visits.csv", content=typed, headers=owner.headers), 201)
        err = problem(await client.post(f"{base}/publish", headers=owner.headers), 409, "dictionary_mismatch")
        assert any("age" in p for p in err["problems"])
        expect(await client.put(f"{base}/files/extra.csv", content=b"a\n1\n", headers=owner.headers), 201)
        expect(await client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
        err = problem(await client.post(f"{base}/publish", headers=owner.headers), 409, "dictionary_mismatch")
        assert any("extra" in p for p in err["problems"])
        expect(await client.delete(f"{base}/files/extra.csv", headers=owner.headers), 204)
        expect(await client.post(f"{base}/publish", headers=owner.headers), 200)

    async def test_withdraw_by_owner_or_operator(self, client, owner, product, actors, catalogue) -> None:
        await new_release(client, owner, product)
        base = f"/v1/products/{product['id']}/releases/2025.1"
        expect(await client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
        expect(await client.post(f"{base}/publish", headers=owner.headers), 200)
        reviewer = await actors.member(owner.org_id, ["reviewer"])  # of the owner, but not a publisher
        problem(await client.post(f"{base}/withdraw", json={"reason": "x"}, headers=reviewer.headers), 403, "forbidden")
        curator = await catalogue.curator()
        withdrawn = expect(
            await client.post(f"{base}/withdraw", json={"reason": "consent revoked"}, headers=curator.headers), 200
        )
        assert withdrawn["status"] == "withdrawn" and withdrawn["withdraw_reason"] == "consent revoked"
        problem(
            await client.post(f"{base}/withdraw", json={"reason": "again"}, headers=owner.headers),
            409,
            "invalid_transition",
        )

    async def test_drafts_are_hidden_and_data_never_listed(self, client, owner, catalogue) -> None:
        listed = await catalogue.listed(owner)
        await new_release(client, owner, listed)
        public = expect(await client.get(f"/v1/products/{listed['id']}/releases"), 200)
        assert public["items"] == []
        problem(await client.get(f"/v1/products/{listed['id']}/releases/2025.1"), 404, "not_found")
        mine = expect(await client.get(f"/v1/products/{listed['id']}/releases", headers=owner.headers), 200)
        assert [r["version"] for r in mine["items"]] == ["2025.1"]


class TestReleaseRules:
    async def test_only_a_published_release_is_withdrawn(self, client, owner, product) -> None:
        await new_release(client, owner, product)
        problem(
            await client.post(
                f"/v1/products/{product['id']}/releases/2025.1/withdraw", json={"reason": "x"}, headers=owner.headers
            ),
            409,
            "invalid_transition",
        )

    async def test_a_replaced_files_bytes_go_once_the_replacement_commits(self, client, owner, product, app) -> None:
        from catalog.worker import Worker

        await new_release(client, owner, product)
        base = f"/v1/products/{product['id']}/releases/2025.1"
        expect(await client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
        uploads = f"releases/{(expect(await client.get(base, headers=owner.headers), 200))['id']}/uploads/"
        (first,) = await app.state.storage.store.keys(uploads)
        expect(await client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
        assert first in await app.state.storage.store.keys(uploads)  # the outbox removes it once committed
        await Worker(app.state.sessions, app.state.registry, app.state.services).run_once(jobs=False)
        (second,) = await app.state.storage.store.keys(uploads)
        assert second != first

    async def test_a_deleted_files_bytes_go_only_after_the_deletion_commits(self, client, owner, product, app) -> None:
        from catalog.worker import Worker

        await new_release(client, owner, product)
        base = f"/v1/products/{product['id']}/releases/2025.1"
        expect(await client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
        uploads = f"releases/{(expect(await client.get(base, headers=owner.headers), 200))['id']}/uploads/"
        stored = await app.state.storage.store.keys(uploads)
        assert len(stored) == 1
        expect(await client.delete(f"{base}/files/visits.csv", headers=owner.headers), 204)
        assert await app.state.storage.store.keys(uploads) == stored  # the outbox removes it once committed
        await Worker(app.state.sessions, app.state.registry, app.state.services).run_once(jobs=False)
        assert await app.state.storage.store.keys(uploads) == []
