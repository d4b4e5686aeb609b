"""The promotion and loyalty engine: pure functions, standard library only, no I/O."""

from .coupons import make_code, verify_code
from .defaults import default_promotions, default_settings
from .engine import calculate
from .errors import BonusSpendError, EngineError, InvalidAmount, InvalidReceipt, RuleError
from .goods import CERTIFICATE_TYPE, GoodsSelector
from .model import (
    Accrual,
    Calculation,
    ComplimentPass,
    CustomerState,
    Discount,
    IssuedCoupon,
    LineResult,
    Messages,
    Movement,
    PersonalOffer,
    Receipt,
    ReceiptLine,
)
from .money import allocate, amount_for_quantity, format_minor, percent_of, share_of
from .returns import ReturnCalculation, ReturnLine, calculate_return
from .rules import (
    SETTINGS,
    CouponMatch,
    EngineSettings,
    Promotion,
    PromotionSet,
    load_promotion_set,
)

__all__ = [
    "CERTIFICATE_TYPE",
    "SETTINGS",
    "Accrual",
    "BonusSpendError",
    "Calculation",
    "ComplimentPass",
    "CouponMatch",
    "CustomerState",
    "Discount",
    "EngineError",
    "EngineSettings",
    "GoodsSelector",
    "InvalidAmount",
    "InvalidReceipt",
    "IssuedCoupon",
    "LineResult",
    "Messages",
    "Movement",
    "PersonalOffer",
    "Promotion",
    "PromotionSet",
    "Receipt",
    "ReceiptLine",
    "ReturnCalculation",
    "ReturnLine",
    "RuleError",
    "allocate",
    "amount_for_quantity",
    "calculate",
    "calculate_return",
    "default_promotions",
    "default_settings",
    "format_minor",
    "load_promotion_set",
    "make_code",
    "percent_of",
    "share_of",
    "verify_code",
]
