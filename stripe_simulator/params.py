"""Check Stripe request parameters against the SDK's generated ``TypedDict`` classes.

stripe-python ships a ``TypedDict`` for every request (``stripe.params.TransferCreateParams``,
``stripe.params.checkout.SessionCreateParams`` …). Type checkers use them, but nothing checks
them at run time, and a typo in a nested key only shows up as a 400 from Stripe in production.
This module walks those classes at run time so that:

* the gateway's tests can call ``check_params(TransferCreateParams, params)`` on the dict they
  are about to send and get a list of problems back (empty when fine);
* the simulator (``stripe_simulator/simulator.py``) can decode a form-encoded body back into a nested
  dict, coerce the strings by the declared types and answer 400 the way Stripe does
  (``parameter_unknown``, ``parameter_missing``, ``parameter_invalid_integer`` …).

Enum values are open strings in the TypedDicts (``Literal['payment', …] | str``), so the few
enums Lode sends are checked by hand from ``KNOWN_ENUMS``. Pure functions, no I/O.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import stripe
import typing_extensions
from stripe.params import (
    AccountCreateParams,
    AccountLinkCreateParams,
    InvoiceCreateParams,
    PriceCreateParams,
    RefundCreateParams,
    SubscriptionUpdateParams,
)
from stripe.params.billing import MeterCreateParams
from stripe.params.checkout import SessionCreateParams

__all__ = ["KNOWN_ENUMS", "Problem", "check_params", "decode_form", "validate"]

_REQUIRED = {typing.Required, typing.NotRequired, typing_extensions.Required, typing_extensions.NotRequired}
_LITERAL = {typing.Literal, typing_extensions.Literal}
_UNION = {typing.Union, types.UnionType}
_LIST = {list, tuple, Sequence, Iterable}  # what typing.get_origin returns for List[...] etc.
_MAP = {dict, Mapping}  # and StripeObject's subclasses (UntypedStripeObject[str] types metadata): see _is_map
# RequestOptions keys (api_key, idempotency_key …) are declared on every *Params class because
# the class inherits RequestOptions, but with StripeClient they are *options*, not parameters:
# put into params they would be form-encoded and Stripe answers parameter_unknown.
_OPTION_KEYS = frozenset(stripe.RequestOptions.__annotations__)
_INT = re.compile(r"-?\d+\Z")
_DECIMAL = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z")

# Enum values Lode sends, checked by hand (the SDK types them as open strings).
# Keyed by the TypedDict; "*" stands for any list index.
_INTERVALS = frozenset({"day", "week", "month", "year"})
_USAGE_TYPES = frozenset({"licensed", "metered"})
KNOWN_ENUMS: dict[type, dict[str, frozenset[str]]] = {
    SessionCreateParams: {
        "mode": frozenset({"payment", "subscription", "setup"}),
        "line_items[*][price_data][recurring][interval]": _INTERVALS,
    },
    PriceCreateParams: {"recurring[interval]": _INTERVALS, "recurring[usage_type]": _USAGE_TYPES},
    InvoiceCreateParams: {"collection_method": frozenset({"charge_automatically", "send_invoice"})},
    RefundCreateParams: {"reason": frozenset({"duplicate", "fraudulent", "requested_by_customer"})},
    SubscriptionUpdateParams: {
        "pause_collection[behavior]": frozenset({"keep_as_draft", "mark_uncollectible", "void"})
    },
    AccountCreateParams: {"type": frozenset({"custom", "express", "standard"})},
    AccountLinkCreateParams: {"type": frozenset({"account_onboarding", "account_update"})},
    MeterCreateParams: {"default_aggregation[formula]": frozenset({"count", "last", "sum"})},
}


@dataclass(frozen=True)
class Problem:
    """One reason Stripe would refuse the request, in Stripe's own terms."""

    code: str | None  # Stripe's error code; None where Stripe sends none (booleans, enums)
    param: str  # the form-encoded name, e.g. "line_items[0][price_data][currency]"
    message: str

    def __str__(self) -> str:
        return f"{self.param}: {self.message}" + (f" ({self.code})" if self.code else "")


def check_params(typed_dict_cls: type, params: Mapping[str, Any]) -> list[str]:
    """Problems with ``params`` (Python-typed, as passed to ``client.v1.*``); empty when fine."""
    _, problems = validate(typed_dict_cls, params, from_form=False)
    return [str(p) for p in problems]


