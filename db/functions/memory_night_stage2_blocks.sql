CREATE OR REPLACE FUNCTION memory._perplexity_salience(p_value double precision, p_baseline double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$ SELECT coalesce(1 - exp(-least(50, greatest(0, p_value / nullif(p_baseline, 0) - 1))), 0) $$;  -- least(): exp() underflow is an error
COMMENT ON FUNCTION memory._perplexity_salience(double precision, double precision) IS
'Internal. P salience of a perplexity against a baseline: 1 - exp(-max(0, value / baseline - 1)); 0 at or below the baseline, towards 1 for large spikes.';
REVOKE ALL ON FUNCTION memory._perplexity_salience(double precision, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._perplexity_salience(double precision, double precision) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_stage2_blocks(p_user_id uuid, p_as_of timestamptz)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_margin int := (ops.setting('night.margin_turns'))::int;
    v_live_sigma float8 := (ops.setting('night.live_spike_sigma'))::float8;
    v_live_arrete float8 := (ops.setting('night.live_arrete'))::float8;
    v_live_id float8 := (ops.setting('night.live_interrogative_distance'))::float8;
    v_markers text := ops.setting('night.insight_markers') #>> '{}';
    v_n int;
BEGIN
    INSERT INTO _night_blocks (arc_id, session_id, start_turn, peak_turn, end_turn, first_turn, last_turn, resolved,
                               baseline, peak, final, quality, duration, start_time, end_time)
    SELECT f.arc_id, f.session_id, f.start_turn, f.peak_turn, f.end_turn,
           greatest(f.start_turn - v_margin, s.first_turn), least(f.end_turn + v_margin, s.last_turn), f.resolved,
           f.baseline_perplexity, f.peak_perplexity, f.final_perplexity, f.flux_reversal_quality,
           f.arc_duration_turns, f.start_time, f.end_time
    FROM _night_arcs a
    JOIN memory.flux_arcs f ON f.arc_id = a.arc_id
    JOIN _night_sessions s ON s.session_id = f.session_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM memory.refresh_preoccupation_centroid(p_user_id, p_as_of);
    END IF;

    -- The block's turns with what the later stages measure: coherence with the previous
    -- turn, Interrogative Distance to the Preoccupation Centroid, insight markers, liveness.
    INSERT INTO _night_block_turns
    SELECT b.arc_id, d.turn_number, d.role, d.content, d.perplexity_score, d.universal_embedding, d.native_embedding,
           greatest(0, 1 - (d.universal_embedding <=> lag(d.universal_embedding) OVER o)),
           least(1, d.universal_embedding <=> c.universal_centroid),
           d.turn_number BETWEEN b.start_turn AND b.end_turn
             AND (d.perplexity_score > d.flux_baseline_mean + v_live_sigma * d.flux_baseline_sd
                  OR (lag(d.perplexity_score) OVER o - d.perplexity_score) / nullif(lag(d.perplexity_score) OVER o, 0) > v_live_arrete
                  OR least(1, d.universal_embedding <=> c.universal_centroid) < v_live_id
                  OR d.content ~* v_markers) IS TRUE
    FROM _night_blocks b
    JOIN memory.day_table d ON d.session_id = b.session_id AND d.turn_number BETWEEN b.first_turn AND b.last_turn
         AND d.user_id = p_user_id
    LEFT JOIN memory.preoccupation_centroids c ON c.user_id = p_user_id
    WINDOW o AS (PARTITION BY b.arc_id ORDER BY d.turn_number);

    -- Zones over the arc's own turns: maximal runs of live or of dead turns.
    WITH runs AS (
        SELECT bt.*, bt.turn_number - row_number() OVER (PARTITION BY bt.arc_id, bt.live ORDER BY bt.turn_number) AS run
        FROM _night_block_turns bt JOIN _night_blocks b USING (arc_id)
        WHERE bt.turn_number BETWEEN b.start_turn AND b.end_turn)
    INSERT INTO _night_zones (arc_id, session_id, live, first_turn, last_turn, content)
    SELECT r.arc_id, b.session_id, r.live, min(r.turn_number), max(r.turn_number),
           CASE WHEN r.live THEN string_agg(r.role || ': ' || r.content, E'\n' ORDER BY r.turn_number) END
    FROM runs r JOIN _night_blocks b USING (arc_id)
    GROUP BY r.arc_id, b.session_id, r.live, r.run;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage2_blocks(uuid, timestamptz) IS
'Night Cycle stage 2, block formation. Refreshes the user''s Preoccupation Centroid as of p_as_of. Each new arc becomes a block spanning night.margin_turns turns before its spike and after its resolution (within the session''s turns). Its own turns are split into zones: live zones, kept verbatim ("role: content" lines), are maximal runs of turns meeting any of: perplexity above the local baseline mean + night.live_spike_sigma standard deviations; Arreté within the exchange, (previous perplexity - perplexity) / previous perplexity, above night.live_arrete; Interrogative Distance to the Preoccupation Centroid below night.live_interrogative_distance; an insight marker (night.insight_markers). The other runs are dead zones, summarised in stage 4. Measures per block turn (content, vectors, coherence with the previous turn, Interrogative Distance, insight markers) are read here, for block turns only.';
REVOKE ALL ON FUNCTION memory._night_stage2_blocks(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage2_blocks(uuid, timestamptz) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_stage3_salience()
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n int;
BEGIN
    WITH per_block AS (
        SELECT b.arc_id,
               memory._perplexity_salience(b.peak, b.baseline) AS p_u,
               memory._perplexity_salience(avg(t.perplexity_score) FILTER (WHERE t.turn_number BETWEEN b.peak_turn AND b.peak_turn + 1), b.baseline) AS p_e,
               memory._perplexity_salience(avg(t.perplexity_score) FILTER (WHERE t.turn_number BETWEEN b.start_turn AND b.end_turn), b.baseline) AS p_t,
               coalesce(max(t.coherence_prev) FILTER (WHERE t.turn_number = b.peak_turn + 1), 0) AS c_u,
               coalesce(avg(t.coherence_prev) FILTER (WHERE t.turn_number BETWEEN b.peak_turn AND b.peak_turn + 1), 0) AS c_e,
               coalesce(avg(t.coherence_prev) FILTER (WHERE t.turn_number > b.first_turn), 0) AS c_t,
               coalesce(max(t.interrogative_distance) FILTER (WHERE t.turn_number = b.peak_turn), 1) AS id_u,
               coalesce(avg(t.interrogative_distance) FILTER (WHERE t.turn_number BETWEEN b.peak_turn AND b.peak_turn + 1), 1) AS id_e,
               coalesce(avg(t.interrogative_distance) FILTER (WHERE t.turn_number BETWEEN b.start_turn AND b.end_turn), 1) AS id_t,
               coalesce(avg(t.coherence_prev) FILTER (WHERE t.turn_number > b.peak_turn), 0)
                 - coalesce(avg(t.coherence_prev) FILTER (WHERE t.turn_number > b.first_turn AND t.turn_number <= b.peak_turn), 0)
                 AS coherence_gain
        FROM _night_blocks b
        JOIN _night_block_turns t ON t.arc_id = b.arc_id
        GROUP BY b.arc_id, b.peak, b.baseline),
    scored AS (
        SELECT p.*, ((p.p_u + p.c_u + 1 - p.id_u) + (p.p_e + p.c_e + 1 - p.id_e) + (p.p_t + p.c_t + 1 - p.id_t)) / 9 AS composite
        FROM per_block p)
    UPDATE _night_blocks b SET
        salience_scores = jsonb_build_object(
            'utterance_level', jsonb_build_object('P', round(s.p_u::numeric, 4), 'C', round(s.c_u::numeric, 4), 'ID', round(s.id_u::numeric, 4)),
            'exchange_level', jsonb_build_object('P', round(s.p_e::numeric, 4), 'C', round(s.c_e::numeric, 4), 'ID', round(s.id_e::numeric, 4)),
            'theme_level', jsonb_build_object('P', round(s.p_t::numeric, 4), 'C', round(s.c_t::numeric, 4), 'ID', round(s.id_t::numeric, 4)),
            'composite', round(s.composite::numeric, 4)),
        arrete = (b.baseline - b.final) / nullif(b.baseline, 0),
        coherence_gain = s.coherence_gain,
        ties_merge_weight = 0.5 * s.composite + 0.5 * greatest(0, least(1, coalesce((b.baseline - b.final) / nullif(b.baseline, 0), 0)))
    FROM scored s WHERE s.arc_id = b.arc_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage3_salience() IS
'Night Cycle stage 3, salience, at three levels. Utterance: the peak turn; exchange: the peak turn and the turn answering it; theme: the whole arc (for C, the whole block). P = 1 - exp(-max(0, perplexity / baseline - 1)) of the peak, of the exchange''s mean and of the arc''s mean perplexity. C = coherence: cosine similarity (floored at 0) of a turn''s universal embedding with the previous turn''s, for the answer to the peak, averaged over the exchange, averaged over the block. ID = Interrogative Distance: cosine distance to the user''s Preoccupation Centroid (1 when unknown), at the peak, averaged over the exchange and over the arc. composite = mean over the three levels of (P + C + (1 - ID)) / 3. Arreté = (baseline - final) / baseline. coherence_gain = mean C of the turns after the peak - mean C of the block''s turns up to the peak. ties_merge_weight = 0.5 composite + 0.5 Arreté clamped to [0, 1].';
REVOKE ALL ON FUNCTION memory._night_stage3_salience() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage3_salience() TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_stage4_compression()
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_summariser regproc := (ops.setting('night.summariser') #>> '{}')::regproc;
    v_n int;
BEGIN
    EXECUTE format('UPDATE _night_zones z SET content = %s(z.session_id, z.first_turn, z.last_turn) WHERE NOT z.live',
                   v_summariser);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE _night_blocks b SET prose = jsonb_build_object(
        'anterior_margin', coalesce((SELECT string_agg(t.role || ': ' || t.content, E'\n' ORDER BY t.turn_number)
                                     FROM _night_block_turns t WHERE t.arc_id = b.arc_id AND t.turn_number < b.start_turn), ''),
        'live_zones', coalesce((SELECT jsonb_agg(jsonb_build_object('start', z.first_turn - b.first_turn,
                                       'end', z.last_turn - b.first_turn, 'content', z.content) ORDER BY z.first_turn)
                                FROM _night_zones z WHERE z.arc_id = b.arc_id AND z.live), '[]'),
        'dead_zone_summaries', coalesce((SELECT jsonb_agg(jsonb_build_object('start', z.first_turn - b.first_turn,
                                       'end', z.last_turn - b.first_turn, 'summary', coalesce(z.content, '')) ORDER BY z.first_turn)
                                FROM _night_zones z WHERE z.arc_id = b.arc_id AND NOT z.live), '[]'),
        'posterior_margin', coalesce((SELECT string_agg(t.role || ': ' || t.content, E'\n' ORDER BY t.turn_number)
                                      FROM _night_block_turns t WHERE t.arc_id = b.arc_id AND t.turn_number > b.end_turn), ''));
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage4_compression() IS
'Night Cycle stage 4, compression. Dead zones are summarised by the function the night.summariser setting names (memory.summarise_extractive by default); live zones stay verbatim. Builds each block''s prose in the spec''s shape: anterior_margin, live_zones [{start, end, content}], dead_zone_summaries [{start, end, summary}], posterior_margin, with start and end as 0-based turn offsets within the block. Returns the number of dead zones summarised.';
REVOKE ALL ON FUNCTION memory._night_stage4_compression() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage4_compression() TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_stage5_embeddings()
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_udim int := (ops.setting('embedding.universal_dim'))::int;
    v_ndim int := (ops.setting('embedding.native_dim'))::int;
    v_n int;
BEGIN
    -- Weighted sums with pgvector's element-wise product: the weight repeated as a vector.
    WITH weighted AS (
        SELECT b.arc_id, 1 + memory._perplexity_salience(t.perplexity_score, b.baseline) + t.live::int AS w,
               t.universal_embedding, t.native_embedding
        FROM _night_blocks b JOIN _night_block_turns t ON t.arc_id = b.arc_id),
    centroids AS (
        SELECT arc_id,
               l2_normalize(sum(array_fill(w::real, ARRAY[v_udim])::vector * universal_embedding)) AS u,
               l2_normalize(sum(array_fill(w::real, ARRAY[v_ndim])::vector * native_embedding)) AS n
        FROM weighted GROUP BY arc_id)
    UPDATE _night_blocks b SET universal_embedding = c.u, native_embedding = c.n
    FROM centroids c WHERE c.arc_id = b.arc_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage5_embeddings() IS
'Night Cycle stage 5, block embeddings: in both spaces, the normalised salience-weighted centroid of the block''s turns (margins included), weight = 1 + P of the turn''s perplexity against the arc baseline + 1 for turns in a live zone. Turns without an embedding in a space do not count in it.';
REVOKE ALL ON FUNCTION memory._night_stage5_embeddings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage5_embeddings() TO psimem_admin;
