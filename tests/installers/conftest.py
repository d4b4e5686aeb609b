"""Fixtures shared by the installer tests."""

from __future__ import annotations

import pytest

TIERS = ("center", "store", "pos")


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest) -> str:
    """Each tier in turn."""
    return str(request.param)
