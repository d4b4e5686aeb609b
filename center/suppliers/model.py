"""The supplier cabinet's pure rules: audiences, campaigns, the control group, the account's
balances, group-size masking and the campaign report's figures. No I/O.

A supplier sees aggregates only: every count of customers it is shown passes through `masked`,
which hides a group smaller than MIN_GROUP_SIZE as "< N".
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from center.errors import InvalidRequest, MalformedRequest
from center.promotions.segments import Bounds, Rule, Window
from sync_protocol import Sale

__all__ = [
    "ACCOUNT_KINDS",
    "AUDIENCE_FIELDS",
    "CAMPAIGN_STATES",
    "DEFAULT_CONTROL_PERCENT",
    "DEFAULT_WINDOW_DAYS",
    "MAX_CAMPAIGN_DAYS",
    "MAX_TOP_UP_MINOR",
    "MIN_GROUP_SIZE",
    "AccountEntry",
    "Audience",
    "CampaignFigures",
    "CampaignInput",
    "account_balances",
    "campaign_figures",
    "estimate_window",
    "masked",
    "parse_audience",
    "parse_campaign",
    "parse_supplier",
    "parse_top_up",
    "promotion_doc",
    "promotion_id_of",
    "simulation_doc",
    "split_control",
    "supplier_funding",
]

MIN_GROUP_SIZE = 10
"""The smallest group of customers a supplier is shown a count or aggregate of."""
DEFAULT_WINDOW_DAYS = 90
MAX_WINDOW_DAYS = 730
MAX_CAMPAIGN_DAYS = 92
"""The longest campaign: the estimate prices as many days of history (a what-if run's bound)."""
DEFAULT_CONTROL_PERCENT = 10
MAX_CONTROL_PERCENT = 50
MAX_TOP_UP_MINOR = 10**13
MAX_LIST = 200
CAMPAIGN_STATES = ("draft", "launching", "live", "finished")
ACCOUNT_KINDS = ("top_up", "reserve", "spend", "release")
"""Entries of a supplier's account: money in; money held for a campaign at its launch; what the
campaign gave (taken from the held money); what it left unspent, given back when it ends."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
_ITEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/&'+-]{0,79}$")


def masked(count: int, minimum: int = MIN_GROUP_SIZE) -> int | str:
    """`count`, or "< minimum" when the group is smaller than a supplier may be shown."""
    return count if count >= minimum else f"< {minimum}"


def _object(body: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedRequest(field, f"expected a JSON object, got {type(body).__name__}")
    return body


def _no_extra(doc: Mapping[str, Any], field: str, known: Iterable[str]) -> None:
    extra = sorted(set(doc) - set(known))
    if extra:
        raise InvalidRequest(f"{field}.{extra[0]}", f"unknown field; expected one of {list(known)}")


def _int(doc: Mapping[str, Any], name: str, field: str, low: int, high: int) -> int | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(
            f"{field}.{name}", f"expected an integer {low}..{high}, got {value!r:.80}"
        )
    return value


def _probability(doc: Mapping[str, Any], name: str, field: str) -> float | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidRequest(f"{field}.{name}", f"expected 0..1, got {value!r:.80}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidRequest(f"{field}.{name}", f"expected a number 0..1, got {value!r:.80}")
    return float(value)


def _items(doc: Mapping[str, Any], name: str, field: str) -> tuple[str, ...]:
    value = doc.get(name)
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):  # a form's comma-separated text
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise InvalidRequest(f"{field}.{name}", f"expected a list of at most {MAX_LIST} names")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _ITEM.match(item):
            raise InvalidRequest(f"{field}.{name}[{i}]", f"expected a name, got {item!r:.80}")
    return tuple(dict.fromkeys(value))


def _money(doc: Mapping[str, Any], name: str, field: str) -> int | None:
    return _int(doc, name, field, 0, 10**12)


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a campaign targets, by analytic parameters over the last `window_days` (all hold)."""

    window_days: int = DEFAULT_WINDOW_DAYS
    stores: tuple[str, ...] = ()
    """Visited any of these stores."""
    min_receipts: int | None = None
    """Purchase frequency: at least this many receipts."""
    min_avg_receipt_minor: int | None = None
    max_avg_receipt_minor: int | None = None
    brands: tuple[str, ...] = ()
    """Bought any of these brands (favourite brands)."""
    categories: tuple[str, ...] = ()
    """Bought any of these categories (category affinity)."""
    segments: tuple[str, ...] = ()
    """Member of any of the chain's segments."""
    churn_min: float | None = None
    churn_max: float | None = None
    """The churn model's latest risk within these bounds."""

    def to_doc(self) -> dict[str, Any]:
        """The canonical JSON form (what parse_audience reads back to an equal Audience)."""
        doc: dict[str, Any] = {"window_days": self.window_days}
        for name in ("stores", "brands", "categories", "segments"):
            if getattr(self, name):
                doc[name] = list(getattr(self, name))
        for name in (
            "min_receipts",
            "min_avg_receipt_minor",
            "max_avg_receipt_minor",
            "churn_min",
            "churn_max",
        ):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        return doc

    def segment_rule(self) -> Rule | None:
        """The parts a segment rule expresses (center/promotions/segments.py), or None."""
        days = self.window_days
        churn = None
        if self.churn_min is not None or self.churn_max is not None:
            churn = Bounds(self.churn_min, self.churn_max)
        rule = Rule(
            frequency=None if self.min_receipts is None else Window(days, self.min_receipts),
            categories=Window(days, values=self.categories) if self.categories else None,
            stores=Window(days, values=self.stores) if self.stores else None,
            churn_risk=churn,
        )
        return None if rule == Rule() else rule


AUDIENCE_FIELDS = (
    "window_days",
    "stores",
    "min_receipts",
    "min_avg_receipt_minor",
    "max_avg_receipt_minor",
    "brands",
    "categories",
    "segments",
    "churn_min",
    "churn_max",
)


def parse_audience(body: Any, field: str = "audience") -> Audience:
    """Validate an audience's parameters; InvalidRequest naming the offending field. An empty
    audience is every customer with a card."""
    doc = _object(body if body is not None else {}, field)
    _no_extra(doc, field, AUDIENCE_FIELDS)
    low = _money(doc, "min_avg_receipt_minor", field)
    high = _money(doc, "max_avg_receipt_minor", field)
    if low is not None and high is not None and high < low:
        raise InvalidRequest(f"{field}.max_avg_receipt_minor", f"{high} is below the minimum {low}")
    churn_min = _probability(doc, "churn_min", field)
    churn_max = _probability(doc, "churn_max", field)
    if churn_min is not None and churn_max is not None and churn_max < churn_min:
        raise InvalidRequest(f"{field}.churn_max", f"{churn_max} is below churn_min {churn_min}")
    return Audience(
        window_days=_int(doc, "window_days", field, 1, MAX_WINDOW_DAYS) or DEFAULT_WINDOW_DAYS,
        stores=_items(doc, "stores", field),
        min_receipts=_int(doc, "min_receipts", field, 1, 10_000),
        min_avg_receipt_minor=low,
        max_avg_receipt_minor=high,
        brands=_items(doc, "brands", field),
        categories=_items(doc, "categories", field),
        segments=_items(doc, "segments", field),
        churn_min=churn_min,
        churn_max=churn_max,
    )


@dataclass(frozen=True, slots=True)
class CampaignInput:
    """A validated campaign: goods, period, discount, audience, the control group's share."""

    name: str
    product_ids: tuple[str, ...]
    percent: str
    date_from: date
    date_to: date
    audience: Audience
    control_percent: int = DEFAULT_CONTROL_PERCENT
    brands: tuple[str, ...] = field(default=())

    def to_doc(self) -> dict[str, Any]:
        """JSON form, as stored and shown."""
        return {
            "name": self.name,
            "product_ids": list(self.product_ids),
            "brands": list(self.brands),
            "percent": self.percent,
            "date_from": self.date_from.isoformat(),
            "date_to": self.date_to.isoformat(),
            "audience": self.audience.to_doc(),
            "control_percent": self.control_percent,
        }

    @property
    def days(self) -> int:
        """Days the campaign runs, both ends included."""
        return (self.date_to - self.date_from).days + 1


CAMPAIGN_FIELDS = (
    "name",
    "product_ids",
    "brands",
    "percent",
    "date_from",
    "date_to",
    "audience",
    "control_percent",
)


def _date(doc: Mapping[str, Any], name: str) -> date:
    value = doc.get(name)
    if not isinstance(value, str) or len(value) > 10:
        raise InvalidRequest(f"body.{name}", f"expected a date YYYY-MM-DD, got {value!r:.80}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"body.{name}", f"expected a date YYYY-MM-DD, got {value!r}") from None


def _percent(value: Any) -> str:
    text = (
        str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    )
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = Decimal(-1)
    if not text or not number.is_finite() or not Decimal(1) <= number <= Decimal(90):
        raise InvalidRequest("body.percent", f"expected a discount of 1..90 %, got {value!r:.80}")
    if number.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidRequest("body.percent", f"expected at most 2 decimals, got {value!r:.80}")
    return format(number.normalize(), "f")


def parse_campaign(body: Any, today: date) -> CampaignInput:
    """Validate a campaign; InvalidRequest naming the field. A period must not end before
    `today` and lasts at most MAX_CAMPAIGN_DAYS."""
    doc = _object(body, "body")
    _no_extra(doc, "body", CAMPAIGN_FIELDS)
    name = doc.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 120:
        raise InvalidRequest("body.name", f"expected 1..120 characters, got {name!r:.80}")
    products = _items(doc, "product_ids", "body")
    brands = _items(doc, "brands", "body")
    if not products and not brands:
        raise InvalidRequest("body.product_ids", "name the goods: product ids or brands")
    date_from, date_to = _date(doc, "date_from"), _date(doc, "date_to")
    if date_to < date_from:
        raise InvalidRequest("body.date_to", "expected a day on or after date_from")
    if date_to < today:
        raise InvalidRequest("body.date_to", f"the period ended before today ({today})")
    if (date_to - date_from).days + 1 > MAX_CAMPAIGN_DAYS:
        raise InvalidRequest("body.date_to", f"expected at most {MAX_CAMPAIGN_DAYS} days")
    control = _int(doc, "control_percent", "body", 0, MAX_CONTROL_PERCENT)
    return CampaignInput(
        name=name.strip(),
        product_ids=products,
        percent=_percent(doc.get("percent")),
        date_from=date_from,
        date_to=date_to,
        audience=parse_audience(doc.get("audience"), "body.audience"),
        control_percent=DEFAULT_CONTROL_PERCENT if control is None else control,
        brands=brands,
    )


def parse_supplier(body: Any) -> tuple[str, str]:
    """(supplier_id, name) of POST /v1/suppliers."""
    doc = _object(body, "body")
    _no_extra(doc, "body", ("supplier_id", "name"))
    supplier_id = doc.get("supplier_id")
    if not isinstance(supplier_id, str) or not _ID.match(supplier_id):
        raise InvalidRequest(
            "body.supplier_id", f"expected 1..40 letters, digits or ._-, got {supplier_id!r:.80}"
        )
    name = doc.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise InvalidRequest("body.name", f"expected 1..200 characters, got {name!r:.80}")
    return supplier_id, name.strip()


def parse_top_up(body: Any) -> tuple[int, str]:
    """(amount_minor, note) of a top-up: a positive integer of minor units."""
    doc = _object(body, "body")
    _no_extra(doc, "body", ("amount_minor", "note"))
    amount = _int(doc, "amount_minor", "body", 1, MAX_TOP_UP_MINOR)
    if amount is None:
        raise InvalidRequest("body.amount_minor", "required: a positive integer of minor units")
    note = doc.get("note", "")
    if not isinstance(note, str) or len(note) > 500:
        raise InvalidRequest("body.note", "expected at most 500 characters")
    return amount, note


def promotion_id_of(campaign_id: str) -> str:
    """The promotion a campaign launches as."""
    return f"sup-{campaign_id}"


def supplier_funding(supplier_id: str, budget_minor: int) -> dict[str, Any]:
    """The promotion's `funding` of a supplier's campaign."""
    return {"by": f"supplier:{supplier_id}", "budget_minor": budget_minor}


def _goods(campaign: CampaignInput) -> dict[str, Any]:
    goods: dict[str, Any] = {}
    if campaign.product_ids:
        goods["products"] = list(campaign.product_ids)
    if campaign.brands:
        goods["brands"] = list(campaign.brands)
    return goods


def simulation_doc(campaign_id: str, campaign: CampaignInput) -> dict[str, Any]:
    """The campaign's discount as a rule priced on the audience's stored receipts: no segment
    (the receipts are already the audience's) and no budget (the estimate is what it would
    cost uncapped), no schedule (history lies outside the period)."""
    return {
        "promotion_id": promotion_id_of(campaign_id),
        "title": f"{campaign.name} (скидка от поставщика)",
        "kind": "goods_discount",
        "goods": _goods(campaign),
        "percent": campaign.percent,
        "requires_card": True,
    }


def promotion_doc(
    campaign_id: str,
    supplier_id: str,
    campaign: CampaignInput,
    segment_id: str,
    budget_minor: int,
) -> dict[str, Any]:
    """The supplier-funded promotion a campaign launches as: its goods, percent and period, the
    audience's segment, the supplier's funding with the budget."""
    return {
        **simulation_doc(campaign_id, campaign),
        "segments": [segment_id],
        "schedule": {"from": campaign.date_from.isoformat(), "to": campaign.date_to.isoformat()},
        "funding": supplier_funding(supplier_id, budget_minor),
    }


def estimate_window(campaign: CampaignInput, now: datetime) -> tuple[date, date]:
    """The days of history the estimate prices: as many as the campaign lasts, ending
    yesterday (a whole day)."""
    end = now.date() - timedelta(days=1)
    return end - timedelta(days=campaign.days - 1), end


def split_control(
    customer_ids: Iterable[str], percent: int, seed: str
) -> tuple[list[str], list[str]]:
    """(treated, control): a random `percent` of the audience held out, seeded by the campaign
    (the same audience and seed give the same split)."""
    members = sorted(set(customer_ids))
    random.Random(seed).shuffle(members)
    held = len(members) * percent // 100
    return sorted(members[held:]), sorted(members[:held])


@dataclass(frozen=True, slots=True)
class AccountEntry:
    """One row of a supplier's account (append-only)."""

    kind: str
    available_minor: int
    reserved_minor: int
    campaign_id: str = ""


def account_balances(entries: Iterable[AccountEntry]) -> dict[str, int]:
    """available (free to launch with), reserved (held by live campaigns), spent, topped_up."""
    available = reserved = spent = topped = 0
    for e in entries:
        available += e.available_minor
        reserved += e.reserved_minor
        if e.kind == "spend":
            spent -= e.reserved_minor
        elif e.kind == "top_up":
            topped += e.available_minor
    return {
        "available_minor": available,
        "reserved_minor": reserved,
        "spent_minor": spent,
        "topped_up_minor": topped,
    }


@dataclass(slots=True)
class CampaignFigures:
    """What a launched campaign gave, from its booked sales (spend and reach) and every
    audience member's purchases (for the control comparison)."""

    spend_minor: int = 0
    receipts: int = 0
    units_milli: int = 0
    customers: set[str] = field(default_factory=set)
    revenue_by_card: dict[str, int] = field(default_factory=dict)

    def to_dict(self, minimum: int = MIN_GROUP_SIZE) -> dict[str, Any]:
        """What a supplier is shown: customer counts masked below `minimum`."""
        return {
            "spend_minor": self.spend_minor,
            "receipts": self.receipts,
            "units_milli": self.units_milli,
            "customers": masked(len(self.customers), minimum),
        }


def campaign_figures(sales: Iterable[Sale], promotion_id: str) -> CampaignFigures:
    """Sum the promotion's discounts, receipts, units and card holders over `sales`, and each
    card's spend (total after discounts) on any receipt."""
    figures = CampaignFigures()
    for sale in sales:
        if sale.card_no:
            figures.revenue_by_card[sale.card_no] = (
                figures.revenue_by_card.get(sale.card_no, 0) + sale.total_minor
            )
        given = 0
        units = 0
        for line in sale.lines:
            mine = sum(d.amount_minor for d in line.discounts if d.rule_id == promotion_id)
            if mine:
                given += mine
                units += line.qty_milli
        if given:
            figures.spend_minor += given
            figures.receipts += 1
            figures.units_milli += units
            if sale.card_no:
                figures.customers.add(sale.card_no)
    return figures
