"""The DomainError tree and the one handler that renders every failure as RFC 9457 problem+json.

    DomainError                      400 bad_request
    ├── ValidationFailed             400 validation_error   (errors: [{field, message}])
    ├── MalformedJson                400 malformed_json
    ├── NotAuthenticated             401 unauthenticated
    ├── Forbidden                    403 forbidden          (and domain codes: not_named_analyst, …)
    ├── NotFound                     404 not_found
    ├── MethodNotAllowed             405 method_not_allowed
    ├── Conflict                     409 conflict           (invalid_transition, terms_mismatch, …)
    ├── PayloadTooLarge              413 body_too_large
    ├── Unprocessable                422 unprocessable      (not_circulable, ineligible, …)
    ├── TooManyRequests              429 too_many_requests  (daily_query_limit)
    ├── ClientDisconnected           499 client_disconnected (nobody reads it: for the access log)
    └── ServiceUnavailable           503 database_busy      (database_unavailable, payment_provider_unavailable,
                                                             storage_unavailable from objectstore.StoreUnavailable, …)

Services raise these (never Litestar exceptions); each carries its status and a stable ``code``,
which a raise site may narrow (``Conflict("…", code="invalid_transition")``). An error worth
retrying soon carries ``retry_after`` (seconds), sent as ``Retry-After``. Framework and
database exceptions are translated here too, so a client never sees a stack trace and an
unexpected failure says only that it happened, with the request id that finds it in the logs.
"""

from __future__ import annotations

import ast
import logging
import re
import socket
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from catalog import observability

log = logging.getLogger("lode.errors")
PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem; domain errors may add members (``blockers``, ``holds`` …)."""

    type: str
    title: str
    status: int
    code: str
    detail: str = ""
    errors: list[FieldError] | None = None
    request_id: str | None = None


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"
    retry_after: int | None = None

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        errors: list[FieldError] | None = None,
        retry_after: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if retry_after is not None:
            self.retry_after = retry_after
        self.errors = errors
        self.extra = extra


class ValidationFailed(DomainError):
    code = "validation_error"

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", errors=[FieldError(field, message)])

    @classmethod
    def of(cls, errors: list[FieldError], *, shown: int | None = None) -> ValidationFailed:
        """Every problem in ``errors``; the detail names the first ``shown`` (all by default)."""
        return cls("; ".join(f"{e.field}: {e.message}" for e in errors[:shown]), errors=errors)


class MalformedJson(DomainError):
    code = "malformed_json"


class NotAuthenticated(DomainError):
    status = 401
    code = "unauthenticated"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class MethodNotAllowed(DomainError):
    status = 405
    code = "method_not_allowed"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    status = 413
    code = "body_too_large"


class Unprocessable(DomainError):
    status = 422
    code = "unprocessable"


class TooManyRequests(DomainError):
    status = 429
    code = "too_many_requests"


class ClientDisconnected(DomainError):
    """The client went away before its answer was ready; 499 is nginx's "client closed request"."""

    status = 499
    code = "client_disconnected"


