"""A fault-injecting TCP proxy for one hop (register -> store node, store node -> Center).

Services are pointed at the proxy's port instead of their peer's. The proxy forwards bytes
both ways and, while a fault is set, applies it to every chunk that crosses it, so requests on
kept-alive connections are hit as well as new ones:

- ``reset``: abort both sides with a TCP RST (new connections are reset on accept);
- ``blackhole``: swallow the client's bytes and never answer (the client times out);
- ``drop_response``: forward the request, let the peer commit and answer, then drop that
  answer and abort the client's connection (the sender must retry without duplicating);
- ``delay``: hold every chunk for `delay_s` before forwarding it.

The proxy runs its own asyncio loop on a daemon thread; `set_fault` is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

from demo.errors import DemoError

__all__ = ["FAULTS", "Fault", "FaultProxy"]

FAULTS = ("reset", "blackhole", "drop_response", "delay")
_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault active until `until` (time.monotonic), hitting each chunk with `probability`."""

    kind: str
    until: float
    probability: float = 1.0
    delay_s: float = 0.0


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Linger 0: close() sends RST instead of FIN, as a crashed middlebox would.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`target_port`, faults applied."""

    def __init__(self, name: str, target_port: int, *, seed: int = 0) -> None:
        self.name = name
        self.target_port = target_port
        self.port = 0
        self.applied: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._fault: Fault | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control (any thread) --------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port and serve on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=f"proxy-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise DemoError(f"proxy {self.name} did not start: {self._error}")

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def set_fault(
        self, kind: str, duration_s: float, *, probability: float = 1.0, delay_s: float = 0.5
    ) -> None:
        """Apply `kind` for `duration_s` seconds from now."""
        if kind not in FAULTS:
            raise DemoError(f"fault kind {kind!r} is not one of {', '.join(FAULTS)}")
        with self._lock:
            self._fault = Fault(kind, time.monotonic() + duration_s, probability, delay_s)

    def clear(self) -> None:
        """Forward everything faithfully from now on."""
        with self._lock:
            self._fault = None

    def _current(self) -> Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            if time.monotonic() >= fault.until:
                self._fault = None
                return None
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                return None
            return fault

    # -- the loop thread -------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0)
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            # Cancelling a connection cancels its pumps in turn: repeat until none is left.
            while tasks := [t for t in asyncio.all_tasks(loop) if not t.done()]:
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._connection(reader, writer)
        except asyncio.CancelledError:
            # Only on stop(): end quietly, asyncio's stream callback would log a cancelled task.
            writer.transport.abort()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault = self._current()
        if fault is not None and fault.kind == "reset":
            self.applied["reset"] += 1
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            # The peer is down: the client sees what it would see without the proxy.
            _rst(writer)
            return
        done = asyncio.Event()
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, writer, upstream=True, done=done)),
            asyncio.ensure_future(
                self._pump(up_reader, writer, up_writer, upstream=False, done=done)
            ),
        ]
        waiter = asyncio.ensure_future(done.wait())
        both = asyncio.ensure_future(asyncio.wait(pumps))
        try:
            await asyncio.wait([waiter, both], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*pumps, waiter, both):
                task.cancel()
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        *,
        upstream: bool,
        done: asyncio.Event,
    ) -> None:
        """Copy one direction; `other` is the writer of the side the data came from."""
        try:
            while True:
                data = await source.read(_CHUNK)
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    # Half-close: keep the other direction going until it ends too.
                    return
                fault = self._current()
                if fault is not None:
                    if fault.kind == "reset":
                        self.applied["reset"] += 1
                        _rst(sink)
                        _rst(other)
                        done.set()
                        return
                    if fault.kind == "blackhole" and upstream:
                        self.applied["blackhole"] += 1
                        continue
                    if fault.kind == "drop_response" and not upstream:
                        # The peer has committed and answered; the client never hears it.
                        self.applied["drop_response"] += 1
                        _rst(sink)
                        _rst(other)
                        done.set()
                        return
                    if fault.kind == "delay":
                        self.applied["delay"] += 1
                        await asyncio.sleep(fault.delay_s)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            done.set()
