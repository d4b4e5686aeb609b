from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_engine import (
    InvalidAmount,
    allocate,
    amount_for_quantity,
    format_minor,
    percent_of,
    share_of,
)
from loyalty_engine.money import round_half_even


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(5, 2, 2), (7, 2, 4), (-5, 2, -2), (-7, 2, -4), (1, 3, 0), (2, 3, 1), (0, 7, 0)],
)
def test_round_half_even(numerator: int, denominator: int, expected: int) -> None:
    assert round_half_even(numerator, denominator) == expected


def test_percent_of_rounds_half_to_even() -> None:
    # 50 * 1 % = 0.5 -> 0; 150 * 1 % = 1.5 -> 2; 250 * 1 % = 2.5 -> 2
    assert percent_of(50, Decimal("1")) == 0
    assert percent_of(150, Decimal("1")) == 2
    assert percent_of(250, Decimal("1")) == 2
    assert percent_of(10834, Decimal("10")) == 1083
    assert percent_of(1000, Decimal("0.5")) == 5
    assert percent_of(1, Decimal("100")) == 1


def test_share_of_and_quantity() -> None:
    assert share_of(9751, Decimal("0.5")) == 4876  # 4875.5 -> 4876 (even)
    assert share_of(9753, Decimal("0.5")) == 4876  # 4876.5 -> 4876 (even)
    assert amount_for_quantity(1500, 199) == 298  # 298.5 -> 298
    assert amount_for_quantity(2500, 199) == 498  # 497.5 -> 498
    assert amount_for_quantity(1000, 1234) == 1234
    assert amount_for_quantity(333, 100) == 33


def test_rates_must_be_decimal_and_amounts_int() -> None:
    with pytest.raises(InvalidAmount, match="percent: expected a Decimal, got float"):
        percent_of(100, 3.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount, match="amount_minor: expected an int"):
        percent_of(1.5, Decimal(3))  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount, match="qty_milli"):
        amount_for_quantity(True, 5)
    with pytest.raises(InvalidAmount, match="finite"):
        share_of(100, Decimal("NaN"))


def test_allocate_examples() -> None:
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]  # tie broken by index
    assert allocate(100, [3333, 2500, 5001]) == [31, 23, 46]
    assert allocate(0, [0, 0]) == [0, 0]
    assert allocate(5, [0, 7]) == [0, 5]
    assert allocate(0, []) == []
    with pytest.raises(InvalidAmount, match="all zero"):
        allocate(5, [0, 0])
    with pytest.raises(InvalidAmount, match=r"weights\[1\]"):
        allocate(5, [1, -1])
    with pytest.raises(InvalidAmount, match="total_minor"):
        allocate(-1, [1])


@given(
    st.integers(min_value=0, max_value=10**9),
    st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=30),
)
def test_allocate_sums_exactly_and_stays_proportional(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        total = 0
    shares = allocate(total, weights)
    assert sum(shares) == total
    assert allocate(total, weights) == shares
    weight_sum = sum(weights) or 1
    for share, weight in zip(shares, weights, strict=True):
        exact = total * weight / weight_sum
        assert abs(share - exact) < 1
        if total <= weight_sum:
            assert share <= weight


def test_format_minor() -> None:
    assert format_minor(123456) == "1234.56"
    assert format_minor(5) == "0.05"
    assert format_minor(-5) == "-0.05"
    assert format_minor(700, 0) == "700"
