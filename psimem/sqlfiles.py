"""Re-applied SQL code: functions, triggers and views as plain .sql files.

Tables live in alembic revisions and run once; code lives in db/functions and
db/triggers and is re-applied (CREATE OR REPLACE) whenever a file's checksum differs
from the one recorded in ops.applied_sql. Files run in name order, functions first.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .settings import DB_DIR

CODE_DIRS = ("functions", "triggers")


def sql_files(db_dir: Path = DB_DIR) -> list[Path]:
    return [f for d in CODE_DIRS for f in sorted((db_dir / d).glob("*.sql"))]


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_version(db_dir: Path = DB_DIR) -> str:
    """One hash over every code file: what a client compares with the database's."""
    h = hashlib.sha256()
    for f in sql_files(db_dir):
        h.update(f.relative_to(db_dir).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def apply_sql_files(conn, db_dir: Path = DB_DIR, say=None) -> list[str]:
    """Apply changed code files inside the caller's transaction; return their names."""
    applied = []
    with conn.cursor() as cur:
        cur.execute("SET LOCAL check_function_bodies = off")
        cur.execute("SELECT path, checksum FROM ops.applied_sql")
        known = dict(cur.fetchall())
        for f in sql_files(db_dir):
            name = f.relative_to(db_dir).as_posix()
            digest = checksum(f)
            if known.get(name) == digest:
                continue
            cur.execute(f.read_text())
            cur.execute(
                "INSERT INTO ops.applied_sql (path, checksum) VALUES (%s, %s) "
                "ON CONFLICT (path) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
                (name, digest),
            )
            applied.append(name)
            if say:
                say(f"applied {name}")
        cur.execute(
            "INSERT INTO ops.settings (key, value, description) VALUES ('sql.code_version', to_jsonb(%s::text), "
            "'hash of db/functions and db/triggers as last applied') "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now() "
            "WHERE ops.settings.value IS DISTINCT FROM EXCLUDED.value",
            (code_version(db_dir),),
        )
    return applied
