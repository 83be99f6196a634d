"""Small builders for test data, all through psimem's own SQL API."""
from __future__ import annotations

import numpy as np

UDIM, NDIM = 768, 4096  # the install-time defaults the test database is migrated with


def unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def new_user(conn, ref: str, tier: str = "normal"):
    return conn.execute("SELECT memory.ensure_user(%s, %s)", (ref, tier)).fetchone()[0]


def new_session(conn, user_id, ref: str | None = None, started_at=None):
    return conn.execute("SELECT memory.start_session(%s, %s, coalesce(%s, now()))",
                        (user_id, ref, started_at)).fetchone()[0]


def record(conn, session_id, content="hello", role="user", universal=None, native=None,
           perplexity=None, created_at=None, turn_number=None):
    return conn.execute(
        "SELECT memory.record_turn(p_session_id => %s, p_role => %s, p_content => %s, "
        "p_universal_embedding => %s::real[], p_native_embedding => %s::real[], p_perplexity_score => %s, "
        "p_turn_number => %s, p_created_at => coalesce(%s, now()))",
        (session_id, role, content,
         None if universal is None else list(map(float, universal)),
         None if native is None else list(map(float, native)),
         perplexity, turn_number, created_at),
    ).fetchone()[0]
