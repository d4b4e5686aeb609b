"""Errors of the Center: one base class, narrow subclasses whose message names the culprit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CenterError",
    "ConfigError",
    "Conflict",
    "DatasetError",
    "EnrolmentRefused",
    "Forbidden",
    "InvalidLines",
    "InvalidRequest",
    "MalformedRequest",
    "RequestError",
    "RequestTooLarge",
    "StorageError",
    "TooManyAttempts",
    "Unauthorized",
    "UnknownObject",
    "UnsupportedContentType",
    "UnsupportedMediaType",
]


class CenterError(Exception):
    """Base class of every error the Center raises on purpose."""


class ConfigError(CenterError):
    """The config file is missing or invalid; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid config:\n" + "\n".join(f"  - {p}" for p in self.problems))


class StorageError(CenterError):
    """The database could not be opened, migrated or written."""


class DatasetError(CenterError):
    """The dataset import was asked for something the dataset does not have."""


class RequestError(CenterError):
    """A request was refused; `kind` and `status` become the JSON error answer.

    The kinds are the vocabulary of every tier (docs/API.md, Errors): a class of the same name
    in store_node/errors.py and pos_agent/errors.py has the same kind and status
    (tests/test_service_shell.py).
    """

    kind = "invalid"
    status = 422

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class MalformedRequest(RequestError):
    """A query parameter, path part or body cannot be parsed."""

    kind = "malformed"
    status = 400


class UnknownObject(RequestError):
    """The request names an object (store, card) the Center does not know."""

    kind = "not_found"
    status = 404


class UnsupportedMediaType(RequestError):
    """The body is not in the content type the endpoint takes."""

    kind = "unsupported_media_type"
    status = 415


UnsupportedContentType = UnsupportedMediaType
"""The former name, still imported by route modules."""


class RequestTooLarge(RequestError):
    """The body is larger than the endpoint accepts."""

    kind = "too_large"
    status = 413


class InvalidRequest(RequestError):
    """The request is well-formed but its values are not acceptable."""

    kind = "invalid"
    status = 422


class InvalidLines(InvalidRequest):
    """Lines of a file or rows of a batch that cannot be loaded: `problems` lists every one
    ({"line", "field", "message"}); the first names the field of the error."""

    def __init__(self, field: str, message: str, problems: Sequence[Mapping[str, Any]]) -> None:
        self.problems = tuple(dict(p) for p in problems)
        more = len(self.problems) - 1
        super().__init__(field, message + (f" (and {more} more problems)" if more > 0 else ""))


class Conflict(RequestError):
    """The request contradicts the object's state, e.g. a card number already issued (409)."""

    kind = "conflict"
    status = 409


class Unauthorized(RequestError):
    """No valid credentials: missing, unknown, badly signed, stale or replayed (HTTP 401)."""

    kind = "unauthorized"
    status = 401


class TooManyAttempts(RequestError):
    """Too many requests or failures from one address or caller within a window (HTTP 429)."""

    kind = "rate_limited"
    status = 429


class Forbidden(RequestError):
    """Valid credentials that do not allow this request, e.g. another store's data (HTTP 403)."""

    kind = "forbidden"
    status = 403


class EnrolmentRefused(RequestError):
    """An enrolment token that is unknown, already used or expired; `kind` says which."""

    status = 401

    def __init__(self, kind: str, status: int, message: str) -> None:
        self.kind = kind
        self.status = status
        super().__init__("token", message)
