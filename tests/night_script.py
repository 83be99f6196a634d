"""A scripted conversation with known perplexity arcs, for the Night Cycle tests.

Session 1: a resolved arc (turns 6-10) and an arc still open when it ends (13-14).
Session 2, an hour later on the same topic: continues that open arc, and resolves an arc
of its own (4-8). Session 3, another topic: an arc that never resolves (4-5).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from helpers import UDIM, new_session, new_user, record

S1 = [10, 11, 10, 11, 10, 30, 25, 15, 14.5, 14.4, 10, 11, 40, 35]
S2 = [12, 11, 12, 30, 20, 12, 11.9, 11.8]
S3 = [10, 10.5, 10, 30, 40]
INSIGHT = {(1, 9): "oh I see, that makes sense now."}


def topic(rng: np.random.Generator, axis: int) -> np.ndarray:
    v = np.zeros(UDIM, dtype=np.float32)
    v[axis] = 1.0
    v += 0.1 * rng.standard_normal(UDIM).astype(np.float32) / np.sqrt(UDIM)
    return v / np.linalg.norm(v)


def build(conn, tier: str = "elder", ref: str = "night-user", start: datetime | None = None):
    """Records the script; returns (user_id, [session ids])."""
    rng = np.random.default_rng(42)
    t0 = start or datetime.now(timezone.utc) - timedelta(hours=8)
    user = new_user(conn, ref, tier)
    sessions = []
    for n, (script, axis, begin) in enumerate([(S1, 0, t0), (S2, 0, t0 + timedelta(hours=1, minutes=30)),
                                               (S3, 1, t0 + timedelta(hours=4))], start=1):
        sid = new_session(conn, user, f"{ref}-s{n}", begin)
        for i, p in enumerate(script, start=1):
            content = INSIGHT.get((n, i), f"session {n} turn {i}: a question about the topic.")
            record(conn, sid, content, role="user" if i % 2 else "assistant", universal=topic(rng, axis),
                   perplexity=p, created_at=begin + timedelta(minutes=2 * i))
        sessions.append(sid)
    return user, sessions
