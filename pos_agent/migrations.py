"""Named schema migrations of a local SQLite file, applied in order and recorded by name.

As in sqlite-utils' ``migrations.py``: a database has a list of named functions; each one runs
in its own transaction together with the row that records it in ``_migrations``, so a file is
always at a known step and re-running is a no-op. Several sets may share one file (store.db
holds the sales box and the reservation book), so a row names its set. A file that records a
migration of the set this code does not know was written by a newer release and is refused.

The register and the store node each keep an identical copy of this module (tiers never
import each other); tests/test_local_migrations.py checks that the copies agree.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["MIGRATIONS_TABLE", "Migration", "Migrations", "Step", "database_file"]

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "_migrations"
_CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (migration_set TEXT NOT NULL, "
    "name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (migration_set, name))"
)

Step = Callable[[sqlite3.Connection], None]
"""A migration: changes the schema (and data) through the connection, never commits."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One named step of a database's schema."""

    name: str
    step: Step


def database_file(conn: sqlite3.Connection) -> str:
    """The path of the connection's main database (for messages)."""
    for _, schema, path in conn.execute("PRAGMA database_list"):
        if schema == "main":
            return str(path) or ":memory:"
    return "?"


def _statements(schema: str) -> list[str]:
    return [statement.strip() for statement in schema.split(";") if statement.strip()]


class Migrations:
    """The ordered migrations of one set; `apply` brings a connection's file up to date.

    `error` builds the exception raised for a file this code must not use (the database's
    own error class, so callers see the error family they already handle).
    """

    def __init__(self, migration_set: str, *, error: Callable[[str], Exception]) -> None:
        self.migration_set = migration_set
        self.error = error
        self.migrations: list[Migration] = []

    def __call__(self, step: Step) -> Step:
        """Register `step` as the next migration, named after the function (a decorator)."""
        name = step.__name__
        if any(migration.name == name for migration in self.migrations):
            raise ValueError(f"migration {name!r} is already in set {self.migration_set!r}")
        self.migrations.append(Migration(name, step))
        return step

    def applied(self, conn: sqlite3.Connection) -> list[str]:
        """Names of this set's migrations recorded in the file, in the order they ran."""
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
        ).fetchone()
        if found is None:
            return []
        rows = conn.execute(
            f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ? ORDER BY rowid",
            (self.migration_set,),
        )
        return [str(row[0]) for row in rows]

    def pending(self, conn: sqlite3.Connection) -> list[str]:
        """Names of the migrations `apply` would run, in order (reads only)."""
        done = set(self.applied(conn))
        return [m.name for m in self.migrations if m.name not in done]

    def apply(self, conn: sqlite3.Connection) -> list[str]:
        """Run the pending migrations, each in its own transaction; the names it ran.

        A file recording a migration of this set unknown here is refused before anything
        is written; a migration that fails leaves the file as the previous one left it.
        """
        if conn.in_transaction:
            raise RuntimeError(
                f"{database_file(conn)}: migrations need a connection outside a transaction"
            )
        done = self.applied(conn)
        self._refuse_newer(conn, done)
        ran: list[str] = []
        for migration in self.migrations:
            if migration.name in done:
                continue
            # IMMEDIATE: another connection migrating the same file waits, then sees our rows.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_CREATE_TABLE)
                done = self.applied(conn)
                self._refuse_newer(conn, done)
                fresh = migration.name not in done
                if fresh:
                    migration.step(conn)
                    if not conn.in_transaction:
                        raise RuntimeError(
                            f"{database_file(conn)}: migration {migration.name} committed "
                            "on its own (executescript?); a migration must run inside the "
                            "runner's transaction"
                        )
                    conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name, applied_at) "
                        "VALUES (?, ?, ?)",
                        (self.migration_set, migration.name, datetime.now(UTC).isoformat()),
                    )
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if fresh:
                ran.append(migration.name)
                log.info(
                    "%s: applied %s migration %s", database_file(conn), self.migration_set, ran[-1]
                )
        return ran

    def _refuse_newer(self, conn: sqlite3.Connection, done: list[str]) -> None:
        known = {migration.name for migration in self.migrations}
        unknown = [name for name in done if name not in known]
        if unknown:
            latest = self.migrations[-1].name if self.migrations else "none"
            raise self.error(
                f"{database_file(conn)}: {self.migration_set} migration {', '.join(unknown)} was "
                f"applied by a newer release (this one knows up to {latest}); run that "
                "release or a later one, downgrades are not supported"
            )

    def create_or_adopt(self, conn: sqlite3.Connection, schema: str) -> None:
        """Run `schema` (CREATE ... IF NOT EXISTS statements) adopting what the file has.

        A table the file already has keeps its rows; it must have at least the columns the
        schema gives it (more are fine), or the file is refused as not one of ours.
        """
        statements = _statements(schema)
        scratch = sqlite3.connect(":memory:")
        try:
            for statement in statements:
                scratch.execute(statement)
            expected = {
                str(name): {str(row[1]) for row in scratch.execute(f'PRAGMA table_info("{name}")')}
                for (name,) in scratch.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            }
        finally:
            scratch.close()
        for table, columns in sorted(expected.items()):
            have = {str(row[1]) for row in conn.execute(f'PRAGMA table_info("{table}")')}
            missing = sorted(columns - have)
            if have and missing:
                raise self.error(
                    f"{database_file(conn)}: table {table} lacks column(s) {', '.join(missing)}; "
                    f"the file was not written by a known release ({self.migration_set})"
                )
        for statement in statements:
            conn.execute(statement)
