"""What the register prints and shows: receipt with loyalty section, coupons, display frames.

Pure: sale + what the register knew -> printers.Slip / display lines, in Russian or English.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from loyalty_engine import Calculation
from printers import Barcode, Feed, QRCode, Row, Rule, Slip, Text
from sync_protocol import Sale

__all__ = [
    "LABELS",
    "WALLET_LABELS",
    "Coupon",
    "LoyaltySummary",
    "WalletMoves",
    "accrued_message",
    "coupon_slip",
    "coupons_of",
    "display_item",
    "display_total",
    "loyalty_summary",
    "money",
    "receipt_slip",
]

LABELS: dict[str, dict[str, str]] = {
    "ru": {
        "store": "Магазин",
        "register": "Касса",
        "receipt": "Чек",
        "total": "ИТОГО",
        "discount": "Скидка",
        "loyalty": "Программа лояльности",
        "card": "Карта",
        "before": "Баланс до",
        "accrued": "Начислено",
        "spent": "Списано",
        "after": "Баланс после",
        "pending": "Ожидает с",
        "expires": "Сгорает",
        "accrued_msg": "Начислено {n} бонусов",
        "coupon": "КУПОН",
        "valid_until": "Действует до",
        "coupon_text": "Предъявите купон при следующей покупке",
        "bonus": "Бонусами",
        "cash": "Наличные",
        "card_payment": "Банковская карта",
        "welcome": "Добро пожаловать",
        "certificate": "Сертификат",
        "certificate_left": "Остаток на сертификате",
    },
    "en": {
        "store": "Store",
        "register": "Register",
        "receipt": "Receipt",
        "total": "TOTAL",
        "discount": "Discount",
        "loyalty": "Loyalty programme",
        "card": "Card",
        "before": "Balance before",
        "accrued": "Earned",
        "spent": "Spent",
        "after": "Balance after",
        "pending": "Pending from",
        "expires": "Expires",
        "accrued_msg": "You earned {n} bonuses",
        "coupon": "COUPON",
        "valid_until": "Valid until",
        "coupon_text": "Show this coupon on your next visit",
        "bonus": "Bonuses",
        "cash": "Cash",
        "card_payment": "Bank card",
        "welcome": "Welcome",
        "certificate": "Gift certificate",
        "certificate_left": "Left on the certificate",
    },
}


WALLET_LABELS: dict[str, dict[str, str]] = {
    "ru": {
        "stickers": "Наклейки",
        "chips": "Фишки",
        "compliments": "Комплименты",
        "draw": "Участия в розыгрыше",
        "draw_entries": "Участия в розыгрыше",
        "entries": "Участия в розыгрыше",
    },
    "en": {
        "stickers": "Stickers",
        "chips": "Chips",
        "compliments": "Compliments",
        "draw": "Draw entries",
        "draw_entries": "Draw entries",
        "entries": "Draw entries",
    },
}
"""How a wallet other than bonus is named on the slip (an unknown one by its own name)."""

BONUS_WALLETS = frozenset({"bonus", ""})
"""The money-like wallet (minor units, shown as 200.77); every other one counts units."""


def money(minor: int) -> str:
    """Minor units as '1234.50' (sign kept)."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def _qty(qty_milli: int) -> str:
    whole, milli = divmod(qty_milli, 1000)
    return str(whole) if milli == 0 else f"{whole}.{milli:03d}"


def _date(at: datetime) -> str:
    return at.strftime("%d.%m.%Y")


@dataclass(frozen=True, slots=True)
class Coupon:
    """A coupon to print: its code, the rule that issued it, and until when it is valid."""

    code: str
    rule_id: str
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class WalletMoves:
    """What a sale added to and took from one wallet other than bonus, in its own units."""

    wallet: str
    accrued: int = 0
    spent: int = 0