def validate(
    typed_dict_cls: type, params: Mapping[str, Any], *, from_form: bool
) -> tuple[dict[str, Any], list[Problem]]:
    """Check ``params`` and return ``(coerced params, problems)``.

    With ``from_form`` the leaves are strings decoded from a form body and are coerced by the
    declared type (``"12"`` → 12, ``"true"`` → True, ``{"0": …}`` → list); without it the values
    must already have the declared Python types.
    """
    checker = _Checker(from_form)
    coerced = checker.typed_dict(typed_dict_cls, params, "", top=True)
    for pattern, allowed in KNOWN_ENUMS.get(typed_dict_cls, {}).items():
        for name, value in _find(coerced, _split(pattern), ""):
            if isinstance(value, str) and value not in allowed:
                choices = ", ".join(sorted(allowed))
                checker.add(None, name, f"Invalid {name}: must be one of {choices}")
    return coerced, checker.problems


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn ``[("line_items[0][quantity]", "1"), …]`` back into nested dicts.

    List indices stay string keys (``{"0": …}``) until ``validate`` knows the declared type;
    ``expand[]=a`` style (no index) appends to a list.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head] + (rest[:-1].split("][") if rest.endswith("]") else ([rest] if rest else []))
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt_is_append = not last and parts[i + 1] == ""
            if part == "" and isinstance(node, list):
                if last:
                    node.append(value)
                    break
                node.append({})
                node = node[-1]
                continue
            if not isinstance(node, dict):
                break  # "a=1&a[b]=2": the scalar wins, as in Rails-style parsers
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if nxt_is_append else {})
    return root


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # The generated modules import some names only under TYPE_CHECKING, and a TypedDict's
    # inherited annotations are evaluated in the subclass's module, so give every lookup
    # the typing names plus the few SDK names that are otherwise missing.
    module = sys.modules[cls.__module__]
    namespace = {**vars(typing), "StripeContext": stripe.StripeContext, **vars(module)}
    return typing.get_type_hints(cls, globalns=namespace, include_extras=True)


def _is_map(tp: Any) -> bool:
    return tp in _MAP or (isinstance(tp, type) and issubclass(tp, stripe.StripeObject))


def _is_typed_dict(tp: Any) -> bool:
    return isinstance(tp, type) and typing_extensions.is_typeddict(tp)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


