"""Bulk load of turns: binary COPY into memory.day_table, all or nothing.

The database checks every row (the day_table trigger and pgvector's input checks), so
this module only shapes rows and turns the server's error into one that names the
input line. Users and sessions given by reference are created first, in the same
transaction, so a refused load leaves nothing behind.

Row-level security lets a writer write only the user it acts for, so rows are copied
user by user, each after memory.act_for(); rows that name a session_id directly are
written as whichever user the connection already acts for. Where row-level security
applies (a psimem_writer login, not the owner) COPY goes to a temporary table first.
"""
from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Iterable

import numpy as np
import psycopg
from tqdm import tqdm

COLUMNS = ("session_id", "role", "content", "universal_embedding", "native_embedding",
           "perplexity_score", "token_count", "turn_number", "created_at", "external_ref")
TYPES = ("uuid", "text", "text", "vector", "vector", "float8", "int4", "int4", "timestamptz", "text")
# Every key a line may hold: a misspelt one ("perplexity") must not load as a silent NULL.
KEYS = frozenset(COLUMNS) | {"user", "session", "user_tier"}


class BadInput(ValueError):
    """A row that cannot be loaded; the message names the line, the field and the rule."""


@dataclass
class Turn:
    line: int
    fields: dict


def read_jsonl(fh: IO[str]) -> list[Turn]:
    turns = []
    for n, raw in enumerate(fh, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadInput(f"line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise BadInput(f"line {n}: must be a JSON object")
        turns.append(Turn(n, obj))
    return turns


def _check_keys(t: Turn) -> None:
    unknown = sorted(set(t.fields) - KEYS)
    if unknown:
        raise BadInput(f"line {t.line}: {unknown[0]}: unknown key (known: {', '.join(sorted(KEYS))})")


def _vector(t: Turn, field: str):
    v = t.fields.get(field)
    if v is None:
        return None
    if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f":
        return v.astype(np.float32, copy=False)
    if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise BadInput(f"line {t.line}: {field}: must be a list of numbers")
    return np.asarray(v, dtype=np.float32)


def _typed(t: Turn, field: str, kind: type, convert=None):
    v = t.fields.get(field)
    if v is None:
        return None
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or isinstance(v, bool):
        raise BadInput(f"line {t.line}: {field}: must be a {kind.__name__}")
    try:
        return convert(v) if convert else v
    except ValueError as e:
        raise BadInput(f"line {t.line}: {field}: {e}") from None


def _resolve_sessions(conn: psycopg.Connection, turns: list[Turn]) -> list[tuple[uuid.UUID | None, uuid.UUID]]:
    """(user id or None, session id) per turn: the session given directly (its user is the
    one the connection acts for), or created from user/session references."""
    users: dict[str, uuid.UUID] = {}
    sessions: dict[tuple[str, str], uuid.UUID] = {}
    out = []
    for t in turns:
        _check_keys(t)
        sid = t.fields.get("session_id")
        if sid is not None:
            out.append((None, _typed(t, "session_id", str, uuid.UUID)))
            continue
        sref, uref = t.fields.get("session"), t.fields.get("user")
        if not isinstance(sref, str) or not isinstance(uref, str) or not sref or not uref:
            raise BadInput(f"line {t.line}: session_id: give session_id, or both user and session references")
        if uref not in users:
            tier = t.fields.get("user_tier", "normal")
            try:
                users[uref] = conn.execute("SELECT memory.act_for(memory.ensure_user(%s, %s))", (uref, tier)).fetchone()[0]
            except psycopg.errors.InvalidParameterValue as e:
                field = e.diag.message_primary.split(":", 1)[0]
                field = {"p_tier": "user_tier", "p_external_ref": "user"}.get(field, field)
                raise BadInput(f"line {t.line}: {field}: {e.diag.message_primary.split(': ', 1)[-1]}") from None
        if (uref, sref) not in sessions:
            started = _typed(t, "created_at", str, datetime.fromisoformat)
            conn.execute("SELECT memory.act_for(%s)", (users[uref],))
            try:
                sessions[uref, sref] = conn.execute(
                    "SELECT memory.start_session(%s, %s, coalesce(%s, now()))", (users[uref], sref, started)
                ).fetchone()[0]
            except (psycopg.errors.InvalidParameterValue, psycopg.errors.DatetimeFieldOverflow) as e:
                field = {"p_external_ref": "session", "p_started_at": "created_at"}.get(
                    e.diag.message_primary.split(":", 1)[0], "session")
                raise BadInput(f"line {t.line}: {field}: {e.diag.message_primary.split(': ', 1)[-1]}") from None
        out.append((users[uref], sessions[uref, sref]))
    return out


def _row(t: Turn, session_id: uuid.UUID) -> tuple:
    return (
        session_id,
        _typed(t, "role", str),
        _typed(t, "content", str),
        _vector(t, "universal_embedding"),
        _vector(t, "native_embedding"),
        _typed(t, "perplexity_score", float),
        _typed(t, "token_count", int),
        _typed(t, "turn_number", int),
        _typed(t, "created_at", str, datetime.fromisoformat),
        _typed(t, "external_ref", str),
    )


_COPY_LINE = re.compile(r"COPY \S+, line (\d+)(?:, column (\w+))?")


def _copy(conn: psycopg.Connection, turns: list[Turn], rows: list[tuple], bar, target: str) -> None:
    try:
        with conn.cursor() as cur:
            cols = ("seq",) * (target != "memory.day_table") + COLUMNS
            with cur.copy(f"COPY {target} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int4"] * (len(cols) - len(COLUMNS)) + list(TYPES))
                for i, row in enumerate(rows):
                    cp.write_row((i,) * (len(cols) - len(COLUMNS)) + row)
                    if i % 64 == 63:
                        bar.update(64)
        bar.update(len(rows) % 64)
    except psycopg.Error as e:
        m = _COPY_LINE.search(e.diag.context or "")
        if not m:
            raise
        raise _bad(turns[int(m.group(1)) - 1], e, m.group(2)) from None


def _bad(t: Turn, e: psycopg.Error, column: str | None = None) -> BadInput:
    field = f" (column {column})" if column and column not in (e.diag.message_primary or "") else ""
    return BadInput(f"line {t.line}: {e.diag.message_primary}{field}")


# Row-level security does not take COPY FROM: a login it applies to (a psimem_writer) copies
# into a temporary table and inserts from there, so the policies and the trigger see each row.
_STAGE = "_psimem_ingest"


def _copy_staged(conn: psycopg.Connection, turns: list[Turn], rows: list[tuple], bar) -> None:
    cols = ", ".join(COLUMNS)
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DROP AS "
                 f"SELECT 0 AS seq, {cols} FROM memory.day_table WITH NO DATA")
    conn.execute(f"TRUNCATE {_STAGE}")
    _copy(conn, turns, rows, bar, _STAGE)
    insert = f"INSERT INTO memory.day_table ({cols}) SELECT {cols} FROM {_STAGE}"
    try:
        with conn.transaction():
            conn.execute(f"{insert} ORDER BY seq")
    except psycopg.Error:
        # The statement names no row: insert one by one (only on this failing path) to find it.
        with conn.transaction(force_rollback=True):
            for i, t in enumerate(turns):
                try:
                    conn.execute(f"{insert} WHERE seq = %s", (i,))
                except psycopg.Error as e:
                    raise _bad(t, e) from None
        raise


