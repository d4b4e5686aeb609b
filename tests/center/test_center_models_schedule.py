"""Scheduled retraining of the models: the [models] setting, the wait for enough history, and
the Center's periodic job training from the analytics store it feeds."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.analytics import AnalyticsStore
from center.config import load_config
from center.errors import ConfigError
from center.models.dataset import analytics_purchases
from center.models.training import (
    RANKER_WEEKS,
    TrainedModels,
    history_weeks,
    retrain_due,
    train_with_history,
)
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_analytics import D0, _feed, _master, _sales, analytics

__all__ = ["analytics"]


def test_retraining_is_weekly_by_default_zero_is_off_and_bad_values_are_named(
    tmp_path: Path,
) -> None:
    assert load_config(write_config(tmp_path)).models.retrain_every_s == 7 * 86400
    off = write_config(tmp_path, extra="\n[models]\nretrain_every_s = 0\n")
    assert load_config(off).models.retrain_every_s == 0
    bad = write_config(tmp_path, extra="\n[models]\nretrain_every_s = -1\nevery = 2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    problems = "\n".join(caught.value.problems)
    assert "models.retrain_every_s" in problems and "models.every: unknown key" in problems


def test_retraining_waits_for_enough_history(storage: Storage, analytics: AnalyticsStore) -> None:
    empty = train_with_history(analytics_purchases(analytics))
    assert isinstance(empty, str) and f"{RANKER_WEEKS} weeks" in empty and "has 0" in empty
    storage.feed.upsert_master(_master())
    storage.sales.ingest(_sales(400), D0)
    _feed(storage, analytics)
    year = analytics_purchases(analytics)
    weeks = history_weeks(year)
    assert weeks > 4
    short = train_with_history(year, min_weeks=weeks + 1)
    assert isinstance(short, str) and f"has {weeks}" in short
    trained = train_with_history(year, min_weeks=weeks)
    assert isinstance(trained, TrainedModels) and trained.offers


async def test_the_center_job_skips_an_empty_store_and_says_why(
    tmp_path: Path, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    extra = (
        '\n[models]\nretrain_every_s = 1\n[analytics]\nfeed_interval_s = 0\ndatabase = "sched"\n'
    )
    config = load_config(write_config(tmp_path, extra=extra))
    caplog.set_level(logging.INFO, logger="center")
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: D0))):
        for _ in range(100):
            if "retraining skipped" in caplog.text:
                break
            await asyncio.sleep(0.1)
    assert "models: retraining skipped" in caplog.text and "has 0" in caplog.text
    assert storage.models.versions() == []


async def test_no_job_when_retraining_is_off(
    tmp_path: Path, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    extra = (
        '\n[models]\nretrain_every_s = 0\n[analytics]\nfeed_interval_s = 0\ndatabase = "sched"\n'
    )
    config = load_config(write_config(tmp_path, extra=extra))
    caplog.set_level(logging.INFO, logger="center")
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: D0))):
        await asyncio.sleep(1.5)
    assert "retraining" not in caplog.text


async def test_the_center_job_retrains_from_the_store_it_feeds(
    tmp_path: Path, storage: Storage
) -> None:
    # about 17 weeks of sales: enough for the learned models, so the job trains and publishes
    storage.feed.upsert_master(_master())
    storage.sales.ingest(_sales(400), D0)
    extra = (
        '\n[models]\nretrain_every_s = 2\n[analytics]\nfeed_interval_s = 1\ndatabase = "sched"\n'
    )
    config = load_config(write_config(tmp_path, extra=extra))
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: D0))) as client:
        analyst = StaffApi(client, staff_token(storage, "data_analyst"))
        versions: list[dict[str, Any]] = []
        for _ in range(300):
            code, listed = await analyst.call("GET", "/v1/models")
            versions = listed["versions"]
            if {v["kind"] for v in versions} >= {"offers", "churn", "preferences"}:
                break
            await asyncio.sleep(0.2)
        kinds = {v["kind"] for v in versions}
        assert code == 200 and kinds == {"offers", "churn", "preferences"}, versions
        code, offers = await analyst.call("GET", "/v1/customers/hh-1/offers")
    # the job trained once the fed store held enough history, and published offers
    made = next(v for v in versions if v["kind"] == "offers")["metrics"]
    assert made["weeks"] >= RANKER_WEEKS and made["customers"] > 0, made
    assert code == 200 and any(o["source"] == "model" for o in offers["offers"]), offers
    # and stored each customer's preferred store and segment
    preferred = storage.models.preferences("hh-1")
    assert preferred is not None and preferred["preferred_store"] in ("367", "406")


def test_retraining_is_due_an_interval_after_the_newest_version() -> None:
    week = 7 * 86400
    assert retrain_due([], D0, week)
    versions = [
        {"trained_at": (D0 - timedelta(days=9)).isoformat()},
        {"trained_at": (D0 - timedelta(days=2)).isoformat()},
    ]
    assert not retrain_due(versions, D0, week)
    assert retrain_due(versions, D0 + timedelta(days=5), week)


async def test_the_job_leaves_a_recent_version_alone(
    tmp_path: Path, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    # a version trained "now": the job runs every second but finds nothing due, even after a
    # restart (the interval counts from the newest version, not from the Center's start)
    storage.models.record_version("offers", {"customers": 1}, {}, D0)
    extra = '\n[models]\nretrain_every_s = 2\n[analytics]\nfeed_interval_s = 0\ndatabase = "s"\n'
    config = load_config(write_config(tmp_path, extra=extra))
    caplog.set_level(logging.INFO, logger="center")
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: D0))):
        await asyncio.sleep(3)
    assert "retrain" not in caplog.text
    assert [v["version"] for v in storage.models.versions()] == [1]
