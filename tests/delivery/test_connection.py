"""The client's connection, against a real server (uvicorn on a free port, in this event loop): a
download is metered and audited exactly once however it ends, and a query is stopped when its
client goes away. The in-process client cannot disconnect half way, so these use raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from catalog.audit import AuditEvent
from catalog.metering.models import Reservation, UsageCounter, UsageEvent
from tests.delivery.conftest import visits_parquet
from tests.support import Party

pytestmark = pytest.mark.asyncio

BIG_ROWS = 400_000  # ≈ 14 MB: far more than the socket buffers between server and client hold


class Served:
    def __init__(self, server: uvicorn.Server, port: int) -> None:
        self.server = server
        self.port = port

    async def connect(self, *, receive_buffer: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket.socket()
        if receive_buffer is not None:  # before connect, so the window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        return await asyncio.open_connection(sock=sock, limit=16 * 1024)


@pytest.fixture(name="served")
async def fx_served(app, client) -> AsyncIterator[Served]:
    """The app (its lifespan run by ``client``) served by uvicorn on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started)
    try:
        yield Served(server, sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task


async def send_request(
    writer: asyncio.StreamWriter, method: str, path: str, party: Party, body: dict[str, Any] | None = None
) -> None:
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", "Host: lode.test", f"Authorization: Bearer {party.key}"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    await writer.drain()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines if line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}


async def until(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.01)


async def wait_for(probe: Any, timeout_s: float = 30.0) -> Any:
    """``probe()``'s first truthy answer, polled: settlement follows the response, it is not part of it."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await probe()
        if answer or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


async def reservations(app, licence_id: str) -> list[Reservation]:
    async with app.state.sessions() as s:
        stmt = select(Reservation).where(Reservation.licence_id == licence_id).order_by(Reservation.id)
        return list((await s.execute(stmt)).scalars())


async def all_closed(app, licence_id: str, n: int) -> list[Reservation] | None:
    found = await reservations(app, licence_id)
    return found if len(found) == n and all(r.status != "open" for r in found) else None


async def usage(app, licence_id: str, dimension: str) -> list[int]:
    async with app.state.sessions() as s:
        stmt = select(UsageEvent.quantity).where(UsageEvent.licence_id == licence_id, UsageEvent.dimension == dimension)
        return sorted((await s.execute(stmt)).scalars())


async def audited(app, licence_id: str, action: str) -> list[dict[str, Any]]:
    async with app.state.sessions() as s:
        stmt = select(AuditEvent.data).where(AuditEvent.subject_id == licence_id, AuditEvent.action == action)
        return [json.loads(d) for d in (await s.execute(stmt.order_by(AuditEvent.seq))).scalars()]


async def big_download_licence(delivery) -> tuple[dict[str, Any], Party, int]:
    """A licence on an L1 product whose file is ≈ 14 MB, with bytes capped (so the counter moves)."""
    owner = await delivery.provider()
    content = visits_parquet(BIG_ROWS, persons="each")
    plan = {"name": "Capped", "kind": "free", "currency": "CNY", "caps": {"bytes_downloaded": 10**12}}
    product = await delivery.published(owner, "L1", plans=[plan], file=("visits.parquet", content))
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    return licence, consumer["analyst"], len(content)


class TestDownloads:
    async def test_a_client_that_leaves_half_way_is_metered_and_audited_once(self, app, served, delivery) -> None:
        licence, analyst, size = await big_download_licence(delivery)
        reader, writer = await served.connect(receive_buffer=16 * 1024)
        await send_request(writer, "GET", f"/v1/licences/{licence['id']}/files/visits.parquet", analyst)
        status, headers = await read_head(reader)
        assert status == 200 and int(headers["content-length"]) == size
        read = len(await reader.readexactly(size // 8))
        writer.close()

        (reservation,) = await wait_for(lambda: all_closed(app, licence["id"], 1))
        assert reservation.status == "settled"
        (sent,) = await usage(app, licence["id"], "bytes_downloaded")
        # Bytes the server took for the socket: at least what was read, never the whole file.
        assert read <= sent < size
        (event,) = await audited(app, licence["id"], "licence.downloaded")
        assert event["bytes"] == sent and event["complete"] is False and event["range"] == [0, size - 1]
        async with app.state.sessions() as s:
            assert (await s.execute(select(UsageCounter.used))).scalar_one() == sent

    async def test_two_complete_downloads_on_one_keep_alive_connection(self, app, served, delivery) -> None:
        licence, analyst, size = await big_download_licence(delivery)
        reader, writer = await served.connect()
        path = f"/v1/licences/{licence['id']}/files/visits.parquet"
        for _ in range(2):
            await send_request(writer, "GET", path, analyst)
            status, headers = await read_head(reader)
            assert status == 200 and headers.get("connection") != "close"
            assert len(await reader.readexactly(int(headers["content-length"]))) == size
        writer.close()  # as curl does, the moment the last byte is in

        closed = await wait_for(lambda: all_closed(app, licence["id"], 2))
        assert [r.status for r in closed] == ["settled", "settled"]
        assert await usage(app, licence["id"], "bytes_downloaded") == [size, size]
        events = await audited(app, licence["id"], "licence.downloaded")
        assert [(e["bytes"], e["complete"]) for e in events] == [(size, True), (size, True)]

    async def test_a_download_cut_by_a_server_shutdown_is_metered_and_audited_once(self, app, served, delivery) -> None:
        licence, analyst, size = await big_download_licence(delivery)
        reader, writer = await served.connect(receive_buffer=16 * 1024)
        await send_request(writer, "GET", f"/v1/licences/{licence['id']}/files/visits.parquet", analyst)
        await read_head(reader)
        read = len(await reader.readexactly(size // 8))
        served.server.should_exit = True  # the client stops reading: after 1 s uvicorn cancels the response
        await until(lambda: all(t.done() for t in served.server.server_state.tasks))
        writer.close()

        (reservation,) = await wait_for(lambda: all_closed(app, licence["id"], 1))
        assert reservation.status == "settled"
        (sent,) = await usage(app, licence["id"], "bytes_downloaded")
        assert read <= sent < size
        assert [e["bytes"] for e in await audited(app, licence["id"], "licence.downloaded")] == [sent]


def busy_seconds(during: float) -> float:
    """CPU time this process spends in ``during`` seconds of wall time (every thread's)."""
    started = time.process_time()
    time.sleep(during)
    return time.process_time() - started


class TestQueries:
    async def test_a_query_is_stopped_when_its_client_goes_away(self, app, served, delivery) -> None:
        """A 1M-row grouping that takes DuckDB seconds: the client leaves after 0.3 s; the query is
        interrupted, its reservation given back, nothing metered or audited as answered."""
        owner = await delivery.provider()
        product = await delivery.published(owner, "L1", file=("visits.parquet", visits_parquet(1_000_000)))
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        slow = {
            "table": "visits",
            "group_by": ["person_id"],
            "aggregates": [{"fn": "count_distinct", "field": f} for f in ("age", "hba1c", "district", "sex")],
        }
        _, writer = await served.connect()
        await send_request(writer, "POST", f"/v1/licences/{licence['id']}/query", consumer["analyst"], slow)
        await asyncio.sleep(0.3)
        writer.close()

        (reservation,) = await wait_for(lambda: all_closed(app, licence["id"], 1))
        assert reservation.status == "released"
        assert await usage(app, licence["id"], "queries") == []
        assert await audited(app, licence["id"], "licence.queried") == []
        # DuckDB was interrupted, not left to finish in its thread: the process is idle.
        assert await asyncio.to_thread(busy_seconds, 1.0) < 0.3

    async def test_a_query_whose_client_stays_is_answered(self, app, served, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L1")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        reader, writer = await served.connect()
        body = {"table": "visits", "select": ["age"], "limit": 5}
        await send_request(writer, "POST", f"/v1/licences/{licence['id']}/query", consumer["analyst"], body)
        status, headers = await read_head(reader)
        answer = json.loads(await reader.readexactly(int(headers["content-length"])))
        writer.close()
        assert status == 200 and len(answer["rows"]) == 5 and answer["truncated"] is True
        assert await usage(app, licence["id"], "rows_returned") == [5]
