"""Search over the products domain's index (products/search.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog.db import read_transaction, write_transaction
from catalog.ids import new_id
from catalog.orgs.models import Organisation
from catalog.products import search as search_module
from catalog.products.models import Plan, Product, ProductSource
from catalog.products.search import FACETS, SearchPage, SearchQuery, index_product, search, tokens

Sessions = async_sessionmaker[AsyncSession]
_serial = itertools.count(1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Catalogue:
    """Builds organisations and products straight through the ORM, indexing each change."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def org(self, name: str = "Org") -> str:
        n = next(_serial)
        async with write_transaction(self.sessions) as session:
            org = Organisation(
                id=new_id("org"), name=f"{name} {n}", slug=f"org-{n}", kind="provider", jurisdiction="CN",
                org_type="hospital", for_profit=False, status="verified",
            )  # fmt: skip
            session.add(org)
        return org.id

    async def product(
        self,
        owner: str,
        *,
        sources: tuple[str, ...] = (),
        plans: tuple[tuple[str, bool, list[str]], ...] = (("subscription", True, []),),
        **fields: Any,
    ) -> str:
        n = next(_serial)
        values: dict[str, Any] = {
            "id": new_id("prd"), "slug": f"product-{n}", "owner_org_id": owner, "status": "listed", "grade": "L2",
            "title": f"Dataset {n}", "summary": "A dataset.", "description": "", "i18n": None, "keywords": [],
            "data_types": ["ehr"], "therapeutic_areas": ["I10"], "standards": ["OMOP"], "legal_basis": "consent",
            "jurisdiction": "CN", "spatial_coverage": ["CN"], "created_at": T0 + timedelta(minutes=n),
        }  # fmt: skip
        values.update(fields)
        async with write_transaction(self.sessions) as session:
            session.add(Product(**values))
            await session.flush()
            for position, org_id in enumerate(sources):
                session.add(
                    ProductSource(product_id=values["id"], position=position, institution="S", org_id=org_id, share=1)
                )
            for kind, active, private_to in plans:
                plan = {"name": kind, "kind": kind, "currency": "CNY", "private_to": private_to, "active": active}
                session.add(
                    Plan(
                        id=new_id("pln"),
                        product_id=values["id"],
                        unit_prices={},
                        units={},
                        included={},
                        caps={},
                        **plan,
                    )
                )
            await session.flush()
            await index_product(session, values["id"])
        return values["id"]

    async def edit(self, product_id: str, **fields: Any) -> None:
        async with write_transaction(self.sessions) as session:
            await session.execute(update(Product).where(Product.id == product_id).values(**fields))
            await index_product(session, product_id)

    async def search(self, **fields: Any) -> SearchPage:
        async with read_transaction(self.sessions) as session:
            return await search(session, SearchQuery(**fields))

    async def ids(self, **fields: Any) -> set[str]:
        page = await self.search(limit=500, **fields)
        return set(page.ids)


@pytest.fixture(name="cat")
def fx_cat(sessions: Sessions, database: str) -> Catalogue:
    return Catalogue(sessions)


class TestTokens:
    def test_latin_words_are_lowercased_and_split_on_non_alphanumerics(self) -> None:
        assert tokens("HbA1c, Type-2 Diabetes (2019)") == ["hba1c", "type", "2", "diabetes", "2019"]

    def test_cjk_runs_give_unigrams_and_overlapping_bigrams(self) -> None:
        assert tokens("2型糖尿病") == ["2", "型", "型糖", "糖", "糖尿", "尿", "尿病", "病"]
        assert tokens("肝癌") == ["肝", "肝癌", "癌"]

    def test_full_width_and_accents_fold(self) -> None:
        assert tokens("ＨｂＡ１ｃ Café") == ["hba1c", "cafe"]


