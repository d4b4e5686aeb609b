"""`loyalty-center fraud scan`: run the fraud detectors now, with progress, from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from center.config import Config
from center.fraud.model import FraudSettings
from center.storage.base import Progress

__all__ = ["add_fraud_commands", "fraud_command"]


def add_fraud_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register `fraud` and its subcommand `scan`."""
    fraud = sub.add_parser("fraud", help="fraud signals: `fraud scan` runs the detectors now")
    actions = fraud.add_subparsers(dest="fraud_command", required=True, metavar="ACTION")
    scan = actions.add_parser("scan", help="run every detector now; print the counts as JSON")
    with_config(scan)
    scan.add_argument(
        "--hours",
        type=int,
        default=24,
        help="judge events of the last N hours (default 24; history is the 90 days before)",
    )


def fraud_command(config: Config, args: argparse.Namespace, progress: Progress) -> int:
    """Run `fraud scan` against the configured storage; 2 for a bad option."""
    from center.storage import open_storage

    if not 1 <= args.hours <= 24 * 366:
        print(f"error: --hours: expected 1..{24 * 366}, got {args.hours}", file=sys.stderr)
        return 2
    settings = FraudSettings(
        recent_hours=args.hours,
        min_minutes_between_stores=config.fraud.min_minutes_between_stores,
    )
    storage = open_storage(config.storage)
    try:
        done = storage.fraud.scan(datetime.now(UTC), settings, progress)
    finally:
        storage.close()
    print(json.dumps(done, sort_keys=True))
    return 0
