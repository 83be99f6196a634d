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
def test_a_turn_goes_only_once_a_block_holds_it_and_its_raw_cycles_have_passed(conn, sessions, tier, migrate, later):
    held = """EXISTS (SELECT 1 FROM memory.block_zones z WHERE z.session_id = c.session_id
                      AND t BETWEEN z.first_turn AND z.last_turn)"""
    with conn.transaction(force_rollback=True):
        user = load(conn, sessions, tier, days_ago=10)  # older than recall.window: nothing keeps them but retention
        first = conn.execute("SELECT min(created_at)::date FROM memory.day_table WHERE user_id = %s", (user,)).fetchone()[0]
        for day in range(later + 2):
            conn.execute("SELECT memory.run_night_cycle(%s)", (first + timedelta(days=day),))
            # the worker moves some blocks to the Cortex between cycles: that keeps or frees nothing
            blocks = [r[0] for r in conn.execute("SELECT block_id FROM memory.holographic_blocks "
                                                 "WHERE migrated_at IS NULL ORDER BY block_id")]
            for b, go in zip(blocks, migrate):
                if go and day % 2:
                    conn.execute("UPDATE memory.holographic_blocks SET migrated_at = now() WHERE block_id = %s", (b,))
            gone_unheld, overdue, unheld = conn.execute(f"""
                SELECT count(*) FILTER (WHERE d.entry_id IS NULL AND NOT {held}),
                       count(*) FILTER (WHERE d.entry_id IS NOT NULL AND {held} AND u.cycles - c.cycle_no >= r.raw_cycles),
                       count(*) FILTER (WHERE NOT {held})
                FROM memory.consolidations c CROSS JOIN generate_series(c.first_turn, c.last_turn) t
                JOIN memory.users u ON u.user_id = c.user_id JOIN memory.retention_policy r ON r.tier = u.tier
                LEFT JOIN memory.day_table d ON d.session_id = c.session_id AND d.turn_number = t
                WHERE c.user_id = %s""", (user,)).fetchone()
            assert gone_unheld == 0  # nothing goes that no block holds
            assert overdue == 0      # and what a block holds goes after the tier's raw cycles (1 for every tier)
            assert unheld == 0       # every consolidated turn lies in a block: gap blocks hold what arcs do not


def test_a_huge_spike_does_not_break_salience(conn):
    """Real perplexities are heavy-tailed: a 1000x spike must score, not underflow."""
    user = load(conn, [[10, 11, 10, 12, 10000, 12, 11.9, 11.8]])
    run_id = conn.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (user,)).fetchone()[0]
    assert conn.execute("SELECT count(*) FROM ops.cycle_stage_log WHERE run_id = %s AND NOT ok", (run_id,)).fetchone()[0] == 0
    p_u = conn.execute("SELECT (salience_scores->'utterance_level'->>'P')::float8 FROM memory.holographic_blocks "
                     "WHERE user_id = %s AND block_kind = 'arc'", (user,)).fetchone()[0]
    assert p_u == 1.0
