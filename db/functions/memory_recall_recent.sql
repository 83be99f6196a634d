-- Real-time retrieval (spec 004 section 2.4): the nearest turns of the current session
-- or of the same user's recent sessions.

CREATE OR REPLACE FUNCTION memory._recall_filter_below(
    p_session_id uuid,
    p_user_id uuid,
    p_window interval,
    p_rows int)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_sessions int;
    v_turns bigint;
BEGIN
    -- A session holds at most turn_count rows (turn numbers are positive and unique), so the
    -- turn counts of the current session and of the user's sessions active within the window
    -- bound the filter's rows: a few index entries, not one per turn.
    SELECT count(*), coalesce(sum(x.turn_count), 0) INTO v_sessions, v_turns FROM (
        SELECT s.turn_count FROM memory.sessions s
        WHERE s.user_id = p_user_id AND s.last_turn_at > now() - p_window
        ORDER BY s.last_turn_at DESC
        LIMIT 256) x;
    v_turns := v_turns + coalesce((SELECT s.turn_count FROM memory.sessions s WHERE s.session_id = p_session_id), 0);
    IF v_turns >= p_rows THEN
        RETURN false;
    ELSIF v_sessions < 256 THEN
        RETURN true;
    END IF;
    -- Hundreds of short recent sessions: count the rows themselves.
    RETURN (SELECT count(*) FROM (
                SELECT 1 FROM memory.day_table d
                WHERE d.session_id = p_session_id OR (d.user_id = p_user_id AND d.created_at > now() - p_window)
                LIMIT p_rows) x) < p_rows;
