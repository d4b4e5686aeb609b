"""Local servers the demo and the communications tests talk to: an SMTP sink (aiosmtpd) and a
small SMPP 3.4 SMSC that answers bind / submit_sm and sends deliver_sm delivery receipts."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import struct
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["SmppSink", "SmtpSink", "Submitted", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        with self.sink.lock:
            self.sink.raw.append(raw)
            message_id = str(parsed["Message-ID"])
            # The mailbox keeps one copy per Message-ID, as a receiving server that drops
            # duplicates does (the dedup the outbox relies on after a crash).
            self.sink.mailbox.setdefault(message_id, parsed)
            stall = len(self.sink.raw) == self.sink.stall_at
        if stall:  # hold the final reply: the sender has handed the message over, not heard back
            self.sink.stalled.set()
            while not self.sink.release.is_set():
                await asyncio.sleep(0.02)
        return "250 2.0.0 queued"


@dataclass
class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps what it received: every transmission (`raw`) and
    one message per Message-ID (`mailbox`)."""

    port: int = 0
    raw: list[bytes] = field(default_factory=list)
    mailbox: dict[str, EmailMessage] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stall_at: int | None = None
    """Hold the reply to this transmission (1-based) until `release` is set."""
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _controller: Controller | None = None

    def start(self) -> SmtpSink:
        self.port = self.port or free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass(frozen=True)
class Submitted:
    """One submit_sm as the SMSC received it."""

    message_id: str
    destination: str
    data_coding: int
    esm_class: int
    short_message: bytes


def _cstr(body: bytes, at: int) -> tuple[str, int]:
    end = body.index(b"\0", at)
    return body[at:end].decode("latin-1"), end + 1


def _pdu(command_id: int, seq: int, body: bytes = b"", status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


class SmppSink:
    """An SMSC on 127.0.0.1: each submit_sm is answered with a message id, then a deliver_sm
    receipt follows (stat:DELIVRD, or UNDELIV for a number in `undeliverable`)."""

    def __init__(
        self, *, undeliverable: frozenset[str] = frozenset(), receipts: bool = True
    ) -> None:
        self.undeliverable = undeliverable
        self.receipts = receipts
        self.submitted: list[Submitted] = []
        self.binds: list[tuple[str, str]] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._next_id = 0
        self._ready = threading.Event()

    def start(self) -> SmppSink:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("SMPP sink did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def serve() -> None:
            self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            async with self._server:
                await self._server.serve_forever()

        try:
            loop.run_until_complete(serve())
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    def stop(self) -> None:
        loop, server = self._loop, self._server

        def shut() -> None:
            assert server is not None
            server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()

        if loop is not None and server is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(shut)
        if self._thread is not None:
            self._thread.join(10)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out_seq = 1_000_000
        try:
            while True:
                header = await reader.readexactly(16)
                length, command_id, _, seq = struct.unpack(">IIII", header)
                body = await reader.readexactly(length - 16)
                if command_id in (0x00000001, 0x00000002, 0x00000009):  # bind_*
                    system_id, at = _cstr(body, 0)
                    password, _ = _cstr(body, at)
                    self.binds.append((system_id, password))
                    writer.write(_pdu(command_id | 0x80000000, seq, b"SMSC\0"))
                elif command_id == 0x00000004:  # submit_sm
                    submitted = self._submit(body)
                    writer.write(_pdu(0x80000004, seq, submitted.message_id.encode() + b"\0"))
                    if self.receipts:
                        out_seq += 1
                        writer.write(_pdu(0x00000005, out_seq, self._receipt(submitted)))
                elif command_id == 0x00000015:  # enquire_link
                    writer.write(_pdu(0x80000015, seq))
                elif command_id == 0x00000006:  # unbind
                    writer.write(_pdu(0x80000006, seq))
                    await writer.drain()
                    break
                # deliver_sm_resp and anything else: nothing to answer
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _submit(self, body: bytes) -> Submitted:
        _, at = _cstr(body, 0)  # service_type
        at += 2
        _, at = _cstr(body, at)  # source_addr
        at += 2
        destination, at = _cstr(body, at)
        esm_class = body[at]
        at += 3
        _, at = _cstr(body, at)  # schedule_delivery_time
        _, at = _cstr(body, at)  # validity_period
        at += 2  # registered_delivery, replace_if_present_flag
        data_coding = body[at]
        at += 2  # data_coding, sm_default_msg_id
        sm_length = body[at]
        short_message = body[at + 1 : at + 1 + sm_length]
        self._next_id += 1
        found = Submitted(
            f"M{self._next_id:08d}", destination, data_coding, esm_class, short_message
        )
        self.submitted.append(found)
        return found

    def _receipt(self, submitted: Submitted) -> bytes:
        stat = "UNDELIV" if submitted.destination in self.undeliverable else "DELIVRD"
        text = (
            f"id:{submitted.message_id} sub:001 dlvr:001 submit date:2612071200 "
            f"done date:2612071201 stat:{stat} err:000 text:"
        ).encode()
        return (
            b"\0"
            + b"\x01\x01"
            + submitted.destination.encode()
            + b"\0"
            + b"\x05\x00"
            + b"SMSC\0"
            + bytes([0x04, 0, 0])
            + b"\0\0"
            + bytes([0, 0, 0, 0])
            + bytes([len(text)])
            + text
        )

    def texts(self) -> list[tuple[str, str]]:
        """(destination, text) of every complete message, concatenated parts reassembled."""
        found: list[tuple[str, str]] = []
        pending: dict[tuple[str, int], dict[int, bytes]] = {}
        for s in self.submitted:
            payload = s.short_message
            if s.esm_class & 0x40:
                udh_len = payload[0]
                udh = payload[1 : 1 + udh_len]
                assert udh[0] == 0x00 and udh[1] == 3, (
                    f"expected an 8-bit concatenation IE: {udh!r}"
                )
                ref, total, number = udh[2], udh[3], udh[4]
                parts = pending.setdefault((s.destination, ref), {})
                parts[number] = payload[1 + udh_len :]
                if len(parts) == total:
                    joined = b"".join(parts[i] for i in range(1, total + 1))
                    found.append((s.destination, _decode(joined, s.data_coding)))
                    del pending[(s.destination, ref)]
            else:
                found.append((s.destination, _decode(payload, s.data_coding)))
        return found


def _decode(payload: bytes, data_coding: int) -> str:
    return payload.decode("utf-16-be") if data_coding == 8 else payload.decode("ascii")
