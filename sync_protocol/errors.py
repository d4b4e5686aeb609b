"""Errors raised while encoding or decoding sync_protocol messages."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadSignature",
    "InvalidIdentifier",
    "MalformedMessage",
    "MalformedSignatureHeader",
    "MissingSignatureHeader",
    "PayloadTooLarge",
    "ProtocolError",
    "ReplayedNonce",
    "SignatureError",
    "StaleTimestamp",
    "UnexpectedMessageType",
    "UnknownMessageType",
    "UnknownNode",
    "UnsupportedVersion",
]

_MAX_REPR = 80


def _short_repr(value: Any) -> str:
    """Return a repr of value cut to a length that is safe to log and show."""
    text = repr(value)
    if len(text) > _MAX_REPR:
        text = text[: _MAX_REPR - 3] + "..."
    return text


class ProtocolError(Exception):
    """Base class: the bytes or the message do not follow sync_protocol v1."""

    def __init__(self, message: str, *, path: str = "", value: Any = None, hint: str = "") -> None:
        if hint:
            message += f"; hint: {hint}"
        super().__init__(message)
        self.path = path
        self.value = value
        self.hint = hint


class MalformedMessage(ProtocolError):
    """A field has the wrong type, is missing or breaks a rule; the message names its path."""

    def __init__(
        self, path: str, problem: str, *, value: Any = None, hint: str = "", show_value: bool = True
    ) -> None:
        message = f"{path}: {problem}" if path else problem
        if show_value and value is not None:
            message += f" ({_short_repr(value)})"
        super().__init__(message, path=path, value=value, hint=hint)
        self.problem = problem


class InvalidIdentifier(MalformedMessage):
    """A store, register, node or row id that breaks sync_protocol.ID_PATTERN."""

    def __init__(self, where: str, value: Any, max_len: int) -> None:
        got = "" if type(value) is str else f"a {type(value).__name__}: "
        super().__init__(
            where,
            f"expected an id of 1..{max_len} letters, digits, '.', '_', ':' or '-' starting with a "
            f"letter or digit, got {got}{_short_repr(value)}",
            value=value,
            show_value=False,
        )


class PayloadTooLarge(ProtocolError):
    """The encoded payload is larger than Limits.max_bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"payload of {size} bytes exceeds max_bytes={limit}",
            value=size,
            hint="send fewer sales per batch",
        )
        self.size = size
        self.limit = limit


class UnsupportedVersion(ProtocolError):
    """The envelope carries a protocol version newer than this decoder knows."""

    def __init__(self, version: int, supported: int) -> None:
        super().__init__(
            f"v: protocol version {version} is newer than supported version {supported}",
            path="v",
            value=version,
            hint="upgrade the receiver first (Center, then store nodes, then registers)",
        )
        self.version = version
        self.supported = supported


class UnknownMessageType(ProtocolError):
    """The envelope names a message type (or encode got an object) that is not a message."""

    def __init__(
        self,
        type_name: str,
        known: tuple[str, ...],
        hint: str = "upgrade the receiver or check the sender",
    ) -> None:
        super().__init__(
            f"type: unknown message type {_short_repr(type_name)}; known: {', '.join(known)}",
            path="type",
            value=type_name,
            hint=hint,
        )
        self.type_name = type_name


class UnexpectedMessageType(ProtocolError):
    """The message is valid but not of the type the caller expects at this endpoint."""

    def __init__(self, got: str, expected: tuple[str, ...]) -> None:
        super().__init__(
            f"type: expected {' or '.join(expected)}, got {got!r}",
            path="type",
            value=got,
            hint="this endpoint accepts only the expected message type",
        )
        self.got = got
        self.expected = expected


class SignatureError(ProtocolError):
    """A signed request is refused; the message names the signature header at fault."""

    default_problem = "refused"

    def __init__(self, header: str, problem: str = "") -> None:
        problem = problem or self.default_problem
        super().__init__(f"header {header}: {problem}", path=f"header {header}")
        self.header = header
        self.problem = problem


class MissingSignatureHeader(SignatureError):
    """One of the four signature headers is absent or empty."""

    default_problem = "missing; signed requests carry all four"


class MalformedSignatureHeader(SignatureError):
    """A signature header is present but not in its documented form."""


class UnknownNode(SignatureError):
    """The node id is well-formed but the receiver holds no secret for it."""

    def __init__(self, header: str, node_id: str) -> None:
        super().__init__(header, f"unknown node {node_id!r}; enrol it first")
        self.node_id = node_id


class StaleTimestamp(SignatureError):
    """The request's timestamp is further from the receiver's clock than the window allows."""

    def __init__(
        self, header: str, timestamp: str, skew_s: float, window_s: int, receiver: str, sender: str
    ) -> None:
        super().__init__(
            header,
            f"{timestamp} is {skew_s:+.0f} s from the {receiver}'s clock "
            f"(allowed ±{window_s} s); check the {sender}'s clock",
        )
        self.timestamp = timestamp
        self.skew_s = skew_s
        self.window_s = window_s


class BadSignature(SignatureError):
    """The signature is not the HMAC of this request under the node's secret."""

    default_problem = "does not match the request"


class ReplayedNonce(SignatureError):
    """The nonce was already used by the same node within the replay horizon."""

    default_problem = "already used: the request is a replay"
