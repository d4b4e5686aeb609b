"""The promotions constructor's pure part: checking documents, diffing them, previewing them.

A document is a loyalty_engine rule document (plus a `description` for people, never
published) without its `status`: the constructor owns the
lifecycle (draft, active, archived) and writes `"status": "active"` into the copy it publishes.
Every problem is reported with the path of its field inside the document (`steps[1].percent`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from center.errors import InvalidRequest, MalformedRequest
from center.feed.loaders import SETTINGS as CHAIN_SETTINGS
from center.promotions.validation import Known, check_known
from loyalty_engine import SETTINGS as ENGINE_SETTINGS
from loyalty_engine import (
    EngineError,
    Receipt,
    ReceiptLine,
    RuleError,
    amount_for_quantity,
    calculate,
    load_promotion_set,
)

__all__ = [
    "CENTER_ONLY_SETTINGS",
    "LIFECYCLE",
    "MAX_PREVIEW_LINES",
    "Problem",
    "Sample",
    "SampleLine",
    "check_doc",
    "diff_docs",
    "new_promotion_id",
    "parse_sample",
    "prepare_doc",
    "preview",
    "published_doc",
    "require_valid",
    "sample_receipt",
]

CENTER_ONLY_SETTINGS = frozenset(CHAIN_SETTINGS) - ENGINE_SETTINGS
"""Chain settings the Center and its other tiers read, never the engine (no rule sees them)."""

LIFECYCLE = ("draft", "active", "archived")
MAX_PREVIEW_LINES = 200
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# "promotion 'X': path: why" or "promotion #0: path: why" (loyalty_engine.fields.FieldReader).
_OWNER = re.compile(r"^promotion (?:'[^']*'|\"[^\"]*\"|#\d+): ")
_MAX_QTY_MILLI = 10**9
_MAX_PRICE_MINOR = 10**12
# The minor-unit field the previous release's engine reads for a `bonus` in major units, by kind
# (its registers skip `bonus` as an unknown field, then refuse the rule or credit 1 point).
_LEGACY_BONUS = {
    "coupon": "bonus_points",
    "accrual_per_amount": "points",
    "accrual_per_unit": "points",
    "counter_reward": "points",
    "referral_reward": "points",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document: the field's path inside it and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def new_promotion_id() -> str:
    """A fresh promotion id for a document that names none."""
    return f"promo-{uuid.uuid4().hex[:12]}"


def published_doc(
    doc: Mapping[str, Any], settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The copy of a document written to the master `promotions` table (status `active`), with
    the minor-unit twin of a `bonus` in major units that registers of the previous release read."""
    # The description is for people at head office: registers never see it.
    out = {k: v for k, v in doc.items() if k != "description"}
    out["status"] = "active"
    legacy = _LEGACY_BONUS.get(str(doc.get("kind", "")))
    minor = _minor_units(doc.get("bonus"), settings)
    if legacy and minor is not None and legacy not in doc:
        out[legacy] = minor
    return out


