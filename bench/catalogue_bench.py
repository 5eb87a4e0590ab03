"""Catalogue reads benchmark: a public product page and search pages through a real `lode serve`,
against Litestar answering the same pre-encoded bytes (run by hand; prints figures, never passes
or fails). Issue 18 asks for ≥ 0.3× that floor per process.

    .venv/bin/python bench/catalogue_bench.py [--duration 5] [--connections 8] [--threads 1] [--rounds 3]
    LODE_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/lode_cat_bench .venv/bin/python bench/catalogue_bench.py

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). In a temporary LODE_DATA_DIR it runs ``lode db
upgrade``, ``lode demo`` and ``lode serve`` (one process, SQLite, the in-process worker, logs at
LODE_LOG_LEVEL or INFO — an access line per request, as deployed — written to a file). The floor
is a bare Litestar app in another process, served by the same uvicorn with the same HTTP protocol
class, whose routes answer the exact bytes Lode answered for each read. Every case runs with the same
wrk threads, connections and duration, after a one-second warm-up, ``--rounds`` times interleaved
with its floor; the median of the rounds is printed, and each case's ratio to its own floor as the
median of the rounds' ratios (a busy machine slows a case and its floor alike within a round).

Cases, anonymous (no key) as a browsing visitor sends them, but the last:

    product       GET /v1/products/t2d-ehr-cohort (≈ 17 kB)
    listing       GET /v1/products?limit=20 (the demo's listed products with facets)
    search        GET /v1/products?q=cohort&limit=20
    product 304   the product page with If-None-Match: its ETag (to the floor's 200 and to a bare 304)
    product, key  the product page with a consumer's API key (its check costs a read of its own)

With LODE_BENCH_PG_URL naming a scratch database whose name contains "bench" (its public schema is
dropped and migrated afresh), the same cases run again on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import httpx
from litestar import Litestar, Response, get

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LODE = [sys.executable, "-m", "catalog.cli"]
PRODUCT = "t2d-ehr-cohort"
CONSUMER = "fudan-sph"  # a demo consumer no plan of the product is private to: it is served the public view
CASES = {
    "product": f"/v1/products/{PRODUCT}",
    "listing": "/v1/products?limit=20",
    "search": "/v1/products?q=cohort&limit=20",
}
WRK_LINE = re.compile(r"Requests/sec:\s+([\d.]+)")
LATENCY = re.compile(r"Latency\s+([\d.]+)(us|ms|s)")
P99 = re.compile(r"99%\s+([\d.]+)(us|ms|s)")
TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


class Figure(NamedTuple):
    rps: float
    mean_ms: float
    p99_ms: float
    errors: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{url} did not start: {log.read_text()[-2000:]}")


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path, probe: str) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=ROOT)
        try:
            wait_until_up(probe, process, log)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def lode_env(data: Path, port: int, database_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "LODE_ENV": "development",
        "LODE_DATA_DIR": str(data),
        "LODE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LODE_KEY_PEPPER": "catalogue-bench-pepper-" + "p" * 24,
        "LODE_NOISE_SECRET": "catalogue-bench-noise-" + "n" * 24,
        "LODE_LOG_LEVEL": os.environ.get("LODE_LOG_LEVEL", "INFO"),
    }
    env.pop("LODE_DATABASE_URL", None)
    if database_url:
        env["LODE_DATABASE_URL"] = database_url
    return env


def wrk(url: str, args: argparse.Namespace, *, seconds: int, header: str | None = None) -> Figure:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency", url]
    if header:
        command[1:1] = ["-H", header]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    mean, unit = LATENCY.search(out).groups()  # type: ignore[union-attr]
    p99, p99_unit = P99.search(out).groups()  # type: ignore[union-attr]
    errors = " ".join(line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line)
    return Figure(
        float(WRK_LINE.search(out).group(1)),  # type: ignore[union-attr]
        float(mean) * TO_MS[unit],
        float(p99) * TO_MS[p99_unit],
        errors,
    )


def measure(url: str, args: argparse.Namespace, header: str | None = None) -> Figure:
    wrk(url, args, seconds=1, header=header)  # warm: pools open, views built
    return wrk(url, args, seconds=args.duration, header=header)


def median(figures: list[Figure]) -> Figure:
    return Figure(
        statistics.median(f.rps for f in figures),
        statistics.median(f.mean_ms for f in figures),
        statistics.median(f.p99_ms for f in figures),
        " | ".join(sorted({f.errors for f in figures if f.errors})),
    )


def run(label: str, database_url: str | None, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="lode-catalogue-bench-") as tmp:
        data = Path(tmp)
        port, floor_port = free_port(), free_port()
        env = lode_env(data, port, database_url)
        subprocess.run([*LODE, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=ROOT)
        seeded = subprocess.run([*LODE, "demo", "--json"], env=env, check=True, capture_output=True, cwd=ROOT)
        key = json.loads(seeded.stdout)["keys"][CONSUMER]
        base, floor = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{floor_port}"
        serve = [*LODE, "serve", "--host", "127.0.0.1", "--port", str(port)]
        with running(serve, env, data / "serve.log", f"{base}/health"):
            bodies: dict[str, bytes] = {}
            for name, path in CASES.items():
                answer = httpx.get(base + path, timeout=30)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                bodies[name] = answer.content
            tag = httpx.get(base + CASES["product"], timeout=30).headers["etag"]
            keyed = {"Authorization": f"Bearer {key}"}
            assert httpx.get(base + CASES["product"], headers=keyed, timeout=30).headers["etag"] == tag
            assert httpx.get(base + CASES["product"], headers={"If-None-Match": tag}).status_code == 304
            for name, body in bodies.items():
                (data / f"{name}.json").write_bytes(body)
            floor_cmd = [sys.executable, __file__, "--serve-floor", str(floor_port), str(data), tag]
            with running(floor_cmd, dict(os.environ), data / "floor.log", f"{floor}/product"):
                for name, body in bodies.items():
                    assert httpx.get(f"{floor}/{name}").content == body
                results: dict[str, list[Figure]] = {}
                inm = f"If-None-Match: {tag}"
                pairs = [
                    *(
                        (name, base + path, None, f"floor {name}", f"{floor}/{name}", None)
                        for name, path in CASES.items()
                    ),
                    ("product 304", base + CASES["product"], inm, "floor 304", f"{floor}/not-modified", None),
                    (
                        "product, key",
                        base + CASES["product"],
                        f"Authorization: Bearer {key}",
                        "floor (key)",
                        f"{floor}/product",
                        None,
                    ),
                ]
                for _ in range(args.rounds):
                    for name, url, header, floor_name, floor_url, floor_header in pairs:
                        results.setdefault(floor_name, []).append(measure(floor_url, args, floor_header))
                        results.setdefault(name, []).append(measure(url, args, header))
        report(label, results, bodies, args)


def ratio(results: dict[str, list[Figure]], name: str, floor: str) -> float:
    """The median over rounds of each round's ratio: a case and its floor run back to back, so a
    machine busier in one round than another moves both."""
    return statistics.median(a.rps / b.rps for a, b in zip(results[name], results[floor], strict=True))


def report(label: str, results: dict[str, list[Figure]], bodies: dict[str, bytes], args: argparse.Namespace) -> None:
    figures = {name: median(values) for name, values in results.items()}
    print(
        f"\n{label}: one `lode serve` process; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"median of {args.rounds} rounds (ratio: median of each round's ratio)"
    )
    print(f"{'case':<14}{'bytes':>8}{'req/s':>10}{'mean ms':>9}{'p99 ms':>8}{'floor req/s':>13}{'ratio':>8}")
    for name in CASES:
        lode, floor = figures[name], figures[f"floor {name}"]
        print(
            f"{name:<14}{len(bodies[name]):>8}{lode.rps:>10.0f}{lode.mean_ms:>9.2f}{lode.p99_ms:>8.2f}"
            f"{floor.rps:>13.0f}{ratio(results, name, f'floor {name}'):>7.2f}×"
        )
    not_modified, full_floor, bare_304 = figures["product 304"], figures["floor product"], figures["floor 304"]
    print(
        f"{'product 304':<14}{0:>8}{not_modified.rps:>10.0f}{not_modified.mean_ms:>9.2f}{not_modified.p99_ms:>8.2f}"
        f"{full_floor.rps:>13.0f}{ratio(results, 'product 304', 'floor product'):>7.2f}×  (to the floor's 200; "
        f"to a bare 304, {bare_304.rps:.0f} req/s: {ratio(results, 'product 304', 'floor 304'):.2f}×)"
    )
    keyed = figures["product, key"]
    print(
        f"{'product, key':<14}{len(bodies['product']):>8}{keyed.rps:>10.0f}{keyed.mean_ms:>9.2f}{keyed.p99_ms:>8.2f}"
        f"{figures['floor (key)'].rps:>13.0f}{ratio(results, 'product, key', 'floor (key)'):>7.2f}×  (a consumer's "
        "key: the key's check, then the same public view)"
    )
    for name, figure in figures.items():
        if figure.errors:
            print(f"  {name}: {figure.errors}")


def serve_floor(port: int, data: Path, etag: str) -> None:
    """The floor: Litestar answering Lode's own bytes, under the uvicorn and protocol `lode serve` uses."""
    import uvicorn

    from catalog.server import ProblemH11Protocol

    def answer(name: str) -> Any:
        body = (data / f"{name}.json").read_bytes()

        @get(f"/{name}", sync_to_thread=False, name=name)
        def handler() -> Response[bytes]:
            return Response(body, media_type="application/json")

        return handler

    @get("/not-modified", sync_to_thread=False)
    def not_modified() -> Response[bytes]:
        return Response(b"", status_code=304, headers={"ETag": etag})

    app = Litestar([*(answer(name) for name in CASES), not_modified], debug=False, logging_config=None)
    uvicorn.run(app, host="127.0.0.1", port=port, http=ProblemH11Protocol, log_config=None, access_log=False)


def pg_database(url: str) -> str:
    """The scratch database at ``url`` with an empty public schema, as an asyncpg URL."""
    import asyncpg

    name = urlparse(url).path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"LODE_BENCH_PG_URL must name a scratch database with 'bench' in its name, not {name!r}")
    plain = url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def reset() -> None:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()

    asyncio.run(reset())
    return plain.replace("postgresql://", "postgresql+asyncpg://", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-floor", nargs=3, metavar=("PORT", "DIR", "ETAG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        port, data, etag = args.serve_floor
        serve_floor(int(port), Path(data), etag)
        return
    if shutil.which("wrk") is None:
        sys.exit("This benchmark needs wrk: apt-get install -y wrk")
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    run("SQLite", None, args)
    pg = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    if pg:
        run("PostgreSQL", pg_database(pg), args)


if __name__ == "__main__":
    main()
