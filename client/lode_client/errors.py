"""Lode's problems as exceptions, one class per stable ``code`` (``except QuotaExceeded:``).

Every refusal Lode answers is RFC 9457 problem+json with a ``code``; the client raises the class
registered for that code, else the class for its HTTP status. Each carries ``detail`` (what to
tell a person), ``request_id`` (what to quote to the operator), ``status``, ``code``, the field
``errors`` of a validation failure and the whole ``problem``.
"""

from __future__ import annotations

from typing import Any


class LodeError(Exception):
    """Anything the client raises."""


class ConfigurationError(LodeError):
    """No URL or API key could be found (argument, environment or profile)."""


class TransportError(LodeError):
    """Lode could not be reached, even after the retries."""


class IntegrityError(LodeError):
    """A download's bytes do not hash to the SHA-256 Lode announced."""


class ApiError(LodeError):
    status: int = 0
    code: str = "error"

    def __init__(self, status: int, problem: dict[str, Any], request_id: str | None = None) -> None:
        self.status = status
        self.code = str(problem.get("code") or type(self).code)
        self.detail: str = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.problem = problem
        self.request_id = request_id
        super().__init__(f"{self.code}: {self.detail}" + (f" (request {request_id})" if request_id else ""))


# By HTTP status, for codes the client does not know yet.
class BadRequest(ApiError):
    status = 400


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "body_too_large"


class RangeNotSatisfiable(ApiError):
    status, code = 416, "range_not_satisfiable"


class Unprocessable(ApiError):
    status, code = 422, "unprocessable"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class ServerError(ApiError):
    status, code = 500, "internal_error"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, PayloadTooLarge, RangeNotSatisfiable,
        Unprocessable, TooManyRequests, ServerError, ServiceUnavailable,
    )
}  # fmt: skip


def _family(name: str, base: type[ApiError], code: str, doc: str) -> type[ApiError]:
    return type(name, (base,), {"code": code, "__doc__": doc, "__module__": __name__})


