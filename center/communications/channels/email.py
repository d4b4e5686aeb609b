"""E-mail over SMTP (aiosmtplib): a text part, an HTML part, RFC 8058 one-click unsubscribe."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
from email.header import Header
from email.utils import formataddr

import aiosmtplib

from center.communications.model import OutMessage, Receipt, SendOutcome
from center.communications.rules import message_id_header

__all__ = ["EmailChannel", "build_email"]


def _header(value: str) -> str:
    """A header value: as is in ASCII, else RFC 2047 encoded words in UTF-8."""
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _part(content_type: str, text: str) -> bytes:
    body = base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")
    return (
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + body


def build_email(message: OutMessage, *, sender: str, sender_name: str, public_url: str) -> bytes:
    """The RFC 5322 bytes of one message: UTF-8 text and HTML parts (base64), encoded headers
    (RFC 2047), a Message-ID derived from the idempotency key, List-Unsubscribe with One-Click
    (RFC 8058). Written out directly: the email package's generator costs milliseconds a message,
    the sender's whole budget at 500 messages a second."""
    domain = sender.rpartition("@")[2] or "localhost"
    base = f"{public_url.rstrip('/')}/v1/communications"
    headers = [
        ("From", formataddr((sender_name, sender), charset="utf-8")),
        ("To", message.address),
        ("Subject", _header(message.subject)),
        ("Message-ID", message_id_header(message.idempotency_key, domain)),
        ("X-Idempotency-Key", message.idempotency_key),
    ]
    pixel = ""
    if message.kind == "marketing":
        headers.append(("List-Unsubscribe", f"<{base}/unsubscribe/{message.unsubscribe_token}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        # Opens are counted where images load; the plain-text part has no pixel.
        url = html.escape(f"{base}/opened/{message.unsubscribe_token}")
        pixel = f'<img src="{url}" width="1" height="1" alt="">'
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in message.body.split("\n\n"))
    boundary = "=_" + hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:32]
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
    text = message.body.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n"
    return b"".join(
        (
            head,
            f"\r\n--{boundary}\r\n".encode(),
            _part("text/plain", text),
            f"\r\n--{boundary}\r\n".encode(),
            _part("text/html", f"<html><body>{paragraphs}{pixel}</body></html>\r\n"),
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )


class EmailChannel:
    """Sends through one SMTP server, over `connections` connections kept open between
    messages (one message at a time on each)."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        public_url: str,
        sender_name: str = "",
        username: str | None = None,
        password: str | None = None,
        start_tls: bool | None = None,
        rate_per_s: float = 50.0,
        timeout_s: float = 30.0,
        connections: int = 1,
    ) -> None:
        self.host, self.port = host, port
        self.sender, self.sender_name, self.public_url = sender, sender_name, public_url
        self.username, self.password, self.start_tls = username, password, start_tls
        self.rate_per_s = rate_per_s
        self.timeout_s = timeout_s
        self.concurrency = max(1, connections)
        self._idle: list[aiosmtplib.SMTP] = []
        self._all: list[aiosmtplib.SMTP] = []
        self._free: asyncio.Semaphore | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout_s, start_tls=self.start_tls
        )
        await smtp.connect()
        if self.username:
            await smtp.login(self.username, self.password or "")
        self._all.append(smtp)
        return smtp

    async def open(self) -> None:
        if self._free is None:
            self._free = asyncio.Semaphore(self.concurrency)
        if not self._all:
            self._idle.append(await self._connect())

    async def send(self, message: OutMessage) -> SendOutcome:
        raw = build_email(
            message, sender=self.sender, sender_name=self.sender_name, public_url=self.public_url
        )
        if self._free is None:
            self._free = asyncio.Semaphore(self.concurrency)
        async with self._free:
            smtp = self._idle.pop() if self._idle else None
            try:
                if smtp is None or not smtp.is_connected:
                    if smtp is not None:
                        self._all.remove(smtp)
                    smtp = await self._connect()
                refused, _reply = await smtp.sendmail(self.sender, [message.address], raw)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                return SendOutcome(
                    False, permanent=all(500 <= c < 600 for c in codes), reason=str(exc)
                )
            except aiosmtplib.SMTPResponseException as exc:
                return SendOutcome(
                    False, permanent=500 <= exc.code < 600, reason=f"{exc.code} {exc}"
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                if smtp is not None:
                    smtp.close()
                    if smtp in self._all:
                        self._all.remove(smtp)
                    smtp = None
                return SendOutcome(False, reason=f"smtp: {exc}")
            finally:
                if smtp is not None:
                    self._idle.append(smtp)
        if refused:
            return SendOutcome(False, permanent=True, reason=str(refused))
        return SendOutcome(True)

    async def receipts(self) -> list[Receipt]:
        return []  # SMTP reports acceptance only; bounces arrive later as mail (not read here)

    async def close(self) -> None:
        every, self._all, self._idle = self._all, [], []
        for smtp in every:
            if smtp.is_connected:
                try:
                    await smtp.quit()
                except (aiosmtplib.SMTPException, OSError):
                    smtp.close()
