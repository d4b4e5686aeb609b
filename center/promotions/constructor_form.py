"""The constructor's form, pure: which fields a rule document has (common ones, and each kind's
reward), the form's text values to and from a document, and a document path's form field.

Fields are named by their path in the document (`schedule.hours`, `limits.max_discount_minor`,
`goods.categories`), so the engine's problems land next to the field they name. Money and bonus
amounts are typed in major units (`1 234,56`) and stored in minor units; quantities in units
(`1,5`) and stored in milli-units. Every check of a rule stays the engine's (`check_doc`): this
module only turns text into JSON values and says which text it could not read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "BOOL_CHOICES",
    "KINDS",
    "SECTIONS",
    "STACKING_CHOICES",
    "Field",
    "Section",
    "doc_from_form",
    "field_for",
    "form_fields",
    "form_values",
    "kind_fields",
    "parse_major",
    "sample_lines",
]


def N_(text: str) -> str:
    """Mark a label for the catalogues; the template translates it."""
    return text


@dataclass(frozen=True, slots=True)
class Field:
    """One input of the form: its document path, how its text is read, its label."""

    name: str
    type: str
    """text, area, int, rate, money, bonus, units, bool, list, ints, weekdays, hours, date,
    choice, json, steps, rates, pairs, pair_lists, int_pairs"""
    label: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    """A group of fields shown together under a heading."""

    key: str
    title: str
    fields: tuple[Field, ...]


BOOL_CHOICES = ("", "yes", "no")
STACKING_CHOICES = ("", "compound", "additive", "best", "exclusive")
_GOODS_KEYS = ("products", "departments", "categories", "types", "brands")


def _goods(prefix: str, what: str) -> tuple[Field, ...]:
    include = {
        "products": N_("products"),
        "departments": N_("departments"),
        "categories": N_("categories"),
        "types": N_("types"),
        "brands": N_("brands"),
    }
    exclude = {
        "products": N_("except products"),
        "departments": N_("except departments"),
        "categories": N_("except categories"),
        "types": N_("except types"),
        "brands": N_("except brands"),
    }
    # The hint once, on the first of the group: the rest read as its continuation.
    return tuple(
        Field(f"{prefix}.{k}", "list", include[k], what if k == "products" else "")
        for k in _GOODS_KEYS
    ) + tuple(Field(f"{prefix}.exclude_{k}", "list", exclude[k]) for k in _GOODS_KEYS)


_GOODS_HINT = N_("Goods the reward applies to (empty: every line)")
_CONTAINS_HINT = N_("The receipt must contain these goods")

SECTIONS: tuple[Section, ...] = (
    Section(
        "general",
        N_("Promotion"),
        (
            Field("title", "text", N_("Name")),
            Field("description", "area", N_("Description")),
            Field("priority", "int", N_("Priority"), N_("lower applies first; 100 by default")),
            Field("stacking", "choice", N_("Stacking with other discounts")),
        ),
    ),
    Section(
        "schedule",
        N_("Schedule"),
        (
            Field("schedule.from", "date", N_("From"), N_("first day, e.g. 2026-12-01")),
            Field("schedule.to", "date", N_("To"), N_("last day, inclusive")),
            Field("schedule.days_of_month", "ints", N_("Days of month"), N_("e.g. 1, 15")),
            Field("schedule.days_of_week", "weekdays", N_("Days of week")),
            Field("schedule.hours", "hours", N_("Hours"), N_("e.g. 9-18; 22-6 wraps midnight")),
            Field("limits.max_fires_per_day", "int", N_("At most times per day per customer")),
            Field("limits.max_fires_per_month", "int", N_("At most times per month per customer")),
            Field("limits.max_fires_total", "int", N_("At most times per customer, ever")),
        ),
    ),
    Section(
        "place",
        N_("Place"),
        (
            Field("place.stores", "list", N_("Stores"), N_("empty: every store")),
            Field("place.exclude_stores", "list", N_("Except stores")),
            Field("place.formats", "list", N_("Store formats"), N_("empty: every format")),
            Field("place.exclude_formats", "list", N_("Except formats")),
            Field("place.regions", "list", N_("Regions"), N_("empty: every region")),
            Field("place.exclude_regions", "list", N_("Except regions")),
        ),
    ),
    Section(
        "customer",
        N_("Customer profile"),
        (
            Field("requires_card", "bool", N_("Card holders only")),
            Field("segments", "list", N_("Segments"), N_("empty: every customer")),
            Field("tiers", "list", N_("Tiers")),
            Field("attributes", "pairs", N_("Attributes"), N_("one per line: name = value")),
            Field(
                "counters_at_least",
                "int_pairs",
                N_("Counters at least"),
                N_("one per line, e.g. purchases = 3"),
            ),
        ),
    ),
    Section(
        "receipt",
        N_("Receipt conditions"),
        (
            Field("min_subtotal_minor", "money", N_("Receipt subtotal at least")),
            Field("payment_types", "list", N_("Payment types"), N_("e.g. card, cash")),
            *_goods("contains", _CONTAINS_HINT),
            Field("contains_qty_milli", "units", N_("Quantity of those goods at least")),
            Field("contains_amount_minor", "money", N_("Amount of those goods at least")),
        ),
    ),
    Section(
        "restrictions",
        N_("Automatic restrictions"),
        (
            Field("limits.max_discount_minor", "money", N_("Maximum discount per receipt")),
            Field("limits.max_accrual_minor", "money", N_("Maximum accrual per receipt")),
            Field("limits.max_qty_per_day_milli", "units", N_("Promo quantity per day")),
            Field("limits.max_qty_per_month_milli", "units", N_("Promo quantity per month")),
            Field("funding.by", "text", N_("Funded by"), N_("chain or supplier:<id>")),
            Field("funding.budget_minor", "money", N_("Budget")),
        ),
    ),
    Section(
        "messages",
        N_("Messages"),
        (
            Field(
                "messages.slip", "text", N_("On the slip"), N_("placeholders: {amount}, {percent}")
            ),
            Field("messages.cashier", "text", N_("To the cashier")),
            Field("messages.display", "text", N_("On the customer display")),
        ),
    ),
)

_WALLET = Field("wallet", "text", N_("Wallet"), N_("bonus, stickers, chips, ..."))
_DELAY = Field("delay_days", "int", N_("Credited after (days)"))
_LIFE_DAYS = Field("lifetime_days", "int", N_("Burns after (days)"))
_LIFE_MONTHS = Field("lifetime_months", "int", N_("Burns after (months)"))
_CREDIT = (_WALLET, _DELAY, _LIFE_DAYS, _LIFE_MONTHS)
_ON_BONUS = Field("accrue_on_bonus_paid", "bool", N_("Accrue on the part paid with bonus"))
_AFTER_BONUS = Field(
    "accrue_after_bonus_payment", "bool", N_("Accrue on a receipt paid with bonus")
)
_PERCENT = Field("percent", "rate", N_("Percent"))
_POINTS = Field("points", "int", N_("Points (units of the wallet)"))
_BONUS = Field("bonus", "bonus", N_("Bonus (in major units)"))
_GOODS = _goods("goods", _GOODS_HINT)
_MIN_TOTAL = Field("min_total_minor", "money", N_("Receipt total at least"))
_PER_AMOUNT = Field("per_amount_minor", "money", N_("Per amount spent"))

KINDS: dict[str, tuple[str, tuple[Field, ...]]] = {
    "accrual_percent": (
        N_("Bonus percent of the receipt"),
        (
            _PERCENT,
            _MIN_TOTAL,
            Field("max_total_minor", "money", N_("Receipt total below")),
            *_CREDIT,
            _ON_BONUS,
            _AFTER_BONUS,
            *_GOODS,
        ),
    ),
    "accrual_per_amount": (
        N_("Points per amount spent"),
        (_PER_AMOUNT, _BONUS, _POINTS, *_CREDIT, _ON_BONUS, _AFTER_BONUS, *_GOODS),
    ),
    "accrual_per_unit": (
        N_("Points per unit bought"),
        (
            _POINTS,
            Field("max_points", "int", N_("At most points per receipt")),
            *_CREDIT,
            _AFTER_BONUS,
            *_GOODS,
        ),
    ),
    "favourite_categories": (
        N_("Extra percent on favourite categories"),
        (
            _PERCENT,
            Field(
                "choices",
                "pair_lists",
                N_("Categories offered"),
                N_("one per line: segment (or *) = category, category"),
            ),
            Field("max_categories", "int", N_("Categories a customer may choose")),
            *_CREDIT,
            _AFTER_BONUS,
        ),
    ),
    "counter_reward": (
        N_("Reward on the n-th purchase"),
        (
            Field("counter", "text", N_("Counter"), N_("e.g. purchases")),
            Field("at", "int", N_("When the counter reaches")),
            Field("every", "int", N_("Every n-th")),
            _BONUS,
            _POINTS,
            *_CREDIT,
            _AFTER_BONUS,
        ),
    ),
    "compliment_accrual": (
        N_("Compliments per amount spent"),
        (
            _PER_AMOUNT,
            Field("weekly_cap", "int", N_("At most per week")),
            _WALLET,
            Field("week_counter", "text", N_("Week counter")),
            _LIFE_DAYS,
            _LIFE_MONTHS,
            Field("credit_weekday", "int", N_("Credited on weekday (1 = Monday)")),
            _AFTER_BONUS,
        ),
    ),
    "referral_reward": (
        N_("Reward for a referred customer"),
        (
            _BONUS,
            _POINTS,
            Field("counter", "text", N_("Counter"), N_("e.g. purchases")),
            _MIN_TOTAL,
            *_CREDIT,
            _AFTER_BONUS,
        ),
    ),
    "prize_draw": (
        N_("Prize draw entries"),
        (
            Field("draw_id", "text", N_("Draw")),
            _PER_AMOUNT,
            Field("entries", "int", N_("Entries per step")),
            Field("max_entries", "int", N_("At most entries per receipt")),
            _WALLET,
            _ON_BONUS,
            _AFTER_BONUS,
            *_GOODS,
        ),
    ),
    "issue_coupon": (
        N_("Issue a coupon"),
        (
            Field("prefix", "text", N_("Code prefix")),
            _MIN_TOTAL,
            Field("valid_days", "int", N_("Valid for (days)")),
            _AFTER_BONUS,
        ),
    ),
    "threshold_discount": (
        N_("Discount from a receipt subtotal"),
        (
            Field(
                "steps",
                "steps",
                N_("Steps"),
                N_("one per line: from subtotal = percent % or amount, e.g. 1 000 = 5 %"),
            ),
        ),
    ),
    "goods_discount": (
        N_("Discount on goods"),
        (
            _PERCENT,
            Field("amount_off_minor", "money", N_("Amount off per unit")),
            Field("fixed_price_minor", "money", N_("Fixed price per unit")),
            Field("min_qty_milli", "units", N_("Quantity at least")),
            *_GOODS,
        ),
    ),
    "ladder": (
        N_("Ladder: the n-th unit cheaper"),
        (
            Field("steps", "rates", N_("Percent per unit"), N_("e.g. 0, 10, 20")),
            Field("repeat_last", "bool", N_("Repeat the last step")),
            *_GOODS,
        ),
    ),
    "buy_get": (
        N_("Buy n, get m"),
        (
            Field("buy", "int", N_("Buy")),
            Field("get", "int", N_("Get")),
            _PERCENT,
            Field("per_product", "bool", N_("Per product")),
            *_GOODS,
        ),
    ),
    "set_price": (
        N_("Set price"),
        (
            Field(
                "components",
                "json",
                N_("Components"),
                N_('JSON, e.g. [{"goods": {"products": ["A"]}, "qty": 1}]'),
            ),
            Field("price_minor", "money", N_("Price of the set")),
        ),
    ),
    "personal_offers": (
        N_("Personal offers"),
        (Field("max_percent", "rate", N_("At most percent")), *_GOODS),
    ),
    "compliment_redeem": (
        N_("Compliment: goods at their floor price"),
        (
            _WALLET,
            Field("default_cap", "int", N_("Units per pass")),
            Field(
                "product_caps",
                "int_pairs",
                N_("Units per pass by product"),
                N_("one per line: product = units"),
            ),
            Field("min_unit_price_minor", "money", N_("Lowest unit price")),
            Field("max_discount_percent", "rate", N_("At most percent off")),
            Field("pass_days", "int", N_("Pass lasts (days)")),
            *_GOODS,
        ),
    ),
    "wallet_exchange": (
        N_("Exchange wallet units for a discount"),
        (_WALLET, Field("value_minor", "money", N_("Value of one unit")), *_GOODS),
    ),
    "restriction": (
        N_("Restriction on other discounts"),
        (
            Field("promotions", "list", N_("Promotions covered"), N_("empty: every discount")),
            Field("max_discount_percent", "rate", N_("Maximum discount share (percent)")),
            Field("max_discount_minor", "money", N_("Maximum discount amount")),
            Field("max_grants_per_day", "int", N_("At most grants per day")),
            Field("max_grants_per_month", "int", N_("At most grants per month")),
        ),
    ),
    "coupon": (
        N_("Coupon"),
        (
            Field("codes", "list", N_("Codes")),
            Field("signed_prefix", "text", N_("Signed code prefix")),
            Field("batch_prefix", "text", N_("Batch code prefix")),
            Field("multi_use", "bool", N_("Multi-use")),
            _PERCENT,
            Field("amount_minor", "money", N_("Amount off")),
            _BONUS,
            _WALLET,
            *_GOODS,
        ),
    ),
    "price_floor": (
        N_("Price floor"),
        (
            Field("min_unit_price_minor", "money", N_("Lowest unit price")),
            Field("max_discount_percent", "rate", N_("At most percent off")),
            *_GOODS,
        ),
    ),
}
"""Every kind of the engine: its label and its reward fields."""


def kind_fields(kind: str) -> tuple[Field, ...]:
    """The reward fields of a kind (none for an unknown one)."""
    return KINDS.get(kind, ("", ()))[1]


def form_fields(kind: str) -> tuple[Field, ...]:
    """Every field of a kind's form: the common sections, then the reward."""
    return tuple(f for s in SECTIONS for f in s.fields) + kind_fields(kind)


