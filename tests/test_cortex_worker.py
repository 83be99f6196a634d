"""psimem worker against the real database and a real LanceDB Cortex (a local directory and
moto's S3 server): what moves to the Cortex and how, idempotence under a crash, several
workers at once with one killed and one stalled, SIGTERM, retries, the version check."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import psycopg
import pytest

from cortex_data import Committed
from loaders.cortex import Cortex
from loaders.worker import Worker, WorkerRefused
from psimem.settings import REPO_ROOT


@pytest.fixture
def data(db_url):
    d = Committed(db_url)
    yield d
    d.cleanup()


def worker_process(db_url, cortex_dir, fault: str = "", once: bool = True) -> subprocess.Popen:
    env = dict(os.environ, PSIMEM_DATABASE_URL=db_url, PSIMEM_WORKER_FAULT=fault)
    return subprocess.Popen([sys.executable, "-m", "psimem", "worker", "--cortex", str(cortex_dir)] +
                            (["--once"] if once else []),
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cortex_rows(db_url, cortex_dir) -> dict:
    with psycopg.connect(db_url) as c:
        cx = Cortex.for_database(c, str(cortex_dir))
    tbl = cx.blocks()
    rows = [] if tbl is None else tbl.search().limit(None).to_list()
    return rows


def test_worker_moves_queued_blocks_with_full_vectors_and_compressed_prose(data, db_url, cortex_uri):
    user, _ = data.night(tier="normal")  # normal tier: every block leaves the Hippocampus tonight
    before = {str(b["block_id"]): b for b in data.blocks(user)}
    queued = [j for j in data.jobs() if j["kind"] == "cortex_migrate"]
    assert {j["payload"]["block_id"] for j in queued} == set(before) and len(before) >= 4

    stats = Worker(db_url, cortex_uri=cortex_uri, say=lambda m: None).run(once=True)
    assert stats["migrated"] == len(before) and stats["clustered"] == 1

    rows = {r["block_id"]: r for r in cortex_rows(db_url, cortex_uri)}
    assert set(rows) == set(before)
    for bid, b in before.items():
        r = rows[bid]
        # vectors at full float32 precision, bit for bit
        assert np.array_equal(np.asarray(r["universal_embedding"], np.float32), b["universal_embedding"].to_numpy())
        assert np.array_equal(np.asarray(r["native_embedding"], np.float32), b["native_embedding"].to_numpy()) \
            if b["native_embedding"] is not None else r["native_embedding"] is None
        # metrics and references kept
        assert r["flux_metrics"]["flux_reversal_quality"] == pytest.approx(b["flux_metrics"]["flux_reversal_quality"])
        assert r["salience_scores"]["composite"] == pytest.approx(b["salience_scores"]["composite"])
        assert r["salience_scores"]["theme_level"]["ID"] == pytest.approx(b["salience_scores"]["theme_level"]["ID"])
        assert (r["continues_from"], r["parent_metablock_id"]) == \
               (b["continues_from"] and str(b["continues_from"]), b["parent_metablock_id"] and str(b["parent_metablock_id"]))
        assert r["user_id"] == str(user) and r["coherence_gain"] == pytest.approx(b["coherence_gain"])
        # live zones byte for byte; dead zones condensed; margins trimmed to one turn
        old = b["prose"]
        assert [z["content"].encode() for z in r["live_zones"]] == [z["content"].encode() for z in old["live_zones"]]
        assert [(z["start"], z["end"]) for z in r["live_zones"]] == [(z["start"], z["end"]) for z in old["live_zones"]]
        for new_z, old_z in zip(r["dead_zone_summaries"], old["dead_zone_summaries"], strict=True):
            assert len(new_z["summary"]) <= min(80, len(old_z["summary"]))
        assert "\n" not in r["anterior_margin"] and len(r["anterior_margin"]) <= 160
        assert old["anterior_margin"].endswith(r["anterior_margin"].lstrip("…"))
        assert old["posterior_margin"].startswith(r["posterior_margin"].rstrip("…"))
        assert r["prose_bytes_after"] <= r["prose_bytes_before"]
    assert any(r["prose_bytes_after"] < r["prose_bytes_before"] for r in rows.values())

    # marked in PostgreSQL: migrated, the native vector released, the universal one kept for SQL recall;
    # the jobs are done with their results
    after = {str(b["block_id"]): b for b in data.blocks(user)}
    assert all(b["migrated_at"] is not None and b["native_embedding"] is None for b in after.values())
    assert all(b["universal_embedding"] is not None for b in after.values())
    jobs = data.jobs()
    assert {j["state"] for j in jobs} == {"done"}
    results = [j["result"] for j in jobs if j["kind"] == "cortex_migrate"]
    assert all(r == results[0] for r in results) and results[0]["blocks"] == len(before)  # one batch, one commit
    with psycopg.connect(db_url) as c:
        w = c.execute("SELECT state, jobs_done FROM bi.workers ORDER BY started_at DESC LIMIT 1").fetchone()
        attempts = c.execute("SELECT outcome, count(*) FROM bi.job_attempts WHERE job_id = ANY(%s) GROUP BY 1",
                             ([j["job_id"] for j in jobs],)).fetchall()
    assert w == ("stopped", len(jobs)) and attempts == [("done", len(jobs))]


def test_compression_in_sql_keeps_live_zones_byte_for_byte(conn):
    prose = {"anterior_margin": "user: first turn of the margin.\nassistant: the turn just before the spike, " + "x" * 300,
             "live_zones": [{"start": 2, "end": 3, "content": "user: é ü \u2028 exactly — “this” \\ \"q\"\n  spaced  "}],
             "dead_zone_summaries": [{"start": 4, "end": 6, "summary": "A first sentence here. And a second one that goes on."},
                                     {"start": 7, "end": 7, "summary": "word " * 40}],
             "posterior_margin": "user: right after the resolution.\nassistant: later"}
    out = conn.execute("SELECT memory.compress_prose_for_cortex(%s)", (psycopg.types.json.Jsonb(prose),)).fetchone()[0]
    assert out["live_zones"][0]["content"].encode() == prose["live_zones"][0]["content"].encode()
    assert [z["summary"] for z in out["dead_zone_summaries"]] == ["A first sentence here.", ("word " * 15).strip() + "…"]
    assert [(z["start"], z["end"]) for z in out["dead_zone_summaries"]] == [(4, 6), (7, 7)]
    assert out["anterior_margin"].startswith("…") and len(out["anterior_margin"]) == 160
    assert out["posterior_margin"] == "user: right after the resolution."


def test_a_crash_between_the_lancedb_write_and_the_mark_loses_and_duplicates_nothing(data, db_url, cortex_uri):
    user, _ = data.night(tier="normal")
    ids = {str(b["block_id"]) for b in data.blocks(user)}
    cortex_dir = cortex_uri
    p = worker_process(db_url, cortex_dir, fault="exit_after_cortex_write")
    assert p.wait(60) == 97, p.stderr.read()
    # the blocks reached LanceDB, PostgreSQL does not know it: the jobs hang as running
    assert {r["block_id"] for r in cortex_rows(db_url, cortex_dir)} == ids
    assert all(b["migrated_at"] is None for b in data.blocks(user))
    assert {j["state"] for j in data.jobs() if j["kind"] == "cortex_migrate"} == {"running"}

    data.set("worker.stale_after", "1 second")
    time.sleep(1.5)
    p = worker_process(db_url, cortex_dir)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    rows = cortex_rows(db_url, cortex_dir)
    assert sorted(r["block_id"] for r in rows) == sorted(ids)  # each block exactly once
    assert all(b["migrated_at"] is not None for b in data.blocks(user))
    jobs = [j for j in data.jobs() if j["kind"] == "cortex_migrate"]
    assert {j["state"] for j in jobs} == {"done"} and {j["attempts"] for j in jobs} == {2}
    with psycopg.connect(db_url) as c:
        outcomes = c.execute("SELECT outcome FROM ops.job_attempts WHERE job_id = %s ORDER BY attempt",
                             (jobs[0]["job_id"],)).fetchall()
    assert outcomes == [("abandoned",), ("done",)]


def running_under(db_url, pid: int) -> list[str]:
    """Block ids of the cortex_migrate jobs a worker process holds."""
    with psycopg.connect(db_url) as c:
        return [r[0] for r in c.execute("SELECT j.payload->>'block_id' FROM ops.jobs j JOIN ops.workers w "
                                        "ON w.worker_id = j.locked_by WHERE j.state = 'running' AND w.pid = %s "
                                        "AND j.kind = 'cortex_migrate'", (pid,))]


def wait_for(what, fn, seconds: float = 90.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_several_workers_at_once_with_one_killed_and_one_stalled_lose_and_duplicate_nothing(data, db_url, cortex_uri):
    for key, value in (("worker.batch_size", 4), ("worker.heartbeat_interval", 0.2), ("worker.poll_interval", 0.2),
                       ("worker.stale_after", "1 second"), ("worker.retry_base", "0 seconds")):
        data.set(key, value)
    blocks = data.queued_blocks(users=4, per_user=24)
    every = sorted(b for ids in blocks.values() for b in ids)
    cx = Cortex(cortex_uri, 768, 4096)
    # one worker is killed (SIGKILL) after its LanceDB write, before its PostgreSQL mark
    killed = worker_process(db_url, cortex_uri, fault="sleep_after_cortex_write:300", once=False)
    held = wait_for("the first worker's write", lambda: (h := running_under(db_url, killed.pid)) and
                    len(cx.get_blocks(h, ["block_id"])) == len(h) and h)
    # one stalls (SIGSTOP) before its write, long enough for its jobs to be taken back
    stalled = worker_process(db_url, cortex_uri, fault="sleep_before_cortex_write:2", once=True)
    stalled_held = wait_for("the second worker's batch", lambda: running_under(db_url, stalled.pid))
    stalled.send_signal(signal.SIGSTOP)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    others = [worker_process(db_url, cortex_uri, once=False) for _ in range(2)]  # and two keep working
    try:
        wait_for("every job done", lambda: {j["state"] for j in data.jobs()} == {"done"}, seconds=180)
        stalled.send_signal(signal.SIGCONT)  # it wakes, writes what the others wrote, and is refused the finish
        out, err = stalled.communicate(timeout=60)
        assert stalled.returncode == 0 and "taken back by another worker while this one stalled; dropped" in err, err
    finally:
        stalled.kill()
        for p in others:
            p.send_signal(signal.SIGTERM)
    assert all(p.wait(60) == 0 for p in others), [p.stderr.read() for p in others]

    rows = cortex_rows(db_url, cortex_uri)
    assert sorted(r["block_id"] for r in rows) == every  # every block, each exactly once
    assert {r["block_id"]: r["user_id"] for r in rows} == {b: u for u, ids in blocks.items() for b in ids}
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM memory.holographic_blocks WHERE block_id = ANY(%s::uuid[]) "
                         "AND migrated_at IS NULL", (every,)).fetchone()[0] == 0
        attempts = dict(c.execute(
            "SELECT j.payload->>'block_id', array_agg(a.outcome ORDER BY a.attempt) FROM ops.jobs j "
            "JOIN ops.job_attempts a USING (job_id) WHERE j.job_id > %s AND j.kind = 'cortex_migrate' GROUP BY 1",
            (data.jobs_before,)).fetchall())
        finishers = c.execute("SELECT count(DISTINCT a.worker_id) FROM ops.job_attempts a JOIN ops.jobs j USING (job_id) "
                              "WHERE j.job_id > %s AND a.outcome = 'done'", (data.jobs_before,)).fetchone()[0]
    # the killed and the stalled workers' jobs were taken back and done by another worker
    assert all(attempts[b] == ["abandoned", "done"] for b in held + stalled_held)
    assert all(attempts[b] == ["done"] for b in set(every) - set(held) - set(stalled_held))
    assert finishers >= 2
    # and the night's re-clustering saw every user
    assert set(cx.trees()) == set(blocks) and {t["blocks"] for t in cx.trees().values()} == {24}


def test_the_worker_does_not_replace_another_users_block_in_the_cortex(data, db_url, tmp_path):
    data.set("worker.retry_base", "0 seconds")
    (user, ids), = data.queued_blocks(users=1, per_user=3).items()
    data.conn.execute("UPDATE ops.jobs SET max_attempts = 1 WHERE job_id > %s", (data.jobs_before,))
    data.conn.commit()
    cx = Cortex(str(tmp_path / "cortex"), 768, 4096)
    squatter = {"block_id": ids[1], "user_id": str(uuid.uuid4()), "block_kind": "imported",
                "universal_embedding": np.ones(768, np.float32), "live_zones": [{"start": 0, "end": 0, "content": "theirs"}]}
    cx.upsert_blocks([squatter])
    stats = Worker(db_url, cortex_uri=cx.uri, say=lambda m: None).run(once=True)
    assert stats["migrated"] == 2 and stats["failed"] == 1
    jobs = {j["payload"].get("block_id"): j for j in data.jobs()}
    assert jobs[ids[1]]["state"] == "failed"
    assert f"block_id: block {ids[1]} is in the Cortex at {cx.uri} for another user" in jobs[ids[1]]["last_error"]
    assert {jobs[b]["state"] for b in (ids[0], ids[2])} == {"done"}
    theirs = cx.get_blocks([ids[1]])[0]
    assert (theirs["user_id"], theirs["live_zones"][0]["content"]) == (squatter["user_id"], "theirs")
    assert {b["block_id"]: b["migrated_at"] is None for b in data.blocks(user)} == {
        uuid.UUID(ids[0]): False, uuid.UUID(ids[1]): True, uuid.UUID(ids[2]): False}


def test_sigterm_mid_job_releases_the_job(data, db_url, tmp_path):
    user, _ = data.night(tier="normal")
    p = worker_process(db_url, tmp_path / "cortex", fault="sleep_before_cortex_write:60", once=False)
    deadline = time.time() + 60
    while time.time() < deadline and not any(j["state"] == "running" for j in data.jobs()):
        time.sleep(0.2)
    assert any(j["state"] == "running" for j in data.jobs())
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    jobs = [j for j in data.jobs() if j["kind"] == "cortex_migrate"]
    assert {j["state"] for j in jobs} == {"queued"} and {j["attempts"] for j in jobs} == {0}
    assert all(b["migrated_at"] is None for b in data.blocks(user))
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT DISTINCT outcome FROM ops.job_attempts WHERE job_id = %s",
                         (jobs[0]["job_id"],)).fetchall() == [("released",)]
        assert c.execute("SELECT state, jobs_released > 0 FROM ops.workers ORDER BY started_at DESC LIMIT 1").fetchone() \
            == ("stopped", True)


def test_failing_job_is_retried_then_kept_failed_with_its_error(data, db_url, tmp_path):
    user, _ = data.night(tier="normal")
    data.set("worker.retry_base", "0 seconds")
    data.conn.execute("UPDATE ops.jobs SET max_attempts = 3 WHERE job_id > %s", (data.jobs_before,))
    data.conn.commit()
    os.environ["PSIMEM_WORKER_FAULT"] = "raise_in_migrate"
    try:
        Worker(db_url, cortex_uri=str(tmp_path / "cortex"), say=lambda m: None).run(once=True)
    finally:
        del os.environ["PSIMEM_WORKER_FAULT"]
    jobs = [j for j in data.jobs() if j["kind"] == "cortex_migrate"]
    assert {j["state"] for j in jobs} == {"failed"} and {j["attempts"] for j in jobs} == {3}
    assert all("injected fault" in j["last_error"] for j in jobs)
    with psycopg.connect(db_url) as c:
        assert [r[0] for r in c.execute("SELECT outcome FROM ops.job_attempts WHERE job_id = %s ORDER BY attempt_id",
                                        (jobs[0]["job_id"],))] == ["retry", "retry", "failed"]
    assert all(b["migrated_at"] is None for b in data.blocks(user))


def test_worker_refuses_a_database_with_another_sql_version(data, db_url, tmp_path):
    c = data.conn
    real = c.execute("SELECT value FROM ops.settings WHERE key = 'sql.code_version'").fetchone()[0]
    c.execute("UPDATE ops.settings SET value = '\"0000000000000000\"' WHERE key = 'sql.code_version'")
    c.commit()
    try:
        with pytest.raises(WorkerRefused, match="p_code_version: the worker's SQL code version is '.*', "
                                                "the database's is '0000000000000000'"):
            Worker(db_url, cortex_uri=str(tmp_path / "cortex"), say=lambda m: None).run(once=True)
        p = worker_process(db_url, tmp_path / "cortex")
        out, err = p.communicate(timeout=60)
        assert p.returncode == 3 and "refused" in err
    finally:
        c.execute("UPDATE ops.settings SET value = %s WHERE key = 'sql.code_version'", (psycopg.types.json.Jsonb(real),))
        c.commit()
