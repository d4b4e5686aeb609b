"""The register's selling logic: receipts in, priced by the engine, sales into the journal.

Runs on one worker thread (see app.py), so operations on receipts never interleave.
"""

from __future__ import annotations

import gc
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from loyalty_engine import (
    CERTIFICATE_TYPE,
    Calculation,
    CouponMatch,
    CustomerState,
    EngineError,
    PersonalOffer,
    PromotionSet,
    Receipt,
    ReceiptLine,
    RuleError,
    amount_for_quantity,
    calculate,
    load_promotion_set,
    verify_code,
)
from pos_agent.certificates import CERTIFICATE_METHOD, CertificateRefused, HeldCertificate
from pos_agent.config import Config
from pos_agent.errors import (
    CardRefused,
    InvalidField,
    PosError,
    SpendRefused,
    StoreNodeUnreachable,
)
from pos_agent.inputs import check_line_amount
from pos_agent.journal import HeldReservation, Journal, JournalStats, OfflineSpend, SalesSummary
from pos_agent.receipts import CouponUsed, LineInput, OpenLine, OpenReceipt, PaymentInput
from pos_agent.replica import Card, CardCoupon, CardOffer, Replica
from pos_agent.sales import numbered, state_passes, unnumbered_sale
from pos_agent.storelink import StoreLink
from sync_protocol import (
    CARD_RULE_SETTING,
    DEFAULT_CARD_RULE,
    CardState,
    MalformedMessage,
    Sale,
    SeenSeq,
    TierProgramme,
    TierStatus,
    TillMessage,
    check_card_no,
    fold_sales,
    kept_until,
    parse_card_rule,
    read_programme,
    state_view,
    tier_progress,
    upgraded_tier,
)

