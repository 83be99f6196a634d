"""pg_cron really runs a psimem job on its schedule (minute granularity: up to ~70 s)."""
import time

import psycopg
import pytest


@pytest.mark.slow
def test_a_scheduled_job_runs_and_is_recorded(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        job = c.execute("SELECT cron.schedule('psimem-test-tick', '* * * * *', 'SELECT ops.trim_history()')").fetchone()[0]
        try:
            deadline = time.monotonic() + 130
            status = None
            while time.monotonic() < deadline and status is None:
                time.sleep(2)
                row = c.execute("SELECT status, return_message FROM cron.job_run_details WHERE jobid = %s "
                                "AND status IN ('succeeded', 'failed') ORDER BY runid DESC LIMIT 1", (job,)).fetchone()
                status = row and row[0]
            assert status == "succeeded", row
        finally:
            c.execute("SELECT cron.unschedule(%s)", (job,))
