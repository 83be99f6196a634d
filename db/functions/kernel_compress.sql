-- Compression (spec 001 section 5: "roll older notes into one summary after ~5 items"):
-- once a subject holds kernel.compress_after live notes, all but the newest roll into the
-- subject's summary card (made or rewritten), linked to each by a reflects_on edge. The
-- notes are kept (recall returns the summary in their place) until pruning removes them.
-- The text comes from the function the kernel.summariser setting names: extractive by
-- default, replaceable by an LLM-backed one, as the Night Cycle's night.summariser is.

CREATE OR REPLACE FUNCTION kernel.summarise_extractive(p_texts text[], p_max_words int)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_budget int := p_max_words;
    v_pick record;
    v_first text;
    v_words int;
    v_chosen int[] := '{}';
    v_sentences text[] := '{}';
BEGIN
    IF p_max_words IS NULL OR p_max_words < 1 THEN
        RAISE EXCEPTION 'p_max_words: must be at least 1, got %', p_max_words USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Each text's first sentence, most central first: centrality is a text's summed word
    -- overlap (Jaccard) with all the others, so the sentences that say what most texts say
    -- come first; they are kept while they fit the word budget, then put back in text order.
    FOR v_pick IN
        WITH s AS (
            -- (the first quantifier decides an ARE's greediness: a leading \s* would make .+? greedy)
            SELECT x.n, coalesce((regexp_match(btrim(x.t, E' \t\n\r'), '^(.+?[.!?])(\s|$)'))[1], btrim(x.t, E' \t\n\r')) AS sentence,
                   tsvector_to_array(to_tsvector('simple', x.t)) AS words
            FROM unnest(p_texts) WITH ORDINALITY AS x(t, n)
            WHERE x.t ~ '\S')
        SELECT a.n, CASE WHEN a.sentence ~ '[.!?…]$' THEN a.sentence ELSE a.sentence || '.' END AS sentence,
               coalesce(sum(kernel._jaccard(a.words, b.words)) FILTER (WHERE b.n <> a.n), 0) AS centrality
        FROM s a CROSS JOIN s b
        GROUP BY a.n, a.sentence
        ORDER BY centrality DESC, a.n
    LOOP
        v_first := coalesce(v_first, v_pick.sentence);
        v_words := kernel._word_count(v_pick.sentence);
        CONTINUE WHEN v_words > v_budget;
        v_chosen := v_chosen || v_pick.n::int;
        v_sentences := v_sentences || v_pick.sentence;
        v_budget := v_budget - v_words;
    END LOOP;
    IF v_first IS NULL THEN
        RETURN NULL;
    ELSIF cardinality(v_chosen) = 0 THEN
        RETURN kernel._first_words(v_first, p_max_words);  -- even the most central sentence is too long
    END IF;
    RETURN (SELECT string_agg(x.s, ' ' ORDER BY x.n) FROM unnest(v_sentences, v_chosen) AS x(s, n));
END
$$;
COMMENT ON FUNCTION kernel.summarise_extractive(text[], int) IS
'The default kernel summariser (the kernel.summariser setting names it): extractive, no LLM. Takes the first sentence of each text, most central first (summed Jaccard word overlap with the other texts), while they fit in p_max_words words, and returns them in the texts'' order; if none fits, the most central one cut to p_max_words. Any function(text[], int) returning text can replace it, an LLM-backed one included.';
REVOKE ALL ON FUNCTION kernel.summarise_extractive(text[], int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.summarise_extractive(text[], int) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._summarise(p_texts text[])
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_max int := (ops.setting('kernel.summary_max_words'))::int;
    v_text text;
BEGIN
    EXECUTE format('SELECT %s($1, $2)', (ops.setting('kernel.summariser') #>> '{}')::regproc) INTO v_text USING p_texts, v_max;
    -- A replacement summariser may say more than it was asked to: the budget holds anyway.
    RETURN kernel._first_words(v_text, v_max);
END
$$;
COMMENT ON FUNCTION kernel._summarise(text[]) IS
'Internal. Summarises texts with the function the kernel.summariser setting names, in at most kernel.summary_max_words words.';
REVOKE ALL ON FUNCTION kernel._summarise(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._summarise(text[]) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._compress_subject(p_user_id uuid, p_subject text, p_at timestamptz)
RETURNS TABLE (summary_card_id uuid, notes_rolled int)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_notes uuid[];
    v_summary kernel.card;
    v_texts text[];
    v_text text;
    v_total int;
    v_tags text[];
BEGIN
    -- Live notes on the subject, newest first; a note in an open contradiction stays out
    -- (it must surface until resolved, not disappear into a summary).
    SELECT array_agg(c.id ORDER BY c.updated_at DESC, c.id) INTO v_notes
    FROM kernel.card c
    WHERE c.user_id = p_user_id AND c.subject = p_subject AND c.kind = 'note' AND c.rolled_into IS NULL
      AND NOT EXISTS (SELECT 1 FROM kernel.contradiction k
                      WHERE k.resolved_at IS NULL AND (k.card_a = c.id OR k.card_b = c.id));
    IF coalesce(cardinality(v_notes), 0) < (ops.setting('kernel.compress_after'))::int THEN
        RETURN;
    END IF;
    v_notes := v_notes[2:];  -- the newest note stays live
    SELECT * INTO v_summary FROM kernel.card c
    WHERE c.user_id = p_user_id AND c.subject = p_subject AND c.kind = 'summary' AND c.rolled_into IS NULL
    ORDER BY c.updated_at DESC, c.id LIMIT 1;
    -- What the summary said so far (its notes may be pruned since), then the new notes, oldest first.
    SELECT coalesce(array_agg(x.t ORDER BY x.o), '{}') INTO v_texts FROM (
        SELECT regexp_replace(v_summary.summary, '^Summary of [0-9]+ notes: ', '') AS t, 0 AS o WHERE v_summary.id IS NOT NULL
        UNION ALL
        SELECT c.summary, 1 + cardinality(v_notes) - array_position(v_notes, c.id) FROM kernel.card c WHERE c.id = ANY(v_notes)) x;
    v_text := kernel._summarise(v_texts);
    IF v_text IS NULL OR v_text !~ '\S' THEN
        RETURN;  -- a summariser that says nothing rolls nothing up
    END IF;
    v_total := cardinality(v_notes) + coalesce((SELECT count(*) FROM kernel.card c WHERE c.rolled_into = v_summary.id), 0);
    v_text := format('Summary of %s notes: %s', v_total, v_text);
    -- The notes' tags, without key: tags (a summary states no single fact, so it contradicts nothing).
    SELECT array_agg(m.tag ORDER BY m.n) INTO v_tags FROM (
        SELECT t.tag, min(t.n) AS n
        FROM (SELECT c.tags FROM kernel.card c WHERE c.id = ANY(v_notes || v_summary.id)) c,
             unnest(c.tags) WITH ORDINALITY AS t(tag, n)
        WHERE t.tag NOT LIKE 'key:%' GROUP BY t.tag) m;
    IF v_summary.id IS NULL THEN
        INSERT INTO kernel.card AS c (user_id, summary, tags, source, kind, subject, content_key, ts_config, created_at, updated_at)
        VALUES (p_user_id, v_text, coalesce(v_tags, '{}'), 'journal', 'summary', p_subject, kernel._content_key(v_text),
                (ops.setting('kernel.text_search_config') #>> '{}')::regconfig, p_at, p_at)
        ON CONFLICT (user_id, content_key) DO NOTHING
        RETURNING c.id INTO v_summary.id;
        IF v_summary.id IS NULL THEN
            RETURN;  -- the summary's text is already another card's: leave the notes live
        END IF;
        INSERT INTO kernel.usage (mem_id, user_id) VALUES (v_summary.id, p_user_id);
    ELSE
        BEGIN
            UPDATE kernel.card c SET summary = v_text, tags = coalesce(v_tags, '{}'), updated_at = greatest(c.updated_at, p_at)
            WHERE c.id = v_summary.id;
        EXCEPTION WHEN unique_violation THEN
            RETURN;
        END;
    END IF;
    UPDATE kernel.card c SET rolled_into = v_summary.id WHERE c.id = ANY(v_notes);
    INSERT INTO kernel.edge (user_id, src_id, dst_id, type, created_at)
    SELECT p_user_id, v_summary.id, n.id, 'reflects_on', p_at FROM unnest(v_notes) AS n(id)
    ON CONFLICT (src_id, dst_id, type, user_id) DO NOTHING;
    -- The summary's embeddings: the normalised centroid of its notes' embeddings, per model.
    INSERT INTO kernel.embedding AS e (user_id, mem_id, provider, model, dim, embedding, created_at)
    SELECT p_user_id, v_summary.id, x.provider, x.model, x.dim, l2_normalize(x.centre), p_at
    FROM (SELECT e.provider, e.model, e.dim, avg(e.embedding) AS centre
          FROM kernel.embedding e JOIN kernel.card c ON c.id = e.mem_id
          WHERE c.rolled_into = v_summary.id AND e.user_id = p_user_id
          GROUP BY e.provider, e.model, e.dim) x
    WHERE vector_norm(x.centre) > 0
    ON CONFLICT (mem_id, provider, model, user_id) DO UPDATE SET embedding = EXCLUDED.embedding, dim = EXCLUDED.dim,
        created_at = EXCLUDED.created_at;
    summary_card_id := v_summary.id;
    notes_rolled := cardinality(v_notes);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION kernel._compress_subject(uuid, text, timestamptz) IS
'Internal. When a subject of a user holds at least kernel.compress_after live notes (not rolled up, not in an open contradiction), rolls all but the newest into the subject''s summary card: its text is "Summary of N notes: " and the summariser''s extract of its previous text and the rolled notes (kernel.summariser, at most kernel.summary_max_words words), its tags the notes'' (key: tags left out), its embeddings the normalised centroids of the notes'' per model; reflects_on edges link it to each note. Returns the summary card and the notes rolled, or no row.';
REVOKE ALL ON FUNCTION kernel._compress_subject(uuid, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._compress_subject(uuid, text, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.compress(p_user_id uuid, p_subject text DEFAULT NULL, p_at timestamptz DEFAULT NULL)
RETURNS TABLE (subject text, summary_card_id uuid, notes_rolled int)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_subject text;
BEGIN
    PERFORM kernel._lock_user(v_user);
    FOR v_subject IN
        SELECT c.subject FROM kernel.card c
        WHERE c.user_id = v_user AND c.kind = 'note' AND c.rolled_into IS NULL AND c.subject IS NOT NULL
          AND (p_subject IS NULL OR c.subject = kernel._checked_subject(p_subject))
        GROUP BY c.subject HAVING count(*) >= (ops.setting('kernel.compress_after'))::int
        ORDER BY c.subject
    LOOP
        subject := v_subject;
        SELECT s.summary_card_id, s.notes_rolled INTO summary_card_id, notes_rolled
        FROM kernel._compress_subject(v_user, v_subject, v_at) s;
        IF summary_card_id IS NOT NULL THEN
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION kernel.compress(uuid, text, timestamptz) IS
'Compresses every subject of a user (or only p_subject) that holds kernel.compress_after live notes, as kernel.upsert_card does when it writes such a note; the maintenance job runs it too, so a lowered kernel.compress_after applies to subjects already full. Returns each subject compressed with its summary card and the notes rolled into it.';
REVOKE ALL ON FUNCTION kernel.compress(uuid, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.compress(uuid, text, timestamptz) TO psimem_writer, psimem_admin;
