"""The demo chain's promotion documents and settings (amounts in cents of a dollar).

- ``threshold-5-10`` (priority 10, everyone): 5 % off a receipt whose subtotal reaches 50.00,
  10 % from 100.00; spread over the lines by amount.
- ``base-accrual-3`` (priority 100, card holders): 3 % of the total after discounts (less the
  part paid with bonus) to the ``bonus`` wallet, spendable at once, burning after 365 days.
- ``small-basket-1`` (priority 110, card holders, every store except the ``discounter``
  format): an extra 1 % when the receipt total is below 20.00, the dollar counterpart of the
  Mission's "+0.5 % bonuses if the receipt total < 1 000" roubles.
- ``next-visit-coupon`` (priority 200, everyone): a receipt whose total after discounts
  reaches 60.00 gets a signed coupon ``NEXT5-...`` valid 14 days, printed as a coupon slip.
  Its code is derived from store, receipt id (the sale id), rule and time: the same sale always
  issues the same code, so the Center can recompute it.
- ``next-visit-redeem`` (priority 20, everyone): such a coupon takes 5 % off a later receipt
  whose subtotal reaches 30.00, on what the threshold discount left; single use.
- settings: at most half of a receipt may be paid with bonus; amounts are US dollars; the demo
  stores keep US Central time; ``coupon_key`` signs and verifies coupons (the demo's key is
  public: a production chain MUST set its own secret in its ``settings`` table).
"""

from __future__ import annotations

from typing import Any

__all__ = ["default_promotions", "default_settings"]


def default_promotions() -> list[dict[str, Any]]:
    """The demo chain's rule documents (fresh, JSON-serialisable dicts)."""
    return [
        {
            "promotion_id": "threshold-5-10",
            "title": "5 % off from 50.00, 10 % off from 100.00",
            "kind": "threshold_discount",
            "status": "active",
            "priority": 10,
            "requires_card": False,
            "steps": [
                {"min_total_minor": 5000, "percent": "5"},
                {"min_total_minor": 10000, "percent": "10"},
            ],
            "messages": {
                "slip": "Скидка {percent} %: -{amount} / Discount {percent} %: -{amount}",
                "cashier": "Threshold discount {percent} %: -{amount}",
                "display": "Discount {percent} %: -{amount}",
            },
        },
        {
            "promotion_id": "base-accrual-3",
            "title": "3 % bonus for every card holder",
            "kind": "accrual_percent",
            "status": "active",
            "priority": 100,
            "requires_card": True,
            "percent": "3",
            "wallet": "bonus",
            "delay_days": 0,
            "lifetime_days": 365,
            "accrue_on_bonus_paid": False,
            "messages": {
                "slip": "Начислено {amount} бонусов / Bonus earned: {amount}",
                "display": "+{amount} bonus",
            },
        },
        {
            "promotion_id": "small-basket-1",
            "title": "+1 % bonus when the receipt total is below 20.00",
            "kind": "accrual_percent",
            "status": "active",
            "priority": 110,
            "requires_card": True,
            "place": {"exclude_formats": ["discounter"]},
            "percent": "1",
            "wallet": "bonus",
            "max_total_minor": 2000,
            "lifetime_days": 365,
            "messages": {
                "slip": "Бонус за небольшую покупку: {amount} / Small basket bonus: {amount}",
            },
        },
        {
            "promotion_id": "next-visit-coupon",
            "title": "A 5 % coupon for the next visit from a 60.00 receipt",
            "kind": "issue_coupon",
            "status": "active",
            "priority": 200,
            "requires_card": False,
            "prefix": "NEXT5",
            "min_total_minor": 6000,
            "valid_days": 14,
            "messages": {
                "slip": "Купон: 5 % на следующую покупку от 30.00 до {valid_until} / "
                "Coupon: 5 % off your next purchase from 30.00, valid until {valid_until}",
                "cashier": "Coupon {code} issued",
            },
        },
        {
            "promotion_id": "next-visit-redeem",
            "title": "5 % off with a NEXT5 coupon from a 30.00 receipt",
            "kind": "coupon",
            "status": "active",
            "priority": 20,
            "requires_card": False,
            "signed_prefix": "NEXT5",
            "multi_use": False,
            "min_subtotal_minor": 3000,
            "percent": "5",
            "messages": {
                "slip": "Скидка по купону {percent} %: -{amount} / "
                "Coupon {percent} % off: -{amount}",
                "cashier": "Coupon {percent} %: -{amount}",
                "display": "Coupon -{amount}",
            },
        },
    ]


# Public, for the demo and tests only: anyone can forge coupons signed with it. A production
# chain sets its own random secret as the ``coupon_key`` row of its settings table.
DEMO_COUPON_KEY = "demo-only-coupon-key-not-secret"


def default_settings() -> dict[str, str]:
    """The demo chain's engine settings, as stored in the ``settings`` table."""
    return {
        "bonus_max_share": "0.5",
        "timezone": "America/Chicago",
        # The demo chain's amounts are cents of a dollar (Complete Journey).
        "currency": "USD",
        # Issuing coupons needs a signing key (the engine skips issue_coupon without one).
        "coupon_key": DEMO_COUPON_KEY,
    }