# -- text to values ------------------------------------------------------------------------------

_SPACES = re.compile(r"[\s\u00a0\u202f']+")


class _Bad(ValueError):
    """Text a field cannot read: the message says what was expected."""


def _decimal(text: str) -> Decimal:
    cleaned = _SPACES.sub("", text).replace(",", ".")
    if not re.fullmatch(r"-?\d+(\.\d+)?", cleaned) or len(cleaned) > 30:
        raise _Bad(N_("expected a number such as 1 234,56"))
    try:
        return Decimal(cleaned)
    except InvalidOperation as exc:
        raise _Bad(N_("expected a number such as 1 234,56")) from exc


def parse_major(text: str, exponent: int = 2) -> int:
    """'1 234,56' -> 123456 (minor units); refuses more decimals than the currency has."""
    amount = _decimal(text).scaleb(exponent)
    if amount != amount.to_integral_value():
        raise _Bad(N_("too many decimal places for the currency"))
    return int(amount)


def _int(text: str) -> int:
    cleaned = _SPACES.sub("", text)
    if not re.fullmatch(r"-?\d{1,15}", cleaned):
        raise _Bad(N_("expected a whole number"))
    return int(cleaned)


def _rate(text: str) -> str:
    value = _decimal(text.strip().removesuffix("%"))
    return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)


