"""What request intake (catalog/intake.py) adds to every request (run by hand; prints figures,
never passes or fails).

    .venv/bin/python bench/intake_bench.py [--repeat 2000]

Times, each the median of ``--repeat`` calls:

    middleware      IntakeMiddleware on GET /v1/orgs/{org_id}/members?limit=50&cursor=… with the
                    headers a client sends (path parameter, query and header checks), to a no-op app
    body check      the NUL scan of a 1,000-event usage batch (the usual case: no escape found)
    body decode     msgspec decoding the same batch, for scale: what every JSON request pays anyway
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from catalog.app import create_app
from catalog.intake import IntakeMiddleware, might_hold_nul
from catalog.settings import load_settings


def batch_body(events: int) -> bytes:
    return msgspec.json.encode(
        {
            "events": [
                {
                    "idempotency_key": f"delivery-2026-12-06-{i:06d}",
                    "licence_id": "lic_01M8KA6FHNZP644F7TPRPS09WM",
                    "dimension": "rows_returned",
                    "quantity": 250 + i,
                    "occurred_at": "2026-12-06T08:00:00.000000Z",
                    "analyst_id": "usr_01M8KA6FHX752NRWMCQAPS6T30",
                }
                for i in range(events)
            ]
        }
    )


def median_us(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1000


async def middleware_us(repeat: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"LODE_DATA_DIR": tmp, "LODE_ENV": "test", "LODE_LOG_LEVEL": "WARNING"})
        app = create_app(settings, run_worker=False)
        handler = next(
            h
            for route in app.routes
            for h, _ in getattr(route, "route_handler_map", {}).values()
            if h.operation_id == "ListMembers"
        )
        scope = {
            "type": "http",
            "litestar_app": app,
            "route_handler": handler,
            "path_params": {"org_id": "org_01M8KA6FHNZP644F7TPRPS09WM"},
            "query_string": b"limit=50&cursor=b3JnXzAxTThLQTZGSE5aUDY0NEY3VFBSUFMwOVdN",
            "headers": [
                (b"host", b"lode.example.org"),
                (b"user-agent", b"python-httpx/0.28"),
                (b"accept", b"application/json"),
                (b"accept-encoding", b"gzip, deflate"),
                (b"authorization", b"Bearer lode_" + b"x" * 43),
                (b"x-request-id", b"req-12345678"),
            ],
        }
        middleware = IntakeMiddleware()

        async def nothing(*_: object) -> None:
            return None

        samples = []
        for _ in range(repeat):
            started = time.perf_counter_ns()
            await middleware.handle(scope, nothing, nothing, nothing)
            samples.append(time.perf_counter_ns() - started)
        await app.state.engine.dispose()
        return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    body = batch_body(1000)
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"middleware   {asyncio.run(middleware_us(args.repeat)):8.1f} µs per request")
    check = median_us(lambda: might_hold_nul(body), args.repeat)
    print(f"body check   {check:8.1f} µs per 1,000-event batch ({len(body) / 1024:.0f} KiB)")
    decode = median_us(lambda: msgspec.json.decode(body), max(args.repeat // 10, 50))
    print(f"body decode  {decode:8.1f} µs for the same batch (msgspec, paid by every request anyway)")


if __name__ == "__main__":
    main()
