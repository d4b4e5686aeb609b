"""The e-card QR rule: accepted within one step of the checker's clock, with the chain's key and
the card it names only; anything else refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import ECARD_STEP_S, InvalidEcardPayload, check_ecard_payload, ecard_payload

KEY = "chain-key-0123456789abcdef"
cards = st.text(alphabet="0123456789", min_size=1, max_size=20)
times = st.floats(min_value=1e9, max_value=4e9, allow_nan=False)


@given(cards, times, st.integers(min_value=-1, max_value=1))
def test_a_payload_is_accepted_within_one_step(card: str, now: float, steps: int) -> None:
    payload, step = ecard_payload(KEY, card, now)
    assert step == int(now // ECARD_STEP_S)
    checked_at = (step + steps) * ECARD_STEP_S + (now % ECARD_STEP_S)
    assert check_ecard_payload(payload, KEY, checked_at) == card


@given(cards, times, st.integers(min_value=2, max_value=10_000), st.sampled_from([-1, 1]))
def test_a_payload_older_or_newer_than_one_step_is_refused(
    card: str, now: float, steps: int, sign: int
) -> None:
    payload, _ = ecard_payload(KEY, card, now)
    with pytest.raises(InvalidEcardPayload, match="expired"):
        check_ecard_payload(payload, KEY, now + sign * steps * ECARD_STEP_S)


@given(cards, times, st.data())
def test_any_changed_character_is_refused(card: str, now: float, data: st.DataObject) -> None:
    payload, _ = ecard_payload(KEY, card, now)
    at = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    swap = data.draw(st.sampled_from("0123456789abcdef.X"))
    changed = payload[:at] + swap + payload[at + 1 :]
    if changed == payload:
        return
    with pytest.raises(InvalidEcardPayload):
        check_ecard_payload(changed, KEY, now)


def test_another_key_and_junk_are_refused_by_name() -> None:
    payload, _ = ecard_payload(KEY, "2900000000013", 1.7e9)
    with pytest.raises(InvalidEcardPayload, match="signature"):
        check_ecard_payload(payload, "another-chain-key-000000", 1.7e9)
    with pytest.raises(InvalidEcardPayload, match=r"no member\.ecard_key"):
        check_ecard_payload(payload, "", 1.7e9)
    for junk in (None, "", "x" * 500, "LQR1.1.2", "LQR2.1.2.3", "LQR1.1.-2.ab"):
        with pytest.raises(InvalidEcardPayload):
            check_ecard_payload(junk, KEY, 1.7e9)
