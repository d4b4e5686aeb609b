"""Gift certificates at the register: the code rule, a certificate tender held on an open
receipt, and the refusal the register software sees (409 naming the code)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pos_agent.errors import InvalidField, RequestError

__all__ = [
    "CERTIFICATE_METHOD",
    "MAX_CERTIFICATES",
    "CertificateRefused",
    "HeldCertificate",
    "certificate_code",
]

CERTIFICATE_METHOD = "certificate"
MAX_CERTIFICATES = 10
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,39}$")


class CertificateRefused(RequestError):
    """A certificate the store node (or the Center) will not let this receipt use."""

    kind = "certificate_refused"
    status = 409
    field = "code"


def certificate_code(value: Any, field: str) -> str:
    """A certificate code, trimmed and upper-cased; InvalidField naming `field` otherwise."""
    code = value.strip().upper() if isinstance(value, str) else ""
    if not _CODE.match(code):
        shown = repr(value)[:60]
        raise InvalidField(
            field, f"expected a certificate code (4..40 letters, digits, -), got {shown}"
        )
    return code


@dataclass(frozen=True, slots=True)
class HeldCertificate:
    """A certificate tender on an open receipt, held at the store node."""

    code: str
    amount_minor: int
    balance_minor: int
    """What the certificate had before this receipt; the slip prints balance - amount."""
    mode: str = "online"

    @property
    def remaining_minor(self) -> int:
        return self.balance_minor - self.amount_minor

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "amount_minor": self.amount_minor,
            "balance_minor": self.balance_minor,
            "remaining_minor": self.remaining_minor,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> HeldCertificate:
        return cls(
            str(doc["code"]),
            int(doc["amount_minor"]),
            int(doc["balance_minor"]),
            str(doc.get("mode", "online")),
        )
