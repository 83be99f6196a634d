-- Night Cycle stage 0: which of a user's sessions this run takes. Every stage is a
-- function of (run, user) registered in memory.night_stages; memory.night_cycle runs them.

CREATE OR REPLACE FUNCTION memory.night_00_select_sessions(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_date date := memory._night_cycle_date(p_run_id);
    v_cutoff timestamptz := (v_date + 1)::timestamptz;
    v_idle interval := (ops.setting('night.session_idle') #>> '{}')::interval;
    v_n bigint;
BEGIN
    -- The run is one more of the user's cycles, what retention counts in, unless a run for
    -- this date (or a later one) counted already: running a date twice changes nothing.
    UPDATE memory.users u SET cycles = u.cycles + 1, last_cycle_date = v_date
    WHERE u.user_id = p_user_id AND (u.last_cycle_date IS NULL OR u.last_cycle_date < v_date);

    -- The trigger never stamps a session later than now(); one stamped in the future by
    -- other means would never look idle, so it counts as written now (taken once idle).
    UPDATE memory.sessions s SET last_turn_at = now()
    WHERE s.session_id IN (SELECT f.session_id FROM memory.sessions f
                           WHERE f.user_id = p_user_id AND f.last_turn_at > now() FOR NO KEY UPDATE SKIP LOCKED);

    -- A session is taken whole or not at all: only idle ones, none with turns past the
    -- cycle's end, none a writer holds right now (SKIP LOCKED leaves it for the next
    -- cycle). The row lock holds until the user's batch commits: a writer into a taken
    -- session waits for that batch, then its turn is past consolidated_turn (next cycle).
    WITH taken AS (
        SELECT s.session_id, s.consolidated_turn FROM memory.sessions s
        WHERE s.user_id = p_user_id AND s.turn_count > s.consolidated_turn
          AND s.last_turn_at < v_cutoff AND s.last_turn_at <= now() - v_idle
        FOR NO KEY UPDATE OF s SKIP LOCKED)
    INSERT INTO memory.night_sessions (run_id, user_id, session_id, consolidated_turn, first_turn, last_turn, turns)
    SELECT p_run_id, p_user_id, t.session_id, t.consolidated_turn, r.first_turn, r.last_turn, r.turns
    FROM taken t
    CROSS JOIN LATERAL (SELECT min(d.turn_number) AS first_turn, max(d.turn_number) AS last_turn, count(*) AS turns
                        FROM memory.day_table d
                        WHERE d.session_id = t.session_id AND d.user_id = p_user_id AND d.turn_number > t.consolidated_turn) r
    WHERE r.turns > 0;  -- none left to take: a deleted history
    SELECT coalesce(sum(n.turns), 0) INTO v_n FROM memory.night_sessions n WHERE n.run_id = p_run_id AND n.user_id = p_user_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_00_select_sessions(bigint, uuid) IS
'Night Cycle stage 0 for one user of a run: counts the run as one of the user''s cycles (users.cycles, once per cycle date, never for a date older than the last counted); takes the user''s sessions that are idle for night.session_idle, have no turn after the end of the run''s cycle date and are not being written (FOR NO KEY UPDATE SKIP LOCKED: a session is in this cycle whole or left for the next), locking them until the user''s batch commits, and records them with the range of their unconsolidated turns in memory.night_sessions. A session stamped in the future is first brought back to now(). Returns the number of turns taken.';
REVOKE ALL ON FUNCTION memory.night_00_select_sessions(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_00_select_sessions(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(0::smallint, 'select sessions', 'memory.night_00_select_sessions(bigint, uuid)', 'user');
