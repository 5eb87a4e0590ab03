"""Usage-ingest benchmark: 1,000-event batches over HTTP versus the raw driver's executemany
(run by hand; prints figures, never passes or fails).

    .venv/bin/python bench/ingest_bench.py [--batches 40] [--batch-size 1000]
    LODE_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/lode_ingest_bench .venv/bin/python bench/ingest_bench.py

Builds, through the API as the tests do, a provider with a listed L1 product on a free plan whose
caps are set (so reported usage counts toward real counters) and four accepted licences held by
four consumers; the provider's admin reports the usage. The app is ``create_app`` driven in-process
by httpx's ASGITransport with its lifespan run, on SQLite in a temporary file, and — when
LODE_BENCH_PG_URL names a scratch database whose name contains "bench" (its public schema is dropped
and migrated afresh) — on PostgreSQL.

Each batch is ``--batch-size`` events spread over the four licences and the three reportable
dimensions, every one with a fresh idempotency key. Cases, interleaved batch by batch in a shuffled
order so that they share the machine's noise:

    api             POST /v1/usage-events, the JSON body encoded before the clock starts
    api + key       the same with an ``Idempotency-Key`` header (a client that retries safely)
    raw             the same rows — ids, payload hashes, timestamps as the app writes them, converted
                    to the driver's values before the clock starts — by the raw driver on one open
                    connection: aiosqlite ``executemany`` + commit on SQLite, asyncpg ``executemany``
                    in a transaction on PostgreSQL, into the same usage_events table

Throughput is events per second of wall time over all batches of a case (and from the p50 batch).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import rfc8785
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import served
from catalog import db
from catalog.ids import new_id
from catalog.metering.models import UsageEvent
from catalog.settings import Settings
from tests.delivery.conftest import Delivery
from tests.support import Catalogue, expect

CAPPED_PLAN = {
    "name": "Research (free, capped)",
    "kind": "free",
    "currency": "CNY",
    "caps": {"queries": 10**12, "rows_returned": 10**15, "bytes_downloaded": 10**15},
}
DIMENSIONS = ("queries", "rows_returned", "bytes_downloaded")
LICENCES = 4
COLUMNS = [c.name for c in UsageEvent.__table__.columns]


def command_line() -> str:
    env = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    words = [python, os.path.relpath(__file__), *sys.argv[1:]]
    return ("$ " + (f"LODE_BENCH_PG_URL={env} " if env else "")) + " ".join(shlex.quote(w) for w in words)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


class Batches:
    """Fresh events for each batch: as JSON for the API, and as driver-ready rows for the raw insert."""

    def __init__(self, licences: list[dict[str, Any]], provider_org: str, size: int, dialect: Any) -> None:
        self.licences = licences
        self.provider_org = provider_org
        self.size = size
        self.rng = random.Random(11)
        self.serial = 0
        table = UsageEvent.__table__
        self.processors = [table.c[name].type._cached_bind_processor(dialect) for name in COLUMNS]

    def events(self) -> list[dict[str, Any]]:
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        out = []
        for _ in range(self.size):
            self.serial += 1
            licence = self.licences[self.serial % len(self.licences)]
            out.append({
                "idempotency_key": f"bench-{self.serial:09d}",
                "licence_id": licence["id"],
                "dimension": DIMENSIONS[self.serial % 3],
                "quantity": self.rng.randint(1, 500),
                "occurred_at": at.isoformat(),
            })  # fmt: skip
        return out

    def body(self) -> bytes:
        return msgspec.json.encode({"events": self.events()})

    def rows(self) -> list[tuple[Any, ...]]:
        """What the app would store for these events (same columns, same derivations)."""
        rows = []
        now = datetime.now(UTC)
        by_id = {lic["id"]: lic for lic in self.licences}
        for e in self.events():
            licence = by_id[e["licence_id"]]
            at = datetime.fromisoformat(e["occurred_at"])
            payload = {"licence_id": licence["id"], "dimension": e["dimension"], "quantity": e["quantity"],
                       "occurred_at": at.isoformat(), "analyst_id": None}  # fmt: skip
            values = {
                "id": new_id("use"), "licence_id": licence["id"], "idempotency_key": e["idempotency_key"],
                "consumer_org_id": licence["consumer_org_id"], "product_id": licence["product_id"],
                "analyst_id": None, "dimension": e["dimension"], "quantity": e["quantity"], "occurred_at": at,
                "source": "reported", "reported_by": self.provider_org,
                "payload_sha256": hashlib.sha256(rfc8785.dumps(payload)).hexdigest(), "over_cap": False,
                "created_at": now,
            }  # fmt: skip
            rows.append(tuple(p(values[c]) if p else values[c] for c, p in zip(COLUMNS, self.processors, strict=True)))
        return rows


async def raw_inserter(settings: Settings) -> tuple[Callable[[list[tuple[Any, ...]]], Awaitable[None]], Any]:
    """One open connection of the raw driver and an executemany of a batch in its own transaction."""
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    if settings.is_sqlite:
        import aiosqlite

        conn = await aiosqlite.connect(settings.database_url.removeprefix("sqlite+aiosqlite:///"))
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(f"PRAGMA busy_timeout={db.SQLITE_BUSY_TIMEOUT_MS}")
        sql = f"INSERT INTO usage_events ({columns}) VALUES ({', '.join('?' for _ in COLUMNS)})"

        async def insert_sqlite(rows: list[tuple[Any, ...]]) -> None:
            await conn.executemany(sql, rows)
            await conn.commit()

        return insert_sqlite, conn.close
    import asyncpg

    conn = await asyncpg.connect(settings.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    sql = f"INSERT INTO usage_events ({columns}) VALUES ({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))})"

    async def insert_pg(rows: list[tuple[Any, ...]]) -> None:
        async with conn.transaction():
            await conn.executemany(sql, rows)

    return insert_pg, conn.close


async def run(url: str, batches: int, size: int, tmp: Path) -> None:
    async with served(url, tmp) as (settings, app, client, actors):
        setup = Delivery(client, actors, Catalogue(client, actors))
        owner = await setup.provider()
        product = await setup.published(owner, "L1", plans=[CAPPED_PLAN])
        licences = [await setup.licence_on(product, owner, await setup.consumer()) for _ in range(LICENCES)]
        maker = Batches(licences, owner.org_id, size, app.state.engine.dialect)
        raw, close = await raw_inserter(settings)
        headers = {**owner.headers, "Content-Type": "application/json"}

        async def api(body: bytes, key: str | None) -> None:
            extra = {"Idempotency-Key": key} if key else {}
            answer = expect(await client.post("/v1/usage-events", content=body, headers={**headers, **extra}), 200)
            assert answer["inserted"] == size and not answer["conflicts"], answer

        cases: dict[str, Callable[[], tuple[Any, Callable[[Any], Awaitable[None]]]]] = {
            "api": lambda: (maker.body(), lambda body: api(body, None)),
            "api + key": lambda: (maker.body(), lambda body: api(body, secrets.token_hex(16))),
            "raw": lambda: (maker.rows(), raw),
        }
        samples: dict[str, list[float]] = {label: [] for label in cases}
        rng = random.Random(5)
        try:
            for batch in range(-2, batches):  # two warm-up rounds, not counted
                order = list(cases.items())
                rng.shuffle(order)
                for label, make in order:
                    payload, call = make()
                    t0 = time.perf_counter()
                    await call(payload)
                    if batch >= 0:
                        samples[label].append(time.perf_counter() - t0)
        finally:
            await close()
        async with app.state.sessions() as session:
            stored = (await session.execute(text("SELECT count(*) FROM usage_events"))).scalar_one()
    print(f"  {batches} batches of {size:,} events per case, interleaved; usage_events now holds {stored:,} rows")
    print(f"  {'case':<12}{'p50 ms':>9}{'p95 ms':>9}{'events/s':>12}{'at p50':>12}")
    rate: dict[str, float] = {}
    for label, times in samples.items():
        p50, p95 = percentiles(times)
        rate[label] = size * len(times) / sum(times)
        print(f"  {label:<12}{p50 * 1000:>9.1f}{p95 * 1000:>9.1f}{rate[label]:>12,.0f}{size / p50:>12,.0f}")
    for label in ("api", "api + key"):
        print(f"  {label:<10} / raw throughput = {rate[label] / rate['raw']:.2f}×   (target ≥ 0.5×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(command_line())
    pg_url = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    if pg_url and "bench" not in (urlparse(pg_url).path or ""):
        raise SystemExit("LODE_BENCH_PG_URL must name a scratch database with 'bench' in its name: it is reset.")
    with tempfile.TemporaryDirectory(prefix="lode-bench-") as name:
        tmp = Path(name)
        if not args.skip_sqlite:
            asyncio.run(run(f"sqlite+aiosqlite:///{tmp}/bench.db", args.batches, args.batch_size, tmp / "sqlite"))
        if pg_url:
            asyncio.run(run(pg_url, args.batches, args.batch_size, tmp / "pg"))


if __name__ == "__main__":
    main()
