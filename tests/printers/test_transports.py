"""Real ports: a pty pair at 9600 baud, a TCP listener on 127.0.0.1, files, status replies."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from printers import (
    DeviceError,
    DeviceUriError,
    EscposPrinter,
    PrinterStatus,
    Slip,
    Text,
    open_display,
    open_printer,
    parse_status,
    parse_uri,
    read_status,
    render_slip,
)
from tests.printers.escpos_decoder import decode
from tests.printers.slips import receipt_slip


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """(master fd, slave path): the slave is the 'serial port' the code opens."""
    master, slave = os.openpty()
    tty.setraw(master)
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        os.close(slave)
        os.close(master)


def _read_until(fd: int, size: int, deadline_s: float = 10.0) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + deadline_s
    while len(data) < size and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            data += os.read(fd, 65536)
    return bytes(data)


class Listener:
    """A network 'printer' on 127.0.0.1: records what it receives, answers status requests."""

    def __init__(self, status_reply: bytes | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.status_reply = status_reply
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while chunk := conn.recv(65536):
                self.received += chunk
                if self.status_reply is not None and chunk.startswith(b"\x10\x04"):
                    n = chunk[2]
                    conn.sendall(self.status_reply[{1: 0, 2: 1, 4: 2}[n] : {1: 1, 2: 2, 4: 3}[n]])
        self.done.set()

    def close(self) -> None:
        self.sock.close()


def test_serial_printer_through_a_pty_at_9600(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    expected = render_slip(receipt_slip(), profile="TM-T20II", columns=48)

    device = open_printer(f"serial://{path}?baudrate=9600", profile="TM-T20II")
    try:
        assert device.device.baudrate == 9600
        assert (device.device.bytesize, device.device.parity, device.device.stopbits) == (8, "N", 1)
        EscposPrinter(device, columns=48).print_slip(receipt_slip())
    finally:
        device.close()

    received = _read_until(master, len(expected))
    assert received == expected
    assert "Программа лояльности" in "\n".join(decode(received).text_lines())


@pytest.mark.parametrize("protocol", ["epson", "cd5220"])
def test_serial_display_through_a_pty(pty_pair: tuple[int, str], protocol: str) -> None:
    master, path = pty_pair
    display = open_display(f"serial://{path}?baudrate=9600", protocol, code_table=17)
    try:
        display.init()
        display.show("Скидка 10%", "Начислено 35")
    finally:
        display.close()

    received = _read_until(master, 10 + 2 * 20)
    assert received.startswith(b"\x1b@\x1bt\x11")
    assert "Скидка 10%".ljust(20).encode("cp866") in received
    assert "Начислено 35".ljust(20).encode("cp866") in received


def test_network_printer_on_a_tcp_listener() -> None:
    listener = Listener()
    try:
        device = open_printer(f"tcp://127.0.0.1:{listener.port}", profile="TM-T88V")
        EscposPrinter(device, columns=42).print_slip(receipt_slip())
        device.close()
        assert listener.done.wait(10)
    finally:
        listener.close()

    assert bytes(listener.received) == render_slip(receipt_slip(), profile="TM-T88V", columns=42)


def test_real_time_status_from_a_network_printer() -> None:
    # DLE EOT 1: online; DLE EOT 2: cover open (bit 2); DLE EOT 4: paper near end (bits 2-3).
    listener = Listener(status_reply=bytes([0x12, 0x16, 0x1E]))
    try:
        device = open_printer(f"tcp://127.0.0.1:{listener.port}?timeout=5")
        status = read_status(device)
        device.close()
    finally:
        listener.close()

    assert status == PrinterStatus(online=True, cover_open=True, paper="near_end")


def test_status_bits_per_the_spec() -> None:
    assert parse_status(0x1A, 0x12, 0x12) == PrinterStatus(False, False, "ok")
    assert parse_status(0x12, 0x12, 0x72) == PrinterStatus(True, False, "out")
    assert parse_status(0xFF, None, None) == PrinterStatus(None, None, None)


def test_a_file_device_appends_and_cannot_report_status(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    for _ in range(2):
        device = open_printer(f"file://{path}")
        EscposPrinter(device, columns=32).print_slip(Slip((Text("Чек"),)))
        assert read_status(device) == PrinterStatus()

    data = path.read_bytes()
    assert data == 2 * render_slip(Slip((Text("Чек"),)), columns=32)


def test_unreachable_printer_is_a_device_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(DeviceError, match=f"127.0.0.1:{port}|127.0.0.1"):
        open_printer(f"tcp://127.0.0.1:{port}?timeout=1")
    with pytest.raises(DeviceError, match="/dev/does-not-exist"):
        open_printer("serial:///dev/does-not-exist")


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("lpt://x", "scheme"),
        ("tcp://:9100", "host"),
        ("tcp://h:99999", "port"),
        ("serial://dev/ttyS0", "absolute path"),
        ("serial:///dev/ttyS0?baudrate=1234", "baudrate=1234"),
        ("serial:///dev/ttyS0?parity=X", "parity"),
        ("serial:///dev/ttyS0?speed=9600", "speed"),
        ("tcp://h?timeout=0", "timeout"),
    ],
)
def test_bad_uris_name_the_problem(uri: str, problem: str) -> None:
    with pytest.raises(DeviceUriError, match=problem):
        parse_uri(uri)


def test_uri_defaults() -> None:
    assert parse_uri("tcp://10.0.0.5").port == 9100
    serial = parse_uri("serial:///dev/ttyS0")
    assert (serial.baudrate, serial.bytesize, serial.parity, serial.stopbits) == (9600, 8, "N", 1)
    assert parse_uri("dummy://").scheme == "dummy"
