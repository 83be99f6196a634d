CREATE OR REPLACE FUNCTION memory.run_night_cycle(p_cycle_date date DEFAULT current_date, p_user_id uuid DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cutoff timestamptz := (p_cycle_date + 1)::timestamptz;
    v_run_id bigint;
    v_user record;
    v_stage int;
    v_names text[] := ARRAY['flux detection', 'block formation', 'salience', 'compression', 'embedding',
                            'storage', 'migration check', 'clustering update', 'cleanup'];
    v_t timestamptz;
    v_rows bigint;
    v_log jsonb;
    v_done int := 0;
    v_failed int := 0;
    v_total bigint;
    v_migrations bigint := 0;
    v_user_migrations bigint;
    v_err text;
    v_block_indexes text[];
    v_blocks_made bigint := 0;
    v_next_analyze bigint := 1000;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.night_cycle')) THEN
        RAISE NOTICE 'night cycle: another run holds the lock; nothing done';
        RETURN NULL;
    END IF;
    INSERT INTO ops.cycle_runs (cycle_date, user_id) VALUES (p_cycle_date, p_user_id) RETURNING run_id INTO v_run_id;

    CREATE TEMP TABLE IF NOT EXISTS _night_sessions (
        session_id uuid PRIMARY KEY, user_id uuid, consolidated_turn int, first_turn int, last_turn int, turns int) ON COMMIT DROP;
    CREATE INDEX IF NOT EXISTS _night_sessions_user ON _night_sessions (user_id);
    CREATE TEMP TABLE IF NOT EXISTS _night_found_arcs (
        user_id uuid, session_id uuid, start_turn int, end_turn int, peak_turn int, resolved boolean, baseline float8,
        sigma float8, peak float8, final float8, start_time timestamptz, end_time timestamptz) ON COMMIT DROP;
    CREATE INDEX IF NOT EXISTS _night_found_arcs_user ON _night_found_arcs (user_id);
    CREATE TEMP TABLE IF NOT EXISTS _night_block_turns (
        arc_id uuid, turn_number int, role text, content text, perplexity_score float8,
        universal_embedding vector, native_embedding vector, coherence_prev float8, interrogative_distance float8,
        live boolean, PRIMARY KEY (arc_id, turn_number)) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS _night_arcs (arc_id uuid PRIMARY KEY, session_id uuid, start_turn int) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS _night_blocks (
        arc_id uuid PRIMARY KEY, block_id uuid NOT NULL DEFAULT gen_random_uuid(), session_id uuid,
        start_turn int, peak_turn int, end_turn int, first_turn int, last_turn int, resolved boolean,
        baseline float8, peak float8, final float8, quality float8, duration int,
        start_time timestamptz, end_time timestamptz, prose jsonb, salience_scores jsonb, arrete float8,
        coherence_gain float8, ties_merge_weight float8, universal_embedding vector, native_embedding vector,
        continues_from uuid, continued_by uuid, parent_metablock_id uuid, citations jsonb) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS _night_zones (
        arc_id uuid, session_id uuid, live boolean, first_turn int, last_turn int, content text) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS _night_chain (root uuid, block_id uuid, pos int) ON COMMIT DROP;

    -- Stage 0 and the finding half of stage 1 read only, so they run once for every user;
    -- what writes runs per user, below, so that a failure rolls back one user's work.
    v_t := clock_timestamp();
    v_rows := memory._night_select_sessions(p_user_id, v_cutoff);
    INSERT INTO ops.cycle_stage_log (run_id, user_id, stage, stage_name, rows, duration_ms, ok)
    VALUES (v_run_id, NULL, 0, 'select sessions', v_rows, 1000 * extract(epoch FROM clock_timestamp() - v_t), true);
    v_t := clock_timestamp();
    v_rows := memory._night_find_arcs();
    INSERT INTO ops.cycle_stage_log (run_id, user_id, stage, stage_name, rows, duration_ms, ok)
    VALUES (v_run_id, NULL, 1, v_names[1], v_rows, 1000 * extract(epoch FROM clock_timestamp() - v_t), true);
    v_block_indexes := memory._night_drop_block_indexes(v_rows);  -- bulk mode: one build at the end

    SELECT count(*) INTO v_total FROM memory.users u WHERE p_user_id IS NULL OR u.user_id = p_user_id;
    FOR v_user IN
        SELECT u.user_id FROM memory.users u WHERE p_user_id IS NULL OR u.user_id = p_user_id ORDER BY u.user_id
    LOOP
        IF (v_done + v_failed) % 100 = 0 AND v_done + v_failed > 0 THEN  -- progress for psql (notices arrive live)
            RAISE NOTICE 'night cycle %: % of % users done', p_cycle_date, v_done + v_failed, v_total;
        END IF;
        v_log := '[]';
        v_stage := 0;
        -- The per-user work tables, emptied outside the subtransaction (cheaper there).
        TRUNCATE _night_arcs, _night_blocks, _night_chain, _night_zones, _night_block_turns;
        -- The tables this run grows get fresh statistics each time its blocks double: plans
        -- (plpgsql caches them) made while they looked empty would scan them for every user.
        IF v_blocks_made >= v_next_analyze THEN
            ANALYZE memory.flux_arcs, memory.holographic_blocks, memory.block_relationships, memory.consolidations;
            v_next_analyze := 2 * v_blocks_made;
        END IF;
        BEGIN
            v_t := clock_timestamp();
            v_rows := memory._night_prepare(v_user.user_id);
            v_log := v_log || jsonb_build_object('stage', 0, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
            IF v_rows > 0 THEN
                v_t := clock_timestamp(); v_stage := 1; v_rows := memory._night_stage1_flux(v_user.user_id, p_cycle_date);
                v_log := v_log || jsonb_build_object('stage', 1, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
                v_t := clock_timestamp(); v_stage := 2; v_rows := memory._night_stage2_blocks(v_user.user_id, least(v_cutoff, now()));
                v_log := v_log || jsonb_build_object('stage', 2, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
                v_t := clock_timestamp(); v_stage := 3; v_rows := memory._night_stage3_salience();
                v_log := v_log || jsonb_build_object('stage', 3, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
                v_t := clock_timestamp(); v_stage := 4; v_rows := memory._night_stage4_compression();
                v_log := v_log || jsonb_build_object('stage', 4, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
                v_t := clock_timestamp(); v_stage := 5; v_rows := memory._night_stage5_embeddings();
                v_log := v_log || jsonb_build_object('stage', 5, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
                v_t := clock_timestamp(); v_stage := 6; v_rows := memory._night_stage6_storage(v_user.user_id, p_cycle_date);
                v_log := v_log || jsonb_build_object('stage', 6, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
            END IF;
            v_t := clock_timestamp(); v_stage := 7; v_rows := memory._night_stage7_migration(v_user.user_id, p_cycle_date);
            v_user_migrations := v_rows;
            v_log := v_log || jsonb_build_object('stage', 7, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
            v_t := clock_timestamp(); v_stage := 9; v_rows := memory._night_stage9_cleanup(v_user.user_id, p_cycle_date);
            v_log := v_log || jsonb_build_object('stage', 9, 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
            v_done := v_done + 1;
            v_blocks_made := v_blocks_made + coalesce((SELECT sum((e ->> 'rows')::bigint) FROM jsonb_array_elements(v_log) e
                                                       WHERE (e ->> 'stage')::int = 6), 0);
            v_migrations := v_migrations + v_user_migrations;  -- counted only once the user's work stands
        EXCEPTION WHEN OTHERS THEN
            -- This user's work is rolled back; the others go on. The failure is logged and raised as a warning.
            GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT;
            v_failed := v_failed + 1;
            v_log := jsonb_build_array(jsonb_build_object('stage', greatest(v_stage, 1), 'rows', 0,
                     'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t), 'error', v_err || ' (user''s cycle rolled back)'));
            RAISE WARNING 'night cycle %: user % failed at stage % (%): %', p_cycle_date, v_user.user_id,
                greatest(v_stage, 1), v_names[greatest(v_stage, 1)], v_err;
        END;
        INSERT INTO ops.cycle_stage_log (run_id, user_id, stage, stage_name, rows, duration_ms, ok, error)
        SELECT v_run_id, v_user.user_id, (e ->> 'stage')::int,
               CASE (e ->> 'stage')::int WHEN 0 THEN 'select sessions' ELSE v_names[(e ->> 'stage')::int] END, (e ->> 'rows')::bigint,
               (e ->> 'ms')::float8, e ->> 'error' IS NULL, e ->> 'error'
        FROM jsonb_array_elements(v_log) e;
    END LOOP;

    IF cardinality(v_block_indexes) > 0 THEN
        v_t := clock_timestamp();
        v_rows := memory._night_restore_block_indexes(v_block_indexes);
        INSERT INTO ops.cycle_stage_log (run_id, user_id, stage, stage_name, rows, duration_ms, ok)
        VALUES (v_run_id, NULL, 6, v_names[6], v_rows, 1000 * extract(epoch FROM clock_timestamp() - v_t), true);
    END IF;

    v_t := clock_timestamp();
    v_rows := memory._night_stage8_clustering(v_run_id, v_migrations);
    INSERT INTO ops.cycle_stage_log (run_id, user_id, stage, stage_name, rows, duration_ms, ok)
    VALUES (v_run_id, NULL, 8, v_names[8], v_rows, 1000 * extract(epoch FROM clock_timestamp() - v_t), true);

    UPDATE ops.cycle_runs SET finished_at = clock_timestamp(), users_done = v_done, users_failed = v_failed,
        status = CASE WHEN v_failed = 0 THEN 'ok' WHEN v_done = 0 THEN 'failed' ELSE 'partial' END
    WHERE run_id = v_run_id;
    RAISE NOTICE 'night cycle %: run % done, % user(s) consolidated, % failed', p_cycle_date, v_run_id, v_done, v_failed;
    RETURN v_run_id;
END
$$;
COMMENT ON FUNCTION memory.run_night_cycle(date, uuid) IS
'The Night Cycle (spec 004 section 8) for one cycle date, for every user or one: 1 flux detection, 2 block formation, 3 salience, 4 compression, 5 embedding, 6 storage, 7 migration check, 8 clustering update (once per run), 9 day table cleanup. Takes sessions idle for night.session_idle whose turns all precede the end of p_cycle_date. Idempotent: consolidated turns are not taken again, so a second run for the same cycle creates nothing new. An advisory lock keeps two runs from overlapping (the second returns NULL). Stage 0 (picking sessions) and the finding of arcs (groups of the turns the day_table trigger marked with their flux window) run once for all users; the rest per user. A cycle forming at least night.index_rebuild_min_blocks blocks and more than night.index_rebuild_ratio times those stored builds the blocks'' HNSW indexes once at its end (bulk mode; readers of holographic_blocks wait for the commit). Each user runs in a subtransaction: a failure rolls back that user''s work only, is logged in ops.cycle_stage_log and raised as a WARNING, and marks the run partial or failed in ops.cycle_runs. Returns the run id; scheduled by pg_cron (cron.night_cycle).';
REVOKE ALL ON FUNCTION memory.run_night_cycle(date, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.run_night_cycle(date, uuid) TO psimem_admin;
