"""Notification fixtures: webhook receivers on local HTTP servers, and the app's dispatcher."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.access.conftest import Circulation
from tests.conftest import make_settings
from tests.support import Party, expect

# (the try's number, from 1) -> (status to answer, seconds to wait first)
Behaviour = Callable[[int], tuple[int, float]]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A webhook receiver: records every request, answers as ``behaviour`` says."""

    behaviour: Behaviour = lambda n: (204, 0.0)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                )
                receiver.arrived.set()
                status, wait = receiver.behaviour(len(receiver.received))
                if wait:
                    time.sleep(wait)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up waiting
                    pass

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

    def types(self) -> list[str]:
        import json

        return [json.loads(r.body)["type"] for r in self.received]


@pytest.fixture(name="receivers")
def fx_receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(behaviour: Behaviour | None = None) -> Receiver:
        receiver = Receiver(behaviour) if behaviour else Receiver()
        made.append(receiver.start())
        return receiver

    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture(name="settings")
def fx_settings(database: str, tmp_path: Path):
    # Receivers listen on loopback, which only development allows by default.
    return make_settings(tmp_path, database, LODE_WEBHOOK_ALLOW_PRIVATE="1", LODE_WEBHOOK_TIMEOUT_S="1")


@pytest.fixture(name="dispatcher")
def fx_dispatcher(app):
    return app.state.dispatcher


@pytest.fixture(name="circulation")
def fx_circulation(client, actors, catalogue) -> Circulation:
    return Circulation(client, actors, catalogue)


async def register(client, admin: Party, url: str, **body: Any) -> dict[str, Any]:
    return expect(
        await client.post(f"/v1/orgs/{admin.org_id}/webhooks", json={"url": url, **body}, headers=admin.headers), 201
    )
