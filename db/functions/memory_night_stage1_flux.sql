-- Night Cycle stage 1: which sessions this cycle takes, their turns, flux arcs, continuity.

CREATE OR REPLACE FUNCTION memory._night_prepare(p_user_id uuid, p_cutoff timestamptz)
RETURNS int
LANGUAGE plpgsql
AS $$
DECLARE
    v_idle interval := (ops.setting('night.session_idle') #>> '{}')::interval;
    v_window int := (ops.setting('flux.baseline_window'))::int;
    v_n int;
BEGIN
    TRUNCATE _night_sessions, _night_turns, _night_arcs, _night_blocks;
    -- A session is taken whole or not at all: only idle ones, none with turns past the
    -- cycle's end, none a writer holds right now (SKIP LOCKED leaves it for next time).
    INSERT INTO _night_sessions (session_id, consolidated_turn)
    SELECT s.session_id, s.consolidated_turn FROM memory.sessions s
    WHERE s.user_id = p_user_id AND s.turn_count > s.consolidated_turn
      AND s.last_turn_at < p_cutoff AND s.last_turn_at <= now() - v_idle
    FOR SHARE OF s SKIP LOCKED;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n = 0 THEN
        RETURN 0;
    END IF;
    -- Light columns for every turn; content and vectors are read later, for block turns only.
    INSERT INTO _night_turns (entry_id, session_id, turn_number, created_at, perplexity_score, flux_state,
                              local_mean, local_sd, prev_perplexity)
    SELECT d.entry_id, d.session_id, d.turn_number, d.created_at, d.perplexity_score, d.flux_state,
           avg(d.perplexity_score) OVER w, coalesce(stddev_samp(d.perplexity_score) OVER w, 0),
           lag(d.perplexity_score) OVER o
    FROM memory.day_table d
    JOIN _night_sessions s ON s.session_id = d.session_id
    WHERE d.user_id = p_user_id  -- redundant, but lets the planner use the user's index (temp tables have no statistics)
      AND d.turn_number > s.consolidated_turn
    WINDOW o AS (PARTITION BY d.session_id ORDER BY d.turn_number),
           w AS (o ROWS BETWEEN v_window PRECEDING AND 1 PRECEDING);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_prepare(uuid, timestamptz) IS
'Internal, Night Cycle. Picks the user''s sessions to consolidate (idle for night.session_idle, no turn after the cycle''s end, not being written: FOR SHARE SKIP LOCKED, so a session is in this cycle whole or left for the next), and lists their unconsolidated turns with the local perplexity baseline (mean and sample stddev of the previous flux.baseline_window turns) and the previous turn''s perplexity. Returns the number of turns listed.';

CREATE OR REPLACE FUNCTION memory._night_stage1_flux(p_user_id uuid, p_cycle_date date)
RETURNS int
LANGUAGE plpgsql
AS $$
DECLARE
    v_closing int := (ops.setting('continuity.closing_turns'))::int;
    v_opening int := (ops.setting('continuity.opening_turns'))::int;
    v_cwindow interval := (ops.setting('continuity.window') #>> '{}')::interval;
    v_csim float8 := (ops.setting('continuity.similarity'))::float8;
    v_n int;
BEGIN
    -- Arcs from the live flux_state: a spike after a baseline or stable turn opens one; the
    -- first stable turn closes it; an arc still open at the session's last turn is unresolved.
    WITH scored AS (
        SELECT t.*, lag(t.flux_state) OVER (PARTITION BY t.session_id ORDER BY t.turn_number) AS prev_state
        FROM _night_turns t WHERE t.flux_state IS NOT NULL),
    numbered AS (
        SELECT s.*, sum((s.flux_state = 'spike' AND coalesce(s.prev_state, 'baseline') IN ('baseline', 'stable'))::int)
                    OVER (PARTITION BY s.session_id ORDER BY s.turn_number) AS arc_no
        FROM scored s),
    inside AS (
        SELECT n.*, coalesce(bool_or(n.flux_state = 'stable') OVER (PARTITION BY n.session_id, n.arc_no ORDER BY n.turn_number
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS closed_before
        FROM numbered n WHERE n.arc_no > 0),
    arcs AS (
        SELECT i.session_id, min(i.turn_number) AS start_turn, max(i.turn_number) AS end_turn,
               (array_agg(i.turn_number ORDER BY i.perplexity_score DESC, i.turn_number))[1] AS peak_turn,
               bool_or(i.flux_state = 'stable') AS resolved,
               (array_agg(i.local_mean ORDER BY i.turn_number))[1] AS baseline,
               (array_agg(i.local_sd ORDER BY i.turn_number))[1] AS sigma,
               max(i.perplexity_score) AS peak,
               (array_agg(i.perplexity_score ORDER BY i.turn_number DESC))[1] AS final,
               min(i.created_at) AS start_time, max(i.created_at) AS end_time
        FROM inside i WHERE NOT i.closed_before
        GROUP BY i.session_id, i.arc_no),
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
    -- user that ended shortly before link the new session (and its first arc) to it.
    WITH opening AS (
        SELECT t.session_id, min(t.created_at) AS started, l2_normalize(avg(d.universal_embedding)) AS emb
        FROM _night_turns t JOIN memory.day_table d ON d.session_id = t.session_id AND d.turn_number = t.turn_number
        WHERE t.turn_number <= v_opening AND d.user_id = p_user_id GROUP BY t.session_id),
    matched AS (
        SELECT DISTINCT ON (o.session_id) o.session_id, a.arc_id AS open_arc_id, a.session_id AS open_session_id
        FROM opening o
        JOIN memory.flux_arcs a ON a.user_id = p_user_id AND a.open_at_session_end AND a.session_id <> o.session_id
             AND a.continued_by_arc_id IS NULL AND a.end_time <= o.started AND a.end_time > o.started - v_cwindow
        WHERE 1 - (a.open_arc_embedding <=> o.emb) > v_csim
        ORDER BY o.session_id, a.open_arc_embedding <=> o.emb),
    linked AS (
        UPDATE memory.sessions s SET continues_session_id = m.open_session_id
        FROM matched m WHERE s.session_id = m.session_id
        RETURNING m.session_id, m.open_arc_id)
    UPDATE memory.flux_arcs f SET continued_by_arc_id = (
        SELECT a.arc_id FROM _night_arcs a WHERE a.session_id = l.session_id ORDER BY a.start_turn LIMIT 1)
    FROM linked l WHERE f.arc_id = l.open_arc_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage1_flux(uuid, date) IS
'Night Cycle stage 1, flux detection, for one user. Assembles flux arcs from the flux_state the day_table trigger set live (parameters flux.*): a spike after a baseline or stable turn opens an arc, the first stable turn closes it, and an arc open at the session''s last turn is unresolved (open_at_session_end, the session continuity flag, with open_arc_embedding = normalised mean of the last continuity.closing_turns turns). Metrics: baseline = mean perplexity of the flux.baseline_window turns before the spike, peak = highest perplexity in the arc, final = perplexity of the closing (or last) turn, flux_reversal_quality = (peak - final) x arc_duration_turns. Then links a new session whose opening turns (continuity.opening_turns) have cosine similarity > continuity.similarity to an open arc of the same user that ended within continuity.window before it started. Returns the number of arcs found.';
