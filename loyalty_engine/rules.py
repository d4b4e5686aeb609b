"""Promotion documents -> a validated, versioned ``PromotionSet`` (every problem reported)."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, tzinfo
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .conditions import Audience, Place, Schedule, parse_audience, parse_place, parse_schedule
from .coupons import code_expiry, verify_code
from .errors import RuleError
from .fields import FieldReader
from .kinds import KINDS, Stage, Terms

__all__ = [
    "PLACEHOLDERS",
    "SETTINGS",
    "STACKING",
    "STATUSES",
    "CouponMatch",
    "EngineSettings",
    "Funding",
    "Limits",
    "MessageTemplates",
    "Promotion",
    "PromotionSet",
    "load_promotion_set",
    "load_settings",
]

STATUSES = ("draft", "active", "archived")
# compound: on what earlier discounts left; additive: on the original amounts; best: per line,
# only the biggest of the "best" promotions; exclusive: alone, if it beats everything else.
STACKING = ("compound", "additive", "best", "exclusive")
# Placeholders a message template may use; the engine fills them for the rule's result.
# ``code``, ``valid_until`` and ``valid_days`` are filled by ``issue_coupon`` (empty elsewhere).
PLACEHOLDERS = frozenset(
    {
        "amount",
        "amount_minor",
        "percent",
        "promotion_id",
        "total",
        "wallet",
        "points",
        "code",
        "valid_until",
        "valid_days",
    }
)
_CHANNELS = ("slip", "cashier", "display")
# The settings the engine reads. The ``settings`` table may also hold other components'
# settings: they are named with a dot (``offline.max_spend_per_card_minor``) and ignored here.
SETTINGS = frozenset(
    {
        "bonus_max_share",
        "timezone",
        "currency",
        "currency_exponent",
        "stacking",
        "max_discount_share",
        "max_discount_minor",
        "max_accrual_minor",
        "never_below_cost",
        "coupon_key",
    }
)
_FORMATTER = string.Formatter()
_Condition = TypeVar("_Condition", Schedule, Place, Audience)


@dataclass(frozen=True, slots=True)
class MessageTemplates:
    """Texts shown when the rule applies, with ``{amount}``-style placeholders."""

    slip: str = ""
    cashier: str = ""
    display: str = ""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-promotion restrictions; per-customer ones need the counters of ``CustomerState``."""

    max_discount_minor: int | None = None
    max_accrual_minor: int | None = None
    max_fires_per_day: int | None = None
    max_fires_per_month: int | None = None
    max_fires_total: int | None = None
    max_qty_per_day_milli: int | None = None
    max_qty_per_month_milli: int | None = None


@dataclass(frozen=True, slots=True)
class Funding:
    """Who pays: ``chain`` or ``supplier:<id>``; a budget stops the promotion when spent."""

    by: str = "chain"
    budget_minor: int | None = None


