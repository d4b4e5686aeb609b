"""A sender killed with SIGKILL mid-batch, then restarted: every message reaches the SMTP
server's mailbox exactly once; the one message in flight is re-sent with the same Message-ID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from center.communications import NewMessage, send_due
from center.communications.channels import EmailChannel
from center.storage.sqlite import SqliteStorage
from demo.message_sinks import SmtpSink

COUNT = 30
SENDER = """
import asyncio, sys
from datetime import UTC, datetime
from center.communications import send_due
from center.communications.channels import EmailChannel
from center.storage.sqlite import SqliteStorage

storage = SqliteStorage(sys.argv[1])
channel = EmailChannel("127.0.0.1", int(sys.argv[2]), sender="otp@shop.example",
                       public_url="http://c", rate_per_s=50)
asyncio.run(send_due(storage.communications, {"email": channel}, clock=lambda: datetime.now(UTC)))
"""


def states(storage: SqliteStorage) -> Counter[str]:
    return Counter(r[0] for r in storage.db.execute("SELECT state FROM comm_messages").fetchall())


async def test_sigkill_mid_batch_sends_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "center.db"
    storage = SqliteStorage(path)
    storage.migrate()
    now = datetime.now(UTC) - timedelta(seconds=1)
    storage.communications.enqueue(
        [
            NewMessage(f"otp:{i:03d}", f"c{i}", "email", "transactional", f"u{i}@example.org",
                       "Код входа", f"Ваш код: {1000 + i}")
            for i in range(COUNT)
        ],
        now,
    )  # fmt: skip
    sink = SmtpSink(stall_at=12).start()
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = subprocess.Popen([sys.executable, "-c", SENDER, str(path), str(sink.port)], env=env)
        try:
            assert await asyncio.to_thread(sink.stalled.wait, 60), "the sender never got to #12"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        at_kill = states(storage)
        assert at_kill == {"sent": 11, "sending": 1, "queued": COUNT - 12}, at_kill
        (in_flight,) = storage.db.execute(
            "SELECT idempotency_key FROM comm_messages WHERE state = 'sending'"
        ).fetchone()
        sink.release.set()
        # The restarted sender takes over the dead one's claim (its lease is over) and the rest.
        channel = EmailChannel(
            "127.0.0.1", sink.port, sender="otp@shop.example", public_url="http://c"
        )
        report = await send_due(
            storage.communications, {"email": channel}, clock=lambda: datetime.now(UTC),
            lease=timedelta(0),
        )  # fmt: skip
        await channel.close()
        assert report.sent == COUNT - 11
        assert states(storage) == {"sent": COUNT}
        keys = Counter(
            str(message_from_bytes(raw, policy=default)["X-Idempotency-Key"]) for raw in sink.raw
        )
        assert set(keys) == {f"otp:{i:03d}" for i in range(COUNT)}
        twice = {k for k, n in keys.items() if n > 1}
        assert twice == {in_flight}, "only the message in flight at the kill went again"
        assert len(sink.mailbox) == COUNT, "its Message-ID is the same, so the mailbox holds one"
    finally:
        sink.stop()
        storage.close()