@pytest.fixture(name="texts")
async def fx_texts(cat: Catalogue) -> dict[str, str]:
    owner = await cat.org()
    zh = lambda **kw: {"zh": {"title": "", "summary": "", "description": "", **kw}}  # noqa: E731
    return {
        "title": await cat.product(owner, title="Type 2 Diabetes cohort"),
        "summary": await cat.product(owner, summary="Outcomes of diabetes care in Shanghai."),
        "description": await cat.product(owner, description="Adults; HbA1c and diabetes medication."),
        "keywords": await cat.product(owner, keywords=["diabetes", "endocrinology"]),
        "zh_title": await cat.product(owner, i18n=zh(title="2型糖尿病患者队列")),
        "zh_summary": await cat.product(owner, i18n=zh(summary="原发性肝癌筛查")),
        "zh_description": await cat.product(owner, title="Liver cancer registry", i18n=zh(description="肝癌登记")),
        "liver": await cat.product(owner, title="Liver function panel", i18n=zh(title="肝脏功能")),
        "glucose": await cat.product(owner, title="Glucose monitoring", i18n=zh(title="血糖 尿检 病历")),
        "cardiology": await cat.product(owner, title="Cardiology registry", summary="Heart failure."),
    }


class TestText:
    async def test_english_word_found_in_every_field_and_nowhere_else(self, cat, texts) -> None:
        assert await cat.ids(q="diabetes") == {texts[k] for k in ("title", "summary", "description", "keywords")}
        assert await cat.ids(q="DIABETES") == await cat.ids(q="diabetes")

    async def test_three_character_chinese_term(self, cat, texts) -> None:
        # 血糖 尿检 病历 holds every character of 糖尿病 but not its bigrams together.
        assert await cat.ids(q="糖尿病") == {texts["zh_title"]}

    async def test_two_character_chinese_term(self, cat, texts) -> None:
        assert await cat.ids(q="肝癌") == {texts["zh_summary"], texts["zh_description"]}

    async def test_single_chinese_character(self, cat, texts) -> None:
        assert await cat.ids(q="肝") == {texts["zh_summary"], texts["zh_description"], texts["liver"]}

    async def test_last_english_word_matches_as_prefix(self, cat, texts) -> None:
        assert await cat.ids(q="diabe") == await cat.ids(q="diabetes")
        assert await cat.ids(q="liver reg") == {texts["zh_description"]}

    async def test_every_term_is_required(self, cat, texts) -> None:
        assert await cat.ids(q="hba1c diabetes") == {texts["description"]}
        assert await cat.ids(q="diabetes 肝癌") == set()

    async def test_latin_and_chinese_mixed_in_one_query(self, cat, texts) -> None:
        assert await cat.ids(q="liver 肝癌") == {texts["zh_description"]}

    async def test_blank_query_browses(self, cat, texts) -> None:
        assert (await cat.search(q="  ")).total == len(texts)

    async def test_postgres_forgives_a_typo_through_trigrams(self, cat, texts, database) -> None:
        if not database.startswith("postgresql"):
            pytest.skip("pg_trgm fallback is PostgreSQL's")
        assert await cat.ids(q="diabetis") == {texts["title"]}


@pytest.fixture(name="shop")
async def fx_shop(cat: Catalogue) -> dict[str, str]:
    a, b, source = await cat.org("A"), await cat.org("B"), await cat.org("Source")
    return {
        "a": a,
        "b": b,
        "source": source,
        "base": await cat.product(a, title="Stroke registry"),
        "grade": await cat.product(a, title="Stroke L4 registry", grade="L4"),
        "data_type": await cat.product(a, title="Stroke imaging", data_types=["imaging", "ehr"]),
        "area": await cat.product(a, title="Stroke and diabetes", therapeutic_areas=["I63", "E11"]),
        "standard": await cat.product(a, title="Stroke FHIR feed", standards=["FHIR"]),
        "provider": await cat.product(b, title="Stroke registry B", sources=(source,)),
        "pricing": await cat.product(
            a,
            title="Stroke per query",
            plans=(("per_query", True, []), ("subscription", False, []), ("one_off", True, ["org_private"])),
        ),
    }