def _minor_units(value: Any, settings: Mapping[str, Any] | None) -> int | None:
    """'200.00' as 20000 with the chain's currency exponent; None unless a whole minor amount
    above 0 (the engine reports anything else when it checks the document)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > 40:
        return None
    try:
        exponent = int(str((settings or {}).get("currency_exponent", "2")))
        amount = Decimal(str(value).strip()).scaleb(exponent)
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount < 1 or amount != amount.to_integral_value():
        return None
    return int(amount)


def _problem(text: str) -> Problem:
    rest = _OWNER.sub("", text, count=1)
    field, sep, message = rest.partition(": ")
    if not sep or " " in field:
        return Problem("", rest)
    if field == "settings":
        # "settings: max_discount_shares: unknown setting": the field is the setting.
        name, sep, why = message.partition(": ")
        if sep and " " not in name:
            return Problem(f"settings.{name}", why)
    return Problem(field, message)


def check_doc(
    doc: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    known: Known | None = None,
) -> tuple[list[Problem], list[str]]:
    """Every problem the engine finds in one document with the chain settings (an unknown
    field or setting is one), and against the managed lists in ``known``; and warnings, e.g.
    a rule that can never fire. Each names the field."""
    description = doc.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 4000):
        return [
            Problem(
                "description", f"expected text of at most 4000 characters, got {description!r:.80}"
            )
        ], []
    if settings:
        # The Center's own chain settings (offline allowances, leases, the console's language)
        # are not the engine's: only the engine's and unknown names are checked with the rule.
        settings = {k: v for k, v in settings.items() if k not in CENTER_ONLY_SETTINGS}
    try:
        found = load_promotion_set(
            [published_doc(doc, settings)], version=0, settings=settings, exact=True
        )
    except RuleError as exc:
        return [_problem(p) for p in exc.problems], []
    warnings = [str(_problem(w)) for w in found.warnings]
    if not found.promotions:
        return [], warnings
    problems, more = check_known(found.promotions[0], doc, known or Known())
    return [Problem(field, why) for field, why in problems], warnings + more


def require_valid(
    doc: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    known: Known | None = None,
) -> None:
    """Raise InvalidRequest naming the first bad field and listing every problem."""
    problems, _ = check_doc(doc, settings, known)
    if problems:
        first, rest = problems[0], problems[1:]
        message = "; ".join([first.message, *(str(p) for p in rest)])
        raise InvalidRequest(first.field or "body", message)


def prepare_doc(body: Any, promotion_id: str | None = None) -> dict[str, Any]:
    """A submitted document made ready to store: an object, its id given or generated (and
    equal to `promotion_id` when the path names one), no lifecycle `status`."""
    if not isinstance(body, dict):
        raise MalformedRequest("body", f"expected a rule document (JSON object), got {body!r:.80}")
    doc = dict(body)
    status = doc.pop("status", None)
    if status not in (None, "draft"):
        raise InvalidRequest(
            "status", f"expected 'draft' or nothing (use activate / archive), got {status!r:.80}"
        )
    given = doc.get("promotion_id")
    if promotion_id is not None:
        if given is not None and given != promotion_id:
            raise InvalidRequest(
                "promotion_id", f"expected {promotion_id!r} (the path's), got {given!r:.80}"
            )
        given = promotion_id
    elif given is None:
        given = new_promotion_id()
    if not isinstance(given, str) or not _ID.match(given):
        raise InvalidRequest(
            "promotion_id", f"expected 1..64 letters, digits or ._:- , got {given!r:.80}"
        )
    doc["promotion_id"] = given
    return doc


_ABSENT: Any = object()


def diff_docs(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Every changed leaf between two JSON values: `{"field", "old", "new"}` (null when absent),
    fields as paths (`steps[1].percent`), in a stable order."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            out.extend(diff_docs(before.get(key, _ABSENT), after.get(key, _ABSENT), sub))
        return out
    if isinstance(before, list) and isinstance(after, list):
        out = []
        for i in range(max(len(before), len(after))):
            old = before[i] if i < len(before) else _ABSENT
            new = after[i] if i < len(after) else _ABSENT
            out.extend(diff_docs(old, new, f"{path}[{i}]"))
        return out
    # 1 == 1.0 == True in Python, but a changed JSON type is a change.
    if before is after or (type(before) is type(after) and before == after):
        return []
    return [
        {
            "field": path,
            "old": None if before is _ABSENT else before,
            "new": None if after is _ABSENT else after,
        }
    ]


# -- preview -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleLine:
    """One line of a sample receipt; empty attributes are looked up from the master products."""

    product_id: str
    qty_milli: int
    unit_price_minor: int
    department: str = ""
    category: str = ""
    brand: str = ""
    type: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    """A sample receipt to preview a draft with."""

    lines: tuple[SampleLine, ...]
    now: datetime | None = None
    store_id: str = ""
    store_format: str = ""
    card_no: str | None = None
    segment: str = ""
    bonus_balance: int = 0
    bonus_to_spend: int = 0
    coupon_codes: tuple[str, ...] = ()
    with_live: bool = False


def _int(
    data: Mapping[str, Any], key: str, where: str, *, low: int, high: int, default: Any
) -> Any:
    value = data.get(key, default)
    if value is default and key not in data:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(
            f"{where}{key}", f"expected an integer {low}..{high}, got {value!r:.80}"
        )
    return value


def _text(data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{where}{key}", "required")
        return ""
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidRequest(f"{where}{key}", f"expected a string, got {value!r:.80}")
    return value


def parse_sample(body: Any) -> Sample:
    """`{"receipt": {"lines": [{"product_id", "qty_milli", "unit_price_minor", ...}], ...},
    "with_live"?: bool}` -> Sample, naming the bad field (`body.receipt.lines[0].qty_milli`)."""
    if not isinstance(body, dict):
        raise MalformedRequest("body", f"expected a JSON object, got {body!r:.80}")
    receipt = body.get("receipt")
    if not isinstance(receipt, dict):
        raise InvalidRequest("body.receipt", f"expected an object, got {receipt!r:.80}")
    with_live = body.get("with_live", False)
    if not isinstance(with_live, bool):
        raise InvalidRequest("body.with_live", f"expected true or false, got {with_live!r:.80}")
    raw_lines = receipt.get("lines")
    if not isinstance(raw_lines, list) or not 1 <= len(raw_lines) <= MAX_PREVIEW_LINES:
        raise InvalidRequest(
            "body.receipt.lines", f"expected a list of 1..{MAX_PREVIEW_LINES} lines"
        )
    lines: list[SampleLine] = []
    for i, raw in enumerate(raw_lines):
        where = f"body.receipt.lines[{i}]."
        if not isinstance(raw, dict):
            raise InvalidRequest(where[:-1], f"expected an object, got {raw!r:.80}")
        lines.append(
            SampleLine(
                product_id=_text(raw, "product_id", where, required=True),
                qty_milli=_int(raw, "qty_milli", where, low=1, high=_MAX_QTY_MILLI, default=1000),
                unit_price_minor=_int(
                    raw, "unit_price_minor", where, low=0, high=_MAX_PRICE_MINOR, default=None
                ),
                department=_text(raw, "department", where),
                category=_text(raw, "category", where),
                brand=_text(raw, "brand", where),
                type=_text(raw, "type", where),
            )
        )
        if lines[-1].unit_price_minor is None:
            raise InvalidRequest(f"{where}unit_price_minor", "required")
    where = "body.receipt."
    now: datetime | None = None
    if receipt.get("now") is not None:
        text = _text(receipt, "now", where)
        try:
            now = datetime.fromisoformat(text)
        except ValueError:
            now = None
        if now is None or now.tzinfo is None:
            raise InvalidRequest(
                f"{where}now", f"expected an ISO 8601 time with its offset, got {text!r:.80}"
            )
        now = now.astimezone(UTC)
    codes = receipt.get("coupon_codes", [])
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise InvalidRequest(f"{where}coupon_codes", "expected a list of strings")
    card = _text(receipt, "card_no", where) or _text(receipt, "card", where)
    return Sample(
        lines=tuple(lines),
        now=now,
        store_id=_text(receipt, "store_id", where),
        store_format=_text(receipt, "store_format", where),
        card_no=card or None,
        segment=_text(receipt, "segment", where),
        bonus_balance=_int(
            receipt, "bonus_balance", where, low=0, high=_MAX_PRICE_MINOR, default=0
        ),
        bonus_to_spend=_int(
            receipt, "bonus_to_spend", where, low=0, high=_MAX_PRICE_MINOR, default=0
        ),
        coupon_codes=tuple(codes),
        with_live=with_live,
    )


def sample_receipt(
    sample: Sample,
    *,
    products: Mapping[str, Mapping[str, str]],
    store_format: str,
    now: datetime,
) -> Receipt:
    """The engine receipt of a sample; attributes the sample leaves empty come from `products`."""
    lines = []
    for no, line in enumerate(sample.lines, 1):
        known = products.get(line.product_id, {})
        lines.append(
            ReceiptLine(
                line_no=no,
                product_id=line.product_id,
                qty_milli=line.qty_milli,
                unit_price_minor=line.unit_price_minor,
                amount_minor=amount_for_quantity(line.qty_milli, line.unit_price_minor),
                department=line.department or known.get("department", ""),
                category=line.category or known.get("category", ""),
                brand=line.brand or known.get("brand", ""),
                type=line.type or known.get("type", ""),
            )
        )
    return Receipt(
        lines=tuple(lines),
        now=sample.now or now,
        store_id=sample.store_id,
        store_format=sample.store_format or store_format,
        card_no=sample.card_no,
        segment=sample.segment,
        bonus_balance=sample.bonus_balance,
        receipt_id="preview",
        coupon_codes=sample.coupon_codes,
    )


def preview(
    doc: Mapping[str, Any],
    sample: Sample,
    *,
    products: Mapping[str, Mapping[str, str]],
    store_format: str = "",
    settings: Mapping[str, Any] | None = None,
    live: Iterable[tuple[str, Mapping[str, Any]]] = (),
    version: int = 0,
    now: datetime,
) -> dict[str, Any]:
    """Price the sample with the draft (as if active), alone or instead of its live version
    among the live set; the engine's calculation plus the draft's own share of it."""
    require_valid(doc, settings)
    docs: list[Mapping[str, Any]] = [published_doc(doc, settings)]
    skipped: list[str] = []
    if sample.with_live:
        for promotion_id, live_doc in live:
            if promotion_id == doc["promotion_id"]:
                continue
            try:
                load_promotion_set([live_doc], version=0, settings=settings, strict=False)
            except RuleError as exc:
                # The registers could not load such a row either; say so, price without it.
                skipped.append(
                    f"live promotion {promotion_id!r} skipped: {'; '.join(exc.problems)}"
                )
                continue
            docs.append(live_doc)
    # Live rows of kinds this engine does not know are skipped (listed in the warnings).
    promotions = load_promotion_set(docs, version=version, settings=settings, strict=False)
    receipt = sample_receipt(sample, products=products, store_format=store_format, now=now)
    try:
        calc = calculate(receipt, promotions, bonus_to_spend=sample.bonus_to_spend)
    except EngineError as exc:
        raise InvalidRequest("body.receipt", str(exc)) from exc
    rule = str(doc["promotion_id"])
    own_discount = sum(
        d.amount_minor for ln in calc.lines for d in ln.discounts if d.rule_id == rule
    )
    own_accrual = sum(a.amount for a in calc.accruals if a.rule_id == rule)
    return {
        "promotion_id": rule,
        "with_live": sample.with_live,
        "promotion": {"discount_minor": own_discount, "accrual": own_accrual},
        "warnings": [*skipped, *promotions.warnings],
        "calculation": calc.to_dict(),
    }
