"""Product search benchmark (run by hand; prints figures, never passes or fails).

    .venv/bin/python bench/search_bench.py [--products 100000] [--reps 200] [--sqlite-file PATH]
    LODE_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/lode_search_bench .venv/bin/python bench/search_bench.py

Builds synthetic products (mixed English and Chinese text; realistic grades, data types, ICD-10
areas, standards, providers and plan kinds) on SQLite in a temporary file (or ``--sqlite-file``,
built once and reused) and, when LODE_BENCH_PG_URL names a scratch database whose name contains
"bench" (its public schema is dropped and migrated afresh), on PostgreSQL. Products and the search
rows are bulk-inserted in batches of 5,000 (the FTS5 / tsvector triggers index each row as it lands);
sources and plans are not stored, their facet values go straight into the documents. "hepatoblastoma"
/ 肝母细胞瘤 occur in ≈0.3 % of the listed products, "cohort" in ≈80 %. Each case runs in its own
read transaction, as a request does, through the app's engine (and on SQLite also through one warm
pooled connection, to show the per-request connection cost apart):

    narrow   search(q="hepatoblastoma"): ranked page, facets, total, cursor
    bare     the ranked-ids statement search() runs for it, alone: first page of ids, nothing else
    broad    search(q="cohort")
    browse   search() with no q and no filters: precomputed facets
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog import db
from catalog.migrations import alembic_config
from catalog.orgs.models import Organisation
from catalog.products import search, search_sql
from catalog.products.models import Product
from catalog.settings import load_settings

NARROW, NARROW_ZH, BROAD = "hepatoblastoma", "肝母细胞瘤", "cohort"
BARE = "bare (narrow ranked ids)"
EN_WORDS = (
    "registry patients outcomes hospital clinical data laboratory results admissions discharge imaging "
    "follow-up treatment medication adherence longitudinal retrospective prospective adults children "
    "screening mortality readmission quality biomarkers genomic sequencing survey regional national "
    "electronic records encounters procedures diagnoses vital signs pathology oncology cardiology "
    "nephrology respiratory infection vaccination maternal neonatal elderly rural urban"
).split()
ZH_PHRASES = (
    "患者 住院 门诊 随访 影像 检验 结果 用药 依从性 慢性病 高血压 冠心病 脑卒中 肺癌 乳腺癌 胃癌 肝癌 "
    "糖尿病 肾病 哮喘 新生儿 孕产妇 老年人 基因组 测序 病理 队列 登记 真实世界 区域 医疗 数据"
).split()
GRADES = ("L1", "L2", "L3", "L4", "L5")
DATA_TYPES = "ehr claims imaging genomics lab registry survey wearable pathology notes pharmacy trial".split()
STANDARDS = "OMOP FHIR HL7v2 CDISC DICOM ICD-10 LOINC SNOMED".split()
ICD = [f"{letter}{n:02d}" for letter in "ACEFGIJKMN" for n in range(0, 100, 5)]  # 200 codes
PLAN_KINDS = ("subscription", "per_query", "one_off", "free")


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(EN_WORDS) for _ in range(n))


def zh_sentence(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ZH_PHRASES) for _ in range(n))


def make_products(n: int, org_ids: list[str], seed: int = 7) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    products, documents = [], []
    for i in range(n):
        narrow = rng.random() < 0.003
        title = f"{sentence(rng, 3).title()} {'cohort ' if rng.random() < 0.4 else ''}{i}"
        summary = sentence(rng, 12) + (" cohort" if rng.random() < 0.7 else "")
        description = sentence(rng, 40) + (f" {NARROW} " if narrow else " ")
        zh_desc = zh_sentence(rng, 15) + (NARROW_ZH if narrow else "")
        product = {
            "id": f"prd_{i:026d}", "slug": f"p-{i}", "owner_org_id": rng.choice(org_ids),
            "status": "listed" if rng.random() < 0.95 else "draft",
            "grade": rng.choices(GRADES, weights=(10, 40, 30, 15, 5))[0],
            "title": title, "summary": summary, "description": description,
            "i18n": {"zh": {"title": zh_sentence(rng, 3), "summary": zh_sentence(rng, 6), "description": zh_desc}},
            "keywords": rng.sample(EN_WORDS, 3), "data_types": rng.sample(DATA_TYPES, rng.randint(1, 3)),
            "therapeutic_areas": rng.sample(ICD, rng.randint(1, 3)),
            "standards": rng.sample(STANDARDS, rng.randint(1, 2)),
            "legal_basis": "consent", "identified": False, "core_data": False, "jurisdiction": "CN",
            "spatial_coverage": ["CN"], "created_at": t0 + timedelta(seconds=i * 60), "updated_at": t0,
        }  # fmt: skip
        sources = rng.sample(org_ids, rng.randint(0, 2))
        kinds = sorted(set(rng.sample(PLAN_KINDS, rng.randint(1, 2))))
        products.append(product)
        documents.append(search.build_document(product, sources, kinds))
    return products, documents


async def load(sessions: async_sessionmaker[AsyncSession], n: int) -> dict[str, int]:
    orgs = [
        {"id": f"org_{i:026d}", "name": f"Org {i}", "slug": f"org-{i}", "kind": "provider", "jurisdiction": "CN",
         "org_type": "hospital", "for_profit": False, "status": "verified"}
        for i in range(400)
    ]  # fmt: skip
    started = time.perf_counter()
    products, documents = make_products(n, [o["id"] for o in orgs])
    counts: Counter[tuple[str, str]] = Counter()
    for doc in documents:
        counts.update(search._counted(doc.row["status"], doc.row["facets"]))
    built = time.perf_counter()
    async with db.write_transaction(sessions) as session:
        await session.execute(insert(Organisation), orgs)
        for i in range(0, n, 5_000):
            await session.execute(insert(Product), products[i : i + 5_000])
        for i in range(0, n, 5_000):  # doc_ids in creation order, as indexing at creation assigns them
            batch = [{"doc_id": i + j + 1, **d.row} for j, d in enumerate(documents[i : i + 5_000])]
            await session.execute(insert(search_sql.DOC), batch)
        for i in range(0, n, 5_000):  # the FTS5 triggers index each row as it lands
            batch = [{"doc_id": i + j + 1, **d.text} for j, d in enumerate(documents[i : i + 5_000])]
            await session.execute(insert(search_sql.TEXT), batch)
        rows = [{"facet": f, "value": v, "count": c} for (f, v), c in counts.items()]
        await session.execute(insert(search_sql.COUNTS), rows)
    async with sessions() as session:
        await session.execute(text("ANALYZE"))
        await session.commit()
    loaded = time.perf_counter()
    print(f"  built {n:,} products in {built - started:.1f} s, loaded in {loaded - built:.1f} s")
    async with db.read_transaction(sessions) as session:
        total = await session.scalar(select(func.count()).select_from(search_sql.DOC))
        listed = counts[search.TOTAL_KEY]
    narrow = sum(NARROW in p["description"] for p in products if p["status"] == "listed")
    broad = sum(BROAD in (p["title"] + p["summary"]).lower() for p in products if p["status"] == "listed")
    return {"documents": total or 0, "listed": listed, "narrow": narrow, "broad": broad}


async def timed(reps: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    for _ in range(min(5, reps)):
        result = await call()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], result


async def run(url: str, n: int, reps: int, reuse: bool = False) -> None:
    from alembic import command

    tmp = Path(tempfile.mkdtemp(prefix="lode-bench-"))
    environ = {"LODE_ENV": "test", "LODE_DATA_DIR": str(tmp), "LODE_DATABASE_URL": url,
               "LODE_KEY_PEPPER": "bench-pepper-" + "x" * 40, "LODE_LOG_LEVEL": "WARNING"}  # fmt: skip
    settings = load_settings(environ)
    engine = db.create_engine(settings)
    if not settings.is_sqlite:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await asyncio.to_thread(command.upgrade, alembic_config(settings), "head")
    print(f"\n== {'SQLite' if settings.is_sqlite else 'PostgreSQL'}")
    if not reuse:
        await report(await load(db.create_sessionmaker(engine), n))
    await measure(db.create_sessionmaker(engine), "the app's engine (pooled connections)", reps)
    await engine.dispose()
    if settings.is_sqlite:
        # The same searches on a single warm connection, for comparison with the app's pool.
        warm = create_async_engine(settings.database_url, poolclass=AsyncAdaptedQueuePool, pool_size=1)
        db._configure_sqlite(warm)
        await measure(db.create_sessionmaker(warm), "one warm pooled connection", reps)
        await warm.dispose()


async def report(sizes: dict[str, int]) -> None:
    print(
        f"  documents {sizes['documents']:,}, listed {sizes['listed']:,}; "
        f"'{NARROW}' in {sizes['narrow']:,} listed ({sizes['narrow'] / sizes['listed']:.2%}), "
        f"'{BROAD}' in {sizes['broad']:,} ({sizes['broad'] / sizes['listed']:.1%})"
    )


async def measure(sessions: async_sessionmaker[AsyncSession], title: str, reps: int) -> None:
    async def searching(**fields: Any) -> search.SearchPage:
        async with db.read_transaction(sessions) as session:
            return await search.search(session, search.SearchQuery(**fields))

    async def bare(q: str) -> list[str]:
        # The ranked-ids statement search() runs, alone: same match, cap and ranking, first page of ids.
        async with db.read_transaction(sessions) as session:
            match = search_sql.full_text(session, search.query_terms(q))
            ranked = search_sql.candidates(session, ("listed",), None, match, {}, shape="ranked", cap=search.RANK_CAP)
            sub = ranked.subquery()
            order = (sub.c.score.desc(), sub.c.created_us.desc(), sub.c.product_id.desc())
            return list((await session.scalars(select(sub.c.product_id).order_by(*order).limit(50))).all())

    few = max(reps // 4, 20)
    cases: list[tuple[str, int, Callable[[], Awaitable[Any]]]] = [
        ("narrow", reps, lambda: searching(q=NARROW)),
        (BARE, reps, lambda: bare(NARROW)),
        ("broad", few, lambda: searching(q=BROAD)),
        ("browse", reps, lambda: searching()),
        ("narrow zh", reps, lambda: searching(q=NARROW_ZH)),
        ("broad + grade=L3", few, lambda: searching(q=BROAD, filters={"grade": ("L3",)})),
        ("browse + data_type=imaging", few, lambda: searching(filters={"data_type": ("imaging",)})),
    ]
    p50: dict[str, float] = {}
    print(f"  -- {title}")
    print(f"  {'case':<28}{'p50 ms':>9}{'p95 ms':>9}  total")
    for label, count, call in cases:
        median, p95, result = await timed(count, call)
        p50[label] = median
        total = f"{result.total:,}{'+' if result.total_is_lower_bound else ''}" if hasattr(result, "total") else "-"
        print(f"  {label:<28}{median:>9.2f}{p95:>9.2f}  {total}")
    print(f"  narrow / bare  = {p50['narrow'] / p50[BARE]:.2f}  (target ≤ 2)")
    print(f"  broad / narrow = {p50['broad'] / p50['narrow']:.2f}  (target ≤ 10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--sqlite-file", help="build the SQLite database here once, and reuse it on later runs")
    args = parser.parse_args()
    if args.sqlite_file:  # keep the loaded database between runs
        path = Path(args.sqlite_file).resolve()
        asyncio.run(run(f"sqlite+aiosqlite:///{path}", args.products, args.reps, reuse=path.exists()))
    else:
        with tempfile.TemporaryDirectory(prefix="lode-bench-") as tmp:
            asyncio.run(run(f"sqlite+aiosqlite:///{tmp}/bench.db", args.products, args.reps))
    pg_url = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    if pg_url:
        if "bench" not in (urlparse(pg_url).path or ""):
            raise SystemExit("LODE_BENCH_PG_URL must name a scratch database with 'bench' in its name: it is reset.")
        asyncio.run(run(pg_url, args.products, args.reps))


if __name__ == "__main__":
    main()