class _Checker:
    def __init__(self, from_form: bool) -> None:
        self.from_form = from_form
        self.problems: list[Problem] = []

    def add(self, code: str | None, param: str, message: str) -> None:
        self.problems.append(Problem(code, param, message))

    def typed_dict(self, cls: type, value: Any, name: str, *, top: bool = False) -> Any:
        if not isinstance(value, Mapping):
            self.add(None, name, f"Invalid object: {name} must be a hash")
            return value
        hints = {k: v for k, v in _hints(cls).items() if not (top and k in _OPTION_KEYS)}
        out: dict[str, Any] = {}
        for key, item in value.items():
            param = _join(name, key)
            if key not in hints:
                self.add("parameter_unknown", param, f"Received unknown parameter: {param}")
            elif item is not None or self.from_form:  # the SDK drops None values before sending
                out[key] = self.value(hints[key], item, param)
        for key in sorted(cls.__required_keys__ & hints.keys()):
            if value.get(key) is None:
                param = _join(name, key)
                self.add("parameter_missing", param, f"Missing required param: {param}.")
        return out

    def value(self, tp: Any, value: Any, name: str) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in _REQUIRED or origin is typing.Annotated:
            return self.value(args[0], value, name)
        if tp is Any or tp is object:
            return value
        if origin in _UNION:
            return self.union(args, value, name)
        if origin in _LITERAL:
            if value not in args:
                self.add(None, name, f"Invalid {name}: must be one of {', '.join(map(str, args))}")
            return value
        if origin in _LIST:
            return self.list(args[0] if args else Any, value, name)
        if _is_map(origin) or _is_map(tp):
            return self.mapping(args[-1] if args else Any, value, name)
        if _is_typed_dict(tp):
            return self.typed_dict(tp, value, name)
        return self.scalar(tp, value, name)

    def union(self, members: tuple[Any, ...], value: Any, name: str) -> Any:
        if value is None and type(None) in members and not self.from_form:
            return None
        unset = any(typing.get_origin(m) in _LITERAL and "" in typing.get_args(m) for m in members)
        if value == "" and unset:
            return ""  # Literal[""] is how the SDK types Stripe's "unset this field"
        attempts = []
        for member in members:
            if member is type(None):
                continue
            trial = _Checker(self.from_form)
            coerced = trial.value(member, value, name)
            if not trial.problems:
                return coerced
            attempts.append((self._kind_matches(member, value), trial))
        # Report the member whose shape (hash / list / scalar) fits the value best.
        best = max(attempts, key=lambda a: a[0])[1] if attempts else None
        if best:
            self.problems.extend(best.problems)
        return value

    def _kind_matches(self, tp: Any, value: Any) -> bool:
        base = typing.get_origin(tp) or tp
        if isinstance(value, Mapping):
            return _is_typed_dict(tp) or _is_map(base) or (self.from_form and base in _LIST)
        if isinstance(value, list | tuple):
            return base in _LIST
        return not (_is_typed_dict(tp) or _is_map(base) or base in _LIST)

    def list(self, item_tp: Any, value: Any, name: str) -> Any:
        if self.from_form and isinstance(value, Mapping):
            if not all(_INT.match(k) for k in value):
                self.add(None, name, f"Invalid array: {name}")
                return value
            value = [value[k] for k in sorted(value, key=int)]
        if not isinstance(value, list | tuple):
            self.add(None, name, f"Invalid array: {name} must be an array")
            return value
        return [self.value(item_tp, item, f"{name}[{i}]") for i, item in enumerate(value)]

    def mapping(self, value_tp: Any, value: Any, name: str) -> Any:
        if not isinstance(value, Mapping):
            self.add(None, name, f"Invalid hash: {name} must be a hash")
            return value
        if value_tp is str:  # metadata-like: an empty value unsets that key, so "" is fine
            value_tp = str | typing.Literal[""]
        return {str(k): self.value(value_tp, v, _join(name, str(k))) for k, v in value.items()}

    def scalar(self, tp: Any, value: Any, name: str) -> Any:
        if self.from_form:
            return self._coerce_form(tp, value, name)
        number = not isinstance(value, bool)  # bool is an int subclass, but never a number here
        ok = {
            bool: isinstance(value, bool),
            int: number and isinstance(value, int | datetime.datetime),  # the SDK sends datetimes as ints
            str: isinstance(value, str),
            float: number and isinstance(value, int | float | decimal.Decimal),
            decimal.Decimal: number and isinstance(value, int | float | decimal.Decimal | str),
        }.get(tp, True)
        if not ok:
            self.add(_TYPE_CODES.get(tp), name, f"Invalid {_TYPE_NAMES.get(tp, tp)}: {value!r}")
        return value

    def _coerce_form(self, tp: Any, value: Any, name: str) -> Any:
        if isinstance(value, Mapping | list):
            self.add(None, name, f"Invalid {_TYPE_NAMES.get(tp, tp)}: {name} must not be a hash or array")
            return value
        if value == "":
            self.add(
                "parameter_invalid_empty",
                name,
                f"You passed an empty string for '{name}'. We assume empty values are an attempt to unset a "
                f"parameter; however '{name}' cannot be unset. You should remove '{name}' from your request "
                "or supply a non-empty value.",
            )
            return value
        if tp is int:
            if _INT.match(value):
                return int(value)
        elif tp is bool:
            if value in ("true", "false"):
                return value == "true"
        elif tp in (float, decimal.Decimal):
            if _DECIMAL.match(value):
                return value
        else:
            return value
        self.add(_TYPE_CODES.get(tp), name, f"Invalid {_TYPE_NAMES[tp]}: {value}")
        return value


_TYPE_NAMES = {int: "integer", bool: "boolean", str: "string", float: "decimal", decimal.Decimal: "decimal"}
_TYPE_CODES = {int: "parameter_invalid_integer"}


def _split(pattern: str) -> list[str]:
    head, _, rest = pattern.partition("[")
    return [head] + (rest[:-1].split("][") if rest else [])


def _find(node: Any, parts: list[str], name: str) -> Iterable[tuple[str, Any]]:
    """Yield (param name, value) for every value at ``parts`` ("*" = every list item)."""
    if not parts:
        yield name, node
        return
    head, rest = parts[0], parts[1:]
    if head == "*" and isinstance(node, list):
        for i, item in enumerate(node):
            yield from _find(item, rest, f"{name}[{i}]")
    elif isinstance(node, Mapping) and head in node:
        yield from _find(node[head], rest, _join(name, head))
