"""Errors of the loyalty engine: one base class, narrow subclasses naming the bad field."""

from __future__ import annotations

__all__ = ["BonusSpendError", "EngineError", "InvalidAmount", "InvalidReceipt", "RuleError"]


class EngineError(Exception):
    """Base class of every error the engine raises."""


class InvalidAmount(EngineError, ValueError):
    """A money helper got a value that is not an int amount or a Decimal rate."""


class InvalidReceipt(EngineError, ValueError):
    """The receipt handed to ``calculate`` is impossible; the message names the field."""


class BonusSpendError(EngineError, ValueError):
    """``bonus_to_spend`` is negative or above what this receipt may be paid with."""


class RuleError(EngineError, ValueError):
    """Promotion documents or settings are invalid; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        count = len(self.problems)
        head = "1 problem" if count == 1 else f"{count} problems"
        super().__init__(f"invalid promotion set ({head}):\n  " + "\n  ".join(self.problems))
