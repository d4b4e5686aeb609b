"""The fault-injecting proxy against a real HTTP server: each fault does what it says."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import requests

from demo.errors import DemoError
from demo.faultproxy import FaultProxy


class _Counter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).hits.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        with contextlib.suppress(ConnectionError):  # the proxy may drop our answer on purpose
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:
            self.close_connection = True


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    _Counter.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = FaultProxy("test", int(server.server_address[1]), seed=7)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        server.shutdown()
        server.server_close()


def test_pass_through_on_a_kept_alive_connection(proxy: FaultProxy) -> None:
    with requests.Session() as session:
        for n in range(3):
            assert session.post(proxy.url, data=f"{n}".encode(), timeout=5).text == "ok"
    assert _Counter.hits == [b"0", b"1", b"2"]


def test_drop_response_delivers_the_request_but_not_the_answer(proxy: FaultProxy) -> None:
    with requests.Session() as session:
        assert session.post(proxy.url, data=b"warm", timeout=5).ok
        proxy.set_fault("drop_response", 30)
        with pytest.raises(requests.ConnectionError):
            session.post(proxy.url, data=b"committed", timeout=5)
        assert _Counter.hits == [b"warm", b"committed"]
        proxy.clear()
        assert session.post(proxy.url, data=b"retry", timeout=5).ok
    assert proxy.applied["drop_response"] == 1


def test_reset_refuses_without_delivering(proxy: FaultProxy) -> None:
    proxy.set_fault("reset", 30)
    with pytest.raises(requests.ConnectionError):
        requests.post(proxy.url, data=b"x", timeout=5)
    assert _Counter.hits == []
    assert proxy.applied["reset"] >= 1


def test_blackhole_times_out_and_delivers_nothing(proxy: FaultProxy) -> None:
    proxy.set_fault("blackhole", 30)
    with pytest.raises(requests.Timeout):
        requests.post(proxy.url, data=b"x", timeout=0.5)
    assert _Counter.hits == []


def test_delay_holds_each_chunk_and_a_fault_expires(proxy: FaultProxy) -> None:
    proxy.set_fault("delay", 0.8, delay_s=0.3)
    started = time.monotonic()
    assert requests.post(proxy.url, data=b"x", timeout=5).ok
    assert time.monotonic() - started >= 0.3
    time.sleep(0.9)  # the fault's own duration must pass: nothing to await here
    started = time.monotonic()
    assert requests.post(proxy.url, data=b"y", timeout=5).ok
    assert time.monotonic() - started < 0.3


def test_an_unknown_fault_is_refused(proxy: FaultProxy) -> None:
    with pytest.raises(DemoError, match="explode"):
        proxy.set_fault("explode", 1)