__all__ = ["Authorization", "CardView", "Clock", "Priced", "Register", "utc_now"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

REFUSED_CARD_STATUSES = frozenset({"blocked", "inactive"})
"""Card statuses the Center sets that stop a card at the register (issued cards still earn)."""

# A hold this close to its expiry is renewed before the sale relies on it.
_RENEW_BEFORE = timedelta(seconds=30)


def utc_now() -> datetime:
    """The wall clock as an aware UTC datetime."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CardView:
    """What the register software learns when a card is identified."""

    card_no: str
    known: bool
    bonus_balance: int
    segment: str = ""
    segments: tuple[str, ...] = ()
    coupons: tuple[CardCoupon, ...] = ()
    """Coupons the Center issued to the customer, not expired (from the replica)."""
    personal_offers: tuple[CardOffer, ...] = ()
    """The customer's personal offers valid now (from the replica)."""
    wallets: Mapping[str, int] = field(default_factory=dict)
    """Units the card may spend per wallet (bonus included), as calculate will see them."""
    tier: str = ""
    tier_progress: Mapping[str, Any] | None = None
    """The level's titles, kept-until day and what the next level still needs (None: no
    tier programme)."""
    messages: tuple[TillMessage, ...] = ()
    """Personal messages for this purchase (to the cashier, on the display; the slip prints
    them at confirm)."""


@dataclass(frozen=True, slots=True)
class Priced:
    """The engine's calculation of an open receipt plus what the replica knew of its lines."""

    receipt: OpenReceipt
    calculation: Calculation
    known_products: dict[int, bool]
    card: Card | None
    available_bonus: int
    engine_receipt: Receipt
    """What the engine priced: the Sale records its segments and personal offers."""
    state_seen: tuple[SeenSeq, ...] = ()
    """The basis of the customer state the engine priced with (the Center rebuilds it)."""
    messages: tuple[TillMessage, ...] = ()
    """The personal messages for this purchase in that state (the slip prints them)."""


@dataclass(frozen=True, slots=True)
class Authorization:
    """Who allowed the receipt's bonus spend and single-use coupons, and how."""

    mode: str
    """"none" (nothing to allow), "online" (the store node holds it) or "offline"."""
    available: int | None = None
    """What the store node says the card may spend (online only)."""
    offline: OfflineSpend | None = None


def _notify(hook: Callable[..., None], *args: object) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("device hook %r failed; the sale is not affected", hook)


class Register:
    """One register's receipts and sales; every method is synchronous and thread-confined."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        replica: Replica,
        *,
        clock: Clock = utc_now,
        on_sale: Callable[[], None] = lambda: None,
        on_lines: Callable[[list[OpenLine]], None] | None = None,
        on_confirmed: Callable[..., None] | None = None,
        on_message: Callable[[str], None] | None = None,
        link: StoreLink | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.replica = replica
        self.clock = clock
        # Wakes the uploader: a new sale, or a reservation commit/release, is waiting.
        self.on_sale = on_sale
        self.link = link
        # Device hooks (display, printer): they only enqueue, and never fail a sale.
        self.on_lines = on_lines
        self.on_confirmed = on_confirmed
        self.on_message = on_message
        self._promotions: PromotionSet | None = None
        self._promotions_version = -1
        self._tiers: TierProgramme | None = None
        """The chain's tier programme (setting ``tiers.programme``), read with the promotions."""
        self.promotions_error: str | None = None

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return an aware UTC datetime")
        return now.astimezone(UTC)

    # -- receipts ------------------------------------------------------------------------

    def open_receipt(self) -> OpenReceipt:
        """Start a new, empty receipt and persist it."""
        now = self._now()
        receipt = OpenReceipt(receipt_id=uuid.uuid4().hex, opened_at=now)
        self.journal.create_receipt(receipt.receipt_id, receipt.to_json(), now)
        return receipt

    def receipt(self, receipt_id: str) -> OpenReceipt:
        """The open receipt (ReceiptNotFound / ReceiptClosed otherwise)."""
        return OpenReceipt.from_json(self.journal.load_receipt(receipt_id))

    def _save(self, receipt: OpenReceipt) -> None:
        self.journal.save_receipt(receipt.receipt_id, receipt.to_json(), self._now())

    def _shelf_price(self, product_id: str, qty_milli: int, offset: int) -> int:
        """The replica's price of a line sent without one; InvalidField when it has none."""
        field = f"lines[{offset}].unit_price_minor"
        product = self.replica.product(product_id)
        if product is None or product.price_minor is None:
            raise InvalidField(
                field,
                f"no shelf price for product {product_id!r} in the master data "
                f"(version {self.replica.master_version()}); send unit_price_minor",
            )
        check_line_amount(qty_milli, product.price_minor, f"lines[{offset}].qty_milli")
        return product.price_minor

    def add_lines(self, receipt_id: str, inputs: list[LineInput]) -> list[int]:
        """Append the lines (all or none); their line numbers."""
        receipt = self.receipt(receipt_id)
        lines = []
        for offset, item in enumerate(inputs):
            price = item.unit_price_minor
            if price is None:
                price = self._shelf_price(item.product_id, item.qty_milli, offset)
            amount = item.amount_minor
            if amount is None:
                amount = amount_for_quantity(item.qty_milli, price)
            lines.append(
                OpenLine(
                    line_no=receipt.next_line_no + offset,
                    product_id=item.product_id,
                    qty_milli=item.qty_milli,
                    unit_price_minor=price,
                    amount_minor=amount,
                    weighed=item.weighed,
                    certificate_code=item.certificate_code,
                )
            )
        self._save(receipt.with_lines(lines))
        if self.on_lines is not None:
            _notify(self.on_lines, lines)
        return [line.line_no for line in lines]

    def remove_line(self, receipt_id: str, line_no: int) -> None:
        """Take one line off the open receipt (LineNotFound if it has no such line)."""
        self._save(self.receipt(receipt_id).without_line(line_no))

    def identify_card(self, receipt_id: str, card_no: str) -> CardView:
        """Attach a card; an unknown card still earns accrual, with a balance of 0.

        A card the replica does not hold is looked up at the store node (online) and kept.
        """
        receipt = self.receipt(receipt_id)
        card_no = self.check_card_no(card_no)
        card = self.replica.card(card_no)
        if self.link is not None:
            # Also for a card the replica holds: the store node's answer counts the sales of
            # the store's other registers that the replica's customer state does not yet.
            card = self._look_up(card_no, known=card is not None) or card
        if card is not None and card.status in REFUSED_CARD_STATUSES:
            raise CardRefused(card_no, card.status)
        self._save(receipt.with_card(card_no))
        now = self._now()
        available = self._available(card_no, card)
        state = self.card_state(card_no, card)
        customer = self.customer_state(card_no, card, (), available, now, state)
        progress = self.card_tier_progress(state, now)
        if state.messages and self.on_message is not None:
            for message in state.messages:
                if message.display:
                    _notify(self.on_message, message.display)
        return CardView(
            card_no=card_no,
            known=card is not None,
            bonus_balance=available,
            wallets={k: v for k, v in sorted(customer.wallets.items()) if v},
            tier=customer.tier,
            tier_progress=progress,
            segment=card.segment if card else "",
            segments=card.segments if card else (),
            coupons=card.coupons_at(now) if card else (),
            personal_offers=tuple(o for o in card.personal_offers if o.active(now)) if card else (),
            messages=state.messages,
        )

    def check_card_no(self, card_no: str) -> str:
        """The card number trimmed and in the chain's format (setting card_number_rule);
        InvalidField naming card_no otherwise, before anything is looked up or kept."""
        try:
            rule = parse_card_rule(self.replica.setting(CARD_RULE_SETTING))
        except ValueError as exc:
            log.warning("chain setting %s ignored: %s", CARD_RULE_SETTING, exc)
            rule = DEFAULT_CARD_RULE
        try:
            return check_card_no(card_no, rule)
        except MalformedMessage as exc:
            raise InvalidField("card_no", exc.problem) from exc

    def _look_up(self, card_no: str, *, known: bool = False) -> Card | None:
        """The store node's row of the card, kept (None: unknown there, or not answered).

        A card the replica holds waits only `offline.reserve_timeout_s`: the replica's row
        sells it anyway, with a customer state that may miss the store's latest sales.
        """
        assert self.link is not None
        timeout = self.config.offline.reserve_timeout_s if known else None
        try:
            row = self.link.card(card_no, timeout_s=timeout)
        except StoreNodeUnreachable as exc:
            what = "state not refreshed" if known else "unknown here and not looked up"
            log.info("card %s %s (%s)", card_no, what, exc)
            return None
        if row is None:
            return None
        try:
            if not known:
                self.replica.remember_card(row, self._now())
            self.replica.remember_state(row, self._now())
        except PosError as exc:
            log.warning("store node's row of card %s not kept: %s", card_no, exc)
            return None
        return self.replica.card(card_no)

    def add_coupon(self, receipt_id: str, code: str) -> CouponMatch:
        """Validate ``code`` offline and keep it on the open receipt for pricing.

        Signed codes are checked with the chain's key, listed promo codes against the rules;
        a single-use code this register already redeemed is refused (CouponUsed). Other
        registers' redemptions are not known here.
        """
        receipt = self.receipt(receipt_id)
        promotions = self.promotion_set()
        match = promotions.find_coupon(code)
        if match is None:
            raise InvalidField(
                "code",
                f"{code!r} is not a valid coupon: no active coupon rule takes it, or its check "
                "digit or signature is wrong",
            )
        today = self._now().astimezone(promotions.settings.tz).date()
        if match.expires_on is not None and today > match.expires_on:
            raise InvalidField(
                "code", f"coupon {match.code} expired on {match.expires_on.isoformat()}"
            )
        self._check_unused(match)
        if not match.multi_use and match.code not in receipt.coupon_codes:
            # Ask the store node now, so the cashier hears of a coupon held or redeemed at
            # another register before going on (offline: only this register's check).
            held = self.journal.reservation(receipt_id)
            codes, signed = self._single_use(receipt.with_coupon(match.code))
            self._reserve(receipt, held.amount if held is not None else 0, codes, signed)
        self._save(receipt.with_coupon(match.code))
        return match

    def remove_coupon(self, receipt_id: str, code: str) -> None:
        """Take a coupon off the open receipt (CouponNotOnReceipt if it has no such code)."""
        self._save(self.receipt(receipt_id).without_coupon(code))

    def _check_unused(self, match: CouponMatch) -> None:
        if not match.multi_use:
            used_by = self.journal.coupon_used_by(match.code)
            if used_by is not None:
                raise CouponUsed(match.code, used_by)

    def cancel(self, receipt_id: str) -> None:
        """Close the receipt without a sale (its hold at the store node is released)."""
        receipt = self.receipt(receipt_id)
        self.journal.cancel_receipt(receipt_id, self._now())
        if receipt.certificates:
            self._release_certificates(receipt_id, None)
        self.on_sale()

    # -- gift certificates as a tender ---------------------------------------------------

    def add_certificate(self, receipt_id: str, code: str, amount: int) -> HeldCertificate:
        """Hold `amount` of certificate `code` at the store node for this receipt; paid with
        at confirm. Refused (409) when the store node or the Center says no, and when the
        store node cannot be asked (a register never redeems a certificate on its own)."""
        receipt = self.receipt(receipt_id)
        if any(line.certificate_code == code for line in receipt.lines):
            raise InvalidField("code", f"certificate {code} is sold on this receipt")
        if self.link is None:
            raise CertificateRefused(
                "no store node configured; certificates are redeemed through it"
            )
        try:
            answer = self.link.hold_certificate(receipt_id, code, amount)
        except StoreNodeUnreachable as exc:
            raise CertificateRefused(
                f"the store node cannot be asked now ({exc}); certificates are redeemed "
                "only through it"
            ) from exc
        held = HeldCertificate(
            code, amount, int(answer.get("balance_minor", amount)), str(answer.get("mode", ""))
        )
        self._save(receipt.with_certificate(held))
        return held

    def remove_certificate(self, receipt_id: str, code: str) -> None:
        """Take a certificate tender off the open receipt and release its hold."""
        receipt = self.receipt(receipt_id)
        self._save(receipt.without_certificate(code))
        self._release_certificates(receipt_id, code)

    def _release_certificates(self, receipt_id: str, code: str | None) -> None:
        # Best effort: a hold not released expires at the store node and at the Center.
        if self.link is None:
            return
        try:
            self.link.release_certificates(receipt_id, code)
        except StoreNodeUnreachable as exc:
            log.info("receipt %s: certificate release not delivered (%s)", receipt_id, exc)

    @staticmethod
    def _with_certificates(
        receipt: OpenReceipt, payments: Sequence[PaymentInput]
    ) -> list[PaymentInput]:
        return [
            *payments,
            *(
                PaymentInput(CERTIFICATE_METHOD, c.amount_minor, c.code)
                for c in receipt.certificates
            ),
        ]

    # -- authorizing bonus spends and single-use coupons ---------------------------------

    def _single_use(self, receipt: OpenReceipt) -> tuple[list[str], list[str]]:
        """The receipt's single-use coupon codes, and those of them signed by a register."""
        promotions = self.promotion_set()
        codes: list[str] = []
        signed: list[str] = []
        for code in receipt.coupon_codes:
            match = promotions.find_coupon(code)
            if match is None or match.multi_use:
                continue
            codes.append(match.code)
            if verify_code(promotions.settings.coupon_key, match.code) is not None:
                signed.append(match.code)
        return codes, signed

    def _reserve(
        self, receipt: OpenReceipt, amount: int, codes: list[str], signed: list[str]
    ) -> Authorization | None:
        """Hold at the store node; None when it cannot be asked (refusals raise)."""
        if self.link is None:
            return None
        try:
            if codes:
                self._send_settled()
            hold = self.link.reserve(
                receipt_id=receipt.receipt_id,
                card_no=receipt.card_no,
                amount=amount,
                codes=codes,
                signed_codes=signed,
            )
        except StoreNodeUnreachable as exc:
            log.info(
                "receipt %s: store node not asked (%s); offline rules", receipt.receipt_id, exc
            )
            return None
        self.journal.save_reservation(
            HeldReservation(
                receipt_id=receipt.receipt_id,
                reservation_id=hold.reservation_id,
                card_no=receipt.card_no,
                amount=hold.amount,
                codes=tuple(codes),
                expires_at=hold.expires_at,
            )
        )
        return Authorization("online", available=hold.available)

    def _send_settled(self) -> None:
        """Deliver this register's queued commits and releases before holding codes again, so
        the node never refuses a code for a receipt this register already closed."""
        assert self.link is not None
        for op in self.journal.reservation_ops(20):
            codes = self.journal.coupons_of_sale(op.sale_id) if op.sale_id else ()
            self.link.settle(op.reservation_id, op.op, op.sale_id, codes)
            self.journal.reservation_op_done(op.reservation_id)

    def _release_now(self, reservation_id: str) -> None:
        """Give held codes back at once (the queued release stays: it is idempotent), so the
        next receipt presenting them is not refused while the uploader catches up."""
        if self.link is None:
            return
        try:
            self.link.release(reservation_id)
        except StoreNodeUnreachable as exc:
            log.info("reservation %s: release queued (%s)", reservation_id, exc)

    def authorize(
        self,
        receipt: OpenReceipt,
        bonus_to_spend: int,
        now: datetime,
        *,
        redeemed: tuple[str, ...] | None = None,
    ) -> Authorization:
        """Let the receipt spend `bonus_to_spend` and its single-use coupons, or refuse (409).

        The store node decides when it answers; otherwise the offline rules apply: spending
        needs a replica synced within `offline.max_replica_age_s` and stays within the
        replica balance and `offline.max_spend_per_card_minor` per card and store day.
        ``redeemed`` (at confirm): the single-use codes the sale consumes; the hold keeps only
        those, so a code the receipt held but did not use is free again before the sale exists.
        """
        codes, signed = self._single_use(receipt)
        if redeemed is not None:
            codes = [code for code in codes if code in redeemed]
            signed = [code for code in signed if code in redeemed]
        held = self.journal.reservation(receipt.receipt_id)
        if not bonus_to_spend and not codes:
            if held is not None and self.journal.drop_reservation(receipt.receipt_id, now):
                if held.codes:
                    self._release_now(held.reservation_id)
                self.on_sale()
            return Authorization("none")
        if (
            held is not None
            and held.amount == bonus_to_spend
            and held.card_no == receipt.card_no
            and sorted(held.codes) == sorted(codes)
            and held.expires_at - now > _RENEW_BEFORE
        ):
            return Authorization("online")
        online = self._reserve(receipt, bonus_to_spend, codes, signed)
        if online is not None:
            return online
        if held is not None and self.journal.drop_reservation(receipt.receipt_id, now):
            self.on_sale()
        if not bonus_to_spend:
            return Authorization("offline")
        assert receipt.card_no is not None
        return Authorization(
            "offline", offline=self._offline_spend(receipt.card_no, bonus_to_spend, now)
        )

    def _offline_limits(self) -> tuple[tuple[str, int], tuple[str, float]]:
        """((name, max spend per card and day), (name, max replica age s)): this register's
        [offline] config, lowered by the chain settings the Center publishes, if any."""
        limits = self.config.offline
        spend = ("offline.max_spend_per_card_minor", limits.max_spend_per_card_minor)
        age = ("offline.max_replica_age_s", limits.max_replica_age_s)
        _, _, settings = self.replica.promotion_source()
        chain_spend = settings.get("offline_max_spend_per_card_minor", "")
        if chain_spend.isascii() and chain_spend.isdigit() and int(chain_spend) < spend[1]:
            spend = ("chain setting offline_max_spend_per_card_minor", int(chain_spend))
        chain_age = settings.get("offline_max_replica_age_s", "")
        if chain_age.isascii() and chain_age.isdigit() and int(chain_age) < age[1]:
            age = ("chain setting offline_max_replica_age_s", float(chain_age))
        return spend, age

    def _offline_spend(self, card_no: str, amount: int, now: datetime) -> OfflineSpend:
        (spend_name, allowance), (age_name, max_age_s) = self._offline_limits()
        synced_at = self.replica.synced_at()
        age_s = None if synced_at is None else (now - synced_at).total_seconds()
        if age_s is None or age_s > max_age_s:
            when = "never" if synced_at is None else f"at {synced_at.isoformat()}"
            raise SpendRefused(
                f"bonus_to_spend: the store node cannot be reached and this register's master "
                f"data was last synced {when}, longer ago than {age_name} = "
                f"{max_age_s:g} s: no bonus can be spent offline (the sale still "
                "earns bonus)"
            )
        available = self._available(card_no, self.replica.card(card_no))
        if amount > available:
            raise SpendRefused(
                f"bonus_to_spend: {amount} exceeds the {available} available offline on card "
                f"{card_no} (replica balance minus what this register spent since)"
            )
        tz = self.promotion_set().settings.tz
        day = now.astimezone(tz).date().isoformat()
        spent = self.journal.offline_spent(card_no, day)
        if amount > allowance - spent:
            raise SpendRefused(
                f"bonus_to_spend: the store node cannot be reached and card {card_no} may spend "
                f"at most {max(0, allowance - spent)} more offline on {day} "
                f"({spend_name} = {allowance}, spent offline {spent})"
            )
        return OfflineSpend(day=day, allowance=allowance)

    # -- pricing -------------------------------------------------------------------------

    def promotion_set(self) -> PromotionSet:
        """The replica's promotions, loaded once per master version."""
        version, docs, settings = self.replica.promotion_source()
        if self._promotions is not None and self._promotions_version == version:
            return self._promotions
        try:
            promotions = load_promotion_set(docs, version=version, settings=settings)
            self.promotions_error = None
        except RuleError as exc:
            # The uploader refuses such master data; an old replica file may still hold it.
            # Selling must go on, so price without promotions and say so loudly.
            self.promotions_error = f"master version {version}: {exc}"
            log.error("promotions unusable, selling without them: %s", self.promotions_error)
            promotions = load_promotion_set([], version=version)
        self._promotions, self._promotions_version = promotions, version
        self._tiers = read_programme(settings)
        # The set lives until the next master version: move it (and everything else alive) out
        # of the cyclic GC's reach, or a full collection over tens of thousands of rule objects
        # (~200 ms at 10 000 promotions, measured by bench/engine.py) lands inside a receipt.
        gc.collect()
        gc.freeze()
        return promotions

    def _available(self, card_no: str, card: Card | None) -> int:
        balance = card.bonus_balance if card else 0
        return max(0, balance - self.journal.local_spent(card_no))

    def card_state(self, card_no: str, card: Card | None) -> CardState:
        """The replica's state of the card (the Center's, with the store node's sales) plus this
        register's own sales it does not cover yet, its tier upgraded at once when they reach a
        higher level (downgrades are the Center's alone)."""
        tz = self.promotion_set().settings.tz
        base = card.state if card is not None else CardState()
        own = self.journal.card_sales(card_no, base.seen.get(self.config.register.register_id, 0))
        state = fold_sales(base, own, tz)
        if self._tiers is None:
            return state
        tier = upgraded_tier(self._tiers, state.tier, state.tier_spend_minor, state.tier_visits)
        return replace(state, tier=tier, tier_until=state.tier_until if tier == state.tier else "")

    def card_tier_progress(self, state: CardState, now: datetime) -> dict[str, Any] | None:
        """The card's level and progress to the next one, as the cashier may tell the customer
        (None without a tier programme)."""
        programme = self._tiers
        if programme is None:
            return None
        today = now.astimezone(self.promotion_set().settings.tz).date()
        until = date.fromisoformat(state.tier_until) if state.tier_until else None
        if until is None and state.tier:  # upgraded here today: kept a period from today
            until = kept_until(
                programme, TierStatus(state.tier, today, programme.next_review(today))
            )
        return tier_progress(
            programme, state.tier, state.tier_spend_minor, state.tier_visits, today, until=until
        )

    def customer_state(
        self,
        card_no: str,
        card: Card | None,
        offers: tuple[PersonalOffer, ...],
        bonus_available: int,
        now: datetime,
        state: CardState | None = None,
    ) -> CustomerState:
        """What the engine reads of the card holder: the replica's state (the Center's, with
        the store node's sales) plus this register's own sales it does not cover yet (``state``:
        that ``card_state``, when the caller has it)."""
        tz = self.promotion_set().settings.tz
        if state is None:
            state = self.card_state(card_no, card)
        counts = state_view(state, now.astimezone(tz).date())
        wallets = {name: max(0, units) for name, units in state.wallets.items()}
        # The bonus wallet has its own authority (store node holds, offline allowance).
        wallets["bonus"] = bonus_available
        return CustomerState(
            tier=state.tier,
            attributes=dict(state.attributes),
            favourite_categories=state.favourite_categories,
            personal_offers=offers,
            wallets=wallets,
            counters=dict(counts.counters),
            fired_day=dict(counts.fired_day),
            fired_month=dict(counts.fired_month),
            fired_total=dict(counts.fired_total),
            qty_day_milli=dict(counts.qty_day_milli),
            qty_month_milli=dict(counts.qty_month_milli),
            referrer=state.referrer,
            compliment_passes=state_passes(state.passes),
        )

    def _check_spend(self, spend: Mapping[str, int], customer: CustomerState | None) -> None:
        """InvalidField naming ``spend.<wallet>`` when the card cannot spend that much."""
        for wallet, units in sorted(spend.items()):
            if customer is None:
                raise InvalidField(f"spend.{wallet}", "no card on the receipt; identify one first")
            have = customer.wallets.get(wallet, 0)
            if units > have:
                raise InvalidField(
                    f"spend.{wallet}",
                    f"{units} exceeds the {have} the card holds in wallet {wallet!r}",
                )

    def price(
        self,
        receipt: OpenReceipt,
        bonus_to_spend: int,
        now: datetime | None = None,
        *,
        sale_id: str | None = None,
        spend: Mapping[str, int] | None = None,
        payments: Sequence[PaymentInput] = (),
    ) -> Priced:
        """Run the engine over the receipt with the replica's current data, as of `now`.

        ``sale_id`` seeds the codes of coupons issued (the Center can make them again from
        the sale); a preview uses the receipt id, so its codes are not the final ones.
        ``spend`` spends wallets other than bonus (stickers, compliments...); ``payments``
        are the tenders known so far (payment-type rules read their methods).
        """
        promotions = self.promotion_set()
        lines = []
        known: dict[int, bool] = {}
        for line in receipt.lines:
            product = self.replica.product(line.product_id)
            known[line.line_no] = product is not None
            lines.append(
                ReceiptLine(
                    line_no=line.line_no,
                    product_id=line.product_id,
                    qty_milli=line.qty_milli,
                    unit_price_minor=line.unit_price_minor,
                    amount_minor=line.amount_minor,
                    department=product.department if product else "",
                    category=product.category if product else "",
                    brand=product.brand if product else "",
                    # A sold certificate is money: the engine keeps it away from every rule.
                    type=CERTIFICATE_TYPE if line.certificate_code else "",
                )
            )
        card = self.replica.card(receipt.card_no) if receipt.card_no else None
        available = self._available(receipt.card_no, card) if receipt.card_no else 0
        if bonus_to_spend and receipt.card_no is None:
            raise InvalidField("bonus_to_spend", "no card on the receipt; identify one first")
        store_id = self.config.register.store_id
        now = now if now is not None else self._now()
        offers = card.offers_at(now) if card else ()
        # Folded once: the engine's customer, the basis the sale names, the messages it shows.
        state = self.card_state(receipt.card_no, card) if receipt.card_no else None
        customer = (
            self.customer_state(receipt.card_no, card, offers, available, now, state)
            if receipt.card_no
            else None
        )
        wallet_spend = {w: units for w, units in (spend or {}).items() if units}
        self._check_spend(wallet_spend, customer)
        methods = [p.method for p in payments] + (["bonus"] if bonus_to_spend else [])
        store = self.replica.store_info(store_id)
        engine_receipt = Receipt(
            lines=tuple(lines),
            now=now,
            store_id=store_id,
            store_format=store.format,
            region=store.region,
            timezone=store.timezone,
            payment_types=tuple(dict.fromkeys(methods)),
            card_no=receipt.card_no,
            segment=card.segment if card else "",
            segments=card.segments if card else (),
            # Whether the card may spend this much is authorize()'s call (store node or the
            # offline limits); the engine checks the receipt's own caps.
            bonus_balance=max(available, bonus_to_spend),
            receipt_id=sale_id if sale_id is not None else receipt.receipt_id,
            coupon_codes=receipt.coupon_codes,
            customer=customer,
        )
        try:
            calc = calculate(
                engine_receipt, promotions, bonus_to_spend=bonus_to_spend, spend=wallet_spend
            )
        except EngineError as exc:
            # The engine's messages start with the field path ("bonus_to_spend: ...").
            field, sep, problem = str(exc).partition(": ")
            if not sep or " " in field:
                field, problem = "", str(exc)
            raise InvalidField(field, problem) from exc
        seen = (
            tuple(
                SeenSeq(register_id, seq)
                for register_id, seq in sorted(state.seen.items())
                if seq > 0
            )
            if state is not None
            else ()
        )
        messages = state.messages if state is not None else ()
        return Priced(receipt, calc, known, card, available, engine_receipt, seen, messages)

    def calculate(
        self,
        receipt_id: str,
        bonus_to_spend: int = 0,
        *,
        spend: Mapping[str, int] | None = None,
        payments: Sequence[PaymentInput] = (),
    ) -> Priced:
        """Price the open receipt and hold its bonus spend and coupons at the store node."""
        receipt = self.receipt(receipt_id)
        now = self._now()
        payments = self._with_certificates(receipt, payments)
        priced = self.price(receipt, bonus_to_spend, now, spend=spend, payments=payments)
        granted = self.authorize(receipt, bonus_to_spend, now)
        if granted.available is not None:
            priced = replace(priced, available_bonus=max(0, granted.available))
        return priced

    # -- confirm -------------------------------------------------------------------------

    def confirm(
        self,
        receipt_id: str,
        payments: list[PaymentInput],
        bonus_to_spend: int = 0,
        *,
        spend: Mapping[str, int] | None = None,
    ) -> Sale:
        """Recalculate, check payments, and commit sale + outbox row in one transaction."""
        receipt = self._receipt_to_close(receipt_id)
        # Certificate tenders held at the store node; the store node commits their holds
        # when this sale reaches it (a cancelled receipt never sends one).
        payments = self._with_certificates(receipt, payments)
        # Priced as of the closing moment, so the Center recomputes from closed_at alone.
        closed_at = self._now()
        sale_id = str(uuid.uuid4())
        priced = self.price(
            receipt,
            bonus_to_spend,
            now=closed_at,
            sale_id=sale_id,
            spend=spend,
            payments=payments,
        )
        single_use = self._single_use_redeemed(priced.calculation)
        # Any network call happens here, before the sale is journaled; after it, the commit
        # (or release) of the hold travels with the uploader. Only the codes the sale redeems
        # stay held: one under its coupon's minimum is released now, not consumed.
        granted = self.authorize(receipt, bonus_to_spend, closed_at, redeemed=single_use)
        unnumbered = unnumbered_sale(
            receipt,
            priced.calculation,
            priced.known_products,
            priced.engine_receipt,
            payments,
            bonus_to_spend,
            sale_id=sale_id,
            closed_at=closed_at,
            register=self.config.register,
            state_seen=priced.state_seen,
        )
        personal = priced.messages
        if personal:
            # The personal messages for this purchase: printed on the slip, and the Center told
            # they were shown (every tier's state drops them with this sale).
            unnumbered = replace(
                unnumbered,
                messages=(*unnumbered.messages, *(m.slip for m in personal if m.slip)),
                shown_messages=tuple(m.message_id for m in personal),
            )
        sale = self.journal.confirm(
            receipt_id,
            partial(numbered, unnumbered),
            bonus_spent=bonus_to_spend,
            bonus_balance=priced.card.bonus_balance if priced.card else 0,
            coupons_used=single_use,
            reserved=granted.mode == "online",
            offline=granted.offline,
        )
        self._announce(sale, priced, receipt.certificates)
        return sale

    def _receipt_to_close(self, receipt_id: str) -> OpenReceipt:
        """The open receipt to confirm; InvalidField if it has no lines."""
        receipt = self.receipt(receipt_id)
        if not receipt.lines:
            raise InvalidField("lines", f"receipt {receipt_id} has no lines to confirm")
        return receipt

    def _single_use_redeemed(self, calc: Calculation) -> tuple[str, ...]:
        """The single-use coupons the sale redeems; CouponUsed if this register redeemed one."""
        promotions = self.promotion_set()
        codes = []
        for code in calc.coupons_consumed:
            match = promotions.find_coupon(code)
            if match is not None and not match.multi_use:
                self._check_unused(match)
                codes.append(match.code)
        return tuple(codes)

    def _announce(
        self, sale: Sale, priced: Priced, certificates: Sequence[HeldCertificate] = ()
    ) -> None:
        """Log the sale, wake the uploader and hand the sale to the device hooks."""
        log.info(
            "sale %s seq %d confirmed on register %s: total %d, card %s",
            sale.sale_id,
            sale.seq,
            sale.register_id,
            sale.total_minor,
            sale.card_no or "-",
        )
        self.on_sale()
        if self.on_confirmed is not None:
            hook = self.on_confirmed
            if certificates:
                # The slip prints each certificate's remaining balance.
                left = {c.code: c.remaining_minor for c in certificates}
                hook = partial(hook, certificates=left)
            _notify(hook, sale, priced.available_bonus, priced.calculation)

    # -- reporting -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the store link, the replica and the journal, on the thread that used them."""
        try:
            if self.link is not None:
                self.link.close()
            self.replica.close()
        finally:
            self.journal.close()

    def summary(self) -> SalesSummary:
        return self.journal.summary()

    def offline_state(self) -> tuple[datetime | None, int]:
        """When master data was last synced with the store node, and how many reservation
        commits/releases still wait for it (for /health)."""
        return self.replica.synced_at(), len(self.journal.reservation_ops(10_000))

    def stats(self) -> tuple[JournalStats, int]:
        """Journal stats and the replica's master version."""
        return self.journal.stats(), self.replica.master_version()
