-- Night Cycle stage 4: dead zones summarised, each block's prose in the spec's shape.

CREATE OR REPLACE FUNCTION memory.night_04_compression(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_summariser regproc := (ops.setting('night.summariser') #>> '{}')::regproc;
    v_n bigint;
BEGIN
    EXECUTE format('UPDATE memory.night_zones z SET content = %s(z.session_id, z.first_turn, z.last_turn) '
                   'WHERE z.run_id = $1 AND z.user_id = $2 AND NOT z.live', v_summariser)
    USING p_run_id, p_user_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE memory.night_blocks b SET prose = jsonb_build_object(
        'anterior_margin', coalesce((SELECT string_agg(d.role || ': ' || d.content, E'\n' ORDER BY d.turn_number)
                                     FROM memory.day_table d WHERE d.session_id = b.session_id
                                       AND d.turn_number >= b.first_turn AND d.turn_number < b.start_turn), ''),
        'live_zones', coalesce((SELECT jsonb_agg(jsonb_build_object('start', z.first_turn - b.first_turn,
                                       'end', z.last_turn - b.first_turn, 'content', z.content) ORDER BY z.first_turn)
                                FROM memory.night_zones z
                                WHERE z.run_id = p_run_id AND z.user_id = p_user_id AND z.block_id = b.block_id AND z.live), '[]'),
        'dead_zone_summaries', coalesce((SELECT jsonb_agg(jsonb_build_object('start', z.first_turn - b.first_turn,
                                       'end', z.last_turn - b.first_turn, 'summary', coalesce(z.content, '')) ORDER BY z.first_turn)
                                FROM memory.night_zones z
                                WHERE z.run_id = p_run_id AND z.user_id = p_user_id AND z.block_id = b.block_id AND NOT z.live), '[]'),
        'posterior_margin', coalesce((SELECT string_agg(d.role || ': ' || d.content, E'\n' ORDER BY d.turn_number)
                                      FROM memory.day_table d WHERE d.session_id = b.session_id
                                        AND d.turn_number > b.end_turn AND d.turn_number <= b.last_turn), ''))
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_04_compression(bigint, uuid) IS
'Night Cycle stage 4, compression, for the blocks stage 2 formed for one user of a run. Dead zones are summarised by the function the night.summariser setting names (memory.summarise_extractive by default, called with the session and the zone''s first and last turn); live zones stay verbatim. Builds each block''s prose in the spec''s shape: anterior_margin, live_zones [{start, end, content}], dead_zone_summaries [{start, end, summary}], posterior_margin, with start and end as 0-based turn offsets within the block. Returns the number of dead zones summarised.';
REVOKE ALL ON FUNCTION memory.night_04_compression(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_04_compression(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(4::smallint, 'compression', 'memory.night_04_compression(bigint, uuid)', 'taken');
