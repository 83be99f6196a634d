-- BI views over the Cortex worker: who runs, when it last beat, what each job attempt did.

CREATE OR REPLACE VIEW bi.workers AS
SELECT w.worker_id, w.host, w.pid, w.state, w.code_version, w.started_at, w.heartbeat_at, w.stopped_at,
       extract(epoch FROM clock_timestamp() - w.heartbeat_at) AS seconds_since_heartbeat,
       w.state <> 'stopped' AND w.heartbeat_at < clock_timestamp() - (SELECT (s.value #>> '{}')::interval FROM ops.settings s WHERE s.key = 'worker.stale_after')
           AS looks_dead,
       w.current_job_id, w.jobs_done, w.jobs_retried, w.jobs_failed, w.jobs_released
FROM ops.workers w;
COMMENT ON VIEW bi.workers IS 'Cortex worker processes: state, last heartbeat (and whether it is older than worker.stale_after), jobs done, retried, failed and released.';

CREATE OR REPLACE VIEW bi.job_attempts AS
SELECT a.job_id, j.kind, a.attempt, j.max_attempts, a.worker_id, a.started_at, a.finished_at,
       extract(epoch FROM a.finished_at - a.started_at) AS seconds, a.outcome, a.error, a.result,
       j.state AS job_state
FROM ops.job_attempts a JOIN ops.jobs j USING (job_id);
COMMENT ON VIEW bi.job_attempts IS 'Every attempt at every worker job: worker, duration, outcome (done, retry, failed, released, abandoned), error or result (counts and timings, never memory content).';

CREATE OR REPLACE VIEW bi.cortex_migration AS
SELECT b.user_tier, count(*) FILTER (WHERE b.migrated_at IS NULL) AS in_hippocampus,
       count(*) FILTER (WHERE b.migrated_at IS NOT NULL) AS in_cortex,
       max(b.migrated_at) AS last_migrated_at,
       (SELECT count(*) FROM ops.jobs j WHERE j.kind = 'cortex_migrate' AND j.state = 'queued') AS migrations_queued,
       (SELECT count(*) FROM ops.jobs j WHERE j.kind = 'cortex_migrate' AND j.state = 'failed') AS migrations_failed
FROM memory.holographic_blocks b
GROUP BY b.user_tier;
COMMENT ON VIEW bi.cortex_migration IS 'Per tier: blocks still in the Hippocampus and moved to the Cortex, the last move, and migration jobs queued or failed.';

CREATE OR REPLACE VIEW bi.dead_letter_jobs AS
SELECT j.job_id, j.kind, j.attempts, j.max_attempts, j.created_at, j.finished_at AS failed_at, j.last_error
FROM ops.jobs j
WHERE j.state = 'failed';
COMMENT ON VIEW bi.dead_letter_jobs IS 'Jobs that failed for good (every attempt used): nothing retries them until ops.retry_job(job_id); a cortex_migrate among them keeps its block in the Hippocampus.';

GRANT SELECT ON bi.workers, bi.job_attempts, bi.cortex_migration, bi.dead_letter_jobs TO psimem_bi;
