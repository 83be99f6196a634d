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
    -- The summariser returns the sentences it keeps, each with the turn it came from (NULL:
    -- a sentence standing for the whole zone); what a turn keeps goes to memory.block_turns.
    EXECUTE format($q$
        WITH kept AS MATERIALIZED (
            SELECT z.block_id, z.first_turn AS zone, f.turn_number, f.sentence, f.ord
            FROM memory.night_zones z
            CROSS JOIN LATERAL %s(z.session_id, z.first_turn, z.last_turn) WITH ORDINALITY f(turn_number, sentence, ord)
            WHERE z.run_id = $1 AND z.user_id = $2 AND NOT z.live AND f.sentence ~ '\S'),
        per_turn AS (
            UPDATE memory.night_block_turns t SET kept = x.sentences
            FROM (SELECT k.block_id, k.turn_number, string_agg(k.sentence, ' ' ORDER BY k.ord) AS sentences
                  FROM kept k WHERE k.turn_number IS NOT NULL GROUP BY k.block_id, k.turn_number) x
            WHERE t.run_id = $1 AND t.user_id = $2 AND t.block_id = x.block_id AND t.turn_number = x.turn_number)
        UPDATE memory.night_zones z SET content = x.summary
        FROM (SELECT k.block_id, k.zone, string_agg(k.sentence, ' ' ORDER BY k.ord) AS summary
              FROM kept k GROUP BY k.block_id, k.zone) x
        WHERE z.run_id = $1 AND z.user_id = $2 AND z.block_id = x.block_id AND z.first_turn = x.zone $q$, v_summariser)
    USING p_run_id, p_user_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    -- Live zones and margins keep their turns whole.
    UPDATE memory.night_block_turns t SET kept = d.content
    FROM memory.night_blocks b, memory.day_table d
    WHERE t.run_id = p_run_id AND t.user_id = p_user_id AND b.run_id = t.run_id AND b.user_id = t.user_id
      AND b.block_id = t.block_id AND d.session_id = b.session_id AND d.user_id = b.user_id AND d.turn_number = t.turn_number
      AND (t.live OR t.turn_number < b.start_turn OR t.turn_number > b.end_turn);
    UPDATE memory.night_blocks b SET prose = jsonb_build_object(
        'anterior_margin', coalesce((SELECT string_agg(d.role || ': ' || d.content, E'\n' ORDER BY d.turn_number)
                                     FROM memory.day_table d WHERE d.session_id = b.session_id AND d.user_id = b.user_id
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
                                      FROM memory.day_table d WHERE d.session_id = b.session_id AND d.user_id = b.user_id
                                        AND d.turn_number > b.end_turn AND d.turn_number <= b.last_turn), ''))
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_04_compression(bigint, uuid) IS
'Night Cycle stage 4, compression, for the blocks stage 2 formed for one user of a run. Dead zones are summarised by the function the night.summariser setting names (memory.summarise_facts by default), called with the session and the zone''s first and last turn and returning the sentences it keeps with the turn each came from: the zone''s summary is those sentences in order, and each turn keeps its own (memory.night_block_turns.kept, for memory.block_turns); turns of live zones and margins keep their whole text. Builds each block''s prose in the spec''s shape: anterior_margin, live_zones [{start, end, content}], dead_zone_summaries [{start, end, summary}], posterior_margin, with start and end as 0-based turn offsets within the block. Returns the number of dead zones summarised (that kept a sentence).';
REVOKE ALL ON FUNCTION memory.night_04_compression(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_04_compression(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(4::smallint, 'compression', 'memory.night_04_compression(bigint, uuid)', 'taken');
