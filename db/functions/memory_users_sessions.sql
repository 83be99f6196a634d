-- Users, sessions and whom a database session acts for.

CREATE OR REPLACE FUNCTION memory.act_for(p_user_id uuid)
RETURNS uuid
LANGUAGE sql
AS $$
    SELECT set_config('psimem.user_id', coalesce(p_user_id::text, ''), false)::uuid
$$;
COMMENT ON FUNCTION memory.act_for(uuid) IS
'Makes this database session act for one user (sets psimem.user_id). Row-level security shows psimem_writer and psimem_reader only that user''s users, sessions and turns; with no user set they see nothing.';

CREATE OR REPLACE FUNCTION memory.ensure_user(
    p_external_ref text,
    p_tier text DEFAULT 'normal',
    p_display_name text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
AS $$
DECLARE
    v_user_id uuid;
BEGIN
    IF p_external_ref IS NULL OR btrim(p_external_ref) = '' THEN
        RAISE EXCEPTION 'p_external_ref: must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_tier NOT IN ('normal', 'meso', 'elder') THEN
        RAISE EXCEPTION 'p_tier: must be one of normal, meso, elder (got %)', quote_nullable(p_tier)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO memory.users (external_ref, tier, display_name)
    VALUES (p_external_ref, p_tier, p_display_name)
    ON CONFLICT (external_ref) DO NOTHING
    RETURNING user_id INTO v_user_id;
    IF v_user_id IS NULL THEN
        SELECT u.user_id INTO v_user_id FROM memory.users u WHERE u.external_ref = p_external_ref;
    END IF;
    RETURN v_user_id;
END
$$;
COMMENT ON FUNCTION memory.ensure_user(text, text, text) IS
'Returns the user with this external reference, creating it with the given tier (normal, meso or elder) if it does not exist. Idempotent; an existing user keeps its tier.';

CREATE OR REPLACE FUNCTION memory.start_session(
    p_user_id uuid,
    p_external_ref text DEFAULT NULL,
    p_started_at timestamptz DEFAULT now())
RETURNS uuid
LANGUAGE plpgsql
AS $$
DECLARE
    v_session_id uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO memory.sessions (user_id, external_ref, started_at)
    VALUES (p_user_id, p_external_ref, p_started_at)
    ON CONFLICT (external_ref) DO NOTHING
    RETURNING session_id INTO v_session_id;
    IF v_session_id IS NULL THEN
        SELECT s.session_id INTO v_session_id FROM memory.sessions s
        WHERE s.external_ref = p_external_ref AND s.user_id = p_user_id;
        IF v_session_id IS NULL THEN
            RAISE EXCEPTION 'p_external_ref: session % belongs to another user', quote_literal(p_external_ref)
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    RETURN v_session_id;
END
$$;
COMMENT ON FUNCTION memory.start_session(uuid, text, timestamptz) IS
'Opens a conversation session for a user and returns its id. With an external reference it is idempotent: the same reference returns the same session.';
