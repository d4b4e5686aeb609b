"""The one new/duplicate/conflict rule every hop applies to an incoming sale."""

from __future__ import annotations

import dataclasses
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol import Classification, Verdict, classify_sale, sale_fingerprint
from tests.sync_protocol.conftest import build_sale


@dataclasses.dataclass(frozen=True)
class SaleKey:
    """An incoming sale's identity, as the tests generate it."""

    sale_id: str
    register_id: str
    seq: int
    fingerprint: str


def classify(
    key: SaleKey, *, held_fingerprint: str | None, seq_holder: str | None
) -> Classification:
    return classify_sale(
        sale_id=key.sale_id,
        register_id=key.register_id,
        seq=key.seq,
        fingerprint=key.fingerprint,
        held_fingerprint=held_fingerprint,
        seq_holder=seq_holder,
    )


fingerprints = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
sale_ids = st.uuids().map(str)
register_ids = st.sampled_from(["367-1", "367-2", "406-1"])
keys = st.builds(SaleKey, sale_ids, register_ids, st.integers(1, 10**9), fingerprints)


@st.composite
def colliding_keys(draw: st.DrawFn) -> SaleKey:
    """Keys from small pools, so ids and seqs collide often; the fingerprint covers the
    identity, as the real one (a hash of the whole canonical sale) does."""
    sale_id = f"00000000-0000-4000-8000-00000000000{draw(st.integers(0, 5))}"
    register_id = draw(st.sampled_from(["367-1", "367-2"]))
    seq = draw(st.integers(1, 4))
    payload = f"{sale_id}|{register_id}|{seq}|{draw(st.integers(0, 1))}"
    return SaleKey(sale_id, register_id, seq, hashlib.sha256(payload.encode()).hexdigest())


# -- examples: the reasons are API (quarantine rows, Ack rejections) -------------------------


def _key(sale_id: str = "0b7e6a7c-3f5d-4e0a-9a51-2f4c8d1e6b90", fp: str = "ab" * 32) -> SaleKey:
    return SaleKey(sale_id=sale_id, register_id="367-1", seq=7, fingerprint=fp)


def test_nothing_held_is_new() -> None:
    assert classify(_key(), held_fingerprint=None, seq_holder=None) == Classification(
        Verdict.NEW, ""
    )


def test_same_id_same_payload_is_a_duplicate() -> None:
    key = _key()
    verdict = classify(key, held_fingerprint=key.fingerprint, seq_holder=key.sale_id)
    assert verdict == Classification(Verdict.DUPLICATE, "")


def test_same_id_other_payload_is_the_centers_sale_id_conflict() -> None:
    verdict = classify(_key(fp="ab" * 32), held_fingerprint="cd" * 32, seq_holder=None)
    assert verdict == Classification(
        Verdict.CONFLICT,
        "sale_id: 0b7e6a7c-3f5d-4e0a-9a51-2f4c8d1e6b90 is already stored with a different "
        "payload (fingerprint cdcdcdcdcdcd..., this one abababababab...)",
    )


def test_seq_taken_by_another_sale_is_the_centers_seq_conflict() -> None:
    holder = "11111111-2222-4333-8444-555555555555"
    verdict = classify(_key(), held_fingerprint=None, seq_holder=holder)
    assert verdict == Classification(
        Verdict.CONFLICT, f"seq: register 367-1 seq 7 already belongs to sale {holder}"
    )


def test_real_sales_replayed_and_altered() -> None:
    sale = build_sale()
    key = SaleKey(sale.sale_id, sale.register_id, sale.seq, sale_fingerprint(sale))
    altered = dataclasses.replace(sale, card_no="2770000099999")
    altered_key = dataclasses.replace(key, fingerprint=sale_fingerprint(altered))
    held = key.fingerprint
    assert classify(key, held_fingerprint=held, seq_holder=None).verdict is Verdict.DUPLICATE
    conflict = classify(altered_key, held_fingerprint=held, seq_holder=sale.sale_id)
    assert conflict.verdict is Verdict.CONFLICT
    assert conflict.reason.startswith(f"sale_id: {sale.sale_id} ")
    assert f"fingerprint {held[:12]}..., this one {altered_key.fingerprint[:12]}..." in (
        conflict.reason
    )


def test_verdicts_read_as_their_names() -> None:
    assert [str(v) for v in Verdict] == ["new", "duplicate", "conflict"]


# -- properties ------------------------------------------------------------------------------


@given(key=keys, holder=st.none() | sale_ids)
def test_the_held_payload_decides_before_the_seq(key: SaleKey, holder: str | None) -> None:
    same = classify(key, held_fingerprint=key.fingerprint, seq_holder=holder)
    assert same == Classification(Verdict.DUPLICATE)
    other_fp = "0" * 64 if key.fingerprint != "0" * 64 else "1" * 64
    other = classify(key, held_fingerprint=other_fp, seq_holder=holder)
    assert other.verdict is Verdict.CONFLICT and other.reason.startswith("sale_id: ")
    assert other == classify(key, held_fingerprint=other_fp, seq_holder=None)


@given(key=keys, holder=sale_ids)
def test_a_taken_seq_is_a_conflict_naming_the_holder(key: SaleKey, holder: str) -> None:
    verdict = classify(key, held_fingerprint=None, seq_holder=holder)
    assert verdict.verdict is Verdict.CONFLICT
    assert verdict.reason.startswith(f"seq: register {key.register_id} seq {key.seq} ")
    assert verdict.reason.endswith(f" {holder}")


@given(key=keys)
def test_only_an_empty_slot_is_new_and_only_a_conflict_has_a_reason(key: SaleKey) -> None:
    for held in (None, key.fingerprint, "f" * 64):
        for holder in (None, key.sale_id):
            verdict = classify(key, held_fingerprint=held, seq_holder=holder)
            assert (verdict.verdict is Verdict.NEW) == (held is None and holder is None)
            assert bool(verdict.reason) == (verdict.verdict is Verdict.CONFLICT)


@settings(max_examples=200)
@given(
    incoming=st.lists(colliding_keys(), max_size=30),
    replays=st.lists(st.integers(0, 29), max_size=30),
)
def test_a_receiver_applying_the_rule_never_merges_and_replays_are_duplicates(
    incoming: list[SaleKey], replays: list[int]
) -> None:
    # A model receiver: stores what is new, never overwrites, like every hop's tables.
    by_id: dict[str, SaleKey] = {}
    by_seq: dict[tuple[str, int], str] = {}

    def receive(key: SaleKey) -> Classification:
        held = by_id.get(key.sale_id)
        verdict = classify(
            key,
            held_fingerprint=held.fingerprint if held else None,
            seq_holder=by_seq.get((key.register_id, key.seq)),
        )
        if verdict.verdict is Verdict.NEW:
            by_id[key.sale_id] = key
            by_seq[(key.register_id, key.seq)] = key.sale_id
        return verdict

    first = [receive(key) for key in incoming]
    assert len(by_seq) == len(by_id)  # no (register, seq) holds two sales, no sale two seqs
    stored = set(by_id.values())
    for key, verdict in zip(incoming, first, strict=True):
        assert (verdict.verdict is not Verdict.CONFLICT) == (key in stored)
    # Replaying anything already received changes nothing and answers the same, or duplicate.
    for i in replays:
        if i < len(incoming):
            again = receive(incoming[i])
            expected = Verdict.DUPLICATE if incoming[i] in stored else Verdict.CONFLICT
            assert again.verdict is expected
    assert set(by_id.values()) == stored
