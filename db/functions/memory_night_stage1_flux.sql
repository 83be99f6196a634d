-- Replaced by memory._night_select_sessions (all users, once per run) + memory._night_prepare(uuid).
DROP FUNCTION IF EXISTS memory._night_prepare(uuid, timestamptz);

-- Night Cycle stage 1: which sessions this cycle takes, their turns, flux arcs, continuity.

CREATE OR REPLACE FUNCTION memory._night_analyze(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_stats text := current_setting('default_statistics_target');
BEGIN
    -- Statistics for a work table the per-user stages read by index: a 3,000-row sample
    -- tells the planner enough about user_id, at a tenth of the default sample's cost.
    PERFORM set_config('default_statistics_target', '10', true);
    EXECUTE 'ANALYZE ' || p_table;
    PERFORM set_config('default_statistics_target', v_stats, true);
END
$$;
COMMENT ON FUNCTION memory._night_analyze(regclass) IS
'Internal, Night Cycle: ANALYZE of a work table with a small sample (default_statistics_target 10), the caller''s setting restored.';
REVOKE ALL ON FUNCTION memory._night_analyze(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_analyze(regclass) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_select_sessions(p_user_id uuid, p_cutoff timestamptz)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_idle interval := (ops.setting('night.session_idle') #>> '{}')::interval;
    v_n int;
BEGIN
    -- Set-based, once per run for every user (per-user statements cost more than the work):
    -- a session is taken whole or not at all: only idle ones, none with turns past the
    -- cycle's end, none a writer holds right now (SKIP LOCKED leaves it for next time).
    TRUNCATE _night_sessions;
    INSERT INTO _night_sessions (session_id, user_id, consolidated_turn)
    SELECT s.session_id, s.user_id, s.consolidated_turn FROM memory.sessions s
    WHERE (p_user_id IS NULL OR s.user_id = p_user_id) AND s.turn_count > s.consolidated_turn
      AND s.last_turn_at < p_cutoff AND s.last_turn_at <= now() - v_idle
    FOR SHARE OF s SKIP LOCKED;
    ANALYZE _night_sessions;  -- temp tables have no statistics otherwise (and the join below needs them)
    UPDATE _night_sessions n SET first_turn = r.first_turn, last_turn = r.last_turn, turns = r.turns
    FROM (SELECT d.session_id, min(d.turn_number) AS first_turn, max(d.turn_number) AS last_turn, count(*) AS turns
          FROM _night_sessions s JOIN memory.day_table d ON d.session_id = s.session_id AND d.turn_number > s.consolidated_turn
          GROUP BY d.session_id) r
    WHERE r.session_id = n.session_id;
    DELETE FROM _night_sessions WHERE turns IS NULL;  -- no turn left to take (a deleted history)
    SELECT coalesce(sum(s.turns), 0) INTO v_n FROM _night_sessions s;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_select_sessions(uuid, timestamptz) IS
'Internal, Night Cycle stage 0, once per run: picks the sessions to consolidate, of every user or of p_user_id (idle for night.session_idle, no turn after the cycle''s end, not being written: FOR SHARE SKIP LOCKED, so a session is in this cycle whole or left for the next), with the range and number of their unconsolidated turns. Returns the number of turns.';
REVOKE ALL ON FUNCTION memory._night_select_sessions(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_select_sessions(uuid, timestamptz) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_find_arcs()
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n int;
BEGIN
    -- The day_table trigger marked each turn of a flux window with the turn number of the
    -- spike that opened it (flux_arc_start), so an arc is a group of turns.
    TRUNCATE _night_found_arcs;
    INSERT INTO _night_found_arcs (user_id, session_id, start_turn, end_turn, peak_turn, resolved, baseline, sigma,
                                   peak, final, start_time, end_time)
    SELECT s.user_id, d.session_id, d.flux_arc_start, max(d.turn_number),
           (array_agg(d.turn_number ORDER BY d.perplexity_score DESC, d.turn_number))[1],
           bool_or(d.flux_state = 'stable'),
           min(d.flux_baseline_mean) FILTER (WHERE d.turn_number = d.flux_arc_start),
           min(d.flux_baseline_sd) FILTER (WHERE d.turn_number = d.flux_arc_start),
           max(d.perplexity_score),
           (array_agg(d.perplexity_score ORDER BY d.turn_number DESC))[1],
           min(d.created_at), max(d.created_at)
    FROM _night_sessions s
    JOIN memory.day_table d ON d.session_id = s.session_id AND d.turn_number > s.consolidated_turn
    WHERE d.flux_arc_start > s.consolidated_turn
    GROUP BY s.user_id, d.session_id, d.flux_arc_start;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    PERFORM memory._night_analyze('_night_found_arcs');
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_find_arcs() IS
'Internal, Night Cycle stage 1, once per run: the flux arcs of the picked sessions'' turns, from what the day_table trigger set live (parameters flux.*): an arc is the turns sharing a flux_arc_start, from the spike that opened a flux window to the first stable turn (resolved) or the session''s last turn (unresolved). baseline and sigma = the spike''s live baseline (mean and sample stddev of the flux.baseline_window turns before it), peak = highest perplexity in the arc, final = perplexity of the closing (or last) turn. An arc opened before the turns this cycle takes is left alone. Returns the number of arcs found.';
REVOKE ALL ON FUNCTION memory._night_find_arcs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_find_arcs() TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_prepare(p_user_id uuid)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n int;
BEGIN
    SELECT coalesce(sum(s.turns), 0) INTO v_n FROM _night_sessions s WHERE s.user_id = p_user_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_prepare(uuid) IS
'Internal, Night Cycle: the number of the user''s turns that memory._night_select_sessions picked.';
REVOKE ALL ON FUNCTION memory._night_prepare(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_prepare(uuid) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_stage1_flux(p_user_id uuid, p_cycle_date date)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_closing int := (ops.setting('continuity.closing_turns'))::int;
    v_opening int := (ops.setting('continuity.opening_turns'))::int;
    v_cwindow interval := (ops.setting('continuity.window') #>> '{}')::interval;
    v_csim float8 := (ops.setting('continuity.similarity'))::float8;
    v_n int;
    v_link record;
BEGIN
    -- The user's arcs, found for every user at once by memory._night_find_arcs().
    WITH arcs AS (SELECT * FROM _night_found_arcs a WHERE a.user_id = p_user_id),
    ins AS (
        INSERT INTO memory.flux_arcs AS f (session_id, user_id, cycle_date, start_turn, peak_turn, end_turn, resolved,
            open_at_session_end, baseline_perplexity, baseline_sigma, peak_perplexity, final_perplexity,
            flux_reversal_quality, arc_duration_turns, start_time, end_time, open_arc_embedding)
        SELECT a.session_id, p_user_id, p_cycle_date, a.start_turn, a.peak_turn, a.end_turn, a.resolved, NOT a.resolved,
               a.baseline, a.sigma, a.peak, a.final, (a.peak - a.final) * (a.end_turn - a.start_turn + 1),
               a.end_turn - a.start_turn + 1, a.start_time, a.end_time,
               CASE WHEN NOT a.resolved THEN (
                   SELECT l2_normalize(avg(x.universal_embedding)) FROM (
                       SELECT d.universal_embedding FROM memory.day_table d WHERE d.session_id = a.session_id
                       ORDER BY d.turn_number DESC LIMIT v_closing) x) END
        FROM arcs a
        ON CONFLICT (session_id, start_turn) DO NOTHING
        RETURNING f.arc_id, f.session_id, f.start_turn)
    INSERT INTO _night_arcs (arc_id, session_id, start_turn) SELECT arc_id, session_id, start_turn FROM ins;
    GET DIAGNOSTICS v_n = ROW_COUNT;

    -- Session start (spec 004 section 4.2): opening turns close to an open arc of the same
    -- user that ended shortly before link the new session (and its first arc) to it. Row by
    -- row by primary key: a join plan made while statistics were stale scanned all sessions.
    FOR v_link IN
        WITH opening AS (
            SELECT s.session_id, min(d.created_at) AS started, l2_normalize(avg(d.universal_embedding)) AS emb
            FROM _night_sessions s JOIN memory.day_table d ON d.session_id = s.session_id
                 AND d.turn_number > s.consolidated_turn AND d.turn_number <= v_opening
            WHERE s.user_id = p_user_id GROUP BY s.session_id)
        SELECT DISTINCT ON (o.session_id) o.session_id, a.arc_id AS open_arc_id, a.session_id AS open_session_id
        FROM opening o
        JOIN memory.flux_arcs a ON a.user_id = p_user_id AND a.open_at_session_end AND a.session_id <> o.session_id
             AND a.continued_by_arc_id IS NULL AND a.end_time <= o.started AND a.end_time > o.started - v_cwindow
        WHERE 1 - (a.open_arc_embedding <=> o.emb) > v_csim
        ORDER BY o.session_id, a.open_arc_embedding <=> o.emb
    LOOP
        UPDATE memory.sessions SET continues_session_id = v_link.open_session_id WHERE session_id = v_link.session_id;
        UPDATE memory.flux_arcs SET continued_by_arc_id = (
            SELECT a.arc_id FROM _night_arcs a WHERE a.session_id = v_link.session_id ORDER BY a.start_turn LIMIT 1)
        WHERE arc_id = v_link.open_arc_id;
    END LOOP;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage1_flux(uuid, date) IS
'Night Cycle stage 1, flux detection, for one user: stores the arcs memory._night_find_arcs() found for the user''s turns in memory.flux_arcs. An arc open at the session''s last turn sets open_at_session_end, the session continuity flag, with open_arc_embedding = normalised mean of the last continuity.closing_turns turns. flux_reversal_quality = (peak - final) x arc_duration_turns. Then links a new session whose opening turns (continuity.opening_turns) have cosine similarity > continuity.similarity to an open arc of the same user that ended within continuity.window before it started. Returns the number of arcs found.';
REVOKE ALL ON FUNCTION memory._night_stage1_flux(uuid, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage1_flux(uuid, date) TO psimem_admin;
