-- Night Cycle stage 6: blocks, metablocks and relationships stored; the taken turns
-- recorded as consolidated (spec 004 sections 3.4, 4.3 and 4.4).

CREATE OR REPLACE FUNCTION memory._mean_salience(p_scores jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE  -- plpgsql: never inlined into the caller's aggregate
SET search_path = pg_catalog, public, pg_temp
AS $$ BEGIN RETURN (
    SELECT jsonb_object_agg(lvl, (
               SELECT jsonb_object_agg(x.k, x.v) FROM (
                   SELECT k, round(avg((e -> lvl ->> k)::float8)::numeric, 4) AS v
                   FROM jsonb_array_elements(p_scores) e, unnest(ARRAY['P', 'C', 'ID']) k GROUP BY k) x))
           || jsonb_build_object('composite', (SELECT round(avg((e ->> 'composite')::float8)::numeric, 4)
                                               FROM jsonb_array_elements(p_scores) e))
    FROM unnest(ARRAY['utterance_level', 'exchange_level', 'theme_level']) lvl);
END $$;
COMMENT ON FUNCTION memory._mean_salience(jsonb) IS
'Internal. Mean of a JSON array of salience_scores objects, level by level: the salience of a compound block.';
REVOKE ALL ON FUNCTION memory._mean_salience(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._mean_salience(jsonb) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.night_06_storage(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cycle_date date := memory._night_cycle_date(p_run_id);
    v_thematic float8 := (ops.setting('night.thematic_similarity'))::float8;
    v_udim int := (ops.setting('embedding.universal_dim'))::int;
    v_ndim int := (ops.setting('embedding.native_dim'))::int;
    v_n bigint;
BEGIN
    -- Continuations found in stage 1 between blocks formed now (one hippocampal period):
    -- continues_from / continued_by and a metablock over each chain.
    UPDATE memory.night_blocks b SET continued_by = nb.block_id
    FROM memory.flux_arcs f
    JOIN memory.night_blocks nb ON nb.run_id = p_run_id AND nb.user_id = p_user_id AND nb.arc_id = f.continued_by_arc_id
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND f.arc_id = b.arc_id;
    UPDATE memory.night_blocks b SET continues_from = pb.block_id
    FROM memory.night_blocks pb
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND pb.run_id = p_run_id AND pb.user_id = p_user_id
      AND pb.continued_by = b.block_id;
    WITH RECURSIVE chain AS (
        SELECT b.block_id AS root, b.block_id, 1 AS pos FROM memory.night_blocks b
        WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.continued_by IS NOT NULL AND b.continues_from IS NULL
        UNION ALL
        SELECT c.root, n.block_id, c.pos + 1
        FROM chain c
        JOIN memory.night_blocks cur ON cur.run_id = p_run_id AND cur.user_id = p_user_id AND cur.block_id = c.block_id
        JOIN memory.night_blocks n ON n.run_id = p_run_id AND n.user_id = p_user_id AND n.block_id = cur.continued_by)
    UPDATE memory.night_blocks b SET chain_root = c.root, chain_pos = c.pos
    FROM chain c WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.block_id = c.block_id;
    WITH m AS MATERIALIZED (  -- once per chain: a subquery could be rescanned, drawing a new id per block
        SELECT x.chain_root, gen_random_uuid() AS compound_id FROM memory.night_blocks x
        WHERE x.run_id = p_run_id AND x.user_id = p_user_id AND x.chain_root IS NOT NULL GROUP BY x.chain_root)
    UPDATE memory.night_blocks b SET parent_metablock_id = m.compound_id
    FROM m WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.chain_root = m.chain_root;

    -- An earlier block stored by a previous cycle is not merged (spec 004 section 4.4): from
    -- another session it becomes a citation; the earlier part of an arc of the same session
    -- (consolidated while the arc was open) is what this block continues.
    UPDATE memory.night_blocks b SET citations = jsonb_build_array(hb.block_id)
    FROM memory.flux_arcs f JOIN memory.holographic_blocks hb
         ON hb.arc_id = f.arc_id AND hb.user_id = f.user_id AND hb.block_kind = 'arc'
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND f.continued_by_arc_id = b.arc_id
      AND f.user_id = p_user_id AND f.session_id <> b.session_id;
    UPDATE memory.night_blocks b SET continues_from = hb.block_id
    FROM memory.night_arcs a JOIN memory.holographic_blocks hb
         ON hb.arc_id = a.continues_arc_id AND hb.user_id = a.user_id AND hb.block_kind = 'arc'
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.continues_from IS NULL
      AND a.run_id = p_run_id AND a.user_id = p_user_id AND a.arc_id = b.arc_id;

    -- Compound blocks first (constituents reference them), then the others. A compound's
    -- prose concatenates its constituents' zones with shifted offsets; its metrics combine
    -- theirs; its embeddings are their centroid weighted by ties_merge_weight.
    WITH members AS (
        SELECT b.*, coalesce(sum(b.last_turn - b.first_turn + 1) OVER (PARTITION BY b.chain_root ORDER BY b.chain_pos
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS offs
        FROM memory.night_blocks b
        WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.chain_root IS NOT NULL),
    zones AS (
        SELECT m.parent_metablock_id AS id,
               jsonb_agg(z.zone ORDER BY m.chain_pos, z.ord) FILTER (WHERE z.kind = 'live') AS live,
               jsonb_agg(z.zone ORDER BY m.chain_pos, z.ord) FILTER (WHERE z.kind = 'dead') AS dead
        FROM members m
        CROSS JOIN LATERAL (
            SELECT 'live' AS kind, e.ord, e.z || jsonb_build_object('start', (e.z ->> 'start')::int + m.offs,
                                                                    'end', (e.z ->> 'end')::int + m.offs) AS zone
            FROM jsonb_array_elements(m.prose -> 'live_zones') WITH ORDINALITY e(z, ord)
            UNION ALL
            SELECT 'dead', e.ord, e.z || jsonb_build_object('start', (e.z ->> 'start')::int + m.offs,
                                                            'end', (e.z ->> 'end')::int + m.offs)
            FROM jsonb_array_elements(m.prose -> 'dead_zone_summaries') WITH ORDINALITY e(z, ord)) z
        GROUP BY m.parent_metablock_id)
    INSERT INTO memory.holographic_blocks (block_id, block_kind, prose, universal_embedding, native_embedding,
        flux_metrics, salience_scores, coherence_gain, ties_merge_weight, session_id, user_id, user_tier,
        arc_start_time, arc_end_time, session_continuity_flag, citations, preoccupation_centroid_id,
        cycle_date, first_turn, last_turn, cycle_no)
    SELECT m.parent_metablock_id, 'compound',
           jsonb_build_object(
               'anterior_margin', (array_agg(m.prose ->> 'anterior_margin' ORDER BY m.chain_pos))[1],
               'live_zones', coalesce((SELECT z.live FROM zones z WHERE z.id = m.parent_metablock_id), '[]'),
               'dead_zone_summaries', coalesce((SELECT z.dead FROM zones z WHERE z.id = m.parent_metablock_id), '[]'),
               'posterior_margin', (array_agg(m.prose ->> 'posterior_margin' ORDER BY m.chain_pos DESC))[1]),
           l2_normalize(sum(array_fill((0.01 + m.ties_merge_weight)::real, ARRAY[v_udim])::vector * m.universal_embedding)),
           l2_normalize(sum(array_fill((0.01 + m.ties_merge_weight)::real, ARRAY[v_ndim])::vector * m.native_embedding)),
           jsonb_build_object('peak_perplexity', max(m.peak),
                              'baseline_perplexity', (array_agg(m.baseline ORDER BY m.chain_pos))[1],
                              'final_perplexity', (array_agg(m.final ORDER BY m.chain_pos DESC))[1],
                              'flux_reversal_quality', sum(m.quality), 'arc_duration_turns', sum(m.duration)),
           memory._mean_salience(jsonb_agg(m.salience_scores)),
           coalesce(avg(m.coherence_gain), 0), coalesce(avg(m.ties_merge_weight), 0),
           (array_agg(m.session_id ORDER BY m.chain_pos))[1], p_user_id, u.tier,
           min(m.start_time), max(m.end_time), NOT (array_agg(m.resolved ORDER BY m.chain_pos DESC))[1], '[]', pc.centroid_id,
           v_cycle_date, (array_agg(m.first_turn ORDER BY m.chain_pos))[1], (array_agg(m.last_turn ORDER BY m.chain_pos))[1],
           u.cycles
    FROM members m
    JOIN memory.users u ON u.user_id = p_user_id
    LEFT JOIN memory.preoccupation_centroids pc ON pc.user_id = p_user_id
    GROUP BY m.parent_metablock_id, u.tier, u.cycles, pc.centroid_id;

    INSERT INTO memory.holographic_blocks (block_id, block_kind, arc_id, prose, native_embedding, universal_embedding,
        flux_metrics, salience_scores, coherence_gain, ties_merge_weight, session_id, user_id, user_tier,
        arc_start_time, arc_end_time, parent_metablock_id, session_continuity_flag, continues_from, continued_by,
        citations, preoccupation_centroid_id, cycle_date, first_turn, last_turn, cycle_no)
    SELECT b.block_id, b.block_kind, b.arc_id, b.prose, b.native_embedding, b.universal_embedding,
           jsonb_build_object('peak_perplexity', b.peak, 'baseline_perplexity', b.baseline,
                              'final_perplexity', b.final, 'flux_reversal_quality', b.quality,
                              'arc_duration_turns', b.duration),
           b.salience_scores, coalesce(b.coherence_gain, 0), coalesce(b.ties_merge_weight, 0),
           b.session_id, p_user_id, u.tier, b.start_time, b.end_time, b.parent_metablock_id, NOT b.resolved,
           b.continues_from, b.continued_by, coalesce(b.citations, '[]'), pc.centroid_id,
           v_cycle_date, b.first_turn, b.last_turn, u.cycles
    FROM memory.night_blocks b
    JOIN memory.users u ON u.user_id = p_user_id
    LEFT JOIN memory.preoccupation_centroids pc ON pc.user_id = p_user_id
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    -- The earlier part, stored by a previous cycle, learns what continues it.
    UPDATE memory.holographic_blocks e SET continued_by = b.block_id
    FROM memory.night_blocks b
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND e.block_id = b.continues_from AND e.continued_by IS NULL;

    WITH mine AS (SELECT b.* FROM memory.night_blocks b WHERE b.run_id = p_run_id AND b.user_id = p_user_id)
    INSERT INTO memory.block_relationships (user_id, source_block_id, target_block_id, relationship_type, strength)
    SELECT p_user_id, b.block_id, b.continues_from, 'continues', NULL::float8 FROM mine b WHERE b.continues_from IS NOT NULL
    UNION ALL
    SELECT p_user_id, b.block_id, (b.citations ->> 0)::uuid, 'cites', NULL FROM mine b WHERE jsonb_array_length(b.citations) > 0
    UNION ALL
    SELECT p_user_id, b.parent_metablock_id, b.block_id, 'derived_from', NULL FROM mine b WHERE b.parent_metablock_id IS NOT NULL
    UNION ALL
    SELECT p_user_id, b2.block_id, b1.block_id, 'thematic', 1 - (b1.universal_embedding <=> b2.universal_embedding)
    FROM mine b1 JOIN mine b2 ON b1.start_time < b2.start_time OR (b1.start_time = b2.start_time AND b1.block_id < b2.block_id)
    WHERE b1.block_kind = 'arc' AND b2.block_kind = 'arc'  -- themes tie arcs; gap blocks sit between them
      AND 1 - (b1.universal_embedding <=> b2.universal_embedding) >= v_thematic
    ON CONFLICT DO NOTHING;

    -- Each block's zones with the turns they came from, and what it keeps of each turn (the
    -- turn's time, reference and universal embedding come along): recall finds the turn
    -- there once retention has deleted it from day_table.
    INSERT INTO memory.block_zones (block_id, user_id, zone_no, zone_kind, session_id, first_turn, last_turn, content)
    SELECT z.block_id, p_user_id, (row_number() OVER (PARTITION BY z.block_id ORDER BY z.first_turn) - 1)::smallint,
           z.kind, z.session_id, z.first_turn, z.last_turn, z.content
    FROM (SELECT b.block_id, 'anterior_margin' AS kind, b.session_id, b.first_turn, b.start_turn - 1 AS last_turn,
                 b.prose ->> 'anterior_margin' AS content
          FROM memory.night_blocks b WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.first_turn < b.start_turn
          UNION ALL
          SELECT z.block_id, CASE WHEN z.live THEN 'live' ELSE 'dead' END, z.session_id, z.first_turn, z.last_turn,
                 coalesce(z.content, '')
          FROM memory.night_zones z WHERE z.run_id = p_run_id AND z.user_id = p_user_id
          UNION ALL
          SELECT b.block_id, 'posterior_margin', b.session_id, b.end_turn + 1, b.last_turn, b.prose ->> 'posterior_margin'
          FROM memory.night_blocks b WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.last_turn > b.end_turn) z;
    INSERT INTO memory.block_turns (block_id, turn_number, user_id, session_id, zone_no, role, kept, verbatim,
                                    created_at, external_ref, universal_embedding)
    SELECT t.block_id, t.turn_number, p_user_id, b.session_id, z.zone_no, d.role, t.kept, t.kept = d.content,
           d.created_at, d.external_ref, d.universal_embedding
    FROM memory.night_block_turns t
    JOIN memory.night_blocks b ON b.run_id = t.run_id AND b.user_id = t.user_id AND b.block_id = t.block_id
    JOIN memory.day_table d ON d.session_id = b.session_id AND d.user_id = b.user_id AND d.turn_number = t.turn_number
    JOIN memory.block_zones z ON z.user_id = p_user_id AND z.block_id = t.block_id
         AND t.turn_number BETWEEN z.first_turn AND z.last_turn
    WHERE t.run_id = p_run_id AND t.user_id = p_user_id AND t.kept ~ '\S';

    -- Bookkeeping, not an UPDATE of day_table (that would touch its HNSW indexes).
    INSERT INTO memory.consolidations (user_id, session_id, first_turn, last_turn, cycle_date, cycle_no)
    SELECT p_user_id, n.session_id, n.first_turn, n.last_turn, v_cycle_date, u.cycles
    FROM memory.night_sessions n JOIN memory.users u ON u.user_id = n.user_id
    WHERE n.run_id = p_run_id AND n.user_id = p_user_id;
    UPDATE memory.sessions s SET consolidated_turn = n.last_turn
    FROM memory.night_sessions n WHERE n.run_id = p_run_id AND n.user_id = p_user_id AND s.session_id = n.session_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_06_storage(bigint, uuid) IS
'Night Cycle stage 6, storage, for one user of a run. Writes the blocks of memory.night_blocks to memory.holographic_blocks (flux_metrics and prose in the spec''s shapes; cycle_no = the user''s cycle, from which stage 7 counts the tier''s block_cycles), each block''s zones with their turn ranges (memory.block_zones) and what it keeps of each turn (memory.block_turns: verbatim for live zones and margins, the summary''s sentences for dead zones, with the turn''s role, time, external reference and universal embedding). A continuation whose earlier block forms in the same run links them (continues_from / continued_by, a continues relationship) and makes a compound metablock (parent_metablock_id; prose zones concatenated with shifted offsets, metrics combined, salience averaged, embeddings weighted by ties_merge_weight; derived_from relationships to its constituents). An earlier block stored by a previous cycle is not merged: from another session it becomes a citation (citations and a cites relationship); the earlier part of an arc of the same session, consolidated while the arc was still open, is continued (continues_from, its continued_by, a continues relationship). Arc blocks of the run at least night.thematic_similarity alike get a thematic relationship. Records the consolidated turns per session with the user''s cycle (memory.consolidations, sessions.consolidated_turn). Returns the number of blocks stored (compounds not counted).';
REVOKE ALL ON FUNCTION memory.night_06_storage(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_06_storage(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(6::smallint, 'storage', 'memory.night_06_storage(bigint, uuid)', 'taken');
