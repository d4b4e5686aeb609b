"""Channel adapters behind one interface (base.Channel): e-mail over SMTP, SMS over SMPP,
Viber with SMS failover over the Vonage Messages API, Web Push (VAPID), FCM HTTP v1."""

from __future__ import annotations

from center.communications.channels.base import Channel
from center.communications.channels.email import EmailChannel, build_email
from center.communications.channels.fcm import FcmChannel, service_account_jwt
from center.communications.channels.sms import SmsChannel, parse_receipt, split_sms
from center.communications.channels.vonage import VonageChannel, receipt_of, verify_webhook
from center.communications.channels.webpush import WebPushChannel

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
