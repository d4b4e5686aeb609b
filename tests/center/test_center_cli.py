"""`loyalty-center serve` as a real process: SIGKILL loses no acknowledged sale."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sync_protocol import CONTENT_TYPE, Ack, Sale, SaleBatch, decode, encode
from tests.center.center_factories import make_sale, write_config

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "center", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)  # cross-process: poll with a deadline
        raise AssertionError("center did not start:\n" + self.log.read_text())

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    if request.param == "postgresql":
        dsn = request.getfixturevalue("pg_dsn")
        config = write_config(tmp_path, backend="postgresql", dsn=dsn, port=free_port())
    else:
        config = write_config(tmp_path, port=free_port())
    port = int(config.read_text().split("listen_port = ")[1].split("\n")[0])
    srv = Server(config, port, tmp_path / "center.log")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait(timeout=30)


def post_batch(url: str, sales: list[Sale]) -> Ack:
    response = requests.post(
        url + "/v1/ingest",
        data=encode(SaleBatch(sales=tuple(sales)), sender="store-367"),
        headers={"Content-Type": CONTENT_TYPE},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    ack = decode(response.content, expect=Ack).message
    assert isinstance(ack, Ack)
    return ack


def test_sigkill_loses_no_acknowledged_sale(server: Server) -> None:
    server.start()
    acked: list[str] = []
    for start in range(1, 31, 10):
        sales = [make_sale(seq) for seq in range(start, start + 10)]
        acked.extend(post_batch(server.url, sales).accepted)
    assert len(acked) == 30
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL

    server.start()
    health = requests.get(server.url + "/health", timeout=5).json()
    assert health["sales"] == 30
    rec = requests.get(server.url + "/v1/reconciliation", params={"store_id": "367"}, timeout=5)
    [row] = rec.json()["registers"]
    assert (row["receipts"], row["max_seq"], row["gaps"]) == (30, 30, [])
    assert server.stop(signal.SIGTERM) == 0  # graceful stop exits cleanly


def test_serve_refuses_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "center.toml"
    path.write_text("[center]\nlisten_port = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "center", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    assert "center.data_dir: required" in result.stderr
