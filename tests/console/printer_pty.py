"""An ESC/POS printer on a pseudo-terminal: it swallows what is printed and answers the real-time
status requests (DLE EOT 1, 2, 4) with the paper state the test sets, as a serial printer would."""

from __future__ import annotations

import os
import select
import threading
import tty

__all__ = ["PtyPrinter"]

_PAPER = {"ok": 0x12, "near_end": 0x12 | 0x0C, "out": 0x12 | 0x60}
"""DLE EOT 4 answers: bits 1 and 4 always set; 2-3 near end, 5-6 out (printers/escpos_printer)."""


class PtyPrinter:
    """A printer behind `serial://<path>`; `paper` is what its sensor reports."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.paper = "ok"
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-printer", daemon=True)

    def __enter__(self) -> PtyPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.slave)
        os.close(self.master)

    def _run(self) -> None:
        pending = b""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            self.received += chunk
            pending += chunk
            while (at := pending.find(b"\x10\x04")) >= 0 and len(pending) > at + 2:
                n = pending[at + 2]
                pending = pending[at + 3 :]
                answer = _PAPER[self.paper] if n == 4 else 0x12  # online, cover closed
                os.write(self.master, bytes([answer]))
            pending = pending[-2:]
