"""The customer state every tier keeps: folding sales, reading it on a day, its row form."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sync_protocol import (
    CardState,
    LineDiscount,
    LoyaltyMovement,
    MalformedMessage,
    Payment,
    Sale,
    SaleLine,
    SalePass,
    SalePromotion,
    TillMessage,
    canonical_row,
    fold_sale,
    fold_sales,
    read_state,
    sale_promotions,
    state_row,
    state_view,
)

T = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)  # a Friday
MOSCOW = ZoneInfo("Europe/Moscow")


def _sale(
    seq: int,
    *,
    at: datetime = T,
    register: str = "367-1",
    total: int = 1000,
    discount: int = 0,
    promotions: tuple[SalePromotion, ...] = (),
    loyalty: tuple[LoyaltyMovement, ...] = (),
    return_of: str | None = None,
    passes: tuple[SalePass, ...] = (),
) -> Sale:
    line = SaleLine(
        1,
        "milk",
        2000,
        (total + discount) // 2,
        total + discount,
        (LineDiscount("cap", discount),) if discount else (),
    )
    return Sale(
        sale_id=f"00000000-0000-4000-8000-{seq:012d}",
        store_id="367",
        register_id=register,
        seq=seq,
        opened_at=at,
        closed_at=at,
        card_no="29",
        lines=(line,),
        payments=(Payment("cash", total),),
        loyalty=loyalty,
        subtotal_minor=total + discount,
        discount_minor=discount,
        total_minor=total,
        promo_version=1,
        return_of=return_of,
        promotions=promotions,
        passes=passes,
    )


def test_a_sale_counts_once_whatever_the_order_and_the_repeats() -> None:
    sales = [
        _sale(1, promotions=(SalePromotion("cap", 1000), SalePromotion("welcome"))),
        _sale(2, promotions=(SalePromotion("cap", 500),), total=700),
        _sale(1, register="367-2", at=T - timedelta(days=3)),
    ]
    once = fold_sales(CardState(), sales, UTC)
    again = fold_sales(once, sales, UTC)  # every sale is covered by seen now
    backwards = fold_sales(CardState(), reversed(sales), UTC)
    assert again == once == backwards
    assert (once.purchases, once.visits, once.spend_minor) == (3, 2, 2700)
    assert once.fired_total == {"cap": 2, "welcome": 1}
    assert once.seen == {"367-1": 2, "367-2": 1}
    day = once.days["2024-05-17"]
    assert (day.purchases, day.spend_minor) == (2, 1700)
    assert day.fired == {"cap": 2, "welcome": 1}
    assert day.qty_milli == {"cap": 1500}


def test_the_view_reads_today_this_month_and_rolling_windows() -> None:
    state = fold_sales(
        CardState(),
        [
            _sale(1, at=T - timedelta(days=40), promotions=(SalePromotion("p", 1000),)),
            _sale(2, at=T - timedelta(days=20), promotions=(SalePromotion("p", 2000),)),
            _sale(3, at=T - timedelta(days=5), promotions=(SalePromotion("p", 3000),)),
            _sale(
                4,
                promotions=(SalePromotion("p", 4000),),
                loyalty=(LoyaltyMovement("compliment", "accrue", 2, "c"),),
            ),
        ],
        UTC,
    )
    # The day 40 days back fell out of the kept window; its counts stay in the totals.
    assert sorted(state.days) == ["2024-04-27", "2024-05-12", "2024-05-17"]
    seen = state_view(state, date(2024, 5, 17))
    assert seen.fired_total == {"p": 4}
    assert seen.fired_day == {"p": 1} and seen.qty_day_milli == {"p": 4000}
    assert seen.fired_month == {"p": 2} and seen.qty_month_milli == {"p": 7000}
    counters = seen.counters
    assert (counters["purchases"], counters["visits"], counters["spend_minor"]) == (4, 4, 4000)
    assert (counters["purchases_7d"], counters["purchases_30d"]) == (2, 3)
    assert counters["spend_30d_minor"] == 3000 and counters["visits_30d"] == 3
    assert counters["purchases_today"] == 1
    assert counters["compliment_week"] == 2  # accrued since Monday 2024-05-13
    # A day later nothing happened today; the month and the week still count.
    tomorrow = state_view(state, date(2024, 5, 18))
    assert tomorrow.fired_day == {} and tomorrow.fired_month == {"p": 2}
    assert tomorrow.counters["compliment_week"] == 2
    # The next Monday the week starts again; on June 1st the month does.
    assert state_view(state, date(2024, 5, 20)).counters.get("compliment_week", 0) == 0
    assert state_view(state, date(2024, 6, 1)).fired_month == {}


def test_days_are_in_the_given_time_zone() -> None:
    late = datetime(2024, 5, 17, 22, 30, tzinfo=UTC)  # already the 18th in Moscow
    assert list(fold_sale(CardState(), _sale(1, at=late), MOSCOW).days) == ["2024-05-18"]
    assert list(fold_sale(CardState(), _sale(1, at=late), UTC).days) == ["2024-05-17"]


def test_wallets_move_with_spends_and_active_accruals_only() -> None:
    state = CardState(wallets={"bonus": 500, "stickers": 10})
    sale = _sale(
        1,
        loyalty=(
            LoyaltyMovement("bonus", "spend", 200),
            LoyaltyMovement("stickers", "spend", 5, "swap"),
            LoyaltyMovement("stickers", "accrue", 2, "per-amount"),
            LoyaltyMovement("bonus", "accrue", 30, "later", active_from=T + timedelta(days=7)),
        ),
    )
    folded = fold_sale(state, sale, UTC)
    assert folded.wallets == {"bonus": 300, "stickers": 7}  # the pending 30 is not spendable
    assert folded.days["2024-05-17"].accrued == {"stickers": 2, "bonus": 30}


def test_a_return_moves_wallets_but_is_no_purchase() -> None:
    sale = _sale(
        2,
        promotions=(SalePromotion("cap", 1000),),
        loyalty=(LoyaltyMovement("bonus", "spend", 40),),
        return_of="00000000-0000-4000-8000-000000000001",
    )
    folded = fold_sale(CardState(wallets={"bonus": 100}), sale, UTC)
    assert (folded.purchases, folded.fired_total, folded.wallets) == (0, {}, {"bonus": 60})
    assert folded.seen == {"367-1": 2}


def test_a_sale_recorded_before_promotions_counts_its_discounts_and_movements() -> None:
    old = _sale(1, discount=100, loyalty=(LoyaltyMovement("bonus", "accrue", 10, "base"),))
    assert old.promotions == ()
    assert sale_promotions(old) == (SalePromotion("cap", 2000), SalePromotion("base", 0))


def _pass(used: int, *, opened: bool = False, product: str = "milk") -> SalePass:
    return SalePass("compl", product, T, T + timedelta(days=7), 10, used, opened=opened)


def test_compliment_pass_use_adds_up_whatever_the_order_and_leaves_after_the_days_kept() -> None:
    sales = [
        _sale(1, passes=(_pass(2, opened=True),)),
        _sale(1, register="367-2", passes=(_pass(3), _pass(1, opened=True, product="tea"))),
        _sale(2, passes=(_pass(1),)),
    ]
    forward = fold_sales(CardState(), sales, UTC)
    backward = CardState()
    for sale in reversed(sales + sales[:1]):  # a repeat changes nothing
        backward = fold_sale(backward, sale, UTC)
    assert forward == backward
    assert [(p.product_id, p.units, p.used) for p in forward.passes] == [
        ("milk", 10, 6),
        ("tea", 10, 1),
    ]
    # Kept while the days are: a sale DAYS_KEPT days after the pass ended drops it.
    later = _sale(3, at=T + timedelta(days=7 + 35))
    assert fold_sale(forward, later, UTC).passes == ()
    assert fold_sale(forward, _sale(3, at=T + timedelta(days=7 + 34)), UTC).passes


def test_a_sale_that_showed_a_personal_message_drops_it_at_every_tier() -> None:
    held = CardState(messages=(TillMessage("m1", slip="Hi"), TillMessage("m2", cashier="Ask")))
    shown = dataclasses.replace(_sale(1), shown_messages=("m1", "m-unknown"))
    assert fold_sale(held, shown, UTC).messages == (TillMessage("m2", cashier="Ask"),)
    assert fold_sale(held, _sale(1), UTC).messages == held.messages


def test_the_row_round_trips_and_is_canonical_json() -> None:
    state = dataclasses.replace(
        fold_sales(
            CardState(wallets={"bonus": 5}),
            [_sale(1, promotions=(SalePromotion("cap", 1000),), passes=(_pass(2, opened=True),))],
            UTC,
        ),
        tier="gold",
        attributes={"city": "Moscow"},
        favourite_categories=("MILK",),
        referrer="2900000000020",
        messages=(TillMessage("m1", slip="Coffee -20 %", display="Coffee", cashier="Tell"),),
    )
    row = state_row(state)
    assert read_state(json.loads(canonical_row({"state": row}))["state"]) == state
    assert state_row(CardState()) == {"v": 1}
    assert read_state(None) == CardState()
    assert read_state({"v": 2, "purchases": 3, "future": {"x": 1}}).purchases == 3


@pytest.mark.parametrize(
    ("row", "path"),
    [
        ({"purchases": "3"}, "state.purchases"),
        ({"wallets": {"bonus": 1.5}}, "state.wallets.bonus"),
        ({"days": {"yesterday": {}}}, "state.days.yesterday"),
        ({"days": {"2024-05-17": {"fired": {"p": True}}}}, "state.days.2024-05-17.fired.p"),
        ({"attributes": {"city": 1}}, "state.attributes.city"),
        ({"passes": {"a": 1}}, "state.passes"),
        ({"messages": [{"slip": "x"}]}, "state.messages[0].message_id"),
        ({"messages": [{"message_id": "m", "slip": 3}]}, "state.messages[0].slip"),
        ({"passes": [{"valid_from": "soon"}]}, "state.passes[0].valid_from"),
        ({"passes": [{"units": "3"}]}, "state.passes[0].units"),
        ([1], "state"),
    ],
)
def test_a_malformed_row_names_the_field(row: object, path: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        read_state(row)
    assert caught.value.path == path