@dataclass(frozen=True, slots=True)
class Promotion:
    """One validated rule: common fields, conditions, and the kind-specific ``terms``."""

    promotion_id: str
    kind: str
    status: str
    priority: int
    terms: Terms
    stage: Stage
    schedule: Schedule = field(default_factory=Schedule)
    place: Place = field(default_factory=Place)
    audience: Audience = field(default_factory=Audience)
    messages: MessageTemplates = field(default_factory=MessageTemplates)
    title: str = ""
    stacking: str | None = None
    limits: Limits = field(default_factory=Limits)
    funding: Funding = field(default_factory=Funding)
    # Accrual rules: false means no accrual at all on a receipt paid (partly) with bonus.
    accrue_after_bonus_payment: bool = True
    # Active with no schedule, place, audience, limits or budget: nothing to check per receipt.
    unconditional: bool = field(default=False, compare=False)
    # Per-promotion limits or a budget trim what it gives (the discount stage's slow path).
    bounded: bool = field(default=True, compare=False)
    # Which per-receipt checks can exclude it (each true unless the loader knows it is the
    # default): a dense receipt checks a few hundred promotions, most of them on one thing.
    timed: bool = field(default=True, compare=False)
    placed: bool = field(default=True, compare=False)
    targeted: bool = field(default=True, compare=False)
    fire_limited: bool = field(default=True, compare=False)
    # Whether it has a message template to fill when it applies.
    may_message: bool = field(default=True, compare=False)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Chain-wide settings: bonus payment cap, store time zone, currency exponent."""

    bonus_max_share: Decimal = Decimal("0.5")
    timezone: str = "UTC"
    tz: tzinfo = UTC
    currency_exponent: int = 2
    stacking: str = "compound"
    max_discount_share: Decimal | None = None
    max_discount_minor: int | None = None
    max_accrual_minor: int | None = None
    never_below_cost: bool = True
    coupon_key: str = ""
    currency: str = "RUB"


@dataclass(frozen=True, slots=True)
class CouponMatch:
    """A presented code and the coupon rule that accepts it."""

    code: str
    promotion_id: str
    title: str = ""
    multi_use: bool = False
    # The last valid day (store time) a dated signed code carries; ``None``: no end.
    expires_on: date | None = None


# The goods fields of the index, with the receipt-line attribute each is looked up by.
GOODS_FIELDS = (
    ("products", "product_id"),
    ("departments", "department"),
    ("categories", "category"),
    ("types", "type"),
    ("brands", "brand"),
)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What ``calculate`` looks up per receipt, prepared once per set: the goods index by line
    field, and each promotion's stacking mode under the chain's policy. Valid only for the
    very ``index``, ``promotions`` and ``settings`` it was made from (``prepare`` checks).

    A promotion with one goods key (one category, one product) is found by it alone: its
    lines are the lines with that value (``single``). Promotions with several keys are found
    through a key group (``multi``), one per distinct key set, shared: the 25 rules over every
    category of a dense chain merge their lines once, not 25 times (``groups``: the positions
    of each group)."""

    index: Mapping[tuple[str, str], tuple[int, ...]]
    promotions: tuple[Promotion, ...]
    settings: EngineSettings
    # Per goods field (``products``...), per value: single-key positions / key-group ids.
    single: Mapping[str, Mapping[str, tuple[int, ...]]]
    multi: Mapping[str, Mapping[str, tuple[int, ...]]]
    groups: tuple[tuple[int, ...], ...]
    # Per promotion id: compound, additive, best or exclusive (a chain-wide "exclusive"
    # overrides them all).
    modes: Mapping[str, str]


def prepare(promotions: PromotionSet) -> Lookup:
    """The set's ``Lookup``: the one made at load, or a new one if the set was rebuilt since."""
    found = promotions.lookup
    if (
        found is not None
        and found.index is promotions.index
        and found.promotions is promotions.promotions
        and found.settings is promotions.settings
    ):
        return found
    names = {name for name, _ in GOODS_FIELDS}
    keys_of: dict[int, list[tuple[str, str]]] = {}
    for key, positions in promotions.index.items():
        if key[0] in names:
            for position in positions:
                keys_of.setdefault(position, []).append(key)
    single: dict[str, dict[str, list[int]]] = {name: {} for name in names}
    multi: dict[str, dict[str, list[int]]] = {name: {} for name in names}
    group_of: dict[tuple[tuple[str, str], ...], int] = {}
    groups: list[list[int]] = []
    for position in sorted(keys_of):
        keys = tuple(sorted(set(keys_of[position])))
        if len(keys) == 1:
            name, value = keys[0]
            single[name].setdefault(value, []).append(position)
            continue
        group = group_of.get(keys)
        if group is None:
            group = group_of[keys] = len(groups)
            groups.append([])
            for name, value in keys:
                multi[name].setdefault(value, []).append(group)
        groups[group].append(position)
    chain = promotions.settings.stacking
    modes = {
        p.promotion_id: ("exclusive" if chain == "exclusive" else p.stacking or chain)
        for p in promotions.promotions
    }
    return Lookup(
        index=promotions.index,
        promotions=promotions.promotions,
        settings=promotions.settings,
        single={name: _tuples(table) for name, table in single.items() if table},
        multi={name: _tuples(table) for name, table in multi.items() if table},
        groups=tuple(tuple(group) for group in groups),
        modes=modes,
    )


def _tuples(table: Mapping[str, list[int]]) -> dict[str, tuple[int, ...]]:
    return {value: tuple(items) for value, items in table.items()}


