"""Channel adapters behind one interface (base.Channel): e-mail over SMTP, SMS over SMPP,
Viber with SMS failover over the Vonage Messages API, Web Push (VAPID), FCM HTTP v1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from center.communications.channels.base import Channel
from center.communications.channels.email import EmailChannel, build_email
from center.communications.channels.sms import SmsChannel, parse_receipt, split_sms
from center.communications.channels.vonage import VonageChannel, receipt_of, verify_webhook

__all__ = [
    "Channel",
    "EmailChannel",
    "FcmChannel",
    "SmsChannel",
    "VonageChannel",
    "WebPushChannel",
    "build_email",
    "parse_receipt",
    "receipt_of",
    "service_account_jwt",
    "split_sms",
    "verify_webhook",
]

if TYPE_CHECKING:
    from center.communications.channels.fcm import FcmChannel, service_account_jwt
    from center.communications.channels.webpush import WebPushChannel

_LAZY = {
    "FcmChannel": "center.communications.channels.fcm",
    "service_account_jwt": "center.communications.channels.fcm",
    "WebPushChannel": "center.communications.channels.webpush",
}


def __getattr__(name: str) -> Any:
    # The push adapters bring cryptography and pywebpush: loaded when first asked for, so that
    # every Center process (which imports the outbox) does not pay for them.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
