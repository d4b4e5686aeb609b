"""`loyalty-store`: check-config, config errors, and serve as a real process that gets killed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from store_node.cli import main
from sync_protocol import CONTENT_TYPE, Ack, decode
from tests.store_node.store_fakes import FakeCenter, batch_body, free_port, make_sale

GOOD = """
[store]
store_id = "367"
listen_host = "127.0.0.1"
listen_port = {port}
data_dir = "data"
advertise = false

[center]
url = "{center}"
interval_s = 0.05
backoff_initial_s = 0.05
backoff_max_s = 0.2
master_poll_s = 0.2

[security]
require_signatures = false
"""


def _config(tmp_path: Path, *, port: int = 8710, center: str = "http://u:pw@127.0.0.1:9") -> Path:
    path = tmp_path / "store.toml"
    path.write_text(GOOD.format(port=port, center=center))
    return path


def test_check_config_prints_effective_config_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "--config", str(_config(tmp_path))]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["store"]["node_id"] == "store-367"
    assert shown["store"]["data_dir"] == str((tmp_path / "data").resolve())
    assert shown["center"]["url"] == "http://u:***@127.0.0.1:9"


def test_check_config_reads_loyalty_config_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOYALTY_CONFIG", str(_config(tmp_path)))
    assert main(["check-config"]) == 0
    assert json.loads(capsys.readouterr().out)["store"]["store_id"] == "367"


def test_bad_config_exits_2_listing_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "store.toml"
    path.write_text('[store]\nstore_id = 5\n[center]\nurl = "nope"\nbatch_size = "x"\n')
    for command in ("check-config", "serve"):
        assert main([command, "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "store.store_id: expected a string, got 5" in err
        assert "store.data_dir: missing (required)" in err
        assert "center.url: expected http(s)://host[:port], got 'nope'" in err
        assert "center.batch_size: expected an integer, got 'x'" in err


def test_missing_config_argument_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOYALTY_CONFIG", raising=False)
    assert main(["serve"]) == 2
    assert "--config is required" in capsys.readouterr().err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "check-config" in out


# -- serve as a real process ---------------------------------------------------------------


@asynccontextmanager
async def _serve(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "store_node", "serve", "--config", str(config),
            stdout=sink, stderr=sink,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _wait_healthy(
    session: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, log: Path
) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"store node exited {process.returncode}: {log.read_text()}")
        try:
            async with session.get(url + "/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"store node not healthy in 20 s: {log.read_text()}")


async def test_killed_process_loses_no_acknowledged_sale(tmp_path: Path) -> None:
    center = FakeCenter()  # down while the first process runs
    port = free_port()
    config = _config(tmp_path, port=port, center=center.url)
    log = tmp_path / "store.log"
    url = f"http://127.0.0.1:{port}"
    sales = [make_sale(n) for n in range(1, 21)]
    async with aiohttp.ClientSession() as session:
        async with _serve(config, log) as first:
            await _wait_healthy(session, url, first, log)
            async with session.post(
                url + "/v1/sales",
                data=batch_body(*sales),
                headers={"Content-Type": CONTENT_TYPE},
            ) as response:
                assert response.status == 200
                ack = decode(await response.read(), expect=Ack).message
            assert isinstance(ack, Ack) and len(ack.accepted) == len(sales)
            first.send_signal(signal.SIGKILL)  # a power cut: no clean shutdown
            await first.wait()
        await center.start()
        try:
            async with _serve(config, log) as second:
                await _wait_healthy(session, url, second, log)
                await center.wait_until(lambda: len(center.received) == len(sales), timeout=60)
                second.send_signal(signal.SIGTERM)
                async with asyncio.timeout(15):
                    assert await second.wait() == 0  # graceful stop on SIGTERM
        finally:
            await center.stop()
    assert center.received == {sale.sale_id: 1 for sale in sales}
    assert "forwarded 20 sales to the Center" in log.read_text()
