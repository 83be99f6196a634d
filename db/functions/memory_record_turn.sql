CREATE OR REPLACE FUNCTION memory.record_turn(
    p_session_id uuid,
    p_role text,
    p_content text,
    p_universal_embedding real[] DEFAULT NULL,
    p_native_embedding real[] DEFAULT NULL,
    p_perplexity_score double precision DEFAULT NULL,
    p_token_count int DEFAULT NULL,
    p_turn_number int DEFAULT NULL,
    p_created_at timestamptz DEFAULT now())
RETURNS uuid
LANGUAGE plpgsql
AS $$
DECLARE
    v_entry_id uuid;
BEGIN
    INSERT INTO memory.day_table (session_id, role, content, universal_embedding, native_embedding,
                                  perplexity_score, token_count, turn_number, created_at)
    VALUES (p_session_id, p_role, p_content,
            memory._checked_vector(p_universal_embedding, 'p_universal_embedding', 'universal'),
            memory._checked_vector(p_native_embedding, 'p_native_embedding', 'native'),
            p_perplexity_score, p_token_count, p_turn_number, coalesce(p_created_at, now()))
    RETURNING entry_id INTO v_entry_id;
    RETURN v_entry_id;
END
$$;
COMMENT ON FUNCTION memory.record_turn(uuid, text, text, real[], real[], double precision, int, int, timestamptz) IS
'Records one turn of a session in the day table and returns its entry_id. Embeddings are real[] (a vector argument casts implicitly) of the installed universal and native sizes; perplexity is the agent''s own per-turn score. The day_table trigger checks the row, numbers the turn when p_turn_number is null, fills user and tier from the session, and sets flux_state live. Errors name the argument and the rule.';
