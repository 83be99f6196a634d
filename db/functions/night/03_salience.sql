-- Night Cycle stage 3: salience at utterance, exchange and theme level (spec 004 section 3.4).

CREATE OR REPLACE FUNCTION memory._perplexity_salience(p_value double precision, p_baseline double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$ SELECT coalesce(1 - exp(-least(50, greatest(0, p_value / nullif(p_baseline, 0) - 1))), 0) $$;  -- least(): exp() underflow is an error
COMMENT ON FUNCTION memory._perplexity_salience(double precision, double precision) IS
'Internal. P salience of a perplexity against a baseline: 1 - exp(-max(0, value / baseline - 1)); 0 at or below the baseline, towards 1 for large spikes.';
REVOKE ALL ON FUNCTION memory._perplexity_salience(double precision, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._perplexity_salience(double precision, double precision) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.night_03_salience(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    WITH per_block AS (
        SELECT b.block_id,
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
        FROM memory.night_blocks b
        CROSS JOIN LATERAL (  -- each block's turns by key: see stage 2
            SELECT x.* FROM memory.night_block_turns x
            WHERE x.run_id = b.run_id AND x.user_id = b.user_id AND x.block_id = b.block_id OFFSET 0) t
        WHERE b.run_id = p_run_id AND b.user_id = p_user_id
        GROUP BY b.block_id, b.peak, b.baseline, b.peak_turn, b.start_turn, b.end_turn, b.first_turn),
    scored AS MATERIALIZED (  -- the work tables have no statistics: inlined, the aggregate ran once per block
        SELECT p.*, ((p.p_u + p.c_u + 1 - p.id_u) + (p.p_e + p.c_e + 1 - p.id_e) + (p.p_t + p.c_t + 1 - p.id_t)) / 9 AS composite
        FROM per_block p)
    UPDATE memory.night_blocks b SET
        salience_scores = jsonb_build_object(
            'utterance_level', jsonb_build_object('P', round(s.p_u::numeric, 4), 'C', round(s.c_u::numeric, 4), 'ID', round(s.id_u::numeric, 4)),
            'exchange_level', jsonb_build_object('P', round(s.p_e::numeric, 4), 'C', round(s.c_e::numeric, 4), 'ID', round(s.id_e::numeric, 4)),
            'theme_level', jsonb_build_object('P', round(s.p_t::numeric, 4), 'C', round(s.c_t::numeric, 4), 'ID', round(s.id_t::numeric, 4)),
            'composite', round(s.composite::numeric, 4)),
        arrete = (b.baseline - b.final) / nullif(b.baseline, 0),
        coherence_gain = s.coherence_gain,
        ties_merge_weight = 0.5 * s.composite + 0.5 * greatest(0, least(1, coalesce((b.baseline - b.final) / nullif(b.baseline, 0), 0)))
    FROM scored s WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.block_id = s.block_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_03_salience(bigint, uuid) IS
'Night Cycle stage 3, salience, for the blocks stage 2 formed for one user of a run, at three levels. Utterance: the peak turn; exchange: the peak turn and the turn answering it; theme: the whole arc (for C, the whole block). P = 1 - exp(-max(0, perplexity / baseline - 1)) of the peak, of the exchange''s mean and of the arc''s mean perplexity. C = coherence: cosine similarity (floored at 0) of a turn''s universal embedding with the previous turn''s, for the answer to the peak, averaged over the exchange, averaged over the block. ID = Interrogative Distance: cosine distance to the user''s Preoccupation Centroid (1 when unknown), at the peak, averaged over the exchange and over the arc. composite = mean over the three levels of (P + C + (1 - ID)) / 3. Arreté = (baseline - final) / baseline. coherence_gain = mean C of the turns after the peak - mean C of the block''s turns up to the peak. ties_merge_weight = 0.5 composite + 0.5 Arreté clamped to [0, 1]. Returns the number of blocks scored.';
REVOKE ALL ON FUNCTION memory.night_03_salience(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_03_salience(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(3::smallint, 'salience', 'memory.night_03_salience(bigint, uuid)', 'taken');
