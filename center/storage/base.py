"""The storage interface of the Center and the plain records it returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from center.access.audit import AuditLog
from center.access.nodes_store import NodeRepository
from center.access.people_store import PeopleRepository
from center.access.users_store import UserRepository
from center.advertising.store import AdvertisingRepository
from center.certificates.store import CertificateRepository
from center.communications.store import CommunicationsRepository
from center.communications.till_store import TillMessages
from center.crm.store import CustomerRepository
from center.crm.tiers_store import TierRepository
from center.feed.versions import MasterVersions
from center.fraud.store import FraudRepository
from center.ledger.leases_store import LeaseRepository
from center.ledger.model import BURNING_WITHIN, Balance, Burning, LedgerEntry, Pending
from center.ledger.returns_store import ReturnsRepository
from center.ledger.store import LedgerRepository
from center.members.members_store import MemberRepository
from center.models.models_store import ModelRepository
from center.promotions.budgets_store import BudgetRepository
from center.promotions.coupon_jobs_store import CouponJobRepository
from center.promotions.coupons_holds_store import CouponHoldRepository
from center.promotions.coupons_store import CouponRepository
from center.promotions.offers_store import OfferRepository
from center.promotions.segments_store import SegmentRepository
from center.promotions.store import PromotionRepository
from center.storage.database import Database
from center.suppliers.suppliers_store import SupplierRepository

if TYPE_CHECKING:  # the repositories import this module's records
    from center.feed.master_store import MasterDataRepository
    from center.feed.store import FeedRepository
    from center.ingest.review_store import ReviewRepository
    from center.ingest.store import SalesRepository
    from center.ingest.verify_store import SaleVerifier

__all__ = [
    "BURNING_WITHIN",
    "MASTER_TABLES",
    "Balance",
    "Burning",
    "Counts",
    "LedgerEntry",
    "MasterChange",
    "MasterTable",
    "Pending",
    "Progress",
    "RegisterSummary",
    "Storage",
]

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called while long writes run."""

_REQUIRED: Any = object()


@dataclass(frozen=True, slots=True)
class MasterTable:
    """One master-data table: key columns first, then value columns with their defaults."""

    name: str
    keys: tuple[str, ...]
    values: tuple[tuple[str, Any], ...]
    json_columns: frozenset[str] = frozenset()
    bool_columns: frozenset[str] = frozenset()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys + tuple(name for name, _ in self.values)


MASTER_TABLES: Mapping[str, MasterTable] = {
    t.name: t
    for t in (
        MasterTable(
            "products",
            ("product_id",),
            (
                ("name", _REQUIRED),
                ("department", ""),
                ("category", ""),
                ("product_type", ""),
                ("brand", ""),
                ("manufacturer_id", ""),
                ("package_size", ""),
                ("weighed", False),
                ("price_minor", None),
                ("category_path", ""),
                ("cost_minor", None),
            ),
            bool_columns=frozenset({"weighed"}),
        ),
        MasterTable(
            "customers", ("customer_id",), (("attributes", {}),), frozenset({"attributes"})
        ),
        MasterTable("cards", ("card_no",), (("customer_id", _REQUIRED), ("status", "active"))),
        MasterTable(
            "stores",
            ("store_id",),
            (("name", ""), ("format", ""), ("timezone", ""), ("region", ""), ("address", "")),
        ),
        MasterTable("registers", ("register_id",), (("store_id", _REQUIRED),)),
        MasterTable("master_lists", ("list_name", "name_key"), (("name", _REQUIRED),)),
        MasterTable("store_products", ("store_id", "product_id"), ()),
        MasterTable("promotions", ("promotion_id",), (("doc", _REQUIRED),), frozenset({"doc"})),
        MasterTable("settings", ("name",), (("value", _REQUIRED),)),
    )
}
"""Every master-data table the Center keeps; each also has a `version` column (last change)."""


def is_required(default: Any) -> bool:
    """True for a column that has no default."""
    return default is _REQUIRED


@dataclass(frozen=True, slots=True)
class RegisterSummary:
    """Reconciliation figures of one register as the Center holds them."""

    store_id: str
    register_id: str
    receipts: int
    lines: int
    total_minor: int
    discount_minor: int
    min_seq: int
    max_seq: int
    gaps: tuple[tuple[int, int], ...] = ()
    chain_breaks: tuple[int, ...] = ()
    """Seqs whose prev_hash is not the chain_hash of the held sale seq - 1 (PROTOCOL.md)."""


@dataclass(frozen=True, slots=True)
class MasterChange:
    """Outcome of an upsert of master data: the version after it and rows changed per table."""

    version: int
    changed: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Counts:
    """Sizes shown by /health."""

    sales: int
    quarantined: int
    ledger_entries: int
    master_version: int


class Storage(Protocol):
    """Durable state of the Center; every write is one transaction, visible once it returns."""

    db: Database
    sales: SalesRepository
    ledger: LedgerRepository
    returns: ReturnsRepository
    customers: CustomerRepository
    audit: AuditLog
    versions: MasterVersions
    promotions: PromotionRepository
    coupons: CouponRepository
    coupon_holds: CouponHoldRepository
    coupon_jobs: CouponJobRepository
    segments: SegmentRepository
    offers: OfferRepository
    feed: FeedRepository
    master: MasterDataRepository
    users: UserRepository
    people: PeopleRepository
    nodes: NodeRepository
    communications: CommunicationsRepository
    fraud: FraudRepository
    reviews: ReviewRepository
    verifier: SaleVerifier
    tiers: TierRepository
    leases: LeaseRepository
    budgets: BudgetRepository
    certificates: CertificateRepository
    models: ModelRepository
    till: TillMessages
    suppliers: SupplierRepository
    members: MemberRepository
    advertising: AdvertisingRepository

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        ...

    def migrate(self) -> list[str]:
        """Bring the schema up to date (idempotent); the names of the migrations this call ran."""
        ...

    def counts(self) -> Counts:
        """Row counts for /health."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        ...
