"""The ledger's rules, once: pure plans both SQL backends read state for and then write.

A card's points live in lots, one per credit (`remaining` is what is left of it). A credit
becomes a lot that first repays the wallet's debt ("recover"), unless it is born expired. A
debit takes from the lots active at its time, earliest-expiring first (undated last, then
oldest, then first stored), and what no lot covers becomes a debt. Expiry burns what is left of
a lot once its `expires_at` has passed, dated at that moment. A balance is derived from the open
lots and the debt. No I/O here: the storage reads the state these functions take and writes the
plans they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from center.ledger.lots import allocate
from center.ledger.model import Balance, Burning, LedgerEntry, Pending

__all__ = [
    "Burn",
    "Consumption",
    "LedgerPlan",
    "Lot",
    "WalletKey",
    "born_expired",
    "debited_wallets",
    "derive_balance",
    "is_active",
    "plan_expiry",
    "plan_movements",
]

WalletKey = tuple[str, str]
"""(card_no, wallet): the unit every rule works in; wallets never share lots or debt."""

_NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Lot:
    """A stored lot with something left in it (`remaining` > 0), as read from the database."""

    lot_id: int
    card_no: str
    wallet: str
    remaining: int
    created_at: datetime
    active_from: datetime | None = None
    expires_at: datetime | None = None
    rule_id: str = ""


@dataclass(frozen=True, slots=True)
class Consumption:
    """Part of a movement taken from a stored lot (`lot_id`), from a lot this plan creates
    (`new_lot`, the entry_id of its credit), or from neither: a debt."""

    entry_id: int
    card_no: str
    wallet: str
    kind: str
    amount: int
    created_at: datetime
    lot_id: int | None = None
    new_lot: int | None = None


@dataclass(frozen=True, slots=True)
class LedgerPlan:
    """What applying journaled movements writes: a lot per credit, then the consumptions."""

    credits: tuple[tuple[int, LedgerEntry], ...] = ()
    """The journaled (entry_id, credit)s, in journal order: each becomes a lot."""
    reduced: Mapping[int, int] = field(default_factory=dict)
    """entry_id -> what is left of its new lot, for those the plan took from (others stay whole)."""
    consumptions: tuple[Consumption, ...] = ()
    """In journal order."""

    def new_lots(self) -> Iterator[tuple[int, LedgerEntry, int]]:
        """(entry_id, credit, remaining) of every lot to create, in journal order."""
        reduced = self.reduced
        for entry_id, e in self.credits:
            yield entry_id, e, reduced.get(entry_id, e.amount)

    def taken(self) -> dict[int, int]:
        """Stored lot_id -> the total the plan takes from it."""
        out: dict[int, int] = {}
        for c in self.consumptions:
            if c.lot_id is not None:
                out[c.lot_id] = out.get(c.lot_id, 0) + c.amount
        return out

    def new_lots_consumed(self) -> set[int]:
        """entry_ids of the new lots a consumption refers to (their lot_id is needed)."""
        return {c.new_lot for c in self.consumptions if c.new_lot is not None}


@dataclass(frozen=True, slots=True)
class Burn:
    """One expired lot: its remainder leaves as an "expire" movement dated at its expiry."""

    lot_id: int
    entry: LedgerEntry

    def consumed(self, entry_id: int) -> Consumption:
        """The consumption that empties the lot, once `entry` is journaled as `entry_id`."""
        e = self.entry
        return Consumption(
            entry_id, e.card_no, e.wallet, "expire", -e.amount, e.created_at, lot_id=self.lot_id
        )


def born_expired(entry: LedgerEntry) -> bool:
    """True if the credit's lot is already expired when credited: it repays no debt."""
    return entry.expires_at is not None and entry.expires_at <= entry.created_at


def is_active(active_from: datetime | None, expires_at: datetime | None, at: datetime) -> bool:
    """True if a lot so dated may be spent at `at`: activated, and not yet expired."""
    return (active_from is None or active_from <= at) and (expires_at is None or expires_at > at)


def _fifo_key(
    expires_at: datetime | None, created_at: datetime, new: int, n: int
) -> tuple[bool, datetime, datetime, int, int]:
    # A lot this plan creates will get a lot_id above every stored one, and the plan's lots are
    # inserted in journal order: (new, n) sorts as their lot_ids will.
    return (expires_at is None, expires_at or _NEVER, created_at, new, n)


def debited_wallets(movements: Iterable[tuple[int, LedgerEntry]]) -> set[WalletKey]:
    """The wallets whose open lots plan_movements needs: those these movements debit."""
    return {(e.card_no, e.wallet) for _, e in movements if e.amount < 0}


class _Open:
    """A lot while a plan runs, stored or created by the plan, with what is left of it."""

    __slots__ = ("active_from", "expires_at", "key", "lot_id", "new_lot", "remaining")

    def __init__(
        self, lot: Lot | None, entry_id: int = 0, e: LedgerEntry | None = None, n: int = 0
    ) -> None:
        if lot is not None:
            self.lot_id: int | None = lot.lot_id
            self.new_lot: int | None = None
            self.remaining = lot.remaining
            self.active_from, self.expires_at = lot.active_from, lot.expires_at
            self.key = _fifo_key(lot.expires_at, lot.created_at, 0, lot.lot_id)
        else:
            assert e is not None
            self.lot_id = None
            self.new_lot = entry_id
            self.remaining = e.amount
            self.active_from, self.expires_at = e.active_from, e.expires_at
            self.key = _fifo_key(e.expires_at, e.created_at, 1, n)


