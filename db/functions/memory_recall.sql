-- memory.recall: the one call an agent makes per turn. Hybrid (full text and vectors, fused
-- by reciprocal rank fusion) over a user's whole history: the raw turns still in day_table
-- and what Holographic Blocks keep of the turns retention has deleted (memory.block_turns).
-- Each leg is a function of its own, so a psql user can run and read it alone.

CREATE OR REPLACE FUNCTION memory._recall_lexemes(p_user_id uuid, p_query_text text)
RETURNS TABLE (lexeme text, turns bigint, idf double precision, candidate boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH q AS (
        SELECT DISTINCT l.lexeme FROM unnest(to_tsvector('english'::regconfig, coalesce(p_query_text, ''))) l),
    n AS (
        SELECT coalesce((SELECT t.turns FROM memory.text_totals t WHERE t.user_id = p_user_id), 0) AS total),
    f AS (
        SELECT q.lexeme, coalesce(s.turns, 0) AS turns, n.total
        FROM q CROSS JOIN n LEFT JOIN memory.text_stats s ON s.user_id = p_user_id AND s.lexeme = q.lexeme),
    ranked AS (
        -- Rarest first: candidates come from the rarest words while together they hold at
        -- most recall.text_candidate_docs turns (always the rarest word), which bounds the
        -- turns the leg fetches and scores.
        SELECT f.*, sum(f.turns) OVER (ORDER BY f.turns, f.lexeme ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS upto,
               row_number() OVER (ORDER BY f.turns, f.lexeme) AS nth
        FROM f)
    SELECT r.lexeme, r.turns,
           ln(1 + (greatest(r.total, r.turns) - r.turns + 0.5) / (r.turns + 0.5)),
           r.nth = 1 OR r.upto <= (ops.setting('recall.text_candidate_docs'))::bigint
    FROM ranked r
$$;
COMMENT ON FUNCTION memory._recall_lexemes(uuid, text) IS
'Internal, text leg of memory.recall: the query''s lexemes (configuration english, stop words dropped) with the number of the user''s turns that hold each (memory.text_stats), its BM25 inverse document frequency ln(1 + (N - n + 0.5) / (n + 0.5)), and whether it selects candidates: the rarest lexemes do while together they occur in at most recall.text_candidate_docs turns (the rarest one always). A common word still adds to the score of a turn found by a rarer one.';
REVOKE ALL ON FUNCTION memory._recall_lexemes(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._recall_lexemes(uuid, text) TO psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory._bm25_term(
    p_idf float8, p_tf int, p_length int, p_avg_length float8, p_k1 float8, p_b float8)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_idf * (p_tf * (p_k1 + 1)) / (p_tf + p_k1 * (1 - p_b + p_b * p_length / p_avg_length));
COMMENT ON FUNCTION memory._bm25_term(float8, int, int, float8, float8, float8) IS
'Internal, one query word''s share of a turn''s BM25 score: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length)), lengths in lexemes. Both text rankings (memory._recall_text_leg, memory.recall_in_blocks) sum it, so they cannot drift apart; a plain SQL expression, inlined where it is called.';
REVOKE ALL ON FUNCTION memory._bm25_term(float8, int, int, float8, float8, float8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._bm25_term(float8, int, int, float8, float8, float8) TO psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory._recall_text_leg(
    p_user_id uuid, p_query_text text, p_n int,
    p_since timestamptz DEFAULT NULL, p_until timestamptz DEFAULT NULL)
RETURNS TABLE (session_id uuid, turn_number int, rank int, bm25 double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_k1 float8 := (ops.setting('recall.bm25_k1'))::float8;
    v_b float8 := (ops.setting('recall.bm25_b'))::float8;
    v_avg float8;
    v_query tsquery;
    v_lexemes text[];
    v_idf float8[];
BEGIN
    SELECT array_agg(l.lexeme ORDER BY l.lexeme), array_agg(l.idf ORDER BY l.lexeme),
           string_agg(quote_ident_tsq, ' | ') FILTER (WHERE l.candidate)::tsquery
    INTO v_lexemes, v_idf, v_query
    FROM memory._recall_lexemes(p_user_id, p_query_text) l
    -- a lexeme as a tsquery operand: quoted, with quotes doubled and backslashes escaped
    CROSS JOIN LATERAL (SELECT '''' || replace(replace(l.lexeme, '\', '\\'), '''', '''''') || '''' AS quote_ident_tsq) x;
    IF v_query IS NULL THEN
        RETURN;  -- no word of the query is searchable: the leg cannot run
    END IF;
    SELECT coalesce(t.lexemes::float8 / nullif(t.turns, 0), 1) INTO v_avg FROM memory.text_totals t WHERE t.user_id = p_user_id;
    RETURN QUERY
    WITH cand AS (
        -- A turn still in day_table is scored on its whole text; a block's copy of it stands
        -- in once retention has deleted it (the first of its blocks, if margins overlap).
        SELECT DISTINCT ON (c.session_id, c.turn_number) c.session_id, c.turn_number, c.tsv
        FROM (
            SELECT d.session_id, d.turn_number, d.content_tsv AS tsv, 0 AS pref
            FROM memory.day_table d
            WHERE d.user_id = p_user_id AND d.content_tsv @@ v_query
              AND (p_since IS NULL OR d.created_at >= p_since) AND (p_until IS NULL OR d.created_at < p_until)
            UNION ALL
            SELECT b.session_id, b.turn_number, b.kept_tsv, 1
            FROM memory.block_turns b
            WHERE b.user_id = p_user_id AND b.kept_tsv @@ v_query
              AND (p_since IS NULL OR b.created_at >= p_since) AND (p_until IS NULL OR b.created_at < p_until)) c
        ORDER BY c.session_id, c.turn_number, c.pref),
    scored AS (
        SELECT c.session_id, c.turn_number,
               sum(memory._bm25_term(v_idf[i], tf, length(c.tsv), v_avg, v_k1, v_b)) AS bm25
        FROM cand c
        CROSS JOIN LATERAL unnest(c.tsv) u
        CROSS JOIN LATERAL (SELECT array_position(v_lexemes, u.lexeme) AS i, coalesce(cardinality(u.positions), 1) AS tf) m
        WHERE m.i IS NOT NULL
        GROUP BY c.session_id, c.turn_number)
    SELECT s.session_id, s.turn_number, (row_number() OVER (ORDER BY s.bm25 DESC, s.session_id, s.turn_number))::int, s.bm25
    FROM scored s
    ORDER BY s.bm25 DESC, s.session_id, s.turn_number
    LIMIT p_n;
END
$$;
COMMENT ON FUNCTION memory._recall_text_leg(uuid, text, int, timestamptz, timestamptz) IS
'Internal, the text leg of memory.recall: the p_n turns of the user (in day_table, or kept by a block once retention deleted them) with the highest BM25 score for the query (k1 = recall.bm25_k1, b = recall.bm25_b, document frequencies from memory.text_stats, length in lexemes), among the turns holding one of the query''s rarest words (memory._recall_lexemes), optionally within [p_since, p_until). Empty when no word of the query is searchable.';
REVOKE ALL ON FUNCTION memory._recall_text_leg(uuid, text, int, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._recall_text_leg(uuid, text, int, timestamptz, timestamptz) TO psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory._recall_vector_leg(
    p_user_id uuid, p_query vector, p_n int,
    p_since timestamptz DEFAULT NULL, p_until timestamptz DEFAULT NULL)
RETURNS TABLE (session_id uuid, turn_number int, rank int, distance double precision)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = relaxed_order
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_kind text := ops.setting('embedding.universal_index') #>> '{}';
    v_dim int := (ops.setting('embedding.universal_dim'))::int;
    v_rows bigint := coalesce((SELECT t.turns FROM memory.text_totals t WHERE t.user_id = p_user_id), 0);
    v_order text;
    v_fetch int := p_n;
BEGIN
    PERFORM set_config('hnsw.ef_search', greatest(p_n, (ops.setting('recall.ef_search'))::int)::text, true);
    -- text_totals counts every turn the user ever had, so it bounds what both tables hold.
    -- Below recall.selective_rows an exact scan is fast and, unlike an HNSW walk filtered
    -- to one user among many, never comes back short; above, the index the install chose.
    IF v_rows < (ops.setting('recall.selective_rows'))::bigint THEN
        v_order := '(%1$s.universal_embedding <=> $1) + 0';  -- "+ 0": an expression no index serves
    ELSIF v_kind = 'vector' THEN
        v_order := '%1$s.universal_embedding <=> $1';
    ELSIF v_kind = 'halfvec' THEN
        v_order := format('%%1$s.universal_embedding::halfvec(%s) <=> $1::halfvec(%s)', v_dim, v_dim);
        v_fetch := p_n * 2;
    ELSE
        v_order := '%1$s.universal_embedding_bq <~> binary_quantize($1)';
        v_fetch := p_n * (ops.setting('recall.binary_overfetch'))::int;
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH cand AS (
            (SELECT d.session_id, d.turn_number, (d.universal_embedding <=> $1)::float8 AS distance, 0 AS pref
             FROM memory.day_table d
             WHERE d.user_id = $2 AND d.universal_embedding IS NOT NULL
               AND ($4::timestamptz IS NULL OR d.created_at >= $4) AND ($5::timestamptz IS NULL OR d.created_at < $5)
             ORDER BY %1$s LIMIT $3)
            UNION ALL
            (SELECT b.session_id, b.turn_number, (b.universal_embedding <=> $1)::float8, 1
             FROM memory.block_turns b
             WHERE b.user_id = $2 AND b.universal_embedding IS NOT NULL
               AND ($4::timestamptz IS NULL OR b.created_at >= $4) AND ($5::timestamptz IS NULL OR b.created_at < $5)
             ORDER BY %2$s LIMIT $3)),
        one AS (
            SELECT DISTINCT ON (c.session_id, c.turn_number) c.session_id, c.turn_number, c.distance
            FROM cand c ORDER BY c.session_id, c.turn_number, c.pref)
        SELECT o.session_id, o.turn_number, (row_number() OVER (ORDER BY o.distance, o.session_id, o.turn_number))::int, o.distance
        FROM one o ORDER BY o.distance, o.session_id, o.turn_number LIMIT $6 $q$,
        format(v_order, 'd'), CASE WHEN v_order LIKE '%_bq%' THEN format('(%s.universal_embedding <=> $1)', 'b')
                                   ELSE format(v_order, 'b') END)
    USING p_query, p_user_id, v_fetch, p_since, p_until, p_n;
END
$$;
COMMENT ON FUNCTION memory._recall_vector_leg(uuid, vector, int, timestamptz, timestamptz) IS
'Internal, the vector leg of memory.recall: the p_n turns of the user (in day_table, or kept by a block) nearest the query by cosine distance of universal embeddings, optionally within [p_since, p_until). A user with fewer than recall.selective_rows turns is ranked exactly; otherwise through the HNSW index form chosen at install, with pgvector iterative scans so the user filter never returns fewer rows than asked.';
REVOKE ALL ON FUNCTION memory._recall_vector_leg(uuid, vector, int, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._recall_vector_leg(uuid, vector, int, timestamptz, timestamptz) TO psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory.recall(
    p_user_id uuid,
    p_query_text text DEFAULT NULL,
    p_query_vector real[] DEFAULT NULL,
    p_session_id uuid DEFAULT NULL,
    p_budget_turns int DEFAULT 10,
    p_since timestamptz DEFAULT NULL,
    p_until timestamptz DEFAULT NULL)
RETURNS TABLE (rank int, item_kind text, session_id uuid, turn_number int, turns int, created_at timestamptz,
               role text, content text, external_ref text, entry_id uuid, block_id uuid, verbatim boolean,
               score double precision, legs text[], reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cfg jsonb;
    v_n int;
    v_k float8;
    v_query vector;
    v_nw float8;
    v_legs_run text[] := '{}';
    v_text_ran boolean;
BEGIN
    SELECT jsonb_object_agg(s.key, s.value) INTO v_cfg FROM ops.settings s
    WHERE s.key LIKE 'recall.%' OR s.key = 'limits.content_max_chars';
    IF p_user_id IS NULL OR NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', quote_nullable(p_user_id) USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.sessions s
                                                WHERE s.session_id = p_session_id AND s.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_session_id: unknown session % for this user', p_session_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_budget_turns IS NULL OR p_budget_turns < 1 OR p_budget_turns > 1000 THEN
        RAISE EXCEPTION 'p_budget_turns: must be between 1 and 1000, got %', coalesce(p_budget_turns::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_since IS NOT NULL AND p_until IS NOT NULL AND p_since >= p_until THEN
        RAISE EXCEPTION 'p_since, p_until: p_since must be before p_until' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_query_text) > (v_cfg ->> 'limits.content_max_chars')::int THEN
        RAISE EXCEPTION 'p_query_text: must be at most % characters (limits.content_max_chars), got %',
            v_cfg ->> 'limits.content_max_chars', length(p_query_text) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(p_query_text, '') !~ '\S' AND p_query_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_text, p_query_vector: give a query text, a query vector or both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_query := memory._checked_vector(p_query_vector, 'p_query_vector', 'universal');
    v_n := greatest((v_cfg ->> 'recall.leg_candidates')::int, p_budget_turns);
    v_k := (v_cfg ->> 'recall.rrf_k')::float8;
    v_nw := (v_cfg ->> 'recall.neighbour_weight')::float8;

    v_text_ran := coalesce(p_query_text, '') ~ '\S' AND EXISTS (SELECT 1 FROM memory._recall_lexemes(p_user_id, p_query_text));
    v_legs_run := ARRAY[
        CASE WHEN v_text_ran THEN 'text' WHEN coalesce(p_query_text, '') ~ '\S' THEN 'text (not run: only stop words)'
             ELSE 'text (not run: no query text)' END,
        CASE WHEN v_query IS NOT NULL THEN 'vector' ELSE 'vector (not run: no query vector)' END]
        || CASE WHEN v_query IS NOT NULL AND (v_cfg ->> 'recall.weight_recent')::float8 > 0 THEN ARRAY['recent'] ELSE '{}' END;

    RETURN QUERY
    WITH hits AS (
        SELECT t.session_id, t.turn_number, 'text' AS leg, t.rank, t.bm25 AS measure,
               (v_cfg ->> 'recall.weight_text')::float8 / (v_k + t.rank) AS score
        FROM memory._recall_text_leg(p_user_id, p_query_text, v_n, p_since, p_until) t
        WHERE v_text_ran
        UNION ALL
        SELECT t.session_id, t.turn_number, 'vector', t.rank, t.distance, (v_cfg ->> 'recall.weight_vector')::float8 / (v_k + t.rank)
        FROM memory._recall_vector_leg(p_user_id, v_query, v_n, p_since, p_until) t
        WHERE v_query IS NOT NULL
        UNION ALL
        -- The spec's real-time retrieval: the session and the user's last recall.window.
        SELECT r.session_id, r.turn_number, 'recent', r.rank::int, r.distance,
               (v_cfg ->> 'recall.weight_recent')::float8 / (v_k + r.rank)
        FROM (SELECT x.*, row_number() OVER (ORDER BY x.distance, x.entry_id) AS rank
              FROM memory.recall_recent(p_query_vector, p_session_id, p_user_id, v_n) x
              WHERE (p_since IS NULL OR x.created_at >= p_since) AND (p_until IS NULL OR x.created_at < p_until)) r
        WHERE 'recent' = ANY (v_legs_run)),
    fused AS (
        SELECT h.session_id, h.turn_number, sum(h.score) AS score,
               array_agg(h.leg ORDER BY h.leg) AS legs,
               string_agg(h.leg || ' #' || h.rank || CASE h.leg WHEN 'text' THEN ' (bm25 ' || round(h.measure::numeric, 2)
                                                                ELSE ' (cosine ' || round((1 - h.measure)::numeric, 3) END || ')',
                          ', ' ORDER BY h.leg) AS why
        FROM hits h GROUP BY h.session_id, h.turn_number),
    neighbours AS (
        -- Structural expansion: the turns either side of a hit compete with a share of its score.
        SELECT f.session_id, f.turn_number + o.d AS turn_number, max(v_nw * f.score) AS score,
               ARRAY['neighbour'] AS legs, 'next to turn ' || min(f.turn_number) AS why
        FROM fused f CROSS JOIN (VALUES (-1), (1)) o(d)
        WHERE v_nw > 0 AND f.turn_number + o.d > 0
          AND NOT EXISTS (SELECT 1 FROM fused x WHERE x.session_id = f.session_id AND x.turn_number = f.turn_number + o.d)
        GROUP BY f.session_id, f.turn_number + o.d),
    ranked AS (
        SELECT a.* FROM (SELECT * FROM fused UNION ALL SELECT * FROM neighbours) a
        ORDER BY a.score DESC, a.session_id, a.turn_number
        LIMIT p_budget_turns * 2),  -- room for neighbours that turn out not to exist
    resolved AS (
        SELECT r.*, t.*
        FROM ranked r
        CROSS JOIN LATERAL (
            SELECT 'turn'::text AS kind, d.created_at AS at, d.role AS who, d.content AS text, d.external_ref AS ref,
                   d.entry_id AS eid, NULL::uuid AS bid, true AS whole
            FROM memory.day_table d WHERE d.session_id = r.session_id AND d.turn_number = r.turn_number
            UNION ALL
            (SELECT 'kept_turn', b.created_at, b.role, b.kept, b.external_ref, NULL, b.block_id, b.verbatim
             FROM memory.block_turns b WHERE b.session_id = r.session_id AND b.turn_number = r.turn_number
             ORDER BY b.verbatim DESC, b.block_id)
            LIMIT 1) t)
    SELECT (row_number() OVER (ORDER BY x.score DESC, x.session_id, x.turn_number))::int, x.kind, x.session_id,
           x.turn_number, 1, x.at, x.who, x.text, x.ref, x.eid, x.bid, x.whole, x.score, x.legs,
           x.why || CASE WHEN x.kind = 'kept_turn' AND NOT x.whole THEN '; as its block''s summary kept it' ELSE '' END
                 || '; legs: ' || c.summary
    FROM resolved x
    CROSS JOIN (  -- what each leg did, on every row: a leg that found nothing or could not run says so
        SELECT string_agg(CASE WHEN l.leg LIKE '%(not run%' THEN l.leg
                               ELSE l.leg || ' ' || coalesce(n.hits, 0) || ' hits' END, ', ' ORDER BY l.ord) AS summary
        FROM unnest(v_legs_run) WITH ORDINALITY l(leg, ord)
        LEFT JOIN (SELECT h.leg, count(*) AS hits FROM hits h GROUP BY h.leg) n ON n.leg = l.leg) c
    ORDER BY x.score DESC, x.session_id, x.turn_number
    LIMIT p_budget_turns;
END
$$;
COMMENT ON FUNCTION memory.recall(uuid, text, real[], uuid, int, timestamptz, timestamptz) IS
'Recall for one user over their whole history, as one ranked list of turns within a budget of p_budget_turns turns: the raw turns still in day_table and, for turns retention has deleted, what their Holographic Block kept (memory.block_turns: verbatim, or the sentences its summary kept). Hybrid: a text leg (BM25 over the query''s words, memory._recall_text_leg) and a vector leg (cosine over universal embeddings, memory._recall_vector_leg), each ranking recall.leg_candidates turns, plus, when recall.weight_recent > 0, the recent leg (memory.recall_recent: the session and the user''s last recall.window); fused by reciprocal rank fusion, weight / (recall.rrf_k + rank) per leg. With recall.neighbour_weight > 0 the turns either side of a hit compete with that share of its score. p_since / p_until restrict the turns'' times. Each row says which legs found it, at which rank and why, and which legs ran (a leg that could not run says so). Refuses an unknown user or session, a bad vector, an empty query, a budget outside 1..1000.';
REVOKE ALL ON FUNCTION memory.recall(uuid, text, real[], uuid, int, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.recall(uuid, text, real[], uuid, int, timestamptz, timestamptz) TO psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory.recall_in_blocks(
    p_user_id uuid,
    p_block_ids uuid[],
    p_query_text text DEFAULT NULL,
    p_query_vector real[] DEFAULT NULL,
    p_per_block int DEFAULT 1)
RETURNS TABLE (block_id uuid, rank int, session_id uuid, turn_number int, created_at timestamptz, role text,
               content text, external_ref text, verbatim boolean, distance double precision, bm25 double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_query vector := memory._checked_vector(p_query_vector, 'p_query_vector', 'universal');
    v_k float8 := (ops.setting('recall.rrf_k'))::float8;
    v_k1 float8 := (ops.setting('recall.bm25_k1'))::float8;
    v_b float8 := (ops.setting('recall.bm25_b'))::float8;
    v_avg float8 := coalesce((SELECT t.lexemes::float8 / nullif(t.turns, 0) FROM memory.text_totals t
                              WHERE t.user_id = p_user_id), 1);
BEGIN
    IF p_per_block IS NULL OR p_per_block < 1 OR p_per_block > 1000 THEN
        RAISE EXCEPTION 'p_per_block: must be between 1 and 1000, got %', coalesce(p_per_block::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH lex AS (SELECT l.lexeme, l.idf FROM memory._recall_lexemes(p_user_id, p_query_text) l),
    t AS (
        SELECT b.block_id, b.session_id, b.turn_number, b.created_at, b.role, b.kept, b.external_ref, b.verbatim,
               (b.universal_embedding <=> v_query)::float8 AS distance,
               (SELECT sum(memory._bm25_term(l.idf, coalesce(cardinality(u.positions), 1), length(b.kept_tsv), v_avg,
                                             v_k1, v_b))
                FROM unnest(b.kept_tsv) u JOIN lex l ON l.lexeme = u.lexeme) AS bm25
        FROM memory.block_turns b
        WHERE b.user_id = p_user_id AND b.block_id = ANY (p_block_ids)),
    legs AS (
        SELECT t.*, rank() OVER (PARTITION BY t.block_id ORDER BY t.distance NULLS LAST) AS vrank,
               CASE WHEN t.bm25 > 0 THEN rank() OVER (PARTITION BY t.block_id ORDER BY t.bm25 DESC NULLS LAST) END AS trank
        FROM t),
    ranked AS (
        SELECT l.*, row_number() OVER (PARTITION BY l.block_id ORDER BY
                   CASE WHEN l.distance IS NOT NULL THEN 1 / (v_k + l.vrank) ELSE 0 END
                   + coalesce(1 / (v_k + l.trank), 0) DESC, l.turn_number) AS r
        FROM legs l)
    SELECT r.block_id, r.r::int, r.session_id, r.turn_number, r.created_at, r.role, r.kept, r.external_ref, r.verbatim,
           r.distance, r.bm25
    FROM ranked r WHERE r.r <= p_per_block
    ORDER BY r.block_id, r.r;
END
$$;
COMMENT ON FUNCTION memory.recall_in_blocks(uuid, uuid[], text, real[], int) IS
'The best p_per_block turns inside each of the user''s blocks named in p_block_ids, as the blocks keep them (memory.block_turns), ranked within the block by reciprocal rank fusion (recall.rrf_k) of cosine distance to p_query_vector and BM25 for p_query_text (either may be null). The retrieval chain uses it to turn a Cortex block into the turns that answer the query, so a block costs one turn of a caller''s budget, not all of its turns. Blocks of another user, or unknown, give no rows.';
REVOKE ALL ON FUNCTION memory.recall_in_blocks(uuid, uuid[], text, real[], int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.recall_in_blocks(uuid, uuid[], text, real[], int) TO psimem_reader, psimem_admin;
