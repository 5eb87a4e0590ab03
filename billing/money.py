"""Money: amounts, tax, the revenue split and its proportional reversal.

Every amount is an ``int`` in the currency's minor units (fen, cents) travelling with its
ISO-4217 code (STYLE rule 13). Floats cannot hold most decimal fractions, so a split computed
with them drifts by a unit here and there and the ledger stops balancing; integer arithmetic
with one stated rounding rule per operation makes every result reproducible to the unit.

The rules, and why:

- Tax (``tax_on``) is charged on tax-exclusive amounts and rounded half up, the rounding a
  consumer checks by hand. A tax-inclusive amount is split by ``split_gross``: the net is
  rounded half up and tax takes the rest, so ``net + tax == gross`` always holds.
  ``split_gross(net + tax_on(net, bps), bps)`` gives back ``net`` exactly.
- The revenue split (``allocate``, PRODUCT.md "Money"): the operator and fund parts are floors
  of their basis-point shares, so neither ever takes more than the rule grants; the providers
  share what is left by integer weight with largest-remainder rounding, ties going to the
  larger weight and then the smaller org id so the same inputs always pay the same provider.
  The parts add up exactly to the amount.
- Refunds and disputes (``reverse``) take back every part in proportion, possibly in several
  steps. After a cumulative refund ``c`` of a payment ``g``, part ``p`` stands reversed by the
  floor or the ceiling of ``p * c / g``, so always within one unit of its exact share. A unit
  once given is never taken back: a step starts from what is already reversed, raises each
  part to its floor (those units are now *due*), and hands the leftover units to the parts
  whose next unit falls due soonest (the smallest cumulative refund at which the floor would
  reach it; ties by part name). This is earliest-deadline-first scheduling, and it keeps the
  invariant that makes every later refund splittable: for every later cumulative refund ``C``,
  the units already given plus those due by ``C`` number at most ``C``. (A unit handed out
  late in deadline order means every unit due by ``C`` that was available went first; the
  ones not yet available at ``c`` but due by ``C`` number at most ``C - c``.) A full refund
  makes every unit due, so it reverses every part exactly. Floors alone are monotone but do
  not add up; recomputing a largest-remainder split at each step can take a unit back (the
  Alabama paradox).

Everything here is pure: no I/O, no clock, no database.
"""

import re
from collections.abc import Mapping

import msgspec

__all__ = [
    "BPS",
    "Allocation",
    "Money",
    "allocate",
    "parts_of",
    "reverse",
    "split_gross",
    "tax_on",
]

BPS = 10_000  # basis points in a whole
_CURRENCY = re.compile(r"[A-Z]{3}")


def _int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    # bool is a subclass of int: True must not pass as one minor unit.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


