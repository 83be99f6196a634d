"""Where psimem finds its database and its embedded cluster.

PSIMEM_DATABASE_URL points every command at an existing server; otherwise the embedded
cluster under PSIMEM_HOME (default ./.psimem) is used. PSIMEM_READ_DATABASE_URL, where set,
is where read-only work (recall) goes: a hot standby of that server.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PG_BINDIR = Path(os.environ.get("PSIMEM_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
REPO_ROOT = Path(__file__).resolve().parent.parent
DB_DIR = REPO_ROOT / "db"

DEFAULT_UNIVERSAL_DIM = 768
DEFAULT_NATIVE_DIM = 4096


@dataclass(frozen=True)
class Settings:
    home: Path
    port: int
    dbname: str
    database_url: str | None
    read_database_url: str | None = None

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            home=Path(os.environ.get("PSIMEM_HOME", ".psimem")).resolve(),
            port=int(os.environ.get("PSIMEM_PORT", "55432")),
            dbname=os.environ.get("PSIMEM_DBNAME", "psimem"),
            database_url=os.environ.get("PSIMEM_DATABASE_URL") or None,
            read_database_url=os.environ.get("PSIMEM_READ_DATABASE_URL") or None,
        )
