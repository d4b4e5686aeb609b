"""Channel adapters behind one interface (base.Channel): e-mail over SMTP, SMS over SMPP."""

from __future__ import annotations

from center.communications.channels.base import Channel
from center.communications.channels.email import EmailChannel, build_email
from center.communications.channels.sms import SmsChannel, parse_receipt, split_sms

__all__ = ["Channel", "EmailChannel", "SmsChannel", "build_email", "parse_receipt", "split_sms"]
