"""The engine's fast paths change no result: random dense cases priced by this engine equal
what the engine before the speed work (extracted from git) and a full scan without the index
compute for them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loyalty_engine import EngineError, calculate, load_promotion_set

from . import dense_cases

REPO = Path(__file__).resolve().parents[2]
# The last commit before the dense-cell speed work (issue 12): its results are the reference.
REFERENCE_ENGINE = "33bedc9f9d5e3690be6b10f0242fba3431ff4310"
SEEDS = (1, 2, 3, 4, 5, 6)
BASKETS = 120


def _reference(tmp_path: Path, seed: int) -> list[Any]:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", REFERENCE_ENGINE, "loyalty_engine"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip("the reference engine's commit is not in this clone's git history")
    if not (tmp_path / "loyalty_engine").exists():
        subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
        shutil.copy(Path(dense_cases.__file__), tmp_path / "dense_cases.py")
    done = subprocess.run(
        [sys.executable, "dense_cases.py", str(seed), str(BASKETS)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=100,
    )
    return list(json.loads(done.stdout))


@pytest.mark.parametrize("seed", SEEDS)
def test_dense_cases_price_as_the_reference_engine(tmp_path: Path, seed: int) -> None:
    expected = _reference(tmp_path, seed)
    got = json.loads(json.dumps(dense_cases.price_all(seed, BASKETS)))
    assert len(got) == len(expected) == BASKETS
    for k, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        assert mine == theirs, f"seed {seed}, basket {k}"
    # The cases exercise what they are meant to: discounts, accruals, every stacking mode.
    text = json.dumps(got)
    assert all(f"[{mode}]" in text for mode in ("additive", "best", "exclusive"))
    priced = [r for r in got if isinstance(r, dict)]
    assert sum(r["discount_minor"] for r in priced) > 0
    assert sum(len(r["accrual"]) for r in priced) > 0


def test_the_index_finds_what_a_full_scan_finds() -> None:
    """Without the index every promotion is evaluated on every line: the amounts are the same
    and the promotions the index left out would not have given anything."""
    # Without the "best" group: it competes at the turn of its first member the index found,
    # which a full scan finds earlier (a member that cannot touch the receipt).
    docs = [d for d in dense_cases.promotion_docs(11) if d.get("stacking") != "best"]
    indexed = load_promotion_set(docs, version=1, settings=dense_cases.settings_for(11))
    scan = dataclasses.replace(indexed, index={}, always=None)
    checked = 0
    for receipt, kwargs in dense_cases.cases(11, 60):
        try:
            fast = calculate(receipt, indexed, **kwargs)
        except EngineError:
            continue
        full = calculate(receipt, scan, **kwargs)
        fast_dict, full_dict = fast.to_dict(), full.to_dict()
        full_lines = set(full_dict.pop("explanation"))
        explained = fast_dict.pop("explanation")
        assert fast_dict == full_dict
        assert set(explained) <= full_lines
        # (A price floor is listed as applied wherever it is considered, even with no line.)
        left_out = [
            line
            for line in full_lines - set(explained)
            if ": applied" in line and not line.endswith(": applied: price floor")
        ]
        assert left_out == []
        checked += fast.discount_minor
    assert checked > 0
