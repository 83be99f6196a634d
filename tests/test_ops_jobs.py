"""The job queue's SQL API (db/functions/ops_jobs.sql), tested through SQL."""
from __future__ import annotations

import psycopg
import pytest


def register(conn, wid: str):
    v = conn.execute("SELECT value #>> '{}' FROM ops.settings WHERE key = 'sql.code_version'").fetchone()[0]
    conn.execute("SELECT ops.register_worker(%s, 'host', 1, %s, '/tmp/cortex')", (wid, v))


def queue(conn, kind="cortex_migrate", key=None, **payload):
    return conn.execute("SELECT ops.queue_job(%s, %s, %s)",
                        (kind, psycopg.types.json.Jsonb(payload), key)).fetchone()[0]


def take(conn, wid, n=10):
    return [r[0] for r in conn.execute("SELECT job_id FROM ops.take_jobs(%s, %s)", (wid, n))]


@pytest.fixture
def q(conn):
    conn.execute("DELETE FROM ops.jobs")  # rolled back with the test
    register(conn, "w1")
    return conn


def test_migrations_come_in_batches_and_clustering_waits_for_them(q):
    cl = queue(q, "cluster_update", "cluster:1")
    ids = [queue(q, block_id=f"b{i}") for i in range(3)]
    assert take(q, "w1", 2) == ids[:2]            # the oldest ready job (clustering) must wait: migrations first
    assert take(q, "w1", 5) == ids[2:]
    assert take(q, "w1") == []                     # clustering still waits: migrations are running
    q.execute("SELECT ops.finish_jobs('w1', %s, '{}')", (ids,))
    assert take(q, "w1", 5) == [cl]                # one at a time for other kinds
    assert queue(q, "cluster_update", "cluster:1") is None  # dedupe key


def test_one_re_clustering_at_a_time_whatever_the_number_of_workers(q):
    register(q, "w2")
    first = queue(q, "cluster_update", "cluster:night-1")
    assert take(q, "w1") == [first]
    second = queue(q, "cluster_update", "cluster:night-2")   # the next night's, queued while the first runs
    assert take(q, "w2") == []                              # w2 does not rebuild the same trees alongside
    q.execute("SELECT ops.finish_jobs('w1', %s, '{}')", ([first],))
    assert take(q, "w2") == [second]


def test_failure_backs_off_exponentially_then_gives_up_keeping_the_error(q):
    q.execute("SELECT ops.set_setting('worker.retry_base', '\"10 seconds\"')")
    job = queue(q, block_id="b")
    q.execute("UPDATE ops.jobs SET max_attempts = 3 WHERE job_id = %s", (job,))
    waits = []
    for attempt in range(1, 4):
        q.execute("UPDATE ops.jobs SET run_after = now() WHERE job_id = %s", (job,))
        assert take(q, "w1") == [job]
        state = q.execute("SELECT ops.fail_job('w1', %s, %s)", (job, f"boom {attempt}")).fetchone()[0]
        row = q.execute("SELECT state, attempts, last_error, extract(epoch FROM run_after - clock_timestamp()) "
                        "FROM ops.jobs WHERE job_id = %s", (job,)).fetchone()
        assert (state, row[0], row[1], row[2]) == ("queued" if attempt < 3 else "failed",) * 2 + (attempt, f"boom {attempt}")
        waits.append(row[3])
    assert waits[0] == pytest.approx(10, abs=1) and waits[1] == pytest.approx(20, abs=1)
    assert [r[0] for r in q.execute("SELECT outcome FROM ops.job_attempts WHERE job_id = %s ORDER BY attempt_id",
                                    (job,))] == ["retry", "retry", "failed"]


def test_stale_jobs_are_taken_back_and_released_jobs_do_not_count(q):
    register(q, "w2")
    a, b = queue(q, block_id="a"), queue(q, block_id="b")
    assert take(q, "w1", 1) == [a]
    q.execute("UPDATE ops.workers SET heartbeat_at = now() - interval '1 hour' WHERE worker_id = 'w1'")
    assert take(q, "w2", 5) == [a, b]              # w1 stopped heartbeating: its job is w2's now
    assert q.execute("SELECT attempts FROM ops.jobs WHERE job_id = %s", (a,)).fetchone()[0] == 2
    with pytest.raises(psycopg.errors.LockNotAvailable, match="not running under worker 'w1'"):
        q.execute("SELECT ops.finish_jobs('w1', %s, '{}')", ([a],))
    q.rollback()


def test_stop_releases_what_the_worker_holds(q):
    a = queue(q, block_id="a")
    assert take(q, "w1") == [a]
    assert q.execute("SELECT ops.stop_worker('w1')").fetchone()[0] == 1
    assert q.execute("SELECT state, attempts, locked_by FROM ops.jobs WHERE job_id = %s", (a,)).fetchone() == \
        ("queued", 0, None)
    assert q.execute("SELECT state FROM bi.workers WHERE worker_id = 'w1'").fetchone()[0] == "stopped"
    with pytest.raises(psycopg.errors.NoDataFound, match="p_worker_id: no running worker 'w1'"):
        take(q, "w1")


def test_concurrent_workers_never_take_the_same_job(db_url, q):
    ids = [queue(q, block_id=f"c{i}") for i in range(4)]
    register(q, "w2")
    q.commit()
    try:
        with psycopg.connect(db_url) as other:
            mine = take(q, "w1", 2)                 # w1's transaction still holds its rows
            theirs = take(other, "w2", 10)          # SKIP LOCKED: w2 gets the rest, without waiting
            assert sorted(mine + theirs) == ids and not set(mine) & set(theirs)
            other.rollback()
    finally:
        q.rollback()
        q.execute("DELETE FROM ops.jobs WHERE job_id = ANY(%s)", (ids,))
        q.execute("DELETE FROM ops.workers WHERE worker_id IN ('w1', 'w2')")
        q.commit()


def test_a_job_that_failed_for_good_is_dead_lettered_until_retried(q):
    """Its dedupe key stays taken, so the Night Cycle cannot queue the block again: the block
    would stay in the Hippocampus for ever. bi.dead_letter_jobs lists it; ops.retry_job
    puts it back with fresh attempts."""
    job = queue(q, key="cortex_migrate:dead", block_id="dead")
    q.execute("UPDATE ops.jobs SET max_attempts = 1 WHERE job_id = %s", (job,))
    assert take(q, "w1") == [job]
    assert q.execute("SELECT ops.fail_job('w1', %s, 'lance down')", (job,)).fetchone()[0] == "failed"
    assert queue(q, key="cortex_migrate:dead", block_id="dead") is None
    assert q.execute("SELECT job_id, kind, attempts, last_error FROM bi.dead_letter_jobs").fetchall() == \
        [(job, "cortex_migrate", 1, "lance down")]

    state, attempts = q.execute("SELECT state, attempts FROM ops.retry_job(%s)", (job,)).fetchone()
    assert (state, attempts) == ("queued", 0)
    assert q.execute("SELECT count(*) FROM bi.dead_letter_jobs").fetchone()[0] == 0
    assert take(q, "w1") == [job]
    q.execute("SELECT ops.finish_jobs('w1', %s, '{}')", ([job],))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=f"job {job} is done, not failed"), q.transaction():
        q.execute("SELECT ops.retry_job(%s)", (job,))
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown job"), q.transaction():
        q.execute("SELECT ops.retry_job(-1)")
