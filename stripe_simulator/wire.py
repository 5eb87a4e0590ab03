"""The simulator's wire: route table, request pipeline, Litestar app, and the SDK's HTTP client.

The pipeline for each request, in Stripe's order: authenticate → injected failure
(``fail_next``) → idempotent replay → route → parameter check against the SDK TypedDict →
run the handler → store the response under the key. Handlers register with ``route``: the
generic reads below, the rest in ``stripe_simulator/selling.py``.

``SimulatorHTTPClient`` is what ``StripeClient(http_client=…)`` calls: the async methods
go through ``httpx.ASGITransport`` to the app in the caller's loop; the sync methods run the
same coroutine in a private event-loop thread. Used only by ``stripe_simulator/simulator.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple
from urllib.parse import parse_qsl

import httpx
import litestar
import stripe
import stripe.params as p
import stripe.params.billing as pb
import stripe.params.checkout as pc
from litestar import Litestar, Request, Response

from stripe_simulator.objects import SimulatedStripeError
from stripe_simulator.params import decode_form, validate
from stripe_simulator.persistence import StateLock
from stripe_simulator.state import BillingState

Handler = Callable[..., dict[str, Any]]

_DROP = "x-simulator-drop-connection"  # set by the app, acted on by the transport
FAILURES: dict[str, tuple[int, dict[str, str]]] = {
    "card_declined": (
        402,
        {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
        },
    ),
    "lock_timeout": (
        409,
        {
            "type": "invalid_request_error",
            "code": "lock_timeout",
            "message": "This object cannot be accessed right now because another API request "
            "or Stripe process is currently accessing it. Retry the request.",
        },
    ),
    "rate_limit": (
        429,
        {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "message": "Request rate limit exceeded. Retry with exponential backoff.",
        },
    ),
    "server_error": (500, {"type": "api_error", "message": "An unknown error occurred (simulated)."}),
    "connection_reset": (0, {}),  # not an HTTP answer: the transport raises a connection error
}
_BEFORE_RUNNING = ("lock_timeout", "rate_limit", "server_error")
_PRIORITY = {"parameter_unknown": 0, "parameter_missing": 1}  # one problem per answer, unknown ones first


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    params: type  # the SDK TypedDict
    supported: frozenset[str]


ROUTES: list[Route] = []
ID = r"([^/]+)"  # a path segment: an object id


def route(method: str, path: str, params: type, supported: str = "") -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        pattern = re.compile(path + r"\Z")
        ROUTES.append(Route(method, pattern, handler, params, frozenset(supported.split()) | {"expand"}))
        return handler

    return register


def find_route(method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
    for r in ROUTES:
        if r.method == method and (m := r.pattern.match(path)):
            return r, m.groups()
    return None


# -- reads: retrieve by id, and lists with the filters Lode uses -------------------------------
def _retrieve(kind: str) -> Handler:
    return lambda s, q, id_: s.get(kind, id_)


def _lister(kind: str, path: str, filters: tuple[str, ...]) -> Handler:
    return lambda s, q: s.page(kind, path, q, lambda o: all(q.get(f, o[f]) == o[f] for f in filters))


for _kind, _path, _params in (
    ("customer", "/v1/customers", p.CustomerRetrieveParams),
    ("price", "/v1/prices", p.PriceRetrieveParams),
    ("checkout.session", "/v1/checkout/sessions", pc.SessionRetrieveParams),
    ("payment_intent", "/v1/payment_intents", p.PaymentIntentRetrieveParams),
    ("charge", "/v1/charges", p.ChargeRetrieveParams),
    ("invoice", "/v1/invoices", p.InvoiceRetrieveParams),
    ("subscription", "/v1/subscriptions", p.SubscriptionRetrieveParams),
    ("account", "/v1/accounts", p.AccountRetrieveParams),
    ("transfer", "/v1/transfers", p.TransferRetrieveParams),
    ("event", "/v1/events", p.EventRetrieveParams),
):
    route("GET", f"{_path}/{ID}", _params)(_retrieve(_kind))

for _kind, _path, _params, _filters in (
    ("billing.meter", "/v1/billing/meters", pb.MeterListParams, ("status",)),
    ("transfer", "/v1/transfers", p.TransferListParams, ("transfer_group", "destination")),
    ("invoice_payment", "/v1/invoice_payments", p.InvoicePaymentListParams, ("invoice", "status")),
    ("event", "/v1/events", p.EventListParams, ("type",)),
):
    _supported = " ".join((*_filters, "limit", "starting_after"))
    route("GET", _path, _params, _supported)(_lister(_kind, _path, _filters))


class SimulatedRequest(NamedTuple):
    method: str
    path: str
    params: dict[str, Any]  # decoded from the form body or query string, before coercion
    idempotency_key: str | None
    stripe_account: str | None


class Failure:
    def __init__(self, method: str, path_prefix: str, kind: str, times: int) -> None:
        self.method, self.path_prefix, self.kind, self.times = method.upper(), path_prefix, kind, times


def _json(body: Mapping[str, Any]) -> bytes:
    # Pretty-printed raw UTF-8, as Stripe sends it (product names here are often Chinese).
    return json.dumps(body, indent=2, ensure_ascii=False).encode()


def _error(error: Mapping[str, Any]) -> bytes:
    return _json({"error": error})


class Wire:
    """The request pipeline and the Litestar app in front of the state."""

    def __init__(self, state: BillingState, lock: StateLock) -> None:
        self.state, self.lock = state, lock
        # The newest requests, for tests to inspect; bounded, so a long-running demo server does not grow.
        self.requests: deque[SimulatedRequest] = deque(maxlen=10_000)
        self.failures: list[Failure] = []
        self.after_request: Callable[[], None] | None = None  # called on the loop once a request is answered
        # (Stripe-Account, Idempotency-Key) → (request fingerprint, status, body, headers)
        self.idempotent: dict[tuple[str, str], tuple[tuple[Any, ...], int, bytes, dict[str, str]]] = {}

        @litestar.route(["/", "/{path:path}"], http_method=["GET", "POST", "DELETE"], include_in_schema=False)
        async def stripe_api(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await self.handle(request)

        # No OpenAPI routes, and no logging_config: the simulator must not reconfigure logging.
        self.app = Litestar([stripe_api], openapi_config=None, logging_config=None)

    async def handle(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        form = (await request.body()).decode("utf-8") if request.method == "POST" else request.url.query
        headers = request.headers
        params = decode_form(parse_qsl(form, keep_blank_values=True))
        req = SimulatedRequest(
            request.method, request.url.path, params, headers.get("idempotency-key"), headers.get("stripe-account")
        )
        with self.lock:  # never held across an await
            self.requests.append(req)
            status, payload, out = self.respond(
                req, headers.get("authorization", ""), headers.get("stripe-version") or stripe.api_version
            )
        if self.after_request is not None:
            self.after_request()
        return Response(payload, status_code=status, headers=out, media_type="application/json")

    def respond(self, req: SimulatedRequest, authorization: str, version: str) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Request-Id": self.state.new_id("req"), "Stripe-Version": version}
        if req.idempotency_key:
            headers["Idempotency-Key"] = req.idempotency_key
        if not authorization.startswith(("Bearer sk_", "Bearer rk_")):
            error = {"type": "invalid_request_error", "message": "Invalid API Key provided."}
            return 401, _error(error), headers
        kind = self.take_failure(req.method, req.path)
        if kind in _BEFORE_RUNNING:  # not stored under the key, so a retry with it runs for real
            retry = {"Stripe-Should-Retry": "true"} if kind == "lock_timeout" else {}  # as Stripe does
            return FAILURES[kind][0], _error(FAILURES[kind][1]), headers | retry
        drop = {_DROP: "1"} if kind == "connection_reset" else {}
        # POST results are kept per key and connected account (Stripe: 24 h; here: as long as the simulator's state).
        key = (req.stripe_account or "", req.idempotency_key) if req.method == "POST" else None
        key = key if req.idempotency_key else None
        fingerprint = (req.method, req.path, req.params)
        if key and key in self.idempotent:
            first, status, payload, stored = self.idempotent[key]
            if first != fingerprint:
                return (
                    400,
                    _error(
                        {
                            "type": "idempotency_error",
                            "message": (
                                "Keys for idempotent requests can only be used with the same parameters they were first "
                                f"used with. Try using a key other than '{key[1]}' if you meant to execute a different "
                                "request."
                            ),
                        }
                    ),
                    headers,
                )
            return status, payload, stored | {"Idempotent-Replayed": "true"} | drop
        found = find_route(req.method, req.path)
        if found is None:
            return (
                404,
                _error(
                    {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": (
                            f"Unrecognized request URL ({req.method}: {req.path}). Please see https://stripe.com/docs or "
                            "we can help at https://support.stripe.com/."
                        ),
                    }
                ),
                headers,
            )
        endpoint, ids = found
        params, problems = validate(endpoint.params, req.params, from_form=True)
        if problems:  # refused before running: Stripe stores no idempotent result for these
            problem = sorted(problems, key=lambda p: _PRIORITY.get(p.code or "", 2))[0]
            error = {"type": "invalid_request_error", "message": problem.message, "param": problem.param}
            return 400, _error(error | ({"code": problem.code} if problem.code else {})), headers
        if unsupported := sorted(set(params) - endpoint.supported):
            return (
                400,
                _error(
                    {
                        "type": "invalid_request_error",
                        "code": "simulator_unsupported_parameter",
                        "param": unsupported[0],
                        "message": (
                            f"Stripe accepts '{unsupported[0]}' here but the simulator does not "
                            "implement it; add it in stripe_simulator/selling.py or payouts.py."
                        ),
                    }
                ),
                headers,
            )
        if kind == "card_declined":  # a decline is a result: Stripe stores it under the key
            status, payload = 402, _error(FAILURES[kind][1])
        else:
            status, payload = self.run(endpoint.handler, params, ids, headers["Request-Id"], req.idempotency_key)
        if key:
            self.idempotent[key] = (fingerprint, status, payload, headers)
        return status, payload, headers | drop

    def run(
        self,
        handler: Callable[..., dict[str, Any]],
        params: dict[str, Any],
        ids: tuple[str, ...],
        request_id: str,
        idempotency_key: str | None,
    ) -> tuple[int, bytes]:
        mark = self.state.savepoint()
        self.state.request = {"id": request_id, "idempotency_key": idempotency_key}  # for events' "request"
        try:
            return 200, _json(self.state.render(handler(self.state, params, *ids), params.get("expand")))
        except SimulatedStripeError as exc:
            self.state.rollback(mark)  # Stripe's refusals leave nothing behind
            return exc.status, _json(exc.body())
        except Exception as exc:  # a simulator bug: say so plainly rather than pose as Stripe
            self.state.rollback(mark)
            return 500, _error({"type": "api_error", "message": f"Stripe simulator bug: {exc!r}"})
        finally:
            self.state.request = {"id": None, "idempotency_key": None}

    def take_failure(self, method: str, path: str) -> str | None:
        for failure in self.failures:
            if failure.method == method and path.startswith(failure.path_prefix):
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
                return failure.kind
        return None


class _DroppingASGITransport(httpx.ASGITransport):
    """ASGITransport that turns a response marked by the simulator into a connection reset."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if _DROP in response.headers:
            raise httpx.ReadError("Connection reset by peer (simulated)", request=request)
        return response


