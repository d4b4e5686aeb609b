"""Pure rules of communications: addresses, consent, caps, quiet hours, ABX, backoff."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from center.communications.model import TILL

__all__ = [
    "Decision",
    "abx_group",
    "decide",
    "message_id_header",
    "normal_address",
    "normal_email",
    "normal_phone",
    "quiet_until",
    "retry_after",
]

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
QUIET_FROM = time(21, 0)
QUIET_TO = time(9, 0)
"""Marketing waits from 21:00 to 09:00 in the customer's (store's) time zone."""


def normal_email(value: object) -> str | None:
    """The address if it is a plausible e-mail address, else None."""
    if not isinstance(value, str) or len(value) > 254:
        return None
    value = value.strip()
    return value if _EMAIL.match(value) else None


def normal_phone(value: object) -> str | None:
    """The phone in international digits (a Russian 8XXXXXXXXXX becomes 7XXXXXXXXXX), or None."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9 +()\-]{5,30}", value.strip()):
        return None
    digits = re.sub(r"\D", "", value)
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    elif len(digits) == 10 and digits.startswith("9"):
        digits = "7" + digits
    return digits if 11 <= len(digits) <= 15 else None


def normal_push_subscription(value: object) -> str | None:
    """A Web Push subscription (the browser's PushSubscription.toJSON(): an http(s) endpoint and
    the p256dh and auth keys, base64url) as canonical JSON, else None."""
    try:
        doc = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if not isinstance(doc, Mapping):
        return None
    endpoint, keys = doc.get("endpoint"), doc.get("keys")
    if not isinstance(endpoint, str) or not re.match(r"^https?://[^\s]{1,2000}$", endpoint):
        return None
    if not isinstance(keys, Mapping):
        return None
    b64url = re.compile(r"^[A-Za-z0-9_-]{16,200}=*$")
    if not all(isinstance(keys.get(k), str) and b64url.match(keys[k]) for k in ("p256dh", "auth")):
        return None
    found = {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}
    return json.dumps(found, sort_keys=True)


def normal_address(channel: str, value: object) -> str | None:
    """The address of `channel` in the form its adapter sends to, or None when it is not one:
    e-mail; a phone for SMS and Viber; a subscription for Web Push; a registration token for
    FCM."""
    if channel == "email":
        return normal_email(value)
    if channel in ("sms", "viber"):
        return normal_phone(value)
    if channel == "webpush":
        return normal_push_subscription(value)
    if channel == "fcm":
        ok = isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_:\-.]{20,4096}", value)
        return value if ok and isinstance(value, str) else None
    if channel == TILL:
        # The till reaches the customer through their cards: the address is the customer id.
        ok = isinstance(value, str) and re.fullmatch(r"[^\x00-\x1f]{1,64}", value)
        return value if ok and isinstance(value, str) else None
    return None


def quiet_until(now: datetime, zone: str) -> datetime | None:
    """When quiet hours in `zone` end, if `now` falls inside them; None otherwise."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    if QUIET_TO <= local.time() < QUIET_FROM:
        return None
    day = local.date() if local.time() < QUIET_TO else local.date() + timedelta(days=1)
    return datetime.combine(day, QUIET_TO, tzinfo=tz).astimezone(now.tzinfo)


@dataclass(frozen=True, slots=True)
class Decision:
    """send now, skip for good (reason), or defer until `until` (reason)."""

    action: str
    reason: str = ""
    until: datetime | None = None


def decide(
    *,
    kind: str,
    channel: str,
    address: str,
    consents: Mapping[tuple[str, str], bool],
    sent_today: int,
    daily_cap: int,
    now: datetime,
    zone: str,
    expires_at: datetime | None,
) -> Decision:
    """Whether a claimed message may leave now: expiry, address, consent, quiet hours, cap."""
    if expires_at is not None and now >= expires_at:
        return Decision("expire", "expired before it could be sent")
    valid = normal_address(channel, address)
    if valid is None:
        return Decision("skip", f"invalid {channel} address {address[:80]!r}")
    if kind == "transactional":
        return Decision("send")
    if channel == TILL:
        # Shown in the shop at the next purchase, not sent over a telecom network (38-FZ
        # art. 18 does not apply): the customer's personal data consent on any channel is
        # enough; no quiet hours, no daily cap (one visit shows it once).
        if any(granted for (_, purpose), granted in consents.items() if purpose == "personal_data"):
            return Decision("send")
        return Decision("skip", "no personal_data consent on any channel")
    for purpose in ("advertising", "personal_data"):
        if not consents.get((channel, purpose), False):
            return Decision("skip", f"no {purpose} consent on {channel}")
    until = quiet_until(now, zone)
    if until is not None:
        return Decision("defer", "quiet hours", until)
    if sent_today >= daily_cap:
        local = now.astimezone(ZoneInfo(zone))
        morning = datetime.combine(local.date() + timedelta(days=1), QUIET_TO, tzinfo=local.tzinfo)
        return Decision("defer", f"daily cap of {daily_cap} on {channel}", morning)
    return Decision("send")


def retry_after(attempt: int, *, base: timedelta = timedelta(seconds=30)) -> timedelta:
    """Backoff before retry number `attempt` (1, 2, ...): doubling from `base`, capped at 1 h."""
    return min(base * (2 ** max(attempt - 1, 0)), timedelta(hours=1))


def abx_group(
    customer_id: str, campaign_id: str, stratum: str, split: Sequence[tuple[str, int]]
) -> str:
    """The customer's group in a campaign: a hash of campaign, stratum and customer into
    10 000 buckets, cut by `split` ((group, per-10 000 share) pairs summing to 10 000).

    Any tier computes the same answer from the three strings; salting with the stratum makes each
    stratum's split independent of the others'.
    """
    if sum(share for _, share in split) != 10_000:
        raise ValueError(f"split: shares must sum to 10000, got {split!r}")
    digest = hashlib.sha256(f"{campaign_id}\x1f{stratum}\x1f{customer_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000
    for group, share in split:
        if bucket < share:
            return group
        bucket -= share
    raise AssertionError("unreachable: shares sum to 10000")


def message_id_header(idempotency_key: str, domain: str) -> str:
    """The RFC 5322 Message-ID of a message: derived from its idempotency key, so a re-send
    after a crash carries the same one and a receiver can drop the copy."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@{domain}>"
