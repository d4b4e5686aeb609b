"""The registry of rule kinds: a kind name maps to its stage and document parser."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from . import accrual_percent, coupon, goods, loyalty, referral, restriction, threshold_discount
from .base import Context, Kind, Outcome, Stage, Terms

__all__ = ["KINDS", "Context", "Kind", "Outcome", "Stage", "Terms"]

KINDS: Mapping[str, Kind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            threshold_discount.KIND,
            accrual_percent.KIND,
            goods.GOODS_DISCOUNT,
            goods.LADDER,
            goods.BUY_GET,
            goods.SET_PRICE,
            goods.PERSONAL_OFFERS,
            goods.COMPLIMENT_REDEEM,
            goods.WALLET_EXCHANGE,
            goods.PRICE_FLOOR,
            coupon.COUPON,
            coupon.ISSUE_COUPON,
            loyalty.ACCRUAL_PER_AMOUNT,
            loyalty.ACCRUAL_PER_UNIT,
            loyalty.FAVOURITE_CATEGORIES,
            loyalty.COUNTER_REWARD,
            loyalty.COMPLIMENT_ACCRUAL,
            referral.REFERRAL_REWARD,
            referral.PRIZE_DRAW,
            restriction.RESTRICTION,
        )
    }
)
