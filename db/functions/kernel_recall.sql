-- kernel.recall (spec 001 sections 1, 4 and 5): full-text top N and, given a vector, vector
-- top N; fused by reciprocal rank fusion with a usage-aware recency leg, weights from the
-- user's recall_weights; then MMR so near-duplicates do not crowd the top k; usage bumped for
-- what it returns, in the same transaction. Every row says its score parts and why; a leg
-- that could not run, or found nothing, is said in every row (and in the one row an empty
-- recall returns), never dropped silently.

CREATE OR REPLACE FUNCTION kernel.refresh_text_stats(p_user_id uuid)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_common int := (ops.setting('kernel.text_common_cards'))::int;
    v_cards int := (SELECT count(*) FROM kernel.card c WHERE c.user_id = v_user AND c.rolled_into IS NULL);
    v_rows int := 0;
BEGIN
    DELETE FROM kernel.text_stats s WHERE s.user_id = v_user;
    IF v_cards > v_common THEN  -- with fewer cards no word can be common
        INSERT INTO kernel.text_stats (user_id, lexeme, ndoc, cards)
        SELECT v_user, w.word, w.ndoc, v_cards
        FROM ts_stat(format('SELECT c.tsv FROM kernel.card c WHERE c.user_id = %L AND c.rolled_into IS NULL', v_user)) w
        WHERE w.ndoc > v_common;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
    END IF;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION kernel.refresh_text_stats(uuid) IS
