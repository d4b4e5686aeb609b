"""`loyalty-center`: serve, check-config, import-dataset, simulate, recompute, enrol-store,
add-user, list-users, revoke-user, report, generate-coupons, load-master, settings,
set-settings, send-messages, fraud scan."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from center.access.cli import USER_COMMANDS, add_user_commands, user_command
from center.communications.cli import SEND_COMMAND, add_send_command, send_command
from center.config import Config, effective_config, format_toml, load_config
from center.errors import CenterError, ConfigError
from center.feed.master_cli import MASTER_COMMANDS, add_master_commands, master_command
from center.fraud.cli import add_fraud_commands, fraud_command
from center.models import MODELS_COMMAND, add_models_commands, models_command
from sync_protocol import Sale

if TYPE_CHECKING:
    from center.storage import Storage

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
    sim = sub.add_parser(
        "simulate",
        help="price stored sales of a period with a draft promotion set; print its cost as JSON",
    )
    with_config(sim)
    sim.add_argument("promotions", help="JSON file: a list of promotion documents (the draft)")
    sim.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
    sim.add_argument("--to", dest="date_to", required=True, help="last day (inclusive)")
    sim.add_argument("--version", type=int, default=0, help="version to label the draft with")
    rec = sub.add_parser(
        "recompute",
        help="recompute stored sales of a period with the engine; print differences as JSON",
    )
    with_config(rec)
    rec.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
    rec.add_argument("--to", dest="date_to", required=True, help="last day (inclusive)")
    enr = sub.add_parser(
        "enrol-store",
        help="print a one-time enrolment token for a store node (`loyalty-store enrol`)",
    )
    with_config(enr)
    enr.add_argument("--store-id", required=True, help="the store the node will act for")
    enr.add_argument(
        "--ttl-h", type=float, default=24.0, help="hours until the token expires (default 24)"
    )
    add_user_commands(sub, with_config)
    add_master_commands(sub, with_config)
    add_fraud_commands(sub, with_config)
    rep = sub.add_parser(
        "report", help="write report.html (KPIs, tables, SVG charts) and the SVGs of a period"
    )
    with_config(rep)
    rep.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
    rep.add_argument("--to", dest="date_to", required=True, help="last day (inclusive)")
    rep.add_argument("--out", required=True, help="folder for report.html and the SVG files")
    ana = sub.add_parser(
        "analytics", help="feed the analytics store, rebuild it from scratch, or show its status"
    )
    with_config(ana)
    ana.add_argument("action", choices=("feed", "rebuild", "status"))
    gen = sub.add_parser(
        "generate-coupons",
        help="generate a coupon batch as a job with a progress line; print the batch as JSON",
    )
    with_config(gen)
    gen.add_argument("--promotion-id", required=True, help="the coupon promotion of the batch")
    gen.add_argument("--prefix", required=True, help="1..8 letters or digits")
    gen.add_argument("--count", type=int, required=True, help="codes to generate (1..1000000)")
    gen.add_argument("--name", default="", help="a name for the batch")
    gen.add_argument("--multi-use", action="store_true", help="codes usable more than once")
    gen.add_argument("--valid-from", default=None, help="first valid day, YYYY-MM-DD")
    gen.add_argument("--valid-to", default=None, help="last valid day, YYYY-MM-DD")
    gen.add_argument("--signed", action="store_true", help="registers' signed code format")
    add_send_command(sub, with_config)
    add_models_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == MODELS_COMMAND:
        return models_command(args)
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
        if args.command == "enrol-store":
            return enrol_store_command(config, args.store_id, args.ttl_h)
        if args.command in USER_COMMANDS:
            return user_command(config, args)
        if args.command in MASTER_COMMANDS:
            return master_command(config, args, _ProgressLine())
        if args.command == "fraud":
            return fraud_command(config, args, _ProgressLine())
        if args.command == "report":
            from center.reporting.queries import report_command

            return report_command(config, args.date_from, args.date_to, args.out)
        if args.command == "generate-coupons":
            return generate_coupons_command(config, args)
        if args.command == SEND_COMMAND:
            return send_command(config, args)
        if args.command == "analytics":
            from center.analytics.cli import analytics_command

            return analytics_command(config, args.action)
        if args.command == "recompute":
            return recompute_command(config, args.date_from, args.date_to)
        if args.command == "simulate":
            return simulate_command(
                config, args.promotions, args.date_from, args.date_to, args.version
            )
        return import_command(config, args.stores)
    except CenterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _option_named(message: str) -> str:
    """A request error's field `body.promotion_id: ...` as the option `--promotion-id: ...`."""
    field, sep, rest = message.partition(": ")
    if sep and field.startswith("body."):
        return f"--{field.removeprefix('body.').replace('_', '-')}: {rest}"
    return message


