"""SQLite storage: one file, WAL, synchronous=FULL; the default, needs no set-up."""

from __future__ import annotations

from pathlib import Path

from center.access import nonces_store as nonces
from center.access import people_store as people
from center.access import users_store as users
from center.advertising import store as advertising
from center.certificates import store as certificates
from center.communications import store as communications
from center.communications import till_store
from center.crm import customers_store as customers
from center.crm import state_store as customer_states
from center.crm import store as crm
from center.crm import tiers_store as tiers
from center.feed import master_store
from center.feed import store as feed
from center.fraud import store as fraud
from center.ingest import partitions
from center.ingest import review_store as review
from center.ingest import store as ingest
from center.ingest import verify_store as verify_checkpoints
from center.ledger import leases_store as leases
from center.ledger import returns_store as returns
from center.members import members_store
from center.models import models_store
from center.promotions import budgets_store
from center.promotions import coupon_jobs_store as coupon_jobs
from center.promotions import coupons_holds_store as coupon_holds
from center.promotions import coupons_store as coupons
from center.promotions import offers_store as offers
from center.promotions import segments_store as segments
from center.promotions import store as promotions
from center.storage import owners
from center.storage.database import SqliteDatabase
from center.storage.migrations import MigrationList
from center.storage.sql import Migration, SqlStorage, lots_from_ledger
from center.suppliers import suppliers_store

__all__ = ["SQLITE_MIGRATIONS", "SqliteStorage"]

