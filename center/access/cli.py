"""`loyalty-center add-user | add-person | list-users | revoke-user`: manage Center users (and
people who sign in to the console with a password) from the shell."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from center.access.permissions import ROLES
from center.config import Config

__all__ = ["CLI_ACTOR", "USER_COMMANDS", "add_user_commands", "user_command"]

log = logging.getLogger("center")

USER_COMMANDS = frozenset({"add-user", "add-person", "list-users", "revoke-user"})
CLI_ACTOR = "cli"
"""The audit actor of changes made with these commands (whoever holds the config and DB)."""


def add_user_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register add-user, list-users and revoke-user."""
    add = sub.add_parser(
        "add-user", help="create a Center user and print its bearer token (shown only once)"
    )
    with_config(add)
    add.add_argument("username", help="1..64 letters, digits, '.', '_', '@' or '-'")
    add.add_argument("--role", required=True, help=f"one of: {', '.join(ROLES)}")
    add.add_argument(
        "--ttl-days",
        type=int,
        default=None,
        help="days until the token expires (default: [auth] token_ttl_days; 0 there = never)",
    )
    person = sub.add_parser(
        "add-person",
        help="create a person who signs in to the console with a password (read from stdin, "
        "or asked for twice at a terminal)",
    )
    with_config(person)
    person.add_argument("username", help="1..64 letters, digits, '.', '_', '@' or '-'")
    person.add_argument("--role", required=True, help=f"one of: {', '.join(ROLES)}")
    person.add_argument(
        "--totp",
        action="store_true",
        help="also ask for a one-time code at sign-in (for administrators): prints the "
        "otpauth:// URI to add to an authenticator app, shown only once",
    )
    with_config(sub.add_parser("list-users", help="print every user (no tokens) as JSON lines"))
    revoke = sub.add_parser("revoke-user", help="revoke a user's token (kept for the audit)")
    with_config(revoke)
    revoke.add_argument("username")


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("error: the two passwords differ", file=sys.stderr)
        raise SystemExit(2)
    return first


def user_command(config: Config, args: argparse.Namespace) -> int:
    """Run one of USER_COMMANDS against the configured storage."""
    import json

    from center.access.users import create_user
    from center.errors import RequestError
    from center.storage import open_storage

    now = datetime.now(UTC)
    password = _read_password() if args.command == "add-person" else ""
    storage = open_storage(config.storage)
    try:
        if args.command == "add-person":
            from center.access.people import add_person, totp_uri

            try:
                secret = add_person(
                    storage, args.username, args.role, password, CLI_ACTOR, now, totp=args.totp
                )
            except RequestError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if secret is not None:
                print(totp_uri(secret, args.username))
            log.info("person %s (%s) can sign in to the console", args.username, args.role)
            return 0
        if args.command == "add-user":
            ttl_days = args.ttl_days
            if ttl_days is None:
                ttl_days = config.auth.token_ttl_days or None
            try:
                token = create_user(
                    storage, args.username, args.role, CLI_ACTOR, now, ttl_days=ttl_days
                )
            except RequestError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(token)
            log.info(
                "user %s (%s) created; the token above is shown only once", args.username, args.role
            )
            return 0
        if args.command == "list-users":
            for user in storage.users.list_users():
                print(json.dumps(user.to_json()))
            return 0
        try:
            user = storage.users.revoke_user(args.username, CLI_ACTOR, now)
        except RequestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(user.to_json()))
        return 0
    finally:
        storage.close()
