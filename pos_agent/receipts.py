"""An open receipt as the register builds it, and the typed inputs that change it."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pos_agent.certificates import MAX_CERTIFICATES, HeldCertificate
from pos_agent.errors import Conflict, InvalidField, LineNotFound, UnknownObject

__all__ = [
    "MAX_COUPONS",
    "MAX_LINES",
    "CouponNotOnReceipt",
    "CouponUsed",
    "LineInput",
    "OpenLine",
    "OpenReceipt",
    "PaymentInput",
]

MAX_LINES = 1000
MAX_COUPONS = 20


# Kept here rather than in errors.py only to stay out of a file being edited concurrently.
class CouponUsed(Conflict):
    """A single-use coupon already redeemed by a sale of this register."""

    kind = "conflict"
    status = 409

    def __init__(self, code: str, sale_id: str) -> None:
        self.code = code
        self.sale_id = sale_id
        super().__init__(f"code: single-use coupon {code} was already redeemed by sale {sale_id}")


class CouponNotOnReceipt(UnknownObject):
    """The open receipt does not hold this coupon code."""

    kind = "not_found"
    status = 404

    def __init__(self, receipt_id: str, code: str) -> None:
        super().__init__(f"code: receipt {receipt_id!r} has no coupon {code!r}")


STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class LineInput:
    """One line as the register software sends it (already type-checked)."""

    product_id: str
    qty_milli: int
    unit_price_minor: int | None
    """None: the product's shelf price in the master data (the Center's `price_minor`)."""
    amount_minor: int | None = None
    weighed: bool = False
    certificate_code: str = ""
    """The gift certificate this line sells (scanned); activated when the sale is confirmed."""


@dataclass(frozen=True, slots=True)
class PaymentInput:
    """One tender of the register software (cash, card...); bonuses go via bonus_to_spend."""

    method: str
    amount_minor: int
    code: str = ""
    """The certificate of a `certificate` tender (the register adds those itself)."""


@dataclass(frozen=True, slots=True)
class OpenLine:
    """A line on an open receipt, its amount fixed when it was added."""

    line_no: int
    product_id: str
    qty_milli: int
    unit_price_minor: int
    amount_minor: int
    weighed: bool = False
    certificate_code: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "line_no": self.line_no,
            "product_id": self.product_id,
            "qty_milli": self.qty_milli,
            "unit_price_minor": self.unit_price_minor,
            "amount_minor": self.amount_minor,
            "weighed": self.weighed,
        }
        if self.certificate_code:
            out["certificate_code"] = self.certificate_code
        return out


@dataclass(frozen=True, slots=True)
class OpenReceipt:
    """An open receipt; line numbers are never reused, even after a line is removed."""

    receipt_id: str
    opened_at: datetime
    lines: tuple[OpenLine, ...] = ()
    card_no: str | None = None
    next_line_no: int = 1
    # Normalised (upper-case) codes the cashier entered, validated when entered.
    coupon_codes: tuple[str, ...] = ()
    certificates: tuple[HeldCertificate, ...] = ()
    """Certificate tenders held at the store node, paid with at confirm."""

    def with_certificate(self, held: HeldCertificate) -> OpenReceipt:
        """The receipt paying `held` (the same code again replaces its amount)."""
        others = tuple(c for c in self.certificates if c.code != held.code)
        if len(others) >= MAX_CERTIFICATES:
            raise InvalidField("code", f"a receipt takes at most {MAX_CERTIFICATES} certificates")
        return replace(self, certificates=(*others, held))

    def without_certificate(self, code: str) -> OpenReceipt:
        if all(c.code != code for c in self.certificates):
            raise UnknownObject(f"code: receipt {self.receipt_id!r} has no certificate {code!r}")
        return replace(self, certificates=tuple(c for c in self.certificates if c.code != code))

    def with_lines(self, lines: list[OpenLine]) -> OpenReceipt:
        if len(self.lines) + len(lines) > MAX_LINES:
            raise InvalidField(
                "lines",
                f"a receipt holds at most {MAX_LINES} lines; it has {len(self.lines)} and "
                f"{len(lines)} more were sent",
            )
        return replace(
            self,
            lines=(*self.lines, *lines),
            next_line_no=self.next_line_no + len(lines),
        )

    def without_line(self, line_no: int) -> OpenReceipt:
        kept = tuple(line for line in self.lines if line.line_no != line_no)
        if len(kept) == len(self.lines):
            raise LineNotFound(self.receipt_id, line_no)
        return replace(self, lines=kept)

    def with_card(self, card_no: str) -> OpenReceipt:
        return replace(self, card_no=card_no)

    def with_coupon(self, code: str) -> OpenReceipt:
        """The receipt holding ``code`` too (entering it twice changes nothing)."""
        if code in self.coupon_codes:
            return self
        if len(self.coupon_codes) >= MAX_COUPONS:
            raise InvalidField("code", f"a receipt holds at most {MAX_COUPONS} coupons")
        return replace(self, coupon_codes=(*self.coupon_codes, code))

    def without_coupon(self, code: str) -> OpenReceipt:
        if code not in self.coupon_codes:
            raise CouponNotOnReceipt(self.receipt_id, code)
        return replace(self, coupon_codes=tuple(c for c in self.coupon_codes if c != code))

    def to_dict(self) -> dict[str, Any]:
        return {
            "receipt_id": self.receipt_id,
            "status": "open",
            "opened_at": self.opened_at.isoformat(),
            "card_no": self.card_no,
            "lines": [line.to_dict() for line in self.lines],
            "coupon_codes": list(self.coupon_codes),
            "certificates": [c.to_dict() for c in self.certificates],
        }

    def to_json(self) -> str:
        """The state stored in journal.db (versioned so a newer agent can read it)."""
        return json.dumps(
            {"v": STATE_VERSION, **self.to_dict(), "next_line_no": self.next_line_no},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> OpenReceipt:
        doc = json.loads(text)
        return cls(
            receipt_id=doc["receipt_id"],
            opened_at=datetime.fromisoformat(doc["opened_at"]),
            lines=tuple(
                OpenLine(
                    line_no=line["line_no"],
                    product_id=line["product_id"],
                    qty_milli=line["qty_milli"],
                    unit_price_minor=line["unit_price_minor"],
                    amount_minor=line["amount_minor"],
                    weighed=line.get("weighed", False),
                    certificate_code=line.get("certificate_code", ""),
                )
                for line in doc["lines"]
            ),
            card_no=doc.get("card_no"),
            next_line_no=doc["next_line_no"],
            coupon_codes=tuple(doc.get("coupon_codes", ())),
            certificates=tuple(HeldCertificate.from_dict(c) for c in doc.get("certificates", ())),
        )
