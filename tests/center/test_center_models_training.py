"""Training on the Center's own sales read from the analytics store: versions with metrics,
offers published through the personal offers path (`source: model`), churn risk per customer
shown in the customer card."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.analytics import AnalyticsStore
from center.config import Config, load_config
from center.errors import InvalidRequest
from center.models.api import parse_template
from center.models.dataset import analytics_purchases
from center.models.training import OfferTemplate, publish, train
from center.promotions.offers import OfferInput
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_analytics import D0, _feed, _master, _sales, analytics

__all__ = ["analytics"]


def test_training_reads_the_analytics_store_and_publishes_model_offers(
    storage: Storage, analytics: AnalyticsStore
) -> None:
    storage.feed.upsert_master(_master())
    storage.sales.ingest(_sales(400), D0)
    _feed(storage, analytics)
    year = analytics_purchases(analytics)
    assert len(year.merchandise) > 0 and set(year.household_ids) <= {f"hh-{i}" for i in range(12)}
    # a marketer's own offer survives the training; the model adds its own beside it
    manual = OfferInput("manual-1", "1003", Decimal("20"), source="manual")
    storage.offers.set_personal_offers("hh-1", [manual], "marketer", D0)
    trained = train(year)
    now = D0 + timedelta(days=130)
    summary = publish(storage, trained, OfferTemplate(Decimal("12.5"), 2, 14), "model", now)
    assert summary["customers_with_offers"] > 0 and summary["offers_published"] > 0
    offers = storage.offers.personal_offers("hh-1")
    assert offers is not None
    by_source = {o["offer_id"]: o for o in offers["offers"]}
    assert by_source["manual-1"]["source"] == "manual" and by_source["manual-1"]["percent"] == "20"
    made = [o for o in offers["offers"] if o["source"] == "model"]
    assert 1 <= len(made) <= 2 and all(o["percent"] == "12.5" for o in made)
    assert all(o["product_id"] != "1003" for o in made)
    kinds = {v["kind"]: v for v in storage.models.versions()}
    assert kinds["offers"]["version"] == 1 and kinds["offers"]["metrics"]["customers"] > 0
    assert "churn" in kinds
    # a second training replaces the model's offers, keeps the marketer's, numbers version 2
    publish(storage, train(year), OfferTemplate(Decimal("5"), 1, 7), "model", now)
    again = storage.offers.personal_offers("hh-1")
    assert again is not None
    assert [o["percent"] for o in again["offers"] if o["source"] == "model"] == ["5"]
    assert any(o["offer_id"] == "manual-1" for o in again["offers"])
    assert storage.models.versions("offers")[0]["version"] == 2


def test_training_an_empty_store_records_why_and_publishes_nothing(
    storage: Storage, analytics: AnalyticsStore
) -> None:
    trained = train(analytics_purchases(analytics))
    assert trained.offers == {} and trained.churn == []
    summary = publish(storage, trained, OfferTemplate(), "model", D0)
    assert summary["offers_published"] == 0
    assert summary["metrics"]["offers"]["skipped"].startswith("no sales")


def test_churn_risk_is_stored_per_customer(storage: Storage) -> None:
    storage.models.replace_churn_risk([("hh-1", 0.81234), ("hh-2", 0.1)], 3, D0)
    assert storage.models.churn_risk("hh-1") == {
        "risk": 0.8123,
        "model_version": 3,
        "scored_at": D0.isoformat(),
    }
    storage.models.replace_churn_risk([("hh-2", 0.2)], 4, D0)
    assert storage.models.churn_risk("hh-1") is None


def test_template_is_checked_field_by_field() -> None:
    assert parse_template({}) == OfferTemplate()
    assert parse_template({"percent": "7.5", "per_customer": 3}).percent == Decimal("7.5")
    for body, field in (
        ({"percent": 0}, "body.percent"),
        ({"percent": "abc"}, "body.percent"),
        ({"per_customer": 0}, "body.per_customer"),
        ({"valid_days": "3"}, "body.valid_days"),
        ({"colour": 1}, "body.colour"),
        ([], "body"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse_template(body)
        assert caught.value.field == field


@pytest.fixture
def config(tmp_path: Path) -> Config:
    extra = '\n[analytics]\nfeed_interval_s = 1\ndatabase = "models_test"\n'
    return load_config(write_config(tmp_path, signatures=True, extra=extra))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(_master())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: D0))) as client:
        yield client


async def test_train_route_publishes_and_the_card_shows_churn(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    import asyncio

    sales = _sales(300)
    storage.sales.ingest(sales, D0)
    analyst = StaffApi(client, staff_token(storage, "data_analyst"))
    for _ in range(120):
        code, found = await analyst.call("GET", "/v1/analytics/status")
        if found["rows"]["sales"] == len(sales) and found["pending_sales"] == 0:
            break
        await asyncio.sleep(0.5)
    code, _ = await analyst.call("POST", "/v1/models/train", {})
    assert code == 403
    marketer = StaffApi(client, staff_token(storage, "marketer"))
    code, bad = await marketer.call("POST", "/v1/models/train", {"percent": 150})
    assert code == 422 and bad["detail"].startswith("body.percent: expected 0 < percent"), bad
    code, done = await marketer.call("POST", "/v1/models/train", {"percent": 15})
    assert code == 200, done
    assert done["offers_published"] > 0
    code, listed = await analyst.call("GET", "/v1/models")
    assert code == 200 and {v["kind"] for v in listed["versions"]} == {
        "offers",
        "churn",
        "preferences",
    }
    code, card = await marketer.call("GET", "/v1/customers/hh-1")
    assert code == 200 and "churn" in card
    code, offers = await marketer.call("GET", "/v1/customers/hh-1/offers")
    assert code == 200 and any(o["source"] == "model" for o in offers["offers"])
