-- Night Cycle stage 8: one RAPTOR re-clustering after the run's migrations (once per run).

CREATE OR REPLACE FUNCTION memory.night_08_clustering_update(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    PERFORM memory._night_cycle_date(p_run_id);  -- refuses an unknown run
    -- One pending re-clustering covers any number of migrations (the worker runs it after
    -- them). Migrations the worker already finished during the run count too.
    INSERT INTO ops.jobs (kind, payload, dedupe_key)
    SELECT 'cluster_update', jsonb_build_object('run_id', p_run_id), 'cluster_update:run:' || p_run_id
    WHERE EXISTS (SELECT 1 FROM ops.jobs j WHERE j.kind = 'cortex_migrate' AND j.payload ->> 'run_id' = p_run_id::text)
      AND NOT EXISTS (SELECT 1 FROM ops.jobs j WHERE j.kind = 'cluster_update' AND j.state = 'queued')
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF EXISTS (SELECT 1 FROM ops.jobs j WHERE j.state = 'queued') THEN
        PERFORM pg_notify('psimem_jobs', 'night_cycle');
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_08_clustering_update(bigint, uuid) IS
'Night Cycle stage 8, clustering update, once per run after every user (p_user_id is the run''s user filter and is not used): when the run queued blocks for the Cortex and no re-clustering is pending, queues one cluster_update job (RAPTOR re-clustering, run by the worker after the migrations); wakes the worker with NOTIFY psimem_jobs when work is queued. Returns the number of jobs queued.';
REVOKE ALL ON FUNCTION memory.night_08_clustering_update(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_08_clustering_update(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(8::smallint, 'clustering update', 'memory.night_08_clustering_update(bigint, uuid)', 'run');
