"""SMS over SMPP 3.4 (smpplib): long texts split with UDH, Cyrillic in UCS-2, delivery receipts."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

from center.communications.model import OutMessage, Receipt, SendOutcome

__all__ = ["SmsChannel", "parse_receipt", "split_sms"]

_RECEIPT = re.compile(rb"id:(\S+).*?stat:(\w+)", re.S)
_STATES = {
    b"DELIVRD": "delivered",
    b"EXPIRED": "expired",
    b"UNDELIV": "failed",
    b"REJECTD": "failed",
    b"DELETED": "failed",
    b"UNKNOWN": "failed",
}
_PERMANENT = {0x0B, 0x0A, 0x45, 0x62}
"""Bad destination, bad source, submit failed, invalid msg length: retrying will not help."""


def split_sms(text: str) -> tuple[list[bytes], int, int]:
    """(parts, data_coding, esm_class): GSM 7-bit when the text fits it, else UCS-2; several
    parts carry a concatenation UDH (67 UCS-2 characters or 153 GSM characters each)."""
    parts, coding, esm = smpplib.gsm.make_parts(text)
    return list(parts), int(coding), int(esm)


def parse_receipt(short_message: bytes) -> tuple[str, str] | None:
    """(provider message id, state) of an SMPP delivery receipt text, or None."""
    found = _RECEIPT.search(short_message)
    if found is None:
        return None
    return found.group(1).decode("ascii", "replace"), _STATES.get(found.group(2), "failed")


class SmsChannel:
    """One transceiver session with an SMSC; smpplib is blocking, so it runs in one thread."""

    name = "sms"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        system_id: str,
        password: str,
        source_addr: str,
        rate_per_s: float = 20.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.system_id, self.password, self.source_addr = system_id, password, source_addr
        self.rate_per_s = rate_per_s
        self.timeout_s = timeout_s
        self._client: Any = None
        self._lock = threading.Lock()
        self._receipts: list[Receipt] = []

    # -- blocking parts, run in a thread ---------------------------------------------------------

    def _open(self) -> None:
        if self._client is not None:
            return
        client = smpplib.client.Client(
            self.host, self.port, timeout=self.timeout_s, allow_unknown_opt_params=True
        )
        client.connect()
        try:
            client.bind_transceiver(system_id=self.system_id, password=self.password)
        except BaseException:
            client.disconnect()
            raise
        self._client = client

    def _handle(self, pdu: Any) -> None:
        """Answer what the SMSC sends on its own: receipts and keep-alives."""
        client = self._client
        if pdu.command == "deliver_sm":
            parsed = parse_receipt(bytes(pdu.short_message or b""))
            ref = getattr(pdu, "receipted_message_id", None)
            if parsed is not None:
                self._receipts.append(Receipt(ref.decode() if ref else parsed[0], parsed[1]))
            resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
        elif pdu.command == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)

    def _submit(self, message: OutMessage) -> SendOutcome:
        with self._lock:
            self._open()
            client = self._client
            parts, coding, esm = split_sms(message.body)
            refs: list[str] = []
            for part in parts:
                pdu = client.send_message(
                    source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                    source_addr_npi=smpplib.consts.SMPP_NPI_UNK,
                    source_addr=self.source_addr,
                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                    dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                    destination_addr=message.address,
                    short_message=part,
                    data_coding=coding,
                    esm_class=esm,
                    registered_delivery=True,
                )
                while True:
                    resp = client.read_pdu()
                    if resp.command == "submit_sm_resp" and resp.sequence == pdu.sequence:
                        break
                    self._handle(resp)
                if resp.status != 0:
                    return SendOutcome(
                        False,
                        provider_refs=tuple(refs),
                        permanent=resp.status in _PERMANENT,
                        reason=f"submit_sm status 0x{resp.status:02x}",
                    )
                refs.append(resp.message_id.decode("ascii", "replace"))
            return SendOutcome(True, provider_refs=tuple(refs))

    def _drain(self, wait_s: float) -> list[Receipt]:
        with self._lock:
            if self._client is not None:
                # smpplib has no poll: a short socket timeout drains what already arrived.
                sock = self._client._socket
                sock.settimeout(wait_s)
                try:
                    while True:
                        self._handle(self._client.read_pdu())
                        sock.settimeout(0.05)
                except (TimeoutError, BlockingIOError):
                    pass
                finally:
                    sock.settimeout(self.timeout_s)
            found, self._receipts = self._receipts, []
            return found

    def _close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            if client is None:
                return
            with contextlib.suppress(
                smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError
            ):
                client.unbind()
            client.disconnect()

    # -- the Channel interface ---------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    async def send(self, message: OutMessage) -> SendOutcome:
        try:
            return await asyncio.to_thread(self._submit, message)
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
            await asyncio.to_thread(self._close)
            return SendOutcome(False, reason=f"smpp: {exc}")

    async def receipts(self, wait_s: float = 0.0) -> list[Receipt]:
        try:
            return await asyncio.to_thread(self._drain, max(wait_s, 0.01))
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError):
            await asyncio.to_thread(self._close)
            return []

    async def close(self) -> None:
        await asyncio.to_thread(self._close)
