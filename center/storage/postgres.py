"""PostgreSQL storage (psycopg 3): the production backend, chosen when a DSN is configured."""

from __future__ import annotations

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
from center.ingest.store_postgres import PostgresSalesRepository
from center.ledger import leases_store as leases
from center.ledger import returns_store as returns
from center.ledger.store_postgres import PostgresLedgerRepository
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
from center.storage.migrations import MigrationList
from center.storage.postgres_database import PostgresDatabase
from center.storage.sql import Migration, SqlStorage, lots_from_ledger
from center.suppliers import suppliers_store

__all__ = ["POSTGRES_MIGRATIONS", "PostgresStorage"]

# The order migrations run in: a new one goes at the end, with the same name on both backends.
POSTGRES_MIGRATIONS = MigrationList(
    (
        Migration(
            "m001_sales_ledger_and_master_data",
            (
                """CREATE TABLE sales (
            sale_id TEXT PRIMARY KEY,
            store_id TEXT NOT NULL,
            register_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            opened_at TIMESTAMPTZ NOT NULL,
            closed_at TIMESTAMPTZ NOT NULL,
            card_no TEXT,
            subtotal_minor BIGINT NOT NULL,
            discount_minor BIGINT NOT NULL,
            total_minor BIGINT NOT NULL,
            line_count INTEGER NOT NULL,
            promo_version BIGINT NOT NULL,
            fingerprint TEXT NOT NULL,
            payload BYTEA NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
            UNIQUE (register_id, seq)
        )""",
                "CREATE INDEX sales_store_register ON sales (store_id, register_id, seq)",
                "CREATE INDEX sales_card ON sales (card_no)",
                """CREATE TABLE sale_lines (
            sale_id TEXT NOT NULL,
            line_no INTEGER NOT NULL,
            product_id TEXT NOT NULL,
            qty_milli BIGINT NOT NULL,
            unit_price_minor BIGINT NOT NULL,
            amount_minor BIGINT NOT NULL,
            discount_minor BIGINT NOT NULL,
            weighed INTEGER NOT NULL,
            known_product INTEGER NOT NULL,
            PRIMARY KEY (sale_id, line_no)
        )""",
                """CREATE TABLE ledger (
            entry_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            card_no TEXT NOT NULL,
            wallet TEXT NOT NULL,
            kind TEXT NOT NULL,
            amount BIGINT NOT NULL,
            rule_id TEXT NOT NULL,
            source TEXT NOT NULL,
            active_from TIMESTAMPTZ,
            expires_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL,
            UNIQUE (source, wallet, kind, rule_id)
        )""",
                "CREATE INDEX ledger_card ON ledger (card_no, wallet)",
                """CREATE TABLE quarantine (
            entry_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            sale_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            register_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            reason TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            payload BYTEA NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
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
            price_minor BIGINT,
            version BIGINT NOT NULL
        )""",
                """CREATE TABLE customers (
            customer_id TEXT PRIMARY KEY,
            attributes TEXT NOT NULL,
            version BIGINT NOT NULL
        )""",
                """CREATE TABLE cards (
            card_no TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            status TEXT NOT NULL,
            version BIGINT NOT NULL
        )""",
                "CREATE INDEX cards_customer ON cards (customer_id)",
                """CREATE TABLE stores (
            store_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            format TEXT NOT NULL,
            timezone TEXT NOT NULL,
            version BIGINT NOT NULL
        )""",
                """CREATE TABLE store_products (
            store_id TEXT NOT NULL,
            product_id TEXT NOT NULL,
            version BIGINT NOT NULL,
            PRIMARY KEY (store_id, product_id)
        )""",
                """CREATE TABLE promotions (
            promotion_id TEXT PRIMARY KEY,
            doc TEXT NOT NULL,
            version BIGINT NOT NULL
        )""",
                """CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            version BIGINT NOT NULL
        )""",
                """CREATE TABLE master_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version BIGINT NOT NULL
        )""",
                "INSERT INTO master_version (id, version) VALUES (1, 0)",
                """CREATE TABLE heartbeats (
            node_id TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            store_id TEXT NOT NULL,
            sent_at TIMESTAMPTZ NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
            last_seq BIGINT NOT NULL,
            queue_depth BIGINT NOT NULL,
            oldest_queued_at TIMESTAMPTZ,
            master_version BIGINT NOT NULL,
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
            created_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL,
            used_at TIMESTAMPTZ,
            node_id TEXT
        )""",
                """CREATE TABLE nodes (
            node_id TEXT PRIMARY KEY,
            store_id TEXT NOT NULL,
            secret TEXT NOT NULL,
            enrolled_at TIMESTAMPTZ NOT NULL
        )""",
            ),
        ),
        # the ledger as lots: every accrual a lot, every debit FIFO consumptions of lots (or a
        # debt); the journal held so far is replayed into them.
        Migration(
            "m004_ledger_lots",
            (
                """CREATE TABLE lots (
            lot_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            entry_id BIGINT NOT NULL UNIQUE,
            card_no TEXT NOT NULL,
            wallet TEXT NOT NULL,
            kind TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            source TEXT NOT NULL,
            amount BIGINT NOT NULL,
            remaining BIGINT NOT NULL,
            active_from TIMESTAMPTZ,
            expires_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL,
            UNIQUE (source, wallet, kind, rule_id)
        )""",
                "CREATE INDEX lots_card ON lots (card_no, wallet, expires_at)",
                "CREATE INDEX lots_open_expiry ON lots (expires_at) WHERE remaining > 0",
                """CREATE TABLE lot_consumptions (
            consumption_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            entry_id BIGINT NOT NULL,
            lot_id BIGINT,
            card_no TEXT NOT NULL,
            wallet TEXT NOT NULL,
            kind TEXT NOT NULL,
            amount BIGINT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
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
                "ALTER TABLE cards ADD COLUMN issued_at TIMESTAMPTZ",
                """CREATE TABLE customer_index (
            customer_id TEXT PRIMARY KEY,
            last_name TEXT NOT NULL,
            first_name TEXT NOT NULL,
            middle_name TEXT NOT NULL,
            phone_rev TEXT NOT NULL,
            email TEXT NOT NULL
        )""",
                "CREATE INDEX customer_index_last ON customer_index (last_name text_pattern_ops)",
                "CREATE INDEX customer_index_first ON customer_index (first_name text_pattern_ops)",
                "CREATE INDEX customer_index_middle ON customer_index "
                "(middle_name text_pattern_ops)",
                "CREATE INDEX customer_index_phone ON customer_index (phone_rev text_pattern_ops)",
                "CREATE INDEX customer_index_email ON customer_index (email text_pattern_ops)",
                "CREATE INDEX cards_card_prefix ON cards (card_no text_pattern_ops)",
                """CREATE TABLE audit (
            audit_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind TEXT NOT NULL,
            object_id TEXT NOT NULL,
            action TEXT NOT NULL,
            before TEXT,
            after TEXT,
            actor TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL
        )""",
                "CREATE INDEX audit_object ON audit (kind, object_id, audit_id)",
            ),
        ),
        users.POSTGRES_MIGRATION,
        crm.POSTGRES_MIGRATION,
        promotions.POSTGRES_MIGRATION,
        coupons.POSTGRES_MIGRATION,
        segments.POSTGRES_MIGRATION,
        returns.POSTGRES_MIGRATION,
        customers.POSTGRES_MIGRATION,
        feed.POSTGRES_MIGRATION,
        partitions.POSTGRES_MIGRATION,
        nonces.POSTGRES_MIGRATION,
        offers.POSTGRES_MIGRATION,
        coupon_jobs.POSTGRES_MIGRATION,
        owners.POSTGRES_MIGRATION,
        customer_states.POSTGRES_MIGRATION,
        master_store.POSTGRES_MIGRATION,
        coupon_holds.POSTGRES_MIGRATION,
        people.POSTGRES_MIGRATION,
        communications.POSTGRES_MIGRATION,
        fraud.POSTGRES_MIGRATION,
        ingest.POSTGRES_TIME_INDEXES,
        people.POSTGRES_HARDENING_MIGRATION,
        review.POSTGRES_MIGRATION,
        leases.POSTGRES_MIGRATION,
        tiers.POSTGRES_MIGRATION,
        certificates.POSTGRES_MIGRATION,
        models_store.POSTGRES_MIGRATION,
        budgets_store.POSTGRES_MIGRATION,
        members_store.POSTGRES_MIGRATION,
        advertising.POSTGRES_MIGRATION,
        suppliers_store.POSTGRES_MIGRATION,
        certificates.SALE_INDEX_MIGRATION,
        models_store.POSTGRES_PREFERENCES_MIGRATION,
        verify_checkpoints.POSTGRES_MIGRATION,
        till_store.POSTGRES_MIGRATION,
    ),
    numbered=17,  # m001..m017 were schema versions 1..17 before names
)


class PostgresStorage(SqlStorage):
    """The Center's state in a PostgreSQL database."""

    migrations = POSTGRES_MIGRATIONS
    ledger_repository = PostgresLedgerRepository
    sales_repository = PostgresSalesRepository

    def __init__(self, dsn: str) -> None:
        super().__init__(PostgresDatabase(dsn))
