"""The store node -> Center hop over TLS: a Center with [tls], a node trusting its CA."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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
from tests.center.center_factories import master_tables
from tests.center.center_factories import write_config as write_center_config
from tests.store_node.store_fakes import free_port, make_sale, running_node, self_signed_cert


@pytest.fixture
async def tls_center(tmp_path: Path) -> AsyncIterator[tuple[str, SqliteStorage, Path]]:
    folder = tmp_path / "center"
    folder.mkdir()
    cert, key = self_signed_cert(folder)
    extra = f'\n[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    config = load_center_config(write_center_config(folder, signatures=True, extra=extra))
    context = config.tls.server_context()
    assert context is not None
    storage = SqliteStorage(folder / "center.db")
    storage.migrate()
    storage.feed.upsert_master(master_tables())
    runner = web.AppRunner(create_center(config, storage))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{port}", storage, cert
    finally:
        await runner.cleanup()
        storage.close()


def _store_toml(tmp_path: Path, url: str, ca_file: Path | None) -> Path:
    path = tmp_path / "store.toml"
    path.write_text(
        '[store]\nstore_id = "367"\nlisten_host = "127.0.0.1"\nlisten_port = 0\n'
        'data_dir = "store"\nadvertise = false\n\n'
        f'[center]\nurl = "{url}"\ntimeout_s = 5.0\n'
        + (f'ca_file = "{ca_file}"\n' if ca_file else "")
        + "\n[security]\nrequire_signatures = false\n"
    )
    return path


async def test_enrol_and_forward_over_tls_with_the_centers_ca(
    tmp_path: Path, tls_center: tuple[str, SqliteStorage, Path]
) -> None:
    url, storage, cert = tls_center
    token = issue_token(storage, "367", datetime.now(UTC), 1)
    path = _store_toml(tmp_path, url, cert)
    assert await asyncio.to_thread(main, ["enrol", "--config", str(path), "--token", token]) == 0
    config = load_config(path)
    async with running_node(config, run_jobs=False) as node:
        await node.send(make_sale(1))
        assert await node.app[FORWARDER_KEY].forward_once() == 1
    assert storage.counts().sales == 1


async def test_a_node_that_does_not_trust_the_certificate_is_refused(
    tmp_path: Path,
    tls_center: tuple[str, SqliteStorage, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, storage, _ = tls_center
    token = issue_token(storage, "367", datetime.now(UTC), 1)
    path = _store_toml(tmp_path, url, None)
    assert await asyncio.to_thread(main, ["enrol", "--config", str(path), "--token", token]) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    plain = _store_toml(tmp_path, url.replace("https://", "http://"), None)
    assert await asyncio.to_thread(main, ["enrol", "--config", str(plain), "--token", token]) == 1


def test_a_missing_ca_file_is_a_config_problem(tmp_path: Path) -> None:
    from store_node.errors import ConfigError

    path = _store_toml(tmp_path, "https://center.example", tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"center.ca_file: .*nope.pem is not a readable file"):
        load_config(path)
