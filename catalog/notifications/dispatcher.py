"""The webhook dispatcher: sends due deliveries, many at once, beside the outbox worker.

It keeps up to ``concurrency`` requests in flight and never two to one endpoint, so a receiver that
hangs holds one slot until its timeout and every other organisation's deliveries go on meanwhile.
Each try is the transfers shape: a short transaction claims (and reads what the try needs), the
HTTP call runs with no connection held, a short transaction records the answer. A worker killed
mid-try leaves its claim to lapse after one lease; another worker then sends the delivery again,
with the same ``webhook-id``, which is how a receiver recognises a repeat (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog.db import ensure_no_connection_held, utcnow
from catalog.notifications import addresses, deliveries, signing
from catalog.notifications.deliveries import Claimed, Outcome

log = logging.getLogger("lode.webhooks")
ERROR_BODY_BYTES = 512
MAX_PAUSE_S = 30.0  # the longest wait between claims while they keep failing (as the worker's)


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        pepper: bytes,
        timeout_s: float,
        allow_private: bool,
        concurrency: int = 16,
        poll_interval: float = 0.5,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.pepper = pepper
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.clock = clock  # when deliveries fall due; tests move it to the next retry
        # A claim outlives its try by a margin, so only a dead or stalled worker's claim lapses.
        self.lease = timedelta(seconds=timeout_s * 2 + 30)
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # by endpoint
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    started = await self._start_due()
                except Exception as exc:  # a database blip must not end the loop
                    failures += 1
                    started = 0
                    # The cause once, with its traceback, then a line per failure: an outage fails
                    # every claim of every process, and a traceback twice a second buries the log.
                    if failures == 1:
                        log.exception("webhook claim failed")
                    else:
                        log.warning(
                            "webhook claim failed again", extra={"failures": failures, "error": repr(exc)[:300]}
                        )
                else:
                    if failures:
                        log.info("webhook claims recovered", extra={"failures": failures})
                    failures = 0
                if started == 0 or len(self._in_flight) >= self.concurrency:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=self.pause(failures))
                    except TimeoutError:
                        pass
            if self._in_flight:  # stopped: the tries in hand finish (each is bounded by the timeout)
                await asyncio.wait(list(self._in_flight.values()))
        except asyncio.CancelledError:
            # Cancelled, not stopped: the tries in hand die with the loop, as with a killed process;
            # their claims lapse and another worker sends them again.
            for task in self._in_flight.values():
                task.cancel()
            raise
        finally:
            await self.close()

    def pause(self, failures: int) -> float:
        """The poll interval, doubled after each failed claim in a row up to MAX_PAUSE_S, so the
        dispatchers of N workers do not hammer a database that is coming back."""
        return min(self.poll_interval * 2 ** min(failures, 16), max(MAX_PAUSE_S, self.poll_interval))

    async def run_once(self) -> int:
        """Send every delivery due now and wait for the answers; how many tries were made."""
        tries = 0
        while True:
            claimed = await self._claim(self.concurrency - len(self._in_flight))
            if not claimed:
                return tries
            await asyncio.gather(*(self.attempt(c) for c in claimed))
            tries += len(claimed)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _claim(self, limit: int) -> list[Claimed]:
        if limit <= 0:
            return []
        return await deliveries.claim(
            self.sessions,
            limit=limit,
            busy=list(self._in_flight),
            lease=self.lease,
            at=self.clock(),
            pepper=self.pepper,
        )

    async def _start_due(self) -> int:
        claimed = await self._claim(self.concurrency - len(self._in_flight))
        for c in claimed:
            task = asyncio.create_task(self.attempt(c), name=f"webhook-{c.delivery_id}")
            self._in_flight[c.endpoint_id] = task
            task.add_done_callback(lambda _t, e=c.endpoint_id: self._done(e))
        return len(claimed)

    def _done(self, endpoint_id: str) -> None:
        self._in_flight.pop(endpoint_id, None)
        self._wake.set()  # a slot is free: look for more at once

    async def attempt(self, claimed: Claimed) -> None:
        outcome = await self.send(claimed)
        try:
            status = await deliveries.record(self.sessions, claimed, outcome, self.clock())
        except Exception:
            log.exception("recording a webhook try failed", extra={"delivery_id": claimed.delivery_id})
            return  # the claim lapses and the delivery goes again
        log.log(
            logging.INFO if outcome.ok else logging.WARNING,
            "webhook try",
            extra={
                "delivery_id": claimed.delivery_id,
                "endpoint_id": claimed.endpoint_id,
                "attempt": claimed.attempt,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "outcome": status,
            },
        )

    async def send(self, claimed: Claimed) -> Outcome:
        ensure_no_connection_held("a webhook delivery")
        started = time.monotonic()

        def outcome(status_code: int | None, error: str | None) -> Outcome:
            return Outcome(status_code=status_code, error=error, duration_ms=int((time.monotonic() - started) * 1000))

        if not claimed.secrets:
            return outcome(None, "secret_unreadable: rotate the endpoint's secret (LODE_KEY_PEPPER changed)")
        try:
            async with asyncio.timeout(self.timeout_s):  # the whole try, the name's lookup included
                address = await addresses.checked_address(claimed.url, allow_private=self.allow_private)
                url, host, extensions = addresses.pinned(claimed.url, address)
                signed = signing.headers(claimed.secrets, claimed.msg_id, int(time.time()), claimed.body)
                async with self.client().stream(
                    "POST", url, content=claimed.body, headers={**signed, **host}, extensions=extensions
                ) as response:
                    if 200 <= response.status_code < 300:
                        return outcome(response.status_code, None)
                    text = await _head(response)
                    return outcome(response.status_code, f"HTTP {response.status_code}: {text}".strip())
        except addresses.Refused as exc:
            return outcome(None, f"{exc.code}: {exc}")
        except TimeoutError:
            return outcome(None, f"timed out after {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return outcome(None, f"{type(exc).__name__}: {exc}"[:500])

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                follow_redirects=False,  # a redirect could point anywhere; it counts as a failure
                # No connection is kept for reuse: a pinned request names the address, not the host, and a
                # kept connection to that address could carry another host's delivery over a TLS
                # session checked for the first (one address, several tenants, as behind a CDN).
                limits=httpx.Limits(max_connections=self.concurrency * 2, max_keepalive_connections=0),
                trust_env=False,  # no proxy from the environment between Lode and its receivers
            )
        return self._client


async def _head(response: httpx.Response) -> str:
    chunks = b""
    async for chunk in response.aiter_raw():
        chunks += chunk
        if len(chunks) >= ERROR_BODY_BYTES:
            break
    return chunks[:ERROR_BODY_BYTES].decode("utf-8", "replace")
