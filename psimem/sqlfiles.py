"""Re-applied SQL code: functions, procedures, triggers and views as plain .sql files.

Tables live in alembic revisions and run once; code lives in db/functions and
db/triggers (subdirectories included) and is re-applied (CREATE OR REPLACE) whenever a
file's checksum differs from the one recorded in ops.applied_sql. Files run in path
order, functions first.

ops.applied_sql also records which functions each file defined, so that a function whose
file no longer defines it (removed, renamed, or its signature changed) is dropped rather
than left behind for a caller to hit by mistake — unless another file defines it now (it
moved): stale functions are dropped only after every file has been applied.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .settings import DB_DIR

CODE_DIRS = ("functions", "triggers")
# Schemas psimem owns: functions in them are psimem's code, and none is executable by PUBLIC.
CODE_SCHEMAS = ("memory", "ops", "psi", "procedural", "kernel", "bi")

# The functions a statement just wrote: CREATE OR REPLACE writes a new pg_proc row
# version, so a function's ctid changes exactly when a file (re)defines it.
_PROC_VERSIONS = """
    SELECT p.oid::regprocedure::text, p.ctid::text FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%s)
"""


def sql_files(db_dir: Path = DB_DIR) -> list[Path]:
    return [f for d in CODE_DIRS for f in sorted((db_dir / d).rglob("*.sql"), key=lambda p: p.relative_to(db_dir).as_posix())]


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_version(db_dir: Path = DB_DIR) -> str:
    """One hash over every code file: what a client compares with the database's."""
    h = hashlib.sha256()
    for f in sql_files(db_dir):
        h.update(f.relative_to(db_dir).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _drop(cur, functions, say) -> None:
    for fn in sorted(functions):
        cur.execute("SELECT prokind FROM pg_proc WHERE oid = to_regprocedure(%s)", (fn,))
        row = cur.fetchone()
        if row is None:
            continue
        kind = "PROCEDURE" if row[0] == "p" else "FUNCTION"
        cur.execute(f"DROP {kind} {fn}")
        if say:
            say(f"dropped {fn} (no code file defines it any more)")


def apply_sql_files(conn, db_dir: Path = DB_DIR, say=None) -> list[str]:
    """Apply changed code files inside the caller's transaction; return their names."""
    applied = []
    stale: set[str] = set()
    with conn.cursor() as cur:
        cur.execute("SET LOCAL check_function_bodies = off")
        cur.execute("SELECT path, checksum, objects FROM ops.applied_sql")
        known = {path: (digest, objects) for path, digest, objects in cur.fetchall()}
        files = {f.relative_to(db_dir).as_posix(): f for f in sql_files(db_dir)}
        for name, f in files.items():
            digest = checksum(f)
            old_digest, old_objects = known.get(name, (None, None))
            if old_digest == digest:
                continue
            cur.execute(_PROC_VERSIONS, (list(CODE_SCHEMAS),))
            before = dict(cur.fetchall())
            cur.execute(f.read_text())
            cur.execute(_PROC_VERSIONS, (list(CODE_SCHEMAS),))
            defined = {fn for fn, ctid in cur.fetchall() if before.get(fn) != ctid}
            if old_objects is None:
                # Applied before objects were recorded: an old overload of a name it defines is stale.
                names = {fn.split("(")[0] for fn in defined}
                stale |= {fn for fn in before if fn.split("(")[0] in names and fn not in defined}
            else:
                stale |= set(old_objects) - defined
            cur.execute(
                "INSERT INTO ops.applied_sql (path, checksum, objects) VALUES (%s, %s, %s) "
                "ON CONFLICT (path) DO UPDATE SET checksum = EXCLUDED.checksum, objects = EXCLUDED.objects, "
                "applied_at = now()",
                (name, digest, sorted(defined)),
            )
            applied.append(name)
            if say:
                say(f"applied {name}")
        for name, (_, objects) in known.items():
            if name not in files:
                stale |= set(objects or ())
                cur.execute("DELETE FROM ops.applied_sql WHERE path = %s", (name,))
        cur.execute("SELECT coalesce(array_agg(DISTINCT o), '{}') FROM ops.applied_sql, unnest(objects) o")
        _drop(cur, stale - set(cur.fetchone()[0]), say)
        # Each file revokes its own functions from PUBLIC; this catches one that forgot.
        cur.execute(f"REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {', '.join(_present_schemas(cur))} FROM PUBLIC")
        cur.execute(
            "INSERT INTO ops.settings (key, value, description, value_type) VALUES ('sql.code_version', "
            "to_jsonb(%s::text), 'hash of db/functions and db/triggers as last applied', 'text') "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now() "
            "WHERE ops.settings.value IS DISTINCT FROM EXCLUDED.value",
            (code_version(db_dir),),
        )
    return applied


def _present_schemas(cur) -> list[str]:
    """The psimem schemas this database has (kernel arrives with a later revision)."""
    cur.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1", (list(CODE_SCHEMAS),))
    return [r[0] for r in cur.fetchall()]
