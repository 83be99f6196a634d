-- The Hippocampus side of the Cortex: what a block looks like on its way to LanceDB
-- (prose compression), marking it migrated, reading blocks for Bifocal Packets, importing
-- a packet as a block.

CREATE OR REPLACE FUNCTION memory._condense(p_text text, p_max int, p_from_end boolean DEFAULT false)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT CASE
        WHEN p_text IS NULL THEN NULL
        WHEN length(p_text) <= p_max THEN p_text
        WHEN p_from_end THEN '…' || btrim(right(p_text, p_max - 1))
        ELSE coalesce(nullif(btrim(substring(left(p_text, p_max - 1) FROM '^(.*\S)\s')), ''), left(p_text, p_max - 1)) || '…'
    END
$$;
COMMENT ON FUNCTION memory._condense(text, int, boolean) IS
'Internal. Shortens text to at most p_max characters: cut at the last word boundary and marked with an ellipsis, or with p_from_end its last characters after an ellipsis. Text already short enough is returned unchanged.';
REVOKE ALL ON FUNCTION memory._condense(text, int, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._condense(text, int, boolean) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.compress_prose_for_cortex(p_prose jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_dead int := (ops.setting('cortex.dead_summary_chars'))::int;
    v_margin int := (ops.setting('cortex.margin_chars'))::int;
    v_anterior text := p_prose ->> 'anterior_margin';
    v_posterior text := p_prose ->> 'posterior_margin';
BEGIN
    IF p_prose IS NULL OR NOT p_prose ?& ARRAY['anterior_margin', 'live_zones', 'dead_zone_summaries', 'posterior_margin'] THEN
        RAISE EXCEPTION 'p_prose: must have anterior_margin, live_zones, dead_zone_summaries and posterior_margin'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object(
        -- the turn next to the arc: the anterior margin's last line, the posterior's first
        'anterior_margin', memory._condense((regexp_match(coalesce(v_anterior, ''), '([^\n]*)$'))[1], v_margin, true),
        'posterior_margin', memory._condense(split_part(coalesce(v_posterior, ''), E'\n', 1), v_margin),
        -- live zones: the same jsonb value, so the same bytes
        'live_zones', p_prose -> 'live_zones',
        'dead_zone_summaries', coalesce((
            SELECT jsonb_agg(z.value || jsonb_build_object('summary', memory._condense(
                       -- the whole RE is non-greedy (its first quantifier is): the shortest first sentence
                       coalesce((regexp_match(btrim(z.value ->> 'summary'), '^(.+?[.!?…])(\s|$)'))[1], btrim(z.value ->> 'summary')),
                       v_dead)) ORDER BY z.ordinality)
            FROM jsonb_array_elements(p_prose -> 'dead_zone_summaries') WITH ORDINALITY z), '[]'));
END
$$;
COMMENT ON FUNCTION memory.compress_prose_for_cortex(jsonb) IS
'How a block''s prose compresses on its way to the Cortex (spec 004 sections 5.3 and 6.4): each dead-zone summary is condensed further to its first sentence and at most cortex.dead_summary_chars characters; the anterior margin keeps only its last turn and the posterior margin its first, each at most cortex.margin_chars characters; live zones pass through unchanged, byte for byte.';
REVOKE ALL ON FUNCTION memory.compress_prose_for_cortex(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.compress_prose_for_cortex(jsonb) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.blocks_for_transfer(p_block_ids uuid[], p_compress boolean DEFAULT true)
RETURNS TABLE (block_id uuid, block_kind text, user_id uuid, session_id uuid, user_tier text, prose jsonb,
               prose_bytes_before int, prose_bytes_after int,
               universal_embedding vector, native_embedding vector, flux_metrics jsonb, salience_scores jsonb,
               coherence_gain double precision, ties_merge_weight double precision,
               arc_start_time timestamptz, arc_end_time timestamptz, created_at timestamptz, cycle_date date,
               first_turn int, last_turn int, parent_metablock_id uuid, session_continuity_flag boolean,
               continues_from uuid, continued_by uuid, citations uuid[], preoccupation_centroid_id uuid,
               derived_from uuid, migrated_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT b.block_id, b.block_kind, b.user_id, b.session_id, b.user_tier, p.prose,
           octet_length(b.prose::text), octet_length(p.prose::text),
           b.universal_embedding, b.native_embedding, b.flux_metrics, b.salience_scores,
           b.coherence_gain, b.ties_merge_weight, b.arc_start_time, b.arc_end_time, b.created_at, b.cycle_date,
           b.first_turn, b.last_turn, b.parent_metablock_id, b.session_continuity_flag, b.continues_from, b.continued_by,
           ARRAY(SELECT c::uuid FROM jsonb_array_elements_text(coalesce(b.citations, '[]')) c),
           b.preoccupation_centroid_id, b.derived_from, b.migrated_at
    FROM memory.holographic_blocks b
    CROSS JOIN LATERAL (SELECT CASE WHEN p_compress THEN memory.compress_prose_for_cortex(b.prose) ELSE b.prose END AS prose) p
    WHERE b.block_id = ANY (p_block_ids)
    ORDER BY b.arc_start_time, b.block_id
$$;
COMMENT ON FUNCTION memory.blocks_for_transfer(uuid[], boolean) IS
'The blocks with these ids as they leave the Hippocampus: for the Cortex (p_compress, prose compressed by memory.compress_prose_for_cortex) or for a Bifocal Packet (full prose). Embeddings come as vectors (float32, full precision; binary transfer is cheapest); citations as uuid[]; prose sizes before and after compression in bytes. Unknown ids are simply absent.';
REVOKE ALL ON FUNCTION memory.blocks_for_transfer(uuid[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.blocks_for_transfer(uuid[], boolean) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.mark_migrated(p_block_ids uuid[])
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n int;
BEGIN
    UPDATE memory.holographic_blocks b
    SET migrated_at = clock_timestamp(), native_embedding = NULL
    WHERE b.block_id = ANY (p_block_ids) AND b.migrated_at IS NULL;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.mark_migrated(uuid[]) IS
'Marks blocks as moved to the Cortex, after the worker has written them there: sets migrated_at and releases their native embedding (the Cortex keeps both at full precision). The universal embedding, the zones and what the block keeps of each turn (memory.block_turns) stay, so a psql user still finds the block and its turns (memory.recall, memory.recall_blocks). Blocks already marked are left alone, so a repeated mark is harmless. Returns the number newly marked.';
REVOKE ALL ON FUNCTION memory.mark_migrated(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.mark_migrated(uuid[]) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.import_block(
    p_block_id uuid,
    p_session_id uuid,
    p_prose jsonb,
    p_universal_embedding real[],
    p_native_embedding real[],
    p_at timestamptz,
    p_coherence_gain double precision DEFAULT 0,
    p_salience_composite double precision DEFAULT NULL,
    p_preoccupation_centroid_id uuid DEFAULT NULL,
    p_citations uuid[] DEFAULT '{}',
    p_derived_from uuid DEFAULT NULL,
    p_continues_from uuid DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid;
    v_tier text;
    v_cycle int;
    v_missing uuid;
    v_n int;
BEGIN
    SELECT s.user_id, u.tier, u.cycles INTO v_user, v_tier, v_cycle
    FROM memory.sessions s JOIN memory.users u USING (user_id)
    WHERE s.session_id = p_session_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_session_id: unknown session %', p_session_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_block_id IS NULL THEN
        RAISE EXCEPTION 'p_block_id: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_at IS NULL THEN
        RAISE EXCEPTION 'p_at: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_prose IS NULL OR NOT p_prose ?& ARRAY['anterior_margin', 'live_zones', 'dead_zone_summaries', 'posterior_margin'] THEN
        RAISE EXCEPTION 'p_prose: must have anterior_margin, live_zones, dead_zone_summaries and posterior_margin'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x INTO v_missing FROM unnest(coalesce(p_citations, '{}') || p_derived_from || p_continues_from) x
    WHERE x IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.holographic_blocks b WHERE b.block_id = x AND b.user_id = v_user)
    LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'references: unknown block % (citations, derived_from and continues_from must name blocks in the Hippocampus)', v_missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    -- The key is (block_id, user_id) (a distributable key: revision 0018), but the Cortex and the
    -- worker know a block by its id alone, so an id another user holds is still refused. The
    -- lock makes two imports of one id for two users take turns instead of both passing.
    PERFORM pg_advisory_xact_lock(hashtextextended('memory.import_block:' || p_block_id::text, 0));
    IF EXISTS (SELECT 1 FROM memory.holographic_blocks b WHERE b.block_id = p_block_id AND b.user_id <> v_user) THEN
        RAISE EXCEPTION 'p_block_id: block % exists already and was not imported for this user; nothing replaced', p_block_id
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO memory.holographic_blocks (block_id, block_kind, prose, universal_embedding, native_embedding,
        flux_metrics, salience_scores, coherence_gain, ties_merge_weight, session_id, user_id, user_tier,
        arc_start_time, arc_end_time, citations, preoccupation_centroid_id, derived_from, continues_from,
        cycle_date, first_turn, last_turn, cycle_no)
    VALUES (p_block_id, 'imported', p_prose,
            memory._checked_vector(p_universal_embedding, 'p_universal_embedding', 'universal'),
            memory._checked_vector(p_native_embedding, 'p_native_embedding', 'native'),
            '{}', CASE WHEN p_salience_composite IS NULL THEN '{}' ELSE jsonb_build_object('composite', p_salience_composite) END,
            coalesce(p_coherence_gain, 0), 0, p_session_id, v_user, v_tier, p_at, p_at,
            to_jsonb(coalesce(p_citations, '{}')), p_preoccupation_centroid_id, p_derived_from, p_continues_from,
            p_at::date, 0, 0, v_cycle)
    ON CONFLICT (block_id, user_id) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n = 0 AND NOT EXISTS (SELECT 1 FROM memory.holographic_blocks b
                               WHERE b.block_id = p_block_id AND b.user_id = v_user AND b.block_kind = 'imported') THEN
        -- Only a block this import created for the same user may stand in for it.
        RAISE EXCEPTION 'p_block_id: block % exists already and was not imported for this user; nothing replaced', p_block_id
            USING ERRCODE = 'unique_violation';
    END IF;
    IF v_n > 0 THEN
        INSERT INTO memory.block_relationships (user_id, source_block_id, target_block_id, relationship_type)
        SELECT v_user, p_block_id, x, 'cites' FROM unnest(coalesce(p_citations, '{}')) x
        UNION ALL SELECT v_user, p_block_id, p_derived_from, 'derived_from' WHERE p_derived_from IS NOT NULL
        UNION ALL SELECT v_user, p_block_id, p_continues_from, 'continues' WHERE p_continues_from IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN v_n > 0;
END
$$;
COMMENT ON FUNCTION memory.import_block(uuid, uuid, jsonb, real[], real[], timestamptz, double precision, double precision, uuid, uuid[], uuid, uuid) IS
'Stores a block received in a Bifocal Packet in the Hippocampus, in an existing session of the receiving user (block_kind imported, times from the packet, retention by the user''s tier). Vectors are checked like every other (dimensions, NaN/Inf, named by parameter); citations, derived_from and continues_from must name blocks the Hippocampus knows, and become relationships. A block id already imported for the same user is left unchanged (returns false), so importing a packet twice is harmless; any other block with that id is an error naming it, and nothing is replaced.';
REVOKE ALL ON FUNCTION memory.import_block(uuid, uuid, jsonb, real[], real[], timestamptz, double precision, double precision, uuid, uuid[], uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.import_block(uuid, uuid, jsonb, real[], real[], timestamptz, double precision, double precision, uuid, uuid[], uuid, uuid) TO psimem_admin;
