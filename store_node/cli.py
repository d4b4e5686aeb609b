"""The `loyalty-store` command: `serve` and `check-config`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from store_node.app import create_app
from store_node.config import Config, load_config, redacted
from store_node.errors import ConfigError, StoreNodeError

__all__ = ["main"]

log = logging.getLogger("store_node")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `loyalty-store`."""
    parser = argparse.ArgumentParser(
        prog="loyalty-store",
        description="Store node: collects the registers' sales, forwards them to the Center, "
        "caches master data and reports register health.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("serve", "run the store node HTTP server"),
        ("check-config", "print the effective config (secrets redacted); exit 2 listing problems"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument(
            "--config",
            default=os.environ.get("LOYALTY_CONFIG"),
            help="path of store.toml (default: $LOYALTY_CONFIG)",
        )
        if name == "serve":
            command.add_argument(
                "--log-level",
                default="INFO",
                choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                help="logging level (default INFO)",
            )
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # apscheduler logs every job run at INFO and a skipped overlapping run (normal while a long
    # drain is in progress) at WARNING; our jobs log their own outcomes.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def _serve(config: Config, log_level: str) -> int:
    _configure_logging(log_level)
    log.info(
        "starting store node %s (store %s) on %s:%d, Center %s, data in %s",
        config.store.node_id,
        config.store.store_id,
        config.store.listen_host,
        config.store.listen_port,
        config.center.url,
        config.store.data_dir,
    )
    web.run_app(
        create_app(config),
        host=config.store.listen_host,
        port=config.store.listen_port,
        print=None,
        access_log=logging.getLogger("aiohttp.access") if log_level == "DEBUG" else None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `loyalty-store`; return the process exit code."""
    args = build_parser().parse_args(argv)
    if not args.config:
        print("loyalty-store: --config is required (or set LOYALTY_CONFIG)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{exc.path}: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(json.dumps(redacted(config), indent=2))
        return 0
    try:
        return _serve(config, args.log_level)
    except StoreNodeError as exc:
        print(f"loyalty-store: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"loyalty-store: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
