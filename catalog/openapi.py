"""Request-body examples in the OpenAPI document.

Each domain keeps its examples in its own ``examples.py``, as ``{name: Example}`` per operation,
and a route names them with ``operation_class=request_examples(examples.X)``. They go on the
request body's media type (``content["application/json"].examples``), where OpenAPI puts examples
of a request and Swagger UI offers them to try. Litestar's ``Body(examples=...)`` would instead
wrap the body's ``$ref`` in an ``allOf`` carrying JSON Schema ``examples``, changing the body's
schema for every client generator and sweep that reads it.

``tests/test_openapi_docs.py`` decodes every example into its route's body struct, so none rots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import Example, Operation, RequestBody


def request_examples(examples: dict[str, Example], base: type[Operation] = Operation) -> type[Operation]:
    """An operation class (``base``, or Litestar's own) whose request body carries ``examples``."""
    if not examples:
        raise ValueError("request_examples needs at least one example")

    @dataclass
    class WithExamples(base):  # type: ignore[valid-type,misc]
        def __post_init__(self) -> None:
            after: Any = getattr(super(), "__post_init__", None)
            if after is not None:
                after()
            if not isinstance(self.request_body, RequestBody):
                raise ValueError(f"{self.operation_id} has examples but takes no request body")
            for media in self.request_body.content.values():
                media.examples = dict(examples)

    WithExamples.__name__ = WithExamples.__qualname__ = f"{base.__name__}WithExamples"
    return WithExamples
