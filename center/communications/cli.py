"""`loyalty-center send-messages`: one pass of the outbox sender over the configured channels."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from center.communications.channels import Channel, EmailChannel, SmsChannel, VonageChannel
from center.communications.channels.till import TillChannel
from center.communications.sender import DEFAULT_DAILY_CAP, collect_receipts, send_due
from center.config import Config

__all__ = ["SEND_COMMAND", "add_send_command", "send_command"]

SEND_COMMAND = "send-messages"


def add_send_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add `send-messages` to the Center's subcommands."""
    p = sub.add_parser(SEND_COMMAND, help="send the outbox's due messages (one pass) and receipts")
    with_config(p)
    p.add_argument("--smtp", default="", help="HOST:PORT of the SMTP server (e-mail channel)")
    p.add_argument("--sender", default="", help="the From address of e-mails")
    p.add_argument("--sender-name", default="", help="the From display name")
    p.add_argument("--public-url", default="", help="the Center's public URL (unsubscribe links)")
    p.add_argument("--smpp", default="", help="HOST:PORT of the SMSC (SMS channel)")
    p.add_argument("--smpp-system-id", default="", help="SMPP system_id")
    p.add_argument(
        "--smpp-password-env", default="SMPP_PASSWORD", help="variable holding the SMPP password"
    )
    p.add_argument("--sms-source", default="", help="the SMS sender name or number")
    p.add_argument("--smtp-connections", type=int, default=1, help="SMTP connections at once")
    p.add_argument("--vonage", default="", help="base URL of the Vonage Messages API (Viber)")
    p.add_argument("--vonage-key", default="", help="Vonage API key")
    p.add_argument(
        "--vonage-secret-env", default="VONAGE_API_SECRET", help="variable holding the API secret"
    )
    p.add_argument("--viber-service-id", default="", help="the Viber service message id")
    p.add_argument("--vapid-key-file", default="", help="PEM of the Web Push VAPID private key")
    p.add_argument("--vapid-subject", default="", help="mailto: or https: contact for VAPID")
    p.add_argument("--fcm-service-account", default="", help="service account JSON file (FCM)")
    p.add_argument("--fcm-url", default="https://fcm.googleapis.com", help="FCM API base URL")
    p.add_argument(
        "--till", action="store_true", help="publish till messages (shown at the next purchase)"
    )
    p.add_argument("--daily-cap", type=int, default=DEFAULT_DAILY_CAP, help="marketing per day")
    p.add_argument("--receipts-wait-s", type=float, default=5.0, help="wait for SMS receipts")


def _host_port(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"error: {option}: expected HOST:PORT, got {value!r}")
    return host, int(port)


def _http_channels(args: argparse.Namespace) -> dict[str, Channel]:
    """The channels spoken over HTTP that the command line configures (ValueError, OSError
    naming the option when one is incomplete or unreadable)."""
    found: dict[str, Channel] = {}
    if args.vonage:
        if not args.vonage_key or not args.viber_service_id:
            raise ValueError("--vonage needs --vonage-key and --viber-service-id")
        found["viber"] = VonageChannel(
            args.vonage, api_key=args.vonage_key,
            api_secret=os.environ.get(args.vonage_secret_env, ""),
            viber_service_id=args.viber_service_id, sms_sender=args.sms_source or "Shop",
        )  # fmt: skip
    if args.vapid_key_file:
        from center.communications.channels import WebPushChannel

        key = Path(args.vapid_key_file).read_text()
        found["webpush"] = WebPushChannel(vapid_private_key=key, subject=args.vapid_subject)
    if args.fcm_service_account:
        from center.communications.channels import FcmChannel

        account = json.loads(Path(args.fcm_service_account).read_text())
        found["fcm"] = FcmChannel(account, base_url=args.fcm_url)
    return found


def send_command(config: Config, args: argparse.Namespace) -> int:
    """Send what is due on the channels given on the command line; print the report as JSON."""
    from center.storage import open_storage

    channels: dict[str, Channel] = {}
    if args.smtp:
        if not args.sender or not args.public_url:
            print("error: --smtp needs --sender and --public-url", file=sys.stderr)
            return 2
        host, port = _host_port(args.smtp, "--smtp")
        channels["email"] = EmailChannel(
            host, port, sender=args.sender, sender_name=args.sender_name,
            public_url=args.public_url, connections=max(1, args.smtp_connections),
        )  # fmt: skip
    if args.smpp:
        host, port = _host_port(args.smpp, "--smpp")
        channels["sms"] = SmsChannel(
            host, port, system_id=args.smpp_system_id,
            password=os.environ.get(args.smpp_password_env, ""), source_addr=args.sms_source,
        )  # fmt: skip
    try:
        channels.update(_http_channels(args))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not channels and not args.till:
        print(
            "error: give --smtp, --smpp, --vonage, --vapid-key-file, --fcm-service-account "
            "or --till",
            file=sys.stderr,
        )
        return 2
    storage = open_storage(config.storage)
    if args.till:
        channels["till"] = TillChannel(storage.till)

    def clock() -> datetime:
        return datetime.now(UTC)

    async def run() -> dict[str, object]:
        try:
            report = await send_due(
                storage.communications, channels, clock=clock, daily_cap=args.daily_cap
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + args.receipts_wait_s
            while report.receipts < report.by_channel.get("sms", 0) and loop.time() < deadline:
                report.receipts += await collect_receipts(
                    storage.communications, channels, clock=clock
                )
                await asyncio.sleep(0.2)
            return asdict(report)
        finally:
            for channel in channels.values():
                await channel.close()

    try:
        print(json.dumps(asyncio.run(run()), sort_keys=True))
    finally:
        storage.close()
    return 0
