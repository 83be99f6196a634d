-- Helpers every Core Memory Kernel function shares: whom a call is for, checked inputs,
-- content keys, word counts, the usage-aware recency score and the patch-replay switch.

CREATE OR REPLACE FUNCTION kernel._user(p_user_id uuid)
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._user(uuid) IS
'Internal. Returns p_user_id if this session sees that user (row-level security: the user it acts for; every user for psimem_admin and the owner), else raises "unknown user" alike for a user that exists and one that does not.';
REVOKE ALL ON FUNCTION kernel._user(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._user(uuid) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._checked_time(p_value timestamptz, p_field text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._checked_time(timestamptz, text) IS
'Internal. The time a write is stamped with: p_value (NULL means now()), refused naming p_field when before 1970 or more than limits.future_skew ahead of now().';
REVOKE ALL ON FUNCTION kernel._checked_time(timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._checked_time(timestamptz, text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._clock(p_now timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._clock(timestamptz) IS
'Internal. The clock a read or a maintenance step runs at: p_now (NULL means now()); any finite time after 1970, the future included, so tests and replays can run on a controlled clock.';
REVOKE ALL ON FUNCTION kernel._clock(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._clock(timestamptz) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._checked_vector(p_value real[], p_field text)
RETURNS vector
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._checked_vector(real[], text) IS
'Internal. A kernel embedding or query vector: any size from 1 to 16000 (embeddings come from many models), finite, not all zeros; errors name p_field. NULL stays NULL.';
REVOKE ALL ON FUNCTION kernel._checked_vector(real[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._checked_vector(real[], text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._checked_tags(p_tags text[])
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._checked_tags(text[]) IS
'Internal. Checks a card''s tags (at most 64, each 1 to 100 characters) and normalises them: lower case, trimmed, duplicates dropped, first-given order kept. A tag key:<name> marks the fact a card states (two cards with one key: tag and different content contradict).';
REVOKE ALL ON FUNCTION kernel._checked_tags(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._checked_tags(text[]) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._checked_subject(p_subject text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._checked_subject(text) IS
'Internal. A card subject, checked (1 to 200 characters) and normalised: lower case, whitespace collapsed.';
REVOKE ALL ON FUNCTION kernel._checked_subject(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._checked_subject(text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._checked_text(p_value text, p_field text, p_required boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION kernel._checked_text(text, text, boolean) IS
'Internal. A text argument of at most kernel.card_max_chars characters, and not empty or blank when p_required; errors name p_field.';
REVOKE ALL ON FUNCTION kernel._checked_text(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._checked_text(text, text, boolean) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._content_key(p_summary text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN encode(sha256(convert_to(lower(regexp_replace(regexp_replace(
               CASE WHEN getdatabaseencoding() = 'UTF8' THEN normalize(p_summary, NFKC) ELSE p_summary END,
               '\s+', ' ', 'g'), '^[\s[:punct:]]+|[\s[:punct:]]+$', '', 'g')), 'UTF8')), 'hex');
END
$$;
COMMENT ON FUNCTION kernel._content_key(text) IS
'Internal. A card''s content key: sha-256 (hex) of its summary normalised (Unicode NFKC on a UTF-8 database, whitespace collapsed, leading and trailing punctuation and space dropped, lower case), so "User likes tea." and " user likes  TEA" are one fact.';
REVOKE ALL ON FUNCTION kernel._content_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._content_key(text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._word_count(p_text text)
RETURNS int
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the same count as the CHECK constraint journal_summary_at_most_70_words
    RETURN length(regexp_replace(p_text, '\S+', 'x', 'g')) - length(regexp_replace(p_text, '\S+', '', 'g'));
END
$$;
COMMENT ON FUNCTION kernel._word_count(text) IS
'Internal. Words in a text: runs of non-space characters.';
REVOKE ALL ON FUNCTION kernel._word_count(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._word_count(text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._first_words(p_text text, p_words int)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN kernel._word_count(p_text) <= p_words THEN btrim(p_text)
                ELSE array_to_string((regexp_split_to_array(btrim(p_text, E' \t\n\r'), '\s+'))[1:p_words], ' ') || '…' END;
END
$$;
COMMENT ON FUNCTION kernel._first_words(text, int) IS
'Internal. A text cut to its first p_words words (an ellipsis marks the cut).';
REVOKE ALL ON FUNCTION kernel._first_words(text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._first_words(text, int) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._jaccard(p_a text[], p_b text[])
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN coalesce(cardinality(p_a), 0) = 0 OR coalesce(cardinality(p_b), 0) = 0 THEN 0
                ELSE (SELECT count(*) FROM (SELECT unnest(p_a) INTERSECT SELECT unnest(p_b)) i)::float8
                   / (SELECT count(*) FROM (SELECT unnest(p_a) UNION SELECT unnest(p_b)) u) END;
END
$$;
COMMENT ON FUNCTION kernel._jaccard(text[], text[]) IS
'Internal. Jaccard similarity of two sets of words (0 when either is empty): how alike two cards are when they have no embeddings to compare.';
REVOKE ALL ON FUNCTION kernel._jaccard(text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._jaccard(text[], text[]) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._recency(p_updated_at timestamptz, p_last_used_at timestamptz, p_used_count int,
                                           p_now timestamptz, p_half_life interval)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN power(0.5, greatest(extract(epoch FROM p_now - greatest(p_updated_at, coalesce(p_last_used_at, p_updated_at))), 0)
                      / extract(epoch FROM p_half_life))::float8
           * (1 + ln(1 + greatest(coalesce(p_used_count, 0), 0)));
END
$$;
COMMENT ON FUNCTION kernel._recency(timestamptz, timestamptz, int, timestamptz, interval) IS
'Internal. Usage-aware recency of a card at p_now: 0.5 ^ (time since it was last updated or recalled / half-life) x (1 + ln(1 + times recalled)). Recall ranks its candidates by it; pruning trims the lowest first.';
REVOKE ALL ON FUNCTION kernel._recency(timestamptz, timestamptz, int, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._recency(timestamptz, timestamptz, int, timestamptz, interval) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._replaying()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN coalesce(current_setting('psimem.kernel_replay', true), '') = 'on'
       AND (pg_has_role(session_user, 'psimem_admin', 'MEMBER')
            OR session_user::text = (SELECT n.nspowner::regrole::text FROM pg_namespace n WHERE n.nspname = 'kernel'));
END
$$;
COMMENT ON FUNCTION kernel._replaying() IS
'Internal. True while a patch from kernel.export_patch is applied (it sets psimem.kernel_replay = on for its transaction) by the owner or psimem_admin: rows then keep the changed_at, content keys and tombstones the patch brings.';
REVOKE ALL ON FUNCTION kernel._replaying() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._replaying() TO psimem_writer, psimem_reader, psimem_admin;
