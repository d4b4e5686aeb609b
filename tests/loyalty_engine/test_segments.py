"""A receipt carrying several segments: a rule's segment condition matches any of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loyalty_engine import Receipt, calculate, load_promotion_set

MakeReceipt = Callable[..., Receipt]
MakeDoc = Callable[..., dict[str, Any]]


def test_any_of_several_segments_matches(make_receipt: MakeReceipt, threshold_doc: MakeDoc) -> None:
    promotions = load_promotion_set([threshold_doc(segments=["gold", "vip"])], version=1)
    both = calculate(make_receipt(6000, card_no="C1", segments=("lapsed", "vip")), promotions)
    assert both.discount_minor == 300
    none = calculate(make_receipt(6000, card_no="C1", segments=("lapsed", "new")), promotions)
    assert none.discount_minor == 0
    assert none.explanation == ("T5: skipped: segments 'lapsed', 'new' not in the rule's segments",)


def test_single_segment_and_segments_combine(
    make_receipt: MakeReceipt, threshold_doc: MakeDoc
) -> None:
    promotions = load_promotion_set([threshold_doc(segments=["gold"])], version=1)
    old_style = calculate(make_receipt(6000, card_no="C1", segment="gold"), promotions)
    assert old_style.discount_minor == 300
    mixed = calculate(
        make_receipt(6000, card_no="C1", segment="silver", segments=("gold",)), promotions
    )
    assert mixed.discount_minor == 300
    alone = calculate(make_receipt(6000, card_no="C1", segments=("silver",)), promotions)
    assert alone.explanation == ("T5: skipped: segment 'silver' not in the rule's segments",)
    nobody = calculate(make_receipt(6000, card_no="C1"), promotions)
    assert nobody.explanation == ("T5: skipped: segment '' not in the rule's segments",)


def test_all_segments_has_no_repeats(make_receipt: MakeReceipt) -> None:
    receipt = make_receipt(100, segment="gold", segments=("gold", "vip"))
    assert receipt.all_segments == ("gold", "vip")
    assert make_receipt(100).all_segments == ()
