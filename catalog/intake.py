"""What a request must be before any handler sees it — checked once here, not route by route.

* **No NUL character.** PostgreSQL refuses U+0000 in text and in jsonb, so a ``%00`` in a path or
  query parameter, or a ``\\u0000`` in a JSON string, would travel through validation and fail at
  the database as a 500 — on PostgreSQL only, which is worse. SQLite would store it. Every such
  input is refused as 400 ``validation_error`` naming the field, on both databases alike.
* **No query parameter the route does not take.** A misspelt filter (``?grde=L4``) would otherwise
  be ignored silently and answer as if it were not there. The names a route takes are read from
  Litestar's own parameter model (the handler's and its dependencies', such as ``limit`` and
  ``cursor``), so a new route is covered without writing anything.
* **JSON nested within reason.** msgspec gives up on a document nested ~1,000 deep with a
  RecursionError; that is malformed input, answered as 400 ``malformed_json``.

The middleware runs after authentication (an anonymous caller learns it needs a key first), and
``IntakeRequest`` is the app's request class, so every JSON body is decoded through it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from litestar import Litestar, Request
from litestar.middleware import ASGIMiddleware
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Receive, Scope, Send

from catalog.errors import FieldError, MalformedJson, ValidationFailed

NUL = "\x00"
NUL_ESCAPE = b"\\u0000"  # how a NUL appears in JSON text: raw control characters are not allowed there
NUL_MESSAGE = "contains a NUL character (U+0000), which Lode does not accept"


def declared_query_parameters(app: Litestar) -> dict[int, frozenset[str]]:
    """Each route handler's query parameter names, by the handler's id (handlers live as long as the app)."""
    declared: dict[int, frozenset[str]] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler, model in route.route_handler_map.values():
                declared[id(handler)] = frozenset(p.field_alias for p in model.expected_query_params)
    return declared


class IntakeMiddleware(ASGIMiddleware):
    """Refuses NUL characters in path parameters, query parameters and headers, and query
    parameters the route does not declare."""

    scopes = ("http",)  # type: ignore[assignment]

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        errors = [
            FieldError(name, NUL_MESSAGE)
            for name, value in scope.get("path_params", {}).items()
            if isinstance(value, str) and NUL in value
        ]
        errors += [
            FieldError(name.decode("latin-1"), f"header {NUL_MESSAGE}")
            for name, value in scope.get("headers", ())
            if b"\x00" in value
        ]
        query = scope.get("query_string", b"")
        if query:
            errors += _query_errors(scope, query)
        if errors:
            raise ValidationFailed.of(errors)
        await next_app(scope, receive, send)


def _query_errors(scope: Scope, query: bytes) -> list[FieldError]:
    pairs = parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True)
    handler = scope.get("route_handler")
    declared = scope["litestar_app"].state.query_parameters.get(id(handler)) if handler is not None else None
    errors = []
    for name, value in pairs:
        if NUL in name or NUL in value:
            errors.append(FieldError(name.replace(NUL, "\\u0000"), NUL_MESSAGE))
        elif declared is not None and name not in declared:
            takes = ", ".join(sorted(declared)) or "none"
            errors.append(FieldError(name, f"is not a query parameter of this route (it takes: {takes})"))
    return errors


class IntakeRequest(Request[Any, Any, Any]):
    """The app's request class: a JSON body is refused if nested past the decoder's limit or if a
    string in it (a value or a key) holds a NUL character."""

    async def json(self) -> Any:
        try:
            value = await super().json()
        except RecursionError:
            raise MalformedJson("The request body is nested too deeply to be decoded.") from None
        if might_hold_nul(await self.body()):
            where = nul_field(value)
            if where is not None:
                raise ValidationFailed.field(where, NUL_MESSAGE)
        return value


def might_hold_nul(body: bytes) -> bool:
    """A NUL can only arrive escaped (JSON forbids raw control characters in strings), so a body
    without the escape needs no walk. Most bodies hold no backslash at all, and a one-byte search
    runs at memchr's speed: a few µs on a 1,000-event batch against ~120 µs for the six-byte one
    (bench/intake_bench.py)."""
    return b"\\" in body and NUL_ESCAPE in body


def nul_field(document: Any) -> str | None:
    """The dotted path of the first string holding a NUL in a decoded JSON document, or None.

    Iterative, because the document may be nested as deep as the decoder allowed.
    """
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if NUL in value:
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                if NUL in key:
                    return path or "body"
                stack.append((item, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{i}" if path else str(i)) for i, item in enumerate(value))
    return None
