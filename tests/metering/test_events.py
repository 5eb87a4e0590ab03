"""The payload digest that tells a retried usage event from a different one under the same key."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from catalog.metering.events import payload_digest

ANY_TEXT = st.text(max_size=40)
IDS = st.from_regex(r"lic_[0-9A-Z]{26}", fullmatch=True) | ANY_TEXT
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])


def reference(licence_id: str, dimension: str, quantity: int, at: datetime, analyst: str | None) -> str:
    payload = {
        "licence_id": licence_id,
        "dimension": dimension,
        "quantity": quantity,
        "occurred_at": at.isoformat(),
        "analyst_id": analyst,
    }
    return hashlib.sha256(rfc8785.dumps(payload)).hexdigest()


@given(
    IDS,
    st.sampled_from(["queries", "rows_returned", "bytes_downloaded", "epsilon_spent"]) | ANY_TEXT,
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | st.integers(min_value=1, max_value=10**15),
    st.datetimes(timezones=ZONES),
    st.none() | st.from_regex(r"usr_[0-9A-Z]{26}", fullmatch=True) | ANY_TEXT,
)
def test_the_digest_is_sha256_of_the_rfc8785_payload(
    licence_id: str, dimension: str, quantity: int, at: datetime, analyst: str | None
) -> None:
    """Byte for byte the rfc8785 library's form: quotes, backslashes, control and non-ASCII
    characters in any string, and integers up to the edge of the safe range."""
    assert payload_digest(licence_id, dimension, quantity, at, analyst) == reference(
        licence_id, dimension, quantity, at, analyst
    )


def test_the_digest_changes_with_every_field() -> None:
    at = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    base = ("lic_01M8KVKQGKP6EMK5A3616BQ0E5", "queries", 3, at, None)
    variants = [
        ("lic_01M8KVKQGKP6EMK5A3616BQ0E6", "queries", 3, at, None),
        ("lic_01M8KVKQGKP6EMK5A3616BQ0E5", "rows_returned", 3, at, None),
        ("lic_01M8KVKQGKP6EMK5A3616BQ0E5", "queries", 4, at, None),
        ("lic_01M8KVKQGKP6EMK5A3616BQ0E5", "queries", 3, at + timedelta(microseconds=1), None),
        ("lic_01M8KVKQGKP6EMK5A3616BQ0E5", "queries", 3, at, "usr_01M8KVKQGKP6EMK5A3616BQ0E5"),
    ]
    digests = {payload_digest(*base), *(payload_digest(*v) for v in variants)}
    assert len(digests) == 1 + len(variants)


def test_one_instant_written_in_two_zones_is_two_payloads() -> None:
    """The same instant is an equal datetime in any zone, but its text differs: whatever is cached
    for one must not answer for the other."""
    utc = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
    shanghai = utc.astimezone(timezone(timedelta(hours=8)))
    assert utc == shanghai
    args = ("lic_01M8KVKQGKP6EMK5A3616BQ0E5", "queries", 3)
    for at in (utc, shanghai, utc):
        assert payload_digest(*args, at, None) == reference(*args, at, None)
    assert payload_digest(*args, utc, None) != payload_digest(*args, shanghai, None)