@dataclass(frozen=True, slots=True)
class LoyaltySummary:
    """The loyalty section of one receipt: the bonus wallet in minor units, like money, and
    every other wallet (stickers, draw entries, ...) on its own, never added into bonus."""

    card_no: str
    balance_before: int
    accrued: int
    spent: int
    pending: tuple[tuple[int, datetime], ...] = ()
    expiring: tuple[tuple[int, datetime], ...] = ()
    wallets: tuple[WalletMoves, ...] = ()

    @property
    def balance_after(self) -> int:
        return self.balance_before - self.spent + self.accrued


def loyalty_summary(sale: Sale, balance_before: int) -> LoyaltySummary | None:
    """The loyalty section from the sale's movements; bonus accruals active later are
    'pending'; other wallets are summed each on its own."""
    if sale.card_no is None:
        return None
    accrued = spent = 0
    pending: list[tuple[int, datetime]] = []
    expiring: list[tuple[int, datetime]] = []
    others: dict[str, WalletMoves] = {}
    for move in sale.loyalty:
        if move.wallet not in BONUS_WALLETS:
            held = others.get(move.wallet, WalletMoves(move.wallet))
            if move.kind == "spend":
                held = replace(held, spent=held.spent + move.amount)
            elif move.kind == "accrue":
                held = replace(held, accrued=held.accrued + move.amount)
            others[move.wallet] = held
            continue
        if move.kind == "spend":
            spent += move.amount
        elif move.kind == "accrue":
            if move.active_from is not None and move.active_from > sale.closed_at:
                pending.append((move.amount, move.active_from))
            else:
                accrued += move.amount
            if move.expires_at is not None:
                expiring.append((move.amount, move.expires_at))
    return LoyaltySummary(
        sale.card_no,
        balance_before,
        accrued,
        spent,
        tuple(pending),
        tuple(expiring),
        tuple(others[wallet] for wallet in sorted(others)),
    )


def coupons_of(calculation: Calculation) -> tuple[Coupon, ...]:
    """The coupons the engine issued on this receipt."""
    return tuple(Coupon(c.code, c.rule_id, c.valid_until) for c in calculation.coupons_issued)


def receipt_slip(
    sale: Sale,
    *,
    loyalty: LoyaltySummary | None = None,
    language: str = "ru",
    names: Mapping[str, str] | None = None,
    titles: Mapping[str, str] | None = None,
    certificates: Mapping[str, int] | None = None,
) -> Slip:
    """The receipt: lines with discounts (named by the promotion's title, from ``titles``:
    promotion id -> title), totals, payments, loyalty section with each wallet on its own
    lines, slip messages. A certificate payment is its own line with its code, and the balance
    left on it (``certificates``: code -> minor units) below."""
    t = LABELS[language]
    names = names or {}
    titles = titles or {}
    blocks: list[Text | Row | Rule | Feed] = [
        Text(f"{t['store']} {sale.store_id}", align="center", bold=True),
        Text(f"{t['register']} {sale.register_id}  {t['receipt']} {sale.seq}", align="center"),
        Text(sale.closed_at.strftime("%d.%m.%Y %H:%M UTC"), align="center"),
        Rule(),
    ]
    for line in sale.lines:
        if line.qty_milli != 1000 or line.weighed:
            blocks.append(Text(names.get(line.product_id, line.product_id)))
            blocks.append(
                Row(
                    f"  {_qty(line.qty_milli)} x {money(line.unit_price_minor)}",
                    money(line.amount_minor),
                )
            )
        else:
            blocks.append(
                Row(names.get(line.product_id, line.product_id), money(line.amount_minor))
            )
        for discount in line.discounts:
            title = titles.get(discount.rule_id, "").strip()
            label = title or f"{t['discount']} {discount.rule_id}"
            blocks.append(Row(f"  {label}", money(-discount.amount_minor)))
    blocks += [
        Rule(),
        Text(f"{t['total']} {money(sale.total_minor)}", align="right", bold=True, double=True),
    ]
    names = {"cash": t["cash"], "card": t["card_payment"], "bonus": t["bonus"]}
    for p in sale.payments:
        if p.method == "certificate" and p.code:
            blocks.append(Row(f"{t['certificate']} {p.code}", money(p.amount_minor)))
            left = (certificates or {}).get(p.code)
            if left is not None:
                blocks.append(Row(f"  {t['certificate_left']}", money(left)))
        else:
            blocks.append(Row(names.get(p.method, p.method), money(p.amount_minor)))
    if loyalty is not None:
        blocks += [
            Rule("="),
            Text(t["loyalty"], align="center", bold=True),
            Row(t["card"], loyalty.card_no),
            Row(t["before"], money(loyalty.balance_before)),
            Row(t["accrued"], money(loyalty.accrued)),
            Row(t["spent"], money(loyalty.spent)),
            Row(t["after"], money(loyalty.balance_after), bold=True),
        ]
        blocks += [Row(f"{t['pending']} {_date(at)}", money(n)) for n, at in loyalty.pending]
        blocks += [Row(f"{t['expires']} {_date(at)}", money(n)) for n, at in loyalty.expiring]
        labels = WALLET_LABELS[language]
        for moves in loyalty.wallets:
            label = labels.get(moves.wallet, moves.wallet)
            if moves.accrued:
                blocks.append(Row(f"{label}: {t['accrued'].lower()}", f"+{moves.accrued}"))
            if moves.spent:
                blocks.append(Row(f"{label}: {t['spent'].lower()}", f"-{moves.spent}"))
        earned = loyalty.accrued + sum(n for n, _ in loyalty.pending)
        if earned:
            blocks.append(Text(t["accrued_msg"].format(n=money(earned))))
    if sale.messages:
        blocks.append(Rule())
        blocks += [Text(message) for message in sale.messages]
    blocks.append(Feed(1))
    return Slip(tuple(blocks))


