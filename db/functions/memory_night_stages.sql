-- How a Night Cycle stage registers itself in memory.night_stages. Applied before the
-- stage files in db/functions/night/, which call it.

CREATE OR REPLACE FUNCTION memory._night_register_stage(p_stage smallint, p_name text, p_function regprocedure, p_scope text)
RETURNS smallint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION memory._night_register_stage(smallint, text, regprocedure, text) IS
'Internal, Night Cycle: registers (or updates) a stage in memory.night_stages: its number (the order it runs in), name, function and scope (user: for every user of a run; taken: only for a user whose sessions stage 0 took; run: once when the run finishes). The function must take (p_run_id bigint, p_user_id uuid) and return the rows it touched. Each file in db/functions/night/NN_name.sql registers its stage with it.';
REVOKE ALL ON FUNCTION memory._night_register_stage(smallint, text, regprocedure, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._night_register_stage(smallint, text, regprocedure, text) TO psimem_admin;
