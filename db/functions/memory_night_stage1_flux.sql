-- Replaced by memory._night_select_sessions (all users, once per run) + memory._night_prepare(uuid).
DROP FUNCTION IF EXISTS memory._night_prepare(uuid, timestamptz);

-- Night Cycle stage 1: which sessions this cycle takes, their turns, flux arcs, continuity.

CREATE OR REPLACE FUNCTION memory._night_analyze(p_table regclass)
RETURNS void
LANGUAGE plpgsql
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

CREATE OR REPLACE FUNCTION memory._night_select_sessions(p_user_id uuid, p_cutoff timestamptz)
RETURNS int
LANGUAGE plpgsql
AS $$
DECLARE
    v_idle interval := (ops.setting('night.session_idle') #>> '{}')::interval;
    v_window int := (ops.setting('flux.baseline_window'))::int;
    v_n int;
BEGIN
    -- Set-based, once per run for every user (per-user statements cost more than the work):
    -- a session is taken whole or not at all: only idle ones, none with turns past the
    -- cycle's end, none a writer holds right now (SKIP LOCKED leaves it for next time).
    TRUNCATE _night_sessions, _night_turns;
    INSERT INTO _night_sessions (session_id, user_id, consolidated_turn)
    SELECT s.session_id, s.user_id, s.consolidated_turn FROM memory.sessions s
    WHERE (p_user_id IS NULL OR s.user_id = p_user_id) AND s.turn_count > s.consolidated_turn
      AND s.last_turn_at < p_cutoff AND s.last_turn_at <= now() - v_idle
    FOR SHARE OF s SKIP LOCKED;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n = 0 THEN
        RETURN 0;
    END IF;
    ANALYZE _night_sessions;  -- temp tables have no statistics otherwise
    -- Light columns for every turn; content and vectors are read later, for block turns only.
    -- The baseline window's mean and sample stddev from running sums (O(n); a sliding frame
    -- would recompute each row's window): over the previous v_window turns with a perplexity.
    INSERT INTO _night_turns (user_id, entry_id, session_id, turn_number, created_at, perplexity_score, flux_state,
                              local_mean, local_sd, prev_perplexity)
    SELECT r.user_id, r.entry_id, r.session_id, r.turn_number, r.created_at, r.perplexity_score, r.flux_state,
           r.s / nullif(r.n, 0),
           CASE WHEN r.n > 1 THEN sqrt(greatest(0, (r.q - r.s * r.s / r.n) / (r.n - 1))) ELSE 0 END,
           r.prev
    FROM (
        SELECT c.*, c.s_run - c.s_old AS s, c.q_run - c.q_old AS q, c.n_run - c.n_old AS n
        FROM (
            SELECT w.*,
                   coalesce(lag(w.s_to) OVER o, 0) AS s_run, coalesce(lag(w.s_to, v_window + 1) OVER o, 0) AS s_old,
                   coalesce(lag(w.q_to) OVER o, 0) AS q_run, coalesce(lag(w.q_to, v_window + 1) OVER o, 0) AS q_old,
                   coalesce(lag(w.n_to) OVER o, 0) AS n_run, coalesce(lag(w.n_to, v_window + 1) OVER o, 0) AS n_old,
                   lag(w.perplexity_score) OVER o AS prev
            FROM (
                SELECT s.user_id, d.entry_id, d.session_id, d.turn_number, d.created_at, d.perplexity_score, d.flux_state,
                       coalesce(sum(d.perplexity_score) OVER o, 0) AS s_to,
                       coalesce(sum(d.perplexity_score * d.perplexity_score) OVER o, 0) AS q_to,
                       count(d.perplexity_score) OVER o AS n_to
                FROM memory.day_table d
                JOIN _night_sessions s ON s.session_id = d.session_id
                WHERE d.turn_number > s.consolidated_turn
                WINDOW o AS (PARTITION BY d.session_id ORDER BY d.turn_number ROWS UNBOUNDED PRECEDING)) w
            WINDOW o AS (PARTITION BY w.session_id ORDER BY w.turn_number)) c) r;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    -- Built after the load (cheaper than maintained row by row); the per-user stages read a
    -- user's rows through them, which the planner does only with statistics.
    CREATE UNIQUE INDEX IF NOT EXISTS _night_turns_key ON _night_turns (session_id, turn_number);
    CREATE INDEX IF NOT EXISTS _night_turns_user ON _night_turns (user_id);
    PERFORM memory._night_analyze('_night_turns');
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_select_sessions(uuid, timestamptz) IS
'Internal, Night Cycle stage 0, once per run: picks the sessions to consolidate, of every user or of p_user_id (idle for night.session_idle, no turn after the cycle''s end, not being written: FOR SHARE SKIP LOCKED, so a session is in this cycle whole or left for the next), and lists their unconsolidated turns with the local perplexity baseline (mean and sample stddev of the previous flux.baseline_window turns) and the previous turn''s perplexity. Returns the number of turns listed.';

CREATE OR REPLACE FUNCTION memory._night_find_arcs()
RETURNS int
LANGUAGE plpgsql
AS $$
DECLARE
    v_n int;
BEGIN
    -- Arcs from the live flux_state, for every listed turn at once: a spike after a baseline
    -- or stable turn opens one; the first stable turn closes it; an arc still open at the
    -- session's last turn is unresolved.
    TRUNCATE _night_found_arcs;
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
        FROM numbered n WHERE n.arc_no > 0)
    INSERT INTO _night_found_arcs (user_id, session_id, start_turn, end_turn, peak_turn, resolved, baseline, sigma,
                                   peak, final, start_time, end_time)
    SELECT i.user_id, i.session_id, min(i.turn_number), max(i.turn_number),
           (array_agg(i.turn_number ORDER BY i.perplexity_score DESC, i.turn_number))[1],
           bool_or(i.flux_state = 'stable'),
           (array_agg(i.local_mean ORDER BY i.turn_number))[1],
           (array_agg(i.local_sd ORDER BY i.turn_number))[1],
           max(i.perplexity_score),
           (array_agg(i.perplexity_score ORDER BY i.turn_number DESC))[1],
           min(i.created_at), max(i.created_at)
    FROM inside i WHERE NOT i.closed_before
    GROUP BY i.user_id, i.session_id, i.arc_no;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    PERFORM memory._night_analyze('_night_found_arcs');
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_find_arcs() IS
'Internal, Night Cycle stage 1, once per run: finds the flux arcs of every listed turn from the flux_state the day_table trigger set live (parameters flux.*). A spike after a baseline or stable turn opens an arc, the first stable turn closes it, and an arc open at the session''s last turn is unresolved. baseline = mean perplexity of the flux.baseline_window turns before the spike, peak = highest perplexity in the arc, final = perplexity of the closing (or last) turn. Returns the number of arcs found.';

CREATE OR REPLACE FUNCTION memory._night_prepare(p_user_id uuid)
RETURNS int
LANGUAGE plpgsql
AS $$
DECLARE
    v_n int;
BEGIN
    SELECT count(*) INTO v_n FROM _night_turns t WHERE t.user_id = p_user_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_prepare(uuid) IS
'Internal, Night Cycle: the number of the user''s turns that memory._night_select_sessions listed.';

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
            SELECT t.session_id, min(t.created_at) AS started, l2_normalize(avg(d.universal_embedding)) AS emb
            FROM _night_turns t JOIN memory.day_table d ON d.session_id = t.session_id AND d.turn_number = t.turn_number
            WHERE t.user_id = p_user_id AND t.turn_number <= v_opening GROUP BY t.session_id)
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
