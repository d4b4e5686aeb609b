"""The analytics store (ClickHouse SQL on chDB or a server), its feeder and its reports."""

from center.analytics.model import AnalyticsStatus
from center.analytics.store import AnalyticsStore, open_analytics

__all__ = ["AnalyticsStatus", "AnalyticsStore", "open_analytics"]