def copy_turns(conn: psycopg.Connection, turns: list[Turn], progress: bool = False) -> int:
    """Load turns in the caller's transaction; raise BadInput naming the row on refusal."""
    acting = conn.execute("SELECT nullif(current_setting('psimem.user_id', true), '')::uuid").fetchone()[0]
    owners = _resolve_sessions(conn, turns)
    groups: dict[uuid.UUID | None, list[int]] = {}
    for i, (user, _) in enumerate(owners):
        groups.setdefault(user or acting, []).append(i)
    staged = conn.execute("SELECT row_security_active('memory.day_table')").fetchone()[0]
    bar = tqdm(total=len(turns), unit="turn", desc="copy", disable=not progress, file=sys.stderr)
    try:
        for user, idx in groups.items():
            conn.execute("SELECT memory.act_for(%s)", (user,))
            part, rows = [turns[i] for i in idx], [_row(turns[i], owners[i][1]) for i in idx]
            if staged:
                _copy_staged(conn, part, rows, bar)
            else:
                _copy(conn, part, rows, bar, "memory.day_table")
    finally:
        bar.close()
    # On failure the transaction's rollback restores the setting act_for changed.
    conn.execute("SELECT memory.act_for(%s)", (acting,))
    return len(turns)


def ingest_jsonl(conn: psycopg.Connection, path: str, progress: bool = False) -> int:
    """Load a JSONL file of turns in one transaction; nothing is kept if any row is bad."""
    fh = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with fh:
        turns = read_jsonl(fh)
    with conn.transaction():
        return copy_turns(conn, turns, progress)


def ingest_rows(conn: psycopg.Connection, records: Iterable[dict], progress: bool = False) -> int:
    """Like ingest_jsonl for records already in memory (line numbers count from 1)."""
    turns = [Turn(i, r) for i, r in enumerate(records, start=1)]
    with conn.transaction():
        return copy_turns(conn, turns, progress)
