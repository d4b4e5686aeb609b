"""The Center's storage: one repository per aggregate over one shared Database, and the schema.

The repositories (ledger, sales, returns, feed...) live with their domains and are built here in
dependency order; SqliteStorage and PostgresStorage pick the Database and the backend's
repository classes. Statements use `?` placeholders on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime

from center.access.audit import AuditLog
from center.access.nodes_store import NodeRepository
from center.access.people_store import PeopleRepository
from center.access.users_store import UserRepository
from center.advertising.store import AdvertisingRepository
from center.certificates.store import CertificateRepository
from center.communications.store import CommunicationsRepository
from center.communications.till_store import TillMessages
from center.crm.state_store import CustomerStateRepository
from center.crm.store import CustomerRepository
from center.crm.tiers_store import TierRepository
from center.feed.master_store import MasterDataRepository
from center.feed.store import FeedRepository
from center.feed.versions import MasterVersions
from center.fraud.store import FraudRepository
from center.ingest.review_store import ReviewRepository
from center.ingest.store import SalesRepository
from center.ingest.verify_store import SaleVerifier
from center.ledger.leases_store import LeaseRepository
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
from center.storage.base import Counts
from center.storage.database import Database
from center.storage.dialect import Dialect
from center.storage.migrations import Migration, MigrationList, apply_migrations, recorded
from center.suppliers.suppliers_store import SupplierRepository

__all__ = ["Migration", "SqlStorage", "lots_from_ledger"]


class SqlStorage:
    """The Center's repositories over one Database; SqliteStorage and PostgresStorage choose the
    Database and the backend's repository classes."""

    migrations = MigrationList((), numbered=0)
    """This backend's migrations, in order (center/storage/migrations.py)."""
    ledger_repository: type[LedgerRepository] = LedgerRepository
    """The ledger's repository class for this backend's Database."""
    sales_repository: type[SalesRepository] = SalesRepository
    """The sales' repository class for this backend's Database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        """The one connection every part of the storage uses (center/storage/database.py)."""
        # One repository per aggregate, each given the ones it uses, built in dependency order.
        self.versions = MasterVersions(db)
        self.audit = AuditLog(db)
        self.ledger = self.ledger_repository(db)
        self.promotions = PromotionRepository(db, audit=self.audit, versions=self.versions)
        self.coupon_holds = CouponHoldRepository(db, audit=self.audit)
        self.coupons = CouponRepository(
            db, audit=self.audit, versions=self.versions, holds=self.coupon_holds
        )
        self.coupon_jobs = CouponJobRepository(db, audit=self.audit, coupons=self.coupons)
        self.segments = SegmentRepository(db, audit=self.audit, versions=self.versions)
        self.offers = OfferRepository(db, audit=self.audit, versions=self.versions)
        self.users = UserRepository(db, audit=self.audit)
        self.people = PeopleRepository(db, audit=self.audit)
        self.nodes = NodeRepository(db)
        self.communications = CommunicationsRepository(db, audit=self.audit, versions=self.versions)
        self.customers = CustomerRepository(
            db, audit=self.audit, versions=self.versions, ledger=self.ledger
        )
        # The tier programme is published as a master row; the feed reads the tiers (card
        # states): the tiers reach the feed by name, once both exist.
        self.tiers = TierRepository(
            db,
            versions=self.versions,
            audit=self.audit,
            publish=lambda rows, version: self.feed.write_master(
                self.feed.prepare_master(rows), version, None
            ),
        )
        self.till = TillMessages(db, versions=self.versions)
        self.states = CustomerStateRepository(db, tiers=self.tiers, messages=self.till)
        self.feed = FeedRepository(
            db, versions=self.versions, ledger=self.ledger, states=self.states
        )
        self.master = MasterDataRepository(
            db, versions=self.versions, feed=self.feed, audit=self.audit
        )
        # Ingest applies returns, and a head-office return is ingested: the returns reach the
        # sales by name, once both exist.
        self.returns = ReturnsRepository(
            db,
            ledger=self.ledger,
            audit=self.audit,
            ingest=lambda sales, received_at: self.sales.ingest(sales, received_at),
        )
        self.leases = LeaseRepository(db, ledger=self.ledger)
        self.reviews = ReviewRepository(db, audit=self.audit, adjust=self.returns.adjust)
        self.budgets = BudgetRepository(db)
        self.verifier = SaleVerifier(
            db,
            promotions=self.promotions,
            states=self.states,
            reviews=self.reviews,
            tiers=self.tiers,
            budgets=self.budgets,
        )
        self.certificates = CertificateRepository(db, audit=self.audit)
        self.sales = self.sales_repository(
            db,
            ledger=self.ledger,
            coupons=self.coupons,
            returns=self.returns,
            verifier=self.verifier,
            leases=self.leases,
            certificates=self.certificates,
            till=self.till,
            budgets=self.budgets,
        )
        self.fraud = FraudRepository(db, audit=self.audit)
        self.models = ModelRepository(db)
        self.suppliers = SupplierRepository(db, audit=self.audit, segments=self.segments)
        self.members = MemberRepository(
            db,
            audit=self.audit,
            versions=self.versions,
            ledger=self.ledger,
            communications=self.communications,
            set_setting=lambda name, value, now: self.master.set_settings(
                {name: value}, actor="member-api", now=now
            ),
        )
        self.advertising = AdvertisingRepository(db, audit=self.audit, segments=self.segments)

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.db.backend

    @property
    def dialect(self) -> Dialect:
        return self.db.dialect

    def close(self) -> None:
        self.db.close()

    # -- schema --------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        ran = apply_migrations(self, self.migrations)
        self.sales.ensure_partitions(datetime.now(UTC))  # a no-op without partitions
        return ran

    def migrations_applied(self) -> list[str]:
        """Names of the migrations recorded in the database, in the order they ran."""
        with self.db.guard("read migrations"), self.db.snapshot():
            return recorded(self)

    # -- health ------------------------------------------------------------------------------

    def counts(self) -> Counts:
        with self.db.guard("count rows"):
            row = self.db.execute(
                "SELECT (SELECT COUNT(*) FROM sales), (SELECT COUNT(*) FROM quarantine), "
                "(SELECT COUNT(*) FROM ledger), (SELECT version FROM master_version WHERE id = 1)"
            ).fetchone()
        return Counts(
            sales=int(row[0]),
            quarantined=int(row[1]),
            ledger_entries=int(row[2]),
            master_version=int(row[3] or 0),
        )


def lots_from_ledger(storage: SqlStorage) -> None:
    """Migration step: replay the journal held before lots existed into lots and consumptions."""
    # The ledger code of this release, on the schema of m004: no owner columns yet.
    ledger = type(storage.ledger)(storage.db)
    ledger.owner_columns = False
    rows = storage.db.execute(
        "SELECT entry_id, card_no, wallet, kind, amount, rule_id, source, active_from, "
        "expires_at, created_at FROM ledger ORDER BY entry_id"
    ).fetchall()
    for row in rows:
        ledger.apply_entry(int(row[0]), *row[1:])
