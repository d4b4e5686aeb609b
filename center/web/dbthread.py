"""One blocking database object owned by one dedicated thread: every call runs there, in turn.

SQLite connections belong to the thread that made them, a commit's fsync must not block the
event loop, and a single PostgreSQL connection is used serially. Each tier keeps a copy of
`DbThread` (store_node/dbthread.py, pos_agent/dbthread.py, center/web/dbthread.py);
tests/test_service_shell.py checks that the copies are the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generic, Protocol, TypeVar

__all__ = ["DbThread"]


class _Closable(Protocol):
    def close(self) -> None: ...


_O = TypeVar("_O", bound=_Closable)
_T = TypeVar("_T")


class DbThread(Generic[_O]):
    """Makes the object with `make` on its thread at `open()`; `run` calls into it there.

    `where` names the database in messages (a path, or a DSN without its password); `owned=False`
    leaves the object open at `close()`, for one its caller made and will close.
    """

    def __init__(
        self,
        where: Path | str,
        make: Callable[[], _O],
        *,
        thread_name: str,
        owned: bool = True,
    ) -> None:
        self.where = where
        self._make = make
        self._owned = owned
        self._obj: _O | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The one thread, for code that submits plain functions to it."""
        return self._executor

    async def open(self) -> _O:
        """Make the object on the thread and return it; if that fails, the thread stops."""
        try:
            obj = await asyncio.get_running_loop().run_in_executor(self._executor, self._make)
        except BaseException:
            self._executor.shutdown(wait=True)
            raise
        self._obj = obj
        return obj

    async def run(self, call: Callable[[_O], _T]) -> _T:
        """Run `call(obj)` on the thread and return its result."""
        obj = self._obj
        if obj is None:
            raise RuntimeError(f"{self.where}: {type(self).__name__}.open() was not called")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, obj)

    async def close(self) -> None:
        """Let the call in progress finish, then close the object (if owned) and the thread."""
        obj, self._obj = self._obj, None
        if obj is not None and self._owned:
            await asyncio.get_running_loop().run_in_executor(self._executor, obj.close)
        self._executor.shutdown(wait=True)
