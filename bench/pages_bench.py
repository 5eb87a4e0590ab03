"""Pages benchmark: how long each kind of web page takes on the demo, as a browser gets it
(run by hand; prints figures, never passes or fails). The target is a p50 under 100 ms.

    .venv/bin/python bench/pages_bench.py [--reps 40]

Seeds the demo in a temporary directory and serves it with `lode serve` (one process, SQLite,
the in-process worker), as `dev.py serve` does; then, over loopback HTTP with each member's
session cookie, fetches every page ``--reps`` times in a shuffled order and prints p50 / p95 per
page. A page costs its own work plus one in-process API call per piece it shows (each with its
key check), so the figures include those calls — the price of rendering over the API. The console
row is the htmx POST of the console's first query on an L3 licence: a real, metered query.
"""

from __future__ import annotations

import argparse
import html
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.web.conftest import demo_server

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
TARGET_MS = 100.0


def session(base: str, key: str | None) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    if key:
        token = CSRF.search(client.get("/signin").text).group(1)
        assert client.post("/signin", data={"csrf": token, "api_key": key}).status_code == 303
    return client


def first_link(client: httpx.Client, path: str, prefix: str) -> str:
    found = re.search(rf'href="({re.escape(prefix)}[^"?#]+)"', client.get(path).text)
    assert found, f"no {prefix} link on {path}"
    return found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lode-pages-bench-") as tmp, demo_server(Path(tmp)) as server:
        base = server.base
        anonymous = session(base, None)
        consumer = session(base, server.key("fudan-sph"))
        provider = session(base, server.key("huashan"))
        reviewer = session(base, server.key("operator/ethics"))
        curator = session(base, server.key("operator/curator"))
        licence = first_link(consumer, "/licences", "/licences/lic_")
        product_id = first_link(provider, "/provider", "/provider/products/")
        application = first_link(consumer, "/applications", "/applications/app_")
        # The console's own first query on the university's L3 licence, sent as the page's form sends it.
        l3 = next(
            found
            for found in re.findall(r'href="(/licences/lic_[^"]+)"', consumer.get("/licences").text)
            if "aggregate" in consumer.get(f"{found}/console").text and "L3" in consumer.get(f"{found}/console").text
        )
        console = consumer.get(f"{l3}/console").text
        form = {
            "csrf": CSRF.search(console).group(1),
            "query": html.unescape(re.search(r'<textarea id="query"[^>]*>(.*?)</textarea>', console, re.S).group(1)),
        }
        cases: list[tuple[str, httpx.Client, str, str]] = [
            ("catalogue", anonymous, "GET", "/"),
            ("search 糖尿病", anonymous, "GET", "/?q=糖尿病"),
            ("search, 2 facets", anonymous, "GET", "/?grade=L3&grade=L4&pricing=one_time"),
            ("product (anonymous)", anonymous, "GET", "/products/t2d-ehr-cohort"),
            ("product (consumer)", consumer, "GET", "/products/t2d-ehr-cohort"),
            ("eligibility fragment", consumer, "GET", "/products/t2d-ehr-cohort/eligibility"),
            ("application form", consumer, "GET", "/products/hypertension-claims/apply"),
            ("register", anonymous, "GET", "/register"),
            ("sign-in", anonymous, "GET", "/signin"),
            ("API docs", anonymous, "GET", "/docs"),
            ("applications", consumer, "GET", "/applications"),
            ("licences", consumer, "GET", "/licences"),
            ("licence + usage chart", consumer, "GET", licence),
            ("query console", consumer, "GET", f"{licence}/console"),
            ("review queue", reviewer, "GET", "/reviews"),
            ("provider products", provider, "GET", "/provider"),
            ("provider releases", provider, "GET", product_id),
            ("payments + statement", provider, "GET", "/provider/payments"),
            ("application", consumer, "GET", application),
            ("quality report", anonymous, "GET", "/products/chronic-lab-results/releases/2025.1/quality"),
            ("curator queue", curator, "GET", "/reviews"),
            ("console answer (L3)", consumer, "POST", f"{l3}/console"),
        ]
        for _, client, method, path in cases:  # warm: templates compiled, pools open
            sent = {"data": form, "headers": {"HX-Request": "true"}} if method == "POST" else {}
            assert client.request(method, path, **sent).status_code == 200, path
        timings: dict[str, list[float]] = {name: [] for name, *_ in cases}
        order = list(range(len(cases))) * args.reps
        random.shuffle(order)
        for i in order:
            name, client, method, path = cases[i]
            sent = {"data": form, "headers": {"HX-Request": "true"}} if method == "POST" else {}
            started = time.perf_counter()
            answer = client.request(method, path, **sent)
            timings[name].append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
        print(f"pages on the demo, one `lode serve` process on SQLite, {args.reps} fetches each, shuffled")
        print(f"{'page':<24}{'p50 ms':>9}{'p95 ms':>9}  under {TARGET_MS:.0f} ms p50")
        worst = 0.0
        for name, values in timings.items():
            values.sort()
            p50 = statistics.median(values)
            p95 = values[int(0.95 * (len(values) - 1))]
            worst = max(worst, p50)
            print(f"{name:<24}{p50:>9.1f}{p95:>9.1f}  {'yes' if p50 < TARGET_MS else 'NO'}")
        print(f"slowest p50: {worst:.1f} ms (target < {TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    main()
