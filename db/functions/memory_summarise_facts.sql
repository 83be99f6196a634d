-- The default dead-zone summariser: extractive, no LLM, and it keeps the facts. A dead
-- zone's sentences are ranked by what they carry (numbers, dates and times, names and
-- places, first-person statements, substance) before how central they are, and kept up to
-- a share of the zone's text. Each kept sentence says which turn it came from, so recall
-- can return that turn (memory.block_turns) rather than the whole zone.

CREATE OR REPLACE FUNCTION memory._sentence_facts(p_sentence text)
RETURNS double precision
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT (CASE WHEN s ~ '\d' THEN 2 ELSE 0 END)
         + (CASE WHEN s ~* '\m(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|monday|tuesday|wednesday|thursday|friday|saturday|sunday|yesterday|today|tonight|tomorrow|weekend|ago|last (week|month|year|night|time)|next (week|month|year)|since|birthday|anniversary)\M'
                THEN 2 ELSE 0 END)
         -- a capitalised word after the sentence's first (a name, a place, a title), "I" aside
         + (CASE WHEN regexp_replace(s, '^\s*\S+:\s*', '') ~ '\s(?!I\M)[[:upper:]][[:alpha:]]+' THEN 1.5 ELSE 0 END)
         + (CASE WHEN s ~ '\m(I|I''m|I''ve|I''d|I''ll|my|My|mine|me|we|We|our|Our|us)\M' THEN 1.5 ELSE 0 END)
         + (CASE WHEN array_length(regexp_split_to_array(btrim(s), '\s+'), 1) >= 8 THEN 1 ELSE 0 END)
         - (CASE WHEN array_length(regexp_split_to_array(btrim(s), '\s+'), 1) < 4 THEN 2 ELSE 0 END)
    FROM (SELECT coalesce(p_sentence, '') AS s) x
$$;
COMMENT ON FUNCTION memory._sentence_facts(text) IS
'Internal, the default summariser''s fact score of a sentence: +2 for a number, +2 for a date or time word (months, weekdays, yesterday, last week, birthday …), +1.5 for a capitalised word after the first (a name or place; a "Speaker:" prefix and "I" aside), +1.5 for a first-person statement (I, my, we, our …), +1 for eight words or more, -2 for fewer than four (filler such as "Wow, that''s cool!").';
REVOKE ALL ON FUNCTION memory._sentence_facts(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._sentence_facts(text) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.summarise_facts(p_session_id uuid, p_first_turn int, p_last_turn int)
RETURNS TABLE (turn_number int, sentence text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH zone AS (
        SELECT d.turn_number, d.content, d.universal_embedding
        FROM memory.day_table d
        WHERE d.session_id = p_session_id AND d.turn_number BETWEEN p_first_turn AND p_last_turn),
    centre AS (SELECT avg(z.universal_embedding) AS c FROM zone z),
    sentences AS (
        SELECT z.turn_number, s.n, btrim(s.sentence) AS sentence,
               memory._sentence_facts(s.sentence) AS facts,
               coalesce(1 - (z.universal_embedding <=> centre.c), 0) AS centrality
        FROM zone z CROSS JOIN centre
        -- sentence ends: . ! ? or … followed by space and a capital, a quote or a digit
        CROSS JOIN LATERAL regexp_split_to_table(z.content, '(?<=[.!?…])\s+(?=[[:upper:]"''\d])') WITH ORDINALITY s(sentence, n)
        WHERE s.sentence ~ '\S'),
    ranked AS (
        SELECT s.*, sum(length(s.sentence)) OVER (ORDER BY s.facts DESC, s.centrality DESC, s.turn_number, s.n
                                                  ROWS UNBOUNDED PRECEDING) AS upto,
               row_number() OVER (ORDER BY s.facts DESC, s.centrality DESC, s.turn_number, s.n) AS pick
        FROM sentences s)
    SELECT r.turn_number, string_agg(r.sentence, ' ' ORDER BY r.n)
    FROM ranked r
    WHERE r.pick = 1 OR r.upto <= (ops.setting('night.summary_ratio'))::float8 * (SELECT sum(length(z.content)) FROM zone z)
    GROUP BY r.turn_number
    ORDER BY r.turn_number
$$;
COMMENT ON FUNCTION memory.summarise_facts(uuid, int, int) IS
'The default dead-zone summariser (the night.summariser setting names it): extractive, no LLM. Splits the zone''s turns into sentences, ranks them by fact score (memory._sentence_facts: numbers, dates, names and places, first-person statements, substance) and then by how close their turn is to the zone''s mean universal embedding, and keeps them in that order while they fit night.summary_ratio of the zone''s characters (always at least one). Returns, in turn order, each turn that kept something with its kept sentences in their order. Any function with this signature can replace it (an LLM-backed one may return turn_number NULL for a sentence that stands for the whole zone).';
REVOKE ALL ON FUNCTION memory.summarise_facts(uuid, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.summarise_facts(uuid, int, int) TO psimem_admin;
