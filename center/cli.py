"""`loyalty-center`: serve, check-config, import-dataset."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from center.config import Config, effective_config, format_toml, load_config
from center.errors import CenterError, ConfigError

__all__ = ["main"]

log = logging.getLogger("center")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty-center",
        description="The loyalty Center: master data, sale ingest, ledger and reconciliation.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            default=os.environ.get("LOYALTY_CONFIG"),
            help="path to center.toml (default: $LOYALTY_CONFIG)",
        )

    with_config(sub.add_parser("serve", help="run the Center HTTP server"))
    with_config(
        sub.add_parser(
            "check-config", help="print the effective config (secrets redacted) or every problem"
        )
    )
    imp = sub.add_parser(
        "import-dataset",
        help="import the Complete Journey catalogue, households (customers + cards) and stores",
    )
    with_config(imp)
    imp.add_argument(
        "--stores",
        default="",
        help="comma-separated store ids to import (default: every store in the dataset)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.config:
        print("error: --config is required (or set LOYALTY_CONFIG)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: invalid config:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    try:
        if args.command == "check-config":
            print(format_toml(effective_config(config)), end="")
            return 0
        if args.command == "serve":
            return serve(config)
        return import_command(config, args.stores)
    except CenterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def serve(config: Config) -> int:
    """Run the HTTP server until SIGINT/SIGTERM."""
    from aiohttp import web

    from center.app import create_app

    log.info(
        "center %s listening on %s:%d (%s)",
        config.center.node_id,
        config.center.listen_host,
        config.center.listen_port,
        config.storage.backend,
    )
    web.run_app(
        create_app(config),
        host=config.center.listen_host,
        port=config.center.listen_port,
        print=None,
        access_log=None,
    )
    return 0


class _ProgressLine:
    """A counter/percentage line per stage on stderr."""

    def __init__(self) -> None:
        self._last: tuple[str, int] | None = None
        self._started = time.monotonic()

    def __call__(self, stage: str, done: int, total: int) -> None:
        percent = 100 if total == 0 else done * 100 // total
        if self._last == (stage, percent):
            return
        self._last = (stage, percent)
        elapsed = time.monotonic() - self._started
        end = "\n" if done >= total else "\r"
        print(f"[{elapsed:6.1f}s] {stage}: {done}/{total} ({percent}%)", end=end, file=sys.stderr)
        sys.stderr.flush()


def import_command(config: Config, stores_arg: str) -> int:
    """Import the dataset into the configured storage."""
    from center.dataset import import_dataset
    from center.storage import open_storage

    stores = [s.strip() for s in stores_arg.split(",") if s.strip()] or None
    started = time.monotonic()
    storage = open_storage(config.storage)
    try:
        report = import_dataset(
            storage, now=datetime.now(UTC), stores=stores, progress=_ProgressLine()
        )
    finally:
        storage.close()
    print(
        f"imported {report.products} products, {report.stores} stores "
        f"({report.assortment} assortment rows), {report.customers} customers with "
        f"{report.cards} cards, {report.promotions} promotions, {report.settings} settings; "
        f"{report.welcome_credits} welcome credits; master version {report.master_version}; "
        f"changed rows {sum(report.changed.values())} in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    return 0
