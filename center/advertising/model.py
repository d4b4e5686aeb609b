"""Advertising blocks: what a marketer fills in, checked field by field; media links and rich text
made safe; and the selection "the blocks this customer sees at this placement now" (pure).

A block is shown at one placement (a named slot of the portal or the app: `home_top`), on the
channels it names, between its start and end (typed in the block's time zone, kept in UTC), to
its audience: everyone, card holders, people without a card, or the members of one segment.
Several blocks fit a slot: the highest priority first, then the newest start.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nh3

from center.errors import InvalidRequest, MalformedRequest

__all__ = [
    "AUDIENCES",
    "CHANNELS",
    "IMAGE_EXTENSIONS",
    "MAX_PRIORITY",
    "RICH_TAGS",
    "STATUSES",
    "VIDEO_EXTENSIONS",
    "Block",
    "BlockInput",
    "Viewer",
    "check_link",
    "check_media",
    "input_from_doc",
    "local_input",
    "parse_block",
    "placements_of",
    "sanitize_rich_text",
    "select_blocks",
]

AUDIENCES = ("everyone", "card_holders", "no_card", "segment")
"""Who sees a block: everyone, customers with an active card, without one, a segment's members."""
CHANNELS = ("portal", "app")
STATUSES = ("active", "paused")
MAX_PRIORITY = 1000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")
"""Raster images only: an SVG may carry script."""
VIDEO_EXTENSIONS = (".mp4", ".webm")
RICH_TAGS = frozenset(
    {"p", "br", "b", "strong", "i", "em", "u", "s", "a", "ul", "ol", "li", "h3", "h4", "small"}
)
"""The tags a block's rich text keeps; anything else is dropped (a <script> with its content)."""
_RICH_ATTRIBUTES = {"a": {"href", "title"}}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_PLACEMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_MAX_NAME = 200
_MAX_DESCRIPTION = 2000
_MAX_RICH = 20_000
_MAX_URL = 2000
_FIELDS = (
    "block_id",
    "name",
    "description",
    "audience",
    "segment_id",
    "placement",
    "priority",
    "channels",
    "timezone",
    "starts_at",
    "ends_at",
    "media_url",
    "link_url",
    "rich_text",
    "status",
)


