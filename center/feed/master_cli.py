"""`loyalty-center load-master | settings | set-settings`: the chain's master data, by shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from center.config import Config
from center.errors import InvalidLines
from center.feed.loaders import KINDS, SETTINGS
from center.storage.base import Progress

__all__ = ["CLI_ACTOR", "MASTER_COMMANDS", "add_master_commands", "master_command"]

MASTER_COMMANDS = frozenset({"load-master", "settings", "set-settings"})
CLI_ACTOR = "cli"
"""The audit actor of the changes these commands make."""


def add_master_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register load-master, settings and set-settings."""
    load = sub.add_parser(
        "load-master",
        help="load a CSV file of master data (all lines or none; every bad line listed)",
    )
    with_config(load)
    load.add_argument("kind", choices=KINDS, help="what the file holds")
    load.add_argument("file", help="CSV, UTF-8, with a header row (docs/API.md lists columns)")
    with_config(sub.add_parser("settings", help="print the chain settings as JSON"))
    put = sub.add_parser(
        "set-settings", help="change chain settings: NAME=VALUE ... (NAME= removes)"
    )
    with_config(put)
    put.add_argument("assignments", nargs="+", help=f"names: {', '.join(sorted(SETTINGS))}")


def master_command(config: Config, args: argparse.Namespace, progress: Progress) -> int:
    """Run one of MASTER_COMMANDS against the configured storage; 1 on refused input."""
    from center.storage import open_storage

    changes: dict[str, str | None] = {}
    data = b""
    if args.command == "set-settings":
        for item in args.assignments:
            name, sep, value = item.partition("=")
            if not sep:
                print(f"error: {item!r}: expected NAME=VALUE", file=sys.stderr)
                return 2
            changes[name.strip()] = value.strip() or None
    if args.command == "load-master":
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            print(f"error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    storage = open_storage(config.storage)
    try:
        now = datetime.now(UTC)
        if args.command == "settings":
            print(json.dumps(storage.master.settings(), sort_keys=True))
            return 0
        try:
            if args.command == "set-settings":
                done = storage.master.set_settings(changes, actor=CLI_ACTOR, now=now)
                print(json.dumps(done, sort_keys=True))
                return 0
            report = storage.master.load_csv(
                args.kind,
                data,
                actor=CLI_ACTOR,
                now=now,
                source=Path(args.file).name,
                progress=progress,
            )
        except InvalidLines as exc:
            where = f"{args.file}:" if args.command == "load-master" else ""
            for problem in exc.problems:
                line = f"{problem['line']}: " if where else ""
                print(f"{where}{line}{problem['field']}: {problem['message']}", file=sys.stderr)
            print(f"error: {len(exc.problems)} problems; nothing was changed", file=sys.stderr)
            return 1
    finally:
        storage.close()
    print(json.dumps(report.to_json(), sort_keys=True))
    return 0