def generate_coupons_command(config: Config, args: argparse.Namespace) -> int:
    """Generate a coupon batch in steps (a job any Center shows at GET /v1/coupon-jobs/{id});
    a progress line on stderr, the batch as JSON on stdout; exit 2 naming a bad option."""
    import json

    from center.errors import RequestError
    from center.promotions import coupon_jobs
    from center.promotions.coupons import parse_batch
    from center.storage import open_storage

    body = {
        "promotion_id": args.promotion_id,
        "prefix": args.prefix,
        "count": args.count,
        "name": args.name,
        "single_use": not args.multi_use,
        "valid_from": args.valid_from,
        "valid_to": args.valid_to,
        "signed": args.signed,
    }
    try:
        request = parse_batch(body)
    except RequestError as exc:
        print(f"error: {_option_named(str(exc))}", file=sys.stderr)
        return 2
    storage = open_storage(config.storage)
    try:
        now = datetime.now(UTC)
        try:
            job = storage.coupon_jobs.start_coupon_job(
                request, "cli", coupon_jobs.this_owner(), now
            )
        except RequestError as exc:
            print(f"error: {_option_named(str(exc))}", file=sys.stderr)
            return 2
        print(f"job {job['job_id']}: batch {job['batch_id']}", file=sys.stderr, flush=True)

        def progress(view: dict[str, object]) -> None:
            print(
                f"job {view['job_id']}: {view['generated']}/{view['total']} codes "
                f"{'done' if view['state'] == 'done' else 'generated'}",
                file=sys.stderr,
                flush=True,
            )

        done = coupon_jobs.run_job(storage, job["job_id"], lambda: datetime.now(UTC), progress)
    finally:
        storage.close()
    print(json.dumps(done["batch"], sort_keys=True))
    return 0


def enrol_store_command(config: Config, store_id: str, ttl_h: float) -> int:
    """Print a new one-time enrolment token for `store_id` on stdout."""
    import re

    from center.access.nodes import MAX_TTL_H, issue_token
    from center.storage import open_storage

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", store_id):
        print(
            f"error: --store-id: expected 1..64 letters or digits, got {store_id!r}",
            file=sys.stderr,
        )
        return 2
    if not 0 < ttl_h <= MAX_TTL_H:
        print(f"error: --ttl-h: must be > 0 and at most {MAX_TTL_H}, got {ttl_h}", file=sys.stderr)
        return 2
    storage = open_storage(config.storage)
    try:
        token = issue_token(storage, store_id, datetime.now(UTC), ttl_h)
    finally:
        storage.close()
    print(token)
    log.info("enrolment token for store %s issued, valid for %g h", store_id, ttl_h)
    return 0


def serve(config: Config) -> int:
    """Run the HTTP server until SIGINT/SIGTERM."""
    from aiohttp import web

    from center.web.app import create_app

    ssl_context = config.tls.server_context()
    log.info(
        "center %s listening on %s://%s:%d (%s)",
        config.center.node_id,
        "https" if ssl_context else "http",
        config.center.listen_host,
        config.center.listen_port,
        config.storage.backend,
    )
    web.run_app(
        create_app(config),
        host=config.center.listen_host,
        port=config.center.listen_port,
        ssl_context=ssl_context,
        print=None,
        access_log=None,
    )
    return 0


class _ProgressLine:
    """A counter/percentage line per stage on stderr.

    On a terminal it redraws one line per percent; in a log (no TTY) it writes a line per
    25 % so that CI and journald keep the progress without thousands of lines.
    """

    def __init__(self) -> None:
        self._last: tuple[str, int] | None = None
        self._started = time.monotonic()
        self._tty = sys.stderr.isatty()

    def __call__(self, stage: str, done: int, total: int) -> None:
        percent = 100 if total == 0 else done * 100 // total
        step = percent if self._tty else percent // 25 * 25
        if self._last == (stage, step):
            return
        self._last = (stage, step)
        elapsed = time.monotonic() - self._started
        end = "\n" if done >= total or not self._tty else "\r"
        print(f"[{elapsed:6.1f}s] {stage}: {done}/{total} ({percent}%)", end=end, file=sys.stderr)
        sys.stderr.flush()


def import_command(config: Config, stores_arg: str) -> int:
    """Import the dataset into the configured storage."""
    from center.feed.dataset import import_dataset
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