def _list(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;\n]", text) if part.strip()]


def _lines(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise _Bad(N_("expected one 'name = value' per line"))
        out.append((name.strip(), value.strip()))
    return out


def _value(field: Field, text: str, exponent: int) -> Any:
    kind = field.type
    if kind in ("text", "area", "choice", "date"):
        return text
    if kind == "int":
        return _int(text)
    if kind == "rate":
        return _rate(text)
    if kind == "money":
        return parse_major(text, exponent)
    if kind == "bonus":
        parse_major(text, exponent)
        return _SPACES.sub("", text).replace(",", ".")
    if kind == "units":
        return parse_major(text, 3)
    if kind == "bool":
        if text not in ("yes", "no"):
            raise _Bad(N_("expected yes or no"))
        return text == "yes"
    if kind == "list":
        return _list(text)
    if kind in ("ints", "weekdays"):
        return [_int(part) for part in _list(text)]
    if kind == "hours":
        start, sep, end = text.replace("–", "-").partition("-")
        if not sep:
            raise _Bad(N_("expected hours as start-end, e.g. 9-18"))
        return [_int(start), _int(end)]
    if kind == "rates":
        return [_rate(part) for part in _list(text)]
    if kind == "pairs":
        return dict(_lines(text))
    if kind == "int_pairs":
        return {name: _int(value) for name, value in _lines(text)}
    if kind == "pair_lists":
        return {name: _list(value) for name, value in _lines(text)}
    if kind == "steps":
        steps = []
        for name, value in _lines(text):
            step: dict[str, Any] = {"min_total_minor": parse_major(name, exponent)}
            if value.endswith("%"):
                step["percent"] = _rate(value)
            else:
                step["amount_minor"] = parse_major(value, exponent)
            steps.append(step)
        return steps
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise _Bad(N_("expected JSON")) from exc
    raise AssertionError(kind)


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    head, dot, rest = path.partition(".")
    if not dot:
        doc[head] = value
        return
    sub = doc.setdefault(head, {})
    _put(sub, rest, value)


def doc_from_form(
    values: Mapping[str, str], kind: str, exponent: int = 2
) -> tuple[dict[str, Any], dict[str, str]]:
    """A rule document from the form's text (empty fields left out, so the engine's default
    applies), and {field: why} for the text that could not be read."""
    doc: dict[str, Any] = {"kind": kind}
    if values.get("promotion_id", "").strip():
        doc["promotion_id"] = values["promotion_id"].strip()
    errors: dict[str, str] = {}
    for field in form_fields(kind):
        text = values.get(field.name, "")
        if field.type not in ("area", "text"):
            text = text.strip()
        if text.strip() == "":
            continue
        try:
            _put(doc, field.name, _value(field, text, exponent))
        except _Bad as exc:
            errors[field.name] = str(exc)
    return doc, errors


# -- values to text ------------------------------------------------------------------------------


def _major(minor: int, exponent: int, comma: bool) -> str:
    text = format(Decimal(minor).scaleb(-exponent), "f")
    whole, _, frac = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    digits = whole.lstrip("-")
    grouped = f"{int(digits):,}".replace(",", " ") if digits else "0"
    frac = frac.rstrip("0") if exponent == 3 else frac
    return sign + grouped + ((("," if comma else ".") + frac) if frac else "")


def _text(field: Field, value: Any, exponent: int, comma: bool) -> str:
    kind = field.type
    if value is None:
        return ""
    if kind == "money" and isinstance(value, int):
        return _major(value, exponent, comma)
    if kind == "units" and isinstance(value, int):
        return _major(value, 3, comma)
    if kind == "bonus":
        return str(value).replace(".", ",") if comma else str(value)
    if kind == "rate":
        return str(value).replace(".", ",") if comma else str(value)
    if kind == "bool" and isinstance(value, bool):
        return "yes" if value else "no"
    if kind in ("list", "ints", "weekdays", "rates") and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if kind == "hours" and isinstance(value, list) and len(value) == 2:
        return f"{value[0]}-{value[1]}"
    if kind in ("pairs", "int_pairs") and isinstance(value, dict):
        return "\n".join(f"{k} = {v}" for k, v in value.items())
    if kind == "pair_lists" and isinstance(value, dict):
        return "\n".join(
            f"{k} = {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in value.items()
        )
    if kind == "steps" and isinstance(value, list):
        out = []
        for step in value:
            if not isinstance(step, dict):
                continue
            low = _major(int(step.get("min_total_minor", 0)), exponent, comma)
            if "percent" in step:
                out.append(f"{low} = {str(step['percent']).replace('.', ',' if comma else '.')} %")
            else:
                out.append(f"{low} = {_major(int(step.get('amount_minor', 0)), exponent, comma)}")
        return "\n".join(out)
    if kind == "json" or isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _get(doc: Mapping[str, Any], path: str) -> Any:
    head, dot, rest = path.partition(".")
    value = doc.get(head)
    if not dot:
        return value
    return _get(value, rest) if isinstance(value, Mapping) else None


def form_values(doc: Mapping[str, Any], exponent: int = 2, language: str = "en") -> dict[str, str]:
    """The form's text for a stored document, amounts in major units as the language writes."""
    kind = str(doc.get("kind", ""))
    comma = language == "ru"
    values = {"kind": kind, "promotion_id": str(doc.get("promotion_id", ""))}
    for field in form_fields(kind):
        values[field.name] = _text(field, _get(doc, field.name), exponent, comma)
    return values


def field_for(path: str, kind: str) -> str:
    """The form field a problem's document path belongs to ('' for the form as a whole):
    `steps[1].percent` -> `steps`, `components[0].goods` -> `components`."""
    names = {f.name for f in form_fields(kind)} | {"promotion_id", "kind"}
    path = path.removeprefix("body.")
    base = path.split("[", 1)[0]
    while base:
        if base in names:
            return base
        base = base.rpartition(".")[0]
    return ""


def sample_lines(text: str, exponent: int = 2) -> tuple[list[dict[str, Any]], str]:
    """The preview's sample lines, one per line `product ; quantity ; unit price`
    (price in major units), as the API's receipt lines; or an error to show."""
    lines: list[dict[str, Any]] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        parts = [p.strip() for p in raw.split(";")]
        if len(parts) != 3 or not parts[0]:
            return [], N_("expected one 'product ; quantity ; price' per line")
        try:
            qty = parse_major(parts[1], 3)
            price = parse_major(parts[2], exponent)
        except _Bad as exc:
            return [], str(exc)
        lines.append({"product_id": parts[0], "qty_milli": qty, "unit_price_minor": price})
    if not lines:
        return [], N_("expected one 'product ; quantity ; price' per line")
    return lines, ""
