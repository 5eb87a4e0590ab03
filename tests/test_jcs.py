"""catalog/jcs.py: RFC 8785 text, byte for byte what the rfc8785 library writes, for any JSON value."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from catalog import jcs

PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | PRINTABLE
    | st.text(max_size=12)
)
KEYS = PRINTABLE | st.text(max_size=8)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20
)


@given(JSON)
def test_any_json_value_is_written_as_rfc8785_writes_it(value: Any) -> None:
    assert jcs.dumps(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, False, None], "c": {"z": "x", "y": ""}},  # plain: sorted, no spaces
        {"value": 1.0, "tiny": 1e-7, "huge": 1e21},  # ECMAScript number forms
        {"line": "a\nb", "quote": 'say "hi"', "tab": "\t", "bell": "\x07"},  # escapes
        {"\ue000": 1, "\U0001f600": 2},  # UTF-16 order differs from code-point order
        {"big": 2**53 + 1},  # beyond ECMAScript's exact integers: rfc8785 refuses
        {"edge": 2**53},
        {"edge": -(2**53)},
        {"edge": 2**53 - 1},
        {"edge": -(2**53) + 1},  # either side of it
        {"district": "Jing'an", "name": "上海"},
    ],
)
def test_the_cases_where_a_shortcut_would_go_wrong(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception as refused:
        with pytest.raises(type(refused)):
            jcs.dumps(value)
        return
    assert jcs.dumps(value) == expected
