-- ops.setting / ops.set_setting: read and change tunables in ops.settings.

CREATE OR REPLACE FUNCTION ops.setting(p_key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION ops.setting(text) IS
'Returns the jsonb value of one ops.settings row, or raises undefined_object naming the key. Functions read their parameters through it so a missing setting fails loudly instead of defaulting silently.';
REVOKE ALL ON FUNCTION ops.setting(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.setting(text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION ops.set_setting(p_key text, p_value jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
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
COMMENT ON FUNCTION ops.set_setting(text, jsonb) IS
'Changes an existing setting and returns its previous value. The trigger on ops.settings checks the new value against the setting''s value_type and range (min_value, max_value, allowed) and names the rule it breaks; embedding.* settings are fixed at install time and refused.';
REVOKE ALL ON FUNCTION ops.set_setting(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.set_setting(text, jsonb) TO psimem_admin;