class TestFilters:
    @pytest.mark.parametrize(
        ("facet", "value", "expected"),
        [
            ("grade", "L4", {"grade"}),
            ("data_type", "imaging", {"data_type"}),
            ("therapeutic_area", "E11", {"area"}),
            ("standard", "FHIR", {"standard"}),
            ("pricing", "per_query", {"pricing"}),
        ],
    )
    async def test_each_filter_excludes_the_others(self, cat, shop, facet, value, expected) -> None:
        assert await cat.ids(q="stroke", filters={facet: (value,)}) == {shop[k] for k in expected}
        assert await cat.ids(filters={facet: (value,)}) == {shop[k] for k in expected}

    async def test_provider_is_the_owner_or_any_source(self, cat, shop) -> None:
        assert await cat.ids(filters={"provider": (shop["b"],)}) == {shop["provider"]}
        assert await cat.ids(filters={"provider": (shop["source"],)}) == {shop["provider"]}
        assert shop["provider"] not in await cat.ids(filters={"provider": (shop["a"],)})

    async def test_values_of_one_facet_or_and_facets_and(self, cat, shop) -> None:
        either = await cat.ids(filters={"grade": ("L4", "L2"), "standard": ("FHIR", "OMOP")})
        assert either == {shop[k] for k in ("base", "grade", "data_type", "area", "standard", "provider", "pricing")}
        both = await cat.ids(filters={"grade": ("L2",), "standard": ("FHIR",)})
        assert both == {shop["standard"]}

    async def test_inactive_and_private_plans_do_not_price(self, cat, shop) -> None:
        assert await cat.ids(filters={"pricing": ("one_off",)}) == set()
        assert shop["pricing"] not in await cat.ids(filters={"pricing": ("subscription",)})

    async def test_unknown_filter_is_a_validation_error(self, cat, shop) -> None:
        from catalog.errors import ValidationFailed

        with pytest.raises(ValidationFailed):
            await cat.search(filters={"colour": ("red",)})


class TestFacets:
    async def test_counts_every_facet_over_the_matches(self, cat, shop) -> None:
        facets = (await cat.search(q="stroke")).facets
        assert set(facets) == set(FACETS)
        assert facets["grade"] == {"L2": 6, "L4": 1}
        assert facets["data_type"] == {"ehr": 7, "imaging": 1}
        assert facets["provider"] == {shop["a"]: 6, shop["b"]: 1, shop["source"]: 1}
        assert facets["pricing"] == {"subscription": 6, "per_query": 1}

    async def test_are_disjunctive(self, cat, shop) -> None:
        page = await cat.search(q="stroke", filters={"grade": ("L4",)})
        assert page.ids == [shop["grade"]]
        assert page.facets["grade"] == {"L2": 6, "L4": 1}  # its own filter left out
        assert page.facets["data_type"] == {"ehr": 1}  # every other facet shrinks
        assert page.facets["pricing"] == {"subscription": 1}

    async def test_two_filters_each_leave_out_only_their_own(self, cat, shop) -> None:
        page = await cat.search(filters={"grade": ("L2",), "standard": ("FHIR",)})
        assert page.facets["grade"] == {"L2": 1}
        assert page.facets["standard"] == {"OMOP": 5, "FHIR": 1}
        assert page.facets["data_type"] == {"ehr": 1}


class TestScope:
    async def test_only_listed_by_default(self, cat) -> None:
        owner = await cat.org()
        listed = await cat.product(owner, title="Asthma panel")
        draft = await cat.product(owner, title="Asthma draft", status="draft")
        assert await cat.ids(q="asthma") == {listed}
        assert await cat.ids(q="asthma", statuses=("draft",)) == {draft}
        assert await cat.ids(statuses=("listed", "draft")) == {listed, draft}

    async def test_owner_sees_only_their_own(self, cat) -> None:
        mine, theirs = await cat.org(), await cat.org()
        own = await cat.product(mine, title="Asthma draft", status="draft")
        await cat.product(theirs, title="Asthma other draft", status="draft")
        assert await cat.ids(q="asthma", statuses=("draft",), owner_org_id=mine) == {own}
        assert await cat.ids(statuses=("draft", "listed"), owner_org_id=mine) == {own}


