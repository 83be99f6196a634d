-- MemoryConfig (spec 001 section 3): a user's overrides of the kernel defaults kept in
-- ops.settings (kernel.*). The spec's five keys only; each value is JSON checked per key.

CREATE OR REPLACE FUNCTION kernel._config_problem(p_key text, p_value jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_item record;
    v_max int;
BEGIN
    IF p_value IS NULL THEN
        RETURN 'must not be null';
    END IF;
    CASE p_key
    WHEN 'emit_auto_on' THEN
        IF jsonb_typeof(p_value) <> 'boolean' THEN
            RETURN 'must be true or false';
        END IF;
    WHEN 'versioning' THEN
        IF p_value <> 'false'::jsonb THEN
            RETURN 'must be false: the kernel keeps no versions, it overwrites a card in place (spec 001 section 6)';
        END IF;
    WHEN 'recall_top_k' THEN
        IF jsonb_typeof(p_value) <> 'number' OR (p_value #>> '{}')::numeric NOT BETWEEN 1 AND 100
           OR (p_value #>> '{}')::numeric <> trunc((p_value #>> '{}')::numeric) THEN
            RETURN 'must be a whole number between 1 and 100';
        END IF;
    WHEN 'recall_weights' THEN
        IF jsonb_typeof(p_value) <> 'object' OR p_value = '{}'::jsonb THEN
            RETURN 'must be an object with weights text, vector and/or recency';
        END IF;
        FOR v_item IN SELECT * FROM jsonb_each(p_value) LOOP
            IF v_item.key NOT IN ('text', 'vector', 'recency') THEN
                RETURN format('has no weight %s (it takes text, vector and recency)', v_item.key);
            END IF;
            IF jsonb_typeof(v_item.value) <> 'number' OR (v_item.value #>> '{}')::numeric NOT BETWEEN 0 AND 100 THEN
                RETURN format('.%s must be a number between 0 and 100', v_item.key);
            END IF;
        END LOOP;
    WHEN 'prune_policy' THEN
        IF jsonb_typeof(p_value) <> 'object' OR p_value = '{}'::jsonb THEN
            RETURN 'must be an object with stale_after_days and/or max_cards';
        END IF;
        FOR v_item IN SELECT * FROM jsonb_each(p_value) LOOP
            IF v_item.key NOT IN ('stale_after_days', 'max_cards') THEN
                RETURN format('has no field %s (it takes stale_after_days and max_cards)', v_item.key);
            END IF;
            CONTINUE WHEN jsonb_typeof(v_item.value) = 'null';  -- null: no limit
            v_max := CASE v_item.key WHEN 'max_cards' THEN 100000000 ELSE 36500 END;
            IF jsonb_typeof(v_item.value) <> 'number'
               OR (v_item.value #>> '{}')::numeric <> trunc((v_item.value #>> '{}')::numeric)
               OR (v_item.value #>> '{}')::numeric NOT BETWEEN 1 AND v_max THEN
                RETURN format('.%s must be null (no limit) or a whole number between 1 and %s', v_item.key, v_max);
            END IF;
        END LOOP;
    ELSE
        RETURN 'is not a key: use one of emit_auto_on, versioning, prune_policy, recall_top_k, recall_weights';
    END CASE;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION kernel._config_problem(text, jsonb) IS
'Internal. What is wrong with a MemoryConfig value for its key, or NULL: emit_auto_on a boolean; versioning false (only); recall_top_k a whole number 1-100; recall_weights an object of text, vector, recency weights 0-100; prune_policy an object of stale_after_days (1-36500) and max_cards (1-100000000), each null for no limit.';
REVOKE ALL ON FUNCTION kernel._config_problem(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._config_problem(text, jsonb) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._config(p_user_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    -- A user's recall_weights or prune_policy may name some fields only: the rest stay defaults.
    RETURN (WITH d AS (
        SELECT jsonb_build_object(
            'emit_auto_on', true, 'versioning', false,
            'recall_top_k', ops.setting('kernel.recall_top_k'),
            'recall_weights', jsonb_build_object('text', ops.setting('kernel.recall_weight_text'),
                                                 'vector', ops.setting('kernel.recall_weight_vector'),
                                                 'recency', ops.setting('kernel.recall_weight_recency')),
            'prune_policy', jsonb_build_object('stale_after_days', ops.setting('kernel.prune_stale_after_days'),
                                               'max_cards', ops.setting('kernel.prune_max_cards'))) AS v),
    u AS (SELECT coalesce(jsonb_object_agg(c.key, c.value), '{}'::jsonb) AS v FROM kernel.config c WHERE c.user_id = p_user_id)
    SELECT d.v || u.v || jsonb_build_object(
        'recall_weights', (d.v -> 'recall_weights') || coalesce(u.v -> 'recall_weights', '{}'::jsonb),
        'prune_policy', (d.v -> 'prune_policy') || coalesce(u.v -> 'prune_policy', '{}'::jsonb))
    FROM d, u);
END
$$;
COMMENT ON FUNCTION kernel._config(uuid) IS
'Internal. A user''s effective MemoryConfig as one JSON object: the defaults (emit_auto_on true, versioning false, the kernel.* settings) overridden by the user''s kernel.config rows, field by field for recall_weights and prune_policy.';
REVOKE ALL ON FUNCTION kernel._config(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._config(uuid) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.set_config(p_user_id uuid, p_key text, p_value jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_problem text;
BEGIN
    IF p_key IS NULL OR p_key NOT IN ('emit_auto_on', 'versioning', 'prune_policy', 'recall_top_k', 'recall_weights') THEN
        RAISE EXCEPTION 'p_key: must be one of emit_auto_on, versioning, prune_policy, recall_top_k, recall_weights'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_value IS NULL THEN
        DELETE FROM kernel.config c WHERE c.user_id = v_user AND c.key = p_key;
    ELSE
        v_problem := kernel._config_problem(p_key, p_value);
        IF v_problem IS NOT NULL THEN
            RAISE EXCEPTION 'p_value: % %', p_key, v_problem USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO kernel.config AS c (user_id, key, value) VALUES (v_user, p_key, p_value)
        ON CONFLICT (user_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
        WHERE c.value IS DISTINCT FROM EXCLUDED.value;
    END IF;
    RETURN kernel._config(v_user) -> p_key;
END
$$;
COMMENT ON FUNCTION kernel.set_config(uuid, text, jsonb) IS
'Sets one MemoryConfig key for a user (emit_auto_on, versioning, prune_policy, recall_top_k, recall_weights); a NULL value removes the override. Refuses a value that does not fit its key, naming the key and the rule. Returns the key''s effective value.';
REVOKE ALL ON FUNCTION kernel.set_config(uuid, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.set_config(uuid, text, jsonb) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.get_config(p_user_id uuid)
RETURNS TABLE (key text, value jsonb, overridden boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT e.key, e.value, EXISTS (SELECT 1 FROM kernel.config c WHERE c.user_id = p_user_id AND c.key = e.key)
    FROM jsonb_each(kernel._config(kernel._user(p_user_id))) e
    ORDER BY e.key
$$;
COMMENT ON FUNCTION kernel.get_config(uuid) IS
'A user''s effective MemoryConfig, one row per key, and whether the user overrides the default.';
REVOKE ALL ON FUNCTION kernel.get_config(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.get_config(uuid) TO psimem_writer, psimem_reader, psimem_admin;
