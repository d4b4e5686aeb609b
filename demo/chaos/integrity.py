"""Storage integrity: SQLite integrity_check of every file, amcheck of the Center's PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


def integrity(paths: Iterable[Path]) -> dict[str, str]:
    """PRAGMA integrity_check of every database: "folder/name" -> "ok" or the first problem."""
    out = {}
    for path in sorted(paths):
        name = f"{path.parent.name}/{path.name}"
        try:
            conn = sqlite3.connect(path, timeout=30)
            try:
                out[name] = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            out[name] = f"cannot check: {exc}"
    return out


def postgres_integrity(dsn: str) -> dict[str, str]:
    """amcheck of the Center's PostgreSQL: every B-tree index checked, with its heap.

    `bt_index_check(index, heapallindexed => true)` verifies the index structure and that every
    heap tuple is in the index, under an AccessShareLock (the Center may keep running).
    "index name" -> "ok" or the error amcheck raised.
    """
    import psycopg

    out: dict[str, str] = {}
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = pg.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE am.amname = 'btree' AND n.nspname = 'public' AND c.relkind = 'i' "
            "ORDER BY c.relname"
        ).fetchall()
        for (name,) in indexes:
            try:
                pg.execute("SELECT bt_index_check(%s::regclass, true)", (name,))
                out[f"postgresql/{name}"] = "ok"
            except psycopg.Error as exc:
                out[f"postgresql/{name}"] = f"amcheck: {str(exc).strip()}"
    return out
