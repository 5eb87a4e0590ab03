"""Structured logs and the request id that ties a response, its log lines and a problem together.

Every line names the node (``LODE_NODE_NAME``) and the process that wrote it: with several API
nodes and workers shipping to one log store, a line must say where it came from, and with
``lode serve --workers N`` several processes share one node name.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# uvicorn adds ``color_message``, the message again with terminal colours: noise in a JSON line.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}
log = logging.getLogger("lode.http")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy to ship, easy to grep by request_id, node or pid."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "node": self.node,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, node: str) -> None:
    """JSON lines on stderr, each naming ``node``; idempotent (the level and node are updated)."""
    root = logging.getLogger()
    ours = [h.formatter for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    if ours:
        for formatter in ours:
            formatter.node = node
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node))
    root.handlers = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def request_id(scope: Scope) -> str:
    """The request's id: the caller's ``X-Request-ID`` if it is sane, else a new one; made once."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        incoming = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), "")
        state["request_id"] = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    return state["request_id"]


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """App-wide ``before_send`` hook, so even a 404 for an unknown path carries the id."""
    if message["type"] == "http.response.start" and scope["type"] == "http":
        MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id(scope)


class AccessLogMiddleware(ASGIMiddleware):
    """One log line per request, with who called, the outcome and the time taken."""

    scopes = ("http",)  # type: ignore[assignment]

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, send_and_note)
        finally:
            user = scope.get("user")
            log.info(
                "request",
                extra={
                    "request_id": request_id(scope),
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "org_id": getattr(user, "org_id", None),
                    "user_id": getattr(user, "user_id", None),
                },
            )
