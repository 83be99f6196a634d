-- Users and sessions. A user's external_ref is unique within its realm (the role that
-- created it) and a session's within its user, so that no caller can learn from a unique
-- violation that another user's reference exists.

CREATE OR REPLACE FUNCTION memory._checked_time(p_value timestamptz, p_field text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION memory._checked_time(timestamptz, text) IS
'Internal. Returns the timestamp if it lies between 1970-01-01 and now() plus limits.future_skew; otherwise raises an error naming p_field. A turn dated years ahead would never be consolidated or cleaned up.';
REVOKE ALL ON FUNCTION memory._checked_time(timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._checked_time(timestamptz, text) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION memory.ensure_user(
    p_external_ref text,
    p_tier text DEFAULT 'normal',
    p_display_name text DEFAULT NULL,
    p_realm regrole DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION memory.ensure_user(text, text, text, regrole) IS
'Returns the user with this external reference in the caller''s realm (its login, or p_realm: a role the login is a member of), creating it with the given tier (normal, meso or elder) and binding it to the realm role if it does not exist. Idempotent; an existing user keeps its tier. References of other realms are never seen, so the same reference in two realms is two users. Follow with memory.act_for(user_id).';
REVOKE ALL ON FUNCTION memory.ensure_user(text, text, text, regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.ensure_user(text, text, text, regrole) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION memory.start_session(
    p_user_id uuid,
    p_external_ref text DEFAULT NULL,
    p_started_at timestamptz DEFAULT now())
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION memory.start_session(uuid, text, timestamptz) IS
'Opens a conversation session for a user this database session acts for and returns its id. With an external reference (unique per user) it is idempotent: the same reference returns the same session. p_started_at must lie between 1970 and now() + limits.future_skew.';
REVOKE ALL ON FUNCTION memory.start_session(uuid, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.start_session(uuid, text, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION memory.find_user(p_ref text)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.user_id FROM (
        SELECT u.user_id, 0 AS rank, u.realm FROM memory.users u
        WHERE p_ref ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' AND u.user_id = p_ref::uuid
        UNION ALL
        SELECT u.user_id, CASE WHEN u.realm = session_user THEN 1 ELSE 2 END, u.realm FROM memory.users u
        WHERE u.external_ref = p_ref) c
    WHERE memory._may_act_for(c.user_id)
    ORDER BY c.rank, c.realm
    LIMIT 1
$$;
COMMENT ON FUNCTION memory.find_user(text) IS
'The user a user id or external reference names, among the users this login may act for (its own realm first), or NULL: the same NULL for a user that does not exist and one the login may not act for. For command-line tools that take --user.';
REVOKE ALL ON FUNCTION memory.find_user(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.find_user(text) TO psimem_writer, psimem_reader, psimem_admin;
