-- Night Cycle stage 9: day table cleanup by the tier's retention policy (spec 004 section 8.3).

CREATE OR REPLACE FUNCTION memory.night_09_cleanup(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cycle_date date := memory._night_cycle_date(p_run_id);
    v_window interval := (ops.setting('recall.window') #>> '{}')::interval;
    v_tier text;
    v_raw int;
    v_cycles int;
    v_n bigint;
BEGIN
    SELECT u.tier, r.raw_cycles, u.cycles INTO v_tier, v_raw, v_cycles
    FROM memory.users u JOIN memory.retention_policy r ON r.tier = u.tier WHERE u.user_id = p_user_id;
    DELETE FROM memory.day_table d
    USING memory.consolidations c
    WHERE d.user_id = p_user_id AND c.user_id = p_user_id
      AND c.session_id = d.session_id AND d.turn_number BETWEEN c.first_turn AND c.last_turn
      -- the tier's raw span, in the user's cycles (runs, not calendar days)
      AND v_cycles - c.cycle_no >= v_raw
      -- never what recall_recent still promises (the user's last recall.window, from now())
      AND d.created_at <= now() - v_window
      -- only a turn a block holds: in a zone, verbatim or in its summary
      AND EXISTS (SELECT 1 FROM memory.block_zones z
                  WHERE z.session_id = d.session_id AND z.user_id = p_user_id
                    AND d.turn_number BETWEEN z.first_turn AND z.last_turn);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        INSERT INTO ops.cleanup_log (cycle_date, tier, turns_deleted) VALUES (v_cycle_date, v_tier, v_n);
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_09_cleanup(bigint, uuid) IS
'Night Cycle stage 9, day table cleanup, for one user of a run, by memory.retention_policy for the user''s tier. Cycles are counted in the user''s Night Cycles (users.cycles), not calendar days. A raw turn goes once raw_cycles of them have passed since its consolidation (memory.consolidations.cycle_no), and only if a block holds it (a zone of memory.block_zones covers it: the turn verbatim, or its dead zone''s summary) and it is older than recall.window (what memory.recall_recent promises). A turn no block holds (consolidated before blocks covered every turn) stays. What it removes is logged per tier in ops.cleanup_log. Returns the number of turns deleted.';
REVOKE ALL ON FUNCTION memory.night_09_cleanup(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_09_cleanup(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(9::smallint, 'cleanup', 'memory.night_09_cleanup(bigint, uuid)', 'user');
