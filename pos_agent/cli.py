"""loyalty-pos: `serve` and `check-config` (the only place that configures logging)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from pos_agent.config import Config, load_config, redacted
from pos_agent.errors import ConfigError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty-pos",
        description="POS agent: prices receipts offline and queues every sale for the store node.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    default = os.environ.get("LOYALTY_CONFIG")
    for name, text in (
        ("serve", "run the register's local API and the uploader"),
        ("check-config", "print the effective config (secrets redacted), or every problem"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "--config",
            default=default,
            required=default is None,
            help="path to pos.toml (default: $LOYALTY_CONFIG)",
        )
        if name == "serve":
            cmd.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING...")
    return parser


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{exc.path}: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None


def _serve(config: Config, log_level: str) -> int:
    from aiohttp import web

    from pos_agent.app import create_app

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    register = config.register
    logging.getLogger("pos_agent").info(
        "POS agent %s listening on http://%s:%d",
        register.register_id,
        register.listen_host,
        register.listen_port,
    )
    web.run_app(
        create_app(config),
        host=register.listen_host,
        port=register.listen_port,
        print=None,
        access_log=None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `loyalty-pos`; returns the exit status."""
    args = _parser().parse_args(argv)
    config = _load(args.config)
    if config is None:
        return 2
    if args.command == "check-config":
        print(json.dumps(redacted(config), indent=2))
        return 0
    return _serve(config, args.log_level)


if __name__ == "__main__":
    raise SystemExit(main())
