"""loyalty-pos: `serve`, `check-config`, `reprint`, `enrol`, `print-test`, `display-test`.

The only place that configures logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

from pos_agent.config import Config, PrinterConfig, load_config, redacted
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
        ("reprint", "send the slips that failed to print again (the reprint queue)"),
        ("enrol", "redeem a token from `loyalty-store enrol-register`; keep the secret"),
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
        if name == "reprint":
            cmd.add_argument("--list", action="store_true", help="only list the queue")
        if name == "enrol":
            cmd.add_argument("--token", required=True, help="from loyalty-store enrol-register")
            cmd.add_argument(
                "--store-url",
                default=None,
                help="the store node, http(s)://host:port (default: store_node.url)",
            )
    text = "print a test slip (Latin, Cyrillic, EAN-13, CODE128, QR, cut) to a printer URI"
    cmd = sub.add_parser("print-test", help=text, description=text)
    cmd.add_argument("--printer", required=True, help="tcp://host:9100, serial:///dev/ttyS0, ...")
    cmd.add_argument("--profile", default="default", help="python-escpos printer profile")
    cmd.add_argument("--code-page", default="CP866")
    cmd.add_argument("--code-page-slot", type=int, default=None, help="ESC t n override")
    cmd.add_argument("--columns", type=int, default=48, choices=(32, 42, 48))
    text = "show test frames (init, Cyrillic lines, brightness, scroll) on a customer display"
    cmd = sub.add_parser("display-test", help=text, description=text)
    cmd.add_argument("--display", required=True, help="serial:///dev/ttyUSB0?baudrate=9600, ...")
    cmd.add_argument("--protocol", required=True, choices=("epson", "cd5220"))
    cmd.add_argument("--code-page", default="CP866")
    cmd.add_argument("--code-table", type=int, default=17, help="the display's ESC t n")
    return parser


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{exc.path}: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None


CLOCK_SKEW_ENV = "LOYALTY_CLOCK_SKEW_S"
MAX_CLOCK_SKEW_S = 86_400.0


def _skewed_clock(raw: str) -> Callable[[], datetime]:
    """The wall clock shifted by `raw` seconds (LOYALTY_CLOCK_SKEW_S, for skew tests); "" = none."""
    from datetime import UTC, timedelta

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
    from aiohttp import web

    from pos_agent.app import create_app

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    raw_skew = os.environ.get(CLOCK_SKEW_ENV, "")
    try:
        clock = _skewed_clock(raw_skew)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if raw_skew:
        logging.getLogger("pos_agent").warning(
            "the clock is shifted by %s s (%s): for skew tests only", raw_skew, CLOCK_SKEW_ENV
        )
    register = config.register
    logging.getLogger("pos_agent").info(
        "POS agent %s listening on http://%s:%d",
        register.register_id,
        register.listen_host,
        register.listen_port,
    )
    web.run_app(
        create_app(config, clock=clock),
        host=register.listen_host,
        port=register.listen_port,
        print=None,
        access_log=None,
    )
    return 0


def _print_test(args: argparse.Namespace) -> int:
    from pos_agent.devices import send_to_printer
    from printers import PrintersError, render_slip, self_test_slip

    try:
        printer = PrinterConfig(
            uri=args.printer,
            profile=args.profile,
            code_page=args.code_page,
            code_page_slot=args.code_page_slot,
            columns=args.columns,
            query_status=args.printer.startswith(("tcp:", "serial:")),
        )
        payload = render_slip(
            self_test_slip(args.printer),
            profile=printer.profile,
            code_page=printer.code_page,
            code_page_slot=printer.code_page_slot,
            columns=printer.columns,
        )
        status = send_to_printer(printer, payload)
    except (PrintersError, ValueError) as exc:
        print(f"print-test failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"printer": args.printer, "bytes": len(payload), "status": status}))
    return 0


def _display_test(args: argparse.Namespace) -> int:
    from printers import PrintersError, open_display

    try:
        display = open_display(
            args.display, args.protocol, code_page=args.code_page, code_table=args.code_table
        )
        try:
            display.init()
            display.brightness(4)
            display.clear()
            display.show("DISPLAY TEST 12345", "Тест дисплея АБВГД")
            display.show("Молоко 3,2%", "89.90".rjust(20))
            display.scroll("Начислено 35 бонусов / You earned 35 bonuses")
        finally:
            display.close()
    except (PrintersError, ValueError) as exc:
        print(f"display-test failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"display": args.display, "protocol": args.protocol}))
    return 0


def _reprint(config: Config, *, only_list: bool) -> int:
    from pos_agent.devices import ReprintQueue, send_to_printer
    from printers import PrintersError

    path = config.register.data_dir / "devices.db"
    if not path.exists():
        print(json.dumps({"queued": 0, "reprinted": 0}))
        return 0
    reprints = ReprintQueue(path)
    try:
        jobs = reprints.pending()
        if only_list or not jobs:
            listing = [{"id": i, "kind": j.kind, "sale_id": j.ref} for i, j in jobs]
            print(json.dumps({"queued": len(jobs), "jobs": listing}))
            return 0
        if config.printer is None:
            print("reprint: no [printer] in the config", file=sys.stderr)
            return 2
        done = 0
        for job_id, job in jobs:
            try:
                send_to_printer(config.printer, job.payload)
            except PrintersError as exc:
                reprints.failed_again(job_id, str(exc))
                print(f"reprint stopped at {job.kind} of sale {job.ref}: {exc}", file=sys.stderr)
                print(json.dumps({"queued": len(jobs) - done, "reprinted": done}))
                return 1
            reprints.done(job_id)
            done += 1
        print(json.dumps({"queued": 0, "reprinted": done}))
        return 0
    finally:
        reprints.close()


def _enrol(config: Config, token: str, store_url: str | None) -> int:
    from pos_agent.credentials import enrol, save_credentials
    from pos_agent.errors import PosError

    url = store_url or config.store_node.url
    if not url:
        print("enrol: --store-url is required when store_node.url is empty", file=sys.stderr)
        return 2
    try:
        credentials = enrol(
            url,
            token,
            config.register.register_id,
            timeout_s=config.store_node.timeout_s,
            verify=config.store_node.verify,
        )
        path = save_credentials(config.register.data_dir, credentials)
    except PosError as exc:
        print(f"enrol: refused or failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"enrol: cannot write the credentials: {exc}", file=sys.stderr)
        return 1
    print(f"enrolled as node {credentials.node_id} of register {credentials.register_id}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `loyalty-pos`; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "print-test":
        return _print_test(args)
    if args.command == "display-test":
        return _display_test(args)
    config = _load(args.config)
    if config is None:
        return 2
    if args.command == "check-config":
        print(json.dumps(redacted(config), indent=2))
        return 0
    if args.command == "reprint":
        return _reprint(config, only_list=args.list)
    if args.command == "enrol":
        return _enrol(config, args.token, args.store_url)
    return _serve(config, args.log_level)


if __name__ == "__main__":
    raise SystemExit(main())
