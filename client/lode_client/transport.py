"""One request to Lode, sync or async, with the manners of a good client.

* Retries with exponential backoff and jitter on connection errors, 429 and 503, honouring
  ``Retry-After``. A request that may have reached Lode (the connection broke after sending) is
  retried only when repeating it is harmless: a GET, PUT or DELETE, or a POST with its
  ``Idempotency-Key`` — generated once per call and sent unchanged on every retry, so Lode
  answers the retry with the first attempt's result.
* Problems (``application/problem+json``) become the exception for their ``code``
  (``errors.for_problem``), carrying ``detail`` and the ``X-Request-Id``.
* A ``User-Agent`` naming the client's version; timeouts on every request.

Resource methods are written once, as generators that yield ``Call``s and get their answers back
(``drive``): the sync client runs them with plain calls, the async client awaits each, so the two
cannot differ in what they ask.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from lode_client import errors
from lode_client.operations import IDEMPOTENT, OPERATIONS

VERSION = "0.1.0"
USER_AGENT = f"lode-client/{VERSION} (python-httpx/{httpx.__version__})"
RETRY_STATUSES = frozenset({429, 503})
UPLOAD_CHUNK = 1 << 20


@dataclass
class Call:
    """One operation: its id (``operations.OPERATIONS``), path values, query, body and answer type."""

    op: str
    path: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    json: Any = None
    upload: Path | None = None  # a file streamed as the body
    content_type: str | None = None
    into: Any = None  # a msgspec type to decode the answer into; None: JSON as Python objects
    accept: str | None = None
    raw: bool = False  # the response itself (bytes of a CSV or Parquet answer)

    @property
    def method(self) -> str:
        return OPERATIONS[self.op][0]

    @property
    def url(self) -> str:
        template = OPERATIONS[self.op][1]
        return template.format(**{k: quote(v, safe="") for k, v in self.path.items()})


@dataclass
class Retry:
    attempts: int = 4  # retries after the first try
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        after = response.headers.get("retry-after") if response is not None else None
        if after:
            try:
                seconds = float(after)
                if math.isfinite(seconds):
                    return min(max(seconds, 0.0), self.cap)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(after)
                    return min(max(when.timestamp() - time.time(), 0.0), self.cap)
                except (TypeError, ValueError):
                    pass  # neither seconds nor an HTTP date: back off as if it were not there
        return min(self.base * 2**attempt, self.cap) * (0.5 + random.random() / 2)


class Attempts:
    """One call's tries: its Idempotency-Key (the same on every try), and whether and when to retry."""

    def __init__(self, call: Call, retry: Retry) -> None:
        self.call = call
        self.retry = retry
        self.key = str(uuid.uuid4()) if call.op in IDEMPOTENT else None
        self.attempt = 0

    def request(self) -> dict[str, Any]:
        headers = _headers(self.call, self.key)
        if self.call.json is not None:
            headers["Content-Type"] = "application/json"
        return {"params": _clean(self.call.params), "headers": headers}

    def done(self, response: httpx.Response) -> bool:
        return response.status_code not in RETRY_STATUSES or self.attempt >= self.retry.attempts

    def after(self, response: httpx.Response | None) -> float:
        """The pause before the next try."""
        delay = self.retry.delay(self.attempt, response)
        self.attempt += 1
        return delay

    def after_error(self, exc: httpx.TransportError) -> float:
        """The pause before trying again after ``exc``; raises when that would be unsafe or futile."""
        if self.attempt >= self.retry.attempts or not (_repeatable(self.call, self.key) or _never_sent(exc)):
            raise errors.TransportError(f"{self.call.method} {self.call.url}: {exc!r}") from exc
        return self.after(None)


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or value == [] or value == ():
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        out[key] = value
    return out or None


def _headers(call: Call, idempotency_key: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    if call.accept:
        headers["Accept"] = call.accept
    if call.content_type:
        headers["Content-Type"] = call.content_type
    return headers


def _repeatable(call: Call, idempotency_key: str | None) -> bool:
    return call.method in ("GET", "PUT", "DELETE") or idempotency_key is not None


def _never_sent(exc: Exception) -> bool:
    """The request cannot have reached Lode: any call may be tried again."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def decode(call: Call, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text[:500] or response.reason_phrase}
        if not isinstance(problem, dict):
            problem = {"detail": str(problem)}
        raise errors.for_problem(response.status_code, problem, response.headers.get("x-request-id"))
    if call.raw:
        return response
    if not response.content:
        return None
    if call.into is not None:
        return msgspec.json.decode(response.content, type=call.into)
    return msgspec.json.decode(response.content)


def _encode(body: Any) -> bytes:
    return msgspec.json.encode(body)


class SyncTransport:
    def __init__(self, http: httpx.Client, retry: Retry, sleep: Callable[[float], None] = time.sleep) -> None:
        self.http = http
        self.retry = retry
        self.sleep = sleep

    def run(self, call: Call) -> Any:
        attempts = Attempts(call, self.retry)
        while True:
            try:
                response = self.http.request(call.method, call.url, content=self._body(call), **attempts.request())
            except httpx.TransportError as exc:
                self.sleep(attempts.after_error(exc))
            else:
                if attempts.done(response):
                    return decode(call, response)
                self.sleep(attempts.after(response))

    def _body(self, call: Call) -> Any:
        if call.upload is not None:
            return _file_chunks(call.upload)
        return _encode(call.json) if call.json is not None else None

    def drive(self, steps: Generator[Call, Any, Any]) -> Any:
        try:
            call = next(steps)
            while True:
                call = steps.send(self.run(call))
        except StopIteration as done:
            return done.value


class AsyncTransport:
    def __init__(self, http: httpx.AsyncClient, retry: Retry) -> None:
        self.http = http
        self.retry = retry

    async def run(self, call: Call) -> Any:
        attempts = Attempts(call, self.retry)
        while True:
            try:
                response = await self.http.request(
                    call.method, call.url, content=self._body(call), **attempts.request()
                )
            except httpx.TransportError as exc:
                await asyncio.sleep(attempts.after_error(exc))
            else:
                if attempts.done(response):
                    return decode(call, response)
                await asyncio.sleep(attempts.after(response))

    def _body(self, call: Call) -> Any:
        if call.upload is not None:
            return _afile_chunks(call.upload)
        return _encode(call.json) if call.json is not None else None

    async def drive(self, steps: Generator[Call, Any, Any]) -> Any:
        try:
            call = next(steps)
            while True:
                call = steps.send(await self.run(call))
        except StopIteration as done:
            return done.value


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(UPLOAD_CHUNK):
            yield chunk


async def _afile_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, UPLOAD_CHUNK):
            yield chunk
