"""Row-level security with real roles: acting for user A never reaches user B's rows."""
import numpy as np
import psycopg
import pytest

from helpers import UDIM, new_session, new_user, record, unit


@pytest.fixture
def two_users(conn):
    rng = np.random.default_rng(8)
    a, b = new_user(conn, "rls-a"), new_user(conn, "rls-b")
    sa, sb = new_session(conn, a), new_session(conn, b)
    for s in (sa, sb):
        for i in range(3):
            record(conn, s, f"turn {i}", universal=unit(rng, UDIM))
    # Login roles are cluster-wide; created inside the test transaction, they roll back too.
    conn.execute("CREATE ROLE rls_agent LOGIN IN ROLE psimem_writer, psimem_reader")
    conn.execute("CREATE ROLE rls_bi LOGIN IN ROLE psimem_bi")
    return a, b, sa, sb


def act(conn, role, user_id=None):
    conn.execute(f"SET LOCAL ROLE {role}")
    if user_id:
        conn.execute("SELECT memory.act_for(%s)", (user_id,))


def test_acting_for_a_shows_only_a(conn, two_users):
    a, b, sa, sb = two_users
    act(conn, "rls_agent", a)
    assert {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM memory.day_table")} == {a}
    assert [r[0] for r in conn.execute("SELECT session_id FROM memory.sessions")] == [sa]
    assert [r[0] for r in conn.execute("SELECT user_id FROM memory.users")] == [a]


def test_acting_for_nobody_shows_nothing(conn, two_users):
    act(conn, "rls_agent")
    assert conn.execute("SELECT count(*) FROM memory.day_table").fetchone()[0] == 0


def test_a_cannot_update_or_delete_b(conn, two_users):
    a, b, sa, sb = two_users
    act(conn, "rls_agent", a)
    assert conn.execute("UPDATE memory.sessions SET turn_count = 99 WHERE session_id = %s", (sb,)).rowcount == 0
    assert conn.execute("DELETE FROM memory.day_table WHERE session_id = %s", (sb,)).rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("UPDATE memory.day_table SET content = 'x' WHERE session_id = %s", (sb,))
    conn.execute("RESET ROLE")
    assert conn.execute("SELECT count(*) FROM memory.day_table WHERE session_id = %s", (sb,)).fetchone()[0] == 3
    assert conn.execute("SELECT turn_count FROM memory.sessions WHERE session_id = %s", (sb,)).fetchone()[0] == 3


def test_a_cannot_write_into_bs_session_but_can_write_its_own(conn, two_users):
    a, b, sa, sb = two_users
    act(conn, "rls_agent", a)
    with pytest.raises(psycopg.Error, match="session_id: unknown session"), conn.transaction():
        record(conn, sb, "sneaky")
    record(conn, sa, "mine")
    with pytest.raises(psycopg.Error, match="row-level security"), conn.transaction():
        conn.execute("INSERT INTO memory.sessions (user_id) VALUES (%s)", (b,))
    rng = np.random.default_rng(9)
    with pytest.raises(psycopg.Error, match="p_user_id: unknown user"), conn.transaction():
        conn.execute("SELECT * FROM memory.recall_recent(%s::real[], %s, %s, 10)", (unit(rng, UDIM).tolist(), sa, b))
    got = conn.execute("SELECT DISTINCT user_id FROM memory.recall_recent(%s::real[], %s, %s, 10)",
                       (unit(rng, UDIM).tolist(), sa, a)).fetchall()
    assert got == [(a,)]


def test_blocks_and_arcs_follow_the_acting_user(conn, two_users):
    a, b, sa, sb = two_users
    for user, session in ((a, sa), (b, sb)):
        conn.execute("INSERT INTO memory.holographic_blocks (prose, flux_metrics, salience_scores, coherence_gain, "
                     "ties_merge_weight, session_id, user_id, arc_start_time, arc_end_time, cycle_date, first_turn, "
                     "last_turn) VALUES ('{\"anterior_margin\": \"\", \"live_zones\": [], "
                     "\"dead_zone_summaries\": [], \"posterior_margin\": \"\"}', '{}', '{}', 0, 0, %s, %s, now(), "
                     "now(), current_date, 1, 2)", (session, user))
    act(conn, "rls_agent", a)
    assert [r[0] for r in conn.execute("SELECT user_id FROM memory.holographic_blocks")] == [a]


def test_bi_role_reads_bi_views_and_nothing_else(conn, two_users):
    act(conn, "rls_bi")
    turns = conn.execute("SELECT sum(turns) FROM bi.hippocampus_daily").fetchone()[0]
    assert turns >= 6
    for view in ("arcs_daily", "blocks", "tier_health", "cleanup_daily", "cycle_runs", "cycle_stages", "cron_runs",
                 "job_queue", "procedural_success"):
        conn.execute(f"SELECT * FROM bi.{view} LIMIT 1")
    for table in ("memory.day_table", "memory.sessions", "memory.users", "ops.settings", "memory.holographic_blocks",
                  "procedural.procedural_memory", "ops.jobs"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(f"SELECT 1 FROM {table} LIMIT 1")
