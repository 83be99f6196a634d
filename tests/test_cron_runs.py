"""pg_cron really runs psimem's jobs on their schedule (minute granularity: up to ~70 s)."""
import time

import psycopg
import pytest

from test_night_procedure import Night


@pytest.mark.slow
def test_scheduled_jobs_run_and_a_night_cycle_with_a_failed_user_is_recorded_failed(db_url):
    """Both jobs fire in the same minute: a plain one succeeds; CALL memory.night_cycle() for a
    user whose consolidation fails is recorded failed, with the user's error."""
    night = Night(db_url)
    jobs = []
    try:
        (bad, _), = night.build(1, "night-bad")
        with psycopg.connect(db_url, autocommit=True) as c:
            for name, command in (("psimem-test-tick", "SELECT ops.trim_history()"),
                                  ("psimem-test-night", f"CALL memory.night_cycle(p_user_id => '{bad}')")):
                jobs.append(c.execute("SELECT cron.schedule(%s, '* * * * *', %s)", (name, command)).fetchone()[0])
            deadline = time.monotonic() + 130
            done = {}
            while time.monotonic() < deadline and len(done) < 2:
                time.sleep(2)
                done = {job: (status, message) for job, status, message in c.execute(
                    "SELECT DISTINCT ON (jobid) jobid, status, return_message FROM cron.job_run_details "
                    "WHERE jobid = ANY(%s) AND status IN ('succeeded', 'failed') ORDER BY jobid, runid", (jobs,))}
            tick, cycle = (done.get(j, (None, None)) for j in jobs)
            assert tick[0] == "succeeded", tick
            assert cycle[0] == "failed" and f"user {bad}, stage 4 (compression): summariser refused" in cycle[1], cycle
            assert c.execute("SELECT status FROM ops.cycle_runs WHERE user_id = %s", (bad,)).fetchall()[:1] == [("failed",)]
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            for job in jobs:
                c.execute("SELECT cron.unschedule(%s)", (job,))
        night.close()
