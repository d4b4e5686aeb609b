"""How the Center's tables spread over a Citus cluster (ARCHITECTURE.md, "Past one database").

Pure data, read by a test against the real PostgreSQL schema: a distributed table must carry its
distribution column in its primary key and in every unique key (Citus enforces uniqueness only
within one shard). `PENDING` names the tables whose keys do not yet (none since
m018_distribution_keys), each with the migration it needs; the test fails both when a table
regresses and when a pending one is fixed without being taken off the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["PENDING", "PLAN", "Placement"]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one table lives on a Citus cluster."""

    kind: str
    """"distributed" (sharded by `column`), "reference" (a copy on every node, small master
    data written rarely) or "local" (kept on the coordinator: operational, not customer-owned)."""
    column: str = ""
    """The distribution column of a distributed table."""
    group: str = ""
    """Tables of one group are co-located: rows with the same column value share a shard, so
    joins and transactions on one customer stay on one node."""


def _by(column: str, group: str) -> Placement:
    return Placement("distributed", column, group)


REFERENCE = Placement("reference")
LOCAL = Placement("local")

PLAN: Mapping[str, Placement] = MappingProxyType(
    {
        # Customer-owned: everything about one customer on the shard of its customer_id. A sale
        # without a card belongs to its store: its owner is "store:<store_id>", so card-less
        # receipts (about 40 %) spread by store instead of piling on one shard.
        "customers": _by("customer_id", "customer"),
        "customer_index": _by("customer_id", "customer"),
        "questionnaire_answers": _by("customer_id", "customer"),
        "personal_offers": _by("customer_id", "customer"),
        "segment_members": _by("customer_id", "customer"),
        "cards": _by("customer_id", "customer"),
        # Card numbers stay unique across shards, and "whose card?" is one shard's answer.
        "card_directory": _by("card_no", "card_directory"),
        "lots": _by("customer_id", "customer"),
        "ledger": _by("customer_id", "customer"),
        "lot_consumptions": _by("customer_id", "customer"),
        "sales": _by("owner_id", "customer"),
        "sale_lines": _by("owner_id", "customer"),
        "coupon_redemptions": _by("owner_id", "customer"),
        "returns": _by("owner_id", "customer"),
        "adjustments": _by("customer_id", "customer"),
        "comm_consents": _by("customer_id", "customer"),
        "comm_assignments": _by("customer_id", "customer"),
        "customer_tiers": _by("customer_id", "customer"),
        "tier_changes": _by("customer_id", "customer"),
        "churn_risk": _by("customer_id", "customer"),
        "till_messages": _by("customer_id", "customer"),
        "customer_preferences": _by("customer_id", "customer"),
        # The member API's: a member's inbox, activations, favourite changes and requests.
        "member_notifications": _by("customer_id", "customer"),
        "member_activations": _by("customer_id", "customer"),
        "member_favourite_changes": _by("customer_id", "customer"),
        "member_requests": _by("customer_id", "customer"),
        # Idempotency: one claim per sale_id, whichever shard its receipt lives on, and one per
        # (register_id, seq), claimed in the same statement (center/ingest/store_postgres.py).
        # A card's state checkpoint is a cache folded from its sales and rebuilt from them: it
        # is read by card number at every feed, so it lives by card in a group of its own.
        "customer_states": _by("card_no", "card_states"),
        # Verification's checkpoint of a card (center/ingest/checkpoint.py): beside its state.
        "verify_checkpoints": _by("card_no", "card_states"),
        "verify_checkpoint_covers": _by("card_no", "card_states"),
        "sale_ids": _by("sale_id", "sale_claims"),
        "register_seqs": _by("register_id", "register_claims"),
        # Single-use codes: one row per code, looked up by code at every redemption.
        "coupons": _by("code", "coupons"),
        "coupon_holds": _by("code", "coupons"),
        # A card's leases with its card number: one shard answers "what may this card spend".
        "spending_leases": _by("card_no", "card_directory"),
        # A supplier budget's account, its store leases and the sales behind it: one shard
        # answers "what is left of this promotion's budget".
        "budget_accounts": _by("promotion_id", "budgets"),
        "budget_leases": _by("promotion_id", "budgets"),
        "budget_sales": _by("promotion_id", "budgets"),
        # Gift certificates: one row per code, its holds and movements beside it.
        "certificates": _by("code", "certificates"),
        "certificate_holds": _by("code", "certificates"),
        "certificate_movements": _by("code", "certificates"),
        "certificate_batches": REFERENCE,
        # Master data and configuration: small, read everywhere, written by head office.
        "products": REFERENCE,
        "stores": REFERENCE,
        "store_products": REFERENCE,
        "registers": REFERENCE,
        "master_lists": REFERENCE,
        "price_changes": REFERENCE,
        "promotions": REFERENCE,
        "promotion_revisions": REFERENCE,
        "promotion_drafts": REFERENCE,
        "settings": REFERENCE,
        "segments": REFERENCE,
        "segment_counts": REFERENCE,
        "segment_associations": REFERENCE,
        "coupon_batches": REFERENCE,
        "master_version": REFERENCE,
        "master_tombstones": REFERENCE,
        "feed_marks": REFERENCE,
        "customer_names": REFERENCE,
        "users": REFERENCE,
        "nodes": REFERENCE,
        "enrolment_tokens": REFERENCE,
        "_migrations": REFERENCE,
        "schema_version": REFERENCE,
        # Operational state of the coordinator.
        "request_nonces": LOCAL,
        "heartbeats": LOCAL,
        "audit": LOCAL,
        "quarantine": LOCAL,
        "coupon_jobs": LOCAL,
        "coupon_job_codes": LOCAL,
        "store_cards": LOCAL,
        "people_sessions": LOCAL,
        # The outbox: looked up by message, idempotency key, unsubscribe token and provider
        # reference, and worked by the sender on the coordinator.
        "comm_messages": LOCAL,
        "comm_parts": LOCAL,
        "comm_templates": REFERENCE,
        "fraud_signals": LOCAL,
        # Read beside the distributed sales (quarantined sales leave every customer state):
        # a copy on every node; written rarely (a doubted sale).
        "review_cases": REFERENCE,
        "tier_reviews": LOCAL,
        # Member sign-in state, looked up by address, challenge, token or family (never by a
        # customer's shard) and joined only among themselves: on the coordinator.
        "member_identities": LOCAL,
        "member_challenges": LOCAL,
        "member_events": LOCAL,
        "member_accounts": LOCAL,
        "member_families": LOCAL,
        "member_refresh": LOCAL,
        "member_keys": REFERENCE,
        # Trained model versions and their metrics: few rows, read with any customer.
        "model_versions": REFERENCE,
        # The supplier cabinet: few organisations and campaigns, read by head office and the
        # suppliers' people on the coordinator; a campaign's audience split by campaign.
        "suppliers": LOCAL,
        "supplier_people": LOCAL,
        "supplier_campaigns": LOCAL,
        "supplier_campaign_members": LOCAL,
        "supplier_account": LOCAL,
        # Advertising blocks: few rows, read with any customer.
        "ad_blocks": REFERENCE,
    }
)
"""Every table of the Center's PostgreSQL schema and its placement."""

PENDING: Mapping[str, str] = MappingProxyType({})
"""Distributed tables whose keys do not carry their distribution column yet, and the migration
each needs."""
