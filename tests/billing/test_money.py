"""Tests for billing/money.py: worked examples, edge cases and the properties the rules promise."""

from collections.abc import Iterator
from fractions import Fraction
from itertools import product
from math import floor

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import ledger
from billing.money import (
    BPS,
    Allocation,
    Money,
    allocate,
    parts_of,
    reverse,
    split_gross,
    tax_on,
    with_tax,
)

PROPERTY = settings(max_examples=300, deadline=None)

amounts = st.integers(min_value=0, max_value=10**12)
bps = st.integers(min_value=0, max_value=BPS)
org_ids = st.text(alphabet="abcdefghij_0123456789", min_size=1, max_size=8)
weight_maps = st.dictionaries(org_ids, st.integers(min_value=1, max_value=10_000), min_size=1, max_size=6)


@st.composite
def operator_and_fund_bps(draw: st.DrawFn) -> tuple[int, int]:
    operator = draw(bps)
    return operator, draw(st.integers(min_value=0, max_value=BPS - operator))


part_maps = st.dictionaries(
    st.sampled_from(["tax", "operator", "fund", "org_a", "org_b", "org_c", "org_d", "org_e"]),
    st.integers(min_value=0, max_value=10**9),
    min_size=1,
).filter(lambda parts: sum(parts.values()) > 0)


def half_up(value: Fraction) -> int:
    return floor(value + Fraction(1, 2))


class TestMoney:
    def test_holds_amount_and_currency(self) -> None:
        price = Money(amount=12_500, currency="CNY")
        assert (price.amount, price.currency) == (12_500, "CNY")

    def test_negative_amounts_are_allowed(self) -> None:
        assert Money(-5, "CNY").amount == -5

    @pytest.mark.parametrize("amount", [1.0, 12.5, True, "100", None])
    def test_rejects_non_int_amount(self, amount: object) -> None:
        with pytest.raises(ValueError, match="amount must be an int"):
            Money(amount, "CNY")  # type: ignore[arg-type]

    @pytest.mark.parametrize("currency", ["cny", "CN", "CNYY", "", "CN1", "CNY\n", " CNY", 156])
    def test_rejects_malformed_currency(self, currency: object) -> None:
        with pytest.raises(ValueError, match="ISO-4217"):
            Money(1, currency)  # type: ignore[arg-type]

    def test_adds_and_subtracts_in_one_currency(self) -> None:
        assert Money(700, "CNY") + Money(300, "CNY") == Money(1_000, "CNY")
        assert Money(700, "CNY") - Money(300, "CNY") == Money(400, "CNY")
        assert -Money(700, "CNY") == Money(-700, "CNY")

    def test_refuses_to_mix_currencies(self) -> None:
        with pytest.raises(ValueError, match="cannot combine CNY with USD"):
            Money(1, "CNY") + Money(1, "USD")
        with pytest.raises(ValueError, match="cannot combine"):
            Money(1, "CNY") - Money(1, "USD")

    def test_refuses_to_add_plain_numbers(self) -> None:
        with pytest.raises(TypeError):
            Money(1, "CNY") + 1  # type: ignore[operator]

    def test_is_immutable(self) -> None:
        with pytest.raises(AttributeError):
            Money(1, "CNY").amount = 2  # type: ignore[misc]

    def test_round_trips_through_json_and_validates_on_decode(self) -> None:
        price = Money(12_500, "CNY")
        assert msgspec.json.decode(msgspec.json.encode(price), type=Money) == price
        with pytest.raises(msgspec.ValidationError, match="ISO-4217"):
            msgspec.json.decode(b'{"amount": 1, "currency": "cny"}', type=Money)
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(b'{"amount": 1.5, "currency": "CNY"}', type=Money)


