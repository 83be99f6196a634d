-- Contradictions: a note that conflicts with another note of the same user (both carry one
-- key: tag, or their embeddings of one model are near-identical, with different content) is
-- neither overwritten nor deleted. Both stay, a relates_to edge links them, and
-- kernel.contradictions lists the pair until kernel.resolve_contradiction settles it.

CREATE OR REPLACE FUNCTION kernel._detect_contradictions(p_user_id uuid, p_card_id uuid, p_vector vector,
                                                         p_provider text, p_model text, p_at timestamptz)
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._detect_contradictions(uuid, uuid, vector, text, text, timestamptz) IS
'Internal. The notes of the user that a note contradicts: those sharing one of its key: tags, and those whose embedding of the same provider/model has cosine similarity at least kernel.contradiction_similarity, in either case with different content. Records each pair (kernel._record_contradiction) and returns the other cards'' ids where the pair is open.';
REVOKE ALL ON FUNCTION kernel._detect_contradictions(uuid, uuid, vector, text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._detect_contradictions(uuid, uuid, vector, text, text, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._record_contradiction(p_user_id uuid, p_card_id uuid, p_other_id uuid, p_reason text,
                                                        p_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._record_contradiction(uuid, uuid, uuid, text, timestamptz) IS
'Internal. Records that two cards of a user contradict (once per pair) and links the new one to the other with a relates_to edge. Returns whether the pair is open (false once resolved).';
REVOKE ALL ON FUNCTION kernel._record_contradiction(uuid, uuid, uuid, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._record_contradiction(uuid, uuid, uuid, text, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.contradictions(p_user_id uuid, p_include_resolved boolean DEFAULT false)
RETURNS TABLE (contradiction_id uuid, card_a uuid, summary_a text, card_b uuid, summary_b text, reason text,
               detected_at timestamptz, resolved_at timestamptz, kept_id uuid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT k.id, k.card_a, a.summary, k.card_b, b.summary, k.reason, k.detected_at, k.resolved_at, k.kept_id
    FROM kernel.contradiction k
    JOIN kernel.card a ON a.id = k.card_a
    JOIN kernel.card b ON b.id = k.card_b
    WHERE k.user_id = kernel._user(p_user_id) AND (p_include_resolved OR k.resolved_at IS NULL)
    ORDER BY k.detected_at, k.id
$$;
COMMENT ON FUNCTION kernel.contradictions(uuid, boolean) IS
'The contradicting card pairs of a user with both summaries and why they conflict, oldest first: the open ones (until kernel.resolve_contradiction), or with p_include_resolved also the resolved ones.';
REVOKE ALL ON FUNCTION kernel.contradictions(uuid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.contradictions(uuid, boolean) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.resolve_contradiction(p_user_id uuid, p_contradiction_id uuid,
                                                        p_keep_card_id uuid DEFAULT NULL, p_delete_other boolean DEFAULT true,
                                                        p_at timestamptz DEFAULT NULL)
RETURNS TABLE (contradiction_id uuid, kept_id uuid, deleted_id uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel.resolve_contradiction(uuid, uuid, uuid, boolean, timestamptz) IS
'Resolves an open contradiction explicitly: with p_keep_card_id, that card stands and the other is deleted (unless p_delete_other is false); without it both stand as compatible. Either way the pair no longer surfaces in kernel.contradictions, and writing one of its cards again does not reopen it. Returns what was kept and deleted.';
REVOKE ALL ON FUNCTION kernel.resolve_contradiction(uuid, uuid, uuid, boolean, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.resolve_contradiction(uuid, uuid, uuid, boolean, timestamptz) TO psimem_writer, psimem_admin;
