"""One SQLite-backed object owned by one dedicated thread: every call runs there, in turn.

SQLite connections belong to the thread that made them, and a commit's fsync must not block the
event loop; the sales box and the reservation book both live this way.
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
    """Makes the object with `make` on its thread at `open()`; `run` calls into it there."""

    def __init__(self, path: Path, make: Callable[[], _O], *, thread_name: str) -> None:
        self.path = path
        self._make = make
        self._obj: _O | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    async def open(self) -> None:
        """Open (and if needed create) the database on the worker thread."""
        self._obj = await asyncio.get_running_loop().run_in_executor(self._executor, self._make)

    async def run(self, call: Callable[[_O], _T]) -> _T:
        """Run `call(obj)` on the worker thread and return its result."""
        obj = self._obj
        if obj is None:
            raise RuntimeError(f"{self.path}: {type(self).__name__}.open() was not called")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, obj)

    async def close(self) -> None:
        """Let the call in progress finish, then close the database and the thread."""
        obj, self._obj = self._obj, None
        if obj is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, obj.close)
        self._executor.shutdown(wait=True)
