"""The whole path with real processes: registers -> store nodes -> Center, with a kill -9 midway."""

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(600)
def test_two_days_of_two_stores_reconcile_after_killing_a_store_node_and_the_center(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo.cli", "--days", "2", "--data", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"demo failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    match = re.fullmatch(
        r"RECONCILED receipts=(\d+) missing=0 duplicated=0 total_minor=(\d+)", last
    )
    assert match, last
    assert int(match.group(1)) > 10
    assert int(match.group(2)) > 0
    assert "chaos: SIGKILL store-367" in done.stderr
    # The Center re-priced every sale with the same engine and found no difference.
    assert f"RECOMPUTED sales={match.group(1)} differing=0" in done.stdout
    # Every sale was verified at ingest, and an honest register's sales raise no case.
    assert "REVIEWED cases=0" in done.stdout
    # The Center fed its analytics store with every sale; the figures come from it.
    assert f"ANALYTICS sales={match.group(1)} receipts=" in done.stdout, done.stdout[-2000:]
    # The "bonuses burning" chain went out through the demo's own SMTP server and SMSC: e-mails
    # to those who consented, SMS to those the e-mail could not reach (checked against the sinks).
    messages = re.search(
        r"^MESSAGES chain=burning email_delivered=(\d+) sms_delivered=(\d+) "
        r"skipped_no_consent=(\d+) customers=(\d+) ",
        done.stdout,
        re.M,
    )
    assert messages, done.stdout[-2000:]
    assert int(messages.group(1)) > 0 and int(messages.group(2)) > 0
    assert int(messages.group(4)) > 0
    # The table shows every register at every tier, and every register printed real slips.
    for register in ("367-1", "367-2", "406-1", "406-2"):
        assert register in done.stdout
        printed = (tmp_path / "demo" / f"pos-{register}" / "printer.bin").read_bytes()
        assert printed.startswith(b"\x1b@\x1bt"), "reset, then the code page"
        assert "ИТОГО".encode("cp866") in printed
        assert (tmp_path / "demo" / f"pos-{register}" / "display.bin").stat().st_size > 0
