CREATE OR REPLACE FUNCTION memory.recall_blocks(
    p_query_vector real[],
    p_k int DEFAULT 10,
    p_user_id uuid DEFAULT NULL,
    p_expand boolean DEFAULT true)
RETURNS TABLE (block_id uuid, block_kind text, session_id uuid, user_id uuid, arc_start_time timestamptz,
               distance double precision, reason text, via_block_id uuid, coherence_gain double precision, prose jsonb)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = relaxed_order
SET hnsw.ef_search = 40
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_kind text := ops.setting('embedding.universal_index') #>> '{}';
    v_dim int := (ops.setting('embedding.universal_dim'))::int;
    v_query vector;
    v_order text;
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > 1000 THEN
        RAISE EXCEPTION 'p_k: must be between 1 and 1000, got %', coalesce(p_k::text, 'null') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_query_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_vector: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_query := memory._checked_vector(p_query_vector, 'p_query_vector', 'universal');
    PERFORM set_config('hnsw.ef_search', ops.setting('recall.ef_search')::text, true);
    v_order := CASE v_kind
        WHEN 'vector' THEN 'b.universal_embedding <=> $1'
        WHEN 'halfvec' THEN format('b.universal_embedding::halfvec(%s) <=> $1::halfvec(%s)', v_dim, v_dim)
        ELSE 'b.universal_embedding_bq <~> binary_quantize($1)' END;
    RETURN QUERY EXECUTE format($q$
        WITH hits AS MATERIALIZED (
            SELECT b.block_id FROM memory.holographic_blocks b
            WHERE ($2::uuid IS NULL OR b.user_id = $2) AND b.universal_embedding IS NOT NULL
            ORDER BY %s LIMIT $3 * 2),
        vector_matches AS (
            SELECT b.block_id, NULL::uuid AS via, 'vector match' AS reason, 0 AS rank_group
            FROM hits h JOIN memory.holographic_blocks b USING (block_id)
            ORDER BY b.universal_embedding <=> $1 LIMIT $3),
        structural AS (
            SELECT r.target_block_id AS block_id, r.source_block_id AS via, 'cited by a match' AS reason, 1
            FROM memory.block_relationships r JOIN vector_matches v ON r.source_block_id = v.block_id
            WHERE r.relationship_type = 'cites'
            UNION ALL
            SELECT b.continues_from, b.block_id, 'earlier part of a matched inquiry', 2
            FROM vector_matches v JOIN memory.holographic_blocks b USING (block_id)
            WHERE $4 AND b.continues_from IS NOT NULL
            UNION ALL
            SELECT b.continued_by, b.block_id, 'later part of a matched inquiry', 2
            FROM vector_matches v JOIN memory.holographic_blocks b USING (block_id)
            WHERE $4 AND b.continued_by IS NOT NULL
            UNION ALL
            SELECT b.parent_metablock_id, b.block_id, 'metablock of a match', 3
            FROM vector_matches v JOIN memory.holographic_blocks b USING (block_id)
            WHERE $4 AND b.parent_metablock_id IS NOT NULL),
        combined AS (
            SELECT DISTINCT ON (c.block_id) c.*
            FROM (SELECT * FROM vector_matches UNION ALL SELECT * FROM structural) c
            ORDER BY c.block_id, c.rank_group)
        SELECT b.block_id, b.block_kind, b.session_id, b.user_id, b.arc_start_time,
               (b.universal_embedding <=> $1)::double precision, c.reason, c.via, b.coherence_gain, b.prose
        FROM combined c JOIN memory.holographic_blocks b ON b.block_id = c.block_id
        WHERE $2::uuid IS NULL OR b.user_id = $2
        ORDER BY c.rank_group, 6, b.block_id $q$, v_order)
    USING v_query, p_user_id, p_k, p_expand;
END
$$;
COMMENT ON FUNCTION memory.recall_blocks(real[], int, uuid, boolean) IS
'Hybrid block retrieval (spec 004 section 7.4): the p_k blocks nearest p_query_vector (universal, cosine; optionally one user''s), the union with blocks they cite, and with p_expand the structural neighbours along continuation edges (continues_from, continued_by) and their metablocks. Every row says why it came back (vector match, cited by a match, earlier or later part of a matched inquiry, metablock of a match) and through which block (via_block_id); vector matches come first, by distance.';
REVOKE ALL ON FUNCTION memory.recall_blocks(real[], int, uuid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.recall_blocks(real[], int, uuid, boolean) TO psimem_reader, psimem_admin;