# The order migrations run in: a new one goes at the end, with the same name on both backends.
SQLITE_MIGRATIONS = MigrationList(
    (
        Migration(
            "m001_sales_ledger_and_master_data",
            (
                """CREATE TABLE sales (
            sale_id TEXT PRIMARY KEY,
            store_id TEXT NOT NULL,
            register_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            opened_at TEXT NOT NULL,
            closed_at TEXT NOT NULL,
            card_no TEXT,
            subtotal_minor INTEGER NOT NULL,
            discount_minor INTEGER NOT NULL,
            total_minor INTEGER NOT NULL,
            line_count INTEGER NOT NULL,
            promo_version INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            payload BLOB NOT NULL,
            received_at TEXT NOT NULL,
            UNIQUE (register_id, seq)
        )""",
                "CREATE INDEX sales_store_register ON sales (store_id, register_id, seq)",
                "CREATE INDEX sales_card ON sales (card_no)",
                """CREATE TABLE sale_lines (
            sale_id TEXT NOT NULL,
            line_no INTEGER NOT NULL,
            product_id TEXT NOT NULL,
            qty_milli INTEGER NOT NULL,
            unit_price_minor INTEGER NOT NULL,
            amount_minor INTEGER NOT NULL,
            discount_minor INTEGER NOT NULL,
            weighed INTEGER NOT NULL,
            known_product INTEGER NOT NULL,
            PRIMARY KEY (sale_id, line_no)
        )""",
                """CREATE TABLE ledger (
            entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
            card_no TEXT NOT NULL,
            wallet TEXT NOT NULL,
            kind TEXT NOT NULL,
            amount INTEGER NOT NULL,
            rule_id TEXT NOT NULL,
            source TEXT NOT NULL,
            active_from TEXT,
            expires_at TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (source, wallet, kind, rule_id)
        )""",
                "CREATE INDEX ledger_card ON ledger (card_no, wallet)",
                """CREATE TABLE quarantine (
            entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
            sale_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            register_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            reason TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            payload BLOB NOT NULL,
            received_at TEXT NOT NULL,
            UNIQUE (sale_id, fingerprint)
        )""",
                """CREATE TABLE products (
            product_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            department TEXT NOT NULL,
            category TEXT NOT NULL,
            product_type TEXT NOT NULL,
            brand TEXT NOT NULL,
            manufacturer_id TEXT NOT NULL,
            package_size TEXT NOT NULL,
            weighed INTEGER NOT NULL,
            price_minor INTEGER,
            version INTEGER NOT NULL
        )""",
                """CREATE TABLE customers (
            customer_id TEXT PRIMARY KEY,
            attributes TEXT NOT NULL,
            version INTEGER NOT NULL
        )""",
                """CREATE TABLE cards (
            card_no TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            status TEXT NOT NULL,
            version INTEGER NOT NULL
        )""",
                "CREATE INDEX cards_customer ON cards (customer_id)",
                """CREATE TABLE stores (
            store_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            format TEXT NOT NULL,
            timezone TEXT NOT NULL,
            version INTEGER NOT NULL
        )""",
                """CREATE TABLE store_products (
            store_id TEXT NOT NULL,
            product_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (store_id, product_id)
        )""",
                """CREATE TABLE promotions (
            promotion_id TEXT PRIMARY KEY,
            doc TEXT NOT NULL,
            version INTEGER NOT NULL
        )""",
                """CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            version INTEGER NOT NULL
        )""",
                """CREATE TABLE master_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        )""",
                "INSERT INTO master_version (id, version) VALUES (1, 0)",
                """CREATE TABLE heartbeats (
            node_id TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            store_id TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            last_seq INTEGER NOT NULL,
            queue_depth INTEGER NOT NULL,
            oldest_queued_at TEXT,
            master_version INTEGER NOT NULL,
            devices TEXT NOT NULL
        )""",
            ),
        ),
        # the hash chain of each register's journal (PROTOCOL.md), checked by reconciliation.
        Migration(
            "m002_sale_hash_chain",
            (
                "ALTER TABLE sales ADD COLUMN prev_hash TEXT NOT NULL DEFAULT ''",
                "ALTER TABLE sales ADD COLUMN chain_hash TEXT NOT NULL DEFAULT ''",
            ),
        ),
        # store-node enrolment: one-time tokens (only their SHA-256 kept) and node credentials.
        Migration(
            "m003_node_enrolment",
            (
                """CREATE TABLE enrolment_tokens (
            token_hash TEXT PRIMARY KEY,
            store_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT,
            node_id TEXT
        )""",
                """CREATE TABLE nodes (
            node_id TEXT PRIMARY KEY,
            store_id TEXT NOT NULL,
            secret TEXT NOT NULL,
            enrolled_at TEXT NOT NULL
        )""",
            ),
        ),
        # the ledger as lots: every accrual a lot, every debit FIFO consumptions of lots (or a
        # debt); the journal held so far is replayed into them.
        Migration(
            "m004_ledger_lots",
            (
                """CREATE TABLE lots (
            lot_id INTEGER PRIMARY KEY AUTOINCREMENT,
            entry_id INTEGER NOT NULL UNIQUE,
            card_no TEXT NOT NULL,
            wallet TEXT NOT NULL,
            kind TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            source TEXT NOT NULL,
            amount INTEGER NOT NULL,
            remaining INTEGER NOT NULL,
            active_from TEXT,
            expires_at TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (source, wallet, kind, rule_id)
        )""",
                "CREATE INDEX lots_card ON lots (card_no, wallet, expires_at)",
                "CREATE INDEX lots_open_expiry ON lots (expires_at) WHERE remaining > 0",
                """CREATE TABLE lot_consumptions (
            consumption_id INTEGER PRIMARY KEY AUTOINCREMENT,
            entry_id INTEGER NOT NULL,
            lot_id INTEGER,
            card_no TEXT NOT NULL,
            wallet TEXT NOT NULL,
            kind TEXT NOT NULL,
            amount INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (entry_id, lot_id)
        )""",
                "CREATE INDEX lot_consumptions_card ON lot_consumptions (card_no, wallet, kind)",
                "CREATE INDEX ledger_card_time ON ledger (card_no, created_at)",
                lots_from_ledger,
            ),
        ),
        # customers and cards for the call center: card lifecycle columns, search keys
        # (case-folded; the phone reversed so a suffix is a prefix) and the audit history.
        Migration(
            "m005_card_lifecycle_search_and_audit",
            (
                "ALTER TABLE cards ADD COLUMN card_type TEXT NOT NULL DEFAULT 'physical'",
                "ALTER TABLE cards ADD COLUMN block_reason TEXT NOT NULL DEFAULT ''",
                "ALTER TABLE cards ADD COLUMN replaced_by TEXT",
                "ALTER TABLE cards ADD COLUMN issued_at TEXT",
                """CREATE TABLE customer_index (
            customer_id TEXT PRIMARY KEY,
            last_name TEXT NOT NULL COLLATE NOCASE,
            first_name TEXT NOT NULL COLLATE NOCASE,
            middle_name TEXT NOT NULL COLLATE NOCASE,
            phone_rev TEXT NOT NULL COLLATE NOCASE,
            email TEXT NOT NULL COLLATE NOCASE
        )""",
                "CREATE INDEX customer_index_last ON customer_index (last_name)",
                "CREATE INDEX customer_index_first ON customer_index (first_name)",
                "CREATE INDEX customer_index_middle ON customer_index (middle_name)",
                "CREATE INDEX customer_index_phone ON customer_index (phone_rev)",
                "CREATE INDEX customer_index_email ON customer_index (email)",
                "CREATE INDEX cards_card_prefix ON cards (card_no COLLATE NOCASE)",
                """CREATE TABLE audit (
            audit_id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            object_id TEXT NOT NULL,
            action TEXT NOT NULL,
            before TEXT,
            after TEXT,
            actor TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
                "CREATE INDEX audit_object ON audit (kind, object_id, audit_id)",
            ),
        ),
        users.SQLITE_MIGRATION,
        crm.SQLITE_MIGRATION,
        promotions.SQLITE_MIGRATION,
        coupons.SQLITE_MIGRATION,
        segments.SQLITE_MIGRATION,
        returns.SQLITE_MIGRATION,
        customers.SQLITE_MIGRATION,
        feed.SQLITE_MIGRATION,
        partitions.SQLITE_MIGRATION,
        nonces.SQLITE_MIGRATION,
        offers.SQLITE_MIGRATION,
        coupon_jobs.SQLITE_MIGRATION,
        owners.SQLITE_MIGRATION,
        customer_states.SQLITE_MIGRATION,
        master_store.SQLITE_MIGRATION,
        coupon_holds.SQLITE_MIGRATION,
        people.SQLITE_MIGRATION,
        communications.SQLITE_MIGRATION,
        fraud.SQLITE_MIGRATION,
        ingest.SQLITE_TIME_INDEXES,
        people.SQLITE_HARDENING_MIGRATION,
        review.SQLITE_MIGRATION,
        leases.SQLITE_MIGRATION,
        tiers.SQLITE_MIGRATION,
        certificates.SQLITE_MIGRATION,
        models_store.SQLITE_MIGRATION,
        budgets_store.SQLITE_MIGRATION,
        members_store.SQLITE_MIGRATION,
        advertising.SQLITE_MIGRATION,
        suppliers_store.SQLITE_MIGRATION,
        certificates.SALE_INDEX_MIGRATION,
        models_store.SQLITE_PREFERENCES_MIGRATION,
        verify_checkpoints.SQLITE_MIGRATION,
        till_store.SQLITE_MIGRATION,
    ),
    numbered=17,  # m001..m017 were schema versions 1..17 before names
)


class SqliteStorage(SqlStorage):
    """The Center's state in one SQLite file."""

    migrations = SQLITE_MIGRATIONS

    def __init__(self, path: str | Path) -> None:
        db = SqliteDatabase(path)
        super().__init__(db)
        self.path = db.path
