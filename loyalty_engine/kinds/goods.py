"""Rewards on goods: percent / amount / fixed price, ladders, buy X get Y, sets, personal
offers, compliment redemption, and price floors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from types import MappingProxyType

from ..fields import FieldReader
from ..goods import GoodsSelector, parse_goods
from ..model import ComplimentPass, ReceiptLine
from ..money import allocate, amount_for_quantity, percent_of
from .base import Context, Kind, Outcome
from .common import n, pct, units

__all__ = [
    "BUY_GET",
    "COMPLIMENT_REDEEM",
    "GOODS_DISCOUNT",
    "LADDER",
    "PERSONAL_OFFERS",
    "PRICE_FLOOR",
    "SET_PRICE",
    "WALLET_EXCHANGE",
    "BuyGet",
    "ComplimentRedeem",
    "GoodsDiscount",
    "Ladder",
    "PersonalOffers",
    "PriceFloor",
    "SetPrice",
    "WalletExchange",
]

_HUNDRED = Decimal(100)


def _all_lines(ctx: Context, goods: GoodsSelector) -> list[int]:
    return goods.matching(ctx.receipt.lines)


def _outcome(
    ctx: Context,
    detail: str,
    shares: list[int],
    values: dict[str, str] | None = None,
    *,
    qty: list[int] | None = None,
    touched: list[int] | None = None,
) -> Outcome:
    """Applied with ``shares`` per line; ``qty``: per line the milli-units discounted (default:
    the whole line wherever a share is given)."""
    amount = sum(shares) if touched is None else sum([shares[i] for i in touched])
    if amount <= 0:
        return Outcome.skip(f"{detail}: nothing to discount")
    return Outcome(
        applied=True,
        detail=f"{detail} = {ctx.money(amount)}",
        amount=amount,
        # The rule's own list, never changed after (no copy per rule per receipt).
        line_discounts=shares,
        values=values or {},
        qty_milli=tuple(qty) if qty is not None else (),
        touched=touched,
    )


_NO_VALUES: Mapping[str, str] = MappingProxyType({})


def _exact_rate(percent: Decimal | None) -> tuple[int, int] | None:
    """``percent`` % as an exact ratio (numerator, denominator), or ``None`` for the checked
    path of ``percent_of`` (no percent, or not a finite Decimal)."""
    if type(percent) is not Decimal or not percent.is_finite():
        return None
    numerator, denominator = percent.as_integer_ratio()
    return numerator, denominator * 100


@dataclass(frozen=True, slots=True)
class GoodsDiscount:
    """``percent`` off, ``amount_off_minor`` off per unit, or a ``fixed_price_minor`` per unit."""

    goods: GoodsSelector
    percent: Decimal | None = None
    amount_off_minor: int | None = None
    fixed_price_minor: int | None = None
    min_qty_milli: int = 0

    # Computed once (``__post_init__``): the most frequent rule of a dense receipt pays for its
    # rate's ratio, percent text and message values at load, not per line per receipt.
    rate: tuple[int, int] | None = field(init=False, repr=False, compare=False, default=None)
    values: Mapping[str, str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _exact_rate(self.percent))
        if self.percent is not None:
            object.__setattr__(self, "values", MappingProxyType({"percent": pct(self.percent)}))

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Discount every matching line."""
        hits = ctx.lines_of(self.goods)
        if not hits:
            return Outcome.skip("no matching goods")
        lines = ctx.receipt.lines
        if self.min_qty_milli:
            qty = sum(lines[i].qty_milli for i in hits)
            if qty < self.min_qty_milli:
                return Outcome.skip(f"quantity {n(qty)} below {n(self.min_qty_milli)} milli-units")
        remaining = ctx.remaining
        shares = [0] * len(remaining)
        touched = []
        amount = 0
        percent, off, fixed, rate = (
            self.percent,
            self.amount_off_minor,
            self.fixed_price_minor,
            self.rate,
        )
        if rate is not None:
            # percent_of, inline: exact ratio, rounded half to even once per line.
            numerator, denominator = rate
            for i in hits:
                share, remainder = divmod(remaining[i] * numerator, denominator)
                twice = 2 * remainder
                if twice > denominator or (twice == denominator and share % 2 == 1):
                    share += 1
                if share:
                    shares[i] = share
                    touched.append(i)
                    amount += share
        elif percent is None and type(off if off is not None else fixed) is int:
            # amount_for_quantity, inline: per unit times milli-units, rounded half to even.
            per_unit = off if off is not None else fixed or 0
            for i in hits:
                base = remaining[i]
                line_amount, remainder = divmod(lines[i].qty_milli * per_unit, 1000)
                if remainder > 500 or (remainder == 500 and line_amount % 2 == 1):
                    line_amount += 1
                share = min(base, line_amount) if off is not None else max(0, base - line_amount)
                if share:
                    shares[i] = share
                    touched.append(i)
                    amount += share
        else:
            for i in hits:
                base = remaining[i]
                if percent is not None:
                    share = percent_of(base, percent)
                elif off is not None:
                    share = min(base, amount_for_quantity(lines[i].qty_milli, off))
                else:
                    share = max(0, base - amount_for_quantity(lines[i].qty_milli, fixed or 0))
                if share:
                    shares[i] = share
                    touched.append(i)
                    amount += share
        if percent is not None:
            what = f"{pct(percent)} % off {len(hits)} line(s)"
        elif off is not None:
            what = f"{ctx.money(off)} off per unit on {len(hits)} line(s)"
        else:
            what = f"price {ctx.money(fixed or 0)} per unit on {len(hits)} line(s)"
        if amount <= 0:
            return Outcome.skip(f"{what}: nothing to discount")
        return Outcome(
            applied=True,
            detail=f"{what} = {ctx.money(amount)}",
            amount=amount,
            # The rule's own list, never changed after (no copy per rule per receipt).
            line_discounts=shares,
            values=self.values or _NO_VALUES,
            touched=touched,
        )


