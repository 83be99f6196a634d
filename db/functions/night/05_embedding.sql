-- Night Cycle stage 5: block embeddings in both spaces.

CREATE OR REPLACE FUNCTION memory.night_05_embedding(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_udim int := (ops.setting('embedding.universal_dim'))::int;
    v_ndim int := (ops.setting('embedding.native_dim'))::int;
    v_n bigint;
BEGIN
    -- Weighted sums with pgvector's element-wise product: the weight repeated as a vector.
    WITH weighted AS (
        SELECT b.block_id, 1 + memory._perplexity_salience(t.perplexity_score, b.baseline) + t.live::int AS w,
               d.universal_embedding, d.native_embedding
        FROM memory.night_blocks b
        CROSS JOIN LATERAL (  -- each block's turns by key: see stage 2
            SELECT x.* FROM memory.night_block_turns x
            WHERE x.run_id = b.run_id AND x.user_id = b.user_id AND x.block_id = b.block_id OFFSET 0) t
        JOIN memory.day_table d ON d.session_id = b.session_id AND d.user_id = b.user_id AND d.turn_number = t.turn_number
        WHERE b.run_id = p_run_id AND b.user_id = p_user_id),
    centroids AS MATERIALIZED (  -- the work tables have no statistics: inlined, the aggregate ran once per block
        SELECT block_id,
               -- CASE: no weight vector is built for a turn without an embedding in that space
               l2_normalize(sum(CASE WHEN universal_embedding IS NOT NULL
                                     THEN array_fill(w::real, ARRAY[v_udim])::vector * universal_embedding END)) AS u,
               l2_normalize(sum(CASE WHEN native_embedding IS NOT NULL
                                     THEN array_fill(w::real, ARRAY[v_ndim])::vector * native_embedding END)) AS n
        FROM weighted GROUP BY block_id)
    UPDATE memory.night_blocks b SET universal_embedding = c.u, native_embedding = c.n
    FROM centroids c WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.block_id = c.block_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_05_embedding(bigint, uuid) IS
'Night Cycle stage 5, block embeddings, for the blocks stage 2 formed for one user of a run: in both spaces, the normalised salience-weighted centroid of the block''s turns (margins included), weight = 1 + P of the turn''s perplexity against the arc baseline + 1 for turns in a live zone. Turns without an embedding in a space do not count in it. Returns the number of blocks embedded.';
REVOKE ALL ON FUNCTION memory.night_05_embedding(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_05_embedding(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(5::smallint, 'embedding', 'memory.night_05_embedding(bigint, uuid)', 'taken');
