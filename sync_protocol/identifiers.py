"""Identifiers of stores, registers, nodes and master-data rows: one definition for every tier."""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidIdentifier

__all__ = ["ID_PATTERN", "MAX_ID_LEN", "check_identifier"]

MAX_ID_LEN = 64
ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
"""1..MAX_ID_LEN ASCII letters, digits, '.', '_', ':' or '-', starting with a letter or digit.

Anchored with \\A and \\Z, so match(), fullmatch() and search() agree and a trailing newline
is refused (a `^...$` pattern lets "id\\n" through).
"""


def check_identifier(value: Any, where: str) -> str:
    """Return `value` if it is an identifier, else raise InvalidIdentifier naming `where`."""
    if type(value) is not str or ID_PATTERN.match(value) is None:
        raise InvalidIdentifier(where, value, MAX_ID_LEN)
    return value
