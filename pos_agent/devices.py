"""The register's printer and customer display: one worker thread each, never on a sale's path.

A print that fails is kept in a durable reprint queue (devices.db in data_dir) and shown in
/health; `loyalty-pos reprint` sends the queue again. Display failures are shown, not queued.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pos_agent.config import Config, PrinterConfig
from pos_agent.errors import ReprintQueueError
from pos_agent.migrations import Migrations
from pos_agent.receipts import OpenLine
from pos_agent.slips import (
    accrued_message,
    coupon_slip,
    coupons_of,
    display_item,
    display_total,
    loyalty_summary,
    receipt_slip,
)
from printers import (
    CustomerDisplay,
    PrintersError,
    Slip,
    open_display,
    open_printer,
    read_status,
    render_slip,
)
from sync_protocol import Sale

__all__ = ["DeviceHub", "PrintJob", "ReprintQueue", "render_for", "send_to_printer"]

log = logging.getLogger(__name__)

_STOP = object()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PrintJob:
    """Bytes for the printer, with what they are (receipt, coupon, test) and for which sale."""

    kind: str
    ref: str
    payload: bytes


def render_for(printer: PrinterConfig, slip: Slip) -> bytes:
    """The slip as this printer's ESC/POS bytes."""
    return render_slip(
        slip,
        profile=printer.profile,
        code_page=printer.code_page,
        code_page_slot=printer.code_page_slot,
        columns=printer.columns,
    )


def send_to_printer(printer: PrinterConfig, payload: bytes) -> dict[str, Any] | None:
    """Open the device, write the bytes, optionally ask its status, close (PrintersError)."""
    device = open_printer(printer.uri, profile=printer.profile)
    try:
        try:
            device._raw(payload)
        except Exception as exc:  # sockets, serial ports and files fail in their own ways
            raise_device(printer.uri, exc)
        return read_status(device).to_dict() if printer.query_status else None
    finally:
        try:
            device.close()
        except Exception:  # closing a broken device must not hide why it broke
            log.debug("closing printer %s failed", printer.uri, exc_info=True)


def raise_device(uri: str, exc: Exception) -> None:
    from printers import DeviceError

    raise DeviceError(f"writing to printer {uri} failed: {exc}") from exc


REPRINT_MIGRATIONS = Migrations("reprints", error=ReprintQueueError)


@REPRINT_MIGRATIONS
def m001_baseline(conn: sqlite3.Connection) -> None:
    """The table of the release before migrations; a devices.db it wrote is adopted as is."""
    REPRINT_MIGRATIONS.create_or_adopt(
        conn,
        "CREATE TABLE IF NOT EXISTS reprints (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "created_at TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, "
        "payload BLOB NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1)",
    )


