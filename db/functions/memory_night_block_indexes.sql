-- Night Cycle bulk mode: a cycle that forms many blocks builds the blocks' HNSW indexes
-- once at its end instead of inserting into them block by block (migration 0006).

CREATE OR REPLACE FUNCTION memory._night_drop_block_indexes(p_new_blocks bigint)
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_min bigint := (ops.setting('night.index_rebuild_min_blocks'))::bigint;
    v_ratio float8 := (ops.setting('night.index_rebuild_ratio'))::float8;
    v_have bigint;
    v_defs text[] := '{}';
    v_index record;
BEGIN
    IF p_new_blocks < v_min THEN
        RETURN v_defs;
    END IF;
    SELECT count(*) INTO v_have FROM memory.holographic_blocks;
    IF p_new_blocks <= v_ratio * v_have THEN
        RETURN v_defs;
    END IF;
    FOR v_index IN
        SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
        WHERE i.indrelid = 'memory.holographic_blocks'::regclass AND a.amname = 'hnsw'
        ORDER BY 1
    LOOP
        v_defs := v_defs || v_index.def;
        EXECUTE 'DROP INDEX ' || v_index.name;
    END LOOP;
    RAISE NOTICE 'night cycle: % new blocks against % stored: the blocks'' HNSW indexes are rebuilt at the end', p_new_blocks, v_have;
    RETURN v_defs;
END
$$;
COMMENT ON FUNCTION memory._night_drop_block_indexes(bigint) IS
'Internal, Night Cycle bulk mode. When the cycle is about to form at least night.index_rebuild_min_blocks blocks and more than night.index_rebuild_ratio times the blocks already stored, drops the HNSW indexes of memory.holographic_blocks (one build at the end costs far less than that many inserts) and returns their definitions for memory._night_restore_block_indexes; otherwise returns an empty array. Readers of holographic_blocks wait until the cycle commits.';
REVOKE ALL ON FUNCTION memory._night_drop_block_indexes(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_drop_block_indexes(bigint) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_restore_block_indexes(p_defs text[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_def text;
    v_blocks bigint;
    v_udim int := (ops.setting('embedding.universal_dim'))::int;
    v_ndim int := (ops.setting('embedding.native_dim'))::int;
    v_need bigint;
BEGIN
    IF coalesce(cardinality(p_defs), 0) = 0 THEN
        RETURN 0;
    END IF;
    SELECT count(*) INTO v_blocks FROM memory.holographic_blocks;
    -- The graph is built in memory when it fits (pgvector writes it tuple by tuple otherwise).
    v_need := least(4096, 1 + v_blocks * (4 * v_udim + v_ndim / 8 + 1024) * 3 / 2 / 1048576);
    IF v_need > pg_size_bytes(current_setting('maintenance_work_mem')) / 1048576 THEN
        PERFORM set_config('maintenance_work_mem', v_need || 'MB', true);
    END IF;
    FOREACH v_def IN ARRAY p_defs LOOP
        EXECUTE v_def;
    END LOOP;
    RETURN v_blocks;
END
$$;
COMMENT ON FUNCTION memory._night_restore_block_indexes(text[]) IS
'Internal, Night Cycle bulk mode: builds the indexes memory._night_drop_block_indexes dropped (raising maintenance_work_mem for this transaction, up to 4 GB, so the graph is built in memory). Returns the number of blocks indexed, 0 when nothing was dropped.';
REVOKE ALL ON FUNCTION memory._night_restore_block_indexes(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_restore_block_indexes(text[]) TO psimem_admin;
