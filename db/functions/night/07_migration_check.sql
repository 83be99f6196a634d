-- Night Cycle stage 7: which blocks go to the Cortex.

CREATE OR REPLACE FUNCTION memory.night_07_migration_check(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cycle_date date := memory._night_cycle_date(p_run_id);
    v_gain float8 := (ops.setting('cortex.coherence_gain_threshold'))::float8;
    v_age interval := (ops.setting('cortex.max_block_age') #>> '{}')::interval;
    v_n bigint;
BEGIN
    -- The payload names the block's user with the block: a block's key is (block_id, user_id)
    -- (revision 0018), so a job says whose shard its block is on (docs/scale.md).
    INSERT INTO ops.jobs (kind, payload, dedupe_key)
    SELECT 'cortex_migrate', jsonb_build_object('block_id', b.block_id, 'user_id', b.user_id, 'run_id', p_run_id),
           'cortex_migrate:' || b.block_id
    FROM memory.holographic_blocks b
    JOIN memory.users u ON u.user_id = b.user_id
    JOIN memory.retention_policy r ON r.tier = u.tier
    WHERE b.user_id = p_user_id AND b.migrated_at IS NULL
      AND (b.coherence_gain >= v_gain OR b.arc_end_time < (v_cycle_date + 1)::timestamptz - v_age
           OR b.long_term OR u.cycles - b.cycle_no >= r.block_cycles)
    ORDER BY b.arc_start_time
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM pg_notify('psimem_jobs', 'night_cycle');  -- the worker starts on them when this batch commits
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_07_migration_check(bigint, uuid) IS
'Night Cycle stage 7, migration check, for one user of a run: queues a cortex_migrate job in ops.jobs (payload: the block, its user and the run; once per block: a block whose job failed for good stays until ops.retry_job) for each of the user''s blocks still in the Hippocampus that has coherence_gain >= cortex.coherence_gain_threshold, ended more than cortex.max_block_age before the cycle''s end, is marked long_term, or has stayed its tier''s block_cycles of the user''s cycles since it was stored (memory.retention_policy); wakes the worker (NOTIFY psimem_jobs) when it queued any. Returns the number queued.';
REVOKE ALL ON FUNCTION memory.night_07_migration_check(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_07_migration_check(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(7::smallint, 'migration check', 'memory.night_07_migration_check(bigint, uuid)', 'user');