def _parse_goods_discount(reader: FieldReader) -> GoodsDiscount:
    goods = parse_goods(reader)
    given = [k for k in ("percent", "amount_off_minor", "fixed_price_minor") if reader.has(k)]
    if len(given) != 1:
        reader.problem(
            "percent",
            f"expected exactly one of percent, amount_off_minor, fixed_price_minor, got {given}",
        )
    percent = (
        reader.decimal("percent", low=Decimal(0), high=_HUNDRED) if "percent" in given else None
    )
    return GoodsDiscount(
        goods=goods,
        percent=percent,
        amount_off_minor=reader.int_("amount_off_minor", None, min_value=0),
        fixed_price_minor=reader.int_("fixed_price_minor", None, min_value=0),
        min_qty_milli=reader.int_("min_qty_milli", 0, min_value=0) or 0,
    )


@dataclass(frozen=True, slots=True)
class Ladder:
    """The k-th whole unit of the same product gets ``steps[k-1]`` % off (last step repeats)."""

    goods: GoodsSelector
    steps: tuple[Decimal, ...]
    repeat_last: bool = True

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Walk the units of each product in receipt order, each getting its step."""
        lines = ctx.receipt.lines
        by_product: dict[str, list[int]] = {}
        for i in ctx.lines_of(self.goods):
            by_product.setdefault(lines[i].product_id, []).append(i)
        shares = [0] * len(ctx.remaining)
        qty = [0] * len(ctx.remaining)
        last = len(self.steps) - 1
        for indexes in by_product.values():
            k = 0
            for i in indexes:
                # The line's units take the next steps; their rates add up and the line's
                # discount is rounded once (a per-unit rounding drifts a kopeck per few units).
                rate = Decimal(0)
                for _ in range(lines[i].qty_milli // 1000):
                    if k > last and not self.repeat_last:
                        break
                    step = self.steps[min(k, last)]
                    rate += step
                    if step:
                        qty[i] += 1000
                    k += 1
                if rate:
                    shares[i] = percent_of(lines[i].unit_price_minor, rate)
        steps = "/".join(pct(s) for s in self.steps)
        return _outcome(ctx, f"ladder {steps} % on {len(by_product)} product(s)", shares, qty=qty)


def _parse_ladder(reader: FieldReader) -> Ladder:
    goods = parse_goods(reader)
    raw = reader.list_("steps")
    if reader.has("steps") and not raw:
        reader.problem("steps", "expected at least one percent, got []")
    steps = []
    for i, value in enumerate(raw):
        sub = reader.child(f"steps[{i}]", {"percent": value})
        if sub is not None:
            steps.append(sub.decimal("percent", low=Decimal(0), high=_HUNDRED))
    return Ladder(goods, tuple(steps) or (Decimal(0),), reader.bool_("repeat_last", True))


@dataclass(frozen=True, slots=True)
class BuyGet:
    """Buy ``buy`` get ``get`` at ``percent`` % off (100: free), cheapest units, repeated."""

    goods: GoodsSelector
    buy: int
    get: int
    percent: Decimal = _HUNDRED
    per_product: bool = False

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """The cheapest ``fires * get`` units are rewarded, ``fires = units // (buy + get)``."""
        lines = ctx.receipt.lines
        groups: dict[str, list[int]] = {}
        for i in ctx.lines_of(self.goods):
            groups.setdefault(lines[i].product_id if self.per_product else "", []).append(i)
        shares = [0] * len(ctx.remaining)
        qty = [0] * len(ctx.remaining)
        prices = [0] * len(ctx.remaining)
        fires = 0
        for indexes in groups.values():
            pool = sorted(units(lines, indexes), key=lambda u: (-u[0], u[1]))
            times = len(pool) // (self.buy + self.get)
            fires += times
            for price, i in pool[len(pool) - times * self.get :] if times else ():
                qty[i] += 1000
                prices[i] = price
        # Rounded once per line: the line's rewarded units together.
        for i, units_milli in enumerate(qty):
            if units_milli:
                shares[i] = percent_of(prices[i] * (units_milli // 1000), self.percent)
        if not fires:
            return Outcome.skip(f"fewer than {self.buy + self.get} matching units")
        return _outcome(
            ctx,
            f"buy {self.buy} get {self.get} at {pct(self.percent)} % off, {fires} time(s)",
            shares,
            qty=qty,
        )


def _parse_buy_get(reader: FieldReader) -> BuyGet:
    return BuyGet(
        goods=parse_goods(reader),
        buy=reader.int_("buy", min_value=1, max_value=1000) or 1,
        get=reader.int_("get", 1, min_value=1, max_value=1000) or 1,
        percent=reader.decimal("percent", low=Decimal(0), high=_HUNDRED, default=_HUNDRED),
        per_product=reader.bool_("per_product", False),
    )


@dataclass(frozen=True, slots=True)
class SetPrice:
    """Mix and match: ``qty`` units of each component together cost ``price_minor``."""

    components: tuple[tuple[GoodsSelector, int], ...]
    price_minor: int

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """The first component's keys: without one of its goods no set can be made."""
        return self.components[0][0].index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Build sets from the dearest units while every component can be filled."""
        lines = ctx.receipt.lines
        pools: list[list[tuple[int, int, int]]] = []
        for goods, _ in self.components:
            pool = [
                (lines[i].unit_price_minor, i, u)
                for i in _all_lines(ctx, goods)
                for u in range(lines[i].qty_milli // 1000)
            ]
            pool.sort(key=lambda unit: (-unit[0], unit[1], unit[2]))
            pools.append(pool)
        # A unit is (line index, unit number) and goes into one set only.
        claimed: set[tuple[int, int]] = set()
        chosen: list[tuple[int, int]] = []
        sets = 0
        while True:
            picked: list[tuple[int, int, int]] = []
            taken: set[tuple[int, int]] = set()
            for c, (_, qty) in enumerate(self.components):
                free = [
                    u for u in pools[c] if (u[1], u[2]) not in claimed and (u[1], u[2]) not in taken
                ]
                if len(free) < qty:
                    break
                for unit in free[:qty]:
                    taken.add((unit[1], unit[2]))
                    picked.append(unit)
            else:
                if sum(unit[0] for unit in picked) > self.price_minor:
                    claimed |= taken
                    chosen.extend((unit[0], unit[1]) for unit in picked)
                    sets += 1
                    continue
            break
        if not sets:
            return Outcome.skip("the basket does not complete a set cheaper than its price")
        regular = sum(price for price, _ in chosen)
        discount = regular - sets * self.price_minor
        weights = [0] * len(ctx.remaining)
        in_sets = [0] * len(ctx.remaining)
        for price, i in chosen:
            weights[i] += price
            in_sets[i] += 1000
        shares = allocate(discount, weights)
        return _outcome(
            ctx,
            f"{sets} set(s) at {ctx.money(self.price_minor)} instead of {ctx.money(regular)}",
            shares,
            qty=in_sets,
        )


def _parse_set_price(reader: FieldReader) -> SetPrice:
    components: list[tuple[GoodsSelector, int]] = []
    raw = reader.list_("components")
    if reader.has("components") and not raw:
        reader.problem("components", "expected at least one component, got []")
    for i, item in enumerate(raw):
        sub = reader.child(f"components[{i}]", item)
        if sub is None:
            continue
        goods = parse_goods(sub)
        if goods.is_all:
            sub.problem("goods", "expected a selector narrowing the goods, got none")
        components.append((goods, sub.int_("qty", 1, min_value=1, max_value=100) or 1))
    price = reader.int_("price_minor", min_value=0) or 0
    return SetPrice(tuple(components) or ((GoodsSelector(products=frozenset({""})), 1),), price)


@dataclass(frozen=True, slots=True)
class PersonalOffers:
    """The customer's personal offers (from the Center's models), each capped at ``max_percent``."""

    goods: GoodsSelector
    max_percent: Decimal = _HUNDRED

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Each line gets the best personal offer listing its product."""
        customer = ctx.receipt.customer
        if customer is None or not customer.personal_offers:
            return Outcome.skip("no personal offers for this customer")
        best: dict[str, Decimal] = {}
        for offer in customer.personal_offers:
            for product_id in offer.product_ids:
                best[product_id] = max(best.get(product_id, Decimal(0)), offer.percent)
        shares = [0] * len(ctx.remaining)
        for i, line in enumerate(ctx.receipt.lines):
            rate = best.get(line.product_id)
            if rate is not None and self.goods.matches(line):
                shares[i] = percent_of(ctx.remaining[i], min(rate, self.max_percent))
        return _outcome(ctx, f"personal offers on {sum(1 for s in shares if s)} line(s)", shares)


def _parse_personal(reader: FieldReader) -> PersonalOffers:
    return PersonalOffers(
        parse_goods(reader),
        reader.decimal("max_percent", low=Decimal(0), high=_HUNDRED, default=_HUNDRED),
    )


@dataclass(frozen=True, slots=True)
class PriceFloor:
    """No unit below ``min_unit_price_minor`` nor more than ``max_discount_percent`` off."""

    goods: GoodsSelector
    min_unit_price_minor: int = 0
    max_discount_percent: Decimal | None = None

    # The percent's exact ratio, computed once (``__post_init__``): a category-wide floor is
    # asked for every line of every receipt.
    rate: tuple[int, int] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _exact_rate(self.max_discount_percent))

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def floor_for(self, line: ReceiptLine) -> int:
        """The lowest amount ``line`` may be discounted to under this floor (0: no floor)."""
        if not self.goods.matches(line):
            return 0
        return self.floor_of(line)

    def floor_of(self, line: ReceiptLine) -> int:
        """The floor of a line known to be among the goods."""
        floor = 0
        if self.min_unit_price_minor:
            floor = min(
                line.amount_minor, amount_for_quantity(line.qty_milli, self.min_unit_price_minor)
            )
        rate = self.rate
        if rate is not None and type(line.amount_minor) is int:
            # percent_of, inline.
            numerator, denominator = rate
            most, remainder = divmod(line.amount_minor * numerator, denominator)
            twice = 2 * remainder
            if twice > denominator or (twice == denominator and most % 2 == 1):
                most += 1
            floor = max(floor, line.amount_minor - most)
        elif self.max_discount_percent is not None:
            floor = max(
                floor, line.amount_minor - percent_of(line.amount_minor, self.max_discount_percent)
            )
        return floor

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Floors act through the engine's clamp, never as a reward."""
        return Outcome.skip("price floor (applied to every discount)")


