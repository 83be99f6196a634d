-- The worker's side of the ops job queue: register, heartbeat, take, finish, fail with
-- backoff, release on shutdown, stop. The Python worker calls one of these per step.

CREATE OR REPLACE FUNCTION ops.register_worker(
    p_worker_id text,
    p_host text,
    p_pid int,
    p_code_version text,
    p_cortex_uri text)
RETURNS ops.workers
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_db_version text;
    v_row ops.workers;
BEGIN
    IF p_worker_id IS NULL OR btrim(p_worker_id) = '' THEN
        RAISE EXCEPTION 'p_worker_id: must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.value #>> '{}' INTO v_db_version FROM ops.settings s WHERE s.key = 'sql.code_version';
    IF v_db_version IS DISTINCT FROM p_code_version THEN
        RAISE EXCEPTION 'p_code_version: the worker''s SQL code version is %, the database''s is %',
            quote_nullable(p_code_version), quote_nullable(v_db_version)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run psimem db migrate with the worker''s checkout, or run the worker of the checkout that migrated this database';
    END IF;
    INSERT INTO ops.workers (worker_id, host, pid, code_version, cortex_uri)
    VALUES (p_worker_id, p_host, p_pid, p_code_version, p_cortex_uri)
    ON CONFLICT (worker_id) DO UPDATE
        SET host = EXCLUDED.host, pid = EXCLUDED.pid, code_version = EXCLUDED.code_version,
            cortex_uri = EXCLUDED.cortex_uri, started_at = now(), heartbeat_at = now(),
            stopped_at = NULL, state = 'idle', current_job_id = NULL
    RETURNING * INTO v_row;
    RETURN v_row;
