-- Keeps memory.text_stats and memory.text_totals (BM25's document frequencies for
-- memory.recall) current with every statement that adds turns: one upsert per statement,
-- whatever its number of rows (a COPY of 100,000 turns is one), not one per row.

CREATE OR REPLACE FUNCTION memory._day_table_text_stats()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- SECURITY DEFINER: writers may not write the statistics themselves, and the rows
    -- counted here are the ones row-level security just let them insert. Lexemes are
    -- upserted in one order, so two writers of one user wait for each other, never deadlock.
    INSERT INTO memory.text_stats AS s (user_id, lexeme, turns)
    SELECT n.user_id, l.lexeme, count(*) FROM new_turns n CROSS JOIN LATERAL unnest(n.content_tsv) l
    GROUP BY n.user_id, l.lexeme
    ORDER BY n.user_id, l.lexeme
    ON CONFLICT (user_id, lexeme) DO UPDATE SET turns = s.turns + EXCLUDED.turns;
    INSERT INTO memory.text_totals AS t (user_id, turns, lexemes)
    SELECT n.user_id, count(*), sum(length(n.content_tsv)) FROM new_turns n
    GROUP BY n.user_id
    ORDER BY n.user_id
    ON CONFLICT (user_id) DO UPDATE SET turns = t.turns + EXCLUDED.turns, lexemes = t.lexemes + EXCLUDED.lexemes;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION memory._day_table_text_stats() IS
'Internal, statement trigger on memory.day_table: adds the new turns'' lexemes to memory.text_stats (turns containing each lexeme, per user) and their counts to memory.text_totals. Counts are never decreased when retention deletes turns: they describe the history recall searches.';
REVOKE ALL ON FUNCTION memory._day_table_text_stats() FROM PUBLIC;

DROP TRIGGER IF EXISTS day_table_text_stats ON memory.day_table;
CREATE TRIGGER day_table_text_stats AFTER INSERT ON memory.day_table
    REFERENCING NEW TABLE AS new_turns
    FOR EACH STATEMENT EXECUTE FUNCTION memory._day_table_text_stats();