class _LoopThread:
    """An event loop in a daemon thread, so sync SDK calls can drive the ASGI app."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="stripe-simulator", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class SimulatorHTTPClient(stripe.HTTPClient):
    """A ``stripe.HTTPClient`` that sends every request to the simulator's ASGI app, whatever
    the host in the URL (so ``base_addresses`` may be left at Stripe's defaults)."""

    name: ClassVar[str] = "stripe-simulator"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.transport = _DroppingASGITransport(app=app)
        # Seconds each answer takes to arrive, after Stripe has acted (a slow Stripe or network):
        # set by tests and bench/stall_bench.py.
        self.latency = 0.0
        self._loop_thread: _LoopThread | None = None
        self._thread_lock = threading.Lock()

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        request = httpx.Request(method.upper(), url, headers=dict(headers), content=post_data)
        try:
            response = await self.transport.handle_async_request(request)
            content = await response.aread()
        except httpx.TransportError as exc:  # what stripe's own HTTPXClient does with a network error
            raise stripe.APIConnectionError(
                f"Unexpected error communicating with Stripe (simulated): {exc}", should_retry=True
            ) from exc
        if self.latency:
            await asyncio.sleep(self.latency)
        return content, response.status_code, response.headers

    async def request_stream_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[AsyncIterator[bytes], int, Mapping[str, str]]:
        content, status, response_headers = await self.request_async(method, url, headers, post_data)

        async def chunks() -> AsyncIterator[bytes]:
            yield content

        return chunks(), status, response_headers

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        # The app runs in a loop of its own, so this works with or without a running loop here.
        with self._thread_lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread()
        return self._loop_thread.run(self.request_async(method, url, headers or {}, post_data))

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        content, status, response_headers = self.request(method, url, headers, post_data)
        return iter([content]), status, response_headers

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return asyncio.sleep(secs)

    def close(self) -> None:
        if self._loop_thread is not None:
            self._loop_thread.close()
            self._loop_thread = None

    async def close_async(self) -> None:
        return None  # the ASGI transport holds no connections
