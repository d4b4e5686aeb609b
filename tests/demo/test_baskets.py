from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from demo.baskets import BasketLine, dollars_to_minor, load_baskets, to_receipt_line


def test_dollars_to_minor_reads_the_shortest_decimal_form() -> None:
    # 0.29 * 100 == 28.999999999999996 as a float: truncation would lose a cent.
    assert dollars_to_minor(0.29) == 29
    assert dollars_to_minor(2.675) == 268  # repr is '2.675', half-even to the cent: 2.68
    assert dollars_to_minor(2.665) == 266  # half-even: 2.66
    assert dollars_to_minor(0.0) == 0
    assert dollars_to_minor(1234.5) == 123450


def test_unit_line_keeps_count_and_price() -> None:
    line = to_receipt_line(BasketLine(product_id="1", quantity=3, amount_minor=297))
    assert line == {"product_id": "1", "qty_milli": 3000, "unit_price_minor": 99}


def test_uneven_line_becomes_weighed_with_exact_amount() -> None:
    line = to_receipt_line(BasketLine(product_id="7", quantity=3, amount_minor=100))
    assert line["weighed"] is True
    assert line["amount_minor"] == 100
    assert line["qty_milli"] == 3000
    assert line["unit_price_minor"] == 33


def test_quantity_zero_is_a_weighed_line_of_nominal_one_unit() -> None:
    line = to_receipt_line(BasketLine(product_id="7", quantity=0, amount_minor=351))
    assert line == {
        "product_id": "7",
        "qty_milli": 1000,
        "unit_price_minor": 351,
        "amount_minor": 351,
        "weighed": True,
    }


@given(st.integers(min_value=0, max_value=100_000), st.integers(min_value=0, max_value=10**7))
def test_no_cent_is_invented_or_lost(quantity: int, amount: int) -> None:
    line = to_receipt_line(BasketLine(product_id="p", quantity=quantity, amount_minor=amount))
    if "amount_minor" in line:
        assert line["amount_minor"] == amount
    else:
        assert Decimal(line["qty_milli"]) * line["unit_price_minor"] / 1000 == amount
    assert line["qty_milli"] > 0


def test_real_baskets_of_one_store_day_are_grouped_and_ordered() -> None:
    baskets = load_baskets(["367"], days=1)
    assert baskets, "store 367 sold on the dataset's first day"
    assert all(b.store_id == "367" for b in baskets)
    assert [b.at for b in baskets] == sorted(b.at for b in baskets)
    assert len({b.basket_id for b in baskets}) == len(baskets)
    assert all(b.lines and b.amount_minor >= 0 for b in baskets)
