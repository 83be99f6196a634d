-- The Night Cycle's driver. CALL memory.night_cycle() commits after each batch of users
-- (night.batch_users): its state is the run's row in ops.cycle_runs (a cursor over users)
-- and the work tables keyed by run, so a killed run resumes where it stopped, no lock
-- outlives one batch, and vacuum is never held back for the whole night. The stages are
-- rows of memory.night_stages (one file each in this directory); the loop below runs them,
-- times and logs them, the same way for every stage.
-- A stage works on one user: every statement filters on that user_id, and every join of two
-- users' tables matches user_id as well as the id (ids are unique per user: revision 0018),
-- so each statement reads one user's rows only and, on a PostgreSQL distributed by user_id,
-- would run on that user's node alone (docs/scale.md).

CREATE OR REPLACE FUNCTION memory._night_cycle_date(p_run_id bigint)
RETURNS date
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_date date;
BEGIN
    SELECT r.cycle_date INTO v_date FROM ops.cycle_runs r WHERE r.run_id = p_run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_run_id: unknown Night Cycle run %', coalesce(p_run_id::text, 'null') USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_date;
END
$$;
COMMENT ON FUNCTION memory._night_cycle_date(bigint) IS
'Internal, Night Cycle: the cycle date of a run (ops.cycle_runs), or an error naming an unknown run. Every stage reads its date through it.';
REVOKE ALL ON FUNCTION memory._night_cycle_date(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_cycle_date(bigint) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_running(p_run_id bigint)
RETURNS ops.cycle_runs
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_run ops.cycle_runs;
BEGIN
    SELECT * INTO v_run FROM ops.cycle_runs r WHERE r.run_id = p_run_id AND r.status = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_run_id: no running Night Cycle run %', coalesce(p_run_id::text, 'null') USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_run;
END
$$;
COMMENT ON FUNCTION memory._night_running(bigint) IS
'Internal, Night Cycle: the row of a run that is still running, locked until the transaction ends (the batch or the finish that moves it on), or an error naming the run.';
REVOKE ALL ON FUNCTION memory._night_running(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_running(bigint) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_lock(p_action text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_key bigint := hashtext('psimem.night_cycle');
    -- A session-level advisory lock outlives a rollback: a call that failed in this session
    -- may still hold it. Taking it again would then need two releases, so it is not.
    v_held boolean := EXISTS (SELECT 1 FROM pg_locks l
                              WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.objsubid = 1
                                AND ((l.classid::bigint << 32) | l.objid::bigint) = v_key);
    v_got boolean;
BEGIN
    CASE p_action
        WHEN 'session' THEN
            v_got := v_held OR pg_try_advisory_lock(v_key);
        WHEN 'transaction' THEN
            v_got := pg_try_advisory_xact_lock(v_key);
        WHEN 'release' THEN
            RETURN v_held AND pg_advisory_unlock(v_key);
        ELSE
            RAISE EXCEPTION 'p_action: must be session, transaction or release (got %)', quote_nullable(p_action)
                USING ERRCODE = 'invalid_parameter_value';
    END CASE;
    IF NOT v_got THEN
        RAISE NOTICE 'night cycle: another run holds the lock; nothing done';
    END IF;
    RETURN v_got;
END
$$;
COMMENT ON FUNCTION memory._night_lock(text) IS
'Internal, Night Cycle: the advisory lock that keeps two runs from overlapping. session: try to take it for the session (memory.night_cycle, whose commits a transaction lock would not outlive; already held by this session counts as taken); transaction: try to take it until the transaction ends (memory.run_night_cycle); release: give back the session lock. Returns whether the lock is now held (for release, whether it was given back); says so with a NOTICE when another run holds it.';
REVOKE ALL ON FUNCTION memory._night_lock(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_lock(text) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_open_run(p_cycle_date date, p_user_id uuid, p_session_lock boolean)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_run bigint;
    v_broken text;
BEGIN
    IF p_cycle_date IS NULL THEN
        RAISE EXCEPTION 'p_cycle_date: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT string_agg(format('%s (%s)', s.stage, s.name), ', ' ORDER BY s.stage) INTO v_broken
    FROM memory.night_stages s WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = s.function);
    IF v_broken IS NOT NULL THEN
        RAISE EXCEPTION 'memory.night_stages: the function of stage % no longer exists', v_broken
            USING ERRCODE = 'undefined_function', HINT = 'run psimem db migrate, or delete the stage''s row';
    END IF;
    SELECT r.run_id INTO v_run FROM ops.cycle_runs r
    WHERE r.status = 'running' AND r.cycle_date = p_cycle_date AND r.user_id IS NOT DISTINCT FROM p_user_id
    ORDER BY r.run_id LIMIT 1;
    IF FOUND THEN
        RAISE NOTICE 'night cycle %: resuming run %', p_cycle_date, v_run;
        RETURN v_run;
    END IF;
    INSERT INTO ops.cycle_runs (cycle_date, user_id) VALUES (p_cycle_date, p_user_id) RETURNING run_id INTO v_run;
    PERFORM memory._night_backfill_mode(v_run);
    RETURN v_run;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    IF p_session_lock THEN
        PERFORM memory._night_lock('release');
    END IF;
    RAISE;
END
$$;
COMMENT ON FUNCTION memory._night_open_run(date, uuid, boolean) IS
'Internal, Night Cycle: the run for a cycle date and user filter (NULL: every user): the unfinished one (status running) if a call was killed, else a new row in ops.cycle_runs, for which backfill mode may drop the blocks'' HNSW indexes (memory._night_backfill_mode). Refuses an unknown user and a stage whose function no longer exists. On any error (cancel included) releases the session lock when p_session_lock. Returns the run id.';
REVOKE ALL ON FUNCTION memory._night_open_run(date, uuid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_open_run(date, uuid, boolean) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_run_stage(p_stage smallint, p_run_id bigint, p_user_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_stage memory.night_stages;
    v_t timestamptz := clock_timestamp();
    v_rows bigint;
BEGIN
    SELECT * INTO v_stage FROM memory.night_stages s WHERE s.stage = p_stage;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_stage: no Night Cycle stage % in memory.night_stages', coalesce(p_stage::text, 'null')
            USING ERRCODE = 'no_data_found';
    END IF;
    EXECUTE format('SELECT %s($1, $2)', v_stage.function) INTO v_rows USING p_run_id, p_user_id;
    RETURN jsonb_build_object('stage', v_stage.stage, 'name', v_stage.name, 'rows', coalesce(v_rows, 0),
                              'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
END
$$;
COMMENT ON FUNCTION memory._night_run_stage(smallint, bigint, uuid) IS
'Internal, Night Cycle: runs one stage (its function from memory.night_stages) for a run and user and returns its log entry: {stage, name, rows, ms}. The same from psql: SELECT memory._night_run_stage(2, <run>, <user>).';
REVOKE ALL ON FUNCTION memory._night_run_stage(smallint, bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_run_stage(smallint, bigint, uuid) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_log(p_run_id bigint, p_user_id uuid, p_entries jsonb)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n int;
BEGIN
    INSERT INTO ops.cycle_stage_log (run_id, user_id, stage, stage_name, rows, duration_ms, ok, error)
    SELECT p_run_id, p_user_id, (e ->> 'stage')::int, e ->> 'name', (e ->> 'rows')::bigint, (e ->> 'ms')::float8,
           e ->> 'error' IS NULL, e ->> 'error'
    FROM jsonb_array_elements(p_entries) e;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_log(bigint, uuid, jsonb) IS
'Internal, Night Cycle: writes log entries ({stage, name, rows, ms[, error]}, as memory._night_run_stage returns them) to ops.cycle_stage_log for a run and user (NULL: the run as a whole). Returns the number written.';
REVOKE ALL ON FUNCTION memory._night_log(bigint, uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_log(bigint, uuid, jsonb) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_consolidate_user(p_run_id bigint, p_user_id uuid)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_stage memory.night_stages;
    v_current memory.night_stages;
    v_taken boolean;
    v_log jsonb := '[]';
    v_t timestamptz;
    v_err text;
BEGIN
    -- One subtransaction: a failure rolls back this user's work only.
    BEGIN
        FOR v_stage IN SELECT * FROM memory.night_stages s WHERE s.scope IN ('user', 'taken') ORDER BY s.stage LOOP
            IF v_stage.scope = 'taken' AND v_taken IS NULL THEN
                v_taken := EXISTS (SELECT 1 FROM memory.night_sessions n WHERE n.run_id = p_run_id AND n.user_id = p_user_id);
            END IF;
            CONTINUE WHEN v_stage.scope = 'taken' AND NOT v_taken;
            v_current := v_stage;
            v_t := clock_timestamp();
            v_log := v_log || memory._night_run_stage(v_stage.stage, p_run_id, p_user_id);
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT;
        v_log := jsonb_build_array(jsonb_build_object('stage', coalesce(v_current.stage, 0), 'name', coalesce(v_current.name, '?'),
                 'rows', 0, 'ms', 1000 * extract(epoch FROM clock_timestamp() - coalesce(v_t, clock_timestamp())),
                 'error', v_err || ' (user''s cycle rolled back)'));
        RAISE WARNING 'night cycle %: user % failed at stage % (%): %', memory._night_cycle_date(p_run_id), p_user_id,
            v_current.stage, v_current.name, v_err;
    END;
    PERFORM memory._night_log(p_run_id, p_user_id, v_log);
    RETURN v_err IS NULL;
END
$$;
COMMENT ON FUNCTION memory._night_consolidate_user(bigint, uuid) IS
'Internal, Night Cycle: runs the per-user stages of memory.night_stages in order for one user of a run (scope user: always; scope taken: only when stage 0 took sessions of the user), in one subtransaction, and logs each stage''s rows and time in ops.cycle_stage_log. A failure rolls back the user''s work, is logged with its stage and error and raised as a WARNING. Returns whether the user succeeded.';
REVOKE ALL ON FUNCTION memory._night_consolidate_user(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_consolidate_user(bigint, uuid) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_analyze()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
SET default_statistics_target = 10
AS $$
BEGIN
    -- A 3,000-row sample tells the planner enough about run_id, user_id and block_id: without
    -- statistics it joined a user's blocks to their turns by scanning all the user's turns
    -- for each block. The tables the run grows are analysed too (their plans are cached).
    ANALYZE memory.night_sessions, memory.night_arcs, memory.night_blocks, memory.night_block_turns, memory.night_zones,
            memory.flux_arcs, memory.holographic_blocks, memory.block_relationships, memory.consolidations;
END
$$;
COMMENT ON FUNCTION memory._night_analyze() IS
'Internal, Night Cycle: statistics (a small sample) for its work tables and the tables a run grows, taken each time the run''s users done double, so that the plans the stages cache fit what the tables hold.';
REVOKE ALL ON FUNCTION memory._night_analyze() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_analyze() TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_batch(p_run_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_run ops.cycle_runs;
    v_batch int := (ops.setting('night.batch_users'))::int;
    v_users uuid[];
    v_user uuid;
    v_last uuid;
    v_done int := 0;
    v_failed int := 0;
    v_before int;
    v_after int;
BEGIN
    v_run := memory._night_running(p_run_id);
    -- Two queries, so that each is a range scan of the users' key from the cursor (an OR
    -- with "no cursor yet" would read every user behind it again for every batch).
    IF v_run.resume_after IS NULL THEN
        v_users := ARRAY(SELECT u.user_id FROM memory.users u WHERE u.user_id = coalesce(v_run.user_id, u.user_id)
                         ORDER BY u.user_id LIMIT v_batch);
    ELSE
        v_users := ARRAY(SELECT u.user_id FROM memory.users u
                         WHERE u.user_id > v_run.resume_after AND u.user_id = coalesce(v_run.user_id, u.user_id)
                         ORDER BY u.user_id LIMIT v_batch);
    END IF;
    FOREACH v_user IN ARRAY v_users LOOP
        IF memory._night_consolidate_user(p_run_id, v_user) THEN
            v_done := v_done + 1;
        ELSE
            v_failed := v_failed + 1;
        END IF;
        v_last := v_user;
    END LOOP;
    IF v_last IS NULL THEN
        RETURN false;
    END IF;
    -- The cursor moves in the same transaction as the batch's work: a run killed before
    -- this commits redoes the batch, one killed after it goes on with the next user.
    UPDATE ops.cycle_runs SET resume_after = v_last, users_done = users_done + v_done, users_failed = users_failed + v_failed
    WHERE run_id = p_run_id;
    v_before := v_run.users_done + v_run.users_failed;
    v_after := v_before + v_done + v_failed;
    IF v_before = 0 OR floor(log(2, v_after)) > floor(log(2, v_before)) THEN
        PERFORM memory._night_analyze();
    END IF;
    IF v_before / 100 < v_after / 100 THEN
        RAISE NOTICE 'night cycle run %: % users done', p_run_id, v_after;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION memory._night_batch(bigint) IS
'Internal, Night Cycle: consolidates the next night.batch_users users of a run (in user_id order, after its resume_after cursor) with memory._night_consolidate_user, then moves the cursor and the run''s counts in the same transaction, and refreshes statistics (memory._night_analyze) each time the run''s users done double. Returns false when no user was left.';
REVOKE ALL ON FUNCTION memory._night_batch(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_batch(bigint) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_finish(p_run_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_run ops.cycle_runs;
    v_stage smallint;
    v_t timestamptz := clock_timestamp();
    v_rows bigint;
    v_status text;
BEGIN
    v_run := memory._night_running(p_run_id);
    IF cardinality(v_run.block_indexes) > 0 THEN
        v_rows := memory._night_restore_block_indexes(v_run.block_indexes);
        -- Logged as storage (stage 6), run-wide: it finishes what storage started.
        PERFORM memory._night_log(p_run_id, NULL, jsonb_build_array(jsonb_build_object(
            'stage', 6, 'name', 'storage', 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t))));
    END IF;
    FOR v_stage IN SELECT s.stage FROM memory.night_stages s WHERE s.scope = 'run' ORDER BY s.stage LOOP
        PERFORM memory._night_log(p_run_id, NULL, jsonb_build_array(memory._night_run_stage(v_stage, p_run_id, v_run.user_id)));
    END LOOP;
    DELETE FROM memory.night_sessions WHERE run_id = p_run_id;
    DELETE FROM memory.night_arcs WHERE run_id = p_run_id;
    DELETE FROM memory.night_blocks WHERE run_id = p_run_id;
    DELETE FROM memory.night_block_turns WHERE run_id = p_run_id;
    DELETE FROM memory.night_zones WHERE run_id = p_run_id;
    v_status := CASE WHEN v_run.users_failed = 0 THEN 'ok' WHEN v_run.users_done = 0 THEN 'failed' ELSE 'partial' END;
    UPDATE ops.cycle_runs SET finished_at = clock_timestamp(), status = v_status, block_indexes = '{}' WHERE run_id = p_run_id;
    RAISE NOTICE 'night cycle %: run % %, % user(s) consolidated, % failed', v_run.cycle_date, p_run_id, v_status,
        v_run.users_done, v_run.users_failed;
    RETURN v_status;
END
$$;
COMMENT ON FUNCTION memory._night_finish(bigint) IS
'Internal, Night Cycle, once every user of a run is done: builds the blocks'' HNSW indexes a backfill dropped (logged as stage 6 for the whole run), runs the stages of scope run (stage 8), empties the run''s work tables and sets its status: ok, partial (some users failed) or failed (all did). Returns the status.';
REVOKE ALL ON FUNCTION memory._night_finish(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_finish(bigint) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_work(p_session_lock boolean)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_run bigint;
BEGIN
    IF p_session_lock THEN
        -- The batch's work and the run's cursor commit together, so a crash that loses the
        -- last asynchronously committed batches has the resumed run redo exactly those.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    SELECT r.run_id INTO v_run FROM ops.cycle_runs r WHERE r.status = 'running' ORDER BY r.run_id LIMIT 1;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT memory._night_batch(v_run) THEN
        PERFORM memory._night_finish(v_run);
    END IF;
    RETURN true;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    IF p_session_lock THEN
        PERFORM memory._night_lock('release');
    END IF;
    RAISE;
END
$$;
COMMENT ON FUNCTION memory._night_work(boolean) IS
'Internal, Night Cycle: the next unit of work, for one transaction: a batch of users of the oldest unfinished run (memory._night_batch), or, when none is left, finishing that run (memory._night_finish). Returns false when no run is unfinished. With p_session_lock (the procedure) it commits asynchronously and releases the session lock on any error, cancel included.';
REVOKE ALL ON FUNCTION memory._night_work(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_work(boolean) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_end(p_since timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_failures text;
BEGIN
    PERFORM memory._night_lock('release');
    SELECT string_agg(format('run %s, user %s, stage %s (%s): %s', l.run_id, l.user_id, l.stage, l.stage_name, l.error),
                      '; ' ORDER BY l.run_id, l.logged_at)
    INTO v_failures
    FROM ops.cycle_runs r JOIN ops.cycle_stage_log l ON l.run_id = r.run_id
    WHERE r.finished_at >= p_since AND NOT l.ok;
    IF v_failures IS NOT NULL THEN
        RAISE EXCEPTION 'night cycle: users failed, their work rolled back (the others'' is committed): %', v_failures
            USING HINT = 'ops.cycle_stage_log has each failure; the next cycle takes their sessions again';
    END IF;
END
$$;
COMMENT ON FUNCTION memory._night_end(timestamptz) IS
'Internal, Night Cycle, the end of CALL memory.night_cycle: releases the session lock, then raises an error naming every user that failed in a run finished since p_since (after the others'' work committed), so that pg_cron records the run as failed.';
REVOKE ALL ON FUNCTION memory._night_end(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_end(timestamptz) TO psimem_admin;

-- No SET clause: PostgreSQL refuses COMMIT in a procedure that has one. The body names
-- every function with its schema and uses no operator, so no search_path can redirect it
-- (tests/test_security_catalog.py checks this); each function it calls pins its own.
CREATE OR REPLACE PROCEDURE memory.night_cycle(p_cycle_date date DEFAULT current_date, p_user_id uuid DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    v_since timestamptz := pg_catalog.clock_timestamp();
BEGIN
    COMMIT;  -- inside a transaction block this fails at once, before any lock or work
    IF NOT memory._night_lock('session') THEN
        RETURN;
    END IF;
    PERFORM memory._night_open_run(p_cycle_date, p_user_id, true);
    COMMIT;
    WHILE memory._night_work(true) LOOP
        COMMIT;
    END LOOP;
    COMMIT;
    PERFORM memory._night_end(v_since);
END
$$;
COMMENT ON PROCEDURE memory.night_cycle(date, uuid) IS
'The Night Cycle (spec 004 section 8) for one cycle date, for every user or one; pg_cron CALLs it nightly (cron.night_cycle). Stages, in memory.night_stages: 0 select sessions, 1 flux detection, 2 block formation, 3 salience, 4 compression, 5 embedding, 6 storage, 7 migration check, 9 cleanup per user; 8 clustering update once per run. Commits after each batch of night.batch_users users (in user_id order), each user in a subtransaction: a user''s sessions stay locked only until their batch commits, so a turn written into a session the cycle has taken waits at most for that batch and is left for the next cycle. Its state is in ops.cycle_runs (a cursor) and the work tables keyed by run: killed at any point (server crash included), the next call resumes the unfinished run where it stopped, redoing only the uncommitted batch; a second complete run creates nothing. A session-level advisory lock keeps two runs apart (a second call returns at once); it is released at the end and on any error. A run forming more blocks than holographic_blocks holds builds their HNSW indexes once when it finishes (night.index_rebuild_*), each step its own transaction. When any user failed, raises an error naming them after the others'' work is committed (so pg_cron records a failure); each failure is in ops.cycle_stage_log. Cannot run inside a transaction block: memory.run_night_cycle does the same there.';
REVOKE ALL ON PROCEDURE memory.night_cycle(date, uuid) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE memory.night_cycle(date, uuid) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.run_night_cycle(p_cycle_date date DEFAULT current_date, p_user_id uuid DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_run bigint;
BEGIN
    IF NOT memory._night_lock('transaction') THEN
        RETURN NULL;
    END IF;
    v_run := memory._night_open_run(p_cycle_date, p_user_id, false);
    WHILE memory._night_work(false) LOOP
    END LOOP;
    RETURN v_run;
END
$$;
COMMENT ON FUNCTION memory.run_night_cycle(date, uuid) IS
'The Night Cycle inside the caller''s transaction, for callers that need one (tests, a script that checks before committing): the same stages and logs as CALL memory.night_cycle, but nothing commits until the caller does, so every session it takes stays locked and every user it consolidates holds a subtransaction until then (more than 64 slows every other session): for a few users, not for the nightly run. Failed users are logged and raised as WARNINGs, not as an error. Finishes an unfinished run first, as the procedure does. Returns the run id, or NULL when another run holds the lock.';
REVOKE ALL ON FUNCTION memory.run_night_cycle(date, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.run_night_cycle(date, uuid) TO psimem_admin;
