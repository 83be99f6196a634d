-- Cards (MemoryCard), their edges, attachments and the memory_search view. Versioning is
-- off (spec 001 section 6): a card is overwritten in place and updated_at moves. The same
-- fact written again is the same card: INSERT ... ON CONFLICT on the per-user content key
-- decides, so two writers racing on one fact cannot both insert it.

CREATE OR REPLACE FUNCTION kernel._subject_of(p_tags text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT t FROM unnest(p_tags) WITH ORDINALITY AS x(t, n) WHERE t NOT LIKE 'key:%' ORDER BY n LIMIT 1);
END
$$;
COMMENT ON FUNCTION kernel._subject_of(text[]) IS
'Internal. The subject a card without p_subject gets: its first tag that is not a key: tag, or NULL.';
REVOKE ALL ON FUNCTION kernel._subject_of(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._subject_of(text[]) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._card(p_user_id uuid, p_card_id uuid, p_field text)
RETURNS kernel.card
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._card(uuid, uuid, text) IS
'Internal. The card p_card_id of the user, or "unknown card" naming p_field, alike for a card of another user and one that does not exist.';
REVOKE ALL ON FUNCTION kernel._card(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._card(uuid, uuid, text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._lock_user(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('psimem.kernel.user'), hashtext(p_user_id::text));
END
$$;
COMMENT ON FUNCTION kernel._lock_user(uuid) IS
'Internal. Serialises the writes of one user''s kernel until commit: contradiction checks, compression and journal turn numbers then see every committed card. Different users never wait for each other (up to hash collisions).';
REVOKE ALL ON FUNCTION kernel._lock_user(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._lock_user(uuid) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.upsert_card(
    p_user_id uuid, p_summary text, p_tags text[] DEFAULT NULL, p_source text DEFAULT NULL,
    p_subject text DEFAULT NULL, p_embedding real[] DEFAULT NULL, p_provider text DEFAULT NULL,
    p_model text DEFAULT NULL, p_card_id uuid DEFAULT NULL, p_at timestamptz DEFAULT NULL)
RETURNS TABLE (card_id uuid, action text, contradicts uuid[], summary_card_id uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel.upsert_card(uuid, text, text[], text, text, real[], text, text, uuid, timestamptz) IS
'Writes one card for a user. Without p_card_id: a new card, or, when the user already has a card stating the same fact (the normalised summary''s content key), that card, overwritten in place: newest wording, tags merged, updated_at moved to p_at; never a second card, also when two writers race. With p_card_id: that card''s summary (and given tags, source, subject) overwritten. p_embedding (with p_provider and p_model) adds or replaces the card''s embedding of that model; any size, one size per model. Then checks for contradictions (kernel.contradictions) and, for a note with a subject (p_subject, else its first tag that is not key:), compresses the subject once it holds kernel.compress_after live notes. Returns the card id, inserted or updated, the cards it contradicts and the summary card the subject''s older notes were rolled into, if that happened.';
REVOKE ALL ON FUNCTION kernel.upsert_card(uuid, text, text[], text, text, real[], text, text, uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.upsert_card(uuid, text, text[], text, text, real[], text, text, uuid, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.delete_card(p_user_id uuid, p_card_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
BEGIN
    PERFORM kernel._card(v_user, p_card_id, 'p_card_id');
    DELETE FROM kernel.card c WHERE c.id = p_card_id AND c.user_id = v_user;
    RETURN p_card_id;
END
$$;
COMMENT ON FUNCTION kernel.delete_card(uuid, uuid) IS
'Deletes one card of a user, with its edges, usage, attachments, embeddings and contradictions; a tombstone records it for kernel.export_patch. Returns its id; an unknown card (or another user''s) is an error.';
REVOKE ALL ON FUNCTION kernel.delete_card(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.delete_card(uuid, uuid) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.link(p_user_id uuid, p_src_id uuid, p_dst_id uuid, p_type text DEFAULT 'relates_to',
                                       p_at timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel.link(uuid, uuid, uuid, text, timestamptz) IS
'Links two cards of a user with an edge of type relates_to (default) or reflects_on; linking again returns the existing edge. Returns the edge id.';
REVOKE ALL ON FUNCTION kernel.link(uuid, uuid, uuid, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.link(uuid, uuid, uuid, text, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.attach(p_user_id uuid, p_card_id uuid, p_kind text, p_ref text, p_title text DEFAULT NULL,
                                         p_at timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
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
$$;
COMMENT ON FUNCTION kernel.attach(uuid, uuid, text, text, text, timestamptz) IS
'Attaches a reference to a card: kind url (an absolute URL), file (a path) or ref (any identifier), with an optional title. Attaching the same reference again updates its title. Returns the attachment id.';
REVOKE ALL ON FUNCTION kernel.attach(uuid, uuid, text, text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.attach(uuid, uuid, text, text, text, timestamptz) TO psimem_writer, psimem_admin;

-- security_invoker: the caller's row-level security applies, not the view owner's.
CREATE OR REPLACE VIEW kernel.memory_search WITH (security_invoker = true) AS
SELECT c.id, c.user_id, c.summary, c.tags, c.source, c.kind, c.subject, c.rolled_into, c.created_at, c.updated_at,
       c.ts_config, c.tsv, coalesce(u.used_count, 0) AS used_count, u.last_used_at,
       greatest(c.updated_at, u.last_used_at) AS last_touched_at
FROM kernel.card c
LEFT JOIN kernel.usage u ON u.mem_id = c.id;
COMMENT ON VIEW kernel.memory_search IS
'Cards with their usage (spec 001 section 4: memory_search joins memory_usage): what full-text search and usage-aware recency read. Row-level security of the caller applies (security_invoker).';
GRANT SELECT ON kernel.memory_search TO psimem_writer, psimem_reader, psimem_admin;
