"""pos.toml loading, check-config, and the real `loyalty-pos serve` process surviving SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from pos_agent.cli import main
from pos_agent.config import load_config
from pos_agent.errors import ConfigError
from tests.pos_agent.pos_fakes import BREAD, free_port

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[register]
register_id = "367-1"
store_id = "367"
listen_host = "127.0.0.1"
listen_port = {port}
data_dir = "data"

[store_node]
url = "{url}"
upload_interval_s = 0.2
batch_size = 50
timeout_s = 1.0
master_poll_s = 1.0
backoff_max_s = 0.5
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pos.toml"
    path.write_text(text)
    return path


def test_a_good_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD.format(port=8720, url="http://10.0.0.5:8710/")))
    assert config.register.register_id == "367-1"
    assert config.register.data_dir == (tmp_path / "data").resolve()
    assert config.register.journal_path.name == "journal.db"
    assert config.store_node.url == "http://10.0.0.5:8710"
    assert config.store_node.batch_size == 50


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[register]
store_id = 367
listen_host = "0.0.0.0"
listen_port = 70000
data_dir = "x"
colour = "red"

[store_node]
url = "ftp://store"
batch_size = 0
timeout_s = -1

[scanner]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = "\n".join(caught.value.problems)
    for expected in (
        "register.register_id: missing",
        "register.store_id: expected a string, got 367",
        "register.listen_host: '0.0.0.0' is not a loopback address",
        "register.listen_port: 70000 is outside 0..65535",
        "register.colour: unknown key",
        "store_node.url: 'ftp://store' must be empty",
        "store_node.batch_size: 0 is outside 1..10000",
        "store_node.timeout_s: -1 must be > 0",
        "[scanner]: unknown section",
    ):
        assert expected in problems
    assert len(caught.value.problems) == 9


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_accepted(tmp_path: Path, host: str) -> None:
    text = GOOD.format(port=1, url="").replace('"127.0.0.1"', f'"{host}"')
    assert load_config(_write(tmp_path, text)).register.listen_host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "pos.example"])
def test_other_hosts_are_refused(tmp_path: Path, host: str) -> None:
    text = GOOD.format(port=1, url="").replace('"127.0.0.1"', f'"{host}"')
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_config(_write(tmp_path, text))


def test_not_toml_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[register"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_the_installed_example_config_loads() -> None:
    example = REPO / "installers" / "config" / "pos.toml"
    if not example.exists():
        pytest.skip("installers/config/pos.toml is not written yet")
    config = load_config(example)
    assert config.register.listen_host == "127.0.0.1"
    assert config.store_node.url == ""  # zeroconf discovery


def test_check_config_prints_the_effective_config_with_secrets_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, GOOD.format(port=8720, url="http://pos:s3cret@store:8710"))
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    shown = json.loads(out)
    assert shown["store_node"]["url"] == "http://pos:***@store:8710"
    assert shown["register"]["listen_port"] == 8720


def test_check_config_exits_2_listing_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, '[register]\nlisten_host = "0.0.0.0"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    for key in ("register_id", "store_id", "listen_host", "data_dir"):
        assert f"register.{key}" in err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "check-config" in out


# -- the real process ----------------------------------------------------------------------


def _start(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pos_agent.cli", "serve", "--config", str(config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"agent never became healthy:\n{log.read_text()}")


def _call(method: str, url: str, body: Any = None) -> Any:
    response = requests.request(method, url, json=body, timeout=5)
    assert response.status_code < 300, response.text
    return response.json()


def test_sigkill_loses_no_confirmed_sale_and_no_open_receipt(tmp_path: Path) -> None:
    port = free_port()
    dead_store = f"http://127.0.0.1:{free_port()}"  # the store node is down all along
    path = _write(tmp_path, GOOD.format(port=port, url=dead_store))
    url, log = f"http://127.0.0.1:{port}", tmp_path / "agent.log"

    process = _start(path, log)
    try:
        _wait_healthy(url, process, log)
        sale_ids = []
        for _ in range(3):
            rid = _call("POST", f"{url}/v1/receipts", {})["receipt_id"]
            _call("POST", f"{url}/v1/receipts/{rid}/lines", BREAD)
            paid = [{"method": "cash", "amount_minor": 250}]
            sale_ids.append(
                _call("POST", f"{url}/v1/receipts/{rid}/confirm", {"payments": paid})["sale_id"]
            )
        open_rid = _call("POST", f"{url}/v1/receipts", {})["receipt_id"]
        _call("POST", f"{url}/v1/receipts/{open_rid}/lines", BREAD)
    finally:
        process.kill()  # SIGKILL, as a power cut would
        process.wait()

    process = _start(path, log)
    try:
        _wait_healthy(url, process, log)
        summary = _call("GET", f"{url}/v1/sales/summary")
        receipt = _call("GET", f"{url}/v1/receipts/{open_rid}")
        paid = [{"method": "cash", "amount_minor": 250}]
        fourth = _call("POST", f"{url}/v1/receipts/{open_rid}/confirm", {"payments": paid})
        health = _call("GET", f"{url}/health")
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert summary == {
        "register_id": "367-1",
        "receipts": 3,
        "lines": 3,
        "total_minor": 750,
        "max_seq": 3,
        "queued": 3,
    }
    assert [line["product_id"] for line in receipt["lines"]] == ["bread"]
    assert fourth["seq"] == 4
    assert health["queue_depth"] == 4
    assert process.returncode == 0, log.read_text()  # SIGTERM is a clean shutdown
