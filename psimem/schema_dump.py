"""The committed schema dump (db/schema.sql): pg_dump --schema-only, normalised.

Normalising drops what differs between servers but not between schemas: comments
pg_dump writes about itself, SET lines, owners, blank-line runs, and the pg_dump
version banner. A test compares a freshly migrated database with the committed file.
"""
from __future__ import annotations

import re
import subprocess

from .settings import DB_DIR, PG_BINDIR

SCHEMA_FILE = DB_DIR / "schema.sql"


def dump_schema(url: str) -> str:
    raw = subprocess.run(
        [str(PG_BINDIR / "pg_dump"), "--schema-only", "--no-owner", "--no-tablespaces", url],
        check=True, capture_output=True, text=True,
    ).stdout
    return normalise(raw)


def normalise(raw: str) -> str:
    keep = []
    for line in raw.splitlines():
        if line.startswith("--") or re.match(r"^(SET |SELECT pg_catalog\.set_config|\\(un)?restrict )", line):
            continue
        keep.append(line.rstrip())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(keep)).strip()
    return "-- psimem schema (pg_dump --schema-only, normalised). Regenerate: make schema\n\n" + text + "\n"
