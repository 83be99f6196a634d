-- pg_cron jobs of psimem: schedules live in ops.settings (cron.*) and are installed by
-- ops.install_cron_jobs(), which applying this file runs.

CREATE OR REPLACE FUNCTION ops.trim_history(p_as_of timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_keep interval := (ops.setting('ops.keep_history') #>> '{}')::interval;
    v_n bigint;
    v_m bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.ops.trim_history')) THEN
        RETURN 0;
    END IF;
    DELETE FROM cron.job_run_details WHERE end_time < p_as_of - v_keep;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    DELETE FROM ops.cycle_runs WHERE started_at < p_as_of - v_keep AND status <> 'running';  -- the next cycle resumes those
    GET DIAGNOSTICS v_m = ROW_COUNT;
    DELETE FROM ops.jobs WHERE state = 'done' AND finished_at < p_as_of - v_keep;
    RETURN v_n + v_m;
END
$$;
COMMENT ON FUNCTION ops.trim_history(timestamptz) IS
'Deletes pg_cron''s cron.job_run_details rows (pg_cron never trims them), Night Cycle run logs (not of a run still to be resumed) and finished jobs older than ops.keep_history. Idempotent; advisory-locked. Returns the number of run-detail and run-log rows deleted.';
REVOKE ALL ON FUNCTION ops.trim_history(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.trim_history(timestamptz) TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.install_cron_jobs()
RETURNS TABLE (jobname text, schedule text, command text)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_job record;
BEGIN
    FOR v_job IN
        SELECT * FROM (VALUES
            ('psimem-night-cycle', 'cron.night_cycle', 'CALL memory.night_cycle()'),
            ('psimem-procedural', 'cron.procedural_maintenance',
             'SELECT procedural.decay_causal_edges(), procedural.prune_reflexes()'),
            ('psimem-trim-history', 'cron.trim_history', 'SELECT ops.trim_history()'),
            ('psimem-psi-centroid-decay', 'cron.psi_centroid_decay', 'SELECT psi.decay_centroids()'),
            ('psimem-kernel-maintenance', 'cron.kernel_maintenance', 'SELECT kernel.run_maintenance()')) AS j(name, setting, cmd)
    LOOP
        PERFORM cron.schedule(v_job.name, ops.setting(v_job.setting) #>> '{}', v_job.cmd);
        jobname := v_job.name; schedule := ops.setting(v_job.setting) #>> '{}'; command := v_job.cmd;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ops.install_cron_jobs() IS
'Installs or updates psimem''s pg_cron jobs from the cron.* settings: the Night Cycle (CALL memory.night_cycle(), which commits per batch of users and fails the job when a user failed), procedural decay and pruning, history trimming, ψ band-centroid decay and kernel maintenance. Idempotent (pg_cron replaces a job of the same name).';
REVOKE ALL ON FUNCTION ops.install_cron_jobs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.install_cron_jobs() TO psimem_admin;

CREATE OR REPLACE FUNCTION ops.set_schedule(p_job text, p_schedule text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_key text := 'cron.' || p_job;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ops.settings WHERE key = v_key) THEN
        RAISE EXCEPTION 'p_job: must be one of night_cycle, procedural_maintenance, trim_history, psi_centroid_decay, kernel_maintenance (got %)', quote_literal(p_job)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM ops.set_setting(v_key, to_jsonb(p_schedule));
    PERFORM ops.install_cron_jobs();
    RETURN p_schedule;
END
$$;
COMMENT ON FUNCTION ops.set_schedule(text, text) IS
'Changes the pg_cron schedule of a psimem job (night_cycle, procedural_maintenance, trim_history, psi_centroid_decay, kernel_maintenance) in ops.settings and re-installs the jobs; pg_cron rejects a malformed schedule.';
REVOKE ALL ON FUNCTION ops.set_schedule(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.set_schedule(text, text) TO psimem_admin;

SELECT ops.install_cron_jobs();
