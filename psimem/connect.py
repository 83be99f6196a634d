"""One way to get a connection, whichever database psimem is pointed at."""
from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector

from .cluster import Cluster
from .settings import Settings


def database_url(settings: Settings | None = None) -> str:
    s = settings or Settings.from_env()
    return s.database_url or Cluster.from_settings(s).url()


def read_database_url(settings: Settings | None = None) -> str:
    """Where recall reads: PSIMEM_READ_DATABASE_URL (a hot standby), else the primary."""
    s = settings or Settings.from_env()
    return s.read_database_url or database_url(s)


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    conn = psycopg.connect(url or database_url(), **kwargs)
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        pass  # extension not created yet (before the first migration)
    return conn


def act_for_ref(conn: psycopg.Connection, ref: str, option: str = "--user"):
    """Make `conn` act for the user a command-line `--user` names (a user id or external
    reference among the users this login may act for) and return its id."""
    user = conn.execute("SELECT memory.find_user(%s)", (ref,)).fetchone()[0]
    if user is None:
        raise SystemExit(f"psimem: {option}: no user {ref!r} that this login may act for "
                         "(give a user id or external reference)")
    conn.execute("SELECT memory.act_for(%s)", (user,))
    return user
