-- Row bookkeeping of the Core Memory Kernel: content keys and full-text vectors of cards,
-- changed_at on every row (what kernel.export_patch selects by), per-key checks of config
-- values, and a tombstone for every deleted row (what a patch replays as a delete).
-- A patch being applied (kernel._replaying()) brings its own changed_at, content keys and
-- tombstones, so that the database it is applied to ends up identical to the exporting one.

CREATE OR REPLACE FUNCTION kernel._card_before_write()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_replaying boolean := kernel._replaying();
BEGIN
    IF NOT v_replaying THEN
        NEW.content_key := kernel._content_key(NEW.summary);
        NEW.changed_at := now();
    END IF;
    IF TG_OP = 'INSERT' OR NEW.summary IS DISTINCT FROM OLD.summary OR NEW.tags IS DISTINCT FROM OLD.tags
       OR NEW.ts_config IS DISTINCT FROM OLD.ts_config THEN
        NEW.tsv := setweight(to_tsvector(NEW.ts_config, NEW.summary), 'A')
                || setweight(to_tsvector(NEW.ts_config, array_to_string(NEW.tags, ' ')), 'B');
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION kernel._card_before_write() IS
'Trigger on kernel.card, before insert or update: sets content_key from the summary (kernel._content_key), tsv from summary (weight A) and tags (weight B) under the card''s ts_config, and changed_at. While a patch is replayed, content_key and changed_at come from the patch.';
REVOKE ALL ON FUNCTION kernel._card_before_write() FROM PUBLIC;

CREATE OR REPLACE FUNCTION kernel._touch()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF NOT kernel._replaying() THEN
        NEW.changed_at := now();
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION kernel._touch() IS
'Trigger on the kernel tables other than card, before insert or update: sets changed_at to the transaction time (kept from the patch while one is replayed).';
REVOKE ALL ON FUNCTION kernel._touch() FROM PUBLIC;

CREATE OR REPLACE FUNCTION kernel._config_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_problem text := kernel._config_problem(NEW.key, NEW.value);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'p_value: % %', NEW.key, v_problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION kernel._config_check() IS
'Trigger on kernel.config, before insert or update: refuses a value that does not fit its key (kernel._config_problem), naming the key and the rule, whether it comes from kernel.set_config or a plain INSERT or UPDATE.';
REVOKE ALL ON FUNCTION kernel._config_check() FROM PUBLIC;

CREATE OR REPLACE FUNCTION kernel._tombstone()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- A patch carries its own tombstones; a user being deleted takes theirs along.
    IF kernel._replaying() OR NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = OLD.user_id) THEN
        RETURN NULL;
    END IF;
    INSERT INTO kernel.tombstone (user_id, table_name, row_key)
    VALUES (OLD.user_id, TG_TABLE_NAME,
            to_jsonb(OLD) ->> CASE TG_TABLE_NAME WHEN 'usage' THEN 'mem_id' WHEN 'config' THEN 'key' ELSE 'id' END);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION kernel._tombstone() IS
'Trigger on the kernel tables, after delete: records the deleted row''s table and key in kernel.tombstone (as the owner: callers cannot write tombstones themselves), except while a patch is replayed or when the row goes with its user.';
REVOKE ALL ON FUNCTION kernel._tombstone() FROM PUBLIC;

CREATE OR REPLACE TRIGGER card_before_write BEFORE INSERT OR UPDATE ON kernel.card
    FOR EACH ROW EXECUTE FUNCTION kernel._card_before_write();
CREATE OR REPLACE TRIGGER config_check BEFORE INSERT OR UPDATE ON kernel.config
    FOR EACH ROW EXECUTE FUNCTION kernel._config_check();

DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['edge', 'journal', 'config', 'usage', 'attachment', 'embedding', 'contradiction',
                                   'stage_transition', 'tombstone'] LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE ON kernel.%I '
                       'FOR EACH ROW EXECUTE FUNCTION kernel._touch()', v_table || '_touch', v_table);
    END LOOP;
    FOREACH v_table IN ARRAY ARRAY['card', 'edge', 'journal', 'config', 'usage', 'attachment', 'embedding',
                                   'contradiction', 'stage_transition'] LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER DELETE ON kernel.%I '
                       'FOR EACH ROW EXECUTE FUNCTION kernel._tombstone()', v_table || '_tombstone', v_table);
    END LOOP;
END
$$;