@dataclass(frozen=True, slots=True)
class PromotionSet:
    """The rules a receipt is priced with, ordered by (priority, promotion_id), and a version."""

    version: int
    promotions: tuple[Promotion, ...] = ()
    settings: EngineSettings = field(default_factory=EngineSettings)
    # Non-fatal findings, e.g. unknown fields (newer documents or typos).
    warnings: tuple[str, ...] = ()
    # Positions in ``promotions`` by the goods key / coupon key they can touch; ``always``
    # holds those touching any receipt. ``calculate`` looks candidates up instead of scanning.
    index: Mapping[tuple[str, str], tuple[int, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    always: tuple[int, ...] | None = field(default=None, compare=False, repr=False)
    # Prepared at load for ``calculate`` (``prepare``).
    lookup: Lookup | None = field(default=None, compare=False, repr=False)

    def get(self, promotion_id: str) -> Promotion | None:
        """The promotion with this id, or ``None``."""
        return next((p for p in self.promotions if p.promotion_id == promotion_id), None)

    def find_coupon(self, code: str) -> CouponMatch | None:
        """The active ``coupon`` rule accepting ``code`` (listed, or validly signed), or ``None``.

        Offline validation for a register: no schedule or audience is checked here (the
        calculation does that); single-use history is the caller's (``used_coupons``).
        """
        normal = code.strip().upper()
        positions: set[int] = set()
        for key in (("code", normal), ("coupon_prefix", normal.split("-", 1)[0])):
            positions.update(self.index.get(key, ()))
        for position in sorted(positions):
            promotion = self.promotions[position]
            accepts = getattr(promotion.terms, "accepts", None)
            if (
                promotion.status == "active"
                and accepts is not None
                and accepts(normal, self.settings.coupon_key)
            ):
                multi_use = bool(getattr(promotion.terms, "multi_use", False))
                signed = verify_code(self.settings.coupon_key, normal) is not None
                expires_on = code_expiry(normal) if signed else None
                return CouponMatch(
                    normal, promotion.promotion_id, promotion.title, multi_use, expires_on
                )
        return None


def _templates(reader: FieldReader) -> MessageTemplates:
    sub = reader.child("messages")
    if sub is None:
        return MessageTemplates()
    texts: dict[str, str] = {}
    for channel in _CHANNELS:
        text = sub.doc.get(channel)
        sub.seen.add(channel)
        if text is None or text == "":
            continue
        if not isinstance(text, str):
            sub.problem(channel, f"expected a string, got {text!r}")
            continue
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in _FORMATTER.parse(text)]
        except ValueError as exc:
            sub.problem(channel, f"bad template ({exc}), got {text!r}")
            continue
        allowed = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
        bad = [
            "{" + name + "}"
            for name, spec, conv in fields
            if name is not None and (name not in PLACEHOLDERS or spec or conv)
        ]
        if bad:
            sub.problem(
                channel,
                f"unsupported placeholder {', '.join(bad)} (allowed: {allowed}), got {text!r}",
            )
            continue
        texts[channel] = text
    return MessageTemplates(**texts)


def _promotion(
    doc: object,
    index: int,
    problems: list[str],
    warnings: list[str],
    strict: bool,
    exact: bool = False,
    exponent: int = 2,
    shared: dict[object, object] | None = None,
) -> Promotion | None:
    if not isinstance(doc, Mapping):
        problems.append(f"promotion #{index}: expected an object, got {doc!r}")
        return None
    raw_id = doc.get("promotion_id")
    owner = f"promotion {raw_id!r}" if isinstance(raw_id, str) and raw_id else f"promotion #{index}"
    before = len(problems)
    reader = FieldReader(doc, owner, problems, exponent=exponent)
    promotion_id = reader.str_("promotion_id")
    kind_name = reader.str_("kind")
    kind = KINDS.get(kind_name)
    if kind is None and kind_name:
        if not strict:
            warnings.append(f"{owner}: kind {kind_name!r} unknown to this engine, skipped")
            return None
        reader.problem("kind", f"expected one of {', '.join(sorted(KINDS))}, got {kind_name!r}")
    status = reader.str_("status", "draft", choices=STATUSES)
    priority = reader.int_("priority", 100, min_value=-1_000_000, max_value=1_000_000) or 0
    title = reader.str_("title", "") if reader.has("title") else ""
    schedule = parse_schedule(reader)
    place = parse_place(reader)
    audience = parse_audience(reader)
    if shared is not None:
        # Equal conditions become one object: ``calculate`` checks each object once per
        # receipt (a dense calendar has hundreds of rules over a few dozen schedules).
        schedule = _one_of(shared, schedule)
        place = _one_of(shared, place)
        audience = _one_of(shared, audience)
    messages = _templates(reader)
    stacking = reader.str_("stacking", "", choices=STACKING) if reader.has("stacking") else None
    limits = _limits(reader)
    funding = _funding(reader)
    terms = kind.parse(reader) if kind is not None else None
    after_bonus = True
    if kind is not None and kind.stage == "accrual":
        after_bonus = reader.bool_("accrue_after_bonus_payment", True)
    unknown = reader.unknown_fields() if kind is not None else []
    if exact:
        # The Center's check: an unknown field is a typo or a field this engine cannot honour.
        for path in unknown:
            problems.append(f"{owner}: {path}: unknown field for a {kind_name} rule")
    if terms is None or kind is None or len(problems) > before:
        return None
    # An older register tolerates fields a newer Center added (they have defaults), and says so.
    warnings.extend(f"{owner}: unknown field {path!r} ignored" for path in unknown)
    return Promotion(
        promotion_id=promotion_id,
        kind=kind.name,
        status=status,
        priority=priority,
        terms=terms,
        stage=kind.stage,
        schedule=schedule,
        place=place,
        audience=audience,
        messages=messages,
        title=title,
        stacking=stacking or None,
        limits=limits,
        funding=funding,
        accrue_after_bonus_payment=after_bonus,
        unconditional=(
            status == "active"
            and schedule == _ALWAYS
            and place == _EVERYWHERE
            and audience == _EVERYONE
            and limits == _NO_LIMITS
            and funding.budget_minor is None
        ),
        # Fire limits exclude a promotion before it runs; these trim what it gives.
        bounded=(
            limits.max_discount_minor is not None
            or limits.max_qty_per_day_milli is not None
            or limits.max_qty_per_month_milli is not None
            or funding.budget_minor is not None
        ),
        may_message=messages != MessageTemplates(),
        timed=schedule != _ALWAYS,
        placed=place != _EVERYWHERE,
        targeted=audience != _EVERYONE,
        fire_limited=(
            limits.max_fires_per_day is not None
            or limits.max_fires_per_month is not None
            or limits.max_fires_total is not None
        ),
    )


def _one_of(shared: dict[object, object], condition: _Condition) -> _Condition:
    """The object equal to ``condition`` seen first in this load (``condition`` if none)."""
    return cast(_Condition, shared.setdefault(condition, condition))


_ALWAYS = Schedule()
_EVERYWHERE = Place()
_EVERYONE = Audience()
_NO_LIMITS = Limits()


def _limits(reader: FieldReader) -> Limits:
    sub = reader.child("limits")
    if sub is None:
        return Limits()
    names = (
        "max_discount_minor",
        "max_accrual_minor",
        "max_fires_per_day",
        "max_fires_per_month",
        "max_fires_total",
        "max_qty_per_day_milli",
        "max_qty_per_month_milli",
    )
    return Limits(**{name: sub.int_(name, None, min_value=0) for name in names})


def _funding(reader: FieldReader) -> Funding:
    sub = reader.child("funding")
    if sub is None:
        return Funding()
    by = sub.str_("by", "chain")
    if by != "chain" and not by.startswith("supplier:"):
        sub.problem("by", f"expected 'chain' or 'supplier:<id>', got {by!r}")
    return Funding(by, sub.int_("budget_minor", None, min_value=0))


def load_settings(
    settings: Mapping[str, Any] | None, problems: list[str], *, exact: bool = False
) -> EngineSettings:
    """Validate chain settings. ``exact``: a name the engine does not know is a problem (a typo
    such as ``max_discount_shares`` would otherwise silently leave the cap off), except dotted
    names, which belong to other components; otherwise unknown names are ignored."""
    reader = FieldReader(settings or {}, "settings", problems)
    if exact:
        for name in sorted(settings or {}, key=str):
            if isinstance(name, str) and "." in name:
                continue
            if name not in SETTINGS:
                reader.problem(
                    str(name),
                    f"unknown setting (known: {', '.join(sorted(SETTINGS))}; "
                    "other components' settings are named 'component.name')",
                )
    share = reader.decimal(
        "bonus_max_share", low=Decimal(0), high=Decimal(1), default=Decimal("0.5")
    )
    name = reader.str_("timezone", "UTC")
    zone: tzinfo = UTC
    if name != "UTC":
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            reader.problem("timezone", f"expected an IANA time zone name, got {name!r}")
    exponent_text = reader.str_("currency_exponent", "2")
    if exponent_text not in ("0", "1", "2", "3"):
        reader.problem("currency_exponent", f"expected 0, 1, 2 or 3, got {exponent_text!r}")
        exponent_text = "2"
    stacking = reader.str_("stacking", "compound", choices=STACKING) or "compound"
    max_share = None
    if reader.has("max_discount_share"):
        max_share = reader.decimal("max_discount_share", low=Decimal(0), high=Decimal(1))
    ints: dict[str, int | None] = {}
    for key in ("max_discount_minor", "max_accrual_minor"):
        ints[key] = None
        if reader.has(key):
            text = reader.str_(key) if isinstance(reader.doc.get(key), str) else reader.doc.get(key)
            if isinstance(text, str) and text.isdigit():
                ints[key] = int(text)
            elif isinstance(text, int) and not isinstance(text, bool) and text >= 0:
                ints[key] = text
            else:
                reader.problem(key, f"expected a non-negative integer, got {text!r}")
    below = reader.doc.get("never_below_cost", "true")
    reader.seen.add("never_below_cost")
    if str(below).lower() not in ("true", "false", "1", "0"):
        reader.problem("never_below_cost", f"expected true or false, got {below!r}")
    key = reader.doc.get("coupon_key", "")
    reader.seen.add("coupon_key")
    currency = reader.str_("currency", "RUB")
    return EngineSettings(
        bonus_max_share=share,
        timezone=name,
        tz=zone,
        currency_exponent=int(exponent_text),
        stacking=stacking,
        max_discount_share=max_share,
        max_discount_minor=ints["max_discount_minor"],
        max_accrual_minor=ints["max_accrual_minor"],
        never_below_cost=str(below).lower() in ("true", "1"),
        coupon_key=key if isinstance(key, str) else "",
        currency=currency or "RUB",
    )


def load_promotion_set(
    docs: Iterable[Mapping[str, Any]],
    *,
    version: int,
    settings: Mapping[str, Any] | None = None,
    strict: bool = True,
    exact: bool = False,
) -> PromotionSet:
    """Validate rule documents and settings; raise ``RuleError`` listing every problem.

    ``strict=False`` skips documents of kinds this engine does not know (an older register
    receiving a newer Center's rules) instead of failing; they are listed in ``warnings``.
    Unknown fields and settings are tolerated and listed in ``warnings`` (a register parsing
    a newer Center's rules); ``exact=True`` (the Center's check) makes each a problem.
    """
    problems: list[str] = []
    warnings: list[str] = []
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        problems.append(f"version: expected an integer >= 0, got {version!r}")
    engine_settings = load_settings(settings, problems, exact=exact)
    promotions: list[Promotion] = []
    seen: dict[str, int] = {}
    shared: dict[object, object] = {}
    for index, doc in enumerate(docs):
        if isinstance(doc, Mapping):
            raw_id = doc.get("promotion_id")
            if isinstance(raw_id, str) and raw_id:
                if raw_id in seen:
                    problems.append(
                        f"promotion {raw_id!r}: promotion_id: duplicate of document #{seen[raw_id]}"
                    )
                seen.setdefault(raw_id, index)
        promotion = _promotion(
            doc, index, problems, warnings, strict, exact, engine_settings.currency_exponent, shared
        )
        if promotion is not None:
            promotions.append(promotion)
    if problems:
        raise RuleError(problems)
    promotions.sort(key=lambda p: (p.priority, p.promotion_id))
    by_key: dict[tuple[str, str], list[int]] = {}
    always: list[int] = []
    for position, promotion in enumerate(promotions):
        keys_of = getattr(promotion.terms, "index_keys", None)
        keys = keys_of() if keys_of is not None else None
        if keys is None:
            always.append(position)
        else:
            for key in keys:
                by_key.setdefault(key, []).append(position)
    loaded = PromotionSet(
        version,
        tuple(promotions),
        engine_settings,
        tuple(warnings),
        MappingProxyType({key: tuple(value) for key, value in by_key.items()}),
        tuple(always),
    )
    return replace(loaded, lookup=prepare(loaded))
