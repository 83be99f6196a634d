-- psimem schema (pg_dump --schema-only, normalised). Regenerate: make schema

CREATE SCHEMA bi;

COMMENT ON SCHEMA bi IS 'read-only views for BI tools; no raw private content';

CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA public;

COMMENT ON EXTENSION pg_cron IS 'Job scheduler for PostgreSQL';

CREATE SCHEMA kernel;

COMMENT ON SCHEMA kernel IS 'psimem Core Memory Kernel (spec 001): short user-facing memory cards, journal, hybrid recall';

CREATE SCHEMA memory;

COMMENT ON SCHEMA memory IS 'psimem Hippocampus: users, sessions, the day table and recall';

CREATE SCHEMA ops;

COMMENT ON SCHEMA ops IS 'psimem operations: settings, applied SQL code, job queue and run logs';

CREATE SCHEMA procedural;

COMMENT ON SCHEMA procedural IS 'psimem procedural memory: reflexes, causal edges, the frustration ledger';

CREATE SCHEMA psi;

COMMENT ON SCHEMA psi IS 'psimem ψ-trajectory memory: how each reply was voiced, as oscillator state';

CREATE EXTENSION IF NOT EXISTS plpython3u WITH SCHEMA pg_catalog;

COMMENT ON EXTENSION plpython3u IS 'PL/Python3U untrusted procedural language';

CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;

COMMENT ON EXTENSION pgcrypto IS 'cryptographic functions';

CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;

COMMENT ON EXTENSION vector IS 'vector data type and ivfflat and hnsw access methods';

CREATE TABLE kernel.card (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    summary text NOT NULL,
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    source text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    kind text DEFAULT 'note'::text NOT NULL,
    subject text,
    rolled_into uuid,
    content_key text NOT NULL,
    ts_config regconfig NOT NULL,
    tsv tsvector NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT card_kind_known CHECK ((kind = ANY (ARRAY['note'::text, 'summary'::text]))),
    CONSTRAINT card_not_rolled_into_itself CHECK ((rolled_into <> id)),
    CONSTRAINT card_source_known CHECK ((source = ANY (ARRAY['msc'::text, 'bio'::text, 'export'::text, 'journal'::text]))),
    CONSTRAINT card_summary_not_blank CHECK ((summary ~ '\S'::text)),
    CONSTRAINT card_tags_not_null CHECK ((array_position(tags, NULL::text) IS NULL)),
    CONSTRAINT card_updated_not_before_created CHECK ((updated_at >= created_at))
);

COMMENT ON TABLE kernel.card IS 'MemoryCard (spec 001 section 3): one short fact, preference or decision about a user. Written by kernel.upsert_card; versioning is off, so a card is overwritten in place.';

COMMENT ON COLUMN kernel.card.kind IS 'note: written by a caller; summary: made by compression from the notes rolled into it';

COMMENT ON COLUMN kernel.card.subject IS 'what the card is about (p_subject, else its first tag that is not a key: tag); compression groups notes by it';

COMMENT ON COLUMN kernel.card.rolled_into IS 'the summary card this note was rolled into by compression; recall returns the summary instead';

COMMENT ON COLUMN kernel.card.content_key IS 'sha-256 of the normalised summary (NFKC where the database is UTF-8, lower case, whitespace collapsed, leading and trailing punctuation dropped); unique per user, so the same fact is one card';

COMMENT ON COLUMN kernel.card.tsv IS 'summary (weight A) and tags (weight B) under ts_config; kept by a trigger';

COMMENT ON COLUMN kernel.card.changed_at IS 'when this row last changed (transaction time); kernel.export_patch selects by it';

CREATE FUNCTION kernel._card(p_user_id uuid, p_card_id uuid, p_field text) RETURNS kernel.card
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_card kernel.card;
BEGIN
    SELECT * INTO v_card FROM kernel.card c WHERE c.id = p_card_id AND c.user_id = p_user_id;
    IF NOT FOUND THEN
        -- the same words for another user's card (hidden by row-level security) and a missing one
        RAISE EXCEPTION '%: unknown card %', p_field, p_card_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN v_card;
END
$$;

COMMENT ON FUNCTION kernel._card(p_user_id uuid, p_card_id uuid, p_field text) IS 'Internal. The card p_card_id of the user, or "unknown card" naming p_field, alike for a card of another user and one that does not exist.';

CREATE FUNCTION kernel._card_before_write() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_replaying boolean := kernel._replaying();
BEGIN
    IF NOT v_replaying THEN
        NEW.content_key := kernel._content_key(NEW.summary);
        NEW.changed_at := now();
    END IF;
    IF TG_OP = 'INSERT' OR NEW.summary IS DISTINCT FROM OLD.summary OR NEW.tags IS DISTINCT FROM OLD.tags
       OR NEW.ts_config IS DISTINCT FROM OLD.ts_config THEN
        NEW.tsv := setweight(to_tsvector(NEW.ts_config, NEW.summary), 'A')
                || setweight(to_tsvector(NEW.ts_config, array_to_string(NEW.tags, ' ')), 'B');
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kernel._card_before_write() IS 'Trigger on kernel.card, before insert or update: sets content_key from the summary (kernel._content_key), tsv from summary (weight A) and tags (weight B) under the card''s ts_config, and changed_at. While a patch is replayed, content_key and changed_at come from the patch.';

CREATE FUNCTION kernel._checked_subject(p_subject text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    IF p_subject IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_subject !~ '\S' OR length(p_subject) > 200 THEN
        RAISE EXCEPTION 'p_subject: must be 1 to 200 characters, not blank' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN lower(btrim(regexp_replace(p_subject, '\s+', ' ', 'g')));
END
$$;

COMMENT ON FUNCTION kernel._checked_subject(p_subject text) IS 'Internal. A card subject, checked (1 to 200 characters) and normalised: lower case, whitespace collapsed.';

CREATE FUNCTION kernel._checked_summary(p_value text, p_field text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_words int := kernel._word_count(p_value);
BEGIN
    IF p_value IS NULL OR p_value !~ '\S' THEN
        RAISE EXCEPTION '%: must not be empty', p_field USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_words > 70 THEN
        RAISE EXCEPTION '%: must be at most 70 words (spec 001), got % words', p_field, v_words
            USING ERRCODE = 'string_data_right_truncation';
    END IF;
    RETURN p_value;
END
$$;

COMMENT ON FUNCTION kernel._checked_summary(p_value text, p_field text) IS 'Internal. A journal summary: not empty, at most 70 words (spec 001); the error names p_field and the count.';

CREATE FUNCTION kernel._checked_tags(p_tags text[]) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_tag text;
BEGIN
    IF p_tags IS NULL THEN
        RETURN NULL;
    END IF;
    IF array_ndims(p_tags) > 1 OR cardinality(p_tags) > 64 THEN
        RAISE EXCEPTION 'p_tags: must be a list of at most 64 tags, got %', cardinality(p_tags)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH v_tag IN ARRAY p_tags LOOP
        IF v_tag IS NULL OR v_tag !~ '\S' OR length(v_tag) > 100 THEN
            RAISE EXCEPTION 'p_tags: every tag must be 1 to 100 characters, not blank' USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    -- lower case, trimmed, each once, in the order first given
    RETURN ARRAY(SELECT t.tag FROM (SELECT lower(btrim(x.tag)) AS tag, min(x.n) AS n
                                    FROM unnest(p_tags) WITH ORDINALITY AS x(tag, n) GROUP BY 1) t ORDER BY t.n);
END
$$;

COMMENT ON FUNCTION kernel._checked_tags(p_tags text[]) IS 'Internal. Checks a card''s tags (at most 64, each 1 to 100 characters) and normalises them: lower case, trimmed, duplicates dropped, first-given order kept. A tag key:<name> marks the fact a card states (two cards with one key: tag and different content contradict).';

CREATE FUNCTION kernel._checked_text(p_value text, p_field text, p_required boolean DEFAULT true) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_max int := (ops.setting('kernel.card_max_chars'))::int;
BEGIN
    IF p_required AND (p_value IS NULL OR p_value !~ '\S') THEN
        RAISE EXCEPTION '%: must not be empty', p_field USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_value) > v_max THEN
        RAISE EXCEPTION '%: must be at most % characters (kernel.card_max_chars), got %', p_field, v_max, length(p_value)
            USING ERRCODE = 'string_data_right_truncation';
    END IF;
    RETURN p_value;
END
$$;

COMMENT ON FUNCTION kernel._checked_text(p_value text, p_field text, p_required boolean) IS 'Internal. A text argument of at most kernel.card_max_chars characters, and not empty or blank when p_required; errors name p_field.';

CREATE FUNCTION kernel._checked_time(p_value timestamp with time zone, p_field text) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_skew interval := (ops.setting('limits.future_skew') #>> '{}')::interval;
BEGIN
    IF p_value IS NULL THEN
        RETURN now();
    END IF;
    IF p_value < '1970-01-01'::timestamptz OR p_value > now() + v_skew THEN
        RAISE EXCEPTION '%: must lie between 1970 and now() + limits.future_skew (%), got %', p_field, v_skew, p_value
            USING ERRCODE = 'datetime_field_overflow';
    END IF;
    RETURN p_value;
END
$$;

COMMENT ON FUNCTION kernel._checked_time(p_value timestamp with time zone, p_field text) IS 'Internal. The time a write is stamped with: p_value (NULL means now()), refused naming p_field when before 1970 or more than limits.future_skew ahead of now().';

CREATE FUNCTION kernel._checked_vector(p_value real[], p_field text) RETURNS public.vector
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    IF p_value IS NULL THEN
        RETURN NULL;
    END IF;
    IF array_ndims(p_value) IS DISTINCT FROM 1 OR cardinality(p_value) > 16000 THEN
        RAISE EXCEPTION '%: must be a list of 1 to 16000 numbers, got % dimensions', p_field,
            coalesce(cardinality(p_value), 0) USING ERRCODE = 'data_exception';
    END IF;
    RETURN memory._finite_vector(p_value, p_field);
END
$$;

COMMENT ON FUNCTION kernel._checked_vector(p_value real[], p_field text) IS 'Internal. A kernel embedding or query vector: any size from 1 to 16000 (embeddings come from many models), finite, not all zeros; errors name p_field. NULL stays NULL.';

CREATE FUNCTION kernel._clock(p_now timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    IF p_now IS NULL THEN
        RETURN now();
    END IF;
    IF NOT isfinite(p_now) OR p_now < '1970-01-01'::timestamptz THEN
        RAISE EXCEPTION 'p_now: must be a finite time after 1970, got %', p_now USING ERRCODE = 'datetime_field_overflow';
    END IF;
    RETURN p_now;
END
$$;

COMMENT ON FUNCTION kernel._clock(p_now timestamp with time zone) IS 'Internal. The clock a read or a maintenance step runs at: p_now (NULL means now()); any finite time after 1970, the future included, so tests and replays can run on a controlled clock.';

CREATE FUNCTION kernel._compress_subject(p_user_id uuid, p_subject text, p_at timestamp with time zone) RETURNS TABLE(summary_card_id uuid, notes_rolled integer)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION kernel._compress_subject(p_user_id uuid, p_subject text, p_at timestamp with time zone) IS 'Internal. When a subject of a user holds at least kernel.compress_after live notes (not rolled up, not in an open contradiction), rolls all but the newest into the subject''s summary card: its text is "Summary of N notes: " and the summariser''s extract of its previous text and the rolled notes (kernel.summariser, at most kernel.summary_max_words words), its tags the notes'' (key: tags left out), its embeddings the normalised centroids of the notes'' per model; reflects_on edges link it to each note. Returns the summary card and the notes rolled, or no row.';

CREATE FUNCTION kernel._config(p_user_id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    -- A user's recall_weights or prune_policy may name some fields only: the rest stay defaults.
    RETURN (WITH d AS (
        SELECT jsonb_build_object(
            'emit_auto_on', true, 'versioning', false,
            'recall_top_k', ops.setting('kernel.recall_top_k'),
            'recall_weights', jsonb_build_object('text', ops.setting('kernel.recall_weight_text'),
                                                 'vector', ops.setting('kernel.recall_weight_vector'),
                                                 'recency', ops.setting('kernel.recall_weight_recency')),
            'prune_policy', jsonb_build_object('stale_after_days', ops.setting('kernel.prune_stale_after_days'),
                                               'max_cards', ops.setting('kernel.prune_max_cards'))) AS v),
    u AS (SELECT coalesce(jsonb_object_agg(c.key, c.value), '{}'::jsonb) AS v FROM kernel.config c WHERE c.user_id = p_user_id)
    SELECT d.v || u.v || jsonb_build_object(
        'recall_weights', (d.v -> 'recall_weights') || coalesce(u.v -> 'recall_weights', '{}'::jsonb),
        'prune_policy', (d.v -> 'prune_policy') || coalesce(u.v -> 'prune_policy', '{}'::jsonb))
    FROM d, u);
END
$$;

COMMENT ON FUNCTION kernel._config(p_user_id uuid) IS 'Internal. A user''s effective MemoryConfig as one JSON object: the defaults (emit_auto_on true, versioning false, the kernel.* settings) overridden by the user''s kernel.config rows, field by field for recall_weights and prune_policy.';

CREATE FUNCTION kernel._config_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_problem text := kernel._config_problem(NEW.key, NEW.value);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'p_value: % %', NEW.key, v_problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kernel._config_check() IS 'Trigger on kernel.config, before insert or update: refuses a value that does not fit its key (kernel._config_problem), naming the key and the rule, whether it comes from kernel.set_config or a plain INSERT or UPDATE.';

CREATE FUNCTION kernel._config_problem(p_key text, p_value jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_item record;
    v_max int;
BEGIN
    IF p_value IS NULL THEN
        RETURN 'must not be null';
    END IF;
    CASE p_key
    WHEN 'emit_auto_on' THEN
        IF jsonb_typeof(p_value) <> 'boolean' THEN
            RETURN 'must be true or false';
        END IF;
    WHEN 'versioning' THEN
        IF p_value <> 'false'::jsonb THEN
            RETURN 'must be false: the kernel keeps no versions, it overwrites a card in place (spec 001 section 6)';
        END IF;
    WHEN 'recall_top_k' THEN
        IF jsonb_typeof(p_value) <> 'number' OR (p_value #>> '{}')::numeric NOT BETWEEN 1 AND 100
           OR (p_value #>> '{}')::numeric <> trunc((p_value #>> '{}')::numeric) THEN
            RETURN 'must be a whole number between 1 and 100';
        END IF;
    WHEN 'recall_weights' THEN
        IF jsonb_typeof(p_value) <> 'object' OR p_value = '{}'::jsonb THEN
            RETURN 'must be an object with weights text, vector and/or recency';
        END IF;
        FOR v_item IN SELECT * FROM jsonb_each(p_value) LOOP
            IF v_item.key NOT IN ('text', 'vector', 'recency') THEN
                RETURN format('has no weight %s (it takes text, vector and recency)', v_item.key);
            END IF;
            IF jsonb_typeof(v_item.value) <> 'number' OR (v_item.value #>> '{}')::numeric NOT BETWEEN 0 AND 100 THEN
                RETURN format('.%s must be a number between 0 and 100', v_item.key);
            END IF;
        END LOOP;
    WHEN 'prune_policy' THEN
        IF jsonb_typeof(p_value) <> 'object' OR p_value = '{}'::jsonb THEN
            RETURN 'must be an object with stale_after_days and/or max_cards';
        END IF;
        FOR v_item IN SELECT * FROM jsonb_each(p_value) LOOP
            IF v_item.key NOT IN ('stale_after_days', 'max_cards') THEN
                RETURN format('has no field %s (it takes stale_after_days and max_cards)', v_item.key);
            END IF;
            CONTINUE WHEN jsonb_typeof(v_item.value) = 'null';  -- null: no limit
            v_max := CASE v_item.key WHEN 'max_cards' THEN 100000000 ELSE 36500 END;
            IF jsonb_typeof(v_item.value) <> 'number'
               OR (v_item.value #>> '{}')::numeric <> trunc((v_item.value #>> '{}')::numeric)
               OR (v_item.value #>> '{}')::numeric NOT BETWEEN 1 AND v_max THEN
                RETURN format('.%s must be null (no limit) or a whole number between 1 and %s', v_item.key, v_max);
            END IF;
        END LOOP;
    ELSE
        RETURN 'is not a key: use one of emit_auto_on, versioning, prune_policy, recall_top_k, recall_weights';
    END CASE;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kernel._config_problem(p_key text, p_value jsonb) IS 'Internal. What is wrong with a MemoryConfig value for its key, or NULL: emit_auto_on a boolean; versioning false (only); recall_top_k a whole number 1-100; recall_weights an object of text, vector, recency weights 0-100; prune_policy an object of stale_after_days (1-36500) and max_cards (1-100000000), each null for no limit.';

CREATE FUNCTION kernel._content_key(p_summary text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
BEGIN
    RETURN encode(sha256(convert_to(lower(regexp_replace(regexp_replace(
               CASE WHEN getdatabaseencoding() = 'UTF8' THEN normalize(p_summary, NFKC) ELSE p_summary END,
               '\s+', ' ', 'g'), '^[\s[:punct:]]+|[\s[:punct:]]+$', '', 'g')), 'UTF8')), 'hex');
END
$_$;

COMMENT ON FUNCTION kernel._content_key(p_summary text) IS 'Internal. A card''s content key: sha-256 (hex) of its summary normalised (Unicode NFKC on a UTF-8 database, whitespace collapsed, leading and trailing punctuation and space dropped, lower case), so "User likes tea." and " user likes  TEA" are one fact.';

CREATE FUNCTION kernel._detect_contradictions(p_user_id uuid, p_card_id uuid, p_vector public.vector, p_provider text, p_model text, p_at timestamp with time zone) RETURNS uuid[]
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_card kernel.card;
    v_threshold double precision := (ops.setting('kernel.contradiction_similarity'))::float8;
    v_found uuid[] := '{}';
    v_hit record;
BEGIN
    SELECT * INTO v_card FROM kernel.card c WHERE c.id = p_card_id;
    IF v_card.kind <> 'note' THEN
        RETURN v_found;
    END IF;
    FOR v_hit IN
        SELECT DISTINCT ON (c.id) c.id, format('both state %s', k.tag) AS reason
        FROM unnest(v_card.tags) AS k(tag)
        JOIN kernel.card c ON c.user_id = p_user_id AND c.tags @> ARRAY[k.tag]
        WHERE k.tag LIKE 'key:%' AND c.id <> p_card_id AND c.kind = 'note' AND c.content_key <> v_card.content_key
        ORDER BY c.id, k.tag
    LOOP
        IF kernel._record_contradiction(p_user_id, p_card_id, v_hit.id, v_hit.reason, p_at) THEN
            v_found := v_found || v_hit.id;
        END IF;
    END LOOP;
    IF p_vector IS NOT NULL THEN
        FOR v_hit IN
            SELECT n.mem_id AS id, format('near-identical embeddings (cosine similarity %s, %s) with different content',
                                         round(n.similarity::numeric, 3), n.model) AS reason
            FROM kernel._nearest(p_user_id, p_vector, 6, p_model, p_provider) n
            JOIN kernel.card c ON c.id = n.mem_id
            WHERE n.mem_id <> p_card_id AND n.similarity >= v_threshold AND c.kind = 'note'
              AND c.content_key <> v_card.content_key AND NOT n.mem_id = ANY(v_found)
        LOOP
            IF kernel._record_contradiction(p_user_id, p_card_id, v_hit.id, v_hit.reason, p_at) THEN
                v_found := v_found || v_hit.id;
            END IF;
        END LOOP;
    END IF;
    RETURN v_found;
END
$$;

COMMENT ON FUNCTION kernel._detect_contradictions(p_user_id uuid, p_card_id uuid, p_vector public.vector, p_provider text, p_model text, p_at timestamp with time zone) IS 'Internal. The notes of the user that a note contradicts: those sharing one of its key: tags, and those whose embedding of the same provider/model has cosine similarity at least kernel.contradiction_similarity, in either case with different content. Records each pair (kernel._record_contradiction) and returns the other cards'' ids where the pair is open.';

CREATE FUNCTION kernel._evidence_list(p_evidence jsonb, p_field text, p_need integer, p_move text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_items jsonb := p_evidence -> p_field;
    v_got int := CASE WHEN jsonb_typeof(v_items) = 'array'
                      THEN (SELECT count(*) FROM jsonb_array_elements(v_items) x WHERE jsonb_typeof(x) = 'string' AND x #>> '{}' ~ '\S')
                      ELSE 0 END;
BEGIN
    IF v_got < p_need THEN
        RAISE EXCEPTION 'p_evidence: % needs p_evidence.% as a list of at least % non-empty texts, got %', p_move, p_field, p_need, v_got
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

COMMENT ON FUNCTION kernel._evidence_list(p_evidence jsonb, p_field text, p_need integer, p_move text) IS 'Internal. Refuses a stage move whose evidence lacks a list of at least p_need non-empty texts under p_field.';

CREATE FUNCTION kernel._first_words(p_text text, p_words integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RETURN CASE WHEN kernel._word_count(p_text) <= p_words THEN btrim(p_text)
                ELSE array_to_string((regexp_split_to_array(btrim(p_text, E' \t\n\r'), '\s+'))[1:p_words], ' ') || '…' END;
END
$$;

COMMENT ON FUNCTION kernel._first_words(p_text text, p_words integer) IS 'Internal. A text cut to its first p_words words (an ellipsis marks the cut).';

CREATE FUNCTION kernel._index_type(p_dim integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    -- pgvector's HNSW takes vector up to 2,000 dimensions and halfvec up to 4,000.
    RETURN CASE WHEN p_dim <= 2000 THEN 'vector' WHEN p_dim <= 4000 THEN 'halfvec' END;
END
$$;

COMMENT ON FUNCTION kernel._index_type(p_dim integer) IS 'Internal. The type an HNSW index on kernel embeddings of this size casts to (vector to 2,000 dimensions, halfvec to 4,000), NULL beyond: such embeddings are searched exactly.';

CREATE FUNCTION kernel._jaccard(p_a text[], p_b text[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RETURN CASE WHEN coalesce(cardinality(p_a), 0) = 0 OR coalesce(cardinality(p_b), 0) = 0 THEN 0
                ELSE (SELECT count(*) FROM (SELECT unnest(p_a) INTERSECT SELECT unnest(p_b)) i)::float8
                   / (SELECT count(*) FROM (SELECT unnest(p_a) UNION SELECT unnest(p_b)) u) END;
END
$$;

COMMENT ON FUNCTION kernel._jaccard(p_a text[], p_b text[]) IS 'Internal. Jaccard similarity of two sets of words (0 when either is empty): how alike two cards are when they have no embeddings to compare.';

CREATE FUNCTION kernel._lock_user(p_user_id uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('psimem.kernel.user'), hashtext(p_user_id::text));
END
$$;

COMMENT ON FUNCTION kernel._lock_user(p_user_id uuid) IS 'Internal. Serialises the writes of one user''s kernel until commit: contradiction checks, compression and journal turn numbers then see every committed card. Different users never wait for each other (up to hash collisions).';

CREATE FUNCTION kernel._nearest(p_user_id uuid, p_vector public.vector, p_limit integer, p_model text DEFAULT NULL::text, p_provider text DEFAULT NULL::text) RETURNS TABLE(mem_id uuid, similarity double precision, model text, method text, rows_seen integer)
    LANGUAGE plpgsql STABLE ROWS 20
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    SET "hnsw.iterative_scan" TO 'relaxed_order'
    SET "hnsw.ef_search" TO '40'
    AS $_$
DECLARE
    v_dim int := vector_dims(p_vector);
    v_type text := kernel._index_type(v_dim);
    v_below int := (ops.setting('kernel.vector_exact_below'))::int;
    v_rows int;
BEGIN
    -- How many rows an exact scan would read, counted only up to the threshold (an index-only
    -- scan of at most that many entries).
    SELECT count(*) INTO v_rows FROM (
        SELECT 1 FROM kernel.embedding e
        WHERE e.user_id = p_user_id AND e.dim = v_dim AND (p_model IS NULL OR e.model = p_model)
          AND (p_provider IS NULL OR e.provider = p_provider)
        LIMIT greatest(v_below, 1)) x;
    IF v_rows >= v_below AND v_type IS NOT NULL AND EXISTS (
            SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass(format('kernel.idx_embedding_hnsw_%s', v_dim))
              AND i.indisvalid) THEN
        PERFORM set_config('hnsw.ef_search', greatest((ops.setting('kernel.ef_search'))::int, p_limit)::text, true);
        -- The index is on embedding::type(dim) WHERE dim = <dim>: the query must say both
        -- literally. Relaxed-order iterative scans keep reading the graph until p_limit rows
        -- of this user are found; the outer ORDER BY restores the exact order.
        RETURN QUERY EXECUTE format($q$
            SELECT x.mem_id, 1 - x.d, x.model, 'hnsw'::text, $6 FROM (
                SELECT e.mem_id, (e.embedding::%1$s(%2$s) <=> $2::%1$s(%2$s))::float8 AS d, e.provider || '/' || e.model AS model
                FROM kernel.embedding e
                WHERE e.dim = %2$s AND e.user_id = $1 AND ($3::text IS NULL OR e.model = $3)
                  AND ($4::text IS NULL OR e.provider = $4)
                ORDER BY e.embedding::%1$s(%2$s) <=> $2::%1$s(%2$s)
                LIMIT $5) x
            ORDER BY x.d$q$, v_type, v_dim)
        USING p_user_id, p_vector, p_model, p_provider, p_limit, v_rows;
    ELSE
        RETURN QUERY
        SELECT e.mem_id, 1 - (e.embedding <=> p_vector), e.provider || '/' || e.model, 'exact'::text, v_rows
        FROM kernel.embedding e
        WHERE e.user_id = p_user_id AND e.dim = v_dim AND (p_model IS NULL OR e.model = p_model)
          AND (p_provider IS NULL OR e.provider = p_provider)
        ORDER BY e.embedding <=> p_vector
        LIMIT p_limit;
    END IF;
END
$_$;

COMMENT ON FUNCTION kernel._nearest(p_user_id uuid, p_vector public.vector, p_limit integer, p_model text, p_provider text) IS 'Internal. A user''s p_limit embeddings nearest to p_vector by cosine (of its size, optionally of one model or provider), with the method used: exact while the user has fewer than kernel.vector_exact_below rows of that size or no valid HNSW index of that size exists, hnsw otherwise (iterative scan, hnsw.ef_search = kernel.ef_search). rows_seen: the rows of that size counted, up to the threshold.';

CREATE FUNCTION kernel._patch_columns(p_table regclass, p_keys boolean) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    -- p_keys: the primary key's columns; otherwise every stored column
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
    FROM pg_attribute a
    WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      AND (NOT p_keys OR a.attnum = ANY((SELECT i.indkey FROM pg_index i WHERE i.indrelid = p_table AND i.indisprimary)::int2[]))
$$;

COMMENT ON FUNCTION kernel._patch_columns(p_table regclass, p_keys boolean) IS 'Internal. A table''s stored columns (or only its primary key''s) as a quoted, comma-separated list, in column order: what a patch names in its INSERT and ON CONFLICT.';

CREATE FUNCTION kernel._recency(p_updated_at timestamp with time zone, p_last_used_at timestamp with time zone, p_used_count integer, p_now timestamp with time zone, p_half_life interval) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RETURN power(0.5, greatest(extract(epoch FROM p_now - greatest(p_updated_at, coalesce(p_last_used_at, p_updated_at))), 0)
                      / extract(epoch FROM p_half_life))::float8
           * (1 + ln(1 + greatest(coalesce(p_used_count, 0), 0)));
END
$$;

COMMENT ON FUNCTION kernel._recency(p_updated_at timestamp with time zone, p_last_used_at timestamp with time zone, p_used_count integer, p_now timestamp with time zone, p_half_life interval) IS 'Internal. Usage-aware recency of a card at p_now: 0.5 ^ (time since it was last updated or recalled / half-life) x (1 + ln(1 + times recalled)). Recall ranks its candidates by it; pruning trims the lowest first.';

CREATE FUNCTION kernel._record_contradiction(p_user_id uuid, p_card_id uuid, p_other_id uuid, p_reason text, p_at timestamp with time zone) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    -- Both cards must be the user's: called with another user's card it fails as with a missing one.
    PERFORM kernel._card(p_user_id, p_card_id, 'p_card_id');
    PERFORM kernel._card(p_user_id, p_other_id, 'p_other_id');
    -- A pair already known (open or resolved) stays as it is: a resolution is not undone by
    -- writing one of the two cards again.
    INSERT INTO kernel.contradiction (user_id, card_a, card_b, reason, detected_at)
    VALUES (p_user_id, least(p_card_id, p_other_id), greatest(p_card_id, p_other_id), p_reason, p_at)
    ON CONFLICT (card_a, card_b, user_id) DO NOTHING;
    INSERT INTO kernel.edge (user_id, src_id, dst_id, type, created_at)
    VALUES (p_user_id, p_card_id, p_other_id, 'relates_to', p_at)
    ON CONFLICT (src_id, dst_id, type, user_id) DO NOTHING;
    RETURN (SELECT k.resolved_at IS NULL FROM kernel.contradiction k
            WHERE k.card_a = least(p_card_id, p_other_id) AND k.card_b = greatest(p_card_id, p_other_id));
END
$$;

COMMENT ON FUNCTION kernel._record_contradiction(p_user_id uuid, p_card_id uuid, p_other_id uuid, p_reason text, p_at timestamp with time zone) IS 'Internal. Records that two cards of a user contradict (once per pair) and links the new one to the other with a relates_to edge. Returns whether the pair is open (false once resolved).';

CREATE FUNCTION kernel._replaying() RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RETURN coalesce(current_setting('psimem.kernel_replay', true), '') = 'on'
       AND (pg_has_role(session_user, 'psimem_admin', 'MEMBER')
            OR session_user::text = (SELECT n.nspowner::regrole::text FROM pg_namespace n WHERE n.nspname = 'kernel'));
END
$$;

COMMENT ON FUNCTION kernel._replaying() IS 'Internal. True while a patch from kernel.export_patch is applied (it sets psimem.kernel_replay = on for its transaction) by the owner or psimem_admin: rows then keep the changed_at, content keys and tombstones the patch brings.';

CREATE FUNCTION kernel._stage(p_user_id uuid) RETURNS TABLE(stage text, before_retrospective text, turns_since_retrospective integer)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    RETURN QUERY WITH t AS (SELECT s.to_stage, s.from_stage, s.turn, s.at, s.id FROM kernel.stage_transition s WHERE s.user_id = p_user_id),
    cur AS (SELECT t.to_stage FROM t ORDER BY t.turn DESC, t.at DESC, t.id DESC LIMIT 1),
    retro AS (SELECT t.from_stage, t.turn FROM t WHERE t.to_stage = 'Retrospective Innovation'
              ORDER BY t.turn DESC, t.at DESC, t.id DESC LIMIT 1),
    last_turn AS (SELECT coalesce(max(j.turn), 0) AS turn FROM kernel.journal j WHERE j.user_id = p_user_id)
    SELECT (SELECT to_stage FROM cur), (SELECT from_stage FROM retro),
           (SELECT turn FROM last_turn) - coalesce((SELECT turn FROM retro), 0);
END
$$;

COMMENT ON FUNCTION kernel._stage(p_user_id uuid) IS 'Internal. A user''s lifecycle stage now (NULL before the first journal entry), the stage the last Retrospective Innovation came from, and the turns journaled since it (since the start if none).';

CREATE FUNCTION kernel._stage_trigger(p_user_id uuid, p_to text, p_evidence jsonb) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_order text[] := ARRAY['Ideation', 'Data Acquisition', 'Exploration', 'Synthesis', 'Productionization'];
    v_now record;
    v_base text;
    v_next text;
    v_every int := (ops.setting('kernel.retrospective_every'))::int;
    v_remix text := p_evidence ->> 'remix_of';
BEGIN
    SELECT * INTO v_now FROM kernel._stage(p_user_id);
    IF v_now.stage IS NULL THEN
        IF p_to <> 'Ideation' THEN
            RAISE EXCEPTION 'p_stage: a lifecycle starts at Ideation (spec 001 section 7), got %', p_to
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN 'start';
    ELSIF p_to = v_now.stage THEN
        RETURN NULL;
    ELSIF p_to = 'Retrospective Innovation' THEN
        IF v_now.turns_since_retrospective < v_every THEN
            RAISE EXCEPTION 'p_stage: Retrospective Innovation comes every % turns; % journaled since the last (or the start)',
                v_every, v_now.turns_since_retrospective USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_remix IS NULL OR v_remix !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
           OR NOT (EXISTS (SELECT 1 FROM kernel.card c WHERE c.id = v_remix::uuid AND c.user_id = p_user_id)
                   OR EXISTS (SELECT 1 FROM kernel.journal j WHERE j.id = v_remix::uuid AND j.user_id = p_user_id)) THEN
            RAISE EXCEPTION 'p_evidence: Retrospective Innovation remixes an older summary: give p_evidence.remix_of, the id of one of this user''s cards or journal entries'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN format('every %s turns: remix of %s', v_every, v_remix);
    END IF;
    v_base := CASE WHEN v_now.stage = 'Retrospective Innovation' THEN v_now.before_retrospective ELSE v_now.stage END;
    v_next := v_order[array_position(v_order, v_base) + 1];
    IF p_to = v_base THEN
        RETURN 'back from Retrospective Innovation';
    ELSIF p_to IS DISTINCT FROM v_next THEN
        RAISE EXCEPTION 'p_stage: from % the lifecycle moves on to %Retrospective Innovation (spec 001 section 7), got %',
            v_now.stage, CASE WHEN v_next IS NOT NULL THEN v_next || ' or ' ELSE '' END
                         || CASE WHEN v_now.stage = 'Retrospective Innovation' THEN 'back to ' || v_base || ' or ' ELSE '' END, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CASE v_next
    WHEN 'Data Acquisition' THEN
        PERFORM kernel._evidence_list(p_evidence, 'unknowns', 2, 'Ideation -> Data Acquisition (once 2 or more unknowns)');
        RETURN 'at least 2 unknowns';
    WHEN 'Exploration' THEN
        PERFORM kernel._evidence_list(p_evidence, 'approaches', 2, 'Data Acquisition -> Exploration (once 2 or more viable approaches)');
        RETURN 'at least 2 viable approaches';
    WHEN 'Synthesis' THEN
        PERFORM kernel._evidence_list(p_evidence, 'compared', 2, 'Exploration -> Synthesis (once variants are compared)');
        RETURN 'variants compared';
    ELSE  -- Productionization
        IF coalesce(p_evidence ->> 'definition_of_done', '') !~ '\S' THEN
            RAISE EXCEPTION 'p_evidence: Synthesis -> Productionization (once a definition of done exists) needs p_evidence.definition_of_done'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN 'a definition of done exists';
    END CASE;
END
$_$;

COMMENT ON FUNCTION kernel._stage_trigger(p_user_id uuid, p_to text, p_evidence jsonb) IS 'Internal. Whether a user''s lifecycle may move to p_to now, and by which trigger of spec 001 section 7 (NULL: no move). A lifecycle starts at Ideation; then Ideation -> Data Acquisition needs p_evidence.unknowns (2 or more), -> Exploration p_evidence.approaches (2 or more), -> Synthesis p_evidence.compared (2 or more variants), -> Productionization p_evidence.definition_of_done; Retrospective Innovation comes at most every kernel.retrospective_every turns and needs p_evidence.remix_of (a card or journal entry of the user), and returns to the stage it came from (or moves on from it). Anything else is refused naming the allowed moves.';

CREATE FUNCTION kernel._subject_of(p_tags text[]) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RETURN (SELECT t FROM unnest(p_tags) WITH ORDINALITY AS x(t, n) WHERE t NOT LIKE 'key:%' ORDER BY n LIMIT 1);
END
$$;

COMMENT ON FUNCTION kernel._subject_of(p_tags text[]) IS 'Internal. The subject a card without p_subject gets: its first tag that is not a key: tag, or NULL.';

CREATE FUNCTION kernel._summarise(p_texts text[]) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_max int := (ops.setting('kernel.summary_max_words'))::int;
    v_text text;
BEGIN
    EXECUTE format('SELECT %s($1, $2)', (ops.setting('kernel.summariser') #>> '{}')::regproc) INTO v_text USING p_texts, v_max;
    -- A replacement summariser may say more than it was asked to: the budget holds anyway.
    RETURN kernel._first_words(v_text, v_max);
END
$_$;

COMMENT ON FUNCTION kernel._summarise(p_texts text[]) IS 'Internal. Summarises texts with the function the kernel.summariser setting names, in at most kernel.summary_max_words words.';

CREATE FUNCTION kernel._tombstone() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    -- A patch carries its own tombstones; a user being deleted takes theirs along.
    IF kernel._replaying() OR NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = OLD.user_id) THEN
        RETURN NULL;
    END IF;
    INSERT INTO kernel.tombstone (user_id, table_name, row_key)
    VALUES (OLD.user_id, TG_TABLE_NAME,
            to_jsonb(OLD) ->> CASE TG_TABLE_NAME WHEN 'usage' THEN 'mem_id' WHEN 'config' THEN 'key' ELSE 'id' END);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kernel._tombstone() IS 'Trigger on the kernel tables, after delete: records the deleted row''s table and key in kernel.tombstone (as the owner: callers cannot write tombstones themselves), except while a patch is replayed or when the row goes with its user.';

CREATE FUNCTION kernel._touch() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    IF NOT kernel._replaying() THEN
        NEW.changed_at := now();
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kernel._touch() IS 'Trigger on the kernel tables other than card, before insert or update: sets changed_at to the transaction time (kept from the patch while one is replayed).';

CREATE FUNCTION kernel._user(p_user_id uuid) RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    IF p_user_id IS NULL THEN
        RAISE EXCEPTION 'p_user_id: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Row-level security hides the users this session does not act for: another user's id
    -- and an id that exists nowhere get the same error.
    IF NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN p_user_id;
END
$$;

COMMENT ON FUNCTION kernel._user(p_user_id uuid) IS 'Internal. Returns p_user_id if this session sees that user (row-level security: the user it acts for; every user for psimem_admin and the owner), else raises "unknown user" alike for a user that exists and one that does not.';

CREATE FUNCTION kernel._word_count(p_text text) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    -- the same count as the CHECK constraint journal_summary_at_most_70_words
    RETURN length(regexp_replace(p_text, '\S+', 'x', 'g')) - length(regexp_replace(p_text, '\S+', '', 'g'));
END
$$;

COMMENT ON FUNCTION kernel._word_count(p_text text) IS 'Internal. Words in a text: runs of non-space characters.';

CREATE FUNCTION kernel.attach(p_user_id uuid, p_card_id uuid, p_kind text, p_ref text, p_title text DEFAULT NULL::text, p_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_ref text := kernel._checked_text(p_ref, 'p_ref');
    v_id uuid;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('url', 'file', 'ref') THEN
        RAISE EXCEPTION 'p_kind: must be url, file or ref (got %)', quote_nullable(p_kind) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_kind = 'url' AND v_ref !~* '^[a-z][a-z0-9+.-]*://\S+$' THEN
        RAISE EXCEPTION 'p_ref: a url attachment must be an absolute URL such as https://example.org/page'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_title) > 500 THEN
        RAISE EXCEPTION 'p_title: must be at most 500 characters, got %', length(p_title) USING ERRCODE = 'string_data_right_truncation';
    END IF;
    PERFORM kernel._card(v_user, p_card_id, 'p_card_id');
    INSERT INTO kernel.attachment AS a (user_id, mem_id, kind, ref, title, created_at)
    VALUES (v_user, p_card_id, p_kind, v_ref, p_title, v_at)
    ON CONFLICT (mem_id, kind, md5(ref), user_id) DO UPDATE SET title = coalesce(EXCLUDED.title, a.title)
    RETURNING a.id INTO v_id;
    RETURN v_id;
END
$_$;

COMMENT ON FUNCTION kernel.attach(p_user_id uuid, p_card_id uuid, p_kind text, p_ref text, p_title text, p_at timestamp with time zone) IS 'Attaches a reference to a card: kind url (an absolute URL), file (a path) or ref (any identifier), with an optional title. Attaching the same reference again updates its title. Returns the attachment id.';

CREATE FUNCTION kernel.compact_journal(p_user_id uuid, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(period_start timestamp with time zone, entries integer, journal_id uuid)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
#variable_conflict use_column
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_now timestamptz := kernel._clock(p_now);
    v_cutoff timestamptz := v_now - (ops.setting('kernel.journal_keep') #>> '{}')::interval;
    v_period timestamptz;
    v_old kernel.journal;
    v_new kernel.journal;
    v_ids uuid[];
    v_entries int;
BEGIN
    PERFORM kernel._lock_user(v_user);
    FOR v_period IN
        SELECT DISTINCT date_trunc('week', j.created_at) FROM kernel.journal j
        WHERE j.user_id = v_user AND j.kind IN ('turn', 'meta') AND j.created_at < v_cutoff ORDER BY 1
    LOOP
        SELECT * INTO v_old FROM kernel.journal j
        WHERE j.user_id = v_user AND j.kind = 'compaction' AND j.period_start = v_period;
        SELECT array_agg(j.id ORDER BY j.turn, j.created_at) INTO v_ids FROM kernel.journal j
        WHERE j.user_id = v_user AND j.kind IN ('turn', 'meta') AND j.created_at < v_cutoff
          AND date_trunc('week', j.created_at) = v_period;
        v_entries := cardinality(v_ids) + coalesce((v_old.detail ->> 'entries')::int, 0);
        -- The week's entry: a compaction entry already there (late entries are folded in) and the
        -- entries now old enough, in turn order.
        SELECT v_user, (array_agg(x.stage ORDER BY x.o DESC))[1], kernel._summarise(array_agg(x.summary ORDER BY x.o)),
               coalesce(kernel._summarise(array_agg(x.conclusion ORDER BY x.o) FILTER (WHERE x.conclusion ~ '\S')), ''),
               max(x.created_at), max(x.turn),
               ARRAY(SELECT DISTINCT r FROM kernel.journal y, unnest(y.reflected_ids) r WHERE y.id = ANY(v_ids || v_old.id) ORDER BY r),
               jsonb_build_object('entries', v_entries, 'period', 'week', 'period_end', v_period + interval '1 week',
                                  'first_turn', least((v_old.detail ->> 'first_turn')::int, min(x.turn) FILTER (WHERE x.o > 0)),
                                  'last_turn', max(x.turn))
        INTO v_new.user_id, v_new.stage, v_new.summary, v_new.conclusion, v_new.created_at, v_new.turn, v_new.reflected_ids,
             v_new.detail
        FROM (SELECT j.stage, j.summary, j.conclusion, j.created_at, j.turn,
                     CASE WHEN j.kind = 'compaction' THEN 0 ELSE 1 + array_position(v_ids, j.id) END AS o
              FROM kernel.journal j WHERE j.id = ANY(v_ids || v_old.id)) x;
        INSERT INTO kernel.journal AS j (user_id, stage, summary, conclusion, created_at, kind, turn, reflected_ids, detail, period_start)
        VALUES (v_user, v_new.stage, v_new.summary, v_new.conclusion, v_new.created_at, 'compaction', v_new.turn,
                v_new.reflected_ids, v_new.detail, v_period)
        ON CONFLICT (user_id, period_start) WHERE kind = 'compaction' DO UPDATE SET
            stage = EXCLUDED.stage, summary = EXCLUDED.summary, conclusion = EXCLUDED.conclusion,
            created_at = EXCLUDED.created_at, turn = EXCLUDED.turn, reflected_ids = EXCLUDED.reflected_ids,
            detail = EXCLUDED.detail
        RETURNING j.id INTO v_new.id;
        DELETE FROM kernel.journal j WHERE j.id = ANY(v_ids);
        period_start := v_period;
        entries := v_entries;
        journal_id := v_new.id;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION kernel.compact_journal(p_user_id uuid, p_now timestamp with time zone) IS 'Compacts a user''s journal into periodic summaries (spec 001 section 6): turn and meta-layer entries older than kernel.journal_keep at p_now are replaced, week by week, by one compaction entry (summary and conclusion by the kernel summariser, at most 70 words each; the last stage, the last turn number, every card reflected on; detail: entries, first and last turn). Entries arriving later for a compacted week are folded into its entry. Idempotent: a second run finds nothing to compact. Stage transitions keep their turn but lose their link to a compacted entry. Returns each week compacted, its entry count and entry.';

CREATE FUNCTION kernel.compress(p_user_id uuid, p_subject text DEFAULT NULL::text, p_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(subject text, summary_card_id uuid, notes_rolled integer)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION kernel.compress(p_user_id uuid, p_subject text, p_at timestamp with time zone) IS 'Compresses every subject of a user (or only p_subject) that holds kernel.compress_after live notes, as kernel.upsert_card does when it writes such a note; the maintenance job runs it too, so a lowered kernel.compress_after applies to subjects already full. Returns each subject compressed with its summary card and the notes rolled into it.';

CREATE FUNCTION kernel.contradictions(p_user_id uuid, p_include_resolved boolean DEFAULT false) RETURNS TABLE(contradiction_id uuid, card_a uuid, summary_a text, card_b uuid, summary_b text, reason text, detected_at timestamp with time zone, resolved_at timestamp with time zone, kept_id uuid)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT k.id, k.card_a, a.summary, k.card_b, b.summary, k.reason, k.detected_at, k.resolved_at, k.kept_id
    FROM kernel.contradiction k
    JOIN kernel.card a ON a.id = k.card_a
    JOIN kernel.card b ON b.id = k.card_b
    WHERE k.user_id = kernel._user(p_user_id) AND (p_include_resolved OR k.resolved_at IS NULL)
    ORDER BY k.detected_at, k.id
$$;

COMMENT ON FUNCTION kernel.contradictions(p_user_id uuid, p_include_resolved boolean) IS 'The contradicting card pairs of a user with both summaries and why they conflict, oldest first: the open ones (until kernel.resolve_contradiction), or with p_include_resolved also the resolved ones.';

CREATE FUNCTION kernel.delete_card(p_user_id uuid, p_card_id uuid) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
BEGIN
    PERFORM kernel._card(v_user, p_card_id, 'p_card_id');
    DELETE FROM kernel.card c WHERE c.id = p_card_id AND c.user_id = v_user;
    RETURN p_card_id;
END
$$;

COMMENT ON FUNCTION kernel.delete_card(p_user_id uuid, p_card_id uuid) IS 'Deletes one card of a user, with its edges, usage, attachments, embeddings and contradictions; a tombstone records it for kernel.export_patch. Returns its id; an unknown card (or another user''s) is an error.';

CREATE FUNCTION kernel.ensure_vector_indexes() RETURNS TABLE(dim integer, index_name text, action text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_below int := (ops.setting('kernel.vector_exact_below'))::int;
    v_dim int;
    v_type text;
BEGIN
    -- Sizes where some user holds enough rows for recall to use an index (read whole first:
    -- an index cannot be built on a table an open loop is still reading).
    FOREACH v_dim IN ARRAY ARRAY(
        SELECT DISTINCT x.dim FROM (SELECT e.dim FROM kernel.embedding e GROUP BY e.user_id, e.dim
                                    HAVING count(*) >= greatest(v_below, 1)) x ORDER BY 1)
    LOOP
        dim := v_dim;
        index_name := format('idx_embedding_hnsw_%s', v_dim);
        v_type := kernel._index_type(v_dim);
        IF v_type IS NULL THEN
            action := 'exact only: HNSW takes at most 4000 dimensions';
        ELSIF to_regclass('kernel.' || index_name) IS NOT NULL THEN
            action := 'exists';
        ELSE
            -- Not CONCURRENTLY (a function runs in a transaction): writers of kernel.embedding
            -- wait for the build, readers do not.
            EXECUTE format('CREATE INDEX %I ON kernel.embedding USING hnsw ((embedding::public.%s(%s)) public.%s_cosine_ops) '
                           'WHERE dim = %s', index_name, v_type, v_dim, v_type, v_dim);
            action := 'created';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION kernel.ensure_vector_indexes() IS 'Builds the HNSW index (cosine) for each embedding size some user holds at least kernel.vector_exact_below rows of, if missing: a partial index on embedding::vector(dim) (halfvec beyond 2,000 dimensions; none beyond 4,000) WHERE dim = that size. Runs as the owner (it creates indexes); kernel.run_maintenance calls it. Returns each size with its index and what was done.';

CREATE FUNCTION kernel.export_patch(p_user_id uuid, p_since timestamp with time zone DEFAULT '-infinity'::timestamp with time zone) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_since timestamptz := coalesce(p_since, '-infinity');
    -- parents before children; deletes run in the reverse order
    v_tables text[] := ARRAY['card', 'usage', 'embedding', 'attachment', 'edge', 'contradiction', 'journal',
                             'stage_transition', 'config', 'tombstone'];
    v_table text;
    v_key text;
    v_cols text;
    v_sets text;
    v_keys text[];
    v_chunk jsonb;
    v_out text[];
    v_counts text[] := '{}';
    v_n int;
BEGIN
    v_out := ARRAY[format('-- psimem kernel patch: user %s, every change since %s, exported at %s.', v_user, v_since, now()),
                   '-- Idempotent: apply it as the owner or psimem_admin (psql -f), once or more, in export order.',
                   'BEGIN;',
                   'SET LOCAL psimem.kernel_replay = on;  -- rows keep the changed_at, content keys and tombstones below'];
    -- The user, for a database that lacks it; an existing user row is left as it is.
    v_cols := kernel._patch_columns('memory.users', false);
    v_out := v_out || format('INSERT INTO memory.users (%1$s) SELECT %1$s FROM jsonb_populate_record(NULL::memory.users, %2$L) ON CONFLICT (user_id) DO NOTHING;',
                             v_cols, (SELECT to_jsonb(u) FROM memory.users u WHERE u.user_id = v_user));

    FOR v_i IN REVERSE cardinality(v_tables) - 1 .. 1 LOOP
        v_table := v_tables[v_i];
        v_key := CASE v_table WHEN 'usage' THEN 'mem_id' WHEN 'config' THEN 'key' ELSE 'id' END;
        SELECT array_agg(DISTINCT t.row_key ORDER BY t.row_key) INTO v_keys FROM kernel.tombstone t
        WHERE t.user_id = v_user AND t.table_name = v_table AND t.changed_at >= v_since;
        IF v_keys IS NOT NULL THEN
            v_out := v_out || format('DELETE FROM kernel.%I WHERE user_id = %L AND %I = ANY(%L::%s[]);', v_table, v_user, v_key,
                                     v_keys, CASE v_key WHEN 'key' THEN 'text' ELSE 'uuid' END);
            v_counts := v_counts || format('%s %s deleted', cardinality(v_keys), v_table);
        END IF;
    END LOOP;

    -- Content keys are unique per user and a patch may move them between its cards (one card's
    -- old wording is another's new one): park them first, the upserts set them.
    SELECT array_agg(c.id ORDER BY c.id) INTO v_keys FROM kernel.card c WHERE c.user_id = v_user AND c.changed_at >= v_since;
    IF v_keys IS NOT NULL THEN
        v_out := v_out || format('UPDATE kernel.card SET content_key = ''parked:'' || id WHERE user_id = %L AND id = ANY(%L::uuid[]);',
                                 v_user, v_keys);
    END IF;

    FOREACH v_table IN ARRAY v_tables LOOP
        v_cols := kernel._patch_columns(format('kernel.%I', v_table)::regclass, false);
        v_key := kernel._patch_columns(format('kernel.%I', v_table)::regclass, true);
        SELECT string_agg(format('%s = EXCLUDED.%1$s', c), ', ') INTO v_sets
        FROM unnest(string_to_array(v_cols, ', ')) c WHERE NOT c = ANY(string_to_array(v_key, ', '));
        v_n := 0;
        -- 500 rows a statement, so that a large kernel is not one huge statement
        FOR v_chunk IN EXECUTE format(
            'SELECT jsonb_agg(to_jsonb(t) - ''n'' ORDER BY t.n) FROM (SELECT x.*, row_number() OVER (ORDER BY %s) - 1 AS n '
            'FROM kernel.%I x WHERE x.user_id = $1 AND x.changed_at >= $2) t GROUP BY t.n / 500 ORDER BY t.n / 500',
            v_key, v_table) USING v_user, v_since
        LOOP
            v_out := v_out || format('INSERT INTO kernel.%1$I (%2$s) SELECT %2$s FROM jsonb_populate_recordset(NULL::kernel.%1$I, %3$L) '
                                     'ON CONFLICT (%4$s) DO UPDATE SET %5$s;', v_table, v_cols, v_chunk, v_key, v_sets);
            v_n := v_n + jsonb_array_length(v_chunk);
        END LOOP;
        IF v_n > 0 THEN
            v_counts := v_counts || format('%s %s', v_n, v_table);
        END IF;
    END LOOP;
    v_out := v_out || 'COMMIT;'::text
                   || format('-- %s', coalesce(nullif(array_to_string(v_counts, ', '), ''), 'no change'));
    RETURN array_to_string(v_out, E'\n') || E'\n';
END
$_$;

COMMENT ON FUNCTION kernel.export_patch(p_user_id uuid, p_since timestamp with time zone) IS 'Every kernel change of a user since p_since (by each row''s changed_at, the time of the transaction that wrote it; default: all) as an idempotent SQL patch, one transaction: the user row if missing, deletes of what tombstones say was deleted, then upserts (INSERT ... ON CONFLICT DO UPDATE on the primary key) of every row changed, parents first. Applied by the owner or psimem_admin to an empty psimem database, or twice, it leaves the same kernel rows; applied in order to a database holding the state as of p_since, the state now. Changes of transactions still open at p_since may carry an earlier changed_at: overlapping windows are harmless, so export since a little before the last export. Deletions older than kernel.tombstone_keep are not in it.';

CREATE FUNCTION kernel.get_config(p_user_id uuid) RETURNS TABLE(key text, value jsonb, overridden boolean)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT e.key, e.value, EXISTS (SELECT 1 FROM kernel.config c WHERE c.user_id = p_user_id AND c.key = e.key)
    FROM jsonb_each(kernel._config(kernel._user(p_user_id))) e
    ORDER BY e.key
$$;

COMMENT ON FUNCTION kernel.get_config(p_user_id uuid) IS 'A user''s effective MemoryConfig, one row per key, and whether the user overrides the default.';

CREATE FUNCTION kernel.journal(p_stage text, p_summary text, p_conclusion text DEFAULT ''::text, p_reflected_ids uuid[] DEFAULT '{}'::uuid[], p_user_id uuid DEFAULT NULL::uuid, p_evidence jsonb DEFAULT NULL::jsonb, p_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(journal_id uuid, turn integer, stage text, transition text, meta_layer_due boolean, retrospective_due boolean, patch text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(coalesce(p_user_id, memory._acting_user()));
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_summary text := kernel._checked_summary(p_summary, 'p_summary');
    v_conclusion text := coalesce(kernel._checked_text(p_conclusion, 'p_conclusion', false), '');
    v_reflected uuid[] := ARRAY(SELECT DISTINCT r FROM unnest(coalesce(p_reflected_ids, '{}')) r WHERE r IS NOT NULL ORDER BY r);
    v_missing uuid;
    v_from text;
    v_trigger text;
    v_since timestamptz;
    v_state record;
    v_turn int;
    v_id uuid;
BEGIN
    IF p_stage IS NULL OR p_stage NOT IN ('Ideation', 'Data Acquisition', 'Exploration', 'Synthesis', 'Productionization',
                                          'Retrospective Innovation') THEN
        RAISE EXCEPTION 'p_stage: must be one of Ideation, Data Acquisition, Exploration, Synthesis, Productionization, Retrospective Innovation (got %)',
            quote_nullable(p_stage) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_evidence IS NOT NULL AND jsonb_typeof(p_evidence) <> 'object' THEN
        RAISE EXCEPTION 'p_evidence: must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT r INTO v_missing FROM unnest(v_reflected) r
    WHERE NOT EXISTS (SELECT 1 FROM kernel.card c WHERE c.id = r AND c.user_id = v_user) LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'p_reflected_ids: unknown card %', v_missing USING ERRCODE = 'foreign_key_violation';
    END IF;

    PERFORM kernel._lock_user(v_user);  -- one turn number per entry, also with two writers at once
    v_from := (SELECT s.stage FROM kernel._stage(v_user) s);
    v_trigger := kernel._stage_trigger(v_user, p_stage, coalesce(p_evidence, '{}'));
    -- The per-turn patch covers what changed since the previous entry was written.
    SELECT coalesce(max(j.changed_at), '-infinity') INTO v_since FROM kernel.journal j WHERE j.user_id = v_user;
    v_turn := coalesce((SELECT max(j.turn) FROM kernel.journal j WHERE j.user_id = v_user), 0) + 1;
    INSERT INTO kernel.journal AS j (user_id, stage, summary, conclusion, created_at, kind, turn, reflected_ids)
    VALUES (v_user, p_stage, v_summary, v_conclusion, v_at, 'turn', v_turn, v_reflected)
    RETURNING j.id INTO v_id;
    IF v_trigger IS NOT NULL THEN
        INSERT INTO kernel.stage_transition (user_id, from_stage, to_stage, turn, journal_id, trigger, evidence, at)
        VALUES (v_user, v_from, p_stage, v_turn, v_id, v_trigger, coalesce(p_evidence, '{}'), v_at);
        transition := concat_ws(' -> ', v_from, p_stage) || ' (' || v_trigger || ')';
    END IF;
    journal_id := v_id;
    turn := v_turn;
    stage := p_stage;
    SELECT * INTO v_state FROM kernel._stage(v_user);
    meta_layer_due := v_turn - coalesce((SELECT max(j.turn) FROM kernel.journal j WHERE j.user_id = v_user AND j.kind = 'meta'), 0)
                      >= (ops.setting('kernel.meta_every'))::int;
    retrospective_due := p_stage <> 'Retrospective Innovation'
                         AND v_state.turns_since_retrospective >= (ops.setting('kernel.retrospective_every'))::int;
    IF (kernel._config(v_user) ->> 'emit_auto_on')::boolean THEN
        patch := kernel.export_patch(v_user, v_since);
    END IF;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION kernel.journal(p_stage text, p_summary text, p_conclusion text, p_reflected_ids uuid[], p_user_id uuid, p_evidence jsonb, p_at timestamp with time zone) IS 'Appends the journal entry that ends a turn (spec 001 section 1, step 5): its lifecycle stage, a summary of at most 70 words (refused naming p_summary and the count), a conclusion and the cards reflected on (each must be the user''s). The user is p_user_id, else the one this session acts for. A stage other than the current one is a transition, allowed only by the spec''s triggers with p_evidence (see kernel._stage_trigger) and recorded in kernel.stage_transition. Returns the entry, its turn number, the transition if any, whether a meta-layer entry (kernel.write_meta_layer) and a Retrospective Innovation are due, and, when the user''s emit_auto_on is true (the default), the idempotent SQL patch of everything changed since the previous entry.';

CREATE FUNCTION kernel.link(p_user_id uuid, p_src_id uuid, p_dst_id uuid, p_type text DEFAULT 'relates_to'::text, p_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_id uuid;
BEGIN
    IF p_type IS NULL OR p_type NOT IN ('reflects_on', 'relates_to') THEN
        RAISE EXCEPTION 'p_type: must be reflects_on or relates_to (got %)', quote_nullable(p_type)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM kernel._card(v_user, p_src_id, 'p_src_id');
    PERFORM kernel._card(v_user, p_dst_id, 'p_dst_id');
    IF p_src_id = p_dst_id THEN
        RAISE EXCEPTION 'p_dst_id: must differ from p_src_id (a card does not link to itself)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO kernel.edge (user_id, src_id, dst_id, type, created_at) VALUES (v_user, p_src_id, p_dst_id, p_type, v_at)
    ON CONFLICT (src_id, dst_id, type, user_id) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT e.id INTO v_id FROM kernel.edge e WHERE e.src_id = p_src_id AND e.dst_id = p_dst_id AND e.type = p_type;
    END IF;
    RETURN v_id;
END
$$;

COMMENT ON FUNCTION kernel.link(p_user_id uuid, p_src_id uuid, p_dst_id uuid, p_type text, p_at timestamp with time zone) IS 'Links two cards of a user with an edge of type relates_to (default) or reflects_on; linking again returns the existing edge. Returns the edge id.';

CREATE FUNCTION kernel.prune(p_user_id uuid, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(stale_deleted integer, trimmed integer)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_now timestamptz := kernel._clock(p_now);
    v_policy jsonb := kernel._config(v_user) -> 'prune_policy';
    v_days int := (v_policy ->> 'stale_after_days')::int;
    v_max int := (v_policy ->> 'max_cards')::int;
    v_half_life interval := (ops.setting('kernel.recency_half_life') #>> '{}')::interval;
    v_stale int := 0;
    v_trimmed int := 0;
BEGIN
    PERFORM kernel._lock_user(v_user);
    -- A card in an open contradiction is kept whatever its age: deleting it would settle the
    -- contradiction silently, which only kernel.resolve_contradiction may do.
    IF v_days IS NOT NULL THEN
        DELETE FROM kernel.card c
        WHERE c.user_id = v_user
          AND greatest(c.updated_at, (SELECT u.last_used_at FROM kernel.usage u WHERE u.mem_id = c.id))
              < v_now - make_interval(days => v_days)
          AND NOT EXISTS (SELECT 1 FROM kernel.contradiction k WHERE k.resolved_at IS NULL AND (k.card_a = c.id OR k.card_b = c.id));
        GET DIAGNOSTICS v_stale = ROW_COUNT;
    END IF;
    IF v_max IS NOT NULL THEN
        -- Rolled-up notes go first (their summary stands for them), then the lowest usage-aware recency.
        DELETE FROM kernel.card c WHERE c.id IN (
            SELECT x.id FROM kernel.card x LEFT JOIN kernel.usage u ON u.mem_id = x.id
            WHERE x.user_id = v_user
              AND NOT EXISTS (SELECT 1 FROM kernel.contradiction k WHERE k.resolved_at IS NULL AND (k.card_a = x.id OR k.card_b = x.id))
            ORDER BY x.rolled_into IS NULL, kernel._recency(x.updated_at, u.last_used_at, u.used_count, v_now, v_half_life), x.id
            LIMIT greatest((SELECT count(*) FROM kernel.card y WHERE y.user_id = v_user) - v_max, 0));
        GET DIAGNOSTICS v_trimmed = ROW_COUNT;
    END IF;
    stale_deleted := v_stale;
    trimmed := v_trimmed;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION kernel.prune(p_user_id uuid, p_now timestamp with time zone) IS 'Applies a user''s prune_policy at p_now: deletes the cards not updated or recalled within stale_after_days, then, while the user has more than max_cards cards, the rolled-up notes and then the cards of lowest usage-aware recency (kernel._recency). A null field means no limit. Cards in an open contradiction are never pruned. Idempotent: a second run at the same p_now deletes nothing. Deletions leave tombstones (kernel.export_patch replays them). Returns the counts.';

CREATE FUNCTION kernel.recall(p_user_id uuid, p_query_text text, p_query_vector real[] DEFAULT NULL::real[], p_k integer DEFAULT NULL::integer, p_model text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(rank integer, card_id uuid, summary text, tags text[], source text, kind text, score double precision, rrf_score double precision, text_rank integer, text_score double precision, vector_rank integer, vector_similarity double precision, recency_rank integer, recency_score double precision, mmr_similarity double precision, used_count integer, last_used_at timestamp with time zone, updated_at timestamp with time zone, why text, legs jsonb)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
#variable_conflict use_column
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_now timestamptz := kernel._clock(p_now);
    v_vector vector := kernel._checked_vector(p_query_vector, 'p_query_vector');
    v_has_text boolean := coalesce(kernel._checked_text(p_query_text, 'p_query_text', false) ~ '\S', false);
    v_config jsonb := kernel._config(v_user);
    v_k int := coalesce(p_k, (v_config ->> 'recall_top_k')::int);
    v_n int := greatest((ops.setting('kernel.recall_candidates'))::int, v_k);
    v_w_text float8 := (v_config #>> '{recall_weights,text}')::float8;
    v_w_vector float8 := (v_config #>> '{recall_weights,vector}')::float8;
    v_w_recency float8 := (v_config #>> '{recall_weights,recency}')::float8;
    v_rrf_k float8 := (ops.setting('kernel.rrf_k'))::float8;
    v_lambda float8 := (ops.setting('kernel.mmr_lambda'))::float8;
    v_half_life interval := (ops.setting('kernel.recency_half_life') #>> '{}')::interval;
    v_ts regconfig := (ops.setting('kernel.text_search_config') #>> '{}')::regconfig;
    v_all tsquery;
    v_any tsquery;
    v_match tsquery;
    v_rare text;
    v_common text[];
    v_dim int;
    v_text jsonb;
    v_vec jsonb;
    v_usage jsonb;
    v_legs jsonb;
    v_note text;
    v_t_ids uuid[] := '{}';
    v_t_scores float8[] := '{}';
    v_t_ranks int[] := '{}';
    v_t_all boolean[] := '{}';
    v_v_ids uuid[] := '{}';
    v_v_sims float8[] := '{}';
    v_v_ranks int[] := '{}';
    v_v_models text[] := '{}';
    v_method text;
    v_seen int;
    v_ids uuid[];
    v_rrf float8[];
    v_rec float8[];
    v_rec_ranks int[];
    v_emb vector[];
    v_tsv tsvector[];
    v_pool int;
    v_place int[];
    v_maxsim float8[];
    v_taken boolean[];
    v_mmr float8[];
    v_penalty float8[];
    v_order int[] := '{}';
    v_best int;
    v_best_score float8;
    v_s float8;
BEGIN
    IF v_k IS NULL OR v_k NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'p_k: must be between 1 and 100, got %', coalesce(v_k::text, 'null') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT v_has_text AND v_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_text, p_query_vector: give at least one' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_model IS NOT NULL AND v_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_vector: required when p_model is given' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The full-text leg.
    IF NOT v_has_text THEN
        v_text := jsonb_build_object('ran', false, 'reason', 'no query text given');
    ELSE
        v_all := websearch_to_tsquery(v_ts, p_query_text);
        IF numnode(v_all) = 0 THEN
            v_text := jsonb_build_object('ran', false, 'reason', 'the query text has no searchable words (only stop words or punctuation)');
        ELSE
            -- Plain words: a card with any of them is a candidate, one with all of them ranks first;
            -- but a word common among this user's cards (kernel.text_stats) alone does not make a
            -- candidate: it would make thousands, each to be scored. It still counts in the score.
            -- Quotes, "or" and -word are websearch_to_tsquery's syntax and match as written.
            IF p_query_text ~* '"|(^|\s)-\S|(^|\s)or(\s|$)' THEN
                v_any := v_all;
                v_match := v_all;
            ELSE
                v_any := replace(v_all::text, ' & ', ' | ')::tsquery;
                SELECT string_agg(t.term, ' | ') FILTER (WHERE s.lexeme IS NULL), array_agg(s.lexeme) FILTER (WHERE s.lexeme IS NOT NULL)
                INTO v_rare, v_common
                FROM unnest(string_to_array(v_all::text, ' & ')) AS t(term)
                LEFT JOIN kernel.text_stats s ON s.user_id = v_user AND t.term = quote_literal(s.lexeme);
                v_match := CASE WHEN v_rare IS NULL THEN v_all ELSE v_rare::tsquery || v_all END;
            END IF;
            SELECT coalesce(array_agg(x.id ORDER BY x.r, x.id), '{}'), coalesce(array_agg(x.s ORDER BY x.r, x.id), '{}'),
                   coalesce(array_agg(x.r ORDER BY x.r, x.id), '{}'), coalesce(array_agg(x.all_words ORDER BY x.r, x.id), '{}')
            INTO v_t_ids, v_t_scores, v_t_ranks, v_t_all
            FROM (SELECT y.id, y.s, y.all_words, (rank() OVER (ORDER BY y.s DESC))::int AS r
                  FROM (SELECT c.id, (ts_rank(c.tsv, v_any) + (c.tsv @@ v_all)::int)::float8 AS s, c.tsv @@ v_all AS all_words
                        FROM kernel.card c
                        WHERE c.user_id = v_user AND c.rolled_into IS NULL AND c.tsv @@ v_match
                        ORDER BY 2 DESC, c.id LIMIT v_n) y) x;
            v_text := jsonb_build_object('ran', true, 'matched', cardinality(v_t_ids), 'config', v_ts::text, 'query', v_any::text)
                   || CASE WHEN v_common IS NOT NULL THEN jsonb_build_object('common_words', to_jsonb(v_common)) ELSE '{}' END
                   || CASE WHEN cardinality(v_t_ids) = 0 THEN jsonb_build_object('reason',
                          'no card matches the query words' || CASE WHEN v_common IS NOT NULL
                              THEN ' (words common among this user''s cards match only all together)' ELSE '' END)
                           ELSE '{}' END;
        END IF;
    END IF;

    -- The vector leg.
    IF v_vector IS NULL THEN
        v_vec := jsonb_build_object('ran', false, 'reason', 'no query vector given');
    ELSE
        v_dim := vector_dims(v_vector);
        IF NOT EXISTS (SELECT 1 FROM kernel.embedding e WHERE e.user_id = v_user AND e.dim = v_dim
                                                         AND (p_model IS NULL OR e.model = p_model)) THEN
            IF EXISTS (SELECT 1 FROM kernel.embedding e WHERE e.user_id = v_user AND (p_model IS NULL OR e.model = p_model)) THEN
                RAISE EXCEPTION 'p_query_vector: must have the size of this user''s card embeddings% (%), got %',
                    CASE WHEN p_model IS NULL THEN '' ELSE ' of that model' END,
                    (SELECT string_agg(DISTINCT e.dim::text, ', ') FROM kernel.embedding e
                     WHERE e.user_id = v_user AND (p_model IS NULL OR e.model = p_model)), v_dim
                    USING ERRCODE = 'data_exception';
            END IF;
            v_vec := jsonb_build_object('ran', false, 'reason', CASE WHEN p_model IS NULL THEN 'no card of this user has an embedding'
                                                                     ELSE 'no card of this user has an embedding of that model' END);
        ELSE
            SELECT coalesce(array_agg(x.id ORDER BY x.r, x.id), '{}'), coalesce(array_agg(x.s ORDER BY x.r, x.id), '{}'),
                   coalesce(array_agg(x.r ORDER BY x.r, x.id), '{}'), coalesce(array_agg(x.m ORDER BY x.r, x.id), '{}'),
                   min(x.method), min(x.rows_seen)
            INTO v_v_ids, v_v_sims, v_v_ranks, v_v_models, v_method, v_seen
            FROM (SELECT y.*, (rank() OVER (ORDER BY y.s DESC))::int AS r
                  FROM (SELECT n.mem_id AS id, max(n.similarity) AS s, (array_agg(n.model ORDER BY n.similarity DESC))[1] AS m,
                               min(n.method) AS method, min(n.rows_seen) AS rows_seen
                        FROM kernel._nearest(v_user, v_vector, v_n, p_model) n
                        JOIN kernel.card c ON c.id = n.mem_id AND c.rolled_into IS NULL
                        GROUP BY n.mem_id ORDER BY 2 DESC, 1 LIMIT v_n) y) x;
            v_vec := jsonb_build_object('ran', true, 'matched', cardinality(v_v_ids), 'dim', v_dim,
                                        'method', coalesce(v_method, 'exact'), 'models', to_jsonb(ARRAY(SELECT DISTINCT unnest(v_v_models))))
                  || CASE WHEN v_method = 'exact' THEN jsonb_build_object('rows_scanned', v_seen) ELSE '{}' END;
        END IF;
    END IF;

    -- Candidates of both legs, with the usage-aware recency leg ranked among them, in RRF order.
    SELECT array_agg(z.id ORDER BY z.rrf DESC, z.id), array_agg(z.rrf ORDER BY z.rrf DESC, z.id),
           array_agg(z.place ORDER BY z.rrf DESC, z.id),
           array_agg(z.recency ORDER BY z.rrf DESC, z.id), array_agg(z.recency_rank ORDER BY z.rrf DESC, z.id)
    INTO v_ids, v_rrf, v_place, v_rec, v_rec_ranks
    FROM (SELECT f.*, (dense_rank() OVER (ORDER BY f.rrf DESC))::int AS place
          FROM (SELECT r.*, coalesce(v_w_text / (v_rrf_k + v_t_ranks[array_position(v_t_ids, r.id)]), 0)
                    + coalesce(v_w_vector / (v_rrf_k + v_v_ranks[array_position(v_v_ids, r.id)]), 0)
                    + v_w_recency / (v_rrf_k + r.recency_rank) AS rrf
          -- ranked in steps of 0.01 (about 10 hours at a 30-day half-life): cards written moments
          -- apart tie, so recency breaks ties and near-ties of the other legs and no more
          FROM (SELECT w.*, (rank() OVER (ORDER BY round(w.recency::numeric, 2) DESC))::int AS recency_rank
                FROM (SELECT c.id, kernel._recency(c.updated_at, u.last_used_at, u.used_count, v_now, v_half_life) AS recency
                      FROM (SELECT unnest(v_t_ids) UNION SELECT unnest(v_v_ids)) AS ids(id)
                      JOIN kernel.card c ON c.id = ids.id
                      LEFT JOIN kernel.usage u ON u.mem_id = c.id) w) r) f) z;

    -- MMR over the best candidates: each next card maximises
    -- lambda * relevance - (1 - lambda) * its greatest similarity to a card already taken.
    -- Relevance is 1 / the card's place in the fused order (ties share a place): RRF scores
    -- themselves differ by a few per cent, which any similarity would outweigh. Similarity is
    -- the cosine of the two cards' embeddings in the query vector's space, else the overlap
    -- (Jaccard) of their summaries' words (tags left out: they say what a card is about, not what it says).
    v_pool := least(coalesce(cardinality(v_ids), 0), greatest(4 * v_k, 20));
    -- What the pool's cards are compared by: the embedding in the query vector's space, and the
    -- summary's words (the tsvector's weight-A lexemes; tags are weight B).
    SELECT array_agg(e.embedding ORDER BY x.i), array_agg(ts_filter(c.tsv, '{a}') ORDER BY x.i)
    INTO v_emb, v_tsv
    FROM unnest(v_ids[1:v_pool]) WITH ORDINALITY AS x(id, i)
    JOIN kernel.card c ON c.id = x.id
    LEFT JOIN LATERAL (SELECT e.embedding FROM kernel.embedding e
                       WHERE v_vector IS NOT NULL AND e.mem_id = c.id AND e.dim = v_dim AND (p_model IS NULL OR e.model = p_model)
                       ORDER BY e.model, e.provider LIMIT 1) e ON true;
    v_maxsim := array_fill(0::float8, ARRAY[v_pool]);
    v_taken := array_fill(false, ARRAY[v_pool]);
    v_mmr := array_fill(NULL::float8, ARRAY[v_pool]);
    v_penalty := array_fill(NULL::float8, ARRAY[v_pool]);
    FOR v_step IN 1 .. least(v_k, v_pool) LOOP
        v_best := NULL;
        FOR v_i IN 1 .. v_pool LOOP
            CONTINUE WHEN v_taken[v_i];
            v_s := v_lambda / v_place[v_i] - (1 - v_lambda) * v_maxsim[v_i];
            IF v_best IS NULL OR v_s > v_best_score THEN
                v_best := v_i;
                v_best_score := v_s;
            END IF;
        END LOOP;
        v_taken[v_best] := true;
        v_order := v_order || v_best;
        v_mmr[v_best] := v_best_score;
        v_penalty[v_best] := v_maxsim[v_best];
        SELECT array_agg(CASE WHEN v_taken[m.i] THEN m.sim
                              ELSE greatest(m.sim, CASE WHEN m.e IS NOT NULL AND v_emb[v_best] IS NOT NULL THEN 1 - (m.e <=> v_emb[v_best])
                                                        ELSE kernel._jaccard(tsvector_to_array(m.t), tsvector_to_array(v_tsv[v_best])) END)
                         END ORDER BY m.i)
        INTO v_maxsim
        FROM unnest(v_maxsim[1:v_pool], v_emb[1:v_pool], v_tsv[1:v_pool]) WITH ORDINALITY AS m(sim, e, t, i);
    END LOOP;

    -- Usage, in this transaction; a hot standby (or a read-only transaction) answers without it.
    IF cardinality(v_order) = 0 THEN
        v_usage := jsonb_build_object('bumped', false, 'reason', 'no card returned');
    ELSIF pg_is_in_recovery() THEN
        v_usage := jsonb_build_object('bumped', false, 'reason', 'hot standby: usage is counted on the primary only');
    ELSIF current_setting('transaction_read_only') = 'on' THEN
        v_usage := jsonb_build_object('bumped', false, 'reason', 'read-only transaction');
    ELSE
        -- in card id order, so two recalls bumping the same cards cannot deadlock
        INSERT INTO kernel.usage AS u (mem_id, user_id, used_count, last_used_at)
        SELECT x.id, v_user, 1, v_now FROM unnest(v_ids[1:v_pool]) WITH ORDINALITY AS x(id, i)
        WHERE x.i = ANY(v_order) ORDER BY x.id
        ON CONFLICT (mem_id, user_id) DO UPDATE SET used_count = u.used_count + 1,
            last_used_at = greatest(u.last_used_at, EXCLUDED.last_used_at);
        v_usage := jsonb_build_object('bumped', true, 'cards', cardinality(v_order));
    END IF;

    v_legs := jsonb_build_object(
        'text', v_text, 'vector', v_vec,
        'recency', jsonb_build_object('ran', cardinality(v_order) > 0, 'half_life', v_half_life::text),
        'usage', v_usage, 'weights', jsonb_build_object('text', v_w_text, 'vector', v_w_vector, 'recency', v_w_recency),
        'rrf_k', v_rrf_k, 'mmr_lambda', v_lambda, 'candidates', coalesce(cardinality(v_ids), 0), 'mmr_pool', v_pool);
    v_note := concat_ws('; ',
        CASE WHEN NOT (v_text ->> 'ran')::boolean THEN 'text leg not run: ' || (v_text ->> 'reason')
             WHEN v_text ? 'reason' THEN 'text leg: ' || (v_text ->> 'reason') END,
        CASE WHEN NOT (v_vec ->> 'ran')::boolean THEN 'vector leg not run: ' || (v_vec ->> 'reason')
             WHEN (v_vec ->> 'matched')::int = 0 THEN 'vector leg: no card left after leaving out rolled-up notes' END);

    IF cardinality(v_order) = 0 THEN
        RETURN QUERY SELECT 0, NULL::uuid, NULL::text, NULL::text[], NULL::text, NULL::text, NULL::float8, NULL::float8,
            NULL::int, NULL::float8, NULL::int, NULL::float8, NULL::int, NULL::float8, NULL::float8, NULL::int,
            NULL::timestamptz, NULL::timestamptz, 'nothing recalled: ' || coalesce(nullif(v_note, ''), 'no candidate'), v_legs;
        RETURN;
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT o.pos::int AS pos, v_ids[o.i] AS id, v_rrf[o.i] AS rrf, v_mmr[o.i] AS mmr, v_penalty[o.i] AS penalty,
               v_rec[o.i] AS rec, v_rec_ranks[o.i] AS rec_rank,
               array_position(v_t_ids, v_ids[o.i]) AS ti, array_position(v_v_ids, v_ids[o.i]) AS vi
        FROM unnest(v_order) WITH ORDINALITY AS o(i, pos)),
    scored AS (
        SELECT p.*, c.summary AS c_summary, c.tags AS c_tags, c.source AS c_source, c.kind AS c_kind,
               c.updated_at AS c_updated_at, coalesce(u.used_count, 0) AS c_used, u.last_used_at AS c_last_used,
               (SELECT count(*) FROM kernel.card r WHERE r.rolled_into = c.id) AS rolled,
               (SELECT CASE WHEN k.card_a = c.id THEN k.card_b ELSE k.card_a END FROM kernel.contradiction k
                WHERE k.resolved_at IS NULL AND (k.card_a = c.id OR k.card_b = c.id) ORDER BY k.detected_at LIMIT 1) AS contra
        FROM picked p JOIN kernel.card c ON c.id = p.id LEFT JOIN kernel.usage u ON u.mem_id = c.id)
    SELECT s.pos, s.id, s.c_summary, s.c_tags, s.c_source, s.c_kind, s.mmr, s.rrf,
           v_t_ranks[s.ti], v_t_scores[s.ti], v_v_ranks[s.vi], v_v_sims[s.vi], s.rec_rank, s.rec, s.penalty,
           s.c_used, s.c_last_used, s.c_updated_at,
           concat_ws('; ',
               CASE WHEN s.ti IS NOT NULL THEN format('text #%s (score %s, %s of the query words)', v_t_ranks[s.ti],
                   round(v_t_scores[s.ti]::numeric, 3), CASE WHEN v_t_all[s.ti] THEN 'all' ELSE 'some' END) END,
               CASE WHEN s.vi IS NOT NULL THEN format('vector #%s (cosine %s, %s)', v_v_ranks[s.vi],
                   round(v_v_sims[s.vi]::numeric, 3), v_v_models[s.vi]) END,
               format('recency #%s (score %s)', s.rec_rank, round(s.rec::numeric, 3)),
               format('RRF %s, MMR %s', round(s.rrf::numeric, 5), round(s.mmr::numeric, 4))
                   || CASE WHEN s.penalty > 0 THEN format(' (similarity %s to a card ranked above)', round(s.penalty::numeric, 3)) ELSE '' END,
               CASE WHEN s.c_kind = 'summary' THEN format('summary of %s rolled-up notes', s.rolled) END,
               CASE WHEN s.contra IS NOT NULL THEN format('contradicts card %s (open: see kernel.contradictions)', s.contra) END,
               nullif(v_note, '')),
           v_legs
    FROM scored s ORDER BY s.pos;
END
$_$;

COMMENT ON FUNCTION kernel.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_k integer, p_model text, p_now timestamp with time zone) IS 'Recalls a user''s top p_k cards (default: the user''s recall_top_k, 5). Legs: full text (websearch_to_tsquery under kernel.text_search_config over the GIN-indexed summary and tags: plain words match any, all-word matches first, except that a word in more than kernel.text_common_cards of the user''s cards (kernel.text_stats) matches only together with the others), vector when p_query_vector is given (cosine to the cards'' embeddings of its size, optionally of p_model; exact or HNSW, see kernel._nearest), each its top kernel.recall_candidates; then usage-aware recency ranked among those candidates (kernel._recency at p_now). Fused by reciprocal rank fusion, weight / (kernel.rrf_k + rank) per leg with the user''s recall_weights; then MMR (kernel.mmr_lambda; relevance 1 / place in the fused order, similarity the embeddings'' cosine in the query''s space, else the overlap of the summaries'' words) over the best max(4k, 20). Recency ranks in steps of 0.01 of its score, so that cards written moments apart tie. Notes rolled into a summary card are left out (the summary stands for them). Each row: every score part, the MMR penalty, usage, why in words, and the legs'' report (JSON); a leg that could not run or found nothing is named in every row, and an empty recall returns one row with rank 0 and no card saying why. Bumps kernel.usage for the cards returned in the same transaction, except on a hot standby or in a read-only transaction (then legs.usage says so).';

CREATE FUNCTION kernel.refresh_text_stats(p_user_id uuid) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_common int := (ops.setting('kernel.text_common_cards'))::int;
    v_cards int := (SELECT count(*) FROM kernel.card c WHERE c.user_id = v_user AND c.rolled_into IS NULL);
    v_rows int := 0;
BEGIN
    DELETE FROM kernel.text_stats s WHERE s.user_id = v_user;
    IF v_cards > v_common THEN  -- with fewer cards no word can be common
        INSERT INTO kernel.text_stats (user_id, lexeme, ndoc, cards)
        SELECT v_user, w.word, w.ndoc, v_cards
        FROM ts_stat(format('SELECT c.tsv FROM kernel.card c WHERE c.user_id = %L AND c.rolled_into IS NULL', v_user)) w
        WHERE w.ndoc > v_common;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
    END IF;
    RETURN v_rows;
END
$$;

COMMENT ON FUNCTION kernel.refresh_text_stats(p_user_id uuid) IS 'Counts the words (lexemes) more than kernel.text_common_cards of a user''s live cards contain into kernel.text_stats (replacing the previous count). The maintenance job runs it daily. Returns the number of common words.';

CREATE FUNCTION kernel.resolve_contradiction(p_user_id uuid, p_contradiction_id uuid, p_keep_card_id uuid DEFAULT NULL::uuid, p_delete_other boolean DEFAULT true, p_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(contradiction_id uuid, kept_id uuid, deleted_id uuid)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_c kernel.contradiction;
BEGIN
    SELECT * INTO v_c FROM kernel.contradiction k WHERE k.id = p_contradiction_id AND k.user_id = v_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_contradiction_id: unknown contradiction %', p_contradiction_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF v_c.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION 'p_contradiction_id: resolved already, at %', v_c.resolved_at USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_keep_card_id IS NOT NULL AND p_keep_card_id NOT IN (v_c.card_a, v_c.card_b) THEN
        RAISE EXCEPTION 'p_keep_card_id: must be one of the two cards of the contradiction (% or %)', v_c.card_a, v_c.card_b
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE kernel.contradiction k SET resolved_at = v_at, kept_id = p_keep_card_id WHERE k.id = v_c.id;
    contradiction_id := v_c.id;
    kept_id := p_keep_card_id;
    IF p_keep_card_id IS NOT NULL AND p_delete_other THEN
        deleted_id := CASE WHEN p_keep_card_id = v_c.card_a THEN v_c.card_b ELSE v_c.card_a END;
        DELETE FROM kernel.card c WHERE c.id = deleted_id AND c.user_id = v_user;  -- takes the pair's row along
    END IF;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION kernel.resolve_contradiction(p_user_id uuid, p_contradiction_id uuid, p_keep_card_id uuid, p_delete_other boolean, p_at timestamp with time zone) IS 'Resolves an open contradiction explicitly: with p_keep_card_id, that card stands and the other is deleted (unless p_delete_other is false); without it both stand as compatible. Either way the pair no longer surfaces in kernel.contradictions, and writing one of its cards again does not reopen it. Returns what was kept and deleted.';

CREATE FUNCTION kernel.run_maintenance(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_max_users integer DEFAULT NULL::integer) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_now timestamptz := kernel._clock(p_now);
    v_day date := v_now::date;
    v_batch int := coalesce(p_max_users, (ops.setting('kernel.maintenance_batch_users'))::int);
    v_run bigint;
    v_user uuid;
    v_log jsonb;
    v_t timestamptz;
    v_rows bigint;
    v_pruned record;
    v_step text;
    v_err text;
    v_done int := 0;
    v_failed int := 0;
    v_left int;
BEGIN
    IF v_batch IS NULL OR v_batch < 1 THEN
        RAISE EXCEPTION 'p_max_users: must be at least 1, got %', v_batch USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.kernel.maintenance')) THEN
        RAISE NOTICE 'kernel maintenance: another run holds the lock; nothing done';
        RETURN NULL;
    END IF;
    INSERT INTO ops.kernel_runs (as_of) VALUES (v_now) RETURNING run_id INTO v_run;

    -- Once a day: finding the sizes that need an index reads every embedding's (user, size).
    IF NOT EXISTS (SELECT 1 FROM ops.kernel_run_log l WHERE l.user_id IS NULL AND l.maintained_for = v_day
                   AND l.step = 'vector indexes') THEN
        v_t := clock_timestamp();
        SELECT count(*) INTO v_rows FROM kernel.ensure_vector_indexes() x WHERE x.action = 'created';
        INSERT INTO ops.kernel_run_log (run_id, user_id, maintained_for, step, rows, duration_ms, ok)
        VALUES (v_run, NULL, v_day, 'vector indexes', v_rows, 1000 * extract(epoch FROM clock_timestamp() - v_t), true);
    END IF;

    -- Users with kernel data not yet maintained for this day (nor failed three times for it).
    FOR v_user IN
        SELECT u.user_id FROM memory.users u
        WHERE (EXISTS (SELECT 1 FROM kernel.card c WHERE c.user_id = u.user_id)
               OR EXISTS (SELECT 1 FROM kernel.journal j WHERE j.user_id = u.user_id))
          AND NOT EXISTS (SELECT 1 FROM ops.kernel_run_log l
                          WHERE l.user_id = u.user_id AND l.maintained_for = v_day AND l.step = 'done')
          AND (SELECT count(*) FROM ops.kernel_run_log l
               WHERE l.user_id = u.user_id AND l.maintained_for = v_day AND l.step = 'failed') < 3
        ORDER BY u.user_id
        LIMIT v_batch
    LOOP
        v_log := '[]';
        BEGIN
            v_t := clock_timestamp(); v_step := 'prune stale';
            SELECT * INTO v_pruned FROM kernel.prune(v_user, v_now);
            v_log := v_log || jsonb_build_object('step', 'prune stale', 'rows', v_pruned.stale_deleted, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t))
                           || jsonb_build_object('step', 'trim to max_cards', 'rows', v_pruned.trimmed, 'ms', 0);
            v_t := clock_timestamp(); v_step := 'compress';
            SELECT coalesce(sum(x.notes_rolled), 0) INTO v_rows FROM kernel.compress(v_user, NULL, least(v_now, now())) x;
            v_log := v_log || jsonb_build_object('step', 'compress', 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
            v_t := clock_timestamp(); v_step := 'compact journal';
            SELECT coalesce(sum(x.entries), 0) INTO v_rows FROM kernel.compact_journal(v_user, v_now) x;
            v_log := v_log || jsonb_build_object('step', 'compact journal', 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
            v_t := clock_timestamp(); v_step := 'text stats';
            v_rows := kernel.refresh_text_stats(v_user);
            v_log := v_log || jsonb_build_object('step', 'text stats', 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t))
                           || jsonb_build_object('step', 'done', 'rows', 0, 'ms', 0);
            v_done := v_done + 1;
        EXCEPTION WHEN OTHERS THEN
            -- This user's maintenance is rolled back; the others go on. Logged, raised as a warning.
            GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT;
            v_failed := v_failed + 1;
            v_log := jsonb_build_array(jsonb_build_object('step', 'failed', 'rows', 0,
                     'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t), 'error', v_step || ': ' || v_err));
            RAISE WARNING 'kernel maintenance: user % failed at %: %', v_user, v_step, v_err;
        END;
        INSERT INTO ops.kernel_run_log (run_id, user_id, maintained_for, step, rows, duration_ms, ok, error)
        SELECT v_run, v_user, v_day, e ->> 'step', (e ->> 'rows')::bigint, (e ->> 'ms')::float8, e ->> 'error' IS NULL, e ->> 'error'
        FROM jsonb_array_elements(v_log) e;
    END LOOP;

    v_t := clock_timestamp();
    DELETE FROM kernel.tombstone t WHERE t.deleted_at < v_now - (ops.setting('kernel.tombstone_keep') #>> '{}')::interval;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    INSERT INTO ops.kernel_run_log (run_id, user_id, maintained_for, step, rows, duration_ms, ok)
    VALUES (v_run, NULL, v_day, 'trim tombstones', v_rows, 1000 * extract(epoch FROM clock_timestamp() - v_t), true);
    DELETE FROM ops.kernel_runs r WHERE r.started_at < now() - (ops.setting('ops.keep_history') #>> '{}')::interval;

    SELECT count(*) INTO v_left FROM memory.users u
    WHERE (EXISTS (SELECT 1 FROM kernel.card c WHERE c.user_id = u.user_id)
           OR EXISTS (SELECT 1 FROM kernel.journal j WHERE j.user_id = u.user_id))
      AND NOT EXISTS (SELECT 1 FROM ops.kernel_run_log l WHERE l.user_id = u.user_id AND l.maintained_for = v_day
                      AND l.step = 'done');
    UPDATE ops.kernel_runs r SET finished_at = clock_timestamp(), users_done = v_done, users_failed = v_failed, users_left = v_left,
        status = CASE WHEN v_failed = 0 THEN 'ok' WHEN v_done = 0 THEN 'failed' ELSE 'partial' END
    WHERE r.run_id = v_run;
    RETURN v_run;
END
$$;

COMMENT ON FUNCTION kernel.run_maintenance(p_now timestamp with time zone, p_max_users integer) IS 'The kernel''s maintenance job (pg_cron, cron.kernel_maintenance, hourly): builds missing HNSW indexes (kernel.ensure_vector_indexes, first call of a day), then for up to p_max_users (kernel.maintenance_batch_users) users with kernel data not yet maintained for p_now''s day: kernel.prune, kernel.compress, kernel.compact_journal, kernel.refresh_text_stats, each user in a subtransaction (a failure rolls back that user only, is logged and retried by a later call, at most three times a day); then forgets tombstones older than kernel.tombstone_keep. Each call is one transaction, so a day''s users are done in committed batches across calls; a killed call leaves nothing half-done and the next one takes its users. Advisory-locked (a second concurrent call returns NULL) and idempotent. Logged in ops.kernel_runs and ops.kernel_run_log (bi.kernel_runs). Returns the run id.';

CREATE FUNCTION kernel.set_config(p_user_id uuid, p_key text, p_value jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_problem text;
BEGIN
    IF p_key IS NULL OR p_key NOT IN ('emit_auto_on', 'versioning', 'prune_policy', 'recall_top_k', 'recall_weights') THEN
        RAISE EXCEPTION 'p_key: must be one of emit_auto_on, versioning, prune_policy, recall_top_k, recall_weights'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_value IS NULL THEN
        DELETE FROM kernel.config c WHERE c.user_id = v_user AND c.key = p_key;
    ELSE
        v_problem := kernel._config_problem(p_key, p_value);
        IF v_problem IS NOT NULL THEN
            RAISE EXCEPTION 'p_value: % %', p_key, v_problem USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO kernel.config AS c (user_id, key, value) VALUES (v_user, p_key, p_value)
        ON CONFLICT (user_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
        WHERE c.value IS DISTINCT FROM EXCLUDED.value;
    END IF;
    RETURN kernel._config(v_user) -> p_key;
END
$$;

COMMENT ON FUNCTION kernel.set_config(p_user_id uuid, p_key text, p_value jsonb) IS 'Sets one MemoryConfig key for a user (emit_auto_on, versioning, prune_policy, recall_top_k, recall_weights); a NULL value removes the override. Refuses a value that does not fit its key, naming the key and the rule. Returns the key''s effective value.';

CREATE FUNCTION kernel.summarise_extractive(p_texts text[], p_max_words integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
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
$_$;

COMMENT ON FUNCTION kernel.summarise_extractive(p_texts text[], p_max_words integer) IS 'The default kernel summariser (the kernel.summariser setting names it): extractive, no LLM. Takes the first sentence of each text, most central first (summed Jaccard word overlap with the other texts), while they fit in p_max_words words, and returns them in the texts'' order; if none fits, the most central one cut to p_max_words. Any function(text[], int) returning text can replace it, an LLM-backed one included.';

CREATE FUNCTION kernel.upsert_card(p_user_id uuid, p_summary text, p_tags text[] DEFAULT NULL::text[], p_source text DEFAULT NULL::text, p_subject text DEFAULT NULL::text, p_embedding real[] DEFAULT NULL::real[], p_provider text DEFAULT NULL::text, p_model text DEFAULT NULL::text, p_card_id uuid DEFAULT NULL::uuid, p_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(card_id uuid, action text, contradicts uuid[], summary_card_id uuid)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_summary text := kernel._checked_text(p_summary, 'p_summary');
    v_tags text[] := kernel._checked_tags(p_tags);
    v_subject text := kernel._checked_subject(p_subject);
    v_vector vector := kernel._checked_vector(p_embedding, 'p_embedding');
    v_dim int;
    v_id uuid;
    v_inserted boolean := false;
    v_other uuid;
    v_card kernel.card;
BEGIN
    IF p_source IS NOT NULL AND p_source NOT IN ('msc', 'bio', 'export', 'journal') THEN
        RAISE EXCEPTION 'p_source: must be one of msc, bio, export, journal (got %)', quote_literal(p_source)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_vector IS NULL AND (p_provider IS NOT NULL OR p_model IS NOT NULL) THEN
        RAISE EXCEPTION 'p_embedding: required when p_provider or p_model is given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_vector IS NOT NULL THEN
        IF p_provider IS NULL OR p_provider !~ '\S' OR length(p_provider) > 200 THEN
            RAISE EXCEPTION 'p_provider: an embedding needs its provider (1 to 200 characters)' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF p_model IS NULL OR p_model !~ '\S' OR length(p_model) > 200 THEN
            RAISE EXCEPTION 'p_model: an embedding needs its model (1 to 200 characters)' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- One provider/model gives one size: a vector of another size is a caller's mistake.
        SELECT e.dim INTO v_dim FROM kernel.embedding e
        WHERE e.user_id = v_user AND e.model = p_model AND e.provider = p_provider LIMIT 1;
        IF v_dim <> vector_dims(v_vector) THEN
            RAISE EXCEPTION 'p_embedding: must have % dimensions like this user''s other embeddings of the same provider and model, got %',
                v_dim, vector_dims(v_vector) USING ERRCODE = 'data_exception';
        END IF;
    END IF;

    PERFORM kernel._lock_user(v_user);
    IF p_card_id IS NULL THEN
        INSERT INTO kernel.card AS c (user_id, summary, tags, source, subject, content_key, ts_config, created_at, updated_at)
        VALUES (v_user, v_summary, coalesce(v_tags, '{}'), coalesce(p_source, 'msc'),
                coalesce(v_subject, kernel._subject_of(v_tags)), kernel._content_key(v_summary),
                (ops.setting('kernel.text_search_config') #>> '{}')::regconfig, v_at, v_at)
        ON CONFLICT (user_id, content_key) DO UPDATE SET
            summary = EXCLUDED.summary,
            tags = ARRAY(SELECT m.tag FROM (SELECT t.tag, min(t.n) AS n FROM unnest(c.tags || EXCLUDED.tags)
                                            WITH ORDINALITY AS t(tag, n) GROUP BY t.tag) m ORDER BY m.n),
            subject = coalesce(v_subject, c.subject, EXCLUDED.subject),
            updated_at = greatest(c.updated_at, EXCLUDED.updated_at),
            rolled_into = NULL  -- a fact written again is live again, even if compression had rolled it up
        RETURNING c.id, (c.xmax = 0) INTO v_id, v_inserted;
    ELSE
        BEGIN
            UPDATE kernel.card c SET summary = v_summary, tags = coalesce(v_tags, c.tags), source = coalesce(p_source, c.source),
                   subject = coalesce(v_subject, c.subject), updated_at = greatest(c.updated_at, v_at), rolled_into = NULL
            WHERE c.id = p_card_id AND c.user_id = v_user
            RETURNING c.id INTO v_id;
        EXCEPTION WHEN unique_violation THEN
            SELECT c.id INTO v_other FROM kernel.card c WHERE c.user_id = v_user AND c.content_key = kernel._content_key(v_summary);
            RAISE EXCEPTION 'p_summary: card % already states this fact', v_other USING ERRCODE = 'unique_violation';
        END;
        IF v_id IS NULL THEN
            RAISE EXCEPTION 'p_card_id: unknown card %', p_card_id USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    IF v_inserted THEN
        INSERT INTO kernel.usage (mem_id, user_id) VALUES (v_id, v_user) ON CONFLICT DO NOTHING;
    END IF;
    IF v_vector IS NOT NULL THEN
        INSERT INTO kernel.embedding AS e (user_id, mem_id, provider, model, dim, embedding, created_at)
        VALUES (v_user, v_id, p_provider, p_model, vector_dims(v_vector), v_vector, v_at)
        ON CONFLICT (mem_id, provider, model, user_id) DO UPDATE SET embedding = EXCLUDED.embedding, dim = EXCLUDED.dim,
            created_at = EXCLUDED.created_at
        WHERE e.embedding IS DISTINCT FROM EXCLUDED.embedding;
    END IF;

    card_id := v_id;
    action := CASE WHEN v_inserted THEN 'inserted' ELSE 'updated' END;
    contradicts := kernel._detect_contradictions(v_user, v_id, v_vector, p_provider, p_model, v_at);
    SELECT * INTO v_card FROM kernel.card c WHERE c.id = v_id;
    IF v_card.kind = 'note' AND v_card.subject IS NOT NULL THEN
        SELECT s.summary_card_id INTO summary_card_id FROM kernel._compress_subject(v_user, v_card.subject, v_at) s;
    END IF;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION kernel.upsert_card(p_user_id uuid, p_summary text, p_tags text[], p_source text, p_subject text, p_embedding real[], p_provider text, p_model text, p_card_id uuid, p_at timestamp with time zone) IS 'Writes one card for a user. Without p_card_id: a new card, or, when the user already has a card stating the same fact (the normalised summary''s content key), that card, overwritten in place: newest wording, tags merged, updated_at moved to p_at; never a second card, also when two writers race. With p_card_id: that card''s summary (and given tags, source, subject) overwritten. p_embedding (with p_provider and p_model) adds or replaces the card''s embedding of that model; any size, one size per model. Then checks for contradictions (kernel.contradictions) and, for a note with a subject (p_subject, else its first tag that is not key:), compresses the subject once it holds kernel.compress_after live notes. Returns the card id, inserted or updated, the cards it contradicts and the summary card the subject''s older notes were rolled into, if that happened.';

CREATE FUNCTION kernel.write_meta_layer(p_user_id uuid, p_summary text DEFAULT NULL::text, p_patterns text[] DEFAULT NULL::text[], p_contradictions text[] DEFAULT NULL::text[], p_decisions text[] DEFAULT NULL::text[], p_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(journal_id uuid, turn integer, summary text, detail jsonb)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_every int := (ops.setting('kernel.meta_every'))::int;
    v_turn int;
    v_from int;
    v_summary text;
    v_detail jsonb;
    v_id uuid;
BEGIN
    PERFORM kernel._lock_user(v_user);
    v_turn := coalesce((SELECT max(j.turn) FROM kernel.journal j WHERE j.user_id = v_user AND j.kind = 'turn'), 0);
    v_from := coalesce((SELECT max(j.turn) FROM kernel.journal j WHERE j.user_id = v_user AND j.kind = 'meta'), 0) + 1;
    IF v_turn - v_from + 1 < v_every THEN
        RAISE EXCEPTION 'turn: a meta-layer entry comes every % turns; % journaled since the last one', v_every, v_turn - v_from + 1
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- What the caller does not say is synthesised from the turns since the last meta layer:
    -- patterns are the tags most reflected on, contradictions the open ones, decisions the conclusions.
    p_patterns := coalesce(p_patterns, ARRAY(
        SELECT format('%s (%s)', t.tag, count(*)) FROM kernel.journal j, unnest(j.reflected_ids) r(id)
        JOIN kernel.card c ON c.id = r.id, unnest(c.tags) t(tag)
        WHERE j.user_id = v_user AND j.kind = 'turn' AND j.turn BETWEEN v_from AND v_turn
        GROUP BY t.tag ORDER BY count(*) DESC, t.tag LIMIT 5));
    p_contradictions := coalesce(p_contradictions, ARRAY(
        SELECT format('%s <> %s', left(k.summary_a, 80), left(k.summary_b, 80)) FROM kernel.contradictions(v_user) k));
    p_decisions := coalesce(p_decisions, ARRAY(
        SELECT j.conclusion FROM kernel.journal j
        WHERE j.user_id = v_user AND j.kind = 'turn' AND j.turn BETWEEN v_from AND v_turn AND j.conclusion ~ '\S'
        ORDER BY j.turn));
    v_summary := CASE WHEN p_summary IS NOT NULL THEN kernel._checked_summary(p_summary, 'p_summary')
                      ELSE kernel._first_words(format('Turns %s-%s. Patterns: %s. Open contradictions: %s. Decisions: %s',
                               v_from, v_turn, coalesce(nullif(array_to_string(p_patterns, ', '), ''), 'none'),
                               cardinality(p_contradictions), coalesce(nullif(array_to_string(p_decisions, '; '), ''), 'none')), 70) END;
    v_detail := jsonb_build_object('patterns', to_jsonb(p_patterns), 'contradictions', to_jsonb(p_contradictions),
                                   'decisions', to_jsonb(p_decisions), 'turns', jsonb_build_array(v_from, v_turn));
    INSERT INTO kernel.journal AS j (user_id, stage, summary, conclusion, created_at, kind, turn, detail)
    VALUES (v_user, (SELECT s.stage FROM kernel._stage(v_user) s), v_summary, '', v_at, 'meta', v_turn, v_detail)
    RETURNING j.id INTO v_id;
    journal_id := v_id;
    turn := v_turn;
    summary := v_summary;
    detail := v_detail;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION kernel.write_meta_layer(p_user_id uuid, p_summary text, p_patterns text[], p_contradictions text[], p_decisions text[], p_at timestamp with time zone) IS 'Writes the meta-layer entry that spec 001 section 2 asks for every kernel.meta_every (4) turns: patterns, contradictions, decisions. Refused until that many turns were journaled since the last one. Parts not given are synthesised from the turns since: the tags of the cards they reflected on most (patterns), the open contradictions, the turns'' conclusions (decisions); so is a summary (at most 70 words). Returns the entry.';

CREATE FUNCTION memory._acting_user() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
    SELECT v.user_id
    FROM (SELECT CASE WHEN s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN s::uuid END AS user_id
          FROM coalesce(current_setting('psimem.user_id', true), '') AS s) v
    WHERE memory._may_act_for(v.user_id)
$_$;

COMMENT ON FUNCTION memory._acting_user() IS 'Internal; every row-level security policy calls it. The user named by the setting psimem.user_id if this login may act for that user (memory._may_act_for), otherwise NULL, so that setting psimem.user_id by hand to a user the login is not bound to shows nothing.';

CREATE FUNCTION memory._bm25_term(p_idf double precision, p_tf integer, p_length integer, p_avg_length double precision, p_k1 double precision, p_b double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((p_idf * ((p_tf)::double precision * (p_k1 + (1)::double precision))) / ((p_tf)::double precision + (p_k1 * (((1)::double precision - p_b) + ((p_b * (p_length)::double precision) / p_avg_length)))));

COMMENT ON FUNCTION memory._bm25_term(p_idf double precision, p_tf integer, p_length integer, p_avg_length double precision, p_k1 double precision, p_b double precision) IS 'Internal, one query word''s share of a turn''s BM25 score: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length)), lengths in lexemes. Both text rankings (memory._recall_text_leg, memory.recall_in_blocks) sum it, so they cannot drift apart; a plain SQL expression, inlined where it is called.';

CREATE FUNCTION memory._checked_time(p_value timestamp with time zone, p_field text) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_skew interval := (ops.setting('limits.future_skew') #>> '{}')::interval;
BEGIN
    IF p_value IS NULL THEN
        RETURN NULL;
    END IF;
    IF NOT isfinite(p_value) OR p_value < '1970-01-01 00:00:00+00' OR p_value > now() + v_skew THEN
        RAISE EXCEPTION '%: must lie between 1970-01-01 and now() + % (limits.future_skew), got %', p_field, v_skew, p_value
            USING ERRCODE = 'datetime_field_overflow';
    END IF;
    RETURN p_value;
END
$$;

COMMENT ON FUNCTION memory._checked_time(p_value timestamp with time zone, p_field text) IS 'Internal. Returns the timestamp if it lies between 1970-01-01 and now() plus limits.future_skew; otherwise raises an error naming p_field. A turn dated years ahead would never be consolidated or cleaned up.';

CREATE FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text) RETURNS public.vector
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_dim int := (ops.setting('embedding.' || p_space || '_dim'))::int;
BEGIN
    IF p_value IS NULL THEN
        RETURN NULL;
    END IF;
    IF array_ndims(p_value) IS DISTINCT FROM 1 OR cardinality(p_value) <> v_dim THEN
        RAISE EXCEPTION '%: must have % dimensions (the installed % size), got %',
            p_field, v_dim, p_space, coalesce(cardinality(p_value), 0)
            USING ERRCODE = 'data_exception';
    END IF;
    RETURN memory._finite_vector(p_value, p_field);
END
$$;

COMMENT ON FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text) IS 'Internal. Turns a real[] into a vector after checking it against the installed size of the universal or native space (p_space) and for NaN, infinity and NULL elements and for all zeros; errors name p_field.';

CREATE FUNCTION memory._condense(p_text text, p_max integer, p_from_end boolean DEFAULT false) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT CASE
        WHEN p_text IS NULL THEN NULL
        WHEN length(p_text) <= p_max THEN p_text
        WHEN p_from_end THEN '…' || btrim(right(p_text, p_max - 1))
        ELSE coalesce(nullif(btrim(substring(left(p_text, p_max - 1) FROM '^(.*\S)\s')), ''), left(p_text, p_max - 1)) || '…'
    END
$$;

COMMENT ON FUNCTION memory._condense(p_text text, p_max integer, p_from_end boolean) IS 'Internal. Shortens text to at most p_max characters: cut at the last word boundary and marked with an ellipsis, or with p_from_end its last characters after an ellipsis. Text already short enough is returned unchanged.';

CREATE FUNCTION memory._day_table_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_session memory.sessions%ROWTYPE;
    v_cfg jsonb;
    v_recent real[];
    v_n int;
    v_mean double precision;
    v_sd double precision;
    v_prev double precision;
    v_p double precision := NEW.perplexity_score;
    v_window int;
    v_same boolean;
BEGIN
    -- One row kept by a trigger on ops.settings: a tenth of the cost of aggregating the
    -- settings for every turn (and, unlike a session variable, not the writer's to set).
    SELECT r.rules INTO v_cfg FROM ops.turn_rules r;
    IF v_cfg IS NULL THEN  -- fail closed: without the limits no check below would refuse anything
        RAISE EXCEPTION 'ops.turn_rules is empty: run psimem db migrate' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    IF NEW.role IS NULL OR NEW.role NOT IN ('user', 'assistant', 'system') THEN
        RAISE EXCEPTION 'role: must be one of user, assistant, system (got %)', quote_nullable(NEW.role)
            USING ERRCODE = 'check_violation', COLUMN = 'role';
    END IF;
    IF NEW.content IS NULL OR NEW.content !~ '\S' THEN
        RAISE EXCEPTION 'content: must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'content';
    END IF;
    IF length(NEW.content) > (v_cfg->>'limits.content_max_chars')::int THEN
        RAISE EXCEPTION 'content: must be at most % characters (limits.content_max_chars), got %',
            v_cfg->>'limits.content_max_chars', length(NEW.content)
            USING ERRCODE = 'check_violation', COLUMN = 'content';
    END IF;
    IF v_p IS NOT NULL AND (v_p < 0 OR v_p = 'NaN' OR v_p > (v_cfg->>'limits.perplexity_max')::float8) THEN
        RAISE EXCEPTION 'perplexity_score: must be a finite number between 0 and % (limits.perplexity_max), got %',
            v_cfg->>'limits.perplexity_max', v_p
            USING ERRCODE = 'check_violation', COLUMN = 'perplexity_score';
    END IF;
    IF NEW.token_count < 0 OR NEW.token_count > (v_cfg->>'limits.content_max_chars')::int THEN
        RAISE EXCEPTION 'token_count: must be between 0 and % (limits.content_max_chars), got %',
            v_cfg->>'limits.content_max_chars', NEW.token_count
            USING ERRCODE = 'check_violation', COLUMN = 'token_count';
    END IF;
    IF NEW.turn_number < 1 OR NEW.turn_number > (v_cfg->>'limits.turn_number_max')::int THEN
        RAISE EXCEPTION 'turn_number: must be between 1 and % (limits.turn_number_max), got %',
            v_cfg->>'limits.turn_number_max', NEW.turn_number
            USING ERRCODE = 'check_violation', COLUMN = 'turn_number';
    END IF;
    IF NEW.created_at IS NOT NULL AND (NOT isfinite(NEW.created_at) OR NEW.created_at < '1970-01-01 00:00:00+00'
                                      OR NEW.created_at > now() + (v_cfg->>'limits.future_skew')::interval) THEN
        RAISE EXCEPTION 'created_at: must lie between 1970-01-01 and now() + % (limits.future_skew), got %',
            v_cfg->>'limits.future_skew', NEW.created_at
            USING ERRCODE = 'check_violation', COLUMN = 'created_at';
    END IF;
    IF NEW.external_ref IS NOT NULL AND (NEW.external_ref !~ '\S' OR length(NEW.external_ref) > 200) THEN
        RAISE EXCEPTION 'external_ref: must be null or 1 to 200 characters, not blank'
            USING ERRCODE = 'check_violation', COLUMN = 'external_ref';
    END IF;
    -- A zero vector has no direction (every cosine distance to it is NaN). COPY skips
    -- memory._checked_vector, so the check is here too.
    IF vector_norm(NEW.universal_embedding) = 0 OR vector_norm(NEW.native_embedding) = 0 THEN
        RAISE EXCEPTION '%: must not be all zeros', CASE WHEN vector_norm(NEW.universal_embedding) = 0
                                                         THEN 'universal_embedding' ELSE 'native_embedding' END
            USING ERRCODE = 'check_violation';
    END IF;

    -- The row lock orders concurrent writers of one session (turn numbers, flux state).
    SELECT * INTO v_session FROM memory.sessions s WHERE s.session_id = NEW.session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session_id: unknown session %', quote_nullable(NEW.session_id)
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'session_id';
    END IF;
    IF NEW.user_id IS NOT NULL AND NEW.user_id <> v_session.user_id THEN
        RAISE EXCEPTION 'user_id: session % acts for user %, not %', NEW.session_id, v_session.user_id, NEW.user_id
            USING ERRCODE = 'check_violation', COLUMN = 'user_id';
    END IF;
    -- The agent's own id for a turn makes a retried write a no-op: skip the row (after the
    -- session lock, so a concurrent retry sees the first one's commit).
    IF NEW.external_ref IS NOT NULL THEN
        SELECT d.role = NEW.role AND d.content = NEW.content INTO v_same
        FROM memory.day_table d WHERE d.session_id = NEW.session_id AND d.external_ref = NEW.external_ref;
        IF v_same THEN
            RETURN NULL;
        ELSIF NOT v_same THEN
            RAISE EXCEPTION 'external_ref: % is already a turn of session % with another role or content', quote_literal(NEW.external_ref), NEW.session_id
                USING ERRCODE = 'unique_violation', COLUMN = 'external_ref';
        END IF;
    END IF;
    NEW.user_id := v_session.user_id;
    SELECT u.tier INTO NEW.user_tier FROM memory.users u WHERE u.user_id = v_session.user_id;
    IF NEW.turn_number IS NULL AND v_session.turn_count >= (v_cfg->>'limits.turn_number_max')::int THEN
        RAISE EXCEPTION 'turn_number: session % holds % turns, the most limits.turn_number_max allows', NEW.session_id, v_session.turn_count
            USING ERRCODE = 'check_violation', COLUMN = 'turn_number';
    END IF;
    NEW.turn_number := coalesce(NEW.turn_number, v_session.turn_count + 1);
    NEW.created_at := coalesce(NEW.created_at, now());
    NEW.flux_state := NULL;
    NEW.flux_baseline_mean := NULL;
    NEW.flux_baseline_sd := NULL;
    NEW.flux_arc_start := NULL;

    IF v_p IS NOT NULL THEN
        v_recent := v_session.flux_recent;
        v_n := coalesce(cardinality(v_recent), 0);
        SELECT avg(x), coalesce(stddev_samp(x), 0) INTO v_mean, v_sd FROM unnest(v_recent) AS x;
        v_prev := v_recent[v_n];
        NEW.flux_baseline_mean := v_mean;
        NEW.flux_baseline_sd := v_sd;
        IF NOT v_session.flux_window_open THEN
            IF v_n >= (v_cfg->>'flux.min_baseline_turns')::int
               AND v_p > v_mean + (v_cfg->>'flux.spike_sigma')::float8 * v_sd THEN
                NEW.flux_state := 'spike';
                v_session.flux_window_open := true;
                v_session.flux_baseline := v_mean;
                v_session.flux_peak := v_p;
                v_session.flux_stable_count := 0;
                v_session.flux_arc_start := NEW.turn_number;
                NEW.flux_arc_start := NEW.turn_number;
            ELSE
                NEW.flux_state := 'baseline';
            END IF;
        ELSE
            IF abs(v_p - v_prev) < (v_cfg->>'flux.stable_derivative')::float8 * v_session.flux_baseline THEN
                v_session.flux_stable_count := v_session.flux_stable_count + 1;
            ELSE
                v_session.flux_stable_count := 0;
            END IF;
            v_session.flux_peak := greatest(v_session.flux_peak, v_p);
            NEW.flux_arc_start := v_session.flux_arc_start;
            IF v_session.flux_stable_count >= (v_cfg->>'flux.stabilization_count')::int THEN
                NEW.flux_state := 'stable';
                v_session.flux_window_open := false;
                v_session.flux_stable_count := 0;
            ELSIF v_p > v_prev THEN
                NEW.flux_state := 'spike';
            ELSE
                NEW.flux_state := 'resolution';
            END IF;
        END IF;
        v_window := (v_cfg->>'flux.baseline_window')::int;
        v_recent := v_recent || v_p::real;
        v_session.flux_recent := v_recent[greatest(1, cardinality(v_recent) - v_window + 1):];
    END IF;

    UPDATE memory.sessions s SET
        turn_count = greatest(s.turn_count, NEW.turn_number),
        -- Never later than now: a turn dated in the future must not keep its session from
        -- ever looking idle to the Night Cycle.
        last_turn_at = greatest(s.last_turn_at, least(NEW.created_at, now())),
        flux_recent = v_session.flux_recent,
        flux_window_open = v_session.flux_window_open,
        flux_stable_count = v_session.flux_stable_count,
        flux_baseline = v_session.flux_baseline,
        flux_peak = v_session.flux_peak,
        flux_arc_start = v_session.flux_arc_start
    WHERE s.session_id = NEW.session_id;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION memory._day_table_before_insert() IS 'Trigger on memory.day_table, before each insert (record_turn and bulk COPY alike). Refuses bad rows with errors naming the column and rule (role; content empty or over limits.content_max_chars; perplexity negative, not finite or over limits.perplexity_max; token_count; turn_number over limits.turn_number_max; created_at before 1970 or beyond now() + limits.future_skew; all-zero vectors; unknown session; user mismatch). A row whose external_ref is already a turn of its session with the same role and content is skipped (a retried write); with other content it is refused. Fills user_id and user_tier from the session, numbers the turn when none is given, and sets flux_state from the session''s rolling perplexity: with the window closed, a turn above mean + flux.spike_sigma x stddev of the previous flux.baseline_window turns (at least flux.min_baseline_turns of them) is a spike and opens the window; with it open, a turn whose |change| from the previous turn is below flux.stable_derivative x the baseline mean counts as stable, flux.stabilization_count consecutive stable turns close the window (state stable), and other turns are spike (rising) or resolution (falling). Each scored turn keeps its baseline (flux_baseline_mean, flux_baseline_sd) and, from the spike opening a window to the stable turn closing it, that spike''s turn number (flux_arc_start): the Night Cycle''s arcs are groups of it. Turns without perplexity get no flux_state. The session''s last_turn_at becomes the turn''s created_at, or now() when that lies in the future. The flux.* and limits.* settings are read from ops.turn_rules.';

CREATE FUNCTION memory._day_table_text_stats() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

COMMENT ON FUNCTION memory._day_table_text_stats() IS 'Internal, statement trigger on memory.day_table: adds the new turns'' lexemes to memory.text_stats (turns containing each lexeme, per user) and their counts to memory.text_totals. Counts are never decreased when retention deletes turns: they describe the history recall searches.';

CREATE FUNCTION memory._finite_vector(p_value real[], p_field text) RETURNS public.vector
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_vector vector;
BEGIN
    BEGIN
        v_vector := p_value::vector;
    EXCEPTION WHEN data_exception OR null_value_not_allowed THEN
        -- pgvector refuses NaN, infinity and NULL elements; say which argument held them.
        RAISE EXCEPTION '%: must hold finite numbers only (%)', p_field, SQLERRM USING ERRCODE = 'data_exception';
    END;
    -- A zero vector has no direction: every cosine distance to it is NaN.
    IF vector_norm(v_vector) = 0 THEN
        RAISE EXCEPTION '%: must not be all zeros (cosine distance to it is undefined)', p_field USING ERRCODE = 'data_exception';
    END IF;
    RETURN v_vector;
END
$$;

COMMENT ON FUNCTION memory._finite_vector(p_value real[], p_field text) IS 'Internal. Turns a one-dimensional real[] of a size already checked into a vector, refusing NaN, infinity and NULL elements and all zeros; errors name p_field.';

CREATE FUNCTION memory._may_act_for(p_user_id uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT p_user_id IS NOT NULL
       AND (pg_has_role(session_user, 'psimem_admin', 'MEMBER')
            OR EXISTS (SELECT 1 FROM memory.user_bindings b
                       WHERE b.user_id = p_user_id AND pg_has_role(session_user, b.grantee, 'MEMBER')))
$$;

COMMENT ON FUNCTION memory._may_act_for(p_user_id uuid) IS 'Internal. True when the login of this session (session_user, which a non-superuser cannot change) may act for the user: it, or a role it is a member of, is bound to the user in memory.user_bindings, or it is a member of psimem_admin.';

CREATE FUNCTION memory._mean_salience(p_scores jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$ BEGIN RETURN (
    SELECT jsonb_object_agg(lvl, (
               SELECT jsonb_object_agg(x.k, x.v) FROM (
                   SELECT k, round(avg((e -> lvl ->> k)::float8)::numeric, 4) AS v
                   FROM jsonb_array_elements(p_scores) e, unnest(ARRAY['P', 'C', 'ID']) k GROUP BY k) x))
           || jsonb_build_object('composite', (SELECT round(avg((e ->> 'composite')::float8)::numeric, 4)
                                               FROM jsonb_array_elements(p_scores) e))
    FROM unnest(ARRAY['utterance_level', 'exchange_level', 'theme_level']) lvl);
END $$;

COMMENT ON FUNCTION memory._mean_salience(p_scores jsonb) IS 'Internal. Mean of a JSON array of salience_scores objects, level by level: the salience of a compound block.';

CREATE FUNCTION memory._night_analyze() RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    SET default_statistics_target TO '10'
    AS $$
BEGIN
    -- A 3,000-row sample tells the planner enough about run_id, user_id and block_id: without
    -- statistics it joined a user's blocks to their turns by scanning all the user's turns
    -- for each block. The tables the run grows are analysed too (their plans are cached).
    ANALYZE memory.night_sessions, memory.night_arcs, memory.night_blocks, memory.night_block_turns, memory.night_zones,
            memory.flux_arcs, memory.holographic_blocks, memory.block_relationships, memory.consolidations;
END
$$;

COMMENT ON FUNCTION memory._night_analyze() IS 'Internal, Night Cycle: statistics (a small sample) for its work tables and the tables a run grows, taken each time the run''s users done double, so that the plans the stages cache fit what the tables hold.';

CREATE FUNCTION memory._night_backfill_mode(p_run_id bigint) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION memory._night_backfill_mode(p_run_id bigint) IS 'Internal, Night Cycle backfill mode, when a run opens: drops the HNSW indexes of memory.block_turns when the sessions it will take hold at least night.index_rebuild_min_blocks turns and more than night.index_rebuild_ratio times the rows block_turns holds, and those of memory.holographic_blocks when it is about to form at least that many blocks (counted from the spike turns) and more than that ratio times the blocks already stored (one build costs far less than that many inserts). Records their definitions in ops.cycle_runs.block_indexes for memory._night_restore_block_indexes. Returns the number of indexes dropped.';

CREATE FUNCTION memory._night_batch(p_run_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_run ops.cycle_runs;
    v_batch int := (ops.setting('night.batch_users'))::int;
    v_users uuid[];
    v_user uuid;
    v_last uuid;
    v_done int := 0;
    v_failed int := 0;
    v_before int;
    v_after int;
BEGIN
    v_run := memory._night_running(p_run_id);
    -- Two queries, so that each is a range scan of the users' key from the cursor (an OR
    -- with "no cursor yet" would read every user behind it again for every batch).
    IF v_run.resume_after IS NULL THEN
        v_users := ARRAY(SELECT u.user_id FROM memory.users u WHERE u.user_id = coalesce(v_run.user_id, u.user_id)
                         ORDER BY u.user_id LIMIT v_batch);
    ELSE
        v_users := ARRAY(SELECT u.user_id FROM memory.users u
                         WHERE u.user_id > v_run.resume_after AND u.user_id = coalesce(v_run.user_id, u.user_id)
                         ORDER BY u.user_id LIMIT v_batch);
    END IF;
    FOREACH v_user IN ARRAY v_users LOOP
        IF memory._night_consolidate_user(p_run_id, v_user) THEN
            v_done := v_done + 1;
        ELSE
            v_failed := v_failed + 1;
        END IF;
        v_last := v_user;
    END LOOP;
    IF v_last IS NULL THEN
        RETURN false;
    END IF;
    -- The cursor moves in the same transaction as the batch's work: a run killed before
    -- this commits redoes the batch, one killed after it goes on with the next user.
    UPDATE ops.cycle_runs SET resume_after = v_last, users_done = users_done + v_done, users_failed = users_failed + v_failed
    WHERE run_id = p_run_id;
    v_before := v_run.users_done + v_run.users_failed;
    v_after := v_before + v_done + v_failed;
    IF v_before = 0 OR floor(log(2, v_after)) > floor(log(2, v_before)) THEN
        PERFORM memory._night_analyze();
    END IF;
    IF v_before / 100 < v_after / 100 THEN
        RAISE NOTICE 'night cycle run %: % users done', p_run_id, v_after;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION memory._night_batch(p_run_id bigint) IS 'Internal, Night Cycle: consolidates the next night.batch_users users of a run (in user_id order, after its resume_after cursor) with memory._night_consolidate_user, then moves the cursor and the run''s counts in the same transaction, and refreshes statistics (memory._night_analyze) each time the run''s users done double. Returns false when no user was left.';

CREATE FUNCTION memory._night_consolidate_user(p_run_id bigint, p_user_id uuid) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_stage memory.night_stages;
    v_current memory.night_stages;
    v_taken boolean;
    v_log jsonb := '[]';
    v_t timestamptz;
    v_err text;
BEGIN
    -- One subtransaction: a failure rolls back this user's work only.
    BEGIN
        FOR v_stage IN SELECT * FROM memory.night_stages s WHERE s.scope IN ('user', 'taken') ORDER BY s.stage LOOP
            IF v_stage.scope = 'taken' AND v_taken IS NULL THEN
                v_taken := EXISTS (SELECT 1 FROM memory.night_sessions n WHERE n.run_id = p_run_id AND n.user_id = p_user_id);
            END IF;
            CONTINUE WHEN v_stage.scope = 'taken' AND NOT v_taken;
            v_current := v_stage;
            v_t := clock_timestamp();
            v_log := v_log || memory._night_run_stage(v_stage.stage, p_run_id, p_user_id);
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT;
        v_log := jsonb_build_array(jsonb_build_object('stage', coalesce(v_current.stage, 0), 'name', coalesce(v_current.name, '?'),
                 'rows', 0, 'ms', 1000 * extract(epoch FROM clock_timestamp() - coalesce(v_t, clock_timestamp())),
                 'error', v_err || ' (user''s cycle rolled back)'));
        RAISE WARNING 'night cycle %: user % failed at stage % (%): %', memory._night_cycle_date(p_run_id), p_user_id,
            v_current.stage, v_current.name, v_err;
    END;
    PERFORM memory._night_log(p_run_id, p_user_id, v_log);
    RETURN v_err IS NULL;
END
$$;

COMMENT ON FUNCTION memory._night_consolidate_user(p_run_id bigint, p_user_id uuid) IS 'Internal, Night Cycle: runs the per-user stages of memory.night_stages in order for one user of a run (scope user: always; scope taken: only when stage 0 took sessions of the user), in one subtransaction, and logs each stage''s rows and time in ops.cycle_stage_log. A failure rolls back the user''s work, is logged with its stage and error and raised as a WARNING. Returns whether the user succeeded.';

CREATE FUNCTION memory._night_cycle_date(p_run_id bigint) RETURNS date
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_date date;
BEGIN
    SELECT r.cycle_date INTO v_date FROM ops.cycle_runs r WHERE r.run_id = p_run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_run_id: unknown Night Cycle run %', coalesce(p_run_id::text, 'null') USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_date;
END
$$;

COMMENT ON FUNCTION memory._night_cycle_date(p_run_id bigint) IS 'Internal, Night Cycle: the cycle date of a run (ops.cycle_runs), or an error naming an unknown run. Every stage reads its date through it.';

CREATE FUNCTION memory._night_end(p_since timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_failures text;
BEGIN
    PERFORM memory._night_lock('release');
    SELECT string_agg(format('run %s, user %s, stage %s (%s): %s', l.run_id, l.user_id, l.stage, l.stage_name, l.error),
                      '; ' ORDER BY l.run_id, l.logged_at)
    INTO v_failures
    FROM ops.cycle_runs r JOIN ops.cycle_stage_log l ON l.run_id = r.run_id
    WHERE r.finished_at >= p_since AND NOT l.ok;
    IF v_failures IS NOT NULL THEN
        RAISE EXCEPTION 'night cycle: users failed, their work rolled back (the others'' is committed): %', v_failures
            USING HINT = 'ops.cycle_stage_log has each failure; the next cycle takes their sessions again';
    END IF;
END
$$;

COMMENT ON FUNCTION memory._night_end(p_since timestamp with time zone) IS 'Internal, Night Cycle, the end of CALL memory.night_cycle: releases the session lock, then raises an error naming every user that failed in a run finished since p_since (after the others'' work committed), so that pg_cron records the run as failed.';

CREATE FUNCTION memory._night_finish(p_run_id bigint) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_run ops.cycle_runs;
    v_stage smallint;
    v_t timestamptz := clock_timestamp();
    v_rows bigint;
    v_status text;
BEGIN
    v_run := memory._night_running(p_run_id);
    IF cardinality(v_run.block_indexes) > 0 THEN
        v_rows := memory._night_restore_block_indexes(v_run.block_indexes);
        -- Logged as storage (stage 6), run-wide: it finishes what storage started.
        PERFORM memory._night_log(p_run_id, NULL, jsonb_build_array(jsonb_build_object(
            'stage', 6, 'name', 'storage', 'rows', v_rows, 'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t))));
    END IF;
    FOR v_stage IN SELECT s.stage FROM memory.night_stages s WHERE s.scope = 'run' ORDER BY s.stage LOOP
        PERFORM memory._night_log(p_run_id, NULL, jsonb_build_array(memory._night_run_stage(v_stage, p_run_id, v_run.user_id)));
    END LOOP;
    DELETE FROM memory.night_sessions WHERE run_id = p_run_id;
    DELETE FROM memory.night_arcs WHERE run_id = p_run_id;
    DELETE FROM memory.night_blocks WHERE run_id = p_run_id;
    DELETE FROM memory.night_block_turns WHERE run_id = p_run_id;
    DELETE FROM memory.night_zones WHERE run_id = p_run_id;
    v_status := CASE WHEN v_run.users_failed = 0 THEN 'ok' WHEN v_run.users_done = 0 THEN 'failed' ELSE 'partial' END;
    UPDATE ops.cycle_runs SET finished_at = clock_timestamp(), status = v_status, block_indexes = '{}' WHERE run_id = p_run_id;
    RAISE NOTICE 'night cycle %: run % %, % user(s) consolidated, % failed', v_run.cycle_date, p_run_id, v_status,
        v_run.users_done, v_run.users_failed;
    RETURN v_status;
END
$$;

COMMENT ON FUNCTION memory._night_finish(p_run_id bigint) IS 'Internal, Night Cycle, once every user of a run is done: builds the blocks'' HNSW indexes a backfill dropped (logged as stage 6 for the whole run), runs the stages of scope run (stage 8), empties the run''s work tables and sets its status: ok, partial (some users failed) or failed (all did). Returns the status.';

CREATE FUNCTION memory._night_lock(p_action text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_key bigint := hashtext('psimem.night_cycle');
    -- A session-level advisory lock outlives a rollback: a call that failed in this session
    -- may still hold it. Taking it again would then need two releases, so it is not.
    v_held boolean := EXISTS (SELECT 1 FROM pg_locks l
                              WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.objsubid = 1
                                AND ((l.classid::bigint << 32) | l.objid::bigint) = v_key);
    v_got boolean;
BEGIN
    CASE p_action
        WHEN 'session' THEN
            v_got := v_held OR pg_try_advisory_lock(v_key);
        WHEN 'transaction' THEN
            v_got := pg_try_advisory_xact_lock(v_key);
        WHEN 'release' THEN
            RETURN v_held AND pg_advisory_unlock(v_key);
        ELSE
            RAISE EXCEPTION 'p_action: must be session, transaction or release (got %)', quote_nullable(p_action)
                USING ERRCODE = 'invalid_parameter_value';
    END CASE;
    IF NOT v_got THEN
        RAISE NOTICE 'night cycle: another run holds the lock; nothing done';
    END IF;
    RETURN v_got;
END
$$;

COMMENT ON FUNCTION memory._night_lock(p_action text) IS 'Internal, Night Cycle: the advisory lock that keeps two runs from overlapping. session: try to take it for the session (memory.night_cycle, whose commits a transaction lock would not outlive; already held by this session counts as taken); transaction: try to take it until the transaction ends (memory.run_night_cycle); release: give back the session lock. Returns whether the lock is now held (for release, whether it was given back); says so with a NOTICE when another run holds it.';

CREATE FUNCTION memory._night_log(p_run_id bigint, p_user_id uuid, p_entries jsonb) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_n int;
BEGIN
    INSERT INTO ops.cycle_stage_log (run_id, user_id, stage, stage_name, rows, duration_ms, ok, error)
    SELECT p_run_id, p_user_id, (e ->> 'stage')::int, e ->> 'name', (e ->> 'rows')::bigint, (e ->> 'ms')::float8,
           e ->> 'error' IS NULL, e ->> 'error'
    FROM jsonb_array_elements(p_entries) e;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory._night_log(p_run_id bigint, p_user_id uuid, p_entries jsonb) IS 'Internal, Night Cycle: writes log entries ({stage, name, rows, ms[, error]}, as memory._night_run_stage returns them) to ops.cycle_stage_log for a run and user (NULL: the run as a whole). Returns the number written.';

CREATE FUNCTION memory._night_open_run(p_cycle_date date, p_user_id uuid, p_session_lock boolean) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_run bigint;
    v_broken text;
BEGIN
    IF p_cycle_date IS NULL THEN
        RAISE EXCEPTION 'p_cycle_date: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT string_agg(format('%s (%s)', s.stage, s.name), ', ' ORDER BY s.stage) INTO v_broken
    FROM memory.night_stages s WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = s.function);
    IF v_broken IS NOT NULL THEN
        RAISE EXCEPTION 'memory.night_stages: the function of stage % no longer exists', v_broken
            USING ERRCODE = 'undefined_function', HINT = 'run psimem db migrate, or delete the stage''s row';
    END IF;
    SELECT r.run_id INTO v_run FROM ops.cycle_runs r
    WHERE r.status = 'running' AND r.cycle_date = p_cycle_date AND r.user_id IS NOT DISTINCT FROM p_user_id
    ORDER BY r.run_id LIMIT 1;
    IF FOUND THEN
        RAISE NOTICE 'night cycle %: resuming run %', p_cycle_date, v_run;
        RETURN v_run;
    END IF;
    INSERT INTO ops.cycle_runs (cycle_date, user_id) VALUES (p_cycle_date, p_user_id) RETURNING run_id INTO v_run;
    PERFORM memory._night_backfill_mode(v_run);
    RETURN v_run;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    IF p_session_lock THEN
        PERFORM memory._night_lock('release');
    END IF;
    RAISE;
END
$$;

COMMENT ON FUNCTION memory._night_open_run(p_cycle_date date, p_user_id uuid, p_session_lock boolean) IS 'Internal, Night Cycle: the run for a cycle date and user filter (NULL: every user): the unfinished one (status running) if a call was killed, else a new row in ops.cycle_runs, for which backfill mode may drop the blocks'' HNSW indexes (memory._night_backfill_mode). Refuses an unknown user and a stage whose function no longer exists. On any error (cancel included) releases the session lock when p_session_lock. Returns the run id.';

CREATE FUNCTION memory._night_register_stage(p_stage smallint, p_name text, p_function regprocedure, p_scope text) RETURNS smallint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    -- The loop calls every stage the same way: function(p_run_id bigint, p_user_id uuid) -> rows.
    IF NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = p_function AND p.prorettype = 'bigint'::regtype
                   AND p.proargtypes = '20 2950'::oidvector) THEN
        RAISE EXCEPTION 'p_function: % must take (bigint, uuid) and return bigint', p_function
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO memory.night_stages (stage, name, function, scope)
    VALUES (p_stage, p_name, p_function::regproc, p_scope)
    ON CONFLICT (stage) DO UPDATE SET name = EXCLUDED.name, function = EXCLUDED.function, scope = EXCLUDED.scope;
    RETURN p_stage;
END
$$;

COMMENT ON FUNCTION memory._night_register_stage(p_stage smallint, p_name text, p_function regprocedure, p_scope text) IS 'Internal, Night Cycle: registers (or updates) a stage in memory.night_stages: its number (the order it runs in), name, function and scope (user: for every user of a run; taken: only for a user whose sessions stage 0 took; run: once when the run finishes). The function must take (p_run_id bigint, p_user_id uuid) and return the rows it touched. Each file in db/functions/night/NN_name.sql registers its stage with it.';

CREATE FUNCTION memory._night_restore_block_indexes(p_defs text[]) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION memory._night_restore_block_indexes(p_defs text[]) IS 'Internal, Night Cycle backfill mode: builds the indexes memory._night_backfill_mode dropped (raising maintenance_work_mem for this transaction, up to 4 GB, so the graph is built in memory), skipping any that exists. Returns the number of blocks indexed, 0 when nothing was dropped.';

CREATE FUNCTION memory._night_run_stage(p_stage smallint, p_run_id bigint, p_user_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_stage memory.night_stages;
    v_t timestamptz := clock_timestamp();
    v_rows bigint;
BEGIN
    SELECT * INTO v_stage FROM memory.night_stages s WHERE s.stage = p_stage;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_stage: no Night Cycle stage % in memory.night_stages', coalesce(p_stage::text, 'null')
            USING ERRCODE = 'no_data_found';
    END IF;
    EXECUTE format('SELECT %s($1, $2)', v_stage.function) INTO v_rows USING p_run_id, p_user_id;
    RETURN jsonb_build_object('stage', v_stage.stage, 'name', v_stage.name, 'rows', coalesce(v_rows, 0),
                              'ms', 1000 * extract(epoch FROM clock_timestamp() - v_t));
END
$_$;

COMMENT ON FUNCTION memory._night_run_stage(p_stage smallint, p_run_id bigint, p_user_id uuid) IS 'Internal, Night Cycle: runs one stage (its function from memory.night_stages) for a run and user and returns its log entry: {stage, name, rows, ms}. The same from psql: SELECT memory._night_run_stage(2, <run>, <user>).';

CREATE TABLE ops.cycle_runs (
    run_id bigint NOT NULL,
    cycle_date date NOT NULL,
    user_id uuid,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    finished_at timestamp with time zone,
    status text DEFAULT 'running'::text NOT NULL,
    users_done integer DEFAULT 0 NOT NULL,
    users_failed integer DEFAULT 0 NOT NULL,
    resume_after uuid,
    block_indexes text[] DEFAULT '{}'::text[] NOT NULL,
    CONSTRAINT cycle_runs_status_known CHECK ((status = ANY (ARRAY['running'::text, 'ok'::text, 'failed'::text, 'partial'::text])))
);

COMMENT ON COLUMN ops.cycle_runs.resume_after IS 'the last user (in user_id order) whose batch this run has committed: a killed run resumes after it';

COMMENT ON COLUMN ops.cycle_runs.block_indexes IS 'definitions of the holographic_blocks HNSW indexes this run dropped for a backfill; built again when it finishes';

CREATE FUNCTION memory._night_running(p_run_id bigint) RETURNS ops.cycle_runs
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_run ops.cycle_runs;
BEGIN
    SELECT * INTO v_run FROM ops.cycle_runs r WHERE r.run_id = p_run_id AND r.status = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_run_id: no running Night Cycle run %', coalesce(p_run_id::text, 'null') USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_run;
END
$$;

COMMENT ON FUNCTION memory._night_running(p_run_id bigint) IS 'Internal, Night Cycle: the row of a run that is still running, locked until the transaction ends (the batch or the finish that moves it on), or an error naming the run.';

CREATE FUNCTION memory._night_work(p_session_lock boolean) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_run bigint;
BEGIN
    IF p_session_lock THEN
        -- The batch's work and the run's cursor commit together, so a crash that loses the
        -- last asynchronously committed batches has the resumed run redo exactly those.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    SELECT r.run_id INTO v_run FROM ops.cycle_runs r WHERE r.status = 'running' ORDER BY r.run_id LIMIT 1;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT memory._night_batch(v_run) THEN
        PERFORM memory._night_finish(v_run);
    END IF;
    RETURN true;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    IF p_session_lock THEN
        PERFORM memory._night_lock('release');
    END IF;
    RAISE;
END
$$;

COMMENT ON FUNCTION memory._night_work(p_session_lock boolean) IS 'Internal, Night Cycle: the next unit of work, for one transaction: a batch of users of the oldest unfinished run (memory._night_batch), or, when none is left, finishing that run (memory._night_finish). Returns false when no run is unfinished. With p_session_lock (the procedure) it commits asynchronously and releases the session lock on any error, cancel included.';

CREATE FUNCTION memory._perplexity_salience(p_value double precision, p_baseline double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$ SELECT coalesce(1 - exp(-least(50, greatest(0, p_value / nullif(p_baseline, 0) - 1))), 0) $$;

COMMENT ON FUNCTION memory._perplexity_salience(p_value double precision, p_baseline double precision) IS 'Internal. P salience of a perplexity against a baseline: 1 - exp(-max(0, value / baseline - 1)); 0 at or below the baseline, towards 1 for large spikes.';

CREATE FUNCTION memory._recall_filter_below(p_session_id uuid, p_user_id uuid, p_window interval, p_rows integer) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_sessions int;
    v_turns bigint;
BEGIN
    -- A session holds at most turn_count rows (turn numbers are positive and unique), so the
    -- turn counts of the current session and of the user's sessions active within the window
    -- bound the filter's rows: a few index entries, not one per turn.
    SELECT count(*), coalesce(sum(x.turn_count), 0) INTO v_sessions, v_turns FROM (
        SELECT s.turn_count FROM memory.sessions s
        WHERE s.user_id = p_user_id AND s.last_turn_at > now() - p_window
        ORDER BY s.last_turn_at DESC
        LIMIT 256) x;
    v_turns := v_turns + coalesce((SELECT s.turn_count FROM memory.sessions s WHERE s.session_id = p_session_id), 0);
    IF v_turns >= p_rows THEN
        RETURN false;
    ELSIF v_sessions < 256 THEN
        RETURN true;
    END IF;
    -- Hundreds of short recent sessions: count the rows themselves.
    RETURN (SELECT count(*) FROM (
                SELECT 1 FROM memory.day_table d
                WHERE d.session_id = p_session_id OR (d.user_id = p_user_id AND d.created_at > now() - p_window)
                LIMIT p_rows) x) < p_rows;
END
$$;

COMMENT ON FUNCTION memory._recall_filter_below(p_session_id uuid, p_user_id uuid, p_window interval, p_rows integer) IS 'Internal. Whether recall''s filter (the session, or the user''s turns within p_window) keeps fewer than p_rows rows, judged from session turn counts where they decide it.';

CREATE FUNCTION memory._recall_lexemes(p_user_id uuid, p_query_text text) RETURNS TABLE(lexeme text, turns bigint, idf double precision, candidate boolean)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    WITH q AS (
        SELECT DISTINCT l.lexeme FROM unnest(to_tsvector('english'::regconfig, coalesce(p_query_text, ''))) l),
    n AS (
        SELECT coalesce((SELECT t.turns FROM memory.text_totals t WHERE t.user_id = p_user_id), 0) AS total),
    f AS (
        SELECT q.lexeme, coalesce(s.turns, 0) AS turns, n.total
        FROM q CROSS JOIN n LEFT JOIN memory.text_stats s ON s.user_id = p_user_id AND s.lexeme = q.lexeme),
    ranked AS (
        -- Rarest first: candidates come from the rarest words while together they hold at
        -- most recall.text_candidate_docs turns (always the rarest word), which bounds the
        -- turns the leg fetches and scores.
        SELECT f.*, sum(f.turns) OVER (ORDER BY f.turns, f.lexeme ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS upto,
               row_number() OVER (ORDER BY f.turns, f.lexeme) AS nth
        FROM f)
    SELECT r.lexeme, r.turns,
           ln(1 + (greatest(r.total, r.turns) - r.turns + 0.5) / (r.turns + 0.5)),
           r.nth = 1 OR r.upto <= (ops.setting('recall.text_candidate_docs'))::bigint
    FROM ranked r
$$;

COMMENT ON FUNCTION memory._recall_lexemes(p_user_id uuid, p_query_text text) IS 'Internal, text leg of memory.recall: the query''s lexemes (configuration english, stop words dropped) with the number of the user''s turns that hold each (memory.text_stats), its BM25 inverse document frequency ln(1 + (N - n + 0.5) / (n + 0.5)), and whether it selects candidates: the rarest lexemes do while together they occur in at most recall.text_candidate_docs turns (the rarest one always). A common word still adds to the score of a turn found by a rarer one.';

CREATE FUNCTION memory._recall_recent(p_space text, p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) RETURNS TABLE(entry_id uuid, session_id uuid, user_id uuid, role text, content text, created_at timestamp with time zone, turn_number integer, distance double precision, reason text)
    LANGUAGE plpgsql STABLE
    SET "hnsw.iterative_scan" TO 'relaxed_order'
    SET "hnsw.ef_search" TO '40'
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_col text := p_space || '_embedding';
    v_kind text := ops.setting('embedding.' || p_space || '_index') #>> '{}';
    v_dim int := (ops.setting('embedding.' || p_space || '_dim'))::int;
    v_window interval := (ops.setting('recall.window') #>> '{}')::interval;
    v_query vector;
    v_order text;
    v_fetch int := p_k;
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > 1000 THEN
        RAISE EXCEPTION 'p_k: must be between 1 and 1000, got %', coalesce(p_k::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_session_id IS NULL AND p_user_id IS NULL THEN
        RAISE EXCEPTION 'p_session_id, p_user_id: give at least one' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.sessions s WHERE s.session_id = p_session_id) THEN
        RAISE EXCEPTION 'p_session_id: unknown session %', p_session_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_query_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_vector: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_query := memory._checked_vector(p_query_vector, 'p_query_vector', p_space);
    PERFORM set_config('hnsw.ef_search', ops.setting('recall.ef_search')::text, true);

    IF memory._recall_filter_below(p_session_id, p_user_id, v_window, (ops.setting('recall.selective_rows'))::int) THEN
        -- Few rows: rank them all by the binary code stored in the row (the vectors are
        -- TOASTed, the codes are not), then the best exactly. An HNSW walk would visit far
        -- more of the graph than the filter keeps to find them, and miss some. Only
        -- binary-quantized spaces have an index on the code; the planner takes the bitmap
        -- path there when it is cheaper.
        v_order := format('d.%I <~> binary_quantize($1)', v_col || '_bq');
        v_fetch := p_k * (ops.setting('recall.binary_overfetch_selective'))::int;
    -- Otherwise the ORDER BY expression must match the index expression chosen at install time.
    ELSIF v_kind = 'vector' THEN
        v_order := format('d.%I <=> $1', v_col);
    ELSIF v_kind = 'halfvec' THEN
        v_order := format('d.%I::halfvec(%s) <=> $1::halfvec(%s)', v_col, v_dim, v_dim);
        v_fetch := p_k * 2;
    ELSE
        v_order := format('d.%I <~> binary_quantize($1)', v_col || '_bq');
        v_fetch := p_k * (ops.setting('recall.binary_overfetch'))::int;
    END IF;

    -- Candidates from the index (iterative scans keep going until the filter yields
    -- enough rows) or from the codes, then exact cosine distance decides the order. The
    -- candidates carry their vectors' TOAST pointers, so only the k best are looked up again.
    RETURN QUERY EXECUTE format($q$
        WITH candidates AS MATERIALIZED (
            SELECT d.entry_id, d.%1$I AS v
            FROM memory.day_table d
            WHERE d.session_id = $2 OR (d.user_id = $3 AND d.created_at > now() - $5)
            ORDER BY %2$s
            LIMIT $4),
        best AS MATERIALIZED (
            SELECT c.entry_id, (c.v <=> $1)::double precision AS distance
            FROM candidates c
            WHERE c.v IS NOT NULL
            ORDER BY distance, c.entry_id
            LIMIT $6)
        SELECT d.entry_id, d.session_id, d.user_id, d.role, d.content, d.created_at, d.turn_number, b.distance,
               CASE WHEN d.session_id = $2 THEN 'current session'
                    ELSE 'same user, within ' || $5::text END AS reason
        FROM best b JOIN memory.day_table d ON d.entry_id = b.entry_id
        ORDER BY b.distance, d.entry_id $q$, v_col, v_order)
    USING v_query, p_session_id, p_user_id, v_fetch, v_window, p_k;
END
$_$;

COMMENT ON FUNCTION memory._recall_recent(p_space text, p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) IS 'Internal. Nearest turns in one embedding space (universal or native) among the current session and the user''s turns within recall.window. A filter keeping fewer than recall.selective_rows rows is ranked on the binary codes stored in its rows, and the best recall.binary_overfetch_selective per wanted row are re-ranked exactly; otherwise the HNSW index form chosen at install (vector, halfvec, or the stored binary code with recall.binary_overfetch candidates per wanted row) with pgvector iterative scans, then exact cosine re-rank.';

CREATE FUNCTION memory._recall_text_leg(p_user_id uuid, p_query_text text, p_n integer, p_since timestamp with time zone DEFAULT NULL::timestamp with time zone, p_until timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(session_id uuid, turn_number integer, rank integer, bm25 double precision)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_k1 float8 := (ops.setting('recall.bm25_k1'))::float8;
    v_b float8 := (ops.setting('recall.bm25_b'))::float8;
    v_avg float8;
    v_query tsquery;
    v_lexemes text[];
    v_idf float8[];
BEGIN
    SELECT array_agg(l.lexeme ORDER BY l.lexeme), array_agg(l.idf ORDER BY l.lexeme),
           string_agg(quote_ident_tsq, ' | ') FILTER (WHERE l.candidate)::tsquery
    INTO v_lexemes, v_idf, v_query
    FROM memory._recall_lexemes(p_user_id, p_query_text) l
    -- a lexeme as a tsquery operand: quoted, with quotes doubled and backslashes escaped
    CROSS JOIN LATERAL (SELECT '''' || replace(replace(l.lexeme, '\', '\\'), '''', '''''') || '''' AS quote_ident_tsq) x;
    IF v_query IS NULL THEN
        RETURN;  -- no word of the query is searchable: the leg cannot run
    END IF;
    SELECT coalesce(t.lexemes::float8 / nullif(t.turns, 0), 1) INTO v_avg FROM memory.text_totals t WHERE t.user_id = p_user_id;
    RETURN QUERY
    WITH cand AS (
        -- A turn still in day_table is scored on its whole text; a block's copy of it stands
        -- in once retention has deleted it (the first of its blocks, if margins overlap).
        SELECT DISTINCT ON (c.session_id, c.turn_number) c.session_id, c.turn_number, c.tsv
        FROM (
            SELECT d.session_id, d.turn_number, d.content_tsv AS tsv, 0 AS pref
            FROM memory.day_table d
            WHERE d.user_id = p_user_id AND d.content_tsv @@ v_query
              AND (p_since IS NULL OR d.created_at >= p_since) AND (p_until IS NULL OR d.created_at < p_until)
            UNION ALL
            SELECT b.session_id, b.turn_number, b.kept_tsv, 1
            FROM memory.block_turns b
            WHERE b.user_id = p_user_id AND b.kept_tsv @@ v_query
              AND (p_since IS NULL OR b.created_at >= p_since) AND (p_until IS NULL OR b.created_at < p_until)) c
        ORDER BY c.session_id, c.turn_number, c.pref),
    scored AS (
        SELECT c.session_id, c.turn_number,
               sum(memory._bm25_term(v_idf[i], tf, length(c.tsv), v_avg, v_k1, v_b)) AS bm25
        FROM cand c
        CROSS JOIN LATERAL unnest(c.tsv) u
        CROSS JOIN LATERAL (SELECT array_position(v_lexemes, u.lexeme) AS i, coalesce(cardinality(u.positions), 1) AS tf) m
        WHERE m.i IS NOT NULL
        GROUP BY c.session_id, c.turn_number)
    SELECT s.session_id, s.turn_number, (row_number() OVER (ORDER BY s.bm25 DESC, s.session_id, s.turn_number))::int, s.bm25
    FROM scored s
    ORDER BY s.bm25 DESC, s.session_id, s.turn_number
    LIMIT p_n;
END
$$;

COMMENT ON FUNCTION memory._recall_text_leg(p_user_id uuid, p_query_text text, p_n integer, p_since timestamp with time zone, p_until timestamp with time zone) IS 'Internal, the text leg of memory.recall: the p_n turns of the user (in day_table, or kept by a block once retention deleted them) with the highest BM25 score for the query (k1 = recall.bm25_k1, b = recall.bm25_b, document frequencies from memory.text_stats, length in lexemes), among the turns holding one of the query''s rarest words (memory._recall_lexemes), optionally within [p_since, p_until). Empty when no word of the query is searchable.';

CREATE FUNCTION memory._recall_vector_leg(p_user_id uuid, p_query public.vector, p_n integer, p_since timestamp with time zone DEFAULT NULL::timestamp with time zone, p_until timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(session_id uuid, turn_number integer, rank integer, distance double precision)
    LANGUAGE plpgsql STABLE
    SET "hnsw.iterative_scan" TO 'relaxed_order'
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_kind text := ops.setting('embedding.universal_index') #>> '{}';
    v_dim int := (ops.setting('embedding.universal_dim'))::int;
    v_rows bigint := coalesce((SELECT t.turns FROM memory.text_totals t WHERE t.user_id = p_user_id), 0);
    v_order text;
    v_fetch int := p_n;
BEGIN
    PERFORM set_config('hnsw.ef_search', greatest(p_n, (ops.setting('recall.ef_search'))::int)::text, true);
    -- text_totals counts every turn the user ever had, so it bounds what both tables hold.
    -- Below recall.selective_rows an exact scan is fast and, unlike an HNSW walk filtered
    -- to one user among many, never comes back short; above, the index the install chose.
    IF v_rows < (ops.setting('recall.selective_rows'))::bigint THEN
        v_order := '(%1$s.universal_embedding <=> $1) + 0';  -- "+ 0": an expression no index serves
    ELSIF v_kind = 'vector' THEN
        v_order := '%1$s.universal_embedding <=> $1';
    ELSIF v_kind = 'halfvec' THEN
        v_order := format('%%1$s.universal_embedding::halfvec(%s) <=> $1::halfvec(%s)', v_dim, v_dim);
        v_fetch := p_n * 2;
    ELSE
        v_order := '%1$s.universal_embedding_bq <~> binary_quantize($1)';
        v_fetch := p_n * (ops.setting('recall.binary_overfetch'))::int;
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH cand AS (
            (SELECT d.session_id, d.turn_number, (d.universal_embedding <=> $1)::float8 AS distance, 0 AS pref
             FROM memory.day_table d
             WHERE d.user_id = $2 AND d.universal_embedding IS NOT NULL
               AND ($4::timestamptz IS NULL OR d.created_at >= $4) AND ($5::timestamptz IS NULL OR d.created_at < $5)
             ORDER BY %1$s LIMIT $3)
            UNION ALL
            (SELECT b.session_id, b.turn_number, (b.universal_embedding <=> $1)::float8, 1
             FROM memory.block_turns b
             WHERE b.user_id = $2 AND b.universal_embedding IS NOT NULL
               AND ($4::timestamptz IS NULL OR b.created_at >= $4) AND ($5::timestamptz IS NULL OR b.created_at < $5)
             ORDER BY %2$s LIMIT $3)),
        one AS (
            SELECT DISTINCT ON (c.session_id, c.turn_number) c.session_id, c.turn_number, c.distance
            FROM cand c ORDER BY c.session_id, c.turn_number, c.pref)
        SELECT o.session_id, o.turn_number, (row_number() OVER (ORDER BY o.distance, o.session_id, o.turn_number))::int, o.distance
        FROM one o ORDER BY o.distance, o.session_id, o.turn_number LIMIT $6 $q$,
        format(v_order, 'd'), CASE WHEN v_order LIKE '%_bq%' THEN format('(%s.universal_embedding <=> $1)', 'b')
                                   ELSE format(v_order, 'b') END)
    USING p_query, p_user_id, v_fetch, p_since, p_until, p_n;
END
$_$;

COMMENT ON FUNCTION memory._recall_vector_leg(p_user_id uuid, p_query public.vector, p_n integer, p_since timestamp with time zone, p_until timestamp with time zone) IS 'Internal, the vector leg of memory.recall: the p_n turns of the user (in day_table, or kept by a block) nearest the query by cosine distance of universal embeddings, optionally within [p_since, p_until). A user with fewer than recall.selective_rows turns is ranked exactly; otherwise through the HNSW index form chosen at install, with pgvector iterative scans so the user filter never returns fewer rows than asked.';

CREATE FUNCTION memory._sentence_facts(p_sentence text) RETURNS double precision
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION memory._sentence_facts(p_sentence text) IS 'Internal, the default summariser''s fact score of a sentence: +2 for a number, +2 for a date or time word (months, weekdays, yesterday, last week, birthday …), +1.5 for a capitalised word after the first (a name or place; a "Speaker:" prefix and "I" aside), +1.5 for a first-person statement (I, my, we, our …), +1 for eight words or more, -2 for fewer than four (filler such as "Wow, that''s cool!").';

CREATE FUNCTION memory.act_for(p_user_id uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF p_user_id IS NOT NULL AND NOT memory._may_act_for(p_user_id) THEN
        -- The same words whether or not the user exists: the error is no existence oracle.
        RAISE EXCEPTION 'p_user_id: this login (%) may not act for user %', session_user, p_user_id
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'psimem_admin binds logins to users with memory.bind_user()';
    END IF;
    PERFORM set_config('psimem.user_id', coalesce(p_user_id::text, ''), false);
    RETURN p_user_id;
END
$$;

COMMENT ON FUNCTION memory.act_for(p_user_id uuid) IS 'Makes this database session act for one user, if its login may (a binding in memory.user_bindings for the login or a role it belongs to, or membership of psimem_admin); otherwise raises insufficient_privilege, with the same message whether or not the user exists. NULL stops acting for anyone. Row-level security then shows psimem_writer and psimem_reader that user''s rows only.';

CREATE FUNCTION memory.bind_user(p_user_id uuid, p_grantee regrole) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_new int;
BEGIN
    IF p_grantee IS NULL THEN
        RAISE EXCEPTION 'p_grantee: must name a role' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO memory.user_bindings (user_id, grantee) VALUES (p_user_id, p_grantee)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_new = ROW_COUNT;
    RETURN v_new > 0;
END
$$;

COMMENT ON FUNCTION memory.bind_user(p_user_id uuid, p_grantee regrole) IS 'psimem_admin: lets a role (a login, or a group role: its members inherit the binding) act for a user. Returns false when the binding existed already.';

CREATE FUNCTION memory.blocks_for_transfer(p_block_ids uuid[], p_compress boolean DEFAULT true) RETURNS TABLE(block_id uuid, block_kind text, user_id uuid, session_id uuid, user_tier text, prose jsonb, prose_bytes_before integer, prose_bytes_after integer, universal_embedding public.vector, native_embedding public.vector, flux_metrics jsonb, salience_scores jsonb, coherence_gain double precision, ties_merge_weight double precision, arc_start_time timestamp with time zone, arc_end_time timestamp with time zone, created_at timestamp with time zone, cycle_date date, first_turn integer, last_turn integer, parent_metablock_id uuid, session_continuity_flag boolean, continues_from uuid, continued_by uuid, citations uuid[], preoccupation_centroid_id uuid, derived_from uuid, migrated_at timestamp with time zone)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION memory.blocks_for_transfer(p_block_ids uuid[], p_compress boolean) IS 'The blocks with these ids as they leave the Hippocampus: for the Cortex (p_compress, prose compressed by memory.compress_prose_for_cortex) or for a Bifocal Packet (full prose). Embeddings come as vectors (float32, full precision; binary transfer is cheapest); citations as uuid[]; prose sizes before and after compression in bytes. Unknown ids are simply absent.';

CREATE FUNCTION memory.compress_prose_for_cortex(p_prose jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
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
$_$;

COMMENT ON FUNCTION memory.compress_prose_for_cortex(p_prose jsonb) IS 'How a block''s prose compresses on its way to the Cortex (spec 004 sections 5.3 and 6.4): each dead-zone summary is condensed further to its first sentence and at most cortex.dead_summary_chars characters; the anterior margin keeps only its last turn and the posterior margin its first, each at most cortex.margin_chars characters; live zones pass through unchanged, byte for byte.';

CREATE FUNCTION memory.ensure_user(p_external_ref text, p_tier text DEFAULT 'normal'::text, p_display_name text DEFAULT NULL::text, p_realm regrole DEFAULT NULL::regrole) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_realm oid := coalesce(p_realm, session_user::regrole);
    v_realm_name name := (SELECT r.rolname FROM pg_roles r WHERE r.oid = v_realm);
    v_user_id uuid;
BEGIN
    IF p_external_ref IS NULL OR p_external_ref !~ '\S' THEN
        RAISE EXCEPTION 'p_external_ref: must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_external_ref) > 200 THEN
        RAISE EXCEPTION 'p_external_ref: must be at most 200 characters, got %', length(p_external_ref)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_tier IS NULL OR p_tier NOT IN ('normal', 'meso', 'elder') THEN
        RAISE EXCEPTION 'p_tier: must be one of normal, meso, elder (got %)', quote_nullable(p_tier)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_display_name) > 200 THEN
        RAISE EXCEPTION 'p_display_name: must be at most 200 characters, got %', length(p_display_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_has_role(session_user, v_realm, 'MEMBER') THEN
        RAISE EXCEPTION 'p_realm: this login (%) is not a member of role %', session_user, v_realm_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO memory.users (realm, external_ref, tier, display_name)
    VALUES (v_realm_name, p_external_ref, p_tier, p_display_name)
    ON CONFLICT (realm, external_ref) DO NOTHING
    RETURNING user_id INTO v_user_id;
    IF v_user_id IS NOT NULL THEN
        INSERT INTO memory.user_bindings (user_id, grantee, granted_by) VALUES (v_user_id, v_realm, session_user);
        RETURN v_user_id;
    END IF;
    SELECT u.user_id INTO v_user_id FROM memory.users u WHERE u.realm = v_realm_name AND u.external_ref = p_external_ref;
    IF NOT memory._may_act_for(v_user_id) THEN
        -- Only reachable inside the caller's own realm, after psimem_admin unbound this user.
        RAISE EXCEPTION 'p_external_ref: user % of realm % is no longer bound to this login', quote_literal(p_external_ref), v_realm_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN v_user_id;
END
$$;

COMMENT ON FUNCTION memory.ensure_user(p_external_ref text, p_tier text, p_display_name text, p_realm regrole) IS 'Returns the user with this external reference in the caller''s realm (its login, or p_realm: a role the login is a member of), creating it with the given tier (normal, meso or elder) and binding it to the realm role if it does not exist. Idempotent; an existing user keeps its tier. References of other realms are never seen, so the same reference in two realms is two users. Follow with memory.act_for(user_id).';

CREATE FUNCTION memory.find_user(p_ref text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
    SELECT c.user_id FROM (
        SELECT u.user_id, 0 AS rank, u.realm FROM memory.users u
        WHERE p_ref ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' AND u.user_id = p_ref::uuid
        UNION ALL
        SELECT u.user_id, CASE WHEN u.realm = session_user THEN 1 ELSE 2 END, u.realm FROM memory.users u
        WHERE u.external_ref = p_ref) c
    WHERE memory._may_act_for(c.user_id)
    ORDER BY c.rank, c.realm
    LIMIT 1
$_$;

COMMENT ON FUNCTION memory.find_user(p_ref text) IS 'The user a user id or external reference names, among the users this login may act for (its own realm first), or NULL: the same NULL for a user that does not exist and one the login may not act for. For command-line tools that take --user.';

CREATE FUNCTION memory.import_block(p_block_id uuid, p_session_id uuid, p_prose jsonb, p_universal_embedding real[], p_native_embedding real[], p_at timestamp with time zone, p_coherence_gain double precision DEFAULT 0, p_salience_composite double precision DEFAULT NULL::double precision, p_preoccupation_centroid_id uuid DEFAULT NULL::uuid, p_citations uuid[] DEFAULT '{}'::uuid[], p_derived_from uuid DEFAULT NULL::uuid, p_continues_from uuid DEFAULT NULL::uuid) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION memory.import_block(p_block_id uuid, p_session_id uuid, p_prose jsonb, p_universal_embedding real[], p_native_embedding real[], p_at timestamp with time zone, p_coherence_gain double precision, p_salience_composite double precision, p_preoccupation_centroid_id uuid, p_citations uuid[], p_derived_from uuid, p_continues_from uuid) IS 'Stores a block received in a Bifocal Packet in the Hippocampus, in an existing session of the receiving user (block_kind imported, times from the packet, retention by the user''s tier). Vectors are checked like every other (dimensions, NaN/Inf, named by parameter); citations, derived_from and continues_from must name blocks the Hippocampus knows, and become relationships. A block id already imported for the same user is left unchanged (returns false), so importing a packet twice is harmless; any other block with that id is an error naming it, and nothing is replaced.';

CREATE FUNCTION memory.mark_migrated(p_block_ids uuid[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION memory.mark_migrated(p_block_ids uuid[]) IS 'Marks blocks as moved to the Cortex, after the worker has written them there: sets migrated_at and releases their native embedding (the Cortex keeps both at full precision). The universal embedding, the zones and what the block keeps of each turn (memory.block_turns) stay, so a psql user still finds the block and its turns (memory.recall, memory.recall_blocks). Blocks already marked are left alone, so a repeated mark is harmless. Returns the number newly marked.';

CREATE FUNCTION memory.night_00_select_sessions(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_date date := memory._night_cycle_date(p_run_id);
    v_cutoff timestamptz := (v_date + 1)::timestamptz;
    v_idle interval := (ops.setting('night.session_idle') #>> '{}')::interval;
    v_n bigint;
BEGIN
    -- The run is one more of the user's cycles, what retention counts in, unless a run for
    -- this date (or a later one) counted already: running a date twice changes nothing.
    UPDATE memory.users u SET cycles = u.cycles + 1, last_cycle_date = v_date
    WHERE u.user_id = p_user_id AND (u.last_cycle_date IS NULL OR u.last_cycle_date < v_date);

    -- The trigger never stamps a session later than now(); one stamped in the future by
    -- other means would never look idle, so it counts as written now (taken once idle).
    UPDATE memory.sessions s SET last_turn_at = now()
    WHERE s.session_id IN (SELECT f.session_id FROM memory.sessions f
                           WHERE f.user_id = p_user_id AND f.last_turn_at > now() FOR NO KEY UPDATE SKIP LOCKED);

    -- A session is taken whole or not at all: only idle ones, none with turns past the
    -- cycle's end, none a writer holds right now (SKIP LOCKED leaves it for the next
    -- cycle). The row lock holds until the user's batch commits: a writer into a taken
    -- session waits for that batch, then its turn is past consolidated_turn (next cycle).
    WITH taken AS (
        SELECT s.session_id, s.consolidated_turn FROM memory.sessions s
        WHERE s.user_id = p_user_id AND s.turn_count > s.consolidated_turn
          AND s.last_turn_at < v_cutoff AND s.last_turn_at <= now() - v_idle
        FOR NO KEY UPDATE OF s SKIP LOCKED)
    INSERT INTO memory.night_sessions (run_id, user_id, session_id, consolidated_turn, first_turn, last_turn, turns)
    SELECT p_run_id, p_user_id, t.session_id, t.consolidated_turn, r.first_turn, r.last_turn, r.turns
    FROM taken t
    CROSS JOIN LATERAL (SELECT min(d.turn_number) AS first_turn, max(d.turn_number) AS last_turn, count(*) AS turns
                        FROM memory.day_table d
                        WHERE d.session_id = t.session_id AND d.user_id = p_user_id AND d.turn_number > t.consolidated_turn) r
    WHERE r.turns > 0;  -- none left to take: a deleted history
    SELECT coalesce(sum(n.turns), 0) INTO v_n FROM memory.night_sessions n WHERE n.run_id = p_run_id AND n.user_id = p_user_id;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory.night_00_select_sessions(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 0 for one user of a run: counts the run as one of the user''s cycles (users.cycles, once per cycle date, never for a date older than the last counted); takes the user''s sessions that are idle for night.session_idle, have no turn after the end of the run''s cycle date and are not being written (FOR NO KEY UPDATE SKIP LOCKED: a session is in this cycle whole or left for the next), locking them until the user''s batch commits, and records them with the range of their unconsolidated turns in memory.night_sessions. A session stamped in the future is first brought back to now(). Returns the number of turns taken.';

CREATE FUNCTION memory.night_01_flux_detection(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_cycle_date date := memory._night_cycle_date(p_run_id);
    v_closing int := (ops.setting('continuity.closing_turns'))::int;
    v_opening int := (ops.setting('continuity.opening_turns'))::int;
    v_cwindow interval := (ops.setting('continuity.window') #>> '{}')::interval;
    v_csim float8 := (ops.setting('continuity.similarity'))::float8;
    v_n bigint;
    v_link record;
BEGIN
    -- An arc is the turns sharing a flux_arc_start (the spike that opened their flux window).
    -- One whose spike was consolidated by an earlier cycle (the session was taken while the
    -- window was open, then resumed) is stored as a continuation of the part stored then:
    -- the latest arc of that session starting between the spike and the consolidated turn.
    WITH turns AS (
        SELECT d.session_id, n.consolidated_turn, d.turn_number, d.flux_arc_start, d.flux_state, d.perplexity_score,
               d.flux_baseline_mean, d.flux_baseline_sd, d.created_at
        FROM memory.night_sessions n
        JOIN memory.day_table d ON d.session_id = n.session_id AND d.user_id = n.user_id AND d.turn_number > n.consolidated_turn
        WHERE n.run_id = p_run_id AND n.user_id = p_user_id AND d.flux_arc_start IS NOT NULL),
    found AS (
        SELECT t.session_id, t.flux_arc_start, min(t.consolidated_turn) AS consolidated_turn,
               min(t.turn_number) AS start_turn, max(t.turn_number) AS end_turn,
               (array_agg(t.turn_number ORDER BY t.perplexity_score DESC, t.turn_number))[1] AS peak_turn,
               bool_or(t.flux_state = 'stable') AS resolved,
               coalesce(min(t.flux_baseline_mean) FILTER (WHERE t.turn_number = t.flux_arc_start),
                        (array_agg(t.flux_baseline_mean ORDER BY t.turn_number))[1]) AS baseline,
               coalesce(min(t.flux_baseline_sd) FILTER (WHERE t.turn_number = t.flux_arc_start),
                        (array_agg(t.flux_baseline_sd ORDER BY t.turn_number))[1]) AS sigma,
               max(t.perplexity_score) AS peak,
               (array_agg(t.perplexity_score ORDER BY t.turn_number DESC))[1] AS final,
               min(t.created_at) AS start_time, max(t.created_at) AS end_time
        FROM turns t
        GROUP BY t.session_id, t.flux_arc_start),
    arcs AS (
        SELECT f.*, e.arc_id AS earlier_arc_id,
               coalesce(e.baseline_perplexity, f.baseline) AS base, coalesce(e.baseline_sigma, f.sigma) AS base_sigma
        FROM found f
        LEFT JOIN LATERAL (
            SELECT a.arc_id, a.baseline_perplexity, a.baseline_sigma FROM memory.flux_arcs a
            WHERE f.flux_arc_start <= f.consolidated_turn AND a.session_id = f.session_id
              AND a.start_turn BETWEEN f.flux_arc_start AND f.consolidated_turn
            ORDER BY a.start_turn DESC LIMIT 1) e ON true),
    ins AS (
        INSERT INTO memory.flux_arcs AS fa (session_id, user_id, cycle_date, start_turn, peak_turn, end_turn, resolved,
            open_at_session_end, baseline_perplexity, baseline_sigma, peak_perplexity, final_perplexity,
            flux_reversal_quality, arc_duration_turns, start_time, end_time, open_arc_embedding)
        SELECT a.session_id, p_user_id, v_cycle_date, a.start_turn, a.peak_turn, a.end_turn, a.resolved, NOT a.resolved,
               a.base, a.base_sigma, a.peak, a.final, (a.peak - a.final) * (a.end_turn - a.start_turn + 1),
               a.end_turn - a.start_turn + 1, a.start_time, a.end_time,
               CASE WHEN NOT a.resolved THEN (
                   SELECT l2_normalize(avg(x.universal_embedding)) FROM (
                       SELECT d.universal_embedding FROM memory.day_table d
                       WHERE d.session_id = a.session_id AND d.user_id = p_user_id
                       ORDER BY d.turn_number DESC LIMIT v_closing) x) END
        FROM arcs a
        ON CONFLICT (session_id, start_turn, user_id) DO NOTHING
        RETURNING fa.arc_id, fa.session_id, fa.start_turn)
    INSERT INTO memory.night_arcs (run_id, user_id, arc_id, session_id, start_turn, continues_arc_id)
    SELECT p_run_id, p_user_id, i.arc_id, i.session_id, i.start_turn, a.earlier_arc_id
    FROM ins i JOIN arcs a ON a.session_id = i.session_id AND a.start_turn = i.start_turn;
    GET DIAGNOSTICS v_n = ROW_COUNT;

    UPDATE memory.flux_arcs e SET continued_by_arc_id = n.arc_id
    FROM memory.night_arcs n
    WHERE n.run_id = p_run_id AND n.user_id = p_user_id AND e.arc_id = n.continues_arc_id AND e.user_id = n.user_id
      AND e.continued_by_arc_id IS NULL;

    -- Session start (spec 004 section 4.2): opening turns close to an open arc of the same
    -- user that ended shortly before link the new session (and its first arc) to it. Row by
    -- row by primary key: a join plan made while statistics were stale scanned all sessions.
    FOR v_link IN
        WITH opening AS (
            SELECT n.session_id, min(d.created_at) AS started, l2_normalize(avg(d.universal_embedding)) AS emb
            FROM memory.night_sessions n JOIN memory.day_table d ON d.session_id = n.session_id AND d.user_id = n.user_id
                 AND d.turn_number > n.consolidated_turn AND d.turn_number <= v_opening
            WHERE n.run_id = p_run_id AND n.user_id = p_user_id GROUP BY n.session_id)
        SELECT DISTINCT ON (o.session_id) o.session_id, a.arc_id AS open_arc_id, a.session_id AS open_session_id
        FROM opening o
        JOIN memory.flux_arcs a ON a.user_id = p_user_id AND a.open_at_session_end AND a.session_id <> o.session_id
             AND a.continued_by_arc_id IS NULL AND a.end_time <= o.started AND a.end_time > o.started - v_cwindow
        WHERE 1 - (a.open_arc_embedding <=> o.emb) > v_csim
        ORDER BY o.session_id, a.open_arc_embedding <=> o.emb
    LOOP
        UPDATE memory.sessions SET continues_session_id = v_link.open_session_id WHERE session_id = v_link.session_id;
        UPDATE memory.flux_arcs SET continued_by_arc_id = (
            SELECT n.arc_id FROM memory.night_arcs n
            WHERE n.run_id = p_run_id AND n.user_id = p_user_id AND n.session_id = v_link.session_id
            ORDER BY n.start_turn LIMIT 1)
        WHERE arc_id = v_link.open_arc_id;
    END LOOP;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory.night_01_flux_detection(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 1, flux detection, for one user of a run: stores in memory.flux_arcs (and memory.night_arcs) the arcs of the turns stage 0 took, from what the day_table trigger set live (parameters flux.*): an arc is the turns sharing a flux_arc_start, from the spike that opened a flux window to the first stable turn (resolved) or the session''s last turn (unresolved). baseline and sigma = the spike''s live baseline (mean and sample stddev of the flux.baseline_window turns before it), peak = highest perplexity in the arc, final = perplexity of the closing (or last) turn, flux_reversal_quality = (peak - final) x arc_duration_turns. An arc whose spike an earlier cycle consolidated (its session resumed while the window was open) is stored from its first new turn as a continuation of the part stored then (continued_by_arc_id of that part), with that part''s baseline. An arc open at the session''s last turn sets open_at_session_end, the session continuity flag, with open_arc_embedding = normalised mean of the last continuity.closing_turns turns. Then links a new session whose opening turns (continuity.opening_turns) have cosine similarity > continuity.similarity to an open arc of the same user that ended within continuity.window before it started. Returns the number of arcs stored.';

CREATE FUNCTION memory.night_02_block_formation(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_cutoff timestamptz := (memory._night_cycle_date(p_run_id) + 1)::timestamptz;
    v_margin int := (ops.setting('night.margin_turns'))::int;
    v_live_sigma float8 := (ops.setting('night.live_spike_sigma'))::float8;
    v_live_arrete float8 := (ops.setting('night.live_arrete'))::float8;
    v_live_id float8 := (ops.setting('night.live_interrogative_distance'))::float8;
    v_markers text := ops.setting('night.insight_markers') #>> '{}';
    v_gap_max int := (ops.setting('night.gap_max_turns'))::int;
    v_n bigint;
BEGIN
    -- Each new arc becomes a block with margins within the turns this run took.
    INSERT INTO memory.night_blocks (run_id, user_id, block_kind, arc_id, session_id, start_turn, peak_turn, end_turn,
                                     first_turn, last_turn, resolved, baseline, peak, final, quality, duration,
                                     start_time, end_time)
    SELECT p_run_id, p_user_id, 'arc', f.arc_id, f.session_id, f.start_turn, f.peak_turn, f.end_turn,
           greatest(f.start_turn - v_margin, s.first_turn), least(f.end_turn + v_margin, s.last_turn), f.resolved,
           f.baseline_perplexity, f.peak_perplexity, f.final_perplexity, f.flux_reversal_quality,
           f.arc_duration_turns, f.start_time, f.end_time
    FROM memory.night_arcs a
    JOIN memory.flux_arcs f ON f.arc_id = a.arc_id AND f.user_id = a.user_id
    JOIN memory.night_sessions s ON s.run_id = a.run_id AND s.user_id = a.user_id AND s.session_id = a.session_id
    WHERE a.run_id = p_run_id AND a.user_id = p_user_id;

    -- The stretches of the taken turns that no arc block holds become gap blocks (at most
    -- night.gap_max_turns turns each), so every turn the run consolidates lies in a block
    -- and retention never deletes a turn nothing keeps.
    WITH free AS (
        SELECT n.session_id, d.turn_number, d.perplexity_score, d.flux_baseline_mean, d.created_at
        FROM memory.night_sessions n
        JOIN memory.day_table d ON d.session_id = n.session_id AND d.user_id = n.user_id
             AND d.turn_number BETWEEN n.first_turn AND n.last_turn
        WHERE n.run_id = p_run_id AND n.user_id = p_user_id
          AND NOT EXISTS (SELECT 1 FROM memory.night_blocks b
                          WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.session_id = n.session_id
                            AND d.turn_number BETWEEN b.first_turn AND b.last_turn)),
    stretches AS (
        SELECT f.*, f.turn_number - row_number() OVER (PARTITION BY f.session_id ORDER BY f.turn_number) AS stretch
        FROM free f),
    pieces AS (
        SELECT s.*, (row_number() OVER (PARTITION BY s.session_id, s.stretch ORDER BY s.turn_number) - 1) / v_gap_max AS piece
        FROM stretches s)
    INSERT INTO memory.night_blocks (run_id, user_id, block_kind, session_id, start_turn, peak_turn, end_turn,
                                     first_turn, last_turn, resolved, baseline, peak, final, duration, start_time, end_time)
    SELECT p_run_id, p_user_id, 'gap', p.session_id, min(p.turn_number),
           (array_agg(p.turn_number ORDER BY p.perplexity_score DESC NULLS LAST, p.turn_number))[1], max(p.turn_number),
           min(p.turn_number), max(p.turn_number), true, avg(coalesce(p.flux_baseline_mean, p.perplexity_score)),
           max(p.perplexity_score), (array_agg(p.perplexity_score ORDER BY p.turn_number DESC))[1], count(*),
           min(p.created_at), max(p.created_at)
    FROM pieces p
    GROUP BY p.session_id, p.stretch, p.piece;
    SELECT count(*) INTO v_n FROM memory.night_blocks b WHERE b.run_id = p_run_id AND b.user_id = p_user_id;
    IF v_n = 0 THEN
        RETURN 0;
    END IF;
    PERFORM memory.refresh_preoccupation_centroid(p_user_id, least(v_cutoff, now()));

    -- What stages 3-5 measure on each turn a block holds: coherence with the previous turn,
    -- Interrogative Distance to the Preoccupation Centroid, and whether it is live.
    INSERT INTO memory.night_block_turns (run_id, user_id, block_id, turn_number, perplexity_score, coherence_prev,
                                          interrogative_distance, live)
    SELECT p_run_id, p_user_id, b.block_id, d.turn_number, d.perplexity_score,
           greatest(0, 1 - (d.universal_embedding <=> lag(d.universal_embedding) OVER o)),
           least(1, d.universal_embedding <=> c.universal_centroid),
           (d.turn_number BETWEEN b.start_turn AND b.end_turn
             -- a spike and an Arreté are an arc's; a gap block's turns are live only by ID or a marker
             AND ((b.block_kind = 'arc' AND (d.perplexity_score > d.flux_baseline_mean + v_live_sigma * d.flux_baseline_sd
                       OR (lag(d.perplexity_score) OVER o - d.perplexity_score) / nullif(lag(d.perplexity_score) OVER o, 0) > v_live_arrete))
                  OR least(1, d.universal_embedding <=> c.universal_centroid) < v_live_id
                  OR d.content ~* v_markers)) IS TRUE
    FROM memory.night_blocks b
    JOIN memory.day_table d ON d.session_id = b.session_id AND d.user_id = b.user_id
         AND d.turn_number BETWEEN b.first_turn AND b.last_turn
    LEFT JOIN memory.preoccupation_centroids c ON c.user_id = p_user_id
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id
    WINDOW o AS (PARTITION BY b.block_id ORDER BY d.turn_number);

    -- Zones over the arc's own turns (a gap block's are all its own): maximal runs of live or
    -- of dead turns; live ones verbatim. LATERAL ... OFFSET 0 (not flattened into a join): each
    -- block's turns by key. The work tables have no statistics for this run's users, and a
    -- planned join scanned all of the user's turns for every block.
    WITH runs AS (
        SELECT b.block_id, b.session_id, t.turn_number, t.live,
               t.turn_number - row_number() OVER (PARTITION BY b.block_id, t.live ORDER BY t.turn_number) AS run
        FROM memory.night_blocks b
        CROSS JOIN LATERAL (SELECT x.turn_number, x.live FROM memory.night_block_turns x
                            WHERE x.run_id = b.run_id AND x.user_id = b.user_id AND x.block_id = b.block_id
                              AND x.turn_number BETWEEN b.start_turn AND b.end_turn OFFSET 0) t
        WHERE b.run_id = p_run_id AND b.user_id = p_user_id)
    INSERT INTO memory.night_zones (run_id, user_id, block_id, session_id, live, first_turn, last_turn, content)
    SELECT p_run_id, p_user_id, r.block_id, r.session_id, r.live, min(r.turn_number), max(r.turn_number),
           string_agg(d.role || ': ' || d.content, E'\n' ORDER BY r.turn_number)
    FROM runs r
    LEFT JOIN memory.day_table d ON r.live AND d.session_id = r.session_id AND d.user_id = p_user_id
         AND d.turn_number = r.turn_number
    GROUP BY r.block_id, r.session_id, r.live, r.run;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory.night_02_block_formation(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 2, block formation, for one user of a run. Each arc stage 1 stored becomes a block (memory.night_blocks) spanning night.margin_turns turns before its spike and after its resolution (within the turns the run took); each stretch of taken turns that no arc block holds becomes a gap block (block_kind gap, at most night.gap_max_turns turns, its own span start..end, peak = its most perplexing turn, baseline = its turns'' mean live baseline), so that every consolidated turn lies in a block. The user''s Preoccupation Centroid is refreshed as of the cycle''s end. For each turn a block holds, memory.night_block_turns gets its coherence with the previous turn, its Interrogative Distance to the centroid and whether it is live. The arc''s own turns are split into zones (memory.night_zones): live zones, kept verbatim ("role: content" lines), are maximal runs of turns meeting any of: (arc blocks only) perplexity above the local baseline mean + night.live_spike_sigma standard deviations; Arreté within the exchange, (previous perplexity - perplexity) / previous perplexity, above night.live_arrete; (every block) Interrogative Distance below night.live_interrogative_distance; an insight marker (night.insight_markers). The other runs are dead zones, summarised in stage 4. Returns the number of blocks formed (arc and gap).';

CREATE FUNCTION memory.night_03_salience(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_n bigint;
BEGIN
    WITH per_block AS (
        SELECT b.block_id,
               memory._perplexity_salience(b.peak, b.baseline) AS p_u,
               memory._perplexity_salience(avg(t.perplexity_score) FILTER (WHERE t.turn_number BETWEEN b.peak_turn AND b.peak_turn + 1), b.baseline) AS p_e,
               memory._perplexity_salience(avg(t.perplexity_score) FILTER (WHERE t.turn_number BETWEEN b.start_turn AND b.end_turn), b.baseline) AS p_t,
               coalesce(max(t.coherence_prev) FILTER (WHERE t.turn_number = b.peak_turn + 1), 0) AS c_u,
               coalesce(avg(t.coherence_prev) FILTER (WHERE t.turn_number BETWEEN b.peak_turn AND b.peak_turn + 1), 0) AS c_e,
               coalesce(avg(t.coherence_prev) FILTER (WHERE t.turn_number > b.first_turn), 0) AS c_t,
               coalesce(max(t.interrogative_distance) FILTER (WHERE t.turn_number = b.peak_turn), 1) AS id_u,
               coalesce(avg(t.interrogative_distance) FILTER (WHERE t.turn_number BETWEEN b.peak_turn AND b.peak_turn + 1), 1) AS id_e,
               coalesce(avg(t.interrogative_distance) FILTER (WHERE t.turn_number BETWEEN b.start_turn AND b.end_turn), 1) AS id_t,
               coalesce(avg(t.coherence_prev) FILTER (WHERE t.turn_number > b.peak_turn), 0)
                 - coalesce(avg(t.coherence_prev) FILTER (WHERE t.turn_number > b.first_turn AND t.turn_number <= b.peak_turn), 0)
                 AS coherence_gain
        FROM memory.night_blocks b
        CROSS JOIN LATERAL (  -- each block's turns by key: see stage 2
            SELECT x.* FROM memory.night_block_turns x
            WHERE x.run_id = b.run_id AND x.user_id = b.user_id AND x.block_id = b.block_id OFFSET 0) t
        WHERE b.run_id = p_run_id AND b.user_id = p_user_id
        GROUP BY b.block_id, b.peak, b.baseline, b.peak_turn, b.start_turn, b.end_turn, b.first_turn),
    scored AS MATERIALIZED (  -- the work tables have no statistics: inlined, the aggregate ran once per block
        SELECT p.*, ((p.p_u + p.c_u + 1 - p.id_u) + (p.p_e + p.c_e + 1 - p.id_e) + (p.p_t + p.c_t + 1 - p.id_t)) / 9 AS composite
        FROM per_block p)
    UPDATE memory.night_blocks b SET
        salience_scores = jsonb_build_object(
            'utterance_level', jsonb_build_object('P', round(s.p_u::numeric, 4), 'C', round(s.c_u::numeric, 4), 'ID', round(s.id_u::numeric, 4)),
            'exchange_level', jsonb_build_object('P', round(s.p_e::numeric, 4), 'C', round(s.c_e::numeric, 4), 'ID', round(s.id_e::numeric, 4)),
            'theme_level', jsonb_build_object('P', round(s.p_t::numeric, 4), 'C', round(s.c_t::numeric, 4), 'ID', round(s.id_t::numeric, 4)),
            'composite', round(s.composite::numeric, 4)),
        arrete = (b.baseline - b.final) / nullif(b.baseline, 0),
        coherence_gain = s.coherence_gain,
        ties_merge_weight = 0.5 * s.composite + 0.5 * greatest(0, least(1, coalesce((b.baseline - b.final) / nullif(b.baseline, 0), 0)))
    FROM scored s WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.block_id = s.block_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory.night_03_salience(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 3, salience, for the blocks stage 2 formed for one user of a run, at three levels. Utterance: the peak turn; exchange: the peak turn and the turn answering it; theme: the whole arc (for C, the whole block). P = 1 - exp(-max(0, perplexity / baseline - 1)) of the peak, of the exchange''s mean and of the arc''s mean perplexity. C = coherence: cosine similarity (floored at 0) of a turn''s universal embedding with the previous turn''s, for the answer to the peak, averaged over the exchange, averaged over the block. ID = Interrogative Distance: cosine distance to the user''s Preoccupation Centroid (1 when unknown), at the peak, averaged over the exchange and over the arc. composite = mean over the three levels of (P + C + (1 - ID)) / 3. Arreté = (baseline - final) / baseline. coherence_gain = mean C of the turns after the peak - mean C of the block''s turns up to the peak. ties_merge_weight = 0.5 composite + 0.5 Arreté clamped to [0, 1]. Returns the number of blocks scored.';

CREATE FUNCTION memory.night_04_compression(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
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
$_$;

COMMENT ON FUNCTION memory.night_04_compression(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 4, compression, for the blocks stage 2 formed for one user of a run. Dead zones are summarised by the function the night.summariser setting names (memory.summarise_facts by default), called with the session and the zone''s first and last turn and returning the sentences it keeps with the turn each came from: the zone''s summary is those sentences in order, and each turn keeps its own (memory.night_block_turns.kept, for memory.block_turns); turns of live zones and margins keep their whole text. Builds each block''s prose in the spec''s shape: anterior_margin, live_zones [{start, end, content}], dead_zone_summaries [{start, end, summary}], posterior_margin, with start and end as 0-based turn offsets within the block. Returns the number of dead zones summarised (that kept a sentence).';

CREATE FUNCTION memory.night_05_embedding(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_udim int := (ops.setting('embedding.universal_dim'))::int;
    v_ndim int := (ops.setting('embedding.native_dim'))::int;
    v_n bigint;
BEGIN
    -- Weighted sums with pgvector's element-wise product: the weight repeated as a vector.
    WITH weighted AS (
        SELECT b.block_id, 1 + memory._perplexity_salience(t.perplexity_score, b.baseline) + t.live::int AS w,
               d.universal_embedding, d.native_embedding
        FROM memory.night_blocks b
        CROSS JOIN LATERAL (  -- each block's turns by key: see stage 2
            SELECT x.* FROM memory.night_block_turns x
            WHERE x.run_id = b.run_id AND x.user_id = b.user_id AND x.block_id = b.block_id OFFSET 0) t
        JOIN memory.day_table d ON d.session_id = b.session_id AND d.user_id = b.user_id AND d.turn_number = t.turn_number
        WHERE b.run_id = p_run_id AND b.user_id = p_user_id),
    centroids AS MATERIALIZED (  -- the work tables have no statistics: inlined, the aggregate ran once per block
        SELECT block_id,
               -- CASE: no weight vector is built for a turn without an embedding in that space
               l2_normalize(sum(CASE WHEN universal_embedding IS NOT NULL
                                     THEN array_fill(w::real, ARRAY[v_udim])::vector * universal_embedding END)) AS u,
               l2_normalize(sum(CASE WHEN native_embedding IS NOT NULL
                                     THEN array_fill(w::real, ARRAY[v_ndim])::vector * native_embedding END)) AS n
        FROM weighted GROUP BY block_id)
    UPDATE memory.night_blocks b SET universal_embedding = c.u, native_embedding = c.n
    FROM centroids c WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.block_id = c.block_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory.night_05_embedding(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 5, block embeddings, for the blocks stage 2 formed for one user of a run: in both spaces, the normalised salience-weighted centroid of the block''s turns (margins included), weight = 1 + P of the turn''s perplexity against the arc baseline + 1 for turns in a live zone. Turns without an embedding in a space do not count in it. Returns the number of blocks embedded.';

CREATE FUNCTION memory.night_06_storage(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION memory.night_06_storage(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 6, storage, for one user of a run. Writes the blocks of memory.night_blocks to memory.holographic_blocks (flux_metrics and prose in the spec''s shapes; cycle_no = the user''s cycle, from which stage 7 counts the tier''s block_cycles), each block''s zones with their turn ranges (memory.block_zones) and what it keeps of each turn (memory.block_turns: verbatim for live zones and margins, the summary''s sentences for dead zones, with the turn''s role, time, external reference and universal embedding). A continuation whose earlier block forms in the same run links them (continues_from / continued_by, a continues relationship) and makes a compound metablock (parent_metablock_id; prose zones concatenated with shifted offsets, metrics combined, salience averaged, embeddings weighted by ties_merge_weight; derived_from relationships to its constituents). An earlier block stored by a previous cycle is not merged: from another session it becomes a citation (citations and a cites relationship); the earlier part of an arc of the same session, consolidated while the arc was still open, is continued (continues_from, its continued_by, a continues relationship). Arc blocks of the run at least night.thematic_similarity alike get a thematic relationship. Records the consolidated turns per session with the user''s cycle (memory.consolidations, sessions.consolidated_turn). Returns the number of blocks stored (compounds not counted).';

CREATE FUNCTION memory.night_07_migration_check(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_cycle_date date := memory._night_cycle_date(p_run_id);
    v_gain float8 := (ops.setting('cortex.coherence_gain_threshold'))::float8;
    v_age interval := (ops.setting('cortex.max_block_age') #>> '{}')::interval;
    v_n bigint;
BEGIN
    -- The payload names the block's user with the block: a block's key is (block_id, user_id)
    -- (revision 0018), so a job says whose shard its block is on (docs/scale.md).
    INSERT INTO ops.jobs (kind, payload, dedupe_key)
    SELECT 'cortex_migrate', jsonb_build_object('block_id', b.block_id, 'user_id', b.user_id, 'run_id', p_run_id),
           'cortex_migrate:' || b.block_id
    FROM memory.holographic_blocks b
    JOIN memory.users u ON u.user_id = b.user_id
    JOIN memory.retention_policy r ON r.tier = u.tier
    WHERE b.user_id = p_user_id AND b.migrated_at IS NULL
      AND (b.coherence_gain >= v_gain OR b.arc_end_time < (v_cycle_date + 1)::timestamptz - v_age
           OR b.long_term OR u.cycles - b.cycle_no >= r.block_cycles)
    ORDER BY b.arc_start_time
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM pg_notify('psimem_jobs', 'night_cycle');  -- the worker starts on them when this batch commits
    END IF;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory.night_07_migration_check(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 7, migration check, for one user of a run: queues a cortex_migrate job in ops.jobs (payload: the block, its user and the run; once per block: a block whose job failed for good stays until ops.retry_job) for each of the user''s blocks still in the Hippocampus that has coherence_gain >= cortex.coherence_gain_threshold, ended more than cortex.max_block_age before the cycle''s end, is marked long_term, or has stayed its tier''s block_cycles of the user''s cycles since it was stored (memory.retention_policy); wakes the worker (NOTIFY psimem_jobs) when it queued any. Returns the number queued.';

CREATE FUNCTION memory.night_08_clustering_update(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_n bigint;
BEGIN
    PERFORM memory._night_cycle_date(p_run_id);  -- refuses an unknown run
    -- One pending re-clustering covers any number of migrations (the worker runs it after
    -- them). Migrations the worker already finished during the run count too.
    INSERT INTO ops.jobs (kind, payload, dedupe_key)
    SELECT 'cluster_update', jsonb_build_object('run_id', p_run_id), 'cluster_update:run:' || p_run_id
    WHERE EXISTS (SELECT 1 FROM ops.jobs j WHERE j.kind = 'cortex_migrate' AND j.payload ->> 'run_id' = p_run_id::text)
      AND NOT EXISTS (SELECT 1 FROM ops.jobs j WHERE j.kind = 'cluster_update' AND j.state = 'queued')
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF EXISTS (SELECT 1 FROM ops.jobs j WHERE j.state = 'queued') THEN
        PERFORM pg_notify('psimem_jobs', 'night_cycle');
    END IF;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory.night_08_clustering_update(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 8, clustering update, once per run after every user (p_user_id is the run''s user filter and is not used): when the run queued blocks for the Cortex and no re-clustering is pending, queues one cluster_update job (RAPTOR re-clustering, run by the worker after the migrations); wakes the worker with NOTIFY psimem_jobs when work is queued. Returns the number of jobs queued.';

CREATE FUNCTION memory.night_09_cleanup(p_run_id bigint, p_user_id uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_cycle_date date := memory._night_cycle_date(p_run_id);
    v_window interval := (ops.setting('recall.window') #>> '{}')::interval;
    v_tier text;
    v_raw int;
    v_cycles int;
    v_n bigint;
BEGIN
    SELECT u.tier, r.raw_cycles, u.cycles INTO v_tier, v_raw, v_cycles
    FROM memory.users u JOIN memory.retention_policy r ON r.tier = u.tier WHERE u.user_id = p_user_id;
    DELETE FROM memory.day_table d
    USING memory.consolidations c
    WHERE d.user_id = p_user_id AND c.user_id = p_user_id
      AND c.session_id = d.session_id AND d.turn_number BETWEEN c.first_turn AND c.last_turn
      -- the tier's raw span, in the user's cycles (runs, not calendar days)
      AND v_cycles - c.cycle_no >= v_raw
      -- never what recall_recent still promises (the user's last recall.window, from now())
      AND d.created_at <= now() - v_window
      -- only a turn a block holds: in a zone, verbatim or in its summary
      AND EXISTS (SELECT 1 FROM memory.block_zones z
                  WHERE z.session_id = d.session_id AND z.user_id = p_user_id
                    AND d.turn_number BETWEEN z.first_turn AND z.last_turn);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        INSERT INTO ops.cleanup_log (cycle_date, tier, turns_deleted) VALUES (v_cycle_date, v_tier, v_n);
    END IF;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION memory.night_09_cleanup(p_run_id bigint, p_user_id uuid) IS 'Night Cycle stage 9, day table cleanup, for one user of a run, by memory.retention_policy for the user''s tier. Cycles are counted in the user''s Night Cycles (users.cycles), not calendar days. A raw turn goes once raw_cycles of them have passed since its consolidation (memory.consolidations.cycle_no), and only if a block holds it (a zone of memory.block_zones covers it: the turn verbatim, or its dead zone''s summary) and it is older than recall.window (what memory.recall_recent promises). A turn no block holds (consolidated before blocks covered every turn) stays. What it removes is logged per tier in ops.cleanup_log. Returns the number of turns deleted.';

CREATE PROCEDURE memory.night_cycle(IN p_cycle_date date DEFAULT CURRENT_DATE, IN p_user_id uuid DEFAULT NULL::uuid)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_since timestamptz := pg_catalog.clock_timestamp();
BEGIN
    COMMIT;  -- inside a transaction block this fails at once, before any lock or work
    IF NOT memory._night_lock('session') THEN
        RETURN;
    END IF;
    PERFORM memory._night_open_run(p_cycle_date, p_user_id, true);
    COMMIT;
    WHILE memory._night_work(true) LOOP
        COMMIT;
    END LOOP;
    COMMIT;
    PERFORM memory._night_end(v_since);
END
$$;

COMMENT ON PROCEDURE memory.night_cycle(IN p_cycle_date date, IN p_user_id uuid) IS 'The Night Cycle (spec 004 section 8) for one cycle date, for every user or one; pg_cron CALLs it nightly (cron.night_cycle). Stages, in memory.night_stages: 0 select sessions, 1 flux detection, 2 block formation, 3 salience, 4 compression, 5 embedding, 6 storage, 7 migration check, 9 cleanup per user; 8 clustering update once per run. Commits after each batch of night.batch_users users (in user_id order), each user in a subtransaction: a user''s sessions stay locked only until their batch commits, so a turn written into a session the cycle has taken waits at most for that batch and is left for the next cycle. Its state is in ops.cycle_runs (a cursor) and the work tables keyed by run: killed at any point (server crash included), the next call resumes the unfinished run where it stopped, redoing only the uncommitted batch; a second complete run creates nothing. A session-level advisory lock keeps two runs apart (a second call returns at once); it is released at the end and on any error. A run forming more blocks than holographic_blocks holds builds their HNSW indexes once when it finishes (night.index_rebuild_*), each step its own transaction. When any user failed, raises an error naming them after the others'' work is committed (so pg_cron records a failure); each failure is in ops.cycle_stage_log. Cannot run inside a transaction block: memory.run_night_cycle does the same there.';

CREATE FUNCTION memory.recall(p_user_id uuid, p_query_text text DEFAULT NULL::text, p_query_vector real[] DEFAULT NULL::real[], p_session_id uuid DEFAULT NULL::uuid, p_budget_turns integer DEFAULT 10, p_since timestamp with time zone DEFAULT NULL::timestamp with time zone, p_until timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(rank integer, item_kind text, session_id uuid, turn_number integer, turns integer, created_at timestamp with time zone, role text, content text, external_ref text, entry_id uuid, block_id uuid, verbatim boolean, score double precision, legs text[], reason text)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_cfg jsonb;
    v_n int;
    v_k float8;
    v_query vector;
    v_nw float8;
    v_legs_run text[] := '{}';
    v_text_ran boolean;
BEGIN
    SELECT jsonb_object_agg(s.key, s.value) INTO v_cfg FROM ops.settings s
    WHERE s.key LIKE 'recall.%' OR s.key = 'limits.content_max_chars';
    IF p_user_id IS NULL OR NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', quote_nullable(p_user_id) USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.sessions s
                                                WHERE s.session_id = p_session_id AND s.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_session_id: unknown session % for this user', p_session_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_budget_turns IS NULL OR p_budget_turns < 1 OR p_budget_turns > 1000 THEN
        RAISE EXCEPTION 'p_budget_turns: must be between 1 and 1000, got %', coalesce(p_budget_turns::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_since IS NOT NULL AND p_until IS NOT NULL AND p_since >= p_until THEN
        RAISE EXCEPTION 'p_since, p_until: p_since must be before p_until' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_query_text) > (v_cfg ->> 'limits.content_max_chars')::int THEN
        RAISE EXCEPTION 'p_query_text: must be at most % characters (limits.content_max_chars), got %',
            v_cfg ->> 'limits.content_max_chars', length(p_query_text) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(p_query_text, '') !~ '\S' AND p_query_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_text, p_query_vector: give a query text, a query vector or both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_query := memory._checked_vector(p_query_vector, 'p_query_vector', 'universal');
    v_n := greatest((v_cfg ->> 'recall.leg_candidates')::int, p_budget_turns);
    v_k := (v_cfg ->> 'recall.rrf_k')::float8;
    v_nw := (v_cfg ->> 'recall.neighbour_weight')::float8;

    v_text_ran := coalesce(p_query_text, '') ~ '\S' AND EXISTS (SELECT 1 FROM memory._recall_lexemes(p_user_id, p_query_text));
    v_legs_run := ARRAY[
        CASE WHEN v_text_ran THEN 'text' WHEN coalesce(p_query_text, '') ~ '\S' THEN 'text (not run: only stop words)'
             ELSE 'text (not run: no query text)' END,
        CASE WHEN v_query IS NOT NULL THEN 'vector' ELSE 'vector (not run: no query vector)' END]
        || CASE WHEN v_query IS NOT NULL AND (v_cfg ->> 'recall.weight_recent')::float8 > 0 THEN ARRAY['recent'] ELSE '{}' END;

    RETURN QUERY
    WITH hits AS (
        SELECT t.session_id, t.turn_number, 'text' AS leg, t.rank, t.bm25 AS measure,
               (v_cfg ->> 'recall.weight_text')::float8 / (v_k + t.rank) AS score
        FROM memory._recall_text_leg(p_user_id, p_query_text, v_n, p_since, p_until) t
        WHERE v_text_ran
        UNION ALL
        SELECT t.session_id, t.turn_number, 'vector', t.rank, t.distance, (v_cfg ->> 'recall.weight_vector')::float8 / (v_k + t.rank)
        FROM memory._recall_vector_leg(p_user_id, v_query, v_n, p_since, p_until) t
        WHERE v_query IS NOT NULL
        UNION ALL
        -- The spec's real-time retrieval: the session and the user's last recall.window.
        SELECT r.session_id, r.turn_number, 'recent', r.rank::int, r.distance,
               (v_cfg ->> 'recall.weight_recent')::float8 / (v_k + r.rank)
        FROM (SELECT x.*, row_number() OVER (ORDER BY x.distance, x.entry_id) AS rank
              FROM memory.recall_recent(p_query_vector, p_session_id, p_user_id, v_n) x
              WHERE (p_since IS NULL OR x.created_at >= p_since) AND (p_until IS NULL OR x.created_at < p_until)) r
        WHERE 'recent' = ANY (v_legs_run)),
    fused AS (
        SELECT h.session_id, h.turn_number, sum(h.score) AS score,
               array_agg(h.leg ORDER BY h.leg) AS legs,
               string_agg(h.leg || ' #' || h.rank || CASE h.leg WHEN 'text' THEN ' (bm25 ' || round(h.measure::numeric, 2)
                                                                ELSE ' (cosine ' || round((1 - h.measure)::numeric, 3) END || ')',
                          ', ' ORDER BY h.leg) AS why
        FROM hits h GROUP BY h.session_id, h.turn_number),
    neighbours AS (
        -- Structural expansion: the turns either side of a hit compete with a share of its score.
        SELECT f.session_id, f.turn_number + o.d AS turn_number, max(v_nw * f.score) AS score,
               ARRAY['neighbour'] AS legs, 'next to turn ' || min(f.turn_number) AS why
        FROM fused f CROSS JOIN (VALUES (-1), (1)) o(d)
        WHERE v_nw > 0 AND f.turn_number + o.d > 0
          AND NOT EXISTS (SELECT 1 FROM fused x WHERE x.session_id = f.session_id AND x.turn_number = f.turn_number + o.d)
        GROUP BY f.session_id, f.turn_number + o.d),
    ranked AS (
        SELECT a.* FROM (SELECT * FROM fused UNION ALL SELECT * FROM neighbours) a
        ORDER BY a.score DESC, a.session_id, a.turn_number
        LIMIT p_budget_turns * 2),  -- room for neighbours that turn out not to exist
    resolved AS (
        SELECT r.*, t.*
        FROM ranked r
        CROSS JOIN LATERAL (
            SELECT 'turn'::text AS kind, d.created_at AS at, d.role AS who, d.content AS text, d.external_ref AS ref,
                   d.entry_id AS eid, NULL::uuid AS bid, true AS whole
            FROM memory.day_table d WHERE d.session_id = r.session_id AND d.turn_number = r.turn_number
            UNION ALL
            (SELECT 'kept_turn', b.created_at, b.role, b.kept, b.external_ref, NULL, b.block_id, b.verbatim
             FROM memory.block_turns b WHERE b.session_id = r.session_id AND b.turn_number = r.turn_number
             ORDER BY b.verbatim DESC, b.block_id)
            LIMIT 1) t)
    SELECT (row_number() OVER (ORDER BY x.score DESC, x.session_id, x.turn_number))::int, x.kind, x.session_id,
           x.turn_number, 1, x.at, x.who, x.text, x.ref, x.eid, x.bid, x.whole, x.score, x.legs,
           x.why || CASE WHEN x.kind = 'kept_turn' AND NOT x.whole THEN '; as its block''s summary kept it' ELSE '' END
                 || '; legs: ' || c.summary
    FROM resolved x
    CROSS JOIN (  -- what each leg did, on every row: a leg that found nothing or could not run says so
        SELECT string_agg(CASE WHEN l.leg LIKE '%(not run%' THEN l.leg
                               ELSE l.leg || ' ' || coalesce(n.hits, 0) || ' hits' END, ', ' ORDER BY l.ord) AS summary
        FROM unnest(v_legs_run) WITH ORDINALITY l(leg, ord)
        LEFT JOIN (SELECT h.leg, count(*) AS hits FROM hits h GROUP BY h.leg) n ON n.leg = l.leg) c
    ORDER BY x.score DESC, x.session_id, x.turn_number
    LIMIT p_budget_turns;
END
$$;

COMMENT ON FUNCTION memory.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_session_id uuid, p_budget_turns integer, p_since timestamp with time zone, p_until timestamp with time zone) IS 'Recall for one user over their whole history, as one ranked list of turns within a budget of p_budget_turns turns: the raw turns still in day_table and, for turns retention has deleted, what their Holographic Block kept (memory.block_turns: verbatim, or the sentences its summary kept). Hybrid: a text leg (BM25 over the query''s words, memory._recall_text_leg) and a vector leg (cosine over universal embeddings, memory._recall_vector_leg), each ranking recall.leg_candidates turns, plus, when recall.weight_recent > 0, the recent leg (memory.recall_recent: the session and the user''s last recall.window); fused by reciprocal rank fusion, weight / (recall.rrf_k + rank) per leg. With recall.neighbour_weight > 0 the turns either side of a hit compete with that share of its score. p_since / p_until restrict the turns'' times. Each row says which legs found it, at which rank and why, and which legs ran (a leg that could not run says so). Refuses an unknown user or session, a bad vector, an empty query, a budget outside 1..1000.';

CREATE FUNCTION memory.recall_blocks(p_query_vector real[], p_k integer DEFAULT 10, p_user_id uuid DEFAULT NULL::uuid, p_expand boolean DEFAULT true) RETURNS TABLE(block_id uuid, block_kind text, session_id uuid, user_id uuid, arc_start_time timestamp with time zone, distance double precision, reason text, via_block_id uuid, coherence_gain double precision, prose jsonb)
    LANGUAGE plpgsql STABLE
    SET "hnsw.iterative_scan" TO 'relaxed_order'
    SET "hnsw.ef_search" TO '40'
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_kind text := ops.setting('embedding.universal_index') #>> '{}';
    v_dim int := (ops.setting('embedding.universal_dim'))::int;
    v_query vector;
    v_order text;
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > 1000 THEN
        RAISE EXCEPTION 'p_k: must be between 1 and 1000, got %', coalesce(p_k::text, 'null') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_query_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_vector: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_query := memory._checked_vector(p_query_vector, 'p_query_vector', 'universal');
    PERFORM set_config('hnsw.ef_search', ops.setting('recall.ef_search')::text, true);
    v_order := CASE v_kind
        WHEN 'vector' THEN 'b.universal_embedding <=> $1'
        WHEN 'halfvec' THEN format('b.universal_embedding::halfvec(%s) <=> $1::halfvec(%s)', v_dim, v_dim)
        ELSE 'b.universal_embedding_bq <~> binary_quantize($1)' END;
    RETURN QUERY EXECUTE format($q$
        WITH hits AS MATERIALIZED (
            SELECT b.block_id FROM memory.holographic_blocks b
            WHERE ($2::uuid IS NULL OR b.user_id = $2) AND b.universal_embedding IS NOT NULL
            ORDER BY %s LIMIT $3 * 2),
        vector_matches AS (
            SELECT b.block_id, NULL::uuid AS via, 'vector match' AS reason, 0 AS rank_group
            FROM hits h JOIN memory.holographic_blocks b USING (block_id)
            ORDER BY b.universal_embedding <=> $1 LIMIT $3),
        structural AS (
            SELECT r.target_block_id AS block_id, r.source_block_id AS via, 'cited by a match' AS reason, 1
            FROM memory.block_relationships r JOIN vector_matches v ON r.source_block_id = v.block_id
            WHERE r.relationship_type = 'cites'
            UNION ALL
            SELECT b.continues_from, b.block_id, 'earlier part of a matched inquiry', 2
            FROM vector_matches v JOIN memory.holographic_blocks b USING (block_id)
            WHERE $4 AND b.continues_from IS NOT NULL
            UNION ALL
            SELECT b.continued_by, b.block_id, 'later part of a matched inquiry', 2
            FROM vector_matches v JOIN memory.holographic_blocks b USING (block_id)
            WHERE $4 AND b.continued_by IS NOT NULL
            UNION ALL
            SELECT b.parent_metablock_id, b.block_id, 'metablock of a match', 3
            FROM vector_matches v JOIN memory.holographic_blocks b USING (block_id)
            WHERE $4 AND b.parent_metablock_id IS NOT NULL),
        combined AS (
            SELECT DISTINCT ON (c.block_id) c.*
            FROM (SELECT * FROM vector_matches UNION ALL SELECT * FROM structural) c
            ORDER BY c.block_id, c.rank_group)
        SELECT b.block_id, b.block_kind, b.session_id, b.user_id, b.arc_start_time,
               (b.universal_embedding <=> $1)::double precision, c.reason, c.via, b.coherence_gain, b.prose
        FROM combined c JOIN memory.holographic_blocks b ON b.block_id = c.block_id
        WHERE $2::uuid IS NULL OR b.user_id = $2
        ORDER BY c.rank_group, 6, b.block_id $q$, v_order)
    USING v_query, p_user_id, p_k, p_expand;
END
$_$;

COMMENT ON FUNCTION memory.recall_blocks(p_query_vector real[], p_k integer, p_user_id uuid, p_expand boolean) IS 'Hybrid block retrieval (spec 004 section 7.4): the p_k blocks nearest p_query_vector (universal, cosine; optionally one user''s), the union with blocks they cite, and with p_expand the structural neighbours along continuation edges (continues_from, continued_by) and their metablocks. Every row says why it came back (vector match, cited by a match, earlier or later part of a matched inquiry, metablock of a match) and through which block (via_block_id); vector matches come first, by distance.';

CREATE FUNCTION memory.recall_in_blocks(p_user_id uuid, p_block_ids uuid[], p_query_text text DEFAULT NULL::text, p_query_vector real[] DEFAULT NULL::real[], p_per_block integer DEFAULT 1) RETURNS TABLE(block_id uuid, rank integer, session_id uuid, turn_number integer, created_at timestamp with time zone, role text, content text, external_ref text, verbatim boolean, distance double precision, bm25 double precision)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_query vector := memory._checked_vector(p_query_vector, 'p_query_vector', 'universal');
    v_k float8 := (ops.setting('recall.rrf_k'))::float8;
    v_k1 float8 := (ops.setting('recall.bm25_k1'))::float8;
    v_b float8 := (ops.setting('recall.bm25_b'))::float8;
    v_avg float8 := coalesce((SELECT t.lexemes::float8 / nullif(t.turns, 0) FROM memory.text_totals t
                              WHERE t.user_id = p_user_id), 1);
BEGIN
    IF p_per_block IS NULL OR p_per_block < 1 OR p_per_block > 1000 THEN
        RAISE EXCEPTION 'p_per_block: must be between 1 and 1000, got %', coalesce(p_per_block::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH lex AS (SELECT l.lexeme, l.idf FROM memory._recall_lexemes(p_user_id, p_query_text) l),
    t AS (
        SELECT b.block_id, b.session_id, b.turn_number, b.created_at, b.role, b.kept, b.external_ref, b.verbatim,
               (b.universal_embedding <=> v_query)::float8 AS distance,
               (SELECT sum(memory._bm25_term(l.idf, coalesce(cardinality(u.positions), 1), length(b.kept_tsv), v_avg,
                                             v_k1, v_b))
                FROM unnest(b.kept_tsv) u JOIN lex l ON l.lexeme = u.lexeme) AS bm25
        FROM memory.block_turns b
        WHERE b.user_id = p_user_id AND b.block_id = ANY (p_block_ids)),
    legs AS (
        SELECT t.*, rank() OVER (PARTITION BY t.block_id ORDER BY t.distance NULLS LAST) AS vrank,
               CASE WHEN t.bm25 > 0 THEN rank() OVER (PARTITION BY t.block_id ORDER BY t.bm25 DESC NULLS LAST) END AS trank
        FROM t),
    ranked AS (
        SELECT l.*, row_number() OVER (PARTITION BY l.block_id ORDER BY
                   CASE WHEN l.distance IS NOT NULL THEN 1 / (v_k + l.vrank) ELSE 0 END
                   + coalesce(1 / (v_k + l.trank), 0) DESC, l.turn_number) AS r
        FROM legs l)
    SELECT r.block_id, r.r::int, r.session_id, r.turn_number, r.created_at, r.role, r.kept, r.external_ref, r.verbatim,
           r.distance, r.bm25
    FROM ranked r WHERE r.r <= p_per_block
    ORDER BY r.block_id, r.r;
END
$$;

COMMENT ON FUNCTION memory.recall_in_blocks(p_user_id uuid, p_block_ids uuid[], p_query_text text, p_query_vector real[], p_per_block integer) IS 'The best p_per_block turns inside each of the user''s blocks named in p_block_ids, as the blocks keep them (memory.block_turns), ranked within the block by reciprocal rank fusion (recall.rrf_k) of cosine distance to p_query_vector and BM25 for p_query_text (either may be null). The retrieval chain uses it to turn a Cortex block into the turns that answer the query, so a block costs one turn of a caller''s budget, not all of its turns. Blocks of another user, or unknown, give no rows.';

CREATE FUNCTION memory.recall_recent(p_query_vector real[], p_session_id uuid DEFAULT NULL::uuid, p_user_id uuid DEFAULT NULL::uuid, p_k integer DEFAULT 10) RETURNS TABLE(entry_id uuid, session_id uuid, user_id uuid, role text, content text, created_at timestamp with time zone, turn_number integer, distance double precision, reason text)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT * FROM memory._recall_recent('universal', p_query_vector, p_session_id, p_user_id, p_k)
$$;

COMMENT ON FUNCTION memory.recall_recent(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) IS 'Spec 004 section 2.4 real-time retrieval on universal embeddings: the p_k turns nearest to p_query_vector (cosine distance) from the current session OR the user''s turns within recall.window (7 days by default). Returns p_k rows whenever that many match, however selective the filter (pgvector 0.8 iterative index scans). Each row says why it came back: current session, or same user within the window.';

CREATE FUNCTION memory.recall_recent_native(p_query_vector real[], p_session_id uuid DEFAULT NULL::uuid, p_user_id uuid DEFAULT NULL::uuid, p_k integer DEFAULT 10) RETURNS TABLE(entry_id uuid, session_id uuid, user_id uuid, role text, content text, created_at timestamp with time zone, turn_number integer, distance double precision, reason text)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT * FROM memory._recall_recent('native', p_query_vector, p_session_id, p_user_id, p_k)
$$;

COMMENT ON FUNCTION memory.recall_recent_native(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) IS 'recall_recent on native embeddings. Native vectors over 2,000 dimensions are indexed by binary quantization (bit Hamming HNSW); the function over-fetches recall.binary_overfetch candidates per wanted row and re-ranks them by exact cosine distance.';

CREATE FUNCTION memory.record_turn(p_session_id uuid, p_role text, p_content text, p_universal_embedding real[] DEFAULT NULL::real[], p_native_embedding real[] DEFAULT NULL::real[], p_perplexity_score double precision DEFAULT NULL::double precision, p_token_count integer DEFAULT NULL::integer, p_turn_number integer DEFAULT NULL::integer, p_created_at timestamp with time zone DEFAULT now(), p_external_ref text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_entry_id uuid;
BEGIN
    INSERT INTO memory.day_table (session_id, role, content, universal_embedding, native_embedding,
                                  perplexity_score, token_count, turn_number, created_at, external_ref)
    VALUES (p_session_id, p_role, p_content,
            memory._checked_vector(p_universal_embedding, 'p_universal_embedding', 'universal'),
            memory._checked_vector(p_native_embedding, 'p_native_embedding', 'native'),
            p_perplexity_score, p_token_count, p_turn_number, coalesce(p_created_at, now()), p_external_ref)
    RETURNING entry_id INTO v_entry_id;
    IF v_entry_id IS NULL THEN
        -- The trigger skipped a retry of a turn already recorded under this external_ref.
        SELECT d.entry_id INTO v_entry_id FROM memory.day_table d
        WHERE d.session_id = p_session_id AND d.external_ref = p_external_ref;
    END IF;
    RETURN v_entry_id;
END
$$;

COMMENT ON FUNCTION memory.record_turn(p_session_id uuid, p_role text, p_content text, p_universal_embedding real[], p_native_embedding real[], p_perplexity_score double precision, p_token_count integer, p_turn_number integer, p_created_at timestamp with time zone, p_external_ref text) IS 'Records one turn of a session in the day table and returns its entry_id. Embeddings are real[] (a vector argument casts implicitly) of the installed universal and native sizes; perplexity is the agent''s own per-turn score. The day_table trigger checks the row, numbers the turn when p_turn_number is null, fills user and tier from the session, and sets flux_state live. p_external_ref, the agent''s own id for the turn (unique within the session), makes a retry of an unacknowledged commit return the turn already recorded instead of a second one. Errors name the argument and the rule.';

CREATE FUNCTION memory.refresh_preoccupation_centroid(p_user_id uuid, p_as_of timestamp with time zone DEFAULT now()) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_window interval := (ops.setting('preoccupation.window') #>> '{}')::interval;
    v_centroid_id uuid;
BEGIN
    INSERT INTO memory.preoccupation_centroids AS c
        (user_id, universal_centroid, native_centroid, turn_count, window_start, updated_at)
    SELECT p_user_id, l2_normalize(avg(d.universal_embedding)), l2_normalize(avg(d.native_embedding)),
           count(*), p_as_of - v_window, now()
    FROM memory.day_table d
    WHERE d.user_id = p_user_id AND d.role = 'user'
      AND d.created_at > p_as_of - v_window AND d.created_at <= p_as_of
      AND d.universal_embedding IS NOT NULL
    HAVING count(*) > 0
    ON CONFLICT (user_id) DO UPDATE SET
        universal_centroid = EXCLUDED.universal_centroid, native_centroid = EXCLUDED.native_centroid,
        turn_count = EXCLUDED.turn_count, window_start = EXCLUDED.window_start, updated_at = now()
    RETURNING c.centroid_id INTO v_centroid_id;
    IF v_centroid_id IS NULL THEN
        SELECT c.centroid_id INTO v_centroid_id FROM memory.preoccupation_centroids c WHERE c.user_id = p_user_id;
    END IF;
    RETURN v_centroid_id;
END
$$;

COMMENT ON FUNCTION memory.refresh_preoccupation_centroid(p_user_id uuid, p_as_of timestamp with time zone) IS 'Recomputes a user''s Preoccupation Centroid: the normalised mean (universal and native) of the user''s own turns (role user) within preoccupation.window before p_as_of. Keeps the previous centroid when the window holds no turns. Returns the centroid id. Interrogative Distance (ID) is the cosine distance of a turn or block to this centroid.';

CREATE FUNCTION memory.run_night_cycle(p_cycle_date date DEFAULT CURRENT_DATE, p_user_id uuid DEFAULT NULL::uuid) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_run bigint;
BEGIN
    IF NOT memory._night_lock('transaction') THEN
        RETURN NULL;
    END IF;
    v_run := memory._night_open_run(p_cycle_date, p_user_id, false);
    WHILE memory._night_work(false) LOOP
    END LOOP;
    RETURN v_run;
END
$$;

COMMENT ON FUNCTION memory.run_night_cycle(p_cycle_date date, p_user_id uuid) IS 'The Night Cycle inside the caller''s transaction, for callers that need one (tests, a script that checks before committing): the same stages and logs as CALL memory.night_cycle, but nothing commits until the caller does, so every session it takes stays locked and every user it consolidates holds a subtransaction until then (more than 64 slows every other session): for a few users, not for the nightly run. Failed users are logged and raised as WARNINGs, not as an error. Finishes an unfinished run first, as the procedure does. Returns the run id, or NULL when another run holds the lock.';

CREATE FUNCTION memory.start_session(p_user_id uuid, p_external_ref text DEFAULT NULL::text, p_started_at timestamp with time zone DEFAULT now()) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_session_id uuid;
BEGIN
    -- Row-level security hides users this session does not act for: "unknown" either way.
    IF p_user_id IS NULL OR NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', quote_nullable(p_user_id) USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_external_ref IS NOT NULL AND (p_external_ref !~ '\S' OR length(p_external_ref) > 200) THEN
        RAISE EXCEPTION 'p_external_ref: must be null or 1 to 200 characters, not blank' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO memory.sessions (user_id, external_ref, started_at)
    VALUES (p_user_id, p_external_ref, coalesce(memory._checked_time(p_started_at, 'p_started_at'), now()))
    ON CONFLICT (user_id, external_ref) DO NOTHING
    RETURNING session_id INTO v_session_id;
    IF v_session_id IS NULL THEN
        SELECT s.session_id INTO v_session_id FROM memory.sessions s
        WHERE s.user_id = p_user_id AND s.external_ref = p_external_ref;
    END IF;
    RETURN v_session_id;
END
$$;

COMMENT ON FUNCTION memory.start_session(p_user_id uuid, p_external_ref text, p_started_at timestamp with time zone) IS 'Opens a conversation session for a user this database session acts for and returns its id. With an external reference (unique per user) it is idempotent: the same reference returns the same session. p_started_at must lie between 1970 and now() + limits.future_skew.';

CREATE FUNCTION memory.summarise_facts(p_session_id uuid, p_first_turn integer, p_last_turn integer) RETURNS TABLE(turn_number integer, sentence text)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

COMMENT ON FUNCTION memory.summarise_facts(p_session_id uuid, p_first_turn integer, p_last_turn integer) IS 'The default dead-zone summariser (the night.summariser setting names it): extractive, no LLM. Splits the zone''s turns into sentences, ranks them by fact score (memory._sentence_facts: numbers, dates, names and places, first-person statements, substance) and then by how close their turn is to the zone''s mean universal embedding, and keeps them in that order while they fit night.summary_ratio of the zone''s characters (always at least one). Returns, in turn order, each turn that kept something with its kept sentences in their order. Any function with this signature can replace it (an LLM-backed one may return turn_number NULL for a sentence that stands for the whole zone).';

CREATE FUNCTION memory.unbind_user(p_user_id uuid, p_grantee regrole) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_gone int;
BEGIN
    DELETE FROM memory.user_bindings b WHERE b.user_id = p_user_id AND b.grantee = p_grantee;
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    RETURN v_gone > 0;
END
$$;

COMMENT ON FUNCTION memory.unbind_user(p_user_id uuid, p_grantee regrole) IS 'psimem_admin: removes a role''s binding to a user; sessions of that role acting for the user see nothing from their next query on. Returns false when there was no such binding.';

CREATE FUNCTION ops._reclaim_stale_jobs() RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_stale interval := (ops.setting('worker.stale_after') #>> '{}')::interval;
    v_n int;
BEGIN
    WITH stale AS (
        SELECT j.job_id FROM ops.jobs j LEFT JOIN ops.workers w ON w.worker_id = j.locked_by
        WHERE j.state = 'running'
          AND (w.worker_id IS NULL OR w.state = 'stopped' OR w.heartbeat_at < clock_timestamp() - v_stale)
        FOR UPDATE OF j SKIP LOCKED),
    moved AS (
        UPDATE ops.jobs j
        SET state = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
            last_error = 'worker ' || coalesce(j.locked_by, '?') || ' stopped heartbeating while running this job',
            finished_at = CASE WHEN j.attempts >= j.max_attempts THEN clock_timestamp() END,
            locked_by = NULL, locked_at = NULL, run_after = clock_timestamp()
        FROM stale s WHERE j.job_id = s.job_id
        RETURNING j.job_id, j.last_error)
    UPDATE ops.job_attempts a SET outcome = 'abandoned', finished_at = clock_timestamp(), error = m.last_error
    FROM moved m WHERE a.job_id = m.job_id AND a.outcome = 'running';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION ops._reclaim_stale_jobs() IS 'Internal. Running jobs whose worker has not heartbeaten for worker.stale_after (it crashed or was killed), or is stopped or unknown, go back to the queue, or to failed when they have used all their attempts; their open attempt is closed as abandoned. Returns the number reclaimed.';

CREATE FUNCTION ops._refresh_turn_rules() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    INSERT INTO ops.turn_rules (singleton, rules)
    SELECT true, coalesce(jsonb_object_agg(s.key, s.value), '{}')
    FROM ops.settings s WHERE s.key LIKE 'flux.%' OR s.key LIKE 'limits.%'
    ON CONFLICT (singleton) DO UPDATE SET rules = EXCLUDED.rules;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION ops._refresh_turn_rules() IS 'Trigger on ops.settings, after each statement that changes it: rewrites ops.turn_rules, the flux.* and limits.* settings as one jsonb row, which the day_table trigger reads for every turn.';

CREATE FUNCTION ops._setting_problem(p_value jsonb, p_type text, p_min numeric, p_max numeric, p_allowed text[]) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
DECLARE
    v_text text := p_value #>> '{}';
    v_num numeric;
    v_range text := CASE WHEN p_min IS NOT NULL THEN format(' between %s and %s', p_min, p_max) ELSE '' END;
BEGIN
    IF p_type IN ('integer', 'number') THEN
        IF jsonb_typeof(p_value) <> 'number' THEN
            RETURN format('must be a JSON number%s', v_range);
        END IF;
        v_num := v_text::numeric;
        IF p_type = 'integer' AND v_num <> trunc(v_num) THEN
            RETURN format('must be an integer%s', v_range);
        END IF;
    ELSIF jsonb_typeof(p_value) <> 'string' THEN
        RETURN format('must be a JSON string (%s)', p_type);
    ELSIF p_type = 'interval' THEN
        BEGIN
            v_num := extract(epoch FROM v_text::interval);
        EXCEPTION WHEN OTHERS THEN
            RETURN 'must be an interval such as "30 minutes"';
        END;
        v_range := CASE WHEN p_min IS NOT NULL THEN format(' between %s and %s seconds', p_min, p_max) ELSE '' END;
    ELSIF p_type = 'regex' THEN
        BEGIN
            PERFORM '' ~ v_text;
        EXCEPTION WHEN OTHERS THEN
            RETURN format('must be a valid regular expression (%s)', SQLERRM);
        END;
    ELSIF p_type = 'function' THEN
        IF to_regproc(v_text) IS NULL THEN
            RETURN 'must name an existing function';
        END IF;
    ELSIF p_type = 'cron' THEN
        IF v_text !~ '^\s*(\S+\s+){4}\S+\s*$' AND v_text !~ '^\s*[1-5]?[0-9] seconds?\s*$'
           AND v_text !~ '^@(yearly|annually|monthly|weekly|daily|hourly|reboot)$' THEN
            RETURN 'must be a pg_cron schedule: five cron fields, "N seconds" (1-59) or @daily and the like';
        END IF;
    ELSIF p_type = 'enum' AND NOT v_text = ANY(p_allowed) THEN
        RETURN format('must be one of %s', array_to_string(p_allowed, ', '));
    END IF;
    IF v_num IS NOT NULL AND (v_num < p_min OR v_num > p_max) THEN
        RETURN format('must be%s, got %s', v_range, v_text);
    END IF;
    RETURN NULL;
END
$_$;

COMMENT ON FUNCTION ops._setting_problem(p_value jsonb, p_type text, p_min numeric, p_max numeric, p_allowed text[]) IS 'Internal. What is wrong with a setting value for its type and range (ops.settings value_type, min_value, max_value, allowed), or NULL when nothing is.';

CREATE FUNCTION ops._settings_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_problem text := ops._setting_problem(NEW.value, NEW.value_type, NEW.min_value, NEW.max_value, NEW.allowed);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'p_value: setting % %', NEW.key, v_problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.key LIKE 'embedding.%' AND NEW.value IS DISTINCT FROM OLD.value THEN
        RAISE EXCEPTION 'p_key: % is fixed at install time (it shapes columns and indexes)', NEW.key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION ops._settings_check() IS 'Trigger on ops.settings, before insert or update: refuses a value that does not fit its value_type, range or allowed values, naming the key and the rule, and any change of an embedding.* setting (fixed at install).';

CREATE FUNCTION ops.fail_job(p_worker_id text, p_job_id bigint, p_error text) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_base interval := (ops.setting('worker.retry_base') #>> '{}')::interval;
    v_max interval := (ops.setting('worker.retry_max') #>> '{}')::interval;
    v_job ops.jobs;
    v_state text;
BEGIN
    SELECT * INTO v_job FROM ops.jobs j WHERE j.job_id = p_job_id AND j.locked_by = p_worker_id AND j.state = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_job_id: job % is not running under worker %', p_job_id, quote_literal(p_worker_id)
            USING ERRCODE = 'lock_not_available';
    END IF;
    v_state := CASE WHEN v_job.attempts >= v_job.max_attempts THEN 'failed' ELSE 'queued' END;
    UPDATE ops.jobs j
    SET state = v_state, last_error = left(p_error, 10000), locked_by = NULL, locked_at = NULL,
        run_after = CASE WHEN v_state = 'queued'
                         THEN clock_timestamp() + least(v_base * power(2, v_job.attempts - 1), v_max)
                         ELSE j.run_after END,
        finished_at = CASE WHEN v_state = 'failed' THEN clock_timestamp() END
    WHERE j.job_id = p_job_id;
    UPDATE ops.job_attempts a SET outcome = CASE WHEN v_state = 'failed' THEN 'failed' ELSE 'retry' END,
                                  finished_at = clock_timestamp(), error = left(p_error, 10000)
    WHERE a.job_id = p_job_id AND a.outcome = 'running';
    UPDATE ops.workers w
    SET jobs_retried = w.jobs_retried + (v_state = 'queued')::int, jobs_failed = w.jobs_failed + (v_state = 'failed')::int,
        state = 'idle', current_job_id = NULL
    WHERE w.worker_id = p_worker_id;
    RETURN v_state;
END
$$;

COMMENT ON FUNCTION ops.fail_job(p_worker_id text, p_job_id bigint, p_error text) IS 'Records that a job failed under this worker, keeping the error. With attempts left it is queued again after an exponential backoff (worker.retry_base * 2^(attempt-1), at most worker.retry_max); after max_attempts it stays failed with the error in last_error. Returns the job''s new state: queued or failed.';

CREATE FUNCTION ops.finish_jobs(p_worker_id text, p_job_ids bigint[], p_result jsonb DEFAULT '{}'::jsonb) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_n int;
BEGIN
    WITH done AS (
        UPDATE ops.jobs j SET state = 'done', result = p_result, finished_at = clock_timestamp(),
                              locked_by = NULL, last_error = NULL
        WHERE j.job_id = ANY (p_job_ids) AND j.locked_by = p_worker_id AND j.state = 'running'
        RETURNING j.job_id)
    UPDATE ops.job_attempts a SET outcome = 'done', finished_at = clock_timestamp(), result = p_result
    FROM done d WHERE a.job_id = d.job_id AND a.outcome = 'running';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n <> coalesce(cardinality(p_job_ids), 0) THEN
        RAISE EXCEPTION 'p_job_ids: % of % jobs are not running under worker % (taken back as stale?)',
            coalesce(cardinality(p_job_ids), 0) - v_n, coalesce(cardinality(p_job_ids), 0), quote_literal(p_worker_id)
            USING ERRCODE = 'lock_not_available';
    END IF;
    UPDATE ops.workers w SET jobs_done = w.jobs_done + v_n, state = 'idle', current_job_id = NULL,
                             heartbeat_at = clock_timestamp()
    WHERE w.worker_id = p_worker_id;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION ops.finish_jobs(p_worker_id text, p_job_ids bigint[], p_result jsonb) IS 'Marks jobs the worker is running as done with a result (kept in ops.jobs.result and the attempt row). Raises lock_not_available, and so rolls back the caller''s transaction, when any of them is no longer running under this worker.';

CREATE FUNCTION ops.install_cron_jobs() RETURNS TABLE(jobname text, schedule text, command text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_job record;
BEGIN
    FOR v_job IN
        SELECT * FROM (VALUES
            ('psimem-night-cycle', 'cron.night_cycle', 'CALL memory.night_cycle()'),
            ('psimem-procedural', 'cron.procedural_maintenance',
             'SELECT procedural.decay_causal_edges(), procedural.prune_reflexes()'),
            ('psimem-trim-history', 'cron.trim_history', 'SELECT ops.trim_history()'),
            ('psimem-psi-centroid-decay', 'cron.psi_centroid_decay', 'SELECT psi.decay_centroids()'),
            ('psimem-kernel-maintenance', 'cron.kernel_maintenance', 'SELECT kernel.run_maintenance()')) AS j(name, setting, cmd)
    LOOP
        PERFORM cron.schedule(v_job.name, ops.setting(v_job.setting) #>> '{}', v_job.cmd);
        jobname := v_job.name; schedule := ops.setting(v_job.setting) #>> '{}'; command := v_job.cmd;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION ops.install_cron_jobs() IS 'Installs or updates psimem''s pg_cron jobs from the cron.* settings: the Night Cycle (CALL memory.night_cycle(), which commits per batch of users and fails the job when a user failed), procedural decay and pruning, history trimming, ψ band-centroid decay and kernel maintenance. Idempotent (pg_cron replaces a job of the same name).';

CREATE FUNCTION ops.queue_job(p_kind text, p_payload jsonb DEFAULT '{}'::jsonb, p_dedupe_key text DEFAULT NULL::text, p_max_attempts integer DEFAULT 5) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO ops.jobs (kind, payload, dedupe_key, max_attempts)
    VALUES (p_kind, coalesce(p_payload, '{}'), p_dedupe_key, p_max_attempts)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING job_id INTO v_id;
    PERFORM pg_notify('psimem_jobs', p_kind);
    RETURN v_id;
END
$$;

COMMENT ON FUNCTION ops.queue_job(p_kind text, p_payload jsonb, p_dedupe_key text, p_max_attempts integer) IS 'Queues a job for the worker (kind cortex_migrate with {"block_id": …} or cluster_update) and wakes it with NOTIFY psimem_jobs. A dedupe_key already queued or done makes it a no-op returning null.';

CREATE TABLE ops.workers (
    worker_id text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    code_version text NOT NULL,
    cortex_uri text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    stopped_at timestamp with time zone,
    state text DEFAULT 'idle'::text NOT NULL,
    current_job_id bigint,
    jobs_done bigint DEFAULT 0 NOT NULL,
    jobs_retried bigint DEFAULT 0 NOT NULL,
    jobs_failed bigint DEFAULT 0 NOT NULL,
    jobs_released bigint DEFAULT 0 NOT NULL,
    CONSTRAINT workers_state_known CHECK ((state = ANY (ARRAY['idle'::text, 'busy'::text, 'stopped'::text]))),
    CONSTRAINT workers_stopped_has_time CHECK (((state = 'stopped'::text) = (stopped_at IS NOT NULL)))
);

COMMENT ON TABLE ops.workers IS 'One row per worker process (psimem worker): its SQL code version, Cortex location, state and last heartbeat';

CREATE FUNCTION ops.register_worker(p_worker_id text, p_host text, p_pid integer, p_code_version text, p_cortex_uri text) RETURNS ops.workers
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_db_version text;
    v_row ops.workers;
BEGIN
    IF p_worker_id IS NULL OR btrim(p_worker_id) = '' THEN
        RAISE EXCEPTION 'p_worker_id: must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.value #>> '{}' INTO v_db_version FROM ops.settings s WHERE s.key = 'sql.code_version';
    IF v_db_version IS DISTINCT FROM p_code_version THEN
        RAISE EXCEPTION 'p_code_version: the worker''s SQL code version is %, the database''s is %',
            quote_nullable(p_code_version), quote_nullable(v_db_version)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run psimem db migrate with the worker''s checkout, or run the worker of the checkout that migrated this database';
    END IF;
    INSERT INTO ops.workers (worker_id, host, pid, code_version, cortex_uri)
    VALUES (p_worker_id, p_host, p_pid, p_code_version, p_cortex_uri)
    ON CONFLICT (worker_id) DO UPDATE
        SET host = EXCLUDED.host, pid = EXCLUDED.pid, code_version = EXCLUDED.code_version,
            cortex_uri = EXCLUDED.cortex_uri, started_at = now(), heartbeat_at = now(),
            stopped_at = NULL, state = 'idle', current_job_id = NULL
    RETURNING * INTO v_row;
    RETURN v_row;
END
$$;

COMMENT ON FUNCTION ops.register_worker(p_worker_id text, p_host text, p_pid integer, p_code_version text, p_cortex_uri text) IS 'Registers a worker process in ops.workers (or re-registers one with the same id). Refuses with object_not_in_prerequisite_state, naming both versions, when the worker''s SQL code version (psimem.sqlfiles.code_version() of its checkout) differs from the sql.code_version the database was migrated with.';

CREATE FUNCTION ops.release_jobs(p_worker_id text, p_job_ids bigint[], p_reason text DEFAULT 'worker shut down'::text) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_n int;
BEGIN
    WITH released AS (
        UPDATE ops.jobs j SET state = 'queued', attempts = greatest(j.attempts - 1, 0), locked_by = NULL,
                              locked_at = NULL, run_after = clock_timestamp()
        WHERE j.job_id = ANY (p_job_ids) AND j.locked_by = p_worker_id AND j.state = 'running'
        RETURNING j.job_id)
    UPDATE ops.job_attempts a SET outcome = 'released', finished_at = clock_timestamp(), error = p_reason
    FROM released r WHERE a.job_id = r.job_id AND a.outcome = 'running';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE ops.workers w SET jobs_released = w.jobs_released + v_n, state = 'idle', current_job_id = NULL
    WHERE w.worker_id = p_worker_id;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION ops.release_jobs(p_worker_id text, p_job_ids bigint[], p_reason text) IS 'Gives jobs back to the queue, ready at once and without counting the interrupted attempt (it closes as released with p_reason): what a worker does when it is told to stop mid-job. Returns the number released.';

CREATE TABLE ops.jobs (
    job_id bigint NOT NULL,
    kind text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    dedupe_key text,
    state text DEFAULT 'queued'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 5 NOT NULL,
    run_after timestamp with time zone DEFAULT now() NOT NULL,
    locked_by text,
    locked_at timestamp with time zone,
    heartbeat_at timestamp with time zone,
    last_error text,
    result jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    CONSTRAINT jobs_kind_known CHECK ((kind = ANY (ARRAY['cortex_migrate'::text, 'cluster_update'::text]))),
    CONSTRAINT jobs_state_known CHECK ((state = ANY (ARRAY['queued'::text, 'running'::text, 'done'::text, 'failed'::text])))
);

COMMENT ON TABLE ops.jobs IS 'Work for the Python worker (psimem worker), queued by the Night Cycle; taken with FOR UPDATE SKIP LOCKED';

CREATE FUNCTION ops.retry_job(p_job_id bigint) RETURNS ops.jobs
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_job ops.jobs;
BEGIN
    -- A failed job keeps its dedupe key, so the Night Cycle never queues its block again:
    -- without this, a block whose migration failed for good would stay in the Hippocampus.
    UPDATE ops.jobs j SET state = 'queued', attempts = 0, run_after = clock_timestamp(), finished_at = NULL,
                          locked_by = NULL, locked_at = NULL
    WHERE j.job_id = p_job_id AND j.state = 'failed'
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        SELECT * INTO v_job FROM ops.jobs j WHERE j.job_id = p_job_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'p_job_id: unknown job %', coalesce(p_job_id::text, 'null') USING ERRCODE = 'no_data_found';
        END IF;
        RAISE EXCEPTION 'p_job_id: job % is %, not failed: only a failed job is retried', p_job_id, v_job.state
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_notify('psimem_jobs', v_job.kind);
    RETURN v_job;
END
$$;

COMMENT ON FUNCTION ops.retry_job(p_job_id bigint) IS 'Puts a job that failed for good (state failed, listed in bi.dead_letter_jobs) back in the queue, ready now and with its attempts counted from zero; its last error stays in last_error and every attempt in ops.job_attempts. Wakes the worker. Returns the job. Refuses an unknown job or one that is not failed.';

CREATE FUNCTION ops.set_schedule(p_job text, p_schedule text) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_key text := 'cron.' || p_job;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ops.settings WHERE key = v_key) THEN
        RAISE EXCEPTION 'p_job: must be one of night_cycle, procedural_maintenance, trim_history, psi_centroid_decay, kernel_maintenance (got %)', quote_literal(p_job)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM ops.set_setting(v_key, to_jsonb(p_schedule));
    PERFORM ops.install_cron_jobs();
    RETURN p_schedule;
END
$$;

COMMENT ON FUNCTION ops.set_schedule(p_job text, p_schedule text) IS 'Changes the pg_cron schedule of a psimem job (night_cycle, procedural_maintenance, trim_history, psi_centroid_decay, kernel_maintenance) in ops.settings and re-installs the jobs; pg_cron rejects a malformed schedule.';

CREATE FUNCTION ops.set_setting(p_key text, p_value jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_old jsonb;
BEGIN
    IF p_key LIKE 'embedding.%' THEN
        RAISE EXCEPTION 'p_key: % is fixed at install time (it shapes columns and indexes)', p_key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_old := ops.setting(p_key);
    IF p_value IS NULL THEN
        RAISE EXCEPTION 'p_value: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE ops.settings SET value = p_value, updated_at = now() WHERE key = p_key;
    RETURN v_old;
END
$$;

COMMENT ON FUNCTION ops.set_setting(p_key text, p_value jsonb) IS 'Changes an existing setting and returns its previous value. The trigger on ops.settings checks the new value against the setting''s value_type and range (min_value, max_value, allowed) and names the rule it breaks; embedding.* settings are fixed at install time and refused.';

CREATE FUNCTION ops.setting(p_key text) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_value jsonb;
BEGIN
    SELECT s.value INTO v_value FROM ops.settings s WHERE s.key = p_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_key: setting % is not defined in ops.settings', quote_literal(p_key)
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN v_value;
END
$$;

COMMENT ON FUNCTION ops.setting(p_key text) IS 'Returns the jsonb value of one ops.settings row, or raises undefined_object naming the key. Functions read their parameters through it so a missing setting fails loudly instead of defaulting silently.';

CREATE FUNCTION ops.stop_worker(p_worker_id text) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_released int;
BEGIN
    v_released := ops.release_jobs(p_worker_id,
        ARRAY(SELECT j.job_id FROM ops.jobs j WHERE j.locked_by = p_worker_id AND j.state = 'running'));
    UPDATE ops.workers w SET state = 'stopped', stopped_at = clock_timestamp(), current_job_id = NULL
    WHERE w.worker_id = p_worker_id AND w.state <> 'stopped';
    RETURN v_released;
END
$$;

COMMENT ON FUNCTION ops.stop_worker(p_worker_id text) IS 'Marks a worker stopped, first releasing any job it still holds (ops.release_jobs). Returns the number of jobs released.';

CREATE FUNCTION ops.take_jobs(p_worker_id text, p_limit integer DEFAULT 1) RETURNS SETOF ops.jobs
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_kind text;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'p_limit: must be between 1 and 10000, got %', coalesce(p_limit::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ops.workers w WHERE w.worker_id = p_worker_id AND w.state <> 'stopped') THEN
        RAISE EXCEPTION 'p_worker_id: no running worker % (call ops.register_worker first)', quote_literal(p_worker_id)
            USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM ops._reclaim_stale_jobs();
    -- The oldest ready job decides the kind; a re-clustering waits until no migration is
    -- queued or running, so it sees every block the night moved, and until no other
    -- re-clustering runs (with several workers, two would rebuild the same trees).
    SELECT j.kind INTO v_kind FROM ops.jobs j
    WHERE j.state = 'queued' AND j.run_after <= clock_timestamp()
      AND (j.kind <> 'cluster_update' OR NOT EXISTS (
              SELECT 1 FROM ops.jobs m
              WHERE (m.kind = 'cortex_migrate' AND m.state IN ('queued', 'running'))
                 OR (m.kind = 'cluster_update' AND m.state = 'running')))
    ORDER BY j.run_after, j.job_id
    LIMIT 1;
    IF v_kind IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT j.job_id FROM ops.jobs j
        WHERE j.state = 'queued' AND j.run_after <= clock_timestamp() AND j.kind = v_kind
        ORDER BY j.run_after, j.job_id
        LIMIT CASE WHEN v_kind = 'cortex_migrate' THEN p_limit ELSE 1 END
        FOR UPDATE SKIP LOCKED),
    taken AS (
        UPDATE ops.jobs j
        SET state = 'running', attempts = j.attempts + 1, locked_by = p_worker_id,
            locked_at = clock_timestamp(), heartbeat_at = clock_timestamp()
        FROM picked p WHERE j.job_id = p.job_id
        RETURNING j.*),
    logged AS (
        INSERT INTO ops.job_attempts (job_id, attempt, worker_id)
        SELECT t.job_id, t.attempts, p_worker_id FROM taken t)
    SELECT * FROM taken ORDER BY job_id;
    UPDATE ops.workers w SET state = 'busy', heartbeat_at = clock_timestamp(),
        current_job_id = (SELECT min(j.job_id) FROM ops.jobs j WHERE j.locked_by = p_worker_id AND j.state = 'running')
    WHERE w.worker_id = p_worker_id;
END
$$;

COMMENT ON FUNCTION ops.take_jobs(p_worker_id text, p_limit integer) IS 'Takes ready jobs for a registered worker with FOR UPDATE SKIP LOCKED, so concurrent workers never take the same job: up to p_limit cortex_migrate jobs at once (one LanceDB commit for the batch), or one job of another kind. The oldest ready job (run_after, then id) decides the kind; cluster_update waits while any cortex_migrate is queued or running, or another cluster_update runs. Running jobs of workers that stopped heartbeating (worker.stale_after) are reclaimed first. Each taken job is marked running, its attempts counted and an ops.job_attempts row opened.';

CREATE FUNCTION ops.trim_history(p_as_of timestamp with time zone DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_keep interval := (ops.setting('ops.keep_history') #>> '{}')::interval;
    v_n bigint;
    v_m bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.ops.trim_history')) THEN
        RETURN 0;
    END IF;
    DELETE FROM cron.job_run_details WHERE end_time < p_as_of - v_keep;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    DELETE FROM ops.cycle_runs WHERE started_at < p_as_of - v_keep AND status <> 'running';  -- the next cycle resumes those
    GET DIAGNOSTICS v_m = ROW_COUNT;
    DELETE FROM ops.jobs WHERE state = 'done' AND finished_at < p_as_of - v_keep;
    RETURN v_n + v_m;
END
$$;

COMMENT ON FUNCTION ops.trim_history(p_as_of timestamp with time zone) IS 'Deletes pg_cron''s cron.job_run_details rows (pg_cron never trims them), Night Cycle run logs (not of a run still to be resumed) and finished jobs older than ops.keep_history. Idempotent; advisory-locked. Returns the number of run-detail and run-log rows deleted.';

CREATE FUNCTION ops.worker_heartbeat(p_worker_id text) RETURNS timestamp with time zone
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    -- Only the worker's own row: touching its jobs here would take row locks in an order
    -- opposite to ops.finish_jobs (jobs, then worker) and deadlock with it.
    UPDATE ops.workers w SET heartbeat_at = v_now WHERE w.worker_id = p_worker_id AND w.state <> 'stopped';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_worker_id: no running worker %', quote_literal(p_worker_id) USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_now;
END
$$;

COMMENT ON FUNCTION ops.worker_heartbeat(p_worker_id text) IS 'Records that a worker is alive by stamping its ops.workers row. The jobs a worker runs are judged by it: when its heartbeat is older than worker.stale_after, ops.take_jobs takes them back.';

CREATE FUNCTION procedural.decay_causal_edges(p_as_of timestamp with time zone DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_n bigint;
    v_deleted bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.procedural.decay')) THEN
        RAISE NOTICE 'decay_causal_edges: another run holds the lock';
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM procedural.maintenance_runs WHERE job = 'decay' AND run_date = p_as_of::date) THEN
        RETURN 0;
    END IF;
    UPDATE procedural.causal_edges
    SET causal_strength = causal_strength * (ops.setting('procedural.decay_factor'))::float8
    WHERE last_observed < p_as_of - (ops.setting('procedural.decay_after') #>> '{}')::interval;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    DELETE FROM procedural.causal_edges WHERE causal_strength < (ops.setting('procedural.min_strength'))::float8;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    INSERT INTO procedural.maintenance_runs (job, run_date, rows) VALUES ('decay', p_as_of::date, v_n + v_deleted);
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION procedural.decay_causal_edges(p_as_of timestamp with time zone) IS 'Causal-edge decay (spec 004 section 10.5): edges not observed within procedural.decay_after (7 days) before p_as_of are multiplied by procedural.decay_factor (0.9), then edges below procedural.min_strength (0.1) are deleted. Runs at most once per day of p_as_of (procedural.maintenance_runs), so running it twice in a day does not decay twice; advisory-locked. Returns the number of edges decayed.';

CREATE FUNCTION procedural.learn_reflex(p_action text, p_action_type text, p_context_description text DEFAULT NULL::text, p_context_embedding real[] DEFAULT NULL::real[], p_owner_agent_id uuid DEFAULT NULL::uuid, p_at timestamp with time zone DEFAULT now()) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_user uuid := memory._acting_user();
    v_reflex_id uuid;
BEGIN
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'user: this session acts for no user; call memory.act_for() first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_action IS NULL OR p_action !~ '\S' OR length(p_action) > 10000 THEN
        RAISE EXCEPTION 'p_action: must be 1 to 10000 characters, not blank' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_action_type IS NULL OR p_action_type NOT IN ('tool_call', 'response_pattern', 'delegation') THEN
        RAISE EXCEPTION 'p_action_type: must be one of tool_call, response_pattern, delegation (got %)', quote_nullable(p_action_type)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO procedural.procedural_memory (user_id, action, action_type, context_description, context_embedding,
                                              owner_agent_id, created_at, last_accessed)
    VALUES (v_user, p_action, p_action_type, p_context_description,
            memory._checked_vector(p_context_embedding, 'p_context_embedding', 'universal'), p_owner_agent_id,
            coalesce(p_at, now()), coalesce(p_at, now()))
    RETURNING reflex_id INTO v_reflex_id;
    RETURN v_reflex_id;
END
$$;

COMMENT ON FUNCTION procedural.learn_reflex(p_action text, p_action_type text, p_context_description text, p_context_embedding real[], p_owner_agent_id uuid, p_at timestamp with time zone) IS 'Stores a new reflex (an action of type tool_call, response_pattern or delegation, with its context) for the user this session acts for, learnt at p_at, with no uses yet, and returns its reflex_id. procedural.record_outcome then counts its successes and failures.';

CREATE FUNCTION procedural.log_attempt(p_lieutenant_id uuid, p_task_description text, p_worker_generation integer, p_success boolean, p_failure_mode text DEFAULT NULL::text, p_task_embedding real[] DEFAULT NULL::real[], p_worker_mutation_id uuid DEFAULT NULL::uuid, p_parent_mutation_id uuid DEFAULT NULL::uuid, p_execution_turns integer DEFAULT NULL::integer, p_mutation_description text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_entry_id uuid;
    v_user uuid := memory._acting_user();
BEGIN
    IF p_task_description IS NULL OR p_task_description !~ '\S' THEN
        RAISE EXCEPTION 'p_task_description: must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT p_success AND p_failure_mode IS NULL THEN
        RAISE EXCEPTION 'p_failure_mode: a failed attempt needs one of timeout, error, wrong_output, resource_exceeded'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_failure_mode NOT IN ('timeout', 'error', 'wrong_output', 'resource_exceeded') THEN
        RAISE EXCEPTION 'p_failure_mode: must be one of timeout, error, wrong_output, resource_exceeded (got %)',
            quote_literal(p_failure_mode) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'user: this session acts for no user; call memory.act_for() first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO procedural.frustration_ledger (user_id, lieutenant_id, task_description, task_embedding, worker_generation,
        worker_mutation_id, parent_mutation_id, success, failure_mode, execution_turns, mutation_description)
    VALUES (v_user, p_lieutenant_id, p_task_description,
            memory._checked_vector(p_task_embedding, 'p_task_embedding', 'universal'), p_worker_generation,
            p_worker_mutation_id, p_parent_mutation_id, p_success, p_failure_mode, p_execution_turns, p_mutation_description)
    RETURNING entry_id INTO v_entry_id;
    RETURN v_entry_id;
END
$$;

COMMENT ON FUNCTION procedural.log_attempt(p_lieutenant_id uuid, p_task_description text, p_worker_generation integer, p_success boolean, p_failure_mode text, p_task_embedding real[], p_worker_mutation_id uuid, p_parent_mutation_id uuid, p_execution_turns integer, p_mutation_description text) IS 'Logs one worker attempt in the Frustration Ledger (spec 004 section 10.6.3). A failed attempt must say its failure mode.';

CREATE FUNCTION procedural.observe_causal_edge(p_source_reflex_id uuid, p_target_reflex_id uuid, p_gap_seconds double precision, p_observed_strength double precision DEFAULT 1.0, p_at timestamp with time zone DEFAULT now()) RETURNS double precision
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_rate double precision := (ops.setting('procedural.edge_learning_rate'))::float8;
    v_strength double precision;
    v_user uuid;
BEGIN
    IF p_gap_seconds IS NULL OR p_gap_seconds < 0 OR p_gap_seconds = 'Infinity' OR p_gap_seconds = 'NaN' THEN
        RAISE EXCEPTION 'p_gap_seconds: must be a finite number >= 0, got %', p_gap_seconds USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_observed_strength IS NULL OR NOT (p_observed_strength BETWEEN 0 AND 1) THEN
        RAISE EXCEPTION 'p_observed_strength: must be between 0 and 1, got %', p_observed_strength USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Both reflexes must be visible and belong to one user (an edge never joins two people).
    SELECT min(m.user_id::text)::uuid INTO v_user FROM procedural.procedural_memory m
    WHERE m.reflex_id IN (p_source_reflex_id, p_target_reflex_id)
    HAVING count(*) = (CASE WHEN p_source_reflex_id = p_target_reflex_id THEN 1 ELSE 2 END)
       AND count(DISTINCT m.user_id) = 1;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'p_source_reflex_id, p_target_reflex_id: unknown reflex' USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO procedural.causal_edges AS e (user_id, source_reflex_id, target_reflex_id, causal_strength, temporal_gap_avg,
                                              observation_count, last_observed)
    VALUES (v_user, p_source_reflex_id, p_target_reflex_id, p_observed_strength, p_gap_seconds, 1, p_at)
    ON CONFLICT (source_reflex_id, target_reflex_id, user_id) DO UPDATE SET
        causal_strength = e.causal_strength + v_rate * (EXCLUDED.causal_strength - e.causal_strength),
        temporal_gap_avg = e.temporal_gap_avg + (EXCLUDED.temporal_gap_avg - e.temporal_gap_avg) / (e.observation_count + 1),
        observation_count = e.observation_count + 1,
        last_observed = greatest(e.last_observed, EXCLUDED.last_observed)
    RETURNING e.causal_strength INTO v_strength;
    RETURN v_strength;
END
$$;

COMMENT ON FUNCTION procedural.observe_causal_edge(p_source_reflex_id uuid, p_target_reflex_id uuid, p_gap_seconds double precision, p_observed_strength double precision, p_at timestamp with time zone) IS 'Observes that the source reflex led to the target after p_gap_seconds. A new edge starts at the observed strength; an existing one moves towards it by procedural.edge_learning_rate (strength += rate x (observed - strength)), temporal_gap_avg is the running mean of the gaps, observation_count counts, last_observed advances. Returns the new strength.';

CREATE FUNCTION procedural.prune_reflexes(p_as_of timestamp with time zone DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_n bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.procedural.prune')) THEN
        RAISE NOTICE 'prune_reflexes: another run holds the lock';
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM procedural.maintenance_runs WHERE job = 'prune' AND run_date = p_as_of::date) THEN
        RETURN 0;
    END IF;
    DELETE FROM procedural.procedural_memory
    WHERE coalesce(last_accessed, created_at) < p_as_of - (ops.setting('procedural.prune_unused') #>> '{}')::interval
      AND success_count < (ops.setting('procedural.prune_min_successes'))::int;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    INSERT INTO procedural.maintenance_runs (job, run_date, rows) VALUES ('prune', p_as_of::date, v_n);
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION procedural.prune_reflexes(p_as_of timestamp with time zone) IS 'Self-pruning (spec 004 section 10.5): deletes reflexes not accessed within procedural.prune_unused (30 days) before p_as_of that have fewer than procedural.prune_min_successes successes. Once per day of p_as_of (procedural.maintenance_runs), under an advisory lock; returns the number deleted.';

CREATE FUNCTION procedural.record_outcome(p_reflex_id uuid, p_success boolean, p_at timestamp with time zone DEFAULT now()) RETURNS double precision
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_rate double precision;
BEGIN
    IF p_success IS NULL THEN
        RAISE EXCEPTION 'p_success: must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE procedural.procedural_memory SET
        success_count = success_count + p_success::int,
        failure_count = failure_count + (NOT p_success)::int,
        total_count = total_count + 1,
        last_accessed = greatest(last_accessed, p_at),
        last_success = CASE WHEN p_success THEN greatest(last_success, p_at) ELSE last_success END
    WHERE reflex_id = p_reflex_id
    RETURNING success_rate INTO v_rate;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_reflex_id: unknown reflex %', p_reflex_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN v_rate;
END
$$;

COMMENT ON FUNCTION procedural.record_outcome(p_reflex_id uuid, p_success boolean, p_at timestamp with time zone) IS 'Records one use of a reflex: success or failure counts, total_count, last_accessed and (on success) last_success. Returns the new success_rate.';

CREATE FUNCTION psi._codec_install() RETURNS void
    LANGUAGE plpython3u
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
def load():
    digest = plpy.execute(GD['psi_codec_plan'])[0]['v']
    codec = GD.get('psi_codec')
    if codec is None or codec['_digest'] != digest:
        codec = {'__name__': 'psi_codec'}
        exec(compile(plpy.execute("SELECT psi._codec_source() AS s")[0]['s'], 'psi_codec', 'exec'), codec)
        codec['_digest'] = digest
        GD['psi_codec'] = codec
    return codec

GD['psi_codec_plan'] = plpy.prepare("SELECT psi._codec_version() AS v")
GD['psi_codec_load'] = load
$$;

COMMENT ON FUNCTION psi._codec_install() IS 'Puts the codec loader in PL/Python''s session-wide GD: GD[''psi_codec_load'']() returns the codec module, exec''d from psi._codec_source() once per session and again when psi._codec_version() changes.';

CREATE FUNCTION psi._codec_source() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    RETURN '"""ψ-frame codec: the one source of the decoder that Python and PL/Python both run.

This module is embedded verbatim in db/functions/psi_codec.sql (regenerate with
`python -m realtime.codec_sql`; a test checks the two agree), so it may import only
what Debian''s python3 has for PL/Python: the standard library, numpy >= 1.24,
zstandard (python3-zstandard) and crc32c (python3-crc32c).

A blob holds a *run* of F frames of one band of one utterance (F = 1 is the spec''s
one-frame row). Every blob starts with its codec version byte, so old rows stay
readable when the codec improves.

Codec v0 -- the seed''s pipeline, kept for comparison: phase -> int16 (32767/2π),
amplitude -> int16 (natural log, 2048 steps per neper), delta along the oscillator
index, zstd level 22.

Codec v1 -- quantisation from the error budget, packing, prediction, zstd level 3:
  * phase: a uniform grid of PHASE_LEVELS = 1625 steps of 2π/1625, whose mean absolute
    error on uniformly spread phases is step/4 = 0.967e-3 rad (< the 1e-3 budget);
    1625**3 < 2**32, so three phases pack into 32 bits (10.67 bits each). Per run the
    encoder keeps the smallest of: intra (packed), first-order prediction with a per-run
    advance a_i (the network''s ω_i·dt on the grid, stored as int16) and second-order
    prediction (velocity from the two previous frames); predicted residuals are
    zigzagged, split into byte planes and zstd-compressed.
  * amplitude: a mini-float grid (AMP_MANTISSA_BITS = 5 bits of mantissa, relative error
    <= 1/64), exact in float32, so dequantisation needs no exp() and is bit-identical on
    every numpy; index 0 is silence (below 2**AMP_FLOOR_EXP). The index is predicted
    along the oscillator index or along time (the smaller wins), zigzagged, byte-planed
    and zstd-compressed.
  * vector frames (meso state, macro emotion/tempo): float32, lossless.
Decoding reproduces the encoder''s own reconstruction bit for bit.
"""
import struct
import threading
import unicodedata

import numpy as np
import zstandard

try:
    from crc32c import crc32c as _crc32c
except ImportError:  # pragma: no cover - crc32c is a declared dependency
    _crc32c = None

TWO_PI = 6.283185307179586
PHASE_LEVELS = 1625            # 1625**3 < 2**32: three phases per uint32
PHASE_STEP = TWO_PI / PHASE_LEVELS
AMP_MANTISSA_BITS = 5
AMP_FLOOR_EXP = -20            # amplitudes below 2**-20 (about -120 dB re 1.0) are silence
ZSTD_LEVEL = 3

KIND_PHASE_AMP = 0             # micro frames: phases and amplitudes, N oscillators
KIND_VECTOR = 1                # meso / macro frames: one float32 vector of N values

PH_INTRA, PH_ADVANCE, PH_SECOND_ORDER = 0, 1, 2
AMP_FREQ, AMP_TIME, AMP_TIME_FREQ = 0, 1, 2

# version, kind, N, F, phase levels, mantissa bits, floor exponent, phase mode, amp mode, phase bytes
_V1_HEADER = struct.Struct("<BBHHHBbBBI")
_V0_HEADER = struct.Struct("<BBHH")

class CodecError(ValueError):
    """A blob or frame the codec refuses; the message names the field and the rule."""

def crc32c(data):
    """CRC-32C (Castagnoli) of bytes, as an unsigned 32-bit int."""
    return _crc32c(bytes(data)) & 0xFFFFFFFF

# ---------------------------------------------------------------- SipHash-2-4 (128-bit)

_M64 = 0xFFFFFFFFFFFFFFFF

def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _M64

def _sipround(v0, v1, v2, v3):
    v0 = (v0 + v1) & _M64; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M64; v3 = _rotl(v3, 16); v3 ^= v2
    v0 = (v0 + v3) & _M64; v3 = _rotl(v3, 21); v3 ^= v0
    v2 = (v2 + v1) & _M64; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    return v0, v1, v2, v3

def siphash24_128(key, msg):
    """SipHash-2-4 with 128-bit output (Aumasson & Bernstein), 16-byte key."""
    if len(key) != 16:
        raise CodecError("key: SipHash needs 16 bytes")
    k0, k1 = struct.unpack("<QQ", key)
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D ^ 0xEE
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    msg = bytes(msg)
    tail = len(msg) % 8
    for i in range(0, len(msg) - tail, 8):
        m = struct.unpack_from("<Q", msg, i)[0]
        v3 ^= m
        v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
        v0 ^= m
    b = (len(msg) & 0xFF) << 56
    for j, c in enumerate(msg[len(msg) - tail:]):
        b |= c << (8 * j)
    v3 ^= b
    v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
    v0 ^= b
    v2 ^= 0xEE
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    out1 = v0 ^ v1 ^ v2 ^ v3
    v1 ^= 0xDD
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    out2 = v0 ^ v1 ^ v2 ^ v3
    return struct.pack("<QQ", out1, out2)

def canonical_text(text):
    """Unicode NFC, whitespace runs collapsed to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())

def utterance_hash(entry_id_bytes, text):
    """uttr_hash: SipHash-2-4-128 of the canonical utterance text, keyed by the 16 bytes of
    the day_table turn it voices (so the same words said in two turns are two utterances)."""
    return siphash24_128(bytes(entry_id_bytes), canonical_text(text).encode("utf-8"))

# ---------------------------------------------------------------- shared pieces

def _zigzag(r):
    r = r.astype(np.int64)
    return ((r << 1) ^ (r >> 63)).astype(np.uint32)

def _unzigzag(z):
    z = z.astype(np.int64)
    return (z >> 1) ^ -(z & 1)

def _planes(z):
    """Zigzagged residuals (< 2**24) as byte planes, low byte first: entropy coding sees
    the mostly-zero high planes as long runs."""
    if z.size and int(z.max()) >= (1 << 24):
        raise CodecError("residual: too large to code")
    z = z.ravel()
    return b"".join(((z >> s) & 0xFF).astype(np.uint8).tobytes() for s in (0, 8, 16))

def _unplanes(buf, count):
    a = np.frombuffer(buf, dtype=np.uint8)
    if a.size != 3 * count:
        raise CodecError("psi_blob: residual planes have the wrong length")
    a = a.reshape(3, count).astype(np.uint32)
    return a[0] | (a[1] << 8) | (a[2] << 16)

_zstd = threading.local()      # one compressor per thread (it is not thread-safe)

def _zc(data):
    c = getattr(_zstd, "c", None)
    if c is None:
        c = _zstd.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c.compress(data)

def _zd(data, size):
    """Decompress one zstd section of exactly `size` bytes that fills `data` exactly: a
    declared size that differs, a truncated stream or bytes after its end are corrupt."""
    data = bytes(data)
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as e:
        raise CodecError(f"psi_blob: zstd frame header is corrupt ({e})")
    if declared != size:
        raise CodecError(f"psi_blob: compressed section declares {declared} bytes, expected {size}")
    d = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = d.decompress(data)
    except zstandard.ZstdError as e:
        raise CodecError(f"psi_blob: zstd stream is corrupt ({e})")
    if not d.eof:
        raise CodecError("psi_blob: zstd stream is truncated")
    if d.unused_data:
        raise CodecError(f"psi_blob: {len(d.unused_data)} bytes after the end of the compressed section")
    if len(out) != size:
        raise CodecError("psi_blob: decompressed section has the wrong length")
    return out

def _pack_phases(q):
    """Three phase indices (< 1625) per little-endian uint32; a trailing 1 or 2 in one."""
    q = q.ravel().astype(np.uint64)
    n3 = q.size // 3 * 3
    L = PHASE_LEVELS
    words = (q[0:n3:3] + L * q[1:n3:3] + L * L * q[2:n3:3]).astype("<u4").tobytes()
    rest = q[n3:]
    if rest.size:
        words += struct.pack("<I", int(rest[0]) + (L * int(rest[1]) if rest.size > 1 else 0))
    return words

def _unpack_phases(buf, count):
    L = PHASE_LEVELS
    n3 = count // 3 * 3
    nwords = -(-count // 3)
    if len(buf) != 4 * nwords:
        raise CodecError("psi_blob: packed phase section has the wrong length")
    w = np.frombuffer(buf, dtype="<u4").astype(np.int64)
    out = np.empty(count, dtype=np.int64)
    full = w[: n3 // 3]
    out[0:n3:3] = full % L
    out[1:n3:3] = (full // L) % L
    out[2:n3:3] = full // (L * L)
    if count > n3:
        out[n3] = w[-1] % L
        if count - n3 > 1:
            out[n3 + 1] = (w[-1] // L) % L
    if out.size and (out.max() >= L or out.min() < 0):
        raise CodecError("psi_blob: phase index out of range")
    return out

def quantize_phases(phases):
    p = np.asarray(phases, dtype=np.float64)
    return np.rint(np.mod(p, TWO_PI) / PHASE_STEP).astype(np.int64) % PHASE_LEVELS

def dequantize_phases(q):
    return (np.asarray(q, dtype=np.int64) * PHASE_STEP).astype(np.float32)

def quantize_amplitudes(amps):
    a = np.asarray(amps, dtype=np.float64)
    m, e = np.frexp(a)                      # a = m * 2**e, m in [0.5, 1)
    mq = np.rint((2.0 * m - 1.0) * (1 << AMP_MANTISSA_BITS)).astype(np.int64)
    e = e.astype(np.int64) - 1              # a = (1 + mq/2**M) * 2**e
    carry = mq == (1 << AMP_MANTISSA_BITS)
    mq[carry] = 0
    e[carry] += 1
    idx = 1 + ((e - AMP_FLOOR_EXP) << AMP_MANTISSA_BITS) + mq
    floor = 2.0 ** AMP_FLOOR_EXP
    idx = np.where(a >= floor, idx, np.where(a >= floor / 2, 1, 0))
    return idx

def dequantize_amplitudes(idx):
    idx = np.asarray(idx, dtype=np.int64)
    k = np.maximum(idx - 1, 0)
    mant = 1.0 + (k & ((1 << AMP_MANTISSA_BITS) - 1)) / float(1 << AMP_MANTISSA_BITS)
    out = np.ldexp(mant, (k >> AMP_MANTISSA_BITS) + AMP_FLOOR_EXP)
    return np.where(idx > 0, out, 0.0).astype(np.float32)

def _check_frames(phases, amps):
    phases = np.asarray(phases, dtype=np.float32)
    amps = np.asarray(amps, dtype=np.float32)
    if phases.ndim == 1:
        phases, amps = phases[None], amps[None]
    if phases.ndim != 2 or phases.shape != amps.shape:
        raise CodecError(f"frames: phases {phases.shape} and amplitudes {amps.shape} must both be F x N")
    if not 1 <= phases.shape[0] <= 65535 or not 1 <= phases.shape[1] <= 65535:
        raise CodecError(f"frames: F and N must be between 1 and 65535, got {phases.shape}")
    if not (np.isfinite(phases).all() and np.isfinite(amps).all()):
        raise CodecError("frames: phases and amplitudes must be finite (no NaN or Inf)")
    if (amps < 0).any():
        raise CodecError("amplitudes: must be >= 0")
    return phases, amps

# ---------------------------------------------------------------- codec v1

def _phase_section(q):
    """The smallest phase coding of a run of phase indices (F x N): (mode, bytes)."""
    F, N = q.shape
    L = PHASE_LEVELS
    best = (PH_INTRA, _pack_phases(q))
    if F >= 2:
        half = L // 2
        d = (q[1:] - q[:-1]) % L
        adv = np.median(np.where(d >= half, d - L, d), axis=0).astype(np.int64)  # ω_i·dt on the grid
        r = (q[1:] - q[:-1] - adv) % L
        r = np.where(r >= half, r - L, r)
        body = adv.astype("<i2").tobytes() + _pack_phases(q[0]) + _planes(_zigzag(r))
        cand = (PH_ADVANCE, struct.pack("<I", len(body)) + _zc(body))
        if len(cand[1]) < len(best[1]):
            best = cand
        pred = np.empty_like(q[1:])
        pred[0] = q[0]
        pred[1:] = 2 * q[1:-1] - q[:-2]
        r = (q[1:] - pred) % L
        r = np.where(r >= half, r - L, r)
        body = _pack_phases(q[0]) + _planes(_zigzag(r))
        cand = (PH_SECOND_ORDER, struct.pack("<I", len(body)) + _zc(body))
        if len(cand[1]) < len(best[1]):
            best = cand
    return best

def _amp_section(idx):
    F, N = idx.shape
    r = idx.copy()
    r[:, 1:] = idx[:, 1:] - idx[:, :-1]
    body = _planes(_zigzag(r))
    best = (AMP_FREQ, struct.pack("<I", len(body)) + _zc(body))
    if F >= 2:
        r = idx.copy()
        r[1:] = idx[1:] - idx[:-1]
        r[0, 1:] = idx[0, 1:] - idx[0, :-1]
        body = _planes(_zigzag(r))
        cand = (AMP_TIME, struct.pack("<I", len(body)) + _zc(body))
        if len(cand[1]) < len(best[1]):
            best = cand
        r2 = r.copy()                      # a gain change moves every bin alike: delta it away
        r2[1:, 1:] = r[1:, 1:] - r[1:, :-1]
        body = _planes(_zigzag(r2))
        cand = (AMP_TIME_FREQ, struct.pack("<I", len(body)) + _zc(body))
        if len(cand[1]) < len(best[1]):
            best = cand
    return best

def encode_v1(phases, amps, reconstruct=True):
    """Encode a run of F micro frames (F x N phases and amplitudes) with codec v1.
    Returns (blob, phases, amplitudes): the blob and the encoder''s own reconstruction,
    which decode(blob) reproduces bit for bit (None, None with reconstruct=False, for
    callers that only store the blob)."""
    phases, amps = _check_frames(phases, amps)
    F, N = phases.shape
    q = quantize_phases(phases)
    idx = quantize_amplitudes(amps)
    pmode, psec = _phase_section(q)
    amode, asec = _amp_section(idx)
    head = _V1_HEADER.pack(1, KIND_PHASE_AMP, N, F, PHASE_LEVELS, AMP_MANTISSA_BITS, AMP_FLOOR_EXP,
                           pmode, amode, len(psec))
    if not reconstruct:
        return head + psec + asec, None, None
    return head + psec + asec, dequantize_phases(q), dequantize_amplitudes(idx)

def encode_vector(vectors, version=1):
    """Meso / macro frames: F x N float32 values, lossless."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or not np.isfinite(v).all():
        raise CodecError("vectors: must be a finite F x N array")
    F, N = v.shape
    head = _V1_HEADER.pack(version, KIND_VECTOR, N, F, 0, 0, 0, 0, 0, 4 * F * N)
    return head + v.astype("<f4").tobytes(), v

def _decode_v1(blob):
    if len(blob) < _V1_HEADER.size:
        raise CodecError("psi_blob: shorter than the v1 header")
    ver, kind, N, F, L, M, fe, pmode, amode, plen = _V1_HEADER.unpack_from(blob, 0)
    off = _V1_HEADER.size
    if kind == KIND_VECTOR:
        if len(blob) != off + 4 * F * N or plen != 4 * F * N:
            raise CodecError("psi_blob: vector frame has the wrong length")
        return None, None, np.frombuffer(blob, dtype="<f4", offset=off).reshape(F, N).astype(np.float32)
    if kind != KIND_PHASE_AMP:
        raise CodecError(f"psi_blob: unknown frame kind {kind}")
    if (L, M, fe) != (PHASE_LEVELS, AMP_MANTISSA_BITS, AMP_FLOOR_EXP):
        raise CodecError(f"psi_blob: v1 grid ({L}, {M}, {fe}) is not this decoder''s")
    if len(blob) < off + plen:
        raise CodecError("psi_blob: truncated phase section")
    psec, asec = blob[off:off + plen], blob[off + plen:]
    Lh = L // 2
    nq0 = 4 * (-(-N // 3))
    if pmode == PH_INTRA:
        q = _unpack_phases(psec, F * N).reshape(F, N)
    elif pmode in (PH_ADVANCE, PH_SECOND_ORDER):
        (size,) = struct.unpack_from("<I", psec, 0)
        body = _zd(psec[4:], size)
        pos = 0
        if pmode == PH_ADVANCE:
            adv = np.frombuffer(body, dtype="<i2", count=N).astype(np.int64)
            pos = 2 * N
        q = np.empty((F, N), dtype=np.int64)
        q[0] = _unpack_phases(body[pos:pos + nq0], N)
        r = _unzigzag(_unplanes(body[pos + nq0:], (F - 1) * N)).reshape(F - 1, N)
        for t in range(1, F):
            if pmode == PH_ADVANCE:
                pred = q[t - 1] + adv
            else:
                pred = q[0] if t == 1 else 2 * q[t - 1] - q[t - 2]
            q[t] = (pred + r[t - 1]) % L
        if q.min() < 0 or q.max() >= L:
            raise CodecError("psi_blob: phase index out of range")
    else:
        raise CodecError(f"psi_blob: unknown phase mode {pmode}")
    if len(asec) < 4:
        raise CodecError("psi_blob: truncated amplitude section")
    (size,) = struct.unpack_from("<I", asec, 0)
    r = _unzigzag(_unplanes(_zd(asec[4:], size), F * N)).reshape(F, N)
    if amode == AMP_FREQ:
        idx = np.cumsum(r, axis=1)
    elif amode in (AMP_TIME, AMP_TIME_FREQ):
        if amode == AMP_TIME_FREQ:
            r[1:] = np.cumsum(r[1:], axis=1)
        r[0] = np.cumsum(r[0])
        idx = np.cumsum(r, axis=0)
    else:
        raise CodecError(f"psi_blob: unknown amplitude mode {amode}")
    if idx.min() < 0:
        raise CodecError("psi_blob: amplitude index out of range")
    return dequantize_phases(q), dequantize_amplitudes(idx), None

# ---------------------------------------------------------------- codec v0 (the seed''s)

V0_PHASE_SCALE = 32767.0 / TWO_PI
V0_LOGAMP_SCALE = 2048.0
V0_LOGAMP_MIN = -15.99

def encode_v0(phases, amps, level=22, reconstruct=True):
    """The seed''s pipeline: float32 -> int16 (phase mod 2π; amplitude log-scaled), delta
    along the oscillator index, zstd --ultra -22. Returns (blob, phases, amplitudes), the
    last two None with reconstruct=False."""
    phases, amps = _check_frames(phases, amps)
    F, N = phases.shape
    p16 = np.rint(np.mod(phases.astype(np.float64), TWO_PI) * V0_PHASE_SCALE).astype(np.int64)
    la = np.log(np.maximum(amps.astype(np.float64), 1e-30))
    a16 = np.rint(np.clip(la, V0_LOGAMP_MIN, 15.99) * V0_LOGAMP_SCALE).astype(np.int64)
    a16 = np.where(amps > 0, a16, -32768)
    both = np.concatenate([p16, a16], axis=1).astype(np.int16)
    delta = both.copy()
    delta[:, 1:] = both[:, 1:] - both[:, :-1]          # wraps in int16, as the seed''s would
    body = zstandard.ZstdCompressor(level=level).compress(delta.astype("<i2").tobytes())
    blob = _V0_HEADER.pack(0, KIND_PHASE_AMP, N, F) + body
    if not reconstruct:
        return blob, None, None
    return (blob,) + _v0_values(both, N)

def _v0_values(both, N):
    both = both.astype(np.int64)
    ph = (both[:, :N] / V0_PHASE_SCALE).astype(np.float32)
    a = both[:, N:]
    amp = np.where(a == -32768, 0.0, np.exp(a / V0_LOGAMP_SCALE)).astype(np.float32)
    return ph, amp

def _decode_v0(blob):
    if len(blob) < _V0_HEADER.size:
        raise CodecError("psi_blob: shorter than the v0 header")
    _, kind, N, F = _V0_HEADER.unpack_from(blob, 0)
    if kind != KIND_PHASE_AMP:
        raise CodecError(f"psi_blob: v0 holds only phase/amplitude frames, got kind {kind}")
    raw = _zd(blob[_V0_HEADER.size:], F * 2 * N * 2)
    delta = np.frombuffer(raw, dtype="<i2").reshape(F, 2 * N)
    both = np.cumsum(delta, axis=1, dtype=np.int16)     # undoes the int16-wrapping delta
    ph, amp = _v0_values(both, N)
    return ph, amp, None

# ---------------------------------------------------------------- entry points

def blob_info(blob):
    """(version, kind, N, F) from a blob''s header, checked."""
    blob = bytes(blob)
    if not blob:
        raise CodecError("psi_blob: empty")
    if blob[0] == 0 and len(blob) >= _V0_HEADER.size:
        return _V0_HEADER.unpack_from(blob, 0)
    if blob[0] == 1 and len(blob) >= _V1_HEADER.size:
        return _V1_HEADER.unpack_from(blob, 0)[:4]
    raise CodecError(f"psi_blob: unknown codec version {blob[0]} or truncated header")

def decode(blob, crc=None):
    """Decode a blob of any known codec version into (phases, amplitudes, vectors), each
    an F x N float32 array or None: phase/amplitude runs fill the first two, vector runs
    (meso/macro) the third. With `crc` (the row''s integrity_crc) the blob''s CRC-32C is
    checked first: a damaged blob can still parse, so every decode from storage passes it."""
    blob = bytes(blob)
    if crc is not None and crc32c(blob) != crc:
        raise CodecError(f"psi_blob: CRC-32C is {crc32c(blob)}, the row''s integrity_crc is {crc}: corrupt")
    version = blob_info(blob)[0]
    return _decode_v0(blob) if version == 0 else _decode_v1(blob)

def encode(phases, amps, version=1, reconstruct=True):
    """Encode a run of micro frames with codec `version` (0 or 1); see encode_v0/encode_v1."""
    if version == 0:
        return encode_v0(phases, amps, reconstruct=reconstruct)
    if version == 1:
        return encode_v1(phases, amps, reconstruct=reconstruct)
    raise CodecError(f"version: codec {version} is unknown (known: 0, 1)")
'::text;

COMMENT ON FUNCTION psi._codec_source() IS 'The ψ-frame codec module (realtime/codec_core.py, versions 0 and 1, SipHash-2-4-128, CRC-32C) that PL/Python functions exec: the same decoder the realtime process and replay run.';

CREATE FUNCTION psi._codec_version() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    RETURN '5633796daff4ba59'::text;

COMMENT ON FUNCTION psi._codec_version() IS 'Digest of the codec source psi._codec_source() returns; PL/Python functions reload their cached codec when it changes.';

CREATE FUNCTION psi._psi_frames_check() RETURNS trigger
    LANGUAGE plpython3u
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()

import datetime
new = TD['new']
blob = new['psi_blob']
uttr = new['uttr_hash'].hex() if new['uttr_hash'] is not None else 'NULL'
ts = new['ts_epoch_ms']
where = 'utterance %s band %s at ts_epoch_ms %s (%s)' % (
    uttr, new['band'], ts,
    datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc).isoformat(timespec='milliseconds')
    if ts is not None and -62135596800000 < ts < 253402300799000 else 'out of range')
if blob is None or new['integrity_crc'] is None:
    plpy.error('psi_blob, integrity_crc: must not be NULL for %s' % where, sqlstate='23502')
crc = codec['crc32c'](blob)
if crc != new['integrity_crc']:
    plpy.error('psi_blob: corrupt frame refused for %s: integrity_crc is %d but CRC-32C of the blob is %d'
               % (where, new['integrity_crc'], crc), sqlstate='XX001')
try:
    version, kind, n, frames = codec['blob_info'](blob)
except codec['CodecError'] as e:
    plpy.error('psi_blob: %s for %s' % (e, where), sqlstate='22P03')
if frames != new['frame_count']:
    plpy.error('frame_count: row says %s but the blob holds %d frames for %s' % (new['frame_count'], frames, where),
               sqlstate='23514')
return None
$$;

COMMENT ON FUNCTION psi._psi_frames_check() IS 'BEFORE INSERT/UPDATE trigger on psi.psi_frames: refuses a row whose integrity_crc is not the CRC-32C of psi_blob (data_corrupted, naming the utterance, band and time), whose blob header is unreadable or of an unknown codec version, or whose frame_count differs from the blob''s.';

CREATE FUNCTION psi._utterances_check() RETURNS trigger
    LANGUAGE plpython3u
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()

import uuid
new = TD['new']
if new['entry_id'] is None:
    # An utterance whose turn is not here: retention deleted it (ON DELETE SET NULL leaves
    # such rows), or a .psiarc import brought the utterance into a database that never held
    # the turn. There is no text to check the hash against; the realtime writer always names
    # its turn, so its rows are always checked.
    return None
plan = GD.get('psi_turn_plan')
if plan is None:
    plan = GD['psi_turn_plan'] = plpy.prepare(
        "SELECT content, user_id FROM memory.day_table WHERE entry_id = $1", ["uuid"])
rows = plpy.execute(plan, [new['entry_id']])
if not rows:
    plpy.error('entry_id: unknown turn %s' % new['entry_id'], sqlstate='23503')
if str(rows[0]['user_id']) != str(new['user_id']):
    plpy.error('user_id: turn %s belongs to another user' % new['entry_id'], sqlstate='42501')
want = codec['utterance_hash'](uuid.UUID(new['entry_id']).bytes, rows[0]['content'])
if new['uttr_hash'] != want:
    plpy.error('uttr_hash: %s is not SipHash-2-4-128 of turn %s''s canonical text (expected %s)'
               % (new['uttr_hash'].hex() if new['uttr_hash'] else 'NULL', new['entry_id'], want.hex()),
               sqlstate='23514')
return None
$_$;

COMMENT ON FUNCTION psi._utterances_check() IS 'BEFORE INSERT trigger on psi.utterances: a named turn must exist and belong to the utterance''s user, and uttr_hash must be SipHash-2-4-128 of the turn''s canonical text keyed by its entry_id. An utterance without entry_id (its turn retired by retention, or imported from a .psiarc into a database without the turn) has nothing to check against and is accepted.';

CREATE FUNCTION psi.decay_centroids(p_now timestamp with time zone DEFAULT now()) RETURNS TABLE(faded bigint, pruned bigint)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    v_now_ms bigint := (extract(epoch FROM p_now) * 1000)::bigint;
    v_keep bigint := (ops.setting('psi.centroid_keep_ms'))::bigint;
    v_half double precision := (ops.setting('psi.centroid_half_life_ms'))::float8;
    v_min double precision := (ops.setting('psi.centroid_min_weight'))::float8;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.psi.decay_centroids')) THEN
        faded := 0; pruned := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_half <= 0 OR v_min <= 0 OR v_min > 1 OR v_keep < 0 THEN
        RAISE EXCEPTION 'psi.centroid_*: keep_ms >= 0, half_life_ms > 0 and 0 < min_weight <= 1 required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- weight is a function of age alone, so running twice (or late) gives the same rows
    -- weight < min  <=>  half-lives elapsed > log2(1 / min): compared on the exponent, because
    -- 0.5 ^ (half-lives) underflows (an error, not 0) for a centroid left years behind
    DELETE FROM psi.band_centroids c
    WHERE c.ts_epoch_ms < v_now_ms - v_keep
      AND (v_now_ms - v_keep - c.ts_epoch_ms) / v_half > log(2, (1 / v_min)::numeric)::float8;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    UPDATE psi.band_centroids c
    SET weight = power(0.5, (v_now_ms - v_keep - c.ts_epoch_ms) / v_half)
    WHERE c.ts_epoch_ms < v_now_ms - v_keep
      AND c.weight IS DISTINCT FROM power(0.5, (v_now_ms - v_keep - c.ts_epoch_ms) / v_half)::real;
    GET DIAGNOSTICS faded = ROW_COUNT;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION psi.decay_centroids(p_now timestamp with time zone) IS 'Fades band centroids older than psi.centroid_keep_ms: weight = 0.5 ^ ((age - keep) / psi.centroid_half_life_ms), and deletes those below psi.centroid_min_weight. Weight depends only on age at p_now, so the job is idempotent; advisory-locked; pg_cron runs it every minute. Returns rows faded and pruned.';

CREATE FUNCTION psi.decode_frame(p_blob bytea, p_crc bigint) RETURNS TABLE(frame_no integer, phases real[], amplitudes real[], state real[])
    LANGUAGE plpython3u IMMUTABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()

if p_blob is None or p_crc is None:
    plpy.error('p_blob, p_crc: must not be NULL (every decode checks the CRC-32C)', sqlstate='22004')
try:
    ph, amp, vec = codec['decode'](p_blob, p_crc)
except codec['CodecError'] as e:
    plpy.error(str(e), sqlstate='22P03')
if vec is not None:
    return [(i, None, None, v.tolist()) for i, v in enumerate(vec)]
return [(i, ph[i].tolist(), amp[i].tolist(), None) for i in range(ph.shape[0])]
$$;

COMMENT ON FUNCTION psi.decode_frame(p_blob bytea, p_crc bigint) IS 'Decodes one psi_blob (any codec version) into its frames: frame_no within the run, and phases and amplitudes (micro) or the state vector (meso: 32-d, macro: tempo and levels). p_crc is the row''s integrity_crc: a blob whose CRC-32C differs, whose header or sections are malformed, or that holds bytes beyond its last section raises invalid_binary_representation naming the rule.';

CREATE FUNCTION psi.frames(p_uttr_hash bytea, p_band integer DEFAULT 0, p_from_ms bigint DEFAULT NULL::bigint, p_to_ms bigint DEFAULT NULL::bigint) RETURNS TABLE(ts_epoch_ms bigint, duration_ms integer, phases real[], amplitudes real[], state real[], emo_vec real[])
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT f.ts_epoch_ms + d.frame_no * f.duration_ms, f.duration_ms::int, d.phases, d.amplitudes, d.state, f.emo_vec
    FROM psi.psi_frames f
    CROSS JOIN LATERAL psi.decode_frame(f.psi_blob, f.integrity_crc) d
    WHERE f.uttr_hash = p_uttr_hash AND f.band = p_band
      -- a run spans at most 10 s (psi_frames_run_span_bounded): bounds the index scan on both sides
      AND (p_to_ms IS NULL OR f.ts_epoch_ms <= p_to_ms)
      AND (p_from_ms IS NULL OR f.ts_epoch_ms > p_from_ms - 10000)
      AND (p_from_ms IS NULL OR f.ts_epoch_ms + (d.frame_no + 1) * f.duration_ms > p_from_ms)
      AND (p_to_ms IS NULL OR f.ts_epoch_ms + d.frame_no * f.duration_ms <= p_to_ms)
    ORDER BY 1
$$;

COMMENT ON FUNCTION psi.frames(p_uttr_hash bytea, p_band integer, p_from_ms bigint, p_to_ms bigint) IS 'The frames of one utterance and band (0 micro, 1 meso, 2 macro) that overlap [p_from_ms, p_to_ms] (epoch ms; NULL = open), one row per frame with its own start time, decoded. Reads only the runs that can overlap the range, through the (uttr_hash, band, ts_epoch_ms) index.';

CREATE FUNCTION psi.verify(p_uttr_hash bytea) RETURNS TABLE(band smallint, ts_epoch_ms bigint, frame_count integer, stored_crc bigint, computed_crc bigint, ok boolean, problem text)
    LANGUAGE plpython3u STABLE
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $_$
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()

plan = plpy.prepare("SELECT band, ts_epoch_ms, frame_count, integrity_crc, psi_blob FROM psi.psi_frames "
                    "WHERE uttr_hash = $1 ORDER BY band, ts_epoch_ms", ["bytea"])
out = []
for r in plpy.cursor(plan, [p_uttr_hash]):
    blob = r['psi_blob']
    crc = codec['crc32c'](blob)
    problem = None
    if crc != r['integrity_crc']:
        problem = 'integrity_crc: stored %d, computed %d' % (r['integrity_crc'], crc)
    else:
        try:
            ph, amp, vec = codec['decode'](blob)
            n = (vec if vec is not None else ph).shape[0]
            if n != r['frame_count']:
                problem = 'frame_count: row says %d, blob holds %d' % (r['frame_count'], n)
        except codec['CodecError'] as e:
            problem = str(e)
    out.append((r['band'], r['ts_epoch_ms'], r['frame_count'], r['integrity_crc'], crc, problem is None, problem))
return out
$_$;

COMMENT ON FUNCTION psi.verify(p_uttr_hash bytea) IS 'Re-checks every psi_frames row of one utterance: recomputes CRC-32C of psi_blob against integrity_crc and decodes the blob (frame count, codec rules). One row per stored run; ok is false with the problem named where a check fails. Sees only rows row-level security lets the caller see.';

CREATE TABLE memory.flux_arcs (
    arc_id uuid DEFAULT gen_random_uuid() NOT NULL,
    session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    cycle_date date NOT NULL,
    start_turn integer NOT NULL,
    peak_turn integer NOT NULL,
    end_turn integer NOT NULL,
    resolved boolean NOT NULL,
    open_at_session_end boolean NOT NULL,
    baseline_perplexity double precision NOT NULL,
    baseline_sigma double precision NOT NULL,
    peak_perplexity double precision NOT NULL,
    final_perplexity double precision NOT NULL,
    flux_reversal_quality double precision NOT NULL,
    arc_duration_turns integer NOT NULL,
    start_time timestamp with time zone NOT NULL,
    end_time timestamp with time zone NOT NULL,
    open_arc_embedding public.vector(768),
    continued_by_arc_id uuid,
    CONSTRAINT flux_arcs_turns_ordered CHECK (((start_turn <= peak_turn) AND (peak_turn <= end_turn)))
);

COMMENT ON TABLE memory.flux_arcs IS 'Flux arcs found by Night Cycle stage 1: spike to resolution (or to session end, unresolved), with the spec''s metrics';

CREATE TABLE memory.users (
    user_id uuid DEFAULT gen_random_uuid() NOT NULL,
    external_ref text,
    display_name text,
    tier text DEFAULT 'normal'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    realm name NOT NULL,
    cycles integer DEFAULT 0 NOT NULL,
    last_cycle_date date,
    CONSTRAINT users_cycles_nonnegative CHECK ((cycles >= 0)),
    CONSTRAINT users_tier_known CHECK ((tier = ANY (ARRAY['normal'::text, 'meso'::text, 'elder'::text])))
);

COMMENT ON TABLE memory.users IS 'People the agent talks to; tier sets how long the Hippocampus keeps their memories';

COMMENT ON COLUMN memory.users.realm IS 'the role whose namespace external_ref is unique in: the login (or group role) that created the user';

COMMENT ON COLUMN memory.users.cycles IS 'Night Cycles run for the user: the cycle dates counted (retention counts in these)';

COMMENT ON COLUMN memory.users.last_cycle_date IS 'the latest cycle date counted in cycles';

CREATE VIEW bi.arcs_daily AS
 SELECT a.cycle_date,
    u.tier,
    count(*) AS arcs,
    count(*) FILTER (WHERE a.resolved) AS resolved_arcs,
    count(*) FILTER (WHERE a.open_at_session_end) AS open_at_session_end,
    count(*) FILTER (WHERE (a.continued_by_arc_id IS NOT NULL)) AS continued,
    round(avg(a.arc_duration_turns), 2) AS mean_duration_turns,
    round((avg(a.flux_reversal_quality))::numeric, 3) AS mean_flux_reversal_quality
   FROM (memory.flux_arcs a
     JOIN memory.users u USING (user_id))
  GROUP BY a.cycle_date, u.tier;

COMMENT ON VIEW bi.arcs_daily IS 'Flux arcs per cycle date and tier: resolved, open at session end, continued, duration, reversal quality.';

CREATE TABLE memory.holographic_blocks (
    block_id uuid DEFAULT gen_random_uuid() NOT NULL,
    prose jsonb NOT NULL,
    native_embedding public.vector(4096),
    universal_embedding public.vector(768),
    flux_metrics jsonb NOT NULL,
    salience_scores jsonb NOT NULL,
    coherence_gain double precision NOT NULL,
    ties_merge_weight double precision NOT NULL,
    session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    user_tier text,
    arc_start_time timestamp with time zone NOT NULL,
    arc_end_time timestamp with time zone NOT NULL,
    created_at timestamp with time zone DEFAULT now(),
    parent_metablock_id uuid,
    session_continuity_flag boolean DEFAULT false,
    continues_from uuid,
    continued_by uuid,
    citations jsonb,
    preoccupation_centroid_id uuid,
    derived_from uuid,
    block_kind text DEFAULT 'arc'::text NOT NULL,
    arc_id uuid,
    cycle_date date NOT NULL,
    first_turn integer NOT NULL,
    last_turn integer NOT NULL,
    long_term boolean DEFAULT false NOT NULL,
    migrated_at timestamp with time zone,
    native_embedding_bq bit(4096) GENERATED ALWAYS AS ((public.binary_quantize(native_embedding))::bit(4096)) STORED,
    cycle_no integer DEFAULT 0 NOT NULL,
    CONSTRAINT holographic_blocks_kind_known CHECK ((block_kind = ANY (ARRAY['arc'::text, 'gap'::text, 'compound'::text, 'imported'::text]))),
    CONSTRAINT holographic_blocks_prose_shape CHECK ((prose ?& ARRAY['anterior_margin'::text, 'live_zones'::text, 'dead_zone_summaries'::text, 'posterior_margin'::text])),
    CONSTRAINT holographic_blocks_times_ordered CHECK ((arc_start_time <= arc_end_time)),
    CONSTRAINT holographic_blocks_turns_ordered CHECK ((first_turn <= last_turn)),
    CONSTRAINT holographic_blocks_user_tier_known CHECK ((user_tier = ANY (ARRAY['normal'::text, 'meso'::text, 'elder'::text])))
)
WITH (fillfactor='90');

COMMENT ON TABLE memory.holographic_blocks IS 'Holographic Blocks (spec 004 section 3.4): a flux arc with margins, live zones verbatim and dead zones summarised, dual embeddings and salience';

COMMENT ON COLUMN memory.holographic_blocks.block_kind IS 'arc: a flux arc with its margins; gap: a stretch of a session between arcs (dead-zone heavy); compound: a metablock; imported: from a Bifocal Packet';

COMMENT ON COLUMN memory.holographic_blocks.cycle_no IS 'the user''s cycle (users.cycles) that stored the block';

CREATE VIEW bi.blocks AS
 SELECT b.block_kind,
    b.cycle_date,
    b.user_tier,
    b.arc_start_time,
    b.arc_end_time,
    ((b.flux_metrics ->> 'peak_perplexity'::text))::double precision AS peak_perplexity,
    ((b.flux_metrics ->> 'baseline_perplexity'::text))::double precision AS baseline_perplexity,
    ((b.flux_metrics ->> 'final_perplexity'::text))::double precision AS final_perplexity,
    ((b.flux_metrics ->> 'flux_reversal_quality'::text))::double precision AS flux_reversal_quality,
    ((b.flux_metrics ->> 'arc_duration_turns'::text))::integer AS arc_duration_turns,
    ((b.salience_scores ->> 'composite'::text))::double precision AS salience_composite,
    b.coherence_gain,
    b.ties_merge_weight,
    jsonb_array_length((b.prose -> 'live_zones'::text)) AS live_zones,
    jsonb_array_length((b.prose -> 'dead_zone_summaries'::text)) AS dead_zones,
    b.session_continuity_flag,
    (b.parent_metablock_id IS NOT NULL) AS in_metablock,
    b.cycle_no,
    b.long_term,
    b.migrated_at
   FROM memory.holographic_blocks b;

COMMENT ON VIEW bi.blocks IS 'Every Holographic Block with its flux metrics, salience, zone counts and where it stands; no prose.';

CREATE TABLE ops.cleanup_log (
    cycle_date date NOT NULL,
    tier text NOT NULL,
    turns_deleted bigint NOT NULL,
    logged_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);

CREATE VIEW bi.cleanup_daily AS
 SELECT cleanup_log.cycle_date,
    cleanup_log.tier,
    sum(cleanup_log.turns_deleted) AS turns_deleted
   FROM ops.cleanup_log
  GROUP BY cleanup_log.cycle_date, cleanup_log.tier;

COMMENT ON VIEW bi.cleanup_daily IS 'Turns removed from the day table per cycle date and tier.';

CREATE VIEW bi.cortex_migration AS
 SELECT b.user_tier,
    count(*) FILTER (WHERE (b.migrated_at IS NULL)) AS in_hippocampus,
    count(*) FILTER (WHERE (b.migrated_at IS NOT NULL)) AS in_cortex,
    max(b.migrated_at) AS last_migrated_at,
    ( SELECT count(*) AS count
           FROM ops.jobs j
          WHERE ((j.kind = 'cortex_migrate'::text) AND (j.state = 'queued'::text))) AS migrations_queued,
    ( SELECT count(*) AS count
           FROM ops.jobs j
          WHERE ((j.kind = 'cortex_migrate'::text) AND (j.state = 'failed'::text))) AS migrations_failed
   FROM memory.holographic_blocks b
  GROUP BY b.user_tier;

COMMENT ON VIEW bi.cortex_migration IS 'Per tier: blocks still in the Hippocampus and moved to the Cortex, the last move, and migration jobs queued or failed.';

CREATE VIEW bi.cron_runs AS
 SELECT j.jobname,
    d.status,
    count(*) AS runs,
    max(d.start_time) AS last_start,
    max(d.return_message) FILTER (WHERE (d.status = 'failed'::text)) AS a_failure
   FROM (cron.job j
     LEFT JOIN cron.job_run_details d USING (jobid))
  WHERE (j.jobname ~~ 'psimem-%'::text)
  GROUP BY j.jobname, d.status;

COMMENT ON VIEW bi.cron_runs IS 'psimem''s pg_cron jobs: runs by status, last start, a failure message.';

CREATE VIEW bi.cycle_runs AS
 SELECT r.run_id,
    r.cycle_date,
    r.started_at,
    r.finished_at,
    r.status,
    r.users_done,
    r.users_failed,
    EXTRACT(epoch FROM (r.finished_at - r.started_at)) AS seconds
   FROM ops.cycle_runs r;

COMMENT ON VIEW bi.cycle_runs IS 'Night Cycle runs: status (running until finished: a killed run stays running until the next call resumes it), users consolidated and failed, duration.';

CREATE TABLE ops.cycle_stage_log (
    run_id bigint NOT NULL,
    user_id uuid,
    stage integer NOT NULL,
    stage_name text NOT NULL,
    rows bigint DEFAULT 0 NOT NULL,
    duration_ms double precision NOT NULL,
    ok boolean NOT NULL,
    error text,
    logged_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);

COMMENT ON TABLE ops.cycle_stage_log IS 'One row per Night Cycle stage and user: rows touched, duration, failure';

CREATE VIEW bi.cycle_stages AS
 SELECT l.run_id,
    l.stage,
    l.stage_name,
    count(l.user_id) AS users,
    COALESCE(sum(l.rows) FILTER (WHERE (l.user_id IS NOT NULL)), sum(l.rows)) AS rows,
    round((sum(l.duration_ms))::numeric, 1) AS duration_ms,
    count(*) FILTER (WHERE (NOT l.ok)) AS failures,
    max(l.error) AS an_error
   FROM ops.cycle_stage_log l
  GROUP BY l.run_id, l.stage, l.stage_name;

COMMENT ON VIEW bi.cycle_stages IS 'Per Night Cycle run and stage: users, rows, total duration (the run-wide index build of a backfill, logged as stage 6, and stage 8 included), failures.';

CREATE VIEW bi.dead_letter_jobs AS
 SELECT j.job_id,
    j.kind,
    j.attempts,
    j.max_attempts,
    j.created_at,
    j.finished_at AS failed_at,
    j.last_error
   FROM ops.jobs j
  WHERE (j.state = 'failed'::text);

COMMENT ON VIEW bi.dead_letter_jobs IS 'Jobs that failed for good (every attempt used): nothing retries them until ops.retry_job(job_id); a cortex_migrate among them keeps its block in the Hippocampus.';

CREATE TABLE memory.day_table (
    entry_id uuid DEFAULT gen_random_uuid() NOT NULL,
    session_id uuid NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    native_embedding public.vector(4096),
    universal_embedding public.vector(768),
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    perplexity_score double precision,
    flux_state text,
    user_id uuid NOT NULL,
    user_tier text,
    turn_number integer NOT NULL,
    token_count integer,
    native_embedding_bq bit(4096) GENERATED ALWAYS AS ((public.binary_quantize(native_embedding))::bit(4096)) STORED,
    flux_baseline_mean double precision,
    flux_baseline_sd double precision,
    flux_arc_start integer,
    universal_embedding_bq bit(768) GENERATED ALWAYS AS ((public.binary_quantize(universal_embedding))::bit(768)) STORED,
    external_ref text,
    content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
    CONSTRAINT day_table_content_not_blank CHECK ((content ~ '\S'::text)),
    CONSTRAINT day_table_flux_state_known CHECK ((flux_state = ANY (ARRAY['baseline'::text, 'spike'::text, 'resolution'::text, 'stable'::text]))),
    CONSTRAINT day_table_perplexity_nonnegative CHECK ((perplexity_score >= (0)::double precision)),
    CONSTRAINT day_table_role_known CHECK ((role = ANY (ARRAY['user'::text, 'assistant'::text, 'system'::text]))),
    CONSTRAINT day_table_token_count_nonnegative CHECK ((token_count >= 0)),
    CONSTRAINT day_table_turn_number_positive CHECK ((turn_number > 0)),
    CONSTRAINT day_table_user_tier_known CHECK ((user_tier = ANY (ARRAY['normal'::text, 'meso'::text, 'elder'::text])))
);

COMMENT ON TABLE memory.day_table IS 'The Hippocampus day table (spec 004 section 2.2): every turn with its embeddings and perplexity';

COMMENT ON COLUMN memory.day_table.flux_baseline_mean IS 'set by the trigger: mean perplexity of the previous flux.baseline_window turns that have one (the live baseline)';

COMMENT ON COLUMN memory.day_table.flux_baseline_sd IS 'set by the trigger: sample standard deviation of those turns (0 with fewer than two)';

COMMENT ON COLUMN memory.day_table.flux_arc_start IS 'set by the trigger: turn number of the spike that opened the flux window this turn is in, from that spike to the stable turn closing it; NULL outside a window';

COMMENT ON COLUMN memory.day_table.external_ref IS 'the agent''s own id for this turn, unique within the session';

COMMENT ON COLUMN memory.day_table.content_tsv IS 'the content as a tsvector (configuration english), for the text leg of memory.recall';

CREATE VIEW bi.hippocampus_daily AS
 SELECT (date_trunc('day'::text, d.created_at))::date AS day,
    d.user_tier,
    count(DISTINCT d.user_id) AS users,
    count(DISTINCT d.session_id) AS sessions,
    count(*) AS turns,
    count(*) FILTER (WHERE (d.flux_state = 'spike'::text)) AS spike_turns,
    round((avg(d.perplexity_score))::numeric, 3) AS mean_perplexity
   FROM memory.day_table d
  GROUP BY ((date_trunc('day'::text, d.created_at))::date), d.user_tier;

COMMENT ON VIEW bi.hippocampus_daily IS 'Turns, sessions, users, spike turns and mean perplexity per day and user tier in the day table.';

CREATE TABLE ops.job_attempts (
    attempt_id bigint NOT NULL,
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    finished_at timestamp with time zone,
    outcome text DEFAULT 'running'::text NOT NULL,
    error text,
    result jsonb,
    CONSTRAINT job_attempts_finished_unless_running CHECK (((outcome = 'running'::text) = (finished_at IS NULL))),
    CONSTRAINT job_attempts_outcome_known CHECK ((outcome = ANY (ARRAY['running'::text, 'done'::text, 'retry'::text, 'failed'::text, 'released'::text, 'abandoned'::text])))
);

COMMENT ON TABLE ops.job_attempts IS 'Every time a worker took a job: which worker, when, and the outcome (done, retry, failed, released on shutdown, abandoned by a worker that stopped heartbeating) with the error or result';

CREATE VIEW bi.job_attempts AS
 SELECT a.job_id,
    j.kind,
    a.attempt,
    j.max_attempts,
    a.worker_id,
    a.started_at,
    a.finished_at,
    EXTRACT(epoch FROM (a.finished_at - a.started_at)) AS seconds,
    a.outcome,
    a.error,
    a.result,
    j.state AS job_state
   FROM (ops.job_attempts a
     JOIN ops.jobs j USING (job_id));

COMMENT ON VIEW bi.job_attempts IS 'Every attempt at every worker job: worker, duration, outcome (done, retry, failed, released, abandoned), error or result (counts and timings, never memory content).';

CREATE VIEW bi.job_queue AS
 SELECT jobs.kind,
    jobs.state,
    count(*) AS jobs,
    max(jobs.attempts) AS max_attempts,
    min(jobs.created_at) AS oldest,
    max(jobs.last_error) FILTER (WHERE (jobs.state = 'failed'::text)) AS a_failure
   FROM ops.jobs
  GROUP BY jobs.kind, jobs.state;

COMMENT ON VIEW bi.job_queue IS 'Jobs for the worker by kind and state, with the oldest and a failure message.';

CREATE TABLE kernel.contradiction (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    card_a uuid NOT NULL,
    card_b uuid NOT NULL,
    reason text NOT NULL,
    detected_at timestamp with time zone DEFAULT now() NOT NULL,
    resolved_at timestamp with time zone,
    kept_id uuid,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT contradiction_kept_is_one_of_pair CHECK (((kept_id IS NULL) OR ((kept_id = card_a) OR (kept_id = card_b)))),
    CONSTRAINT contradiction_kept_only_when_resolved CHECK (((kept_id IS NULL) OR (resolved_at IS NOT NULL))),
    CONSTRAINT contradiction_pair_ordered CHECK ((card_a < card_b))
);

COMMENT ON TABLE kernel.contradiction IS 'Two cards of one user that conflict (same key: tag, or near-identical embedding with different content). Both cards are kept and linked; kernel.contradictions lists the pair until kernel.resolve_contradiction resolves it.';

CREATE TABLE kernel.embedding (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    mem_id uuid NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    dim integer NOT NULL,
    embedding public.vector NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT embedding_dim_matches_vector CHECK ((public.vector_dims(embedding) = dim)),
    CONSTRAINT embedding_dim_range CHECK (((dim >= 1) AND (dim <= 16000))),
    CONSTRAINT embedding_model_named CHECK (((model ~ '\S'::text) AND (length(model) <= 200))),
    CONSTRAINT embedding_provider_named CHECK (((provider ~ '\S'::text) AND (length(provider) <= 200)))
);
ALTER TABLE ONLY kernel.embedding ALTER COLUMN embedding SET STORAGE MAIN;

COMMENT ON TABLE kernel.embedding IS 'MemoryEmbedding: one row per card and provider/model, any size (dim); an HNSW index per size in use (kernel.ensure_vector_indexes)';

CREATE TABLE kernel.journal (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    stage text NOT NULL,
    summary text NOT NULL,
    conclusion text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    kind text DEFAULT 'turn'::text NOT NULL,
    turn integer NOT NULL,
    reflected_ids uuid[] DEFAULT '{}'::uuid[] NOT NULL,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    period_start timestamp with time zone,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT journal_kind_known CHECK ((kind = ANY (ARRAY['turn'::text, 'meta'::text, 'compaction'::text]))),
    CONSTRAINT journal_period_iff_compaction CHECK (((kind = 'compaction'::text) = (period_start IS NOT NULL))),
    CONSTRAINT journal_stage_known CHECK ((stage = ANY (ARRAY['Ideation'::text, 'Data Acquisition'::text, 'Exploration'::text, 'Synthesis'::text, 'Productionization'::text, 'Retrospective Innovation'::text]))),
    CONSTRAINT journal_summary_at_most_70_words CHECK (((length(regexp_replace(summary, '\S+'::text, 'x'::text, 'g'::text)) - length(regexp_replace(summary, '\S+'::text, ''::text, 'g'::text))) <= 70)),
    CONSTRAINT journal_summary_not_blank CHECK ((summary ~ '\S'::text)),
    CONSTRAINT journal_turn_positive CHECK ((turn >= 1))
);

COMMENT ON TABLE kernel.journal IS 'Journal (spec 001 section 3): turn entries (at most 70 words of summary, with stage, conclusion and the cards reflected on), meta-layer entries every kernel.meta_every turns, and compaction entries that replace a period''s old entries';

CREATE TABLE kernel.tombstone (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    table_name text NOT NULL,
    row_key text NOT NULL,
    deleted_at timestamp with time zone DEFAULT now() NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tombstone_table_known CHECK ((table_name = ANY (ARRAY['card'::text, 'edge'::text, 'journal'::text, 'config'::text, 'usage'::text, 'attachment'::text, 'embedding'::text, 'contradiction'::text, 'stage_transition'::text])))
);

COMMENT ON TABLE kernel.tombstone IS 'One row per deleted kernel row (its table and key: id, mem_id for usage, key for config), written by a trigger, so kernel.export_patch can replay deletes; kept kernel.tombstone_keep';

CREATE VIEW bi.kernel_health AS
 SELECT ( SELECT count(DISTINCT c.user_id) AS count
           FROM kernel.card c) AS users_with_cards,
    ( SELECT count(*) AS count
           FROM kernel.card c
          WHERE (c.kind = 'note'::text)) AS notes,
    ( SELECT count(*) AS count
           FROM kernel.card c
          WHERE ((c.kind = 'note'::text) AND (c.rolled_into IS NOT NULL))) AS notes_rolled_up,
    ( SELECT count(*) AS count
           FROM kernel.card c
          WHERE (c.kind = 'summary'::text)) AS summary_cards,
    ( SELECT count(*) AS count
           FROM kernel.embedding) AS embeddings,
    ( SELECT count(*) AS count
           FROM kernel.contradiction k
          WHERE (k.resolved_at IS NULL)) AS open_contradictions,
    ( SELECT count(*) AS count
           FROM kernel.journal) AS journal_entries,
    ( SELECT count(*) AS count
           FROM kernel.tombstone) AS tombstones;

COMMENT ON VIEW bi.kernel_health IS 'Kernel totals across all users: cards by kind, embeddings, open contradictions, journal entries, tombstones.';

CREATE VIEW bi.kernel_runs AS
SELECT
    NULL::bigint AS run_id,
    NULL::timestamp with time zone AS as_of,
    NULL::timestamp with time zone AS started_at,
    NULL::timestamp with time zone AS finished_at,
    NULL::text AS status,
    NULL::integer AS users_done,
    NULL::integer AS users_failed,
    NULL::integer AS users_left,
    NULL::numeric AS seconds,
    NULL::numeric AS cards_stale_deleted,
    NULL::numeric AS cards_trimmed,
    NULL::numeric AS notes_rolled_up,
    NULL::numeric AS journal_entries_compacted,
    NULL::numeric AS vector_indexes_built,
    NULL::numeric AS tombstones_trimmed,
    NULL::text AS an_error;

COMMENT ON VIEW bi.kernel_runs IS 'Kernel maintenance runs (kernel.run_maintenance): users maintained, failed and still due, cards pruned, notes rolled up, journal entries compacted, indexes built.';

CREATE TABLE procedural.procedural_memory (
    reflex_id uuid DEFAULT gen_random_uuid() NOT NULL,
    context_embedding public.vector(768),
    context_description text,
    action text NOT NULL,
    action_type text,
    success_count integer DEFAULT 0 NOT NULL,
    failure_count integer DEFAULT 0 NOT NULL,
    total_count integer DEFAULT 0 NOT NULL,
    success_rate double precision GENERATED ALWAYS AS (
CASE
    WHEN (total_count > 0) THEN ((success_count)::double precision / (total_count)::double precision)
    ELSE (0)::double precision
END) STORED,
    last_accessed timestamp with time zone,
    last_success timestamp with time zone,
    created_at timestamp with time zone DEFAULT now(),
    owner_agent_id uuid,
    user_id uuid DEFAULT memory._acting_user() NOT NULL,
    CONSTRAINT procedural_memory_action_type_known CHECK ((action_type = ANY (ARRAY['tool_call'::text, 'response_pattern'::text, 'delegation'::text]))),
    CONSTRAINT procedural_memory_counts_consistent CHECK (((success_count >= 0) AND (failure_count >= 0) AND (total_count = (success_count + failure_count))))
);

CREATE VIEW bi.procedural_success AS
 SELECT p.owner_agent_id,
    p.action_type,
    count(*) AS reflexes,
    sum(p.total_count) AS uses,
    round((((sum(p.success_count))::double precision / (NULLIF(sum(p.total_count), 0))::double precision))::numeric, 4) AS success_rate,
    max(p.last_success) AS last_success
   FROM procedural.procedural_memory p
  GROUP BY p.owner_agent_id, p.action_type;

COMMENT ON VIEW bi.procedural_success IS 'Procedural memory by owning agent and action type: reflexes, uses, pooled success rate.';

CREATE TABLE memory.retention_policy (
    tier text NOT NULL,
    raw_cycles integer NOT NULL,
    block_cycles integer NOT NULL,
    CONSTRAINT retention_policy_cycles_nonnegative CHECK (((raw_cycles >= 1) AND (block_cycles >= 0))),
    CONSTRAINT retention_policy_tier_known CHECK ((tier = ANY (ARRAY['normal'::text, 'meso'::text, 'elder'::text])))
);

COMMENT ON TABLE memory.retention_policy IS 'Per tier: cycles raw turns stay (raw_cycles) and further cycles blocks stay in the Hippocampus before the Cortex (block_cycles). A turn no kept block covers goes after raw_cycles + block_cycles.';

CREATE VIEW bi.tier_health AS
 SELECT r.tier,
    r.raw_cycles,
    r.block_cycles,
    ( SELECT count(*) AS count
           FROM memory.users u
          WHERE (u.tier = r.tier)) AS users,
    ( SELECT count(*) AS count
           FROM (memory.day_table d
             JOIN memory.users u USING (user_id))
          WHERE (u.tier = r.tier)) AS turns_held,
    ( SELECT count(*) AS count
           FROM (memory.holographic_blocks b
             JOIN memory.users u USING (user_id))
          WHERE ((u.tier = r.tier) AND (b.migrated_at IS NULL))) AS blocks_in_hippocampus,
    ( SELECT count(*) AS count
           FROM (memory.holographic_blocks b
             JOIN memory.users u USING (user_id))
          WHERE ((u.tier = r.tier) AND (b.migrated_at IS NOT NULL))) AS blocks_migrated,
    ( SELECT COALESCE(sum(c.turns_deleted), (0)::numeric) AS "coalesce"
           FROM ops.cleanup_log c
          WHERE (c.tier = r.tier)) AS turns_cleaned_total,
    ( SELECT max(c.cycle_date) AS max
           FROM ops.cleanup_log c
          WHERE (c.tier = r.tier)) AS last_cleanup_cycle
   FROM memory.retention_policy r;

COMMENT ON VIEW bi.tier_health IS 'Per tier: its retention policy, what the Hippocampus holds, and what cleanup has removed.';

CREATE TABLE ops.settings (
    key text NOT NULL,
    value jsonb NOT NULL,
    description text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    value_type text NOT NULL,
    min_value numeric,
    max_value numeric,
    allowed text[],
    CONSTRAINT settings_enum_has_values CHECK (((value_type = 'enum'::text) = (allowed IS NOT NULL))),
    CONSTRAINT settings_key_dotted CHECK ((key ~ '^[a-z_]+(\.[a-z_0-9]+)+$'::text)),
    CONSTRAINT settings_range_ordered CHECK ((min_value <= max_value)),
    CONSTRAINT settings_value_type_known CHECK ((value_type = ANY (ARRAY['integer'::text, 'number'::text, 'text'::text, 'interval'::text, 'regex'::text, 'function'::text, 'cron'::text, 'enum'::text])))
);

COMMENT ON TABLE ops.settings IS 'Tunable parameters read by psimem functions; change with UPDATE or ops.set_setting()';

COMMENT ON COLUMN ops.settings.value_type IS 'integer, number, text, interval, regex (a valid regular expression), function (a regproc), cron (a pg_cron schedule) or enum (one of allowed)';

COMMENT ON COLUMN ops.settings.min_value IS 'smallest value accepted (for an interval: in seconds)';

COMMENT ON COLUMN ops.settings.max_value IS 'largest value accepted (for an interval: in seconds)';

CREATE VIEW bi.workers AS
 SELECT w.worker_id,
    w.host,
    w.pid,
    w.state,
    w.code_version,
    w.started_at,
    w.heartbeat_at,
    w.stopped_at,
    EXTRACT(epoch FROM (clock_timestamp() - w.heartbeat_at)) AS seconds_since_heartbeat,
    ((w.state <> 'stopped'::text) AND (w.heartbeat_at < (clock_timestamp() - ( SELECT ((s.value #>> '{}'::text[]))::interval AS "interval"
           FROM ops.settings s
          WHERE (s.key = 'worker.stale_after'::text))))) AS looks_dead,
    w.current_job_id,
    w.jobs_done,
    w.jobs_retried,
    w.jobs_failed,
    w.jobs_released
   FROM ops.workers w;

COMMENT ON VIEW bi.workers IS 'Cortex worker processes: state, last heartbeat (and whether it is older than worker.stale_after), jobs done, retried, failed and released.';

CREATE TABLE kernel.attachment (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    mem_id uuid NOT NULL,
    kind text NOT NULL,
    ref text NOT NULL,
    title text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT attachment_kind_known CHECK ((kind = ANY (ARRAY['url'::text, 'file'::text, 'ref'::text]))),
    CONSTRAINT attachment_ref_not_blank CHECK ((ref ~ '\S'::text))
);

COMMENT ON TABLE kernel.attachment IS 'MemoryAttachment: a URL, file path or other reference a card points to';

CREATE TABLE kernel.config (
    user_id uuid NOT NULL,
    key text NOT NULL,
    value jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT config_key_known CHECK ((key = ANY (ARRAY['emit_auto_on'::text, 'versioning'::text, 'prune_policy'::text, 'recall_top_k'::text, 'recall_weights'::text])))
);

COMMENT ON TABLE kernel.config IS 'MemoryConfig: a user''s overrides of the kernel defaults (ops.settings kernel.*); values are JSON, checked per key by a trigger. Set with kernel.set_config.';

CREATE TABLE kernel.edge (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    src_id uuid NOT NULL,
    dst_id uuid NOT NULL,
    type text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT edge_not_a_loop CHECK ((src_id <> dst_id)),
    CONSTRAINT edge_type_known CHECK ((type = ANY (ARRAY['reflects_on'::text, 'relates_to'::text])))
);

COMMENT ON TABLE kernel.edge IS 'MemoryEdge: reflects_on (a summary to the notes it stands for) or relates_to (kernel.link, and the two cards of a contradiction)';

CREATE TABLE kernel.usage (
    mem_id uuid NOT NULL,
    user_id uuid NOT NULL,
    used_count integer DEFAULT 0 NOT NULL,
    last_used_at timestamp with time zone,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT usage_count_nonnegative CHECK ((used_count >= 0))
);

COMMENT ON TABLE kernel.usage IS 'MemoryUsage: how often and when kernel.recall last returned a card (bumped in the recall''s transaction, except on a hot standby)';

CREATE VIEW kernel.memory_search WITH (security_invoker='true') AS
 SELECT c.id,
    c.user_id,
    c.summary,
    c.tags,
    c.source,
    c.kind,
    c.subject,
    c.rolled_into,
    c.created_at,
    c.updated_at,
    c.ts_config,
    c.tsv,
    COALESCE(u.used_count, 0) AS used_count,
    u.last_used_at,
    GREATEST(c.updated_at, u.last_used_at) AS last_touched_at
   FROM (kernel.card c
     LEFT JOIN kernel.usage u ON ((u.mem_id = c.id)));

COMMENT ON VIEW kernel.memory_search IS 'Cards with their usage (spec 001 section 4: memory_search joins memory_usage): what full-text search and usage-aware recency read. Row-level security of the caller applies (security_invoker).';

CREATE TABLE kernel.stage_transition (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    from_stage text,
    to_stage text NOT NULL,
    turn integer NOT NULL,
    journal_id uuid,
    trigger text NOT NULL,
    evidence jsonb DEFAULT '{}'::jsonb NOT NULL,
    at timestamp with time zone NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT stage_transition_moves CHECK ((from_stage IS DISTINCT FROM to_stage)),
    CONSTRAINT stage_transition_stages_known CHECK ((((from_stage IS NULL) OR (from_stage = ANY (ARRAY['Ideation'::text, 'Data Acquisition'::text, 'Exploration'::text, 'Synthesis'::text, 'Productionization'::text, 'Retrospective Innovation'::text]))) AND (to_stage = ANY (ARRAY['Ideation'::text, 'Data Acquisition'::text, 'Exploration'::text, 'Synthesis'::text, 'Productionization'::text, 'Retrospective Innovation'::text]))))
);

COMMENT ON TABLE kernel.stage_transition IS 'Every lifecycle stage change of a user (spec 001 section 7), from the start at Ideation on: the turn, the journal entry that made it, the trigger and its evidence';

CREATE TABLE kernel.text_stats (
    user_id uuid NOT NULL,
    lexeme text NOT NULL,
    ndoc integer NOT NULL,
    cards integer NOT NULL,
    refreshed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT text_stats_ndoc_within_cards CHECK (((ndoc >= 1) AND (ndoc <= cards)))
);

COMMENT ON TABLE kernel.text_stats IS 'Derived, not kernel state: the words (lexemes) more than kernel.text_common_cards of a user''s cards contain, counted by kernel.refresh_text_stats. In kernel.recall such a word alone does not make a card a candidate (a word in a tenth of 100,000 cards would make 10,000, each to be scored); it still counts in the ranking.';

CREATE TABLE memory.block_relationships (
    relationship_id uuid DEFAULT gen_random_uuid() NOT NULL,
    source_block_id uuid NOT NULL,
    target_block_id uuid NOT NULL,
    relationship_type text NOT NULL,
    strength double precision,
    created_at timestamp with time zone DEFAULT now(),
    user_id uuid NOT NULL,
    CONSTRAINT block_relationships_type_known CHECK ((relationship_type = ANY (ARRAY['cites'::text, 'continues'::text, 'derived_from'::text, 'thematic'::text])))
);

CREATE TABLE memory.block_turns (
    block_id uuid NOT NULL,
    turn_number integer NOT NULL,
    user_id uuid NOT NULL,
    session_id uuid NOT NULL,
    zone_no smallint NOT NULL,
    role text NOT NULL,
    kept text NOT NULL,
    verbatim boolean NOT NULL,
    created_at timestamp with time zone NOT NULL,
    external_ref text,
    universal_embedding public.vector(768),
    kept_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, kept)) STORED,
    CONSTRAINT block_turns_kept_not_blank CHECK ((kept ~ '\S'::text)),
    CONSTRAINT block_turns_role_known CHECK ((role = ANY (ARRAY['user'::text, 'assistant'::text, 'system'::text]))),
    CONSTRAINT block_turns_turn_number_positive CHECK ((turn_number > 0))
);

COMMENT ON TABLE memory.block_turns IS 'What a Holographic Block keeps of each turn it covers: the turn verbatim (live zone or margin) or the sentences its dead-zone summary kept, with the turn''s role, time, external reference and universal embedding. Recall reaches consolidated turns here once retention has deleted them from day_table.';

CREATE TABLE memory.block_zones (
    block_id uuid NOT NULL,
    user_id uuid NOT NULL,
    zone_no smallint NOT NULL,
    zone_kind text NOT NULL,
    session_id uuid NOT NULL,
    first_turn integer NOT NULL,
    last_turn integer NOT NULL,
    content text NOT NULL,
    CONSTRAINT block_zones_kind_known CHECK ((zone_kind = ANY (ARRAY['anterior_margin'::text, 'live'::text, 'dead'::text, 'posterior_margin'::text]))),
    CONSTRAINT block_zones_turns_ordered CHECK ((first_turn <= last_turn)),
    CONSTRAINT block_zones_zone_no_nonnegative CHECK ((zone_no >= 0))
);

COMMENT ON TABLE memory.block_zones IS 'One row per zone of a Holographic Block, in order (zone_no): anterior_margin, live and dead zones, posterior_margin; first_turn..last_turn are the session turns it was made from; content is verbatim ("role: content" lines) except for a dead zone, whose content is its summary.';

CREATE TABLE memory.consolidations (
    session_id uuid NOT NULL,
    first_turn integer NOT NULL,
    last_turn integer NOT NULL,
    cycle_date date NOT NULL,
    user_id uuid NOT NULL,
    cycle_no integer DEFAULT 0 NOT NULL,
    CONSTRAINT consolidations_turns_ordered CHECK ((first_turn <= last_turn))
);

COMMENT ON TABLE memory.consolidations IS 'Which turns of a session which Night Cycle consolidated; retention counts cycles from here';

COMMENT ON COLUMN memory.consolidations.cycle_no IS 'the user''s cycle (users.cycles) that consolidated these turns';

CREATE UNLOGGED TABLE memory.night_arcs (
    run_id bigint NOT NULL,
    user_id uuid NOT NULL,
    arc_id uuid NOT NULL,
    session_id uuid NOT NULL,
    start_turn integer NOT NULL,
    continues_arc_id uuid
);

COMMENT ON TABLE memory.night_arcs IS 'Night Cycle work state, stage 1: the flux arcs a run stored for a user; continues_arc_id is the earlier part, stored by an earlier cycle, of an arc that was still open when its session was consolidated.';

CREATE UNLOGGED TABLE memory.night_block_turns (
    run_id bigint NOT NULL,
    user_id uuid NOT NULL,
    block_id uuid NOT NULL,
    turn_number integer NOT NULL,
    perplexity_score double precision,
    coherence_prev double precision,
    interrogative_distance double precision,
    live boolean NOT NULL,
    kept text
);

COMMENT ON TABLE memory.night_block_turns IS 'Night Cycle work state, stage 2: what the later stages measure on each turn a block holds (its text and vectors stay in day_table): coherence with the previous turn, Interrogative Distance, whether it is live.';

COMMENT ON COLUMN memory.night_block_turns.kept IS 'stage 4: what the block keeps of the turn (the turn for a live zone or a margin, its kept sentences for a dead zone; null: nothing)';

CREATE UNLOGGED TABLE memory.night_blocks (
    run_id bigint NOT NULL,
    user_id uuid NOT NULL,
    block_id uuid DEFAULT gen_random_uuid() NOT NULL,
    block_kind text DEFAULT 'arc'::text NOT NULL,
    arc_id uuid,
    session_id uuid NOT NULL,
    start_turn integer NOT NULL,
    peak_turn integer,
    end_turn integer NOT NULL,
    first_turn integer NOT NULL,
    last_turn integer NOT NULL,
    resolved boolean,
    baseline double precision,
    peak double precision,
    final double precision,
    quality double precision,
    duration integer,
    start_time timestamp with time zone,
    end_time timestamp with time zone,
    prose jsonb,
    salience_scores jsonb,
    arrete double precision,
    coherence_gain double precision,
    ties_merge_weight double precision,
    universal_embedding public.vector(768),
    native_embedding public.vector(4096),
    continues_from uuid,
    continued_by uuid,
    parent_metablock_id uuid,
    citations jsonb,
    chain_root uuid,
    chain_pos integer
);

COMMENT ON TABLE memory.night_blocks IS 'Night Cycle work state, stages 2-6: the blocks a run forms for a user, filled in stage by stage (span and flux metrics, salience, prose, embeddings, links) and stored by stage 6. start_turn..end_turn is what the block is about (an arc), first_turn..last_turn what it holds (with margins).';

CREATE UNLOGGED TABLE memory.night_sessions (
    run_id bigint NOT NULL,
    user_id uuid NOT NULL,
    session_id uuid NOT NULL,
    consolidated_turn integer NOT NULL,
    first_turn integer NOT NULL,
    last_turn integer NOT NULL,
    turns integer NOT NULL
);

COMMENT ON TABLE memory.night_sessions IS 'Night Cycle work state, stage 0: the sessions a run took for a user (locked until the user''s batch commits), with the range of their turns it consolidates.';

CREATE TABLE memory.night_stages (
    stage smallint NOT NULL,
    name text NOT NULL,
    function regproc NOT NULL,
    scope text NOT NULL,
    CONSTRAINT night_stages_scope_known CHECK ((scope = ANY (ARRAY['user'::text, 'taken'::text, 'run'::text]))),
    CONSTRAINT night_stages_stage_range CHECK (((stage >= 0) AND (stage <= 99)))
);

COMMENT ON TABLE memory.night_stages IS 'The Night Cycle''s stages in order. function(p_run_id bigint, p_user_id uuid) returns the rows it touched. scope: user = for every user of the run; taken = only for a user whose sessions stage 0 took; run = once when the run finishes, after every user (p_user_id is the run''s user filter). Each db/functions/night/NN_name.sql registers its stage.';

CREATE UNLOGGED TABLE memory.night_zones (
    run_id bigint NOT NULL,
    user_id uuid NOT NULL,
    block_id uuid NOT NULL,
    session_id uuid NOT NULL,
    live boolean NOT NULL,
    first_turn integer NOT NULL,
    last_turn integer NOT NULL,
    content text
);

COMMENT ON TABLE memory.night_zones IS 'Night Cycle work state, stages 2 and 4: the live and dead zones of each block (maximal runs of live or dead turns of its arc), live ones verbatim, dead ones summarised by stage 4.';

CREATE TABLE memory.preoccupation_centroids (
    centroid_id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    turn_count integer NOT NULL,
    window_start timestamp with time zone NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    universal_centroid public.vector(768),
    native_centroid public.vector(4096)
);

COMMENT ON TABLE memory.preoccupation_centroids IS 'Each user''s active Preoccupation Centroid: the normalised mean of their own recent turns, refreshed by the Night Cycle';

CREATE TABLE memory.sessions (
    session_id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    external_ref text,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    last_turn_at timestamp with time zone,
    turn_count integer DEFAULT 0 NOT NULL,
    flux_recent real[] DEFAULT '{}'::real[] NOT NULL,
    flux_window_open boolean DEFAULT false NOT NULL,
    flux_stable_count integer DEFAULT 0 NOT NULL,
    flux_baseline real,
    flux_peak real,
    consolidated_turn integer DEFAULT 0 NOT NULL,
    continues_session_id uuid,
    flux_arc_start integer,
    CONSTRAINT sessions_turn_count_nonnegative CHECK ((turn_count >= 0))
)
WITH (fillfactor='70');

COMMENT ON TABLE memory.sessions IS 'Conversations; each acts for one user';

COMMENT ON COLUMN memory.sessions.consolidated_turn IS 'turns up to this number have been consolidated by a Night Cycle';

COMMENT ON COLUMN memory.sessions.flux_arc_start IS 'turn number of the spike that opened the current flux window (trigger state)';

CREATE TABLE memory.text_stats (
    user_id uuid NOT NULL,
    lexeme text NOT NULL,
    turns bigint NOT NULL,
    CONSTRAINT text_stats_turns_positive CHECK ((turns > 0))
);

COMMENT ON TABLE memory.text_stats IS 'Per user: in how many of their turns (ever recorded) each lexeme occurs; the document frequencies of BM25 in memory.recall';

CREATE TABLE memory.text_totals (
    user_id uuid NOT NULL,
    turns bigint NOT NULL,
    lexemes bigint NOT NULL,
    CONSTRAINT text_totals_counts_nonnegative CHECK (((turns >= 0) AND (lexemes >= 0)))
);

COMMENT ON TABLE memory.text_totals IS 'Per user: how many turns were ever recorded and how many lexemes they held in all (BM25''s collection size and mean length)';

CREATE TABLE memory.user_bindings (
    user_id uuid NOT NULL,
    grantee oid NOT NULL,
    granted_by name DEFAULT SESSION_USER NOT NULL,
    granted_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE memory.user_bindings IS 'Which role (a login, or a group role whose members inherit it) may act for which user. Written by memory.ensure_user for the users a writer creates and by psimem_admin through memory.bind_user / memory.unbind_user.';

CREATE TABLE ops.applied_sql (
    path text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    objects text[]
);

COMMENT ON TABLE ops.applied_sql IS 'Checksums of db/functions and db/triggers files as last applied';

COMMENT ON COLUMN ops.applied_sql.objects IS 'functions and procedures the file defined when last applied (regprocedure)';

ALTER TABLE ops.cycle_runs ALTER COLUMN run_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ops.cycle_runs_run_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE ops.job_attempts ALTER COLUMN attempt_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ops.job_attempts_attempt_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE ops.jobs ALTER COLUMN job_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ops.jobs_job_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ops.kernel_run_log (
    run_id bigint NOT NULL,
    user_id uuid,
    maintained_for date NOT NULL,
    step text NOT NULL,
    rows bigint DEFAULT 0 NOT NULL,
    duration_ms double precision NOT NULL,
    ok boolean NOT NULL,
    error text,
    logged_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT kernel_run_log_step_known CHECK ((step = ANY (ARRAY['vector indexes'::text, 'prune stale'::text, 'trim to max_cards'::text, 'compress'::text, 'compact journal'::text, 'text stats'::text, 'trim tombstones'::text, 'done'::text, 'failed'::text])))
);

COMMENT ON TABLE ops.kernel_run_log IS 'One row per maintenance step and user (user_id NULL for the global steps): rows touched, duration, failure. A done row marks the user maintained for that day.';

CREATE TABLE ops.kernel_runs (
    run_id bigint NOT NULL,
    as_of timestamp with time zone NOT NULL,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    finished_at timestamp with time zone,
    status text DEFAULT 'running'::text NOT NULL,
    users_done integer DEFAULT 0 NOT NULL,
    users_failed integer DEFAULT 0 NOT NULL,
    users_left integer,
    CONSTRAINT kernel_runs_status_known CHECK ((status = ANY (ARRAY['running'::text, 'ok'::text, 'partial'::text, 'failed'::text])))
);

COMMENT ON TABLE ops.kernel_runs IS 'One row per kernel.run_maintenance() call: the clock it ran for, users maintained, failed and still due';

ALTER TABLE ops.kernel_runs ALTER COLUMN run_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ops.kernel_runs_run_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ops.turn_rules (
    singleton boolean DEFAULT true NOT NULL,
    rules jsonb NOT NULL,
    CONSTRAINT turn_rules_one_row CHECK (singleton)
);

COMMENT ON TABLE ops.turn_rules IS 'The flux.* and limits.* settings as one row, rewritten by a trigger on ops.settings: what the day_table trigger reads for every turn.';

CREATE TABLE procedural.causal_edges (
    edge_id uuid DEFAULT gen_random_uuid() NOT NULL,
    source_reflex_id uuid,
    target_reflex_id uuid,
    causal_strength double precision,
    temporal_gap_avg double precision,
    observation_count integer DEFAULT 1,
    last_observed timestamp with time zone DEFAULT now(),
    user_id uuid DEFAULT memory._acting_user() NOT NULL,
    CONSTRAINT causal_edges_strength_range CHECK (((causal_strength >= (0)::double precision) AND (causal_strength <= (1)::double precision)))
);

CREATE TABLE procedural.frustration_ledger (
    entry_id uuid DEFAULT gen_random_uuid() NOT NULL,
    lieutenant_id uuid NOT NULL,
    task_description text NOT NULL,
    task_embedding public.vector(768),
    worker_generation integer NOT NULL,
    worker_mutation_id uuid,
    parent_mutation_id uuid,
    success boolean NOT NULL,
    failure_mode text,
    execution_turns integer,
    mutation_description text,
    propagated boolean DEFAULT false,
    created_at timestamp with time zone DEFAULT now(),
    user_id uuid DEFAULT memory._acting_user() NOT NULL,
    CONSTRAINT frustration_ledger_failure_has_mode CHECK ((success OR (failure_mode IS NOT NULL))),
    CONSTRAINT frustration_ledger_failure_mode_known CHECK ((failure_mode = ANY (ARRAY['timeout'::text, 'error'::text, 'wrong_output'::text, 'resource_exceeded'::text])))
);

CREATE TABLE procedural.maintenance_runs (
    job text NOT NULL,
    run_date date NOT NULL,
    rows bigint NOT NULL,
    ran_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);

COMMENT ON TABLE procedural.maintenance_runs IS 'Which daily procedural job ran for which date: makes decay and pruning idempotent per day';

CREATE TABLE psi.band_centroids (
    uttr_hash bytea NOT NULL,
    user_id uuid NOT NULL,
    band smallint NOT NULL,
    ts_epoch_ms bigint NOT NULL,
    centroid real[] NOT NULL,
    weight real DEFAULT 1 NOT NULL,
    CONSTRAINT band_centroids_band_known CHECK ((band = ANY (ARRAY[0, 1, 2]))),
    CONSTRAINT band_centroids_not_empty CHECK ((cardinality(centroid) > 0)),
    CONSTRAINT band_centroids_weight_unit CHECK (((weight > (0)::double precision) AND (weight <= (1)::double precision)))
);

COMMENT ON TABLE psi.band_centroids IS 'Mean state of each band every 2 s (spec 003 working memory); psi.decay_centroids() fades rows older than psi.centroid_keep_ms exponentially and prunes them';

CREATE TABLE psi.psi_frames (
    id bigint NOT NULL,
    uttr_hash bytea NOT NULL,
    user_id uuid NOT NULL,
    ts_epoch_ms bigint NOT NULL,
    band smallint NOT NULL,
    duration_ms smallint NOT NULL,
    frame_count smallint DEFAULT 1 NOT NULL,
    psi_blob bytea NOT NULL,
    emo_vec real[],
    integrity_crc bigint NOT NULL,
    CONSTRAINT psi_frames_band_known CHECK ((band = ANY (ARRAY[0, 1, 2]))),
    CONSTRAINT psi_frames_crc_uint32 CHECK (((integrity_crc >= 0) AND (integrity_crc <= '4294967295'::bigint))),
    CONSTRAINT psi_frames_duration_positive CHECK ((duration_ms > 0)),
    CONSTRAINT psi_frames_emo_vec_three CHECK (((emo_vec IS NULL) OR (cardinality(emo_vec) = 3))),
    CONSTRAINT psi_frames_frame_count_range CHECK (((frame_count >= 1) AND (frame_count <= 500))),
    CONSTRAINT psi_frames_run_span_bounded CHECK (((frame_count * duration_ms) <= 10000))
);
ALTER TABLE ONLY psi.psi_frames ALTER COLUMN psi_blob SET STORAGE EXTERNAL;

COMMENT ON TABLE psi.psi_frames IS 'ψ frames (spec 000 section 1.2): a run of frame_count frames of one band (0 micro 20 ms, 1 meso 250 ms, 2 macro 2 s) from ts_epoch_ms, duration_ms apart; psi_blob starts with its codec version; integrity_crc is CRC-32C of psi_blob, checked by a trigger.';

COMMENT ON COLUMN psi.psi_frames.frame_count IS 'frames in this row''s run; frame i starts at ts_epoch_ms + i * duration_ms';

ALTER TABLE psi.psi_frames ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME psi.psi_frames_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE psi.surprise_events (
    uttr_hash bytea NOT NULL,
    user_id uuid NOT NULL,
    band smallint DEFAULT 0 NOT NULL,
    ts_epoch_ms bigint NOT NULL,
    epsilon real NOT NULL,
    threshold real NOT NULL,
    CONSTRAINT surprise_events_band_known CHECK ((band = ANY (ARRAY[0, 1, 2]))),
    CONSTRAINT surprise_events_epsilon_over_threshold CHECK (((epsilon > threshold) AND (threshold >= (0)::double precision)))
);

COMMENT ON TABLE psi.surprise_events IS 'N400-style surprise (spec 003): the one-step linear predictor of the micro state missed by epsilon = ||psi_pred - psi_obs|| > threshold';

CREATE TABLE psi.utterances (
    uttr_hash bytea NOT NULL,
    user_id uuid NOT NULL,
    entry_id uuid,
    mode text NOT NULL,
    oscillator_count smallint NOT NULL,
    codec_version smallint NOT NULL,
    sample_rate integer NOT NULL,
    frame_ms smallint DEFAULT 20 NOT NULL,
    started_at_ms bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT utterances_codec_version_known CHECK ((codec_version = ANY (ARRAY[0, 1]))),
    CONSTRAINT utterances_frame_ms_positive CHECK ((frame_ms > 0)),
    CONSTRAINT utterances_hash_is_siphash128 CHECK ((length(uttr_hash) = 16)),
    CONSTRAINT utterances_mode_known CHECK ((mode = ANY (ARRAY['analysis'::text, 'synthesis'::text]))),
    CONSTRAINT utterances_oscillator_count_known CHECK ((oscillator_count = ANY (ARRAY[128, 256, 512]))),
    CONSTRAINT utterances_sample_rate_positive CHECK (((sample_rate >= 4000) AND (sample_rate <= 192000)))
);

COMMENT ON TABLE psi.utterances IS 'One voiced reply: the day_table turn it voices, oscillator count, codec, sample rate. uttr_hash is SipHash-2-4-128 of the canonical turn text keyed by the turn''s entry_id (checked on insert).';

CREATE TABLE public.alembic_version (
    version_num character varying(32) NOT NULL
);

ALTER TABLE ONLY kernel.attachment
    ADD CONSTRAINT attachment_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY kernel.card
    ADD CONSTRAINT card_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY kernel.card
    ADD CONSTRAINT card_user_content_key_unique UNIQUE (user_id, content_key);

ALTER TABLE ONLY kernel.config
    ADD CONSTRAINT config_pkey PRIMARY KEY (user_id, key);

ALTER TABLE ONLY kernel.contradiction
    ADD CONSTRAINT contradiction_pair_unique UNIQUE (card_a, card_b, user_id);

ALTER TABLE ONLY kernel.contradiction
    ADD CONSTRAINT contradiction_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY kernel.edge
    ADD CONSTRAINT edge_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY kernel.edge
    ADD CONSTRAINT edge_unique UNIQUE (src_id, dst_id, type, user_id);

ALTER TABLE ONLY kernel.embedding
    ADD CONSTRAINT embedding_one_per_model UNIQUE (mem_id, provider, model, user_id);

ALTER TABLE ONLY kernel.embedding
    ADD CONSTRAINT embedding_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY kernel.journal
    ADD CONSTRAINT journal_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY kernel.stage_transition
    ADD CONSTRAINT stage_transition_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY kernel.text_stats
    ADD CONSTRAINT text_stats_pkey PRIMARY KEY (user_id, lexeme);

ALTER TABLE ONLY kernel.tombstone
    ADD CONSTRAINT tombstone_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY kernel.usage
    ADD CONSTRAINT usage_pkey PRIMARY KEY (mem_id, user_id);

ALTER TABLE ONLY memory.block_relationships
    ADD CONSTRAINT block_relationships_pkey PRIMARY KEY (relationship_id, user_id);

ALTER TABLE ONLY memory.block_relationships
    ADD CONSTRAINT block_relationships_unique UNIQUE (source_block_id, target_block_id, relationship_type, user_id);

ALTER TABLE ONLY memory.block_turns
    ADD CONSTRAINT block_turns_pkey PRIMARY KEY (user_id, block_id, turn_number);

ALTER TABLE ONLY memory.block_zones
    ADD CONSTRAINT block_zones_pkey PRIMARY KEY (block_id, zone_no, user_id);

ALTER TABLE ONLY memory.consolidations
    ADD CONSTRAINT consolidations_pkey PRIMARY KEY (session_id, first_turn, user_id);

ALTER TABLE ONLY memory.day_table
    ADD CONSTRAINT day_table_pkey PRIMARY KEY (entry_id, user_id);

ALTER TABLE ONLY memory.day_table
    ADD CONSTRAINT day_table_session_turn_unique UNIQUE (session_id, turn_number, user_id);

ALTER TABLE ONLY memory.flux_arcs
    ADD CONSTRAINT flux_arcs_pkey PRIMARY KEY (arc_id, user_id);

ALTER TABLE ONLY memory.flux_arcs
    ADD CONSTRAINT flux_arcs_session_start_unique UNIQUE (session_id, start_turn, user_id);

ALTER TABLE ONLY memory.holographic_blocks
    ADD CONSTRAINT holographic_blocks_pkey PRIMARY KEY (block_id, user_id);

ALTER TABLE ONLY memory.night_arcs
    ADD CONSTRAINT night_arcs_pkey PRIMARY KEY (run_id, user_id, arc_id);

ALTER TABLE ONLY memory.night_block_turns
    ADD CONSTRAINT night_block_turns_pkey PRIMARY KEY (run_id, user_id, block_id, turn_number);

ALTER TABLE ONLY memory.night_blocks
    ADD CONSTRAINT night_blocks_pkey PRIMARY KEY (run_id, user_id, block_id);

ALTER TABLE ONLY memory.night_sessions
    ADD CONSTRAINT night_sessions_pkey PRIMARY KEY (run_id, user_id, session_id);

ALTER TABLE ONLY memory.night_stages
    ADD CONSTRAINT night_stages_name_key UNIQUE (name);

ALTER TABLE ONLY memory.night_stages
    ADD CONSTRAINT night_stages_pkey PRIMARY KEY (stage);

ALTER TABLE ONLY memory.night_zones
    ADD CONSTRAINT night_zones_pkey PRIMARY KEY (run_id, user_id, block_id, first_turn);

ALTER TABLE ONLY memory.preoccupation_centroids
    ADD CONSTRAINT preoccupation_centroids_pkey PRIMARY KEY (centroid_id, user_id);

ALTER TABLE ONLY memory.preoccupation_centroids
    ADD CONSTRAINT preoccupation_centroids_user_id_key UNIQUE (user_id);

ALTER TABLE ONLY memory.retention_policy
    ADD CONSTRAINT retention_policy_pkey PRIMARY KEY (tier);

ALTER TABLE ONLY memory.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (session_id, user_id);

ALTER TABLE ONLY memory.sessions
    ADD CONSTRAINT sessions_user_external_ref_unique UNIQUE (user_id, external_ref);

ALTER TABLE ONLY memory.text_stats
    ADD CONSTRAINT text_stats_pkey PRIMARY KEY (user_id, lexeme);

ALTER TABLE ONLY memory.text_totals
    ADD CONSTRAINT text_totals_pkey PRIMARY KEY (user_id);

ALTER TABLE ONLY memory.user_bindings
    ADD CONSTRAINT user_bindings_pkey PRIMARY KEY (user_id, grantee);

ALTER TABLE ONLY memory.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (user_id);

ALTER TABLE ONLY memory.users
    ADD CONSTRAINT users_realm_external_ref_unique UNIQUE (realm, external_ref);

ALTER TABLE ONLY ops.applied_sql
    ADD CONSTRAINT applied_sql_pkey PRIMARY KEY (path);

ALTER TABLE ONLY ops.cycle_runs
    ADD CONSTRAINT cycle_runs_pkey PRIMARY KEY (run_id);

ALTER TABLE ONLY ops.job_attempts
    ADD CONSTRAINT job_attempts_pkey PRIMARY KEY (attempt_id);

ALTER TABLE ONLY ops.jobs
    ADD CONSTRAINT jobs_dedupe_key_key UNIQUE (dedupe_key);

ALTER TABLE ONLY ops.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (job_id);

ALTER TABLE ONLY ops.kernel_runs
    ADD CONSTRAINT kernel_runs_pkey PRIMARY KEY (run_id);

ALTER TABLE ONLY ops.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);

ALTER TABLE ONLY ops.turn_rules
    ADD CONSTRAINT turn_rules_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY ops.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (worker_id);

ALTER TABLE ONLY procedural.causal_edges
    ADD CONSTRAINT causal_edges_pair_unique UNIQUE (source_reflex_id, target_reflex_id, user_id);

ALTER TABLE ONLY procedural.causal_edges
    ADD CONSTRAINT causal_edges_pkey PRIMARY KEY (edge_id, user_id);

ALTER TABLE ONLY procedural.frustration_ledger
    ADD CONSTRAINT frustration_ledger_pkey PRIMARY KEY (entry_id, user_id);

ALTER TABLE ONLY procedural.maintenance_runs
    ADD CONSTRAINT maintenance_runs_pkey PRIMARY KEY (job, run_date);

ALTER TABLE ONLY procedural.procedural_memory
    ADD CONSTRAINT procedural_memory_pkey PRIMARY KEY (reflex_id, user_id);

ALTER TABLE ONLY psi.band_centroids
    ADD CONSTRAINT band_centroids_pkey PRIMARY KEY (uttr_hash, band, ts_epoch_ms, user_id);

ALTER TABLE ONLY psi.psi_frames
    ADD CONSTRAINT psi_frames_natural_key UNIQUE (uttr_hash, band, ts_epoch_ms, user_id);

ALTER TABLE ONLY psi.psi_frames
    ADD CONSTRAINT psi_frames_pkey PRIMARY KEY (id, user_id);

ALTER TABLE ONLY psi.surprise_events
    ADD CONSTRAINT surprise_events_pkey PRIMARY KEY (uttr_hash, band, ts_epoch_ms, user_id);

ALTER TABLE ONLY psi.utterances
    ADD CONSTRAINT utterances_pkey PRIMARY KEY (uttr_hash, user_id);

ALTER TABLE ONLY public.alembic_version
    ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);

CREATE INDEX idx_kernel_attachment_changed ON kernel.attachment USING btree (user_id, changed_at);

CREATE UNIQUE INDEX idx_kernel_attachment_unique ON kernel.attachment USING btree (mem_id, kind, md5(ref), user_id);

CREATE INDEX idx_kernel_card_changed ON kernel.card USING btree (user_id, changed_at);

CREATE INDEX idx_kernel_card_rolled_into ON kernel.card USING btree (rolled_into) WHERE (rolled_into IS NOT NULL);

CREATE INDEX idx_kernel_card_subject ON kernel.card USING btree (user_id, subject) WHERE (subject IS NOT NULL);

CREATE INDEX idx_kernel_card_tags ON kernel.card USING gin (tags);

CREATE INDEX idx_kernel_card_tsv ON kernel.card USING gin (tsv);

CREATE INDEX idx_kernel_contradiction_b ON kernel.contradiction USING btree (card_b);

CREATE INDEX idx_kernel_contradiction_open ON kernel.contradiction USING btree (user_id) WHERE (resolved_at IS NULL);

CREATE INDEX idx_kernel_edge_changed ON kernel.edge USING btree (user_id, changed_at);

CREATE INDEX idx_kernel_edge_dst ON kernel.edge USING btree (dst_id);

CREATE INDEX idx_kernel_embedding_changed ON kernel.embedding USING btree (user_id, changed_at);

CREATE INDEX idx_kernel_embedding_user_dim ON kernel.embedding USING btree (user_id, dim);

CREATE INDEX idx_kernel_embedding_user_model ON kernel.embedding USING btree (user_id, model, provider);

CREATE INDEX idx_kernel_journal_changed ON kernel.journal USING btree (user_id, changed_at);

CREATE INDEX idx_kernel_journal_created ON kernel.journal USING btree (user_id, created_at);

CREATE UNIQUE INDEX idx_kernel_journal_meta_turn ON kernel.journal USING btree (user_id, turn) WHERE (kind = 'meta'::text);

CREATE UNIQUE INDEX idx_kernel_journal_period ON kernel.journal USING btree (user_id, period_start) WHERE (kind = 'compaction'::text);

CREATE UNIQUE INDEX idx_kernel_journal_turn ON kernel.journal USING btree (user_id, turn) WHERE (kind = 'turn'::text);

CREATE INDEX idx_kernel_stage_transition_journal ON kernel.stage_transition USING btree (journal_id);

CREATE INDEX idx_kernel_stage_transition_user ON kernel.stage_transition USING btree (user_id, turn);

CREATE INDEX idx_kernel_tombstone_changed ON kernel.tombstone USING btree (user_id, changed_at);

CREATE INDEX idx_kernel_tombstone_deleted ON kernel.tombstone USING btree (deleted_at);

CREATE INDEX idx_kernel_usage_changed ON kernel.usage USING btree (user_id, changed_at);

CREATE INDEX idx_block_turns_kept_tsv ON memory.block_turns USING gin (kept_tsv);

CREATE INDEX idx_block_turns_session_turn ON memory.block_turns USING btree (session_id, turn_number);

CREATE INDEX idx_block_turns_universal ON memory.block_turns USING hnsw (universal_embedding public.vector_cosine_ops);

CREATE INDEX idx_block_turns_user_time ON memory.block_turns USING btree (user_id, created_at);

CREATE INDEX idx_block_zones_session_turns ON memory.block_zones USING btree (session_id, first_turn);

CREATE INDEX idx_block_zones_user ON memory.block_zones USING btree (user_id);

CREATE UNIQUE INDEX idx_blocks_arc_unique ON memory.holographic_blocks USING btree (arc_id, user_id) WHERE (block_kind = 'arc'::text);

CREATE INDEX idx_blocks_migrated ON memory.holographic_blocks USING btree (migrated_at) WHERE (migrated_at IS NOT NULL);

CREATE INDEX idx_blocks_native ON memory.holographic_blocks USING hnsw (native_embedding_bq public.bit_hamming_ops);

CREATE INDEX idx_blocks_session_turns ON memory.holographic_blocks USING btree (session_id, first_turn, last_turn);

CREATE INDEX idx_blocks_universal ON memory.holographic_blocks USING hnsw (universal_embedding public.vector_cosine_ops);

CREATE INDEX idx_blocks_user ON memory.holographic_blocks USING btree (user_id);

CREATE INDEX idx_consolidations_user ON memory.consolidations USING btree (user_id);

CREATE INDEX idx_day_table_content_tsv ON memory.day_table USING gin (content_tsv);

CREATE INDEX idx_day_table_native_embedding ON memory.day_table USING hnsw (native_embedding_bq public.bit_hamming_ops) WITH (m='32', ef_construction='128');

CREATE UNIQUE INDEX idx_day_table_session_external_ref ON memory.day_table USING btree (session_id, external_ref, user_id) WHERE (external_ref IS NOT NULL);

CREATE INDEX idx_day_table_universal_embedding ON memory.day_table USING hnsw (universal_embedding public.vector_cosine_ops) WITH (m='32', ef_construction='128');

CREATE INDEX idx_day_table_user_time ON memory.day_table USING btree (user_id, created_at);

CREATE INDEX idx_flux_arcs_continued_by ON memory.flux_arcs USING btree (continued_by_arc_id) WHERE (continued_by_arc_id IS NOT NULL);

CREATE INDEX idx_flux_arcs_user_open ON memory.flux_arcs USING btree (user_id, end_time) WHERE open_at_session_end;

CREATE INDEX idx_relationships_target ON memory.block_relationships USING btree (target_block_id);

CREATE INDEX idx_relationships_user ON memory.block_relationships USING btree (user_id);

CREATE INDEX idx_sessions_user ON memory.sessions USING btree (user_id, started_at);

CREATE INDEX idx_cleanup_log_date ON ops.cleanup_log USING btree (cycle_date);

CREATE INDEX idx_cycle_runs_running ON ops.cycle_runs USING btree (run_id) WHERE (status = 'running'::text);

CREATE INDEX idx_cycle_stage_log_run ON ops.cycle_stage_log USING btree (run_id);

CREATE INDEX idx_job_attempts_job ON ops.job_attempts USING btree (job_id);

CREATE INDEX idx_job_attempts_running ON ops.job_attempts USING btree (job_id) WHERE (outcome = 'running'::text);

CREATE INDEX idx_jobs_kind_state ON ops.jobs USING btree (kind, state);

CREATE INDEX idx_jobs_ready ON ops.jobs USING btree (run_after, job_id) WHERE (state = 'queued'::text);

CREATE INDEX idx_jobs_running ON ops.jobs USING btree (heartbeat_at) WHERE (state = 'running'::text);

CREATE INDEX idx_kernel_run_log_run ON ops.kernel_run_log USING btree (run_id);

CREATE INDEX idx_kernel_run_log_user_day ON ops.kernel_run_log USING btree (user_id, maintained_for) WHERE (step = ANY (ARRAY['done'::text, 'failed'::text]));

CREATE INDEX idx_workers_heartbeat ON ops.workers USING btree (heartbeat_at) WHERE (state <> 'stopped'::text);

CREATE INDEX idx_causal_source ON procedural.causal_edges USING btree (source_reflex_id);

CREATE INDEX idx_causal_target ON procedural.causal_edges USING btree (target_reflex_id);

CREATE INDEX idx_causal_user ON procedural.causal_edges USING btree (user_id);

CREATE INDEX idx_frustration_lieutenant ON procedural.frustration_ledger USING btree (lieutenant_id);

CREATE INDEX idx_frustration_success ON procedural.frustration_ledger USING btree (success);

CREATE INDEX idx_frustration_task ON procedural.frustration_ledger USING hnsw (task_embedding public.vector_cosine_ops);

CREATE INDEX idx_frustration_user ON procedural.frustration_ledger USING btree (user_id);

CREATE INDEX idx_procedural_context ON procedural.procedural_memory USING hnsw (context_embedding public.vector_cosine_ops);

CREATE INDEX idx_procedural_owner ON procedural.procedural_memory USING btree (owner_agent_id);

CREATE INDEX idx_procedural_success ON procedural.procedural_memory USING btree (success_rate DESC);

CREATE INDEX idx_procedural_user ON procedural.procedural_memory USING btree (user_id);

CREATE INDEX idx_band_centroids_time ON psi.band_centroids USING btree (ts_epoch_ms);

CREATE INDEX idx_band_centroids_user ON psi.band_centroids USING btree (user_id, band, ts_epoch_ms);

CREATE INDEX idx_psi_frames_user ON psi.psi_frames USING btree (user_id);

CREATE INDEX idx_surprise_events_user ON psi.surprise_events USING btree (user_id, ts_epoch_ms);

CREATE INDEX idx_utterances_entry ON psi.utterances USING btree (entry_id);

CREATE INDEX idx_utterances_user_time ON psi.utterances USING btree (user_id, started_at_ms);

CREATE OR REPLACE VIEW bi.kernel_runs AS
 SELECT r.run_id,
    r.as_of,
    r.started_at,
    r.finished_at,
    r.status,
    r.users_done,
    r.users_failed,
    r.users_left,
    EXTRACT(epoch FROM (r.finished_at - r.started_at)) AS seconds,
    COALESCE(sum(l.rows) FILTER (WHERE (l.step = 'prune stale'::text)), (0)::numeric) AS cards_stale_deleted,
    COALESCE(sum(l.rows) FILTER (WHERE (l.step = 'trim to max_cards'::text)), (0)::numeric) AS cards_trimmed,
    COALESCE(sum(l.rows) FILTER (WHERE (l.step = 'compress'::text)), (0)::numeric) AS notes_rolled_up,
    COALESCE(sum(l.rows) FILTER (WHERE (l.step = 'compact journal'::text)), (0)::numeric) AS journal_entries_compacted,
    COALESCE(sum(l.rows) FILTER (WHERE (l.step = 'vector indexes'::text)), (0)::numeric) AS vector_indexes_built,
    COALESCE(sum(l.rows) FILTER (WHERE (l.step = 'trim tombstones'::text)), (0)::numeric) AS tombstones_trimmed,
    max(l.error) AS an_error
   FROM (ops.kernel_runs r
     LEFT JOIN ops.kernel_run_log l USING (run_id))
  GROUP BY r.run_id;

CREATE TRIGGER attachment_tombstone AFTER DELETE ON kernel.attachment FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER attachment_touch BEFORE INSERT OR UPDATE ON kernel.attachment FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER card_before_write BEFORE INSERT OR UPDATE ON kernel.card FOR EACH ROW EXECUTE FUNCTION kernel._card_before_write();

CREATE TRIGGER card_tombstone AFTER DELETE ON kernel.card FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER config_check BEFORE INSERT OR UPDATE ON kernel.config FOR EACH ROW EXECUTE FUNCTION kernel._config_check();

CREATE TRIGGER config_tombstone AFTER DELETE ON kernel.config FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER config_touch BEFORE INSERT OR UPDATE ON kernel.config FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER contradiction_tombstone AFTER DELETE ON kernel.contradiction FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER contradiction_touch BEFORE INSERT OR UPDATE ON kernel.contradiction FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER edge_tombstone AFTER DELETE ON kernel.edge FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER edge_touch BEFORE INSERT OR UPDATE ON kernel.edge FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER embedding_tombstone AFTER DELETE ON kernel.embedding FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER embedding_touch BEFORE INSERT OR UPDATE ON kernel.embedding FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER journal_tombstone AFTER DELETE ON kernel.journal FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER journal_touch BEFORE INSERT OR UPDATE ON kernel.journal FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER stage_transition_tombstone AFTER DELETE ON kernel.stage_transition FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER stage_transition_touch BEFORE INSERT OR UPDATE ON kernel.stage_transition FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER tombstone_touch BEFORE INSERT OR UPDATE ON kernel.tombstone FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER usage_tombstone AFTER DELETE ON kernel.usage FOR EACH ROW EXECUTE FUNCTION kernel._tombstone();

CREATE TRIGGER usage_touch BEFORE INSERT OR UPDATE ON kernel.usage FOR EACH ROW EXECUTE FUNCTION kernel._touch();

CREATE TRIGGER day_table_before_insert BEFORE INSERT ON memory.day_table FOR EACH ROW EXECUTE FUNCTION memory._day_table_before_insert();

CREATE TRIGGER day_table_text_stats AFTER INSERT ON memory.day_table REFERENCING NEW TABLE AS new_turns FOR EACH STATEMENT EXECUTE FUNCTION memory._day_table_text_stats();

CREATE TRIGGER settings_check BEFORE INSERT OR UPDATE ON ops.settings FOR EACH ROW EXECUTE FUNCTION ops._settings_check();

CREATE TRIGGER settings_turn_rules AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON ops.settings FOR EACH STATEMENT EXECUTE FUNCTION ops._refresh_turn_rules();

CREATE TRIGGER psi_frames_integrity BEFORE INSERT OR UPDATE OF psi_blob, integrity_crc, frame_count ON psi.psi_frames FOR EACH ROW EXECUTE FUNCTION psi._psi_frames_check();

CREATE TRIGGER utterances_check BEFORE INSERT ON psi.utterances FOR EACH ROW EXECUTE FUNCTION psi._utterances_check();

ALTER TABLE ONLY kernel.attachment
    ADD CONSTRAINT attachment_card_same_user FOREIGN KEY (mem_id, user_id) REFERENCES kernel.card(id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.attachment
    ADD CONSTRAINT attachment_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.card
    ADD CONSTRAINT card_rolled_into_same_user FOREIGN KEY (rolled_into, user_id) REFERENCES kernel.card(id, user_id) ON DELETE SET NULL (rolled_into);

ALTER TABLE ONLY kernel.card
    ADD CONSTRAINT card_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.config
    ADD CONSTRAINT config_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.contradiction
    ADD CONSTRAINT contradiction_a_same_user FOREIGN KEY (card_a, user_id) REFERENCES kernel.card(id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.contradiction
    ADD CONSTRAINT contradiction_b_same_user FOREIGN KEY (card_b, user_id) REFERENCES kernel.card(id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.contradiction
    ADD CONSTRAINT contradiction_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.edge
    ADD CONSTRAINT edge_dst_same_user FOREIGN KEY (dst_id, user_id) REFERENCES kernel.card(id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.edge
    ADD CONSTRAINT edge_src_same_user FOREIGN KEY (src_id, user_id) REFERENCES kernel.card(id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.edge
    ADD CONSTRAINT edge_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.embedding
    ADD CONSTRAINT embedding_card_same_user FOREIGN KEY (mem_id, user_id) REFERENCES kernel.card(id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.embedding
    ADD CONSTRAINT embedding_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.journal
    ADD CONSTRAINT journal_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.stage_transition
    ADD CONSTRAINT stage_transition_journal_same_user FOREIGN KEY (journal_id, user_id) REFERENCES kernel.journal(id, user_id) ON DELETE SET NULL (journal_id);

ALTER TABLE ONLY kernel.stage_transition
    ADD CONSTRAINT stage_transition_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.text_stats
    ADD CONSTRAINT text_stats_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.tombstone
    ADD CONSTRAINT tombstone_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.usage
    ADD CONSTRAINT usage_card_same_user FOREIGN KEY (mem_id, user_id) REFERENCES kernel.card(id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY kernel.usage
    ADD CONSTRAINT usage_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.block_relationships
    ADD CONSTRAINT block_relationships_source_block_id_fkey FOREIGN KEY (source_block_id, user_id) REFERENCES memory.holographic_blocks(block_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.block_relationships
    ADD CONSTRAINT block_relationships_target_block_id_fkey FOREIGN KEY (target_block_id, user_id) REFERENCES memory.holographic_blocks(block_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.block_relationships
    ADD CONSTRAINT block_relationships_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.block_turns
    ADD CONSTRAINT block_turns_block_id_fkey FOREIGN KEY (block_id, user_id) REFERENCES memory.holographic_blocks(block_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.block_turns
    ADD CONSTRAINT block_turns_session_id_fkey FOREIGN KEY (session_id, user_id) REFERENCES memory.sessions(session_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.block_turns
    ADD CONSTRAINT block_turns_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.block_zones
    ADD CONSTRAINT block_zones_block_id_fkey FOREIGN KEY (block_id, user_id) REFERENCES memory.holographic_blocks(block_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.block_zones
    ADD CONSTRAINT block_zones_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.consolidations
    ADD CONSTRAINT consolidations_session_id_fkey FOREIGN KEY (session_id, user_id) REFERENCES memory.sessions(session_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.consolidations
    ADD CONSTRAINT consolidations_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.day_table
    ADD CONSTRAINT day_table_session_id_fkey FOREIGN KEY (session_id, user_id) REFERENCES memory.sessions(session_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.day_table
    ADD CONSTRAINT day_table_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.flux_arcs
    ADD CONSTRAINT flux_arcs_continued_by_arc_id_fkey FOREIGN KEY (continued_by_arc_id, user_id) REFERENCES memory.flux_arcs(arc_id, user_id) ON DELETE SET NULL (continued_by_arc_id);

ALTER TABLE ONLY memory.flux_arcs
    ADD CONSTRAINT flux_arcs_session_id_fkey FOREIGN KEY (session_id, user_id) REFERENCES memory.sessions(session_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.flux_arcs
    ADD CONSTRAINT flux_arcs_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.holographic_blocks
    ADD CONSTRAINT holographic_blocks_arc_id_fkey FOREIGN KEY (arc_id, user_id) REFERENCES memory.flux_arcs(arc_id, user_id) ON DELETE SET NULL (arc_id);

ALTER TABLE ONLY memory.holographic_blocks
    ADD CONSTRAINT holographic_blocks_continued_by_fkey FOREIGN KEY (continued_by, user_id) REFERENCES memory.holographic_blocks(block_id, user_id) ON DELETE SET NULL (continued_by);

ALTER TABLE ONLY memory.holographic_blocks
    ADD CONSTRAINT holographic_blocks_continues_from_fkey FOREIGN KEY (continues_from, user_id) REFERENCES memory.holographic_blocks(block_id, user_id) ON DELETE SET NULL (continues_from);

ALTER TABLE ONLY memory.holographic_blocks
    ADD CONSTRAINT holographic_blocks_derived_from_fkey FOREIGN KEY (derived_from, user_id) REFERENCES memory.holographic_blocks(block_id, user_id) ON DELETE SET NULL (derived_from);

ALTER TABLE ONLY memory.holographic_blocks
    ADD CONSTRAINT holographic_blocks_parent_metablock_id_fkey FOREIGN KEY (parent_metablock_id, user_id) REFERENCES memory.holographic_blocks(block_id, user_id) ON DELETE SET NULL (parent_metablock_id);

ALTER TABLE ONLY memory.holographic_blocks
    ADD CONSTRAINT holographic_blocks_session_id_fkey FOREIGN KEY (session_id, user_id) REFERENCES memory.sessions(session_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.holographic_blocks
    ADD CONSTRAINT holographic_blocks_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.preoccupation_centroids
    ADD CONSTRAINT preoccupation_centroids_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.sessions
    ADD CONSTRAINT sessions_continues_session_id_fkey FOREIGN KEY (continues_session_id, user_id) REFERENCES memory.sessions(session_id, user_id) ON DELETE SET NULL (continues_session_id);

ALTER TABLE ONLY memory.sessions
    ADD CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.text_stats
    ADD CONSTRAINT text_stats_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.text_totals
    ADD CONSTRAINT text_totals_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.user_bindings
    ADD CONSTRAINT user_bindings_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY ops.cycle_stage_log
    ADD CONSTRAINT cycle_stage_log_run_id_fkey FOREIGN KEY (run_id) REFERENCES ops.cycle_runs(run_id) ON DELETE CASCADE;

ALTER TABLE ONLY ops.job_attempts
    ADD CONSTRAINT job_attempts_job_id_fkey FOREIGN KEY (job_id) REFERENCES ops.jobs(job_id) ON DELETE CASCADE;

ALTER TABLE ONLY ops.kernel_run_log
    ADD CONSTRAINT kernel_run_log_run_id_fkey FOREIGN KEY (run_id) REFERENCES ops.kernel_runs(run_id) ON DELETE CASCADE;

ALTER TABLE ONLY ops.kernel_run_log
    ADD CONSTRAINT kernel_run_log_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY procedural.causal_edges
    ADD CONSTRAINT causal_edges_source_same_user FOREIGN KEY (source_reflex_id, user_id) REFERENCES procedural.procedural_memory(reflex_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY procedural.causal_edges
    ADD CONSTRAINT causal_edges_target_same_user FOREIGN KEY (target_reflex_id, user_id) REFERENCES procedural.procedural_memory(reflex_id, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY procedural.frustration_ledger
    ADD CONSTRAINT frustration_ledger_user_fk FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY procedural.procedural_memory
    ADD CONSTRAINT procedural_memory_user_fk FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY psi.band_centroids
    ADD CONSTRAINT band_centroids_utterance_fk FOREIGN KEY (uttr_hash, user_id) REFERENCES psi.utterances(uttr_hash, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY psi.psi_frames
    ADD CONSTRAINT psi_frames_utterance_fk FOREIGN KEY (uttr_hash, user_id) REFERENCES psi.utterances(uttr_hash, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY psi.surprise_events
    ADD CONSTRAINT surprise_events_utterance_fk FOREIGN KEY (uttr_hash, user_id) REFERENCES psi.utterances(uttr_hash, user_id) ON DELETE CASCADE;

ALTER TABLE ONLY psi.utterances
    ADD CONSTRAINT utterances_entry_id_fkey FOREIGN KEY (entry_id, user_id) REFERENCES memory.day_table(entry_id, user_id) ON DELETE SET NULL (entry_id);

ALTER TABLE ONLY psi.utterances
    ADD CONSTRAINT utterances_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE kernel.attachment ENABLE ROW LEVEL SECURITY;

CREATE POLICY attachment_acting_user ON kernel.attachment TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY attachment_admin ON kernel.attachment TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.card ENABLE ROW LEVEL SECURITY;

CREATE POLICY card_acting_user ON kernel.card TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY card_admin ON kernel.card TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.config ENABLE ROW LEVEL SECURITY;

CREATE POLICY config_acting_user ON kernel.config TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY config_admin ON kernel.config TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.contradiction ENABLE ROW LEVEL SECURITY;

CREATE POLICY contradiction_acting_user ON kernel.contradiction TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY contradiction_admin ON kernel.contradiction TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.edge ENABLE ROW LEVEL SECURITY;

CREATE POLICY edge_acting_user ON kernel.edge TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY edge_admin ON kernel.edge TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.embedding ENABLE ROW LEVEL SECURITY;

CREATE POLICY embedding_acting_user ON kernel.embedding TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY embedding_admin ON kernel.embedding TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.journal ENABLE ROW LEVEL SECURITY;

CREATE POLICY journal_acting_user ON kernel.journal TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY journal_admin ON kernel.journal TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.stage_transition ENABLE ROW LEVEL SECURITY;

CREATE POLICY stage_transition_acting_user ON kernel.stage_transition TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY stage_transition_admin ON kernel.stage_transition TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.text_stats ENABLE ROW LEVEL SECURITY;

CREATE POLICY text_stats_acting_user ON kernel.text_stats TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY text_stats_admin ON kernel.text_stats TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.tombstone ENABLE ROW LEVEL SECURITY;

CREATE POLICY tombstone_acting_user ON kernel.tombstone TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY tombstone_admin ON kernel.tombstone TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE kernel.usage ENABLE ROW LEVEL SECURITY;

CREATE POLICY usage_acting_user ON kernel.usage TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY usage_admin ON kernel.usage TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.block_relationships ENABLE ROW LEVEL SECURITY;

CREATE POLICY block_relationships_acting_user ON memory.block_relationships TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY block_relationships_admin ON memory.block_relationships TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.block_turns ENABLE ROW LEVEL SECURITY;

CREATE POLICY block_turns_acting_user ON memory.block_turns TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY block_turns_admin ON memory.block_turns TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.block_zones ENABLE ROW LEVEL SECURITY;

CREATE POLICY block_zones_acting_user ON memory.block_zones TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY block_zones_admin ON memory.block_zones TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.consolidations ENABLE ROW LEVEL SECURITY;

CREATE POLICY consolidations_acting_user ON memory.consolidations TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY consolidations_admin ON memory.consolidations TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.day_table ENABLE ROW LEVEL SECURITY;

CREATE POLICY day_table_acting_user ON memory.day_table TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY day_table_admin ON memory.day_table TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.flux_arcs ENABLE ROW LEVEL SECURITY;

CREATE POLICY flux_arcs_acting_user ON memory.flux_arcs TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY flux_arcs_admin ON memory.flux_arcs TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.holographic_blocks ENABLE ROW LEVEL SECURITY;

CREATE POLICY holographic_blocks_acting_user ON memory.holographic_blocks TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY holographic_blocks_admin ON memory.holographic_blocks TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.night_arcs ENABLE ROW LEVEL SECURITY;

CREATE POLICY night_arcs_admin ON memory.night_arcs TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.night_block_turns ENABLE ROW LEVEL SECURITY;

CREATE POLICY night_block_turns_admin ON memory.night_block_turns TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.night_blocks ENABLE ROW LEVEL SECURITY;

CREATE POLICY night_blocks_admin ON memory.night_blocks TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.night_sessions ENABLE ROW LEVEL SECURITY;

CREATE POLICY night_sessions_admin ON memory.night_sessions TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.night_zones ENABLE ROW LEVEL SECURITY;

CREATE POLICY night_zones_admin ON memory.night_zones TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.preoccupation_centroids ENABLE ROW LEVEL SECURITY;

CREATE POLICY preoccupation_centroids_acting_user ON memory.preoccupation_centroids TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY preoccupation_centroids_admin ON memory.preoccupation_centroids TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.sessions ENABLE ROW LEVEL SECURITY;

CREATE POLICY sessions_acting_user ON memory.sessions TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY sessions_admin ON memory.sessions TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.text_stats ENABLE ROW LEVEL SECURITY;

CREATE POLICY text_stats_acting_user ON memory.text_stats TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY text_stats_admin ON memory.text_stats TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.text_totals ENABLE ROW LEVEL SECURITY;

CREATE POLICY text_totals_acting_user ON memory.text_totals TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY text_totals_admin ON memory.text_totals TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.user_bindings ENABLE ROW LEVEL SECURITY;

CREATE POLICY user_bindings_admin ON memory.user_bindings TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.users ENABLE ROW LEVEL SECURITY;

CREATE POLICY users_acting_user ON memory.users TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY users_admin ON memory.users TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE ops.cycle_runs ENABLE ROW LEVEL SECURITY;

CREATE POLICY cycle_runs_admin ON ops.cycle_runs TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE ops.cycle_stage_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY cycle_stage_log_admin ON ops.cycle_stage_log TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE ops.kernel_run_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY kernel_run_log_admin ON ops.kernel_run_log TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE procedural.causal_edges ENABLE ROW LEVEL SECURITY;

CREATE POLICY causal_edges_acting_user ON procedural.causal_edges TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY causal_edges_admin ON procedural.causal_edges TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE procedural.frustration_ledger ENABLE ROW LEVEL SECURITY;

CREATE POLICY frustration_ledger_acting_user ON procedural.frustration_ledger TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY frustration_ledger_admin ON procedural.frustration_ledger TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE procedural.procedural_memory ENABLE ROW LEVEL SECURITY;

CREATE POLICY procedural_memory_acting_user ON procedural.procedural_memory TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY procedural_memory_admin ON procedural.procedural_memory TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE psi.band_centroids ENABLE ROW LEVEL SECURITY;

CREATE POLICY band_centroids_acting_user ON psi.band_centroids TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY band_centroids_admin ON psi.band_centroids TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE psi.psi_frames ENABLE ROW LEVEL SECURITY;

CREATE POLICY psi_frames_acting_user ON psi.psi_frames TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY psi_frames_admin ON psi.psi_frames TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE psi.surprise_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY surprise_events_acting_user ON psi.surprise_events TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY surprise_events_admin ON psi.surprise_events TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE psi.utterances ENABLE ROW LEVEL SECURITY;

CREATE POLICY utterances_acting_user ON psi.utterances TO psimem_writer, psimem_reader USING ((user_id = ( SELECT memory._acting_user() AS _acting_user))) WITH CHECK ((user_id = ( SELECT memory._acting_user() AS _acting_user)));

CREATE POLICY utterances_admin ON psi.utterances TO psimem_admin USING (true) WITH CHECK (true);

GRANT USAGE ON SCHEMA bi TO psimem_bi;
GRANT USAGE ON SCHEMA bi TO psimem_admin;

GRANT USAGE ON SCHEMA kernel TO psimem_writer;
GRANT USAGE ON SCHEMA kernel TO psimem_reader;
GRANT USAGE ON SCHEMA kernel TO psimem_admin;

GRANT USAGE ON SCHEMA memory TO psimem_writer;
GRANT USAGE ON SCHEMA memory TO psimem_reader;
GRANT USAGE ON SCHEMA memory TO psimem_admin;

GRANT USAGE ON SCHEMA ops TO psimem_writer;
GRANT USAGE ON SCHEMA ops TO psimem_reader;
GRANT USAGE ON SCHEMA ops TO psimem_admin;

GRANT USAGE ON SCHEMA procedural TO psimem_writer;
GRANT USAGE ON SCHEMA procedural TO psimem_reader;
GRANT USAGE ON SCHEMA procedural TO psimem_admin;

GRANT USAGE ON SCHEMA psi TO psimem_writer;
GRANT USAGE ON SCHEMA psi TO psimem_reader;
GRANT USAGE ON SCHEMA psi TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.card TO psimem_writer;
GRANT SELECT ON TABLE kernel.card TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.card TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._card(p_user_id uuid, p_card_id uuid, p_field text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._card(p_user_id uuid, p_card_id uuid, p_field text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._card(p_user_id uuid, p_card_id uuid, p_field text) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._card(p_user_id uuid, p_card_id uuid, p_field text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._card_before_write() FROM PUBLIC;

REVOKE ALL ON FUNCTION kernel._checked_subject(p_subject text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._checked_subject(p_subject text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._checked_subject(p_subject text) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._checked_subject(p_subject text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._checked_summary(p_value text, p_field text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._checked_summary(p_value text, p_field text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._checked_summary(p_value text, p_field text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._checked_tags(p_tags text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._checked_tags(p_tags text[]) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._checked_tags(p_tags text[]) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._checked_tags(p_tags text[]) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._checked_text(p_value text, p_field text, p_required boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._checked_text(p_value text, p_field text, p_required boolean) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._checked_text(p_value text, p_field text, p_required boolean) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._checked_text(p_value text, p_field text, p_required boolean) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._checked_time(p_value timestamp with time zone, p_field text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._checked_time(p_value timestamp with time zone, p_field text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._checked_time(p_value timestamp with time zone, p_field text) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._checked_time(p_value timestamp with time zone, p_field text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._checked_vector(p_value real[], p_field text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._checked_vector(p_value real[], p_field text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._checked_vector(p_value real[], p_field text) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._checked_vector(p_value real[], p_field text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._clock(p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._clock(p_now timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._clock(p_now timestamp with time zone) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._clock(p_now timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._compress_subject(p_user_id uuid, p_subject text, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._compress_subject(p_user_id uuid, p_subject text, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._compress_subject(p_user_id uuid, p_subject text, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._config(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._config(p_user_id uuid) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._config(p_user_id uuid) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._config(p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._config_check() FROM PUBLIC;

REVOKE ALL ON FUNCTION kernel._config_problem(p_key text, p_value jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._config_problem(p_key text, p_value jsonb) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._config_problem(p_key text, p_value jsonb) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._config_problem(p_key text, p_value jsonb) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._content_key(p_summary text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._content_key(p_summary text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._content_key(p_summary text) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._content_key(p_summary text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._detect_contradictions(p_user_id uuid, p_card_id uuid, p_vector public.vector, p_provider text, p_model text, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._detect_contradictions(p_user_id uuid, p_card_id uuid, p_vector public.vector, p_provider text, p_model text, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._detect_contradictions(p_user_id uuid, p_card_id uuid, p_vector public.vector, p_provider text, p_model text, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._evidence_list(p_evidence jsonb, p_field text, p_need integer, p_move text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._evidence_list(p_evidence jsonb, p_field text, p_need integer, p_move text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._evidence_list(p_evidence jsonb, p_field text, p_need integer, p_move text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._first_words(p_text text, p_words integer) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._first_words(p_text text, p_words integer) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._first_words(p_text text, p_words integer) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._first_words(p_text text, p_words integer) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._index_type(p_dim integer) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._index_type(p_dim integer) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._index_type(p_dim integer) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._index_type(p_dim integer) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._jaccard(p_a text[], p_b text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._jaccard(p_a text[], p_b text[]) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._jaccard(p_a text[], p_b text[]) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._jaccard(p_a text[], p_b text[]) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._lock_user(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._lock_user(p_user_id uuid) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._lock_user(p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._nearest(p_user_id uuid, p_vector public.vector, p_limit integer, p_model text, p_provider text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._nearest(p_user_id uuid, p_vector public.vector, p_limit integer, p_model text, p_provider text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._nearest(p_user_id uuid, p_vector public.vector, p_limit integer, p_model text, p_provider text) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._nearest(p_user_id uuid, p_vector public.vector, p_limit integer, p_model text, p_provider text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._patch_columns(p_table regclass, p_keys boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._patch_columns(p_table regclass, p_keys boolean) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._patch_columns(p_table regclass, p_keys boolean) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._patch_columns(p_table regclass, p_keys boolean) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._recency(p_updated_at timestamp with time zone, p_last_used_at timestamp with time zone, p_used_count integer, p_now timestamp with time zone, p_half_life interval) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._recency(p_updated_at timestamp with time zone, p_last_used_at timestamp with time zone, p_used_count integer, p_now timestamp with time zone, p_half_life interval) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._recency(p_updated_at timestamp with time zone, p_last_used_at timestamp with time zone, p_used_count integer, p_now timestamp with time zone, p_half_life interval) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._recency(p_updated_at timestamp with time zone, p_last_used_at timestamp with time zone, p_used_count integer, p_now timestamp with time zone, p_half_life interval) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._record_contradiction(p_user_id uuid, p_card_id uuid, p_other_id uuid, p_reason text, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._record_contradiction(p_user_id uuid, p_card_id uuid, p_other_id uuid, p_reason text, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._record_contradiction(p_user_id uuid, p_card_id uuid, p_other_id uuid, p_reason text, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._replaying() FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._replaying() TO psimem_writer;
GRANT ALL ON FUNCTION kernel._replaying() TO psimem_reader;
GRANT ALL ON FUNCTION kernel._replaying() TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._stage(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._stage(p_user_id uuid) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._stage(p_user_id uuid) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._stage(p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._stage_trigger(p_user_id uuid, p_to text, p_evidence jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._stage_trigger(p_user_id uuid, p_to text, p_evidence jsonb) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._stage_trigger(p_user_id uuid, p_to text, p_evidence jsonb) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._subject_of(p_tags text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._subject_of(p_tags text[]) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._subject_of(p_tags text[]) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._summarise(p_texts text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._summarise(p_texts text[]) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._summarise(p_texts text[]) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._tombstone() FROM PUBLIC;

REVOKE ALL ON FUNCTION kernel._touch() FROM PUBLIC;

REVOKE ALL ON FUNCTION kernel._user(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._user(p_user_id uuid) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._user(p_user_id uuid) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._user(p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel._word_count(p_text text) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel._word_count(p_text text) TO psimem_writer;
GRANT ALL ON FUNCTION kernel._word_count(p_text text) TO psimem_reader;
GRANT ALL ON FUNCTION kernel._word_count(p_text text) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.attach(p_user_id uuid, p_card_id uuid, p_kind text, p_ref text, p_title text, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.attach(p_user_id uuid, p_card_id uuid, p_kind text, p_ref text, p_title text, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.attach(p_user_id uuid, p_card_id uuid, p_kind text, p_ref text, p_title text, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.compact_journal(p_user_id uuid, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.compact_journal(p_user_id uuid, p_now timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.compact_journal(p_user_id uuid, p_now timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.compress(p_user_id uuid, p_subject text, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.compress(p_user_id uuid, p_subject text, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.compress(p_user_id uuid, p_subject text, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.contradictions(p_user_id uuid, p_include_resolved boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.contradictions(p_user_id uuid, p_include_resolved boolean) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.contradictions(p_user_id uuid, p_include_resolved boolean) TO psimem_reader;
GRANT ALL ON FUNCTION kernel.contradictions(p_user_id uuid, p_include_resolved boolean) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.delete_card(p_user_id uuid, p_card_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.delete_card(p_user_id uuid, p_card_id uuid) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.delete_card(p_user_id uuid, p_card_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.ensure_vector_indexes() FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.ensure_vector_indexes() TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.export_patch(p_user_id uuid, p_since timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.export_patch(p_user_id uuid, p_since timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.export_patch(p_user_id uuid, p_since timestamp with time zone) TO psimem_reader;
GRANT ALL ON FUNCTION kernel.export_patch(p_user_id uuid, p_since timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.get_config(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.get_config(p_user_id uuid) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.get_config(p_user_id uuid) TO psimem_reader;
GRANT ALL ON FUNCTION kernel.get_config(p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.journal(p_stage text, p_summary text, p_conclusion text, p_reflected_ids uuid[], p_user_id uuid, p_evidence jsonb, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.journal(p_stage text, p_summary text, p_conclusion text, p_reflected_ids uuid[], p_user_id uuid, p_evidence jsonb, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.journal(p_stage text, p_summary text, p_conclusion text, p_reflected_ids uuid[], p_user_id uuid, p_evidence jsonb, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.link(p_user_id uuid, p_src_id uuid, p_dst_id uuid, p_type text, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.link(p_user_id uuid, p_src_id uuid, p_dst_id uuid, p_type text, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.link(p_user_id uuid, p_src_id uuid, p_dst_id uuid, p_type text, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.prune(p_user_id uuid, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.prune(p_user_id uuid, p_now timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.prune(p_user_id uuid, p_now timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_k integer, p_model text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_k integer, p_model text, p_now timestamp with time zone) TO psimem_reader;
GRANT ALL ON FUNCTION kernel.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_k integer, p_model text, p_now timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_k integer, p_model text, p_now timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.refresh_text_stats(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.refresh_text_stats(p_user_id uuid) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.refresh_text_stats(p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.resolve_contradiction(p_user_id uuid, p_contradiction_id uuid, p_keep_card_id uuid, p_delete_other boolean, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.resolve_contradiction(p_user_id uuid, p_contradiction_id uuid, p_keep_card_id uuid, p_delete_other boolean, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.resolve_contradiction(p_user_id uuid, p_contradiction_id uuid, p_keep_card_id uuid, p_delete_other boolean, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.run_maintenance(p_now timestamp with time zone, p_max_users integer) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.run_maintenance(p_now timestamp with time zone, p_max_users integer) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.set_config(p_user_id uuid, p_key text, p_value jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.set_config(p_user_id uuid, p_key text, p_value jsonb) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.set_config(p_user_id uuid, p_key text, p_value jsonb) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.summarise_extractive(p_texts text[], p_max_words integer) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.summarise_extractive(p_texts text[], p_max_words integer) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.summarise_extractive(p_texts text[], p_max_words integer) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.upsert_card(p_user_id uuid, p_summary text, p_tags text[], p_source text, p_subject text, p_embedding real[], p_provider text, p_model text, p_card_id uuid, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.upsert_card(p_user_id uuid, p_summary text, p_tags text[], p_source text, p_subject text, p_embedding real[], p_provider text, p_model text, p_card_id uuid, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.upsert_card(p_user_id uuid, p_summary text, p_tags text[], p_source text, p_subject text, p_embedding real[], p_provider text, p_model text, p_card_id uuid, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION kernel.write_meta_layer(p_user_id uuid, p_summary text, p_patterns text[], p_contradictions text[], p_decisions text[], p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION kernel.write_meta_layer(p_user_id uuid, p_summary text, p_patterns text[], p_contradictions text[], p_decisions text[], p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION kernel.write_meta_layer(p_user_id uuid, p_summary text, p_patterns text[], p_contradictions text[], p_decisions text[], p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._acting_user() FROM PUBLIC;
GRANT ALL ON FUNCTION memory._acting_user() TO psimem_writer;
GRANT ALL ON FUNCTION memory._acting_user() TO psimem_reader;
GRANT ALL ON FUNCTION memory._acting_user() TO psimem_admin;

REVOKE ALL ON FUNCTION memory._bm25_term(p_idf double precision, p_tf integer, p_length integer, p_avg_length double precision, p_k1 double precision, p_b double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._bm25_term(p_idf double precision, p_tf integer, p_length integer, p_avg_length double precision, p_k1 double precision, p_b double precision) TO psimem_reader;
GRANT ALL ON FUNCTION memory._bm25_term(p_idf double precision, p_tf integer, p_length integer, p_avg_length double precision, p_k1 double precision, p_b double precision) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._checked_time(p_value timestamp with time zone, p_field text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._checked_time(p_value timestamp with time zone, p_field text) TO psimem_writer;
GRANT ALL ON FUNCTION memory._checked_time(p_value timestamp with time zone, p_field text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text) TO psimem_writer;
GRANT ALL ON FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text) TO psimem_reader;
GRANT ALL ON FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._condense(p_text text, p_max integer, p_from_end boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._condense(p_text text, p_max integer, p_from_end boolean) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._day_table_before_insert() FROM PUBLIC;

REVOKE ALL ON FUNCTION memory._day_table_text_stats() FROM PUBLIC;

REVOKE ALL ON FUNCTION memory._finite_vector(p_value real[], p_field text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._finite_vector(p_value real[], p_field text) TO psimem_writer;
GRANT ALL ON FUNCTION memory._finite_vector(p_value real[], p_field text) TO psimem_reader;
GRANT ALL ON FUNCTION memory._finite_vector(p_value real[], p_field text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._may_act_for(p_user_id uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION memory._mean_salience(p_scores jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._mean_salience(p_scores jsonb) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_analyze() FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_analyze() TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_backfill_mode(p_run_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_backfill_mode(p_run_id bigint) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_batch(p_run_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_batch(p_run_id bigint) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_consolidate_user(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_consolidate_user(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_cycle_date(p_run_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_cycle_date(p_run_id bigint) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_end(p_since timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_end(p_since timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_finish(p_run_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_finish(p_run_id bigint) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_lock(p_action text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_lock(p_action text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_log(p_run_id bigint, p_user_id uuid, p_entries jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_log(p_run_id bigint, p_user_id uuid, p_entries jsonb) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_open_run(p_cycle_date date, p_user_id uuid, p_session_lock boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_open_run(p_cycle_date date, p_user_id uuid, p_session_lock boolean) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_register_stage(p_stage smallint, p_name text, p_function regprocedure, p_scope text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_register_stage(p_stage smallint, p_name text, p_function regprocedure, p_scope text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_restore_block_indexes(p_defs text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_restore_block_indexes(p_defs text[]) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_run_stage(p_stage smallint, p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_run_stage(p_stage smallint, p_run_id bigint, p_user_id uuid) TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.cycle_runs TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_running(p_run_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_running(p_run_id bigint) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._night_work(p_session_lock boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._night_work(p_session_lock boolean) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._perplexity_salience(p_value double precision, p_baseline double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._perplexity_salience(p_value double precision, p_baseline double precision) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._recall_filter_below(p_session_id uuid, p_user_id uuid, p_window interval, p_rows integer) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._recall_filter_below(p_session_id uuid, p_user_id uuid, p_window interval, p_rows integer) TO psimem_reader;
GRANT ALL ON FUNCTION memory._recall_filter_below(p_session_id uuid, p_user_id uuid, p_window interval, p_rows integer) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._recall_lexemes(p_user_id uuid, p_query_text text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._recall_lexemes(p_user_id uuid, p_query_text text) TO psimem_reader;
GRANT ALL ON FUNCTION memory._recall_lexemes(p_user_id uuid, p_query_text text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._recall_recent(p_space text, p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._recall_recent(p_space text, p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) TO psimem_reader;
GRANT ALL ON FUNCTION memory._recall_recent(p_space text, p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._recall_text_leg(p_user_id uuid, p_query_text text, p_n integer, p_since timestamp with time zone, p_until timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._recall_text_leg(p_user_id uuid, p_query_text text, p_n integer, p_since timestamp with time zone, p_until timestamp with time zone) TO psimem_reader;
GRANT ALL ON FUNCTION memory._recall_text_leg(p_user_id uuid, p_query_text text, p_n integer, p_since timestamp with time zone, p_until timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._recall_vector_leg(p_user_id uuid, p_query public.vector, p_n integer, p_since timestamp with time zone, p_until timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._recall_vector_leg(p_user_id uuid, p_query public.vector, p_n integer, p_since timestamp with time zone, p_until timestamp with time zone) TO psimem_reader;
GRANT ALL ON FUNCTION memory._recall_vector_leg(p_user_id uuid, p_query public.vector, p_n integer, p_since timestamp with time zone, p_until timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION memory._sentence_facts(p_sentence text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory._sentence_facts(p_sentence text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.act_for(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.act_for(p_user_id uuid) TO psimem_writer;
GRANT ALL ON FUNCTION memory.act_for(p_user_id uuid) TO psimem_reader;
GRANT ALL ON FUNCTION memory.act_for(p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.bind_user(p_user_id uuid, p_grantee regrole) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.bind_user(p_user_id uuid, p_grantee regrole) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.blocks_for_transfer(p_block_ids uuid[], p_compress boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.blocks_for_transfer(p_block_ids uuid[], p_compress boolean) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.compress_prose_for_cortex(p_prose jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.compress_prose_for_cortex(p_prose jsonb) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.ensure_user(p_external_ref text, p_tier text, p_display_name text, p_realm regrole) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.ensure_user(p_external_ref text, p_tier text, p_display_name text, p_realm regrole) TO psimem_writer;
GRANT ALL ON FUNCTION memory.ensure_user(p_external_ref text, p_tier text, p_display_name text, p_realm regrole) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.find_user(p_ref text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.find_user(p_ref text) TO psimem_writer;
GRANT ALL ON FUNCTION memory.find_user(p_ref text) TO psimem_reader;
GRANT ALL ON FUNCTION memory.find_user(p_ref text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.import_block(p_block_id uuid, p_session_id uuid, p_prose jsonb, p_universal_embedding real[], p_native_embedding real[], p_at timestamp with time zone, p_coherence_gain double precision, p_salience_composite double precision, p_preoccupation_centroid_id uuid, p_citations uuid[], p_derived_from uuid, p_continues_from uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.import_block(p_block_id uuid, p_session_id uuid, p_prose jsonb, p_universal_embedding real[], p_native_embedding real[], p_at timestamp with time zone, p_coherence_gain double precision, p_salience_composite double precision, p_preoccupation_centroid_id uuid, p_citations uuid[], p_derived_from uuid, p_continues_from uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.mark_migrated(p_block_ids uuid[]) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.mark_migrated(p_block_ids uuid[]) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_00_select_sessions(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_00_select_sessions(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_01_flux_detection(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_01_flux_detection(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_02_block_formation(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_02_block_formation(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_03_salience(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_03_salience(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_04_compression(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_04_compression(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_05_embedding(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_05_embedding(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_06_storage(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_06_storage(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_07_migration_check(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_07_migration_check(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_08_clustering_update(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_08_clustering_update(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.night_09_cleanup(p_run_id bigint, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.night_09_cleanup(p_run_id bigint, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON PROCEDURE memory.night_cycle(IN p_cycle_date date, IN p_user_id uuid) FROM PUBLIC;
GRANT ALL ON PROCEDURE memory.night_cycle(IN p_cycle_date date, IN p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_session_id uuid, p_budget_turns integer, p_since timestamp with time zone, p_until timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_session_id uuid, p_budget_turns integer, p_since timestamp with time zone, p_until timestamp with time zone) TO psimem_reader;
GRANT ALL ON FUNCTION memory.recall(p_user_id uuid, p_query_text text, p_query_vector real[], p_session_id uuid, p_budget_turns integer, p_since timestamp with time zone, p_until timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.recall_blocks(p_query_vector real[], p_k integer, p_user_id uuid, p_expand boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.recall_blocks(p_query_vector real[], p_k integer, p_user_id uuid, p_expand boolean) TO psimem_reader;
GRANT ALL ON FUNCTION memory.recall_blocks(p_query_vector real[], p_k integer, p_user_id uuid, p_expand boolean) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.recall_in_blocks(p_user_id uuid, p_block_ids uuid[], p_query_text text, p_query_vector real[], p_per_block integer) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.recall_in_blocks(p_user_id uuid, p_block_ids uuid[], p_query_text text, p_query_vector real[], p_per_block integer) TO psimem_reader;
GRANT ALL ON FUNCTION memory.recall_in_blocks(p_user_id uuid, p_block_ids uuid[], p_query_text text, p_query_vector real[], p_per_block integer) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.recall_recent(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.recall_recent(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) TO psimem_reader;
GRANT ALL ON FUNCTION memory.recall_recent(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.recall_recent_native(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.recall_recent_native(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) TO psimem_reader;
GRANT ALL ON FUNCTION memory.recall_recent_native(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.record_turn(p_session_id uuid, p_role text, p_content text, p_universal_embedding real[], p_native_embedding real[], p_perplexity_score double precision, p_token_count integer, p_turn_number integer, p_created_at timestamp with time zone, p_external_ref text) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.record_turn(p_session_id uuid, p_role text, p_content text, p_universal_embedding real[], p_native_embedding real[], p_perplexity_score double precision, p_token_count integer, p_turn_number integer, p_created_at timestamp with time zone, p_external_ref text) TO psimem_writer;
GRANT ALL ON FUNCTION memory.record_turn(p_session_id uuid, p_role text, p_content text, p_universal_embedding real[], p_native_embedding real[], p_perplexity_score double precision, p_token_count integer, p_turn_number integer, p_created_at timestamp with time zone, p_external_ref text) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.refresh_preoccupation_centroid(p_user_id uuid, p_as_of timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.refresh_preoccupation_centroid(p_user_id uuid, p_as_of timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.run_night_cycle(p_cycle_date date, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.run_night_cycle(p_cycle_date date, p_user_id uuid) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.start_session(p_user_id uuid, p_external_ref text, p_started_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.start_session(p_user_id uuid, p_external_ref text, p_started_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION memory.start_session(p_user_id uuid, p_external_ref text, p_started_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.summarise_facts(p_session_id uuid, p_first_turn integer, p_last_turn integer) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.summarise_facts(p_session_id uuid, p_first_turn integer, p_last_turn integer) TO psimem_admin;

REVOKE ALL ON FUNCTION memory.unbind_user(p_user_id uuid, p_grantee regrole) FROM PUBLIC;
GRANT ALL ON FUNCTION memory.unbind_user(p_user_id uuid, p_grantee regrole) TO psimem_admin;

REVOKE ALL ON FUNCTION ops._reclaim_stale_jobs() FROM PUBLIC;
GRANT ALL ON FUNCTION ops._reclaim_stale_jobs() TO psimem_admin;

REVOKE ALL ON FUNCTION ops._refresh_turn_rules() FROM PUBLIC;

REVOKE ALL ON FUNCTION ops._setting_problem(p_value jsonb, p_type text, p_min numeric, p_max numeric, p_allowed text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION ops._setting_problem(p_value jsonb, p_type text, p_min numeric, p_max numeric, p_allowed text[]) TO psimem_admin;

REVOKE ALL ON FUNCTION ops._settings_check() FROM PUBLIC;

REVOKE ALL ON FUNCTION ops.fail_job(p_worker_id text, p_job_id bigint, p_error text) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.fail_job(p_worker_id text, p_job_id bigint, p_error text) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.finish_jobs(p_worker_id text, p_job_ids bigint[], p_result jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.finish_jobs(p_worker_id text, p_job_ids bigint[], p_result jsonb) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.install_cron_jobs() FROM PUBLIC;
GRANT ALL ON FUNCTION ops.install_cron_jobs() TO psimem_admin;

REVOKE ALL ON FUNCTION ops.queue_job(p_kind text, p_payload jsonb, p_dedupe_key text, p_max_attempts integer) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.queue_job(p_kind text, p_payload jsonb, p_dedupe_key text, p_max_attempts integer) TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.workers TO psimem_admin;

REVOKE ALL ON FUNCTION ops.register_worker(p_worker_id text, p_host text, p_pid integer, p_code_version text, p_cortex_uri text) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.register_worker(p_worker_id text, p_host text, p_pid integer, p_code_version text, p_cortex_uri text) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.release_jobs(p_worker_id text, p_job_ids bigint[], p_reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.release_jobs(p_worker_id text, p_job_ids bigint[], p_reason text) TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.jobs TO psimem_admin;

REVOKE ALL ON FUNCTION ops.retry_job(p_job_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.retry_job(p_job_id bigint) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.set_schedule(p_job text, p_schedule text) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.set_schedule(p_job text, p_schedule text) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.set_setting(p_key text, p_value jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.set_setting(p_key text, p_value jsonb) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.setting(p_key text) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.setting(p_key text) TO psimem_writer;
GRANT ALL ON FUNCTION ops.setting(p_key text) TO psimem_reader;
GRANT ALL ON FUNCTION ops.setting(p_key text) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.stop_worker(p_worker_id text) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.stop_worker(p_worker_id text) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.take_jobs(p_worker_id text, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.take_jobs(p_worker_id text, p_limit integer) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.trim_history(p_as_of timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.trim_history(p_as_of timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION ops.worker_heartbeat(p_worker_id text) FROM PUBLIC;
GRANT ALL ON FUNCTION ops.worker_heartbeat(p_worker_id text) TO psimem_admin;

REVOKE ALL ON FUNCTION procedural.decay_causal_edges(p_as_of timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION procedural.decay_causal_edges(p_as_of timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION procedural.learn_reflex(p_action text, p_action_type text, p_context_description text, p_context_embedding real[], p_owner_agent_id uuid, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION procedural.learn_reflex(p_action text, p_action_type text, p_context_description text, p_context_embedding real[], p_owner_agent_id uuid, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION procedural.learn_reflex(p_action text, p_action_type text, p_context_description text, p_context_embedding real[], p_owner_agent_id uuid, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION procedural.log_attempt(p_lieutenant_id uuid, p_task_description text, p_worker_generation integer, p_success boolean, p_failure_mode text, p_task_embedding real[], p_worker_mutation_id uuid, p_parent_mutation_id uuid, p_execution_turns integer, p_mutation_description text) FROM PUBLIC;
GRANT ALL ON FUNCTION procedural.log_attempt(p_lieutenant_id uuid, p_task_description text, p_worker_generation integer, p_success boolean, p_failure_mode text, p_task_embedding real[], p_worker_mutation_id uuid, p_parent_mutation_id uuid, p_execution_turns integer, p_mutation_description text) TO psimem_writer;
GRANT ALL ON FUNCTION procedural.log_attempt(p_lieutenant_id uuid, p_task_description text, p_worker_generation integer, p_success boolean, p_failure_mode text, p_task_embedding real[], p_worker_mutation_id uuid, p_parent_mutation_id uuid, p_execution_turns integer, p_mutation_description text) TO psimem_admin;

REVOKE ALL ON FUNCTION procedural.observe_causal_edge(p_source_reflex_id uuid, p_target_reflex_id uuid, p_gap_seconds double precision, p_observed_strength double precision, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION procedural.observe_causal_edge(p_source_reflex_id uuid, p_target_reflex_id uuid, p_gap_seconds double precision, p_observed_strength double precision, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION procedural.observe_causal_edge(p_source_reflex_id uuid, p_target_reflex_id uuid, p_gap_seconds double precision, p_observed_strength double precision, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION procedural.prune_reflexes(p_as_of timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION procedural.prune_reflexes(p_as_of timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION procedural.record_outcome(p_reflex_id uuid, p_success boolean, p_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION procedural.record_outcome(p_reflex_id uuid, p_success boolean, p_at timestamp with time zone) TO psimem_writer;
GRANT ALL ON FUNCTION procedural.record_outcome(p_reflex_id uuid, p_success boolean, p_at timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION psi._codec_install() FROM PUBLIC;
GRANT ALL ON FUNCTION psi._codec_install() TO psimem_writer;
GRANT ALL ON FUNCTION psi._codec_install() TO psimem_reader;
GRANT ALL ON FUNCTION psi._codec_install() TO psimem_admin;

REVOKE ALL ON FUNCTION psi._codec_source() FROM PUBLIC;
GRANT ALL ON FUNCTION psi._codec_source() TO psimem_writer;
GRANT ALL ON FUNCTION psi._codec_source() TO psimem_reader;
GRANT ALL ON FUNCTION psi._codec_source() TO psimem_admin;

REVOKE ALL ON FUNCTION psi._codec_version() FROM PUBLIC;
GRANT ALL ON FUNCTION psi._codec_version() TO psimem_writer;
GRANT ALL ON FUNCTION psi._codec_version() TO psimem_reader;
GRANT ALL ON FUNCTION psi._codec_version() TO psimem_admin;

REVOKE ALL ON FUNCTION psi._psi_frames_check() FROM PUBLIC;

REVOKE ALL ON FUNCTION psi._utterances_check() FROM PUBLIC;

REVOKE ALL ON FUNCTION psi.decay_centroids(p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION psi.decay_centroids(p_now timestamp with time zone) TO psimem_admin;

REVOKE ALL ON FUNCTION psi.decode_frame(p_blob bytea, p_crc bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION psi.decode_frame(p_blob bytea, p_crc bigint) TO psimem_writer;
GRANT ALL ON FUNCTION psi.decode_frame(p_blob bytea, p_crc bigint) TO psimem_reader;
GRANT ALL ON FUNCTION psi.decode_frame(p_blob bytea, p_crc bigint) TO psimem_admin;

REVOKE ALL ON FUNCTION psi.frames(p_uttr_hash bytea, p_band integer, p_from_ms bigint, p_to_ms bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION psi.frames(p_uttr_hash bytea, p_band integer, p_from_ms bigint, p_to_ms bigint) TO psimem_writer;
GRANT ALL ON FUNCTION psi.frames(p_uttr_hash bytea, p_band integer, p_from_ms bigint, p_to_ms bigint) TO psimem_reader;
GRANT ALL ON FUNCTION psi.frames(p_uttr_hash bytea, p_band integer, p_from_ms bigint, p_to_ms bigint) TO psimem_admin;

REVOKE ALL ON FUNCTION psi.verify(p_uttr_hash bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION psi.verify(p_uttr_hash bytea) TO psimem_writer;
GRANT ALL ON FUNCTION psi.verify(p_uttr_hash bytea) TO psimem_reader;
GRANT ALL ON FUNCTION psi.verify(p_uttr_hash bytea) TO psimem_admin;

GRANT SELECT ON TABLE memory.flux_arcs TO psimem_reader;
GRANT SELECT ON TABLE memory.flux_arcs TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.flux_arcs TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.users TO psimem_admin;
GRANT SELECT ON TABLE memory.users TO psimem_writer;
GRANT SELECT ON TABLE memory.users TO psimem_reader;

GRANT SELECT ON TABLE bi.arcs_daily TO psimem_bi;

GRANT SELECT ON TABLE memory.holographic_blocks TO psimem_reader;
GRANT SELECT ON TABLE memory.holographic_blocks TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.holographic_blocks TO psimem_admin;

GRANT SELECT ON TABLE bi.blocks TO psimem_bi;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.cleanup_log TO psimem_admin;

GRANT SELECT ON TABLE bi.cleanup_daily TO psimem_bi;

GRANT SELECT ON TABLE bi.cortex_migration TO psimem_bi;

GRANT SELECT ON TABLE bi.cron_runs TO psimem_bi;

GRANT SELECT ON TABLE bi.cycle_runs TO psimem_bi;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.cycle_stage_log TO psimem_admin;

GRANT SELECT ON TABLE bi.cycle_stages TO psimem_bi;

GRANT SELECT ON TABLE bi.dead_letter_jobs TO psimem_bi;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.day_table TO psimem_admin;
GRANT SELECT ON TABLE memory.day_table TO psimem_reader;
GRANT SELECT,INSERT,DELETE ON TABLE memory.day_table TO psimem_writer;

GRANT SELECT ON TABLE bi.hippocampus_daily TO psimem_bi;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.job_attempts TO psimem_admin;

GRANT SELECT ON TABLE bi.job_attempts TO psimem_bi;

GRANT SELECT ON TABLE bi.job_queue TO psimem_bi;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.contradiction TO psimem_writer;
GRANT SELECT ON TABLE kernel.contradiction TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.contradiction TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.embedding TO psimem_writer;
GRANT SELECT ON TABLE kernel.embedding TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.embedding TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.journal TO psimem_writer;
GRANT SELECT ON TABLE kernel.journal TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.journal TO psimem_admin;

GRANT SELECT ON TABLE kernel.tombstone TO psimem_reader;
GRANT SELECT ON TABLE kernel.tombstone TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.tombstone TO psimem_admin;

GRANT SELECT ON TABLE bi.kernel_health TO psimem_bi;
GRANT SELECT ON TABLE bi.kernel_health TO psimem_admin;

GRANT SELECT ON TABLE bi.kernel_runs TO psimem_bi;
GRANT SELECT ON TABLE bi.kernel_runs TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE procedural.procedural_memory TO psimem_admin;
GRANT SELECT,INSERT,UPDATE ON TABLE procedural.procedural_memory TO psimem_writer;
GRANT SELECT ON TABLE procedural.procedural_memory TO psimem_reader;

GRANT SELECT ON TABLE bi.procedural_success TO psimem_bi;

GRANT SELECT ON TABLE memory.retention_policy TO psimem_reader;
GRANT SELECT ON TABLE memory.retention_policy TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.retention_policy TO psimem_admin;

GRANT SELECT ON TABLE bi.tier_health TO psimem_bi;

GRANT SELECT ON TABLE ops.settings TO psimem_writer;
GRANT SELECT ON TABLE ops.settings TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.settings TO psimem_admin;

GRANT SELECT ON TABLE bi.workers TO psimem_bi;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.attachment TO psimem_writer;
GRANT SELECT ON TABLE kernel.attachment TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.attachment TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.config TO psimem_writer;
GRANT SELECT ON TABLE kernel.config TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.config TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.edge TO psimem_writer;
GRANT SELECT ON TABLE kernel.edge TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.edge TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.usage TO psimem_writer;
GRANT SELECT,INSERT,UPDATE ON TABLE kernel.usage TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.usage TO psimem_admin;

GRANT SELECT ON TABLE kernel.memory_search TO psimem_writer;
GRANT SELECT ON TABLE kernel.memory_search TO psimem_reader;
GRANT SELECT ON TABLE kernel.memory_search TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.stage_transition TO psimem_writer;
GRANT SELECT ON TABLE kernel.stage_transition TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.stage_transition TO psimem_admin;

GRANT SELECT ON TABLE kernel.text_stats TO psimem_reader;
GRANT SELECT,INSERT,DELETE ON TABLE kernel.text_stats TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE kernel.text_stats TO psimem_admin;

GRANT SELECT ON TABLE memory.block_relationships TO psimem_reader;
GRANT SELECT ON TABLE memory.block_relationships TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.block_relationships TO psimem_admin;

GRANT SELECT ON TABLE memory.block_turns TO psimem_reader;
GRANT SELECT ON TABLE memory.block_turns TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.block_turns TO psimem_admin;

GRANT SELECT ON TABLE memory.block_zones TO psimem_reader;
GRANT SELECT ON TABLE memory.block_zones TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.block_zones TO psimem_admin;

GRANT SELECT ON TABLE memory.consolidations TO psimem_reader;
GRANT SELECT ON TABLE memory.consolidations TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.consolidations TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.night_arcs TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.night_block_turns TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.night_blocks TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.night_sessions TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.night_stages TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.night_zones TO psimem_admin;

GRANT SELECT ON TABLE memory.preoccupation_centroids TO psimem_reader;
GRANT SELECT ON TABLE memory.preoccupation_centroids TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.preoccupation_centroids TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.sessions TO psimem_admin;
GRANT SELECT,INSERT,UPDATE ON TABLE memory.sessions TO psimem_writer;
GRANT SELECT ON TABLE memory.sessions TO psimem_reader;

GRANT SELECT ON TABLE memory.text_stats TO psimem_reader;
GRANT SELECT ON TABLE memory.text_stats TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.text_stats TO psimem_admin;

GRANT SELECT ON TABLE memory.text_totals TO psimem_reader;
GRANT SELECT ON TABLE memory.text_totals TO psimem_writer;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.text_totals TO psimem_admin;

GRANT SELECT,INSERT,DELETE ON TABLE memory.user_bindings TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.applied_sql TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.kernel_run_log TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.kernel_runs TO psimem_admin;

GRANT SELECT ON TABLE ops.turn_rules TO psimem_writer;
GRANT SELECT ON TABLE ops.turn_rules TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE procedural.causal_edges TO psimem_admin;
GRANT SELECT,INSERT,UPDATE ON TABLE procedural.causal_edges TO psimem_writer;
GRANT SELECT ON TABLE procedural.causal_edges TO psimem_reader;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE procedural.frustration_ledger TO psimem_admin;
GRANT SELECT,INSERT ON TABLE procedural.frustration_ledger TO psimem_writer;
GRANT SELECT ON TABLE procedural.frustration_ledger TO psimem_reader;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE procedural.maintenance_runs TO psimem_admin;

GRANT SELECT,INSERT ON TABLE psi.band_centroids TO psimem_writer;
GRANT SELECT ON TABLE psi.band_centroids TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE psi.band_centroids TO psimem_admin;

GRANT SELECT,INSERT ON TABLE psi.psi_frames TO psimem_writer;
GRANT SELECT ON TABLE psi.psi_frames TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE psi.psi_frames TO psimem_admin;

GRANT SELECT,INSERT ON TABLE psi.surprise_events TO psimem_writer;
GRANT SELECT ON TABLE psi.surprise_events TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE psi.surprise_events TO psimem_admin;

GRANT SELECT,INSERT,DELETE ON TABLE psi.utterances TO psimem_writer;
GRANT SELECT ON TABLE psi.utterances TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE psi.utterances TO psimem_admin;
