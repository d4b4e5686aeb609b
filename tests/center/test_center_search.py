"""Call-center search tolerates a misspelt last name (pg_trgm on PostgreSQL, difflib on SQLite)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from center.crm.model import parse_customer, parse_search
from center.storage import Storage
from center.storage.postgres import PostgresStorage
from tests.center.center_factories import T0

NOW = T0 + timedelta(days=1)


def _customer(storage: Storage, **fields: Any) -> str:
    return storage.customers.create_customer(parse_customer(fields), "tester", NOW)


def _ids(storage: Storage, q: str) -> list[str]:
    return [c["customer_id"] for c in storage.customers.search_customers(parse_search(q))]


def test_a_misspelt_last_name_finds_the_customer(storage: Storage) -> None:
    petrov = _customer(storage, customer_id="p1", last_name="Petrov", first_name="Ivan")
    petrova = _customer(storage, customer_id="p2", last_name="Petrova", first_name="Anna")
    _customer(storage, customer_id="s1", last_name="Sidorov", first_name="Oleg")
    assert _ids(storage, "petorv") == [petrov, petrova]  # best match first
    assert _ids(storage, "Petrvo Ann") == [petrova]  # other words stay name prefixes
    assert _ids(storage, "sidorv") == ["s1"]
    assert _ids(storage, "kuznetsov") == []  # nothing alike


def test_prefix_matches_come_first_and_alone(storage: Storage) -> None:
    _customer(storage, customer_id="a", last_name="Ivanova")
    _customer(storage, customer_id="b", last_name="Ivanov")
    assert _ids(storage, "ivanova") == ["a"]  # an exact prefix hit: no fuzzy extras
    assert _ids(storage, "ivanovs") == ["a", "b"] or _ids(storage, "ivanovs") == ["b", "a"]


def test_short_words_are_not_guessed(storage: Storage) -> None:
    _customer(storage, customer_id="a", last_name="Lee")
    assert _ids(storage, "lea") == []
    assert _ids(storage, "le") == ["a"]


def test_phone_email_and_card_stay_exact_prefixes(storage: Storage) -> None:
    anna = _customer(storage, last_name="Orlova", phone="+7 912 345 67 89", email="anna@x.org")
    assert _ids(storage, "6789") == [anna]
    assert _ids(storage, "6788") == []
    assert _ids(storage, "anna@x") == [anna]
    assert _ids(storage, "anne@x") == []


def test_names_table_follows_every_writer(pg_dsn: str) -> None:
    storage = PostgresStorage(pg_dsn)
    try:
        storage.migrate()
        storage.db.executemany(
            "INSERT INTO customer_index VALUES (?, ?, ?, ?, ?, ?)",
            [("c1", "kuznetsov", "", "", "", ""), ("c2", "kuznetsov", "", "", "", "")],
        )
        storage.db.execute(
            "UPDATE customer_index SET last_name = 'kuznetsova' WHERE customer_id = 'c2'"
        )
        names = storage.db.execute("SELECT name FROM customer_names ORDER BY name").fetchall()
        assert [r[0] for r in names] == ["kuznetsov", "kuznetsova"]
        assert _ids(storage, "kuznecov") == ["c1", "c2"]
    finally:
        storage.close()
