"""The worker: delivers outbox events and runs periodic jobs.

It runs inside ``lode serve`` by default and as ``lode worker`` in its own process; any number of
workers may run against one PostgreSQL database (claims skip each other's locked rows). ``stop``
lets the event in hand finish, so a graceful shutdown never abandons a half-run handler; a hard
crash is covered by the lease in ``outbox.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import outbox

log = logging.getLogger("lode.worker")


class Worker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: outbox.Registry,
        services: dict[str, Any] | None = None,
        *,
        poll_interval: float = 0.5,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.services = services or {}
        self.poll_interval = poll_interval
        self._stopping = asyncio.Event()
        self._jobs_ready = False

    def context(self, event: outbox.OutboxEvent | None = None) -> outbox.JobContext:
        return outbox.JobContext(
            sessions=self.sessions,
            services=self.services,
            event_id=event.id if event else None,
            attempt=event.attempts if event else 0,
        )

    async def run(self) -> None:
        log.info("worker started", extra={"handlers": sorted(self.registry.handlers)})
        while not self._stopping.is_set():
            try:
                busy = await self.run_once()
            except Exception:  # keep the loop alive through a database blip; the cause is logged
                log.exception("worker cycle failed")
                busy = 0
            if not busy:
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_interval)
                except TimeoutError:
                    pass
        log.info("worker stopped")

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self, *, jobs: bool = True) -> int:
        """Deliver every due event (and run due jobs); return how many things were done."""
        done = 0
        if jobs:
            done += await self.run_due_jobs()
        while not self._stopping.is_set():
            batch = await outbox.claim(self.sessions)
            if not batch:
                break
            for event in batch:
                await self.deliver(event)
                done += 1
        return done

    async def deliver(self, event: outbox.OutboxEvent) -> None:
        handler = self.registry.handlers.get(event.name)
        if handler is None:
            outcome = await outbox.mark_failed(self.sessions, event, f"no handler registered for {event.name!r}")
            log.error("outbox event without handler", extra={"event_id": event.id, "outcome": outcome})
            return
        try:
            await handler(self.context(event), event.payload)
        except Exception as exc:
            outcome = await outbox.mark_failed(self.sessions, event, f"{type(exc).__name__}: {exc}")
            expected = isinstance(exc, outbox.RetryLater)
            log.log(
                logging.INFO if expected else logging.WARNING,
                "outbox handler deferred" if expected else "outbox handler failed",
                exc_info=not expected,
                extra={"event_id": event.id, "event": event.name, "attempt": event.attempts, "outcome": outcome},
            )
            return
        await outbox.mark_delivered(self.sessions, event)

    async def run_due_jobs(self) -> int:
        if not self.registry.jobs:
            return 0
        if not self._jobs_ready:
            try:
                await outbox.ensure_jobs(self.sessions, list(self.registry.jobs))
            except IntegrityError:  # another worker created them at the same moment
                pass
            self._jobs_ready = True
        ran = 0
        for name, (interval, job) in self.registry.jobs.items():
            if not await outbox.claim_job(self.sessions, name, interval):
                continue
            error = None
            try:
                await job(self.context())
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("periodic job failed", extra={"job": name})
            await outbox.finish_job(self.sessions, name, error)
            ran += 1
        return ran
