"""Shielded work: it runs to its end whatever happens to the request that started it."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from catalog import shielded

pytestmark = pytest.mark.asyncio


async def slow_append(done: list[str], value: str) -> str:
    await asyncio.sleep(0.05)
    done.append(value)
    return value


async def test_the_caller_gets_the_result() -> None:
    done: list[str] = []
    assert await shielded.run(slow_append(done, "a"), what="test") == "a"
    assert done == ["a"]


async def test_work_outlives_a_cancelled_caller_and_drain_waits_for_it() -> None:
    done: list[str] = []
    caller = asyncio.create_task(shielded.run(slow_append(done, "settled"), what="test"))
    await asyncio.sleep(0)  # the work has started
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == []
    await shielded.drain(timeout_s=5)
    assert done == ["settled"]


async def test_a_cancelled_anyio_scope_cannot_stop_it() -> None:
    """Litestar's streaming response cancels its body's task group when the client goes away; a
    cancelled anyio scope cancels every await inside it, the finally's included."""
    done: list[str] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        finally:
            with pytest.raises(asyncio.CancelledError):
                await shielded.run(slow_append(done, "settled"), what="test")
    await shielded.drain(timeout_s=5)
    assert done == ["settled"]
