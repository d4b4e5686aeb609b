"""The electronic card's rotating QR payload: made by the Center, checked offline by a register.

`LQR1.<card_no>.<step>.<mac>`: step = unix time // ECARD_STEP_S; mac = the first 10 bytes (hex)
of HMAC-SHA256 over `card_no:step` keyed by the card's key, itself HMAC-SHA256 of the card
number keyed by the chain's `member.ecard_key` setting (master data every register holds). A payload
is accepted within one step either side of the checker's clock, so a screenshot stops working
after a minute at most.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "ECARD_KEY_SETTING",
    "ECARD_PREFIX",
    "ECARD_STEP_S",
    "InvalidEcardPayload",
    "check_ecard_payload",
    "ecard_payload",
]

ECARD_KEY_SETTING = "member.ecard_key"
"""Dotted: a component's setting, which the engine's exact check of settings leaves alone."""
"""The chain setting holding the key every card's QR key is derived from."""
ECARD_STEP_S = 30
ECARD_PREFIX = "LQR1"
_MAX_PAYLOAD = 120


class InvalidEcardPayload(ValueError):
    """A QR payload that is malformed, of another key, or outside the accepted steps."""


def _card_key(chain_key: str, card_no: str) -> bytes:
    return hmac.new(chain_key.encode(), b"ecard:" + card_no.encode(), hashlib.sha256).digest()


def _mac(chain_key: str, card_no: str, step: int) -> str:
    key = _card_key(chain_key, card_no)
    return hmac.new(key, f"{card_no}:{step}".encode(), hashlib.sha256).hexdigest()[:20]


def ecard_payload(chain_key: str, card_no: str, now_s: float) -> tuple[str, int]:
    """The payload valid at `now_s` and the step it belongs to."""
    step = int(now_s // ECARD_STEP_S)
    return f"{ECARD_PREFIX}.{card_no}.{step}.{_mac(chain_key, card_no, step)}", step


def check_ecard_payload(payload: object, chain_key: str, now_s: float) -> str:
    """The card number of a payload made within one step of `now_s` with `chain_key`;
    InvalidEcardPayload saying what is wrong otherwise."""
    if not isinstance(payload, str) or not payload or len(payload) > _MAX_PAYLOAD:
        raise InvalidEcardPayload(f"expected a QR payload of 1..{_MAX_PAYLOAD} characters")
    parts = payload.strip().split(".")
    if len(parts) != 4 or parts[0] != ECARD_PREFIX:
        raise InvalidEcardPayload(
            f"not an electronic card QR payload ({ECARD_PREFIX}.card.step.mac)"
        )
    _, card_no, step_text, mac = parts
    if not card_no or not step_text.isascii() or not step_text.isdigit() or len(step_text) > 12:
        raise InvalidEcardPayload("malformed card number or time step")
    if not chain_key:
        raise InvalidEcardPayload(
            "this register has no member.ecard_key setting yet: scan the barcode"
        )
    step = int(step_text)
    if not hmac.compare_digest(mac, _mac(chain_key, card_no, step)):
        raise InvalidEcardPayload("the QR code's signature does not match: not issued by the chain")
    current = int(now_s // ECARD_STEP_S)
    if abs(step - current) > 1:
        raise InvalidEcardPayload(
            f"the QR code expired (made {abs(step - current) * ECARD_STEP_S} s from now): "
            "ask the customer to refresh it"
        )
    return card_no
