"""Identifiers: prefixed ULIDs in Crockford base32, ordered by the time they were minted."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog import ids

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def crockford(value: int) -> str:
    """The 26-digit base32 form, one digit at a time: the reference the fast encoder must match."""
    digits = []
    for _ in range(26):
        digits.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(digits))


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_encode_is_crockford_base32(value: int) -> None:
    assert ids.encode(value) == crockford(value)


@pytest.mark.parametrize("value", [0, 1, 2**80 - 1, 2**80, 2**128 - 1])
def test_encode_edges(value: int) -> None:
    assert ids.encode(value) == crockford(value)


def test_ids_are_valid_strictly_ordered_and_carry_the_time() -> None:
    minted = [ids.new_id("use") for _ in range(5_000)]  # many share a millisecond
    assert all(ids.is_id(i, "use") for i in minted)
    assert minted == sorted(minted) and len(set(minted)) == len(minted)
    millis = int(minted[-1][4:14].translate(str.maketrans(ALPHABET, "0123456789abcdefghijklmnopqrstuv")), 32)
    assert abs(millis - time.time_ns() // 1_000_000) < 60_000


def test_unknown_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown id prefix"):
        ids.new_id("zzz")


def test_a_batch_of_ids_is_ordered_and_follows_single_ids() -> None:
    before = ids.new_id("use")
    batch = ids.new_ids("use", 1_000)
    after = ids.new_id("use")
    assert [before, *batch, after] == sorted({before, *batch, after})  # distinct and ascending
    assert len(batch) == 1_000 and all(ids.is_id(i, "use") for i in batch)


def test_a_batch_that_would_wrap_the_random_part_moves_to_the_next_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now_ms = time.time_ns() // 1_000_000 + 10_000  # ahead of the clock, so "this millisecond" is ours
    monkeypatch.setattr(ids, "_last_ms", now_ms)
    monkeypatch.setattr(ids, "_last_rand", 2**80 - 3)
    batch = ids.new_ids("use", 5)
    assert batch == sorted(set(batch)) and len(batch) == 5
    millis = {int(i[4:14].translate(str.maketrans(ALPHABET, "0123456789abcdefghijklmnopqrstuv")), 32) for i in batch}
    assert millis == {now_ms + 1}


@given(st.integers(min_value=0, max_value=2**80 - 1_100), st.integers(min_value=1, max_value=1_100))
def test_a_batch_spells_every_id_as_encode_does_across_carries(rand: int, n: int) -> None:
    """The batch path spells the digits above the last two once per value they take: each id must
    still be exactly ``encode`` of its value, also where adding carries past the last two digits."""
    ms = 1_800_000_000_000
    before = (ids._last_ms, ids._last_rand)
    try:
        ids._last_ms, ids._last_rand = ms + 10**9, rand - 1  # "this millisecond" is ahead of the clock
        batch = ids.new_ids("use", n)
    finally:
        ids._last_ms, ids._last_rand = before
    base = ((ms + 10**9) << 80) | rand
    assert batch == [f"use_{crockford(base + i)}" for i in range(n)]


def test_a_batch_across_the_twenty_bit_boundary() -> None:
    before = (ids._last_ms, ids._last_rand)
    ms = time.time_ns() // 1_000_000 + 10**9
    try:
        ids._last_ms, ids._last_rand = ms, (1 << 20) - 6  # the sixth id carries into the digits above
        batch = ids.new_ids("use", 10)
    finally:
        ids._last_ms, ids._last_rand = before
    base = (ms << 80) | ((1 << 20) - 5)
    assert batch == [f"use_{crockford(base + i)}" for i in range(10)]
    assert batch[4][:-4] != batch[5][:-4]
