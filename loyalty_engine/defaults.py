"""The demo chain's promotion documents and settings (amounts in cents of a dollar).

- ``threshold-5-10`` (priority 10, everyone): 5 % off a receipt whose subtotal reaches 50.00,
  10 % from 100.00; spread over the lines by amount.
- ``base-accrual-3`` (priority 100, card holders): 3 % of the total after discounts (less the
  part paid with bonus) to the ``bonus`` wallet, spendable at once, burning after 365 days.
- ``small-basket-1`` (priority 110, card holders, every store except the ``discounter``
  format): an extra 1 % when the receipt total is below 20.00, the dollar counterpart of the
  Mission's "+0.5 % bonuses if the receipt total < 1 000" roubles.
- settings: at most half of a receipt may be paid with bonus; the demo stores keep US
  Central time.
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
    ]


def default_settings() -> dict[str, str]:
    """The demo chain's engine settings, as stored in the ``settings`` table."""
    return {"bonus_max_share": "0.5", "timezone": "America/Chicago"}
