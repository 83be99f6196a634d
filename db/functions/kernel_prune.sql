-- Staleness and pruning (spec 001 section 6): stale cards go, a user's cards beyond
-- max_cards are trimmed by usage-aware recency, journals are compacted; pg_cron runs it all
-- through kernel.run_maintenance, a batch of users per call, each call committed.

CREATE OR REPLACE FUNCTION kernel.prune(p_user_id uuid, p_now timestamptz DEFAULT NULL)
RETURNS TABLE (stale_deleted int, trimmed int)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_now timestamptz := kernel._clock(p_now);
    v_policy jsonb := kernel._config(v_user) -> 'prune_policy';
    v_days int := (v_policy ->> 'stale_after_days')::int;
    v_max int := (v_policy ->> 'max_cards')::int;
    v_half_life interval := (ops.setting('kernel.recency_half_life') #>> '{}')::interval;
    v_stale int := 0;
    v_trimmed int := 0;
BEGIN
    PERFORM kernel._lock_user(v_user);
    -- A card in an open contradiction is kept whatever its age: deleting it would settle the
    -- contradiction silently, which only kernel.resolve_contradiction may do.
    IF v_days IS NOT NULL THEN
        DELETE FROM kernel.card c
        WHERE c.user_id = v_user
          AND greatest(c.updated_at, (SELECT u.last_used_at FROM kernel.usage u WHERE u.mem_id = c.id))
              < v_now - make_interval(days => v_days)
          AND NOT EXISTS (SELECT 1 FROM kernel.contradiction k WHERE k.resolved_at IS NULL AND (k.card_a = c.id OR k.card_b = c.id));
        GET DIAGNOSTICS v_stale = ROW_COUNT;
    END IF;
    IF v_max IS NOT NULL THEN
        -- Rolled-up notes go first (their summary stands for them), then the lowest usage-aware recency.
        DELETE FROM kernel.card c WHERE c.id IN (
            SELECT x.id FROM kernel.card x LEFT JOIN kernel.usage u ON u.mem_id = x.id
            WHERE x.user_id = v_user
              AND NOT EXISTS (SELECT 1 FROM kernel.contradiction k WHERE k.resolved_at IS NULL AND (k.card_a = x.id OR k.card_b = x.id))
            ORDER BY x.rolled_into IS NULL, kernel._recency(x.updated_at, u.last_used_at, u.used_count, v_now, v_half_life), x.id
            LIMIT greatest((SELECT count(*) FROM kernel.card y WHERE y.user_id = v_user) - v_max, 0));
        GET DIAGNOSTICS v_trimmed = ROW_COUNT;
    END IF;
    stale_deleted := v_stale;
    trimmed := v_trimmed;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION kernel.prune(uuid, timestamptz) IS
'Applies a user''s prune_policy at p_now: deletes the cards not updated or recalled within stale_after_days, then, while the user has more than max_cards cards, the rolled-up notes and then the cards of lowest usage-aware recency (kernel._recency). A null field means no limit. Cards in an open contradiction are never pruned. Idempotent: a second run at the same p_now deletes nothing. Deletions leave tombstones (kernel.export_patch replays them). Returns the counts.';
REVOKE ALL ON FUNCTION kernel.prune(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.prune(uuid, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.run_maintenance(p_now timestamptz DEFAULT NULL, p_max_users int DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_now timestamptz := kernel._clock(p_now);
    v_day date := v_now::date;
    v_batch int := coalesce(p_max_users, (ops.setting('kernel.maintenance_batch_users'))::int);
    v_run bigint;
    v_user uuid;
    v_log jsonb;
    v_t timestamptz;
    v_rows bigint;
    v_pruned record;
    v_step text;
    v_err text;
    v_done int := 0;
    v_failed int := 0;
    v_left int;
BEGIN
    IF v_batch IS NULL OR v_batch < 1 THEN
        RAISE EXCEPTION 'p_max_users: must be at least 1, got %', v_batch USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.kernel.maintenance')) THEN
        RAISE NOTICE 'kernel maintenance: another run holds the lock; nothing done';
        RETURN NULL;
    END IF;
    INSERT INTO ops.kernel_runs (as_of) VALUES (v_now) RETURNING run_id INTO v_run;

    -- Once a day: finding the sizes that need an index reads every embedding's (user, size).
    IF NOT EXISTS (SELECT 1 FROM ops.kernel_run_log l WHERE l.user_id IS NULL AND l.maintained_for = v_day
                   AND l.step = 'vector indexes') THEN
        v_t := clock_timestamp();
        SELECT count(*) INTO v_rows FROM kernel.ensure_vector_indexes() x WHERE x.action = 'created';
        INSERT INTO ops.kernel_run_log (run_id, user_id, maintained_for, step, rows, duration_ms, ok)
        VALUES (v_run, NULL, v_day, 'vector indexes', v_rows, 1000 * extract(epoch FROM clock_timestamp() - v_t), true);
    END IF;

    -- Users with kernel data not yet maintained for this day (nor failed three times for it).
    FOR v_user IN
        SELECT u.user_id FROM memory.users u
        WHERE (EXISTS (SELECT 1 FROM kernel.card c WHERE c.user_id = u.user_id)
               OR EXISTS (SELECT 1 FROM kernel.journal j WHERE j.user_id = u.user_id))
          AND NOT EXISTS (SELECT 1 FROM ops.kernel_run_log l
                          WHERE l.user_id = u.user_id AND l.maintained_for = v_day AND l.step = 'done')
          AND (SELECT count(*) FROM ops.kernel_run_log l
               WHERE l.user_id = u.user_id AND l.maintained_for = v_day AND l.step = 'failed') < 3
        ORDER BY u.user_id
        LIMIT v_batch
    LOOP
        v_log := '[]';
        BEGIN
            v_t := clock_timestamp(); v_step := 'prune stale';
            SELECT * INTO v_pruned FROM kernel.prune(v_user, v_now);
            v_log := v_log || jsonb_build_object('step', 'prune stale', 'rows', v_pruned.stale_deleted, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t))
                           || jsonb_build_object('step', 'trim to max_cards', 'rows', v_pruned.trimmed, 'ms', 0);
            v_t := clock_timestamp(); v_step := 'compress';
            SELECT coalesce(sum(x.notes_rolled), 0) INTO v_rows FROM kernel.compress(v_user, NULL, least(v_now, now())) x;
            v_log := v_log || jsonb_build_object('step', 'compress', 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
            v_t := clock_timestamp(); v_step := 'compact journal';
            SELECT coalesce(sum(x.entries), 0) INTO v_rows FROM kernel.compact_journal(v_user, v_now) x;
            v_log := v_log || jsonb_build_object('step', 'compact journal', 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
            v_t := clock_timestamp(); v_step := 'text stats';
            v_rows := kernel.refresh_text_stats(v_user);
            v_log := v_log || jsonb_build_object('step', 'text stats', 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t))
                           || jsonb_build_object('step', 'done', 'rows', 0, 'ms', 0);
            v_done := v_done + 1;
        EXCEPTION WHEN OTHERS THEN
            -- This user's maintenance is rolled back; the others go on. Logged, raised as a warning.
            GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT;
            v_failed := v_failed + 1;
            v_log := jsonb_build_array(jsonb_build_object('step', 'failed', 'rows', 0,
                     'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t), 'error', v_step || ': ' || v_err));
            RAISE WARNING 'kernel maintenance: user % failed at %: %', v_user, v_step, v_err;
        END;
        INSERT INTO ops.kernel_run_log (run_id, user_id, maintained_for, step, rows, duration_ms, ok, error)
        SELECT v_run, v_user, v_day, e ->> 'step', (e ->> 'rows')::bigint, (e ->> 'ms')::float8, e ->> 'error' IS NULL, e ->> 'error'
        FROM jsonb_array_elements(v_log) e;
    END LOOP;

    v_t := clock_timestamp();
    DELETE FROM kernel.tombstone t WHERE t.deleted_at < v_now - (ops.setting('kernel.tombstone_keep') #>> '{}')::interval;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    INSERT INTO ops.kernel_run_log (run_id, user_id, maintained_for, step, rows, duration_ms, ok)
    VALUES (v_run, NULL, v_day, 'trim tombstones', v_rows, 1000 * extract(epoch FROM clock_timestamp() - v_t), true);
    DELETE FROM ops.kernel_runs r WHERE r.started_at < now() - (ops.setting('ops.keep_history') #>> '{}')::interval;

    SELECT count(*) INTO v_left FROM memory.users u
    WHERE (EXISTS (SELECT 1 FROM kernel.card c WHERE c.user_id = u.user_id)
           OR EXISTS (SELECT 1 FROM kernel.journal j WHERE j.user_id = u.user_id))
      AND NOT EXISTS (SELECT 1 FROM ops.kernel_run_log l WHERE l.user_id = u.user_id AND l.maintained_for = v_day
                      AND l.step = 'done');
    UPDATE ops.kernel_runs r SET finished_at = clock_timestamp(), users_done = v_done, users_failed = v_failed, users_left = v_left,
        status = CASE WHEN v_failed = 0 THEN 'ok' WHEN v_done = 0 THEN 'failed' ELSE 'partial' END
    WHERE r.run_id = v_run;
    RETURN v_run;
END
$$;
COMMENT ON FUNCTION kernel.run_maintenance(timestamptz, int) IS
'The kernel''s maintenance job (pg_cron, cron.kernel_maintenance, hourly): builds missing HNSW indexes (kernel.ensure_vector_indexes, first call of a day), then for up to p_max_users (kernel.maintenance_batch_users) users with kernel data not yet maintained for p_now''s day: kernel.prune, kernel.compress, kernel.compact_journal, kernel.refresh_text_stats, each user in a subtransaction (a failure rolls back that user only, is logged and retried by a later call, at most three times a day); then forgets tombstones older than kernel.tombstone_keep. Each call is one transaction, so a day''s users are done in committed batches across calls; a killed call leaves nothing half-done and the next one takes its users. Advisory-locked (a second concurrent call returns NULL) and idempotent. Logged in ops.kernel_runs and ops.kernel_run_log (bi.kernel_runs). Returns the run id.';
REVOKE ALL ON FUNCTION kernel.run_maintenance(timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.run_maintenance(timestamptz, int) TO psimem_admin;
