"""The supplier cabinet: supplier organisations and their people, audiences by analytic
parameters, campaigns estimated on the stored history and launched as supplier-funded
promotions, each supplier's account, and the campaign report against a control group."""

from __future__ import annotations

from center.suppliers.cabinet import follow_live_campaigns
from center.suppliers.model import MIN_GROUP_SIZE, Audience, CampaignInput, masked
from center.suppliers.suppliers_store import SupplierRepository

__all__ = [
    "MIN_GROUP_SIZE",
    "Audience",
    "CampaignInput",
    "SupplierRepository",
    "follow_live_campaigns",
    "masked",
]
