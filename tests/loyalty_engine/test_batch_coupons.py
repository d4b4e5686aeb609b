"""Head-office batch codes (PREFIX-BBBBBBBBBBC): accepted offline by their check character."""

from __future__ import annotations

import pytest

from loyalty_engine import CouponMatch, CustomerState, RuleError, calculate, load_promotion_set
from loyalty_engine.coupons import BATCH_ALPHABET, batch_check_char, batch_code_prefix

from .conftest import MakeReceipt

DOC = {
    "promotion_id": "spring-mail",
    "kind": "coupon",
    "status": "active",
    "batch_prefix": "spr24",
    "percent": "10",
}
BODY = "23456789AB"
CODE = f"SPR24-{BODY}{batch_check_char(BODY)}"


def test_a_batch_code_is_recognised_by_its_check_character() -> None:
    assert batch_code_prefix(CODE) == "SPR24"
    assert batch_code_prefix(" " + CODE.lower() + " ") == "SPR24"
    # Every single-character typo in the body or check character is caught.
    rest = CODE.split("-", 1)[1]
    for i, right in enumerate(rest):
        for wrong in BATCH_ALPHABET:
            if wrong != right:
                typo = "SPR24-" + rest[:i] + wrong + rest[i + 1 :]
                assert batch_code_prefix(typo) is None, typo
    assert batch_code_prefix("SPR24-" + BODY) is None  # no check character
    assert batch_code_prefix("SPR24-0345678" + "9AB") is None  # 0 is not in the alphabet


def test_a_coupon_rule_with_batch_prefix_accepts_its_codes_only(
    make_receipt: MakeReceipt,
) -> None:
    promotions = load_promotion_set([DOC], version=1)
    assert promotions.find_coupon(CODE.lower()) == CouponMatch(CODE, "spring-mail", "", False)
    other = f"OTHER-{BODY}{batch_check_char(BODY)}"
    assert promotions.find_coupon(other) is None
    assert promotions.find_coupon(CODE[:-1] + ("2" if CODE[-1] != "2" else "3")) is None
    sold = calculate(make_receipt(3000, coupon_codes=(CODE,)), promotions)
    assert (sold.discount_minor, sold.coupons_consumed) == (300, (CODE,))
    # Single use: a code the customer already redeemed is refused.
    used = CustomerState(used_coupons=frozenset({CODE}))
    again = calculate(make_receipt(3000, coupon_codes=(CODE,), customer=used), promotions)
    assert again.discount_minor == 0
    assert again.explanation == (f"spring-mail: skipped: single-use coupon {CODE} already used",)


def test_a_bad_batch_prefix_is_named() -> None:
    with pytest.raises(RuleError, match=r"batch_prefix: expected 1\.\.8 letters or digits"):
        load_promotion_set([{**DOC, "batch_prefix": "SPR-24"}], version=1)