class Money(msgspec.Struct, frozen=True):
    """An amount in minor units of an ISO-4217 currency: ``Money(amount=12_500, currency="CNY")``."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        _int("amount", self.amount)
        # fullmatch, not ^...$: "$" would also accept a trailing newline.
        if not isinstance(self.currency, str) or not _CURRENCY.fullmatch(self.currency):
            raise ValueError(f"currency must be an upper-case ISO-4217 code such as 'CNY', got {self.currency!r}")

    def _check_same_currency(self, other: "Money") -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}; convert first")

    def __add__(self, other: object) -> "Money":
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: object) -> "Money":
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.amount, self.currency)


def tax_on(net: int, tax_bps: int) -> int:
    """Tax on a tax-exclusive ``net``, rounded half up."""
    # Negative amounts are refused: "half up" is ambiguous below zero, and a credit is
    # computed on its positive amount and then booked the other way.
    _int("net", net, 0)
    _int("tax_bps", tax_bps, 0, BPS)
    return (net * tax_bps + BPS // 2) // BPS


def with_tax(net: int, tax_bps: int) -> int:
    """The tax-inclusive price of a tax-exclusive ``net``: what Stripe is asked to charge."""
    return net + tax_on(net, tax_bps)


def split_gross(gross: int, tax_bps: int) -> tuple[int, int]:
    """Split a tax-inclusive ``gross`` into ``(net, tax)``; net is rounded half up, tax is the rest."""
    _int("gross", gross, 0)
    _int("tax_bps", tax_bps, 0, BPS)
    divisor = BPS + tax_bps
    # floor(x + 1/2) with x = gross * BPS / divisor, kept in integers by doubling.
    net = (2 * gross * BPS + divisor) // (2 * divisor)
    return net, gross - net


class Allocation(msgspec.Struct, frozen=True):
    """One amount split by the revenue-share rule; ``providers`` maps org id to amount, by org id."""

    operator: int
    fund: int
    providers: dict[str, int]

    @property
    def total(self) -> int:
        return self.operator + self.fund + sum(self.providers.values())


def allocate(net: int, operator_bps: int, fund_bps: int, weights: Mapping[str, int]) -> Allocation:
    """Split ``net`` into operator, fund and provider parts that add up exactly to ``net``."""
    _int("net", net, 0)
    _int("operator_bps", operator_bps, 0, BPS)
    _int("fund_bps", fund_bps, 0, BPS)
    if operator_bps + fund_bps > BPS:
        raise ValueError(f"operator_bps + fund_bps must be <= {BPS}, got {operator_bps + fund_bps}")
    if not weights:
        raise ValueError("weights must name at least one provider")
    for org, weight in weights.items():
        if not isinstance(org, str):
            raise ValueError(f"provider ids must be str, got {org!r}")
        _int(f"weight of {org!r}", weight, 1)

    operator = net * operator_bps // BPS
    fund = net * fund_bps // BPS
    rest = net - operator - fund
    total_weight = sum(weights.values())
    shares = {org: divmod(rest * weight, total_weight) for org, weight in weights.items()}
    providers = {org: floor for org, (floor, _) in shares.items()}
    leftover = rest - sum(providers.values())  # < number of providers
    by_claim = sorted(weights, key=lambda org: (-shares[org][1], -weights[org], org))
    for org in by_claim[:leftover]:
        providers[org] += 1
    ordered = {org: providers[org] for org in sorted(providers)}
    return Allocation(operator=operator, fund=fund, providers=ordered)


def parts_of(allocation: Allocation, tax: int = 0) -> dict[str, int]:
    """The named parts of a payment (tax, operator, fund, one per provider), ready for ``reverse``."""
    reserved = {"tax", "operator", "fund"}
    if clash := reserved & allocation.providers.keys():
        raise ValueError(f"provider ids {sorted(clash)} clash with the part names {sorted(reserved)}")
    return {
        "tax": _int("tax", tax, 0),
        "operator": allocation.operator,
        "fund": allocation.fund,
        **allocation.providers,
    }


def _check_parts(parts: Mapping[str, int]) -> int:
    if not parts:
        raise ValueError("parts must name at least one part")
    for key, value in parts.items():
        if not isinstance(key, str):
            raise ValueError(f"part names must be str, got {key!r}")
        _int(f"parts[{key!r}]", value, 0)
    gross = sum(parts.values())
    if gross == 0:
        raise ValueError("parts must add up to more than zero")
    return gross


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def reverse(amount: int, parts: Mapping[str, int], already_reversed: Mapping[str, int]) -> dict[str, int]:
    """How much of each part to reverse for a refund (or dispute) of ``amount``.

    ``parts`` is how the payment was split (summing to its gross); ``already_reversed`` is the sum
    of what earlier calls returned for the same payment (missing keys count as zero). The result
    has every key of ``parts``, sums exactly to ``amount`` and is never negative.
    """
    gross = _check_parts(parts)
    if unknown := already_reversed.keys() - parts.keys():
        raise ValueError(f"already_reversed names parts the payment does not have: {sorted(unknown)}")
    for key, value in already_reversed.items():
        _int(f"already_reversed[{key!r}]", value, 0, parts[key])
    done = sum(already_reversed.values())
    if done >= gross:
        raise ValueError("the payment is already fully reversed")
    _int("amount", amount, 1, gross - done)
    before = {key: already_reversed.get(key, 0) for key in parts}
    for key, part in parts.items():
        if not part * done // gross <= before[key] <= _ceil_div(part * done, gross):
            raise ValueError(
                f"already_reversed[{key!r}] = {before[key]} is not within one unit of its share of the"
                f" {done} refunded so far; the history was not produced by reverse()"
            )

    target = done + amount
    after = {key: max(before[key], part * target // gross) for key, part in parts.items()}
    leftover = target - sum(after.values())
    if leftover < 0:  # impossible for histories made by reverse(), see the module docstring
        raise ValueError("already_reversed was not produced by reverse() and cannot be continued in proportion")
    # A part may take one more unit only while that stays at or below its ceiling.
    open_parts = [key for key, part in parts.items() if after[key] < _ceil_div(part * target, gross)]
    # Due: the smallest cumulative refund at which the part's floor would reach its next unit.
    open_parts.sort(key=lambda key: (_ceil_div((after[key] + 1) * gross, parts[key]), key))
    for key in open_parts[:leftover]:
        after[key] += 1
    return {key: after[key] - before[key] for key in parts}
