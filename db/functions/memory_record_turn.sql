CREATE OR REPLACE FUNCTION memory.record_turn(
    p_session_id uuid,
    p_role text,
    p_content text,
    p_universal_embedding real[] DEFAULT NULL,
    p_native_embedding real[] DEFAULT NULL,
    p_perplexity_score double precision DEFAULT NULL,
    p_token_count int DEFAULT NULL,
    p_turn_number int DEFAULT NULL,
    p_created_at timestamptz DEFAULT now(),
    p_external_ref text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION memory.record_turn(uuid, text, text, real[], real[], double precision, int, int, timestamptz, text) IS
'Records one turn of a session in the day table and returns its entry_id. Embeddings are real[] (a vector argument casts implicitly) of the installed universal and native sizes; perplexity is the agent''s own per-turn score. The day_table trigger checks the row, numbers the turn when p_turn_number is null, fills user and tier from the session, and sets flux_state live. p_external_ref, the agent''s own id for the turn (unique within the session), makes a retry of an unacknowledged commit return the turn already recorded instead of a second one. Errors name the argument and the rule.';
REVOKE ALL ON FUNCTION memory.record_turn(uuid, text, text, real[], real[], double precision, int, int, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.record_turn(uuid, text, text, real[], real[], double precision, int, int, timestamptz, text) TO psimem_writer, psimem_admin;
