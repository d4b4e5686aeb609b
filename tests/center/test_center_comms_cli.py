"""`loyalty-center send-messages`: one pass over a real SMTP sink and SMSC, receipts included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from center.cli import main
from center.communications import NewMessage
from center.storage.sqlite import SqliteStorage
from demo.message_sinks import SmppSink, SmtpSink
from tests.center.center_factories import write_config


def test_send_messages_sends_both_channels_and_collects_receipts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    main(["check-config", "--config", str(config)])
    capsys.readouterr()
    storage = SqliteStorage(tmp_path / "data" / "center.db")
    storage.migrate()
    past = datetime.now(UTC) - timedelta(seconds=5)
    storage.communications.enqueue(
        [
            NewMessage("otp:1", "c1", "email", "transactional", "anna@example.org", "Код", "1234"),
            NewMessage("otp:2", "c1", "sms", "transactional", "+79161234567", "", "Код 1234"),
        ],
        past,
    )
    storage.close()
    smtp, smsc = SmtpSink().start(), SmppSink().start()
    monkeypatch.setenv("SMPP_PASSWORD", "pw")
    try:
        code = main(
            ["send-messages", "--config", str(config), "--smtp", f"127.0.0.1:{smtp.port}",
             "--sender", "otp@shop.example", "--public-url", "http://c",
             "--smpp", f"127.0.0.1:{smsc.port}", "--smpp-system-id", "shop", "--sms-source", "Shop"]
        )  # fmt: skip
    finally:
        smtp.stop()
        smsc.stop()
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["by_channel"] == {"email": 1, "sms": 1} and report["receipts"] == 1
    assert len(smtp.mailbox) == 1 and smsc.binds == [("shop", "pw")]
    assert smsc.texts() == [("79161234567", "Код 1234")]
    storage = SqliteStorage(tmp_path / "data" / "center.db")
    states = dict(storage.db.execute("SELECT channel, state FROM comm_messages").fetchall())
    storage.close()
    assert states == {"email": "sent", "sms": "delivered"}
    assert main(["send-messages", "--config", str(config)]) == 2


def test_send_messages_names_an_incomplete_http_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["send-messages", "--config", str(config), "--vonage", "http://v"]) == 2
    assert "--vonage needs --vonage-key" in capsys.readouterr().err
    missing = str(tmp_path / "nowhere.json")
    assert main(["send-messages", "--config", str(config), "--fcm-service-account", missing]) == 2
    assert "nowhere.json" in capsys.readouterr().err
    (tmp_path / "sa.json").write_text(json.dumps({"project_id": "p"}))
    args = ["send-messages", "--config", str(config), "--fcm-service-account"]
    assert main([*args, str(tmp_path / "sa.json")]) == 2
    assert "service account: missing client_email" in capsys.readouterr().err
