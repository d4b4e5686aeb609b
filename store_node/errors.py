"""Errors of the store node: one base class, narrow subclasses whose message names the culprit."""

from __future__ import annotations


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
    """A request was refused; `kind` and `status` say how it maps to HTTP."""

    kind = "invalid"
    status = 422


class MalformedRequest(RequestError):
    """The request (query string or body) cannot be parsed; the message names the field."""

    kind = "malformed"
    status = 400


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


class UnknownObject(RequestError):
    """The request names an object (e.g. a card) that neither this node nor the Center knows."""

    kind = "unknown_object"
    status = 404
