-- Checks every new turn where it enters, completes it from its session, and sets its
-- flux_state live: the per-turn half of flux detection (spec 004 section 3.2).

CREATE OR REPLACE FUNCTION memory._day_table_before_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_session memory.sessions%ROWTYPE;
    v_cfg jsonb;
    v_recent real[];
    v_n int;
    v_mean double precision;
    v_sd double precision;
    v_prev double precision;
    v_p double precision := NEW.perplexity_score;
    v_window int;
    v_same boolean;
BEGIN
    -- One row kept by a trigger on ops.settings: a tenth of the cost of aggregating the
    -- settings for every turn (and, unlike a session variable, not the writer's to set).
    SELECT r.rules INTO v_cfg FROM ops.turn_rules r;
    IF v_cfg IS NULL THEN  -- fail closed: without the limits no check below would refuse anything
        RAISE EXCEPTION 'ops.turn_rules is empty: run psimem db migrate' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    IF NEW.role IS NULL OR NEW.role NOT IN ('user', 'assistant', 'system') THEN
        RAISE EXCEPTION 'role: must be one of user, assistant, system (got %)', quote_nullable(NEW.role)
            USING ERRCODE = 'check_violation', COLUMN = 'role';
    END IF;
    IF NEW.content IS NULL OR NEW.content !~ '\S' THEN
        RAISE EXCEPTION 'content: must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'content';
    END IF;
    IF length(NEW.content) > (v_cfg->>'limits.content_max_chars')::int THEN
        RAISE EXCEPTION 'content: must be at most % characters (limits.content_max_chars), got %',
            v_cfg->>'limits.content_max_chars', length(NEW.content)
            USING ERRCODE = 'check_violation', COLUMN = 'content';
    END IF;
    IF v_p IS NOT NULL AND (v_p < 0 OR v_p = 'NaN' OR v_p > (v_cfg->>'limits.perplexity_max')::float8) THEN
        RAISE EXCEPTION 'perplexity_score: must be a finite number between 0 and % (limits.perplexity_max), got %',
            v_cfg->>'limits.perplexity_max', v_p
            USING ERRCODE = 'check_violation', COLUMN = 'perplexity_score';
    END IF;
    IF NEW.token_count < 0 OR NEW.token_count > (v_cfg->>'limits.content_max_chars')::int THEN
        RAISE EXCEPTION 'token_count: must be between 0 and % (limits.content_max_chars), got %',
            v_cfg->>'limits.content_max_chars', NEW.token_count
            USING ERRCODE = 'check_violation', COLUMN = 'token_count';
    END IF;
    IF NEW.turn_number < 1 OR NEW.turn_number > (v_cfg->>'limits.turn_number_max')::int THEN
        RAISE EXCEPTION 'turn_number: must be between 1 and % (limits.turn_number_max), got %',
            v_cfg->>'limits.turn_number_max', NEW.turn_number
            USING ERRCODE = 'check_violation', COLUMN = 'turn_number';
    END IF;
    IF NEW.created_at IS NOT NULL AND (NOT isfinite(NEW.created_at) OR NEW.created_at < '1970-01-01 00:00:00+00'
                                      OR NEW.created_at > now() + (v_cfg->>'limits.future_skew')::interval) THEN
        RAISE EXCEPTION 'created_at: must lie between 1970-01-01 and now() + % (limits.future_skew), got %',
            v_cfg->>'limits.future_skew', NEW.created_at
            USING ERRCODE = 'check_violation', COLUMN = 'created_at';
    END IF;
    IF NEW.external_ref IS NOT NULL AND (NEW.external_ref !~ '\S' OR length(NEW.external_ref) > 200) THEN
        RAISE EXCEPTION 'external_ref: must be null or 1 to 200 characters, not blank'
            USING ERRCODE = 'check_violation', COLUMN = 'external_ref';
    END IF;
    -- A zero vector has no direction (every cosine distance to it is NaN). COPY skips
    -- memory._checked_vector, so the check is here too.
    IF vector_norm(NEW.universal_embedding) = 0 OR vector_norm(NEW.native_embedding) = 0 THEN
        RAISE EXCEPTION '%: must not be all zeros', CASE WHEN vector_norm(NEW.universal_embedding) = 0
                                                         THEN 'universal_embedding' ELSE 'native_embedding' END
            USING ERRCODE = 'check_violation';
    END IF;

    -- The row lock orders concurrent writers of one session (turn numbers, flux state).
    SELECT * INTO v_session FROM memory.sessions s WHERE s.session_id = NEW.session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session_id: unknown session %', quote_nullable(NEW.session_id)
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'session_id';
    END IF;
    IF NEW.user_id IS NOT NULL AND NEW.user_id <> v_session.user_id THEN
        RAISE EXCEPTION 'user_id: session % acts for user %, not %', NEW.session_id, v_session.user_id, NEW.user_id
            USING ERRCODE = 'check_violation', COLUMN = 'user_id';
    END IF;
    -- The agent's own id for a turn makes a retried write a no-op: skip the row (after the
    -- session lock, so a concurrent retry sees the first one's commit).
    IF NEW.external_ref IS NOT NULL THEN
        SELECT d.role = NEW.role AND d.content = NEW.content INTO v_same
        FROM memory.day_table d WHERE d.session_id = NEW.session_id AND d.external_ref = NEW.external_ref;
        IF v_same THEN
            RETURN NULL;
        ELSIF NOT v_same THEN
            RAISE EXCEPTION 'external_ref: % is already a turn of session % with another role or content', quote_literal(NEW.external_ref), NEW.session_id
                USING ERRCODE = 'unique_violation', COLUMN = 'external_ref';
        END IF;
    END IF;
    NEW.user_id := v_session.user_id;
    SELECT u.tier INTO NEW.user_tier FROM memory.users u WHERE u.user_id = v_session.user_id;
    IF NEW.turn_number IS NULL AND v_session.turn_count >= (v_cfg->>'limits.turn_number_max')::int THEN
        RAISE EXCEPTION 'turn_number: session % holds % turns, the most limits.turn_number_max allows', NEW.session_id, v_session.turn_count
            USING ERRCODE = 'check_violation', COLUMN = 'turn_number';
    END IF;
    NEW.turn_number := coalesce(NEW.turn_number, v_session.turn_count + 1);
    NEW.created_at := coalesce(NEW.created_at, now());
    NEW.flux_state := NULL;
    NEW.flux_baseline_mean := NULL;
    NEW.flux_baseline_sd := NULL;
    NEW.flux_arc_start := NULL;

    IF v_p IS NOT NULL THEN
        v_recent := v_session.flux_recent;
        v_n := coalesce(cardinality(v_recent), 0);
        SELECT avg(x), coalesce(stddev_samp(x), 0) INTO v_mean, v_sd FROM unnest(v_recent) AS x;
        v_prev := v_recent[v_n];
        NEW.flux_baseline_mean := v_mean;
        NEW.flux_baseline_sd := v_sd;
        IF NOT v_session.flux_window_open THEN
            IF v_n >= (v_cfg->>'flux.min_baseline_turns')::int
               AND v_p > v_mean + (v_cfg->>'flux.spike_sigma')::float8 * v_sd THEN
                NEW.flux_state := 'spike';
                v_session.flux_window_open := true;
                v_session.flux_baseline := v_mean;
                v_session.flux_peak := v_p;
                v_session.flux_stable_count := 0;
                v_session.flux_arc_start := NEW.turn_number;
                NEW.flux_arc_start := NEW.turn_number;
            ELSE
                NEW.flux_state := 'baseline';
            END IF;
        ELSE
            IF abs(v_p - v_prev) < (v_cfg->>'flux.stable_derivative')::float8 * v_session.flux_baseline THEN
                v_session.flux_stable_count := v_session.flux_stable_count + 1;
            ELSE
                v_session.flux_stable_count := 0;
            END IF;
            v_session.flux_peak := greatest(v_session.flux_peak, v_p);
            NEW.flux_arc_start := v_session.flux_arc_start;
            IF v_session.flux_stable_count >= (v_cfg->>'flux.stabilization_count')::int THEN
                NEW.flux_state := 'stable';
                v_session.flux_window_open := false;
                v_session.flux_stable_count := 0;
            ELSIF v_p > v_prev THEN
                NEW.flux_state := 'spike';
            ELSE
                NEW.flux_state := 'resolution';
            END IF;
        END IF;
        v_window := (v_cfg->>'flux.baseline_window')::int;
        v_recent := v_recent || v_p::real;
        v_session.flux_recent := v_recent[greatest(1, cardinality(v_recent) - v_window + 1):];
    END IF;

    UPDATE memory.sessions s SET
        turn_count = greatest(s.turn_count, NEW.turn_number),
        -- Never later than now: a turn dated in the future must not keep its session from
        -- ever looking idle to the Night Cycle.
        last_turn_at = greatest(s.last_turn_at, least(NEW.created_at, now())),
        flux_recent = v_session.flux_recent,
        flux_window_open = v_session.flux_window_open,
        flux_stable_count = v_session.flux_stable_count,
        flux_baseline = v_session.flux_baseline,
        flux_peak = v_session.flux_peak,
        flux_arc_start = v_session.flux_arc_start
    WHERE s.session_id = NEW.session_id;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION memory._day_table_before_insert() IS
'Trigger on memory.day_table, before each insert (record_turn and bulk COPY alike). Refuses bad rows with errors naming the column and rule (role; content empty or over limits.content_max_chars; perplexity negative, not finite or over limits.perplexity_max; token_count; turn_number over limits.turn_number_max; created_at before 1970 or beyond now() + limits.future_skew; all-zero vectors; unknown session; user mismatch). A row whose external_ref is already a turn of its session with the same role and content is skipped (a retried write); with other content it is refused. Fills user_id and user_tier from the session, numbers the turn when none is given, and sets flux_state from the session''s rolling perplexity: with the window closed, a turn above mean + flux.spike_sigma x stddev of the previous flux.baseline_window turns (at least flux.min_baseline_turns of them) is a spike and opens the window; with it open, a turn whose |change| from the previous turn is below flux.stable_derivative x the baseline mean counts as stable, flux.stabilization_count consecutive stable turns close the window (state stable), and other turns are spike (rising) or resolution (falling). Each scored turn keeps its baseline (flux_baseline_mean, flux_baseline_sd) and, from the spike opening a window to the stable turn closing it, that spike''s turn number (flux_arc_start): the Night Cycle''s arcs are groups of it. Turns without perplexity get no flux_state. The session''s last_turn_at becomes the turn''s created_at, or now() when that lies in the future. The flux.* and limits.* settings are read from ops.turn_rules.';
REVOKE ALL ON FUNCTION memory._day_table_before_insert() FROM PUBLIC;

CREATE OR REPLACE TRIGGER day_table_before_insert
    BEFORE INSERT ON memory.day_table
    FOR EACH ROW EXECUTE FUNCTION memory._day_table_before_insert();
