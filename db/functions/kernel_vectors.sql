-- Nearest cards by embedding, for any embedding size: an exact scan of the user's rows of
-- that size, or the HNSW index of that size once the user has kernel.vector_exact_below
-- rows of it (bench/kernel.py measures where the index starts to pay). The indexes are
-- partial expression indexes, one per size in use, built by kernel.ensure_vector_indexes.

CREATE OR REPLACE FUNCTION kernel._index_type(p_dim int)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- pgvector's HNSW takes vector up to 2,000 dimensions and halfvec up to 4,000.
    RETURN CASE WHEN p_dim <= 2000 THEN 'vector' WHEN p_dim <= 4000 THEN 'halfvec' END;
END
$$;
COMMENT ON FUNCTION kernel._index_type(int) IS
'Internal. The type an HNSW index on kernel embeddings of this size casts to (vector to 2,000 dimensions, halfvec to 4,000), NULL beyond: such embeddings are searched exactly.';
REVOKE ALL ON FUNCTION kernel._index_type(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._index_type(int) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._nearest(p_user_id uuid, p_vector vector, p_limit int, p_model text DEFAULT NULL,
                                           p_provider text DEFAULT NULL)
RETURNS TABLE (mem_id uuid, similarity double precision, model text, method text, rows_seen int)
LANGUAGE plpgsql STABLE
ROWS 20  -- what callers ask for: planned as 1000 rows, a join with it scanned all of kernel.card
SET search_path = pg_catalog, public, pg_temp
SET hnsw.iterative_scan = relaxed_order
SET hnsw.ef_search = 40
AS $$
DECLARE
    v_dim int := vector_dims(p_vector);
    v_type text := kernel._index_type(v_dim);
    v_below int := (ops.setting('kernel.vector_exact_below'))::int;
    v_rows int;
BEGIN
    -- How many rows an exact scan would read, counted only up to the threshold (an index-only
    -- scan of at most that many entries).
    SELECT count(*) INTO v_rows FROM (
        SELECT 1 FROM kernel.embedding e
        WHERE e.user_id = p_user_id AND e.dim = v_dim AND (p_model IS NULL OR e.model = p_model)
          AND (p_provider IS NULL OR e.provider = p_provider)
        LIMIT greatest(v_below, 1)) x;
    IF v_rows >= v_below AND v_type IS NOT NULL AND EXISTS (
            SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass(format('kernel.idx_embedding_hnsw_%s', v_dim))
              AND i.indisvalid) THEN
        PERFORM set_config('hnsw.ef_search', greatest((ops.setting('kernel.ef_search'))::int, p_limit)::text, true);
        -- The index is on embedding::type(dim) WHERE dim = <dim>: the query must say both
        -- literally. Relaxed-order iterative scans keep reading the graph until p_limit rows
        -- of this user are found; the outer ORDER BY restores the exact order.
        RETURN QUERY EXECUTE format($q$
            SELECT x.mem_id, 1 - x.d, x.model, 'hnsw'::text, $6 FROM (
                SELECT e.mem_id, (e.embedding::%1$s(%2$s) <=> $2::%1$s(%2$s))::float8 AS d, e.provider || '/' || e.model AS model
                FROM kernel.embedding e
                WHERE e.dim = %2$s AND e.user_id = $1 AND ($3::text IS NULL OR e.model = $3)
                  AND ($4::text IS NULL OR e.provider = $4)
                ORDER BY e.embedding::%1$s(%2$s) <=> $2::%1$s(%2$s)
                LIMIT $5) x
            ORDER BY x.d$q$, v_type, v_dim)
        USING p_user_id, p_vector, p_model, p_provider, p_limit, v_rows;
    ELSE
        RETURN QUERY
        SELECT e.mem_id, 1 - (e.embedding <=> p_vector), e.provider || '/' || e.model, 'exact'::text, v_rows
        FROM kernel.embedding e
        WHERE e.user_id = p_user_id AND e.dim = v_dim AND (p_model IS NULL OR e.model = p_model)
          AND (p_provider IS NULL OR e.provider = p_provider)
        ORDER BY e.embedding <=> p_vector
        LIMIT p_limit;
    END IF;
END
$$;
COMMENT ON FUNCTION kernel._nearest(uuid, vector, int, text, text) IS
'Internal. A user''s p_limit embeddings nearest to p_vector by cosine (of its size, optionally of one model or provider), with the method used: exact while the user has fewer than kernel.vector_exact_below rows of that size or no valid HNSW index of that size exists, hnsw otherwise (iterative scan, hnsw.ef_search = kernel.ef_search). rows_seen: the rows of that size counted, up to the threshold.';
REVOKE ALL ON FUNCTION kernel._nearest(uuid, vector, int, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._nearest(uuid, vector, int, text, text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.ensure_vector_indexes()
RETURNS TABLE (dim int, index_name text, action text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_below int := (ops.setting('kernel.vector_exact_below'))::int;
    v_dim int;
    v_type text;
BEGIN
    -- Sizes where some user holds enough rows for recall to use an index (read whole first:
    -- an index cannot be built on a table an open loop is still reading).
    FOREACH v_dim IN ARRAY ARRAY(
        SELECT DISTINCT x.dim FROM (SELECT e.dim FROM kernel.embedding e GROUP BY e.user_id, e.dim
                                    HAVING count(*) >= greatest(v_below, 1)) x ORDER BY 1)
    LOOP
        dim := v_dim;
        index_name := format('idx_embedding_hnsw_%s', v_dim);
        v_type := kernel._index_type(v_dim);
        IF v_type IS NULL THEN
            action := 'exact only: HNSW takes at most 4000 dimensions';
        ELSIF to_regclass('kernel.' || index_name) IS NOT NULL THEN
            action := 'exists';
        ELSE
            -- Not CONCURRENTLY (a function runs in a transaction): writers of kernel.embedding
            -- wait for the build, readers do not.
            EXECUTE format('CREATE INDEX %I ON kernel.embedding USING hnsw ((embedding::public.%s(%s)) public.%s_cosine_ops) '
                           'WHERE dim = %s', index_name, v_type, v_dim, v_type, v_dim);
            action := 'created';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION kernel.ensure_vector_indexes() IS
'Builds the HNSW index (cosine) for each embedding size some user holds at least kernel.vector_exact_below rows of, if missing: a partial index on embedding::vector(dim) (halfvec beyond 2,000 dimensions; none beyond 4,000) WHERE dim = that size. Runs as the owner (it creates indexes); kernel.run_maintenance calls it. Returns each size with its index and what was done.';
REVOKE ALL ON FUNCTION kernel.ensure_vector_indexes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.ensure_vector_indexes() TO psimem_admin;
