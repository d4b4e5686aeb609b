"""Conditions shared by every rule kind: schedule, place and audience."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from .fields import FieldReader
from .goods import GoodsSelector, parse_goods
from .model import Receipt
from .money import format_minor

__all__ = ["Audience", "Place", "Schedule", "parse_audience", "parse_place", "parse_schedule"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a rule applies, in the store's local time; empty fields mean "always"."""

    date_from: date | None = None
    date_to: date | None = None
    days_of_week: tuple[int, ...] = ()
    hours: tuple[int, int] | None = None
    days_of_month: tuple[int, ...] = ()

    def excluded_because(self, local_now: datetime) -> str | None:
        """Why ``local_now`` (store time) is outside this schedule, or ``None``."""
        today = local_now.date()
        if self.date_from is not None and today < self.date_from:
            return f"not yet valid: {today.isoformat()} before {self.date_from.isoformat()}"
        if self.date_to is not None and today > self.date_to:
            return f"expired: {today.isoformat()} after {self.date_to.isoformat()}"
        if self.days_of_month and today.day not in self.days_of_month:
            days = ",".join(str(d) for d in self.days_of_month)
            return f"day of month {today.day} not in [{days}]"
        weekday = local_now.isoweekday()
        if self.days_of_week and weekday not in self.days_of_week:
            days = ",".join(str(d) for d in self.days_of_week)
            return f"day of week {weekday} not in [{days}]"
        if self.hours is not None:
            start, end = self.hours
            hour = local_now.hour
            # start > end is an overnight window, e.g. [22, 6) means 22:00 to 05:59.
            inside = start <= hour < end if start < end else (hour >= start or hour < end)
            if not inside:
                return f"hour {hour} outside [{start}, {end})"
        return None


