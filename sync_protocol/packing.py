"""msgpack bytes in and out: one Packer per thread, and unpacking within Limits."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

import msgpack

from .checks import Path, fmt_path
from .errors import MalformedMessage, PayloadTooLarge

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_EXT_LEN",
    "Limits",
    "check_depth",
    "pack",
    "packer",
    "unpack",
    "unpack_unchecked",
]

# A msgpack Timestamp (ext type -1) is at most 12 bytes; no other ext type is used.
MAX_EXT_LEN = 12


@dataclass(frozen=True, slots=True)
class Limits:
    """Decoding limits; anything beyond them is rejected before or while unpacking."""

    max_bytes: int = 8 * 1024 * 1024
    max_depth: int = 16
    max_str_len: int = 4096
    max_array_len: int = 200_000
    max_map_len: int = 1024
    max_bin_len: int = 1024 * 1024

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = Limits()

_THREAD = threading.local()


def packer() -> msgpack.Packer:
    """This thread's Packer: building one per call costs more than packing a small sale."""
    try:
        held: msgpack.Packer = _THREAD.packer
    except AttributeError:
        held = _THREAD.packer = msgpack.Packer(use_bin_type=True, datetime=True, autoreset=True)
    return held


def pack(obj: Any) -> bytes:
    try:
        data: bytes = packer().pack(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedMessage("payload", f"cannot encode: {exc}") from exc
    return data


def unpack(data: Any, limits: Limits) -> Any:
    obj = unpack_unchecked(data, limits)
    check_depth(obj, 1, (), limits.max_depth)
    return obj


def unpack_unchecked(data: Any, limits: Limits) -> Any:
    """Unpack within limits, except max_depth: the caller checks it (or knows it holds)."""
    if isinstance(data, memoryview):
        size = data.nbytes
    elif isinstance(data, bytes | bytearray):
        size = len(data)
    else:
        raise MalformedMessage("payload", f"expected bytes, got {type(data).__name__}")
    if size > limits.max_bytes:
        raise PayloadTooLarge(size, limits.max_bytes)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            timestamp=3,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=MAX_EXT_LEN,
        )
    except msgpack.ExtraData as exc:
        raise MalformedMessage(
            "payload", "extra bytes after the message", hint="send exactly one msgpack object"
        ) from exc
    except msgpack.StackError as exc:
        raise MalformedMessage("payload", f"nesting deeper than {limits.max_depth}") from exc
    except Exception as exc:
        # msgpack reports bad input as ValueError, TypeError, OverflowError, UnicodeDecodeError
        # or its own classes; all of them mean the same thing to the caller.
        reason = str(exc) or type(exc).__name__
        raise MalformedMessage("payload", f"not valid msgpack: {reason}") from exc
    return obj


def check_depth(obj: Any, depth: int, path: Path, max_depth: int) -> None:
    """Reject containers nested deeper than max_depth (the top-level map is depth 1)."""
    if type(obj) is dict:
        items: Any = obj.items()
    elif type(obj) is list:
        items = enumerate(obj)
    else:
        return
    if depth > max_depth:
        raise MalformedMessage(fmt_path(path) or "payload", f"nesting deeper than {max_depth}")
    for key, item in items:
        if type(item) is dict or type(item) is list:
            check_depth(item, depth + 1, (*path, key), max_depth)
