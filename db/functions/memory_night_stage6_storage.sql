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

CREATE OR REPLACE FUNCTION memory._night_stage6_storage(p_user_id uuid, p_cycle_date date)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_thematic float8 := (ops.setting('night.thematic_similarity'))::float8;
    v_udim int := (ops.setting('embedding.universal_dim'))::int;
    v_ndim int := (ops.setting('embedding.native_dim'))::int;
    v_n int;
BEGIN
    -- Continuations found in stage 1. Both blocks formed now (one hippocampal period):
    -- continues_from / continued_by and a metablock. The earlier block already stored by
    -- a previous cycle: a citation only (spec 004 section 4.4).
    UPDATE _night_blocks b SET continued_by = nb.block_id
    FROM memory.flux_arcs f JOIN _night_blocks nb ON nb.arc_id = f.continued_by_arc_id
    WHERE f.arc_id = b.arc_id;
    UPDATE _night_blocks b SET continues_from = pb.block_id FROM _night_blocks pb WHERE pb.continued_by = b.block_id;
    UPDATE _night_blocks b SET citations = jsonb_build_array(hb.block_id)
    FROM memory.flux_arcs f JOIN memory.holographic_blocks hb ON hb.arc_id = f.arc_id AND hb.block_kind = 'arc'
    WHERE f.continued_by_arc_id = b.arc_id AND f.user_id = p_user_id;

    WITH RECURSIVE chain AS (
        SELECT b.block_id AS root, b.block_id, 1 AS pos FROM _night_blocks b
        WHERE b.continued_by IS NOT NULL AND b.continues_from IS NULL
        UNION ALL
        SELECT c.root, n.block_id, c.pos + 1
        FROM chain c JOIN _night_blocks cur ON cur.block_id = c.block_id JOIN _night_blocks n ON n.block_id = cur.continued_by)
    INSERT INTO _night_chain (root, block_id, pos) SELECT root, block_id, pos FROM chain;
    UPDATE _night_blocks b SET parent_metablock_id = c.compound_id
    FROM (SELECT root, gen_random_uuid() AS compound_id FROM _night_chain GROUP BY root) c
    JOIN _night_chain m ON m.root = c.root WHERE m.block_id = b.block_id;

    -- Compound blocks first (constituents reference them), then the arc blocks. A compound's
    -- prose concatenates its constituents' zones with shifted offsets; its metrics combine
    -- theirs; its embeddings are their centroid weighted by ties_merge_weight.
    WITH members AS (
        SELECT b.*, c.root, c.pos,
               coalesce(sum(b.last_turn - b.first_turn + 1) OVER (PARTITION BY c.root ORDER BY c.pos
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS offs
        FROM _night_blocks b JOIN _night_chain c ON c.block_id = b.block_id),
    zones AS (
        SELECT m.parent_metablock_id AS id,
               jsonb_agg(z.zone ORDER BY m.pos, z.ord) FILTER (WHERE z.kind = 'live') AS live,
               jsonb_agg(z.zone ORDER BY m.pos, z.ord) FILTER (WHERE z.kind = 'dead') AS dead
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
        cycle_date, first_turn, last_turn, hippocampus_until)
    SELECT m.parent_metablock_id, 'compound',
           jsonb_build_object(
               'anterior_margin', (array_agg(m.prose ->> 'anterior_margin' ORDER BY m.pos))[1],
               'live_zones', coalesce((SELECT z.live FROM zones z WHERE z.id = m.parent_metablock_id), '[]'),
               'dead_zone_summaries', coalesce((SELECT z.dead FROM zones z WHERE z.id = m.parent_metablock_id), '[]'),
               'posterior_margin', (array_agg(m.prose ->> 'posterior_margin' ORDER BY m.pos DESC))[1]),
           l2_normalize(sum(array_fill((0.01 + m.ties_merge_weight)::real, ARRAY[v_udim])::vector * m.universal_embedding)),
           l2_normalize(sum(array_fill((0.01 + m.ties_merge_weight)::real, ARRAY[v_ndim])::vector * m.native_embedding)),
           jsonb_build_object('peak_perplexity', max(m.peak),
                              'baseline_perplexity', (array_agg(m.baseline ORDER BY m.pos))[1],
                              'final_perplexity', (array_agg(m.final ORDER BY m.pos DESC))[1],
                              'flux_reversal_quality', sum(m.quality), 'arc_duration_turns', sum(m.duration)),
           memory._mean_salience(jsonb_agg(m.salience_scores)),
           coalesce(avg(m.coherence_gain), 0), coalesce(avg(m.ties_merge_weight), 0),
           (array_agg(m.session_id ORDER BY m.pos))[1], p_user_id, u.tier,
           min(m.start_time), max(m.end_time), NOT (array_agg(m.resolved ORDER BY m.pos DESC))[1], '[]', pc.centroid_id,
           p_cycle_date, (array_agg(m.first_turn ORDER BY m.pos))[1], (array_agg(m.last_turn ORDER BY m.pos))[1],
           p_cycle_date + r.block_cycles
    FROM members m
    JOIN memory.users u ON u.user_id = p_user_id
    JOIN memory.retention_policy r ON r.tier = u.tier
    LEFT JOIN memory.preoccupation_centroids pc ON pc.user_id = p_user_id
    GROUP BY m.parent_metablock_id, u.tier, r.block_cycles, pc.centroid_id;

    INSERT INTO memory.holographic_blocks (block_id, block_kind, arc_id, prose, native_embedding, universal_embedding,
        flux_metrics, salience_scores, coherence_gain, ties_merge_weight, session_id, user_id, user_tier,
        arc_start_time, arc_end_time, parent_metablock_id, session_continuity_flag, continues_from, continued_by,
        citations, preoccupation_centroid_id, cycle_date, first_turn, last_turn, hippocampus_until)
    SELECT b.block_id, 'arc', b.arc_id, b.prose, b.native_embedding, b.universal_embedding,
           jsonb_build_object('peak_perplexity', b.peak, 'baseline_perplexity', b.baseline,
                              'final_perplexity', b.final, 'flux_reversal_quality', b.quality,
                              'arc_duration_turns', b.duration),
           b.salience_scores, coalesce(b.coherence_gain, 0), coalesce(b.ties_merge_weight, 0),
           b.session_id, p_user_id, u.tier, b.start_time, b.end_time, b.parent_metablock_id, NOT b.resolved,
           b.continues_from, b.continued_by, coalesce(b.citations, '[]'), pc.centroid_id,
           p_cycle_date, b.first_turn, b.last_turn, p_cycle_date + r.block_cycles
    FROM _night_blocks b
    JOIN memory.users u ON u.user_id = p_user_id
    JOIN memory.retention_policy r ON r.tier = u.tier
    LEFT JOIN memory.preoccupation_centroids pc ON pc.user_id = p_user_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;

    INSERT INTO memory.block_relationships (user_id, source_block_id, target_block_id, relationship_type, strength)
    SELECT p_user_id, b.block_id, b.continues_from, 'continues', NULL::float8 FROM _night_blocks b WHERE b.continues_from IS NOT NULL
    UNION ALL
    SELECT p_user_id, b.block_id, (b.citations ->> 0)::uuid, 'cites', NULL FROM _night_blocks b WHERE jsonb_array_length(b.citations) > 0
    UNION ALL
    SELECT p_user_id, b.parent_metablock_id, b.block_id, 'derived_from', NULL FROM _night_blocks b WHERE b.parent_metablock_id IS NOT NULL
    UNION ALL
    SELECT p_user_id, b2.block_id, b1.block_id, 'thematic', 1 - (b1.universal_embedding <=> b2.universal_embedding)
    FROM _night_blocks b1 JOIN _night_blocks b2 ON b1.start_time < b2.start_time
         OR (b1.start_time = b2.start_time AND b1.block_id < b2.block_id)
    WHERE 1 - (b1.universal_embedding <=> b2.universal_embedding) >= v_thematic
    ON CONFLICT DO NOTHING;

    -- Bookkeeping, not an UPDATE of day_table (that would touch its HNSW indexes).
    INSERT INTO memory.consolidations (user_id, session_id, first_turn, last_turn, cycle_date)
    SELECT p_user_id, n.session_id, n.first_turn, n.last_turn, p_cycle_date FROM _night_sessions n WHERE n.user_id = p_user_id;
    UPDATE memory.sessions s SET consolidated_turn = n.last_turn
    FROM _night_sessions n WHERE s.session_id = n.session_id AND n.user_id = p_user_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory._night_stage6_storage(uuid, date) IS
'Night Cycle stage 6, storage. Writes the blocks to memory.holographic_blocks (flux_metrics and prose in the spec''s shapes; hippocampus_until = cycle date + the tier''s block_cycles). A continuation whose earlier block forms in the same cycle links them (continues_from / continued_by, a continues relationship) and makes a compound metablock (parent_metablock_id; prose zones concatenated with shifted offsets, metrics combined, salience averaged, embeddings weighted by ties_merge_weight; derived_from relationships to its constituents); one whose earlier block is from a previous cycle becomes a citation (citations and a cites relationship). Blocks of the cycle at least night.thematic_similarity alike get a thematic relationship. Records the consolidated turns per session. Returns the number of arc blocks stored.';
REVOKE ALL ON FUNCTION memory._night_stage6_storage(uuid, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_stage6_storage(uuid, date) TO psimem_admin;
