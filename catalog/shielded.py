"""Work that must run to its end even when the request that started it is cancelled.

Delivery's second phase — settle the usage, audit it, give back the rest of the reservation — is
the one step that may never be lost, and it runs exactly when a request is most likely to be
cancelled: the client has just gone away. Litestar's streaming response cancels the body's task on
``http.disconnect``, its anyio cancel scope cancels every later ``await`` inside that task again,
and a server shutting down cancels whatever is still running. A coroutine passed to ``run`` lives
in a task of its own, which none of those cancellations reach: the caller waits for it when it
can, and when the caller is cancelled the task goes on alone. The app's shutdown calls ``drain``
before it disposes of the engine, so a task still running then finishes against a live database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("lode.shielded")

_RUNNING: set[asyncio.Task[Any]] = set()  # the event loop keeps only weak references to tasks


async def run(work: Coroutine[Any, Any, T], *, what: str) -> T:
    """Run ``work`` in a task the caller's cancellation cannot reach, and answer its result.

    ``what`` names the work in the log line written if it fails after its caller stopped waiting.
    """
    task = asyncio.get_running_loop().create_task(work, name=f"lode-shielded: {what}")
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_failure)  # nobody is left to see it fail
        raise


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("shielded work failed", exc_info=task.exception(), extra={"task": task.get_name()})


async def drain(timeout_s: float = 30.0) -> None:
    """Wait for every task ``run`` started (and any they start) to finish, up to ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending := {t for t in _RUNNING if t.get_loop() is loop}:
        left = deadline - loop.time()
        if left <= 0:
            log.error("shielded work still running at shutdown", extra={"tasks": sorted(t.get_name() for t in pending)})
            return
        await asyncio.wait(pending, timeout=left)
