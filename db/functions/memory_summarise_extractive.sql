CREATE OR REPLACE FUNCTION memory.summarise_extractive(p_session_id uuid, p_first_turn int, p_last_turn int)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH zone AS (
        SELECT d.turn_number, d.content, d.universal_embedding
        FROM memory.day_table d
        WHERE d.session_id = p_session_id AND d.turn_number BETWEEN p_first_turn AND p_last_turn),
    centre AS (SELECT avg(z.universal_embedding) AS c FROM zone z),
    central AS (
        SELECT z.turn_number,
               left(coalesce((regexp_match(z.content, '^\s*(.+?[.!?])(\s|$)'))[1], btrim(z.content)), 200) AS sentence
        FROM zone z, centre
        ORDER BY z.universal_embedding <=> centre.c NULLS LAST, z.turn_number
        LIMIT (ops.setting('night.summary_sentences'))::int)
    SELECT string_agg(sentence, ' … ' ORDER BY turn_number) FROM central
$$;
COMMENT ON FUNCTION memory.summarise_extractive(uuid, int, int) IS
'The default dead-zone summariser (the night.summariser setting names it): extractive, no LLM. Takes the night.summary_sentences turns of the zone closest (cosine) to the zone''s mean universal embedding and keeps the first sentence of each (at most 200 characters), in turn order. Any function with this signature can replace it, an LLM-backed one included.';
REVOKE ALL ON FUNCTION memory.summarise_extractive(uuid, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.summarise_extractive(uuid, int, int) TO psimem_admin;