class ServiceUnavailable(DomainError):
    status = 503
    code = "database_busy"


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The error responses an operation documents; 400, 401 and 500 are implied for every route."""
    wanted = sorted({400, 500, *statuses})
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=HTTPStatus(status).phrase,
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in wanted
    }


_PHRASES = {499: ("Client Closed Request", "The client closed the connection before the answer was ready.")}


def problem_response(request: Request, exc: Exception) -> Response:
    """The single exception handler: anything raised while serving becomes problem+json."""
    error = translate(exc)
    request_id = observability.request_id(request.scope)
    if (
        error.status >= 500
        and error.code != "database_unavailable"
        and not isinstance(exc, DomainError | DBAPIError | PoolTimeout)
    ):
        log.error(
            "unexpected failure",
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"request_id": request_id, "path": request.url.path},
        )
    title, description = _PHRASES.get(error.status) or (
        HTTPStatus(error.status).phrase,
        HTTPStatus(error.status).description,
    )
    body: dict[str, Any] = {
        "type": f"urn:lode:problem:{error.code}",
        "title": title,
        "status": error.status,
        "code": error.code,
        "detail": error.detail or description,
    }
    if error.errors:
        body["errors"] = [msgspec.to_builtins(e) for e in error.errors]
    body.update(error.extra)
    body["request_id"] = request_id
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(content=body, status_code=error.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def translate(exc: Exception) -> DomainError:
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, ValidationException):
        return _validation(exc)
    if isinstance(exc, RequestEntityTooLarge):
        return PayloadTooLarge("The request body is larger than the limit of 1 MiB.")
    if isinstance(exc, NotAuthorizedException):
        return NotAuthenticated(exc.detail or "A valid API key is required.")
    if isinstance(exc, PermissionDeniedException):
        return Forbidden(exc.detail or "Your roles do not allow this.")
    if isinstance(exc, NotFoundException):
        return NotFound("No such resource or path.")
    if isinstance(exc, MethodNotAllowedException):
        return MethodNotAllowed("This method is not allowed on this path.")
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        if _caused_by_decode_error(exc):
            return MalformedJson("The request body is not valid JSON.")
        detail = str(exc.detail or "")
        return DomainError(detail, code=_code_for_status(exc.status_code), status=exc.status_code)
    if isinstance(exc, IntegrityError):
        return Conflict("The change conflicts with existing data; nothing was written.")
    if isinstance(exc, PoolTimeout):  # every pooled connection stayed busy for LODE_DB_POOL_TIMEOUT_S
        log.warning("database connection pool exhausted", extra={"detail": str(exc)[:200]})
        return ServiceUnavailable("No database connection came free in time; retry shortly.", retry_after=1)
    if isinstance(exc, DBAPIError):
        return _database_error(exc)
    if _unreachable(exc):
        return _database_unreachable(exc)
    return DomainError("An unexpected error occurred; nothing was changed.", code="internal_error", status=500)


def _caused_by_decode_error(exc: BaseException) -> bool:
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, msgspec.DecodeError) and not isinstance(cause, msgspec.ValidationError):
            return True
        cause = cause.__cause__
    return False


_AT = re.compile(r"^(?P<message>.*?)(?: - at (?:`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"(?:missing required field|unknown field) `(?P<name>[^`]+)`")
_MISSING = re.compile(r"^Missing required (?P<kind>\w+) parameter '(?P<name>[^']+)'")
# msgspec quotes a pattern with repr(), which doubles every backslash: '^\\d{4}$' for ^\d{4}$.
_REGEX = re.compile(r"matching regex (?P<quoted>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


def _validation(exc: ValidationException) -> DomainError:
    errors: list[FieldError] = []
    cause = exc.__cause__
    missing = _MISSING.match(str(exc.detail))
    if isinstance(cause, KeyError) and missing:  # Litestar's extractor found no value for a required parameter
        errors.append(FieldError(missing.group("name"), f"required {missing.group('kind')} parameter is missing"))
    elif isinstance(cause, msgspec.ValidationError):
        errors.append(_from_msgspec(str(cause)))
    elif isinstance(exc.extra, list):
        for item in exc.extra:
            if isinstance(item, dict):
                message = _readable(str(item.get("message") or "invalid"))
                errors.append(FieldError(str(item.get("key") or "body"), message))
    if not errors:
        errors.append(FieldError("body", str(exc.detail)))
    return ValidationFailed.of(errors)


def _readable(message: str) -> str:
    """msgspec's message with a pattern shown as written, not as its repr."""
    return _REGEX.sub(lambda m: f"matching regex `{ast.literal_eval(m.group('quoted'))}`", message)


def _from_msgspec(text: str) -> FieldError:
    match = _AT.match(text)
    message = _readable(match.group("message") if match else text)
    path = (match.group("path") or "") if match else ""
    parts = [p for p in re.split(r"\.|\[(\d+)\]", path) if p]
    if parts and parts[0] == "data":
        parts = parts[1:]
    named = _NAMED.search(message)
    if named:
        parts.append(named.group("name"))
    return FieldError(".".join(parts) or "body", message)


# What a driver says when it cannot reach its database at all (a node outlives its database's
# failover, a lost mount): a retry later may succeed, so 503 with Retry-After, not a 500.
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "connection is closed",
    "connection was closed",
    "connection reset",
    "unable to open database file",
    "the database system is starting up",
    "the database system is shutting down",
    "terminating connection",
)


def _unreachable(exc: BaseException) -> bool:
    """A connection failure anywhere in the chain: asyncpg raises a bare OSError when connecting."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionError | socket.gaierror):
            return True
        if type(cause).__module__.startswith(("asyncpg", "sqlalchemy", "sqlite3", "aiosqlite")) and any(
            phrase in str(cause).lower() for phrase in _UNREACHABLE
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _database_unreachable(exc: BaseException) -> DomainError:
    log.error("database unreachable", extra={"detail": f"{type(exc).__name__}: {str(exc)[:200]}"})
    return ServiceUnavailable(
        "The database cannot be reached just now; nothing was changed. Retry shortly.",
        code="database_unavailable",
        retry_after=5,
    )


def _database_error(exc: DBAPIError) -> DomainError:
    if exc.connection_invalidated or _unreachable(exc):
        return _database_unreachable(exc)
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    if "database is locked" in text or "lock timeout" in text or "lock_not_available" in text:
        return ServiceUnavailable("The database is busy; retry the request.", retry_after=1)
    if "could not serialize" in text or "deadlock" in text:
        return Conflict("A concurrent change won; retry the request.")
    log.error("database failure", exc_info=(type(exc), exc, exc.__traceback__))
    return DomainError(
        "The database could not complete the request; nothing was changed.", code="internal_error", status=500
    )


def _code_for_status(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        406: "not_acceptable",
        409: "conflict",
        413: "body_too_large",
        415: "unsupported_media_type",
        422: "unprocessable",
        429: "too_many_requests",
    }.get(status, "bad_request")
