"""A rule entered with `bonus` in major units is published with the minor-unit field that the
registers of the previous release read (`bonus_points` for a coupon, `points` otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from center.promotions.constructor import published_doc
from center.storage import Storage
from loyalty_engine import RuleError, load_promotion_set
from sync_protocol import MasterDelta
from tests.center.center_factories import T0, master_tables

REPO = Path(__file__).resolve().parents[2]
# The last commit whose engine knew only bonus_points / points (the previous release).
PREVIOUS_ENGINE = "c166ef075ffcd9b379197d136de4c68778928f2b^"


def coupon() -> dict[str, Any]:
    return {
        "promotion_id": "C200",
        "kind": "coupon",
        "title": "200.00 bonus for a code",
        "priority": 50,
        "codes": ["GIFT200"],
        "bonus": "200.00",
    }


def welcome() -> dict[str, Any]:
    return {
        "promotion_id": "W150",
        "kind": "counter_reward",
        "title": "Welcome",
        "priority": 100,
        "counter": "purchases",
        "at": 1,
        "bonus": "150.50",
    }


def _amounts(docs: list[dict[str, Any]]) -> dict[str, int]:
    """Bonus credited by each rule as the current engine reads it in register (tolerant) mode."""
    found = load_promotion_set(docs, version=1)
    assert not found.warnings
    out = {}
    for p in found.promotions:
        terms: Any = p.terms
        out[p.promotion_id] = terms.bonus_points if p.kind == "coupon" else terms.points
    return out


def test_the_feed_sends_the_minor_units_beside_bonus(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    before = storage.feed.master_version()
    for doc in (coupon(), welcome()):
        storage.promotions.create_promotion(doc, "maria", T0)
        storage.promotions.activate_promotion(doc["promotion_id"], "director", T0)
    delta = storage.feed.master_feed("367", before, T0)
    assert isinstance(delta, MasterDelta)
    sent = {r["promotion_id"]: r["doc"] for r in delta.upserts["promotions"]}

    # The old fields, as integers in minor units, beside what the author wrote.
    assert sent["C200"]["bonus_points"] == 20000 and type(sent["C200"]["bonus_points"]) is int
    assert sent["W150"]["points"] == 15050 and type(sent["W150"]["points"]) is int
    assert (sent["C200"]["bonus"], sent["W150"]["bonus"]) == ("200.00", "150.50")
    # The constructor keeps the document as submitted.
    kept = storage.promotions.get_promotion("C200")
    assert kept is not None and "bonus_points" not in kept["doc"]

    # Today's registers read both fields without a warning, and agree.
    assert _amounts(list(sent.values())) == {"C200": 20000, "W150": 15050}
    # What an older register understands (bonus unknown, so ignored) gives the same amounts.
    old_view = [{k: v for k, v in doc.items() if k != "bonus"} for doc in sent.values()]
    assert _amounts(old_view) == {"C200": 20000, "W150": 15050}
    # The recomputation's view of the version is the published one.
    at_version = dict(storage.promotions.promotion_set(storage.feed.master_version()))
    assert at_version["C200"]["bonus_points"] == 20000


def test_the_previous_release_engine_loads_the_published_documents(tmp_path: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", PREVIOUS_ENGINE, "loyalty_engine"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip("the previous release's engine is not in this clone's git history")
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    docs = [published_doc(coupon()), published_doc(welcome())]
    script = (
        "import json, sys\n"
        "from loyalty_engine import load_promotion_set\n"
        "found = load_promotion_set(json.load(sys.stdin), version=1)\n"
        "print(json.dumps({'warnings': found.warnings, 'amounts': {p.promotion_id: getattr("
        "p.terms, 'bonus_points', None) or getattr(p.terms, 'points', None) "
        "for p in found.promotions}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
    result = json.loads(done.stdout)
    assert result["amounts"] == {"C200": 20000, "W150": 15050}
    # It only skips the field it does not know.
    assert len(result["warnings"]) == 2 and all("bonus" in w for w in result["warnings"])
    # Without the old field it could not credit the right amount: the proof needs it.
    bare = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps([{**coupon(), "status": "active"}]),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=60,
    )
    assert bare.returncode != 0 and "bonus_points" in bare.stderr


def test_published_amounts_follow_the_currency_exponent() -> None:
    assert published_doc(coupon(), {"currency_exponent": "0"})["bonus_points"] == 200
    # An amount the engine will refuse gets no twin; a twin the author wrote is kept.
    assert "bonus_points" not in published_doc({**coupon(), "bonus": "200.001"})
    assert "bonus_points" not in published_doc({**coupon(), "bonus": "-1"})
    assert published_doc({**coupon(), "bonus_points": 5})["bonus_points"] == 5
    assert "points" not in published_doc({**welcome(), "kind": "threshold_discount"})


@pytest.mark.parametrize(("doc", "field"), [(coupon(), "bonus_points"), (welcome(), "points")])
def test_the_engine_refuses_a_twin_that_disagrees(doc: dict[str, Any], field: str) -> None:
    agreeing = published_doc(doc)
    load_promotion_set([agreeing], version=1, exact=True)
    with pytest.raises(RuleError, match=f"{field}: expected {agreeing[field]} "):
        load_promotion_set([{**agreeing, field: agreeing[field] + 1}], version=1)
