-- Whom a database session acts for. Row-level security compares every row's user_id with
-- memory._acting_user(), which believes the setting psimem.user_id (which any role can SET)
-- only where memory.user_bindings lets session_user act for that user.

CREATE OR REPLACE FUNCTION memory._may_act_for(p_user_id uuid)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p_user_id IS NOT NULL
       AND (pg_has_role(session_user, 'psimem_admin', 'MEMBER')
            OR EXISTS (SELECT 1 FROM memory.user_bindings b
                       WHERE b.user_id = p_user_id AND pg_has_role(session_user, b.grantee, 'MEMBER')))
$$;
COMMENT ON FUNCTION memory._may_act_for(uuid) IS
'Internal. True when the login of this session (session_user, which a non-superuser cannot change) may act for the user: it, or a role it is a member of, is bound to the user in memory.user_bindings, or it is a member of psimem_admin.';
REVOKE ALL ON FUNCTION memory._may_act_for(uuid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION memory._acting_user()
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT v.user_id
    FROM (SELECT CASE WHEN s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN s::uuid END AS user_id
          FROM coalesce(current_setting('psimem.user_id', true), '') AS s) v
    WHERE memory._may_act_for(v.user_id)
$$;
COMMENT ON FUNCTION memory._acting_user() IS
'Internal; every row-level security policy calls it. The user named by the setting psimem.user_id if this login may act for that user (memory._may_act_for), otherwise NULL, so that setting psimem.user_id by hand to a user the login is not bound to shows nothing.';
REVOKE ALL ON FUNCTION memory._acting_user() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._acting_user() TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory.act_for(p_user_id uuid)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION memory.act_for(uuid) IS
'Makes this database session act for one user, if its login may (a binding in memory.user_bindings for the login or a role it belongs to, or membership of psimem_admin); otherwise raises insufficient_privilege, with the same message whether or not the user exists. NULL stops acting for anyone. Row-level security then shows psimem_writer and psimem_reader that user''s rows only.';
REVOKE ALL ON FUNCTION memory.act_for(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.act_for(uuid) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory.bind_user(p_user_id uuid, p_grantee regrole)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
COMMENT ON FUNCTION memory.bind_user(uuid, regrole) IS
'psimem_admin: lets a role (a login, or a group role: its members inherit the binding) act for a user. Returns false when the binding existed already.';
REVOKE ALL ON FUNCTION memory.bind_user(uuid, regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.bind_user(uuid, regrole) TO psimem_admin;

CREATE OR REPLACE FUNCTION memory.unbind_user(p_user_id uuid, p_grantee regrole)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gone int;
BEGIN
    DELETE FROM memory.user_bindings b WHERE b.user_id = p_user_id AND b.grantee = p_grantee;
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    RETURN v_gone > 0;
END
$$;
COMMENT ON FUNCTION memory.unbind_user(uuid, regrole) IS
'psimem_admin: removes a role''s binding to a user; sessions of that role acting for the user see nothing from their next query on. Returns false when there was no such binding.';
REVOKE ALL ON FUNCTION memory.unbind_user(uuid, regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.unbind_user(uuid, regrole) TO psimem_admin;
