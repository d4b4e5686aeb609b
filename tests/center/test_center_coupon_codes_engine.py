"""Codes a head-office batch generates are the codes a register's engine accepts offline."""

from __future__ import annotations

from center.promotions.coupons import check_code, generate_codes
from loyalty_engine import load_promotion_set


def test_every_generated_batch_code_is_accepted_by_a_batch_prefix_rule() -> None:
    promotions = load_promotion_set(
        [
            {
                "promotion_id": "mail-10",
                "kind": "coupon",
                "status": "active",
                "batch_prefix": "MAIL",
                "percent": "10",
            }
        ],
        version=1,
    )
    codes = generate_codes("MAIL", 2000)
    assert len(set(codes)) == 2000
    for code in codes:
        assert check_code(code) == ("MAIL", code[5:15])
        match = promotions.find_coupon(code)
        assert match is not None and match.promotion_id == "mail-10", code
    assert promotions.find_coupon(generate_codes("POST", 1)[0]) is None