class TestTotal:
    async def test_exact_up_to_the_cap(self, cat, monkeypatch) -> None:
        monkeypatch.setattr(search_module, "TOTAL_CAP", 3)
        owner = await cat.org()
        for _ in range(3):
            await cat.product(owner, title="Sepsis cohort")
        page = await cat.search(q="sepsis")
        assert (page.total, page.total_is_lower_bound) == (3, False)

    async def test_beyond_the_cap_is_a_lower_bound(self, cat, monkeypatch) -> None:
        monkeypatch.setattr(search_module, "TOTAL_CAP", 4)
        owner = await cat.org()
        for _ in range(5):
            await cat.product(owner, title="Sepsis cohort")
        for ranked_set in (3, 1_000):  # counted by the capped count query, or over the ranked set itself
            monkeypatch.setattr(search_module, "RANK_CAP", ranked_set)
            for fields in ({"q": "sepsis"}, {"filters": {"grade": ("L2",)}}, {"statuses": ("listed", "draft")}):
                page = await cat.search(limit=10, **fields)
                assert (page.total, page.total_is_lower_bound, len(page.ids)) == (4, True, 5), fields
                assert page.next_cursor is None

    async def test_facets_beyond_the_ranked_set_count_its_newest_matches(self, cat, monkeypatch) -> None:
        monkeypatch.setattr(search_module, "RANK_CAP", 3)
        owner = await cat.org()
        for grade in ("L1", "L1", "L2", "L3", "L3"):
            await cat.product(owner, title="Sepsis cohort", grade=grade)
        page = await cat.search(q="sepsis")
        assert (page.total, page.total_is_lower_bound) == (5, False)
        assert page.facets["grade"] == {"L3": 2, "L2": 1}
        assert (await cat.search(q="sepsis", filters={"grade": ("L1",)})).facets["grade"] == {"L3": 2, "L2": 1}

    async def test_browse_reports_the_lower_bound_but_pages_through_everything(self, cat, monkeypatch) -> None:
        monkeypatch.setattr(search_module, "TOTAL_CAP", 3)
        owner = await cat.org()
        for _ in range(5):
            await cat.product(owner)
        page = await cat.search(limit=10)
        assert (page.total, page.total_is_lower_bound, len(page.ids)) == (3, True, 5)
        assert page.facets["grade"] == {"L2": 5}  # precomputed, exact


class TestPaging:
    @pytest.mark.parametrize("ranked_set", [1_000, 4])
    @pytest.mark.parametrize("fields", [{"q": "ward"}, {}, {"filters": {"grade": ("L2",)}}])
    async def test_pages_cover_every_match_once_in_order(self, cat, monkeypatch, fields, ranked_set) -> None:
        monkeypatch.setattr(search_module, "RANK_CAP", ranked_set)
        owner = await cat.org()
        made = [await cat.product(owner, title="Ward census " + "ward " * (i % 3)) for i in range(7)]
        first = await cat.search(limit=7, **fields)
        seen: list[str] = []
        cursor = None
        while True:
            page = await cat.search(limit=3, cursor=cursor, **fields)
            seen.extend(page.ids)
            assert page.total == 7
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == first.ids
        assert set(seen) == set(made)
        if ranked_set == 4 and "q" in fields:  # the four newest ranked by relevance, then the rest newest first
            assert seen[4:] == made[2::-1]
            assert set(seen[:4]) == set(made[3:])

    async def test_foreign_cursor_is_a_validation_error(self, cat) -> None:
        from catalog.errors import ValidationFailed

        with pytest.raises(ValidationFailed):
            await cat.search(q="ward", cursor="bm9wZQ")


