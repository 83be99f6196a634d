-- ops.setting / ops.set_setting: read and change tunables in ops.settings.

CREATE OR REPLACE FUNCTION ops.setting(p_key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
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

CREATE OR REPLACE FUNCTION ops.set_setting(p_key text, p_value jsonb)
RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    v_old jsonb;
BEGIN
    IF p_key LIKE 'embedding.%' THEN
        RAISE EXCEPTION 'p_key: % is fixed at install time (it shapes columns and indexes)', p_key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_old := ops.setting(p_key);
    IF jsonb_typeof(v_old) <> jsonb_typeof(p_value) THEN
        RAISE EXCEPTION 'p_value: % must be a JSON %, got %', p_key, jsonb_typeof(v_old), jsonb_typeof(p_value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE ops.settings SET value = p_value, updated_at = now() WHERE key = p_key;
    RETURN v_old;
END
$$;
COMMENT ON FUNCTION ops.set_setting(text, jsonb) IS
'Changes an existing setting and returns its previous value. The new value must have the same JSON type as the old one; embedding.* settings are fixed at install time and refused.';