def plan_movements(
    movements: Sequence[tuple[int, LedgerEntry]],
    debts: Mapping[WalletKey, int],
    lots: Mapping[WalletKey, Iterable[Lot]],
    *,
    first: Mapping[int, int] | None = None,
) -> LedgerPlan:
    """Apply newly journaled (entry_id, movement)s, in order, to the wallets' state.

    `debts` is each wallet's outstanding debt (missing: none); `lots` the open stored lots of
    at least the debited_wallets. `first` maps a debit's entry_id to a stored lot it takes
    before any other, whatever that lot's dates (a return takes back its sale's own lot).
    """
    debt = {key: owed for key, owed in debts.items() if owed > 0}
    # Only a debited wallet needs its lots followed; any other wallet's credits are plain lots.
    debited = debited_wallets(movements)
    open_lots = {
        key: [_Open(lot) for lot in stored if lot.remaining > 0]
        for key, stored in lots.items()
        if key in debited
    }
    first = first or {}
    credits: list[tuple[int, LedgerEntry]] = []
    reduced: dict[int, int] = {}
    followed: list[tuple[int, _Open]] = []
    consumptions: list[Consumption] = []
    for movement in movements:
        entry_id, e = movement
        amount = e.amount
        if amount > 0:
            credits.append(movement)
            key = (e.card_no, e.wallet)
            remaining = amount
            owed = debt.get(key, 0)
            if owed > 0 and not born_expired(e):
                recovered = min(owed, amount)
                remaining -= recovered
                reduced[entry_id] = remaining
                debt[key] = owed - recovered
                consumptions.append(
                    Consumption(entry_id, e.card_no, e.wallet, "recover", recovered, e.created_at,
                                new_lot=entry_id)
                )  # fmt: skip
            if key in debited:
                lot = _Open(None, entry_id, e, len(credits))
                lot.remaining = remaining
                open_lots.setdefault(key, []).append(lot)
                followed.append((amount, lot))
        elif amount < 0:
            key = (e.card_no, e.wallet)
            wallet_lots = open_lots.get(key, [])
            at = e.created_at
            preferred = first.get(entry_id)
            order = [
                lot for lot in wallet_lots if preferred is not None and lot.lot_id == preferred
            ]
            order.extend(
                sorted(
                    (
                        lot
                        for lot in wallet_lots
                        if (preferred is None or lot.lot_id != preferred)
                        and is_active(lot.active_from, lot.expires_at, at)
                    ),
                    key=lambda lot: lot.key,
                )
            )
            taken, rest = allocate(((n, lot.remaining) for n, lot in enumerate(order)), -amount)
            for n, take in taken:
                lot = order[n]
                lot.remaining -= take
                consumptions.append(
                    Consumption(entry_id, e.card_no, e.wallet, e.kind, take, at,
                                lot_id=lot.lot_id, new_lot=lot.new_lot)
                )  # fmt: skip
            if rest:
                debt[key] = debt.get(key, 0) + rest
                consumptions.append(Consumption(entry_id, e.card_no, e.wallet, "debt", rest, at))
            if taken:
                open_lots[key] = [lot for lot in wallet_lots if lot.remaining > 0]
    for amount, lot in followed:
        if lot.remaining != amount and lot.new_lot is not None:
            reduced[lot.new_lot] = lot.remaining
    return LedgerPlan(tuple(credits), reduced, tuple(consumptions))


def plan_expiry(lots: Iterable[Lot], now: datetime) -> tuple[Burn, ...]:
    """The lots expired at `now` with something left, each burnt whole, in lot_id order."""
    burns: list[Burn] = []
    for lot in sorted(lots, key=lambda lot: lot.lot_id):
        if lot.remaining <= 0 or lot.expires_at is None or lot.expires_at > now:
            continue
        entry = LedgerEntry(
            card_no=lot.card_no,
            wallet=lot.wallet,
            kind="expire",
            amount=-lot.remaining,
            rule_id=lot.rule_id,
            source=f"lot:{lot.lot_id}",
            created_at=lot.expires_at,
        )
        burns.append(Burn(lot.lot_id, entry))
    return tuple(burns)


def derive_balance(
    card_no: str,
    customer_id: str,
    lots: Iterable[Lot],
    debts: Mapping[str, int],
    now: datetime,
    burning_within: timedelta,
) -> Balance:
    """The card's balance at `now` from its open lots and its debt per wallet.

    A wallet is its active lots less its debt (the bonus wallet always shows); pending points
    are grouped by activation, burning ones (active, expiring within `burning_within`) by expiry.
    """
    horizon = now + burning_within
    active: dict[str, int] = {"bonus": 0}
    pending: dict[tuple[datetime, str], int] = {}
    burning: dict[tuple[datetime, str], int] = {}
    for lot in lots:
        if lot.remaining <= 0:
            continue
        if is_active(lot.active_from, lot.expires_at, now):
            active[lot.wallet] = active.get(lot.wallet, 0) + lot.remaining
            if lot.expires_at is not None and lot.expires_at <= horizon:
                at = (lot.expires_at, lot.wallet)
                burning[at] = burning.get(at, 0) + lot.remaining
        elif lot.active_from is not None and is_active(None, lot.expires_at, now):
            # Not active yet, and not expired before it would be: pending.
            at = (lot.active_from, lot.wallet)
            pending[at] = pending.get(at, 0) + lot.remaining
    debt = {"bonus": 0, **debts}
    wallets = dict(active)
    for wallet, owed in debt.items():
        wallets[wallet] = wallets.get(wallet, 0) - owed
    return Balance(
        card_no=card_no,
        customer_id=customer_id,
        wallets=dict(sorted(wallets.items())),
        pending=tuple(Pending(w, amount, at) for (at, w), amount in sorted(pending.items())),
        burning=tuple(Burning(w, amount, at) for (at, w), amount in sorted(burning.items())),
        debt=dict(sorted(debt.items())),
    )
