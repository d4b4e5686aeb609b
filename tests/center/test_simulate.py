"""What-if simulation: a draft set priced over stored sales, pure and through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from center.cli import main
from center.config import load_config
from center.promotions.recompute import ProductInfo
from center.promotions.simulate import simulate
from center.storage import open_storage
from loyalty_engine import load_promotion_set
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config

DRAFT: list[dict[str, Any]] = [
    {
        "promotion_id": "D10",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"departments": ["DAIRY"]},
        "percent": "10",
    },
    {
        "promotion_id": "A1",
        "kind": "accrual_percent",
        "status": "active",
        "priority": 200,
        "requires_card": True,
        "percent": "1",
    },
]

# Milk (DAIRY) 250 + bread 199: 10 % of milk = 25; 1 % of 424 = 4 to the card holder.
EXPECTED = {
    "sales": 2,
    "errors": 0,
    "receipts_changed": 2,
    "customers_changed": 1,
    "discount_before_minor": 0,
    "discount_after_minor": 50,
    "discount_change_minor": 50,
    "bonus_before": 0,
    "bonus_after": 4,
    "bonus_change": 4,
    "per_promotion": [
        {
            "promotion_id": "A1",
            "cost_minor": 0,
            "accrued": {"bonus": 4},
            "receipts": 1,
            "customers": 1,
        },
        {"promotion_id": "D10", "cost_minor": 50, "accrued": {}, "receipts": 2, "customers": 1},
    ],
}


def test_simulate_reports_cost_and_reach_per_promotion() -> None:
    sales = [make_sale(1, card_no=CARD), make_sale(2)]
    seen: list[int] = []
    report = simulate(
        sales,
        load_promotion_set(DRAFT, version=7),
        products={"1000": ProductInfo(department="DAIRY"), "1001": ProductInfo("PASTRY")},
        store_formats={},
        progress=seen.append,
    )
    assert report.to_dict() == {"promo_version": 7, **EXPECTED}
    assert seen == [1, 2]


def test_simulate_command_reads_the_period_from_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    storage = open_storage(load_config(path).storage)
    try:
        storage.feed.upsert_master(master_tables())
        ack = storage.sales.ingest([make_sale(1, card_no=CARD), make_sale(2)], T0)
        assert len(ack.accepted) == 2
    finally:
        storage.close()
    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps(DRAFT))
    argv = ["simulate", "--config", str(path), str(draft), "--version", "7"]
    assert main([*argv, "--from", "2024-03-01", "--to", "2024-03-01"]) == 0
    out = json.loads(capsys.readouterr().out)
    out.pop("seconds")
    assert out == {"promo_version": 7, **EXPECTED}
    assert main([*argv, "--from", "2024-03-02", "--to", "2024-03-31"]) == 0
    assert json.loads(capsys.readouterr().out)["sales"] == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**DRAFT[0], "percent": "150"}]))
    assert (
        main(
            [
                "simulate",
                "--config",
                str(path),
                str(bad),
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-01",
            ]
        )
        == 2
    )
    assert "promotion 'D10': percent: expected a decimal string between 0 and 100" in (
        capsys.readouterr().err
    )


def test_recompute_command_flags_only_the_dishonest_sale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loyalty_engine import default_promotions

    path = write_config(tmp_path)
    tables = master_tables()
    threshold = default_promotions()[0]  # 5 % from 50.00, 10 % from 100.00
    tables["promotions"] = [{"promotion_id": threshold["promotion_id"], "doc": threshold}]
    storage = open_storage(load_config(path).storage)
    try:
        assert storage.feed.upsert_master(tables).version == 1  # the version make_sale names
        honest = make_sale(1, amounts=(250, 199))
        # 60.00 reaches the 5 % step: 300, not 100.
        greedy = make_sale(2, amounts=(6000,), discount=100)
        assert len(storage.sales.ingest([honest, greedy], T0).accepted) == 2
    finally:
        storage.close()
    code = main(["recompute", "--config", str(path), "--from", "2024-03-01", "--to", "2024-03-01"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (out["sales"], out["recomputed"]) == (2, 2)
    assert [d["sale_id"] for d in out["differing"]] == [greedy.sale_id]
    assert "discount_minor: sale 100, recomputed 300" in out["differing"][0]["differences"]
