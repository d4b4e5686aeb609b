"""Benchmark of communications: planning a campaign for many customers, SMTP delivery rate.

1. planning: a fresh SQLite Center gets `--customers` customers (default 1 000 000) with
   contacts, advertising consent for nine in ten, all in one segment (set up by bulk inserts,
   not timed); then the timed part: a manual launch of a triggered chain to that segment
   (`launch_trigger`: members, contacts and balances read, ABX assignment stratified by
   trigger, templates rendered per language, each customer's channel chosen, everything handed
   to the outbox). Consent, the daily cap and quiet hours are the claim's checks (store.py
   `_claim`), timed in part 2 with each message;
2. delivery: `--messages` e-mails (default 5 000) claimed in batches, sent through
   `--connections` SMTP connections (default 8) to an aiosmtpd sink in another process, and
   recorded; messages per second.
Progress goes to stderr; one JSON object to stdout.

Usage: .venv/bin/python bench/communications.py [--customers 1000000] [--messages 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from center.communications import NewMessage, send_due
from center.communications.campaigns import launch_trigger
from center.communications.channels import EmailChannel
from center.communications.templates import parse_template
from center.communications.triggers import TriggerCampaign
from center.storage.sqlite import SqliteStorage

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SINK = """
import sys
from aiosmtpd.controller import Controller
from demo.message_sinks import free_port

class Count:
    received = 0

    async def handle_DATA(self, server, session, envelope):
        Count.received += 1  # a sink: counts, keeps nothing (parsing is the tests' business)
        return "250 2.0.0 queued"

port = free_port()
controller = Controller(Count(), hostname="127.0.0.1", port=port)
controller.start()
print(port, flush=True)
sys.stdin.read()
print(Count.received, flush=True)
controller.stop()
"""
TEMPLATE = {
    "subject": {"ru": "{name}, для вас скидка", "en": "{name}, a discount for you"},
    "body": {
        "ru": "Здравствуйте, {name}! На вашем счёте {balance}. Ждём вас в магазине {store}.",
        "en": "Hello {name}! You have {balance}. See you at {store}.",
    },
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def setup(storage: SqliteStorage, customers: int) -> None:
    """Customers with contacts, consents for nine in ten, one segment of them all."""
    db = storage.db
    chunk = 50_000
    with db.guard("bench setup"), db.transaction():
        db.execute(
            "INSERT INTO stores (store_id, name, format, timezone, version) VALUES "
            "('367', 'Store 367', 'supermarket', 'Europe/Moscow', 1)"
        )
        db.execute(
            "INSERT INTO segments (segment_id, name, kind, rule, members, created_by, "
            "created_at, updated_at) VALUES ('all', 'All', 'static', NULL, ?, 'bench', ?, ?)",
            (customers, db.ts(NOW), db.ts(NOW)),
        )
    for start in range(0, customers, chunk):
        rows = range(start, min(customers, start + chunk))
        with db.guard("bench setup"), db.transaction():
            db.conn.executemany(
                "INSERT INTO customers (customer_id, attributes, version) VALUES (?, ?, 1)",
                (
                    (
                        f"c{i}",
                        json.dumps(
                            {
                                "first_name": "Анна" if i % 2 else "Ivan",
                                "email": f"c{i}@shop.example",
                                "phone": f"+7916{i:07d}",
                                "lang": "en" if i % 3 == 0 else "ru",
                                "store_id": "367",
                                "preferred_channel": "sms" if i % 10 == 0 else "email",
                            },
                            ensure_ascii=False,
                        ),
                    )
                    for i in rows
                ),
            )
            db.conn.executemany(
                "INSERT INTO segment_members (segment_id, customer_id) VALUES ('all', ?)",
                ((f"c{i}",) for i in rows),
            )
            db.conn.executemany(
                "INSERT INTO comm_consents (customer_id, channel, purpose, granted, source, "
                "evidence, at, seq) VALUES (?, ?, ?, 1, 'bench', 'bench', ?, 1)",
                (
                    (f"c{i}", channel, purpose, db.ts(NOW))
                    for i in rows
                    if i % 10 != 9
                    for channel in ("email", "sms")
                    for purpose in ("advertising", "personal_data")
                ),
            )
        _log(f"setup: {min(customers, start + chunk)}/{customers} customers")


def plan(storage: SqliteStorage) -> dict[str, object]:
    template = parse_template("bench", TEMPLATE)
    campaign = TriggerCampaign(
        "bench-segment",
        "segment",
        {"A": template, "B": template},
        split=(("A", 4500), ("B", 4500), ("X", 1000)),
        channels=("email", "sms"),
        segment_id="all",
    )
    started, cpu = time.perf_counter(), time.process_time()
    done = launch_trigger(storage.communications, campaign, NOW)
    return {
        **done,
        "seconds": round(time.perf_counter() - started, 2),
        # on a shared machine the wall clock also counts other processes' turns
        "cpu_seconds": round(time.process_time() - cpu, 2),
    }


async def deliver(storage: SqliteStorage, messages: int, connections: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert sink.stdout is not None and sink.stdin is not None
        port = int(sink.stdout.readline())
        at = datetime.now(UTC) - timedelta(seconds=1)
        storage.communications.enqueue(
            [
                NewMessage(f"otp:{i}", f"c{i}", "email", "transactional", f"c{i}@shop.example",
                           "Код входа", f"Ваш код: {1000 + i % 9000}")
                for i in range(messages)
            ],
            at,
        )  # fmt: skip
        channel = EmailChannel(
            "127.0.0.1", port, sender="bench@shop.example", public_url="http://c",
            rate_per_s=0, connections=connections,
        )  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        try:
            report = await send_due(
                storage.communications, {"email": channel}, clock=lambda: datetime.now(UTC),
                batch=1000,
            )  # fmt: skip
        finally:
            await channel.close()
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu
        sink.stdin.close()
        received = int(sink.stdout.readline() or 0)
    finally:
        sink.wait(30)
    return {
        "messages": messages,
        "sent": report.sent,
        "received_by_sink": received,
        "connections": connections,
        "seconds": round(seconds, 2),
        "messages_per_s": round(report.sent / seconds, 1),
        "sender_cpu_seconds": round(cpu_seconds, 2),
        "messages_per_cpu_s": round(report.sent / max(cpu_seconds, 1e-9), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--data", type=Path, default=None, help="folder for the database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        storage = SqliteStorage(folder / "bench-plan.db")
        storage.migrate()
        setup(storage, args.customers)
        _log("planning ...")
        planned = plan(storage)
        _log(f"planned: {planned}")
        storage.close()
        storage = SqliteStorage(folder / "bench-send.db")
        storage.migrate()
        _log("delivering ...")
        delivered = asyncio.run(deliver(storage, args.messages, args.connections))
        storage.close()
    print(
        json.dumps(
            {
                "planning": {**planned, "customers": args.customers, "goal_s": 60},
                "smtp_delivery": {**delivered, "goal_per_s": 500},
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