def _parse_floor(reader: FieldReader) -> PriceFloor:
    max_pct = None
    if reader.has("max_discount_percent"):
        max_pct = reader.decimal("max_discount_percent", low=Decimal(0), high=_HUNDRED)
    return PriceFloor(
        parse_goods(reader), reader.int_("min_unit_price_minor", 0, min_value=0) or 0, max_pct
    )


@dataclass(frozen=True, slots=True)
class ComplimentRedeem:
    """A compliment spent on a product buys a pass: for ``pass_days`` (a week) the product's
    units cost their floor, up to the product's cap (``product_caps``, else ``default_cap``:
    e.g. 10 bottles of milk, 1 whisky), counted across receipts by the pass in the state."""

    goods: GoodsSelector
    wallet: str = "compliment"
    default_cap: int = 1
    product_caps: tuple[tuple[str, int], ...] = ()
    min_unit_price_minor: int = 0
    max_discount_percent: Decimal = _HUNDRED
    pass_days: int = 7

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def _saving(self, line: ReceiptLine, units: int) -> int:
        """What ``units`` whole units of ``line`` save at their floor (rounded once)."""
        regular = line.unit_price_minor * units
        floor = max(
            self.min_unit_price_minor * units,
            regular - percent_of(regular, self.max_discount_percent),
            (line.cost_minor or 0) * units,
        )
        return max(0, regular - floor)

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Use the customer's passes still running, then open passes with the compliments
        spent: on the products chosen (``pass_products``), else the biggest saving first."""
        lines = ctx.receipt.lines
        by_product: dict[str, list[int]] = {}
        for i in ctx.lines_of(self.goods):
            by_product.setdefault(lines[i].product_id, []).append(i)
        customer = ctx.receipt.customer
        running = {
            p.product_id: p
            for p in (customer.compliment_passes if customer is not None else ())
            if p.promotion_id == promotion_id and p.active_at(ctx.now_utc)
        }
        shares = [0] * len(ctx.remaining)
        qty = [0] * len(ctx.remaining)
        touched: list[ComplimentPass] = []

        def use(product_id: str, left: int) -> int:
            taken = 0
            for i in by_product[product_id]:
                units = min(left - taken, lines[i].qty_milli // 1000)
                if units > 0:
                    shares[i] += self._saving(lines[i], units)
                    qty[i] += units * 1000
                    taken += units
            return taken

        for product_id, running_pass in sorted(running.items()):
            if product_id in by_product:
                taken = use(product_id, running_pass.units - running_pass.used)
                if taken:
                    touched.append(replace(running_pass, used=running_pass.used + taken))
        wanted = ctx.spend.get(self.wallet, 0)
        caps = dict(self.product_caps)
        candidates = [
            (product_id, indexes)
            for product_id, indexes in by_product.items()
            if product_id not in running
            and caps.get(product_id, self.default_cap) > 0
            and self._saving(lines[indexes[0]], 1) > 0
        ]
        chosen = {product_id: k for k, product_id in enumerate(ctx.pass_products)}
        candidates.sort(
            key=lambda c: (
                chosen.get(c[0], len(chosen)),
                -self._saving(lines[c[1][0]], 1),
                c[1][0],
            )
        )
        opened = 0
        until = ctx.now_utc + timedelta(days=self.pass_days)
        for product_id, _ in candidates[:wanted]:
            cap = caps.get(product_id, self.default_cap)
            taken = use(product_id, cap)
            touched.append(ComplimentPass(promotion_id, product_id, ctx.now_utc, until, cap, taken))
            opened += 1
        if not touched:
            if wanted <= 0:
                return Outcome.skip(f"no {self.wallet} to spend and no pass running")
            return Outcome.skip(f"no goods to spend {self.wallet} on")
        detail = f"{opened} {self.wallet}(s) spent on passes, {len(touched)} pass(es) used"
        out = _outcome(ctx, detail, shares, {"wallet": self.wallet}, qty=qty)
        if not out.applied and not opened:
            return out
        return replace(
            out,
            applied=True,
            spent=((self.wallet, opened),) if opened else (),
            passes=tuple(touched),
        )


def _parse_compliment_redeem(reader: FieldReader) -> ComplimentRedeem:
    caps: list[tuple[str, int]] = []
    sub = reader.child("product_caps")
    if sub is not None:
        for name in sorted(sub.doc):
            caps.append((name, sub.int_(name, min_value=0, max_value=1000) or 0))
    return ComplimentRedeem(
        goods=parse_goods(reader),
        wallet=reader.str_("wallet", "compliment"),
        default_cap=reader.int_("default_cap", 1, min_value=0, max_value=1000) or 0,
        product_caps=tuple(caps),
        min_unit_price_minor=reader.int_("min_unit_price_minor", 0, min_value=0) or 0,
        max_discount_percent=reader.decimal(
            "max_discount_percent", low=Decimal(0), high=_HUNDRED, default=_HUNDRED
        ),
        pass_days=reader.int_("pass_days", 7, min_value=1, max_value=366) or 7,
    )


@dataclass(frozen=True, slots=True)
class WalletExchange:
    """Exchange rule: each unit of ``wallet`` spent takes ``value_minor`` off these goods."""

    goods: GoodsSelector
    wallet: str
    value_minor: int

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Spend whole units only, as many as the goods left can absorb."""
        wanted = ctx.spend.get(self.wallet, 0)
        if wanted <= 0:
            return Outcome.skip(f"no {self.wallet} to spend")
        weights = [0] * len(ctx.remaining)
        for i in ctx.lines_of(self.goods):
            weights[i] = ctx.remaining[i]
        used = min(wanted, sum(weights) // self.value_minor)
        if used <= 0:
            return Outcome.skip(
                f"goods left {ctx.money(sum(weights))} below one {self.wallet} unit"
            )
        shares = allocate(used * self.value_minor, weights)
        out = _outcome(ctx, f"{used} {self.wallet} x {ctx.money(self.value_minor)}", shares)
        return replace(out, values={"wallet": self.wallet}, spent=((self.wallet, used),))


def _parse_exchange(reader: FieldReader) -> WalletExchange:
    return WalletExchange(
        parse_goods(reader),
        reader.str_("wallet"),
        reader.int_("value_minor", min_value=1) or 1,
    )


WALLET_EXCHANGE = Kind("wallet_exchange", "discount", _parse_exchange)
GOODS_DISCOUNT = Kind("goods_discount", "discount", _parse_goods_discount)
LADDER = Kind("ladder", "discount", _parse_ladder)
BUY_GET = Kind("buy_get", "discount", _parse_buy_get)
SET_PRICE = Kind("set_price", "discount", _parse_set_price)
PERSONAL_OFFERS = Kind("personal_offers", "discount", _parse_personal)
COMPLIMENT_REDEEM = Kind("compliment_redeem", "discount", _parse_compliment_redeem)
PRICE_FLOOR = Kind("price_floor", "floor", _parse_floor)
