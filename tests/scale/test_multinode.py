"""Many nodes: two ``lode serve`` and two ``lode worker`` processes on one PostgreSQL database and
one object store, driven through both API nodes at once.

Each process is a real subprocess on a real port, as in production behind a load balancer: nothing
is shared between them but the database and the store. With ``LODE_TEST_S3`` set the store is an
S3 bucket and each process has its own ``LODE_DATA_DIR``, as each machine would: the secrets reach
every node explicitly (``LODE_KEY_PEPPER``, ``LODE_NOISE_SECRET``, as production requires), and
nothing the run needs may pass through one machine's folder (no release file lands in any, only
DuckDB's scratch under ``objects/tmp``). Without it the store is the local folder, so the four
processes share one ``LODE_DATA_DIR``: that folder *is* the store, and state leaking through it
would not show — the S3 run is the one that proves the nodes share nothing else.

Concurrent queries through both nodes on one capped licence and one ε budget never pass the cap or
the budget, and every event the run produced reaches its webhook receiver exactly once. Each outbox
event is marked delivered by exactly one worker and each webhook try made by exactly one, read
from the workers' own log lines (at DEBUG, where ``catalog/outbox.py`` names each event it marks),
and both workers took a share of each: the work really is split, not done by whichever won a race.

PostgreSQL only (several processes on one SQLite file are ``lode serve --workers N`` on one machine,
tested in tests/test_cli.py): skipped without ``LODE_TEST_PG_URL``, always run in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import make_settings, truncate_all
from tests.delivery.conftest import Delivery
from tests.support import Actors, Catalogue, Party, expect

PG_URL = os.environ.get("LODE_TEST_PG_URL", "").strip()
S3_ON = os.environ.get("LODE_TEST_S3", "").strip().lower() not in ("", "0", "false", "no")  # as tests/conftest.py
LODE = [sys.executable, "-m", "catalog.cli"]
ROOT = Path(__file__).resolve().parents[2]
API_NODES = ("api-a", "api-b")
WORKER_NODES = ("worker-a", "worker-b")
ROWS_CAP = 100  # rows_returned of the capped licence; each query asks for 10
EPSILON_TOTAL = 3.0  # L5's budget per consumer and product; each query spends 0.5
CONCURRENT = 40  # queries on each licence, half through each API node
REPORTS = 8  # usage reports, one outbox event each, one at a time

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="the multi-node test needs LODE_TEST_PG_URL (it always runs in CI)"),
]


@dataclass
class Receiver:
    """A webhook receiver: one path per organisation; records (path, webhook-id, type) of each request."""

    received: list[tuple[str, str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def start(self) -> Receiver:
        receiver = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with lock:
                    receiver.received.append((self.path, self.headers["webhook-id"], json.loads(body)["type"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Cluster:
    urls: list[str]  # the API nodes, in API_NODES order
    dsn: str  # the database, for asyncpg
    operator: Party
    logs: dict[str, Path]  # each process's stderr, by node name
    processes: dict[str, subprocess.Popen[bytes]]
    data_dirs: dict[str, Path]  # each process's LODE_DATA_DIR: one shared folder unless S3 is the store

    def lines(self, node: str) -> list[dict[str, Any]]:
        """The node's JSON log lines so far (stderr is line-buffered: every line is whole)."""
        out = []
        for line in self.logs[node].read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([*LODE, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The object store every node shares: the data directory's folder (one machine here), or a
    fresh bucket on the tests' moto S3 server (``tests/conftest.py``) when ``LODE_TEST_S3`` is set."""
    if not S3_ON:
        return {}
    from tests.moto_server import CREDENTIALS, store_env

    return {**CREDENTIALS, **store_env(request.getfixturevalue("moto"), request.getfixturevalue("bucket"))}


@pytest.fixture(name="receiver")
def fx_receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(name="cluster")
def fx_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    url = request.getfixturevalue("pg_ready")  # this test worker's migrated database, emptied here
    asyncio.run(truncate_all(make_settings(tmp_path, url)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LODE_")}
    env.update(
        {
            "LODE_ENV": "development",
            # Without S3, the one store (objects/ holds the release files); with it, the admin's own folder.
            "LODE_DATA_DIR": str(tmp_path / ("admin" if S3_ON else "shared")),
            "LODE_DATABASE_URL": url,
            "LODE_KEY_PEPPER": "multinode-pepper-" + "p" * 40,
            "LODE_NOISE_SECRET": "multinode-noise-" + "n" * 40,
            "LODE_LOG_LEVEL": "INFO",
            "LODE_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on loopback
            "LODE_WORKER_LEASE_S": "5",
            **_storage_env(request),
        }
    )
    _run(["db", "upgrade"], env)
    boot = json.loads(_run(["admin", "bootstrap", "--org", "Lode Operator", "--email", "op@op.test", "--json"], env))
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    data_dirs = {node: tmp_path / node if S3_ON else tmp_path / "shared" for node in (*API_NODES, *WORKER_NODES)}
    urls = []
    try:
        for node in (*API_NODES, *WORKER_NODES):
            logs[node] = tmp_path / f"{node}.log"
            own = {**env, "LODE_NODE_NAME": node, "LODE_DATA_DIR": str(data_dirs[node])}
            if node in API_NODES:
                port = _free_port()
                urls.append(f"http://127.0.0.1:{port}")
                own["LODE_PUBLIC_URL"] = urls[-1]
                args = ["serve", "--port", str(port), "--no-worker"]
            else:
                own["LODE_LOG_LEVEL"] = "DEBUG"  # the line naming each outbox event a worker marks delivered
                args = ["worker"]
            with logs[node].open("wb") as log:
                processes[node] = subprocess.Popen([*LODE, *args], env=own, cwd=ROOT, stdout=log, stderr=log)
        _until_ready(urls, processes)
        yield Cluster(
            urls=urls,
            dsn=url.replace("postgresql+asyncpg://", "postgresql://", 1),
            operator=Party(boot["org_id"], boot["user_id"], boot["api_key"]),
            logs=logs,
            processes=processes,
            data_dirs=data_dirs,
        )
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _until_ready(urls: list[str], processes: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    waiting = list(urls)
    while waiting:
        dead = [node for node, p in processes.items() if p.poll() is not None]
        assert not dead, f"{dead} exited at start"
        assert time.monotonic() < deadline, f"{waiting} never became ready"
        try:
            if httpx.get(f"{waiting[0]}/ready", timeout=2).status_code == 200:
                waiting.pop(0)
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


async def _settled(dsn: str, within: float) -> None:
    """Until nothing is left pending in the outbox or the webhook deliveries."""
    deadline = time.monotonic() + within
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            pending = await conn.fetchval(
                "SELECT (SELECT count(*) FROM outbox_events WHERE status = 'pending')"
                " + (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending')"
            )
            if pending == 0:
                return
            assert time.monotonic() < deadline, f"{pending} events or deliveries still pending after {within} s"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def _by_worker(cluster: Cluster, msg: str, key: str) -> dict[str, list[str]]:
    """The ``key`` of each of the workers' lines saying ``msg``, by worker."""
    return {node: [line[key] for line in cluster.lines(node) if line["msg"] == msg] for node in WORKER_NODES}


def _files(folder: Path) -> list[str]:
    """Every file under ``folder``, as a path relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


CAPPED_PLAN = {"name": "Capped", "kind": "free", "currency": "CNY", "caps": {"rows_returned": ROWS_CAP}}
ROWS = {"table": "visits", "select": ["age"], "limit": 10}
DP = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}], "epsilon": 0.5}


class TestTwoApiNodesAndTwoWorkers:
    async def test_the_cap_and_the_budget_hold_and_every_event_is_delivered_once(
        self, cluster: Cluster, receiver: Receiver
    ) -> None:
        async with (
            httpx.AsyncClient(base_url=cluster.urls[0], timeout=60) as a,
            httpx.AsyncClient(base_url=cluster.urls[1], timeout=60) as b,
        ):
            # Set up through node A, with the webhooks registered through node B.
            actors = Actors(a, app=None, settings=None)  # type: ignore[arg-type]
            actors.operator = cluster.operator
            delivery = Delivery(a, actors, Catalogue(a, actors))
            owner = await delivery.provider()
            consumer = await delivery.consumer()
            paths = {owner.org_id: "/provider", consumer["admin"].org_id: "/consumer"}
            for admin in (owner, consumer["admin"]):
                expect(
                    await b.post(
                        f"/v1/orgs/{admin.org_id}/webhooks",
                        json={"url": receiver.url(paths[admin.org_id])},
                        headers=admin.headers,
                    ),
                    201,
                )
            capped = await delivery.licence_on(
                await delivery.published(owner, "L1", plans=[CAPPED_PLAN]), owner, consumer
            )
            private = await delivery.licence_on(await delivery.published(owner, "L5"), owner, consumer)

            analyst = consumer["analyst"].headers
            asks = [
                (a, b)[i % 2].post(f"/v1/licences/{licence['id']}/query", json=body, headers=analyst)
                for licence, body in ((capped, ROWS), (private, DP))
                for i in range(CONCURRENT)
            ]
            answers = await asyncio.gather(*asks)
            budget = expect(await b.get(f"/v1/licences/{private['id']}/budget", headers=consumer["buyer"].headers), 200)

            # The queries leave one outbox event per licence and hour: too few to show the workers
            # share them. Each usage report adds one, sent once the one before is delivered, so each
            # goes to whichever worker polls next, not all to whichever claims a batch first.
            for i in range(REPORTS):
                usage = {
                    "idempotency_key": f"report-{i}",
                    "licence_id": private["id"],
                    "dimension": "queries",
                    "quantity": 1,
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
                ingested = expect(
                    await (a, b)[i % 2].post("/v1/usage-events", json={"events": [usage]}, headers=owner.headers), 200
                )
                assert ingested["inserted"] == 1
                await _settled(cluster.dsn, within=30)

        on_cap, on_budget = answers[:CONCURRENT], answers[CONCURRENT:]
        assert not [r.text for r in answers if r.status_code >= 500]
        assert Counter(r.status_code for r in on_cap) == {200: ROWS_CAP // 10, 409: CONCURRENT - ROWS_CAP // 10}
        assert {r.json()["code"] for r in on_cap if r.status_code == 409} == {"quota_exceeded"}
        spends = int(EPSILON_TOTAL / DP["epsilon"])
        assert Counter(r.status_code for r in on_budget) == {200: spends, 409: CONCURRENT - spends}
        assert {r.json()["code"] for r in on_budget if r.status_code == 409} == {"budget_exhausted"}
        assert (budget["total"], budget["spent"]) == (EPSILON_TOTAL, EPSILON_TOTAL)

        await _settled(cluster.dsn, within=30)
        conn = await asyncpg.connect(cluster.dsn)
        try:
            used = await conn.fetchval(
                "SELECT used FROM usage_counters WHERE licence_id = $1 AND dimension = 'rows_returned'", capped["id"]
            )
            # Every notice told to an organisation with an endpoint, from when the endpoint existed.
            owed = await conn.fetch(
                "SELECT e.org_id, n.id FROM notices n JOIN notice_recipients r ON r.notice_id = n.id"
                " JOIN webhook_endpoints e ON e.org_id = r.org_id WHERE n.occurred_at >= e.created_at"
            )
            deliveries = await conn.fetch(
                "SELECT d.id, d.status, (SELECT count(*) FROM webhook_attempts t WHERE t.delivery_id = d.id) AS tries"
                " FROM webhook_deliveries d"
            )
            events = await conn.fetch("SELECT id, name, status, attempts FROM outbox_events")
        finally:
            await conn.close()
        assert used == ROWS_CAP

        # Each owed notice reached its organisation's receiver once: none lost, none repeated.
        expected = Counter((paths[org_id], notice_id) for org_id, notice_id in owed)
        got = Counter((path, webhook_id) for path, webhook_id, _ in receiver.received)
        assert got == expected and max(got.values()) == 1
        assert {"usage.cap_near", "budget.low"} <= {kind for _, _, kind in receiver.received}
        assert {(d["status"], d["tries"]) for d in deliveries} == {("delivered", 1)}
        # Each outbox event claimed once, by one worker, and handled.
        assert events and {(e["status"], e["attempts"]) for e in events} == {("delivered", 1)}, events
        # Which worker did it, by the workers' own lines: each event marked and each webhook tried by
        # exactly one of them, and each of them did a share.
        marked = _by_worker(cluster, "outbox event delivered", "event_id")
        assert Counter(i for ids in marked.values() for i in ids) == Counter(e["id"] for e in events)
        assert all(marked.values()), {node: len(ids) for node, ids in marked.items()}
        tried = _by_worker(cluster, "webhook try", "delivery_id")
        assert Counter(i for ids in tried.values() for i in ids) == Counter(d["id"] for d in deliveries)
        assert all(tried.values()), {node: len(ids) for node, ids in tried.items()}

        # The release files are in the store and nowhere else: with S3, no node's own folder holds
        # anything but DuckDB's scratch; without it, the shared folder is the store and holds them.
        kept = {node: _files(folder) for node, folder in cluster.data_dirs.items()}
        if S3_ON:
            assert not [f for files in kept.values() for f in files if not f.startswith("objects/tmp/")], kept
        else:
            assert [f for f in kept[API_NODES[0]] if f.endswith(".parquet") and not f.startswith("objects/tmp/")]

        # Every line of every process names its node; the API nodes ran no worker, the workers did.
        for node in (*API_NODES, *WORKER_NODES):
            lines = cluster.lines(node)
            assert lines and {line["node"] for line in lines} == {node}
        for node in API_NODES:
            lines = cluster.lines(node)
            assert not [line for line in lines if line["msg"] == "worker started"]
            queried = [line for line in lines if line["msg"] == "request" and line["path"].endswith("/query")]
            assert len(queried) == CONCURRENT  # half of each licence's queries went through each node
        for node in WORKER_NODES:
            assert [line for line in cluster.lines(node) if line["msg"] == "worker started"]
        assert "no outbox worker" in cluster.logs[API_NODES[0]].read_text()
        assert all(p.poll() is None for p in cluster.processes.values())
