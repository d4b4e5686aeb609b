"""The Center's schema: one ordered list of named migrations per backend, recorded by name.

As in sqlite-utils' ``migrations.py`` (and pos_agent/migrations.py for the local files): each
migration runs in its own transaction together with the `_migrations` row that records it, so
a database is always at a known step and re-running is a no-op. Every such transaction first
takes the schema lock (on PostgreSQL an advisory lock), then reads the records again: of two
workers starting together, one migrates and the other finds the work done.

A database of a release before names kept one number in `schema_version`; its first run here
records the names of the migrations that number covered, without running them. A database
recording a name this release does not know was migrated by a newer release and is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

from center.errors import StorageError

if TYPE_CHECKING:
    from center.storage.sql import SqlStorage

Step: TypeAlias = "str | Callable[[SqlStorage], None]"
"""A statement, or a Python step for data that SQL can't move alone (never commits)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One named change of the Center's schema: its steps run in order, in one transaction
    with the `_migrations` row that records `name` (center/storage/migrations.py)."""

    name: str
    steps: tuple[Step, ...] = ()


__all__ = [
    "MIGRATIONS_TABLE",
    "NAMED_MARK",
    "Migration",
    "MigrationList",
    "Step",
    "apply_migrations",
    "recorded",
]

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "_migrations"
_CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (seq INTEGER PRIMARY KEY, "
    "name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
)
# The bookkeeping of the releases before names, kept so that they can read it (below).
_CREATE_LEGACY = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
)
NAMED_MARK = 1_000_000
"""Version written into `schema_version` once names are recorded: a release from before names
reads it as a schema newer than its own and refuses the database instead of migrating it."""


@dataclass(frozen=True, slots=True)
class MigrationList:
    """The migrations of one backend, in the order they run.

    The first `numbered` of them were schema versions 1..numbered of the releases before
    names, in this order: what `schema_version` N of such a database had applied.
    """

    migrations: tuple[Migration, ...]
    numbered: int

    def __post_init__(self) -> None:
        names = self.names()
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"migration names used twice: {', '.join(duplicated)}")
        if not 0 <= self.numbered <= len(names):
            raise ValueError(f"numbered={self.numbered} outside 0..{len(names)}")

    def names(self) -> list[str]:
        """Every migration's name, in order."""
        return [migration.name for migration in self.migrations]

    def until(self, name: str) -> MigrationList:
        """The list up to and including `name` (what an older release knew)."""
        end = self.names().index(name) + 1
        return MigrationList(self.migrations[:end], min(self.numbered, end))


def recorded(storage: SqlStorage) -> list[str]:
    """Names of the migrations recorded in the database, in the order they ran."""
    rows = storage.db.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY seq").fetchall()
    return [str(row[0]) for row in rows]


def apply_migrations(storage: SqlStorage, migrations: MigrationList) -> list[str]:
    """Run the migrations the database has not recorded, each in its own transaction; the
    names it ran. A database recording an unknown migration is refused before any change."""
    # The connection lock throughout: no other call of this storage runs in between.
    with storage.db.guard("migrate"):
        with storage.db.transaction():
            storage.db.lock_schema()
            storage.db.execute(_CREATE_TABLE)
            storage.db.execute(_CREATE_LEGACY)
            done = recorded(storage)
            # Refused here, the transaction rolls back: nothing is written.
            _refuse_unknown(storage, migrations, done)
            if not done:
                done = _adopt(storage, migrations)
        ran: list[str] = []
        for migration in migrations.migrations:
            if migration.name in done:
                continue
            with storage.db.guard(f"migration {migration.name}"), storage.db.transaction():
                storage.db.lock_schema()
                done = recorded(storage)  # another worker may have run it while we waited
                _refuse_unknown(storage, migrations, done)
                if migration.name in done:
                    continue
                for step in migration.steps:
                    if callable(step):
                        step(storage)
                    else:
                        storage.db.execute(step)
                _record(storage, migration.name, len(done) + 1, _now())
            ran.append(migration.name)
            log.info("%s: applied migration %s", storage.backend, migration.name)
        return ran


def _adopt(storage: SqlStorage, migrations: MigrationList) -> list[str]:
    """Record the migrations a database of a release before names had applied (by number)."""
    marked = storage.db.execute(
        "SELECT COUNT(*) FROM schema_version WHERE version >= ?", (NAMED_MARK,)
    ).fetchone()
    if int(marked[0]):
        return []  # adopted (or made) by a release with names: its records are all there is
    rows = storage.db.execute(
        "SELECT version, applied_at FROM schema_version WHERE version < ? ORDER BY version",
        (NAMED_MARK,),
    ).fetchall()
    applied_at = {int(version): str(at) for version, at in rows}
    version = max(applied_at, default=0)
    if version > migrations.numbered:
        raise StorageError(
            f"{storage.backend}: database schema version {version} is newer than this Center "
            f"(its numbered versions end at {migrations.numbered}); run a newer release, "
            "downgrades are not supported"
        )
    adopted = migrations.names()[:version]
    for number, name in enumerate(adopted, start=1):
        _record(storage, name, number, applied_at.get(number, _now()))
    if adopted:
        log.info(
            "%s: adopted schema version %d as migrations %s..%s",
            storage.backend,
            version,
            adopted[0],
            adopted[-1],
        )
    storage.db.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (NAMED_MARK, _now())
    )
    return adopted


def _record(storage: SqlStorage, name: str, seq: int, applied_at: str) -> None:
    storage.db.execute(
        f"INSERT INTO {MIGRATIONS_TABLE} (seq, name, applied_at) VALUES (?, ?, ?)",
        (seq, name, applied_at),
    )


def _refuse_unknown(storage: SqlStorage, migrations: MigrationList, done: list[str]) -> None:
    known = set(migrations.names())
    unknown = [name for name in done if name not in known]
    if unknown:
        latest = migrations.migrations[-1].name if migrations.migrations else "none"
        raise StorageError(
            f"{storage.backend}: database migration {', '.join(unknown)} was applied by a "
            f"newer release of the Center (this one knows up to {latest}); run that release "
            "or a later one, downgrades are not supported"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()
