"""The `loyalty-store` command: `serve`, `check-config`, `enrol`, `enrol-register`, `set-admin`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from aiohttp import web

from store_node.admin_auth import AdminAuth, check_admin_name, check_admin_password
from store_node.app import create_app
from store_node.auth import MAX_TTL_H, RegisterAuth
from store_node.config import Config, load_config, redacted
from store_node.credentials import enrol, save_credentials
from store_node.errors import ConfigError, StoreNodeError
from sync_protocol import InvalidIdentifier, check_identifier

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
        ("enrol", "redeem a one-time token from `loyalty-center enrol-store`; keep the secret"),
        ("enrol-register", "print a one-time enrolment token for a register (`loyalty-pos enrol`)"),
        (
            "set-admin",
            "set the store admin's name and password for the admin page (password from stdin, "
            "or asked twice at a terminal); ends the admin's sessions",
        ),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument(
            "--config",
            default=os.environ.get("LOYALTY_CONFIG"),
            help="path of store.toml (default: $LOYALTY_CONFIG)",
        )
        if name == "enrol":
            command.add_argument(
                "--token", required=True, help="the token printed by loyalty-center enrol-store"
            )
            command.add_argument(
                "--admin-user",
                default=None,
                help="also set the store admin who signs in to the admin page (the password is "
                "read from stdin, or asked twice at a terminal)",
            )
        if name == "set-admin":
            command.add_argument("username", help="1..64 letters, digits, '.', '_', '@' or '-'")
        if name == "enrol-register":
            command.add_argument("--register-id", required=True, help="the register to enrol")
            command.add_argument(
                "--ttl-h", type=float, default=24.0, help="hours until it expires (default 24)"
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


CLOCK_SKEW_ENV = "LOYALTY_CLOCK_SKEW_S"
MAX_CLOCK_SKEW_S = 86_400.0


def _skewed_clock(raw: str) -> Callable[[], datetime]:
    """The wall clock shifted by `raw` seconds (LOYALTY_CLOCK_SKEW_S, for skew tests); "" = none."""
    try:
        skew = float(raw or "0")
    except ValueError:
        raise ConfigError(
            "environment", [f"{CLOCK_SKEW_ENV}: {raw!r} is not a number of seconds"]
        ) from None
    if not abs(skew) <= MAX_CLOCK_SKEW_S:
        raise ConfigError(
            "environment", [f"{CLOCK_SKEW_ENV}: {raw!r} is over {MAX_CLOCK_SKEW_S:.0f} s"]
        )
    shift = timedelta(seconds=skew)
    return lambda: datetime.now(UTC) + shift


def _serve(config: Config, log_level: str) -> int:
    _configure_logging(log_level)
    raw_skew = os.environ.get(CLOCK_SKEW_ENV, "")
    try:
        clock = _skewed_clock(raw_skew)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if raw_skew:
        log.warning(
            "the clock is shifted by %s s (%s): for skew tests only", raw_skew, CLOCK_SKEW_ENV
        )
    ssl_context = config.tls.server_context()
    log.info(
        "starting store node %s (store %s) on %s://%s:%d, Center %s, data in %s",
        config.store.node_id,
        config.store.store_id,
        "https" if ssl_context is not None else "http",
        config.store.listen_host,
        config.store.listen_port,
        config.center.url,
        config.store.data_dir,
    )
    web.run_app(
        create_app(config, clock=clock),
        host=config.store.listen_host,
        port=config.store.listen_port,
        ssl_context=ssl_context,
        print=None,
        access_log=logging.getLogger("aiohttp.access") if log_level == "DEBUG" else None,
    )
    return 0


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("store admin password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _admin_credentials(username: str) -> tuple[str, str]:
    """The store admin's checked name and password (read now); ValueError naming the problem."""
    check_admin_name(username)
    return username, check_admin_password(_read_password())


def _set_admin(config: Config, username: str) -> int:
    try:
        name, password = _admin_credentials(username)
        AdminAuth(config.db_path).set_admin(name, password, datetime.now(UTC))
    except ValueError as exc:
        print(f"loyalty-store: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error, StoreNodeError) as exc:
        print(f"loyalty-store: cannot keep the store admin: {exc}", file=sys.stderr)
        return 1
    print(f"store admin {name} can sign in to the admin page of store {config.store.store_id}")
    return 0


def _enrol(config: Config, token: str, admin_user: str | None = None) -> int:
    admin: tuple[str, str] | None = None
    if admin_user is not None:
        try:  # checked before the token is spent
            admin = _admin_credentials(admin_user)
        except ValueError as exc:
            print(f"loyalty-store: {exc}", file=sys.stderr)
            return 2
    try:
        credentials = enrol(
            config.center.url,
            token,
            config.store.store_id,
            timeout_s=config.center.timeout_s,
            context=config.center.ssl_context(),
        )
        path = save_credentials(config.store.data_dir, credentials)
    except StoreNodeError as exc:
        print(f"loyalty-store: enrolment refused or failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"loyalty-store: cannot write the credentials: {exc}", file=sys.stderr)
        return 1
    print(
        f"enrolled as node {credentials.node_id} of store {credentials.store_id}; "
        f"credentials in {path} (mode 0600)"
    )
    if admin is not None:
        try:
            AdminAuth(config.db_path).set_admin(*admin, datetime.now(UTC))
        except (OSError, sqlite3.Error, StoreNodeError) as exc:
            print(f"loyalty-store: cannot keep the store admin: {exc}", file=sys.stderr)
            return 1
        print(f"store admin {admin[0]} can sign in to the admin page")
    return 0


def _enrol_register(config: Config, register_id: str, ttl_h: float) -> int:
    try:
        check_identifier(register_id, "--register-id")
    except InvalidIdentifier as exc:
        print(f"loyalty-store: {exc}", file=sys.stderr)
        return 2
    if not 0 < ttl_h <= MAX_TTL_H:
        print(f"loyalty-store: --ttl-h: must be > 0 and <= {MAX_TTL_H}", file=sys.stderr)
        return 2
    try:
        token = RegisterAuth(config.store.data_dir).issue_token(
            register_id, datetime.now(UTC), ttl_h
        )
    except (OSError, sqlite3.Error) as exc:
        print(f"loyalty-store: cannot store the token: {exc}", file=sys.stderr)
        return 1
    print(token)
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
    if args.command == "enrol":
        return _enrol(config, args.token, args.admin_user)
    if args.command == "set-admin":
        return _set_admin(config, args.username)
    if args.command == "enrol-register":
        return _enrol_register(config, args.register_id, args.ttl_h)
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
