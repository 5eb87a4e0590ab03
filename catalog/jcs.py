"""RFC 8785 (JSON Canonicalization Scheme) text, quickly where the value leaves nothing to choose.

Hashes over JSON (the audit chain, terms, usage payloads) are taken over its RFC 8785 form. The
``rfc8785`` library writes it in pure Python, which costs more than a whole audit append. Most of
what Lode hashes is printable ASCII strings, safe integers, booleans and nulls: for such a value
RFC 8785's form is exactly ``json.dumps`` with sorted keys and no spaces (code-point order is
UTF-16 order for ASCII, and no string needs an escape). Anything else — a float, a string with an
escape or a non-ASCII character, a huge integer — goes to ``rfc8785``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

# Printable ASCII but '"' and '\\': strings that JSON writes as they are, with no escape to choose.
VERBATIM = re.compile(r"[ !#-\[\]-~]*")
SAFE_INT = 2**53  # RFC 8785 writes integers as ECMAScript numbers, exact below this


def dumps(value: Any) -> bytes:
    """``rfc8785.dumps(value)``, byte for byte."""
    if _plain(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return VERBATIM.fullmatch(value) is not None
    if kind is int:
        return -SAFE_INT < value < SAFE_INT
    if value is None or kind is bool:
        return True
    if kind is list:
        return all(_plain(item) for item in value)
    if kind is dict:
        return all(type(k) is str and VERBATIM.fullmatch(k) is not None and _plain(v) for k, v in value.items())
    return False  # floats, tuples and anything else: rfc8785 decides (or refuses)