class TestRanking:
    async def test_relevance_then_newest(self, cat) -> None:
        owner = await cat.org()
        older_title = await cat.product(owner, title="Hepatitis B registry", summary="Clinic data.")
        body_only = await cat.product(owner, title="Clinic registry", summary="Includes hepatitis B data.")
        newer_title = await cat.product(owner, title="Hepatitis B registry", summary="Clinic data.")
        assert (await cat.search(q="hepatitis")).ids == [newer_title, older_title, body_only]

    async def test_browse_is_newest_first(self, cat) -> None:
        owner = await cat.org()
        made = [await cat.product(owner) for _ in range(4)]
        assert (await cat.search()).ids == made[::-1]


class TestPrecomputedFacets:
    async def computed(self, cat: Catalogue) -> SearchPage:
        # Accepting every grade filters nothing, but takes the path that counts the documents.
        return await cat.search(filters={"grade": ("L1", "L2", "L3", "L4", "L5")})

    async def assert_browse_right(self, cat: Catalogue, total: int) -> SearchPage:
        browse, computed = await cat.search(), await self.computed(cat)
        assert browse.facets == computed.facets
        assert browse.total == computed.total == total
        return browse

    async def test_follow_listing_editing_and_unlisting(self, cat, sessions) -> None:
        owner, source = await cat.org(), await cat.org()
        first = await cat.product(owner, status="draft", grade="L3", sources=(source,))
        second = await cat.product(owner)
        assert (await self.assert_browse_right(cat, 1)).facets["grade"] == {"L2": 1}

        await cat.edit(first, status="listed")
        browse = await self.assert_browse_right(cat, 2)
        assert browse.facets["grade"] == {"L2": 1, "L3": 1}
        assert browse.facets["provider"] == {owner: 2, source: 1}

        await cat.edit(first, grade="L4", data_types=["genomics"])
        browse = await self.assert_browse_right(cat, 2)
        assert browse.facets["grade"] == {"L2": 1, "L4": 1}
        assert browse.facets["data_type"] == {"ehr": 1, "genomics": 1}

        async with write_transaction(sessions) as session:
            await session.execute(delete(ProductSource).where(ProductSource.product_id == first))
            await session.execute(update(Plan).where(Plan.product_id == second).values(active=False))
            await index_product(session, first)
            await index_product(session, second)
        browse = await self.assert_browse_right(cat, 2)
        assert browse.facets["provider"] == {owner: 2}
        assert browse.facets["pricing"] == {"subscription": 1}

        await cat.edit(second, status="suspended")
        await cat.edit(first, status="retired")
        browse = await self.assert_browse_right(cat, 0)
        assert all(values == {} for values in browse.facets.values())

    async def test_reindexing_unchanged_product_changes_nothing(self, cat, sessions) -> None:
        owner = await cat.org()
        product = await cat.product(owner)
        async with write_transaction(sessions) as session:
            await index_product(session, product)
            await index_product(session, product)
        await self.assert_browse_right(cat, 1)
        async with read_transaction(sessions) as session:
            counts = dict(
                ((f, v), n) for f, v, n in await session.execute(select(search_module.SearchFacetCount.__table__))
            )
        assert counts[("", "")] == 1
        assert counts[("grade", "L2")] == 1

    async def test_concurrent_plan_changes_leave_the_index_and_counts_right(self, cat, sessions) -> None:
        owner = await cat.org()
        product = await cat.product(owner, plans=())

        async def add_plan(kind: str) -> None:
            async with write_transaction(sessions) as session:
                plan = {"name": kind, "kind": kind, "currency": "CNY", "private_to": []}
                session.add(
                    Plan(id=new_id("pln"), product_id=product, unit_prices={}, units={}, included={}, caps={}, **plan)
                )
                await session.flush()
                await index_product(session, product)

        await asyncio.gather(*(add_plan(kind) for kind in ("subscription", "per_query", "one_off", "free")))
        browse = await self.assert_browse_right(cat, 1)
        assert browse.facets["pricing"] == {"free": 1, "one_off": 1, "per_query": 1, "subscription": 1}