# By code. The names are what users catch; the codes are Lode's stable contract.
_CODES: list[tuple[str, type[ApiError], str, str]] = [
    # input
    ("ValidationError", BadRequest, "validation_error", "A field is missing or wrong; ``errors`` names each."),
    ("MalformedJson", BadRequest, "malformed_json", "The body is not JSON."),
    ("BadRequestError", BadRequest, "bad_request", "The request could not be understood."),
    ("BodyTooLarge", PayloadTooLarge, "body_too_large", "The body is over the limit."),
    ("FileTooLarge", PayloadTooLarge, "file_too_large", "The upload is over the limit."),
    ("InvalidCursor", BadRequest, "invalid_cursor", "The cursor is not one this list gave."),
    ("CursorMismatch", BadRequest, "cursor_mismatch", "The cursor belongs to another query."),
    ("NotAcceptable", BadRequest, "not_acceptable", "No answer in the media type asked for."),
    ("MethodNotAllowed", BadRequest, "method_not_allowed", "The path does not take this method."),
    ("UnreadableFile", Unprocessable, "unreadable_file", "The uploaded file could not be read."),
    ("DictionaryMismatch", Unprocessable, "dictionary_mismatch", "The file does not match the dictionary."),
    ("DictionaryRequired", Unprocessable, "dictionary_required", "The release needs a data dictionary."),
    ("IsolatingColumn", Forbidden, "isolating_column", "The column isolates persons; it may not be used so."),
    # identity and tenancy
    ("NotAuthenticated", Unauthenticated, "unauthenticated", "No valid API key."),
    ("PermissionDenied", Forbidden, "forbidden", "The key's roles do not allow this."),
    ("ResourceNotFound", NotFound, "not_found", "No such resource (or not yours to see)."),
    ("SlugTaken", Conflict, "slug_taken", "An organisation or product has this slug already."),
    ("OperatorExists", Conflict, "operator_exists", "There is an operator organisation already."),
    ("AlreadyMember", Conflict, "already_member", "The user is a member already."),
    ("LastAdmin", Conflict, "last_admin", "An organisation keeps at least one admin."),
    ("NotAProvider", Unprocessable, "not_a_provider", "The organisation is not a provider."),
    # idempotency and concurrency
    ("IdempotencyKeyReused", Unprocessable, "idempotency_key_reused", "The key was used with another request."),
    ("IdempotencyInProgress", Conflict, "idempotency_in_progress", "The first request with this key is running."),
    ("ConflictError", Conflict, "conflict", "The resource changed under the request."),
    # catalogue and circulation
    ("InvalidTransition", Conflict, "invalid_transition", "The resource is not in a state that allows this."),
    ("NotEditable", Conflict, "not_editable", "The resource can no longer be edited."),
    ("IncompleteProduct", Unprocessable, "incomplete_product", "The product lacks what review needs."),
    ("NotCirculable", Unprocessable, "not_circulable", "The product cannot circulate."),
    ("ListingRoleRequired", Forbidden, "listing_role_required", "The grade's listing roles must review it."),
    ("RegradeNotStricter", Unprocessable, "regrade_not_stricter", "A listed product's grade only tightens."),
    ("QualityBelowMinimum", Unprocessable, "quality_below_minimum", "The measured quality is under the policy's."),
    ("OperatorSuspension", Forbidden, "operator_suspension", "Only the operator lifts its own suspension."),
    ("ProductNotAvailable", Conflict, "product_not_available", "The product is not listed."),
    ("PlanLocked", Conflict, "plan_locked", "A plan with licences cannot change its price."),
    ("VersionExists", Conflict, "version_exists", "A release with this version exists."),
    ("ReleaseFrozen", Conflict, "release_frozen", "A published release cannot change."),
    ("NotEligible", Unprocessable, "ineligible", "Blockers stand between the organisation and a licence."),
    ("TermsMismatch", Conflict, "terms_mismatch", "The terms hash is not the licence's terms."),
    ("FourEyes", Conflict, "four_eyes", "One person decides one track of an application."),
    ("TrackDecided", Conflict, "track_decided", "The track was decided already."),
    ("AlreadyBlocked", Conflict, "already_blocked", "The organisation is on the block-list already."),
    ("AlreadyHeld", Conflict, "already_held", "The licence holds this hold already."),
    ("NotRenewable", Conflict, "not_renewable", "The licence cannot be renewed (now)."),
    ("AlreadyRenewed", Conflict, "already_renewed", "The licence was renewed already (``renewal_id``)."),
    ("RenewalInReview", Conflict, "renewal_in_review", "A renewal of the licence is under review."),
    ("PlanUnavailable", Conflict, "plan_unavailable", "The licence's plan is no longer offered."),
    ("RenewalNotNeeded", Conflict, "renewal_not_needed", "A subscription renews itself while paid."),
    ("RenewalBlocked", Conflict, "renewal_blocked", "The application is no longer eligible (``blockers``)."),
    ("NoSuchHold", NotFound, "no_such_hold", "The licence has no such hold."),
    # delivery
    ("NotNamedAnalyst", Forbidden, "not_named_analyst", "The caller is not a named analyst of the licence."),
    ("LicenceRevoked", Forbidden, "licence_revoked", "The licence was revoked."),
    ("LicenceExpired", Forbidden, "licence_expired", "The licence has ended."),
    ("EthicsApprovalExpired", Forbidden, "ethics_approval_expired", "The ethics approval has expired."),
    ("LicenceNotActive", Forbidden, "licence_not_active", "The licence is not active (see ``holds``)."),
    ("LicenceNotStarted", Forbidden, "licence_not_started", "The licence's term has not begun."),
    ("ProductSuspended", Forbidden, "product_suspended", "The product is suspended or retired."),
    ("ReleaseWithdrawn", Forbidden, "release_withdrawn", "The release was withdrawn."),
    ("GradeForbidsDelivery", Forbidden, "grade_forbids_delivery", "The grade does not allow this mode."),
    ("ModeNotLicensed", Forbidden, "mode_not_licensed", "The plan or terms do not allow this mode."),
    ("SensitiveColumn", Forbidden, "sensitive_column", "A sensitive column may not be used this way."),
    ("QuerySetTooSmall", Unprocessable, "query_set_too_small", "The query set is under the grade's k."),
    ("QueryTooLarge", Unprocessable, "query_too_large", "The query asks for too much at once."),
    ("QueryFailed", Unprocessable, "query_failed", "The query could not run."),
    ("QueryTimeout", Unprocessable, "query_timeout", "The query ran past the time limit."),
    ("DailyQueryLimit", TooManyRequests, "daily_query_limit", "The licence's queries for today are used."),
    ("QuotaExceeded", Conflict, "quota_exceeded", "A cap of the licence is reached."),
    ("BudgetExhausted", Conflict, "budget_exhausted", "The licence's ε budget is spent."),
    ("EpsilonRequired", Unprocessable, "epsilon_required", "An L5 query names its ε."),
    ("EpsilonTooLarge", Unprocessable, "epsilon_too_large", "ε above the per-query limit."),
    ("RangeNotSatisfiableError", RangeNotSatisfiable, "range_not_satisfiable", "The byte range is outside the file."),
    ("ClientDisconnected", BadRequest, "client_disconnected", "The client left before the answer."),
    # notifications
    ("WebhookLimit", Conflict, "webhook_limit", "The organisation has as many webhook endpoints as allowed."),
    ("DeliveryInProgress", Conflict, "delivery_in_progress", "A try of this delivery is under way."),
    ("WebhookUrlInvalid", Unprocessable, "webhook_url_invalid", "Not an http(s) URL Lode can call."),
    ("WebhookUrlInsecure", Unprocessable, "webhook_url_insecure", "Outside development a webhook URL is https."),
    ("WebhookUrlForbidden", Unprocessable, "webhook_url_forbidden", "The URL resolves to a non-public address."),
    ("WebhookUrlUnresolvable", Unprocessable, "webhook_url_unresolvable", "The URL's host does not resolve."),
    # billing
    ("BillingNotConfigured", ServiceUnavailable, "billing_not_configured", "Priced checkouts need Stripe."),
    ("NothingToPay", Conflict, "nothing_to_pay", "The licence owes nothing."),
    ("PaymentProcessing", Conflict, "payment_processing", "A payment for the licence is under way."),
    ("CardDeclined", Unprocessable, "card_declined", "The card was declined."),
    ("RefundExceedsRemaining", Conflict, "refund_exceeds_remaining", "More than is left to refund."),
    ("ChargeAlreadyRefunded", Conflict, "charge_already_refunded", "The charge was refunded already."),
    ("ChargeDisputed", Conflict, "charge_disputed", "The charge is disputed."),
    ("InvoiceNotEditable", Conflict, "invoice_not_editable", "The invoice is final."),
    ("InvalidSignature", BadRequest, "invalid_signature", "A webhook's signature did not verify."),
    ("PaymentProviderRejected", Unprocessable, "payment_provider_rejected", "Stripe refused the request."),
    ("PaymentProviderUnavailable", ServiceUnavailable, "payment_provider_unavailable", "Stripe did not answer."),
    ("StripeResourceMissing", NotFound, "resource_missing", "Stripe has no such object."),
    # the server
    ("UnprocessableError", Unprocessable, "unprocessable", "The request is well-formed but refused."),
    ("InternalError", ServerError, "internal_error", "Lode failed; quote ``request_id``."),
    ("DatabaseBusy", ServiceUnavailable, "database_busy", "Lode is busy; retried, then raised."),
    (
        "DatabaseUnavailable",
        ServiceUnavailable,
        "database_unavailable",
        "Lode cannot reach its database; retried, then raised.",
    ),
    (
        "StorageUnavailable",
        ServiceUnavailable,
        "storage_unavailable",
        "Lode cannot reach its object store; retried, then raised.",
    ),
    ("RateLimited", TooManyRequests, "too_many_requests", "Too many requests; retried, then raised."),
    ("NotReady", ServiceUnavailable, "not_ready", "Lode is starting or its database is unreachable."),
]
BY_CODE: dict[str, type[ApiError]] = {}
for _name, _base, _code, _doc in _CODES:
    BY_CODE[_code] = globals()[_name] = _family(_name, _base, _code, _doc)


def for_problem(status: int, problem: dict[str, Any], request_id: str | None = None) -> ApiError:
    code = str(problem.get("code") or "")
    cls = BY_CODE.get(code) or BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest)
    return cls(status, problem, request_id)


__all__ = [
    "ApiError", "BY_CODE", "ConfigurationError", "IntegrityError", "LodeError", "TransportError", "for_problem",
    *(name for name, *_ in _CODES), *(cls.__name__ for cls in BY_STATUS.values()),
]  # fmt: skip