class TestTaxOn:
    @pytest.mark.parametrize(
        ("net", "tax_bps", "tax"),
        [
            (100, 600, 6),
            (25, 1_000, 3),
            (24, 1_000, 2),
            (15, 1_000, 2),
            (0, 600, 0),
            (999, 0, 0),
            (999, BPS, 999),
        ],
    )
    def test_rounds_half_up(self, net: int, tax_bps: int, tax: int) -> None:
        assert tax_on(net, tax_bps) == tax

    @pytest.mark.parametrize(("net", "tax_bps"), [(-1, 600), (100, -1), (100, BPS + 1), (100.0, 600), (100, True)])
    def test_rejects_invalid_input(self, net: object, tax_bps: object) -> None:
        with pytest.raises(ValueError):
            tax_on(net, tax_bps)  # type: ignore[arg-type]

    @PROPERTY
    @given(net=amounts, tax_bps=bps)
    def test_matches_exact_half_up(self, net: int, tax_bps: int) -> None:
        assert tax_on(net, tax_bps) == half_up(Fraction(net * tax_bps, BPS))


class TestSplitGross:
    @pytest.mark.parametrize(
        ("gross", "tax_bps", "expected"),
        [(106, 600, (100, 6)), (0, 600, (0, 0)), (999, 0, (999, 0)), (3, BPS, (2, 1)), (1, 600, (1, 0))],
    )
    def test_splits(self, gross: int, tax_bps: int, expected: tuple[int, int]) -> None:
        assert split_gross(gross, tax_bps) == expected

    @pytest.mark.parametrize(("gross", "tax_bps"), [(-1, 600), (100, -1), (100, BPS + 1), (1.5, 600)])
    def test_rejects_invalid_input(self, gross: object, tax_bps: object) -> None:
        with pytest.raises(ValueError):
            split_gross(gross, tax_bps)  # type: ignore[arg-type]

    @PROPERTY
    @given(gross=amounts, tax_bps=bps)
    def test_net_and_tax_add_up_to_gross(self, gross: int, tax_bps: int) -> None:
        net, tax = split_gross(gross, tax_bps)
        assert net + tax == gross
        assert net >= 0 and tax >= 0
        assert net == half_up(Fraction(gross * BPS, BPS + tax_bps))

    @PROPERTY
    @given(net=amounts, tax_bps=bps)
    def test_inverts_tax_on(self, net: int, tax_bps: int) -> None:
        assert with_tax(net, tax_bps) == net + tax_on(net, tax_bps)
        recovered, tax = split_gross(with_tax(net, tax_bps), tax_bps)
        assert abs(recovered - net) <= 1
        # Stronger than the one-unit promise: half-up on both sides makes it exact.
        assert (recovered, tax) == (net, tax_on(net, tax_bps))