@dataclass(frozen=True, slots=True)
class Place:
    """Which stores a rule applies in; empty include-lists mean "every store".

    Formats and regions are compared case-insensitively (kept casefolded): "Discounter" and
    "discounter" are one format."""

    stores: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    exclude_stores: tuple[str, ...] = ()
    exclude_formats: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    exclude_regions: tuple[str, ...] = ()

    def excluded_because(self, store_id: str, store_format: str, region: str = "") -> str | None:
        """Why this store is outside the rule's place, or ``None``."""
        shown_format, shown_region = store_format, region
        store_format, region = store_format.casefold(), region.casefold()
        if region and region in self.exclude_regions:
            return f"region {shown_region!r} excluded"
        if self.regions and region not in self.regions:
            return f"region {shown_region!r} not in the rule's regions"
        if store_id in self.exclude_stores:
            return f"store {store_id!r} excluded"
        if store_format and store_format in self.exclude_formats:
            return f"store format {shown_format!r} excluded"
        if self.stores and store_id not in self.stores:
            return f"store {store_id!r} not in the rule's stores"
        if self.formats and store_format not in self.formats:
            return f"store format {shown_format!r} not in the rule's formats"
        return None


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a rule applies to."""

    requires_card: bool = False
    segments: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    min_subtotal_minor: int | None = None
    payment_types: tuple[str, ...] = ()
    # Receipt contents: at least ``contains_qty_milli`` of these goods must be in the receipt.
    contains: GoodsSelector | None = None
    contains_qty_milli: int = 1
    # ... and those goods must be worth at least this much (before discounts).
    contains_amount_minor: int | None = None
    # The customer's state counters (e.g. spend over a period) must be at least these values.
    counters_at_least: tuple[tuple[str, int], ...] = ()

    def excluded_because(
        self,
        receipt: Receipt,
        subtotal_minor: int = 0,
        money: Callable[[int], str] = format_minor,
    ) -> str | None:
        """Why this receipt's customer (or the receipt itself) is outside the audience;
        ``money`` shows amounts to people."""
        if self.requires_card and not receipt.card_no:
            return "no card presented"
        if self.segments and not set(receipt.all_segments) & set(self.segments):
            held = receipt.all_segments
            if len(held) > 1:
                return f"segments {', '.join(map(repr, held))} not in the rule's segments"
            only = held[0] if held else ""
            return f"segment {only!r} not in the rule's segments"
        customer = receipt.customer
        if self.tiers:
            tier = customer.tier if customer is not None else ""
            if tier not in self.tiers:
                return f"tier {tier!r} not in the rule's tiers"
        for name, wanted in self.attributes:
            value = customer.attributes.get(name, "") if customer is not None else ""
            if value != wanted:
                return f"attribute {name}={value!r}, rule wants {wanted!r}"
        for name, least in self.counters_at_least:
            have = customer.counters.get(name, 0) if customer is not None else 0
            if have < least:
                # A counter of money (``spend_30d_minor``) is shown as money.
                shown = (money(have), money(least)) if name.endswith("_minor") else (have, least)
                return f"{name} {shown[0]} below {shown[1]}"
        if self.min_subtotal_minor is not None and subtotal_minor < self.min_subtotal_minor:
            return f"subtotal {money(subtotal_minor)} below {money(self.min_subtotal_minor)}"
        if self.payment_types and not set(self.payment_types) & set(receipt.payment_types):
            return f"no payment of type {', '.join(self.payment_types)}"
        if self.contains is not None:
            goods = self.contains
            qty = amount = 0
            for line in receipt.lines:
                if goods.matches(line):
                    qty += line.qty_milli
                    amount += line.amount_minor
            if qty < self.contains_qty_milli:
                return f"receipt holds {qty} of the required goods, needs {self.contains_qty_milli}"
            worth = self.contains_amount_minor
            if worth is not None and amount < worth:
                return f"the required goods are worth {money(amount)}, below {money(worth)}"
        return None


def parse_schedule(reader: FieldReader) -> Schedule:
    """Read the optional ``schedule`` object of a rule document."""
    sub = reader.child("schedule")
    if sub is None:
        return Schedule()
    date_from = sub.date_("from")
    date_to = sub.date_("to")
    if date_from is not None and date_to is not None and date_to < date_from:
        sub.problem(
            "to", f"ends before 'from' {date_from.isoformat()}, got {date_to.isoformat()!r}"
        )
    days: set[int] = set()
    for i, day in enumerate(sub.list_("days_of_week", [])):
        days.add(sub.check_int(f"days_of_week[{i}]", day, min_value=1, max_value=7))
    if sub.has("days_of_week") and not days:
        sub.problem("days_of_week", "expected a non-empty list of ISO weekdays 1..7, got []")
    hours: tuple[int, int] | None = None
    if sub.has("hours"):
        raw = sub.list_("hours")
        if len(raw) != 2:
            sub.problem("hours", f"expected [start_hour, end_hour], got {raw!r}")
        else:
            start = sub.check_int("hours[0]", raw[0], min_value=0, max_value=23)
            end = sub.check_int("hours[1]", raw[1], min_value=0, max_value=24)
            if start == end:
                sub.problem("hours", f"expected start_hour != end_hour, got {raw!r}")
            hours = (start, end)
    month_days: set[int] = set()
    for i, day in enumerate(sub.list_("days_of_month", [])):
        month_days.add(sub.check_int(f"days_of_month[{i}]", day, min_value=1, max_value=31))
    return Schedule(date_from, date_to, tuple(sorted(days)), hours, tuple(sorted(month_days)))


def parse_place(reader: FieldReader) -> Place:
    """Read the optional ``place`` object of a rule document."""
    sub = reader.child("place")
    if sub is None:
        return Place()
    return Place(
        stores=sub.str_list("stores"),
        formats=_folded(sub.str_list("formats")),
        exclude_stores=sub.str_list("exclude_stores"),
        exclude_formats=_folded(sub.str_list("exclude_formats")),
        regions=_folded(sub.str_list("regions")),
        exclude_regions=_folded(sub.str_list("exclude_regions")),
    )


def _folded(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({name.casefold() for name in names}))


def parse_audience(reader: FieldReader) -> Audience:
    """Read the customer and receipt conditions of a rule document."""
    attributes: list[tuple[str, str]] = []
    sub = reader.child("attributes")
    if sub is not None:
        for name in sorted(sub.doc):
            attributes.append((name, sub.str_(name)))
    counters: list[tuple[str, int]] = []
    sub = reader.child("counters_at_least")
    if sub is not None:
        for name in sorted(sub.doc):
            counters.append((name, sub.int_(name, min_value=0) or 0))
    contains = parse_goods(reader, "contains") if reader.has("contains") else None
    contains_amount = reader.int_("contains_amount_minor", None, min_value=1)
    if contains_amount is not None and contains is None:
        reader.problem("contains_amount_minor", "needs 'contains' (the goods it sums)")
    return Audience(
        requires_card=reader.bool_("requires_card", False),
        segments=reader.str_list("segments"),
        tiers=reader.str_list("tiers"),
        attributes=tuple(attributes),
        min_subtotal_minor=reader.int_("min_subtotal_minor", None, min_value=0),
        payment_types=reader.str_list("payment_types"),
        contains=contains,
        contains_qty_milli=reader.int_("contains_qty_milli", 1, min_value=1) or 1,
        contains_amount_minor=contains_amount,
        counters_at_least=tuple(counters),
    )
