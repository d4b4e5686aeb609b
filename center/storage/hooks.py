"""What every storage mixin may call on SqlStorage: the dialect hooks and shared helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from center.storage.dialect import Dialect

if TYPE_CHECKING:
    from center.storage.sql import SqlStorage

__all__ = ["Migration", "SqlHooks", "Step"]

Step: TypeAlias = "str | Callable[[SqlStorage], None]"
"""A statement, or a Python step for data that SQL can't move alone (never commits)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One named change of the Center's schema: its steps run in order, in one transaction
    with the `_migrations` row that records `name` (center/storage/migrations.py)."""

    name: str
    steps: tuple[Step, ...] = ()


class SqlHooks:
    """Declarations of SqlStorage's hooks, so each mixin type-checks on its own."""

    backend: str = ""
    dialect: Dialect

    @property
    def _FOR_UPDATE(self) -> str:
        """Suffix of a SELECT locking its rows until the commit (the dialect's)."""
        return self.dialect.for_update

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _guard(self, what: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _ts(self, value: datetime | None) -> Any:
        raise NotImplementedError

    def _dt(self, value: Any) -> datetime:
        raise NotImplementedError

    def _lock_cards(self, card_nos: Iterable[str]) -> None:
        raise NotImplementedError

    def _bump_master(self) -> int:
        raise NotImplementedError

    def _audit(
        self, kind: str, object_id: str, action: str, before: Any, after: Any, actor: str, at: Any
    ) -> None:
        raise NotImplementedError
