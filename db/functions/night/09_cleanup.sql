-- Night Cycle stage 9: day table cleanup by the tier's retention policy (spec 004 section 8.3).

CREATE OR REPLACE FUNCTION memory.night_09_cleanup(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cycle_date date := memory._night_cycle_date(p_run_id);
    v_tier text;
    v_raw int;
    v_block int;
    v_n bigint;
BEGIN
    SELECT u.tier, r.raw_cycles, r.block_cycles INTO v_tier, v_raw, v_block
    FROM memory.users u JOIN memory.retention_policy r ON r.tier = u.tier WHERE u.user_id = p_user_id;
    DELETE FROM memory.day_table d
    USING memory.consolidations c
    WHERE d.user_id = p_user_id
      AND c.session_id = d.session_id AND d.turn_number BETWEEN c.first_turn AND c.last_turn
      AND c.cycle_date <= v_cycle_date - v_raw
      -- never a turn that a block still in the Hippocampus covers
      AND NOT EXISTS (SELECT 1 FROM memory.holographic_blocks b
                      WHERE b.session_id = d.session_id AND b.block_kind = 'arc' AND b.migrated_at IS NULL
                        AND d.turn_number BETWEEN b.first_turn AND b.last_turn)
      -- a turn no block covers stays the tier's whole span
      AND (c.cycle_date <= v_cycle_date - (v_raw + v_block)
           OR EXISTS (SELECT 1 FROM memory.holographic_blocks b
                      WHERE b.session_id = d.session_id AND b.block_kind = 'arc'
                        AND d.turn_number BETWEEN b.first_turn AND b.last_turn));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        INSERT INTO ops.cleanup_log (cycle_date, tier, turns_deleted) VALUES (v_cycle_date, v_tier, v_n);
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_09_cleanup(bigint, uuid) IS
'Night Cycle stage 9, day table cleanup, for one user of a run, by memory.retention_policy for the user''s tier, counting cycles from the consolidation of each turn. A turn that a block covers goes once raw_cycles have passed and no block still in the Hippocampus (not yet migrated to the Cortex) covers it; a turn no block covers goes after raw_cycles + block_cycles (1 / 3 / 7 cycles for normal / meso / elder by default). What it removes is logged per tier in ops.cleanup_log. Returns the number of turns deleted.';
REVOKE ALL ON FUNCTION memory.night_09_cleanup(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_09_cleanup(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(9::smallint, 'cleanup', 'memory.night_09_cleanup(bigint, uuid)', 'user');
