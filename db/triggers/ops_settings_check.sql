-- Every setting is checked against its type and range where it is written: by
-- ops.set_setting, a plain UPDATE or a migration's INSERT alike.

CREATE OR REPLACE FUNCTION ops._setting_problem(p_value jsonb, p_type text, p_min numeric, p_max numeric, p_allowed text[])
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_text text := p_value #>> '{}';
    v_num numeric;
    v_range text := CASE WHEN p_min IS NOT NULL THEN format(' between %s and %s', p_min, p_max) ELSE '' END;
BEGIN
    IF p_type IN ('integer', 'number') THEN
        IF jsonb_typeof(p_value) <> 'number' THEN
            RETURN format('must be a JSON number%s', v_range);
        END IF;
        v_num := v_text::numeric;
        IF p_type = 'integer' AND v_num <> trunc(v_num) THEN
            RETURN format('must be an integer%s', v_range);
        END IF;
    ELSIF jsonb_typeof(p_value) <> 'string' THEN
        RETURN format('must be a JSON string (%s)', p_type);
    ELSIF p_type = 'interval' THEN
        BEGIN
            v_num := extract(epoch FROM v_text::interval);
        EXCEPTION WHEN OTHERS THEN
            RETURN 'must be an interval such as "30 minutes"';
        END;
        v_range := CASE WHEN p_min IS NOT NULL THEN format(' between %s and %s seconds', p_min, p_max) ELSE '' END;
    ELSIF p_type = 'regex' THEN
        BEGIN
            PERFORM '' ~ v_text;
        EXCEPTION WHEN OTHERS THEN
            RETURN format('must be a valid regular expression (%s)', SQLERRM);
        END;
    ELSIF p_type = 'function' THEN
        IF to_regproc(v_text) IS NULL THEN
            RETURN 'must name an existing function';
        END IF;
    ELSIF p_type = 'cron' THEN
        IF v_text !~ '^\s*(\S+\s+){4}\S+\s*$' AND v_text !~ '^\s*[1-5]?[0-9] seconds?\s*$'
           AND v_text !~ '^@(yearly|annually|monthly|weekly|daily|hourly|reboot)$' THEN
            RETURN 'must be a pg_cron schedule: five cron fields, "N seconds" (1-59) or @daily and the like';
        END IF;
    ELSIF p_type = 'enum' AND NOT v_text = ANY(p_allowed) THEN
        RETURN format('must be one of %s', array_to_string(p_allowed, ', '));
    END IF;
    IF v_num IS NOT NULL AND (v_num < p_min OR v_num > p_max) THEN
        RETURN format('must be%s, got %s', v_range, v_text);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ops._setting_problem(jsonb, text, numeric, numeric, text[]) IS
'Internal. What is wrong with a setting value for its type and range (ops.settings value_type, min_value, max_value, allowed), or NULL when nothing is.';
REVOKE ALL ON FUNCTION ops._setting_problem(jsonb, text, numeric, numeric, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops._setting_problem(jsonb, text, numeric, numeric, text[]) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops._settings_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_problem text := ops._setting_problem(NEW.value, NEW.value_type, NEW.min_value, NEW.max_value, NEW.allowed);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'p_value: setting % %', NEW.key, v_problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.key LIKE 'embedding.%' AND NEW.value IS DISTINCT FROM OLD.value THEN
        RAISE EXCEPTION 'p_key: % is fixed at install time (it shapes columns and indexes)', NEW.key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ops._settings_check() IS
'Trigger on ops.settings, before insert or update: refuses a value that does not fit its value_type, range or allowed values, naming the key and the rule, and any change of an embedding.* setting (fixed at install).';
REVOKE ALL ON FUNCTION ops._settings_check() FROM PUBLIC;

CREATE OR REPLACE TRIGGER settings_check
    BEFORE INSERT OR UPDATE ON ops.settings
    FOR EACH ROW EXECUTE FUNCTION ops._settings_check();

-- The day_table trigger reads the flux.* and limits.* settings for every turn; it reads
-- them from one row here, kept whole by every change to ops.settings.
CREATE OR REPLACE FUNCTION ops._refresh_turn_rules()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    INSERT INTO ops.turn_rules (singleton, rules)
    SELECT true, coalesce(jsonb_object_agg(s.key, s.value), '{}')
    FROM ops.settings s WHERE s.key LIKE 'flux.%' OR s.key LIKE 'limits.%'
    ON CONFLICT (singleton) DO UPDATE SET rules = EXCLUDED.rules;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ops._refresh_turn_rules() IS
'Trigger on ops.settings, after each statement that changes it: rewrites ops.turn_rules, the flux.* and limits.* settings as one jsonb row, which the day_table trigger reads for every turn.';
REVOKE ALL ON FUNCTION ops._refresh_turn_rules() FROM PUBLIC;

CREATE OR REPLACE TRIGGER settings_turn_rules
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ops.settings
    FOR EACH STATEMENT EXECUTE FUNCTION ops._refresh_turn_rules();
-- Applying this file brings the row up to date (an install, or settings changed meanwhile).
UPDATE ops.settings SET key = key WHERE false;
