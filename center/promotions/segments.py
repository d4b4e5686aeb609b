"""Customer segments: validation of segment requests and of dynamic rule documents.

A dynamic rule is a JSON object; every part given must hold (all of):

- ``attributes``: ``{name: value | [values]}``, the customer attribute equals / is one of;
- ``recency_days``: N, the last purchase is at most N days old;
- ``frequency``: ``{"min_receipts": N, "window_days": W}``, at least N receipts in W days;
- ``monetary``: ``{"min_minor": A, "max_minor": B, "window_days": W}``, the receipts' total in
  W days is within [A, B] (either bound optional; customers without receipts have no total);
- ``categories``: ``{"any": [..], "window_days": W}``, bought a product of any of them;
- ``stores``: ``{"any": [..], "window_days": W}``, bought in any of these stores;
- ``churn_risk``: ``{"min": 0.5, "max": 1}``, the churn model's latest risk (0..1) is within
  the bounds (either optional; customers the model has not scored have no risk);
- ``preferred_store``: ``["367", ...]``, the preference model's preferred store is one of;
- ``model_segment``: ``["gen_x/high", ...]``, the preference model's segment (generation ×
  frequency-monetary cluster) is one of.

``window_days`` defaults to DEFAULT_WINDOW_DAYS. Purchases are the receipts of the customer's
cards as the Center holds them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from center.errors import InvalidRequest, MalformedRequest

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "KINDS",
    "MAX_LIST",
    "Bounds",
    "MembersInput",
    "Rule",
    "SegmentInput",
    "Window",
    "parse_members",
    "parse_rule",
    "parse_segment",
]

KINDS = ("static", "dynamic")
DEFAULT_WINDOW_DAYS = 90
MAX_DAYS = 3660
MAX_LIST = 1_000_000
MAX_VALUES = 1000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Window:
    """A part of a rule over the receipts of the last ``days`` days."""

    days: int
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Bounds:
    """A probability's range, both ends included; None is no bound on that side."""

    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated dynamic rule (see the module docstring); None / empty parts are absent."""

    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    recency_days: int | None = None
    frequency: Window | None = None
    monetary: Window | None = None
    categories: Window | None = None
    stores: Window | None = None
    churn_risk: Bounds | None = None
    preferred_store: tuple[str, ...] = ()
    model_segment: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        """The canonical JSON form (what parse_rule reads back to an equal Rule)."""
        doc: dict[str, Any] = {}
        if self.attributes:
            doc["attributes"] = {
                name: values[0] if len(values) == 1 else list(values)
                for name, values in self.attributes
            }
        if self.recency_days is not None:
            doc["recency_days"] = self.recency_days
        if self.frequency is not None:
            doc["frequency"] = {
                "min_receipts": self.frequency.minimum,
                "window_days": self.frequency.days,
            }
        if self.monetary is not None:
            doc["monetary"] = {"window_days": self.monetary.days}
            if self.monetary.minimum is not None:
                doc["monetary"]["min_minor"] = self.monetary.minimum
            if self.monetary.maximum is not None:
                doc["monetary"]["max_minor"] = self.monetary.maximum
        for name in ("categories", "stores"):
            part: Window | None = getattr(self, name)
            if part is not None:
                doc[name] = {"any": list(part.values), "window_days": part.days}
        if self.churn_risk is not None:
            bounds = {"min": self.churn_risk.minimum, "max": self.churn_risk.maximum}
            doc["churn_risk"] = {k: v for k, v in bounds.items() if v is not None}
        for name in ("preferred_store", "model_segment"):
            if getattr(self, name):
                doc[name] = list(getattr(self, name))
        return doc


@dataclass(frozen=True, slots=True)
class SegmentInput:
    """A validated POST /v1/segments body."""

    segment_id: str | None
    name: str
    kind: str
    rule: Rule | None = None
    customer_ids: tuple[str, ...] = ()
    card_nos: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MembersInput:
    """A validated member upload of a static segment (``mode`` replace or add)."""

    customer_ids: tuple[str, ...] = ()
    card_nos: tuple[str, ...] = ()
    mode: str = "replace"


def _object(body: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidRequest(field, f"expected a JSON object, got {type(body).__name__}")
    return body


def _no_extra(doc: Mapping[str, Any], field: str, known: tuple[str, ...]) -> None:
    extra = sorted(set(doc) - set(known))
    if extra:
        raise InvalidRequest(f"{field}.{extra[0]}", f"unknown field; expected one of {list(known)}")


def _int(
    doc: Mapping[str, Any], name: str, field: str, *, low: int, high: int, default: Any = ...
) -> Any:
    value = doc.get(name, default)
    if value is ...:
        raise InvalidRequest(f"{field}.{name}", "required")
    if value is None and default is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{field}.{name}", f"expected an integer {low}..{high}, got {value!r}")
    return value


def _strings(value: Any, field: str, *, limit: int = MAX_VALUES) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > limit:
        raise InvalidRequest(field, f"expected a list of 1..{limit} strings, got {value!r:.80}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > 200:
            raise InvalidRequest(f"{field}[{i}]", f"expected a non-empty string, got {item!r:.80}")
    return tuple(dict.fromkeys(value))


def _window(doc: Any, field: str, known: tuple[str, ...]) -> Mapping[str, Any]:
    part = _object(doc, field)
    _no_extra(part, field, (*known, "window_days"))
    return part


def parse_rule(doc: Any, field: str = "rule") -> Rule:
    """Validate a dynamic rule document; InvalidRequest naming the offending field."""
    rule = _object(doc, field)
    parts = (
        "attributes",
        "recency_days",
        "frequency",
        "monetary",
        "categories",
        "stores",
        "churn_risk",
        "preferred_store",
        "model_segment",
    )
    _no_extra(rule, field, parts)
    if not any(rule.get(p) is not None for p in parts):
        raise InvalidRequest(field, f"expected at least one of {list(parts)}, got none")
    attributes: list[tuple[str, tuple[str, ...]]] = []
    if rule.get("attributes") is not None:
        given = _object(rule["attributes"], f"{field}.attributes")
        if not given:
            raise InvalidRequest(f"{field}.attributes", "expected at least one attribute")
        for name in sorted(given):
            where = f"{field}.attributes.{name}"
            if not _ATTRIBUTE.match(name):
                raise InvalidRequest(where, "attribute names are letters, digits and _")
            value = given[name]
            values = (value,) if isinstance(value, str) else _strings(value, where)
            attributes.append((name, values))
    days = {"low": 1, "high": MAX_DAYS}
    recency = _int(rule, "recency_days", field, default=None, **days)
    frequency = monetary = categories = stores = None
    if rule.get("frequency") is not None:
        where = f"{field}.frequency"
        part = _window(rule["frequency"], where, ("min_receipts",))
        frequency = Window(
            _int(part, "window_days", where, default=DEFAULT_WINDOW_DAYS, **days),
            minimum=_int(part, "min_receipts", where, low=1, high=1_000_000),
        )
    if rule.get("monetary") is not None:
        where = f"{field}.monetary"
        part = _window(rule["monetary"], where, ("min_minor", "max_minor"))
        low = _int(part, "min_minor", where, low=-(10**15), high=10**15, default=None)
        high = _int(part, "max_minor", where, low=-(10**15), high=10**15, default=None)
        if low is None and high is None:
            raise InvalidRequest(where, "expected min_minor, max_minor or both")
        if low is not None and high is not None and high < low:
            raise InvalidRequest(f"{where}.max_minor", f"{high} is below min_minor {low}")
        monetary = Window(
            _int(part, "window_days", where, default=DEFAULT_WINDOW_DAYS, **days),
            minimum=low,
            maximum=high,
        )
    for name in ("categories", "stores"):
        if rule.get(name) is not None:
            where = f"{field}.{name}"
            part = _window(rule[name], where, ("any",))
            window = Window(
                _int(part, "window_days", where, default=DEFAULT_WINDOW_DAYS, **days),
                values=_strings(part.get("any"), f"{where}.any"),
            )
            if name == "categories":
                categories = window
            else:
                stores = window
    churn = None if rule.get("churn_risk") is None else _bounds(rule["churn_risk"], field)
    preferred, segment = (
        () if rule.get(name) is None else _strings(rule[name], f"{field}.{name}")
        for name in ("preferred_store", "model_segment")
    )
    return Rule(
        tuple(attributes), recency, frequency, monetary, categories, stores, churn,
        preferred_store=preferred, model_segment=segment,
    )  # fmt: skip


def _probability(part: Mapping[str, Any], name: str, where: str) -> float | None:
    value = part.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidRequest(f"{where}.{name}", f"expected a number 0..1, got {value!r:.80}")
    return float(value)


def _bounds(doc: Any, field: str) -> Bounds:
    where = f"{field}.churn_risk"
    part = _object(doc, where)
    _no_extra(part, where, ("min", "max"))
    low, high = _probability(part, "min", where), _probability(part, "max", where)
    if low is None and high is None:
        raise InvalidRequest(where, "expected min, max or both")
    if low is not None and high is not None and high < low:
        raise InvalidRequest(f"{where}.max", f"{high} is below min {low}")
    return Bounds(low, high)


def _ids(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = doc.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise InvalidRequest(f"body.{name}", f"expected a list of at most {MAX_LIST} ids")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _ID.match(item):
            raise InvalidRequest(f"body.{name}[{i}]", f"expected an id, got {item!r:.80}")
    return tuple(dict.fromkeys(value))


def parse_segment(body: Any) -> SegmentInput:
    """Validate POST /v1/segments: a static segment with members or a dynamic one with a rule."""
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    _no_extra(body, "body", ("segment_id", "name", "kind", "rule", "customer_ids", "card_nos"))
    segment_id = body.get("segment_id")
    if segment_id is not None and (not isinstance(segment_id, str) or not _ID.match(segment_id)):
        raise InvalidRequest(
            "body.segment_id", f"expected 1..64 letters, digits or ._:-, got {segment_id!r:.80}"
        )
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise InvalidRequest("body.name", f"expected 1..200 characters, got {name!r:.80}")
    kind = body.get("kind")
    if kind not in KINDS:
        raise InvalidRequest("body.kind", f"expected one of {list(KINDS)}, got {kind!r:.80}")
    if kind == "dynamic":
        for name_ in ("customer_ids", "card_nos"):
            if body.get(name_) is not None:
                raise InvalidRequest(
                    f"body.{name_}", "a dynamic segment's members come from its rule"
                )
        return SegmentInput(segment_id, name, kind, rule=parse_rule(body.get("rule"), "body.rule"))
    if body.get("rule") is not None:
        raise InvalidRequest("body.rule", "a static segment has no rule; use kind dynamic")
    return SegmentInput(
        segment_id,
        name,
        kind,
        customer_ids=_ids(body, "customer_ids"),
        card_nos=_ids(body, "card_nos"),
    )


def parse_members(body: Any) -> MembersInput:
    """Validate a member upload: customer_ids and/or card_nos, mode replace (default) or add."""
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    _no_extra(body, "body", ("customer_ids", "card_nos", "mode"))
    mode = body.get("mode", "replace")
    if mode not in ("replace", "add"):
        raise InvalidRequest("body.mode", f"expected replace or add, got {mode!r:.80}")
    return MembersInput(_ids(body, "customer_ids"), _ids(body, "card_nos"), mode)
