"""Money arithmetic: THE one rounding rule of the engine.

Amounts are ``int`` minor units; every rate (percent, share) is a ``Decimal``; a result is
computed exactly (integer arithmetic over the rate's exact ratio) and rounded once, half to
even, to the minor unit. ``float`` is rejected everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from .errors import InvalidAmount

__all__ = [
    "allocate",
    "amount_for_quantity",
    "format_minor",
    "percent_of",
    "round_half_even",
    "share_of",
]


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    return value


_RATIOS: dict[Decimal, tuple[int, int]] = {}


def _ratio(name: str, rate: object) -> tuple[int, int]:
    # Rules hold a few distinct rates: their exact ratios are computed once.
    found = _RATIOS.get(rate) if type(rate) is Decimal else None
    if found is not None:
        return found
    if not isinstance(rate, Decimal):
        raise InvalidAmount(f"{name}: expected a Decimal, got {type(rate).__name__} {rate!r}")
    if not rate.is_finite():
        raise InvalidAmount(f"{name}: expected a finite Decimal, got {rate!r}")
    ratio = rate.as_integer_ratio()
    if len(_RATIOS) < 4096:
        _RATIOS[rate] = ratio
    return ratio


def round_half_even(numerator: int, denominator: int) -> int:
    """Return numerator / denominator rounded half to even (exact integer arithmetic)."""
    # Plain ints pass inline; anything else goes to _int, which words the error.
    if type(numerator) is not int:
        _int("numerator", numerator)
    if (type(denominator) is not int or denominator <= 0) and _int("denominator", denominator) <= 0:
        raise InvalidAmount(f"denominator: expected an int > 0, got {denominator!r}")
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def percent_of(amount_minor: int, percent: Decimal) -> int:
    """Return ``percent`` % of ``amount_minor``, rounded half-even to the minor unit."""
    # The engine's hottest call: the ratio from the cache, the rounding inline.
    ratio = _RATIOS.get(percent) if type(percent) is Decimal else None
    numerator, denominator = ratio if ratio is not None else _ratio("percent", percent)
    if type(amount_minor) is not int:
        _int("amount_minor", amount_minor)
    denominator *= 100
    quotient, remainder = divmod(amount_minor * numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def share_of(amount_minor: int, share: Decimal) -> int:
    """Return ``share`` (0.5 = half) of ``amount_minor``, rounded half-even to the minor unit."""
    numerator, denominator = _ratio("share", share)
    return round_half_even(_int("amount_minor", amount_minor) * numerator, denominator)


def amount_for_quantity(qty_milli: int, unit_price_minor: int) -> int:
    """Return the line amount for ``qty_milli`` thousandths of a unit, rounded half-even."""
    qty = qty_milli if type(qty_milli) is int else _int("qty_milli", qty_milli)
    price = (
        unit_price_minor
        if type(unit_price_minor) is int
        else _int("unit_price_minor", unit_price_minor)
    )
    return round_half_even(qty * price, 1000)


def allocate(total_minor: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_minor`` over ``weights`` by largest remainder; sums exactly, ties by index."""
    total = _int("total_minor", total_minor)
    if total < 0:
        raise InvalidAmount(f"total_minor: expected an int >= 0, got {total}")
    # A plain int passes inline; anything else goes to _int, which words the error (a call
    # and a field name per weight were most of the cost of a discount split).
    checked = list(weights)
    for i, weight in enumerate(checked):
        if type(weight) is not int:
            checked[i] = _int(f"weights[{i}]", weight)
    for i, weight in enumerate(checked):
        if weight < 0:
            raise InvalidAmount(f"weights[{i}]: expected an int >= 0, got {weight}")
    weight_sum = sum(checked)
    if weight_sum == 0:
        if total == 0:
            return [0] * len(checked)
        raise InvalidAmount(f"weights: all zero, cannot allocate total_minor {total}")
    shares: list[int] = []
    remainders: list[tuple[int, int]] = []
    for i, weight in enumerate(checked):
        share, remainder = divmod(total * weight, weight_sum)
        shares.append(share)
        remainders.append((-remainder, i))
    # The leftover units (fewer than the number of non-zero remainders) go to the largest
    # remainders; equal remainders are broken by index so the split is deterministic.
    leftover = total - sum(shares)
    for _, i in sorted(remainders)[:leftover]:
        shares[i] += 1
    return shares


# "00".."99": the minor part of an amount with exponent 2.
CENTS = tuple(f"{cents:02d}" for cents in range(100))


def format_minor(amount_minor: int, exponent: int = 2) -> str:
    """Render minor units as a plain major-unit string: 123456 -> '1234.56' (exponent 2)."""
    amount = amount_minor if type(amount_minor) is int else _int("amount_minor", amount_minor)
    if exponent == 2 and amount >= 0:
        # Every explanation line shows an amount or two: the usual case without the general
        # path (a format spec costs more than the rest of the call).
        return f"{amount // 100}.{CENTS[amount % 100]}"
    if exponent == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{major}.{minor:0{exponent}d}"
