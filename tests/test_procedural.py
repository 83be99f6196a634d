"""Procedural memory: outcomes, causal edges, and the daily jobs on a controlled clock."""
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from helpers import new_user

NOW = datetime(2026, 6, 1, 3, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def acting(conn):
    """Procedural memory belongs to the user a session acts for."""
    user = new_user(conn, "procedural-owner")
    conn.execute("SELECT memory.act_for(%s)", (user,))
    return user


def reflex(conn, action="search the docs", last_accessed=None, successes=0):
    rid = conn.execute("SELECT procedural.learn_reflex(%s, 'tool_call', p_at => %s)",
                       (action, last_accessed or NOW)).fetchone()[0]
    for _ in range(successes):
        conn.execute("SELECT procedural.record_outcome(%s, true, %s)", (rid, last_accessed or NOW))
    return rid


def test_record_outcome_updates_counts_rate_and_times(conn):
    r = reflex(conn)
    conn.execute("SELECT procedural.record_outcome(%s, true, %s)", (r, NOW))
    rate = conn.execute("SELECT procedural.record_outcome(%s, false, %s)", (r, NOW + timedelta(hours=1))).fetchone()[0]
    row = conn.execute("SELECT success_count, failure_count, total_count, last_success, last_accessed "
                       "FROM procedural.procedural_memory WHERE reflex_id = %s", (r,)).fetchone()
    assert rate == 0.5 and row == (1, 1, 2, NOW, NOW + timedelta(hours=1))
    with pytest.raises(psycopg.Error, match="p_reflex_id: unknown reflex"), conn.transaction():
        conn.execute("SELECT procedural.record_outcome(gen_random_uuid(), true)")


def test_causal_edge_observations_update_incrementally(conn):
    a, b = reflex(conn, "a"), reflex(conn, "b")
    obs = [(10.0, 1.0), (20.0, 0.0), (30.0, 1.0)]
    strength = None
    for gap, s in obs:
        strength = conn.execute("SELECT procedural.observe_causal_edge(%s, %s, %s, %s, %s)", (a, b, gap, s, NOW)).fetchone()[0]
    expected = 1.0
    for _, s in obs[1:]:
        expected += 0.3 * (s - expected)
    row = conn.execute("SELECT observation_count, temporal_gap_avg FROM procedural.causal_edges").fetchone()
    assert strength == pytest.approx(expected) and row == (3, pytest.approx(20.0))
    with pytest.raises(psycopg.Error, match="p_gap_seconds: must be a finite number >= 0"), conn.transaction():
        conn.execute("SELECT procedural.observe_causal_edge(%s, %s, -1)", (a, b))


def test_decay_applies_once_per_day_and_deletes_weak_edges(conn):
    a, b, c = reflex(conn, "a"), reflex(conn, "b"), reflex(conn, "c")
    conn.execute("SELECT procedural.observe_causal_edge(%s, %s, 5, 0.5, %s)", (a, b, NOW - timedelta(days=8)))
    conn.execute("SELECT procedural.observe_causal_edge(%s, %s, 5, 0.105, %s)", (a, c, NOW - timedelta(days=8)))
    conn.execute("SELECT procedural.observe_causal_edge(%s, %s, 5, 0.5, %s)", (b, c, NOW - timedelta(days=2)))
    assert conn.execute("SELECT procedural.decay_causal_edges(%s)", (NOW,)).fetchone()[0] == 2
    assert conn.execute("SELECT procedural.decay_causal_edges(%s)", (NOW + timedelta(hours=5),)).fetchone()[0] == 0
    edges = dict(conn.execute("SELECT target_reflex_id, causal_strength FROM procedural.causal_edges").fetchall())
    assert edges == {b: pytest.approx(0.45), c: pytest.approx(0.5)}  # a->c fell below 0.1 and is gone
    conn.execute("SELECT procedural.decay_causal_edges(%s)", (NOW + timedelta(days=1),))
    assert conn.execute("SELECT causal_strength FROM procedural.causal_edges WHERE target_reflex_id = %s",
                        (b,)).fetchone()[0] == pytest.approx(0.405)


def test_pruning_removes_unused_unsuccessful_reflexes_once_a_day(conn):
    old_weak = reflex(conn, "old weak", NOW - timedelta(days=31), successes=1)
    old_good = reflex(conn, "old good", NOW - timedelta(days=31), successes=2)
    recent = reflex(conn, "recent", NOW - timedelta(days=10))
    assert conn.execute("SELECT procedural.prune_reflexes(%s)", (NOW,)).fetchone()[0] == 1
    left = {r[0] for r in conn.execute("SELECT reflex_id FROM procedural.procedural_memory")}
    assert old_weak not in left and {old_good, recent} <= left
    conn.execute("UPDATE procedural.procedural_memory SET last_accessed = %s", (NOW - timedelta(days=40),))
    assert conn.execute("SELECT procedural.prune_reflexes(%s)", (NOW,)).fetchone()[0] == 0  # already ran today


def test_attempts_are_logged_and_bad_ones_refused(conn):
    lt = "00000000-0000-0000-0000-00000000000a"
    conn.execute("SELECT procedural.log_attempt(%s, 'fetch the weather', 3, false, 'timeout')", (lt,))
    with pytest.raises(psycopg.Error, match="p_failure_mode: a failed attempt needs one of"), conn.transaction():
        conn.execute("SELECT procedural.log_attempt(%s, 'fetch the weather', 3, false)", (lt,))
    with pytest.raises(psycopg.Error, match="p_failure_mode: must be one of"), conn.transaction():
        conn.execute("SELECT procedural.log_attempt(%s, 'x', 3, false, 'bored')", (lt,))
    assert conn.execute("SELECT count(*) FROM procedural.frustration_ledger").fetchone()[0] == 1


def test_cron_jobs_are_installed_from_settings_and_changeable(conn):
    jobs = dict(conn.execute("SELECT jobname, schedule FROM cron.job WHERE jobname LIKE 'psimem-%'").fetchall())
    settings = dict(conn.execute("SELECT key, value #>> '{}' FROM ops.settings WHERE key LIKE 'cron.%'").fetchall())
    assert jobs == {"psimem-night-cycle": settings["cron.night_cycle"], "psimem-procedural": settings["cron.procedural_maintenance"],
                    "psimem-trim-history": settings["cron.trim_history"], "psimem-psi-centroid-decay": settings["cron.psi_centroid_decay"],
                    "psimem-kernel-maintenance": settings["cron.kernel_maintenance"]}
    assert settings["cron.psi_centroid_decay"] == "* * * * *"  # conftest parks the others
    conn.execute("SELECT ops.set_schedule('night_cycle', '15 2 * * *')")
    assert conn.execute("SELECT schedule FROM cron.job WHERE jobname = 'psimem-night-cycle'").fetchone()[0] == "15 2 * * *"
    with pytest.raises(psycopg.Error, match="p_job: must be one of"), conn.transaction():
        conn.execute("SELECT ops.set_schedule('nap', '* * * * *')")


def test_trim_history_removes_old_cron_run_details(conn):
    conn.execute("INSERT INTO cron.job_run_details (jobid, runid, status, start_time, end_time) VALUES "
                 "(1, 990001, 'succeeded', now() - interval '40 days', now() - interval '40 days'), "
                 "(1, 990002, 'succeeded', now() - interval '1 day', now() - interval '1 day')")
    conn.execute("SELECT ops.trim_history()")
    left = {r[0] for r in conn.execute("SELECT runid FROM cron.job_run_details WHERE runid >= 990001")}
    assert left == {990002}