END
$$;
COMMENT ON FUNCTION memory._recall_filter_below(uuid, uuid, interval, int) IS
'Internal. Whether recall''s filter (the session, or the user''s turns within p_window) keeps fewer than p_rows rows, judged from session turn counts where they decide it.';
REVOKE ALL ON FUNCTION memory._recall_filter_below(uuid, uuid, interval, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._recall_filter_below(uuid, uuid, interval, int) TO psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory._recall_recent(
    p_space text,
    p_query_vector real[],
    p_session_id uuid,
    p_user_id uuid,
    p_k int)
RETURNS TABLE (entry_id uuid, session_id uuid, user_id uuid, role text, content text,
               created_at timestamptz, turn_number int, distance double precision, reason text)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = relaxed_order
SET hnsw.ef_search = 40
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_col text := p_space || '_embedding';
    v_kind text := ops.setting('embedding.' || p_space || '_index') #>> '{}';
    v_dim int := (ops.setting('embedding.' || p_space || '_dim'))::int;
    v_window interval := (ops.setting('recall.window') #>> '{}')::interval;
    v_query vector;
    v_order text;
    v_fetch int := p_k;
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > 1000 THEN
        RAISE EXCEPTION 'p_k: must be between 1 and 1000, got %', coalesce(p_k::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_session_id IS NULL AND p_user_id IS NULL THEN
        RAISE EXCEPTION 'p_session_id, p_user_id: give at least one' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.sessions s WHERE s.session_id = p_session_id) THEN
        RAISE EXCEPTION 'p_session_id: unknown session %', p_session_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_query_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_vector: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_query := memory._checked_vector(p_query_vector, 'p_query_vector', p_space);
    PERFORM set_config('hnsw.ef_search', ops.setting('recall.ef_search')::text, true);

    IF memory._recall_filter_below(p_session_id, p_user_id, v_window, (ops.setting('recall.selective_rows'))::int) THEN
        -- Few rows: rank them all by the binary code stored in the row (the vectors are
        -- TOASTed, the codes are not), then the best exactly. An HNSW walk would visit far
        -- more of the graph than the filter keeps to find them, and miss some. Only
        -- binary-quantized spaces have an index on the code; the planner takes the bitmap
        -- path there when it is cheaper.
        v_order := format('d.%I <~> binary_quantize($1)', v_col || '_bq');
        v_fetch := p_k * (ops.setting('recall.binary_overfetch_selective'))::int;
    -- Otherwise the ORDER BY expression must match the index expression chosen at install time.
    ELSIF v_kind = 'vector' THEN
        v_order := format('d.%I <=> $1', v_col);
    ELSIF v_kind = 'halfvec' THEN
        v_order := format('d.%I::halfvec(%s) <=> $1::halfvec(%s)', v_col, v_dim, v_dim);
        v_fetch := p_k * 2;
    ELSE
        v_order := format('d.%I <~> binary_quantize($1)', v_col || '_bq');
        v_fetch := p_k * (ops.setting('recall.binary_overfetch'))::int;
    END IF;

    -- Candidates from the index (iterative scans keep going until the filter yields
    -- enough rows) or from the codes, then exact cosine distance decides the order. The
    -- candidates carry their vectors' TOAST pointers, so only the k best are looked up again.
    RETURN QUERY EXECUTE format($q$
        WITH candidates AS MATERIALIZED (
            SELECT d.entry_id, d.%1$I AS v
            FROM memory.day_table d
            WHERE d.session_id = $2 OR (d.user_id = $3 AND d.created_at > now() - $5)
            ORDER BY %2$s
            LIMIT $4),
        best AS MATERIALIZED (
            SELECT c.entry_id, (c.v <=> $1)::double precision AS distance
            FROM candidates c
            WHERE c.v IS NOT NULL
            ORDER BY distance, c.entry_id
            LIMIT $6)
        SELECT d.entry_id, d.session_id, d.user_id, d.role, d.content, d.created_at, d.turn_number, b.distance,
               CASE WHEN d.session_id = $2 THEN 'current session'
                    ELSE 'same user, within ' || $5::text END AS reason
        FROM best b JOIN memory.day_table d ON d.entry_id = b.entry_id
        ORDER BY b.distance, d.entry_id $q$, v_col, v_order)
    USING v_query, p_session_id, p_user_id, v_fetch, v_window, p_k;
END
$$;
COMMENT ON FUNCTION memory._recall_recent(text, real[], uuid, uuid, int) IS
'Internal. Nearest turns in one embedding space (universal or native) among the current session and the user''s turns within recall.window. A filter keeping fewer than recall.selective_rows rows is ranked on the binary codes stored in its rows, and the best recall.binary_overfetch_selective per wanted row are re-ranked exactly; otherwise the HNSW index form chosen at install (vector, halfvec, or the stored binary code with recall.binary_overfetch candidates per wanted row) with pgvector iterative scans, then exact cosine re-rank.';
REVOKE ALL ON FUNCTION memory._recall_recent(text, real[], uuid, uuid, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._recall_recent(text, real[], uuid, uuid, int) TO psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory.recall_recent(
    p_query_vector real[],
    p_session_id uuid DEFAULT NULL,
    p_user_id uuid DEFAULT NULL,
    p_k int DEFAULT 10)
RETURNS TABLE (entry_id uuid, session_id uuid, user_id uuid, role text, content text,
               created_at timestamptz, turn_number int, distance double precision, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT * FROM memory._recall_recent('universal', p_query_vector, p_session_id, p_user_id, p_k)
$$;
COMMENT ON FUNCTION memory.recall_recent(real[], uuid, uuid, int) IS
'Spec 004 section 2.4 real-time retrieval on universal embeddings: the p_k turns nearest to p_query_vector (cosine distance) from the current session OR the user''s turns within recall.window (7 days by default). Returns p_k rows whenever that many match, however selective the filter (pgvector 0.8 iterative index scans). Each row says why it came back: current session, or same user within the window.';
REVOKE ALL ON FUNCTION memory.recall_recent(real[], uuid, uuid, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.recall_recent(real[], uuid, uuid, int) TO psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory.recall_recent_native(
    p_query_vector real[],
    p_session_id uuid DEFAULT NULL,
    p_user_id uuid DEFAULT NULL,
    p_k int DEFAULT 10)
RETURNS TABLE (entry_id uuid, session_id uuid, user_id uuid, role text, content text,
               created_at timestamptz, turn_number int, distance double precision, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT * FROM memory._recall_recent('native', p_query_vector, p_session_id, p_user_id, p_k)
$$;
COMMENT ON FUNCTION memory.recall_recent_native(real[], uuid, uuid, int) IS
'recall_recent on native embeddings. Native vectors over 2,000 dimensions are indexed by binary quantization (bit Hamming HNSW); the function over-fetches recall.binary_overfetch candidates per wanted row and re-ranks them by exact cosine distance.';
REVOKE ALL ON FUNCTION memory.recall_recent_native(real[], uuid, uuid, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.recall_recent_native(real[], uuid, uuid, int) TO psimem_reader, psimem_admin;
