"""Every hop's one rule for an incoming sale: new, a replay (duplicate), or a conflict."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Classification", "Verdict", "classify_sale"]


class Verdict(StrEnum):
    """What a receiver does with an incoming sale: store it, acknowledge it, or quarantine it."""

    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Classification:
    """A verdict and, for a conflict, the reason stored in quarantine and answered in the Ack."""

    verdict: Verdict
    reason: str = ""


_NEW = Classification(Verdict.NEW)
_DUPLICATE = Classification(Verdict.DUPLICATE)


def classify_sale(
    *,
    sale_id: str,
    register_id: str,
    seq: int,
    fingerprint: str,
    held_fingerprint: str | None,
    seq_holder: str | None,
) -> Classification:
    """Classify an incoming sale (its ids and `sale_fingerprint`) against what the receiver
    holds under its sale_id (that sale's fingerprint) and its (register_id, seq) (the sale_id
    holding it); None where nothing is held.

    The sale_id decides first: seq_holder is not consulted when held_fingerprint is given, so a
    receiver may look it up only when nothing is stored under the sale_id.
    """
    # Plain arguments, no key object: the store node calls this for every sale it receives.
    if held_fingerprint is not None:
        if held_fingerprint == fingerprint:
            return _DUPLICATE
        # The Center's wording (quarantine reasons and Ack rejections are API): keep it exact.
        return Classification(
            Verdict.CONFLICT,
            f"sale_id: {sale_id} is already stored with a different payload "
            f"(fingerprint {held_fingerprint[:12]}..., this one {fingerprint[:12]}...)",
        )
    if seq_holder is not None:
        return Classification(
            Verdict.CONFLICT,
            f"seq: register {register_id} seq {seq} already belongs to sale {seq_holder}",
        )
    return _NEW
