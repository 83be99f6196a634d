-- Night Cycle backfill mode: a run that will form more blocks than holographic_blocks holds
-- builds the blocks' HNSW indexes once when it finishes instead of inserting into them block
-- by block (revision 0006); the same for block_turns, which receives every turn a block keeps
-- (an HNSW insert per turn cost 37 ms a block at 10k turns in bench/night_cycle.py). The drop
-- commits on its own before the first user; recall over blocks and kept turns meanwhile ranks
-- exactly (slower, never blocked); the build commits on its own too.

CREATE OR REPLACE FUNCTION memory._night_backfill_mode(p_run_id bigint)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_run ops.cycle_runs;
    v_min bigint := (ops.setting('night.index_rebuild_min_blocks'))::bigint;
    v_ratio float8 := (ops.setting('night.index_rebuild_ratio'))::float8;
    v_idle interval := (ops.setting('night.session_idle') #>> '{}')::interval;
    v_pending bigint;
    v_have bigint;
    v_defs text[] := '{}';
    v_tables regclass[] := '{}';
    v_index record;
BEGIN
    SELECT * INTO STRICT v_run FROM ops.cycle_runs r WHERE r.run_id = p_run_id;
    -- What stage 0 will take, counted from the sessions: the turns first (each one a row of
    -- block_turns, an upper bound on the arcs), then the arcs themselves (their spike turns).
    SELECT coalesce(sum(s.turn_count - s.consolidated_turn), 0) INTO v_pending FROM memory.sessions s
    WHERE (v_run.user_id IS NULL OR s.user_id = v_run.user_id) AND s.turn_count > s.consolidated_turn
      AND s.last_turn_at < (v_run.cycle_date + 1)::timestamptz AND s.last_turn_at <= now() - v_idle;
    IF v_pending < v_min THEN
        RETURN 0;
    END IF;
    SELECT count(*) INTO v_have FROM memory.block_turns;
    IF v_pending > v_ratio * v_have THEN
        v_tables := v_tables || 'memory.block_turns'::regclass;
    END IF;
    SELECT count(*) INTO v_pending FROM memory.sessions s
    JOIN memory.day_table d ON d.session_id = s.session_id AND d.user_id = s.user_id AND d.turn_number > s.consolidated_turn
    WHERE (v_run.user_id IS NULL OR s.user_id = v_run.user_id) AND s.turn_count > s.consolidated_turn
      AND s.last_turn_at < (v_run.cycle_date + 1)::timestamptz AND s.last_turn_at <= now() - v_idle
      AND d.turn_number = d.flux_arc_start;
    SELECT count(*) INTO v_have FROM memory.holographic_blocks;
    IF v_pending >= v_min AND v_pending > v_ratio * v_have THEN
        v_tables := v_tables || 'memory.holographic_blocks'::regclass;
    END IF;
    FOR v_index IN
        SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
        WHERE i.indrelid = ANY (v_tables) AND a.amname = 'hnsw'
        ORDER BY 1
    LOOP
        v_defs := v_defs || v_index.def;
        EXECUTE 'DROP INDEX ' || v_index.name;
    END LOOP;
    UPDATE ops.cycle_runs SET block_indexes = v_defs WHERE run_id = p_run_id;
    IF cardinality(v_defs) > 0 THEN
        RAISE NOTICE 'night cycle run %: the HNSW indexes of % are built when the run finishes', p_run_id, v_tables;
    END IF;
    RETURN cardinality(v_defs);
END
$$;
COMMENT ON FUNCTION memory._night_backfill_mode(bigint) IS
'Internal, Night Cycle backfill mode, when a run opens: drops the HNSW indexes of memory.block_turns when the sessions it will take hold at least night.index_rebuild_min_blocks turns and more than night.index_rebuild_ratio times the rows block_turns holds, and those of memory.holographic_blocks when it is about to form at least that many blocks (counted from the spike turns) and more than that ratio times the blocks already stored (one build costs far less than that many inserts). Records their definitions in ops.cycle_runs.block_indexes for memory._night_restore_block_indexes. Returns the number of indexes dropped.';
REVOKE ALL ON FUNCTION memory._night_backfill_mode(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_backfill_mode(bigint) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory._night_restore_block_indexes(p_defs text[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_def text;
    v_blocks bigint;
    v_turns bigint;
    v_udim int := (ops.setting('embedding.universal_dim'))::int;
    v_ndim int := (ops.setting('embedding.native_dim'))::int;
    v_need bigint;
BEGIN
    IF coalesce(cardinality(p_defs), 0) = 0 THEN
        RETURN 0;
    END IF;
    SELECT count(*) INTO v_blocks FROM memory.holographic_blocks;
    SELECT count(*) INTO v_turns FROM memory.block_turns;
    -- The graph is built in memory when it fits (pgvector writes it tuple by tuple otherwise);
    -- the indexes are built one at a time, so the larger one sets the need.
    v_need := least(4096, 1 + greatest(v_blocks * (4 * v_udim + v_ndim / 8 + 1024),
                                       v_turns * (4 * v_udim + 1024)) * 3 / 2 / 1048576);
    IF v_need > pg_size_bytes(current_setting('maintenance_work_mem')) / 1048576 THEN
        PERFORM set_config('maintenance_work_mem', v_need || 'MB', true);
    END IF;
    FOREACH v_def IN ARRAY p_defs LOOP
        -- IF NOT EXISTS: an index an operator built meanwhile (same name) is kept.
        EXECUTE regexp_replace(v_def, '^CREATE INDEX ', 'CREATE INDEX IF NOT EXISTS ');
    END LOOP;
    RETURN v_blocks;
END
$$;
COMMENT ON FUNCTION memory._night_restore_block_indexes(text[]) IS
'Internal, Night Cycle backfill mode: builds the indexes memory._night_backfill_mode dropped (raising maintenance_work_mem for this transaction, up to 4 GB, so the graph is built in memory), skipping any that exists. Returns the number of blocks indexed, 0 when nothing was dropped.';
REVOKE ALL ON FUNCTION memory._night_restore_block_indexes(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_restore_block_indexes(text[]) TO psimem_admin;
