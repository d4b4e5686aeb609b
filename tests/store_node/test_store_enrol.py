"""Enrolment at a real Center (in-process, real HTTP) and signed forwarding with the credentials."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from center.access.nodes import issue_token
from center.config import load_config as load_center_config
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app as create_center
from store_node.app import FORWARDER_KEY
from store_node.cli import main
from store_node.config import load_config
from store_node.credentials import CREDENTIALS_FILE, load_credentials
from tests.center.center_factories import master_tables
from tests.center.center_factories import write_config as write_center_config
from tests.store_node.store_fakes import free_port, make_sale, running_node


@dataclass
class Center:
    url: str
    storage: SqliteStorage


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[Center]:
    (tmp_path / "center").mkdir()
    config = load_center_config(write_center_config(tmp_path / "center", signatures=True))
    storage = SqliteStorage(tmp_path / "center" / "center.db")
    storage.migrate()
    storage.feed.upsert_master(master_tables())
    runner = web.AppRunner(create_center(config, storage))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Center(f"http://127.0.0.1:{port}", storage)
    finally:
        await runner.cleanup()
        storage.close()


def store_toml(tmp_path: Path, center_url: str, data_dir: str = "store") -> Path:
    path = tmp_path / f"{data_dir}.toml"
    path.write_text(
        "[store]\n"
        'store_id = "367"\n'
        'listen_host = "127.0.0.1"\n'
        "listen_port = 0\n"
        f'data_dir = "{data_dir}"\n'
        "advertise = false\n\n"
        "[center]\n"
        f'url = "{center_url}"\n'
        "timeout_s = 5.0\n\n"
        "[security]\n"
        "require_signatures = false\n"
    )
    return path


async def run_cli(*argv: str) -> int:
    # urllib blocks: run the command off the loop that serves the Center.
    return await asyncio.to_thread(main, list(argv))


async def test_enrol_then_every_exchange_is_signed_and_accepted(
    tmp_path: Path, center: Center, capsys: pytest.CaptureFixture[str]
) -> None:
    token = issue_token(center.storage, "367", datetime.now(UTC), 1)
    path = store_toml(tmp_path, center.url)
    assert await run_cli("enrol", "--config", str(path), "--token", token) == 0
    assert "enrolled as node" in capsys.readouterr().out

    config = load_config(path)
    file = config.store.data_dir / CREDENTIALS_FILE
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    saved = json.loads(file.read_text())
    assert saved["store_id"] == "367" and saved["node_id"].startswith("node-")
    assert center.storage.nodes.node_credential(saved["node_id"]) == ("367", saved["secret"])

    assert await run_cli("enrol", "--config", str(path), "--token", token) == 1
    assert "token_used" in capsys.readouterr().err

    async with running_node(config, run_jobs=False) as node:
        await node.send(make_sale(1))
        forwarder = node.app[FORWARDER_KEY]
        assert forwarder.credentials == load_credentials(config.store.data_dir)
        assert await forwarder.forward_once() == 1
        assert await forwarder.heartbeat_once()
        assert await forwarder.poll_master_once() == center.storage.feed.master_version()
    assert center.storage.counts().sales == 1
    assert [h["store_id"] for h in center.storage.nodes.heartbeats()] == ["367"]


async def test_an_unenrolled_node_is_refused_and_keeps_its_sales(
    tmp_path: Path, center: Center
) -> None:
    config = load_config(store_toml(tmp_path, center.url, data_dir="bare"))
    async with running_node(config, run_jobs=False) as node:
        await node.send(make_sale(1))
        forwarder = node.app[FORWARDER_KEY]
        assert forwarder.credentials is None
        assert await forwarder.forward_once() == 0
        assert not await forwarder.heartbeat_once()
        health = await node.get_json("/health")
    assert health["pending_to_center"] == 1
    assert "401" in health["last_center_error"]
    assert center.storage.counts().sales == 0


async def test_an_expired_or_unknown_token_fails_with_the_reason(
    tmp_path: Path, center: Center, capsys: pytest.CaptureFixture[str]
) -> None:
    path = store_toml(tmp_path, center.url)
    assert await run_cli("enrol", "--config", str(path), "--token", "lt1_nope") == 1
    assert "invalid_token" in capsys.readouterr().err
    other = issue_token(center.storage, "406", datetime.now(UTC), 1)
    assert await run_cli("enrol", "--config", str(path), "--token", other) == 1
    assert "forbidden" in capsys.readouterr().err
    assert not (load_config(path).store.data_dir / CREDENTIALS_FILE).exists()
