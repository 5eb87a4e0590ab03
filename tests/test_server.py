"""The protocol `lode serve` runs: a request uvicorn cannot parse is refused as problem+json."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from catalog.server import ProblemH11Protocol

pytestmark = pytest.mark.asyncio


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(name="server")
async def fx_server() -> AsyncIterator[tuple[str, int]]:
    """A real uvicorn on a free loopback port, with Lode's protocol."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=ProblemH11Protocol, lifespan="off", log_level="error"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        await task


async def raw(address: tuple[str, int], request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()  # the server closes the connection after a refusal
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status.encode(), headers, body


async def test_raw_utf8_in_the_request_line_is_a_problem(server) -> None:
    status, headers, body = await raw(server, "GET /v1/products?q=糖尿病 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status.startswith(b"HTTP/1.1 400")
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["code"] == "malformed_request" and problem["status"] == 400
    assert problem["request_id"] == headers["x-request-id"]
    assert "--data-urlencode" in problem["detail"]


async def test_a_malformed_header_is_a_problem(server) -> None:
    status, _, body = await raw(server, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400") and json.loads(body)["code"] == "malformed_request"


async def test_a_well_formed_request_reaches_the_app(server) -> None:
    status, _, body = await raw(
        server, b"GET /v1/products?q=%E7%B3%96 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status.startswith(b"HTTP/1.1 200") and body == b"ok"