class TestAllocate:
    def test_worked_example(self) -> None:
        allocation = allocate(3_333_333, 1500, 500, {"org_a": 70, "org_b": 30})
        assert allocation == Allocation(
            operator=499_999, fund=166_666, providers={"org_a": 1_866_668, "org_b": 800_000}
        )
        assert allocation.total == 3_333_333

    def test_zero_amount(self) -> None:
        assert allocate(0, 1500, 500, {"org_a": 1}) == Allocation(0, 0, {"org_a": 0})

    def test_single_provider_takes_the_rest(self) -> None:
        assert allocate(1_001, 1500, 500, {"org_a": 7}) == Allocation(150, 50, {"org_a": 801})

    def test_zero_bps_leaves_everything_to_providers(self) -> None:
        assert allocate(10, 0, 0, {"org_a": 1, "org_b": 1}) == Allocation(0, 0, {"org_a": 5, "org_b": 5})

    def test_full_bps_leaves_nothing_to_providers(self) -> None:
        assert allocate(999, BPS, 0, {"org_a": 1}) == Allocation(999, 0, {"org_a": 0})
        assert allocate(999, 6_000, 4_000, {"org_a": 1}) == Allocation(599, 399, {"org_a": 1})

    def test_tie_goes_to_larger_weight(self) -> None:
        # Shares 0.5 and 1.5: equal remainders, so the larger weight gets the unit.
        assert allocate(2, 0, 0, {"org_a": 1, "org_b": 3}).providers == {"org_a": 0, "org_b": 2}

    def test_tie_on_equal_weights_goes_to_smaller_org_id(self) -> None:
        assert allocate(1, 0, 0, {"org_b": 5, "org_a": 5}).providers == {"org_a": 1, "org_b": 0}

    def test_providers_are_ordered_by_org_id(self) -> None:
        allocation = allocate(100, 0, 0, {"org_c": 1, "org_a": 1, "org_b": 1})
        assert list(allocation.providers) == ["org_a", "org_b", "org_c"]

    @pytest.mark.parametrize(
        ("net", "operator_bps", "fund_bps", "weights", "message"),
        [
            (-1, 0, 0, {"org_a": 1}, "net must be >= 0"),
            (1.0, 0, 0, {"org_a": 1}, "net must be an int"),
            (1, -1, 0, {"org_a": 1}, "operator_bps must be >= 0"),
            (1, 0, -1, {"org_a": 1}, "fund_bps must be >= 0"),
            (1, BPS + 1, 0, {"org_a": 1}, "operator_bps must be <= 10000"),
            (1, 9_000, 1_001, {"org_a": 1}, "operator_bps \\+ fund_bps"),
            (1, 0, 0, {}, "at least one provider"),
            (1, 0, 0, {"org_a": 0}, "weight of 'org_a' must be >= 1"),
            (1, 0, 0, {"org_a": -3}, "must be >= 1"),
            (1, 0, 0, {"org_a": True}, "must be an int"),
            (1, 0, 0, {"org_a": 0.5}, "must be an int"),
            (1, 0, 0, {7: 1}, "provider ids must be str"),
        ],
    )
    def test_rejects_invalid_input(
        self, net: object, operator_bps: object, fund_bps: object, weights: object, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            allocate(net, operator_bps, fund_bps, weights)  # type: ignore[arg-type]

    @PROPERTY
    @given(net=amounts, rule=operator_and_fund_bps(), weights=weight_maps)
    def test_parts_add_up_and_stay_within_one_unit(
        self, net: int, rule: tuple[int, int], weights: dict[str, int]
    ) -> None:
        operator_bps, fund_bps = rule
        allocation = allocate(net, operator_bps, fund_bps, weights)

        assert allocation.total == net
        for part, part_bps in ((allocation.operator, operator_bps), (allocation.fund, fund_bps)):
            assert 0 <= Fraction(net * part_bps, BPS) - part < 1
        rest = net - allocation.operator - allocation.fund
        total_weight = sum(weights.values())
        assert allocation.providers.keys() == weights.keys()
        assert list(allocation.providers) == sorted(weights)
        for org, amount in allocation.providers.items():
            assert amount >= 0
            assert abs(amount - Fraction(rest * weights[org], total_weight)) < 1

    @PROPERTY
    @given(net=amounts, rule=operator_and_fund_bps(), weights=weight_maps)
    def test_does_not_depend_on_weight_order(self, net: int, rule: tuple[int, int], weights: dict[str, int]) -> None:
        shuffled = dict(reversed(weights.items()))
        assert allocate(net, *rule, weights) == allocate(net, *rule, shuffled)


class TestPartsOf:
    def test_names_every_part(self) -> None:
        allocation = allocate(3_333_333, 1500, 500, {"org_a": 70, "org_b": 30})
        parts = parts_of(allocation, tax=200_000)
        assert parts == {
            "tax": 200_000,
            "operator": 499_999,
            "fund": 166_666,
            "org_a": 1_866_668,
            "org_b": 800_000,
        }
        assert sum(parts.values()) == 3_533_333

    def test_refuses_provider_named_like_a_part(self) -> None:
        with pytest.raises(ValueError, match="clash"):
            parts_of(Allocation(1, 1, {"fund": 1}))


PAYMENT = {"tax": 6, "operator": 15, "fund": 5, "org_a": 50, "org_b": 30}  # gross 106
# Floors 0, 1, 0, 4, 2 leave 3 units; they go to the parts whose next unit falls due soonest:
# org_a and org_b (at 11 of 106), then operator (15), before tax (18) and fund (22).
FIRST_TEN = {"tax": 0, "operator": 2, "fund": 0, "org_a": 5, "org_b": 3}


def refund_sequences(gross: int) -> Iterator[list[int]]:
    """Every way to refund ``gross`` in positive steps (all 2**(gross-1) compositions)."""
    for cuts in product((False, True), repeat=gross - 1):
        steps, current = [], 1
        for cut in cuts:
            if cut:
                steps.append(current)
                current = 1
            else:
                current += 1
        yield [*steps, current]


class TestReverse:
    def test_full_refund_reverses_every_part(self) -> None:
        assert reverse(106, PAYMENT, {}) == PAYMENT

    def test_partial_refunds_then_the_rest(self) -> None:
        first = reverse(10, PAYMENT, {})
        assert first == FIRST_TEN
        second = reverse(50, PAYMENT, first)
        assert sum(second.values()) == 50
        done = {key: first[key] + second[key] for key in PAYMENT}
        last = reverse(46, PAYMENT, done)
        assert {key: done[key] + last[key] for key in PAYMENT} == PAYMENT

    def test_one_unit_refunds_cover_the_payment_exactly(self) -> None:
        done = dict.fromkeys(PAYMENT, 0)
        for _ in range(106):
            step = reverse(1, PAYMENT, done)
            assert sorted(step.values()) == [0, 0, 0, 0, 1]
            done = {key: done[key] + step[key] for key in PAYMENT}
        assert done == PAYMENT

    def test_zero_parts_are_never_reversed(self) -> None:
        assert reverse(3, {"tax": 0, "org_a": 5}, {}) == {"tax": 0, "org_a": 3}

    @pytest.mark.parametrize(
        ("amount", "parts", "already", "message"),
        [
            (0, PAYMENT, {}, "amount must be >= 1"),
            (-5, PAYMENT, {}, "amount must be >= 1"),
            (107, PAYMENT, {}, "amount must be <= 106"),
            (1.0, PAYMENT, {}, "amount must be an int"),
            (97, PAYMENT, FIRST_TEN, "amount must be <= 96"),
            (1, PAYMENT, PAYMENT, "already fully reversed"),
            (1, PAYMENT, {"org_z": 1}, "does not have"),
            (1, PAYMENT, {"tax": 7}, "must be <= 6"),
            (1, PAYMENT, {"tax": -1}, "must be >= 0"),
            (1, PAYMENT, {"org_a": 10}, "not within one unit of its share"),
            (1, PAYMENT, {"tax": 1, "org_a": 9}, "not within one unit of its share"),
            (1, {"a": 1, "b": 1, "c": 2}, {"c": 2}, "not within one unit of its share"),
            # Within one unit at 2 of 6, but a and b took units due only at 6 while c and d are
            # owed one each at 3 of 6: keeping a's and b's would make 4 units for a refund of 3.
            (1, {"a": 1, "b": 1, "c": 2, "d": 2}, {"a": 1, "b": 1}, "cannot be continued"),
            (1, {}, {}, "at least one part"),
            (1, {"tax": 0}, {}, "more than zero"),
            (1, {"tax": -1, "org_a": 5}, {}, "must be >= 0"),
        ],
    )
    def test_rejects_invalid_input(self, amount: object, parts: dict, already: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            reverse(amount, parts, already)  # type: ignore[arg-type]

    @PROPERTY
    @given(parts=part_maps, data=st.data())
    def test_any_sequence_of_refunds_stays_proportional_and_never_overshoots(
        self, parts: dict[str, int], data: st.DataObject
    ) -> None:
        gross = sum(parts.values())
        done = dict.fromkeys(parts, 0)
        refunded = 0
        refund_to_the_end = data.draw(st.booleans(), label="refund to the end")
        for _ in range(data.draw(st.integers(min_value=1, max_value=8), label="steps")):
            left = gross - refunded
            if left == 0:
                break
            # Bias toward small refunds so long sequences happen, with an occasional large one.
            small = st.integers(min_value=1, max_value=min(left, 1_000))
            amount = data.draw(st.one_of(small, st.integers(min_value=1, max_value=left)), label="amount")
            step = reverse(amount, parts, done)

            assert step.keys() == parts.keys()
            assert sum(step.values()) == amount
            assert all(value >= 0 for value in step.values())
            refunded += amount
            done = {key: done[key] + step[key] for key in parts}
            for key, part in parts.items():
                assert done[key] <= part
                assert abs(done[key] - Fraction(part * refunded, gross)) < 1
        if refund_to_the_end and refunded < gross:
            step = reverse(gross - refunded, parts, done)
            assert all(value >= 0 for value in step.values())
            done = {key: done[key] + step[key] for key in parts}
            refunded = gross
        if refunded == gross:
            assert done == parts

    @pytest.mark.parametrize(
        "parts",
        [
            {"a": 1, "b": 1, "c": 2},
            {"a": 1, "b": 1, "c": 1, "d": 1, "e": 5},
            {"a": 3, "b": 0, "c": 7},
            {"a": 2, "b": 3, "c": 5, "d": 1},
            {"a": 1, "b": 12},
        ],
    )
    def test_every_refund_sequence_of_a_small_payment(self, parts: dict[str, int]) -> None:
        gross = sum(parts.values())
        for steps in refund_sequences(gross):
            done, refunded = dict.fromkeys(parts, 0), 0
            for amount in steps:
                step = reverse(amount, parts, done)
                assert min(step.values()) >= 0 and sum(step.values()) == amount
                refunded += amount
                done = {key: done[key] + step[key] for key in parts}
                for key, part in parts.items():
                    assert abs(done[key] - Fraction(part * refunded, gross)) < 1
            assert done == parts

    @PROPERTY
    @given(
        net=st.integers(min_value=1, max_value=10**12),
        rule=operator_and_fund_bps(),
        weights=weight_maps.filter(lambda w: not {"tax", "operator", "fund"} & w.keys()),
        tax_bps=bps,
        data=st.data(),
    )
    def test_reverses_an_allocated_payment(
        self, net: int, rule: tuple[int, int], weights: dict[str, int], tax_bps: int, data: st.DataObject
    ) -> None:
        parts = parts_of(allocate(net, *rule, weights), tax=tax_on(net, tax_bps))
        gross = sum(parts.values())
        first = data.draw(st.integers(min_value=1, max_value=gross), label="first refund")
        done = reverse(first, parts, {})
        if first < gross:
            rest = reverse(gross - first, parts, done)
            done = {key: done[key] + rest[key] for key in parts}
        assert done == parts


class TestLedgerLegs:
    """The journals billing posts for a payment and its refunds balance, and never overdraw a party."""

    @PROPERTY
    @given(
        net=st.integers(min_value=1, max_value=10**10),
        rule=operator_and_fund_bps(),
        weights=weight_maps.filter(lambda w: not {"tax", "operator", "fund"} & w.keys()),
        tax_bps=bps,
        data=st.data(),
    )
    def test_charge_and_refund_journals_balance_and_net_to_zero(
        self, net: int, rule: tuple[int, int], weights: dict[str, int], tax_bps: int, data: st.DataObject
    ) -> None:
        split = allocate(net, *rule, weights)
        parts = parts_of(split, tax=tax_on(net, tax_bps))
        gross = sum(parts.values())
        journals = [ledger.charge_legs(gross, parts, "org_operator", split.providers, payer="org_consumer")]
        done = {key: 0 for key in parts}
        refunded = 0
        while refunded < gross and data.draw(st.booleans(), label="refund again"):
            amount = data.draw(st.integers(min_value=1, max_value=gross - refunded), label="refund")
            shares = reverse(amount, parts, done)
            journals.append(ledger.reversal_legs(amount, shares, "org_operator", payer="org_consumer"))
            done = {key: done[key] + shares[key] for key in parts}
            refunded += amount

        balances: dict[tuple[str, str | None], int] = {}
        for legs in journals:
            assert sum(amount for _, _, amount in legs) == 0
            for account, org, amount in legs:
                balances[account, org] = balances.get((account, org), 0) + amount
            # Credits are negative: no party is ever owed less than nothing, and the balance
            # at Stripe never goes below zero.
            assert balances[ledger.BALANCE, "org_consumer"] >= 0
            assert all(value <= 0 for (account, _), value in balances.items() if account != ledger.BALANCE)
        assert balances[ledger.BALANCE, "org_consumer"] == gross - refunded
        if refunded == gross:
            assert not any(balances.values())