'Counts the words (lexemes) more than kernel.text_common_cards of a user''s live cards contain into kernel.text_stats (replacing the previous count). The maintenance job runs it daily. Returns the number of common words.';
REVOKE ALL ON FUNCTION kernel.refresh_text_stats(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.refresh_text_stats(uuid) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.recall(
    p_user_id uuid, p_query_text text, p_query_vector real[] DEFAULT NULL, p_k int DEFAULT NULL,
    p_model text DEFAULT NULL, p_now timestamptz DEFAULT NULL)
RETURNS TABLE (rank int, card_id uuid, summary text, tags text[], source text, kind text, score double precision,
               rrf_score double precision, text_rank int, text_score double precision, vector_rank int,
               vector_similarity double precision, recency_rank int, recency_score double precision,
               mmr_similarity double precision, used_count int, last_used_at timestamptz, updated_at timestamptz,
               why text, legs jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_now timestamptz := kernel._clock(p_now);
    v_vector vector := kernel._checked_vector(p_query_vector, 'p_query_vector');
    v_has_text boolean := coalesce(kernel._checked_text(p_query_text, 'p_query_text', false) ~ '\S', false);
    v_config jsonb := kernel._config(v_user);
    v_k int := coalesce(p_k, (v_config ->> 'recall_top_k')::int);
    v_n int := greatest((ops.setting('kernel.recall_candidates'))::int, v_k);
    v_w_text float8 := (v_config #>> '{recall_weights,text}')::float8;
    v_w_vector float8 := (v_config #>> '{recall_weights,vector}')::float8;
    v_w_recency float8 := (v_config #>> '{recall_weights,recency}')::float8;
    v_rrf_k float8 := (ops.setting('kernel.rrf_k'))::float8;
    v_lambda float8 := (ops.setting('kernel.mmr_lambda'))::float8;
    v_half_life interval := (ops.setting('kernel.recency_half_life') #>> '{}')::interval;
    v_ts regconfig := (ops.setting('kernel.text_search_config') #>> '{}')::regconfig;
    v_all tsquery;
    v_any tsquery;
    v_match tsquery;
    v_rare text;
    v_common text[];
    v_dim int;
    v_text jsonb;
    v_vec jsonb;
    v_usage jsonb;
    v_legs jsonb;
    v_note text;
    v_t_ids uuid[] := '{}';
    v_t_scores float8[] := '{}';
    v_t_ranks int[] := '{}';
    v_t_all boolean[] := '{}';
    v_v_ids uuid[] := '{}';
    v_v_sims float8[] := '{}';
    v_v_ranks int[] := '{}';
    v_v_models text[] := '{}';
    v_method text;
    v_seen int;
    v_ids uuid[];
    v_rrf float8[];
    v_rec float8[];
    v_rec_ranks int[];
    v_emb vector[];
    v_tsv tsvector[];
    v_pool int;
    v_place int[];
    v_maxsim float8[];
    v_taken boolean[];
    v_mmr float8[];
    v_penalty float8[];
    v_order int[] := '{}';
    v_best int;
    v_best_score float8;
    v_s float8;
BEGIN
    IF v_k IS NULL OR v_k NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'p_k: must be between 1 and 100, got %', coalesce(v_k::text, 'null') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT v_has_text AND v_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_text, p_query_vector: give at least one' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_model IS NOT NULL AND v_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_vector: required when p_model is given' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The full-text leg.
    IF NOT v_has_text THEN
        v_text := jsonb_build_object('ran', false, 'reason', 'no query text given');
    ELSE
        v_all := websearch_to_tsquery(v_ts, p_query_text);
        IF numnode(v_all) = 0 THEN
            v_text := jsonb_build_object('ran', false, 'reason', 'the query text has no searchable words (only stop words or punctuation)');
        ELSE
            -- Plain words: a card with any of them is a candidate, one with all of them ranks first;
            -- but a word common among this user's cards (kernel.text_stats) alone does not make a
            -- candidate: it would make thousands, each to be scored. It still counts in the score.
            -- Quotes, "or" and -word are websearch_to_tsquery's syntax and match as written.
            IF p_query_text ~* '"|(^|\s)-\S|(^|\s)or(\s|$)' THEN
                v_any := v_all;
                v_match := v_all;
            ELSE
                v_any := replace(v_all::text, ' & ', ' | ')::tsquery;
                SELECT string_agg(t.term, ' | ') FILTER (WHERE s.lexeme IS NULL), array_agg(s.lexeme) FILTER (WHERE s.lexeme IS NOT NULL)
                INTO v_rare, v_common
                FROM unnest(string_to_array(v_all::text, ' & ')) AS t(term)
                LEFT JOIN kernel.text_stats s ON s.user_id = v_user AND t.term = quote_literal(s.lexeme);
                v_match := CASE WHEN v_rare IS NULL THEN v_all ELSE v_rare::tsquery || v_all END;
            END IF;
            SELECT coalesce(array_agg(x.id ORDER BY x.r, x.id), '{}'), coalesce(array_agg(x.s ORDER BY x.r, x.id), '{}'),
                   coalesce(array_agg(x.r ORDER BY x.r, x.id), '{}'), coalesce(array_agg(x.all_words ORDER BY x.r, x.id), '{}')
            INTO v_t_ids, v_t_scores, v_t_ranks, v_t_all
            FROM (SELECT y.id, y.s, y.all_words, (rank() OVER (ORDER BY y.s DESC))::int AS r
                  FROM (SELECT c.id, (ts_rank(c.tsv, v_any) + (c.tsv @@ v_all)::int)::float8 AS s, c.tsv @@ v_all AS all_words
                        FROM kernel.card c
                        WHERE c.user_id = v_user AND c.rolled_into IS NULL AND c.tsv @@ v_match
                        ORDER BY 2 DESC, c.id LIMIT v_n) y) x;
            v_text := jsonb_build_object('ran', true, 'matched', cardinality(v_t_ids), 'config', v_ts::text, 'query', v_any::text)
                   || CASE WHEN v_common IS NOT NULL THEN jsonb_build_object('common_words', to_jsonb(v_common)) ELSE '{}' END
                   || CASE WHEN cardinality(v_t_ids) = 0 THEN jsonb_build_object('reason',
                          'no card matches the query words' || CASE WHEN v_common IS NOT NULL
                              THEN ' (words common among this user''s cards match only all together)' ELSE '' END)
                           ELSE '{}' END;
        END IF;
    END IF;

    -- The vector leg.
    IF v_vector IS NULL THEN
        v_vec := jsonb_build_object('ran', false, 'reason', 'no query vector given');
    ELSE
        v_dim := vector_dims(v_vector);
        IF NOT EXISTS (SELECT 1 FROM kernel.embedding e WHERE e.user_id = v_user AND e.dim = v_dim
                                                         AND (p_model IS NULL OR e.model = p_model)) THEN
            IF EXISTS (SELECT 1 FROM kernel.embedding e WHERE e.user_id = v_user AND (p_model IS NULL OR e.model = p_model)) THEN
                RAISE EXCEPTION 'p_query_vector: must have the size of this user''s card embeddings% (%), got %',
                    CASE WHEN p_model IS NULL THEN '' ELSE ' of that model' END,
                    (SELECT string_agg(DISTINCT e.dim::text, ', ') FROM kernel.embedding e
                     WHERE e.user_id = v_user AND (p_model IS NULL OR e.model = p_model)), v_dim
                    USING ERRCODE = 'data_exception';
            END IF;
            v_vec := jsonb_build_object('ran', false, 'reason', CASE WHEN p_model IS NULL THEN 'no card of this user has an embedding'
                                                                     ELSE 'no card of this user has an embedding of that model' END);
        ELSE
            SELECT coalesce(array_agg(x.id ORDER BY x.r, x.id), '{}'), coalesce(array_agg(x.s ORDER BY x.r, x.id), '{}'),
                   coalesce(array_agg(x.r ORDER BY x.r, x.id), '{}'), coalesce(array_agg(x.m ORDER BY x.r, x.id), '{}'),
                   min(x.method), min(x.rows_seen)
            INTO v_v_ids, v_v_sims, v_v_ranks, v_v_models, v_method, v_seen
            FROM (SELECT y.*, (rank() OVER (ORDER BY y.s DESC))::int AS r
                  FROM (SELECT n.mem_id AS id, max(n.similarity) AS s, (array_agg(n.model ORDER BY n.similarity DESC))[1] AS m,
                               min(n.method) AS method, min(n.rows_seen) AS rows_seen
                        FROM kernel._nearest(v_user, v_vector, v_n, p_model) n
                        JOIN kernel.card c ON c.id = n.mem_id AND c.rolled_into IS NULL
                        GROUP BY n.mem_id ORDER BY 2 DESC, 1 LIMIT v_n) y) x;
            v_vec := jsonb_build_object('ran', true, 'matched', cardinality(v_v_ids), 'dim', v_dim,
                                        'method', coalesce(v_method, 'exact'), 'models', to_jsonb(ARRAY(SELECT DISTINCT unnest(v_v_models))))
                  || CASE WHEN v_method = 'exact' THEN jsonb_build_object('rows_scanned', v_seen) ELSE '{}' END;
        END IF;
    END IF;

    -- Candidates of both legs, with the usage-aware recency leg ranked among them, in RRF order.
    SELECT array_agg(z.id ORDER BY z.rrf DESC, z.id), array_agg(z.rrf ORDER BY z.rrf DESC, z.id),
           array_agg(z.place ORDER BY z.rrf DESC, z.id),
           array_agg(z.recency ORDER BY z.rrf DESC, z.id), array_agg(z.recency_rank ORDER BY z.rrf DESC, z.id)
    INTO v_ids, v_rrf, v_place, v_rec, v_rec_ranks
    FROM (SELECT f.*, (dense_rank() OVER (ORDER BY f.rrf DESC))::int AS place
          FROM (SELECT r.*, coalesce(v_w_text / (v_rrf_k + v_t_ranks[array_position(v_t_ids, r.id)]), 0)
                    + coalesce(v_w_vector / (v_rrf_k + v_v_ranks[array_position(v_v_ids, r.id)]), 0)
                    + v_w_recency / (v_rrf_k + r.recency_rank) AS rrf
          -- ranked in steps of 0.01 (about 10 hours at a 30-day half-life): cards written moments
          -- apart tie, so recency breaks ties and near-ties of the other legs and no more
          FROM (SELECT w.*, (rank() OVER (ORDER BY round(w.recency::numeric, 2) DESC))::int AS recency_rank
                FROM (SELECT c.id, kernel._recency(c.updated_at, u.last_used_at, u.used_count, v_now, v_half_life) AS recency
                      FROM (SELECT unnest(v_t_ids) UNION SELECT unnest(v_v_ids)) AS ids(id)
                      JOIN kernel.card c ON c.id = ids.id
                      LEFT JOIN kernel.usage u ON u.mem_id = c.id) w) r) f) z;

    -- MMR over the best candidates: each next card maximises
    -- lambda * relevance - (1 - lambda) * its greatest similarity to a card already taken.
    -- Relevance is 1 / the card's place in the fused order (ties share a place): RRF scores
    -- themselves differ by a few per cent, which any similarity would outweigh. Similarity is
    -- the cosine of the two cards' embeddings in the query vector's space, else the overlap
    -- (Jaccard) of their summaries' words (tags left out: they say what a card is about, not what it says).
    v_pool := least(coalesce(cardinality(v_ids), 0), greatest(4 * v_k, 20));
    -- What the pool's cards are compared by: the embedding in the query vector's space, and the
    -- summary's words (the tsvector's weight-A lexemes; tags are weight B).
    SELECT array_agg(e.embedding ORDER BY x.i), array_agg(ts_filter(c.tsv, '{a}') ORDER BY x.i)
    INTO v_emb, v_tsv
    FROM unnest(v_ids[1:v_pool]) WITH ORDINALITY AS x(id, i)
    JOIN kernel.card c ON c.id = x.id
    LEFT JOIN LATERAL (SELECT e.embedding FROM kernel.embedding e
                       WHERE v_vector IS NOT NULL AND e.mem_id = c.id AND e.dim = v_dim AND (p_model IS NULL OR e.model = p_model)
                       ORDER BY e.model, e.provider LIMIT 1) e ON true;
    v_maxsim := array_fill(0::float8, ARRAY[v_pool]);
    v_taken := array_fill(false, ARRAY[v_pool]);
    v_mmr := array_fill(NULL::float8, ARRAY[v_pool]);
    v_penalty := array_fill(NULL::float8, ARRAY[v_pool]);
    FOR v_step IN 1 .. least(v_k, v_pool) LOOP
        v_best := NULL;
        FOR v_i IN 1 .. v_pool LOOP
            CONTINUE WHEN v_taken[v_i];
            v_s := v_lambda / v_place[v_i] - (1 - v_lambda) * v_maxsim[v_i];
            IF v_best IS NULL OR v_s > v_best_score THEN
                v_best := v_i;
                v_best_score := v_s;
            END IF;
        END LOOP;
        v_taken[v_best] := true;
        v_order := v_order || v_best;
        v_mmr[v_best] := v_best_score;
        v_penalty[v_best] := v_maxsim[v_best];
        SELECT array_agg(CASE WHEN v_taken[m.i] THEN m.sim
                              ELSE greatest(m.sim, CASE WHEN m.e IS NOT NULL AND v_emb[v_best] IS NOT NULL THEN 1 - (m.e <=> v_emb[v_best])
                                                        ELSE kernel._jaccard(tsvector_to_array(m.t), tsvector_to_array(v_tsv[v_best])) END)
                         END ORDER BY m.i)
        INTO v_maxsim
        FROM unnest(v_maxsim[1:v_pool], v_emb[1:v_pool], v_tsv[1:v_pool]) WITH ORDINALITY AS m(sim, e, t, i);
    END LOOP;

    -- Usage, in this transaction; a hot standby (or a read-only transaction) answers without it.
    IF cardinality(v_order) = 0 THEN
        v_usage := jsonb_build_object('bumped', false, 'reason', 'no card returned');
    ELSIF pg_is_in_recovery() THEN
        v_usage := jsonb_build_object('bumped', false, 'reason', 'hot standby: usage is counted on the primary only');
    ELSIF current_setting('transaction_read_only') = 'on' THEN
        v_usage := jsonb_build_object('bumped', false, 'reason', 'read-only transaction');
    ELSE
        -- in card id order, so two recalls bumping the same cards cannot deadlock
        INSERT INTO kernel.usage AS u (mem_id, user_id, used_count, last_used_at)
        SELECT x.id, v_user, 1, v_now FROM unnest(v_ids[1:v_pool]) WITH ORDINALITY AS x(id, i)
        WHERE x.i = ANY(v_order) ORDER BY x.id
        ON CONFLICT (mem_id, user_id) DO UPDATE SET used_count = u.used_count + 1,
            last_used_at = greatest(u.last_used_at, EXCLUDED.last_used_at);
        v_usage := jsonb_build_object('bumped', true, 'cards', cardinality(v_order));
    END IF;

    v_legs := jsonb_build_object(
        'text', v_text, 'vector', v_vec,
        'recency', jsonb_build_object('ran', cardinality(v_order) > 0, 'half_life', v_half_life::text),
        'usage', v_usage, 'weights', jsonb_build_object('text', v_w_text, 'vector', v_w_vector, 'recency', v_w_recency),
        'rrf_k', v_rrf_k, 'mmr_lambda', v_lambda, 'candidates', coalesce(cardinality(v_ids), 0), 'mmr_pool', v_pool);
    v_note := concat_ws('; ',
        CASE WHEN NOT (v_text ->> 'ran')::boolean THEN 'text leg not run: ' || (v_text ->> 'reason')
             WHEN v_text ? 'reason' THEN 'text leg: ' || (v_text ->> 'reason') END,
        CASE WHEN NOT (v_vec ->> 'ran')::boolean THEN 'vector leg not run: ' || (v_vec ->> 'reason')
             WHEN (v_vec ->> 'matched')::int = 0 THEN 'vector leg: no card left after leaving out rolled-up notes' END);

    IF cardinality(v_order) = 0 THEN
        RETURN QUERY SELECT 0, NULL::uuid, NULL::text, NULL::text[], NULL::text, NULL::text, NULL::float8, NULL::float8,
            NULL::int, NULL::float8, NULL::int, NULL::float8, NULL::int, NULL::float8, NULL::float8, NULL::int,
            NULL::timestamptz, NULL::timestamptz, 'nothing recalled: ' || coalesce(nullif(v_note, ''), 'no candidate'), v_legs;
        RETURN;
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT o.pos::int AS pos, v_ids[o.i] AS id, v_rrf[o.i] AS rrf, v_mmr[o.i] AS mmr, v_penalty[o.i] AS penalty,
               v_rec[o.i] AS rec, v_rec_ranks[o.i] AS rec_rank,
               array_position(v_t_ids, v_ids[o.i]) AS ti, array_position(v_v_ids, v_ids[o.i]) AS vi
        FROM unnest(v_order) WITH ORDINALITY AS o(i, pos)),
    scored AS (
        SELECT p.*, c.summary AS c_summary, c.tags AS c_tags, c.source AS c_source, c.kind AS c_kind,
               c.updated_at AS c_updated_at, coalesce(u.used_count, 0) AS c_used, u.last_used_at AS c_last_used,
               (SELECT count(*) FROM kernel.card r WHERE r.rolled_into = c.id) AS rolled,
               (SELECT CASE WHEN k.card_a = c.id THEN k.card_b ELSE k.card_a END FROM kernel.contradiction k
                WHERE k.resolved_at IS NULL AND (k.card_a = c.id OR k.card_b = c.id) ORDER BY k.detected_at LIMIT 1) AS contra
        FROM picked p JOIN kernel.card c ON c.id = p.id LEFT JOIN kernel.usage u ON u.mem_id = c.id)
    SELECT s.pos, s.id, s.c_summary, s.c_tags, s.c_source, s.c_kind, s.mmr, s.rrf,
           v_t_ranks[s.ti], v_t_scores[s.ti], v_v_ranks[s.vi], v_v_sims[s.vi], s.rec_rank, s.rec, s.penalty,
           s.c_used, s.c_last_used, s.c_updated_at,
           concat_ws('; ',
               CASE WHEN s.ti IS NOT NULL THEN format('text #%s (score %s, %s of the query words)', v_t_ranks[s.ti],
                   round(v_t_scores[s.ti]::numeric, 3), CASE WHEN v_t_all[s.ti] THEN 'all' ELSE 'some' END) END,
               CASE WHEN s.vi IS NOT NULL THEN format('vector #%s (cosine %s, %s)', v_v_ranks[s.vi],
                   round(v_v_sims[s.vi]::numeric, 3), v_v_models[s.vi]) END,
               format('recency #%s (score %s)', s.rec_rank, round(s.rec::numeric, 3)),
               format('RRF %s, MMR %s', round(s.rrf::numeric, 5), round(s.mmr::numeric, 4))
                   || CASE WHEN s.penalty > 0 THEN format(' (similarity %s to a card ranked above)', round(s.penalty::numeric, 3)) ELSE '' END,
               CASE WHEN s.c_kind = 'summary' THEN format('summary of %s rolled-up notes', s.rolled) END,
               CASE WHEN s.contra IS NOT NULL THEN format('contradicts card %s (open: see kernel.contradictions)', s.contra) END,
               nullif(v_note, '')),
           v_legs
    FROM scored s ORDER BY s.pos;
END
$$;
COMMENT ON FUNCTION kernel.recall(uuid, text, real[], int, text, timestamptz) IS
'Recalls a user''s top p_k cards (default: the user''s recall_top_k, 5). Legs: full text (websearch_to_tsquery under kernel.text_search_config over the GIN-indexed summary and tags: plain words match any, all-word matches first, except that a word in more than kernel.text_common_cards of the user''s cards (kernel.text_stats) matches only together with the others), vector when p_query_vector is given (cosine to the cards'' embeddings of its size, optionally of p_model; exact or HNSW, see kernel._nearest), each its top kernel.recall_candidates; then usage-aware recency ranked among those candidates (kernel._recency at p_now). Fused by reciprocal rank fusion, weight / (kernel.rrf_k + rank) per leg with the user''s recall_weights; then MMR (kernel.mmr_lambda; relevance 1 / place in the fused order, similarity the embeddings'' cosine in the query''s space, else the overlap of the summaries'' words) over the best max(4k, 20). Recency ranks in steps of 0.01 of its score, so that cards written moments apart tie. Notes rolled into a summary card are left out (the summary stands for them). Each row: every score part, the MMR penalty, usage, why in words, and the legs'' report (JSON); a leg that could not run or found nothing is named in every row, and an empty recall returns one row with rank 0 and no card saying why. Bumps kernel.usage for the cards returned in the same transaction, except on a hot standby or in a read-only transaction (then legs.usage says so).';
REVOKE ALL ON FUNCTION kernel.recall(uuid, text, real[], int, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.recall(uuid, text, real[], int, text, timestamptz) TO psimem_reader, psimem_writer, psimem_admin;