def simulate_command(
    config: Config, promotions_path: str, date_from: str, date_to: str, version: int
) -> int:
    """Run a what-if simulation over the stored sales of [date_from, date_to]."""
    import json
    from pathlib import Path

    from center.promotions.recompute import ProductInfo
    from center.promotions.simulate import simulate
    from center.storage import open_storage
    from loyalty_engine import RuleError, load_promotion_set
    from sync_protocol import ProtocolError, decode_sale

    period = _period(date_from, date_to)
    if period is None:
        return 2
    try:
        docs = json.loads(Path(promotions_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: {promotions_path}: {exc}", file=sys.stderr)
        return 2
    storage = open_storage(config.storage)
    try:
        master = storage.feed.pricing_master()
        payloads = storage.sales.sale_payloads(*period)
    finally:
        storage.close()
    settings = {str(name): str(value) for name, value in master["settings"]}
    try:
        draft = load_promotion_set(docs, version=version, settings=settings)
    except RuleError as exc:
        print(f"{promotions_path}: invalid promotions:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    products = {
        str(r[0]): ProductInfo(r[1] or "", r[2] or "", r[3] or "", r[4] or "")
        for r in master["products"]
    }
    formats = {str(r[0]): str(r[1] or "") for r in master["stores"]}
    bar = _ProgressLine()
    total = len(payloads)
    started = time.monotonic()

    def sales() -> Iterator[Sale]:
        for payload in payloads:
            try:
                yield decode_sale(payload)
            except ProtocolError:
                continue

    report = simulate(
        sales(),
        draft,
        products=products,
        store_formats=formats,
        progress=lambda done: bar("simulate", done, total),
    )
    result = report.to_dict()
    result["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(result, indent=2))
    return 0


def _period(date_from: str, date_to: str) -> tuple[datetime, datetime] | None:
    from datetime import date, timedelta

    try:
        start = date.fromisoformat(date_from)
        end = date.fromisoformat(date_to)
    except ValueError as exc:
        print(f"error: --from/--to: expected YYYY-MM-DD ({exc})", file=sys.stderr)
        return None
    first = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return first, datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)


def recompute_command(config: Config, date_from: str, date_to: str) -> int:
    """Recompute every stored sale of the period; exit 0 with no difference, 1 otherwise."""
    from center.storage import open_storage

    period = _period(date_from, date_to)
    if period is None:
        return 2
    storage = open_storage(config.storage)
    try:
        return _recompute_sales(storage, period)
    finally:
        storage.close()


def _recompute_sales(storage: Storage, period: tuple[datetime, datetime]) -> int:
    import json

    from center.promotions.recompute import (
        OFFER_LAG_TOLERANCE,
        ProductInfo,
        promotion_set_at,
        recompute_sale,
    )
    from loyalty_engine import PromotionSet, RuleError
    from sync_protocol import ProtocolError, decode_sale

    master = storage.feed.pricing_master()
    payloads = storage.sales.sale_payloads(*period)
    history = storage.promotions.promotion_sets_between(*period)
    settings = {str(name): str(value) for name, value in master["settings"]}
    rows = [
        {"doc": json.loads(doc) if isinstance(doc, str) else doc, "version": version}
        for doc, version in master["promotions"]
    ]
    products = {
        str(r[0]): ProductInfo(r[1] or "", r[2] or "", r[3] or "", r[4] or "")
        for r in master["products"]
    }
    formats = {str(r[0]): str(r[1] or "") for r in master["stores"]}
    zones = {str(r[0]): str(r[2] or "") for r in master["stores"]}
    sets: dict[int, PromotionSet | str] = {}
    bar = _ProgressLine()
    differing: list[dict[str, object]] = []
    checked = 0
    returns = 0
    for done, payload in enumerate(payloads, 1):
        bar("recompute", done, len(payloads))
        try:
            sale = decode_sale(payload)
        except ProtocolError as exc:
            differing.append({"sale_id": "?", "differences": [f"payload: {exc}"]})
            continue
        if sale.return_of is not None:
            # A return is not priced by the engine: the Center reverses its original in proportion.
            returns += 1
            continue
        if sale.promo_version not in sets:
            try:
                sets[sale.promo_version] = promotion_set_at(
                    rows, settings, sale.promo_version, history
                )
            except RuleError as exc:
                sets[sale.promo_version] = f"promotions at version {sale.promo_version}: {exc}"
        promotions = sets[sale.promo_version]
        if isinstance(promotions, str):
            differing.append({"sale_id": sale.sale_id, "differences": [promotions]})
            continue
        held: list[dict[str, Any]] | None = None
        if sale.personal_offers:
            # Were the claimed offers the customer's? Checked against the audit trail.
            found = (
                storage.offers.personal_offers_at(
                    sale.card_no, sale.closed_at, since=sale.closed_at - OFFER_LAG_TOLERANCE
                )
                if sale.card_no
                else None
            )
            held = [] if found is None else found["offers"]
        result = recompute_sale(
            sale,
            promotions,
            products=products,
            store_format=formats.get(sale.store_id, ""),
            store_timezone=zones.get(sale.store_id, ""),
            held_offers=held,
        )
        checked += 1
        if not result.ok:
            differing.append({"sale_id": sale.sale_id, "differences": list(result.differences)})
    print(
        json.dumps(
            {
                "sales": len(payloads),
                "recomputed": checked,
                "returns_skipped": returns,
                "differing": differing,
            },
            indent=2,
        )
    )
    return 0 if not differing else 1
