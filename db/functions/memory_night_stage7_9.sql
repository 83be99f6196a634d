CREATE OR REPLACE FUNCTION memory._night_stage7_migration(p_user_id uuid, p_cycle_date date)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_gain float8 := (ops.setting('cortex.coherence_gain_threshold'))::float8;
    v_age interval := (ops.setting('cortex.max_block_age') #>> '{}')::interval;
    v_n int;
BEGIN
    INSERT INTO ops.jobs (kind, payload, dedupe_key)
    SELECT 'cortex_migrate', jsonb_build_object('block_id', b.block_id), 'cortex_migrate:' || b.block_id
    FROM memory.holographic_blocks b
    WHERE b.user_id = p_user_id AND b.migrated_at IS NULL
      AND (b.coherence_gain >= v_gain OR b.arc_end_time < (p_cycle_date + 1)::timestamptz - v_age
           OR b.long_term OR b.hippocampus_until <= p_cycle_date)
    ORDER BY b.arc_start_time
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage7_migration(uuid, date) IS
'Night Cycle stage 7, migration check: queues a cortex_migrate job in ops.jobs (once per block) for each of the user''s blocks still in the Hippocampus that has coherence_gain >= cortex.coherence_gain_threshold, ended more than cortex.max_block_age before the cycle''s end, is marked long_term, or has reached hippocampus_until (its tier''s block retention). Returns the number queued.';
REVOKE ALL ON FUNCTION memory._night_stage7_migration(uuid, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage7_migration(uuid, date) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_stage8_clustering(p_run_id bigint, p_migrations_queued bigint)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n int;
BEGIN
    -- One pending re-clustering covers any number of migrations (the worker runs it after them).
    INSERT INTO ops.jobs (kind, payload, dedupe_key)
    SELECT 'cluster_update', jsonb_build_object('run_id', p_run_id), 'cluster_update:run:' || p_run_id
    WHERE p_migrations_queued > 0
      AND NOT EXISTS (SELECT 1 FROM ops.jobs j WHERE j.kind = 'cluster_update' AND j.state = 'queued')
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF EXISTS (SELECT 1 FROM ops.jobs j WHERE j.state = 'queued') THEN
        PERFORM pg_notify('psimem_jobs', 'night_cycle');
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage8_clustering(bigint, bigint) IS
'Night Cycle stage 8: when this run queued blocks for the Cortex and no re-clustering is pending, queues one cluster_update job (RAPTOR re-clustering, run by the worker after the migrations); wakes the worker with NOTIFY psimem_jobs when work is queued.';
REVOKE ALL ON FUNCTION memory._night_stage8_clustering(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage8_clustering(bigint, bigint) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_stage9_cleanup(p_user_id uuid, p_cycle_date date)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_tier text;
    v_raw int;
    v_block int;
    v_n int;
BEGIN
    SELECT u.tier, r.raw_cycles, r.block_cycles INTO v_tier, v_raw, v_block
    FROM memory.users u JOIN memory.retention_policy r ON r.tier = u.tier WHERE u.user_id = p_user_id;
    DELETE FROM memory.day_table d
    USING memory.consolidations c
    WHERE d.user_id = p_user_id
      AND c.session_id = d.session_id AND d.turn_number BETWEEN c.first_turn AND c.last_turn
      AND c.cycle_date <= p_cycle_date - v_raw
      -- never a turn that a block still in the Hippocampus covers
      AND NOT EXISTS (SELECT 1 FROM memory.holographic_blocks b
                      WHERE b.session_id = d.session_id AND b.block_kind = 'arc' AND b.migrated_at IS NULL
                        AND d.turn_number BETWEEN b.first_turn AND b.last_turn)
      -- a turn no block covers stays the tier's whole span
      AND (c.cycle_date <= p_cycle_date - (v_raw + v_block)
           OR EXISTS (SELECT 1 FROM memory.holographic_blocks b
                      WHERE b.session_id = d.session_id AND b.block_kind = 'arc'
                        AND d.turn_number BETWEEN b.first_turn AND b.last_turn));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        INSERT INTO ops.cleanup_log (cycle_date, tier, turns_deleted) VALUES (p_cycle_date, v_tier, v_n);
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage9_cleanup(uuid, date) IS
'Night Cycle stage 9, day table cleanup by memory.retention_policy for the user''s tier, counting cycles from the consolidation of each turn. A turn that a block covers goes once raw_cycles have passed and no block still in the Hippocampus (not yet migrated to the Cortex) covers it; a turn no block covers goes after raw_cycles + block_cycles (1 / 3 / 7 cycles for normal / meso / elder by default). What it removes is logged per tier in ops.cleanup_log.';
REVOKE ALL ON FUNCTION memory._night_stage9_cleanup(uuid, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage9_cleanup(uuid, date) TO psimem_admin;
