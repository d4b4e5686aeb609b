"""The registry of rule kinds: a kind name maps to its stage and document parser."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from . import accrual_percent, threshold_discount
from .base import Context, Kind, Outcome, Stage, Terms

__all__ = ["KINDS", "Context", "Kind", "Outcome", "Stage", "Terms"]

KINDS: Mapping[str, Kind] = MappingProxyType(
    {kind.name: kind for kind in (threshold_discount.KIND, accrual_percent.KIND)}
)
