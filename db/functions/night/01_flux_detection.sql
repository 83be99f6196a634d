-- Night Cycle stage 1: flux arcs from what the day_table trigger marked on each turn, and
-- the continuity between sessions (spec 004 sections 3.2 and 4.2).

CREATE OR REPLACE FUNCTION memory.night_01_flux_detection(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cycle_date date := memory._night_cycle_date(p_run_id);
    v_closing int := (ops.setting('continuity.closing_turns'))::int;
    v_opening int := (ops.setting('continuity.opening_turns'))::int;
    v_cwindow interval := (ops.setting('continuity.window') #>> '{}')::interval;
    v_csim float8 := (ops.setting('continuity.similarity'))::float8;
    v_n bigint;
    v_link record;
BEGIN
    -- An arc is the turns sharing a flux_arc_start (the spike that opened their flux window).
    -- One whose spike was consolidated by an earlier cycle (the session was taken while the
    -- window was open, then resumed) is stored as a continuation of the part stored then:
    -- the latest arc of that session starting between the spike and the consolidated turn.
    WITH turns AS (
        SELECT d.session_id, n.consolidated_turn, d.turn_number, d.flux_arc_start, d.flux_state, d.perplexity_score,
               d.flux_baseline_mean, d.flux_baseline_sd, d.created_at
        FROM memory.night_sessions n
        JOIN memory.day_table d ON d.session_id = n.session_id AND d.user_id = n.user_id AND d.turn_number > n.consolidated_turn
        WHERE n.run_id = p_run_id AND n.user_id = p_user_id AND d.flux_arc_start IS NOT NULL),
    found AS (
        SELECT t.session_id, t.flux_arc_start, min(t.consolidated_turn) AS consolidated_turn,
               min(t.turn_number) AS start_turn, max(t.turn_number) AS end_turn,
               (array_agg(t.turn_number ORDER BY t.perplexity_score DESC, t.turn_number))[1] AS peak_turn,
               bool_or(t.flux_state = 'stable') AS resolved,
               coalesce(min(t.flux_baseline_mean) FILTER (WHERE t.turn_number = t.flux_arc_start),
                        (array_agg(t.flux_baseline_mean ORDER BY t.turn_number))[1]) AS baseline,
               coalesce(min(t.flux_baseline_sd) FILTER (WHERE t.turn_number = t.flux_arc_start),
                        (array_agg(t.flux_baseline_sd ORDER BY t.turn_number))[1]) AS sigma,
               max(t.perplexity_score) AS peak,
               (array_agg(t.perplexity_score ORDER BY t.turn_number DESC))[1] AS final,
               min(t.created_at) AS start_time, max(t.created_at) AS end_time
        FROM turns t
        GROUP BY t.session_id, t.flux_arc_start),
    arcs AS (
        SELECT f.*, e.arc_id AS earlier_arc_id,
               coalesce(e.baseline_perplexity, f.baseline) AS base, coalesce(e.baseline_sigma, f.sigma) AS base_sigma
        FROM found f
        LEFT JOIN LATERAL (
            SELECT a.arc_id, a.baseline_perplexity, a.baseline_sigma FROM memory.flux_arcs a
            WHERE f.flux_arc_start <= f.consolidated_turn AND a.session_id = f.session_id
              AND a.start_turn BETWEEN f.flux_arc_start AND f.consolidated_turn
            ORDER BY a.start_turn DESC LIMIT 1) e ON true),
    ins AS (
        INSERT INTO memory.flux_arcs AS fa (session_id, user_id, cycle_date, start_turn, peak_turn, end_turn, resolved,
            open_at_session_end, baseline_perplexity, baseline_sigma, peak_perplexity, final_perplexity,
            flux_reversal_quality, arc_duration_turns, start_time, end_time, open_arc_embedding)
        SELECT a.session_id, p_user_id, v_cycle_date, a.start_turn, a.peak_turn, a.end_turn, a.resolved, NOT a.resolved,
               a.base, a.base_sigma, a.peak, a.final, (a.peak - a.final) * (a.end_turn - a.start_turn + 1),
               a.end_turn - a.start_turn + 1, a.start_time, a.end_time,
               CASE WHEN NOT a.resolved THEN (
                   SELECT l2_normalize(avg(x.universal_embedding)) FROM (
                       SELECT d.universal_embedding FROM memory.day_table d
                       WHERE d.session_id = a.session_id AND d.user_id = p_user_id
                       ORDER BY d.turn_number DESC LIMIT v_closing) x) END
        FROM arcs a
        ON CONFLICT (session_id, start_turn, user_id) DO NOTHING
        RETURNING fa.arc_id, fa.session_id, fa.start_turn)
    INSERT INTO memory.night_arcs (run_id, user_id, arc_id, session_id, start_turn, continues_arc_id)
    SELECT p_run_id, p_user_id, i.arc_id, i.session_id, i.start_turn, a.earlier_arc_id
    FROM ins i JOIN arcs a ON a.session_id = i.session_id AND a.start_turn = i.start_turn;
    GET DIAGNOSTICS v_n = ROW_COUNT;

    UPDATE memory.flux_arcs e SET continued_by_arc_id = n.arc_id
    FROM memory.night_arcs n
    WHERE n.run_id = p_run_id AND n.user_id = p_user_id AND e.arc_id = n.continues_arc_id AND e.user_id = n.user_id
      AND e.continued_by_arc_id IS NULL;

    -- Session start (spec 004 section 4.2): opening turns close to an open arc of the same
    -- user that ended shortly before link the new session (and its first arc) to it. Row by
    -- row by primary key: a join plan made while statistics were stale scanned all sessions.
    FOR v_link IN
        WITH opening AS (
            SELECT n.session_id, min(d.created_at) AS started, l2_normalize(avg(d.universal_embedding)) AS emb
            FROM memory.night_sessions n JOIN memory.day_table d ON d.session_id = n.session_id AND d.user_id = n.user_id
                 AND d.turn_number > n.consolidated_turn AND d.turn_number <= v_opening
            WHERE n.run_id = p_run_id AND n.user_id = p_user_id GROUP BY n.session_id)
        SELECT DISTINCT ON (o.session_id) o.session_id, a.arc_id AS open_arc_id, a.session_id AS open_session_id
        FROM opening o
        JOIN memory.flux_arcs a ON a.user_id = p_user_id AND a.open_at_session_end AND a.session_id <> o.session_id
             AND a.continued_by_arc_id IS NULL AND a.end_time <= o.started AND a.end_time > o.started - v_cwindow
        WHERE 1 - (a.open_arc_embedding <=> o.emb) > v_csim
        ORDER BY o.session_id, a.open_arc_embedding <=> o.emb
    LOOP
        UPDATE memory.sessions SET continues_session_id = v_link.open_session_id WHERE session_id = v_link.session_id;
        UPDATE memory.flux_arcs SET continued_by_arc_id = (
            SELECT n.arc_id FROM memory.night_arcs n
            WHERE n.run_id = p_run_id AND n.user_id = p_user_id AND n.session_id = v_link.session_id
            ORDER BY n.start_turn LIMIT 1)
        WHERE arc_id = v_link.open_arc_id;
    END LOOP;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_01_flux_detection(bigint, uuid) IS
'Night Cycle stage 1, flux detection, for one user of a run: stores in memory.flux_arcs (and memory.night_arcs) the arcs of the turns stage 0 took, from what the day_table trigger set live (parameters flux.*): an arc is the turns sharing a flux_arc_start, from the spike that opened a flux window to the first stable turn (resolved) or the session''s last turn (unresolved). baseline and sigma = the spike''s live baseline (mean and sample stddev of the flux.baseline_window turns before it), peak = highest perplexity in the arc, final = perplexity of the closing (or last) turn, flux_reversal_quality = (peak - final) x arc_duration_turns. An arc whose spike an earlier cycle consolidated (its session resumed while the window was open) is stored from its first new turn as a continuation of the part stored then (continued_by_arc_id of that part), with that part''s baseline. An arc open at the session''s last turn sets open_at_session_end, the session continuity flag, with open_arc_embedding = normalised mean of the last continuity.closing_turns turns. Then links a new session whose opening turns (continuity.opening_turns) have cosine similarity > continuity.similarity to an open arc of the same user that ended within continuity.window before it started. Returns the number of arcs stored.';
REVOKE ALL ON FUNCTION memory.night_01_flux_detection(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_01_flux_detection(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(1::smallint, 'flux detection', 'memory.night_01_flux_detection(bigint, uuid)', 'taken');
