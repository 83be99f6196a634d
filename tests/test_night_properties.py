"""Properties of the Night Cycle over random conversations (hypothesis)."""
from datetime import datetime, timedelta, timezone

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import UDIM, new_session, new_user, record

perplexities = st.lists(st.floats(min_value=1, max_value=1e6, allow_nan=False), min_size=3, max_size=30)
conversation = st.lists(perplexities, min_size=1, max_size=3)
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def load(conn, sessions, tier="normal", days_ago=0):
    rng = np.random.default_rng(len(sessions))
    user = new_user(conn, f"prop-{tier}-{rng.integers(1e9)}", tier)
    t0 = datetime.now(timezone.utc) - timedelta(days=days_ago, hours=10)
    for n, script in enumerate(sessions):
        sid = new_session(conn, user, None, t0 + timedelta(hours=n))
        for i, p in enumerate(script, start=1):
            v = rng.standard_normal(UDIM).astype(np.float32)
            record(conn, sid, f"turn {i}", universal=v / np.linalg.norm(v), perplexity=p,
                   created_at=t0 + timedelta(hours=n, minutes=i))
    return user


def counts(conn):
    return [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in
            ("memory.flux_arcs", "memory.holographic_blocks", "memory.block_relationships", "ops.jobs",
             "memory.consolidations", "memory.day_table")]


@SETTINGS
@given(sessions=conversation)
def test_running_a_cycle_twice_creates_nothing_new(conn, sessions):
    with conn.transaction(force_rollback=True):
        load(conn, sessions)
        conn.execute("SELECT memory.run_night_cycle()")
        once = counts(conn)
        conn.execute("SELECT memory.run_night_cycle()")
        assert counts(conn) == once


@SETTINGS
@given(sessions=conversation, tier=st.sampled_from(["normal", "meso", "elder"]),
       migrate=st.lists(st.booleans(), min_size=8, max_size=8), later=st.integers(0, 9))
def test_no_turn_is_deleted_while_a_kept_block_covers_it(conn, sessions, tier, migrate, later):
    with conn.transaction(force_rollback=True):
        load(conn, sessions, tier)
        today = conn.execute("SELECT current_date").fetchone()[0]
        for day in range(later + 1):
            conn.execute("SELECT memory.run_night_cycle(%s)", (today + timedelta(days=day),))
            # the worker moves some blocks to the Cortex between cycles
            blocks = [r[0] for r in conn.execute("SELECT block_id FROM memory.holographic_blocks "
                                                 "WHERE migrated_at IS NULL ORDER BY block_id")]
            for b, go in zip(blocks, migrate):
                if go and day % 2:
                    conn.execute("UPDATE memory.holographic_blocks SET migrated_at = now() WHERE block_id = %s", (b,))
            missing = conn.execute("""
                SELECT count(*) FROM memory.holographic_blocks b, generate_series(b.first_turn, b.last_turn) t
                WHERE b.block_kind = 'arc' AND b.migrated_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM memory.day_table d WHERE d.session_id = b.session_id AND d.turn_number = t)
            """).fetchone()[0]
            assert missing == 0
        span = conn.execute("SELECT raw_cycles + block_cycles FROM memory.retention_policy WHERE tier = %s", (tier,)).fetchone()[0]
        uncovered_left = conn.execute("""
            SELECT count(*) FROM memory.day_table d JOIN memory.consolidations c
              ON c.session_id = d.session_id AND d.turn_number BETWEEN c.first_turn AND c.last_turn
            WHERE c.cycle_date <= %s - %s::int
              AND NOT EXISTS (SELECT 1 FROM memory.holographic_blocks b WHERE b.session_id = d.session_id
                              AND b.block_kind = 'arc' AND d.turn_number BETWEEN b.first_turn AND b.last_turn)
        """, (today + timedelta(days=later), span)).fetchone()[0]
        assert uncovered_left == 0  # and what no block covers does go after the tier's span


def test_a_huge_spike_does_not_break_salience(conn):
    """Real perplexities are heavy-tailed: a 1000x spike must score, not underflow."""
    user = load(conn, [[10, 11, 10, 12, 10000, 12, 11.9, 11.8]])
    run_id = conn.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (user,)).fetchone()[0]
    assert conn.execute("SELECT count(*) FROM ops.cycle_stage_log WHERE run_id = %s AND NOT ok", (run_id,)).fetchone()[0] == 0
    p_u = conn.execute("SELECT (salience_scores->'utterance_level'->>'P')::float8 FROM memory.holographic_blocks "
                     "WHERE user_id = %s", (user,)).fetchone()[0]
    assert p_u == 1.0
