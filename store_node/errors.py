"""Errors of the store node: one base class, narrow subclasses whose message names the culprit."""

from __future__ import annotations

__all__ = [
    "CenterRefused",
    "CenterTooLarge",
    "CenterUnavailable",
    "ConfigError",
    "Conflict",
    "EnrolmentRefused",
    "Forbidden",
    "InvalidRequest",
    "MalformedRequest",
    "NotReady",
    "RequestError",
    "RequestTooLarge",
    "StorageError",
    "StoreNodeError",
    "Unauthorized",
    "UnknownCard",
    "UnknownObject",
    "UnsupportedMediaType",
]


class StoreNodeError(Exception):
    """Base class of every error the store node raises on purpose."""


class ConfigError(StoreNodeError):
    """The config file is missing or invalid; `problems` lists every problem found."""

    def __init__(self, path: object, problems: list[str] | tuple[str, ...]) -> None:
        self.path = str(path)
        self.problems = tuple(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} problem(s):\n{listed}")


class StorageError(StoreNodeError):
    """The SQLite file cannot be used by this node (e.g. it belongs to another store)."""


class RequestError(StoreNodeError):
    """A request was refused; `kind` and `status` say how it maps to HTTP.

    The kinds are the vocabulary of every tier (docs/API.md, Errors): a class of the same name
    in center/errors.py and pos_agent/errors.py has the same kind and status
    (tests/test_service_shell.py).
    """

    kind = "invalid"
    status = 422


class MalformedRequest(RequestError):
    """The request (query string or body) cannot be parsed; the message names the field."""

    kind = "malformed"
    status = 400


class Unauthorized(RequestError):
    """No valid credentials: missing, unknown, badly signed, stale or replayed (HTTP 401)."""

    kind = "unauthorized"
    status = 401


class Forbidden(RequestError):
    """Valid credentials that do not allow this request (HTTP 403)."""

    kind = "forbidden"
    status = 403


class EnrolmentRefused(RequestError):
    """An enrolment token that is unknown (401), used or expired (403); `kind` says which."""

    status = 401

    def __init__(self, kind: str, status: int, message: str) -> None:
        self.kind = kind
        self.status = status
        super().__init__(f"token: {message}")


class UnknownObject(RequestError):
    """The request names an object (e.g. a reservation) this node does not know."""

    kind = "not_found"
    status = 404


class UnknownCard(UnknownObject):
    """A card that neither this node nor the Center knows.

    Its own kind, `unknown_object`, is older than the shared vocabulary: registers in the field
    tell an unknown card from a missing route (`not_found`) by it, so it stays.
    """

    kind = "unknown_object"
    status = 404


class Conflict(RequestError):
    """The request contradicts the object's state (e.g. a committed reservation)."""

    kind = "conflict"
    status = 409


class RequestTooLarge(RequestError):
    """The body is larger than the node accepts."""

    kind = "too_large"
    status = 413


class UnsupportedMediaType(RequestError):
    """The request body has the wrong Content-Type."""

    kind = "unsupported_media_type"
    status = 415


class InvalidRequest(RequestError):
    """The request is well-formed but not acceptable (e.g. a heartbeat from another store)."""

    kind = "invalid"
    status = 422


class NotReady(RequestError):
    """The node cannot answer yet (e.g. no master data has been fetched from the Center)."""

    kind = "unavailable"
    status = 503


class CenterUnavailable(StoreNodeError):
    """An exchange with the Center failed; the message names the endpoint and the cause."""


class CenterTooLarge(CenterUnavailable):
    """The Center refused a request body as too large (HTTP 413)."""


class CenterRefused(CenterUnavailable):
    """The Center refused a batch's bytes for good (HTTP 400 or 422): resending cannot help."""
