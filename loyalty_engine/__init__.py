"""The promotion and loyalty engine: pure functions, standard library only, no I/O."""

from .defaults import default_promotions, default_settings
from .engine import calculate
from .errors import BonusSpendError, EngineError, InvalidAmount, InvalidReceipt, RuleError
from .model import Accrual, Calculation, Discount, LineResult, Messages, Receipt, ReceiptLine
from .money import allocate, amount_for_quantity, format_minor, percent_of, share_of
from .rules import EngineSettings, Promotion, PromotionSet, load_promotion_set

__all__ = [
    "Accrual",
    "BonusSpendError",
    "Calculation",
    "Discount",
    "EngineError",
    "EngineSettings",
    "InvalidAmount",
    "InvalidReceipt",
    "LineResult",
    "Messages",
    "Promotion",
    "PromotionSet",
    "Receipt",
    "ReceiptLine",
    "RuleError",
    "allocate",
    "amount_for_quantity",
    "calculate",
    "default_promotions",
    "default_settings",
    "format_minor",
    "load_promotion_set",
    "percent_of",
    "share_of",
]
