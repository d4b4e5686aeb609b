"""`loyalty-center models evaluate|export-offers|export-churn`: the honest evaluation on the
Complete Journey year and the files anyone can check it with."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["MODELS_COMMAND", "add_models_commands", "models_command"]

MODELS_COMMAND = "models"


def add_models_commands(sub: Any) -> None:
    """Register `models` and its actions on the CLI's subparsers (no config needed: they read
    the installed Complete Journey year)."""
    models = sub.add_parser(
        MODELS_COMMAND, help="evaluate the offer and churn models on the Complete Journey year"
    )
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    evaluate = actions.add_parser("evaluate", help="print every model and baseline as one JSON")
    evaluate.add_argument("--week", type=int, default=42, help="first week held out (default 42)")
    offers = actions.add_parser(
        "export-offers", help="write household_id,rank,product_id of the top 10 offers"
    )
    offers.add_argument("--as-of-week", type=int, default=42, help="first week not seen")
    offers.add_argument("--strategy", choices=("repeat", "new"), required=True)
    offers.add_argument("--out", required=True, help="CSV file to write")
    churn = actions.add_parser("export-churn", help="write household_id,risk at a snapshot week")
    churn.add_argument("--as-of-week", type=int, default=42, help="the snapshot week")
    churn.add_argument("--out", required=True, help="CSV file to write")


def _week(value: int) -> int:
    if not 14 <= value <= 53:
        raise SystemExit(
            f"error: week must be 14..53 (three earlier windows to learn from): {value}"
        )
    return value


def models_command(args: argparse.Namespace) -> int:
    """Run one `models` action; return the exit code."""
    from center.models.dataset import load_complete_journey

    week = _week(args.week if args.action == "evaluate" else args.as_of_week)
    year = load_complete_journey()
    if args.action == "evaluate":
        from center.models.evaluation import evaluate

        print(json.dumps(evaluate(year, week=week), indent=2))
        return 0
    if args.action == "export-offers":
        from center.models.evaluation import new_item_ranker, repeat_ranker

        lines = year.merchandise
        model = repeat_ranker(week) if args.strategy == "repeat" else new_item_ranker(week)
        offers = model.fit(lines).offers(lines, week, 10)
        rows = [(h, rank, p) for h, top in sorted(offers.items()) for rank, p in enumerate(top, 1)]
        _write(args.out, ("household_id", "rank", "product_id"), rows)
        return 0
    import pandas as pd

    from center.models.churn import ChurnModel, churn_snapshot, training_weeks

    train = pd.concat(
        [churn_snapshot(year.lines, w) for w in training_weeks(week)], ignore_index=True
    )
    test = churn_snapshot(year.lines, week)
    risk = ChurnModel().fit(train).risk(test)
    _write(
        args.out,
        ("household_id", "risk"),
        [(int(h), f"{r:.6f}") for h, r in zip(test["household"], risk, strict=True)],
    )
    return 0


def _write(path: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    target = Path(path)
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {target}", file=sys.stderr)