END
$$;
COMMENT ON FUNCTION ops.register_worker(text, text, int, text, text) IS
'Registers a worker process in ops.workers (or re-registers one with the same id). Refuses with object_not_in_prerequisite_state, naming both versions, when the worker''s SQL code version (psimem.sqlfiles.code_version() of its checkout) differs from the sql.code_version the database was migrated with.';
REVOKE ALL ON FUNCTION ops.register_worker(text, text, int, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.register_worker(text, text, int, text, text) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.worker_heartbeat(p_worker_id text)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    -- Only the worker's own row: touching its jobs here would take row locks in an order
    -- opposite to ops.finish_jobs (jobs, then worker) and deadlock with it.
    UPDATE ops.workers w SET heartbeat_at = v_now WHERE w.worker_id = p_worker_id AND w.state <> 'stopped';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_worker_id: no running worker %', quote_literal(p_worker_id) USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_now;
END
$$;
COMMENT ON FUNCTION ops.worker_heartbeat(text) IS
'Records that a worker is alive by stamping its ops.workers row. The jobs a worker runs are judged by it: when its heartbeat is older than worker.stale_after, ops.take_jobs takes them back.';
REVOKE ALL ON FUNCTION ops.worker_heartbeat(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.worker_heartbeat(text) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops._reclaim_stale_jobs()
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_stale interval := (ops.setting('worker.stale_after') #>> '{}')::interval;
    v_n int;
BEGIN
    WITH stale AS (
        SELECT j.job_id FROM ops.jobs j LEFT JOIN ops.workers w ON w.worker_id = j.locked_by
        WHERE j.state = 'running'
          AND (w.worker_id IS NULL OR w.state = 'stopped' OR w.heartbeat_at < clock_timestamp() - v_stale)
        FOR UPDATE OF j SKIP LOCKED),
    moved AS (
        UPDATE ops.jobs j
        SET state = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
            last_error = 'worker ' || coalesce(j.locked_by, '?') || ' stopped heartbeating while running this job',
            finished_at = CASE WHEN j.attempts >= j.max_attempts THEN clock_timestamp() END,
            locked_by = NULL, locked_at = NULL, run_after = clock_timestamp()
        FROM stale s WHERE j.job_id = s.job_id
        RETURNING j.job_id, j.last_error)
    UPDATE ops.job_attempts a SET outcome = 'abandoned', finished_at = clock_timestamp(), error = m.last_error
    FROM moved m WHERE a.job_id = m.job_id AND a.outcome = 'running';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION ops._reclaim_stale_jobs() IS
'Internal. Running jobs whose worker has not heartbeaten for worker.stale_after (it crashed or was killed), or is stopped or unknown, go back to the queue, or to failed when they have used all their attempts; their open attempt is closed as abandoned. Returns the number reclaimed.';
REVOKE ALL ON FUNCTION ops._reclaim_stale_jobs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops._reclaim_stale_jobs() TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.take_jobs(p_worker_id text, p_limit int DEFAULT 1)
RETURNS SETOF ops.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_kind text;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'p_limit: must be between 1 and 10000, got %', coalesce(p_limit::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ops.workers w WHERE w.worker_id = p_worker_id AND w.state <> 'stopped') THEN
        RAISE EXCEPTION 'p_worker_id: no running worker % (call ops.register_worker first)', quote_literal(p_worker_id)
            USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM ops._reclaim_stale_jobs();
    -- The oldest ready job decides the kind; a re-clustering waits until no migration is
    -- queued or running, so it sees every block the night moved, and until no other
    -- re-clustering runs (with several workers, two would rebuild the same trees).
    SELECT j.kind INTO v_kind FROM ops.jobs j
    WHERE j.state = 'queued' AND j.run_after <= clock_timestamp()
      AND (j.kind <> 'cluster_update' OR NOT EXISTS (
              SELECT 1 FROM ops.jobs m
              WHERE (m.kind = 'cortex_migrate' AND m.state IN ('queued', 'running'))
                 OR (m.kind = 'cluster_update' AND m.state = 'running')))
    ORDER BY j.run_after, j.job_id
    LIMIT 1;
    IF v_kind IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT j.job_id FROM ops.jobs j
        WHERE j.state = 'queued' AND j.run_after <= clock_timestamp() AND j.kind = v_kind
        ORDER BY j.run_after, j.job_id
        LIMIT CASE WHEN v_kind = 'cortex_migrate' THEN p_limit ELSE 1 END
        FOR UPDATE SKIP LOCKED),
    taken AS (
        UPDATE ops.jobs j
        SET state = 'running', attempts = j.attempts + 1, locked_by = p_worker_id,
            locked_at = clock_timestamp(), heartbeat_at = clock_timestamp()
        FROM picked p WHERE j.job_id = p.job_id
        RETURNING j.*),
    logged AS (
        INSERT INTO ops.job_attempts (job_id, attempt, worker_id)
        SELECT t.job_id, t.attempts, p_worker_id FROM taken t)
    SELECT * FROM taken ORDER BY job_id;
    UPDATE ops.workers w SET state = 'busy', heartbeat_at = clock_timestamp(),
        current_job_id = (SELECT min(j.job_id) FROM ops.jobs j WHERE j.locked_by = p_worker_id AND j.state = 'running')
    WHERE w.worker_id = p_worker_id;
END
$$;
COMMENT ON FUNCTION ops.take_jobs(text, int) IS
'Takes ready jobs for a registered worker with FOR UPDATE SKIP LOCKED, so concurrent workers never take the same job: up to p_limit cortex_migrate jobs at once (one LanceDB commit for the batch), or one job of another kind. The oldest ready job (run_after, then id) decides the kind; cluster_update waits while any cortex_migrate is queued or running, or another cluster_update runs. Running jobs of workers that stopped heartbeating (worker.stale_after) are reclaimed first. Each taken job is marked running, its attempts counted and an ops.job_attempts row opened.';
REVOKE ALL ON FUNCTION ops.take_jobs(text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.take_jobs(text, int) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.finish_jobs(p_worker_id text, p_job_ids bigint[], p_result jsonb DEFAULT '{}')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n int;
BEGIN
    WITH done AS (
        UPDATE ops.jobs j SET state = 'done', result = p_result, finished_at = clock_timestamp(),
                              locked_by = NULL, last_error = NULL
        WHERE j.job_id = ANY (p_job_ids) AND j.locked_by = p_worker_id AND j.state = 'running'
        RETURNING j.job_id)
    UPDATE ops.job_attempts a SET outcome = 'done', finished_at = clock_timestamp(), result = p_result
    FROM done d WHERE a.job_id = d.job_id AND a.outcome = 'running';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n <> coalesce(cardinality(p_job_ids), 0) THEN
        RAISE EXCEPTION 'p_job_ids: % of % jobs are not running under worker % (taken back as stale?)',
            coalesce(cardinality(p_job_ids), 0) - v_n, coalesce(cardinality(p_job_ids), 0), quote_literal(p_worker_id)
            USING ERRCODE = 'lock_not_available';
    END IF;
    UPDATE ops.workers w SET jobs_done = w.jobs_done + v_n, state = 'idle', current_job_id = NULL,
                             heartbeat_at = clock_timestamp()
    WHERE w.worker_id = p_worker_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION ops.finish_jobs(text, bigint[], jsonb) IS
'Marks jobs the worker is running as done with a result (kept in ops.jobs.result and the attempt row). Raises lock_not_available, and so rolls back the caller''s transaction, when any of them is no longer running under this worker.';
REVOKE ALL ON FUNCTION ops.finish_jobs(text, bigint[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.finish_jobs(text, bigint[], jsonb) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.fail_job(p_worker_id text, p_job_id bigint, p_error text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_base interval := (ops.setting('worker.retry_base') #>> '{}')::interval;
    v_max interval := (ops.setting('worker.retry_max') #>> '{}')::interval;
    v_job ops.jobs;
    v_state text;
BEGIN
    SELECT * INTO v_job FROM ops.jobs j WHERE j.job_id = p_job_id AND j.locked_by = p_worker_id AND j.state = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_job_id: job % is not running under worker %', p_job_id, quote_literal(p_worker_id)
            USING ERRCODE = 'lock_not_available';
    END IF;
    v_state := CASE WHEN v_job.attempts >= v_job.max_attempts THEN 'failed' ELSE 'queued' END;
    UPDATE ops.jobs j
    SET state = v_state, last_error = left(p_error, 10000), locked_by = NULL, locked_at = NULL,
        run_after = CASE WHEN v_state = 'queued'
                         THEN clock_timestamp() + least(v_base * power(2, v_job.attempts - 1), v_max)
                         ELSE j.run_after END,
        finished_at = CASE WHEN v_state = 'failed' THEN clock_timestamp() END
    WHERE j.job_id = p_job_id;
    UPDATE ops.job_attempts a SET outcome = CASE WHEN v_state = 'failed' THEN 'failed' ELSE 'retry' END,
                                  finished_at = clock_timestamp(), error = left(p_error, 10000)
    WHERE a.job_id = p_job_id AND a.outcome = 'running';
    UPDATE ops.workers w
    SET jobs_retried = w.jobs_retried + (v_state = 'queued')::int, jobs_failed = w.jobs_failed + (v_state = 'failed')::int,
        state = 'idle', current_job_id = NULL
    WHERE w.worker_id = p_worker_id;
    RETURN v_state;
END
$$;
COMMENT ON FUNCTION ops.fail_job(text, bigint, text) IS
'Records that a job failed under this worker, keeping the error. With attempts left it is queued again after an exponential backoff (worker.retry_base * 2^(attempt-1), at most worker.retry_max); after max_attempts it stays failed with the error in last_error. Returns the job''s new state: queued or failed.';
REVOKE ALL ON FUNCTION ops.fail_job(text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.fail_job(text, bigint, text) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.release_jobs(p_worker_id text, p_job_ids bigint[], p_reason text DEFAULT 'worker shut down')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n int;
BEGIN
    WITH released AS (
        UPDATE ops.jobs j SET state = 'queued', attempts = greatest(j.attempts - 1, 0), locked_by = NULL,
                              locked_at = NULL, run_after = clock_timestamp()
        WHERE j.job_id = ANY (p_job_ids) AND j.locked_by = p_worker_id AND j.state = 'running'
        RETURNING j.job_id)
    UPDATE ops.job_attempts a SET outcome = 'released', finished_at = clock_timestamp(), error = p_reason
    FROM released r WHERE a.job_id = r.job_id AND a.outcome = 'running';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE ops.workers w SET jobs_released = w.jobs_released + v_n, state = 'idle', current_job_id = NULL
    WHERE w.worker_id = p_worker_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION ops.release_jobs(text, bigint[], text) IS
'Gives jobs back to the queue, ready at once and without counting the interrupted attempt (it closes as released with p_reason): what a worker does when it is told to stop mid-job. Returns the number released.';
REVOKE ALL ON FUNCTION ops.release_jobs(text, bigint[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.release_jobs(text, bigint[], text) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.stop_worker(p_worker_id text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_released int;
BEGIN
    v_released := ops.release_jobs(p_worker_id,
        ARRAY(SELECT j.job_id FROM ops.jobs j WHERE j.locked_by = p_worker_id AND j.state = 'running'));
    UPDATE ops.workers w SET state = 'stopped', stopped_at = clock_timestamp(), current_job_id = NULL
    WHERE w.worker_id = p_worker_id AND w.state <> 'stopped';
    RETURN v_released;
END
$$;
COMMENT ON FUNCTION ops.stop_worker(text) IS
'Marks a worker stopped, first releasing any job it still holds (ops.release_jobs). Returns the number of jobs released.';
REVOKE ALL ON FUNCTION ops.stop_worker(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.stop_worker(text) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.queue_job(p_kind text, p_payload jsonb DEFAULT '{}', p_dedupe_key text DEFAULT NULL,
                                         p_max_attempts int DEFAULT 5)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO ops.jobs (kind, payload, dedupe_key, max_attempts)
    VALUES (p_kind, coalesce(p_payload, '{}'), p_dedupe_key, p_max_attempts)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING job_id INTO v_id;
    PERFORM pg_notify('psimem_jobs', p_kind);
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION ops.queue_job(text, jsonb, text, int) IS
'Queues a job for the worker (kind cortex_migrate with {"block_id": …} or cluster_update) and wakes it with NOTIFY psimem_jobs. A dedupe_key already queued or done makes it a no-op returning null.';
REVOKE ALL ON FUNCTION ops.queue_job(text, jsonb, text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.queue_job(text, jsonb, text, int) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.retry_job(p_job_id bigint)
RETURNS ops.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_job ops.jobs;
BEGIN
    -- A failed job keeps its dedupe key, so the Night Cycle never queues its block again:
    -- without this, a block whose migration failed for good would stay in the Hippocampus.
    UPDATE ops.jobs j SET state = 'queued', attempts = 0, run_after = clock_timestamp(), finished_at = NULL,
                          locked_by = NULL, locked_at = NULL
    WHERE j.job_id = p_job_id AND j.state = 'failed'
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        SELECT * INTO v_job FROM ops.jobs j WHERE j.job_id = p_job_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'p_job_id: unknown job %', coalesce(p_job_id::text, 'null') USING ERRCODE = 'no_data_found';
        END IF;
        RAISE EXCEPTION 'p_job_id: job % is %, not failed: only a failed job is retried', p_job_id, v_job.state
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_notify('psimem_jobs', v_job.kind);
    RETURN v_job;
END
$$;
COMMENT ON FUNCTION ops.retry_job(bigint) IS
'Puts a job that failed for good (state failed, listed in bi.dead_letter_jobs) back in the queue, ready now and with its attempts counted from zero; its last error stays in last_error and every attempt in ops.job_attempts. Wakes the worker. Returns the job. Refuses an unknown job or one that is not failed.';
REVOKE ALL ON FUNCTION ops.retry_job(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.retry_job(bigint) TO psimem_admin;
