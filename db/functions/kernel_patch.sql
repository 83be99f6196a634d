-- Audit export (spec 001 section 1, step 0: "emit a per-turn idempotent SQL patch"): every
-- kernel change of a user since a point, as SQL that upserts the changed rows and deletes
-- the deleted ones. Applied to an empty psimem database, or twice to the same one, it gives
-- the same kernel rows, changed_at and tombstones included.

CREATE OR REPLACE FUNCTION kernel._patch_columns(p_table regclass, p_keys boolean)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- p_keys: the primary key's columns; otherwise every stored column
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
    FROM pg_attribute a
    WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      AND (NOT p_keys OR a.attnum = ANY((SELECT i.indkey FROM pg_index i WHERE i.indrelid = p_table AND i.indisprimary)::int2[]))
$$;
COMMENT ON FUNCTION kernel._patch_columns(regclass, boolean) IS
'Internal. A table''s stored columns (or only its primary key''s) as a quoted, comma-separated list, in column order: what a patch names in its INSERT and ON CONFLICT.';
REVOKE ALL ON FUNCTION kernel._patch_columns(regclass, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._patch_columns(regclass, boolean) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.export_patch(p_user_id uuid, p_since timestamptz DEFAULT '-infinity')
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_since timestamptz := coalesce(p_since, '-infinity');
    -- parents before children; deletes run in the reverse order
    v_tables text[] := ARRAY['card', 'usage', 'embedding', 'attachment', 'edge', 'contradiction', 'journal',
                             'stage_transition', 'config', 'tombstone'];
    v_table text;
    v_key text;
    v_cols text;
    v_sets text;
    v_keys text[];
    v_chunk jsonb;
    v_out text[];
    v_counts text[] := '{}';
    v_n int;
BEGIN
    v_out := ARRAY[format('-- psimem kernel patch: user %s, every change since %s, exported at %s.', v_user, v_since, now()),
                   '-- Idempotent: apply it as the owner or psimem_admin (psql -f), once or more, in export order.',
                   'BEGIN;',
                   'SET LOCAL psimem.kernel_replay = on;  -- rows keep the changed_at, content keys and tombstones below'];
    -- The user, for a database that lacks it; an existing user row is left as it is.
    v_cols := kernel._patch_columns('memory.users', false);
    v_out := v_out || format('INSERT INTO memory.users (%1$s) SELECT %1$s FROM jsonb_populate_record(NULL::memory.users, %2$L) ON CONFLICT (user_id) DO NOTHING;',
                             v_cols, (SELECT to_jsonb(u) FROM memory.users u WHERE u.user_id = v_user));

    FOR v_i IN REVERSE cardinality(v_tables) - 1 .. 1 LOOP
        v_table := v_tables[v_i];
        v_key := CASE v_table WHEN 'usage' THEN 'mem_id' WHEN 'config' THEN 'key' ELSE 'id' END;
        SELECT array_agg(DISTINCT t.row_key ORDER BY t.row_key) INTO v_keys FROM kernel.tombstone t
        WHERE t.user_id = v_user AND t.table_name = v_table AND t.changed_at >= v_since;
        IF v_keys IS NOT NULL THEN
            v_out := v_out || format('DELETE FROM kernel.%I WHERE user_id = %L AND %I = ANY(%L::%s[]);', v_table, v_user, v_key,
                                     v_keys, CASE v_key WHEN 'key' THEN 'text' ELSE 'uuid' END);
            v_counts := v_counts || format('%s %s deleted', cardinality(v_keys), v_table);
        END IF;
    END LOOP;

    -- Content keys are unique per user and a patch may move them between its cards (one card's
    -- old wording is another's new one): park them first, the upserts set them.
    SELECT array_agg(c.id ORDER BY c.id) INTO v_keys FROM kernel.card c WHERE c.user_id = v_user AND c.changed_at >= v_since;
    IF v_keys IS NOT NULL THEN
        v_out := v_out || format('UPDATE kernel.card SET content_key = ''parked:'' || id WHERE user_id = %L AND id = ANY(%L::uuid[]);',
                                 v_user, v_keys);
    END IF;

    FOREACH v_table IN ARRAY v_tables LOOP
        v_cols := kernel._patch_columns(format('kernel.%I', v_table)::regclass, false);
        v_key := kernel._patch_columns(format('kernel.%I', v_table)::regclass, true);
        SELECT string_agg(format('%s = EXCLUDED.%1$s', c), ', ') INTO v_sets
        FROM unnest(string_to_array(v_cols, ', ')) c WHERE NOT c = ANY(string_to_array(v_key, ', '));
        v_n := 0;
        -- 500 rows a statement, so that a large kernel is not one huge statement
        FOR v_chunk IN EXECUTE format(
            'SELECT jsonb_agg(to_jsonb(t) - ''n'' ORDER BY t.n) FROM (SELECT x.*, row_number() OVER (ORDER BY %s) - 1 AS n '
            'FROM kernel.%I x WHERE x.user_id = $1 AND x.changed_at >= $2) t GROUP BY t.n / 500 ORDER BY t.n / 500',
            v_key, v_table) USING v_user, v_since
        LOOP
            v_out := v_out || format('INSERT INTO kernel.%1$I (%2$s) SELECT %2$s FROM jsonb_populate_recordset(NULL::kernel.%1$I, %3$L) '
                                     'ON CONFLICT (%4$s) DO UPDATE SET %5$s;', v_table, v_cols, v_chunk, v_key, v_sets);
            v_n := v_n + jsonb_array_length(v_chunk);
        END LOOP;
        IF v_n > 0 THEN
            v_counts := v_counts || format('%s %s', v_n, v_table);
        END IF;
    END LOOP;
    v_out := v_out || 'COMMIT;'::text
                   || format('-- %s', coalesce(nullif(array_to_string(v_counts, ', '), ''), 'no change'));
    RETURN array_to_string(v_out, E'\n') || E'\n';
END
$$;
COMMENT ON FUNCTION kernel.export_patch(uuid, timestamptz) IS
'Every kernel change of a user since p_since (by each row''s changed_at, the time of the transaction that wrote it; default: all) as an idempotent SQL patch, one transaction: the user row if missing, deletes of what tombstones say was deleted, then upserts (INSERT ... ON CONFLICT DO UPDATE on the primary key) of every row changed, parents first. Applied by the owner or psimem_admin to an empty psimem database, or twice, it leaves the same kernel rows; applied in order to a database holding the state as of p_since, the state now. Changes of transactions still open at p_since may carry an earlier changed_at: overlapping windows are harmless, so export since a little before the last export. Deletions older than kernel.tombstone_keep are not in it.';
REVOKE ALL ON FUNCTION kernel.export_patch(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.export_patch(uuid, timestamptz) TO psimem_writer, psimem_reader, psimem_admin;