def coupon_slip(
    coupon: Coupon, *, language: str = "ru", titles: Mapping[str, str] | None = None
) -> Slip:
    """A coupon for the next visit: text, the issuing promotion's title (its id without one),
    validity, EAN-13 when the code is 12-13 digits (CODE128 otherwise, when printable ASCII),
    and a QR code of the code; the printer sizes the codes to its paper."""
    t = LABELS[language]
    title = (titles or {}).get(coupon.rule_id, "").strip()
    blocks: list[Text | Row | Barcode | QRCode | Feed] = [
        Text(t["coupon"], align="center", bold=True, double=True),
        Text(t["coupon_text"], align="center"),
        Text(title or coupon.rule_id, align="center"),
    ]
    if coupon.valid_until is not None:
        blocks.append(Row(t["valid_until"], _date(coupon.valid_until)))
    code = coupon.code
    if code.isascii() and code.isdigit() and len(code) in (12, 13):
        blocks.append(Barcode(code, "EAN13"))
    elif code.isascii() and code.isprintable() and 0 < len(code) <= 80:
        blocks.append(Barcode(code, "CODE128"))
    blocks += [QRCode(code), Text(code, align="center"), Feed(1)]
    return Slip(tuple(blocks))


def display_item(
    label: str, qty_milli: int, unit_price_minor: int, amount_minor: int
) -> tuple[str, str]:
    """Two 20-column lines for an item just added."""
    second = money(amount_minor)
    if qty_milli != 1000:
        left = f"{_qty(qty_milli)}x{money(unit_price_minor)}"
        second = left + second.rjust(max(1, 20 - len(left)))
    return label[:20], second.rjust(20)


def display_total(total_minor: int, language: str = "ru") -> tuple[str, str]:
    """The total on the display."""
    t = LABELS[language]
    return t["total"], money(total_minor).rjust(20)


def accrued_message(loyalty: LoyaltySummary | None, language: str = "ru") -> str | None:
    """'Начислено 35 бонусов' when the card earned something."""
    if loyalty is None:
        return None
    earned = loyalty.accrued + sum(n for n, _ in loyalty.pending)
    return LABELS[language]["accrued_msg"].format(n=money(earned)) if earned else None
