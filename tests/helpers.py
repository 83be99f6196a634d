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


# The Core Memory Kernel, through its SQL functions with named arguments.

def _named(kw: dict) -> str:
    casts = {"embedding": "::real[]", "query_vector": "::real[]", "tags": "::text[]", "evidence": "::jsonb",
             "reflected_ids": "::uuid[]"}
    return "".join(f", p_{k} => %({k})s{casts.get(k, '')}" for k in kw)


def _params(kw: dict) -> dict:
    import json

    return {k: (list(map(float, v)) if k in ("embedding", "query_vector") and v is not None
                else json.dumps(v) if k == "evidence" and v is not None else v) for k, v in kw.items()}


def card(conn, user, summary, **kw) -> dict:
    """kernel.upsert_card(p_user_id, p_summary, p_<k> => v ...): its row as a dict."""
    cur = conn.execute(f"SELECT * FROM kernel.upsert_card(p_user_id => %(user)s, p_summary => %(summary)s{_named(kw)})",
                       {"user": user, "summary": summary, **_params(kw)})
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


def recall(conn, user, text, **kw) -> list[dict]:
    """kernel.recall(p_user_id, p_query_text, p_<k> => v ...): its rows as dicts."""
    cur = conn.execute(f"SELECT * FROM kernel.recall(p_user_id => %(user)s, p_query_text => %(text)s{_named(kw)})",
                       {"user": user, "text": text, **_params(kw)})
    return [dict(zip([d.name for d in cur.description], r)) for r in cur.fetchall()]


def journal(conn, user, stage, summary, **kw) -> dict:
    """kernel.journal(p_stage, p_summary, p_<k> => v ..., p_user_id): its row as a dict."""
    cur = conn.execute(f"SELECT * FROM kernel.journal(p_stage => %(stage)s, p_summary => %(summary)s, "
                       f"p_user_id => %(user)s{_named(kw)})", {"user": user, "stage": stage, "summary": summary, **_params(kw)})
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


KERNEL_TABLES = ("card", "edge", "journal", "config", "usage", "attachment", "embedding", "contradiction",
                 "stage_transition", "tombstone")


def kernel_rows(conn, user) -> dict[str, list]:
    """Every kernel row of a user, table by table, each row as JSON in a fixed order."""
    return {t: [r[0] for r in conn.execute(f"SELECT to_jsonb(x)::text FROM kernel.{t} x WHERE x.user_id = %s ORDER BY 1",
                                           (user,))] for t in KERNEL_TABLES}