@dataclass(frozen=True, slots=True)
class BlockInput:
    """A checked block as a marketer wrote it (times aware UTC, rich text sanitised)."""

    block_id: str
    name: str
    description: str
    audience: str
    segment_id: str
    placement: str
    priority: int
    channels: tuple[str, ...]
    timezone: str
    starts_at: datetime
    ends_at: datetime
    media_url: str
    media_kind: str
    link_url: str
    rich_text: str
    status: str

    def to_doc(self) -> dict[str, Any]:
        """The block as JSON (times as ISO 8601 UTC)."""
        return {
            "block_id": self.block_id,
            "name": self.name,
            "description": self.description,
            "audience": self.audience,
            "segment_id": self.segment_id,
            "placement": self.placement,
            "priority": self.priority,
            "channels": list(self.channels),
            "timezone": self.timezone,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "media_url": self.media_url,
            "media_kind": self.media_kind,
            "link_url": self.link_url,
            "rich_text": self.rich_text,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Block:
    """A stored block: its input and revision."""

    data: BlockInput
    revision: int
    updated_at: datetime

    def to_doc(self) -> dict[str, Any]:
        """The block as the API answers it."""
        return {
            **self.data.to_doc(),
            "revision": self.revision,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Viewer:
    """What selection knows of the person looking: their segments and whether they hold a card
    (anonymous: no segment, no card)."""

    segments: frozenset[str] = frozenset()
    has_card: bool = False


def sanitize_rich_text(text: str) -> str:
    """Allow-listed tags only (RICH_TAGS), links to https/mailto only, no attribute but a link's
    href and title: what a browser may render inside the portal's page."""
    return nh3.clean(
        text,
        tags=set(RICH_TAGS),
        clean_content_tags={"script", "style"},
        attributes={k: set(v) for k, v in _RICH_ATTRIBUTES.items()},
        url_schemes={"https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    ).strip()


def _https(url: str, field: str, hosts: Collection[str]) -> tuple[str, str]:
    """(the URL, its path lowercased) of an https link to a public host name; InvalidRequest."""
    if len(url) > _MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidRequest(field, f"expected an https link without spaces, got {url[:80]!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(field, f"not a link ({exc}): {url[:80]!r}") from None
    if parts.scheme != "https":
        raise InvalidRequest(field, f"expected an https:// link, got {url[:80]!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(field, "expected a link without a user name or password")
    host = (parts.hostname or "").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise InvalidRequest(field, f"expected a host name, not an address: {host!r}")
    if not _HOST.match(host) or host.endswith((".local", ".localhost", ".internal")):
        raise InvalidRequest(field, f"expected a public host name, got {host[:80]!r}")
    if hosts and host not in hosts:
        raise InvalidRequest(
            field, f"host {host!r} is not allowed (allowed: {', '.join(sorted(hosts))})"
        )
    if port not in (None, 443):
        raise InvalidRequest(field, f"expected the https port, got {port}")
    return url, parts.path.lower()


def check_media(url: str, field: str = "media_url", hosts: Collection[str] = ()) -> str:
    """The kind ("image" or "video") of a media link: https, a public host (one of `hosts`
    when given), a file of an allowed extension; InvalidRequest naming the field."""
    _, path = _https(url, field, hosts)
    if path.endswith(IMAGE_EXTENSIONS):
        return "image"
    if path.endswith(VIDEO_EXTENSIONS):
        return "video"
    allowed = ", ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    raise InvalidRequest(field, f"expected an image or video file ({allowed}), got {url[:80]!r}")


def check_link(url: str, field: str = "link_url") -> str:
    """A click-through link: https to a public host; InvalidRequest naming the field."""
    return _https(url, field, ())[0]


def _text(doc: Mapping[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = doc.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidRequest(f"body.{name}", f"expected a text of at most {limit} characters")
    if "\x00" in value:
        raise InvalidRequest(f"body.{name}", "expected a text without NUL")
    if required and not value.strip():
        raise InvalidRequest(f"body.{name}", "expected a non-empty text")
    return value.strip()


def _moment(value: Any, name: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 moment; one without an offset is local time in the block's zone."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise InvalidRequest(f"body.{name}", f"expected a date and time, got {value!r:.80}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"body.{name}", f"expected a date and time YYYY-MM-DDTHH:MM, got {value!r:.80}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def local_input(moment: datetime, zone_name: str) -> str:
    """A UTC moment as the form shows it: local time in the block's zone, to the minute."""
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def _zone(value: Any) -> ZoneInfo:
    if not isinstance(value, str) or not value or len(value) > 64 or ".." in value:
        raise InvalidRequest(
            "body.timezone", f"expected a time zone such as Europe/Moscow, got {value!r:.80}"
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            "body.timezone", f"unknown time zone {value!r:.80} (e.g. Europe/Moscow)"
        ) from None


def parse_block(
    body: Any, *, block_id: str | None = None, media_hosts: Collection[str] = ()
) -> BlockInput:
    """A block from its JSON form; InvalidRequest naming the first wrong field (`body.<name>`).

    `block_id` is the id of the block being replaced (the body's must be absent or equal);
    `media_hosts`, when not empty, are the only hosts media may come from.
    """
    if not isinstance(body, dict):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    extra = sorted(set(body) - set(_FIELDS))
    if extra:
        raise InvalidRequest(f"body.{extra[0]:.64}", f"unknown field; expected {list(_FIELDS)}")
    given_id = body.get("block_id", block_id)
    if not isinstance(given_id, str) or not _ID.match(given_id):
        raise InvalidRequest(
            "body.block_id", f"expected letters, digits or ._:-, got {given_id!r:.80}"
        )
    if block_id is not None and given_id != block_id:
        raise InvalidRequest("body.block_id", f"expected {block_id!r} (the block's id)")
    name = _text(body, "name", _MAX_NAME, required=True)
    description = _text(body, "description", _MAX_DESCRIPTION, required=False)
    audience = body.get("audience", "everyone")
    if audience not in AUDIENCES:
        raise InvalidRequest(
            "body.audience", f"expected one of {', '.join(AUDIENCES)}, got {audience!r:.80}"
        )
    segment_id = _text(body, "segment_id", 64, required=audience == "segment")
    if audience == "segment" and not _ID.match(segment_id):
        raise InvalidRequest("body.segment_id", f"expected a segment id, got {segment_id!r:.80}")
    if audience != "segment":
        segment_id = ""
    placement = body.get("placement")
    if not isinstance(placement, str) or not _PLACEMENT.match(placement):
        raise InvalidRequest(
            "body.placement",
            f"expected a block name of small letters, digits, _ or - (home_top), got "
            f"{placement!r:.80}",
        )
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidRequest("body.priority", f"expected an integer 0..{MAX_PRIORITY}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise InvalidRequest("body.priority", f"expected an integer 0..{MAX_PRIORITY}")
    channels = body.get("channels", list(CHANNELS))
    if (
        not isinstance(channels, list)
        or not channels
        or any(c not in CHANNELS for c in channels)
        or len(set(channels)) != len(channels)
    ):
        raise InvalidRequest("body.channels", f"expected some of {list(CHANNELS)}, each once")
    timezone = body.get("timezone", "Europe/Moscow")
    zone = _zone(timezone)
    starts_at = _moment(body.get("starts_at"), "starts_at", zone)
    ends_at = _moment(body.get("ends_at"), "ends_at", zone)
    if ends_at <= starts_at:
        raise InvalidRequest("body.ends_at", "expected a moment after the start")
    media_url = _text(body, "media_url", _MAX_URL, required=False)
    media_kind = check_media(media_url, "body.media_url", media_hosts) if media_url else ""
    link_url = _text(body, "link_url", _MAX_URL, required=False)
    if link_url:
        check_link(link_url, "body.link_url")
    rich = body.get("rich_text", "")
    if rich is None:
        rich = ""
    if not isinstance(rich, str) or len(rich) > _MAX_RICH:
        raise InvalidRequest("body.rich_text", f"expected a text of at most {_MAX_RICH} characters")
    rich_text = sanitize_rich_text(rich.replace("\x00", ""))
    if not (media_url or rich_text):
        raise InvalidRequest("body.media_url", "expected an image or video link, or rich text")
    status = body.get("status", "active")
    if status not in STATUSES:
        raise InvalidRequest("body.status", f"expected one of {', '.join(STATUSES)}")
    return BlockInput(
        block_id=given_id,
        name=name,
        description=description,
        audience=audience,
        segment_id=segment_id,
        placement=placement,
        priority=priority,
        channels=tuple(c for c in CHANNELS if c in channels),
        timezone=str(timezone),
        starts_at=starts_at,
        ends_at=ends_at,
        media_url=media_url,
        media_kind=media_kind,
        link_url=link_url,
        rich_text=rich_text,
        status=str(status),
    )


def input_from_doc(doc: Mapping[str, Any]) -> BlockInput:
    """A stored block's document (BlockInput.to_doc) back as the value; never re-checked, so a
    later change of the allowed media hosts leaves stored blocks readable."""
    return BlockInput(
        block_id=str(doc["block_id"]),
        name=str(doc["name"]),
        description=str(doc.get("description", "")),
        audience=str(doc["audience"]),
        segment_id=str(doc.get("segment_id", "")),
        placement=str(doc["placement"]),
        priority=int(doc["priority"]),
        channels=tuple(str(c) for c in doc["channels"]),
        timezone=str(doc["timezone"]),
        starts_at=datetime.fromisoformat(doc["starts_at"]).astimezone(UTC),
        ends_at=datetime.fromisoformat(doc["ends_at"]).astimezone(UTC),
        media_url=str(doc.get("media_url", "")),
        media_kind=str(doc.get("media_kind", "")),
        link_url=str(doc.get("link_url", "")),
        rich_text=str(doc.get("rich_text", "")),
        status=str(doc["status"]),
    )


def _sees(block: BlockInput, viewer: Viewer) -> bool:
    if block.audience == "everyone":
        return True
    if block.audience == "card_holders":
        return viewer.has_card
    if block.audience == "no_card":
        return not viewer.has_card
    return block.segment_id in viewer.segments


def select_blocks(
    blocks: Iterable[Block],
    *,
    placement: str,
    channel: str,
    viewer: Viewer,
    now: datetime,
    limit: int = 10,
) -> list[Block]:
    """The active blocks of this placement and channel live at `now` whose audience takes the
    viewer, the highest priority first, then the latest start, then the id."""
    fitting = [
        b
        for b in blocks
        if b.data.status == "active"
        and b.data.placement == placement
        and channel in b.data.channels
        and b.data.starts_at <= now < b.data.ends_at
        and _sees(b.data, viewer)
    ]
    fitting.sort(key=lambda b: (-b.data.priority, -b.data.starts_at.timestamp(), b.data.block_id))
    return fitting[:limit]


def placements_of(blocks: Sequence[Block]) -> list[str]:
    """The placement names in use, sorted."""
    return sorted({b.data.placement for b in blocks})
