"""center/models on small synthetic histories whose right answers are known."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from center.models.churn import ChurnModel, churn_snapshot, training_weeks
from center.models.dataset import COLUMNS, is_merchandise
from center.models.discovery import Ease, NewItemRanker, new_truth, popular_unseen
from center.models.metrics import bootstrap_ci, hit_rate_at_k, pr_auc, precision_at_k, roc_auc
from center.models.repeat import RepeatRanker, own_most_bought, window_truth

MILK = 1


def _frame(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    """Lines (household, product, basket, week), one visit per week on day 7*(week-1)+hh%7."""
    frame = pd.DataFrame(rows, columns=["household", "product", "basket", "week"])
    frame["day"] = (frame["week"] - 1) * 7 + frame["household"] % 7
    frame["store"] = 1
    frame["quantity"] = 1
    frame["value_minor"] = 250
    frame["discount_minor"] = 0
    frame["fuel"] = 0
    frame["category"] = frame["product"] % 5
    return frame[COLUMNS]


def _history(households: int = 60, weeks: int = 30, seed: int = 3) -> pd.DataFrame:
    """Every household buys milk every week plus three random products of 200."""
    rng = random.Random(seed)
    rows = []
    basket = 0
    for h in range(1, households + 1):
        for w in range(1, weeks + 1):
            basket += 1
            rows.append((h, MILK, basket, w))
            for p in rng.sample(range(100, 300), 3):
                rows.append((h, p, basket, w))
    return _frame(rows)


def test_precision_at_k_by_hand() -> None:
    offers = {1: [10, 11, 12, 13], 2: [20, 21]}
    truth = {1: {10, 12, 99}, 2: {5}, 3: {7}}
    # household 1: 2 hits of 4 -> 0.5; household 2: 0; household 3 has no offers: 0
    assert precision_at_k(offers, truth, k=4) == pytest.approx((2 / 4) / 3)
    assert precision_at_k(offers, truth, k=2) == pytest.approx((1 / 2) / 3)


def test_hit_rate_counts_households_with_one_hit_and_empty_truth_as_miss() -> None:
    offers = {1: [10, 11], 2: [20, 21], 3: [30]}
    truth = {1: {11}, 2: {99}, 3: set()}
    assert hit_rate_at_k(offers, truth, k=2) == pytest.approx(1 / 3)
    assert hit_rate_at_k(offers, truth, k=1) == 0.0


def test_roc_and_pr_auc_by_hand_and_bootstrap_brackets_them() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    # ranks: 0.8 (pos, P=1), 0.4 (neg), 0.35 (pos, P=2/3) -> AP = (1 + 2/3) / 2
    assert pr_auc(labels, scores) == pytest.approx((1 + 2 / 3) / 2)
    rng = np.random.default_rng(1)
    many = rng.integers(0, 2, 400)
    noisy = many + rng.normal(0, 0.8, 400)
    low, high = bootstrap_ci(roc_auc, many, noisy, rounds=200)
    assert low < roc_auc(many, noisy) < high


def test_merchandise_leaves_out_fuel_coupons_and_gift_cards() -> None:
    products = pd.DataFrame(
        {
            "department": ["GROCERY", "FUEL", "COUPON", "MISCELLANEOUS", "GROCERY"],
            "product_category": ["MILK", "FUEL", "COUPONS/STORE & MFG", "COUPON/MISC ITEMS", "X"],
            "product_type": ["FLUID MILK", "GASOLINE", "", "", "MASTERCARD GIFT CARD"],
        }
    )
    assert is_merchandise(products).tolist() == [True, False, False, False, False]


def test_household_buying_milk_every_week_gets_milk_in_repeat_offers() -> None:
    lines = _history()
    truth = window_truth(lines, 27, 4)
    assert all(MILK in bought for bought in truth.values())
    baseline = own_most_bought(lines, 27)
    assert all(top[0] == MILK for top in baseline.values())
    ranker = RepeatRanker(train_weeks=(19, 23), rounds=30).fit(lines)
    offers = ranker.offers(lines, 27)
    assert set(offers) == set(truth)
    assert all(MILK in top[:3] for top in offers.values())
    assert precision_at_k(offers, truth) >= 0.1


def test_ease_offers_what_similar_households_buy_and_never_what_she_bought() -> None:
    rows = []
    basket = 0
    # 30 households buy bread, butter and jam together; household 99 buys only bread and butter.
    for h in range(1, 31):
        for w in range(1, 6):
            basket += 1
            rows += [(h, 10, basket, w), (h, 11, basket, w), (h, 12, basket, w)]
            rows.append((h, 100 + (h * 7 + w) % 40, basket, w))
    for w in range(1, 6):
        basket += 1
        rows += [(99, 10, basket, w), (99, 11, basket, w)]
    lines = _frame(rows)
    offers = Ease(items=100, l2=5.0).fit(lines, 6).offers(lines, 6, k=3)
    assert offers[99][0] == 12
    assert 10 not in offers[99] and 11 not in offers[99]
    assert all(12 not in popular_unseen(lines, 6)[h] for h in range(1, 31))


def test_new_truth_keeps_only_products_new_to_the_household() -> None:
    lines = _frame([(1, 5, 1, 1), (1, 5, 2, 3), (1, 6, 2, 3), (2, 7, 3, 3)])
    assert new_truth(lines, 3, 1) == {1: {6}}


def test_new_item_ranker_trains_and_offers_only_unseen_products() -> None:
    lines = _history(households=40, weeks=20)
    ranker = NewItemRanker(train_weeks=(12, 14), rounds=20, ease_items=150).fit(lines)
    offers = ranker.offers(lines, 17)
    past = lines[lines["week"] < 17]
    seen = set(zip(past["household"], past["product"], strict=True))
    assert offers and all((h, p) not in seen for h, top in offers.items() for p in top)


def test_churn_ranks_a_lapsing_household_above_weekly_shoppers() -> None:
    rng = random.Random(5)
    rows = []
    basket = 0
    for h in range(1, 201):
        lapses_at = rng.randint(6, 40) if h % 4 == 0 else 99
        for w in range(1, 41):
            if w >= lapses_at and rng.random() < 0.9:
                continue
            if h % 4 != 0 and rng.random() < 0.1:
                continue
            basket += 1
            rows.append((h, 100 + w % 9, basket, w))
    # household 500 shops every week; household 501 shopped every week until week 25, then
    # once in week 31, and has been silent since
    for w in range(1, 41):
        basket += 1
        rows.append((500, 1, basket, w))
        if w <= 25 or w == 31:
            basket += 1
            rows.append((501, 1, basket, w))
    lines = _frame(rows)
    train = pd.concat([churn_snapshot(lines, w) for w in training_weeks(34)], ignore_index=True)
    assert train["label"].notna().all() and 0 < train["label"].mean() < 1
    test = churn_snapshot(lines, 34)
    assert {500, 501} <= set(test["household"])
    risk = dict(zip(test["household"], ChurnModel().fit(train).risk(test), strict=True))
    assert risk[501] > risk[500]
    assert risk[501] > float(np.median(list(risk.values())))


def test_churn_snapshot_population_and_label() -> None:
    # household 1 visits weeks 1..10; household 2 visits week 2 and week 12; 3 only week 1
    rows = [(1, 1, w, w) for w in range(1, 11)] + [(2, 1, 100, 2), (2, 1, 101, 12)]
    rows.append((3, 1, 200, 1))
    lines = _frame(rows + [(4, 1, 300 + w, w) for w in range(1, 20)])
    snap = churn_snapshot(lines, 10).set_index("household")
    assert set(snap.index) == {1, 2, 4}
    assert snap.loc[1, "label"] == 0  # week 10 is in the label window 10..17
    assert snap.loc[2, "label"] == 0  # came back in week 12
    assert snap.loc[4, "label"] == 0
    later = churn_snapshot(lines, 11).set_index("household")
    assert later.loc[1, "label"] == 1  # no basket in weeks 11..18


def test_models_commands_parse_and_refuse_a_week_without_history() -> None:
    from center.cli import build_parser
    from center.models.cli import models_command

    parser = build_parser()
    args = parser.parse_args(
        ["models", "export-offers", "--as-of-week", "42", "--strategy", "new", "--out", "x.csv"]
    )
    assert (args.action, args.as_of_week, args.strategy) == ("export-offers", 42, "new")
    with pytest.raises(SystemExit):
        parser.parse_args(["models", "export-offers", "--strategy", "other", "--out", "x"])
    with pytest.raises(SystemExit, match=r"week must be 14\.\.53"):
        models_command(
            parser.parse_args(["models", "export-churn", "--as-of-week", "5", "--out", "x"])
        )
