"""Errors of the POS agent: one base class, narrow subclasses whose message names the culprit."""

from __future__ import annotations

__all__ = [
    "CardRefused",
    "ConfigError",
    "Conflict",
    "CouponRefused",
    "EnrolmentFailed",
    "InvalidField",
    "InvalidRequest",
    "JournalError",
    "LineNotFound",
    "MalformedRequest",
    "PosError",
    "ReceiptClosed",
    "ReceiptNotFound",
    "ReplicaError",
    "ReprintQueueError",
    "RequestError",
    "RequestTooLarge",
    "SpendRefused",
    "StoreNodeUnreachable",
    "UnknownObject",
    "UnsupportedMediaType",
    "UploadError",
]


class PosError(Exception):
    """Base class of every error the POS agent raises on purpose."""


class ConfigError(PosError):
    """The config file is missing or invalid; `problems` lists every problem found."""

    def __init__(self, path: object, problems: list[str] | tuple[str, ...]) -> None:
        self.path = str(path)
        self.problems = tuple(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} problem(s):\n{listed}")


class ReplicaError(PosError):
    """Master data cannot be applied to the local replica; the message names table and row."""


class ReprintQueueError(PosError):
    """The reprint queue (devices.db) cannot be used, e.g. a newer release wrote it."""


class JournalError(PosError):
    """The local journal (journal.db) cannot be used, e.g. it belongs to another register."""


class UploadError(PosError):
    """One exchange with the store node failed; the message says which call and why."""


class StoreNodeUnreachable(UploadError):
    """No answer at all from the store node (refused, timed out, DNS); nothing was exchanged."""


class RequestError(PosError):
    """A request from the register software was refused; `kind`/`status` map it to HTTP.

    The kinds are the vocabulary of every tier (docs/API.md, Errors): a class of the same name
    in center/errors.py and store_node/errors.py has the same kind and status
    (tests/test_service_shell.py).
    """

    kind = "invalid"
    status = 422


class MalformedRequest(RequestError):
    """The body is not JSON at all (or not UTF-8)."""

    kind = "malformed"
    status = 400


class UnsupportedMediaType(RequestError):
    """The body declares a content type other than JSON."""

    kind = "unsupported_media_type"
    status = 415


class RequestTooLarge(RequestError):
    """The body is larger than the agent accepts."""

    kind = "too_large"
    status = 413


class InvalidRequest(RequestError):
    """The request is well-formed but its values are not acceptable."""

    kind = "invalid"
    status = 422


class UnknownObject(RequestError):
    """The request names an object (receipt, line, coupon) the agent does not know."""

    kind = "not_found"
    status = 404


class Conflict(RequestError):
    """The request contradicts the object's state (e.g. a closed receipt)."""

    kind = "conflict"
    status = 409


class InvalidField(InvalidRequest):
    """Well-formed JSON with a wrong, missing or inconsistent field; `field` is its path."""

    kind = "invalid"
    status = 422

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}" if field else problem)


class ReceiptNotFound(UnknownObject):
    """No receipt (open or closed) has this id."""

    kind = "not_found"
    status = 404

    def __init__(self, receipt_id: str) -> None:
        self.receipt_id = receipt_id
        super().__init__(f"receipt_id: no receipt {receipt_id!r}")


class LineNotFound(UnknownObject):
    """The open receipt has no line with this number."""

    kind = "not_found"
    status = 404

    def __init__(self, receipt_id: str, line_no: int) -> None:
        super().__init__(f"line_no: receipt {receipt_id!r} has no line {line_no}")


class ReceiptClosed(Conflict):
    """The receipt was already confirmed or cancelled; nothing more can change it."""

    kind = "conflict"
    status = 409

    def __init__(self, receipt_id: str, outcome: str, sale_id: str | None = None) -> None:
        self.receipt_id = receipt_id
        self.outcome = outcome
        self.sale_id = sale_id
        suffix = f" as sale {sale_id}" if sale_id else ""
        super().__init__(f"receipt_id: receipt {receipt_id!r} is already {outcome}{suffix}")


class EnrolmentFailed(PosError):
    """The store node refused the enrolment token or was unreachable; the message says which."""


class SpendRefused(RequestError):
    """A bonus spend the store node refused, or that exceeds an offline limit (named)."""

    kind = "insufficient_balance"
    status = 409
    field = "bonus_to_spend"


class CardRefused(RequestError):
    """A card the chain blocked or deactivated: it neither earns nor spends here."""

    kind = "card_refused"
    status = 409
    field = "card_no"

    def __init__(self, card_no: str, status: str) -> None:
        self.card_no = card_no
        self.card_status = status
        super().__init__(
            f"card_no: card {card_no} is {status} at head office; it can neither earn nor "
            "spend (ask the customer for another card, or sell without one)"
        )


class CouponRefused(RequestError):
    """A single-use coupon the store node will not let this receipt use (held or redeemed)."""

    kind = "coupon_unavailable"
    status = 409
    field = "code"