class ReprintQueue:
    """Failed print jobs, durable in SQLite; one connection per thread that uses it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            REPRINT_MIGRATIONS.apply(self.db)
        except BaseException:
            self.db.close()
            raise

    def add(self, job: PrintJob, error: str, at: datetime) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO reprints (created_at, kind, ref, payload, error) VALUES (?,?,?,?,?)",
                (at.isoformat(), job.kind, job.ref, job.payload, error),
            )

    def pending(self) -> list[tuple[int, PrintJob]]:
        rows = self.db.execute("SELECT id, kind, ref, payload FROM reprints ORDER BY id")
        return [(row[0], PrintJob(row[1], row[2], bytes(row[3]))) for row in rows]

    def done(self, job_id: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM reprints WHERE id = ?", (job_id,))

    def failed_again(self, job_id: int, error: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE reprints SET attempts = attempts + 1, error = ? WHERE id = ?",
                (error, job_id),
            )

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM reprints").fetchone()[0])

    def close(self) -> None:
        self.db.close()


class _Device:
    """One device's worker thread and what it last did."""

    def __init__(
        self, name: str, handle: Callable[[Any], None], clock: Callable[[], datetime] = _now
    ) -> None:
        self.name = name
        self._handle = handle
        self._clock = clock
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {
            "ok": None,
            "last_ok_at": None,
            "last_error": None,
            "last_error_at": None,
        }
        self._failing = False

    def start(
        self,
        setup: Callable[[], None] = lambda: None,
        teardown: Callable[[], None] = lambda: None,
    ) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(setup, teardown), name=f"pos-{self.name}", daemon=True
        )
        self._thread.start()

    def submit(self, item: Any) -> None:
        self._queue.put(item)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far was handled (for tests and shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def ok(self, **extra: Any) -> None:
        with self.lock:
            self.state.update(ok=True, last_ok_at=self._clock().isoformat(), **extra)
        if self._failing:
            log.info("%s works again", self.name)
            self._failing = False

    def failed(self, error: str) -> None:
        with self.lock:
            self.state.update(ok=False, last_error=error, last_error_at=self._clock().isoformat())
        # A repeating failure logs once at WARNING, then at DEBUG until it recovers.
        log.log(logging.DEBUG if self._failing else logging.WARNING, "%s: %s", self.name, error)
        self._failing = True

    def _run(self, setup: Callable[[], None], teardown: Callable[[], None]) -> None:
        # Resources (SQLite, serial port) are opened and closed on this thread only.
        try:
            setup()
        except Exception as exc:
            self.failed(f"{type(exc).__name__}: {exc}")
        try:
            self._loop()
        finally:
            teardown()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._handle(item)
            except Exception as exc:  # a device must never take the agent down
                self.failed(f"{type(exc).__name__}: {exc}")


class DeviceHub:
    """Owns the printer and display workers; every public method returns at once."""

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = _now) -> None:
        self.config = config
        self.clock = clock
        self.printer_cfg = config.printer
        self.display_cfg = config.display
        self._reprints: ReprintQueue | None = None
        self._queued = 0
        self._printer = _Device("printer", self._print, clock) if self.printer_cfg else None
        self._display = _Device("display", self._show, clock) if self.display_cfg else None
        self._screen: CustomerDisplay | None = None
        # Product id -> printable name, set by the app once the replica is open.
        self.names: Callable[[Sequence[str]], Mapping[str, str]] = lambda ids: {}
        # Promotion id -> title from the promotion set the register prices with (app sets it).
        self.titles: Callable[[], Mapping[str, str]] = dict

    @property
    def reprint_path(self) -> Path:
        return self.config.register.data_dir / "devices.db"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._printer is not None:
            self._printer.start(self._open_reprints, self._close_reprints)
        if self._display is not None:
            self._display.start(teardown=self._close_screen)

    def _open_reprints(self) -> None:
        self._reprints = ReprintQueue(self.reprint_path)
        self._queued = self._reprints.count()

    def _close_reprints(self) -> None:
        reprints, self._reprints = self._reprints, None
        if reprints is not None:
            reprints.close()

    def drain(self, timeout: float = 10.0) -> bool:
        """True when both workers handled everything submitted before the call."""
        return all(d.drain(timeout) for d in (self._printer, self._display) if d is not None)

    def stop(self) -> None:
        for device in (self._printer, self._display):
            if device is not None:
                device.stop()

    # -- events from the register (called on the register's thread: only enqueue) ----------

    def lines_added(self, lines: list[OpenLine]) -> None:
        """Show each added item and its price."""
        if self._display is None:
            return
        names = self._names([line.product_id for line in lines])
        for line in lines:
            self._display.submit(
                display_item(
                    names.get(line.product_id, line.product_id),
                    line.qty_milli,
                    line.unit_price_minor,
                    line.amount_minor,
                )
            )

    def _names(self, product_ids: Sequence[str]) -> Mapping[str, str]:
        try:
            return self.names(product_ids)
        except Exception:  # a name lookup must never cost a sale its slip
            log.debug("product names unavailable", exc_info=True)
            return {}

    def _titles(self) -> Mapping[str, str]:
        try:
            return self.titles()
        except Exception:  # without titles a discount is named by its promotion id
            log.debug("promotion titles unavailable", exc_info=True)
            return {}

    def show_message(self, text: str) -> None:
        """Show a personal message for the customer on the display (scrolled when long)."""
        if self._display is not None:
            self._display.submit(("scroll", text))

    def sale_confirmed(
        self,
        sale: Sale,
        balance_before: int,
        calculation: Any,
        *,
        certificates: Mapping[str, int] | None = None,
    ) -> None:
        """Queue the receipt (+ coupons) and show the total and loyalty messages;
        ``certificates``: code -> balance left, printed under each certificate payment."""
        loyalty = loyalty_summary(sale, balance_before)
        if self._printer is not None and self.printer_cfg is not None:
            lang = self.printer_cfg.language
            try:
                names = self._names([line.product_id for line in sale.lines])
                titles = self._titles()
                receipt = receipt_slip(
                    sale,
                    loyalty=loyalty,
                    language=lang,
                    names=names,
                    titles=titles,
                    certificates=certificates,
                )
                slips = [("receipt", receipt)]
                slips += [
                    ("coupon", coupon_slip(c, language=lang, titles=titles))
                    for c in coupons_of(calculation)
                ]
            except Exception as exc:  # a layout bug must not fail a committed sale
                self._printer.failed(f"cannot lay out the receipt of {sale.sale_id}: {exc}")
                slips = []
            for kind, slip in slips:
                # Rendered on the printer's thread: image barcodes cost milliseconds.
                self._printer.submit((kind, sale.sale_id, slip))
        if self._display is not None and self.display_cfg is not None:
            lang = self.display_cfg.language
            self._display.submit(display_total(sale.total_minor, lang))
            messages = [*calculation.messages.display]
            accrued = accrued_message(loyalty, lang)
            if accrued:
                messages.append(accrued)
            for message in messages:
                self._display.submit(("scroll", message))

    def print_job(self, job: PrintJob) -> None:
        if self._printer is not None:
            self._printer.submit(job)

    # -- worker side -----------------------------------------------------------------------

    def _print(self, item: PrintJob | tuple[str, str, Slip]) -> None:
        assert self.printer_cfg is not None and self._printer is not None
        if isinstance(item, tuple):
            kind, ref, slip = item
            job = PrintJob(kind, ref, render_for(self.printer_cfg, slip))
        else:
            job = item
        try:
            status = send_to_printer(self.printer_cfg, job.payload)
        except PrintersError as exc:
            error = str(exc)
            if self._reprints is not None:
                self._reprints.add(job, error, self.clock())
                self._queued += 1
            self._printer.failed(f"{job.kind} of sale {job.ref} queued for reprint: {error}")
            return
        self._printer.ok(status=status) if status else self._printer.ok()

    def _open_screen(self) -> CustomerDisplay:
        cfg = self.display_cfg
        assert cfg is not None
        screen = open_display(
            cfg.uri, cfg.protocol, code_page=cfg.code_page, code_table=cfg.code_table
        )
        try:
            screen.init()
            screen.brightness(cfg.brightness)
        except BaseException:
            screen.close()
            raise
        return screen

    def _close_screen(self) -> None:
        screen, self._screen = self._screen, None
        if screen is not None:
            try:
                screen.close()
            except Exception:
                log.debug("closing the display failed", exc_info=True)

    def _show(self, frame: Any) -> None:
        assert self._display is not None
        try:
            if self._screen is None:
                self._screen = self._open_screen()
            if frame[0] == "scroll":
                message = frame[1]
                if len(message) > 20:
                    self._screen.scroll(message)
                else:
                    self._screen.show_line(2, message)
            else:
                self._screen.show(*frame)
        except (PrintersError, OSError) as exc:
            # Reopen on the next frame: the cable may come back.
            self._close_screen()
            self._display.failed(str(exc))
            return
        self._display.ok()

    # -- health ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The `devices` part of /health."""
        out: dict[str, Any] = {}
        if self._printer is not None and self.printer_cfg is not None:
            with self._printer.lock:
                out["printer"] = {
                    "uri": self.printer_cfg.uri,
                    **self._printer.state,
                    "reprint_queue": self._queued,
                }
        if self._display is not None and self.display_cfg is not None:
            with self._display.lock:
                out["display"] = {
                    "uri": self.display_cfg.uri,
                    "protocol": self.display_cfg.protocol,
                    **self._display.state,
                }
        return out

    def heartbeat(self) -> dict[str, str]:
        """Flat str -> str device states for the store node's Heartbeat.devices."""
        flat: dict[str, str] = {}
        for name, state in self.status().items():
            flat[name] = "unknown" if state["ok"] is None else "ok" if state["ok"] else "error"
            if name == "printer":
                flat["printer_reprints"] = str(state["reprint_queue"])
                paper = (state.get("status") or {}).get("paper")
                if paper:
                    flat["printer_paper"] = paper
        return flat
