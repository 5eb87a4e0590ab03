"""The client's connection, as delivery sees it: the bytes the server took for it, and whether it
is still there.

Downloads. ``MeteredStream`` is Litestar's ``Stream`` with its body counted at the ASGI level: a
chunk counts as sent once the server's ``send`` for it has returned — the server has taken it for
the socket — unless the client was seen to go away first. Whatever ends the response (the last
chunk; the client going away half way, on which Litestar cancels the task sending the body; the
server shutting down), ``on_end(sent)`` is called exactly once afterwards, and is the service's
settlement, which runs through ``shielded.run`` so that no cancellation stops it. What the count
cannot see: bytes the server took may still sit in its buffers or the kernel's when the client
vanishes. They count, as a web server's "bytes sent" does — at most those buffers' worth more
than the client read.

Queries. ``until_client_leaves`` cancels the work as soon as the server reports that the client
disconnected: a DuckDB query is interrupted (``catalog/sandbox.py``) and the service gives its
reservation back, nothing metered. Neither Litestar nor uvicorn stops a handler whose client left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from litestar import Request
from litestar.response import Stream
from litestar.types import Message, Receive, Scope, Send

from catalog.errors import ClientDisconnected

T = TypeVar("T")


class MeteredStream(Stream):
    def __init__(
        self, content: AsyncGenerator[bytes, None], *, on_end: Callable[[int], Awaitable[None]], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self.on_end = on_end
        self.chunks = content

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return _MeteredResponse(super().to_asgi_response(*args, **kwargs), self.chunks, self.on_end)


class _MeteredResponse:
    """Sends Litestar's streaming response through a ``send`` that counts the body as it goes."""

    def __init__(
        self,
        response: Callable[[Scope, Receive, Send], Awaitable[None]],
        chunks: AsyncGenerator[bytes, None],
        on_end: Callable[[int], Awaitable[None]],
    ) -> None:
        self.response = response
        self.chunks = chunks
        self.on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0
        gone = False

        async def watched_receive() -> Message:
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message

        async def counted_send(message: Message) -> None:
            nonlocal sent
            await send(message)
            # A server may drop a chunk silently once the client is gone (uvicorn does).
            if message["type"] == "http.response.body" and not gone:
                sent += len(message.get("body", b""))

        try:
            await self.response(scope, watched_receive, counted_send)
        finally:
            try:
                await self.on_end(sent)
            finally:
                await self.chunks.aclose()  # the file closes now, not whenever the generator is collected


async def until_client_leaves(request: Request[Any, Any, Any], work: Coroutine[Any, Any, T]) -> T:
    """``work``'s result — or, once the client has disconnected, ``work`` cancelled and 499.

    Only a cancellation the disconnect caused becomes 499; one from the server (shutting down)
    reaches ``work`` too and goes on up as it came.
    """
    task = asyncio.ensure_future(work)

    async def watch() -> bool:
        try:
            # The body is read already, so the next message the server has for this request is
            # the disconnect (uvicorn also sends one once the response is complete, by then unheard).
            while (await request.receive())["type"] != "http.disconnect":
                pass
        except Exception:  # a server that cannot tell us: the work runs to its end, as it always did
            return False
        return task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        server_cancelled = current is not None and current.cancelling() > 0
        if not server_cancelled and watcher.done() and not watcher.cancelled() and watcher.result():
            raise ClientDisconnected() from None
        raise
    finally:
        watcher.cancel()
