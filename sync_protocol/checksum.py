"""The replica checksum: one digest of a master-data replica, the same on every tier."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .errors import MalformedMessage

__all__ = ["canonical_row", "replica_checksum"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise MalformedMessage("row", f"cannot checksum a value of type {type(value).__name__}")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain
)
"""One encoder for every row: building one per call (json.dumps with options) doubles the cost."""


def canonical_row(row: Mapping[str, Any]) -> str:
    """The canonical text of one row: JSON, keys sorted, no spaces, UTF-8 kept (PROTOCOL.md)."""
    try:
        return _ENCODER.encode(row)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage("row", f"cannot checksum row: {exc}") from exc


def replica_checksum(tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> str:
    """sha256 hex over every row of every non-empty table, by table name then canonical row.

    Independent of the order of tables and rows; an empty table counts as an absent one.
    """
    digest = hashlib.sha256()
    for name in sorted(tables):
        rows = sorted(canonical_row(row) for row in tables[name])
        if not rows:
            continue
        digest.update(f"table {name}\n".encode())
        for text in rows:
            digest.update(text.encode())
            digest.update(b"\n")
    return digest.hexdigest()
