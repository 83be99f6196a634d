"""One way to get a connection, whichever database psimem is pointed at."""
from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector

from .cluster import Cluster
from .settings import Settings


def database_url(settings: Settings | None = None) -> str:
    s = settings or Settings.from_env()
    return s.database_url or Cluster.from_settings(s).url()


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    conn = psycopg.connect(url or database_url(), **kwargs)
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        pass  # extension not created yet (before the first migration)
    return conn
