"""The worker: delivers outbox events and runs periodic jobs.

It runs inside ``lode serve`` by default and as ``lode worker`` in its own process; any number of
workers may run against one PostgreSQL database (claims skip each other's locked rows). ``stop``
lets the event in hand finish, so a graceful shutdown never abandons a half-run handler; a hard
crash is covered by the lease in ``outbox.py``, which this worker renews every third of a lease
while it holds a batch or a job's run, so the lease can be short.

A worker that stalls past its lease (a frozen process, a database it cannot reach) may find on
waking that another worker has claimed what it held. Its renewal then comes back without it, and
the worker cancels the handler it is running and marks nothing: the marks are conditional on the
claim's token, so the event is delivered, retried or parked by the worker now holding it alone.
What the cancelled handler had already committed stays committed, which is why handlers are
idempotent. The worker also stops a handler once renewals have failed for so long that its lease
may have lapsed, so two workers run the same event at once only while one of them is stalled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import outbox

log = logging.getLogger("lode.worker")
MAX_PAUSE_S = 30.0  # the longest wait between cycles while they keep failing

Renewal = Callable[[], Awaitable[bool]]  # extends a lease; False once the lease is someone else's


class Companion(Protocol):
    """A loop that runs for as long as the worker does (the webhook dispatcher)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class LeaseLost(Exception):
    """What this worker ran is no longer its own: another worker holds the lease now."""


class Worker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: outbox.Registry,
        services: dict[str, Any] | None = None,
        *,
        poll_interval: float = 0.5,
        lease: timedelta = outbox.LEASE,
        companions: Sequence[Companion] = (),
    ) -> None:
        self.sessions = sessions
        self.companions = list(companions)
        self.registry = registry
        self.services = services or {}
        self.poll_interval = poll_interval
        self.lease = lease
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
        beside = [asyncio.create_task(c.run(), name=f"lode-{type(c).__name__.lower()}") for c in self.companions]
        try:
            await self._loop()
        finally:
            for companion in self.companions:
                companion.stop()
            if beside:
                await asyncio.gather(*beside, return_exceptions=True)
        log.info("worker stopped")

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                busy = await self.run_once()
            except Exception as exc:  # keep the loop alive through a database outage
                failures += 1
                busy = 0
                # The cause once, with its traceback; then a line per failure. An outage fails every
                # cycle of every process, and a traceback twice a second from each buries the log.
                if failures == 1:
                    log.exception("worker cycle failed")
                else:
                    log.warning("worker cycle failed again", extra={"failures": failures, "error": repr(exc)[:300]})
            else:
                if failures:
                    log.info("worker cycle recovered", extra={"failures": failures})
                failures = 0
            if not busy:
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.pause(failures))
                except TimeoutError:
                    pass

    def pause(self, failures: int) -> float:
        """Seconds to wait before the next cycle: the poll interval, doubled after each failure in a
        row up to MAX_PAUSE_S, so N processes do not hammer a database that is coming back."""
        return min(self.poll_interval * 2 ** min(failures, 16), max(MAX_PAUSE_S, self.poll_interval))

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self, *, jobs: bool = True) -> int:
        """Deliver every due event (and run due jobs); return how many things were done."""
        done = 0
        if jobs:
            done += await self.run_due_jobs()
        while not self._stopping.is_set():
            batch = await outbox.claim(self.sessions, lease=self.lease)
            if not batch:
                break
            held = _Batch(self, batch[0].lock_token or "")
            for event in batch:
                if not await held.still_held(event.id):
                    continue
                await self.deliver(event, held.renewal(event.id))
                done += 1
        return done

    async def deliver(self, event: outbox.OutboxEvent, renewal: Renewal | None = None) -> None:
        handler = self.registry.handlers.get(event.name)
        if handler is None:
            outcome = await outbox.mark_failed(self.sessions, event, f"no handler registered for {event.name!r}")
            log.error("outbox event without handler", extra={"event_id": event.id, "outcome": outcome})
            return
        if renewal is None:
            renewal = _Batch(self, event.lock_token or "").renewal(event.id)
        try:
            await self._while_leased(handler(self.context(event), event.payload), renewal)
        except LeaseLost:
            log.warning(
                "outbox lease lost mid-handler; the worker holding it now delivers", extra={"event_id": event.id}
            )
            return
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
            await outbox.ensure_jobs(self.sessions, list(self.registry.jobs))
            self._jobs_ready = True
        ran = 0
        for name, (interval, job) in self.registry.jobs.items():
            started = await outbox.claim_job(self.sessions, name, self.lease)
            if started is None:
                continue

            async def renew(name: str = name, started: datetime = started) -> bool:
                return await outbox.renew_job(self.sessions, name, started, self.lease)

            error = None
            try:
                await self._while_leased(job(self.context()), renew)
            except LeaseLost:
                log.warning("periodic job's lease lost mid-run; the worker holding it now runs it", extra={"job": name})
                continue
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("periodic job failed", extra={"job": name})
            await outbox.finish_job(self.sessions, name, started, interval, error)
            ran += 1
        return ran

    async def _while_leased(self, work: Coroutine[Any, Any, None], renew: Renewal) -> None:
        """Run ``work``, renewing its lease every third of a lease until it ends.

        Raises LeaseLost, with the work cancelled, when a renewal finds the lease taken, or when
        renewals have failed until the lease may lapse before the next try.
        """
        loop = asyncio.get_running_loop()
        length = self.lease.total_seconds()
        every = length / 3
        task = asyncio.ensure_future(work)
        confirmed = loop.time()  # the lease lasts at least until confirmed + length
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=every)
                if done:
                    return task.result()
                asked = loop.time()
                try:
                    ours = await renew()
                except Exception:
                    log.warning("lease renewal failed", exc_info=True)
                    ours = loop.time() + every < confirmed + length  # safe until the next try, or not
                else:
                    confirmed = asked if ours else confirmed
                if not ours:
                    task.cancel()
                    await asyncio.wait({task})
                    raise LeaseLost
        finally:
            if not task.done():  # this worker itself was cancelled
                task.cancel()


class _Batch:
    """The events one claim leased under one token, kept leased while the worker goes through them."""

    def __init__(self, worker: Worker, token: str) -> None:
        self.worker = worker
        self.token = token
        self.held: set[str] | None = None  # None: all of the claim, as of its claim
        self.confirmed = asyncio.get_running_loop().time()

    async def renew(self) -> None:
        asked = asyncio.get_running_loop().time()
        self.held = await outbox.renew(self.worker.sessions, self.token, self.worker.lease)
        self.confirmed = asked

    async def still_held(self, event_id: str) -> bool:
        """Is the event still this worker's? Asks the database only when the last renewal is a third of
        a lease old: a worker that stalled between events must not start one it may have lost."""
        if asyncio.get_running_loop().time() - self.confirmed >= self.worker.lease.total_seconds() / 3:
            await self.renew()
        return self.held is None or event_id in self.held

    def renewal(self, event_id: str) -> Renewal:
        async def renew() -> bool:
            await self.renew()
            return self.held is not None and event_id in self.held

        return renew
