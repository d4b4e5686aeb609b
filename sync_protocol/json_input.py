"""The one checked JSON reader of every tier: untrusted bytes in, plain values within bounds out.

`json.loads` alone lets through what later fails deep inside a handler (a 500): nesting that
overflows the recursion limit, lone surrogates that no database can store, NUL characters
PostgreSQL refuses, integers beyond the signed 64-bit range of every integer column, and
NaN / Infinity / 1e999. This reader refuses each of them with a MalformedMessage whose path
names the JSON field (`body.lines[3].qty_milli`), before a handler sees the body.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import MalformedMessage, PayloadTooLarge

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_JSON_DEPTH",
    "check_json_value",
    "load_json",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted; the deepest real body (a promotion) is ~8."""


def _reject_constant(name: str) -> Any:
    raise MalformedMessage("", f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedMessage("", f"number {text[:40]} is out of range")
    return value


def _fmt(path: tuple[str | int, ...], root: str) -> str:
    out = root
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part[:64]}"
    return out


def _deep_path(text: str, max_depth: int) -> tuple[str | int, ...]:
    """The path of the first container nested deeper than `max_depth` in JSON text too deep
    for json to parse (only called then: a plain scan of the characters)."""
    frames: list[list[Any]] = []  # [kind, the key or index being read in it]
    last = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            last = text[i + 1 : end]
            i = end
        elif ch == ":" and frames and frames[-1][0] == "{":
            frames[-1][1] = last
        elif ch == "," and frames and frames[-1][0] == "[":
            frames[-1][1] += 1
        elif ch in "[{":
            if len(frames) >= max_depth:
                break
            frames.append([ch, 0 if ch == "[" else ""])
        elif ch in "]}" and frames:
            frames.pop()
        i += 1
    return tuple(frame[1] for frame in frames)


def _bad_text(text: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode)"
    return None


def check_json_value(value: Any, *, root: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Return `value` (parsed JSON) if every container, string and number in it is within
    bounds; else raise MalformedMessage naming the path of the first one that is not."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is str:
            why = _bad_text(item)
            if why is not None:
                raise MalformedMessage(_fmt(path, root), why, show_value=False)
        elif kind is int:
            if not INT64_MIN <= item <= INT64_MAX:
                raise MalformedMessage(
                    _fmt(path, root),
                    f"integer out of the signed 64-bit range ({str(item)[:24]}...)",
                    show_value=False,
                )
        elif kind is dict or kind is list:
            if len(path) >= max_depth:
                raise MalformedMessage(_fmt(path, root), f"nesting deeper than {max_depth}")
            if kind is dict:
                for key, sub in item.items():
                    why = _bad_text(key)
                    if why is not None:
                        raise MalformedMessage(_fmt(path, root), f"a key {why}", show_value=False)
                    stack.append((sub, (*path, key)))
            else:
                stack.extend((sub, (*path, i)) for i, sub in enumerate(item))
    return value


def load_json(
    data: bytes | str,
    *,
    max_bytes: int | None = None,
    max_depth: int = MAX_JSON_DEPTH,
    root: str = "body",
) -> Any:
    """Parse untrusted JSON and check it (check_json_value); MalformedMessage names the field,
    PayloadTooLarge when it is longer than `max_bytes`."""
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(len(data), max_bytes)
    try:
        # UTF-8 only (RFC 8259): json.loads would guess UTF-16 from a stray \xff\xfe.
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except MalformedMessage as exc:
        raise MalformedMessage(root, exc.problem) from None
    except RecursionError:
        where = _deep_path(text, max_depth)
        raise MalformedMessage(_fmt(where, root), f"nesting deeper than {max_depth}") from None
    except UnicodeDecodeError as exc:
        raise MalformedMessage(root, f"not UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise MalformedMessage(
            root, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except ValueError as exc:
        # int() of more than sys.get_int_max_str_digits() digits, say.
        raise MalformedMessage(root, f"not valid JSON ({str(exc)[:120]})") from None
    return check_json_value(value, root=root, max_depth=max_depth)
